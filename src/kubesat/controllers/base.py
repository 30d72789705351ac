"""What every in-process controller shares: a watch over the whole store that survives its own errors, and a
keyed work queue that syncs each key once however often it is added."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from collections.abc import Awaitable, Callable

import orjson

from kubesat.registry.kinds import RESOURCES, ResourceInfo, custom_resource_of_key
from kubesat.registry.store import Registry
from kubesat.storage.interface import Compacted, Store, WatchEvent

log = logging.getLogger("kubesat.controllers")

Key = tuple[str, str]  # (namespace, name)

# The longest a paced work queue holds a key back after its last sync (seconds).
MAX_PACE_WAIT = 0.1

_PREFIXES: list[tuple[str, ResourceInfo]] = sorted(
    ((r.storage_prefix(), r) for r in RESOURCES if r.stored), key=lambda p: -len(p[0])
)


def resource_of_key(key: str) -> ResourceInfo | None:
    for prefix, info in _PREFIXES:
        if key.startswith(prefix):
            return info
    return custom_resource_of_key(key)


def split_key(info: ResourceInfo, key: str) -> tuple[str, str]:
    """(namespace, name) of a storage key."""
    rest = key[len(info.storage_prefix()):]
    if info.namespaced:
        ns, _, name = rest.partition("/")
        return ns, name
    return "", rest


def loads(value: bytes | None) -> dict[str, Any] | None:
    return None if value is None else orjson.loads(value)


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Stop a controller's background task (if any) and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def watch_in_background(store: Store, start_revision: int, on_event: Callable[[WatchEvent], Awaitable[None]],
                        resync: Callable[[], Awaitable[int]], name: str) -> asyncio.Task[None]:
    """The usual controller loop (run_watch) as a task."""
    return asyncio.create_task(run_watch(store, start_revision, on_event, resync, name))


async def run_watch(
    store: Store,
    start_revision: int,
    on_event: Callable[[WatchEvent], Awaitable[None]],
    resync: Callable[[], Awaitable[int]],
    name: str,
) -> None:
    """Feed every change after `start_revision` to `on_event`; on lost history, `resync` and go on."""
    rev = start_revision
    while True:
        try:
            async for ev in store.watch("/registry/", rev):
                rev = ev.revision
                try:
                    await on_event(ev)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - one bad object must not stop the controller
                    log.exception("%s: error handling %s", name, ev.key)
            return
        except Compacted:
            log.warning("%s: watch history lost; resyncing", name)
            rev = await resync()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("%s: watch failed; retrying", name)
            await asyncio.sleep(0.5)
            rev = await resync()


class WorkQueue:
    """Keys to sync, each at most once in the queue; a key added while it is being synced is synced again after.

    With `pace` > 0 a key synced again right after a sync waits `pace` times as long as that sync took: an owner
    of a thousand pods is re-added by nearly every pod event, and syncing it back to back would leave the API
    server little of the process; waiting lets the events between two syncs fold into one."""

    def __init__(self, sync: Callable[[Key], Awaitable[None]], name: str, *, pace: float = 0.0) -> None:
        self.sync = sync
        self.name = name
        self.pace = pace
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._deferred: set[Key] = set()
        self._not_before: dict[Key, float] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        self._deferred.clear()
        await cancel(self._worker)

    def add(self, key: Key) -> None:
        if key in self._queued or key in self._deferred:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._deferred.discard(key)
            self.add(key)

        handle = loop.call_later(max(delay, 0.0), fire)
        self._timers.add(handle)

    def pending(self) -> int:
        return len(self._queued | self._deferred)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            started = time.monotonic()
            wait = self._not_before.pop(key, started) - started
            if wait > 0:  # paced: the adds until then fold into this one
                self._deferred.add(key)
                self.add_after(key, wait)
                continue
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad object must not stop the controller; retry it later
                log.exception("%s: error syncing %s/%s", self.name, key[0], key[1])
                self.add_after(key, 1.0)
            if self.pace > 0:
                self._note_pace(key, started)

    def _note_pace(self, key: Key, started: float) -> None:
        # Capped: a sync that waited on many writes (making a burst of pods) says little about the next one.
        done = time.monotonic()
        if len(self._not_before) > 1000:
            self._not_before = {k: t for k, t in self._not_before.items() if t > done}
        self._not_before[key] = done + min((done - started) * self.pace, MAX_PACE_WAIT)


class QueuedController:
    """A controller fed by the store's watch whose work goes through a keyed queue: subclasses say what a
    resync marks (`_resync`, returning the revision to watch from), which events mark what (`_on_event`,
    calling `queue.add`) and how one key is synced (`_sync_key`)."""

    name = "controller"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.queue = WorkQueue(self._sync_key, self.name)
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rev = await self._resync()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self._resync, self.name)
        self.queue.start()

    async def stop(self) -> None:
        await cancel(self._watch)
        await self.queue.stop()

    async def _resync(self) -> int:
        raise NotImplementedError

    async def _on_event(self, ev: WatchEvent) -> None:
        raise NotImplementedError

    async def _sync_key(self, key: Key) -> None:
        raise NotImplementedError
