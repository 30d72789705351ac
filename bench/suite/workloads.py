"""Workloads: a Deployment of many replicas on one agent (runtime `none`) until every replica is available,
a rolling update of it, and the server's CPU while nothing changes; beside the same number of bare pods
created straight through the API until all are ready, and the idle CPU before the Deployment existed, both
measured in the same run."""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from suite import agent as agents
from suite.common import Kubesat, Results, cpu_seconds

SECTION = "workloads"
IDLE_SECONDS = 10.0


def _get(ks: Kubesat, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(ks.url + path, context=ks.tls_context(), timeout=30) as r:  # noqa: S310
        return json.loads(r.read())  # type: ignore[no-any-return]


def _ready_pods(ks: Kubesat) -> int:
    pods = _get(ks, "/api/v1/namespaces/bench/pods")["items"]
    return sum(1 for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                      for c in (p.get("status") or {}).get("conditions") or []))


def _deployment(ks: Kubesat) -> dict[str, Any]:
    return _get(ks, "/apis/apps/v1/namespaces/bench/deployments/web")


def _rolled_out(ks: Kubesat, replicas: int) -> bool:
    d = _deployment(ks)
    st = d.get("status") or {}
    return (st.get("observedGeneration") == d["metadata"]["generation"] and st.get("replicas") == replicas
            and st.get("updatedReplicas") == replicas and st.get("availableReplicas") == replicas)


# Under load the agent's event sender was seen pausing up to about 2 s between two writes (its event loop
# busy), and with 3 s of quiet the idle window twice began while a few hundred events were still queued.
QUIET_SECONDS = 5.0


def _settle(ks: Kubesat, quiet: float = QUIET_SECONDS, timeout: float = 300.0) -> float:
    """Wait until nothing is written for `quiet` seconds (the agent's queued events drained, statuses final);
    returns how long that took. The node's heartbeat (every 10 s) is part of the idle load measured after."""
    started = time.perf_counter()
    last, since = "", time.perf_counter()
    while time.perf_counter() - started < timeout:
        rv = _get(ks, "/api/v1/namespaces/default/configmaps?limit=1")["metadata"]["resourceVersion"]
        if rv != last:
            last, since = rv, time.perf_counter()
        elif time.perf_counter() - since >= quiet:
            break
        time.sleep(0.5)
    return time.perf_counter() - started


def _idle_cpu(ks: Kubesat) -> float:
    """The server's CPU over IDLE_SECONDS, as a percentage of one core."""
    before = cpu_seconds(ks.pid)
    time.sleep(IDLE_SECONDS)
    return (cpu_seconds(ks.pid) - before) / IDLE_SECONDS * 100


def _apply(ks: Kubesat, obj: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(obj))
    ks.kubectl("apply", "-f", str(path))


def run_deployment(res: Results, work: Path, replicas: int) -> None:
    print(f"[workloads] a Deployment of {replicas} replicas on one agent (runtime none)", flush=True)
    ks, token = agents.bench_server(work / "data")
    node = None
    try:
        node = agents.Agent(ks, work / "root", runtime="none")
        agents.wait_until("the agent's node", lambda: agents.NODE in ks.kubectl("get", "nodes", "-o", "name"), 30)
        idle_before = _idle_cpu(ks)

        started = time.perf_counter()
        agents.create_pods(ks, token, replicas)  # bare pods, bound to the agent's node
        agents.wait_until(f"{replicas} bare pods ready", lambda: _ready_pods(ks) >= replicas, 600)
        bare = time.perf_counter() - started
        ks.kubectl("delete", "pods", "--all", "-n", "bench", "--grace-period=0", "--force", "--wait=false")
        agents.wait_until("bare pods gone", lambda: not _get(ks, "/api/v1/namespaces/bench/pods")["items"],
                          600)

        deploy: dict[str, Any] = {
                  "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "bench"},
                  "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}}}}
        started = time.perf_counter()
        _apply(ks, deploy, work / "deploy.json")
        available = agents.wait_until(f"{replicas} replicas available", lambda: _rolled_out(ks, replicas), 900)
        res.add(SECTION, f"Deployment of {replicas}: all replicas available", available, "s",
                f"{replicas} bare pods created and ready", bare, target="value < 60" if replicas >= 1000 else None,
                detail="from kubectl apply to status.availableReplicas == replicas, runtime none")

        deploy["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/web:2"
        started = time.perf_counter()
        _apply(ks, deploy, work / "deploy.json")
        rolled = agents.wait_until("the rolling update", lambda: _rolled_out(ks, replicas), 1800)
        res.add(SECTION, f"Deployment of {replicas}: rolling update done", rolled, "s",
                "all replicas available at first", available, target="value < 120" if replicas >= 1000 else None,
                detail="25% surge / 25% unavailable (the defaults), until every replica is updated and available")

        settled = _settle(ks)
        idle_after = _idle_cpu(ks)
        res.add(SECTION, f"server CPU with the Deployment of {replicas} at rest", idle_after, "% of a core",
                "idle before the Deployment", idle_before, target="value < 10",
                detail=f"over {IDLE_SECONDS:.0f} s once no write had been made for {QUIET_SECONDS:.0f} s "
                       f"({settled:.0f} s after the "
                       "rollout: the agent's queued events draining); controllers run in the server process")
    finally:
        if node:
            node.stop()
        ks.stop()


def run(res: Results, quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="kubesat-bench-workloads-") as d:
        run_deployment(res, Path(d), 200 if quick else 1000)
