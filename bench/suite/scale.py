"""Cold start, and a server holding 1k/10k/100k ServiceAccounts and Pods: its RSS, TokenReview latency,
a list of all Pods (time, RSS after) and a watch of all Pods (time to its initial events)."""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path

from suite import wrk
from suite.common import Floor, Kubesat, Results, bench_identity, rss_mb
from suite.endpoints import REVIEW_PATH, review_body

SECTION = "scale"
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod-%d", "labels": {"app": "bench"}},
       # Bound to a node, so that the scheduler leaves them alone (an unschedulable Pod is retried, each
       # retry writing an Event and a status update: churn that is not what this section measures).
       "spec": {"nodeName": "bench-node", "serviceAccountName": "default", "automountServiceAccountToken": False,
                "containers": [{"name": "c", "image": "busybox", "env": [{"name": "A", "value": "b" * 64}]}]}}
SA = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa-%d"}}


def cold_start(res: Results, work: Path, runs: int) -> None:
    print(f"[scale] cold start, {runs} runs", flush=True)
    empty, existing, floor = [], [], []
    for i in range(runs):
        data = work / f"start-{i}"
        for into in (empty, existing):
            ks = Kubesat(data)
            into.append(ks.ready_s * 1000)
            ks.stop()
        fl = Floor(data / "pki")
        floor.append(fl.ready_s * 1000)
        fl.stop()
    ref = statistics.median(floor)
    how = (f"median of {runs}: process start to the 'ready' line on stdout; reference: the floor app "
           "(python + uvicorn + uvloop, same certificate) to its 'ready' line")
    res.add(SECTION, "cold start, empty data dir (keys, certificates made)", statistics.median(empty), "ms",
            "floor app start", ref, detail=how)
    res.add(SECTION, "cold start, existing data dir", statistics.median(existing), "ms", "floor app start", ref,
            detail=how)


def get(ctx_server: Kubesat, path: str, port: int | None = None, headers: dict[str, str] | None = None
        ) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection("127.0.0.1", port or ctx_server.port, context=ctx_server.tls_context(),
                                       timeout=600)
    conn.request("GET", path, headers=headers or {"Accept": "application/json"})
    return conn.getresponse()


def timed_read(resp: http.client.HTTPResponse) -> tuple[int, float]:
    t0 = time.perf_counter()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit(f"status {resp.status}: {body[:300]!r}")
    return len(body), t0


def list_all(ks: Kubesat) -> tuple[float, int, int]:
    """(seconds, bytes, items) of GET /api/v1/pods read whole."""
    t0 = time.perf_counter()
    r = get(ks, "/api/v1/pods")
    body = r.read()
    took = time.perf_counter() - t0
    if r.status != 200:
        raise SystemExit(f"list: {r.status} {body[:300]!r}")
    return took, len(body), len(json.loads(body)["items"])


def floor_bytes(ks: Kubesat, floor: Floor, n: int) -> float:
    t0 = time.perf_counter()
    r = get(ks, f"/bytes?n={n}", port=floor.port)
    body = r.read()
    if r.status != 200 or len(body) != n:
        raise SystemExit(f"floor /bytes: {r.status} {len(body)}")
    return time.perf_counter() - t0


def watch_initial(ks: Kubesat, want: int) -> float:
    """Seconds from sending a watch of all Pods (no resourceVersion) to reading its `want` initial ADDED events."""
    t0 = time.perf_counter()
    r = get(ks, "/api/v1/pods?watch=1")
    if r.status != 200:
        raise SystemExit(f"watch: {r.status}")
    lines = 0
    while lines < want:
        chunk = r.read1(65536)
        if not chunk:
            raise SystemExit(f"watch ended after {lines} events")
        lines += chunk.count(b"\n")
    took = time.perf_counter() - t0
    r.close()
    return took


def seed(ks: Kubesat, token: str, kind: str, step: int, count: int) -> float:
    """Create `count` objects (up to 7 more) through the API with wrk -c8; returns objects/s."""
    path, tpl = (("/api/v1/namespaces/bench/serviceaccounts", SA) if kind == "sa"
                 else ("/api/v1/namespaces/bench/pods", POD))
    body = json.dumps(tpl).replace("-%d", f"-{step}-%d")  # names unique across the size steps
    load = wrk.Load("POST", path, token, None, 201, '"creationTimestamp"', limit=count, body_tpl=body)
    r = wrk.run(ks.url, load, 3600, 8, timeout_s=30)
    if int(r.raw["good_ok"]) < count or r.raw["failed"]:  # type: ignore[call-overload]
        raise SystemExit(f"seeding {kind}: {r.raw}")
    return count / (r.raw["duration_us"] / 1e6)  # type: ignore[operator]


