"""Token core: Kubernetes' kid, claim shapes, Kubernetes-exact signing, and the lean verifier against PyJWT."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwk as jjwk
from joserfc import jws as jjws

from kubesat.tokens import claims as C
from kubesat.tokens.jwt import (
    CRYPTO_FAILURE,
    EXPIRED,
    ISSUED_IN_FUTURE,
    NO_KEYS,
    NOT_VALID_YET,
    TokenError,
    Verifier,
    b64decode,
    b64encode,
    check_time_claims,
    go_json,
    match_audiences,
    sign,
)
from kubesat.tokens.keys import KeySet, SigningKey, VerificationKey, alg_for, key_id, load_pem_keys

ISSUER = "https://kubernetes.default.svc.cluster.local"
NOW = 1_700_028_966
SA_UID = "2f1c7c1e-0d7a-4a3c-9a51-8c2f7f0e4b11"
POD_UID = "b7e5a3e2-6c1d-4b8f-8d2e-1f0a9c3b5d77"
JTI = "5d3c1b2a-9e8f-4a7b-8c6d-5e4f3a2b1c0d"

_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC = {c.name: ec.generate_private_key(c) for c in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_private(key, fmt=serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def pem_public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def pod_claims(now: int = NOW, **over) -> dict:
    kw = dict(
        issuer=ISSUER, audiences=[ISSUER], namespace="default", sa_name="default", sa_uid=SA_UID,
        expiration_seconds=C.WARN_ONLY_BOUND_TOKEN_EXPIRATION, now=now, jti=JTI,
        pod=("web-0", POD_UID), warn_after=C.WARN_ONLY_BOUND_TOKEN_EXPIRATION,
        exp_override=now + C.EXPIRATION_EXTENSION_SECONDS,
    )
    kw.update(over)
    return C.bound_claims(**kw)


def simple_claims(now: int = NOW, ttl: int = 3600, aud: list[str] | None = None) -> dict:
    return C.bound_claims(
        issuer=ISSUER, audiences=aud or [ISSUER], namespace="ns", sa_name="sa", sa_uid=SA_UID,
        expiration_seconds=ttl, now=now, jti=JTI,
    )


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey(_RSA)


@pytest.fixture(scope="module")
def rsa_keys(rsa_key: SigningKey) -> KeySet:
    return KeySet(rsa_key)


def verifier() -> Verifier:
    return Verifier([ISSUER, C.LEGACY_ISSUER], implicit_audiences=[ISSUER])


def segments(token: str) -> tuple[dict, dict, bytes]:
    h, p, s = token.split(".")
    return json.loads(b64decode(h.encode())), json.loads(b64decode(p.encode())), b64decode(s.encode())


# ------------------------------------------------------------------------------------------- keys


def test_kid_is_sha256_of_pkix_der_not_a_jwk_thumbprint() -> None:
    # A fixed P-256 key (scalar 1234567); the vector was cross-checked with
    # `openssl pkey -pubout -outform DER | openssl dgst -sha256 -binary | basenc --base64url`.
    key = ec.derive_private_key(1234567, ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert key_id(key.public_key()) == expected
    assert key_id(key) == expected  # a private key stands for its public half
    assert len(expected) == 43 and re.fullmatch(r"[A-Za-z0-9_-]{43}", expected)
    assert expected == "89gIEz_GAPhoUqvK0KKIZ_d1jE-Iv2aKiz06BpNzXqs"
    # RFC 7638 thumbprint (what JOSE libraries call kid) is a different thing.
    jwk = pyjwt.PyJWK(KeySet(extra=[key]).jwks()["keys"][0])
    crv = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(jwk.key))
    thumb = b64(hashlib.sha256(json.dumps(
        {"crv": crv["crv"], "kty": "EC", "x": crv["x"], "y": crv["y"]}, separators=(",", ":"), sort_keys=True,
    ).encode()).digest())
    assert thumb != expected
    rsa_kid = key_id(_RSA.public_key())
    assert len(rsa_kid) == 43 and "=" not in rsa_kid


def test_alg_for_and_kubernetes_errors() -> None:
    assert alg_for(_RSA) == alg_for(_RSA.public_key()) == "RS256"
    assert [alg_for(k) for k in _EC.values()] == ["ES256", "ES384", "ES512"]
    with pytest.raises(ValueError, match=r"^unknown private key curve, must be 256, 384, or 521$"):
        alg_for(ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(ValueError, match=r"^unknown private key type Ed25519PrivateKey, must be \*rsa.PrivateKey"):
        alg_for(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match=r"^unknown public key type"):
        alg_for(ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ValueError, match="curve"):
        SigningKey(ec.generate_private_key(ec.SECP224R1()))


def _self_signed(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sa-signer")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_load_pem_keys_accepts_every_kubernetes_form() -> None:
    p256, p384 = _EC["secp256r1"], _EC["secp384r1"]
    data = b"\n".join([
        b"leading text is ignored",
        pem_private(_RSA, serialization.PrivateFormat.TraditionalOpenSSL),  # PKCS#1
        pem_private(p256, serialization.PrivateFormat.TraditionalOpenSSL),  # SEC1
        b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----",  # tolerated
        pem_private(p384),  # PKCS#8
        pem_public(_RSA.public_key()),  # PKIX
        _RSA.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        _self_signed(p256),
    ])
    keys = load_pem_keys(data, "sa.pem")
    kids = [key_id(k) for k in keys]
    r, e2, e3 = key_id(_RSA), key_id(p256), key_id(p384)
    assert kids == [r, e2, e3, r, r, e2]
    assert all(not hasattr(k, "private_bytes") for k in keys)
    # Duplicates collapse in a key set; the set publishes each key once.
    assert [k["kid"] for k in KeySet(extra=keys).jwks()["keys"]] == [r, e2, e3]


@pytest.mark.parametrize("data,detail", [
    (b"", ""),
    (b"not a pem file", ""),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "PUBLIC KEY block could not be parsed"),
    (b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n", "not valid base64"),
    # A fixed key, so parallel test workers collect the same test ids.
    (pem_private(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))),
     "only RSA and ECDSA keys are supported"),
], ids=["empty", "not-pem", "bad-public-block", "bad-base64", "ed25519"])
def test_load_pem_keys_errors_name_the_source(data: bytes, detail: str) -> None:
    with pytest.raises(ValueError) as err:
        load_pem_keys(data, "/etc/kubesat/sa.pub")
    msg = str(err.value)
    assert msg.startswith("error reading public key file /etc/kubesat/sa.pub: "
                          "data does not contain any valid RSA or ECDSA public keys")
    assert detail in msg and "\n" not in msg and "Traceback" not in msg


def test_load_pem_keys_rejects_unsupported_curve() -> None:
    with pytest.raises(ValueError, match=r"^error reading public key file k.pem: .*must be 256, 384, or 521$"):
        load_pem_keys(pem_public(ec.generate_private_key(ec.SECP256K1()).public_key()), "k.pem")


def test_jwks_go_jose_field_order_and_encodings() -> None:
    p521 = _EC["secp521r1"]
    ks = KeySet(SigningKey(_RSA), extra=[p521.public_key()])
    rsa_jwk, ec_jwk = ks.jwks()["keys"]
    assert list(rsa_jwk) == ["use", "kty", "kid", "alg", "n", "e"]
    assert rsa_jwk["use"] == "sig" and rsa_jwk["kty"] == "RSA" and rsa_jwk["e"] == "AQAB"
    assert int.from_bytes(b64decode(rsa_jwk["n"].encode()), "big") == _RSA.public_key().public_numbers().n
    assert len(b64decode(rsa_jwk["n"].encode())) == 256  # minimal big-endian, no sign byte
    assert list(ec_jwk) == ["use", "kty", "kid", "crv", "alg", "x", "y"]
    assert ec_jwk["crv"] == "P-521" and ec_jwk["alg"] == "ES512"
    assert len(b64decode(ec_jwk["x"].encode())) == 66 == len(b64decode(ec_jwk["y"].encode()))
    assert ks.algorithms() == ["ES512", "RS256"]
    # PyJWT reads them back as the same keys.
    assert pyjwt.PyJWK(ec_jwk).key.public_numbers() == p521.public_key().public_numbers()
    assert pyjwt.PyJWK(rsa_jwk).key.public_numbers() == _RSA.public_key().public_numbers()


def test_retired_keys_expire_from_lookup_and_jwks() -> None:
    cur = SigningKey(_EC["secp256r1"])
    old = _RSA.public_key()
    ks = KeySet(cur, retired=[(old, NOW + 100)], extra=[_EC["secp384r1"]])
    assert len(ks.keys_for("", NOW)) == 3
    assert [k.kid for k in ks.keys_for(key_id(old), NOW + 100)] == [key_id(old)]
    assert ks.keys_for(key_id(old), NOW + 101) == []
    assert ks.keys_for("unknown") == []
    assert ks.algorithms(NOW) == ["ES256", "ES384", "RS256"]
    assert ks.algorithms(NOW + 101) == ["ES256", "ES384"]
    assert key_id(old) not in [k["kid"] for k in ks.jwks(NOW + 101)["keys"]]
    # The current key listed again as retired keeps living.
    ks3 = KeySet(extra=[VerificationKey.of(old, NOW)])
    assert ks3.keys_for("", NOW + 1) == [] and ks3.jwks(NOW + 1) == {"keys": []}
    ks2 = KeySet(cur, retired=[(cur.public_key, NOW)])
    assert ks2.keys_for(cur.kid, NOW + 10**9) and ks2.keys[0].not_after is None


# ------------------------------------------------------------------------------------------- claims


def test_bound_claims_match_kubernetes_shape(rsa_key: SigningKey) -> None:
    c = pod_claims()
    payload = go_json(c)
    assert payload == (
        '{"aud":["https://kubernetes.default.svc.cluster.local"],"exp":1731564966,"iat":1700028966,'
        '"iss":"https://kubernetes.default.svc.cluster.local","jti":"' + JTI + '","kubernetes.io":'
        '{"namespace":"default","pod":{"name":"web-0","uid":"' + POD_UID + '"},"serviceaccount":'
        '{"name":"default","uid":"' + SA_UID + '"},"warnafter":1700032573},"nbf":1700028966,'
        '"sub":"system:serviceaccount:default:default"}'
    ).encode()
    assert c["exp"] - c["iat"] == C.EXPIRATION_EXTENSION_SECONDS
    assert c["kubernetes.io"]["warnafter"] - c["iat"] == 3607
    _, body, _ = segments(sign(c, rsa_key))
    assert body == c


def test_bound_claims_variants() -> None:
    plain = simple_claims(now=NOW + 0.9)  # type: ignore[arg-type]
    assert plain["iat"] == plain["nbf"] == NOW and plain["exp"] == NOW + 3600
    assert "warnafter" not in plain["kubernetes.io"] and "pod" not in plain["kubernetes.io"]
    no_jti = C.bound_claims(issuer=ISSUER, audiences=["a"], namespace="n", sa_name="s", sa_uid="u",
                            expiration_seconds=600, now=NOW, jti=None)
    assert "jti" not in no_jti and no_jti["aud"] == ["a"]
    node_pod = pod_claims(node=("node-1", ""), warn_after=None, exp_override=None)
    assert node_pod["kubernetes.io"]["node"] == {"name": "node-1"}  # missing Node: no uid
    assert node_pod["exp"] == NOW + 3607
    node_only = pod_claims(pod=None, node=C.Ref("node-1", "nu"))
    assert node_only["kubernetes.io"]["node"] == {"name": "node-1", "uid": "nu"}
    with pytest.raises(ValueError, match="^internal error, token can only be bound to one object type$"):
        pod_claims(secret=("s", "su"))


def test_legacy_claims_shape() -> None:
    c = C.legacy_claims(namespace="ns", secret_name="sa-token-x", sa_name="sa", sa_uid=SA_UID)
    assert go_json(c) == (
        '{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"ns",'
        '"kubernetes.io/serviceaccount/secret.name":"sa-token-x",'
        '"kubernetes.io/serviceaccount/service-account.name":"sa",'
        '"kubernetes.io/serviceaccount/service-account.uid":"' + SA_UID + '",'
        '"sub":"system:serviceaccount:ns:sa"}'
    ).encode()
    p = C.parse_private_claims(c)
    assert (p.legacy, p.namespace, p.sa_name, p.sa_uid, p.secret_name) == (True, "ns", "sa", SA_UID, "sa-token-x")


def test_parse_private_claims_bound() -> None:
    p = C.parse_private_claims(pod_claims(node=("n1", "")))
    assert not p.legacy and p.has_pod and p.has_node and not p.has_secret
    assert (p.namespace, p.sa_name, p.sa_uid, p.pod_name, p.pod_uid, p.node_name, p.node_uid) == (
        "default", "default", SA_UID, "web-0", POD_UID, "n1", "")
    assert p.warnafter == NOW + 3607 and p.credential_id == f"JTI={JTI}"
    with pytest.raises(TokenError, match="cannot unmarshal number into Go struct field .*namespace of type string"):
        C.parse_private_claims({"iss": ISSUER, "kubernetes.io": {"namespace": 5}})


@pytest.mark.parametrize("drop,reason", [
    ("sub", "sub claim is missing"),
    ("kubernetes.io/serviceaccount/namespace", "namespace claim is missing"),
    ("kubernetes.io/serviceaccount/secret.name", "secretName claim is missing"),
    ("kubernetes.io/serviceaccount/service-account.name", "serviceAccountName claim is missing"),
    ("kubernetes.io/serviceaccount/service-account.uid", "serviceAccountUID claim is missing"),
])
def test_legacy_claim_errors(drop: str, reason: str) -> None:
    c = C.legacy_claims(namespace="ns", secret_name="s", sa_name="sa", sa_uid="u")
    c[drop] = ""
    with pytest.raises(TokenError) as err:
        C.parse_private_claims(c)
    assert err.value.reason == reason


@pytest.mark.parametrize("sub", ["system:serviceaccount:other:sa", "system:serviceaccount:ns:sa:x", "ns:sa"])
def test_legacy_sub_invalid(sub: str) -> None:
    c = C.legacy_claims(namespace="ns", secret_name="s", sa_name="sa", sa_uid="u") | {"sub": sub}
    with pytest.raises(TokenError, match="^sub claim is invalid$"):
        C.parse_private_claims(c)


def test_usernames() -> None:
    assert C.make_username("kube-system", "default") == "system:serviceaccount:kube-system:default"
    assert C.split_username("system:serviceaccount:kube-system:my.sa-1") == ("kube-system", "my.sa-1")
    for bad in ["system:serviceaccount:ns", "system:serviceaccount:ns:a:b", "system:serviceaccounts:ns:a",
                "system:serviceaccount:NS:a", "system:serviceaccount:ns.x:a", "system:serviceaccount::a",
                "system:serviceaccount:ns:", "system:serviceaccount:ns:a\n",
                "system:serviceaccount:" + "a" * 64 + ":b"]:
        with pytest.raises(ValueError, match="^Username must be in the form system:serviceaccount:namespace:name$"):
            C.split_username(bad)


# ------------------------------------------------------------------------------------------- signing


def test_header_is_exactly_kubernetes(rsa_key: SigningKey) -> None:
    token = sign(pod_claims(), rsa_key)
    raw_header = b64decode(token.split(".")[0].encode())
    assert raw_header == ('{"alg":"RS256","kid":"' + rsa_key.kid + '"}').encode()
    # PyJWT's own encoder, told to drop typ, writes the same header.
    ref = pyjwt.encode({"x": 1}, _RSA, algorithm="RS256", headers={"kid": rsa_key.kid, "typ": None})
    assert ref.split(".")[0] == token.split(".")[0]
    assert "=" not in token and re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)


def test_payload_sorted_recursively_with_go_escaping(rsa_key: SigningKey) -> None:
    c = {"sub": "s", "aud": ["https://a?x=1&y=<2>"], "iss": ISSUER,
         "kubernetes.io": {"serviceaccount": {"uid": "u", "name": "n"}, "namespace": "ns"}}
    raw = b64decode(sign(c, rsa_key).split(".")[1].encode())
    assert raw == (b'{"aud":["https://a?x=1\\u0026y=\\u003c2\\u003e"],"iss":"' + ISSUER.encode()
                   + b'","kubernetes.io":{"namespace":"ns","serviceaccount":{"name":"n","uid":"u"}},"sub":"s"}')
    assert go_json({"a": "\u2028\b\f\\b\n"}) == b'{"a":"\\u2028\\u0008\\u000c\\\\b\\n"}'


@pytest.mark.parametrize("curve", ["rsa", "secp256r1", "secp384r1", "secp521r1"])
def test_signature_verifies_with_pyjwt_and_jwks(curve: str) -> None:
    private = _RSA if curve == "rsa" else _EC[curve]
    key = SigningKey(private)
    ks = KeySet(key)
    token = sign(simple_claims(), key)
    opts = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    out = pyjwt.decode(token, private.public_key(), algorithms=[key.alg], audience=ISSUER, issuer=ISSUER,
                       options=opts)
    assert out == simple_claims()
    jwk = pyjwt.PyJWK(ks.jwks()["keys"][0])
    assert pyjwt.decode(token, jwk, algorithms=[key.alg], audience=ISSUER, options=opts) == out
    assert pyjwt.get_unverified_header(token) == {"alg": key.alg, "kid": key.kid}
    # The lean verifier agrees on the same token.
    hdr, claims = Verifier([ISSUER], implicit_audiences=[ISSUER]).verify(token, ks, NOW + 5)
    assert claims == out and hdr == {"alg": key.alg, "kid": key.kid}


def test_signature_verifies_with_joserfc() -> None:
    """joserfc, a JOSE library of its own (a test dependency), accepts kubesat's signatures."""
    for private in (_RSA, _EC["secp256r1"]):
        key = SigningKey(private)
        token = sign(pod_claims(), key)
        pub = jjwk.import_key(KeySet(key).jwks()["keys"][0])
        obj = jjws.deserialize_compact(token, pub, algorithms=[key.alg])
        assert json.loads(obj.payload) == pod_claims()
        assert obj.protected == {"alg": key.alg, "kid": key.kid}


