"""Token sign/verify rates: raw cryptography vs kubesat's sign()/Verifier vs PyJWT, on a Kubernetes-shaped token."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jwt as pyjwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kubesat.tokens.claims import EXPIRATION_EXTENSION_SECONDS, WARN_ONLY_BOUND_TOKEN_EXPIRATION, bound_claims
from kubesat.tokens.jwt import Verifier, b64decode, sign
from kubesat.tokens.keys import KeySet, SigningKey

ISSUER = "https://kubernetes.default.svc.cluster.local"


def interleaved(fns: dict[str, Callable[[], object]], seconds: float, rounds: int) -> dict[str, list[float]]:
    """Rates of each fn, measured in `rounds` alternating slices of seconds/rounds each.

    Alternating the loops means a change of clock speed or a noisy neighbour hits every
    contender alike, so ratios taken within one round are stable even when rates drift.
    """
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            out[name].append(rate(fn, seconds / rounds))
    return out


def ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b, each round's pair measured back to back."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of fn over about `seconds` (batches of 64 keep the timer out of the loop)."""
    fn()
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(64):
            fn()
        n += 64
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def claims(now: int, shape: str = "pod") -> dict[str, object]:
    if shape == "minimal":
        # A plain TokenRequest token: no bound object, no extension.
        return bound_claims(
            issuer=ISSUER, audiences=[ISSUER], namespace="default", sa_name="default",
            sa_uid="6a4e5f3c-1d2b-4c8e-9f70-2b1a3c4d5e6f", expiration_seconds=3600, now=now,
            jti="0f1e2d3c-4b5a-4968-8776-655443322110",
        )
    # A pod-bound, extended token as the kubelet gets it (spec §1.1 example shape).
    return bound_claims(
        issuer=ISSUER,
        audiences=[ISSUER],
        namespace="default",
        sa_name="default",
        sa_uid="6a4e5f3c-1d2b-4c8e-9f70-2b1a3c4d5e6f",
        expiration_seconds=WARN_ONLY_BOUND_TOKEN_EXPIRATION,
        exp_override=now + EXPIRATION_EXTENSION_SECONDS,
        warn_after=WARN_ONLY_BOUND_TOKEN_EXPIRATION,
        now=now,
        jti="0f1e2d3c-4b5a-4968-8776-655443322110",
        pod=("web-7d9f8c6b5-x2x4q", "3b9c7e2a-8f14-4d5e-a6b7-c8d9e0f1a2b3"),
        node=("node-a", "9e8d7c6b-5a49-4382-b716-05f4e3d2c1b0"),
    )


def run(kind: str, shape: str, seconds: float, rounds: int) -> None:
    if kind == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pyjwt_alg = "RS256"
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        pyjwt_alg = "ES256"
    key = SigningKey(private)
    keys = KeySet(key)
    public = private.public_key()
    now = int(time.time())
    c = claims(now, shape)
    token = sign(c, key)
    hseg, pseg, sseg = token.encode().split(b".")
    signing_input = hseg + b"." + pseg
    sig = b64decode(sseg)
    verifier = Verifier([ISSUER], implicit_audiences=[ISSUER])
    verifier.verify(token, keys, now)

    if kind == "RS256":
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

        def raw_verify() -> None:
            public.verify(sig, signing_input, pkcs1, sha256)

        def raw_sign() -> None:
            private.sign(signing_input, pkcs1, sha256)

        def raw_recover() -> None:
            public.recover_data_from_signature(sig, pkcs1, None)
    else:
        ecdsa = ec.ECDSA(hashes.SHA256())
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))

        def raw_verify() -> None:
            public.verify(der, signing_input, ecdsa)

        def raw_sign() -> None:
            private.sign(signing_input, ecdsa)

        raw_recover = raw_verify  # no recover form for ECDSA; listed only for RS256

    def ours() -> None:
        verifier.verify(token, keys, now)

    def theirs() -> None:
        pyjwt.decode(token, public, algorithms=[pyjwt_alg], audience=ISSUER, issuer=ISSUER)

    def ours_sign() -> None:
        sign(c, key)

    verify_rates = interleaved(
        {"raw": raw_verify, "recover": raw_recover, "ours": ours, "pyjwt": theirs}, seconds, rounds
    )
    sign_rates = interleaved({"raw": raw_sign, "ours": ours_sign}, seconds, rounds)
    med = {k: statistics.median(v) for k, v in verify_rates.items()}
    r_raw, r_ours, r_pyjwt = verify_rates["raw"], verify_rates["ours"], verify_rates["pyjwt"]
    print(f"{kind}  {shape}-shaped token, {len(token)} bytes, {rounds} interleaved rounds, {seconds:g} s per contender")
    print(f"  (a) raw cryptography verify   {med['raw']:10,.0f}/s")
    if kind == "RS256":
        recover_ratio = ratio(verify_rates["recover"], r_raw)
        print(f"      raw verify-recover only   {med['recover']:10,.0f}/s   {recover_ratio:.2f}x raw"
              "   (the primitive the Verifier calls, before its SHA-256 compare)")
    print(f"  (b) Verifier.verify + claims  {med['ours']:10,.0f}/s   {ratio(r_ours, r_raw):.2f}x raw"
          f"   {ratio(r_ours, r_pyjwt):.2f}x PyJWT")
    print(f"  (c) PyJWT jwt.decode aud/exp  {med['pyjwt']:10,.0f}/s   {ratio(r_pyjwt, r_raw):.2f}x raw")
    print(f"  (d) raw cryptography sign     {statistics.median(sign_rates['raw']):10,.0f}/s")
    print(f"      sign()                    {statistics.median(sign_rates['ours']):10,.0f}/s"
          f"   {ratio(sign_rates['ours'], sign_rates['raw']):.2f}x raw")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per contender, over all rounds")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved rounds (the ratios are medians over them)")
    ap.add_argument("--alg", choices=["RS256", "ES256", "all"], default="all")
    ap.add_argument("--shape", choices=["pod", "minimal", "all"], default="pod",
                    help="pod: pod-bound extended token (node, jti, warnafter); minimal: plain TokenRequest token")
    args = ap.parse_args()
    for kind in ("RS256", "ES256") if args.alg == "all" else (args.alg,):
        for shape in ("pod", "minimal") if args.shape == "all" else (args.shape,):
            run(kind, shape, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
