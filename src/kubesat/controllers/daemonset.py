"""The DaemonSet controller: one pod per node the template's nodeSelector, node affinity and tolerations
admit, pinned to its node by node affinity on `metadata.name` (the scheduler binds it), with the tolerations
Kubernetes adds to daemon pods, ControllerRevisions and the `controller-revision-hash` and
`pod-template-generation` labels, RollingUpdate (maxUnavailable or maxSurge) and OnDelete, and the status
`kubectl rollout status` reads, as kube-controller-manager's daemonset controller does."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesat.controllers import history
from kubesat.controllers.base import Key, loads
from kubesat.controllers.deployment import scaled_value
from kubesat.controllers.events import object_reference
from kubesat.controllers.podowner import PodOwnerController
from kubesat.controllers.scheduler import matches_node_affinity, tolerated
from kubesat.controllers.workload import (
    adopt, apps_kind, as_int, available_in, claim, d, is_available, is_ready, lst, owner_reference, parse_time,
    release, write_status, PodCreator,
)
from kubesat.registry.apps import TEMPLATE_GENERATION_ANNOTATION
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry
from kubesat.storage.interface import WatchEvent

PODS = builtin_kind("v1", "Pod")
NODES = builtin_kind("v1", "Node")
COMPONENT = "daemonset-controller"
HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"

# The tolerations every daemon pod gets (util.AddOrUpdateDaemonPodTolerations), so that it runs on nodes
# under these conditions; network-unavailable only for pods on the host network.
_NO_EXECUTE = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
_NO_SCHEDULE = ("node.kubernetes.io/disk-pressure", "node.kubernetes.io/memory-pressure",
                "node.kubernetes.io/pid-pressure", "node.kubernetes.io/unschedulable")
_HOST_NETWORK = ("node.kubernetes.io/network-unavailable",)


def daemonsets() -> Any:
    return apps_kind("DaemonSet", "daemonsets")


# ------------------------------------------------------------------------------------------------ pods

def daemon_tolerations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec's tolerations with the daemon ones added where the same key and effect is not there."""
    out = [copy.deepcopy(t) for t in lst(spec.get("tolerations"))]
    wanted = [(k, "NoExecute") for k in _NO_EXECUTE] + [(k, "NoSchedule") for k in _NO_SCHEDULE]
    if spec.get("hostNetwork"):
        wanted += [(k, "NoSchedule") for k in _HOST_NETWORK]
    for key, effect in wanted:
        if not any(d(t).get("key") == key and d(t).get("effect") == effect for t in out):
            out.append({"key": key, "operator": "Exists", "effect": effect})
    return out


def pinned_affinity(affinity: Any, node: str) -> dict[str, Any]:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: the required node affinity becomes one term, the node's name."""
    out = copy.deepcopy(d(affinity))
    node_affinity = out["nodeAffinity"] = d(out.get("nodeAffinity"))
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
    return out


def template_generation(ds: dict[str, Any]) -> str:
    return str(d(d(ds.get("metadata")).get("annotations")).get(TEMPLATE_GENERATION_ANNOTATION, ""))


def new_pod(ds: dict[str, Any], node: str, revision_hash: str) -> dict[str, Any]:
    """A daemon pod for `node`: the template with the daemon tolerations, pinned to the node."""
    meta = d(ds.get("metadata"))
    template = d(d(ds.get("spec")).get("template"))
    tmeta = d(template.get("metadata"))
    labels = dict(d(tmeta.get("labels")))
    labels[HASH_LABEL] = revision_hash
    if template_generation(ds):
        labels[GENERATION_LABEL] = template_generation(ds)
    pod_meta: dict[str, Any] = {"generateName": f"{meta.get('name', '')}-", "namespace": meta.get("namespace", ""),
                                "labels": labels, "ownerReferences": [owner_reference(ds, "apps/v1", "DaemonSet")]}
    for k in ("annotations", "finalizers"):
        if tmeta.get(k):
            pod_meta[k] = copy.deepcopy(tmeta[k])
    spec = copy.deepcopy(d(template.get("spec")))
    spec["tolerations"] = daemon_tolerations(spec)
    spec["affinity"] = pinned_affinity(spec.get("affinity"), node)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def target_node(pod: dict[str, Any]) -> str:
    """The node a daemon pod is for: its nodeName, or before binding the name its node affinity pins."""
    spec = d(pod.get("spec"))
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = d(d(d(spec.get("affinity")).get("nodeAffinity")).get("requiredDuringSchedulingIgnoredDuringExecution"))
    for term in lst(required.get("nodeSelectorTerms")):
        for req in lst(d(term).get("matchFields")):
            values = lst(d(req).get("values"))
            if d(req).get("key") == "metadata.name" and d(req).get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return ""