# ------------------------------------------------------------------------------------------- verifying


def reason(token: str, keys: KeySet, now: float = NOW, v: Verifier | None = None, **kw) -> tuple[str, bool]:
    with pytest.raises(TokenError) as err:
        (v or verifier()).verify(token, keys, now, **kw)
    return err.value.reason, err.value.not_mine


def forge(header: dict, claims: dict, signer) -> str:
    si = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + b64(json.dumps(claims).encode())
    return si + "." + b64(signer(si.encode()))


def test_alg_none_and_hs256_with_public_key_are_rejected(rsa_key: SigningKey, rsa_keys: KeySet) -> None:
    c = simple_claims()
    none = forge({"alg": "none", "kid": rsa_key.kid}, c, lambda si: b"")
    assert reason(none, rsa_keys) == (CRYPTO_FAILURE, False)
    none_empty_sig = none.rstrip(".") + "."
    assert reason(none_empty_sig, rsa_keys) == (CRYPTO_FAILURE, False)
    secret = pem_public(_RSA.public_key())
    hs = forge({"alg": "HS256", "kid": rsa_key.kid}, c, lambda si: hmac.new(secret, si, hashlib.sha256).digest())
    assert reason(hs, rsa_keys) == (CRYPTO_FAILURE, False)
    hs_nokid = forge({"alg": "HS256"}, c, lambda si: hmac.new(secret, si, hashlib.sha256).digest())
    assert reason(hs_nokid, rsa_keys) == (CRYPTO_FAILURE, False)


