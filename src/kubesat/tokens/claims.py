"""Service-account token claims: building bound and legacy claim sets, parsing them back, usernames."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple
from collections.abc import Iterable

from kubesat.tokens.jwt import LEGACY_ISSUER, TokenError

__all__ = [
    "EXPIRATION_EXTENSION_SECONDS",
    "LEGACY_ISSUER",
    "WARN_ONLY_BOUND_TOKEN_EXPIRATION",
    "PrivateClaims",
    "Ref",
    "bound_claims",
    "legacy_claims",
    "make_username",
    "parse_private_claims",
    "split_username",
]

WARN_ONLY_BOUND_TOKEN_EXPIRATION = 60 * 60 + 7
EXPIRATION_EXTENSION_SECONDS = 24 * 365 * 60 * 60

USERNAME_PREFIX = "system:serviceaccount:"
_BAD_USERNAME = "Username must be in the form system:serviceaccount:namespace:name"

# Legacy (Secret-based) private claims are flat top-level keys.
LEGACY_NAMESPACE = "kubernetes.io/serviceaccount/namespace"
LEGACY_SECRET_NAME = "kubernetes.io/serviceaccount/secret.name"
LEGACY_SA_NAME = "kubernetes.io/serviceaccount/service-account.name"
LEGACY_SA_UID = "kubernetes.io/serviceaccount/service-account.uid"


class Ref(NamedTuple):
    """A bound object reference as it sits in the claims: name and (possibly empty) UID."""

    name: str
    uid: str = ""


def _ref(ref: Iterable[str] | None) -> dict[str, str] | None:
    if ref is None:
        return None
    name, uid = tuple(ref)
    # Go's omitempty on both fields: an empty UID (a Node that does not exist) is left out.
    out: dict[str, str] = {}
    if name:
        out["name"] = name
    if uid:
        out["uid"] = uid
    return out


def make_username(namespace: str, name: str) -> str:
    """system:serviceaccount:<namespace>:<name>"""
    return f"{USERNAME_PREFIX}{namespace}:{name}"


_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def split_username(username: str) -> tuple[str, str]:
    """(namespace, name) of a service-account username; ValueError with Kubernetes' text otherwise."""
    if not username.startswith(USERNAME_PREFIX):
        raise ValueError(_BAD_USERNAME)
    parts = username[len(USERNAME_PREFIX):].split(":")
    if len(parts) != 2:
        raise ValueError(_BAD_USERNAME)
    namespace, name = parts
    # Namespace: a DNS-1123 label; service-account name: a DNS-1123 subdomain.
    if len(namespace) > 63 or not _DNS1123_LABEL.fullmatch(namespace):
        raise ValueError(_BAD_USERNAME)
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        raise ValueError(_BAD_USERNAME)
    return namespace, name


def bound_claims(
    *,
    issuer: str,
    audiences: Iterable[str],
    namespace: str,
    sa_name: str,
    sa_uid: str,
    expiration_seconds: int,
    now: float,
    jti: str | None,
    pod: Iterable[str] | None = None,
    secret: Iterable[str] | None = None,
    node: Iterable[str] | None = None,
    warn_after: int | None = None,
    exp_override: int | None = None,
) -> dict[str, Any]:
    """§1.1 claims of a bound token.

    `pod`/`secret`/`node` are (name, uid) pairs; a Node may come with a pod (the pod's node) or
    alone, never with a secret. `warn_after` is seconds after iat (the §3.4 extension: the
    requested 3607); `exp_override` is an absolute exp in epoch seconds. `jti` None or empty
    leaves the claim out (the ServiceAccountTokenJTI gate off).
    """
    if secret is not None and (pod is not None or node is not None):
        raise ValueError("internal error, token can only be bound to one object type")
    iat = int(now)  # NumericDate: whole seconds
    auds = list(audiences)
    k8s: dict[str, Any] = {}
    if namespace:
        k8s["namespace"] = namespace
    k8s["serviceaccount"] = _ref((sa_name, sa_uid))
    if pod is not None:
        k8s["pod"] = _ref(pod)
    if secret is not None:
        k8s["secret"] = _ref(secret)
    if node is not None:
        k8s["node"] = _ref(node)
    if warn_after:
        k8s["warnafter"] = iat + int(warn_after)
    claims: dict[str, Any] = {}
    if auds:
        claims["aud"] = auds  # always a list, even with one audience
    claims["exp"] = int(exp_override) if exp_override is not None else iat + int(expiration_seconds)
    claims["iat"] = iat
    claims["iss"] = issuer
    if jti:
        claims["jti"] = jti
    claims["kubernetes.io"] = k8s
    claims["nbf"] = iat
    claims["sub"] = make_username(namespace, sa_name)
    return claims


def legacy_claims(*, namespace: str, secret_name: str, sa_name: str, sa_uid: str) -> dict[str, Any]:
    """§1.2 claims of a Secret-based token: legacy issuer, flat private claims, no aud/exp/iat/nbf/jti."""
    return {
        "iss": LEGACY_ISSUER,
        LEGACY_NAMESPACE: namespace,
        LEGACY_SECRET_NAME: secret_name,
        LEGACY_SA_NAME: sa_name,
        LEGACY_SA_UID: sa_uid,
        "sub": make_username(namespace, sa_name),
    }


