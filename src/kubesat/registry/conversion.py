"""Serving one resource from another's storage: a Store that shows the objects under a key prefix in another version.

Kubernetes converts at its storage codec: events.k8s.io/v1 Events are stored as the core/v1 Events they are, and
each version reads and writes them through a conversion. Here a Registry over a ConvertedStore does the same: the
registry, the strategy and the API see the served form; the store below keeps the stored one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kubesat.registry import eventsv1
from kubesat.registry.kinds import ResourceInfo
from kubesat.registry.store import Registry
from kubesat.storage.interface import KeyValue, ListResult, ListSnapshot, Store, WatchEvent

Convert = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Conversion:
    """How a served kind's objects become their stored kind's and back."""

    to_stored: Convert
    from_stored: Convert


# (apiVersion, kind) of a resource with `stored_as` -> its conversion.
CONVERSIONS: dict[tuple[str, str], Conversion] = {
    (eventsv1.API_VERSION, "Event"): Conversion(eventsv1.to_core, eventsv1.from_core),
}


def conversion_for(info: ResourceInfo) -> Conversion:
    """The conversion of a resource served from another's storage; a KeyError names one that has none."""
    if info.custom is not None:
        return _custom_conversion(f"{info.group}/{info.custom.storage_version}", info.api_version)
    conv = CONVERSIONS.get((info.api_version, info.kind))
    if conv is None:
        raise KeyError(f"{info.api_version} {info.kind} has no conversion to {info.stored_as}")
    return conv


def _custom_conversion(stored: str, served: str) -> Conversion:
    """The None strategy of a CRD's versions: only apiVersion changes between the stored and the served form."""

    def to(api_version: str) -> Convert:
        def convert(obj: dict[str, Any]) -> dict[str, Any]:
            obj["apiVersion"] = api_version
            return obj

        return convert

    return Conversion(to(stored), to(served))


def _recode(fn: Convert, value: bytes) -> bytes:
    return orjson.dumps(fn(orjson.loads(value)))


class _ConvertedSnapshot:
    def __init__(self, inner: ListSnapshot, out: Callable[[KeyValue], KeyValue]) -> None:
        self._inner = inner
        self._out = out
        self.revision = inner.revision

    async def read(self, start_after: str, limit: int) -> ListResult:
        res = await self._inner.read(start_after, limit)
        return ListResult([self._out(kv) for kv in res.items], res.revision, res.more)

    def close(self) -> None:
        self._inner.close()


class ConvertedStore:
    """The store as the served version sees it: values under `prefix` converted on every read and write, the rest
    (namespaces the registry checks, say) as they are. Closing it leaves the underlying store open."""

    def __init__(self, inner: Callable[[], Store], prefix: str, conversion: Conversion) -> None:
        self._inner = inner  # read at each call: the server opens its store after wiring the handlers
        self._prefix = prefix
        self._conv = conversion

    def _mine(self, key: str) -> bool:
        return key.startswith(self._prefix)

    def _in(self, key: str, value: bytes) -> bytes:
        return _recode(self._conv.to_stored, value) if self._mine(key) else value

    def _out_value(self, key: str, value: bytes | None) -> bytes | None:
        if value is None or not self._mine(key):
            return value
        return _recode(self._conv.from_stored, value)

    def _out(self, kv: KeyValue) -> KeyValue:
        if not self._mine(kv.key):
            return kv
        return KeyValue(kv.key, _recode(self._conv.from_stored, kv.value), kv.mod_revision, kv.create_revision)

    async def get(self, key: str) -> KeyValue | None:
        kv = await self._inner().get(key)
        return None if kv is None else self._out(kv)

    async def list(self, prefix: str, *, start_after: str = "", limit: int = 0) -> ListResult:
        res = await self._inner().list(prefix, start_after=start_after, limit=limit)
        return ListResult([self._out(kv) for kv in res.items], res.revision, res.more)

    async def count(self, prefix: str) -> int:
        return await self._inner().count(prefix)

    def snapshot(self, prefix: str) -> ListSnapshot:
        return _ConvertedSnapshot(self._inner().snapshot(prefix), self._out)

    async def create(self, key: str, value: bytes) -> int:
        return await self._inner().create(key, self._in(key, value))

    async def update(self, key: str, value: bytes, expected_mod_revision: int) -> int:
        return await self._inner().update(key, self._in(key, value), expected_mod_revision)

    async def delete(self, key: str, expected_mod_revision: int = 0) -> tuple[bytes, int]:
        value, rev = await self._inner().delete(key, expected_mod_revision)
        return self._out_value(key, value) or value, rev

    async def revision(self) -> int:
        return await self._inner().revision()

    def oldest_revision(self) -> int:
        return self._inner().oldest_revision()

    async def watch(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        events = self._inner().watch(prefix, after_revision)
        try:
            async for ev in events:
                yield WatchEvent(ev.type, ev.key, self._out_value(ev.key, ev.value),
                                 self._out_value(ev.key, ev.prev_value), ev.revision, ev.created)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        """The underlying store belongs to the server, which closes it."""


def served_registry(base: Registry, info: ResourceInfo) -> Registry:
    """A Registry for `info`, a resource stored as another: its objects in their own form, over the same keys,
    with the base registry's clock and write and delete hooks."""
    store = ConvertedStore(lambda: base.store, info.storage_prefix(), conversion_for(info))
    view = Registry(store, clock=lambda: base.clock())
    view.on_write = base.on_write
    view.on_delete = base.on_delete
    return view