def test_unknown_kid_and_empty_keyset(rsa_key: SigningKey, rsa_keys: KeySet) -> None:
    other = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    token = sign(simple_claims(), other)
    assert reason(token, rsa_keys) == (NO_KEYS, False)
    assert reason(sign(simple_claims(), rsa_key), KeySet()) == (NO_KEYS, False)
    # No kid in the header: every key is tried, and none fits.
    nokid = forge({"alg": "RS256"}, simple_claims(), lambda si: _RSA.sign(si, *_pkcs1()))
    verifier().verify(nokid, rsa_keys, NOW)
    assert reason(nokid, KeySet(other)) == (CRYPTO_FAILURE, False)


def _pkcs1():
    return padding.PKCS1v15(), hashes.SHA256()


def test_tampering(rsa_key: SigningKey, rsa_keys: KeySet) -> None:
    token = sign(simple_claims(), rsa_key)
    h, p, s = token.split(".")
    evil = dict(simple_claims(), sub="system:serviceaccount:kube-system:admin")
    assert reason(f"{h}.{b64(json.dumps(evil).encode())}.{s}", rsa_keys) == (CRYPTO_FAILURE, False)
    flipped = bytearray(b64decode(s.encode()))
    flipped[10] ^= 1
    assert reason(f"{h}.{p}.{b64(bytes(flipped))}", rsa_keys) == (CRYPTO_FAILURE, False)
    for cut in (token[:-1], token[: len(h) + len(p) + 1], token[: len(h)], f"{h}.{p}", token + ".x"):
        with pytest.raises(TokenError):
            verifier().verify(cut, rsa_keys, NOW)


