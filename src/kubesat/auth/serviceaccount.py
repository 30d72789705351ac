"""Service-account token authentication: signature, issuer, audience, time, and liveness, as Kubernetes checks them.

Bound tokens (§1.5) must still name a live ServiceAccount, and a live Pod, Secret or Node with
the same uid. Legacy Secret tokens (§1.6) must still be the token in their Secret. Successful
authentications are cached for 10 s, as kube-apiserver does, but every cache entry is dropped
the moment one of the objects it depends on is deleted, so revocation is immediate.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import time
from datetime import datetime, UTC
from typing import Any
from collections.abc import Callable

from kubesat.auth.authn import AuthenticationFailed, TokenResult
from kubesat.auth.user import UserInfo
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.store import Registry
from kubesat.tokens import claims as claimsmod
from kubesat.tokens.issuer import KeySource, TokenOptions
from kubesat.tokens.jwt import LEGACY_ISSUER, TokenError, Verifier
from kubesat import metrics

log = logging.getLogger("kubesat.authn.serviceaccount")

SERVICEACCOUNTS = builtin_kind("v1", "ServiceAccount")
SECRETS = builtin_kind("v1", "Secret")
PODS = builtin_kind("v1", "Pod")
NODES = builtin_kind("v1", "Node")
assert SERVICEACCOUNTS and SECRETS and PODS and NODES

CACHE_TTL = 10.0
CACHE_MAX = 32768
LEEWAY = 60

EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"

INVALIDATED = "service account token has been invalidated"
LEGACY_INVALIDATED = "Token has been invalidated"
LAST_USED_LABEL = "kubernetes.io/legacy-token-last-used"
INVALID_SINCE_LABEL = "kubernetes.io/legacy-token-invalid-since"


def _counter(name: str) -> Callable[[], None]:
    c = getattr(metrics, name, None)
    return (lambda: c.inc()) if c is not None else (lambda: None)


def _deleted_before(obj: dict[str, Any], cutoff: float) -> bool:
    ts = obj.get("metadata", {}).get("deletionTimestamp")
    if not ts:
        return False
    try:
        t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return True
    return t < cutoff


def _go_quote(items: Any) -> str:
    return "[" + " ".join(f'"{a}"' for a in items) + "]"


_Key = tuple[bytes, tuple[str, ...] | None]  # (keyed hash of the token, the audiences asked for)


def _keyed_hash(key: bytes | None = None) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 under a key made for this process, as kube-apiserver keys its token cache: the cache holds
    no token, nor a plain hash that could be checked against a guessed token. The padded key's two
    SHA-256 states are computed once; each token then costs two copies and two updates (RFC 2104)."""
    key = (os.urandom(32) if key is None else key).ljust(64, b"\0")
    assert len(key) == 64  # a longer key would be hashed first; this one is always 32 bytes
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(data: bytes) -> bytes:
        h = inner.copy()
        h.update(data)
        o = outer.copy()
        o.update(h.digest())
        return o.digest()

    return digest


class _Entry:
    __slots__ = ("result", "expires", "uids")

    def __init__(self, result: TokenResult, expires: float, uids: tuple[str, ...]) -> None:
        self.result = result
        self.expires = expires
        self.uids = uids


