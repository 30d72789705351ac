"""Bootstrap tokens: the authenticator kube-apiserver runs with --enable-bootstrap-token-auth, the rules of
k8s.io/cluster-bootstrap for reading a token's Secret, and the Secret `kubeadm token create` writes.

A bootstrap token is `<id>.<secret>` ([a-z0-9]{6} "." [a-z0-9]{16}). It is valid while the Secret
`kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` holds the same `token-id`
and `token-secret`, says `usage-bootstrap-authentication: "true"`, is not past its RFC 3339
`expiration` and lists only valid `auth-extra-groups`. The user is `system:bootstrap:<id>` in
`system:bootstrappers` and the extra groups. As in Kubernetes, a token that fails any check is
"not mine" (the request gets the generic "invalid bearer token"); the reason is logged at debug level
and never names the secret part.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from kubesat.auth.authn import TokenResult
from kubesat.auth.user import UserInfo
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.authn.bootstrap")

SECRETS = builtin_kind("v1", "Secret")
assert SECRETS

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
USER_PREFIX = "system:bootstrap:"
DEFAULT_GROUP = "system:bootstrappers"
# The group kubeadm gives the tokens it makes for joining nodes.
KUBEADM_NODE_GROUP = "system:bootstrappers:kubeadm:default-node-token"

ID_KEY = "token-id"
SECRET_KEY = "token-secret"
EXPIRATION_KEY = "expiration"
DESCRIPTION_KEY = "description"
EXTRA_GROUPS_KEY = "auth-extra-groups"
USAGE_AUTHENTICATION = "usage-bootstrap-authentication"
USAGE_SIGNING = "usage-bootstrap-signing"

TOKEN_LENGTH = 6 + 1 + 16
TOKEN_PATTERN = r"\A([a-z0-9]{6})\.([a-z0-9]{16})\z"
GROUP_PATTERN = r"\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z"
_TOKEN = re.compile(r"([a-z0-9]{6})\.([a-z0-9]{16})")
_GROUP = re.compile(r"system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]")
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))")
_TOKEN_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"

# Bounds on what is read of a Secret (which may hold up to 1 MiB): no real value comes near them.
MAX_FIELD_BYTES = 1024
MAX_GROUPS_BYTES = 32 * 1024


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a bootstrap-shaped token, else None. The length is looked at first, so a JWT
    (hundreds of characters) costs one comparison."""
    if len(token) != TOKEN_LENGTH or token[6] != ".":
        return None
    m = _TOKEN.fullmatch(token)
    return (m.group(1), m.group(2)) if m else None


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def get_data(secret: dict[str, Any], key: str, limit: int = MAX_FIELD_BYTES) -> str:
    """A `data` value as text ('' when absent, not base64, not UTF-8 or longer than `limit` bytes)."""
    raw = (secret.get("data") or {}).get(key)
    if not isinstance(raw, str) or _too_long(raw, limit):
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ""


def _too_long(encoded: str, limit: int) -> bool:
    """Whether base64 text decodes to more than `limit` bytes (judged by its length alone)."""
    return len(encoded) > (limit + 2) // 3 * 4


def parse_rfc3339(value: str) -> float:
    """Go's time.Parse(time.RFC3339, value) as a Unix time; ValueError if it does not parse."""
    m = _RFC3339.fullmatch(value) if len(value) <= 64 else None
    if m is None:
        raise ValueError(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse')
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone, sign, zh, zm = m.group(7), m.group(8), m.group(9), m.group(10), m.group(11)
    tz = UTC
    if zone != "Z":
        if int(zh) > 23 or int(zm) > 59:
            raise ValueError(f'parsing time "{value}": time zone offset out of range')
        offset = timedelta(hours=int(zh), minutes=int(zm))
        tz = timezone(-offset if sign == "-" else offset)
    when = datetime(year, month, day, hour, minute, second, tzinfo=tz)  # ValueError for a day or hour out of range
    return when.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)


def expiration(secret: dict[str, Any], now: float) -> tuple[float, bool]:
    """(seconds left, expired) as cluster-bootstrap's GetExpiration: no expiration is (0, False); one that
    does not parse counts as expired."""
    value = get_data(secret, EXPIRATION_KEY)
    if not value:
        if (secret.get("data") or {}).get(EXPIRATION_KEY):
            return 0.0, True  # present but unreadable (too long, not base64): as unparseable
        return 0.0, False
    try:
        left = parse_rfc3339(value) - now
    except ValueError:
        log.debug("Unparseable expiration time (%s) in %s Secret. Treating as expired.", value, _where(secret))
        return 0.0, True
    if left <= 0:
        log.debug("Expired bootstrap token in %s Secret: %s", _where(secret), value)
        return 0.0, True
    return left, False


