"""Reads of a key range as it was at one revision, in chunks, while writes go on (etcd's range at a revision).

A snapshot remembers the store revision it was opened at. Every write under its prefix after that
records, on the key's first change, the key's value before the change (or that it did not exist); a
chunk is read from the current state and overlaid with those pre-images, so it shows exactly the
state at the snapshot's revision. A snapshot holds no connection and no lock: a reader that stalls
costs nothing until writes land in its range, and then only their pre-images (raw stored bytes, at
most one per key). Both backends share this code, so MemoryStore tests cover SqliteStore's reads too.
"""

from __future__ import annotations

import bisect
import weakref

from kubesat.storage.interface import KeyValue, ListResult

__all__ = ["Snapshot", "SnapshotHub"]


class Snapshot:
    """The keys under `prefix` at `revision`; close() it (or use a `with` block) to stop its recording."""

    __slots__ = ("prefix", "revision", "_store", "_open", "_before", "_keys", "__weakref__")

    def __init__(self, store: SnapshotHub, prefix: str, revision: int) -> None:
        self.prefix = prefix
        self.revision = revision
        self._store = store
        self._open = True
        self._before: dict[str, KeyValue | None] = {}  # key -> its state at `revision` (None: absent)
        self._keys: list[str] = []  # the keys of `_before`, sorted

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._open = False
        self._store._snapshots.discard(self)
        self._before.clear()
        self._keys.clear()

    def _record(self, key: str, old: KeyValue | None) -> None:
        if key not in self._before:
            self._before[key] = old
            bisect.insort(self._keys, key)

    async def read(self, start_after: str, limit: int) -> ListResult:
        """Up to `limit` (> 0) keys after `start_after`, as they were at `revision`, in key order.

        `more` says whether keys may follow the last one returned; an empty chunk means the end.
        """
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        if not self._open:
            raise ValueError("read of a closed snapshot")
        after = start_after
        while True:
            now = await self._store.list(self.prefix, start_after=after, limit=limit)
            # The window of keys this read covers: (after, last row], or to the prefix's end.
            upto = now.items[-1].key if now.more else None
            merged = self._overlay(now.items, after, upto)
            if len(merged) > limit:
                return ListResult(merged[:limit], self.revision, True)
            if merged or not now.more:
                return ListResult(merged, self.revision, now.more)
            after = upto or after  # every key of the window was created later: read on

    def _overlay(self, rows: list[KeyValue], after: str, upto: str | None) -> list[KeyValue]:
        lo = bisect.bisect_right(self._keys, after)
        hi = len(self._keys) if upto is None else bisect.bisect_right(self._keys, upto)
        if lo == hi:
            return rows  # nothing in this window changed since `revision`
        out = {kv.key: kv for kv in rows}
        for key in self._keys[lo:hi]:
            old = self._before[key]
            if old is None:
                out.pop(key, None)
            else:
                out[key] = old
        return [out[k] for k in sorted(out)]


class SnapshotHub:
    """Mixin of a backend: opens snapshots and feeds them the pre-image of every write."""

    _rev: int
    _snapshots: weakref.WeakSet[Snapshot]

    def _init_snapshots(self) -> None:
        # Weak: a snapshot its reader dropped without close() (a stream that never started) stops recording.
        self._snapshots = weakref.WeakSet()

    async def list(self, prefix: str, *, start_after: str = "", limit: int = 0) -> ListResult:
        raise NotImplementedError  # the backend's read of the current state

    def snapshot(self, prefix: str) -> Snapshot:
        """A snapshot of the keys under `prefix` at the current revision."""
        snap = Snapshot(self, prefix, self._rev)
        self._snapshots.add(snap)
        return snap

    def _before_write(self, key: str, old: KeyValue | None) -> None:
        """Called by a write before it changes `key` (whose state is `old`; None: it does not exist)."""
        for snap in self._snapshots:
            if key.startswith(snap.prefix):
                snap._record(key, old)
