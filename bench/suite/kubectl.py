"""kubectl end to end, per command (hyperfine-like: N runs, the median), against `kubectl version --client`."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time

from suite.common import Kubesat, Results

SECTION = "kubectl"


def run(res: Results, ks: Kubesat, quick: bool) -> None:
    n = 10 if quick else 30
    print(f"[kubectl] {n} runs of each command, interleaved", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, KUBECONFIG=str(ks.kubeconfig), KUBECACHEDIR=cache)
        commands = {
            "kubectl version --client": ["kubectl", "version", "--client"],
            "kubectl create token": ["kubectl", "create", "token", "bench"],
            "kubectl auth can-i": ["kubectl", "auth", "can-i", "create", "serviceaccounts/token"],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for argv in commands.values():  # warm-up: page cache, discovery cache
            subprocess.run(argv, env=env, check=True, capture_output=True)
        for _ in range(n):
            for label, argv in commands.items():
                t0 = time.perf_counter()
                subprocess.run(argv, env=env, check=True, capture_output=True)
                times[label].append((time.perf_counter() - t0) * 1000)
    floor = statistics.median(times["kubectl version --client"])
    for label in ("kubectl create token", "kubectl auth can-i"):
        ts = sorted(times[label])
        res.add(SECTION, label, statistics.median(ts), "ms", "kubectl version --client", floor,
                detail=f"median of {n}; min {ts[0]:.1f} ms, max {ts[-1]:.1f} ms")
