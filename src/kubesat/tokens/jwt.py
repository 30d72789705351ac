"""JWS compact tokens byte-for-byte as Kubernetes emits them, and the lean verifier for the hot path."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import math
import re
from types import MappingProxyType
from typing import Any
from collections.abc import Collection, Iterable, Mapping

import orjson
import pybase64
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwt.algorithms import get_default_algorithms

from kubesat.tokens.keys import KeySet, SigningKey, VerificationKey

LEGACY_ISSUER = "kubernetes/serviceaccount"
DEFAULT_LEEWAY = 60  # go-jose jwt.DefaultLeeway
MAX_TOKEN_BYTES = 16 * 1024
ALLOWED_ALGS = frozenset({"RS256", "ES256", "ES384", "ES512"})

# Kubernetes' error texts (spec §1.4, §1.5).
NO_KEYS = "invalid signature, no keys found"
CRYPTO_FAILURE = "square/go-jose: error in cryptographic primitive"
EXPIRED = "service account token has expired"
NOT_VALID_YET = "service account token is not valid yet"
ISSUED_IN_FUTURE = "service account token is issued in the future"
BAD_NUMERIC_DATE = "square/go-jose/jwt: expected number value to unmarshal NumericDate"
BAD_AUDIENCE = "square/go-jose/jwt: expected string or array value to unmarshal to Audience"


class TokenError(Exception):
    """A token was rejected. `not_mine` marks the silent cases where another authenticator may try it."""

    def __init__(self, reason: str, *, not_mine: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.not_mine = not_mine

    def __repr__(self) -> str:
        return f"TokenError({self.reason!r}, not_mine={self.not_mine})"


# ---------------------------------------------------------------------------------------------- JSON

# Go's encoders (go-jose's and encoding/json) escape these inside strings; orjson does not.
_HTML_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"))
_LINE_SEPARATORS = (("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))
_ESCAPE_PAIR = re.compile(rb"\\(.)", re.DOTALL)


def _go_short_escape(m: re.Match[bytes]) -> bytes:
    # go-jose's JSON writes only \n, \r, \t as short escapes; other controls as \u00XX.
    c = m.group(1)
    if c == b"b":
        return b"\\u0008"
    if c == b"f":
        return b"\\u000c"
    return m.group(0)


def go_json(obj: Any) -> bytes:
    """Compact JSON with keys sorted at every level and Go's string escaping, as go-jose serialises claims."""
    out = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    # Single-byte searches are memchr-fast; the rarer cases are only looked for when possible.
    for raw, esc in _HTML_ESCAPES:
        if raw in out:
            out = out.replace(raw, esc)
    if not out.isascii():
        for raw, esc in _LINE_SEPARATORS:
            if raw in out:
                out = out.replace(raw, esc)
    if b"\\" in out and (b"\\b" in out or b"\\f" in out):
        # Walk escape pairs so an escaped backslash followed by "b" is left alone.
        out = _ESCAPE_PAIR.sub(_go_short_escape, out)
    return out


# ---------------------------------------------------------------------------------------------- base64url

_ENCODE_TR = bytes.maketrans(b"+/", b"-_")
# Map the url alphabet onto the standard one and the standard-only characters (and padding)
# onto "!", which a validating decoder rejects: one C pass, then a strict standard decode,
# gives a strict base64url check. "." is left alone, so a whole token translates at once.
_DECODE_TR = bytes.maketrans(b"-_+/=", b"+/!!!")
_PAD = (b"", b"", b"==", b"=")
# The standard alphabet, which is what a segment reads as after _DECODE_TR.
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# For a segment whose length is 2 or 3 mod 4, the last character carries 4 or 2 unused bits;
# these tables say whether those bits are zero, so every byte string has exactly one encoding.
_CANON2 = frozenset(c for i, c in enumerate(_ALPHABET) if i & 0x0F == 0)
_CANON3 = frozenset(c for i, c in enumerate(_ALPHABET) if i & 0x03 == 0)
# pybase64's SIMD decoder; validate=True rejects anything outside the standard alphabet and
# misplaced padding. Standard-alphabet input only: see _DECODE_TR.
_std_decode = pybase64.b64decode


