"""The node lifecycle controller: a node whose kubelet stops renewing its Lease (and posting status) for the
node-monitor grace period turns Ready=Unknown; nodes get and lose the node.kubernetes.io/ taints their
conditions and spec.unschedulable call for, as kube-controller-manager's nodelifecycle controller does it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesat import errors
from kubesat.controllers.base import cancel, loads, resource_of_key, split_key, watch_in_background
from kubesat.controllers.events import EventRecorder

from kubesat.registry.kinds import builtin_kind
from kubesat.apimachinery.selectors import parse_field_selector
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.controllers.nodelifecycle")

NODES = builtin_kind("v1", "Node")
LEASES = builtin_kind("coordination.k8s.io/v1", "Lease")
PODS = builtin_kind("v1", "Pod")
LEASE_NAMESPACE = "kube-node-lease"
COMPONENT = "node-controller"

# kube-controller-manager 1.32 defaults: --node-monitor-grace-period 50s (40s before 1.32),
# --node-startup-grace-period 1m, --node-monitor-period 5s.
DEFAULT_GRACE_PERIOD = 50.0
DEFAULT_STARTUP_GRACE_PERIOD = 60.0
DEFAULT_MONITOR_PERIOD = 5.0

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
# Condition (type, status) -> NoSchedule taint key (doNoScheduleTaintingPass).
_NO_SCHEDULE = {
    ("Ready", "False"): NOT_READY,
    ("Ready", "Unknown"): UNREACHABLE,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
}
_MANAGED = {(k, "NoSchedule") for k in _NO_SCHEDULE.values()} | {(UNSCHEDULABLE, "NoSchedule"),
                                                                  (NOT_READY, "NoExecute"), (UNREACHABLE, "NoExecute")}
# Conditions the kubelet posts besides Ready; all turn Unknown with it.
_OTHER_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")
STOPPED = ("NodeStatusUnknown", "Kubelet stopped posting node status.")
NEVER = ("NodeStatusNeverUpdated", "Kubelet never posted node status.")


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def condition(node: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in _l(_d(node.get("status")).get("conditions")):
        if _d(c).get("type") == type_:
            return _d(c)
    return None


def desired_taints(node: dict[str, Any]) -> set[tuple[str, str]]:
    """The controller-managed (key, effect) taints the node's conditions and spec call for."""
    out: set[tuple[str, str]] = set()
    for c in _l(_d(node.get("status")).get("conditions")):
        key = _NO_SCHEDULE.get((str(_d(c).get("type")), str(_d(c).get("status"))))
        if key:
            out.add((key, "NoSchedule"))
    ready = condition(node, "Ready")
    if ready is not None and ready.get("status") == "False":
        out.add((NOT_READY, "NoExecute"))
    elif ready is not None and ready.get("status") == "Unknown":
        out.add((UNREACHABLE, "NoExecute"))
    if _d(node.get("spec")).get("unschedulable"):
        out.add((UNSCHEDULABLE, "NoSchedule"))
    return out


def reconcile_taints(node: dict[str, Any], now: str) -> list[dict[str, Any]] | None:
    """The node's new spec.taints (managed taints added with timeAdded, stale ones removed, the rest kept in
    place), or None when they are right already."""
    current = [_d(t) for t in _l(_d(node.get("spec")).get("taints"))]
    want = desired_taints(node)
    have = {(t.get("key"), t.get("effect")) for t in current}
    kept = [t for t in current if (t.get("key"), t.get("effect")) not in _MANAGED
            or (t.get("key"), t.get("effect")) in want]
    added = [{"key": k, "effect": e, "timeAdded": now} for k, e in sorted(want - have)]
    if not added and len(kept) == len(current):
        return None
    return kept + added


