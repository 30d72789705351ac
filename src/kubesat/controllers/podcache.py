"""A watch-fed copy of every pod by namespace, and the creations and deletions a controller still waits to see
come back through the watch (client-go's informer cache and the controllers' expectations)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from kubesat import errors
from kubesat.controllers.base import Key
from kubesat.controllers.events import EventRecorder
from kubesat.controllers.workload import controller_ref, d
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry

_PODS = builtin_kind("v1", "Pod")

# Kubernetes' ExpectationsTimeout is 5 minutes; a watch event kubesat misses is rarer than that allows for.
EXPECTATIONS_TIMEOUT = 60.0


class PodCache:
    """Pods by namespace and name, as the watch last showed them; reading it costs no decoding. Also indexed by
    controller (namespace, uid), with the orphans apart, so an owner reads only the pods it may claim."""

    def __init__(self) -> None:
        self.by_ns: dict[str, dict[str, dict[str, Any]]] = {}
        self._by_owner: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}  # (ns, controller uid) -> name -> pod
        # Where each pod was indexed: a controller may change the cached dict in place (adopting it).
        self._owner_of: dict[tuple[str, str], str] = {}

    def fill(self, pods: Iterable[dict[str, Any]]) -> None:
        self.by_ns.clear()
        self._by_owner.clear()
        self._owner_of.clear()
        for pod in pods:
            self.put(pod)

    def put(self, pod: dict[str, Any]) -> None:
        meta = d(pod.get("metadata"))
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        self._unindex(ns, name)
        self.by_ns.setdefault(ns, {})[name] = pod
        uid = self._owner_of[(ns, name)] = _controller_uid(pod)
        self._by_owner.setdefault((ns, uid), {})[name] = pod

    def remove(self, ns: str, name: str) -> None:
        self._unindex(ns, name)
        pods = self.by_ns.get(ns)
        if pods is not None:
            pods.pop(name, None)
            if not pods:
                del self.by_ns[ns]

    def _unindex(self, ns: str, name: str) -> None:
        uid = self._owner_of.pop((ns, name), None)
        if uid is None:
            return
        key = (ns, uid)
        owned = self._by_owner.get(key)
        if owned is not None:
            owned.pop(name, None)
            if not owned:
                del self._by_owner[key]

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.by_ns.get(ns, {}).get(name)

    def pods(self, ns: str) -> list[dict[str, Any]]:
        return list(self.by_ns.get(ns, {}).values())

    def candidates(self, ns: str, uid: str) -> list[dict[str, Any]]:
        """The pods an owner with this uid may claim: those it controls and the namespace's orphans (a pod
        another owner controls is never claimed)."""
        out = list(self._by_owner.get((ns, uid), {}).values())
        if uid:
            out.extend(self._by_owner.get((ns, ""), {}).values())
        return out


def _controller_uid(pod: dict[str, Any]) -> str:
    """The uid of the pod's controller, "" for an orphan."""
    ref = controller_ref(pod)
    return str(ref.get("uid") or "") if ref is not None else ""


class Expectations:
    """Per owner, the pods it created or deleted that the cache does not show yet: until they show (or the
    timeout passes) the owner must not count its pods again, or it would make or remove the same pods twice."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self.clock = clock
        self.timeout = timeout
        self._adds: dict[tuple[str, str], Key] = {}  # pod (namespace, name) -> owner
        self._deletes: dict[tuple[str, str], Key] = {}
        self._pending: dict[Key, int] = {}
        self._since: dict[Key, float] = {}

    def expect_create(self, owner: Key, ns: str, name: str) -> None:
        self._expect(self._adds, owner, (ns, name))

    def expect_delete(self, owner: Key, ns: str, name: str) -> None:
        self._expect(self._deletes, owner, (ns, name))

    def _expect(self, table: dict[tuple[str, str], Key], owner: Key, pod: tuple[str, str]) -> None:
        if pod in table:
            return
        table[pod] = owner
        self._pending[owner] = self._pending.get(owner, 0) + 1
        self._since.setdefault(owner, self.clock())

    def observe(self, pod: dict[str, Any] | None, ns: str, name: str) -> None:
        """A watch event: `pod` as it is now (None once deleted)."""
        key = (ns, name)
        if pod is not None and key in self._adds:
            self._settle(self._adds.pop(key))
        gone = pod is None or bool(d(pod.get("metadata")).get("deletionTimestamp"))
        if gone and key in self._deletes:
            self._settle(self._deletes.pop(key))

    def _settle(self, owner: Key) -> None:
        left = self._pending.get(owner, 0) - 1
        if left > 0:
            self._pending[owner] = left
        else:
            self._pending.pop(owner, None)
            self._since.pop(owner, None)

    def satisfied(self, owner: Key) -> bool:
        if owner not in self._pending:
            return True
        return self.clock() - self._since.get(owner, 0.0) > self.timeout

    def forget(self, owner: Key) -> None:
        """The owner is gone or its wait timed out: drop what it waited for."""
        for table in (self._adds, self._deletes):
            for pod in [p for p, o in table.items() if o == owner]:
                del table[pod]
        self._pending.pop(owner, None)
        self._since.pop(owner, None)


async def delete_owned_pod(registry: Registry, pods: PodCache, expectations: Expectations, events: EventRecorder,
                           key: Key, ref: dict[str, Any], pod: dict[str, Any]) -> None:
    """Delete one of the pods the owner at `key` controls (precondition: its uid), expect its deletion back
    through the watch, and record SuccessfulDelete, or FailedDelete when the API refused it."""
    meta = pod["metadata"]
    try:
        await registry.delete(_PODS, meta.get("namespace", ""), meta["name"], DeleteOptions(uid=meta.get("uid", "")))
    except errors.StatusError as e:
        if e.code != 404:
            await events.event(ref, "Warning", "FailedDelete", f"Error deleting: {e.message}")
        return
    cached = pods.get(key[0], meta["name"])
    if cached is not None and not d(cached.get("metadata")).get("deletionTimestamp"):
        expectations.expect_delete(key, key[0], meta["name"])
    await events.event(ref, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")
