"""Snapshots: chunked reads of a key range at one revision while writes go on (SqliteStore and MemoryStore)."""

from __future__ import annotations

import asyncio
import random

import pytest

from kubesat.storage.interface import KeyValue
from kubesat.storage.memory import MemoryStore
from kubesat.storage.sqlite import SqliteStore, StoreClosed


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):  # type: ignore[no-untyped-def]
    s = SqliteStore.open(tmp_path / "s.db") if request.param == "sqlite" else MemoryStore.open()
    yield s
    run(s.close())


async def read_all(snap, chunk: int, start_after: str = "") -> list[KeyValue]:  # type: ignore[no-untyped-def]
    out: list[KeyValue] = []
    after = start_after
    while True:
        res = await snap.read(after, chunk)
        assert len(res.items) <= chunk
        assert res.revision == snap.revision
        out += res.items
        if not res.more:
            return out
        if res.items:
            after = res.items[-1].key


def test_chunks_of_a_quiet_store_are_the_list(store) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        for i in range(23):
            await store.create(f"/r/a/{i:03}", f"v{i}".encode())
        await store.create("/r/b/x", b"outside")
        whole = await store.list("/r/a/")
        with store.snapshot("/r/a/") as snap:
            assert snap.revision == await store.revision() == whole.revision
            for chunk in (1, 4, 23, 100):
                assert await read_all(snap, chunk) == whole.items
            assert await read_all(snap, 5, start_after="/r/a/010") == whole.items[11:]

    run(main())


def test_a_write_between_chunks_is_not_in_the_list(store) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        for i in range(20):
            await store.create(f"/r/{i:03}", f"v{i}".encode())
        with store.snapshot("/r/") as snap:
            expected = (await store.list("/r/")).items
            first = await snap.read("", 5)
            assert first.items == expected[:5] and first.more
            # Writes land between the chunks: ahead of the reader, behind it, and new keys in between.
            await store.update("/r/010", b"changed", 0)
            await store.update("/r/010", b"changed again", 0)
            await store.delete("/r/012")
            await store.delete("/r/002")
            await store.create("/r/0125", b"new in between")
            await store.create("/r/999", b"new at the end")
            await store.delete("/r/015")
            await store.create("/r/015", b"re-created")
            rest = await read_all(snap, 5, start_after=first.items[-1].key)
            assert first.items + rest == expected
            assert (await store.get("/r/010")).value == b"changed again"  # the store itself moved on

    run(main())


def test_a_window_of_keys_created_later_is_skipped(store) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        await store.create("/r/a", b"a")
        await store.create("/r/z", b"z")
        with store.snapshot("/r/") as snap:
            for i in range(7):
                await store.create(f"/r/m{i}", b"later")
            res = await snap.read("/r/a", 2)
            assert [kv.key for kv in res.items] == ["/r/z"]
            assert await read_all(snap, 2) == [await store.get("/r/a"), await store.get("/r/z")]

    run(main())


def test_a_closed_snapshot_stops_recording(store) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        await store.create("/r/a", b"a")
        snap = store.snapshot("/r/")
        other = store.snapshot("/elsewhere/")
        await store.update("/r/a", b"b", 0)
        assert snap._before and not other._before  # a write is recorded only where its key is
        snap.close()
        other.close()
        assert not store._snapshots
        await store.update("/r/a", b"c", 0)
        with pytest.raises(ValueError):
            await snap.read("", 10)
        with store.snapshot("/r/") as again:
            assert set(store._snapshots) == {again}
        assert not store._snapshots
        dropped = store.snapshot("/r/")
        assert len(store._snapshots) == 1
        del dropped  # a reader that never closed it (a stream that never started)
        assert not store._snapshots

    run(main())


def test_a_read_after_the_store_closed_fails(store) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        await store.create("/r/a", b"a")
        snap = store.snapshot("/r/")
        await store.close()
        with pytest.raises(StoreClosed):
            await snap.read("", 10)

    run(main())


@pytest.mark.parametrize("seed", range(6))
def test_random_writes_between_chunks(store, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Many snapshots at different revisions, read in random chunks between random writes."""
    rnd = random.Random(seed)
    keys = [f"/r/{i:02}" for i in range(40)]

    async def write() -> None:
        key = rnd.choice(keys)
        cur = await store.get(key)
        if cur is None:
            await store.create(key, rnd.randbytes(4))
        elif rnd.random() < 0.3:
            await store.delete(key)
        else:
            await store.update(key, rnd.randbytes(4), cur.mod_revision)

    async def main() -> None:
        for _ in range(30):
            await write()
        open_: list[tuple[object, list[KeyValue], list[KeyValue], str, bool]] = []
        for _ in range(60):
            if rnd.random() < 0.3:
                open_.append((store.snapshot("/r/"), (await store.list("/r/")).items, [], "", True))
            for _ in range(rnd.randint(0, 3)):
                await write()
            for i, (snap, expected, got, after, more) in enumerate(open_):
                if more:
                    res = await snap.read(after, rnd.randint(1, 6))  # type: ignore[attr-defined]
                    got += res.items
                    open_[i] = (snap, expected, got, res.items[-1].key if res.items else after, res.more)
        for snap, expected, got, after, more in open_:
            got += await read_all(snap, 7, start_after=after) if more else []
            assert got == expected
            snap.close()  # type: ignore[attr-defined]

    run(main())
