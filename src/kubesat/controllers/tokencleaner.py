"""The tokencleaner controller: bootstrap token Secrets in kube-system are deleted once their `expiration`
has passed (one that does not parse counts as expired), as kube-controller-manager's tokencleaner does
(kubeadm turns it on; so does kubesat).

A Secret not yet expired is looked at again when it expires; the deletion carries the Secret's uid as a
precondition, so a Secret re-created under the same name in the meantime is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from kubesat import errors
from kubesat.auth import bootstrap
from kubesat.controllers.base import cancel, loads, watch_in_background
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.tokencleaner")

SECRETS = builtin_kind("v1", "Secret")
assert SECRETS
# A Secret due further ahead than this is looked at again then (and again, until it is due).
MAX_TIMER = 24 * 3600.0


class TokenCleaner:
    name = "tokencleaner"

    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.clock = clock
        self._prefix = SECRETS.storage_prefix() + bootstrap.NAMESPACE + "/"
        self._task: asyncio.Task[None] | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        rev = await self.resync()
        self._task = watch_in_background(self.registry.store, rev, self._on_event, self.resync, self.name)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._pending):
            await cancel(task)

    async def resync(self) -> int:
        page = await self.registry.list(SECRETS, bootstrap.NAMESPACE)
        for secret in page.items:
            await self.evaluate(secret)
        return int(page.resource_version)

    async def _on_event(self, ev: WatchEvent) -> None:
        if not ev.key.startswith(self._prefix):
            return
        if ev.type != "PUT":
            timer = self._timers.pop(ev.key[len(self._prefix):], None)
            if timer is not None:
                timer.cancel()
            return
        secret = loads(ev.value)
        if secret is not None:
            await self.evaluate(secret)

    async def evaluate(self, secret: dict[str, Any]) -> None:
        """Delete an expired bootstrap token Secret, or look at it again when it expires."""
        if secret.get("type") != bootstrap.SECRET_TYPE:
            return
        meta = secret.get("metadata") or {}
        name = str(meta.get("name", ""))
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        left, expired = bootstrap.expiration(secret, self.clock())
        if expired:
            await self._delete(name, str(meta.get("uid", "")))
        elif left > 0:
            self._timers[name] = asyncio.get_running_loop().call_later(min(left, MAX_TIMER), self._recheck, name)

    def _recheck(self, name: str) -> None:
        self._timers.pop(name, None)
        task = asyncio.create_task(self._recheck_now(name))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _recheck_now(self, name: str) -> None:
        try:
            secret = await self.registry.get_or_none(SECRETS, bootstrap.NAMESPACE, name)
            if secret is not None:
                await self.evaluate(secret)
        except errors.StatusError as e:
            log.warning("%s: %s/%s: %s", self.name, bootstrap.NAMESPACE, name, e.message)

    async def _delete(self, name: str, uid: str) -> None:
        log.info("Deleting expired secret %s/%s", bootstrap.NAMESPACE, name)
        try:
            await self.registry.delete(SECRETS, bootstrap.NAMESPACE, name, DeleteOptions(uid=uid))
        except errors.StatusError as e:
            # Gone already, or a new Secret under that name (the uid precondition failed): nothing to do.
            if e.code not in (404, 409):
                log.warning("%s: deleting %s/%s: %s", self.name, bootstrap.NAMESPACE, name, e.message)
