"""The StatefulSet controller: pods with stable names `<set>-<ordinal>` and identities (hostname, subdomain,
per-ordinal PersistentVolumeClaims), started in order (OrderedReady) or all at once (Parallel), removed from the
highest ordinal, updated by RollingUpdate (highest ordinal first, down to the partition) or OnDelete from
ControllerRevisions, with the status `kubectl rollout status` reads, as kube-controller-manager's does."""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesat import errors
from kubesat.controllers import history
from kubesat.controllers.events import object_reference
from kubesat.controllers.podowner import PodMessages, PodOwnerController
from kubesat.controllers.volumebinding import pick_default_class
from kubesat.controllers.base import Key, loads
from kubesat.controllers.podcache import Expectations, PodCache
from kubesat.controllers.workload import (
    adopt, apps_kind, as_int, available_in, claim, d, is_available, is_ready, lst, owner_reference, release,
    write_status, PodCreator,
)
from kubesat.registry.kinds import builtin_kind, lookup_kind
from kubesat.registry.store import Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.statefulset")

PODS = builtin_kind("v1", "Pod")
STORAGE_CLASSES = builtin_kind("storage.k8s.io/v1", "StorageClass")
_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
COMPONENT = "statefulset-controller"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
_ORDINAL_RE = re.compile(r"^(.*)-([0-9]+)$")

def statefulsets() -> Any:
    return apps_kind("StatefulSet", "statefulsets")


def pod_messages(set_name: str) -> PodMessages:
    """realStatefulPodControl's event texts."""
    return PodMessages(
        created=lambda name: f"create Pod {name} in StatefulSet {set_name} successful",
        create_failed=lambda name, err: f"create Pod {name} in StatefulSet {set_name} failed error: {err}",
        deleted=lambda name: f"delete Pod {name} in StatefulSet {set_name} successful",
        delete_failed=lambda name, err: f"delete Pod {name} in StatefulSet {set_name} failed error: {err}",
    )


# ------------------------------------------------------------------------------------------------ identity

def start_ordinal(sts: dict[str, Any]) -> int:
    return as_int(d(d(sts.get("spec")).get("ordinals")).get("start"))


def replicas_of(sts: dict[str, Any]) -> int:
    return as_int(d(sts.get("spec")).get("replicas"), 1)


def ordinal_of(set_name: str, pod: dict[str, Any]) -> int | None:
    """The pod's ordinal when its name is `<set>-<n>` (a pod named otherwise is not a member of the set)."""
    m = _ORDINAL_RE.match(str(d(pod.get("metadata")).get("name", "")))
    if m is None or m.group(1) != set_name:
        return None
    return int(m.group(2))


def claim_name(template: str, set_name: str, ordinal: int) -> str:
    return f"{template}-{set_name}-{ordinal}"


def revision_of(pod: dict[str, Any]) -> str:
    return str(d(d(pod.get("metadata")).get("labels")).get(REVISION_LABEL, ""))


def is_terminating(pod: dict[str, Any]) -> bool:
    return bool(d(pod.get("metadata")).get("deletionTimestamp"))


def is_created(pod: dict[str, Any]) -> bool:
    return bool(d(pod.get("status")).get("phase"))


def is_finished(pod: dict[str, Any]) -> bool:
    return d(pod.get("status")).get("phase") in ("Failed", "Succeeded")


def running_and_ready(pod: dict[str, Any]) -> bool:
    return d(pod.get("status")).get("phase") == "Running" and is_ready(pod)


def healthy(pod: dict[str, Any]) -> bool:
    return running_and_ready(pod) and not is_terminating(pod)


def claim_volumes(sts: dict[str, Any], ordinal: int) -> list[dict[str, Any]]:
    """One persistentVolumeClaim volume per volumeClaimTemplate, named as the template."""
    name = str(d(sts.get("metadata")).get("name", ""))
    out = []
    for t in lst(d(sts.get("spec")).get("volumeClaimTemplates")):
        tname = str(d(d(t).get("metadata")).get("name", ""))
        out.append({"name": tname, "persistentVolumeClaim": {"claimName": claim_name(tname, name, ordinal)}})
    return out


