"""DaemonSets against a real server with its local node (runtime none), a second agent's node and the real
kubectl: one pod per node pinned by node affinity with the daemon tolerations, a node that joins gets its
pod, nodeSelector and taints keep pods off, a rolling update with `kubectl rollout status`, OnDelete, status
counts, events, and deletion through the garbage collector."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Server, start_server, wait_for

NODE = "ds-node"
SECOND = "ds-second"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("daemonsets") / "data"
    server = start_server(data, node=True, extra=["--node-name", NODE, "--node-runtime", "none"])
    # The local node registers a moment after the server is ready; a DaemonSet before it has nowhere to run.
    wait_for(lambda: '"Ready"' in server.kubectl("get", "node", NODE, "-o", "json", check=False).stdout, 30,
             "the local node")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def second_node(srv: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second node run by an agent of its own (runtime none)."""
    tmp = tmp_path_factory.mktemp("second-agent")
    kubeconfig = tmp / "node.kubeconfig"
    kubeconfig.write_bytes(subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", SECOND,
                                           "--data-dir", str(srv.data_dir)], capture_output=True,
                                          check=True).stdout)
    log = (tmp / "agent.log").open("wb")
    agent = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig),
                              "--node-name", SECOND, "--root", str(tmp / "root"), "--runtime", "none",
                              "--service-relay-port", "0", "--port", "0", "--hide-path", str(srv.data_dir)],
                             stderr=log)
    try:
        wait_for(lambda: '"Ready"' in srv.kubectl("get", "node", SECOND, "-o", "json", check=False).stdout, 30,
                 "the second node")
        yield SECOND
    finally:
        agent.terminate()
        agent.wait(timeout=20)
        log.close()


def _json(server: Server, *args: str) -> Any:
    return json.loads(server.kubectl(*args, "-o", "json").stdout)


def _manifest(name: str, image: str = "img:1", pod_spec: dict[str, Any] | None = None, **spec: Any) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}], **(pod_spec or {})}},
                 **spec},
    })


