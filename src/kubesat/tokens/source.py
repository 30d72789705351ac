"""The server's view of its keys: the data dir's key store, reloaded when `kubesat keys rotate` changes it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from kubesat.tokens.keys import KeySet

RELOAD_CHECK_SECONDS = 1.0


class DataDirKeySource:
    """KeySource over the data dir; at most one stat() a second to notice a rotation."""

    def __init__(self, data_dir: Path, extra_key_files: tuple[str, ...] = (), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            from kubesat.tokens.keystore import KeyStore
        except ImportError:  # until the rotating key store lands: the one signing key plus extra files
            KeyStore = _SingleKeyStore  # type: ignore[misc,assignment]  # noqa: N806

        self.store = KeyStore(data_dir)
        self.extra = tuple(extra_key_files)
        self.clock = clock
        self._keys = self.store.load(list(self.extra))
        self._fingerprint = self.store.fingerprint()
        self._checked = clock()

    def keyset(self) -> KeySet:
        now = self.clock()
        if now - self._checked >= RELOAD_CHECK_SECONDS:
            self._checked = now
            fp = self.store.fingerprint()
            if fp != self._fingerprint:
                self._keys = self.store.load(list(self.extra))
                self._fingerprint = fp
        return self._keys

    def record_issued(self, kid: str, exp: int | None, legacy: bool = False) -> None:
        self.store.record_issued(kid, exp, legacy)


class _SingleKeyStore:
    """The data dir's signing key and the extra verification-only key files; no rotation."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "pki" / "sa.key"

    def load(self, extra: list[str]) -> KeySet:
        from kubesat.tokens.keys import SigningKey, load_pem_keys, load_pem_private_key

        extra_keys = []
        for f in extra:
            try:
                data = Path(f).read_bytes()
            except OSError as e:
                raise ValueError(f"service account key file {f}: {e.strerror}") from None
            extra_keys.extend(load_pem_keys(data, f))
        signing = SigningKey(load_pem_private_key(self.path.read_bytes(), str(self.path)))
        return KeySet(signing, extra=extra_keys)

    def fingerprint(self) -> tuple:
        return ()

    def record_issued(self, kid: str, exp: int | None, legacy: bool = False) -> None:
        return None
