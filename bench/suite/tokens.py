"""Token verification and signing in process: kubesat's Verifier and sign() (what the server calls) against
the raw `cryptography` primitives, PyJWT, joserfc and jwcrypto on the same tokens, and Node's jose."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt as rfc_jwt
from joserfc.jwk import ECKey, RSAKey
from jwcrypto import jwk as jc_jwk, jwt as jc_jwt
from verify import ISSUER, claims as token_claims, interleaved, rate

from kubesat.tokens.jwt import Verifier, b64decode, sign
from kubesat.tokens.keys import KeySet, SigningKey
from suite.common import BENCH, Results

SECTION = "tokens"
NODE_DIR = BENCH / "node"


def ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def contenders(alg: str) -> tuple[dict[str, Callable[[], object]], dict[str, Callable[[], object]], dict[str, Any]]:
    """(verify fns, sign fns, the token and keys for Node) for one algorithm on a pod-bound token."""
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256"
               else ec.generate_private_key(ec.SECP256R1()))
    public = private.public_key()
    key = SigningKey(private)
    keys = KeySet(key)
    now = int(time.time())
    c = token_claims(now, "pod")
    token = sign(c, key)
    hseg, pseg, sseg = token.encode().split(b".")
    signing_input = hseg + b"." + pseg
    sig = b64decode(sseg)
    verifier = Verifier([ISSUER], implicit_audiences=[ISSUER])
    verifier.verify(token, keys, now)
    spki = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs8 = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    kid = key.kid
    if alg == "RS256":
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

        def raw_verify() -> None:
            public.verify(sig, signing_input, pkcs1, sha256)

        def raw_sign() -> None:
            private.sign(signing_input, pkcs1, sha256)

        rfc_pub, rfc_priv = RSAKey.import_key(spki), RSAKey.import_key(pkcs8)
    else:
        ecdsa = ec.ECDSA(hashes.SHA256())
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))

        def raw_verify() -> None:
            public.verify(der, signing_input, ecdsa)

        def raw_sign() -> None:
            private.sign(signing_input, ecdsa)

        rfc_pub, rfc_priv = ECKey.import_key(spki), ECKey.import_key(pkcs8)
    registry = rfc_jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER},
                                         aud={"essential": True, "value": ISSUER})
    jc_pub, jc_priv = jc_jwk.JWK.from_pem(spki), jc_jwk.JWK.from_pem(pkcs8)
    header = {"alg": alg, "kid": kid}

    def joserfc_verify() -> None:
        registry.validate(rfc_jwt.decode(token, rfc_pub, algorithms=[alg]).claims)

    def jwcrypto_verify() -> None:
        jc_jwt.JWT(jwt=token, key=jc_pub, algs=[alg], check_claims={"iss": ISSUER, "aud": ISSUER, "exp": None})

    def jwcrypto_sign() -> None:
        t = jc_jwt.JWT(header=header, claims=c)
        t.make_signed_token(jc_priv)
        t.serialize()

    verify_fns: dict[str, Callable[[], object]] = {
        "raw cryptography verify": raw_verify,
        "kubesat": lambda: verifier.verify(token, keys, now),
        "PyJWT": lambda: pyjwt.decode(token, public, algorithms=[alg], audience=ISSUER, issuer=ISSUER),
        "joserfc": joserfc_verify,
        "jwcrypto": jwcrypto_verify,
    }
    sign_fns: dict[str, Callable[[], object]] = {
        "raw cryptography sign": raw_sign,
        "kubesat": lambda: sign(c, key),
        "PyJWT": lambda: pyjwt.encode(c, private, algorithm=alg, headers={"kid": kid}),
        "joserfc": lambda: rfc_jwt.encode(header, c, rfc_priv),
        "jwcrypto": jwcrypto_sign,
    }
    for fn in (*verify_fns.values(), *sign_fns.values()):
        fn()  # each accepts the token / makes one, or the bench stops here
    node = {"alg": alg, "token": token, "spki": spki.decode(), "pkcs8": pkcs8.decode(), "kid": kid,
            "issuer": ISSUER, "audience": ISSUER, "claims": c}
    return verify_fns, sign_fns, node


def node_ready(res: Results) -> bool:
    """node and bench/node/node_modules/jose there (npm install on first use), or a note saying why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        res.note("Node's jose: skipped (node or npm is not installed)")
        return False
    if not (NODE_DIR / "node_modules" / "jose").is_dir():
        print("[tokens] npm install in bench/node (first run)", flush=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock"], cwd=NODE_DIR,
                              capture_output=True, text=True)
        if done.returncode != 0:
            res.note(f"Node's jose: skipped (npm install failed: {done.stderr.strip().splitlines()[-1:]})")
            return False
    return True


