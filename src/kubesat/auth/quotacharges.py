"""The ResourceQuota admission's charges in flight: creates charged to their namespace's quotas but not yet
stored, so that the quota controller does not recount under them, and one charge at a time per namespace."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable

_LOCKS = 64  # namespaces share a bounded set of locks


class Charge:
    """One create's charge: `written` once a quota's status carries it; `settle` once the create is over."""

    def __init__(self, on_settle: Callable[[Charge, bool], None]) -> None:
        self.written = False
        self._on_settle: Callable[[Charge, bool], None] | None = on_settle

    def settle(self, stored: bool) -> None:
        """The create stored its object (True) or gave up (False); only the first call counts."""
        if self._on_settle is not None:
            on_settle, self._on_settle = self._on_settle, None
            on_settle(self, stored)


class QuotaCharges:
    """Per namespace: a lock for charging, the creates charged and not yet settled, and a count of charges."""

    def __init__(self) -> None:
        self._locks = [asyncio.Lock() for _ in range(_LOCKS)]
        self._open: dict[str, int] = {}
        self._charges: dict[str, int] = {}
        # Called with a namespace whose charge was written but never stored: its usage wants a recount.
        self.on_abandoned: Callable[[str], None] = lambda _ns: None

    def lock(self, namespace: str) -> asyncio.Lock:
        return self._locks[zlib.crc32(namespace.encode()) % _LOCKS]

    def begin(self, namespace: str) -> Charge:
        """A create is about to be charged."""
        self._open[namespace] = self._open.get(namespace, 0) + 1
        self._charges[namespace] = self._charges.get(namespace, 0) + 1

        def on_settle(charge: Charge, stored: bool) -> None:
            left = self._open[namespace] - 1
            if left:
                self._open[namespace] = left
            else:
                del self._open[namespace]
            if charge.written and not stored:
                self.on_abandoned(namespace)

        return Charge(on_settle)

    def settled(self, namespace: str) -> int | None:
        """None while a charge of the namespace is in flight; else a mark that changes with every new charge."""
        return None if namespace in self._open else self._charges.get(namespace, 0)
