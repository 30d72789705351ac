"""Issuing tokens: TokenRequest's defaults, limits, the extended-expiration rule, and signing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Required, TypedDict, TypeVar, Unpack
from collections.abc import Callable

from kubesat import ids, metrics
from kubesat.tokens import claims as claimsmod
from kubesat.tokens.jwt import compact, sign, signature, signing_input
from kubesat.tokens.keys import KeyRetired, KeySet, SigningKey

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
# A rotation during a request costs one more signature; several in a row within one request is not
# an operator rotating keys, and the request fails rather than loop.
SIGN_ATTEMPTS = 3

T = TypeVar("T")


class KeySource(Protocol):
    """Where the current keys come from (the data dir's key store, reloaded on rotation)."""

    def keyset(self) -> KeySet: ...

    def record_issued(self, kid: str, exp: int | None, legacy: bool = False) -> None:
        """Make the key's retirement cover this token, before it is answered.

        Raises KeyRetired when the key was retired meanwhile; keyset() then has its successor.
        """


def signature_counter(where: str) -> Callable[[], None]:
    """Increments kubesat_token_signatures_total{signer=where}."""
    return metrics.kubesat_token_signatures_total.labels(where).inc


_count_in_server = signature_counter("server")


class AsyncSigner(Protocol):
    """Makes a JWS signature somewhere other than the event loop (see kubesat.tokens.signer)."""

    async def sign(self, data: bytes, key: SigningKey) -> bytes: ...


class StaticKeys:
    """A fixed KeySet, for tests and embedders."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    def keyset(self) -> KeySet:
        return self._keys

    def record_issued(self, kid: str, exp: int | None, legacy: bool = False) -> None:
        return None


@dataclass
class TokenOptions:
    issuers: tuple[str, ...] = (DEFAULT_ISSUER,)
    api_audiences: tuple[str, ...] = ()  # empty: the issuers
    max_expiration: int = 0  # 0: no cap
    extend_expiration: bool = True
    jwks_uri: str = ""
    lookup: bool = True  # legacy tokens: check the Secret still holds the token
    extra_key_files: tuple[str, ...] = ()
    signing_alg: str = "RS256"
    signing_processes: int = 1  # helper processes making RSA signatures; 0: sign in the server process
    legacy_cleanup_days: float = 0  # 0: the legacy token cleaner does not run

    @property
    def audiences(self) -> tuple[str, ...]:
        return self.api_audiences or self.issuers


def validate_options(o: TokenOptions) -> list[str]:
    """Flag errors, worded as kube-apiserver words them."""
    errs = []
    if not o.issuers:
        errs.append("service-account-issuer is a required flag")
    seen: set[str] = set()
    for iss in o.issuers:
        if not iss:
            errs.append("service-account-issuer should not be an empty string")
        elif iss in seen:
            errs.append(f'service-account-issuer "{iss}" is already specified')
        seen.add(iss)
    if o.max_expiration and not (3600 <= o.max_expiration <= MAX_EXPIRATION):
        errs.append("the service-account-max-token-expiration must be between 1 hour and 2^32 seconds")
    if o.jwks_uri and not o.jwks_uri.startswith("https://"):
        errs.append(f"service-account-jwks-uri requires https scheme, parsed as: {o.jwks_uri}")
    if o.signing_alg not in ("RS256", "ES256"):
        errs.append(f'service-account-signing-alg must be RS256 or ES256, got "{o.signing_alg}"')
    return errs


class BoundToken(TypedDict, total=False):
    """What a bound token (TokenRequest) is for: issue_bound's keyword arguments."""

    namespace: Required[str]
    sa_name: Required[str]
    sa_uid: Required[str]
    audiences: Required[list[str]]
    expiration_seconds: Required[int]
    # What the token is bound to, as (name, uid) pairs.
    pod: tuple[str, str] | None
    secret: tuple[str, str] | None
    node: tuple[str, str] | None
    now: float | None


@dataclass
class Issued:
    token: str
    expiration_timestamp: float  # what status.expirationTimestamp reports (not the extended exp)
    expiration_seconds: int  # after the cap
    jti: str
    warnings: list[str] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)