def mark_unknown(node: dict[str, Any], now: str) -> bool:
    """tryUpdateNodeHealth past the grace period: Ready and the pressure conditions become Unknown
    (NodeStatusNeverUpdated when the kubelet never posted them). True when something changed."""
    status = node.setdefault("status", {})
    conds = status.setdefault("conditions", [])
    created = _d(node.get("metadata")).get("creationTimestamp")
    changed = False
    for type_ in ("Ready", *_OTHER_CONDITIONS):
        c = condition(node, type_)
        if c is None:
            reason, message = NEVER
            conds.append({"type": type_, "status": "Unknown", "lastHeartbeatTime": created,
                          "lastTransitionTime": now, "reason": reason, "message": message})
            changed = True
        elif c.get("status") != "Unknown":
            reason, message = STOPPED
            c.update({"status": "Unknown", "reason": reason, "message": message, "lastTransitionTime": now})
            changed = True
    return changed


def pod_ready_false(pod: dict[str, Any], now: str, dry: bool = False) -> bool:
    """Turn a pod's Ready condition False (its transition time now), as MarkPodsNotReady does; True when it
    was not False yet. A pod without a Ready condition is left as it is."""
    for c in _l(_d(pod.get("status")).get("conditions")):
        if _d(c).get("type") == "Ready" and c.get("status") != "False":
            if not dry:
                c.update({"status": "False", "lastTransitionTime": now})
            return True
    return False


@dataclass
class _Health:
    probe: float  # (monotonic) when the controller last heard from the kubelet
    heartbeat: str = ""  # the Ready condition's lastHeartbeatTime last seen
    renew: str = ""  # the Lease's renewTime last seen
    ready: str = ""  # the Ready status last seen


