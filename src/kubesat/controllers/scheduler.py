"""The default-scheduler: binds each unassigned pod (pods/binding) to a Ready, schedulable node whose taints it
tolerates and whose nodeSelector / required node affinity it matches, fewest pods first; otherwise the pod
stays Pending with PodScheduled=False and a FailedScheduling Event worded as kube-scheduler 1.32 words it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesat import errors
from kubesat.controllers.base import cancel, loads, resource_of_key, split_key, watch_in_background
from kubesat.controllers.events import EventRecorder, object_reference
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry, decode, encode, rfc3339
from kubesat.storage.interface import KeyNotFound, RevisionConflict, WatchEvent

log = logging.getLogger("kubesat.controllers.scheduler")

PODS = builtin_kind("v1", "Pod")
NODES = builtin_kind("v1", "Node")

SCHEDULER_NAME = "default-scheduler"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NO_NODES = "no nodes available to schedule pods"
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
UNSCHEDULABLE_RETRY_SECONDS = 300.0  # kube-scheduler's podMaxInUnschedulablePodsDuration


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


# ------------------------------------------------------------------------------------- filter rules

def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint: an empty key with Exists tolerates every key; an empty effect every effect."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerated(tolerations: list[Any], taint: dict[str, Any]) -> bool:
    return any(tolerates(_d(t), taint) for t in tolerations)


def ready_status(node: dict[str, Any]) -> str:
    """The Ready condition's status: True, False, Unknown, or "" when the node has none."""
    for c in _l(_d(node.get("status")).get("conditions")):
        if _d(c).get("type") == "Ready":
            return str(_d(c).get("status") or "")
    return ""


def scheduling_taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The node's NoSchedule/NoExecute taints; a node that is not Ready counts as tainted not-ready (or
    unreachable) even before the node lifecycle controller has written the taint."""
    taints = [_d(t) for t in _l(_d(node.get("spec")).get("taints"))
              if _d(t).get("effect") in ("NoSchedule", "NoExecute")]
    status = ready_status(node)
    if status != "True":
        key = UNREACHABLE_TAINT if status == "Unknown" else NOT_READY_TAINT
        if not any(t.get("key") == key for t in taints):
            taints.append({"key": key, "effect": "NoSchedule"})
    return taints


def _int(s: Any) -> int | None:
    try:
        return int(str(s), 10)
    except ValueError:
        return None


def requirement_matches(req: dict[str, Any], values_of: dict[str, str]) -> bool:
    """One NodeSelectorRequirement against a label (or field) map."""
    key = req.get("key") or ""
    op = req.get("operator") or ""
    values = [str(v) for v in _l(req.get("values"))]
    present = key in values_of
    value = values_of.get(key, "")
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        have, want = _int(value), _int(values[0]) if len(values) == 1 else None
        if not present or have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _term_matches(term: dict[str, Any], labels: dict[str, str], fields: dict[str, str]) -> bool:
    exprs, field_exprs = _l(term.get("matchExpressions")), _l(term.get("matchFields"))
    if not exprs and not field_exprs:
        return False  # an empty term matches no node
    return (all(requirement_matches(_d(r), labels) for r in exprs)
            and all(requirement_matches(_d(r), fields) for r in field_exprs))


def matches_node_affinity(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    """spec.nodeSelector and requiredDuringSchedulingIgnoredDuringExecution (terms ORed) both hold."""
    spec = _d(pod.get("spec"))
    meta = _d(node.get("metadata"))
    labels = {str(k): str(v) for k, v in _d(meta.get("labels")).items()}
    for k, v in _d(spec.get("nodeSelector")).items():
        if labels.get(k) != v:
            return False
    required = _d(_d(_d(spec.get("affinity")).get("nodeAffinity")).get(
        "requiredDuringSchedulingIgnoredDuringExecution"))
    if not required:
        return True
    fields = {"metadata.name": str(meta.get("name", ""))}
    return any(_term_matches(_d(t), labels, fields) for t in _l(required.get("nodeSelectorTerms")))


def filter_node(pod: dict[str, Any], node: dict[str, Any]) -> str | None:
    """Why the pod cannot go to the node (the first failing filter, in kube-scheduler's plugin order:
    NodeUnschedulable, TaintToleration, NodeAffinity), or None when it can."""
    tolerations = _l(_d(pod.get("spec")).get("tolerations"))
    if _d(node.get("spec")).get("unschedulable") and not tolerated(
            tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}):
        return REASON_UNSCHEDULABLE
    for taint in scheduling_taints(node):
        if not tolerated(tolerations, taint):
            return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value') or ''}}}"
    if not matches_node_affinity(pod, node):
        return REASON_AFFINITY
    return None


def fit_error(n_nodes: int, reasons: dict[str, int]) -> str:
    """kube-scheduler's FitError text; every reason here is unresolvable by preemption."""
    listed = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
    return (f"0/{n_nodes} nodes are available: {listed}. preemption: 0/{n_nodes} nodes are available: "
            f"{n_nodes} Preemption is not helpful for scheduling.")


