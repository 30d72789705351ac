"""The ReplicaSet controller: its pure rules (claiming, pods from the template, deletion ranking, slow start,
status) and one controller over an in-memory store with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kubesat.controllers import replicaset as rsc
from kubesat.controllers.podcache import Expectations, PodCache
from kubesat.controllers.workload import claim
from kubesat.registry.kinds import lookup_kind
from kubesat.registry.store import Registry, rfc3339
from kubesat.storage.memory import MemoryStore

NAMESPACES = lookup_kind("v1", "Namespace")
SERVICEACCOUNTS = lookup_kind("v1", "ServiceAccount")
PODS = lookup_kind("v1", "Pod")
EVENTS = lookup_kind("v1", "Event")
NOW = 1_800_000_000.0
SELECTOR = {"matchLabels": {"app": "web"}}


def replica_set(replicas: int = 2, *, uid: str = "rs-uid", min_ready: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": uid, "generation": 3},
        "spec": {"replicas": replicas, "minReadySeconds": min_ready, "selector": SELECTOR,
                 "template": {"metadata": {"labels": {"app": "web", "tier": "front"},
                                           "annotations": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "img"}]}}},
    }


def pod(name: str, *, labels: dict[str, str] | None = None, owner: str | None = None, node: str = "",
        phase: str = "Running", ready_at: float | None = None, created: float = NOW - 100,
        deleting: bool = False, restarts: int = 0) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                            "labels": {"app": "web"} if labels is None else labels,
                            "creationTimestamp": rfc3339(created)}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": owner,
                                    "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = rfc3339(NOW)
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [{"name": "c", "restartCount": restarts}]}
    if ready_at is not None:
        status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(ready_at)}]
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": status}


# =============================================================================== pure rules
def test_claim_keeps_own_adopts_orphans_releases_mismatches_ignores_others() -> None:
    pods = [pod("own", owner="rs-uid"), pod("orphan"), pod("moved", owner="rs-uid", labels={"app": "db"}),
            pod("foreign", owner="other-uid"), pod("stranger", labels={"app": "db"})]
    found = claim(replica_set(), pods)
    assert [p["metadata"]["name"] for p in found.owned] == ["own"]
    assert [p["metadata"]["name"] for p in found.adopt] == ["orphan"]
    assert [p["metadata"]["name"] for p in found.release] == ["moved"]


def test_claim_pods_skips_finished_and_terminating_pods() -> None:
    pods = [pod("done", owner="rs-uid", phase="Succeeded"), pod("failed", phase="Failed"),
            pod("going", owner="rs-uid", deleting=True), pod("live", owner="rs-uid")]
    found = rsc.claim_pods(replica_set(), pods)
    assert [p["metadata"]["name"] for p in found.owned] == ["live"]
    assert not found.adopt


def test_claim_by_a_deleting_owner_neither_adopts_nor_releases() -> None:
    rs = replica_set()
    rs["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    found = claim(rs, [pod("orphan"), pod("moved", owner="rs-uid", labels={"app": "db"})])
    assert not found.adopt and not found.release and not found.owned


def test_pod_from_template_is_named_after_the_replica_set_and_owned_by_it() -> None:
    new = rsc.pod_from_template(replica_set())
    meta = new["metadata"]
    assert meta["generateName"] == "web-" and meta["namespace"] == "ns"
    assert meta["labels"] == {"app": "web", "tier": "front"} and meta["annotations"] == {"a": "b"}
    assert meta["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                        "uid": "rs-uid", "controller": True, "blockOwnerDeletion": True}]
    assert new["spec"] == {"containers": [{"name": "c", "image": "img"}]}


def test_deletion_prefers_unscheduled_then_pending_then_not_ready_then_newest() -> None:
    pods = [
        pod("old-ready", node="n", ready_at=NOW - 50, created=NOW - 90),
        pod("new-ready", node="n", ready_at=NOW - 10, created=NOW - 20),
        pod("not-ready", node="n"),
        pod("pending", node="n", phase="Pending"),
        pod("unscheduled", phase="Pending"),
    ]
    order = [p["metadata"]["name"] for p in rsc.pods_to_delete(pods, 5)]
    assert order == ["unscheduled", "pending", "not-ready", "new-ready", "old-ready"]
    assert [p["metadata"]["name"] for p in rsc.pods_to_delete(pods, 2)] == ["unscheduled", "pending"]


def test_deletion_among_equals_prefers_more_restarts_then_newer() -> None:
    pods = [pod("a", node="n", ready_at=NOW - 5, created=NOW - 50),
            pod("b", node="n", ready_at=NOW - 5, created=NOW - 10),
            pod("c", node="n", ready_at=NOW - 5, created=NOW - 60, restarts=3)]
    assert [p["metadata"]["name"] for p in rsc.pods_to_delete(pods, 3)] == ["c", "b", "a"]


def test_slow_start_batches_double_until_the_count_is_made() -> None:
    assert rsc.slow_start_batches(10) == [1, 2, 4, 3]
    assert rsc.slow_start_batches(1) == [1]
    assert rsc.slow_start_batches(0) == []


def test_status_counts_ready_available_after_min_ready_seconds_and_full_labels() -> None:
    rs = replica_set(3, min_ready=10)
    pods = [pod("a", ready_at=NOW - 30), pod("b", ready_at=NOW - 3), pod("c")]
    pods[0]["metadata"]["labels"] = {"app": "web", "tier": "front"}
    status = rsc.replicaset_status(rs, pods, NOW, None)
    assert status == {"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2, "availableReplicas": 1,
                      "observedGeneration": 3}
    assert rsc.next_check(rs, pods, NOW) == 7


def test_status_leaves_zero_counts_out_and_reports_a_creation_failure() -> None:
    status = rsc.replicaset_status(replica_set(1), [], NOW, "Error creating: nope")
    assert status["replicas"] == 0 and "readyReplicas" not in status
    assert status["conditions"] == [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                     "message": "Error creating: nope", "lastTransitionTime": rfc3339(NOW)}]


# =============================================================================== the controller
class Env:
    def __init__(self) -> None:
        self.now = NOW
        self.registry = Registry(MemoryStore.open(), clock=self.clock)
        self.controller = rsc.ReplicaSetController(self.registry, clock=self.clock)

    def clock(self) -> float:
        # A clock that moves a little on each reading, so two Events never get the same (time-based) name.
        self.now += 0.001
        return self.now

    async def setup(self) -> None:
        await self.registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        await self.registry.create(SERVICEACCOUNTS, "ns", {"metadata": {"name": "default"}})

    async def pods(self) -> list[dict[str, Any]]:
        return [p for p in (await self.registry.list(PODS, "ns")).items
                if not p["metadata"].get("deletionTimestamp")]

    async def events(self, reason: str) -> list[str]:
        return sorted(e["message"] for e in (await self.registry.list(EVENTS, "ns")).items if e["reason"] == reason)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_controller_creates_scales_down_adopts_and_reports_status() -> None:
    async def t() -> None:
        env = Env()
        await env.setup()
        await env.controller.start()
        try:
            orphan = pod("orphan")
            del orphan["metadata"]["uid"], orphan["metadata"]["creationTimestamp"], orphan["status"]
            orphan["spec"] = {"containers": [{"name": "c", "image": "img"}]}
            await env.registry.create(PODS, "ns", orphan)
            body = replica_set(3)
            for k in ("uid", "generation"):
                del body["metadata"][k]
            await env.registry.create(rsc.replicasets(), "ns", body)

            async def three() -> bool:
                return len(await env.pods()) == 3
            await eventually(three)
            pods = await env.pods()
            rs = await env.registry.get(rsc.replicasets(), "ns", "web")
            assert all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in pods)
            made = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] != "orphan"]
            assert len(made) == 2 and all(n.startswith("web-") and len(n) == 9 for n in made)
            # The ServiceAccount admission plugin ran: the token volume is there.
            assert any(v["name"].startswith("kube-api-access-") for v in pods[1]["spec"]["volumes"])
            assert await env.events("SuccessfulCreate") == sorted(f"Created pod: {n}" for n in made)

            async def status_three() -> bool:
                current = await env.registry.get(rsc.replicasets(), "ns", "web")
                return current.get("status", {}).get("replicas") == 3
            await eventually(status_three)

            def scale(cur: dict[str, Any]) -> dict[str, Any]:
                cur["spec"]["replicas"] = 1
                return cur
            await env.registry.guaranteed_update(rsc.replicasets(), "ns", "web", scale)

            async def one() -> bool:
                return len(await env.pods()) == 1
            await eventually(one)
            assert len(await env.events("SuccessfulDelete")) == 2
            assert all(m.startswith("Deleted pod: web-") or m == "Deleted pod: orphan"
                       for m in await env.events("SuccessfulDelete"))
        finally:
            await env.controller.stop()

    asyncio.run(t())


def test_controller_reports_failed_create_when_the_service_account_is_missing() -> None:
    async def t() -> None:
        env = Env()
        await env.setup()
        await env.controller.start()
        try:
            body = replica_set(1)
            for k in ("uid", "generation"):
                del body["metadata"][k]
            body["spec"]["template"]["spec"]["serviceAccountName"] = "ghost"
            await env.registry.create(rsc.replicasets(), "ns", body)

            async def failed() -> bool:
                return bool(await env.events("FailedCreate"))
            await eventually(failed)
            assert (await env.events("FailedCreate"))[0] == (
                'Error creating: pods "web-" is forbidden: error looking up service account ns/ghost: '
                'serviceaccount "ghost" not found')
            assert not await env.pods()
        finally:
            await env.controller.stop()

    asyncio.run(t())


# =============================================================================== cache and expectations
def test_expectations_wait_for_created_and_deleted_pods_to_show() -> None:
    now = [0.0]
    exp = Expectations(clock=lambda: now[0], timeout=60)
    owner = ("ns", "web")
    exp.expect_create(owner, "ns", "web-a")
    exp.expect_delete(owner, "ns", "web-b")
    assert not exp.satisfied(owner)
    exp.observe(pod("web-a"), "ns", "web-a")
    assert not exp.satisfied(owner)
    exp.observe(pod("web-b"), "ns", "web-b")  # still there, not terminating: not yet
    assert not exp.satisfied(owner)
    exp.observe(pod("web-b", deleting=True), "ns", "web-b")
    assert exp.satisfied(owner)
    exp.expect_create(owner, "ns", "web-c")
    now[0] = 61.0  # never seen: the wait ends with the timeout
    assert exp.satisfied(owner)
    exp.forget(owner)
    exp.observe(None, "ns", "web-c")
    assert exp.satisfied(owner)


def test_pod_cache_keeps_the_latest_pods_by_namespace() -> None:
    cache = PodCache()
    cache.fill([pod("a"), pod("b")])
    newer = pod("a", phase="Pending")
    cache.put(newer)
    cache.remove("ns", "b")
    assert cache.pods("ns") == [newer] and cache.get("ns", "b") is None and cache.pods("other") == []
