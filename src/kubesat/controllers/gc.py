"""Garbage collector: dependents follow their owners (ownerReferences), as Kubernetes' GC does.

Background deletion removes dependents after the owner is gone; the `orphan` finalizer strips
owner references from dependents before the owner goes; the `foregroundDeletion` finalizer
deletes dependents first. A dependent whose owners all do not exist (by uid) is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubesat import errors
from kubesat.controllers.base import loads, resource_of_key, cancel, watch_in_background, split_key
from kubesat.registry.kinds import ResourceInfo, lookup_kind, stored_resources
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.gc")

Ref = tuple[ResourceInfo, str, str]  # (resource, namespace, name) of a dependent


class GarbageCollector:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.dependents: dict[str, set[Ref]] = {}  # owner uid -> dependents
        self.owners_of: dict[Ref, set[str]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rev = await self.resync()
        self._task = watch_in_background(self.registry.store, rev, self._on_event, self.resync, "gc")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def resync(self) -> int:
        self.dependents.clear()
        self.owners_of.clear()
        rev = await self.registry.revision()
        pending: list[tuple[Ref, dict[str, Any]]] = []
        for info in stored_resources():
            page = await self.registry.list(info, "")
            for obj in page.items:
                ref = (info, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                self._index(ref, obj)
                pending.append((ref, obj))
        for ref, obj in pending:
            await self._check(ref, obj)
        return rev

    def _index(self, ref: Ref, obj: dict[str, Any] | None) -> None:
        for uid in self.owners_of.pop(ref, set()):
            deps = self.dependents.get(uid)
            if deps is not None:
                deps.discard(ref)
                if not deps:
                    del self.dependents[uid]
        if obj is None:
            return
        uids = {o.get("uid", "") for o in obj["metadata"].get("ownerReferences") or [] if o.get("uid")}
        if uids:
            self.owners_of[ref] = uids
            for uid in uids:
                self.dependents.setdefault(uid, set()).add(ref)

    async def _on_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is None:
            return
        ns, name = split_key(info, ev.key)
        ref = (info, ns, name)
        if ev.type == "DELETE":
            self._index(ref, None)
            old = loads(ev.prev_value)
            if old is not None:
                await self._owner_gone(old["metadata"].get("uid", ""))
                await self._release_foreground_owners(ns, old)
            return
        obj = loads(ev.value)
        if obj is None:
            return
        self._index(ref, obj)
        await self._check(ref, obj)

    async def _check(self, ref: Ref, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        uid = meta.get("uid", "")
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if "orphan" in finalizers:
                await self._orphan_dependents(uid)
                await self._drop_finalizer(ref, "orphan")
            elif "foregroundDeletion" in finalizers:
                if not self.dependents.get(uid):
                    await self._drop_finalizer(ref, "foregroundDeletion")
                else:
                    for dep in list(self.dependents.get(uid, ())):
                        await self._delete(dep, "Foreground")
        if meta.get("ownerReferences"):
            await self._check_owners(ref, obj)

    async def _owner_exists(self, dep_ns: str, owner: dict[str, Any]) -> bool | None:
        """True/False if the owner (by uid) exists; None if its kind is not one kubesat serves."""
        info = lookup_kind(owner.get("apiVersion", ""), owner.get("kind", ""))
        if info is None or not (info.stored or info.custom is not None):  # any version of a custom resource
            return None
        obj = await self.registry.get_or_none(info, dep_ns if info.namespaced else "", owner.get("name", ""))
        return obj is not None and obj["metadata"].get("uid") == owner.get("uid")

    async def _check_owners(self, ref: Ref, obj: dict[str, Any]) -> None:
        owners = obj["metadata"].get("ownerReferences") or []
        states = [await self._owner_exists(ref[1], o) for o in owners]
        if any(s is None or s for s in states):
            missing = {o.get("uid") for o, s in zip(owners, states, strict=True) if s is False}
            if missing:
                await self._remove_owner_refs(ref, missing)
            return
        await self._delete(ref, "Background")

    async def _owner_gone(self, uid: str) -> None:
        for dep in list(self.dependents.get(uid, ())):
            obj = await self.registry.get_or_none(*dep)
            if obj is not None:
                await self._check_owners(dep, obj)

    async def _release_foreground_owners(self, dep_ns: str, dependent: dict[str, Any]) -> None:
        """A dependent went away: an owner waiting on it in foreground deletion may now go too."""
        for o in dependent["metadata"].get("ownerReferences") or []:
            info = lookup_kind(o.get("apiVersion", ""), o.get("kind", ""))
            if info is None or not (info.stored or info.custom is not None) or self.dependents.get(o.get("uid", "")):
                continue
            ns = dep_ns if info.namespaced else ""
            owner = await self.registry.get_or_none(info, ns, o.get("name", ""))
            if owner is None or owner["metadata"].get("uid") != o.get("uid"):
                continue
            if owner["metadata"].get("deletionTimestamp") and \
                    "foregroundDeletion" in (owner["metadata"].get("finalizers") or []):
                await self._drop_finalizer((info, ns, o.get("name", "")), "foregroundDeletion")

    async def _orphan_dependents(self, uid: str) -> None:
        for dep in list(self.dependents.get(uid, ())):
            await self._remove_owner_refs(dep, {uid})

    async def _remove_owner_refs(self, ref: Ref, uids: set[str]) -> None:
        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            refs = [o for o in obj["metadata"].get("ownerReferences") or [] if o.get("uid") not in uids]
            if refs:
                obj["metadata"]["ownerReferences"] = refs
            else:
                obj["metadata"].pop("ownerReferences", None)
            return obj

        try:
            await self.registry.guaranteed_update(ref[0], ref[1], ref[2], mutate)
        except errors.StatusError as e:
            if e.code != 404:
                log.warning("gc: removing owner references from %s/%s: %s", ref[0].plural, ref[2], e.message)

    async def _drop_finalizer(self, ref: Ref, finalizer: str) -> None:
        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            rest = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
            if rest:
                obj["metadata"]["finalizers"] = rest
            else:
                obj["metadata"].pop("finalizers", None)
            return obj

        try:
            await self.registry.guaranteed_update(ref[0], ref[1], ref[2], mutate)
        except errors.StatusError as e:
            if e.code != 404:
                log.warning("gc: removing finalizer %s from %s/%s: %s", finalizer, ref[0].plural, ref[2], e.message)

    async def _delete(self, ref: Ref, propagation: str) -> None:
        try:
            await self.registry.delete(ref[0], ref[1], ref[2], DeleteOptions(propagation=propagation))
        except errors.StatusError as e:
            if e.code != 404:
                log.warning("gc: deleting %s/%s: %s", ref[0].plural, ref[2], e.message)
