"""The node lifecycle controller against a real server started with a short --node-monitor-grace-period."""

from __future__ import annotations

import datetime
import time
import threading

import pytest
from kubernetes import client, config

from tests.integration.conftest import start_server, wait_for

GRACE = 2  # seconds


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    srv = start_server(tmp_path_factory.mktemp("nodelife") / "data",
                       extra=["--node-monitor-grace-period", f"{GRACE}s", "--node-startup-grace-period", "3s"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def core(server) -> client.CoreV1Api:  # type: ignore[no-untyped-def]
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    return client.CoreV1Api(client.ApiClient(cfg))


@pytest.fixture(scope="module")
def coordination(core: client.CoreV1Api) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(core.api_client)


def _register(core: client.CoreV1Api, name: str, status: str = "True") -> None:
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    _post_status(core, name, status)


def _post_status(core: client.CoreV1Api, name: str, status: str = "True") -> None:
    now = _now()
    reason = "KubeletReady" if status == "True" else "KubeletNotReady"
    conds = [{"type": "Ready", "status": status, "reason": reason, "message": "kubelet says so",
              "lastHeartbeatTime": now, "lastTransitionTime": now}]
    for t, r in (("MemoryPressure", "KubeletHasSufficientMemory"), ("DiskPressure", "KubeletHasNoDiskPressure"),
                 ("PIDPressure", "KubeletHasSufficientPID")):
        conds.append({"type": t, "status": "False", "reason": r, "message": "fine",
                      "lastHeartbeatTime": now, "lastTransitionTime": now})
    core.patch_node_status(name, {"status": {"conditions": conds}})


def _renew(coordination: client.CoordinationV1Api, name: str) -> None:
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _now()}}
    try:
        coordination.replace_namespaced_lease(name, "kube-node-lease", body)
    except client.ApiException as e:
        if e.status != 404:
            raise
        coordination.create_namespaced_lease("kube-node-lease", body)


def _conditions(core: client.CoreV1Api, name: str) -> dict[str, client.V1NodeCondition]:
    status = core.read_node(name).status
    return {c.type: c for c in (status.conditions if status else None) or []}


def _taints(core: client.CoreV1Api, name: str) -> list[tuple[str, str]]:
    spec = core.read_node(name).spec
    return sorted((t.key, t.effect) for t in (spec.taints if spec else None) or [])


def test_lease_keeps_a_node_ready_and_its_loss_makes_it_unknown(
        core: client.CoreV1Api, coordination: client.CoordinationV1Api, server) -> None:  # type: ignore[no-untyped-def]
    _register(core, "n1")
    stop = threading.Event()

    def kubelet() -> None:
        while not stop.is_set():
            _renew(coordination, "n1")
            stop.wait(0.5)

    t = threading.Thread(target=kubelet, daemon=True)
    t.start()
    try:
        # Over two grace periods with only the Lease renewed: still Ready, no taints.
        stop.wait(2 * GRACE + 0.5)
        assert _conditions(core, "n1")["Ready"].status == "True"
        assert _taints(core, "n1") == []
    finally:
        stop.set()
        t.join()
    ready = wait_for(lambda: (c := _conditions(core, "n1")["Ready"]).status == "Unknown" and c,
                     timeout=4 * GRACE, what="Ready=Unknown")
    assert (ready.reason, ready.message) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    for other in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        c = _conditions(core, "n1")[other]
        assert (c.status, c.reason) == ("Unknown", "NodeStatusUnknown")
    taints = wait_for(lambda: len(_taints(core, "n1")) == 2 and core.read_node("n1").spec.taints, what="taints")
    assert sorted((t.key, t.effect) for t in taints) == [
        ("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")]
    assert all(t.time_added is not None for t in taints)
    assert "NotReady" in server.kubectl("get", "node", "n1").stdout

    evs = core.list_namespaced_event("default", field_selector="involvedObject.name=n1").items
    by_reason = {e.reason: e for e in evs}
    assert by_reason["NodeNotReady"].message == "Node n1 status is now: NodeNotReady"
    assert by_reason["RegisteredNode"].message == "Node n1 event: Registered Node n1 in Controller"
    assert by_reason["NodeNotReady"].source.component == "node-controller"

    # A pod that tolerates nothing cannot go there, and says why.
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})

    def unschedulable_message() -> str:
        conds = core.read_namespaced_pod("p", "default").status.conditions or []
        return next((c.message for c in conds if c.type == "PodScheduled" and c.status == "False"), "")

    assert wait_for(unschedulable_message) == (
        "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. "
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")

    # The kubelet comes back: Ready again, taints gone, the pod scheduled.
    _post_status(core, "n1")
    _renew(coordination, "n1")
    wait_for(lambda: _taints(core, "n1") == [], what="taints removed")
    assert wait_for(lambda: core.read_namespaced_pod("p", "default").spec.node_name) == "n1"


def test_not_ready_node_is_tainted_not_ready(core: client.CoreV1Api) -> None:
    _register(core, "n2", status="False")
    wait_for(lambda: _taints(core, "n2") == [("node.kubernetes.io/not-ready", "NoExecute"),
                                             ("node.kubernetes.io/not-ready", "NoSchedule")],
             what="not-ready taints")


def test_node_that_never_posts_status(core: client.CoreV1Api) -> None:
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n3"}})
    ready = wait_for(lambda: _conditions(core, "n3").get("Ready"), timeout=10, what="Ready condition")
    assert (ready.status, ready.reason, ready.message) == (
        "Unknown", "NodeStatusNeverUpdated", "Kubelet never posted node status.")
    wait_for(lambda: ("node.kubernetes.io/unreachable", "NoSchedule") in _taints(core, "n3"), what="taint")


def test_a_lost_nodes_pods_are_marked_not_ready(core: client.CoreV1Api) -> None:
    _register(core, "lost1")
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-lost1"},
                                           "spec": {"nodeName": "lost1",
                                                    "containers": [{"name": "c", "image": "busybox"}]}})
    now = _now()
    core.patch_namespaced_pod_status("on-lost1", "default", {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}})
    # Nothing renews lost1's Lease: past the grace period it is Unknown, and so its pod is not ready.
    ready = wait_for(lambda: next((c for c in core.read_namespaced_pod("on-lost1", "default").status.conditions
                                   if c.type == "Ready" and c.status == "False"), None),
                     timeout=6 * GRACE, what="the pod's Ready=False")
    assert ready.last_transition_time is not None
    containers = next(c for c in core.read_namespaced_pod("on-lost1", "default").status.conditions
                      if c.type == "ContainersReady")
    assert containers.status == "True"  # only Ready is turned, as the node controller does
    ev = wait_for(lambda: core.list_namespaced_event(
        "default", field_selector="involvedObject.name=on-lost1,reason=NodeNotReady").items)[0]
    assert (ev.type, ev.message, ev.source.component) == ("Warning", "Node is not ready", "node-controller")


