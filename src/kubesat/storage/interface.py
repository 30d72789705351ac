"""The store interface: etcd v3's model (one revision counter, compare-and-swap, watch by revision).

Values are opaque bytes (the registry stores JSON). Every successful write bumps the single
store-wide revision; that revision is the object's `metadata.resourceVersion`. A backend must
make every acknowledged write durable before returning (it survives `kill -9` of the server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from collections.abc import AsyncIterator


class StorageError(Exception):
    """Base of the store's errors; each names the key it concerns."""

    def __init__(self, key: str, message: str = "") -> None:
        super().__init__(message or key)
        self.key = key


class KeyExists(StorageError):
    """create() of a key that already exists."""


class KeyNotFound(StorageError):
    """update()/delete() of a key that does not exist."""


class RevisionConflict(StorageError):
    """update()/delete() whose expected mod revision is not the key's current one."""

    def __init__(self, key: str, current: int) -> None:
        super().__init__(key, f"{key}: revision conflict (current {current})")
        self.current = current


class Compacted(StorageError):
    """watch() or a paged list asked for a revision older than the store still has history for."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__("", f"revision {requested} compacted (oldest available {oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    revision: int  # the store revision the list was read at
    more: bool  # True when `limit` cut the list short


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # "PUT" (create or update) or "DELETE"
    key: str
    value: bytes | None  # new value (None for DELETE)
    prev_value: bytes | None  # value before the change (None for a create)
    revision: int  # the revision of this change
    created: bool = False  # PUT that created the key


class ListSnapshot(Protocol):
    """The keys under a prefix as they were at one revision, read in chunks (storage/snapshot.py)."""

    revision: int

    async def read(self, start_after: str, limit: int) -> ListResult: ...

    def close(self) -> None: ...


class Store(Protocol):
    async def get(self, key: str) -> KeyValue | None: ...

    async def list(self, prefix: str, *, start_after: str = "", limit: int = 0) -> ListResult: ...

    async def count(self, prefix: str) -> int: ...

    def snapshot(self, prefix: str) -> ListSnapshot:
        """The keys under `prefix` at the current revision, to read in chunks while writes go on."""
        ...

    async def create(self, key: str, value: bytes) -> int:
        """Store a new key; returns the new revision. Raises KeyExists."""
        ...

    async def update(self, key: str, value: bytes, expected_mod_revision: int) -> int:
        """Replace a key's value if its mod revision is `expected_mod_revision` (0: any).

        Returns the new revision. Raises KeyNotFound or RevisionConflict.
        """
        ...

    async def delete(self, key: str, expected_mod_revision: int = 0) -> tuple[bytes, int]:
        """Remove a key; returns (its last value, the new revision). Raises KeyNotFound or RevisionConflict."""
        ...

    async def revision(self) -> int: ...

    def oldest_revision(self) -> int:
        """The oldest revision watch() can still start after."""
        ...

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        """Every change under `prefix` with revision > after_revision, then live changes, in order.

        Raises Compacted (on first iteration) if history after `after_revision` is gone.
        """
        ...

    async def close(self) -> None: ...
