"""The SQLite store's files are private (0600) like the keys, also when an older version left them 0644."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from collections.abc import Iterator

import pytest

from kubesat.storage.sqlite import SqliteStore


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the umask under which SQLite alone makes 0644 files
    yield
    os.umask(old)


def modes(path: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir() if p.name.startswith(path.name)}


def test_a_new_store_and_its_wal_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "kubesat.db"
    store = SqliteStore.open(path)
    try:
        asyncio.run(store.create("/k", b"v"))
        found = modes(path)
        assert {"kubesat.db", "kubesat.db-wal"} <= set(found)
        assert set(found.values()) == {0o600}, found
    finally:
        store.close_sync()


def test_an_older_0644_store_is_tightened_on_open(tmp_path: Path) -> None:
    path = tmp_path / "kubesat.db"
    store = SqliteStore.open(path)
    asyncio.run(store.create("/k", b"v"))
    store.close_sync()
    os.chmod(path, 0o644)
    wal = tmp_path / "kubesat.db-wal"
    wal.touch()
    os.chmod(wal, 0o644)  # an empty WAL, as a killed older server can leave it
    store = SqliteStore.open(path)
    try:
        assert set(modes(path).values()) == {0o600}, modes(path)
        got = asyncio.run(store.get("/k"))
        assert got is not None and got.value == b"v"
    finally:
        store.close_sync()