def b64encode(data: bytes) -> bytes:
    """base64url without padding."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_ENCODE_TR)


def _decode_translated(seg: bytes) -> bytes:
    """Strictly decode a base64url segment already passed through _DECODE_TR."""
    rem = len(seg) & 3
    if rem == 1:
        raise ValueError("bad base64url length")
    if rem == 2 and seg[-1] not in _CANON2 or rem == 3 and seg[-1] not in _CANON3:
        raise ValueError("non-canonical base64url")
    try:
        return _std_decode(seg + _PAD[rem], validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(str(e)) from None


def b64decode(seg: bytes) -> bytes:
    """Strict base64url without padding; raises ValueError for anything else, including non-canonical tails."""
    return _decode_translated(seg.translate(_DECODE_TR))


# ---------------------------------------------------------------------------------------------- signing

_PYJWT_ALGS = get_default_algorithms()
_HEADER_CACHE: dict[tuple[str, str], bytes] = {}


def encode_header(alg: str, kid: str) -> bytes:
    """The base64url JOSE header Kubernetes writes: {"alg":...,"kid":...}, sorted, no typ."""
    seg = _HEADER_CACHE.get((alg, kid))
    if seg is None:
        seg = b64encode(go_json({"alg": alg, "kid": kid}))
        _HEADER_CACHE[(alg, kid)] = seg
    return seg


def signing_input(claims: dict[str, Any], key: SigningKey) -> bytes:
    """The JWS signing input Kubernetes writes: header {"alg","kid"}, "." and the payload sorted at every level."""
    return encode_header(key.alg, key.kid) + b"." + b64encode(go_json(claims))


def signature(data: bytes, key: SigningKey) -> bytes:
    """The JWS signature over `data` (the primitive alone; cryptography releases the GIL while it runs)."""
    # PyJWT's algorithm objects do the signature (and ECDSA DER -> JOSE r||s).
    return _PYJWT_ALGS[key.alg].sign(data, key.private_key)


def compact(data: bytes, sig: bytes) -> str:
    """signing input + "." + base64url(signature): the compact JWS."""
    return (data + b"." + b64encode(sig)).decode("ascii")


def sign(claims: dict[str, Any], key: SigningKey) -> str:
    """Sign claims as Kubernetes does: header {"alg","kid"}, payload sorted at every level, compact JWS."""
    data = signing_input(claims, key)
    return compact(data, signature(data, key))


# ---------------------------------------------------------------------------------------------- verifying

_PKCS1 = padding.PKCS1v15()
_ECDSA = {
    "ES256": (ec.ECDSA(hashes.SHA256()), 32, "secp256r1"),
    "ES384": (ec.ECDSA(hashes.SHA384()), 48, "secp384r1"),
    "ES512": (ec.ECDSA(hashes.SHA512()), 66, "secp521r1"),
}


# RFC 8017 §9.2 step 2: the DER DigestInfo prefix of a SHA-256 digest.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _verify_rs256(key: VerificationKey, signature: bytes, signing_input: bytes) -> bool:
    # RSASSA-PKCS1-v1_5 as RFC 8017 §8.2.2 words it: OpenSSL applies the public exponent and
    # checks the 00 01 FF..FF 00 padding (verify-recover), and we compare what it recovers
    # with DigestInfo(SHA-256(input)). The same check as public_key.verify(), minus the
    # digest lookup it does per call; cross-checked against verify() and PyJWT in the tests.
    pub = key.public_key
    if not isinstance(pub, rsa.RSAPublicKey):  # RS256 is only ever an RSA key's alg (alg_for)
        return False
    if len(signature) != key.size:  # Go's rsa.VerifyPKCS1v15 wants exactly k bytes
        return False
    try:
        recovered = pub.recover_data_from_signature(signature, _PKCS1, None)
    except (InvalidSignature, ValueError):
        return False
    return hmac.compare_digest(recovered, _SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest())


def _split_compact(token: str) -> tuple[bytes, bytes, bytes, bytes, dict[str, Any]]:
    """(token bytes, header, payload and signature segments in the standard alphabet, claims).

    §1.4 steps 1-2: anything that is not a compact JWS of ours is silently "not mine".
    """
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        raise TokenError("not a compact JWS", not_mine=True)
    raw = token.encode()
    # The whole token goes to the standard alphabet in one pass ("." is kept), so each
    # segment decodes with one strict SIMD pass. The translation is one-to-one on the
    # base64url alphabet, so a translated header is as good a cache key as the raw one.
    parts = raw.translate(_DECODE_TR).split(b".")
    if len(parts) != 3 or (raw[0] in _LEADING and raw.lstrip()[:1] == b"{"):
        raise TokenError("not a compact JWS", not_mine=True)
    hseg, pseg, sseg = parts
    try:
        claims = orjson.loads(_decode_translated(pseg))
    except (ValueError, orjson.JSONDecodeError):
        raise TokenError("payload is not base64url JSON", not_mine=True) from None
    if type(claims) is not dict:
        raise TokenError("payload is not a JSON object", not_mine=True)
    return raw, hseg, pseg, sseg, claims


def _check_signature(candidates: tuple[VerificationKey, ...], alg: str, signature: bytes,
                     signing_input: bytes) -> None:
    """Steps 3-4: one of the candidate keys verifies the signature, or the token is refused."""
    if not candidates:
        raise TokenError(NO_KEYS)
    for key in candidates:
        if _verify_one(key, alg, signature, signing_input):
            return
    raise TokenError(CRYPTO_FAILURE)


def _verify_one(key: VerificationKey, alg: str, signature: bytes, signing_input: bytes) -> bool:
    # An alg that is not the key's own (none, HS256 with the public key as secret, ES vs RSA,
    # ES384 on a P-256 key) fails like a bad signature, as go-jose reports it.
    if alg != key.alg:
        return False
    if alg == "RS256":
        return _verify_rs256(key, signature, signing_input)
    scheme, size, _ = _ECDSA[alg]
    pub = key.public_key
    if len(signature) != 2 * size or not isinstance(pub, ec.EllipticCurvePublicKey):
        return False
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    try:
        pub.verify(encode_dss_signature(r, s), signing_input, scheme)
        return True
    except (InvalidSignature, ValueError):
        return False


def _go_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "string"


_STRING_CLAIMS = ("iss", "sub", "jti")
_TIME_CLAIMS = ("exp", "nbf", "iat")


def _numeric_date(v: Any) -> int:
    # go-jose's NumericDate: any finite JSON number, truncated to whole seconds.
    if type(v) is int:
        return v
    if type(v) is float and math.isfinite(v):
        return int(v)
    raise TokenError(BAD_NUMERIC_DATE)


def check_registered_claims(claims: dict[str, Any]) -> None:
    """Type-check the registered claims as go-jose's jwt.Claims unmarshalling does (null counts as absent)."""
    for name in _STRING_CLAIMS:
        v = claims.get(name)
        if v is not None and type(v) is not str:
            raise TokenError(f"json: cannot unmarshal {_go_type(v)} into Go struct field Claims.{name} of type string")
    for name in _TIME_CLAIMS:
        v = claims.get(name)
        if v is not None:
            _numeric_date(v)
    aud = claims.get("aud")
    if aud is not None and type(aud) is not str and (type(aud) is not list or not all(type(a) is str for a in aud)):
        raise TokenError(BAD_AUDIENCE)