# --- taint-based eviction -------------------------------------------------------------------------------


def _pod_on(core: client.CoreV1Api, name: str, node: str, tolerations: list[dict] | None = None) -> None:
    spec: dict = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                           "spec": spec})


def _deleting(core: client.CoreV1Api, name: str) -> bool:
    try:
        return core.read_namespaced_pod(name, "default").metadata.deletion_timestamp is not None
    except client.ApiException as e:
        return e.status == 404


def _events(core: client.CoreV1Api, pod: str) -> list[tuple[str, str, str]]:
    items = core.list_namespaced_event("default", field_selector=f"involvedObject.name={pod}").items
    return [(e.reason, e.message, e.source.component) for e in items if e.reason == "TaintManagerEviction"]


def test_a_lost_nodes_pods_are_evicted_when_their_toleration_runs_out(core: client.CoreV1Api) -> None:
    _register(core, "te-lost")
    short = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
              "tolerationSeconds": 3}]
    _pod_on(core, "te-short", "te-lost", short)
    _pod_on(core, "te-default", "te-lost")
    _pod_on(core, "te-forever", "te-lost", [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}])
    # DefaultTolerationSeconds: 300 s for not-ready and unreachable, added to the pod's own.
    tols = {(t.key, t.toleration_seconds) for t in core.read_namespaced_pod("te-default", "default").spec.tolerations}
    assert tols == {("node.kubernetes.io/not-ready", 300), ("node.kubernetes.io/unreachable", 300)}
    wait_for(lambda: ("node.kubernetes.io/unreachable", "NoExecute") in _taints(core, "te-lost"),
             timeout=6 * GRACE, what="the unreachable NoExecute taint")
    tainted_at = time.monotonic()
    wait_for(lambda: _deleting(core, "te-short"), timeout=15, what="te-short deleted")
    assert time.monotonic() - tainted_at > 1.5  # not before its 3 s were up
    pod = core.read_namespaced_pod("te-short", "default")  # no kubelet to finish it: it stays Terminating
    cond = next(c for c in pod.status.conditions if c.type == "DisruptionTarget")
    assert (cond.status, cond.reason, cond.message) == (
        "True", "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint")
    assert _events(core, "te-short") == [("TaintManagerEviction", "Marking for deletion Pod default/te-short",
                                          "taint-eviction-controller")]
    time.sleep(2)
    assert not _deleting(core, "te-default")  # 300 s
    assert not _deleting(core, "te-forever")  # no tolerationSeconds: for ever
    assert _events(core, "te-forever") == []


def test_an_untolerated_no_execute_taint_evicts_at_once_and_its_removal_cancels(server, core) -> None:  # type: ignore[no-untyped-def]
    _register(core, "te-taint")
    stay = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"},
            {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute", "tolerationSeconds": 4}]
    _pod_on(core, "te-tolerant", "te-taint", stay)
    _pod_on(core, "te-intolerant", "te-taint", [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}])
    server.kubectl("taint", "node", "te-taint", "dedicated=db:NoExecute")
    wait_for(lambda: _deleting(core, "te-intolerant"), timeout=10, what="te-intolerant deleted at once")
    assert not _deleting(core, "te-tolerant")
    server.kubectl("taint", "node", "te-taint", "dedicated=db:NoExecute-")
    wait_for(lambda: ("TaintManagerEviction", "Cancelling deletion of Pod default/te-tolerant",
                      "taint-eviction-controller") in _events(core, "te-tolerant"), timeout=10, what="cancel Event")
    time.sleep(5)  # past the 4 s it would have had
    assert not _deleting(core, "te-tolerant")
