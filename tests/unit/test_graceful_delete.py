"""Graceful deletion of pods, as the generic registry and the pod strategy do it: a pod a node runs keeps a
deletionTimestamp for its grace period until its kubelet deletes it with grace 0; a second delete may only
shorten the grace; unscheduled and finished pods go at once; finalizers still hold."""

from __future__ import annotations

import asyncio
import calendar
import copy
import time
from typing import Any

import orjson
import pytest

from kubesat import errors
from kubesat.controllers.podgc import PodGCController
from kubesat.registry.kinds import builtin_kind, lookup_kind
from kubesat.registry.store import DeleteOptions, Registry, _DeletePlan, _plan_delete
from kubesat.registry.strategies import strategy_for
from kubesat.storage.memory import MemoryStore

NAMESPACES = lookup_kind("v1", "Namespace")
PODS = lookup_kind("v1", "Pod")
CONFIGMAPS = lookup_kind("v1", "ConfigMap")
NODES = lookup_kind("v1", "Node")
START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def epoch(ts: str) -> float:
    return float(calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))


async def registry(clock: Clock) -> Registry:
    reg = Registry(MemoryStore.open(), clock=clock)
    await reg.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
    return reg


async def make_pod(reg: Registry, name: str = "p", *, node: str = "n1", grace: int | None = None,
                   finalizers: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    meta: dict[str, Any] = {"name": name}
    if finalizers:
        meta["finalizers"] = finalizers
    return await reg.create(PODS, "ns", {"metadata": meta, "spec": spec})


def test_bound_pod_waits_for_its_default_grace_period() -> None:
    async def go() -> None:
        clock = Clock()
        reg = await registry(clock)
        await make_pod(reg)
        obj, gone = await reg.delete(PODS, "ns", "p")
        assert not gone
        meta = obj["metadata"]
        assert meta["deletionGracePeriodSeconds"] == 30  # the defaulted terminationGracePeriodSeconds
        assert epoch(meta["deletionTimestamp"]) == START + 30
        stored = await reg.get(PODS, "ns", "p")
        assert stored["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]
        # the kubelet's final delete: grace 0 with the pod's uid
        uid = stored["metadata"]["uid"]
        _, gone = await reg.delete(PODS, "ns", "p", DeleteOptions(grace_period=0, uid=uid))
        assert gone
        assert await reg.get_or_none(PODS, "ns", "p") is None
    run(go())


def test_requested_grace_wins_over_the_pods_own() -> None:
    async def go() -> None:
        reg = await registry(Clock())
        await make_pod(reg, grace=100)
        obj, gone = await reg.delete(PODS, "ns", "p", DeleteOptions(grace_period=5))
        assert not gone and obj["metadata"]["deletionGracePeriodSeconds"] == 5
    run(go())


def test_second_delete_only_shortens() -> None:
    async def go() -> None:
        clock = Clock()
        reg = await registry(clock)
        await make_pod(reg, grace=60)
        await reg.delete(PODS, "ns", "p")
        clock.now += 10
        obj, gone = await reg.delete(PODS, "ns", "p", DeleteOptions(grace_period=120))
        assert not gone and obj["metadata"]["deletionGracePeriodSeconds"] == 60  # longer: nothing changes
        before = (await reg.get(PODS, "ns", "p"))["metadata"]["resourceVersion"]
        assert obj["metadata"]["resourceVersion"] == before
        obj, gone = await reg.delete(PODS, "ns", "p", DeleteOptions(grace_period=20))
        assert not gone
        assert obj["metadata"]["deletionGracePeriodSeconds"] == 20
        assert epoch(obj["metadata"]["deletionTimestamp"]) == START + 20  # moved back from START + 60
        clock.now += 100  # past the new deadline: a shorter graceful delete becomes 1 s from now
        obj, gone = await reg.delete(PODS, "ns", "p", DeleteOptions(grace_period=5))
        assert not gone
        assert obj["metadata"]["deletionGracePeriodSeconds"] == 1
        assert epoch(obj["metadata"]["deletionTimestamp"]) == clock.now
    run(go())


def test_force_delete_removes_a_bound_pod_at_once() -> None:
    async def go() -> None:
        reg = await registry(Clock())
        await make_pod(reg)
        _, gone = await reg.delete(PODS, "ns", "p", DeleteOptions(grace_period=0))
        assert gone
        assert await reg.get_or_none(PODS, "ns", "p") is None
    run(go())


def test_unscheduled_and_finished_pods_go_at_once() -> None:
    async def go() -> None:
        reg = await registry(Clock())
        await make_pod(reg, "pending", node="")
        _, gone = await reg.delete(PODS, "ns", "pending")
        assert gone
        pod = await make_pod(reg, "done")
        pod["status"]["phase"] = "Succeeded"
        await reg.update(PODS, "ns", "done", pod, subresource="status")
        _, gone = await reg.delete(PODS, "ns", "done")
        assert gone
    run(go())


def test_negative_grace_counts_as_one_second() -> None:
    async def go() -> None:
        reg = await registry(Clock())
        await make_pod(reg)
        obj, gone = await reg.delete(PODS, "ns", "p", DeleteOptions(grace_period=-5))
        assert not gone and obj["metadata"]["deletionGracePeriodSeconds"] == 1
    run(go())


def test_finalizers_hold_a_pod_after_its_kubelet_deleted_it() -> None:
    async def go() -> None:
        reg = await registry(Clock())
        await make_pod(reg, finalizers=["example.com/hold"])
        await reg.delete(PODS, "ns", "p")
        obj, gone = await reg.delete(PODS, "ns", "p", DeleteOptions(grace_period=0))
        assert not gone and obj["metadata"]["deletionGracePeriodSeconds"] == 0
        obj["metadata"]["finalizers"] = []
        await reg.update(PODS, "ns", "p", obj)
        assert await reg.get_or_none(PODS, "ns", "p") is None
    run(go())


def test_removing_finalizers_during_the_grace_period_keeps_the_pod() -> None:
    async def go() -> None:
        reg = await registry(Clock())
        await make_pod(reg, finalizers=["example.com/hold"])
        obj, _ = await reg.delete(PODS, "ns", "p")
        obj["metadata"]["finalizers"] = []
        await reg.update(PODS, "ns", "p", obj)
        kept = await reg.get(PODS, "ns", "p")  # its kubelet has still to stop it
        assert kept["metadata"]["deletionGracePeriodSeconds"] == 30
    run(go())


def test_dry_run_changes_nothing() -> None:
    async def go() -> None:
        reg = await registry(Clock())
        await make_pod(reg)
        obj, gone = await reg.delete(PODS, "ns", "p", DeleteOptions(dry_run=True))
        assert not gone and obj["metadata"]["deletionGracePeriodSeconds"] == 30
        assert "deletionTimestamp" not in (await reg.get(PODS, "ns", "p"))["metadata"]
    run(go())


def test_kinds_without_grace_are_deleted_at_once() -> None:
    async def go() -> None:
        reg = await registry(Clock())
        await reg.create(CONFIGMAPS, "ns", {"metadata": {"name": "cm"}})
        _, gone = await reg.delete(CONFIGMAPS, "ns", "cm", DeleteOptions(grace_period=30))
        assert gone
        with pytest.raises(errors.StatusError):
            await reg.get(CONFIGMAPS, "ns", "cm")
    run(go())


def test_podgc_removes_the_pods_of_a_deleted_node_only() -> None:
    async def go() -> None:
        reg = await registry(Clock())
        await reg.create(NODES, "", {"metadata": {"name": "alive"}})
        await make_pod(reg, "orphan", node="gone")
        await make_pod(reg, "kept", node="alive")
        await make_pod(reg, "pending", node="")
        await reg.delete(PODS, "ns", "orphan")  # Terminating, with nobody left to finish it
        gc = PodGCController(reg, quarantine=0)
        assert await gc.collect("alive") == 0
        events = []

        async def watch() -> None:
            async for ev in reg.store.watch("/registry/pods/", await reg.revision() + 1):
                events.append(ev)
                if ev.type == "DELETE":
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        assert await gc.collect("gone") == 1
        await asyncio.wait_for(watcher, 5)
        assert await reg.get_or_none(PODS, "ns", "orphan") is None
        last = orjson.loads(events[0].value)  # marked Failed with the podgc condition before the delete
        assert last["status"]["phase"] == "Failed"
        cond = [c for c in last["status"]["conditions"] if c["type"] == "DisruptionTarget"][0]
        assert (cond["reason"], cond["message"]) == ("DeletionByPodGC", "PodGC: node no longer exists")
        assert {p["metadata"]["name"] for p in (await reg.list(PODS, "ns")).items} == {"kept", "pending"}
    run(go())


@pytest.mark.parametrize("api_version,kind", [("batch/v1", "Job"), ("v1", "ReplicationController")])
def test_a_plain_delete_of_a_job_or_rc_orphans_its_dependents_unless_asked(api_version: str, kind: str) -> None:
    job = {"metadata": {"name": "j", "namespace": "ns", "uid": "u"}}
    strategy = strategy_for(builtin_kind(api_version, kind))
    plain = copy.deepcopy(job)
    assert _plan_delete(strategy, plain, DeleteOptions(), 0.0) is _DeletePlan.KEEP
    assert plain["metadata"]["finalizers"] == ["orphan"]
    background = copy.deepcopy(job)
    assert _plan_delete(strategy, background, DeleteOptions(propagation="Background"), 0.0) is _DeletePlan.DELETE
    told = copy.deepcopy(job)
    assert _plan_delete(strategy, told, DeleteOptions(orphan_dependents=False), 0.0) is _DeletePlan.DELETE
    pod_owner = copy.deepcopy(job)
    assert _plan_delete(strategy_for(builtin_kind("apps/v1", "ReplicaSet")), pod_owner, DeleteOptions(),
                        0.0) is _DeletePlan.DELETE


def test_the_largest_grace_period_gives_the_last_writable_deadline_not_an_error() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Running"}}
    plan = _plan_delete(strategy_for(builtin_kind("v1", "Pod")), pod, DeleteOptions(grace_period=2**63 - 1), 0.0)
    assert plan is _DeletePlan.KEEP
    assert pod["metadata"]["deletionTimestamp"] == "9999-12-31T23:59:59Z"
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 2**63 - 1