@dataclass(frozen=True)
class PrivateClaims:
    """What the validators need from a verified token, for both the bound and the legacy shape."""

    namespace: str
    sa_name: str
    sa_uid: str
    subject: str = ""
    pod_name: str = ""
    pod_uid: str = ""
    secret_name: str = ""
    secret_uid: str = ""
    node_name: str = ""
    node_uid: str = ""
    warnafter: int | None = None
    jti: str = ""
    legacy: bool = False
    has_pod: bool = False
    has_secret: bool = False
    has_node: bool = False

    @property
    def credential_id(self) -> str:
        """authentication.kubernetes.io/credential-id value, empty without a jti."""
        return f"JTI={self.jti}" if self.jti else ""


def _unmarshal_error(got: Any, field: str, want: str) -> TokenError:
    kind = (
        "bool" if isinstance(got, bool)
        else "number" if isinstance(got, (int, float))
        else "array" if isinstance(got, list)
        else "object" if isinstance(got, dict)
        else "string"
    )
    return TokenError(f"json: cannot unmarshal {kind} into Go struct field {field} of type {want}")


def _str(obj: dict[str, Any], key: str, field: str) -> str:
    v = obj.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _unmarshal_error(v, field, "string")
    return v


def _obj(obj: dict[str, Any], key: str, field: str) -> dict[str, Any] | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _unmarshal_error(v, field, field.rsplit(".", 1)[-1])
    return v


def parse_private_claims(claims: dict[str, Any], *, legacy: bool | None = None) -> PrivateClaims:
    """Read the private claims of a verified token; legacy shape when `legacy` (default: legacy issuer).

    Wrong JSON types raise TokenError with Go's unmarshal wording. For the legacy shape the
    §1.6 presence and `sub` checks run here, in Kubernetes' order, with its error texts.
    """
    if legacy is None:
        legacy = claims.get("iss") == LEGACY_ISSUER
    sub = _str(claims, "sub", "Claims.sub")
    jti = _str(claims, "jti", "Claims.jti")
    if legacy:
        namespace = _str(claims, LEGACY_NAMESPACE, "legacyPrivateClaims.Namespace")
        secret_name = _str(claims, LEGACY_SECRET_NAME, "legacyPrivateClaims.SecretName")
        sa_name = _str(claims, LEGACY_SA_NAME, "legacyPrivateClaims.ServiceAccountName")
        sa_uid = _str(claims, LEGACY_SA_UID, "legacyPrivateClaims.ServiceAccountUID")
        if not sub:
            raise TokenError("sub claim is missing")
        if not namespace:
            raise TokenError("namespace claim is missing")
        if not secret_name:
            raise TokenError("secretName claim is missing")
        if not sa_name:
            raise TokenError("serviceAccountName claim is missing")
        if not sa_uid:
            raise TokenError("serviceAccountUID claim is missing")
        try:
            sub_ns, sub_name = split_username(sub)
        except ValueError:
            raise TokenError("sub claim is invalid") from None
        if sub_ns != namespace or sub_name != sa_name:
            raise TokenError("sub claim is invalid")
        return PrivateClaims(
            namespace=namespace, sa_name=sa_name, sa_uid=sa_uid, subject=sub,
            secret_name=secret_name, jti=jti, legacy=True, has_secret=True,
        )

    k8s = _obj(claims, "kubernetes.io", "privateClaims.kubernetes.io") or {}
    f = "privateClaims.kubernetes.io"
    namespace = _str(k8s, "namespace", f"{f}.namespace")
    sa = _obj(k8s, "serviceaccount", f"{f}.serviceaccount") or {}
    pod = _obj(k8s, "pod", f"{f}.pod")
    secret = _obj(k8s, "secret", f"{f}.secret")
    node = _obj(k8s, "node", f"{f}.node")
    warnafter = k8s.get("warnafter")
    if warnafter is not None:
        if isinstance(warnafter, bool) or not isinstance(warnafter, (int, float)) or not math.isfinite(warnafter):
            raise TokenError("square/go-jose/jwt: expected number value to unmarshal NumericDate")
        warnafter = int(warnafter)
    return PrivateClaims(
        namespace=namespace,
        sa_name=_str(sa, "name", f"{f}.serviceaccount.name"),
        sa_uid=_str(sa, "uid", f"{f}.serviceaccount.uid"),
        subject=sub,
        pod_name=_str(pod or {}, "name", f"{f}.pod.name"),
        pod_uid=_str(pod or {}, "uid", f"{f}.pod.uid"),
        secret_name=_str(secret or {}, "name", f"{f}.secret.name"),
        secret_uid=_str(secret or {}, "uid", f"{f}.secret.uid"),
        node_name=_str(node or {}, "name", f"{f}.node.name"),
        node_uid=_str(node or {}, "uid", f"{f}.node.uid"),
        warnafter=warnafter,
        jti=jti,
        legacy=False,
        has_pod=pod is not None,
        has_secret=secret is not None,
        has_node=node is not None,
    )