class ServiceAccountAuthenticator:
    """A TokenAuthenticator for kubesat's own tokens, bound and legacy."""

    def __init__(
        self,
        registry: Registry,
        keys: KeySource,
        options: TokenOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.keys = keys
        self.options = options
        self.clock = clock
        self.api_audiences = tuple(options.audiences)
        self.verifier = Verifier(tuple(options.issuers) + (LEGACY_ISSUER,), implicit_audiences=self.api_audiences)
        self._cache: dict[_Key, _Entry] = {}
        self._by_uid: dict[str, set[_Key]] = {}
        self._token_hash = _keyed_hash()
        self._legacy_counter = _counter("serviceaccount_legacy_tokens_total")
        self._stale_counter = _counter("serviceaccount_stale_tokens_total")
        self._valid_counter = _counter("serviceaccount_valid_tokens_total")
        self._auto_counter = _counter("serviceaccount_legacy_auto_token_uses_total")
        self._manual_counter = _counter("serviceaccount_legacy_manual_token_uses_total")
        self._invalid_auto_counter = _counter("serviceaccount_invalid_legacy_auto_token_uses_total")
        self._bg: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- revocation
    def forget(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        """Registry on_delete hook: drop cached results that depended on this object."""
        uid = obj.get("metadata", {}).get("uid")
        if not uid:
            return
        for key in self._by_uid.pop(uid, ()):
            self._cache.pop(key, None)

    def _remember(self, key: _Key, result: TokenResult, uids: tuple[str, ...], now: float) -> None:
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
            self._by_uid.clear()
        self._cache[key] = _Entry(result, now + CACHE_TTL, uids)
        for u in uids:
            self._by_uid.setdefault(u, set()).add(key)

    # ------------------------------------------------------------------- the check
    async def authenticate_token(self, token: str, audiences: tuple[str, ...] | None) -> TokenResult | None:
        now = self.clock()
        key = (self._token_hash(token.encode()), audiences)
        hit = self._cache.get(key)
        if hit is not None:
            if hit.expires > now:
                return hit.result
            self._cache.pop(key, None)
        try:
            _, claims = self.verifier.verify(token, self.keys.keyset(), now, audiences=audiences)
        except TokenError as e:
            if e.not_mine:
                return None
            raise AuthenticationFailed(e.reason) from None
        if claims.get("iss") == LEGACY_ISSUER or "aud" not in claims:
            result, uids = await self._legacy(token, claims, now)
            # Legacy results are not cached: the Secret's contents and labels decide each use.
            return result
        result, uids = await self._bound(claims, audiences, now)
        # A token that expires within the cache TTL is not cached, so expiry is exact.
        if claims.get("exp", 0) - LEEWAY > now + CACHE_TTL:
            self._remember(key, result, uids, now)
        return result

    def _audiences(self, claims: dict[str, Any], requested: tuple[str, ...] | None) -> tuple[str, ...]:
        token_auds = claims.get("aud")
        if isinstance(token_auds, str):
            token_auds = [token_auds]
        if not token_auds:
            token_auds = list(self.api_audiences)
        want = requested if requested is not None else self.api_audiences
        return tuple(a for a in token_auds if a in want)

    async def _bound(self, claims: dict[str, Any], audiences: tuple[str, ...] | None,
                     now: float) -> tuple[TokenResult, tuple[str, ...]]:
        try:
            pc = claimsmod.parse_private_claims(claims, legacy=False)
        except TokenError as e:
            raise AuthenticationFailed(e.reason) from None
        cutoff = now - LEEWAY
        ns = pc.namespace
        sa = await self.registry.get_or_none(SERVICEACCOUNTS, ns, pc.sa_name)
        if sa is None:
            raise AuthenticationFailed(f'serviceaccounts "{pc.sa_name}" not found')
        sa_uid = sa["metadata"].get("uid", "")
        if sa_uid != pc.sa_uid:
            raise AuthenticationFailed(f"service account UID ({sa_uid}) does not match claim ({pc.sa_uid})")
        if _deleted_before(sa, cutoff):
            raise AuthenticationFailed(f"service account {ns}/{pc.sa_name} has been deleted")
        uids = [sa_uid]
        extra: dict[str, tuple[str, ...]] = {}
        if pc.has_secret:
            uids.append(await self._bound_uid(SECRETS, ns, pc.secret_name, pc.secret_uid, "secret", cutoff))
        if pc.has_pod:
            uids.append(await self._bound_uid(PODS, ns, pc.pod_name, pc.pod_uid, "pod", cutoff))
            if pc.pod_name and pc.pod_uid:
                extra[EXTRA_POD_NAME] = (pc.pod_name,)
                extra[EXTRA_POD_UID] = (pc.pod_uid,)
        if pc.has_node:
            if not pc.has_pod:
                uids.append(await self._bound_uid(NODES, "", pc.node_name, pc.node_uid, "node", cutoff))
            if pc.node_name:
                extra[EXTRA_NODE_NAME] = (pc.node_name,)
                if pc.node_uid:
                    extra[EXTRA_NODE_UID] = (pc.node_uid,)
        annotations: list[tuple[str, str]] = []
        if pc.credential_id:
            extra[EXTRA_CREDENTIAL_ID] = (pc.credential_id,)
            annotations.append((EXTRA_CREDENTIAL_ID, pc.credential_id))
        if pc.warnafter:
            if now > pc.warnafter:
                annotations.append(("authentication.k8s.io/stale-token",
                                    f"subject: {pc.subject or claims.get('sub', '')}, seconds after warning threshold: "
                                    f"{int(now - pc.warnafter)}"))
                self._stale_counter()
            else:
                self._valid_counter()
        user = UserInfo(
            claimsmod.make_username(ns, pc.sa_name),
            pc.sa_uid,
            ("system:serviceaccounts", f"system:serviceaccounts:{ns}"),
            extra,
        )
        return TokenResult(user, self._audiences(claims, audiences), tuple(annotations)), tuple(uids)

    async def _bound_uid(self, info: ResourceInfo, ns: str, name: str, claim_uid: str, kind: str,
                         cutoff: float) -> str:
        """The uid of the object a token is bound to, if it still exists as the one the token names (§1.5)."""
        obj = await self.registry.get_or_none(info, ns, name)
        if obj is None:
            raise AuthenticationFailed(INVALIDATED)
        uid: str = obj["metadata"].get("uid", "")
        if uid != claim_uid:
            raise AuthenticationFailed(
                f"{kind} UID ({uid}) does not match service account {kind} ref claim ({claim_uid})")
        if _deleted_before(obj, cutoff):
            raise AuthenticationFailed(INVALIDATED)
        return uid

    async def _legacy(self, token: str, claims: dict[str, Any], now: float) -> tuple[TokenResult, tuple[str, ...]]:
        self._legacy_counter()
        annotations: list[tuple[str, str]] = [("authentication.k8s.io/legacy-token", str(claims.get("sub", "")))]
        try:
            pc = claimsmod.parse_private_claims(claims, legacy=True)
        except TokenError as e:
            raise AuthenticationFailed(e.reason) from None
        ns = pc.namespace
        secret = None
        if self.options.lookup:
            secret = await self.registry.get_or_none(SECRETS, ns, pc.secret_name)
            if secret is None or secret["metadata"].get("deletionTimestamp"):
                raise AuthenticationFailed(LEGACY_INVALIDATED)
            stored = (secret.get("data") or {}).get("token", "")
            try:
                stored_token = base64.b64decode(stored)
            except (ValueError, TypeError):
                stored_token = b""
            if not hmac.compare_digest(stored_token, token.encode()):
                raise AuthenticationFailed("Token does not match server's copy")
        sa = await self.registry.get_or_none(SERVICEACCOUNTS, ns, pc.sa_name)
        if sa is None:
            raise AuthenticationFailed(f'serviceaccounts "{pc.sa_name}" not found')
        if sa["metadata"].get("deletionTimestamp"):
            raise AuthenticationFailed(f"ServiceAccount {ns}/{pc.sa_name} has been deleted")
        sa_uid = sa["metadata"].get("uid", "")
        if sa_uid != pc.sa_uid:
            raise AuthenticationFailed(f"ServiceAccount UID ({sa_uid}) does not match claim ({pc.sa_uid})")
        warnings: list[str] = []
        if secret is not None:
            labels = secret["metadata"].get("labels") or {}
            if labels.get(INVALID_SINCE_LABEL):
                annotations.append(("authentication.k8s.io/legacy-token-invalidated", f"{pc.secret_name}/{ns}"))
                self._invalid_auto_counter()
                self._touch_last_used(ns, pc.secret_name, secret, now)
                raise AuthenticationFailed(
                    f"the token in secret {ns}/{pc.secret_name} for service account {ns}/{pc.sa_name} has been "
                    "marked invalid. Use tokens from the TokenRequest API or manually created secret-based tokens, "
                    f"or remove the '{INVALID_SINCE_LABEL}' label from the secret to temporarily allow use of this "
                    "token"
                )
            if any((s or {}).get("name") == pc.secret_name for s in sa.get("secrets") or []):
                warnings.append("Use tokens from the TokenRequest API or manually created secret-based tokens "
                                "instead of auto-generated secret-based tokens.")
                annotations.append(("authentication.k8s.io/legacy-token-autogenerated-secret", pc.secret_name))
                self._auto_counter()
            else:
                annotations.append(("authentication.k8s.io/legacy-token-manual-secret", pc.secret_name))
                self._manual_counter()
            self._touch_last_used(ns, pc.secret_name, secret, now)
        user = UserInfo(
            claimsmod.make_username(ns, pc.sa_name),
            pc.sa_uid,
            ("system:serviceaccounts", f"system:serviceaccounts:{ns}"),
        )
        return TokenResult(user, self.api_audiences, tuple(annotations), tuple(warnings)), ()

    def _touch_last_used(self, ns: str, name: str, secret: dict[str, Any], now: float) -> None:
        """At most one write a day: the last-used label, when it is neither today nor tomorrow (clock skew)."""
        today_dt = datetime.fromtimestamp(now, UTC)
        today = today_dt.strftime("%Y-%m-%d")
        tomorrow = datetime.fromtimestamp(now + 86400, UTC).strftime("%Y-%m-%d")
        current = (secret["metadata"].get("labels") or {}).get(LAST_USED_LABEL)
        if current in (today, tomorrow):
            return

        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"].setdefault("labels", {})[LAST_USED_LABEL] = today
            return obj

        async def write() -> None:
            try:
                await self.registry.guaranteed_update(SECRETS, ns, name, mutate)
            except Exception as e:  # noqa: BLE001 - failures are only logged, as in Kubernetes
                log.info("could not record last use of secret %s/%s: %s", ns, name, e)

        task = asyncio.ensure_future(write())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