@dataclass(frozen=True)
class Decision:
    node: str | None  # None: unschedulable
    message: str = ""


def schedule(pod: dict[str, Any], nodes: list[dict[str, Any]], pod_counts: dict[str, int]) -> Decision:
    """Pick a node: feasible ones, fewest pods first, ties by name."""
    if not nodes:
        return Decision(None, NO_NODES)
    reasons: dict[str, int] = {}
    feasible: list[str] = []
    for node in nodes:
        why = filter_node(pod, node)
        name = str(_d(node.get("metadata")).get("name", ""))
        if why is None:
            feasible.append(name)
        else:
            reasons[why] = reasons.get(why, 0) + 1
    if not feasible:
        return Decision(None, fit_error(len(nodes), reasons))
    return Decision(min(feasible, key=lambda n: (pod_counts.get(n, 0), n)))


def wants_default_scheduler(pod: dict[str, Any]) -> bool:
    spec = _d(pod.get("spec"))
    meta = _d(pod.get("metadata"))
    return (not spec.get("nodeName") and not meta.get("deletionTimestamp")
            and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
            and not _l(spec.get("schedulingGates"))
            and _d(pod.get("status")).get("phase", "Pending") not in ("Succeeded", "Failed"))


# ------------------------------------------------------------------------------------- binding

def set_condition(pod: dict[str, Any], cond: dict[str, Any], now: str) -> bool:
    """podutil.UpdatePodCondition: replace the condition of that type, keeping its lastTransitionTime when the
    status does not change. True when something changed."""
    status = pod.setdefault("status", {})
    conds = status.setdefault("conditions", [])
    new = {"type": cond["type"], "status": cond["status"], "lastProbeTime": None, "lastTransitionTime": now,
           **{k: v for k, v in cond.items() if k not in ("type", "status") and v}}
    for i, old in enumerate(conds):
        if _d(old).get("type") == cond["type"]:
            if old.get("status") == cond["status"] and old.get("lastTransitionTime"):
                new["lastTransitionTime"] = old["lastTransitionTime"]
            if old == new:
                return False
            conds[i] = new
            return True
    conds.append(new)
    return True


def apply_binding(pod: dict[str, Any], node_name: str, annotations: dict[str, Any], now: str) -> None:
    """What BindingREST does to the stored pod (setPodNodeAndMetadata), or the Conflict it answers."""
    meta = pod["metadata"]
    name = meta.get("name", "")
    spec = pod.setdefault("spec", {})

    def refuse(why: str) -> errors.StatusError:
        return errors.conflict("pods/binding", name, why)

    if meta.get("deletionTimestamp"):
        raise refuse(f"pod {name} is being deleted, cannot be assigned to a host")
    if spec.get("nodeName"):
        raise refuse(f'pod {name} is already assigned to node "{spec["nodeName"]}"')
    if _l(spec.get("schedulingGates")):
        raise refuse(f"pod {name} has non-empty .spec.schedulingGates")
    spec["nodeName"] = node_name
    if annotations:
        meta.setdefault("annotations", {}).update({str(k): str(v) for k, v in annotations.items()})
    set_condition(pod, {"type": "PodScheduled", "status": "True"}, now)


