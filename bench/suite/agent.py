"""The node agent: one agent with many pods bound to it (volumes written, RSS), and the CPU a token rotation
costs end to end (TokenRequest plus atomic write) beside the bare TokenRequest's, measured in the same run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from suite import wrk
from suite.common import Kubesat, Results, bench_identity, cpu_seconds, rss_mb, stop_process
from suite.scale import wait_default_sa

NODE = "bench-agent"
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "apod-%d"},
       "spec": {"nodeName": NODE, "serviceAccountName": "default",
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}
_TOKEN_CREATES = re.compile(r'apiserver_request_total\{[^}]*resource="serviceaccounts"[^}]*subresource="token"'
                            r'[^}]*verb="POST"[^}]*\} (\d+(?:\.\d+)?)')


class Agent:
    """`kubesat agent` for NODE as a child process, with a node's own kubeconfig."""

    def __init__(self, ks: Kubesat, root: Path, clock_rate: float = 1.0, runtime: str = "") -> None:
        kubeconfig = root.parent / "node.kubeconfig"
        kubeconfig.write_bytes(subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", NODE,
                                               "--data-dir", str(ks.data)], capture_output=True, check=True).stdout)
        env = dict(os.environ, KUBESAT_AGENT_CLOCK_RATE=str(clock_rate))
        self.root = root
        self.log = tempfile.NamedTemporaryFile(prefix="bench-agent-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig),
                                      "--node-name", NODE, "--root", str(root), "--port", "0",
                                      "--log-level", "warning", *(["--runtime", runtime] if runtime else [])],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env)

    def token_files(self) -> int:
        return len(list((self.root / "pods").glob("*/volumes/kubernetes.io~projected/*/token")))

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def _token_requests(ks: Kubesat) -> float:
    """TokenRequests the server has answered so far, from its /metrics."""
    text = ks.kubectl("get", "--raw", "/metrics")
    return sum(float(m.group(1)) for m in _TOKEN_CREATES.finditer(text))


def wait_until(what: str, pred: object, timeout: float) -> float:
    start = time.perf_counter()
    while not pred():  # type: ignore[operator]
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"agent bench: {what} not reached in {timeout:.0f} s")
        time.sleep(0.1)
    return time.perf_counter() - start


def bench_server(data: Path) -> tuple[Kubesat, str]:
    """A server with namespace `bench` (and its default ServiceAccount) and a cluster-admin bearer token."""
    ks = Kubesat(data)
    token = bench_identity(ks)
    ks.kubectl("create", "namespace", "bench")
    wait_default_sa(ks)
    return ks, token


def create_pods(ks: Kubesat, token: str, count: int) -> None:
    load = wrk.Load("POST", "/api/v1/namespaces/bench/pods", token, None, 201, '"creationTimestamp"',
                    limit=count, body_tpl=json.dumps(POD))
    made = wrk.run(ks.url, load, 3600, 8, timeout_s=30)
    if int(made.raw["good_ok"]) < count:  # type: ignore[call-overload]
        raise SystemExit(f"agent bench: creating pods: {made.raw}")


def pods_written(res: Results, work: Path, count: int) -> None:
    print(f"[agent] {count} pods bound to one agent", flush=True)
    ks, token = bench_server(work / "pods-data")
    agent = None
    try:
        agent = Agent(ks, work / "pods-root")
        wait_until("the agent's node", lambda: NODE in ks.kubectl("get", "nodes", "-o", "name"), 30)
        started = time.perf_counter()
        create_pods(ks, token, count)
        created = time.perf_counter() - started
        after_bound = wait_until(f"{count} token volumes",
                                 lambda: agent is not None and agent.token_files() >= count, 600)
        res.add("agent", f"{count} pods' volumes written after the last is bound", after_bound, "s",
                f"creating the {count} pods", created, target="value < 30" if count >= 5000 else None,
                detail="until every pod's projected token file exists under the agent's root")
        rss, _ = rss_mb(agent.proc.pid)
        server_rss, _ = rss_mb(ks.pid)
        res.add("agent", f"agent RSS with {count} pods", rss, "MB", "the server's RSS", server_rss,
                target="value < 200" if count >= 5000 else None)
    finally:
        if agent:
            agent.stop()
        ks.stop()


def rotation_cost(res: Results, work: Path, pods: int, seconds: float) -> None:
    """With the agent's refresh clock run 10,000x fast, each pod's token (3607 s, refreshed at 80 % of its life)
    is due about every 0.29 s: the steady state of rotation, sped up. The CPU of agent and server over the
    refreshes made, per refresh, beside the server's own CPU per bare TokenRequest (wrk)."""
    print(f"[agent] rotation cost, {pods} pods, {seconds:.0f} s", flush=True)
    ks, token = bench_server(work / "rot-data")
    agent = None
    try:
        bare = wrk.run(ks.url, wrk.Load("POST", "/api/v1/namespaces/default/serviceaccounts/bench/token", token,
                                        json.dumps({"spec": {"expirationSeconds": 3600}}), 201),
                       seconds, 4, server_pid=ks.pid)
        agent = Agent(ks, work / "rot-root", clock_rate=10_000)
        create_pods(ks, token, pods)
        wait_until("the pods' token volumes", lambda: agent is not None and agent.token_files() >= pods, 120)
        before = (_token_requests(ks), cpu_seconds(ks.pid) + cpu_seconds(agent.proc.pid))
        time.sleep(seconds)
        after = (_token_requests(ks), cpu_seconds(ks.pid) + cpu_seconds(agent.proc.pid))
        refreshed = after[0] - before[0]
        if refreshed <= 0:
            raise SystemExit("agent bench: no token was refreshed")
        per_token_ms = (after[1] - before[1]) / refreshed * 1000
        res.add("agent", "token rotation: agent + server CPU per refreshed token", per_token_ms, "ms",
                "server CPU per bare TokenRequest", bare.server_cpu_us / 1000, target="value < 2",
                detail=f"{refreshed:.0f} refreshes in {seconds:.0f} s with the refresh clock 10,000x fast "
                       "(each token due about every 0.29 s)")
    finally:
        if agent:
            agent.stop()
        ks.stop()


def run(res: Results, quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="kubesat-bench-agent-") as d:
        work = Path(d)
        pods_written(res, work, 1000 if quick else 5000)
        rotation_cost(res, work, 20, 5 if quick else 15)