@pytest.mark.parametrize("mangle", [
    lambda h, p, s: f"{h}.{p}=.{s}",        # padding
    lambda h, p, s: f"{h}.{p}.{s}==",
    lambda h, p, s: f"{h}.{p[:-1]}+.{s}",  # standard alphabet
    lambda h, p, s: f"{h}.{p[:5]}*{p[6:]}.{s}",
    lambda h, p, s: f"{h}.{p} .{s}",
    lambda h, p, s: f"{h}.{p}.{s[:-1]}",   # length 1 mod 4 or changed tail
    lambda h, p, s: f" {{{h}.{p}.{s}",      # JSON serialisation
    lambda h, p, s: f"{h}.{p}",
    lambda h, p, s: f"{h}.{p}.{s}.{s}",
    lambda h, p, s: f"{h}.{b64(b'[1,2]')}.{s}",
    lambda h, p, s: f"{h}.{b64(b'not json')}.{s}",
    lambda h, p, s: f"{h}.{p}.{s}\u00e9",
    lambda h, p, s: "x" * 20000,
])
def test_malformed_tokens_are_not_mine(rsa_key: SigningKey, rsa_keys: KeySet, mangle) -> None:
    h, p, s = sign(simple_claims(), rsa_key).split(".")
    _, not_mine = reason(mangle(h, p, s), rsa_keys)
    assert not_mine


