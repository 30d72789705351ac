"""The shell of a controller whose objects own pods (StatefulSet, DaemonSet): a keyed work queue fed by the
store's watch with the owners' changes and their pods' (by controller reference, or an orphan the owner's
selector matches), creating and deleting pods with Kubernetes' events."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesat import errors
from kubesat.controllers.base import Key, WorkQueue, cancel, loads, watch_in_background
from kubesat.controllers.events import EventRecorder, object_reference
from kubesat.controllers.workload import (
    controller_ref, d, is_active, selector_matches, PodCreator, pod_creator,
)
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.interface import WatchEvent

PODS = builtin_kind("v1", "Pod")


@dataclass(frozen=True)
class PodMessages:
    """The texts of a controller's pod events: (pod name) for success, (pod name, error) for failure."""

    created: Callable[[str], str]
    create_failed: Callable[[str, str], str]
    deleted: Callable[[str], str]
    delete_failed: Callable[[str, str], str]


# client-go's RealPodControl, which the DaemonSet (and ReplicaSet) controllers use.
POD_CONTROL_MESSAGES = PodMessages(
    created=lambda name: f"Created pod: {name}",
    create_failed=lambda name, err: f"Error creating: {err}",
    deleted=lambda name: f"Deleted pod: {name}",
    delete_failed=lambda name, err: f"Error deleting: {err}",
)


class PodOwnerController:
    """Subclasses set `info` (the owner kind) and write `sync`; `other_event` sees the watch's other keys."""

    def __init__(self, registry: Registry, info: ResourceInfo, component: str, *,
                 clock: Callable[[], float] = time.time, create_pod: PodCreator | None = None) -> None:
        self.registry = registry
        self.create_pod_admitted = pod_creator(registry, create_pod)
        self.info = info
        self.clock = clock
        self.events = EventRecorder(registry, component, clock=clock)
        self.queue = WorkQueue(self.sync, component)
        # namespace -> name -> selector, to find the owners an orphan pod may belong to.
        self.selectors: dict[str, dict[str, Any]] = {}
        self._watch: Any = None

    async def start(self) -> None:
        rev = await self.resync()
        self.queue.start()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self.resync, self.info.plural)

    async def stop(self) -> None:
        await cancel(self._watch)
        await self.queue.stop()

    async def sync(self, key: Key) -> None:
        raise NotImplementedError

    async def resync(self) -> int:
        rev = await self.registry.revision()
        self.selectors.clear()
        for obj in (await self.registry.list(self.info, "")).items:
            meta = obj["metadata"]
            self.selectors.setdefault(meta.get("namespace", ""), {})[meta["name"]] = d(obj.get("spec")).get("selector")
            self.queue.add((meta.get("namespace", ""), meta["name"]))
        return rev

    def enqueue_all(self) -> None:
        for ns, names in self.selectors.items():
            for name in names:
                self.queue.add((ns, name))

    def messages_for(self, owner: dict[str, Any]) -> PodMessages:
        """The texts of the pod events about `owner` (client-go's pod control's unless overridden)."""
        return POD_CONTROL_MESSAGES

    async def other_event(self, ev: WatchEvent) -> None:
        """A change to neither an owner nor a pod (a Node, for the DaemonSet controller)."""

    async def _on_event(self, ev: WatchEvent) -> None:
        if ev.key.startswith(self.info.storage_prefix()):
            self._owner_event(ev)
        elif ev.key.startswith(PODS.storage_prefix()):
            self._pod_event(ev)
        else:
            await self.other_event(ev)

    def _owner_event(self, ev: WatchEvent) -> None:
        ns, _, name = ev.key[len(self.info.storage_prefix()):].partition("/")
        obj = loads(ev.value) if ev.type != "DELETE" else None
        if obj is None:
            self.selectors.get(ns, {}).pop(name, None)
        else:
            self.selectors.setdefault(ns, {})[name] = d(obj.get("spec")).get("selector")
        self.queue.add((ns, name))

    def _pod_event(self, ev: WatchEvent) -> None:
        pod = loads(ev.value) if ev.type != "DELETE" else None
        for p in (pod, loads(ev.prev_value)):
            if p is None:
                continue
            ns = d(p.get("metadata")).get("namespace", "")
            ref = controller_ref(p)
            if ref is not None:
                if ref.get("kind") == self.info.kind and ref.get("apiVersion") == self.info.api_version:
                    self.queue.add((ns, str(ref.get("name", ""))))
            elif p is pod and is_active(p):
                labels = d(p.get("metadata")).get("labels")
                for name, selector in self.selectors.get(ns, {}).items():
                    if selector_matches(selector, labels):
                        self.queue.add((ns, name))

    async def create_pod(self, owner: dict[str, Any], pod: dict[str, Any]) -> bool:
        """Create one pod with a SuccessfulCreate event; False (after a FailedCreate event) when refused."""
        ref, texts = object_reference(owner), self.messages_for(owner)
        meta = d(pod.get("metadata"))
        try:
            created = await self.create_pod_admitted(pod)
        except errors.StatusError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                return False  # the watch has not shown it yet; the next sync sees it
            name = str(meta.get("name") or meta.get("generateName") or "")
            await self.events.event(ref, "Warning", "FailedCreate", texts.create_failed(name, e.message))
            return False
        await self.events.event(ref, "Normal", "SuccessfulCreate", texts.created(created["metadata"]["name"]))
        return True

    async def delete_pod(self, owner: dict[str, Any], pod: dict[str, Any]) -> bool:
        """Delete one pod (by uid) with a SuccessfulDelete event; False when it was gone or refused."""
        meta = pod["metadata"]
        ref = object_reference(owner)
        try:
            await self.registry.delete(PODS, meta.get("namespace", ""), meta["name"],
                                       DeleteOptions(uid=meta.get("uid", "")))
        except errors.StatusError as e:
            if e.code != 404:
                await self.events.event(ref, "Warning", "FailedDelete",
                                        self.messages_for(owner).delete_failed(meta["name"], e.message))
            return False
        await self.events.event(ref, "Normal", "SuccessfulDelete", self.messages_for(owner).deleted(meta["name"]))
        return True
