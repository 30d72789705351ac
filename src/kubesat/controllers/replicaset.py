"""The ReplicaSet controller: keeps spec.replicas active pods made from the template, adopting matching orphans and
releasing pods that stop matching, and reports status, as kube-controller-manager's replicaset controller does."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesat import errors
from kubesat.controllers.base import Key, WorkQueue, cancel, loads, watch_in_background
from kubesat.controllers.events import EventRecorder, object_reference
from kubesat.controllers.podcache import Expectations, PodCache, delete_owned_pod
from kubesat.controllers.workload import (
    Claim, adopt, apps_kind, as_int, available_in, claim, controller_ref, d, is_active,
    lst, owner_reference, parse_time, ready_since, release, selector_matches, PodCreator, pod_creator,
)
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.store import Registry, rfc3339
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.replicaset")

PODS = builtin_kind("v1", "Pod")
COMPONENT = "replicaset-controller"
# kube-controller-manager's burstReplicas: at most this many creations or deletions per sync.
BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1


def replicasets() -> Any:
    return apps_kind("ReplicaSet", "replicasets")


@dataclass(frozen=True)
class ManagedKind:
    """The kind whose pods the controller keeps (apps/v1 ReplicaSet, or core/v1 ReplicationController with its
    plain label map), with its selector read as a metav1.LabelSelector."""

    info: ResourceInfo
    component: str
    label_selector: Callable[[Any], Any]


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


# ------------------------------------------------------------------------------------------------ pure logic

def claim_pods(rs: dict[str, Any], pods: list[dict[str, Any]]) -> Claim:
    """Which active pods are the ReplicaSet's (ClaimPods): finished and terminating pods are never claimed."""
    return claim(rs, [p for p in pods if is_active(p)])


def pod_from_template(rs: dict[str, Any], api_version: str = "apps/v1", kind: str = "ReplicaSet") -> dict[str, Any]:
    """A new pod for the ReplicaSet (controller.GetPodFromTemplate): the template's labels, annotations,
    finalizers and spec, a generated name `<rs>-xxxxx`, and the ReplicaSet as its controller."""
    meta = d(rs.get("metadata"))
    template = d(d(rs.get("spec")).get("template"))
    tmeta = d(template.get("metadata"))
    pod_meta: dict[str, Any] = {"generateName": f"{meta.get('name', '')}-", "namespace": meta.get("namespace", ""),
                                "ownerReferences": [owner_reference(rs, api_version, kind)]}
    for k in ("labels", "annotations", "finalizers"):
        if tmeta.get(k):
            pod_meta[k] = copy.deepcopy(tmeta[k])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": copy.deepcopy(d(template.get("spec")))}


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: dict[str, Any]) -> tuple[Any, ...]:
    """Sort key, first deleted first: unscheduled, then Pending < Unknown < Running, then not ready, then ready
    for less time, then more restarts, then newer. Kubernetes' ActivePodsWithRanks also ranks pods by how many
    siblings share their node; kubesat leaves that out."""
    spec, status = d(pod.get("spec")), d(pod.get("status"))
    since = ready_since(pod)
    restarts = sum(as_int(d(c).get("restartCount")) for c in lst(status.get("containerStatuses")))
    created = parse_time(d(pod.get("metadata")).get("creationTimestamp")) or 0.0
    return (
        1 if spec.get("nodeName") else 0,
        _PHASE_RANK.get(str(status.get("phase") or ""), 0),
        1 if since is not None else 0,
        -(since or 0.0),
        -restarts,
        -created,
    )


def pods_to_delete(pods: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return sorted(pods, key=deletion_rank)[:n]


def slow_start_batches(n: int, initial: int = SLOW_START_INITIAL_BATCH) -> list[int]:
    """Batch sizes 1, 2, 4, ... summing to n: a template that cannot make pods fails once, not n times."""
    out, size = [], initial
    while n > 0:
        take = min(size, n)
        out.append(take)
        n -= take
        size *= 2
    return out


def _labels_cover(template_labels: dict[str, Any], labels: dict[str, Any]) -> bool:
    return all(labels.get(k) == v for k, v in template_labels.items())


def replicaset_status(rs: dict[str, Any], pods: list[dict[str, Any]], now: float,
                      failure: str | None) -> dict[str, Any]:
    """The status the controller writes; zero counts are left out, as the Go types' omitempty leaves them."""
    spec, meta = d(rs.get("spec")), d(rs.get("metadata"))
    min_ready = as_int(spec.get("minReadySeconds"))
    tlabels = d(d(d(spec.get("template")).get("metadata")).get("labels"))
    status: dict[str, Any] = {"replicas": len(pods)}
    ready = [t for t in (ready_since(p) for p in pods) if t is not None]  # read once: a sync's main cost
    counts = {
        "fullyLabeledReplicas": sum(1 for p in pods if _labels_cover(tlabels, d(d(p.get("metadata")).get("labels")))),
        "readyReplicas": len(ready),
        "availableReplicas": len(ready) if min_ready <= 0 else sum(1 for t in ready if t + min_ready <= now),
        "observedGeneration": as_int(meta.get("generation")),
    }
    status.update({k: v for k, v in counts.items() if v})
    old_conditions = [d(c) for c in lst(d(rs.get("status")).get("conditions"))]
    status_conditions = [c for c in old_conditions if c.get("type") != "ReplicaFailure"]
    if failure is not None:
        previous = next((c for c in old_conditions if c.get("type") == "ReplicaFailure"), None)
        stamp = previous.get("lastTransitionTime") if previous and previous.get("message") == failure else None
        status_conditions.append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                  "message": failure, "lastTransitionTime": stamp or rfc3339(now)})
    if status_conditions:
        status["conditions"] = status_conditions
    return status