def groups(secret: dict[str, Any]) -> list[str]:
    """system:bootstrappers plus the valid auth-extra-groups, sorted and without repeats (ValueError: an
    invalid group, worded as cluster-bootstrap words it)."""
    out = {DEFAULT_GROUP}
    if _too_long(str((secret.get("data") or {}).get(EXTRA_GROUPS_KEY) or ""), MAX_GROUPS_BYTES):
        raise ValueError(f"longer than {MAX_GROUPS_BYTES} bytes")
    extra = get_data(secret, EXTRA_GROUPS_KEY, MAX_GROUPS_BYTES)
    if extra:
        for group in extra.split(","):
            if not _GROUP.fullmatch(group):
                raise ValueError(f'bootstrap group "{group}" is invalid (must match {GROUP_PATTERN})')
            out.add(group)
    return sorted(out)


def _where(secret: dict[str, Any]) -> str:
    meta = secret.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def check_secret(secret: dict[str, Any], token_id: str, token_secret: str, now: float) -> list[str] | str:
    """The groups a valid token gets, or why its Secret refuses it (as kube-apiserver logs it)."""
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        return "is deleted and awaiting removal"
    if secret.get("type") != SECRET_TYPE or not isinstance(secret.get("data"), dict):
        return f"has invalid type, expected {SECRET_TYPE}."
    if not hmac.compare_digest(get_data(secret, SECRET_KEY).encode(), token_secret.encode()):
        return f"has invalid value for key {SECRET_KEY}."
    if get_data(secret, ID_KEY) != token_id:
        return f"has invalid value for key {ID_KEY}."
    if expiration(secret, now)[1]:
        return "has expired."
    if get_data(secret, USAGE_AUTHENTICATION) != "true":
        return f"not marked {USAGE_AUTHENTICATION}=true."
    try:
        return groups(secret)
    except ValueError as e:
        return f"has invalid value for key {EXTRA_GROUPS_KEY}: {e}."


class BootstrapTokenAuthenticator:
    """A TokenAuthenticator for bootstrap tokens, reading their Secrets from the registry as the
    service-account authenticator reads its objects. Audience-agnostic, as Kubernetes wraps it: it
    answers for the API audiences only."""

    def __init__(self, registry: Registry, api_audiences: tuple[str, ...],
                 *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.api_audiences = api_audiences
        self.clock = clock

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] | None) -> TokenResult | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        token_id, token_secret = parsed
        auds = self.api_audiences
        if audiences is not None:
            auds = tuple(a for a in self.api_audiences if a in audiences)
            if not auds:
                return None
        name = secret_name(token_id)
        secret = await self.registry.get_or_none(SECRETS, NAMESPACE, name)
        if secret is None:
            log.debug("No secret of name %s to match bootstrap bearer token", name)
            return None
        checked = check_secret(secret, token_id, token_secret, self.clock())
        if isinstance(checked, str):
            log.debug("Bootstrap secret %s/%s matching bearer token %s", NAMESPACE, name, checked)
            return None
        return TokenResult(UserInfo(USER_PREFIX + token_id, "", tuple(checked)), auds)


# ------------------------------------------------------------------------- making tokens
def generate_token() -> str:
    """A new random token, each character drawn uniformly from [a-z0-9] as kubeadm draws them."""
    pick = lambda n: "".join(secrets.choice(_TOKEN_CHARS) for _ in range(n))  # noqa: E731
    return f"{pick(6)}.{pick(16)}"


def token_secret(token: str, ttl: float, now: float, *, description: str = "",
                 extra_groups: tuple[str, ...] = (KUBEADM_NODE_GROUP,),
                 usages: tuple[str, ...] = ("authentication", "signing")) -> dict[str, Any]:
    """The Secret `kubeadm token create` writes for `token` (ttl 0: it never expires)."""
    parsed = parse_token(token)
    if parsed is None:
        raise ValueError(f"the token is not of the form {TOKEN_PATTERN}")
    data = {ID_KEY: parsed[0], SECRET_KEY: parsed[1]}
    if description:
        data[DESCRIPTION_KEY] = description
    if ttl > 0:
        data[EXPIRATION_KEY] = datetime.fromtimestamp(int(now + ttl), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for usage in usages:
        data[f"usage-bootstrap-{usage}"] = "true"
    if extra_groups:
        data[EXTRA_GROUPS_KEY] = ",".join(extra_groups)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(parsed[0]), "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