def check_time_claims(claims: dict[str, Any], now: float, leeway: float = DEFAULT_LEEWAY) -> None:
    """§1.5 time checks in go-jose order (nbf, exp, iat); a claim that is absent is not checked.

    Legacy tokens carry none of these claims, so they pass untouched. NumericDates are whole
    seconds (go-jose truncates fractions); `now` may carry a fraction, as Go's clock does.
    """
    nbf = claims.get("nbf")
    if nbf is not None and now + leeway < _numeric_date(nbf):
        raise TokenError(NOT_VALID_YET)
    exp = claims.get("exp")
    if exp is not None and now - leeway > _numeric_date(exp):
        raise TokenError(EXPIRED)
    iat = claims.get("iat")
    if iat is not None and now + leeway < _numeric_date(iat):
        raise TokenError(ISSUED_IN_FUTURE)


def token_audiences(claims: dict[str, Any]) -> list[str]:
    """`aud` as a list (a single string is one audience)."""
    aud = claims.get("aud")
    if aud is None:
        return []
    return [aud] if isinstance(aud, str) else list(aud)


def _go_quote_list(items: Iterable[str]) -> str:
    # Go's %q on a []string: ["a" "b"]
    return "[" + " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in items) + "]"


def match_audiences(
    claims: dict[str, Any], requested: Collection[str] | None, implicit: Collection[str] = ()
) -> list[str]:
    """§1.4 step 6: the token's audiences (the implicit API audiences for a legacy token) ∩ requested.

    `requested` None means the API audiences. An empty intersection fails when the API
    audiences are set (as Kubernetes does) or when audiences were asked for explicitly.
    """
    token_auds = token_audiences(claims) or list(implicit)
    wanted = list(implicit) if requested is None else list(requested)
    wanted_set = set(wanted)
    auds = [a for a in token_auds if a in wanted_set]
    if not auds and (implicit or requested is not None):
        raise TokenError(
            f"token audiences {_go_quote_list(token_auds)} is invalid for the target audiences {_go_quote_list(wanted)}"
        )
    return auds


_LEADING = frozenset(b"{ \t\r\n\v\f")


