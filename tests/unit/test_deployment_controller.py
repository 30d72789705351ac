"""The Deployment controller: its pure rules (fenceposts and rounding, the template hash, revisions, rolling and
proportional sizes, history cleanup, status and conditions) and one controller over an in-memory store."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kubesat.controllers import deployment as dc
from kubesat.registry.kinds import lookup_kind
from kubesat.registry.store import Registry, rfc3339
from kubesat.storage.memory import MemoryStore

NAMESPACES = lookup_kind("v1", "Namespace")
EVENTS = lookup_kind("v1", "Event")
NOW = 1_800_000_000.0
TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "img:1"}]}}


def deploy(replicas: int = 10, surge: Any = "25%", unavailable: Any = "25%", *, strategy: str = "RollingUpdate",
           generation: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    strat: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": generation},
            "spec": dict({"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "strategy": strat,
                          "template": copy.deepcopy(TEMPLATE), "progressDeadlineSeconds": 600}, **spec),
            "status": status or {}}


def rs(name: str, replicas: int, *, available: int | None = None, actual: int | None = None, revision: int = 0,
       created: float = NOW, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    ann = dict(annotations or {})
    if revision:
        ann[dc.REVISION] = str(revision)
    return {"metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": rfc3339(created),
                         "annotations": ann, "generation": 1},
            "spec": {"replicas": replicas, "template": copy.deepcopy(TEMPLATE)},
            "status": {"replicas": replicas if actual is None else actual,
                       "availableReplicas": replicas if available is None else available, "observedGeneration": 1}}


# =============================================================================== fenceposts
@pytest.mark.parametrize(("replicas", "surge", "unavailable", "want"), [
    (10, "25%", "25%", (3, 2)),   # surge rounds up (2.5 -> 3), unavailable down (2.5 -> 2)
    (1, "25%", "25%", (1, 0)),
    (4, 0, 0, (0, 1)),            # both zero: one may be unavailable
    (5, 2, "40%", (2, 2)),
    (3, "100%", 0, (3, 0)),
])
def test_fenceposts_round_surge_up_and_unavailable_down(replicas: int, surge: Any, unavailable: Any,
                                                        want: tuple[int, int]) -> None:
    assert dc.fenceposts(deploy(replicas, surge, unavailable)) == want


def test_recreate_and_zero_replicas_have_no_surge_or_unavailability() -> None:
    assert dc.max_surge(deploy(strategy="Recreate")) == 0
    assert dc.max_unavailable(deploy(strategy="Recreate")) == 0
    assert dc.max_unavailable(deploy(0)) == 0
    assert dc.max_unavailable(deploy(2, 1, 5)) == 2  # never more than the replicas


# =============================================================================== template hash
def test_template_hash_is_safe_encoded_fnv32a_and_moves_with_the_collision_count() -> None:
    h = dc.template_hash(TEMPLATE, None)
    assert h == dc.template_hash(copy.deepcopy(TEMPLATE), None)
    assert 1 <= len(h) <= 10 and set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert dc.template_hash(TEMPLATE, 1) != h
    other = copy.deepcopy(TEMPLATE)
    other["spec"]["containers"][0]["image"] = "img:2"
    assert dc.template_hash(other, None) != h


def test_new_replica_set_carries_the_hash_in_name_selector_and_labels() -> None:
    new = dc.new_replica_set(deploy(), None)
    h = dc.template_hash(TEMPLATE, None)
    assert new["metadata"]["name"] == f"web-{h}"
    assert new["spec"]["selector"]["matchLabels"] == {"app": "web", dc.HASH_LABEL: h}
    assert new["spec"]["template"]["metadata"]["labels"] == {"app": "web", dc.HASH_LABEL: h}
    assert new["metadata"]["ownerReferences"][0] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                     "uid": "d-uid", "controller": True, "blockOwnerDeletion": True}
    assert dc.equal_ignore_hash(new["spec"]["template"], TEMPLATE)


def test_find_new_rs_takes_the_oldest_with_the_template() -> None:
    a, b, c = rs("a", 1, created=NOW - 5), rs("b", 1, created=NOW - 9), rs("c", 1, created=NOW - 20)
    c["spec"]["template"]["spec"]["containers"][0]["image"] = "img:0"
    assert dc.find_new_rs(deploy(), [a, b, c]) is b


# =============================================================================== revisions
def test_new_rs_annotations_move_the_revision_to_history_and_copy_the_deployments() -> None:
    d = deploy(4)
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v2", dc.REVISION: "9",
                                    "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    old = rs("a", 0, revision=1)
    assert dc.set_new_rs_annotations(d, old, 3, True)
    ann = old["metadata"]["annotations"]
    assert ann == {dc.REVISION: "3", dc.REVISION_HISTORY: "1", "kubernetes.io/change-cause": "v2"}
    assert dc.set_new_rs_annotations(d, old, 5, True) and ann[dc.REVISION_HISTORY] == "1,3"
    assert not dc.set_new_rs_annotations(d, old, 5, True)
    fresh = rs("b", 0)
    dc.set_new_rs_annotations(d, fresh, 1, False)
    assert fresh["metadata"]["annotations"][dc.DESIRED_REPLICAS] == "4"
    assert fresh["metadata"]["annotations"][dc.MAX_REPLICAS] == "5"


# =============================================================================== rolling sizes
def test_rolling_new_replica_set_grows_by_the_surge_room() -> None:
    d = deploy(10, "25%", "25%")  # surge 3
    old, new = rs("old", 10), rs("new", 0)
    assert dc.reconcile_new(d, [old, new], new) == 3
    new["spec"]["replicas"] = 3
    assert dc.reconcile_new(d, [old, new], new) is None  # 13 pods already
    new["spec"]["replicas"] = 12
    assert dc.reconcile_new(d, [old, new], new) == 10    # never above the Deployment


def test_rolling_old_replica_sets_scale_down_within_max_unavailable() -> None:
    d = deploy(10, "25%", "25%")  # min available 8
    old, new = rs("old", 10), rs("new", 3, available=0)
    # 13 pods, 10 available: 2 may go, but the new ones are not available yet (3 unavailable): 13-8-3 = 2
    assert [(r["metadata"]["name"], n) for r, n in dc.reconcile_old(d, [old, new], [old], new)] == [("old", 8)]
    sick = rs("old", 10, available=6)
    # Unhealthy old pods go first: 4 of them within the budget of 2.
    assert [(r["metadata"]["name"], n) for r, n in dc.reconcile_old(d, [sick, new], [sick], new)] == [("old", 8)]


def test_proportional_scaling_mid_rollout_splits_by_size() -> None:
    # Kubernetes' documented example: 10 replicas, maxSurge 3, old 8 and new 5; scaled to 15: +3 old, +2 new.
    d = deploy(15, 3, 2)
    ann = {dc.MAX_REPLICAS: "13", dc.DESIRED_REPLICAS: "10"}
    old = rs("old", 8, created=NOW - 60, annotations=ann)
    new = rs("new", 5, created=NOW - 5, annotations=ann)
    sizes = {r["metadata"]["name"]: n for r, n in dc.scale_plan(d, new, [old])}
    assert sizes == {"old": 11, "new": 7}
    assert dc.is_scaling_event(d, [old, new])


def test_scale_plan_with_one_active_replica_set_sets_it_to_the_replicas() -> None:
    d = deploy(0)
    only = rs("only", 3)
    assert [(r["metadata"]["name"], n) for r, n in dc.scale_plan(d, only, [rs("gone", 0)])] == [("only", 0)]


def test_cleanup_keeps_revision_history_limit_empty_old_sets() -> None:
    d = deploy(revisionHistoryLimit=1)
    olds = [rs("r1", 0, revision=1), rs("r2", 0, revision=2), rs("r3", 1, revision=3), rs("r4", 0, revision=4)]
    # Four old sets, one kept: the three lowest revisions go, but r3 still has a pod.
    assert [r["metadata"]["name"] for r in dc.cleanup_candidates(d, olds)] == ["r1", "r2"]


# =============================================================================== status
def test_status_available_condition_and_counts() -> None:
    d = deploy(4, 1, 1)
    new, old = rs("new", 3, available=2), rs("old", 1, available=1)
    status = dc.calculate_status(d, [old, new], new, NOW)
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 1, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3,
        "unavailableReplicas": 1}
    assert status["conditions"][0]["reason"] == dc.MIN_AVAILABLE
    assert status["conditions"][0]["message"] == "Deployment has minimum availability."
    low = dc.calculate_status(d, [rs("new", 4, available=2)], None, NOW)
    assert low["conditions"][0]["reason"] == dc.MIN_UNAVAILABLE and low["conditions"][0]["status"] == "False"


def test_rollout_status_progressing_then_complete_then_timed_out() -> None:
    d = deploy(2, 1, 0, status={"updatedReplicas": 0})
    new = rs("web-abc", 2, available=1)
    status = dc.rollout_status(d, [new], new, NOW)
    cond = dc.get_condition(status, "Progressing")
    assert cond is not None and cond["reason"] == dc.RS_UPDATED
    assert cond["message"] == 'ReplicaSet "web-abc" is progressing.'
    done = dc.rollout_status(d, [rs("web-abc", 2)], rs("web-abc", 2), NOW)
    cond = dc.get_condition(done, "Progressing")
    assert cond is not None and cond["message"] == 'ReplicaSet "web-abc" has successfully progressed.'
    stuck = deploy(2, 1, 0, status={"updatedReplicas": 2, "replicas": 2, "availableReplicas": 1, "conditions": [
        {"type": "Progressing", "status": "True", "reason": dc.RS_UPDATED, "lastUpdateTime": rfc3339(NOW - 700),
         "lastTransitionTime": rfc3339(NOW - 700)}]})
    late = dc.rollout_status(stuck, [new], new, NOW)
    cond = dc.get_condition(late, "Progressing")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", dc.TIMED_OUT)
    assert cond["message"] == 'ReplicaSet "web-abc" has timed out progressing.'
    # due 600 s after the last update (NOW - 100), plus a second
    assert dc.recheck_in(stuck, stuck["status"], NOW - 650) == pytest.approx(551.0)


def test_paused_and_resumed_conditions() -> None:
    d = deploy(paused=True)
    cond = dc.paused_condition(d, NOW)
    assert cond is not None and (cond["status"], cond["reason"], cond["message"]) == (
        "Unknown", dc.PAUSED, "Deployment is paused")
    d["status"] = {"conditions": [cond]}
    assert dc.paused_condition(d, NOW) is None
    d["spec"]["paused"] = False
    resumed = dc.paused_condition(d, NOW)
    assert resumed is not None and (resumed["reason"], resumed["message"]) == (dc.RESUMED, "Deployment is resumed")


def test_set_condition_keeps_transition_time_for_the_same_status() -> None:
    status: dict[str, Any] = {}
    dc.set_condition(status, dc.condition("Progressing", "True", dc.NEW_RS_CREATED, "x", NOW))
    dc.set_condition(status, dc.condition("Progressing", "True", dc.RS_UPDATED, "y", NOW + 60))
    cond = dc.get_condition(status, "Progressing")
    assert cond is not None and cond["lastTransitionTime"] == rfc3339(NOW)
    assert cond["lastUpdateTime"] == rfc3339(NOW + 60) and cond["reason"] == dc.RS_UPDATED


# =============================================================================== the controller
async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_controller_makes_a_replica_set_per_template_with_revisions_and_events() -> None:
    async def t() -> None:
        now = [NOW]

        def clock() -> float:
            now[0] += 0.001  # distinct Event names
            return now[0]

        registry = Registry(MemoryStore.open(), clock=clock)
        await registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        controller = dc.DeploymentController(registry, clock=clock)
        await controller.start()
        try:
            body = deploy(2, 1, 0)
            for k in ("uid", "generation"):
                del body["metadata"][k]
            del body["status"]
            await registry.create(dc.deployments(), "ns", body)

            async def rs_count(n: int) -> bool:
                return len((await registry.list(dc.replicasets(), "ns")).items) == n

            await eventually(lambda: rs_count(1))
            first = (await registry.list(dc.replicasets(), "ns")).items[0]
            assert first["metadata"]["name"].startswith("web-")
            assert first["metadata"]["annotations"][dc.REVISION] == "1"
            assert first["spec"]["replicas"] == 2

            def new_image(cur: dict[str, Any]) -> dict[str, Any]:
                cur["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
                return cur

            await registry.guaranteed_update(dc.deployments(), "ns", "web", new_image)
            await eventually(lambda: rs_count(2))
            rses = {r["metadata"]["annotations"][dc.REVISION]: r for r in
                    (await registry.list(dc.replicasets(), "ns")).items}
            # maxSurge 1, maxUnavailable 0 and no pods ready: one new replica, the old set untouched.
            assert rses["2"]["spec"]["replicas"] == 1 and rses["1"]["spec"]["replicas"] == 2
            messages = sorted(e["message"] for e in (await registry.list(EVENTS, "ns")).items
                              if e["reason"] == "ScalingReplicaSet")
            assert messages == sorted([f"Scaled up replica set {first['metadata']['name']} from 0 to 2",
                                       f"Scaled up replica set {rses['2']['metadata']['name']} from 0 to 1"])
            current = await registry.get(dc.deployments(), "ns", "web")
            assert current["metadata"]["annotations"][dc.REVISION] == "2"
            # Writing the revision annotation is no new generation (only the template change is).
            assert current["metadata"]["generation"] == 2
            cond = dc.get_condition(current["status"], "Progressing")
            assert cond is not None and cond["reason"] == dc.NEW_RS_CREATED
        finally:
            await controller.stop()

    asyncio.run(t())