def next_check(rs: dict[str, Any], pods: list[dict[str, Any]], now: float) -> float | None:
    """Seconds until a ready pod passes minReadySeconds, when the status must be written again."""
    min_ready = as_int(d(rs.get("spec")).get("minReadySeconds"))
    if min_ready <= 0:
        return None
    waits = [w for w in (available_in(p, min_ready, now) for p in pods) if w is not None]
    return min(waits) if waits else None


# ------------------------------------------------------------------------------------------------ the shell

class ReplicaSetController:
    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time,
                 kind: ManagedKind | None = None, create_pod: PodCreator | None = None) -> None:
        self.registry = registry
        self.clock = clock
        self.create_pod = pod_creator(registry, create_pod)
        self.kind = kind or ManagedKind(replicasets(), COMPONENT, lambda selector: selector)
        self.rs_info = self.kind.info
        self.events = EventRecorder(registry, self.kind.component, clock=clock)
        # Paced: during a rollout nearly every pod event re-adds the ReplicaSet, and each sync reads all its pods.
        self.queue = WorkQueue(self.sync, self.kind.component, pace=2.0)
        # namespace -> name -> selector, to find the ReplicaSets an orphan pod may belong to.
        self.selectors: dict[str, dict[str, Any]] = {}
        self._backoff: dict[Key, float] = {}
        # Read from a watch-fed cache: listing a namespace's pods from the store on every sync costs ~0.1 s at
        # 1,000 pods, and a rollout syncs on each pod's change.
        self.pods = PodCache()
        self.expectations = Expectations()
        self._watch: Any = None

    async def start(self) -> None:
        rev = await self.resync()
        self.queue.start()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self.resync,
                                          self.kind.component)

    async def stop(self) -> None:
        await cancel(self._watch)
        await self.queue.stop()

    async def resync(self) -> int:
        rev = await self.registry.revision()
        self.selectors.clear()
        self.pods.fill((await self.registry.list(PODS, "")).items)
        for rs in (await self.registry.list(self.rs_info, "")).items:
            meta = rs["metadata"]
            self.selectors.setdefault(meta.get("namespace", ""), {})[meta["name"]] = self.kind.label_selector(
                d(rs.get("spec")).get("selector"))
            self.queue.add((meta.get("namespace", ""), meta["name"]))
        return rev

    async def _on_event(self, ev: WatchEvent) -> None:
        if ev.key.startswith(self.rs_info.storage_prefix()):
            self._rs_event(ev)
        elif ev.key.startswith(PODS.storage_prefix()):
            self._pod_event(ev)

    def _rs_event(self, ev: WatchEvent) -> None:
        ns, _, name = ev.key[len(self.rs_info.storage_prefix()):].partition("/")
        rs = loads(ev.value) if ev.type != "DELETE" else None
        if rs is None:
            self.selectors.get(ns, {}).pop(name, None)
        else:
            self.selectors.setdefault(ns, {})[name] = self.kind.label_selector(d(rs.get("spec")).get("selector"))
        self.queue.add((ns, name))

    def _pod_event(self, ev: WatchEvent) -> None:
        pod = loads(ev.value) if ev.type != "DELETE" else None
        old = loads(ev.prev_value)
        ns, _, name = ev.key[len(PODS.storage_prefix()):].partition("/")
        if pod is None:
            self.pods.remove(ns, name)
        else:
            self.pods.put(pod)
        self.expectations.observe(pod, ns, name)
        for p in (pod, old):
            if p is None:
                continue
            ns = d(p.get("metadata")).get("namespace", "")
            ref = controller_ref(p)
            if ref is not None:
                group = _group(str(ref.get("apiVersion", "")))
                if ref.get("kind") == self.rs_info.kind and group == self.rs_info.group:
                    self.queue.add((ns, str(ref.get("name", ""))))
            elif p is pod and is_active(p):
                labels = d(p.get("metadata")).get("labels")
                for name, selector in self.selectors.get(ns, {}).items():
                    if selector_matches(selector, labels):
                        self.queue.add((ns, name))

    async def sync(self, key: Key) -> None:
        ns, name = key
        rs = await self.registry.get_or_none(self.rs_info, ns, name)
        if rs is None:
            self.expectations.forget(key)
            self._backoff.pop(key, None)
            return
        rs = self._as_replica_set(rs)
        found = claim_pods(rs, self.pods.candidates(ns, str(d(rs.get("metadata")).get("uid", ""))))
        ref = owner_reference(rs, self.rs_info.api_version, self.rs_info.kind)
        owned = found.owned + [p for p in found.adopt if await adopt(self.registry, PODS, p, ref)]
        for pod in found.release:
            await release(self.registry, PODS, pod, ref["uid"])
        failure = None
        if not d(rs.get("metadata")).get("deletionTimestamp"):
            if self.expectations.satisfied(key):
                self.expectations.forget(key)  # nothing pending, or waited for too long
                failure = await self._manage_replicas(key, rs, owned)
            if failure is not None:
                # Kubernetes requeues a failing ReplicaSet with a growing delay; so does kubesat (up to a minute).
                delay = self._backoff[key] = min(self._backoff.get(key, 0.5) * 2, 60.0)
                self.queue.add_after(key, delay)
            else:
                self._backoff.pop(key, None)
                if not self.expectations.satisfied(key):
                    # The watch brings the pods made or removed, each syncing again; this is the fallback.
                    self.queue.add_after(key, self.expectations.timeout + 1.0)
        await self._write_status(rs, owned, failure)

    def _as_replica_set(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object with its selector as a LabelSelector (a shallow copy), so every rule reads it one way."""
        spec = d(obj.get("spec"))
        selector = self.kind.label_selector(spec.get("selector"))
        if selector is spec.get("selector"):
            return obj
        return {**obj, "spec": {**spec, "selector": selector}}

    async def _manage_replicas(self, key: Key, rs: dict[str, Any], owned: list[dict[str, Any]]) -> str | None:
        """Create or delete pods toward spec.replicas; the first creation error (as the FailedCreate message)."""
        want = as_int(d(rs.get("spec")).get("replicas"), 1)
        diff = want - len(owned)
        if diff > 0:
            return await self._create_pods(key, rs, min(diff, BURST_REPLICAS))
        if diff < 0:
            for pod in pods_to_delete(owned, min(-diff, BURST_REPLICAS)):
                await delete_owned_pod(self.registry, self.pods, self.expectations, self.events, key,
                                       object_reference(rs), pod)
        return None

    async def _create_pods(self, key: Key, rs: dict[str, Any], n: int) -> str | None:
        ref = object_reference(rs)
        for batch in slow_start_batches(n):
            for _ in range(batch):
                try:
                    created = await self._create_pod(rs)
                except errors.StatusError as e:
                    message = f"Error creating: {e.message}"
                    await self.events.event(ref, "Warning", "FailedCreate", message)
                    return message
                name = created["metadata"]["name"]
                if self.pods.get(key[0], name) is None:  # the watch may have brought it already
                    self.expectations.expect_create(key, key[0], name)
                await self.events.event(ref, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        return None

    async def _create_pod(self, rs: dict[str, Any]) -> dict[str, Any]:
        return await self.create_pod(pod_from_template(rs, self.rs_info.api_version, self.rs_info.kind))

    async def _write_status(self, rs: dict[str, Any], owned: list[dict[str, Any]], failure: str | None) -> None:
        now = self.clock()
        meta = rs["metadata"]
        status = replicaset_status(rs, owned, now, failure)
        wait = next_check(rs, owned, now)
        if wait is not None:
            self.queue.add_after((meta.get("namespace", ""), meta["name"]), wait + 0.05)
        if status == d(rs.get("status")):
            return
        uid = meta.get("uid")

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            if current["metadata"].get("uid") != uid:
                raise errors.conflict(self.rs_info.plural, meta["name"], "the object was replaced",
                                      self.rs_info.group)
            current["status"] = status
            return current

        try:
            await self.registry.guaranteed_update(self.rs_info, meta.get("namespace", ""), meta["name"], mutate,
                                                  subresource="status")
        except errors.StatusError as e:
            if e.code not in (404, 409):
                raise