def validate_binding(binding: dict[str, Any]) -> list[errors.FieldError]:
    target = _d(binding.get("target"))
    errs: list[errors.FieldError] = []
    kind = target.get("kind") or ""
    if kind and kind != "Node":
        errs.append(errors.not_supported("target.kind", kind, ["Node", "<empty>"]))
    if not target.get("name"):
        errs.append(errors.required("target.name"))
    return errs


async def bind_pod(registry: Registry, namespace: str, binding: dict[str, Any], *, dry_run: bool = False) -> None:
    """Assign a pod to a node as the pods/binding subresource does: a direct read-modify-write of the pod,
    outside the update strategy (spec.nodeName is otherwise immutable)."""
    meta = _d(binding.get("metadata"))
    name = str(meta.get("name") or "")
    errs = validate_binding(binding)
    if errs:
        raise errors.invalid("Binding", name, errs)
    want_uid, want_rv = str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
    key = PODS.key(namespace, name)
    for _ in range(16):
        kv = await registry.store.get(key)
        if kv is None:
            raise errors.not_found("pods", name)
        pod = decode(kv.value, kv.mod_revision)
        pmeta = pod["metadata"]
        if want_uid and want_uid != pmeta.get("uid"):
            raise errors.conflict("pods", name, f"Precondition failed: UID in precondition: {want_uid}, "
                                                f"UID in object meta: {pmeta.get('uid')}")
        if want_rv and want_rv != str(kv.mod_revision):
            raise errors.conflict("pods", name, f"Precondition failed: ResourceVersion in precondition: {want_rv}, "
                                                f"ResourceVersion in object meta: {kv.mod_revision}")
        apply_binding(pod, str(_d(binding.get("target")).get("name")), _d(meta.get("annotations")), registry.now())
        if dry_run:
            return
        pmeta.pop("resourceVersion", None)
        try:
            rev = await registry.store.update(key, encode(pod), kv.mod_revision)
        except RevisionConflict:
            continue
        except KeyNotFound:
            raise errors.not_found("pods", name) from None
        pmeta["resourceVersion"] = str(rev)
        registry.written(PODS, pod)  # the node graph learns that the pod is on its node now
        return
    raise errors.conflict("pods", name, "the object has been modified; please apply your changes to the latest "
                                        "version and try again")


# ------------------------------------------------------------------------------------- the controller

def _node_signature(node: dict[str, Any]) -> tuple[Any, ...]:
    """What of a node scheduling looks at: a change to it retries the unschedulable pods."""
    meta, spec = _d(node.get("metadata")), _d(node.get("spec"))
    return (repr(sorted(_d(meta.get("labels")).items())), bool(spec.get("unschedulable")),
            repr(scheduling_taints(node)))


def _pod_signature(pod: dict[str, Any]) -> str:
    spec = _d(pod.get("spec"))
    return repr([spec.get(k) for k in ("tolerations", "nodeSelector", "affinity", "schedulerName")])


