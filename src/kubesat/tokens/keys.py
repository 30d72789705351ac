"""Service-account signing and verification keys: Kubernetes' kid, algorithms, PEM loading and the JWKS."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable
from typing import overload

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# What a PEM block may hold: any key cryptography can load, supported here or not.
AnyKey = PublicKeyTypes | PrivateKeyTypes

# curve name -> (JOSE alg, JWK crv, coordinate size in bytes)
_CURVES: dict[str, tuple[str, str, int]] = {
    "secp256r1": ("ES256", "P-256", 32),
    "secp384r1": ("ES384", "P-384", 48),
    "secp521r1": ("ES512", "P-521", 66),
}

_BAD_CURVE = "unknown private key curve, must be 256, 384, or 521"
_NO_KEYS = "data does not contain any valid RSA or ECDSA public keys"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@overload
def _public(key: PublicKey | PrivateKey) -> PublicKey: ...
@overload
def _public(key: AnyKey) -> AnyKey: ...
def _public(key: AnyKey) -> AnyKey:
    # Private keys stand for their public half everywhere a key is only looked at.
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return key.public_key()
    return key


def key_id(public_key: PublicKey | PrivateKey) -> str:
    """Kubernetes' kid: base64url (unpadded) SHA-256 of the PKIX SubjectPublicKeyInfo DER; not RFC 7638."""
    der = _public(public_key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64(hashlib.sha256(der).digest())


def alg_for(key: PublicKey | PrivateKey) -> str:
    """The one JOSE algorithm Kubernetes uses for a key: RS256 for any RSA key, ES256/384/512 by curve."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RS256"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        spec = _CURVES.get(key.curve.name)
        if spec is None:
            raise ValueError(_BAD_CURVE)
        return spec[0]
    if _is_private(key):
        raise ValueError(
            f"unknown private key type {_type_name(key)}, "
            "must be *rsa.PrivateKey, *ecdsa.PrivateKey, or jose.OpaqueSigner"
        )
    raise ValueError("unknown public key type, must be *rsa.PublicKey, *ecdsa.PublicKey, or jose.OpaqueSigner")


def _is_private(key: object) -> bool:
    return "Private" in type(key).__name__ or hasattr(key, "private_bytes")


def _type_name(key: object) -> str:
    # Name the cryptography interface (e.g. Ed25519PrivateKey), not its private Rust class.
    for base in type(key).__mro__:
        if not base.__name__.startswith("_") and base.__module__.startswith("cryptography"):
            return base.__name__
    return type(key).__name__


# ---------------------------------------------------------------------------------------------- PEM

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)


def _parse_block(kind: str, der: bytes) -> AnyKey | None:
    """One PEM block -> a key or certificate public key; None for blocks that are not keys."""
    loaders: list[Callable[[bytes], AnyKey]]
    if kind == "CERTIFICATE":
        loaders = [lambda d: x509.load_der_x509_certificate(d).public_key()]
    elif kind.endswith("PRIVATE KEY"):  # PKCS#8, PKCS#1 ("RSA ...") and SEC1 ("EC ...")
        loaders = [lambda d: serialization.load_der_private_key(d, password=None)]
    elif kind.endswith("PUBLIC KEY"):  # PKIX, and PKCS#1 "RSA PUBLIC KEY"
        loaders = [serialization.load_der_public_key]
    else:
        # Kubernetes tolerates non-key blocks such as "EC PARAMETERS" next to a key.
        return None
    err: Exception | None = None
    for load in loaders:
        try:
            return load(der)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            err = e
    raise ValueError(f"{kind} block could not be parsed ({_short(err)})")


def _short(err: Exception | None) -> str:
    text = str(err).splitlines()[0] if err and str(err) else type(err).__name__
    return text[:120]


def load_pem_keys(data: bytes, source: str) -> list[PublicKey]:
    """Every RSA/ECDSA public key in a PEM file (public keys, private keys, certificates), as public keys."""
    keys: list[PublicKey] = []
    problems: list[str] = []
    for i, m in enumerate(_PEM_BLOCK.finditer(data), start=1):
        kind = m.group(1).decode("ascii")
        body = m.group(2)
        if b"Proc-Type:" in body or b"ENCRYPTED" in kind.encode():
            problems.append(f"block {i} ({kind}) is encrypted, which is not supported")
            continue
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"block {i} ({kind}) is not valid base64")
            continue
        try:
            key = _parse_block(kind, der)
        except ValueError as e:
            problems.append(f"block {i}: {e}")
            continue
        if key is None:
            continue
        key = _public(key)
        if isinstance(key, rsa.RSAPublicKey):
            keys.append(key)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if key.curve.name not in _CURVES:
                raise ValueError(
                    f"error reading public key file {source}: block {i} ({kind}): {_BAD_CURVE}"
                )
            keys.append(key)
        else:
            problems.append(f"block {i} ({kind}) holds a {_type_name(key)}, only RSA and ECDSA keys are supported")
    if not keys:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise ValueError(f"error reading public key file {source}: {_NO_KEYS}{detail}")
    return keys


def load_pem_private_key(data: bytes, source: str) -> PrivateKey:
    """The first RSA/ECDSA private key in a PEM file (the signing key file)."""
    for m in _PEM_BLOCK.finditer(data):
        kind = m.group(1).decode("ascii")
        if not kind.endswith("PRIVATE KEY"):
            continue
        try:
            der = base64.b64decode(b"".join(m.group(2).split()), validate=True)
            key = serialization.load_der_private_key(der, password=None)
        except (binascii.Error, ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise ValueError(f"error reading private key file {source}: {kind} block could not be parsed "
                             f"({_short(e)})") from None
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise ValueError(f"error reading private key file {source}: {_type_name(key)} is not an RSA or ECDSA key")
        alg_for(key)  # rejects unsupported curves with Kubernetes' message
        return key
    raise ValueError(f"error reading private key file {source}: data does not contain a valid RSA or ECDSA private key")


# ---------------------------------------------------------------------------------------------- keys


class KeyRetired(RuntimeError):
    """A token was signed with a key that has been retired meanwhile: it must not be answered; sign it again."""


class SigningKey:
    """The current private key with its Kubernetes kid and JOSE alg."""

    __slots__ = ("private_key", "public_key", "kid", "alg")

    def __init__(self, private_key: PrivateKey) -> None:
        self.alg = alg_for(private_key)  # raises Kubernetes' errors for other types/curves
        self.private_key = private_key
        self.public_key: PublicKey = private_key.public_key()
        self.kid = key_id(self.public_key)

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r})"


@dataclass(frozen=True)
class VerificationKey:
    """A public key accepted for verification and published in the JWKS until `not_after` (epoch s)."""

    public_key: PublicKey
    kid: str
    alg: str
    not_after: float | None = None
    # Signature length in bytes for an RSA key (the modulus size), 0 for EC keys.
    size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pub = self.public_key
        object.__setattr__(self, "size", (pub.key_size + 7) // 8 if isinstance(pub, rsa.RSAPublicKey) else 0)

    @classmethod
    def of(cls, key: PublicKey | PrivateKey, not_after: float | None = None) -> VerificationKey:
        pub = _public(key)
        return cls(pub, key_id(pub), alg_for(pub), not_after)

    def live(self, now: float | None) -> bool:
        return now is None or self.not_after is None or now <= self.not_after

    def jwk(self) -> dict[str, str]:
        """The public JWK in go-jose's field order: use, kty, kid, crv, alg, x, y, n, e."""
        pub = self.public_key
        if isinstance(pub, rsa.RSAPublicKey):
            nums = pub.public_numbers()
            return {
                "use": "sig",
                "kty": "RSA",
                "kid": self.kid,
                "alg": self.alg,
                "n": _b64(_int_bytes(nums.n)),
                "e": _b64(_int_bytes(nums.e)),
            }
        _, crv, size = _CURVES[pub.curve.name]
        pnums = pub.public_numbers()
        return {
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": crv,
            "alg": self.alg,
            "x": _b64(pnums.x.to_bytes(size, "big")),
            "y": _b64(pnums.y.to_bytes(size, "big")),
        }


def _int_bytes(n: int) -> bytes:
    # Minimal big-endian, as go-jose writes n and e (65537 -> AQAB).
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


class KeySet:
    """The current signing key plus every public key accepted for verification, indexed by kid.

    Verification keys are the signing key's public half, retired keys (each until its
    `not_after`) and keys from extra files. A key listed twice is kept once; the longest
    lifetime wins, so a retired copy never shortens the current key.
    """

    def __init__(
        self,
        signing: SigningKey | None = None,
        *,
        retired: Iterable[tuple[PublicKey | PrivateKey, float | None]] = (),
        extra: Iterable[PublicKey | PrivateKey | VerificationKey] = (),
    ) -> None:
        self.signing = signing
        merged: dict[str, VerificationKey] = {}

        def add(vk: VerificationKey) -> None:
            old = merged.get(vk.kid)
            if old is None:
                merged[vk.kid] = vk
            elif old.not_after is not None and (vk.not_after is None or vk.not_after > old.not_after):
                merged[vk.kid] = VerificationKey(old.public_key, old.kid, old.alg, vk.not_after)

        if signing is not None:
            add(VerificationKey(signing.public_key, signing.kid, signing.alg, None))
        for key, not_after in retired:
            add(VerificationKey.of(key, not_after))
        for item in extra:
            add(item if isinstance(item, VerificationKey) else VerificationKey.of(item))
        self.keys: tuple[VerificationKey, ...] = tuple(merged.values())
        self._by_kid: dict[str, tuple[VerificationKey, ...]] = {k.kid: (k,) for k in self.keys}
        self._expiring = any(k.not_after is not None for k in self.keys)

    def keys_for(self, kid: str, now: float | None = None) -> list[VerificationKey]:
        """Keys to try for a token's kid (all keys when kid is empty), leaving out retired keys past `not_after`."""
        found = self._by_kid.get(kid, ()) if kid else self.keys
        if self._expiring and now is not None:
            return [k for k in found if k.live(now)]
        return list(found)

    def candidates(self, kid: str, now: float | None = None) -> tuple[VerificationKey, ...]:
        """keys_for without the copy, for the verification hot path."""
        found = self._by_kid.get(kid, ()) if kid else self.keys
        if self._expiring and now is not None:
            return tuple(k for k in found if k.live(now))
        return found

    def jwks(self, now: float | None = None) -> dict[str, list[dict[str, str]]]:
        """The JWK set served at /openid/v1/jwks."""
        return {"keys": [k.jwk() for k in self.keys if k.live(now)]}

    def algorithms(self, now: float | None = None) -> list[str]:
        """id_token_signing_alg_values_supported: the published keys' algs, sorted, without duplicates."""
        return sorted({k.alg for k in self.keys if k.live(now)})

    def __len__(self) -> int:
        return len(self.keys)
