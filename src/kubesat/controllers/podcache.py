"""A watch-fed copy of every pod by namespace, and the creations and deletions a controller still waits to see
come back through the watch (client-go's informer cache and the controllers' expectations)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from kubesat.controllers.base import Key
from kubesat.controllers.workload import d

# Kubernetes' ExpectationsTimeout is 5 minutes; a watch event kubesat misses is rarer than that allows for.
EXPECTATIONS_TIMEOUT = 60.0


class PodCache:
    """Pods by namespace and name, as the watch last showed them; reading it costs no decoding."""

    def __init__(self) -> None:
        self.by_ns: dict[str, dict[str, dict[str, Any]]] = {}

    def fill(self, pods: Iterable[dict[str, Any]]) -> None:
        self.by_ns.clear()
        for pod in pods:
            self.put(pod)

    def put(self, pod: dict[str, Any]) -> None:
        meta = d(pod.get("metadata"))
        self.by_ns.setdefault(str(meta.get("namespace", "")), {})[str(meta.get("name", ""))] = pod

    def remove(self, ns: str, name: str) -> None:
        pods = self.by_ns.get(ns)
        if pods is not None:
            pods.pop(name, None)
            if not pods:
                del self.by_ns[ns]

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.by_ns.get(ns, {}).get(name)

    def pods(self, ns: str) -> list[dict[str, Any]]:
        return list(self.by_ns.get(ns, {}).values())


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