def node_round(cases: list[dict[str, Any]], seconds: float, res: Results) -> dict[str, Any] | None:
    """One round of jose verify and sign rates for each case (bench/node/jose-bench.mjs, `seconds` each)."""
    out = subprocess.run(["node", "jose-bench.mjs"], cwd=NODE_DIR, capture_output=True, text=True,
                         input=json.dumps({"seconds": seconds, "rounds": 1, "cases": cases}))
    if out.returncode != 0:
        res.note(f"Node's jose: failed: {out.stderr.strip()[-300:]}")
        return None
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def run(res: Results, quick: bool) -> None:
    seconds, rounds = (0.45, 3) if quick else (3.0, 6)
    node_cases = []
    for alg in ("RS256", "ES256"):
        print(f"[tokens] {alg}: {rounds} interleaved rounds, {seconds:g} s per contender", flush=True)
        verify_fns, sign_fns, node = contenders(alg)
        node["fns"] = {"verify": verify_fns["kubesat"], "sign": sign_fns["kubesat"]}
        node_cases.append(node)
        for op, fns in (("verify", verify_fns), ("sign", sign_fns)):
            rates = interleaved(fns, seconds, rounds)
            ours = rates["kubesat"]
            what = "Verifier.verify (claims checked)" if op == "verify" else "sign()"
            for other, theirs in rates.items():
                if other == "kubesat":
                    continue
                res.add(SECTION, f"{alg} {op}: kubesat {what}", statistics.median(ours), "/s", other,
                        statistics.median(theirs), ratio=ratio(ours, theirs),
                        detail="pod-bound token; ratio = median of per-round ratios")
            res.entries[-1].detail += "; " + ", ".join(f"{k} {statistics.median(v):,.0f}/s" for k, v in rates.items())
    print("[tokens] Node jose, interleaved with kubesat round by round", flush=True)
    if not node_ready(res):
        return
    ours: dict[tuple[str, str], list[float]] = {(c["alg"], op): [] for c in node_cases for op in ("verify", "sign")}
    theirs: dict[tuple[str, str], list[float]] = {k: [] for k in ours}
    version = ""
    for _ in range(rounds):
        jose = node_round([{k: v for k, v in c.items() if k != "fns"} for c in node_cases], seconds / rounds, res)
        if jose is None:
            return
        version = f"Node jose {jose['version']} ({jose['node']})"
        for c in node_cases:
            for op in ("verify", "sign"):
                theirs[(c["alg"], op)].append(jose[c["alg"]][op])
                ours[(c["alg"], op)].append(rate(c["fns"][op], seconds / rounds))
    for (alg, op), mine in ours.items():
        what = "Verifier.verify (claims checked)" if op == "verify" else "sign()"
        res.add(SECTION, f"{alg} {op}: kubesat {what}", statistics.median(mine), "/s", version,
                statistics.median(theirs[(alg, op)]), ratio=ratio(mine, theirs[(alg, op)]),
                detail="jose's jwtVerify (iss, aud, exp checked) / SignJWT; one Node run per round, "
                       "then kubesat in this process")
