"""The DaemonSet controller's pure decisions: which nodes should run a daemon pod (nodeSelector, affinity,
taints), the pod it makes (daemon tolerations, node affinity on metadata.name, labels), creation and cleanup
per node, RollingUpdate with maxUnavailable or maxSurge, OnDelete, and status counts."""

from __future__ import annotations

from typing import Any

from kubesat.controllers.daemonset import (
    daemonset_status, new_pod, pinned_affinity, plan_manage, plan_rolling, pods_by_node, should_run, target_node,
)

NOW = 1_700_000_000.0


def _ds(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "d"}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    }
    base.update(spec)
    return {"metadata": {"name": "d", "namespace": "ns", "uid": "u1", "generation": 3,
                         "annotations": {"deprecated.daemonset.template.generation": "2"}}, "spec": base}


def _node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None
          ) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def _pod(name: str, node: str, hash_: str = "h2", ready: bool = True, phase: str = "Running",
         created: str = "2023-01-01T00:00:00Z") -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "labels": {"app": "d", "controller-revision-hash": hash_}},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                       "lastTransitionTime": "2023-01-01T00:00:00Z"}]}}


def _names(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_new_pod_is_pinned_with_daemon_tolerations() -> None:
    ds = _ds()
    ds["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    pod = new_pod(ds, "n1", "h2")
    assert pod["metadata"]["generateName"] == "d-"
    assert pod["metadata"]["labels"] == {"app": "d", "controller-revision-hash": "h2", "pod-template-generation": "2"}
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}
    assert target_node(pod) == "n1"
    tolerations = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert tolerations == {
        ("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"), ("node.kubernetes.io/unschedulable", "NoSchedule")}
    assert all(t["operator"] == "Exists" for t in pod["spec"]["tolerations"])
    ds["spec"]["template"]["spec"]["hostNetwork"] = True
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in {
        (t["key"], t["effect"]) for t in new_pod(ds, "n1", "h2")["spec"]["tolerations"]}
    assert pinned_affinity(None, "x")["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["x"]


def test_should_run_by_selector_affinity_and_taints() -> None:
    ds = _ds()
    assert should_run(ds, _node("n1")) == (True, True)
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    assert should_run(ds, _node("n1")) == (False, False)
    assert should_run(ds, _node("n1", {"disk": "ssd"})) == (True, True)
    ds = _ds()
    assert should_run(ds, _node("n1", taints=[{"key": "k", "effect": "NoSchedule"}])) == (False, True)
    assert should_run(ds, _node("n1", taints=[{"key": "k", "effect": "NoExecute"}])) == (False, False)
    # The daemon tolerations cover a cordoned or not-ready node.
    assert should_run(ds, _node("n1", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                                             {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}])) \
        == (True, True)
    ds["spec"]["template"]["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    assert should_run(ds, _node("n1", taints=[{"key": "k", "effect": "NoExecute"}])) == (True, True)


def test_manage_creates_where_missing_and_cleans_up() -> None:
    ds = _ds()
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"run": "yes"}
    nodes = [_node("a", {"run": "yes"}), _node("b", {"run": "yes"}), _node("c", {"run": "yes"}), _node("d")]
    pods = [_pod("b-old", "b", created="2023-01-01T00:00:00Z"), _pod("b-new", "b", created="2023-01-02T00:00:00Z"),
            _pod("c-failed", "c", phase="Failed", ready=False), _pod("d-stray", "d")]
    plan = plan_manage(ds, nodes, pods_by_node(pods), "h2")
    assert sorted(plan.create) == ["a", "c"]
    assert sorted(_names(plan.delete)) == ["b-new", "c-failed", "d-stray"]
    assert _names(plan.failed) == ["c-failed"]


def test_rolling_update_with_max_unavailable() -> None:
    ds = _ds()
    nodes = ["a", "b", "c"]
    pods = [_pod("pa", "a", "h1"), _pod("pb", "b", "h1"), _pod("pc", "c", "h1")]
    assert len(plan_rolling(ds, nodes, pods_by_node(pods), "h2", NOW).delete) == 1
    # A node whose new pod is not available yet uses up the budget.
    pods[0] = _pod("pa2", "a", "h2", ready=False)
    assert plan_rolling(ds, nodes, pods_by_node(pods), "h2", NOW).delete == []
    # An old pod that is not available anyway is replaced at once.
    pods[1] = _pod("pb", "b", "h1", ready=False)
    assert _names(plan_rolling(ds, nodes, pods_by_node(pods), "h2", NOW).delete) == ["pb"]
    on_delete = _ds(updateStrategy={"type": "OnDelete"})
    assert plan_rolling(on_delete, nodes, pods_by_node([_pod("pa", "a", "h1")]), "h2", NOW).delete == []


def test_rolling_update_with_max_surge() -> None:
    ds = _ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    nodes = ["a", "b"]
    old = [_pod("pa", "a", "h1"), _pod("pb", "b", "h1")]
    plan = plan_rolling(ds, nodes, pods_by_node(old), "h2", NOW)
    assert len(plan.create) == 1 and plan.delete == []
    surging = old + [_pod("pa2", "a", "h2", ready=False)]
    assert plan_rolling(ds, nodes, pods_by_node(surging), "h2", NOW).create == []
    ready = old + [_pod("pa2", "a", "h2")]
    plan = plan_rolling(ds, nodes, pods_by_node(ready), "h2", NOW)
    assert _names(plan.delete) == ["pa"] and plan.create == ["b"]


def test_status_counts() -> None:
    ds = _ds()
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"run": "yes"}
    nodes = [_node("a", {"run": "yes"}), _node("b", {"run": "yes"}), _node("c", {"run": "yes"}), _node("d")]
    pods = [_pod("pa", "a"), _pod("pb", "b", "h1", ready=False), _pod("pd", "d")]
    status = daemonset_status(ds, nodes, pods_by_node(pods), "h2", 0, NOW)
    assert status == {"currentNumberScheduled": 2, "numberMisscheduled": 1, "desiredNumberScheduled": 3,
                      "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1, "numberUnavailable": 2,
                      "observedGeneration": 3}
    generation_only = _pod("pg", "a", "other")
    generation_only["metadata"]["labels"]["pod-template-generation"] = "2"
    status = daemonset_status(ds, nodes[:1], pods_by_node([generation_only]), "h2", 0, NOW)
    assert status["updatedNumberScheduled"] == 1