def wait_default_sa(ks: Kubesat) -> None:
    for _ in range(200):
        r = get(ks, "/api/v1/namespaces/bench/serviceaccounts/default")
        r.read()
        if r.status == 200:
            return
        time.sleep(0.05)
    raise SystemExit("namespace bench never got its default ServiceAccount")


def review_latency(ks: Kubesat, token: str, seconds: float) -> wrk.Run:
    load = wrk.Load("POST", REVIEW_PATH, token, review_body(token), 201, '"authenticated":true')
    r = wrk.run(ks.url, load, seconds, 1, server_pid=ks.pid)
    if r.failures:
        raise SystemExit(f"TokenReview at scale: {r.raw}")
    return r


def memory(res: Results, work: Path, sizes: list[int], seconds: float) -> None:
    ks = Kubesat(work / "scale")
    floor = Floor(ks.data / "pki")
    try:
        token = bench_identity(ks)
        conn = http.client.HTTPSConnection("127.0.0.1", ks.port, context=ks.tls_context())
        conn.request("POST", "/api/v1/namespaces", body=json.dumps({"metadata": {"name": "bench"}}),
                     headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        wait_default_sa(ks)
        time.sleep(1)
        review_latency(ks, token, 1)  # warm-up: the first requests after start pay for imports and caches
        fresh = rss_mb(ks.pid)[0]
        base = review_latency(ks, token, seconds)
        have = 0
        for size in sizes:
            print(f"[scale] seeding to {size:,} ServiceAccounts and {size:,} Pods", flush=True)
            t0 = time.perf_counter()
            sa_rate = seed(ks, token, "sa", size, size - have)
            pod_rate = seed(ks, token, "pod", size, size - have)
            seeded = time.perf_counter() - t0
            have = size
            time.sleep(1)
            rss, hwm = rss_mb(ks.pid)
            k = f"{size // 1000}k"
            res.add(SECTION, f"RSS with {k} SAs + {k} Pods", rss, "MB", "RSS with 0 objects", fresh,
                    detail=f"peak {hwm:.0f} MB; written through the API (wrk -c8) in {seeded:.1f} s: "
                           f"{sa_rate:,.0f} SAs/s, {pod_rate:,.0f} Pods/s")
            lat = review_latency(ks, token, seconds)
            for pct in ("p50", "p99"):
                res.add(SECTION, f"TokenReview {pct} with {k} objects (c=1)", getattr(lat, f"{pct}_ms"), "ms",
                        "same, 0 objects", getattr(base, f"{pct}_ms"),
                        detail=f"{lat.rate:,.0f} req/s vs {base.rate:,.0f} with 0 objects")
            before = rss_mb(ks.pid)[0]
            took, nbytes, items = list_all(ks)
            after, hwm = rss_mb(ks.pid)
            if not size <= items < size + 8 * len(sizes):
                raise SystemExit(f"list returned {items} Pods, expected {size}")
            ref = floor_bytes(ks, floor, nbytes)
            res.add(SECTION, f"list all {k} Pods", took * 1000, "ms", "floor app sending as many bytes", ref * 1000,
                    detail=f"{items:,} Pods, {nbytes / 1e6:.1f} MB read whole by http.client")
            res.add(SECTION, f"RSS after list of {k} Pods", after, "MB", "RSS before the list", before,
                    detail=f"peak {hwm:.0f} MB")
            w = watch_initial(ks, size)
            res.add(SECTION, f"watch all {k} Pods: initial events", w * 1000, "ms", f"list all {k} Pods", took * 1000,
                    detail="from the request to the last initial ADDED event")
        ks.stop()
        again = Kubesat(ks.data)
        res.add(SECTION, f"restart with {have // 1000}k SAs + {have // 1000}k Pods", again.ready_s * 1000, "ms",
                "floor app start", floor.ready_s * 1000, detail="process start to the 'ready' line")
        again.stop()
    finally:
        ks.stop()
        floor.stop()


def run(res: Results, quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="kubesat-bench-") as d:
        cold_start(res, Path(d), 3 if quick else 5)
        memory(res, Path(d), [1000, 10000] if quick else [1000, 10000, 100000], 2 if quick else 4)