def test_non_canonical_base64_tail_is_rejected() -> None:
    enc = b64encode(b"\xff")  # "_w": the last character carries 4 unused bits
    assert enc == b"_w" and b64decode(enc) == b"\xff"
    with pytest.raises(ValueError):
        b64decode(b"_x")  # same byte, non-zero unused bits
    with pytest.raises(ValueError):
        b64decode(b"_w==")


def test_issuer_not_accepted_is_not_mine(rsa_key: SigningKey, rsa_keys: KeySet) -> None:
    c = dict(simple_claims(), iss="https://other")
    assert reason(sign(c, rsa_key), rsa_keys) == ("issuer not accepted", True)
    # Without an issuer set (the SDK), any issuer is checked on its signature alone.
    Verifier(implicit_audiences=[ISSUER]).verify(sign(c, rsa_key), rsa_keys, NOW)


def test_wrong_curve_and_alg_mismatch() -> None:
    p256, p384 = SigningKey(_EC["secp256r1"]), SigningKey(_EC["secp384r1"])
    token = sign(simple_claims(), p256)
    # Re-labelled as ES384 with the same kid: the key's own alg is ES256.
    relabelled = forge({"alg": "ES384", "kid": p256.kid}, simple_claims(),
                       lambda si: b64decode(token.split(".")[2].encode()))
    assert reason(relabelled, KeySet(p256)) == (CRYPTO_FAILURE, False)
    # No kid: tried against a P-384 key only.
    nokid = forge({"alg": "ES256"}, simple_claims(), lambda si: b64decode(token.split(".")[2].encode()))
    assert reason(nokid, KeySet(p384)) == (CRYPTO_FAILURE, False)
    # RSA token against an EC key set carrying the same kid is impossible; an ES token on an RSA key fails.
    rsa_token = sign(simple_claims(), SigningKey(_RSA))
    fake = forge({"alg": "ES256", "kid": key_id(_RSA)}, simple_claims(),
                 lambda si: b64decode(rsa_token.split(".")[2].encode())[:64])
    assert reason(fake, KeySet(SigningKey(_RSA))) == (CRYPTO_FAILURE, False)


