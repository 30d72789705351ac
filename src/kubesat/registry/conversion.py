"""Serving one resource from another's storage: a Store that shows the objects under a key prefix in another version.

Kubernetes converts at its storage codec: events.k8s.io/v1 Events are stored as the core/v1 Events they are, and
each version reads and writes them through a conversion. Here a Registry over a ConvertedStore does the same: the
registry, the strategy and the API see the served form; the store below keeps the stored one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

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
    def __init__(self, inner: ListSnapshot, out: Callable[[list[KeyValue]], Awaitable[list[KeyValue]]]) -> None:
        self._inner = inner
        self._out = out
        self.revision = inner.revision

    async def read(self, start_after: str, limit: int) -> ListResult:
        res = await self._inner.read(start_after, limit)
        return ListResult(await self._out(res.items), res.revision, res.more)

    def close(self) -> None:
        self._inner.close()


class ConvertedStore:
    """The store as the served version sees it: values under `prefix` converted on every read and write, the rest
    (namespaces the registry checks, say) as they are. Closing it leaves the underlying store open.

    Subclasses convert otherwise (a CRD's conversion webhook) by overriding `_to_stored` and `_from_stored`."""

    def __init__(self, inner: Callable[[], Store], prefix: str, conversion: Conversion) -> None:
        self._inner = inner  # read at each call: the server opens its store after wiring the handlers
        self._prefix = prefix
        self._conv = conversion

    def _mine(self, key: str) -> bool:
        return key.startswith(self._prefix)

    async def _to_stored(self, value: bytes) -> bytes:
        return _recode(self._conv.to_stored, value)

    async def _from_stored(self, values: list[bytes]) -> list[bytes]:
        """Stored values in the served form (a list's page at once)."""
        return [_recode(self._conv.from_stored, v) for v in values]

    async def _in(self, key: str, value: bytes) -> bytes:
        return await self._to_stored(value) if self._mine(key) else value

    async def _out_value(self, key: str, value: bytes | None) -> bytes | None:
        if value is None or not self._mine(key):
            return value
        return (await self._from_stored([value]))[0]

    async def _out(self, kvs: list[KeyValue]) -> list[KeyValue]:
        mine = [kv for kv in kvs if self._mine(kv.key)]
        if not mine:
            return kvs
        converted = iter(await self._from_stored([kv.value for kv in mine]))
        return [KeyValue(kv.key, next(converted), kv.mod_revision, kv.create_revision) if self._mine(kv.key) else kv
                for kv in kvs]

    async def get(self, key: str) -> KeyValue | None:
        kv = await self._inner().get(key)
        return None if kv is None else (await self._out([kv]))[0]

    async def list(self, prefix: str, *, start_after: str = "", limit: int = 0) -> ListResult:
        res = await self._inner().list(prefix, start_after=start_after, limit=limit)
        return ListResult(await self._out(res.items), res.revision, res.more)

    async def count(self, prefix: str) -> int:
        return await self._inner().count(prefix)

    def snapshot(self, prefix: str) -> ListSnapshot:
        return _ConvertedSnapshot(self._inner().snapshot(prefix), self._out)

    async def create(self, key: str, value: bytes) -> int:
        return await self._inner().create(key, await self._in(key, value))

    async def update(self, key: str, value: bytes, expected_mod_revision: int) -> int:
        return await self._inner().update(key, await self._in(key, value), expected_mod_revision)

    async def delete(self, key: str, expected_mod_revision: int = 0) -> tuple[bytes, int]:
        value, rev = await self._inner().delete(key, expected_mod_revision)
        return await self._out_value(key, value) or value, rev

    async def revision(self) -> int:
        return await self._inner().revision()

    def oldest_revision(self) -> int:
        return self._inner().oldest_revision()

    async def watch(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        events = self._inner().watch(prefix, after_revision)
        try:
            async for ev in events:
                yield WatchEvent(ev.type, ev.key, await self._out_value(ev.key, ev.value),
                                 await self._out_value(ev.key, ev.prev_value), ev.revision, ev.created)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        """The underlying store belongs to the server, which closes it."""


class CustomConverter(Protocol):
    """How a CRD's conversion webhook is called (auth/conversionwebhook.py, given by the composition root)."""

    async def convert(self, conversion: dict[str, Any], objects: list[dict[str, Any]],
                      desired: str) -> list[dict[str, Any]]:
        """`objects` in apiVersion `desired` as the webhook of `conversion` (a CRD's spec.conversion) makes them;
        a StatusError when it cannot."""
        ...


class WebhookConvertedStore(ConvertedStore):
    """A custom resource version served from another through its CRD's conversion webhook (one call per write,
    one per page of a list, none for objects already in the version wanted)."""

    def __init__(self, inner: Callable[[], Store], prefix: str, stored: str, served: str,
                 conversion: dict[str, Any], convert: CustomConverter) -> None:
        super().__init__(inner, prefix, _custom_conversion(stored, served))
        self._stored, self._served = stored, served
        self._spec = conversion
        self._convert = convert

    async def _to_stored(self, value: bytes) -> bytes:
        return orjson.dumps((await self._convert.convert(self._spec, [orjson.loads(value)], self._stored))[0])

    async def _from_stored(self, values: list[bytes]) -> list[bytes]:
        objs = [orjson.loads(v) for v in values]
        return [orjson.dumps(o) for o in await self._convert.convert(self._spec, objs, self._served)]


def served_registry(base: Registry, info: ResourceInfo, webhook: CustomConverter | None = None) -> Registry:
    """A Registry for `info`, a resource stored as another: its objects in their own form, over the same keys,
    with the base registry's clock and write and delete hooks. `webhook`: how a CRD's conversion webhook is
    called (a CRD whose strategy is Webhook converts through it when given)."""
    store: ConvertedStore
    custom = info.custom
    if custom is not None and webhook is not None and custom.conversion.get("strategy") == "Webhook":
        store = WebhookConvertedStore(lambda: base.store, info.storage_prefix(),
                                      f"{info.group}/{custom.storage_version}", info.api_version,
                                      custom.conversion, webhook)
    else:
        store = ConvertedStore(lambda: base.store, info.storage_prefix(), conversion_for(info))
    view = Registry(store, clock=lambda: base.clock())
    view.on_write = base.on_write
    view.on_delete = base.on_delete
    return view