class Verifier:
    """Verifies Kubernetes service-account JWTs: strict parsing, alg allow-list, kid lookup, one verify.

    `issuers` (None: any) decides which tokens are ours; other issuers raise a `not_mine`
    TokenError. `implicit_audiences` are the API audiences (used for legacy tokens and when no
    audiences are requested). With `check_times`, bound tokens get the §1.5 time checks after
    the audience check, which is Kubernetes' order; tokens with the legacy issuer get none.
    """

    _MAX_HEADERS = 64

    def __init__(
        self,
        issuers: Collection[str] | None = None,
        *,
        implicit_audiences: Collection[str] = (),
        check_times: bool = True,
        leeway: float = DEFAULT_LEEWAY,
    ) -> None:
        self.issuers = frozenset(issuers) if issuers is not None else None
        self.implicit_audiences = tuple(implicit_audiences)
        self._implicit_set = frozenset(self.implicit_audiences)
        self.check_times = check_times
        self.leeway = leeway
        # header segment -> (alg, kid, header); bounded so junk headers cannot grow it.
        self._headers: dict[bytes, tuple[str, str, Mapping[str, Any]]] = {}

    def _header(self, seg: bytes) -> tuple[str, str, Mapping[str, Any]]:
        # `seg` is the header segment after _DECODE_TR; verify() looks in the cache first.
        try:
            header = orjson.loads(_decode_translated(seg))
        except (ValueError, orjson.JSONDecodeError):
            raise TokenError("malformed JWS header", not_mine=True) from None
        if not isinstance(header, dict):
            raise TokenError("malformed JWS header", not_mine=True)
        alg = header.get("alg", "")
        kid = header.get("kid", "")
        if not isinstance(alg, str) or not isinstance(kid, str):
            raise TokenError("malformed JWS header", not_mine=True)
        if alg not in ALLOWED_ALGS or "crit" in header or "b64" in header:
            # Still resolved against the keys first (so "no keys found" wins), then fails
            # as a bad signature, which is what go-jose reports.
            alg = ""
        entry = (alg, kid, MappingProxyType(header))
        if len(self._headers) >= self._MAX_HEADERS:
            self._headers.clear()
        self._headers[seg] = entry
        return entry

    def verify(
        self,
        token: str,
        keys: KeySet,
        now: float,
        *,
        audiences: Collection[str] | None = None,
    ) -> tuple[Mapping[str, Any], dict[str, Any]]:
        """Return (header, claims) of a valid token or raise TokenError with Kubernetes' reason.

        The header is shared between calls (read-only); the claims are the caller's own.
        """
        raw, hseg, pseg, sseg, claims = _split_compact(token)
        iss = claims.get("iss")
        if self.issuers is not None and (type(iss) is not str or iss not in self.issuers):
            raise TokenError("issuer not accepted", not_mine=True)
        alg, kid, header = self._headers.get(hseg) or self._header(hseg)
        try:
            signature = _decode_translated(sseg)
        except ValueError:
            raise TokenError("malformed JWS signature", not_mine=True) from None

        # Steps 3-4: keys by kid, one verify per candidate.
        _check_signature(keys.candidates(kid, now), alg, signature, raw[: len(hseg) + 1 + len(pseg)])

        # Registered-claim types, step 6 (audiences), then the bound validator's time checks
        # (§1.5). The common shape (int dates, str ids, list aud) takes the inline path.
        if self._checked_common_shape(claims, iss, now, audiences):
            return header, claims
        check_registered_claims(claims)
        if audiences is not None or self._implicit_set:
            match_audiences(claims, audiences, self.implicit_audiences)
        if self.check_times and iss != LEGACY_ISSUER:
            check_time_claims(claims, now, self.leeway)
        return header, claims

    def _checked_common_shape(self, claims: dict[str, Any], iss: Any, now: float,
                              audiences: Collection[str] | None) -> bool:
        """The claim checks for the common shape, inline; False (nothing checked) for any other shape."""
        get = claims.get
        nbf, exp, iat, aud = get("nbf"), get("exp"), get("iat"), get("aud")
        sub, jti = get("sub"), get("jti")
        if (
            type(exp) is int and type(nbf) is int and type(iat) is int
            and type(sub) is str and (jti is None or type(jti) is str)
            and type(aud) is list and audiences is None and self._implicit_set
        ):
            for a in aud:
                if type(a) is not str:
                    raise TokenError(BAD_AUDIENCE)
            for a in aud:
                if a in self._implicit_set:
                    break
            else:
                match_audiences(claims, None, self.implicit_audiences)
            if self.check_times and iss != LEGACY_ISSUER:
                leeway = self.leeway
                if now + leeway < nbf:
                    raise TokenError(NOT_VALID_YET)
                if now - leeway > exp:
                    raise TokenError(EXPIRED)
                if now + leeway < iat:
                    raise TokenError(ISSUED_IN_FUTURE)
            return True
        return False
