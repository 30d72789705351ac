"""The StatefulSet controller's pure decisions: member ordinals, the pods and claims it makes, OrderedReady and
Parallel creation, scale down from the highest ordinal, RollingUpdate with a partition, OnDelete, and status."""

from __future__ import annotations

from typing import Any

from kubesat.controllers import history
from kubesat.controllers.statefulset import (
    condemned_claims_go, new_claims, new_pod, ordinal_of, plan_sync, revision_for_ordinal, statefulset_status,
)

NOW = 1_700_000_000.0


def _sts(replicas: int = 3, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "replicas": replicas, "serviceName": "web", "podManagementPolicy": "OrderedReady",
        "selector": {"matchLabels": {"app": "web"}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    }
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 2}, "spec": base}


def _pod(ordinal: int, phase: str = "Running", ready: bool = True, revision: str = "web-r1",
         deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"web-{ordinal}", "labels": {"app": "web", "controller-revision-hash": revision}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase}
    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                             "lastTransitionTime": "2023-01-01T00:00:00Z"}]
    return {"metadata": meta, "status": status}


def _names(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_ordinals_only_for_the_sets_own_names() -> None:
    assert ordinal_of("web", {"metadata": {"name": "web-12"}}) == 12
    assert ordinal_of("web", {"metadata": {"name": "web-a"}}) is None
    assert ordinal_of("web", {"metadata": {"name": "webby-1"}}) is None
    assert ordinal_of("web-1", {"metadata": {"name": "web-1-0"}}) == 0


def test_new_pod_identity_labels_and_claim_volumes() -> None:
    sts = _sts(volumeClaimTemplates=[{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}])
    sts["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}, {"name": "x", "emptyDir": {}}]
    pod = new_pod(sts, sts["spec"]["template"], 2, "web-abc")
    assert pod["metadata"]["name"] == "web-2"
    assert pod["metadata"]["labels"] == {"app": "web", "statefulset.kubernetes.io/pod-name": "web-2",
                                         "apps.kubernetes.io/pod-index": "2", "controller-revision-hash": "web-abc"}
    assert pod["spec"]["hostname"] == "web-2" and pod["spec"]["subdomain"] == "web"
    assert pod["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}},
                                      {"name": "x", "emptyDir": {}}]
    [ref] = pod["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("StatefulSet", "u1", True)
    [claim] = new_claims(sts, 2)
    assert claim["metadata"]["name"] == "data-web-2"
    assert claim["metadata"]["labels"] == {"app": "web"}
    assert "ownerReferences" not in claim["metadata"]  # Retain keeps claims apart from the set
    sts["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Retain"}
    [owned] = new_claims(sts, 0)
    assert owned["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert "controller" not in owned["metadata"]["ownerReferences"][0]


def test_ordered_ready_creates_one_at_a_time_after_the_previous_is_ready() -> None:
    sts = _sts(3)
    assert plan_sync(sts, [], "web-r1", NOW).create == [0]
    assert plan_sync(sts, [_pod(0, phase="Pending", ready=False)], "web-r1", NOW).create == []
    assert plan_sync(sts, [_pod(0, ready=False)], "web-r1", NOW).create == []
    assert plan_sync(sts, [_pod(0)], "web-r1", NOW).create == [1]
    assert plan_sync(sts, [_pod(0), _pod(1)], "web-r1", NOW).create == [2]


def test_min_ready_seconds_holds_the_next_ordinal() -> None:
    sts = _sts(2, minReadySeconds=30)
    fresh = _pod(0)
    fresh["status"]["conditions"][0]["lastTransitionTime"] = "2023-11-14T22:13:10Z"  # 10 s before NOW
    assert plan_sync(sts, [fresh], "web-r1", NOW).create == []
    assert plan_sync(sts, [_pod(0)], "web-r1", NOW).create == [1]


def test_parallel_creates_every_missing_ordinal_at_once() -> None:
    sts = _sts(3, podManagementPolicy="Parallel")
    assert plan_sync(sts, [_pod(1, ready=False)], "web-r1", NOW).create == [0, 2]


def test_failed_member_is_deleted_to_be_made_again() -> None:
    plan = plan_sync(_sts(2), [_pod(0, phase="Failed", ready=False), _pod(1)], "web-r1", NOW)
    assert _names(plan.delete) == ["web-0"] and plan.create == []


def test_scale_down_from_the_highest_ordinal_one_at_a_time() -> None:
    pods = [_pod(0), _pod(1), _pod(2), _pod(3)]
    assert _names(plan_sync(_sts(1), pods, "web-r1", NOW).delete) == ["web-3"]
    assert _names(plan_sync(_sts(1), pods[:3] + [_pod(3, deleting=True)], "web-r1", NOW).delete) == []
    # Not while a remaining pod is unhealthy.
    assert plan_sync(_sts(1), [_pod(0, ready=False), _pod(1)], "web-r1", NOW).delete == []
    parallel = _sts(1, podManagementPolicy="Parallel")
    assert _names(plan_sync(parallel, pods, "web-r1", NOW).delete) == ["web-3", "web-2", "web-1"]


def test_rolling_update_from_the_highest_ordinal_down_to_the_partition() -> None:
    pods = [_pod(0), _pod(1), _pod(2)]
    assert _names(plan_sync(_sts(3), pods, "web-r2", NOW).delete) == ["web-2"]
    updated = [_pod(0), _pod(1), _pod(2, revision="web-r2")]
    assert _names(plan_sync(_sts(3), updated, "web-r2", NOW).delete) == ["web-1"]
    waiting = [_pod(0), _pod(1), _pod(2, revision="web-r2", ready=False)]
    assert plan_sync(_sts(3), waiting, "web-r2", NOW).delete == []
    partitioned = _sts(3, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    assert plan_sync(partitioned, updated, "web-r2", NOW).delete == []
    assert revision_for_ordinal(partitioned, 1, "web-r1", "web-r2") == "web-r1"
    assert revision_for_ordinal(partitioned, 2, "web-r1", "web-r2") == "web-r2"


def test_on_delete_never_deletes_for_an_update() -> None:
    sts = _sts(2, updateStrategy={"type": "OnDelete"})
    assert plan_sync(sts, [_pod(0), _pod(1)], "web-r2", NOW).delete == []
    assert revision_for_ordinal(sts, 0, "web-r1", "web-r2") == "web-r2"


def test_status_counts_and_completed_rollout() -> None:
    pods = [_pod(0), _pod(1, ready=False), _pod(2, revision="web-r2")]
    status = statefulset_status(_sts(3), pods, "web-r1", "web-r2", 0, NOW)
    assert status == {"replicas": 3, "readyReplicas": 2, "availableReplicas": 2, "currentReplicas": 2,
                      "updatedReplicas": 1, "observedGeneration": 2, "currentRevision": "web-r1",
                      "updateRevision": "web-r2", "collisionCount": 0}
    done = [_pod(i, revision="web-r2") for i in range(3)]
    status = statefulset_status(_sts(3), done, "web-r1", "web-r2", 0, NOW)
    assert status["currentRevision"] == "web-r2" and status["currentReplicas"] == 3


def test_revision_history_prunes_the_oldest_unused() -> None:
    revs = [{"metadata": {"name": f"web-{i}"}, "revision": i} for i in range(1, 6)]
    assert [r["metadata"]["name"] for r in history.to_prune(revs, {"web-5", "web-1"}, 2)] == ["web-2"]
    assert history.to_prune(revs, set(), 10) == []
    data = history.revision_data({"metadata": {"labels": {"a": "b"}}, "spec": {}})
    assert data["spec"]["template"]["$patch"] == "replace"
    assert history.template_of({"data": data}) == {"metadata": {"labels": {"a": "b"}}, "spec": {}}
    assert history.revision_hash(data, 0) != history.revision_hash(data, 1)


def test_claims_go_with_a_condemned_pod_only_when_scaled_delete() -> None:
    templates = [{"metadata": {"name": "data"}, "spec": {}}]
    keep = _sts(1, volumeClaimTemplates=templates)
    drop = _sts(1, volumeClaimTemplates=templates,
                persistentVolumeClaimRetentionPolicy={"whenDeleted": "Retain", "whenScaled": "Delete"})
    assert not condemned_claims_go(keep, _pod(2))
    assert condemned_claims_go(drop, _pod(2))
    assert not condemned_claims_go(drop, _pod(0))  # a pod replaced in place keeps its claims
