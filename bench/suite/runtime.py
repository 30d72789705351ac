"""The process runtime (issue 11's figures): `kubectl exec POD -- true` against `kubectl get pod POD` in the same run,
the time from a pod's create to its process running, and one agent holding 200 running pods (its RSS, and its CPU
while nothing changes)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from suite.common import Kubesat, Results, cpu_seconds, rss_mb, stop_process
from suite.scale import wait_default_sa

NODE = "bench-runtime"
SECTION = "runtime"


class RuntimeAgent:
    """`kubesat agent --runtime process` for NODE, relaying on a free port, the bench dir allowed as hostPath."""

    def __init__(self, ks: Kubesat, work: Path) -> None:
        kubeconfig = work / "node.kubeconfig"
        kubeconfig.write_bytes(subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", NODE,
                                               "--data-dir", str(ks.data)], capture_output=True, check=True).stdout)
        self.marks = work / "marks"
        self.marks.mkdir()
        self.marks.chmod(0o777)
        self.log = tempfile.NamedTemporaryFile(prefix="bench-runtime-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig),
                                      "--node-name", NODE, "--root", str(work / "root"), "--port", "0",
                                      "--runtime", "process", "--service-relay-port", "0",
                                      "--allow-host-path", str(self.marks), "--hide-path", str(ks.data),
                                      "--log-level", "warning"],
                                     stdout=subprocess.DEVNULL, stderr=self.log)

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def _pod(name: str, command: list[str], marks: Path | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                               "containers": [{"name": "c", "image": "busybox", "command": command}]}
    if marks is not None:
        spec["containers"][0]["volumeMounts"] = [{"name": "marks", "mountPath": "/marks"}]  # type: ignore[index]
        spec["volumes"] = [{"name": "marks", "hostPath": {"path": str(marks)}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "bench"}, "spec": spec}


def _kubectl_in(ks: Kubesat, text: str, *args: str) -> str:
    env = dict(os.environ, KUBECONFIG=str(ks.kubeconfig))
    return subprocess.run(["kubectl", *args], input=text, env=env, check=True, capture_output=True,
                          text=True).stdout


def _wait(what: str, pred: object, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > end:
            raise SystemExit(f"runtime bench: {what} not reached in {timeout:.0f} s")
        time.sleep(0.05)


def _running(ks: Kubesat, name: str) -> bool:
    return ks.kubectl("get", "pod", name, "-n", "bench", "-o", "jsonpath={.status.phase}") == "Running"


def exec_vs_get(res: Results, ks: Kubesat, rounds: int) -> None:
    _kubectl_in(ks, json.dumps(_pod("execme", ["sleep", "3600"])), "create", "-f", "-")
    _wait("the exec pod Running", lambda: _running(ks, "execme"), 60)
    exec_s, get_s = [], []
    for _ in range(rounds):  # interleaved, so that load from elsewhere hits both alike
        t = time.perf_counter()
        ks.kubectl("get", "pod", "execme", "-n", "bench")
        get_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        ks.kubectl("exec", "execme", "-n", "bench", "--", "true")
        exec_s.append(time.perf_counter() - t)
    value, ref = statistics.median(exec_s) * 1000, statistics.median(get_s) * 1000
    res.add(SECTION, "kubectl exec POD -- true (median)", value, "ms", "kubectl get pod POD (median)", ref,
            target="ratio <= 1.5", detail=f"{rounds} interleaved runs each; process runtime, kubelet API over "
                                          "WebSockets (v5.channel.k8s.io), relayed by the API server")


def pod_start(res: Results, ks: Kubesat, marks: Path, count: int) -> None:
    """Create a pod (the POST's start) to its command running (the time it writes to a hostPath), one at a time."""
    delays = []
    for i in range(count):
        name = f"start-{i}"
        mark = marks / name
        started = time.time()
        _kubectl_in(ks, json.dumps(_pod(name, ["sh", "-c", f"date +%s.%N > /marks/{name}; sleep 3600"], marks)),
                    "create", "-f", "-")
        _wait(f"{name} started", lambda m=mark: m.exists() and m.read_text().strip(), 60)
        delays.append(float(mark.read_text()) - started)
        ks.kubectl("delete", "pod", name, "-n", "bench", "--wait=false")
    spawn = []
    for _ in range(count):
        t = time.perf_counter()
        subprocess.run(["sh", "-c", "date +%s.%N > /dev/null"], check=True)
        spawn.append(time.perf_counter() - t)
    p50 = statistics.median(delays) * 1000
    res.add(SECTION, "pod create to process started (p50)", p50, "ms", "sh -c date on the host (p50)",
            statistics.median(spawn) * 1000, target="value < 500",
            detail=f"{count} pods one after another, agent otherwise idle; p90 "
                   f"{sorted(delays)[int(0.9 * (count - 1))] * 1000:.0f} ms; the create's time includes kubectl's "
                   "start-up, the scheduler is bypassed (nodeName set)")


def many_pods(res: Results, ks: Kubesat, agent: RuntimeAgent, count: int, idle_seconds: float) -> None:
    before_rss = rss_mb(agent.proc.pid)[0]
    items = [_pod(f"sleeper-{i}", ["sleep", "3600"]) for i in range(count)]
    _kubectl_in(ks, json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), "create", "-f", "-")

    def all_running() -> bool:
        out = ks.kubectl("get", "pods", "-n", "bench", "-o",
                         "jsonpath={range .items[*]}{.metadata.name}={.status.phase}{\"\\n\"}{end}")
        return sum(1 for line in out.splitlines() if line.startswith("sleeper-") and line.endswith("=Running")) \
            == count

    started = time.perf_counter()
    _wait(f"{count} pods Running", all_running, 600)
    took = time.perf_counter() - started
    time.sleep(5)  # let the last status reports settle
    rss = rss_mb(agent.proc.pid)[0]
    cpu0, t0 = cpu_seconds(agent.proc.pid), time.perf_counter()
    time.sleep(idle_seconds)
    share = (cpu_seconds(agent.proc.pid) - cpu0) / (time.perf_counter() - t0) * 100
    res.add(SECTION, f"agent RSS with {count} running pods", rss, "MB", "agent RSS before them", before_rss,
            target="value < 300", detail=f"all Running {took:.1f} s after one create of the list")
    res.add(SECTION, f"agent CPU with {count} running pods, nothing changing", share, "% of a core",
            "none", None, target="value < 2", detail=f"measured over {idle_seconds:.0f} s (lease renewals, status "
                                                      "heartbeats and the sync period included)")


def run(res: Results, quick: bool) -> None:
    print("runtime (process runtime: exec, pod start, 200 running pods):", flush=True)
    with tempfile.TemporaryDirectory(prefix="kubesat-bench-runtime-") as d:
        work = Path(d)
        ks = Kubesat(work / "data")
        agent = None
        try:
            ks.kubectl("create", "namespace", "bench")
            wait_default_sa(ks)
            agent = RuntimeAgent(ks, work)
            _wait("the node Ready", lambda: '"Ready"' in _kubectl_in(ks, "", "get", "nodes", "-o", "json"), 60)
            exec_vs_get(res, ks, 5 if quick else 20)
            pod_start(res, ks, agent.marks, 5 if quick else 20)
            many_pods(res, ks, agent, 200, 15 if quick else 60)
        finally:
            if agent is not None:
                agent.stop()
            ks.stop()