def test_time_boundaries_are_exact(rsa_key: SigningKey, rsa_keys: KeySet) -> None:
    token = sign(simple_claims(now=NOW, ttl=3600), rsa_key)
    exp = NOW + 3600
    v = verifier()
    v.verify(token, rsa_keys, exp + 60)  # exactly at the leeway edge: still valid
    assert reason(token, rsa_keys, exp + 60.001) == (EXPIRED, False)
    assert reason(token, rsa_keys, exp + 61) == (EXPIRED, False)
    v.verify(token, rsa_keys, NOW - 60)  # nbf == iat == NOW
    assert reason(token, rsa_keys, NOW - 60.001) == (NOT_VALID_YET, False)
    # iat alone in the future (nbf in the past): the third check.
    c = dict(simple_claims(), nbf=NOW - 1000, iat=NOW + 61)
    assert reason(sign(c, rsa_key), rsa_keys, NOW) == (ISSUED_IN_FUTURE, False)
    v.verify(sign(dict(c, iat=NOW + 60), rsa_key), rsa_keys, NOW)
    # go-jose order: nbf before exp before iat.
    with pytest.raises(TokenError, match=NOT_VALID_YET):
        check_time_claims({"nbf": NOW + 100, "exp": NOW - 100, "iat": NOW + 100}, NOW)
    with pytest.raises(TokenError, match=EXPIRED):
        check_time_claims({"exp": NOW - 100, "iat": NOW + 100}, NOW)
    check_time_claims({}, NOW)
    # Fractional NumericDates truncate, as go-jose does.
    with pytest.raises(TokenError, match=EXPIRED):
        check_time_claims({"exp": NOW - 60 + 0.9}, NOW + 0.5)


def test_legacy_tokens_skip_time_checks_and_use_api_audiences(rsa_key: SigningKey, rsa_keys: KeySet) -> None:
    c = C.legacy_claims(namespace="ns", secret_name="s", sa_name="sa", sa_uid="u")
    token = sign(c, rsa_key)
    _, out = verifier().verify(token, rsa_keys, NOW + 10**9)
    assert out == c
    # A legacy-issuer token that somehow carries exp is still not time-checked (legacy validator).
    verifier().verify(sign(dict(c, exp=1), rsa_key), rsa_keys, NOW)
    assert reason(token, rsa_keys, v=Verifier([ISSUER]))[1] is True  # the bound authenticator ignores it


