"""The kubelet token manager's refresh rule, with time and randomness passed in (pkg/kubelet/token/token_manager.go).

A token is refreshed once it is older than 80 % of its lifetime or older than 24 hours, each brought forward by a
jitter of up to 10 whole seconds, or at once if the clock says it was issued in the future. Its lifetime is the
one the server returned: `status.expirationTimestamp` and `spec.expirationSeconds` of the TokenRequest, which for
an extended kube-api-access token is the hour (3607 s) and not the year in the JWT's `exp`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MAX_TTL = 24 * 3600.0
MAX_JITTER = 10.0


class TokenFormatError(ValueError):
    """The string is not a JWT whose payload carries numeric iat and exp."""


def jitter_seconds(jitter: float) -> float:
    """The kubelet's jitter: whole seconds of `jitter` (drawn in [0, 1)) times 10 s."""
    return float(int(jitter * MAX_JITTER))


def stable_jitter(token: str) -> float:
    """A token's jitter draw in [0, 1), derived from its bytes (the first 64 bits of its SHA-256).

    The kubelet draws a new one at every check; a draw fixed per token keeps the refresh point where it was
    when the agent restarts and adopts the token, and is as spread out across pods as a random one.
    """
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big") / 2.0 ** 64


def refresh_at(issued_at: float, expires_at: float, jitter: float = 0.0) -> float:
    """The instant after which the token needs refreshing (the earlier of the 80 % and the 24 h mark)."""
    j = jitter_seconds(jitter)
    lifetime = int(expires_at - issued_at)
    by_age = issued_at + MAX_TTL - j
    by_lifetime = expires_at - (lifetime * 20) // 100 - j
    return min(by_age, by_lifetime)


def requires_refresh(issued_at: float, expires_at: float, now: float, jitter: float = 0.0) -> bool:
    """The kubelet's requiresRefresh: past `refresh_at`, or issued after `now` (the system clock leapt back)."""
    return now > refresh_at(issued_at, expires_at, jitter) or now < issued_at


def expired(expires_at: float, now: float) -> bool:
    return now > expires_at


def _b64json(segment: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise TokenFormatError(f"token payload is not base64url JSON: {exc}") from exc


def token_claims(token: str) -> dict[str, Any]:
    """The JWT's payload, not verified: the agent only reads times it was handed by the server."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise TokenFormatError("token is not a JWS compact serialization (three dot-separated parts)")
    claims = _b64json(parts[1])
    if not isinstance(claims, dict):
        raise TokenFormatError("token payload is not a JSON object")
    return claims


def _number(claims: dict[str, Any], name: str) -> float:
    v = claims.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TokenFormatError(f"token has no numeric {name}")
    return float(v)


def token_times(token: str) -> tuple[float, float]:
    """(iat, exp) from the JWT payload, unverified."""
    claims = token_claims(token)
    return _number(claims, "iat"), _number(claims, "exp")


def token_lifetime(token: str) -> tuple[float, float]:
    """(issued, expires) as the TokenRequest status would have said them, read back from a token on disk.

    An extended token's `exp` is a year away; its `kubernetes.io.warnafter` is the expiry the server reported
    (iat + 3607), and the kubelet rotates on that. Used to adopt a token after an agent restart.
    """
    claims = token_claims(token)
    iat, exp = _number(claims, "iat"), _number(claims, "exp")
    k8s = claims.get("kubernetes.io")
    if isinstance(k8s, dict):
        warn = k8s.get("warnafter")
        if isinstance(warn, (int, float)) and not isinstance(warn, bool) and iat < warn < exp:
            return iat, float(warn)
    return iat, exp


def parse_time(value: str) -> float:
    """An RFC 3339 timestamp (`2026-12-03T10:15:30Z`) as POSIX seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def token_request_times(token_request: dict[str, Any]) -> tuple[float, float]:
    """(issued, expires) of a TokenRequest response, as the kubelet derives them.

    expires = status.expirationTimestamp; issued = expires - spec.expirationSeconds (the kubelet's iat).
    """
    status = token_request.get("status") or {}
    spec = token_request.get("spec") or {}
    exp = parse_time(str(status.get("expirationTimestamp")))
    seconds = spec.get("expirationSeconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        # The kubelet logs "Expiration seconds was nil for token request" and never refreshes; read the JWT.
        iat, _ = token_lifetime(str(status.get("token", "")))
        return iat, exp
    return exp - seconds, exp


@dataclass
class Backoff:
    """Exponential backoff for failed refreshes: initial, initial*factor, ... capped, with optional jitter.

    The kubelet has no backoff of its own (the next pod sync retries); the agent's timer needs one so that a
    down server is not hammered. Meanwhile the old token stays in its file.
    """

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.1  # each delay is stretched by up to this fraction
    rand: Callable[[], float] = field(default=random.random, repr=False)
    failures: int = 0

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next try."""
        delay = min(self.cap, self.initial * self.factor ** self.failures)
        self.failures += 1
        return min(self.cap, delay * (1 + self.jitter * self.rand()))

    def reset(self) -> None:
        """A success: the next failure starts again from `initial`."""
        self.failures = 0


def next_attempt(issued_at: float, expires_at: float, now: float, jitter: float, backoff: Backoff | None = None,
                 failed: bool = False) -> float:
    """When the agent should next try to refresh this token.

    After a failure, `now` plus the backoff's next delay (which counts the failure); otherwise `refresh_at`,
    and a success resets the backoff.
    """
    if failed and backoff is not None:
        return now + backoff.next_delay()
    if backoff is not None:
        backoff.reset()
    return max(now, refresh_at(issued_at, expires_at, jitter))


def fetch_error(key: str, err: str, had_token: bool, token_expired: bool) -> str | None:
    """The kubelet's outcome of a failed TokenRequest: an error to report, or None to keep serving the old token."""
    if not had_token:
        return f"failed to fetch token: {err}"
    if token_expired:
        return f"token {key} expired and refresh failed: {err}"
    return None