class TokenIssuer:
    def __init__(self, keys: KeySource, options: TokenOptions, *, clock: Callable[[], float] = time.time,
                 signer: AsyncSigner | None = None) -> None:
        self.keys = keys
        self.options = options
        self.clock = clock
        self.signer = signer

    def _signing(self) -> SigningKey:
        ks = self.keys.keyset()
        if ks.signing is None:
            raise RuntimeError("no service-account signing key is loaded")
        return ks.signing

    async def issue_bound_async(self, **kw: Unpack[BoundToken]) -> Issued:
        """issue_bound with an RSA signature made by `self.signer` (the helper processes), if set.

        Only the signing primitive leaves the event loop; claims, JSON and base64 stay on it.
        ECDSA signs faster than a hand-over costs and is always made here.
        """
        for attempt in range(1, SIGN_ATTEMPTS + 1):  # inline, not via _until_recorded: no extra coroutine per token
            issued, key, data = self._prepare(**kw)
            if key.alg != "RS256":
                sig = signature(data, key)
            elif self.signer is not None:
                sig = await self.signer.sign(data, key)  # counts where it signed
            else:
                sig = signature(data, key)
                _count_in_server()
            try:
                return self._finish(issued, key, data, sig)
            except KeyRetired:
                # keyset() now holds the key that replaced it: the next attempt signs with that.
                if attempt == SIGN_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def issue_bound(self, **kw: Unpack[BoundToken]) -> Issued:
        """A bound token (TokenRequest): defaults, the max-expiration cap and the 3607 s extension, signed."""

        def once() -> Issued:
            issued, key, data = self._prepare(**kw)
            return self._finish(issued, key, data, signature(data, key))

        return _until_recorded(once)

    def _finish(self, issued: Issued, key: SigningKey, data: bytes, sig: bytes) -> Issued:
        """The token, once its key's retirement covers it (KeyRetired: sign it again)."""
        self.keys.record_issued(key.kid, issued.claims["exp"])
        issued.token = compact(data, sig)
        return issued

    def _prepare(
        self,
        *,
        namespace: str,
        sa_name: str,
        sa_uid: str,
        audiences: list[str],
        expiration_seconds: int,
        pod: tuple[str, str] | None = None,
        secret: tuple[str, str] | None = None,
        node: tuple[str, str] | None = None,
        now: float | None = None,
    ) -> tuple[Issued, SigningKey, bytes]:
        now = self.clock() if now is None else now
        warnings = []
        exp_s = expiration_seconds
        cap = self.options.max_expiration
        if cap and exp_s > cap:
            warnings.append(f"requested expiration of {exp_s} seconds shortened to {cap} seconds")
            exp_s = cap
        warn_after = None
        exp_override = None
        api_auds = set(self.options.audiences)
        if (
            self.options.extend_expiration
            and pod is not None
            and exp_s == claimsmod.WARN_ONLY_BOUND_TOKEN_EXPIRATION
            and set(audiences) <= api_auds
        ):
            warn_after = exp_s
            exp_override = int(now) + claimsmod.EXPIRATION_EXTENSION_SECONDS
        jti = ids.uuid4()
        c = claimsmod.bound_claims(
            issuer=self.options.issuers[0],
            audiences=audiences,
            namespace=namespace,
            sa_name=sa_name,
            sa_uid=sa_uid,
            expiration_seconds=exp_s,
            now=now,
            jti=jti,
            pod=pod,
            secret=secret,
            node=node,
            warn_after=warn_after,
            exp_override=exp_override,
        )
        key = self._signing()
        return Issued("", int(now) + exp_s, exp_s, jti, warnings, c), key, signing_input(c, key)

    def issue_legacy(self, *, namespace: str, secret_name: str, sa_name: str, sa_uid: str) -> str:
        c = claimsmod.legacy_claims(namespace=namespace, secret_name=secret_name, sa_name=sa_name, sa_uid=sa_uid)
        return self.sign_legacy_claims(c)

    def sign_legacy_claims(self, c: dict[str, Any]) -> str:
        """Sign a never-expiring legacy Secret token; the key store remembers the key must live on."""

        def once() -> str:
            key = self._signing()
            token = sign(c, key)
            self.keys.record_issued(key.kid, None, legacy=True)
            return token

        return _until_recorded(once)


def _until_recorded(sign_once: Callable[[], T]) -> T:
    """sign_once() signs and records; a key retired meanwhile means signing again, with its successor."""
    for _ in range(SIGN_ATTEMPTS - 1):
        try:
            return sign_once()
        except KeyRetired:
            pass
    return sign_once()
