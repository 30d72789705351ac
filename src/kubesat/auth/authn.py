"""Request authentication: x509 client certificates, bearer tokens, then anonymous.

The TLS layer has already verified a presented client certificate against the cluster CA
(CERT_OPTIONAL, as kube-apiserver does); here the verified certificate becomes a user
(CN = name, O = groups). Bearer tokens go to the token authenticators in order; a token
none of them accepts is a 401, never a fall-through to anonymous.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Protocol
from collections.abc import Awaitable, Callable

from cryptography import x509
from cryptography.x509.oid import NameOID

from kubesat.auth.user import ANONYMOUS_USER, UserInfo, with_authenticated_group

log = logging.getLogger("kubesat.authn")

CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"

# What Go's unicode.IsSpace accepts: ASCII first (every real header), then the rest of Unicode.
_ASCII_SPACE = "\t\n\v\f\r "
_UNICODE_SPACE = (_ASCII_SPACE + "\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
                  + "\u2028\u2029\u202f\u205f\u3000")


_COMPLETED_MAX = 4096


class AuthenticationFailed(Exception):
    """The request carried a credential that is not valid. The reason is for logs, never the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenResult:
    user: UserInfo
    audiences: tuple[str, ...] = ()
    # Audit annotations and response warnings the authenticator wants on the request.
    annotations: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthResult:
    user: UserInfo
    token: TokenResult | None = None


class TokenAuthenticator(Protocol):
    async def authenticate_token(self, token: str, audiences: tuple[str, ...] | None) -> TokenResult | None:
        """None: not my token (let the next one try). Raise AuthenticationFailed: mine, but invalid."""
        ...


def bearer_token(authorization: str) -> str:
    """The token of an Authorization header value as Kubernetes reads it; "" when it holds none.

    The value is trimmed of surrounding whitespace and split at single spaces: the first field must
    be "bearer" (any case), the second is the token and any further fields are ignored. So
    "Bearer  t" (two spaces) has an empty token, and "Bearer t x" the token "t".
    """
    value = authorization.strip(_ASCII_SPACE) if authorization.isascii() else _trim_unicode_space(authorization)
    scheme, _, rest = value.partition(" ")  # the fields of split(" ", 2) without its list: ~3x faster
    if scheme.lower() != "bearer":
        return ""
    return rest.partition(" ")[0]


def _trim_unicode_space(value: str) -> str:
    """Go's strings.TrimSpace on the header's bytes (the value arrives decoded as latin-1): Go trims
    Unicode spaces of the UTF-8 text, and an invalid byte (kept here as a surrogate) stops the trim."""
    text = value.encode("latin-1").decode("utf-8", "surrogateescape").strip(_UNICODE_SPACE)
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def user_from_certificate(der: bytes) -> UserInfo:
    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        raise AuthenticationFailed("client certificate has no common name")
    orgs = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    fingerprint = hashlib.sha256(der).hexdigest()
    return UserInfo(str(cns[0].value), "", orgs, {CREDENTIAL_ID: (f"X509SHA256={fingerprint}",)})


class RequestAuthenticator:
    def __init__(self, *, anonymous: bool = True) -> None:
        self.anonymous = anonymous
        self.token_authenticators: list[TokenAuthenticator] = []
        self._cert_cache: dict[bytes, UserInfo] = {}
        # id(result) -> (an authenticator's result, the same with system:authenticated): an authenticator
        # that caches hands out the same result object again, and then gets the same answer back.
        self._completed: dict[int, tuple[TokenResult, TokenResult]] = {}

    def certificate_user(self, der: bytes) -> UserInfo:
        user = self._cert_cache.get(der)
        if user is None:
            user = with_authenticated_group(user_from_certificate(der))
            if len(self._cert_cache) > 1024:
                self._cert_cache.clear()
            self._cert_cache[der] = user
        return user

    async def authenticate_token(self, token: str, audiences: tuple[str, ...] | None = None) -> TokenResult:
        """Run the token authenticators; raises AuthenticationFailed if none accepts the token."""
        errors: list[str] = []
        for a in self.token_authenticators:
            try:
                res = await a.authenticate_token(token, audiences)
            except AuthenticationFailed as e:
                errors.append(e.reason)
                continue
            if res is not None:
                return self._complete(res)
        if not errors:
            errors.append("invalid bearer token")
        elif len(errors) == 1:
            errors.insert(0, "invalid bearer token")
        raise AuthenticationFailed("[" + ", ".join(errors) + "]" if len(errors) > 1 else errors[0])

    def _complete(self, res: TokenResult) -> TokenResult:
        """`res` with system:authenticated among the user's groups (the same object for the same result)."""
        hit = self._completed.get(id(res))
        if hit is not None and hit[0] is res:  # holding `res` keeps its id from being reused meanwhile
            return hit[1]
        user = with_authenticated_group(res.user)
        out = res if user is res.user else TokenResult(user, res.audiences, res.annotations, res.warnings)
        if len(self._completed) >= _COMPLETED_MAX:
            self._completed.clear()
        self._completed[id(res)] = (res, out)
        return out

    async def authenticate(self, cert_der: bytes | None, authorization: str | None) -> AuthResult:
        # kube-apiserver asks its authenticators in turn, the client certificate before bearer tokens,
        # and the first that accepts the request wins: a verified certificate is the user even when a
        # token (valid or not) comes with it.
        cert_error: AuthenticationFailed | None = None
        if cert_der:
            try:
                return AuthResult(self.certificate_user(cert_der))
            except AuthenticationFailed as e:
                cert_error = e
        token = bearer_token(authorization) if authorization else ""
        if token:
            res = await self.authenticate_token(token)
            return AuthResult(res.user, res)
        # No bearer token (none, another scheme, or an empty one): as in Kubernetes, the request
        # is anonymous, not refused, unless a certificate failed.
        if cert_error is not None:
            raise cert_error
        if self.anonymous:
            return AuthResult(ANONYMOUS_USER)
        raise AuthenticationFailed("no credentials and anonymous authentication is disabled")


AuthenticateFn = Callable[[bytes | None, str | None], Awaitable[AuthResult]]
