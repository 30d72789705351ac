"""The hot paths of this tree against another commit's, in one run: /livez, TokenReview and TokenRequest with wrk.

Both servers run side by side on fresh data dirs, each from its own source tree (the other commit is checked
out in a temporary git worktree). Each endpoint is measured in interleaved rounds, base then this tree,
and every ratio is the median over rounds of two figures measured back to back (which server goes first
alternates), so a busy neighbour or a change of clock hits both sides alike. Two figures per run: the
throughput, and the server's CPU time per request (its process and its helper processes, from /proc),
which a noisy machine disturbs less. A ratio above 1 is better than the base. wrk (a C load generator)
drives them with a bearer token, so the client is not the bottleneck.

Usage: python bench/compare.py [--base HEAD~1] [--seconds 4] [--rounds 3] [--connections 4] [--threads 1]
Target (hardening issue): each of the three within 5% of the base (ratio >= 0.95).
An A/A run (a tree against itself) shows the noise: on the shared 2-core machine, about +-10% in
throughput over 4 rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from suite.common import cpu_seconds, free_port

ROOT = Path(__file__).resolve().parents[1]

LUA = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
response = function(status, headers, body)
  if status >= 300 then
    io.stderr:write("unexpected status " .. status .. "\\n")
    wrk.thread:stop()
  end
end
"""



@dataclass
class Server:
    name: str
    src: Path
    data: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubectl(self, *args: str) -> str:
        env = dict(os.environ, KUBECONFIG=str(self.data / "admin.kubeconfig"))
        return subprocess.run(["kubectl", *args], env=env, check=True, capture_output=True, text=True).stdout


def start(name: str, src: Path, workdir: Path) -> Server:
    data = workdir / name
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(src))
    # Trees that run a local node by default are compared without it (older trees have no such flag).
    no_node = ["--no-node"] if "--no-node" in (src / "kubesat" / "cli.py").read_text() else []
    proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "serve", "--data-dir", str(data), "--port",
                             str(port), "--audit-log-path", "", *no_node],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if b"ready" not in line:
        raise SystemExit(f"{name} server did not start: {line!r}")
    return Server(name, src, data, port, proc)


def bench_identity(server: Server) -> str:
    """A service account allowed to create tokens and token reviews, and a day-long token of its own."""
    server.kubectl("create", "serviceaccount", "bench")
    server.kubectl("create", "clusterrolebinding", "bench", "--clusterrole=cluster-admin",
                   "--serviceaccount=default:bench")
    return server.kubectl("create", "token", "bench", "--duration=24h").strip()


def wrk(server: Server, path: str, script: Path, seconds: float, connections: int,
        threads: int) -> tuple[float, float]:
    """(requests per second, server CPU microseconds per request) of one wrk run."""
    cpu = cpu_seconds(server.proc.pid)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "-s", str(script),
                          server.url + path], check=True, capture_output=True, text=True)
    cpu = cpu_seconds(server.proc.pid) - cpu
    if "unexpected status" in out.stderr or "Non-2xx" in out.stdout:
        raise SystemExit(f"{server.name} {path}: errors during the run:\n{out.stdout}{out.stderr}")
    rate = total = 0.0
    for line in out.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            rate = float(line.split()[1])
        elif "requests in" in line:
            total = float(line.split()[0])
    if not rate or not total:
        raise SystemExit(f"no rate in wrk's output:\n{out.stdout}")
    return rate, cpu / total * 1e6


def script(workdir: Path, name: str, method: str, body: dict[str, object] | None, token: str) -> Path:
    path = workdir / f"{name}.lua"
    path.write_text(LUA.format(method=method, body=json.dumps(json.dumps(body)) if body else "nil", token=token))
    return path


def wait_ready(server: Server) -> None:
    ctx = ssl.create_default_context(cafile=str(server.data / "pki" / "ca.crt"))
    for _ in range(100):
        try:
            with urllib.request.urlopen(server.url + "/readyz", context=ctx, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{server.name} never became ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD~1", help="commit to compare against")
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated endpoints to measure (default: all three)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    head_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    workdir = Path(tempfile.mkdtemp(prefix="kubesat-compare-"))
    tree = workdir / "base-tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), base_rev], cwd=ROOT, check=True,
                   capture_output=True)
    servers: list[Server] = []
    try:
        servers = [start("base", tree / "src", workdir), start("this", ROOT / "src", workdir)]
        tokens = {}
        for s in servers:
            wait_ready(s)
            tokens[s.name] = bench_identity(s)
        cases = [
            ("/livez", "GET", None, "/livez"),
            ("TokenReview", "POST", "token", "/apis/authentication.k8s.io/v1/tokenreviews"),
            ("TokenRequest", "POST", {"spec": {"expirationSeconds": 3600}},
             "/api/v1/namespaces/default/serviceaccounts/bench/token"),
        ]
        print(f"base {base_rev} vs this tree ({head_rev} + work tree), wrk -t{args.threads} -c{args.connections} "
              f"-d{args.seconds:g}s, {args.rounds} interleaved rounds")
        print(f"{'endpoint':<14}{'base req/s':>12}{'this req/s':>12}{'ratio':>8}"
              f"{'base CPU/req':>14}{'this CPU/req':>14}{'CPU ratio':>11}")
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        for label, method, body, path in cases:
            if wanted and label.strip("/") not in wanted:
                continue
            rates: dict[str, list[float]] = {"base": [], "this": []}
            costs: dict[str, list[float]] = {"base": [], "this": []}
            ratios, cost_ratios = [], []
            for round_no in range(args.rounds):
                pair: dict[str, tuple[float, float]] = {}
                # Alternate which server goes first, so a drift within a round favours neither.
                for s in servers if round_no % 2 == 0 else servers[::-1]:
                    payload = body
                    if body == "token":
                        payload = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                   "spec": {"token": tokens[s.name]}}
                    lua = script(workdir, f"{s.name}-{label.strip('/')}", method, payload, tokens[s.name])  # type: ignore[arg-type]
                    pair[s.name] = wrk(s, path, lua, args.seconds, args.connections, args.threads)
                    rates[s.name].append(pair[s.name][0])
                    costs[s.name].append(pair[s.name][1])
                ratios.append(pair["this"][0] / pair["base"][0])
                cost_ratios.append(pair["base"][1] / pair["this"][1])
            ratio = statistics.median(ratios)
            cost_ratio = statistics.median(cost_ratios)
            print(f"{label:<14}{statistics.median(rates['base']):>12,.0f}{statistics.median(rates['this']):>12,.0f}"
                  f"{ratio:>7.2f}x{statistics.median(costs['base']):>12,.0f}us"
                  f"{statistics.median(costs['this']):>12,.0f}us{cost_ratio:>10.2f}x")
    finally:
        for s in servers:
            s.proc.send_signal(signal.SIGTERM)
            s.proc.wait(timeout=20)
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