def should_run(ds: dict[str, Any], node: dict[str, Any]) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (a pod should be made there, an existing pod may stay). Node affinity and
    nodeSelector decide; an untolerated NoSchedule taint keeps new pods off, an untolerated NoExecute one
    removes them. Readiness is the scheduler's business, not this one's."""
    spec = d(d(d(ds.get("spec")).get("template")).get("spec"))
    name = str(d(node.get("metadata")).get("name", ""))
    if spec.get("nodeName") and spec["nodeName"] != name:
        return False, False
    if not matches_node_affinity({"spec": spec}, node):
        return False, False
    tolerations = daemon_tolerations(spec)
    taints = [d(t) for t in lst(d(node.get("spec")).get("taints"))]
    untolerated = [t for t in taints
                   if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(tolerations, t)]
    if untolerated:
        return False, not any(t.get("effect") == "NoExecute" for t in untolerated)
    return True, True


def is_updated(pod: dict[str, Any], revision_hash: str, generation: str) -> bool:
    labels = d(d(pod.get("metadata")).get("labels"))
    return bool(revision_hash and labels.get(HASH_LABEL) == revision_hash) or bool(
        generation and labels.get(GENERATION_LABEL) == generation)


def _created(pod: dict[str, Any]) -> tuple[float, str]:
    meta = d(pod.get("metadata"))
    return parse_time(meta.get("creationTimestamp")) or 0.0, str(meta.get("name", ""))


def pods_by_node(pods: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each node's daemon pods, oldest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(pods, key=_created):
        out.setdefault(target_node(p), []).append(p)
    return out


# ------------------------------------------------------------------------------------------------ the plan

@dataclass
class Plan:
    """One sync's work: nodes to make a pod for, pods to delete, and failed pods found (for events)."""

    create: list[str] = field(default_factory=list)
    delete: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)


def max_surge(ds: dict[str, Any], desired: int) -> int:
    update = d(d(ds.get("spec")).get("updateStrategy"))
    if update.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    return scaled_value(d(update.get("rollingUpdate")).get("maxSurge", 0), desired, True)


def max_unavailable(ds: dict[str, Any], desired: int) -> int:
    rolling = d(d(d(ds.get("spec")).get("updateStrategy")).get("rollingUpdate"))
    unavailable = scaled_value(rolling.get("maxUnavailable", 1), desired, True)
    if unavailable == 0 and max_surge(ds, desired) == 0:
        return 1
    return unavailable


def _keep_on_node(running: list[dict[str, Any]], surge: bool, revision_hash: str, generation: str
                  ) -> list[dict[str, Any]]:
    """The extra pods on a node to delete: all but the oldest, or with surge all but the oldest old and the
    oldest updated one."""
    if not surge:
        return running[1:]
    new = [p for p in running if is_updated(p, revision_hash, generation)]
    old = [p for p in running if not is_updated(p, revision_hash, generation)]
    return new[1:] + old[1:]


def plan_manage(ds: dict[str, Any], nodes: list[dict[str, Any]], on_node: dict[str, list[dict[str, Any]]],
                revision_hash: str) -> Plan:
    """podsShouldBeOnNode over every node: create where a pod should be, delete failed, extra and misplaced
    pods (a pod for a node that is gone is the pod garbage collector's)."""
    plan = Plan()
    surge = max_surge(ds, sum(1 for n in nodes if should_run(ds, n)[0])) > 0
    generation = template_generation(ds)
    for node in nodes:
        name = str(d(node.get("metadata")).get("name", ""))
        pods = [p for p in on_node.get(name, []) if not d(p.get("metadata")).get("deletionTimestamp")]
        run, keep = should_run(ds, node)
        if not keep:
            plan.delete += pods
            continue
        finished = [p for p in pods if d(p.get("status")).get("phase") in ("Failed", "Succeeded")]
        running = [p for p in pods if p not in finished]
        plan.failed += [p for p in finished if d(p.get("status")).get("phase") == "Failed"]
        plan.delete += finished
        if run and not running:
            plan.create.append(name)
        plan.delete += _keep_on_node(running, surge, revision_hash, generation)
    return plan


