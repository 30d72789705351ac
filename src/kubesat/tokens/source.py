"""The server's view of its keys: the data dir's key store, reloaded when `kubesat keys rotate` changes it."""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Callable

from kubesat.tokens.keyring import KeyRing
from kubesat.tokens.keys import KeyRetired, KeySet

RELOAD_CHECK_SECONDS = 1.0


class DataDirKeySource:
    """KeySource over the data dir; at most one stat() a second to notice a rotation."""

    def __init__(self, data_dir: Path, extra_key_files: tuple[str, ...] = (), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = KeyRing(data_dir)
        self.extra = tuple(extra_key_files)
        self.clock = clock
        self._keys = self.store.load(list(self.extra))
        self._fingerprint = self.store.fingerprint()
        self._checked = clock()

    def keyset(self) -> KeySet:
        now = self.clock()
        if now - self._checked >= RELOAD_CHECK_SECONDS:
            self._checked = now
            if self.store.fingerprint() != self._fingerprint:
                self.reload()
        return self._keys

    def reload(self) -> None:
        """Read the keys now (the fingerprint first, so a write racing the read is seen next time)."""
        self._fingerprint = self.store.fingerprint()
        self._keys = self.store.load(list(self.extra))

    def record_issued(self, kid: str, exp: int | None, legacy: bool = False) -> None:
        try:
            self.store.record_issued(kid, exp, legacy)
        except KeyRetired:
            self.reload()  # the caller signs again, with the key that replaced this one
            raise
