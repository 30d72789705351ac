"""HTTP figures with wrk: each endpoint against the framework floor and /livez, TokenReview latency at half its
peak, and TokenReview and /livez with 10% bad tokens."""

from __future__ import annotations

import base64
import json
import statistics
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from suite import wrk
from suite.common import Floor, Kubesat, Results

SECTION = "http"
REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


def review_body(token: str) -> str:
    return json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})


def forged(token: str) -> str:
    """The same header and claims, signed by a key the server never saw (same kid): a forgery."""
    head, payload, _ = token.split(".")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sig = key.sign(f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{payload}." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def malformed(token: str) -> str:
    head, payload, sig = token.split(".")
    return f"{head}.{payload[:-7]}!!{payload[-5:]}.{sig}"  # a byte outside base64url in the claims


@dataclass
class Case:
    label: str
    load: wrk.Load
    floor_ratio_target: str | None = None


def cases(token: str) -> list[Case]:
    sar = json.dumps({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "spec": {"user": "system:serviceaccount:default:bench",
                               "resourceAttributes": {"namespace": "default", "verb": "create",
                                                      "resource": "serviceaccounts", "subresource": "token"}}})
    treq = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": 3600}})
    return [
        Case("/livez", wrk.Load()),  # anonymous: the server's cheapest request
        Case("TokenReview", wrk.Load("POST", REVIEW_PATH, token, review_body(token), 201, '"authenticated":true'),
             "ratio >= 0.7"),
        Case("TokenRequest", wrk.Load("POST", "/api/v1/namespaces/default/serviceaccounts/bench/token", token,
                                      treq, 201, '"token":"')),
        Case("GET ServiceAccount", wrk.Load("GET", "/api/v1/namespaces/default/serviceaccounts/bench", token,
                                            None, 200, '"name":"bench"')),
        Case("SubjectAccessReview", wrk.Load("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", token,
                                             sar, 201, '"allowed":true')),
    ]


def detail(runs: list[wrk.Run]) -> str:
    return (f"wrk -t1 -c{runs[0].connections}, {len(runs)} rounds; server CPU "
            f"{statistics.median(r.server_cpu_us for r in runs):.0f} us/req; wrk "
            f"{statistics.median(r.wrk_cpu for r in runs):.2f} cores")


def check(label: str, r: wrk.Run) -> None:
    if r.failures:
        raise SystemExit(f"{label}: {r.failures} requests failed: {r.raw}")


def throughput(res: Results, ks: Kubesat, floor: Floor, token: str, seconds: float, rounds: int,
               connections: int) -> dict[str, float]:
    """Each endpoint in `rounds` interleaved rounds (floor first, then kubesat's endpoints); ratios are the
    medians of per-round ratios. Returns the median req/s per label."""
    all_cases = cases(token)
    runs: dict[str, list[wrk.Run]] = {"floor": []} | {c.label: [] for c in all_cases}
    for _ in range(rounds):
        runs["floor"].append(wrk.run(floor.url, wrk.Load(), seconds, connections, server_pid=floor.pid))
        check("floor", runs["floor"][-1])
        for c in all_cases:
            runs[c.label].append(wrk.run(ks.url, c.load, seconds, connections, server_pid=ks.pid))
            check(c.label, runs[c.label][-1])
    fl = runs["floor"]
    rates = {"floor": statistics.median(r.rate for r in fl)}
    for c in all_cases:
        rs = runs[c.label]
        rates[c.label] = statistics.median(r.rate for r in rs)

        def med_ratio(a: list[wrk.Run], b: list[wrk.Run], attr: str) -> float:
            return statistics.median(getattr(x, attr) / getattr(y, attr) for x, y in zip(a, b, strict=True))

        res.add(SECTION, f"{c.label} req/s", rates[c.label], "req/s", "framework floor", rates["floor"],
                ratio=med_ratio(rs, fl, "rate"), target=c.floor_ratio_target,
                detail=f"{detail(rs)}; the floor: {statistics.median(r.server_cpu_us for r in fl):.0f} us/req")
        if c.label != "/livez":
            res.add(SECTION, f"{c.label} req/s vs /livez", rates[c.label], "req/s", "/livez",
                    rates["/livez"], ratio=med_ratio(rs, runs["/livez"], "rate"))
        for pct in ("p50", "p99"):
            attr = f"{pct}_ms"
            res.add(SECTION, f"{c.label} {pct} at c={connections}", statistics.median(getattr(r, attr) for r in rs),
                    "ms", f"floor {pct}", statistics.median(getattr(r, attr) for r in fl))
    return rates


def half_peak(res: Results, ks: Kubesat, floor: Floor, token: str, peak: float, seconds: float) -> None:
    """TokenReview latency at about half its peak rate, the floor at the same offered rate as reference."""
    rate = peak / 2
    load = cases(token)[1].load
    ours = wrk.at_rate(ks.url, load, rate, seconds, ks.pid)
    check("TokenReview at half peak", ours)
    ref = wrk.at_rate(floor.url, wrk.Load(), rate, seconds, floor.pid)
    how = (f"offered ~{rate:,.0f} req/s (half of {peak:,.0f}): got {ours.rate:,.0f} req/s on {ours.connections} "
           f"connections; floor got {ref.rate:,.0f}")
    res.add(SECTION, "TokenReview p50 at half peak", ours.p50_ms, "ms", "floor p50, same rate", ref.p50_ms,
            detail=how)
    res.add(SECTION, "TokenReview p99 at half peak", ours.p99_ms, "ms", "floor p99, same rate", ref.p99_ms,
            target="value < 5", detail=how)


def bad_input(res: Results, ks: Kubesat, token: str, seconds: float, rounds: int, connections: int) -> None:
    """TokenReview and /livez with every 10th request carrying a malformed or forged token, against the
    same load without them, in interleaved rounds."""
    fake, broken = forged(token), malformed(token)
    review = cases(token)[1].load
    mixed_review = wrk.Load(review.method, review.path, token, review.body, 201, '"authenticated":true',
                            bad=[{"token": broken, "body": review.body}, {"token": fake, "body": review.body},
                                 {"token": token, "body": review_body(fake)},
                                 {"token": token, "body": review_body(broken)}],
                            bad_status=(401, 201), bad_every=10)
    livez = wrk.Load()
    mixed_livez = wrk.Load(bad=[{"token": broken}, {"token": fake}], bad_status=(401,), bad_every=10)
    for label, clean, mixed in (("TokenReview", review, mixed_review), ("/livez", livez, mixed_livez)):
        base_runs, mixed_runs, bad_runs = [], [], []
        only_bad = wrk.Load(**{**mixed.__dict__, "bad_every": 1})
        for _ in range(rounds):
            base_runs.append(wrk.run(ks.url, clean, seconds, connections, server_pid=ks.pid))
            mixed_runs.append(wrk.run(ks.url, mixed, seconds, connections, server_pid=ks.pid))
            bad_runs.append(wrk.run(ks.url, only_bad, seconds, connections, server_pid=ks.pid))
        ratio = statistics.median(m.good_rate / b.good_rate for m, b in zip(mixed_runs, base_runs, strict=True))
        bad_share = sum(int(m.raw["bad_sent"]) for m in mixed_runs) / max(  # type: ignore[call-overload]
            1, sum(int(m.raw["good_sent"]) + int(m.raw["bad_sent"]) for m in mixed_runs))  # type: ignore[call-overload]
        res.add(SECTION, f"{label} good req/s with 10% bad tokens", statistics.median(m.good_rate for m in mixed_runs),
                "req/s", "all good, same run", statistics.median(b.good_rate for b in base_runs), ratio=ratio,
                target="ratio >= 0.8",
                detail=f"{bad_share:.1%} of requests bad; bad answered as expected: "
                       f"{sum(int(m.raw['bad_ok']) for m in mixed_runs)}")  # type: ignore[call-overload]
        # What bounds the ratio above: with bad requests costing k times a good one, 10% of them leave the
        # good ones 0.9 / (0.9 + 0.1 k) of the clean rate (k <= 2.25 keeps it >= 0.8).
        res.add(SECTION, f"{label} server CPU per bad-token request",
                statistics.median(b.server_cpu_us for b in bad_runs), "us", "per good request",
                statistics.median(b.server_cpu_us for b in base_runs),
                detail=f"all-bad runs: {statistics.median(b.rate for b in bad_runs):,.0f} req/s, every answer as "
                       f"expected: {all(b.failures == 0 and int(b.raw['bad_ok']) > 0 for b in bad_runs)}")
        failed = sum(m.failures for m in mixed_runs)
        good = sum(int(m.raw["good_ok"]) for m in mixed_runs)  # type: ignore[call-overload]
        res.add(SECTION, f"{label} good requests failed with 10% bad tokens", failed, "count",
                "good requests answered", good, target="value == 0",
                detail=next((str(m.raw["first_fail"]) for m in mixed_runs if m.raw["first_fail"]), ""))


def run(res: Results, ks: Kubesat, floor: Floor, token: str, quick: bool) -> None:
    seconds, rounds, connections = (2, 2, 4) if quick else (4, 4, 4)
    print(f"[http] wrk -t1 -c{connections}, {rounds} interleaved rounds of {seconds} s per endpoint", flush=True)
    rates = throughput(res, ks, floor, token, seconds, rounds, connections)
    print("[http] TokenReview latency at half its peak", flush=True)
    half_peak(res, ks, floor, token, rates["TokenReview"], 3 if quick else 6)
    print("[http] bad input: 10% malformed or forged tokens", flush=True)
    bad_input(res, ks, token, seconds, rounds if not quick else 2, connections)
