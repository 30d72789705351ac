"""What every in-process controller shares: a watch over the whole store that survives its own errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from collections.abc import Awaitable, Callable

import orjson

from kubesat.registry.kinds import RESOURCES, ResourceInfo
from kubesat.storage.interface import Compacted, Store, WatchEvent

log = logging.getLogger("kubesat.controllers")

_PREFIXES: list[tuple[str, ResourceInfo]] = sorted(
    ((r.storage_prefix(), r) for r in RESOURCES if r.stored), key=lambda p: -len(p[0])
)


def resource_of_key(key: str) -> ResourceInfo | None:
    for prefix, info in _PREFIXES:
        if key.startswith(prefix):
            return info
    return None


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
