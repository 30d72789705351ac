"""An in-memory Store (no durability) for unit tests of the layers above storage.

Same semantics as SqliteStore: revisions start at 1, every write bumps the revision, at most
`history` events are kept for watch() replay, and slow watchers get WatchOverflow.
"""

from __future__ import annotations

import builtins
import bisect
from collections import deque

from kubesat.storage.interface import (
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    RevisionConflict,
    WatchEvent,
)
from kubesat.storage.sqlite import (
    DEFAULT_HISTORY,
    DEFAULT_WATCH_QUEUE,
    StoreClosed,
    WatchHub,
    check_key,
    check_prefix,
    check_revision,
    check_value,
    _check_text,
    prefix_end,
)
from kubesat.storage.snapshot import SnapshotHub

__all__ = ["MemoryStore"]


class MemoryStore(WatchHub, SnapshotHub):
    def __init__(self, *, history: int = DEFAULT_HISTORY, watch_queue_size: int = DEFAULT_WATCH_QUEUE) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be a positive int, got {history!r}")
        self._history_size = history
        self._closed = False
        self._init_hub(watch_queue_size)
        self._init_snapshots()
        self._rev = 1
        self._compacted = 1
        self._kv: dict[str, KeyValue] = {}
        self._keys: list[str] = []  # sorted
        self._events: deque[WatchEvent] = deque()

    @classmethod
    def open(cls, *, history: int = DEFAULT_HISTORY,
             watch_queue_size: int = DEFAULT_WATCH_QUEUE) -> MemoryStore:
        return cls(history=history, watch_queue_size=watch_queue_size)

    def _live(self) -> None:
        if self._closed:
            raise StoreClosed()

    def _commit(self, ev: WatchEvent) -> None:
        self._rev = ev.revision
        self._events.append(ev)
        while len(self._events) > self._history_size:
            self._compacted = self._events.popleft().revision
        self._notify(ev)

    def _bounds(self, prefix: str) -> tuple[int, int]:
        lo = bisect.bisect_left(self._keys, prefix)
        end = prefix_end(prefix)
        hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end)
        return lo, hi

    async def get(self, key: str) -> KeyValue | None:
        key = check_key(key)
        self._live()
        return self._kv.get(key)

    async def list(self, prefix: str, *, start_after: str = "", limit: int = 0) -> ListResult:
        prefix = check_prefix(prefix)
        start_after = _check_text("start_after", start_after, allow_empty=True)
        limit = check_revision("limit", limit)
        self._live()
        lo, hi = self._bounds(prefix)
        if start_after:
            lo = max(lo, bisect.bisect_right(self._keys, start_after))
        keys = self._keys[lo:hi]
        more = bool(limit) and len(keys) > limit
        if more:
            keys = keys[:limit]
        return ListResult([self._kv[k] for k in keys], self._rev, more)

    async def count(self, prefix: str) -> int:
        prefix = check_prefix(prefix)
        self._live()
        lo, hi = self._bounds(prefix)
        return max(0, hi - lo)

    async def create(self, key: str, value: bytes) -> int:
        key = check_key(key)
        value = check_value(key, value)
        self._live()
        if key in self._kv:
            raise KeyExists(key, f"{key}: already exists")
        if self._snapshots:
            self._before_write(key, None)
        rev = self._rev + 1
        self._kv[key] = KeyValue(key, value, rev, rev)
        bisect.insort(self._keys, key)
        self._commit(WatchEvent("PUT", key, value, None, rev, True))
        return rev

    async def update(self, key: str, value: bytes, expected_mod_revision: int) -> int:
        key = check_key(key)
        value = check_value(key, value)
        expected = check_revision("expected_mod_revision", expected_mod_revision)
        self._live()
        old = self._kv.get(key)
        if old is None:
            raise KeyNotFound(key, f"{key}: not found")
        if expected and old.mod_revision != expected:
            raise RevisionConflict(key, old.mod_revision)
        if self._snapshots:
            self._before_write(key, old)
        rev = self._rev + 1
        self._kv[key] = KeyValue(key, value, rev, old.create_revision)
        self._commit(WatchEvent("PUT", key, value, old.value, rev, False))
        return rev

    async def delete(self, key: str, expected_mod_revision: int = 0) -> tuple[bytes, int]:
        key = check_key(key)
        expected = check_revision("expected_mod_revision", expected_mod_revision)
        self._live()
        old = self._kv.get(key)
        if old is None:
            raise KeyNotFound(key, f"{key}: not found")
        if expected and old.mod_revision != expected:
            raise RevisionConflict(key, old.mod_revision)
        if self._snapshots:
            self._before_write(key, old)
        rev = self._rev + 1
        del self._kv[key]
        del self._keys[bisect.bisect_left(self._keys, key)]
        self._commit(WatchEvent("DELETE", key, None, old.value, rev, False))
        return old.value, rev

    async def revision(self) -> int:
        self._live()
        return self._rev

    def _history(self, prefix: str, after: int, upto: int) -> builtins.list[WatchEvent]:  # `list` alone is the method
        if not self._events:
            return []
        first = self._events[0].revision  # events are contiguous revisions
        start = max(0, after + 1 - first)
        stop = max(0, upto + 1 - first)
        out = []
        for i in range(start, min(stop, len(self._events))):
            ev = self._events[i]
            if ev.key.startswith(prefix):
                out.append(ev)
        return out

    async def close(self) -> None:
        self._closed = True
        self._close_watchers()
