"""The pure rules of the scheduler and the node lifecycle controller: tolerations, affinity, the FitError text,
binding, taints from conditions."""

from __future__ import annotations

from typing import Any

import pytest

from kubesat import errors
from kubesat.controllers import nodelifecycle as nl
from kubesat.controllers import scheduler as s

NOW = "2026-01-01T00:00:00Z"


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None,
         ready: str | None = "True", unschedulable: bool = False) -> dict[str, Any]:
    n: dict[str, Any] = {"metadata": {"name": name, "labels": labels or {}}, "spec": {}, "status": {}}
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    if ready is not None:
        n["status"]["conditions"] = [{"type": "Ready", "status": ready}]
    return n


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}], **spec}}


@pytest.mark.parametrize(("toleration", "taint", "ok"), [
    ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, {"key": "k", "value": "v",
                                                                               "effect": "NoSchedule"}, True),
    ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),  # any effect
    ({"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"operator": "Exists"}, {"key": "anything", "effect": "NoSchedule"}, True),
    ({"operator": "Exists", "effect": "NoExecute"}, {"key": "k", "effect": "NoSchedule"}, False),
    ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Bogus"}, {"key": "k", "effect": "NoSchedule"}, False),
])
def test_tolerates(toleration: dict[str, Any], taint: dict[str, Any], ok: bool) -> None:
    assert s.tolerates(toleration, taint) is ok


@pytest.mark.parametrize(("req", "labels", "ok"), [
    ({"key": "a", "operator": "In", "values": ["1", "2"]}, {"a": "2"}, True),
    ({"key": "a", "operator": "In", "values": ["1"]}, {}, False),
    ({"key": "a", "operator": "NotIn", "values": ["1"]}, {}, True),
    ({"key": "a", "operator": "NotIn", "values": ["1"]}, {"a": "1"}, False),
    ({"key": "a", "operator": "Exists"}, {"a": ""}, True),
    ({"key": "a", "operator": "DoesNotExist"}, {"a": ""}, False),
    ({"key": "a", "operator": "Gt", "values": ["4"]}, {"a": "5"}, True),
    ({"key": "a", "operator": "Gt", "values": ["5"]}, {"a": "5"}, False),
    ({"key": "a", "operator": "Lt", "values": ["5"]}, {"a": "-1"}, True),
    ({"key": "a", "operator": "Lt", "values": ["5"]}, {"a": "x"}, False),
    ({"key": "a", "operator": "Gt", "values": ["1"]}, {}, False),
])
def test_requirement(req: dict[str, Any], labels: dict[str, str], ok: bool) -> None:
    assert s.requirement_matches(req, labels) is ok


def test_affinity_terms_are_ored_and_selector_anded() -> None:
    n = node("n1", {"zone": "a"})
    terms = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
             {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    assert s.matches_node_affinity(pod(affinity=aff), n)
    assert not s.matches_node_affinity(pod(affinity=aff, nodeSelector={"zone": "b"}), n)
    empty = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}
    assert not s.matches_node_affinity(pod(affinity=empty), n)


def test_filter_order_and_reasons() -> None:
    cordoned = node("a", unschedulable=True, taints=[{"key": "x", "effect": "NoSchedule"}])
    assert s.filter_node(pod(), cordoned) == "node(s) were unschedulable"
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert s.filter_node(pod(tolerations=tol), cordoned) == "node(s) had untolerated taint {x: }"
    assert s.filter_node(pod(), node("b", ready="Unknown")) == \
        "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
    assert s.filter_node(pod(), node("c", ready=None)) == \
        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
    # PreferNoSchedule never filters.
    assert s.filter_node(pod(), node("d", taints=[{"key": "y", "effect": "PreferNoSchedule"}])) is None
    assert s.filter_node(pod(nodeSelector={"k": "v"}), node("e")) == "node(s) didn't match Pod's node affinity/selector"
    assert s.filter_node(pod(tolerations=[{"operator": "Exists"}]), node("f", ready="False")) is None


def test_schedule_picks_fewest_pods_then_name() -> None:
    nodes = [node("b"), node("a"), node("c", ready="False")]
    assert s.schedule(pod(), nodes, {}).node == "a"
    assert s.schedule(pod(), nodes, {"a": 2, "b": 1}).node == "b"
    assert s.schedule(pod(), [], {}) == s.Decision(None, "no nodes available to schedule pods")
    d = s.schedule(pod(nodeSelector={"k": "v"}), nodes, {})
    assert d.node is None
    assert d.message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, "
        "2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")


def test_wants_default_scheduler() -> None:
    assert s.wants_default_scheduler(pod())
    assert s.wants_default_scheduler(pod(schedulerName="default-scheduler"))
    assert not s.wants_default_scheduler(pod(schedulerName="other"))
    assert not s.wants_default_scheduler(pod(nodeName="n"))
    assert not s.wants_default_scheduler(pod(schedulingGates=[{"name": "g"}]))


def test_apply_binding() -> None:
    p = pod()
    p["status"] = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                   "message": "m", "lastTransitionTime": "old"}]}
    s.apply_binding(p, "n1", {"a": "b"}, NOW)
    assert p["spec"]["nodeName"] == "n1"
    assert p["metadata"]["annotations"] == {"a": "b"}
    assert p["status"]["conditions"] == [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                          "lastTransitionTime": NOW}]
    with pytest.raises(errors.StatusError) as e:
        s.apply_binding(p, "n2", {}, NOW)
    assert e.value.code == 409
    assert e.value.message == ('Operation cannot be fulfilled on pods/binding "p": '
                               'pod p is already assigned to node "n1"')
    gone = pod()
    gone["metadata"]["deletionTimestamp"] = NOW
    with pytest.raises(errors.StatusError, match="is being deleted, cannot be assigned to a host"):
        s.apply_binding(gone, "n1", {}, NOW)


def test_validate_binding() -> None:
    errs = s.validate_binding({"target": {"kind": "Pod"}})
    assert [(e.type, e.field) for e in errs] == [("FieldValueNotSupported", "target.kind"),
                                                 ("FieldValueRequired", "target.name")]
    assert s.validate_binding({"target": {"name": "n"}}) == []


def test_taints_follow_conditions() -> None:
    n = node("n", ready="Unknown", unschedulable=True, taints=[{"key": "mine", "effect": "NoSchedule"}])
    n["status"]["conditions"].append({"type": "DiskPressure", "status": "True"})
    taints = nl.reconcile_taints(n, NOW)
    assert taints is not None
    assert [(t["key"], t["effect"]) for t in taints] == [
        ("mine", "NoSchedule"), ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule")]
    assert all(t.get("timeAdded") == NOW for t in taints[1:])
    n["spec"]["taints"] = taints
    assert nl.reconcile_taints(n, "later") is None  # already right: timeAdded kept
    n["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    n["spec"].pop("unschedulable")
    assert nl.reconcile_taints(n, NOW) == [{"key": "mine", "effect": "NoSchedule"}]


def test_mark_unknown() -> None:
    n = node("n")
    n["metadata"]["creationTimestamp"] = "created"
    n["status"]["conditions"][0].update({"reason": "KubeletReady", "lastHeartbeatTime": "beat"})
    assert nl.mark_unknown(n, NOW)
    conds = {c["type"]: c for c in n["status"]["conditions"]}
    assert conds["Ready"] == {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                              "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": "beat",
                              "lastTransitionTime": NOW}
    assert conds["PIDPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert conds["PIDPressure"]["lastHeartbeatTime"] == "created"
    assert not nl.mark_unknown(n, "later")