def new_pod(sts: dict[str, Any], template: dict[str, Any], ordinal: int, revision: str) -> dict[str, Any]:
    """newStatefulSetPod: the template with the set's identity for the ordinal and the revision label."""
    meta = d(sts.get("metadata"))
    set_name = str(meta.get("name", ""))
    pod_name = f"{set_name}-{ordinal}"
    tmeta = d(template.get("metadata"))
    labels = dict(d(tmeta.get("labels")))
    labels.update({POD_NAME_LABEL: pod_name, POD_INDEX_LABEL: str(ordinal), REVISION_LABEL: revision})
    pod_meta: dict[str, Any] = {"name": pod_name, "namespace": meta.get("namespace", ""), "labels": labels,
                                "ownerReferences": [owner_reference(sts, "apps/v1", "StatefulSet")]}
    for k in ("annotations", "finalizers"):
        if tmeta.get(k):
            pod_meta[k] = copy.deepcopy(tmeta[k])
    spec = copy.deepcopy(d(template.get("spec")))
    spec["hostname"] = pod_name
    service = d(sts.get("spec")).get("serviceName")
    if service:
        spec["subdomain"] = service
    claims = claim_volumes(sts, ordinal)
    if claims:
        taken = {v["name"] for v in claims}
        spec["volumes"] = claims + [v for v in lst(spec.get("volumes")) if d(v).get("name") not in taken]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def new_claims(sts: dict[str, Any], ordinal: int) -> list[dict[str, Any]]:
    """The PersistentVolumeClaims of an ordinal from volumeClaimTemplates, labelled with the selector's
    matchLabels; owned by the set only when whenDeleted is Delete."""
    meta, spec = d(sts.get("metadata")), d(sts.get("spec"))
    set_name = str(meta.get("name", ""))
    policy = d(spec.get("persistentVolumeClaimRetentionPolicy"))
    out = []
    for t in lst(spec.get("volumeClaimTemplates")):
        tmeta = d(d(t).get("metadata"))
        labels = dict(d(tmeta.get("labels")))
        labels.update(d(d(spec.get("selector")).get("matchLabels")))
        cmeta: dict[str, Any] = {"name": claim_name(str(tmeta.get("name", "")), set_name, ordinal),
                                 "namespace": meta.get("namespace", ""), "labels": labels}
        if tmeta.get("annotations"):
            cmeta["annotations"] = copy.deepcopy(tmeta["annotations"])
        if policy.get("whenDeleted") == "Delete":
            ref = owner_reference(sts, "apps/v1", "StatefulSet")
            ref.pop("controller")
            cmeta["ownerReferences"] = [ref]
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": cmeta,
                    "spec": copy.deepcopy(d(d(t).get("spec")))})
    return out


