"""Core/v1 Events as client-go's recorder writes them, with its correlation: a repeat bumps `count`."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kubesat import errors
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry, rfc3339

log = logging.getLogger("kubesat.controllers.events")

EVENTS = builtin_kind("v1", "Event")
_REMEMBERED = 4096  # client-go's event cache holds 4096 entries too


def object_reference(obj: dict[str, Any]) -> dict[str, Any]:
    """The involvedObject of an event about `obj`."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""), "name": meta.get("name", ""),
           "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


class EventRecorder:
    """Writes Events for one component (e.g. default-scheduler); never raises: events are best effort."""

    def __init__(self, registry: Registry, component: str, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.component = component
        self.clock = clock
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str]] = OrderedDict()

    async def event(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        # Events about cluster-scoped objects (Nodes) live in the default namespace, as in Kubernetes.
        ns = ref.get("namespace") or "default"
        key = (ns, ref.get("kind", ""), ref.get("name", ""), str(ref.get("uid", "")), type_, reason, message)
        now = self.clock()
        stamp = rfc3339(now)
        try:
            seen = self._seen.get(key)
            if seen is not None and await self._bump(seen, stamp):
                self._seen.move_to_end(key)
                return
            name = f"{ref.get('name', '')}.{int(now * 1e9):x}"
            body = {
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": ref, "reason": reason, "message": message, "type": type_,
                "source": {"component": self.component},
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                "reportingComponent": self.component, "reportingInstance": "",
            }
            await self.registry.create(EVENTS, ns, body)
            self._seen[key] = (ns, name)
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
        except errors.StatusError as e:
            log.info("%s: event %s about %s not recorded: %s", self.component, reason, ref.get("name"), e.message)

    async def _bump(self, seen: tuple[str, str], stamp: str) -> bool:
        def mutate(ev: dict[str, Any]) -> dict[str, Any]:
            ev["count"] = int(ev.get("count") or 1) + 1
            ev["lastTimestamp"] = stamp
            return ev

        try:
            await self.registry.guaranteed_update(EVENTS, seen[0], seen[1], mutate)
            return True
        except errors.StatusError:
            return False  # gone (deleted or expired): write a new one
