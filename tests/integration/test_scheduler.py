"""The scheduler and pods/binding against a real server: the official client, raw requests and kubectl."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.conftest import wait_for

NS = "default"


def _ready(status: str = "True") -> dict:
    return {"conditions": [{"type": "Ready", "status": status, "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}]}


def _node(core: client.CoreV1Api, name: str, labels: dict | None = None, taints: list | None = None,
          ready: str = "True") -> None:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints} if taints else {}}
    core.create_node(body)
    core.patch_node_status(name, {"status": _ready(ready)})


def _pod(core: client.CoreV1Api, name: str, spec: dict | None = None) -> dict:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **(spec or {})}}
    return core.create_namespaced_pod(NS, body)


def _node_of(core: client.CoreV1Api, name: str) -> str:
    return core.read_namespaced_pod(name, NS).spec.node_name or ""


def _condition(core: client.CoreV1Api, name: str) -> client.V1PodCondition | None:
    pod = core.read_namespaced_pod(name, NS)
    return next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)


def _events(core: client.CoreV1Api, name: str, reason: str) -> list:
    evs = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name},reason={reason}").items
    return evs


@pytest.fixture(scope="module")
def core(api) -> client.CoreV1Api:  # type: ignore[no-untyped-def]
    return client.CoreV1Api(api)


def test_no_nodes_then_a_node_arrives(core: client.CoreV1Api) -> None:
    _pod(core, "early")
    cond = wait_for(lambda: _condition(core, "early"), what="PodScheduled=False")
    assert (cond.status, cond.reason, cond.message) == ("False", "Unschedulable", "no nodes available to schedule pods")
    assert wait_for(lambda: _events(core, "early", "FailedScheduling"))[0].type == "Warning"
    _node(core, "a1")
    assert wait_for(lambda: _node_of(core, "early"), what="pod bound") == "a1"
    cond = _condition(core, "early")
    assert cond.status == "True" and cond.reason is None
    ev = wait_for(lambda: _events(core, "early", "Scheduled"))[0]
    assert ev.message == "Successfully assigned default/early to a1"
    assert ev.source.component == "default-scheduler"


def test_spreads_by_pod_count_and_filters(core: client.CoreV1Api) -> None:
    # a1 exists from the test before with one pod on it.
    _node(core, "b1", labels={"disk": "ssd", "rank": "5"})
    _node(core, "c1", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    _node(core, "d1", ready="False")
    _pod(core, "p1")
    assert wait_for(lambda: _node_of(core, "p1")) == "b1"  # a1 has a pod already
    _pod(core, "p2")
    assert wait_for(lambda: _node_of(core, "p2")) == "a1"  # a tie, broken by name
    _pod(core, "sel", {"nodeSelector": {"disk": "ssd"}})
    assert wait_for(lambda: _node_of(core, "sel")) == "b1"
    _pod(core, "tol", {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                         "effect": "NoSchedule"}],
                       "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                           "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                                   "values": ["c1"]}]}]}}}})
    assert wait_for(lambda: _node_of(core, "tol")) == "c1"
    _pod(core, "gt", {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "rank", "operator": "Gt", "values": ["4"]}]}]}}}})
    assert wait_for(lambda: _node_of(core, "gt")) == "b1"


def test_unschedulable_message_as_the_scheduler_words_it(core: client.CoreV1Api) -> None:
    _pod(core, "nowhere", {"nodeSelector": {"disk": "nvme"}})
    cond = wait_for(lambda: (c := _condition(core, "nowhere")) and c.status == "False" and c)
    # a1, b1: selector; c1: the gpu taint (checked before affinity); d1: not ready.
    assert cond.message == (
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
        "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, "
        "2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.")
    ev = wait_for(lambda: _events(core, "nowhere", "FailedScheduling"))[0]
    assert ev.message == cond.message and ev.type == "Warning"
    # A label that now matches retries the pod.
    core.patch_node("a1", {"metadata": {"labels": {"disk": "nvme"}}})
    assert wait_for(lambda: _node_of(core, "nowhere")) == "a1"


def test_other_schedulers_pods_are_left_alone(core: client.CoreV1Api) -> None:
    _pod(core, "mine", {"schedulerName": "my-scheduler"})
    _pod(core, "after")
    wait_for(lambda: _node_of(core, "after"))
    assert _node_of(core, "mine") == ""
    assert _condition(core, "mine") is None


def test_binding_subresource_and_conflict(core: client.CoreV1Api, server) -> None:  # type: ignore[no-untyped-def]
    _pod(core, "manual", {"schedulerName": "my-scheduler"})
    body = client.V1Binding(metadata=client.V1ObjectMeta(name="manual"),
                            target=client.V1ObjectReference(kind="Node", name="d1"))
    core.create_namespaced_pod_binding("manual", NS, body, _preload_content=False)
    pod = core.read_namespaced_pod("manual", NS)
    assert pod.spec.node_name == "d1"
    assert [(c.type, c.status) for c in pod.status.conditions] == [("PodScheduled", "True")]
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod_binding("manual", NS, body, _preload_content=False)
    assert e.value.status == 409
    status = json.loads(e.value.body)
    assert status["message"] == ('Operation cannot be fulfilled on pods/binding "manual": '
                                 'pod manual is already assigned to node "d1"')
    assert status["reason"] == "Conflict"


def test_bindings_collection_and_validation(core: client.CoreV1Api, server) -> None:  # type: ignore[no-untyped-def]
    _pod(core, "viacoll", {"schedulerName": "my-scheduler"})
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "viacoll"},
               "target": {"kind": "Node", "name": "c1"}}
    res = server.kubectl("create", "--raw", f"/api/v1/namespaces/{NS}/bindings", "-f", "-",
                         input=json.dumps(binding))
    assert json.loads(res.stdout)["status"] == "Success"
    assert _node_of(core, "viacoll") == "c1"
    bad = dict(binding, target={"kind": "Pod", "name": ""})
    res = server.kubectl("create", "--raw", f"/api/v1/namespaces/{NS}/pods/viacoll/binding", "-f", "-",
                         input=json.dumps(bad), check=False)
    assert res.returncode != 0
    assert 'Binding "viacoll" is invalid' in res.stderr
    assert 'target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>"' in res.stderr
    assert "target.name: Required value" in res.stderr
    res = server.kubectl("auth", "can-i", "create", "pods/binding")
    assert res.stdout.strip() == "yes"


def test_cordon_uncordon_and_drain(core: client.CoreV1Api, server) -> None:  # type: ignore[no-untyped-def]
    _node(core, "e1")
    _pod(core, "on-e1", {"nodeName": "e1"})
    res = server.kubectl("cordon", "e1")
    assert "node/e1 cordoned" in res.stdout
    node = core.read_node("e1")
    assert node.spec.unschedulable is True
    taints = wait_for(lambda: core.read_node("e1").spec.taints)
    assert [(t.key, t.effect) for t in taints] == [("node.kubernetes.io/unschedulable", "NoSchedule")]
    assert "SchedulingDisabled" in server.kubectl("get", "node", "e1").stdout
    res = server.kubectl("drain", "e1", "--force", "--grace-period=0", "--timeout=30s", check=False)
    assert res.returncode == 0, res.stderr
    assert "node/e1 drained" in res.stdout
    wait_for(lambda: not core.list_namespaced_pod(NS, field_selector="metadata.name=on-e1").items,
             what="drained pod gone")
    assert "node/e1 uncordoned" in server.kubectl("uncordon", "e1").stdout
    wait_for(lambda: not core.read_node("e1").spec.taints, what="unschedulable taint removed")
    assert not core.read_node("e1").spec.unschedulable


def test_status_patches_keep_pod_ip_fields_in_step(core: client.CoreV1Api, server) -> None:  # type: ignore[no-untyped-def]
    _pod(core, "ips", {"nodeName": "a1"})
    core.patch_namespaced_pod_status("ips", NS, {"status": {"podIP": "10.1.0.7", "hostIP": "192.168.0.2"}})
    status = core.read_namespaced_pod("ips", NS).status
    assert [i.ip for i in status.pod_ips] == ["10.1.0.7"] and [i.ip for i in status.host_ips] == ["192.168.0.2"]
    # Both given and different: podIP wins, as in the v1 conversion (a strategic merge keeps the old podIP).
    core.patch_namespaced_pod_status("ips", NS, {"status": {"podIPs": [{"ip": "10.1.0.8"}]}})
    status = core.read_namespaced_pod("ips", NS).status
    assert status.pod_ip == "10.1.0.7" and [i.ip for i in status.pod_ips] == ["10.1.0.7"]

    def merge_patch(body: dict) -> str:
        res = server.kubectl("patch", "pod", "ips", "-n", NS, "--subresource=status", "--type=merge",
                             "-p", json.dumps(body), check=False)
        return res.stderr

    # A merge patch replaces the list; the singular follows its first entry.
    merge_patch({"status": {"podIP": None, "podIPs": [{"ip": "10.1.0.8"}, {"ip": "fd00::8"}]}})
    status = core.read_namespaced_pod("ips", NS).status
    assert status.pod_ip == "10.1.0.8" and [i.ip for i in status.pod_ips] == ["10.1.0.8", "fd00::8"]
    err = merge_patch({"status": {"podIP": None, "podIPs": [{"ip": "10.1.0.9"}, {"ip": "10.1.0.10"}]}})
    assert 'The Pod "ips" is invalid: status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:"10.1.0.9"}, ' \
        'core.PodIP{IP:"10.1.0.10"}}: may specify no more than one IP for each IP family' in err