class NodeLifecycleController:
    def __init__(self, registry: Registry, *, grace_period: float = DEFAULT_GRACE_PERIOD,
                 startup_grace_period: float = DEFAULT_STARTUP_GRACE_PERIOD,
                 monitor_period: float | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.grace_period = grace_period
        self.startup_grace_period = startup_grace_period
        # Checked often enough that a short (test) grace period is noticed on time.
        self.monitor_period = monitor_period or min(DEFAULT_MONITOR_PERIOD, max(0.1, grace_period / 5))
        self.monotonic = monotonic
        self.events = EventRecorder(registry, COMPONENT)
        self.health: dict[str, _Health] = {}
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        rev = await self.resync()
        self._tasks = [
            watch_in_background(self.registry.store, rev, self._on_event, self.resync, "node-lifecycle"),
            asyncio.create_task(self._monitor_loop()),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            await cancel(t)
        self._tasks = []

    async def resync(self) -> int:
        leases = await self.registry.list(LEASES, LEASE_NAMESPACE)
        for lease in leases.items:
            self._observe_lease(lease["metadata"]["name"], lease)
        nodes = await self.registry.list(NODES, "")
        for node in nodes.items:
            await self._observe_node(node)
        return max(int(nodes.resource_version), int(leases.resource_version))

    def _state(self, name: str) -> _Health:
        h = self.health.get(name)
        if h is None:
            h = self.health[name] = _Health(self.monotonic())
        return h

    def _observe_lease(self, name: str, lease: dict[str, Any]) -> None:
        renew = str(_d(lease.get("spec")).get("renewTime") or "")
        h = self._state(name)
        if renew and renew != h.renew:
            h.renew = renew
            h.probe = self.monotonic()

    async def _observe_node(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        new = name not in self.health
        h = self._state(name)
        ready = condition(node, "Ready") or {}
        beat = str(ready.get("lastHeartbeatTime") or "")
        if beat and beat != h.heartbeat:
            h.heartbeat = beat
            h.probe = self.monotonic()
        status = str(ready.get("status") or "")
        was_ready, h.ready = h.ready, status
        if was_ready == "True" and status != "True":
            await self.events.event(self._status_ref(name), "Normal", "NodeNotReady",
                                    f"Node {name} status is now: NodeNotReady")
            await self.mark_pods_not_ready(name)
        if new:
            ref = {"kind": "Node", "apiVersion": "v1", "name": name, "uid": node["metadata"].get("uid", "")}
            await self.events.event(ref, "Normal", "RegisteredNode",
                                    f"Node {name} event: Registered Node {name} in Controller")

    async def mark_pods_not_ready(self, node: str) -> int:
        """MarkPodsNotReady: the node's pods are Ready=False now, each with a `NodeNotReady` warning."""
        fields = parse_field_selector(f"spec.nodeName={node}", lambda f: f == "spec.nodeName", "Pod", "v1")
        marked = 0

        def mark(current: dict[str, Any]) -> dict[str, Any]:
            pod_ready_false(current, self.registry.now())
            return current

        for pod in (await self.registry.list(PODS, "", fields=fields)).items:
            if not pod_ready_false(pod, self.registry.now(), dry=True):
                continue
            meta = pod["metadata"]
            try:
                pod, _ = await self.registry.guaranteed_update(PODS, meta.get("namespace", ""), meta["name"], mark,
                                                               subresource="status")
            except errors.StatusError as e:
                if e.code != 404:
                    log.info("node-lifecycle: marking pod %s/%s not ready: %s", meta.get("namespace"),
                             meta["name"], e.message)
                continue
            ref = {"kind": "Pod", "apiVersion": "v1", "namespace": meta.get("namespace", ""), "name": meta["name"],
                   "uid": meta.get("uid", ""), "resourceVersion": pod["metadata"].get("resourceVersion", "")}
            await self.events.event(ref, "Warning", "NodeNotReady", "Node is not ready")
            marked += 1
        return marked

    @staticmethod
    def _status_ref(name: str) -> dict[str, Any]:
        # RecordNodeStatusChange puts the node's name where the UID goes.
        return {"kind": "Node", "apiVersion": "v1", "name": name, "uid": name}

    async def _on_event(self, ev: Any) -> None:
        info = resource_of_key(ev.key)
        if info is LEASES:
            ns, name = split_key(info, ev.key)
            obj = loads(ev.value) if ev.type == "PUT" else None
            if ns == LEASE_NAMESPACE and obj is not None:
                self._observe_lease(name, obj)
        elif info is NODES:
            _, name = split_key(info, ev.key)
            node = loads(ev.value) if ev.type == "PUT" else None
            if node is None:
                self.health.pop(name, None)
                return
            await self._observe_node(node)
            await self._taint(node)

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.monitor_period)
            for name in sorted(self.health):
                try:
                    await self.monitor(name)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - one node must not stop the others' monitoring
                    log.exception("node-lifecycle: monitoring node %s failed", name)

    async def monitor(self, name: str) -> None:
        """One node's health check: Unknown past its grace period, then its taints."""
        node = await self.registry.get_or_none(NODES, "", name)
        if node is None:
            self.health.pop(name, None)
            return
        h = self._state(name)
        grace = self.grace_period if condition(node, "Ready") is not None else self.startup_grace_period
        if self.monotonic() - h.probe > grace:
            node = await self._mark_unknown(name, h) or node
        await self._taint(node)

    async def _mark_unknown(self, name: str, h: _Health) -> dict[str, Any] | None:
        now = self.registry.now()

        def mutate(node: dict[str, Any]) -> dict[str, Any]:
            ready = condition(node, "Ready") or {}
            if str(ready.get("lastHeartbeatTime") or "") == h.heartbeat:  # else the kubelet has just posted
                mark_unknown(node, now)
            return node

        try:
            node, _ = await self.registry.guaranteed_update(NODES, "", name, mutate, subresource="status")
        except errors.StatusError as e:
            log.info("node-lifecycle: marking %s Unknown: %s", name, e.message)
            return None
        await self._observe_node(node)
        return node

    async def _taint(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        if reconcile_taints(node, self.registry.now()) is None:
            return

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            taints = reconcile_taints(current, self.registry.now())
            if taints is not None:
                spec = current.setdefault("spec", {})
                if taints:
                    spec["taints"] = taints
                else:
                    spec.pop("taints", None)
            return current

        try:
            await self.registry.guaranteed_update(NODES, "", name, mutate)
        except errors.StatusError as e:
            log.info("node-lifecycle: taints of %s: %s", name, e.message)