def _pods(server: Server, ns: str, name: str) -> list[dict[str, Any]]:
    items = _json(server, "get", "pods", "-n", ns, "-l", f"app={name}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _nodes_of(server: Server, ns: str, name: str) -> list[str]:
    return sorted(p["spec"].get("nodeName", "") for p in _pods(server, ns, name))


def _rollout(server: Server, ns: str, name: str) -> str:
    return server.kubectl("rollout", "status", f"ds/{name}", "-n", ns, "--timeout=60s").stdout


def test_one_pod_on_the_local_node(srv: Server) -> None:
    srv.kubectl("create", "namespace", "ds1")
    srv.kubectl("apply", "-n", "ds1", "-f", "-", input=_manifest("agent"))
    assert 'daemon set "agent" successfully rolled out' in _rollout(srv, "ds1", "agent")
    pods = _pods(srv, "ds1", "agent")
    assert [p["spec"]["nodeName"] for p in pods] == [NODE]
    pod = pods[0]
    assert pod["metadata"]["generateName"] == "agent-"
    assert pod["metadata"]["labels"]["pod-template-generation"] == "1"
    ds = _json(srv, "get", "ds", "agent", "-n", "ds1")
    revision = _json(srv, "get", "controllerrevisions", "-n", "ds1")["items"]
    assert revision[0]["metadata"]["name"] == f"agent-{pod['metadata']['labels']['controller-revision-hash']}"
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == {"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [NODE]}]}]}
    tolerations = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule")} <= tolerations
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in tolerations
    status = ds["status"]
    assert status["desiredNumberScheduled"] == status["currentNumberScheduled"] == status["numberReady"] == 1
    assert status["updatedNumberScheduled"] == status["numberAvailable"] == 1
    assert status["numberMisscheduled"] == 0 and "numberUnavailable" not in status
    assert status["observedGeneration"] == ds["metadata"]["generation"]
    events = _json(srv, "get", "events", "-n", "ds1", "--field-selector", "involvedObject.name=agent")["items"]
    assert f"Created pod: {pod['metadata']['name']}" in [e["message"] for e in events
                                                         if e["reason"] == "SuccessfulCreate"]


def test_rolling_update_and_on_delete(srv: Server) -> None:
    srv.kubectl("create", "namespace", "ds2")
    srv.kubectl("apply", "-n", "ds2", "-f", "-", input=_manifest("roll"))
    _rollout(srv, "ds2", "roll")
    old = _pods(srv, "ds2", "roll")[0]["metadata"]["name"]
    srv.kubectl("set", "image", "ds/roll", "c=img:2", "-n", "ds2")
    assert "successfully rolled out" in _rollout(srv, "ds2", "roll")
    pods = _pods(srv, "ds2", "roll")
    assert [p["spec"]["containers"][0]["image"] for p in pods] == ["img:2"]
    assert pods[0]["metadata"]["name"] != old and pods[0]["metadata"]["labels"]["pod-template-generation"] == "2"
    assert len(_json(srv, "get", "controllerrevisions", "-n", "ds2")["items"]) == 2
    history = srv.kubectl("rollout", "history", "ds/roll", "-n", "ds2").stdout.split("\n")
    assert [line.split()[0] for line in history[2:] if line.strip()] == ["1", "2"]
    srv.kubectl("patch", "ds", "roll", "-n", "ds2", "--type=merge", "-p",
                '{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}')
    srv.kubectl("set", "image", "ds/roll", "c=img:3", "-n", "ds2")
    wait_for(lambda: _json(srv, "get", "ds", "roll", "-n", "ds2")["status"].get("observedGeneration") == 4, 10,
             "the OnDelete change observed")
    assert [p["spec"]["containers"][0]["image"] for p in _pods(srv, "ds2", "roll")] == ["img:2"]
    srv.kubectl("delete", "pod", "-n", "ds2", "-l", "app=roll")
    wait_for(lambda: [p["spec"]["containers"][0]["image"] for p in _pods(srv, "ds2", "roll")] == ["img:3"], 30,
             "the replacement at img:3")


def test_node_selector_keeps_pods_off(srv: Server) -> None:
    srv.kubectl("create", "namespace", "ds3")
    srv.kubectl("apply", "-n", "ds3", "-f", "-", input=_manifest("picky", pod_spec={"nodeSelector": {"disk": "ssd"}}))
    wait_for(lambda: "desiredNumberScheduled" in _json(srv, "get", "ds", "picky", "-n", "ds3")["status"], 10,
             "a status")
    assert _json(srv, "get", "ds", "picky", "-n", "ds3")["status"]["desiredNumberScheduled"] == 0
    assert _pods(srv, "ds3", "picky") == []
    srv.kubectl("label", "node", NODE, "disk=ssd")
    try:
        wait_for(lambda: _nodes_of(srv, "ds3", "picky") == [NODE], 30, "a pod once the label is there")
        srv.kubectl("label", "node", NODE, "disk-")
        wait_for(lambda: _pods(srv, "ds3", "picky") == [], 30, "the pod gone with the label")
    finally:
        srv.kubectl("label", "node", NODE, "disk-", check=False)


def test_a_second_node_gets_its_pod(srv: Server, second_node: str) -> None:
    srv.kubectl("create", "namespace", "ds4")
    srv.kubectl("apply", "-n", "ds4", "-f", "-", input=_manifest("everywhere"))
    wait_for(lambda: _nodes_of(srv, "ds4", "everywhere") == sorted([NODE, second_node]), 40, "a pod on each node")
    _rollout(srv, "ds4", "everywhere")
    status = _json(srv, "get", "ds", "everywhere", "-n", "ds4")["status"]
    assert status["desiredNumberScheduled"] == status["numberReady"] == 2
    # A NoExecute taint the pod does not tolerate removes it from that node only.
    srv.kubectl("taint", "node", second_node, "dedicated=x:NoExecute")
    try:
        wait_for(lambda: _nodes_of(srv, "ds4", "everywhere") == [NODE], 30, "the tainted node's pod gone")
    finally:
        srv.kubectl("taint", "node", second_node, "dedicated-", check=False)
    wait_for(lambda: _nodes_of(srv, "ds4", "everywhere") == sorted([NODE, second_node]), 30, "back on both")


def test_delete_removes_the_pods_unless_orphaned(srv: Server) -> None:
    srv.kubectl("create", "namespace", "ds5")
    srv.kubectl("apply", "-n", "ds5", "-f", "-", input=_manifest("gone"))
    _rollout(srv, "ds5", "gone")
    srv.kubectl("delete", "ds", "gone", "-n", "ds5")
    wait_for(lambda: not _pods(srv, "ds5", "gone"), 30, "pods gone")
    srv.kubectl("apply", "-n", "ds5", "-f", "-", input=_manifest("kept"))
    _rollout(srv, "ds5", "kept")
    before = sorted(p["metadata"]["name"] for p in _pods(srv, "ds5", "kept"))
    srv.kubectl("delete", "ds", "kept", "-n", "ds5", "--cascade=orphan")
    wait_for(lambda: all(not p["metadata"].get("ownerReferences") for p in _pods(srv, "ds5", "kept")), 30,
             "the pods released")
    assert sorted(p["metadata"]["name"] for p in _pods(srv, "ds5", "kept")) == before