def _split(pods: list[dict[str, Any]], revision_hash: str, generation: str
           ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, bool]:
    """findUpdatedPodsOnNode: the node's live updated and old pod; False when it has more than one of either."""
    live = [p for p in pods if not d(p.get("metadata")).get("deletionTimestamp")]
    new = [p for p in live if is_updated(p, revision_hash, generation)]
    old = [p for p in live if not is_updated(p, revision_hash, generation)]
    if len(new) > 1 or len(old) > 1:
        return None, None, False
    return (new[0] if new else None), (old[0] if old else None), True


def plan_rolling(ds: dict[str, Any], nodes: list[str], on_node: dict[str, list[dict[str, Any]]],
                 revision_hash: str, now: float) -> Plan:
    """rollingUpdate: with maxSurge 0, delete old pods while fewer than maxUnavailable nodes lack an available
    pod (an unavailable old pod goes at once); with maxSurge, make new pods beside old ones on up to maxSurge
    nodes and delete each old pod once its node's new pod is available."""
    plan = Plan()
    update = d(d(ds.get("spec")).get("updateStrategy"))
    if update.get("type", "RollingUpdate") != "RollingUpdate":
        return plan
    min_ready, generation = as_int(d(ds.get("spec")).get("minReadySeconds")), template_generation(ds)
    surge = max_surge(ds, len(nodes))
    split = {n: _split(on_node.get(n, []), revision_hash, generation) for n in nodes}
    if surge == 0:
        budget = max_unavailable(ds, len(nodes))
        candidates: list[dict[str, Any]] = []
        for n in nodes:
            new, old, ok = split[n]
            if not ok or (new is not None and not is_available(new, min_ready, now)) or (new is None and old is None):
                budget -= 1
            elif new is None and old is not None:
                if is_available(old, min_ready, now):
                    candidates.append(old)
                else:
                    plan.delete.append(old)
        plan.delete += candidates[:max(budget, 0)]
        return plan
    surging = 0
    for new, old, ok in split.values():
        if ok and new is not None and old is not None and not is_available(new, min_ready, now):
            surging += 1
    for n in nodes:
        new, old, ok = split[n]
        if not ok or old is None:
            continue
        if new is None:
            if not is_available(old, min_ready, now):
                plan.create.append(n)
            elif surging < surge:
                plan.create.append(n)
                surging += 1
        elif is_available(new, min_ready, now):
            plan.delete.append(old)
    return plan


def daemonset_status(ds: dict[str, Any], nodes: list[dict[str, Any]], on_node: dict[str, list[dict[str, Any]]],
                     revision_hash: str, collision_count: int, now: float) -> dict[str, Any]:
    """updateDaemonSetStatus: counts over nodes, each node's oldest pod standing for it."""
    min_ready, generation = as_int(d(ds.get("spec")).get("minReadySeconds")), template_generation(ds)
    counts = dict.fromkeys(("desiredNumberScheduled", "currentNumberScheduled", "numberMisscheduled",
                            "numberReady", "numberAvailable", "updatedNumberScheduled"), 0)
    for node in nodes:
        pods = on_node.get(str(d(node.get("metadata")).get("name", "")), [])
        run, _ = should_run(ds, node)
        if not run:
            counts["numberMisscheduled"] += 1 if any(d(p.get("spec")).get("nodeName") for p in pods) else 0
            continue
        counts["desiredNumberScheduled"] += 1
        if not pods:
            continue
        counts["currentNumberScheduled"] += 1
        pod = pods[0]
        if is_ready(pod):
            counts["numberReady"] += 1
            counts["numberAvailable"] += 1 if is_available(pod, min_ready, now) else 0
        counts["updatedNumberScheduled"] += 1 if is_updated(pod, revision_hash, generation) else 0
    status: dict[str, Any] = {k: counts[k] for k in ("currentNumberScheduled", "numberMisscheduled",
                                                      "desiredNumberScheduled", "numberReady")}
    unavailable = counts["desiredNumberScheduled"] - counts["numberAvailable"]
    optional = {"updatedNumberScheduled": counts["updatedNumberScheduled"],
                "numberAvailable": counts["numberAvailable"], "numberUnavailable": unavailable,
                "observedGeneration": as_int(d(ds.get("metadata")).get("generation")),
                "collisionCount": collision_count}
    status.update({k: v for k, v in optional.items() if v})
    return status


