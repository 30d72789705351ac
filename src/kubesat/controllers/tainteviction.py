"""The taint eviction controller: pods on a node with NoExecute taints they do not tolerate are deleted, and
pods that tolerate them for `tolerationSeconds` are deleted when that time is up, as kube-controller-manager's
taint-eviction-controller does it (pkg/controller/tainteviction).

With the node lifecycle controller's `node.kubernetes.io/unreachable` and `not-ready` NoExecute taints and
the 300 s tolerations every pod gets at admission (DefaultTolerationSeconds), this is what moves the pods of
a lost node: five minutes after the node stops reporting, its pods are deleted (and, the node's kubelet being
gone, stay Terminating until it comes back or they are deleted with `--force`); their controllers make
replacements elsewhere.

The rules, as Kubernetes has them:
- a pod is looked at when it is bound or changes, and when its node's NoExecute taints change;
- a taint with no matching toleration: the pod is deleted now;
- all tolerated: the shortest `tolerationSeconds` among the tolerations used decides when; none set means
  never (any scheduled deletion is cancelled), zero or less means now;
- a deletion already scheduled keeps its time; one the taints no longer call for is cancelled, with the
  `TaintManagerEviction` Event "Cancelling deletion of Pod NS/NAME";
- at its time the pod gets the DisruptionTarget condition (DeletionByTaintManager), the Event "Marking for
  deletion Pod NS/NAME", and a delete with its own grace period.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesat import errors
from kubesat.apimachinery.selectors import parse_field_selector
from kubesat.controllers.base import cancel, loads, resource_of_key, split_key, watch_in_background
from kubesat.controllers.events import EventRecorder
from kubesat.controllers.scheduler import tolerates
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry

log = logging.getLogger("kubesat.controllers.tainteviction")

PODS = builtin_kind("v1", "Pod")
NODES = builtin_kind("v1", "Node")
COMPONENT = "taint-eviction-controller"
REASON = "TaintManagerEviction"
DISRUPTION = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
              "message": "Taint manager: deleting due to NoExecute taint"}
FOREVER = -1.0


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def no_execute_taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [_d(t) for t in _l(_d(node.get("spec")).get("taints")) if _d(t).get("effect") == "NoExecute"]


def eviction_delay(taints: list[dict[str, Any]], tolerations: list[Any]) -> float:
    """Seconds until a pod with `tolerations` is to be deleted from a node with NoExecute `taints`: 0 when a
    taint is not tolerated, FOREVER when every toleration used tolerates for ever (or there is no taint)."""
    used: list[dict[str, Any]] = []
    for taint in taints:
        match = next((_d(t) for t in tolerations if tolerates(_d(t), taint)), None)
        if match is None:
            return 0.0
        used.append(match)
    if not used:
        return FOREVER
    shortest = math.inf
    for t in used:
        seconds = t.get("tolerationSeconds")
        if isinstance(seconds, int) and not isinstance(seconds, bool):
            if seconds <= 0:
                return 0.0
            shortest = min(shortest, float(seconds))
    return FOREVER if shortest == math.inf else shortest


@dataclass
class _Scheduled:
    at: float  # on the controller's monotonic clock
    task: asyncio.Task[None]


class TaintEvictionController:
    def __init__(self, registry: Registry, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.events = EventRecorder(registry, COMPONENT)
        self.monotonic = monotonic
        self.taints: dict[str, list[dict[str, Any]]] = {}  # node -> its NoExecute taints, when it has some
        self.scheduled: dict[tuple[str, str], _Scheduled] = {}  # (namespace, pod) -> its deletion
        self._watch: asyncio.Task[None] | None = None
        self._events: set[asyncio.Task[None]] = set()  # cancellation Events being written

    async def start(self) -> None:
        rev = await self.registry.revision()
        await self._resync_nodes()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self._resync, COMPONENT)

    async def stop(self) -> None:
        await cancel(self._watch)
        for s in list(self.scheduled.values()):
            await cancel(s.task)
        self.scheduled.clear()
        for t in list(self._events):
            await cancel(t)

    async def _resync(self) -> int:
        rev = await self.registry.revision()
        await self._resync_nodes()
        return rev

    async def _resync_nodes(self) -> None:
        self.taints.clear()
        for node in (await self.registry.list(NODES, "")).items:
            await self._node_changed(node)

    async def _on_event(self, ev: Any) -> None:
        info = resource_of_key(ev.key)
        if info is NODES:
            _, name = split_key(NODES, ev.key)
            node = loads(ev.value) if ev.type == "PUT" else None
            if node is None:
                self.taints.pop(name, None)
            else:
                await self._node_changed(node)
        elif info is PODS:
            ns, name = split_key(PODS, ev.key)
            if ev.type != "PUT":
                self._cancel((ns, name), quietly=True)
                return
            if not self.taints and (ns, name) not in self.scheduled:
                return  # no node has a NoExecute taint: nothing to decode
            pod = loads(ev.value)
            if pod is not None:
                await self.pod_changed(pod)

    async def _node_changed(self, node: dict[str, Any]) -> None:
        name = str(node["metadata"]["name"])
        taints = no_execute_taints(node)
        before = self.taints.get(name, [])
        if taints:
            self.taints[name] = taints
        else:
            self.taints.pop(name, None)
        if taints == before:
            return
        fields = parse_field_selector(f"spec.nodeName={name}", lambda f: f == "spec.nodeName", "Pod", "v1")
        for pod in (await self.registry.list(PODS, "", fields=fields)).items:
            await self.pod_changed(pod)

    async def pod_changed(self, pod: dict[str, Any]) -> None:
        """processPodOnNode: schedule, keep or cancel the pod's deletion for its node's NoExecute taints."""
        meta = pod["metadata"]
        key = (str(meta.get("namespace", "")), str(meta["name"]))
        node = str(_d(pod.get("spec")).get("nodeName") or "")
        taints = self.taints.get(node, []) if node else []
        if not taints or meta.get("deletionTimestamp"):
            self._cancel(key, quietly=bool(meta.get("deletionTimestamp")))
            return
        delay = eviction_delay(taints, _l(_d(pod.get("spec")).get("tolerations")))
        if delay == FOREVER:
            self._cancel(key)
            return
        if delay > 0 and key in self.scheduled:
            return  # a scheduled deletion keeps its time
        self._cancel(key, quietly=True)
        due = self.monotonic() + delay
        self.scheduled[key] = _Scheduled(due, asyncio.create_task(self._evict_at(key, str(meta.get("uid", "")),
                                                                                 delay)))

    def _cancel(self, key: tuple[str, str], quietly: bool = False) -> None:
        s = self.scheduled.pop(key, None)
        if s is None:
            return
        s.task.cancel()
        if not quietly:
            ref = {"kind": "Pod", "apiVersion": "v1", "namespace": key[0], "name": key[1]}
            task = asyncio.create_task(self.events.event(ref, "Normal", REASON,
                                                         f"Cancelling deletion of Pod {key[0]}/{key[1]}"))
            self._events.add(task)
            task.add_done_callback(self._events.discard)

    async def _evict_at(self, key: tuple[str, str], uid: str, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await self.evict(key[0], key[1], uid)
        finally:
            current = self.scheduled.get(key)
            if current is not None and current.task is asyncio.current_task():
                del self.scheduled[key]

    async def evict(self, ns: str, name: str, uid: str) -> None:
        """The DisruptionTarget condition, the Event, then a delete with the pod's own grace period."""
        ref = {"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name, "uid": uid}
        await self.events.event(ref, "Normal", REASON, f"Marking for deletion Pod {ns}/{name}")
        now = self.registry.now()

        def disrupted(current: dict[str, Any]) -> dict[str, Any]:
            status = current.setdefault("status", {})
            conditions = [c for c in _l(status.get("conditions")) if _d(c).get("type") != "DisruptionTarget"]
            conditions.append(dict(DISRUPTION, lastProbeTime=None, lastTransitionTime=now))
            status["conditions"] = conditions
            return current

        try:
            await self.registry.guaranteed_update(PODS, ns, name, disrupted, subresource="status")
            await self.registry.delete(PODS, ns, name, DeleteOptions(uid=uid))
        except errors.StatusError as e:
            if e.code not in (404, 409):
                log.warning("%s: deleting pod %s/%s: %s", COMPONENT, ns, name, e.message)
