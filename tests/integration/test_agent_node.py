"""`kubesat agent` as a real process with a node's own credentials: it registers its Node as the kubelet
does, renews its Lease, reports not ready when stopped, and refuses a bad start with one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server, wait_for

NODE = "agent-n1"


def _node_kubeconfig(server: Server, node: str, tmp: Path) -> Path:
    out = subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", node,
                          "--data-dir", str(server.data_dir)], capture_output=True, check=True)
    path = tmp / f"{node}.kubeconfig"
    path.write_bytes(out.stdout)
    return path


def _start_agent(kubeconfig: Path, node: str, root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig),
                             "--node-name", node, "--root", str(root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _get(server: Server, *args: str) -> dict:
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def agent(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    tmp = tmp_path_factory.mktemp("agent")
    proc = _start_agent(_node_kubeconfig(server, NODE, tmp), NODE, tmp / "root")
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _ready(node: dict) -> dict:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def test_the_node_registers_as_the_kubelet_does(server: Server, agent: subprocess.Popen[bytes]) -> None:
    wait_for(lambda: server.kubectl("get", "node", NODE, check=False).returncode == 0, 20, "the node")
    node = _get(server, "node", NODE)
    ready = _ready(node)
    assert (ready["status"], ready["reason"], ready["message"]) == \
        ("True", "KubeletReady", "kubelet is posting ready status")
    kinds = {c["type"]: c["reason"] for c in node["status"]["conditions"]}
    assert kinds == {"MemoryPressure": "KubeletHasSufficientMemory", "DiskPressure": "KubeletHasNoDiskPressure",
                     "PIDPressure": "KubeletHasSufficientPID", "Ready": "KubeletReady"}
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
    assert node["status"]["capacity"]["pods"] == "110"
    assert {a["type"] for a in node["status"]["addresses"]} == {"InternalIP", "Hostname"}
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.32")
    table = server.kubectl("get", "nodes").stdout
    assert NODE in table and " Ready " in table


def test_the_lease_is_renewed(server: Server, agent: subprocess.Popen[bytes]) -> None:
    wait_for(lambda: server.kubectl("get", "lease", NODE, "-n", "kube-node-lease", check=False).returncode == 0,
             20, "the lease")
    first = _get(server, "lease", NODE, "-n", "kube-node-lease")
    assert first["spec"]["holderIdentity"] == NODE and first["spec"]["leaseDurationSeconds"] == 40
    assert first["metadata"]["ownerReferences"][0]["kind"] == "Node"
    time.sleep(11)  # one renewal interval
    second = _get(server, "lease", NODE, "-n", "kube-node-lease")
    assert second["spec"]["renewTime"] > first["spec"]["renewTime"]


def _node_events(server: Server) -> list[tuple[str, str, str, str]]:
    events = _get(server, "events", "-n", "default", "--field-selector",
                  f"involvedObject.kind=Node,involvedObject.name={NODE}")["items"]
    return [(e["source"].get("component", ""), e["type"], e["reason"], e["message"]) for e in events]


def test_the_node_events_are_the_kubelets(server: Server, agent: subprocess.Popen[bytes]) -> None:
    """`kubectl describe node` shows what it shows for a kubelet: Starting, the pressure conditions, NodeReady
    (source kubelet), and the node controller's RegisteredNode."""
    expected = [("kubelet", "Normal", "Starting", "Starting kubelet.")] + [
        ("kubelet", "Normal", reason, f"Node {NODE} status is now: {reason}")
        for reason in ("NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", "NodeReady")]
    wait_for(lambda: all(e in _node_events(server) for e in expected), 20, "the kubelet's node events")
    wait_for(lambda: any(e[2] == "RegisteredNode" for e in _node_events(server)), 20, "RegisteredNode")
    described = server.kubectl("describe", "node", NODE).stdout
    assert "Starting kubelet." in described and f"Node {NODE} status is now: NodeReady" in described


def test_sigterm_reports_not_ready_and_exits_cleanly(server: Server, agent: subprocess.Popen[bytes]) -> None:
    wait_for(lambda: server.kubectl("get", "node", NODE, check=False).returncode == 0, 20, "the node")
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=20) == 0
    ready = _ready(_get(server, "node", NODE))
    assert (ready["status"], ready["reason"], ready["message"]) == \
        ("False", "KubeletNotReady", "node is shutting down")
    assert ("kubelet", "Normal", "NodeNotReady", f"Node {NODE} status is now: NodeNotReady") in _node_events(server)


def test_an_agent_may_not_register_another_node(server: Server, tmp_path: Path) -> None:
    proc = _start_agent(_node_kubeconfig(server, "agent-n2", tmp_path), "agent-n3", tmp_path / "root")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    line = err.decode().strip().splitlines()[-1]
    assert line.startswith("kubesat: error: could not register the node: 403"), line


def test_a_missing_kubeconfig_is_one_line(tmp_path: Path) -> None:
    proc = _start_agent(tmp_path / "nope.kubeconfig", "x", tmp_path / "root")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.decode().strip().startswith("kubesat: error: kubeconfig:")
    assert "Traceback" not in err.decode()