def _node_signature(node: dict[str, Any] | None) -> Any:
    """What of a node the controller reads: a heartbeat alone does not wake it."""
    if node is None:
        return None
    return (d(node.get("metadata")).get("labels"), d(node.get("spec")).get("taints"))


# ------------------------------------------------------------------------------------------------ the shell

class DaemonSetController(PodOwnerController):
    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time,
                 create_pod: PodCreator | None = None) -> None:
        super().__init__(registry, daemonsets(), COMPONENT, clock=clock, create_pod=create_pod)

    async def other_event(self, ev: WatchEvent) -> None:
        if not ev.key.startswith(NODES.storage_prefix()):
            return
        new = loads(ev.value) if ev.type != "DELETE" else None
        if ev.type != "PUT" or _node_signature(new) != _node_signature(loads(ev.prev_value)):
            self.enqueue_all()

    async def sync(self, key: Key) -> None:
        ns, name = key
        ds = await self.registry.get_or_none(self.info, ns, name)
        if ds is None:
            return
        pods = await self._own_pods(ds)
        nodes = (await self.registry.list(NODES, "")).items
        revisions = await history.list_owned(self.registry, ds)
        revision, collision = await history.ensure_revision(self.registry, ds, "DaemonSet", revisions, (HASH_LABEL,))
        digest = str(d(d(revision.get("metadata")).get("labels")).get(HASH_LABEL, ""))
        on_node = pods_by_node(pods)
        now = self.clock()
        if not d(ds.get("metadata")).get("deletionTimestamp"):
            refused = not await self._act(ds, plan_manage(ds, nodes, on_node, digest), digest)
            wanted = [str(n["metadata"]["name"]) for n in nodes if should_run(ds, n)[0]]
            refused = not await self._act(ds, plan_rolling(ds, wanted, on_node, digest, now), digest) or refused
            if refused:
                # Pods the API refuses are tried again after a while, not on every change.
                self.queue.add_after(key, 5.0)
        await write_status(self.registry, self.info, ds,
                           daemonset_status(ds, nodes, on_node, digest, collision, now))
        min_ready = as_int(d(ds.get("spec")).get("minReadySeconds"))
        waits = [w for w in (available_in(p, min_ready, now) for p in pods) if w is not None]
        if waits:
            self.queue.add_after(key, min(waits) + 0.05)
        live = {str(d(d(p.get("metadata")).get("labels")).get(HASH_LABEL, "")) for p in pods} | {digest}
        keep = {str(r["metadata"]["name"]) for r in revisions
                if str(d(d(r.get("metadata")).get("labels")).get(HASH_LABEL, "")) in live}
        await history.prune(self.registry, revisions, keep | {str(revision["metadata"]["name"])},
                            as_int(d(ds.get("spec")).get("revisionHistoryLimit"), 10))

    async def _act(self, ds: dict[str, Any], plan: Plan, digest: str) -> bool:
        """Carry out a plan; False when a pod could not be created."""
        for pod in plan.failed:
            meta = pod["metadata"]
            await self.events.event(object_reference(ds), "Warning", "FailedDaemonPod",
                                    f"Found failed daemon pod {meta.get('namespace', '')}/{meta['name']} on node "
                                    f"{target_node(pod)}, will try to kill it")
        done = set()
        for pod in plan.delete:
            if pod["metadata"]["name"] not in done:
                done.add(pod["metadata"]["name"])
                await self.delete_pod(ds, pod)
        made = [await self.create_pod(ds, new_pod(ds, node, digest)) for node in plan.create]
        return all(made)

    async def _own_pods(self, ds: dict[str, Any]) -> list[dict[str, Any]]:
        ns = str(ds["metadata"].get("namespace", ""))
        found = claim(ds, (await self.registry.list(PODS, ns)).items)
        ref = owner_reference(ds, "apps/v1", "DaemonSet")
        for pod in found.release:
            await release(self.registry, PODS, pod, ref["uid"])
        return found.owned + [p for p in found.adopt if await adopt(self.registry, PODS, p, ref)]