def condemned_claims_go(sts: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Whether the pod is removed by a scale down whose claims go with it (whenScaled: Delete)."""
    spec = d(sts.get("spec"))
    if d(spec.get("persistentVolumeClaimRetentionPolicy")).get("whenScaled") != "Delete":
        return False
    ordinal = ordinal_of(str(d(sts.get("metadata")).get("name", "")), pod)
    start = start_ordinal(sts)
    return ordinal is not None and not start <= ordinal < start + replicas_of(sts) and bool(
        lst(spec.get("volumeClaimTemplates")))


# ------------------------------------------------------------------------------------------------ the plan

@dataclass
class Plan:
    """What one sync does: ordinals to create, pods to delete (in this order)."""

    create: list[int] = field(default_factory=list)
    delete: list[dict[str, Any]] = field(default_factory=list)


def members(sts: dict[str, Any], pods: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    name = str(d(sts.get("metadata")).get("name", ""))
    out: dict[int, dict[str, Any]] = {}
    for p in pods:
        o = ordinal_of(name, p)
        if o is not None:
            out[o] = p
    return out


def _scale(sts: dict[str, Any], by_ordinal: dict[int, dict[str, Any]], monotonic: bool, now: float,
           plan: Plan) -> bool:
    """Create missing ordinals and replace failed pods, lowest first; False when OrderedReady must wait."""
    start, min_ready = start_ordinal(sts), as_int(d(sts.get("spec")).get("minReadySeconds"))
    for o in range(start, start + replicas_of(sts)):
        pod = by_ordinal.get(o)
        if pod is None:
            plan.create.append(o)
            if monotonic:
                return False
            continue
        if is_terminating(pod):
            if monotonic:
                return False
            continue
        if is_finished(pod):
            # A failed (or succeeded) member is deleted and made again under the same name.
            plan.delete.append(pod)
            if monotonic:
                return False
            continue
        if monotonic and not (running_and_ready(pod) and is_available(pod, min_ready, now)):
            return False
    return True


def _condemn(sts: dict[str, Any], by_ordinal: dict[int, dict[str, Any]], monotonic: bool, plan: Plan) -> bool:
    """Delete the pods past the last ordinal, highest first; OrderedReady one at a time, each once healthy."""
    start, end = start_ordinal(sts), start_ordinal(sts) + replicas_of(sts)
    condemned = sorted((o for o in by_ordinal if not start <= o < end), reverse=True)
    first_unhealthy = next((o for o in reversed(condemned) if not healthy(by_ordinal[o])), None)
    for o in condemned:
        pod = by_ordinal[o]
        if is_terminating(pod):
            if monotonic:
                return False
            continue
        if monotonic and not running_and_ready(pod) and o != first_unhealthy:
            return False
        plan.delete.append(pod)
        if monotonic:
            return False
    return True


def _roll(sts: dict[str, Any], by_ordinal: dict[int, dict[str, Any]], update_revision: str, plan: Plan) -> None:
    """RollingUpdate: from the highest ordinal down to the partition, delete the first pod not at the update
    revision, and wait while any is unhealthy (the controller makes it again at the new revision)."""
    update = d(d(sts.get("spec")).get("updateStrategy"))
    if update.get("type", "RollingUpdate") != "RollingUpdate":
        return
    start = start_ordinal(sts)
    partition = as_int(d(update.get("rollingUpdate")).get("partition"))
    for index in range(replicas_of(sts) - 1, partition - 1, -1):
        pod = by_ordinal.get(start + index)
        if pod is None:
            return
        if revision_of(pod) != update_revision and not is_terminating(pod):
            plan.delete.append(pod)
            return
        if not healthy(pod):
            return


def plan_sync(sts: dict[str, Any], pods: list[dict[str, Any]], update_revision: str, now: float) -> Plan:
    """The actions of one sync over the set's own pods (updateStatefulSet's order: scale up and repair, then
    scale down, then roll)."""
    plan = Plan()
    if d(sts.get("metadata")).get("deletionTimestamp"):
        return plan
    monotonic = d(sts.get("spec")).get("podManagementPolicy") != "Parallel"
    by_ordinal = members(sts, pods)
    if not _scale(sts, by_ordinal, monotonic, now, plan):
        return plan
    if not _condemn(sts, by_ordinal, monotonic, plan):
        return plan
    _roll(sts, by_ordinal, update_revision, plan)
    return plan


def revision_for_ordinal(sts: dict[str, Any], ordinal: int, current: str, update: str) -> str:
    """A new pod below the partition is made at the current revision, any other at the update revision."""
    strategy = d(d(sts.get("spec")).get("updateStrategy"))
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        partition = as_int(d(strategy.get("rollingUpdate")).get("partition"))
        if ordinal < start_ordinal(sts) + partition:
            return current
    return update


def statefulset_status(sts: dict[str, Any], pods: list[dict[str, Any]], current: str, update: str,
                       collision_count: int, now: float) -> dict[str, Any]:
    """computeReplicaStatus, with the rolling update completed once every pod is updated and ready."""
    min_ready = as_int(d(sts.get("spec")).get("minReadySeconds"))
    created = [p for p in pods if is_created(p)]
    live = [p for p in created if not is_terminating(p)]
    counts = {
        "replicas": len(created),
        "readyReplicas": sum(1 for p in created if running_and_ready(p)),
        "availableReplicas": sum(1 for p in created if running_and_ready(p) and is_available(p, min_ready, now)),
        "currentReplicas": sum(1 for p in live if revision_of(p) == current),
        "updatedReplicas": sum(1 for p in live if revision_of(p) == update),
    }
    rolling = d(d(sts.get("spec")).get("updateStrategy")).get("type", "RollingUpdate") == "RollingUpdate"
    if rolling and counts["updatedReplicas"] == counts["replicas"] == counts["readyReplicas"]:
        current, counts["currentReplicas"] = update, counts["updatedReplicas"]
    status: dict[str, Any] = {"replicas": counts["replicas"], "availableReplicas": counts["availableReplicas"]}
    for k in ("readyReplicas", "currentReplicas", "updatedReplicas"):
        if counts[k]:
            status[k] = counts[k]
    generation = as_int(d(sts.get("metadata")).get("generation"))
    if generation:
        status["observedGeneration"] = generation
    status.update({"currentRevision": current, "updateRevision": update, "collisionCount": collision_count})
    return status


def next_check(sts: dict[str, Any], pods: list[dict[str, Any]], now: float) -> float | None:
    min_ready = as_int(d(sts.get("spec")).get("minReadySeconds"))
    waits = [w for w in (available_in(p, min_ready, now) for p in pods) if w is not None]
    return min(waits) if waits else None


# ------------------------------------------------------------------------------------------------ the shell

class StatefulSetController(PodOwnerController):
    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time,
                 create_pod: PodCreator | None = None) -> None:
        super().__init__(registry, statefulsets(), COMPONENT, clock=clock, create_pod=create_pod)
        self._claims_skipped: set[Key] = set()
        self._backoff: dict[Key, float] = {}
        # The namespace's pods from the watch, not the store: a list per sync costs O(pods in the namespace).
        # The pods a sync made or removed are expected until the cache shows them, so none is made twice.
        self.pods = PodCache()
        self.expectations = Expectations()
        # The revision the cache was filled at; None while no StatefulSet exists: then no pod event is decoded
        # (a rollout of a Deployment brings thousands), and the first set's sync fills the cache from a list.
        self._cache_rev: int | None = None

    async def resync(self) -> int:
        rev = await super().resync()
        self._cache_rev = None
        self.pods.fill([])
        return rev

    async def _fill_cache(self) -> None:
        if self._cache_rev is None:
            listed = await self.registry.list(PODS, "")
            self.pods.fill(listed.items)
            self._cache_rev = int(listed.resource_version or 0)

    def _pod_event(self, ev: WatchEvent) -> None:
        if not self.selectors:
            if self._cache_rev is not None:
                self._cache_rev = None
                self.pods.fill([])
            return
        if self._cache_rev is not None and ev.revision > self._cache_rev:  # older ones are in the list already
            ns, _, name = ev.key[len(PODS.storage_prefix()):].partition("/")
            pod = loads(ev.value) if ev.type != "DELETE" else None
            if pod is None:
                self.pods.remove(ns, name)
            else:
                self.pods.put(pod)
            self.expectations.observe(pod, ns, name)
        super()._pod_event(ev)

    async def sync(self, key: Key) -> None:
        ns, name = key
        sts = await self.registry.get_or_none(self.info, ns, name)
        if sts is None:
            self.expectations.forget(key)
            return
        await self._fill_cache()
        if not self.expectations.satisfied(key):
            # The watch brings the pods this set made or removed, each syncing it again; this is the fallback.
            self.queue.add_after(key, self.expectations.timeout + 1.0)
            return
        self.expectations.forget(key)
        pods = await self._own_pods(sts)
        revisions = await history.list_owned(self.registry, sts)
        update_rev, collision = await history.ensure_revision(self.registry, sts, "StatefulSet", revisions)
        update = update_rev["metadata"]["name"]
        if update_rev not in revisions:
            revisions = await history.list_owned(self.registry, sts)
        current = str(d(sts.get("status")).get("currentRevision") or "")
        current_rev = next((r for r in revisions if r["metadata"]["name"] == current), update_rev)
        current = current_rev["metadata"]["name"]
        plan = plan_sync(sts, pods, update, self.clock())
        refused = False
        for o in plan.create:
            revision = current_rev if revision_for_ordinal(sts, o, current, update) == current else update_rev
            refused = not await self._create(sts, o, revision) or refused
        for pod in plan.delete:
            if condemned_claims_go(sts, pod):
                await self._give_claims_to(sts, pod)
            if await self.delete_pod(sts, pod):
                self._expect_delete(key, pod)
        if refused:
            # A template the API refuses is retried with a growing delay (up to a minute), not in a loop.
            self.queue.add_after(key, self._backoff.setdefault(key, 0.5))
            self._backoff[key] = min(self._backoff[key] * 2, 60.0)
        else:
            self._backoff.pop(key, None)
            if plan.create or plan.delete:
                self.queue.add(key)
        status = statefulset_status(sts, pods, current, update, collision, self.clock())
        wait = next_check(sts, pods, self.clock())
        if wait is not None:
            self.queue.add_after(key, wait + 0.05)
        await write_status(self.registry, self.info, sts, status)
        live = {revision_of(p) for p in pods} | {status["currentRevision"], update}
        await history.prune(self.registry, revisions, live, as_int(d(sts.get("spec")).get("revisionHistoryLimit"), 10))

    async def _give_claims_to(self, sts: dict[str, Any], pod: dict[str, Any]) -> None:
        """whenScaled: Delete makes the condemned pod an owner of its claims, so the garbage collector removes
        them once the pod is gone (as the StatefulSet controller does)."""
        info = lookup_kind("v1", "PersistentVolumeClaim")
        ordinal = ordinal_of(str(sts["metadata"]["name"]), pod)
        if info is None or ordinal is None:
            return
        pmeta = pod["metadata"]
        ref = {"apiVersion": "v1", "kind": "Pod", "name": pmeta["name"], "uid": pmeta.get("uid", "")}
        for c in new_claims(sts, ordinal):
            def mutate(current: dict[str, Any]) -> dict[str, Any]:
                refs = [r for r in lst(current["metadata"].get("ownerReferences")) if d(r).get("uid") != ref["uid"]]
                current["metadata"]["ownerReferences"] = refs + [ref]
                return current

            try:
                await self.registry.guaranteed_update(info, c["metadata"]["namespace"], c["metadata"]["name"], mutate)
            except errors.StatusError as e:
                if e.code != 404:
                    log.info("claim %s: %s", c["metadata"]["name"], e.message)

    async def _default_class(self, claim: dict[str, Any]) -> None:
        """The DefaultStorageClass admission plugin, which a claim the controller makes passes through in
        Kubernetes as any API request does: no class named (nor the beta annotation) takes the default one."""
        annotations = d(claim["metadata"].get("annotations"))
        if claim["spec"].get("storageClassName") is not None or _BETA_CLASS in annotations:
            return
        chosen = pick_default_class((await self.registry.list(STORAGE_CLASSES, "")).items)
        if chosen:
            claim["spec"]["storageClassName"] = chosen

    def messages_for(self, owner: dict[str, Any]) -> PodMessages:
        return pod_messages(str(d(owner.get("metadata")).get("name", "")))

    async def _own_pods(self, sts: dict[str, Any]) -> list[dict[str, Any]]:
        """The set's pods after adopting matching orphans and releasing pods that stopped matching."""
        name = str(sts["metadata"]["name"])
        all_pods = self.pods.candidates(str(sts["metadata"].get("namespace", "")), str(sts["metadata"].get("uid", "")))
        found = claim(sts, [p for p in all_pods if ordinal_of(name, p) is not None])
        ref = owner_reference(sts, "apps/v1", "StatefulSet")
        for pod in found.release:
            await release(self.registry, PODS, pod, ref["uid"])
        return found.owned + [p for p in found.adopt if await adopt(self.registry, PODS, p, ref)]

    async def _create(self, sts: dict[str, Any], ordinal: int, revision: dict[str, Any]) -> bool:
        await self._create_claims(sts, ordinal)
        pod = new_pod(sts, history.template_of(revision), ordinal, revision["metadata"]["name"])
        if not await self.create_pod(sts, pod):
            return False
        meta = sts["metadata"]
        ns, pod_name = str(meta.get("namespace", "")), str(pod["metadata"]["name"])
        if self.pods.get(ns, pod_name) is None:  # the watch may have brought it already
            self.expectations.expect_create((ns, str(meta["name"])), ns, pod_name)
        return True

    def _expect_delete(self, key: Key, pod: dict[str, Any]) -> None:
        name = str(pod["metadata"]["name"])
        cached = self.pods.get(key[0], name)
        if cached is not None and not d(cached.get("metadata")).get("deletionTimestamp"):
            self.expectations.expect_delete(key, key[0], name)

    async def _create_claims(self, sts: dict[str, Any], ordinal: int) -> None:
        """The ordinal's claims that do not exist yet, when this server serves PersistentVolumeClaims."""
        claims = new_claims(sts, ordinal)
        if not claims:
            return
        info = lookup_kind("v1", "PersistentVolumeClaim")
        meta = sts["metadata"]
        if info is None:
            key = (str(meta.get("namespace", "")), str(meta["name"]))
            if key not in self._claims_skipped:
                self._claims_skipped.add(key)
                log.warning("StatefulSet %s/%s: PersistentVolumeClaims are not served; volumeClaimTemplates "
                            "skipped", key[0], key[1])
            return
        for c in claims:
            cname = c["metadata"]["name"]
            if await self.registry.get_or_none(info, c["metadata"]["namespace"], cname) is not None:
                continue
            await self._default_class(c)
            pod_name = f"{meta['name']}-{ordinal}"
            try:
                await self.registry.create(info, c["metadata"]["namespace"], c)
            except errors.StatusError as e:
                await self.events.event(object_reference(sts), "Warning", "FailedCreate",
                                        f"create Claim {cname} for Pod {pod_name} in StatefulSet {meta['name']} "
                                        f"failed error: {e.message}")
                continue
            await self.events.event(object_reference(sts), "Normal", "SuccessfulCreate",
                                    f"create Claim {cname} Pod {pod_name} in StatefulSet {meta['name']} success")