class Scheduler:
    """A watch-fed cache of nodes and of pods per node, and a queue of pods to place."""

    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time,
                 retry_seconds: float = UNSCHEDULABLE_RETRY_SECONDS) -> None:
        self.registry = registry
        self.clock = clock
        self.retry_seconds = retry_seconds
        self.events = EventRecorder(registry, SCHEDULER_NAME, clock=clock)
        self.nodes: dict[str, dict[str, Any]] = {}
        self._signatures: dict[str, tuple[Any, ...]] = {}
        self.pod_node: dict[str, str] = {}  # pod key -> node of bound, unfinished pods
        self.pod_counts: dict[str, int] = {}
        # Pods that found no node, with what of them scheduling looked at (a change retries them).
        self.unschedulable: dict[tuple[str, str], str] = {}
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        rev = await self.resync()
        self._tasks = [
            watch_in_background(self.registry.store, rev, self._on_event, self.resync, "scheduler"),
            asyncio.create_task(self._work()),
            asyncio.create_task(self._retry_periodically()),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            await cancel(t)
        self._tasks = []

    async def resync(self) -> int:
        nodes = await self.registry.list(NODES, "")
        self.nodes = {n["metadata"]["name"]: n for n in nodes.items}
        self._signatures = {k: _node_signature(n) for k, n in self.nodes.items()}
        pods = await self.registry.list(PODS, "")
        self.pod_node.clear()
        self.pod_counts.clear()
        for pod in pods.items:
            self._track(PODS.key(pod["metadata"]["namespace"], pod["metadata"]["name"]), pod)
            if wants_default_scheduler(pod):
                self._enqueue(pod["metadata"]["namespace"], pod["metadata"]["name"])
        return int(pods.resource_version)

    def _track(self, key: str, pod: dict[str, Any] | None) -> None:
        old = self.pod_node.pop(key, None)
        if old is not None:
            self.pod_counts[old] -= 1
        if pod is None:
            return
        node = _d(pod.get("spec")).get("nodeName")
        if node and _d(pod.get("status")).get("phase") not in ("Succeeded", "Failed"):
            self.pod_node[key] = node
            self.pod_counts[node] = self.pod_counts.get(node, 0) + 1

    def _enqueue(self, ns: str, name: str) -> None:
        if (ns, name) not in self._queued:
            self._queued.add((ns, name))
            self._queue.put_nowait((ns, name))

    def _retry_unschedulable(self) -> None:
        for ns, name in sorted(self.unschedulable):
            self._enqueue(ns, name)

    async def _on_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is PODS:
            ns, name = split_key(info, ev.key)
            pod = loads(ev.value) if ev.type == "PUT" else None
            self._track(ev.key, pod)
            if pod is not None and wants_default_scheduler(pod):
                if self.unschedulable.get((ns, name)) != _pod_signature(pod):
                    self._enqueue(ns, name)
            else:
                self.unschedulable.pop((ns, name), None)
        elif info is NODES:
            _, name = split_key(info, ev.key)
            node = loads(ev.value) if ev.type == "PUT" else None
            if node is None:
                self.nodes.pop(name, None)
                self._signatures.pop(name, None)
                return
            self.nodes[name] = node
            sig = _node_signature(node)
            if self._signatures.get(name) != sig:
                self._signatures[name] = sig
                self._retry_unschedulable()

    async def _retry_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.retry_seconds)
            self._retry_unschedulable()

    async def _work(self) -> None:
        while True:
            ns, name = await self._queue.get()
            self._queued.discard((ns, name))
            try:
                await self.schedule_one(ns, name)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one pod must not stop the scheduler
                log.exception("scheduler: scheduling %s/%s failed", ns, name)

    async def schedule_one(self, ns: str, name: str) -> None:
        pod = await self.registry.get_or_none(PODS, ns, name)
        if pod is None or not wants_default_scheduler(pod):
            self.unschedulable.pop((ns, name), None)
            return
        nodes = [self.nodes[n] for n in sorted(self.nodes)]
        decision = schedule(pod, nodes, self.pod_counts)
        if decision.node is None:
            self.unschedulable[(ns, name)] = _pod_signature(pod)
            await self._record_failure(pod, decision.message)
            return
        binding = {"metadata": {"name": name, "namespace": ns, "uid": pod["metadata"]["uid"]},
                   "target": {"kind": "Node", "name": decision.node}}
        try:
            await bind_pod(self.registry, ns, binding)
        except errors.StatusError as e:
            log.info("scheduler: binding %s/%s to %s: %s", ns, name, decision.node, e.message)
            return
        self.unschedulable.pop((ns, name), None)
        # Count it now: the next pod in the queue must see this one before the watch delivers it.
        self._track(PODS.key(ns, name), {"spec": {"nodeName": decision.node}})
        await self.events.event(object_reference(pod), "Normal", "Scheduled",
                                f"Successfully assigned {ns}/{name} to {decision.node}")

    async def _record_failure(self, pod: dict[str, Any], message: str) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        now = rfc3339(self.clock())

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            set_condition(current, {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": message}, now)
            return current

        try:
            await self.registry.guaranteed_update(PODS, ns, name, mutate, subresource="status")
        except errors.StatusError as e:
            log.info("scheduler: status of %s/%s: %s", ns, name, e.message)
            return
        await self.events.event(object_reference(pod), "Warning", "FailedScheduling", message)