def test_audiences(rsa_key: SigningKey, rsa_keys: KeySet) -> None:
    token = sign(simple_claims(aud=["vault", "sts.amazonaws.com"]), rsa_key)
    assert reason(token, rsa_keys) == (
        'token audiences ["vault" "sts.amazonaws.com"] is invalid for the target audiences '
        '["https://kubernetes.default.svc.cluster.local"]', False)
    verifier().verify(token, rsa_keys, NOW, audiences=["vault"])
    assert match_audiences({"aud": ["vault", "x"]}, ["x", "y"], [ISSUER]) == ["x"]
    assert match_audiences({"aud": "x"}, None, ["x"]) == ["x"]
    assert match_audiences({}, None, [ISSUER]) == [ISSUER]
    with pytest.raises(TokenError, match=r'token audiences \["a"\] is invalid for the target audiences \["b"\]'):
        Verifier().verify(sign(simple_claims(aud=["a"]), rsa_key), rsa_keys, NOW, audiences=["b"])
    # No API audiences and none requested: no audience check (Kubernetes' rule).
    Verifier().verify(token, rsa_keys, NOW)


@pytest.mark.parametrize("field,value,msg", [
    ("exp", "soon", "expected number value to unmarshal NumericDate"),
    ("nbf", True, "expected number value to unmarshal NumericDate"),
    ("aud", [1], "expected string or array value to unmarshal to Audience"),
    ("aud", {"a": 1}, "expected string or array value to unmarshal to Audience"),
    ("sub", 7, "cannot unmarshal number into Go struct field Claims.sub of type string"),
])
def test_registered_claim_types(rsa_key: SigningKey, rsa_keys: KeySet, field: str, value, msg: str) -> None:
    token = sign(dict(simple_claims(), **{field: value}), rsa_key)
    got, not_mine = reason(token, rsa_keys)
    assert msg in got and not not_mine


def test_header_cache_is_bounded(rsa_keys: KeySet) -> None:
    v = verifier()
    c = b64(json.dumps(simple_claims()).encode())
    for i in range(500):
        with pytest.raises(TokenError):
            v.verify(f"{b64(json.dumps({'alg': 'RS256', 'kid': str(i)}).encode())}.{c}.AAAA", rsa_keys, NOW)
    assert len(v._headers) <= Verifier._MAX_HEADERS


def test_es256_verifier_agrees_with_pyjwt() -> None:
    key = SigningKey(_EC["secp256r1"])
    ks = KeySet(key)
    for i in range(20):  # ECDSA signatures vary; r or s with leading zero bytes must round-trip
        token = sign(simple_claims(now=NOW + i), key)
        ref = pyjwt.decode(token, key.public_key, algorithms=["ES256"], audience=ISSUER,
                           options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
        assert verifier().verify(token, ks, NOW + i)[1] == ref


# ------------------------------------------------------------------------------------------- fuzz

_FUZZ_KEY = SigningKey(_EC["secp256r1"])
_FUZZ_KEYS = KeySet(_FUZZ_KEY, extra=[_RSA.public_key()])
_FUZZ_TOKEN = sign(simple_claims(), _FUZZ_KEY)
_FUZZ_RSA_TOKEN = sign(simple_claims(), SigningKey(_RSA))
_FUZZ_VERIFIER = verifier()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.text(alphabet="ABCxyz019-_.=+/{} ", max_size=300))
def test_fuzz_random_strings_only_raise_token_error(s: str) -> None:
    with pytest.raises(TokenError):
        _FUZZ_VERIFIER.verify(s, _FUZZ_KEYS, NOW)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from([_FUZZ_TOKEN, _FUZZ_RSA_TOKEN]),
    st.lists(st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 10_000),
                       st.characters(codec="ascii") | st.sampled_from(list("-_.=AaQw09"))),
             min_size=1, max_size=4),
)
def test_fuzz_mutated_tokens_verify_only_if_unmodified(token: str, edits) -> None:
    t = token
    for op, pos, ch in edits:
        i = pos % (len(t) + 1)
        if op == "replace" and i < len(t):
            t = t[:i] + ch + t[i + 1:]
        elif op == "insert":
            t = t[:i] + ch + t[i:]
        elif op == "delete" and i < len(t):
            t = t[:i] + t[i + 1:]
    try:
        _FUZZ_VERIFIER.verify(t, _FUZZ_KEYS, NOW)
    except TokenError:
        return
    assert t == token


# ------------------------------------------------------------------ RS256 verify-recover vs verify()

from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding as _padding  # noqa: E402

from kubesat.tokens import jwt as _jwt  # noqa: E402

_VK = VerificationKey.of(_RSA.public_key())
_PRIV = _RSA.private_numbers()
_N, _D, _K = _PRIV.public_numbers.n, _PRIV.d, 256
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha256-no-null": bytes.fromhex("302f300b0609608648016503040201" "0420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
}


def _raw_sign(em: bytes) -> bytes:
    """The RSA private operation on an encoded message of our choosing (to forge paddings)."""
    return pow(int.from_bytes(em, "big"), _D, _N).to_bytes(_K, "big")


def _em(t: bytes, *, block_type: bytes = b"\x01", fill: int = 0xFF, sep: bytes = b"\x00") -> bytes:
    return b"\x00" + block_type + bytes([fill]) * (_K - 3 - len(t)) + sep + t


def _library_accepts(sig: bytes, data: bytes) -> bool:
    try:
        _RSA.public_key().verify(sig, data, _padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


def _case_signatures(data: bytes) -> dict[str, bytes]:
    h = hashlib.sha256(data).digest()
    good = _RSA.sign(data, _padding.PKCS1v15(), hashes.SHA256())
    cases = {
        "library signature": good,
        "forged, canonical encoding": _raw_sign(_em(_DIGEST_INFO["sha256"] + h)),
        "DigestInfo without NULL": _raw_sign(_em(_DIGEST_INFO["sha256-no-null"] + h)),
        "SHA-384 DigestInfo": _raw_sign(_em(_DIGEST_INFO["sha384"] + hashlib.sha384(data).digest())),
        "SHA-1 DigestInfo": _raw_sign(_em(_DIGEST_INFO["sha1"] + hashlib.sha1(data).digest())),
        "bare digest": _raw_sign(_em(h)),
        "block type 2": _raw_sign(_em(_DIGEST_INFO["sha256"] + h, block_type=b"\x02")),
        "fill not FF": _raw_sign(_em(_DIGEST_INFO["sha256"] + h, fill=0xFE)),
        "no separator": _raw_sign(b"\x00\x01" + b"\xff" * (_K - 2 - 51) + b"\x01" + _DIGEST_INFO["sha256"] + h),
        "digest + trailing byte": _raw_sign(_em(_DIGEST_INFO["sha256"] + h + b"\x00")),
        "other digest": _raw_sign(_em(_DIGEST_INFO["sha256"] + hashlib.sha256(data + b"x").digest())),
        "signature == n": _N.to_bytes(_K, "big"),
        "signature > n": (_N + 1).to_bytes(_K, "big"),
        "one byte longer": b"\x00" + good,
        "one byte shorter": good[1:],
        "empty": b"",
        "all zero": bytes(_K),
        "flipped bit": bytes([good[0] ^ 0x01]) + good[1:],
    }
    return cases


def test_rs256_fast_verify_agrees_with_library_verify() -> None:
    data = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0"
    outcomes = {}
    for name, sig in _case_signatures(data).items():
        ours = _jwt._verify_rs256(_VK, sig, data)
        assert ours == _library_accepts(sig, data), name
        outcomes[name] = ours
    # The cases are not all trivially equal: exactly the two canonical encodings verify.
    assert {n for n, ok in outcomes.items() if ok} == {"library signature", "forged, canonical encoding"}


def test_rs256_fast_verify_rejects_a_signature_with_its_leading_zero_stripped() -> None:
    # Go's rsa.VerifyPKCS1v15 wants exactly k bytes; OpenSSL's recover would take 255.
    for i in range(4096):
        data = b"payload-%d" % i
        sig = _RSA.sign(data, _padding.PKCS1v15(), hashes.SHA256())
        if sig[0] == 0:
            break
    else:  # pragma: no cover - 1 - (255/256)^4096 is 1 to 7 decimals
        pytest.fail("no signature with a leading zero byte found")
    assert _jwt._verify_rs256(_VK, sig, data)
    assert not _jwt._verify_rs256(_VK, sig[1:], data)
    assert not _library_accepts(sig[1:], data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.binary(min_size=1, max_size=64))
def test_fuzz_rs256_fast_verify_agrees_with_library_verify(sig: bytes, data: bytes) -> None:
    assert _jwt._verify_rs256(_VK, sig, data) == _library_accepts(sig, data)
