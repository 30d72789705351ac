"""SqliteStore (and MemoryStore, which shares its watch machinery) against the Store protocol."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kubesat.storage.interface import (
    Compacted,
    KeyExists,
    KeyNotFound,
    RevisionConflict,
    StorageError,
    WatchEvent,
)
from kubesat.storage.memory import MemoryStore
from kubesat.storage.sqlite import SqliteStore, StoreClosed, StoreOpenError, WatchOverflow, prefix_end

HERE = Path(__file__).parent


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(params=["sqlite", "memory"])
def make_store(request, tmp_path):
    """make_store(**kw) -> a fresh store of the parametrized kind."""
    opened = []

    def make(**kw):
        if request.param == "sqlite":
            s = SqliteStore.open(tmp_path / f"store{len(opened)}.db", **kw)
        else:
            s = MemoryStore.open(**kw)
        opened.append(s)
        return s

    yield make
    for s in opened:
        if isinstance(s, SqliteStore):
            s.close_sync()


async def take(it, n, timeout=5.0):
    out = []
    for _ in range(n):
        out.append(await asyncio.wait_for(it.__anext__(), timeout))
    return out


# --- basic CRUD / CAS ------------------------------------------------------------------------

def test_crud_and_cas(make_store):
    async def main():
        s = make_store()
        assert await s.revision() == 1
        assert await s.get("/a") is None
        r1 = await s.create("/a", b"one")
        assert r1 == 2
        kv = await s.get("/a")
        assert (kv.key, kv.value, kv.mod_revision, kv.create_revision) == ("/a", b"one", 2, 2)
        with pytest.raises(KeyExists) as ei:
            await s.create("/a", b"again")
        assert ei.value.key == "/a"
        assert await s.revision() == 2  # a failed write does not bump the revision

        r2 = await s.update("/a", b"two", r1)
        assert r2 == 3
        with pytest.raises(RevisionConflict) as ei:
            await s.update("/a", b"stale", r1)
        assert ei.value.current == r2 and ei.value.key == "/a"
        r3 = await s.update("/a", b"three", 0)  # unconditional
        kv = await s.get("/a")
        assert (kv.value, kv.mod_revision, kv.create_revision) == (b"three", r3, r1)
        with pytest.raises(KeyNotFound):
            await s.update("/missing", b"x", 0)

        with pytest.raises(RevisionConflict):
            await s.delete("/a", r2)
        assert await s.get("/a") is not None
        old, r4 = await s.delete("/a", r3)
        assert old == b"three" and r4 == r3 + 1
        assert await s.get("/a") is None
        with pytest.raises(KeyNotFound):
            await s.delete("/a")
        assert await s.revision() == r4

        # empty values and unconditional delete
        r5 = await s.create("/e", b"")
        assert (await s.get("/e")).value == b""
        assert await s.delete("/e") == (b"", r5 + 1)
        await s.close()

    run(main())


def test_bad_input(make_store):
    async def main():
        s = make_store()
        await s.create("/k", b"v")
        for key in ["", None, 1, b"/k", "a\x00b", "\ud800"]:
            with pytest.raises((TypeError, ValueError)):
                await s.create(key, b"v")
            with pytest.raises((TypeError, ValueError)):
                await s.get(key)
        for value in ["str", None, bytearray(b"x"), 3]:
            with pytest.raises(TypeError, match="must be bytes"):
                await s.create("/x", value)
            with pytest.raises(TypeError):
                await s.update("/k", value, 0)
        for rev in [-1, True, "2", 1.0]:
            with pytest.raises((TypeError, ValueError)):
                await s.update("/k", b"v", rev)
            with pytest.raises((TypeError, ValueError)):
                await s.delete("/k", rev)
            with pytest.raises((TypeError, ValueError)):
                s.watch("/", rev)
        with pytest.raises((TypeError, ValueError)):
            await s.list("/", limit=-1)
        with pytest.raises(TypeError):
            await s.list(None)
        with pytest.raises(TypeError):
            await s.count(b"/")
        assert await s.revision() == 2  # none of that wrote anything
        await s.close()
        with pytest.raises(StoreClosed):
            await s.get("/k")
        with pytest.raises(StoreClosed):
            await s.create("/z", b"")

    run(main())


# --- list / count ---------------------------------------------------------------------------

KEYS = [
    "/registry/pods/a/x", "/registry/pods/a/y", "/registry/pods/a/z/deep",
    "/registry/pods/ab/x", "/registry/pods/a%/x", "/registry/pods/a_/x", "/registry/pods/a",
    "/registry/pods/a/\u00e9", "/registry/pods/a/\U0001f600", "/registry/pods/a/\uffff",
    "/registry/pods/b/x", "/registry/podsx", "/registry/secrets/a/x",
]


def byte_sorted(keys):
    return sorted(keys, key=lambda k: k.encode())


def test_list_order_and_prefix_boundaries(make_store):
    async def main():
        s = make_store()
        for k in reversed(KEYS):
            await s.create(k, k.encode())
        for prefix in ["/registry/pods/a/", "/registry/pods/a", "/registry/pods/a%/", "/registry/pods/a_/",
                       "/registry/pods/", "/registry/", "", "/registry/pods/a/\U0001f600", "/nothing/"]:
            want = byte_sorted(k for k in KEYS if k.startswith(prefix))
            res = await s.list(prefix)
            assert [kv.key for kv in res.items] == want, prefix
            assert all(kv.value == kv.key.encode() for kv in res.items)
            assert res.more is False and res.revision == await s.revision()
            assert await s.count(prefix) == len(want)
        a = [kv.key for kv in (await s.list("/registry/pods/a/")).items]
        assert "/registry/pods/ab/x" not in a and "/registry/pods/a%/x" not in a
        assert "/registry/pods/a_/x" not in a
        await s.close()

    run(main())


def test_prefix_end():
    assert prefix_end("/a/") == "/a0"
    assert prefix_end("") is None
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("a\ud7ff") == "a\ue000"


def test_pagination(make_store):
    async def main():
        s = make_store()
        keys = [f"/registry/things/ns/{i:03d}" for i in range(23)]
        for k in keys:
            await s.create(k, b"v")
        await s.create("/registry/things/nt/x", b"v")  # just past the prefix
        for limit in [1, 5, 10, 23, 24, 100]:
            got, after, pages = [], "", 0
            while True:
                res = await s.list("/registry/things/ns/", start_after=after, limit=limit)
                pages += 1
                got += [kv.key for kv in res.items]
                assert len(res.items) <= limit
                if not res.more:
                    break
                assert len(res.items) == limit
                after = res.items[-1].key
            assert got == keys, limit
            assert pages == -(-len(keys) // limit)  # no empty trailing page
        # start_after below the prefix / a key that does not exist
        res = await s.list("/registry/things/ns/", start_after="/a")
        assert len(res.items) == 23
        res = await s.list("/registry/things/ns/", start_after="/registry/things/ns/010x", limit=2)
        assert [kv.key for kv in res.items] == keys[11:13] and res.more
        await s.close()

    run(main())


# --- revision persistence ---------------------------------------------------------------------

def test_revision_monotonic_across_reopen(tmp_path):
    path = tmp_path / "s.db"

    async def phase1():
        s = SqliteStore.open(path)
        revs = [await s.create(f"/k{i}", b"v") for i in range(5)]
        _, r = await s.delete("/k4")
        revs.append(r)
        _, r = await s.delete("/k3")  # the highest revision is a delete: not visible in kv
        revs.append(r)
        assert revs == sorted(revs) and len(set(revs)) == len(revs)
        await s.close()
        return r

    async def phase2(last):
        s = SqliteStore.open(path)
        assert await s.revision() == last
        assert s.oldest_revision() == 1
        kv = await s.get("/k0")
        assert kv.mod_revision == 2
        r = await s.create("/k9", b"v")
        assert r == last + 1
        # the history survives too: replay everything from the start
        evs = await take(s.watch("", 1), r - 1)
        assert [e.revision for e in evs] == list(range(2, r + 1))
        assert [e.type for e in evs][-3:] == ["DELETE", "DELETE", "PUT"]
        await s.close()
        return r

    last = run(phase1())
    last = run(phase2(last))
    s = SqliteStore.open(path)
    assert run(s.revision()) == last
    s.close_sync()


def test_history_shrinks_on_reopen(tmp_path):
    path = tmp_path / "s.db"

    async def main():
        s = SqliteStore.open(path, history=100)
        for i in range(50):
            await s.create(f"/k{i}", b"v")
        await s.close()
        s = SqliteStore.open(path, history=10)
        assert s.oldest_revision() == 51 - 10
        with pytest.raises(Compacted):
            await take(s.watch("", 5), 1)
        assert len(await take(s.watch("", 41), 10)) == 10
        await s.close()

    run(main())


# --- watch ------------------------------------------------------------------------------------

def test_watch_events_content(make_store):
    async def main():
        s = make_store()
        w = s.watch("/r/", 0)  # from now
        r1 = await s.create("/r/a", b"1")
        await s.create("/other", b"x")
        r2 = await s.update("/r/a", b"2", 0)
        _, r3 = await s.delete("/r/a")
        evs = await take(w, 3)
        assert evs == [
            WatchEvent("PUT", "/r/a", b"1", None, r1, True),
            WatchEvent("PUT", "/r/a", b"2", b"1", r2, False),
            WatchEvent("DELETE", "/r/a", None, b"2", r3, False),
        ]
        # replay gives the same events
        assert await take(s.watch("/r/", 1), 3) == evs
        await w.aclose()
        await s.close()

    run(main())


def test_watch_replay_then_live_no_gap(make_store):
    """Writers run concurrently while watchers replay history and switch to live events."""

    async def main():
        s = make_store(history=5000)
        total = 1500  # more than one replay window (500)
        start_revs = []

        async def writer():
            for i in range(total):
                k = f"/w/{i % 37:02d}"
                kv = await s.get(k)
                if kv is None:
                    await s.create(k, str(i).encode())
                elif i % 5 == 0:
                    await s.delete(k, kv.mod_revision)
                else:
                    await s.update(k, str(i).encode(), kv.mod_revision)
                if i % 3 == 0:
                    await asyncio.sleep(0)

        async def watcher(delay_writes, slow):
            while await s.revision() < 1 + delay_writes:
                await asyncio.sleep(0)
            after = await s.revision() // 2 or 1
            start_revs.append(after)
            got = []
            async for ev in s.watch("", after):
                got.append(ev)
                if slow and len(got) % 7 == 0:
                    await asyncio.sleep(0)
                if ev.revision == 1 + total:
                    break
            return after, got

        results = await asyncio.gather(
            writer(), watcher(0, False), watcher(200, True), watcher(900, True), watcher(1400, False))
        for after, got in results[1:]:
            assert [e.revision for e in got] == list(range(after + 1, total + 2))
        # all watchers agree with a fresh replay of the history
        full = await take(s.watch("", 1), total)
        by_rev = {e.revision: e for e in full}
        for _after, got in results[1:]:
            assert all(by_rev[e.revision] == e for e in got)
        await s.close()

    run(main())


def test_watch_prefix_filter(make_store):
    async def main():
        s = make_store()
        await s.create("/registry/pods/a/1", b"")
        await s.create("/registry/pods/ab/1", b"")
        live = s.watch("/registry/pods/a/", 0)
        await s.create("/registry/pods/a/2", b"")
        await s.create("/registry/pods/ab/2", b"")
        await s.create("/registry/pods/a_/2", b"")
        await s.create("/registry/pods/a/3", b"")
        evs = await take(live, 2)
        assert [e.key for e in evs] == ["/registry/pods/a/2", "/registry/pods/a/3"]
        replay = await take(s.watch("/registry/pods/a/", 1), 3)
        assert [e.key for e in replay] == ["/registry/pods/a/1", "/registry/pods/a/2", "/registry/pods/a/3"]
        # nothing else pending for the live watcher
        with pytest.raises(asyncio.TimeoutError):
            await take(live, 1, timeout=0.05)
        await s.close()

    run(main())


def test_watch_compacted(make_store):
    async def main():
        s = make_store(history=5)
        for i in range(20):
            await s.create(f"/k{i:02d}", b"v")
        assert await s.revision() == 21
        assert s.oldest_revision() == 16
        for after in [1, 10, 15]:
            with pytest.raises(Compacted) as ei:
                await take(s.watch("", after), 1)
            assert ei.value.requested == after and ei.value.oldest == 16
        evs = await take(s.watch("", 16), 5)
        assert [e.revision for e in evs] == [17, 18, 19, 20, 21]
        # future revision: waits for it
        w = s.watch("", 22)
        await s.create("/x", b"")
        await s.create("/y", b"")
        assert [e.key for e in await take(w, 1)] == ["/y"]
        await s.close()

    run(main())


def test_compaction_during_slow_replay(make_store):
    """History trimmed under a replaying watcher: it ends with Compacted, never with a gap."""

    async def main():
        s = make_store(history=600)
        for i in range(600):
            await s.create(f"/k{i}", b"v")
        got = []
        with pytest.raises(Compacted):
            async for ev in s.watch("", s.oldest_revision()):
                got.append(ev.revision)
                for j in range(3):  # writes outpace the reader
                    await s.create(f"/n{len(got)}-{j}", b"v")
        assert got == list(range(got[0], got[0] + len(got)))
        await s.close()

    run(main())


def test_slow_watcher_overflow_does_not_block_writers(make_store):
    async def main():
        s = make_store(watch_queue_size=8)
        w = s.watch("", 0)
        fast = s.watch("", 0)
        first = asyncio.ensure_future(w.__anext__())
        await asyncio.sleep(0)  # w is now live and waiting
        t0 = time.perf_counter()
        got_fast = []
        for i in range(50):
            await s.create(f"/k{i}", b"v")  # never blocks on the watchers
            got_fast += await take(fast, 1)
        assert time.perf_counter() - t0 < 5
        assert len(got_fast) == 50  # a watcher that keeps up is unaffected
        assert (await first).key == "/k0"
        with pytest.raises(WatchOverflow) as ei:
            for _ in range(20):
                await w.__anext__()
        assert isinstance(ei.value, Compacted) and ei.value.requested == 2
        assert len(s._watchers) == 1  # the slow watcher is gone, the fast one remains
        await fast.aclose()
        assert len(s._watchers) == 0
        await s.close()

    run(main())


def test_close_ends_watchers(make_store):
    async def main():
        s = make_store()
        await s.create("/a", b"")
        w1 = s.watch("", 0)
        w2 = s.watch("", 1)
        pending = asyncio.ensure_future(take(w1, 1))
        assert (await take(w2, 1))[0].key == "/a"
        await asyncio.sleep(0)
        await s.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, 2)
        with pytest.raises(StopAsyncIteration):
            await w2.__anext__()
        assert not s._watchers
        with pytest.raises(StoreClosed):
            s.watch("", 0)

    run(main())


def test_watch_break_unregisters(make_store):
    async def main():
        s = make_store()
        for i in range(3):
            await s.create(f"/k{i}", b"")
        w = s.watch("", 1)
        async for _ in w:
            break
        assert len(s._watchers) == 1  # suspended generator is still registered until closed
        await w.aclose()
        assert not s._watchers
        await s.close()

    run(main())


# --- open errors ---------------------------------------------------------------------------

def test_open_bad_files(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all\n" * 200)
    with pytest.raises(StoreOpenError) as ei:
        SqliteStore.open(garbage)
    assert str(garbage) in str(ei.value) and ei.value.key == str(garbage)
    assert isinstance(ei.value, StorageError)

    other = tmp_path / "other.db"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE users(id INTEGER)")
    c.commit()
    c.close()
    with pytest.raises(StoreOpenError, match="not a kubesat store"):
        SqliteStore.open(other)

    with pytest.raises(StoreOpenError, match="directory"):
        SqliteStore.open(tmp_path)
    with pytest.raises(StoreOpenError):
        SqliteStore.open(tmp_path / "no" / "such" / "dir" / "s.db")

    # a real store whose pages were damaged
    good = tmp_path / "good.db"
    s = SqliteStore.open(good)
    for i in range(300):
        run(s.create(f"/k{i}", b"x" * 200))
    s.close_sync()
    data = bytearray(good.read_bytes())
    data[0:16] = b"garbage garbage!"  # destroy the header
    good.write_bytes(bytes(data))
    with pytest.raises(StoreOpenError, match=str(good)):
        SqliteStore.open(good)

    with pytest.raises(ValueError):
        SqliteStore.open(tmp_path / "x.db", history=0)


def test_second_open_is_refused(tmp_path):
    path = tmp_path / "s.db"
    s = SqliteStore.open(path)
    with pytest.raises(StoreOpenError, match="in use"):
        SqliteStore.open(path)
    s.close_sync()
    SqliteStore.open(path).close_sync()


# --- durability against kill -9 ---------------------------------------------------------------

def _load_writer():
    spec = importlib.util.spec_from_file_location("storage_crash_writer", HERE / "storage_crash_writer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kill9_durability(tmp_path):
    writer = _load_writer()
    path = tmp_path / "crash.db"
    acked: dict[str, int] = {}
    for round_ in range(3):
        err = tmp_path / f"writer{round_}.err"
        with open(err, "w") as errf:
            proc = subprocess.Popen([sys.executable, str(HERE / "storage_crash_writer.py"), str(path), "10000000"],
                                    stdout=subprocess.PIPE, stderr=errf, text=True)
        try:
            start = proc.stdout.readline().split()
            assert start and start[0] == "START", err.read_text()
            assert int(start[1]) >= len(acked)
            seen = 0
            kill_after = 150 + 97 * round_
            while seen < kill_after:
                line = proc.stdout.readline()
                assert line, err.read_text()
                key, rev = line.split()
                acked[key] = int(rev)
                seen += 1
            os.kill(proc.pid, signal.SIGKILL)
            # read through proc.stdout, not communicate(): readline() has buffered ahead
            rest = proc.stdout.read()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        # acknowledged before the kill, still in the pipe; the last line may be cut by the kill
        for line in rest.split("\n")[:-1]:
            key, rev = line.split()
            acked[key] = int(rev)

        async def check():
            s = SqliteStore.open(path, history=1000)
            rev = await s.revision()
            last_acked = max(acked.values())
            assert rev >= last_acked
            items = (await s.list(writer.PREFIX)).items
            for key, r in acked.items():
                kv = await s.get(key)
                assert kv is not None, f"acknowledged {key} lost"
                assert kv.mod_revision == r == kv.create_revision
                assert kv.value == writer.value_for(int(key.rsplit("/", 1)[1]))
            # consistent: keys 0..n-1 with revisions 2..n+1, at most one unacknowledged extra
            assert [kv.key for kv in items] == [f"{writer.PREFIX}{i:07d}" for i in range(len(items))]
            assert [kv.mod_revision for kv in items] == list(range(2, len(items) + 2))
            assert rev == len(items) + 1
            # at most the one write in flight at the kill is on disk without an acknowledgement
            assert len(items) - len(acked) in (0, 1)
            for kv in items[len(acked):]:
                acked[kv.key] = kv.mod_revision  # now on disk; the next writer run starts after it
            await s.close()

        run(check())
    print(f"\nkill -9 durability: {len(acked)} acknowledged writes over 3 kills, all present")


# --- latency (measured and printed, not asserted) ----------------------------------------------

def test_latency_report(tmp_path):
    async def main():
        s = SqliteStore.open(tmp_path / "lat.db")
        value = b'{"kind":"Secret","metadata":{"name":"x"},"data":{"token":"' + b"a" * 700 + b'"}}'
        n = 500
        t0 = time.perf_counter()
        for i in range(n):
            await s.create(f"/registry/secrets/ns/s{i:05d}", value)
        t_create = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for i in range(n):
            await s.get(f"/registry/secrets/ns/s{i:05d}")
        t_get = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for i in range(n):
            await s.update(f"/registry/secrets/ns/s{i:05d}", value, 0)
        t_update = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for _ in range(20):
            await s.list("/registry/secrets/ns/", limit=100)
        t_list = (time.perf_counter() - t0) / 20
        await s.close()
        print(f"\nSqliteStore latency (synchronous=FULL, WAL): create {t_create * 1e6:.0f} us, "
              f"get {t_get * 1e6:.0f} us, update {t_update * 1e6:.0f} us, list(limit=100) {t_list * 1e6:.0f} us")

    run(main())


# --- model-based test -------------------------------------------------------------------------

KEY_ST = st.sampled_from(["/a", "/a/b", "/a/c", "/ab", "/a%", "/a_", "/b/\u00e9", "/b/\U0001f600", "/b/z", "/"])
PREFIX_ST = st.sampled_from(["", "/", "/a", "/a/", "/a%", "/a_", "/b/", "/b/\U0001f600", "/c"])
VALUE_ST = st.binary(max_size=8)
HISTORY = 15


class StoreMachine(RuleBasedStateMachine):
    kind = "sqlite"

    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "m.db")
        self.store = self._open()
        self.model: dict[str, tuple[bytes, int, int]] = {}
        self.rev = 1
        self.events: list[WatchEvent] = []
        self.watch = self.store.watch("", 0)
        self.watched: list[WatchEvent] = []

    def _open(self):
        if self.kind == "sqlite":
            return SqliteStore.open(self.path, history=HISTORY)
        return MemoryStore.open(history=HISTORY)

    def do(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self):
        self.do(self.watch.aclose())
        self.do(self.store.close())
        self.loop.close()
        self.dir.cleanup()

    def _event(self, *args):
        self.rev += 1
        self.events.append(WatchEvent(*args[:4], self.rev, *args[4:]))

    @rule(key=KEY_ST, value=VALUE_ST)
    def create(self, key, value):
        if key in self.model:
            with pytest.raises(KeyExists):
                self.do(self.store.create(key, value))
            return
        rev = self.do(self.store.create(key, value))
        self._event("PUT", key, value, None, True)
        assert rev == self.rev
        self.model[key] = (value, rev, rev)

    @rule(key=KEY_ST, value=VALUE_ST, mode=st.sampled_from(["any", "right", "wrong"]))
    def update(self, key, value, mode):
        cur = self.model.get(key)
        expected = 0 if mode == "any" or cur is None else cur[1] if mode == "right" else cur[1] + 1
        if cur is None:
            with pytest.raises(KeyNotFound):
                self.do(self.store.update(key, value, expected))
        elif mode == "wrong":
            with pytest.raises(RevisionConflict):
                self.do(self.store.update(key, value, expected))
        else:
            rev = self.do(self.store.update(key, value, expected))
            self._event("PUT", key, value, cur[0], False)
            assert rev == self.rev
            self.model[key] = (value, rev, cur[2])

    @rule(key=KEY_ST, mode=st.sampled_from(["any", "right", "wrong"]))
    def delete(self, key, mode):
        cur = self.model.get(key)
        expected = 0 if mode == "any" or cur is None else cur[1] if mode == "right" else cur[1] - 1
        if cur is None:
            with pytest.raises(KeyNotFound):
                self.do(self.store.delete(key, expected))
        elif mode == "wrong":
            with pytest.raises(RevisionConflict):
                self.do(self.store.delete(key, expected))
        else:
            old, rev = self.do(self.store.delete(key, expected))
            self._event("DELETE", key, None, cur[0], False)
            assert (old, rev) == (cur[0], self.rev)
            del self.model[key]

    @rule(key=KEY_ST)
    def get(self, key):
        kv = self.do(self.store.get(key))
        cur = self.model.get(key)
        assert (None if kv is None else (kv.value, kv.mod_revision, kv.create_revision)) == cur

    @rule(prefix=PREFIX_ST, start_after=st.sampled_from(["", "/a", "/a/b", "/b/"]), limit=st.integers(0, 4))
    def list(self, prefix, start_after, limit):
        res = self.do(self.store.list(prefix, start_after=start_after, limit=limit))
        want = byte_sorted(k for k in self.model if k.startswith(prefix) and k > start_after)
        got = [kv.key for kv in res.items]
        assert got == (want[:limit] if limit else want)
        assert res.more == bool(limit and len(want) > limit)
        assert res.revision == self.rev
        assert self.do(self.store.count(prefix)) == sum(k.startswith(prefix) for k in self.model)

    @rule(prefix=PREFIX_ST, back=st.integers(0, HISTORY + 3))
    def watch_replay(self, prefix, back):
        after = max(1, self.rev - back)
        want = [e for e in self.events if e.revision > after and e.key.startswith(prefix)]
        oldest = max(1, self.rev - HISTORY)
        assert self.store.oldest_revision() == oldest
        w = self.store.watch(prefix, after)
        try:
            if after < oldest:
                with pytest.raises(Compacted):
                    self.do(take(w, 1))
            else:
                assert self.do(take(w, len(want))) == want
        finally:
            self.do(w.aclose())

    @rule()
    def drain_live_watch(self):
        n = len(self.events) - len(self.watched)
        self.watched += self.do(take(self.watch, n))
        assert self.watched == self.events

    @precondition(lambda self: self.kind == "sqlite")
    @rule()
    def reopen(self):
        self.drain_live_watch()
        self.do(self.watch.aclose())
        self.do(self.store.close())
        self.store = self._open()
        assert self.do(self.store.revision()) == self.rev
        self.watch = self.store.watch("", 0)
        self.watched = list(self.events)

    @invariant()
    def revision(self):
        assert self.do(self.store.revision()) == self.rev


class MemoryStoreMachine(StoreMachine):
    kind = "memory"


TestSqliteModel = StoreMachine.TestCase
TestSqliteModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
TestMemoryModel = MemoryStoreMachine.TestCase
TestMemoryModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])


# --- group commit ---------------------------------------------------------------------------


class _CountingConn:
    """The store's connection, counting COMMITs and failing the next `fail` of them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.commits, self.fail = conn, 0, 0

    def execute(self, sql, *args):
        if sql == "COMMIT":
            if self.fail:
                self.fail -= 1
                raise sqlite3.OperationalError("disk I/O error")
            self.commits += 1
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_writes_of_one_loop_turn_share_one_commit(tmp_path):
    store = SqliteStore.open(tmp_path / "g.db")
    conn = store._conn = _CountingConn(store._conn)

    async def go():
        revs = await asyncio.gather(*(store.create(f"/k/{i}", b"v") for i in range(20)))
        assert not conn.in_transaction  # acknowledged means committed
        assert revs == list(range(2, 22))
        assert conn.commits == 1
        await store.create("/k/alone", b"v")
        assert conn.commits == 2

    try:
        run(go())
    finally:
        store.close_sync()
    reopened = SqliteStore.open(tmp_path / "g.db")
    try:
        assert run(reopened.revision()) == 22
        assert len(run(reopened.list("/k/")).items) == 21
    finally:
        reopened.close_sync()


def test_a_failed_write_leaves_the_rest_of_its_group(tmp_path):
    store = SqliteStore.open(tmp_path / "g.db")

    async def go():
        await store.create("/k/taken", b"v")
        results = await asyncio.gather(store.create("/k/a", b"1"), store.create("/k/taken", b"2"),
                                       store.update("/k/taken", b"3", 999), store.create("/k/b", b"4"),
                                       return_exceptions=True)
        assert isinstance(results[1], KeyExists)
        assert isinstance(results[2], RevisionConflict)
        assert results[0] == 3 and results[3] == 4
        assert (await store.get("/k/taken")).value == b"v"
        assert [kv.key for kv in (await store.list("/k/")).items] == ["/k/a", "/k/b", "/k/taken"]

    try:
        run(go())
    finally:
        store.close_sync()


def test_a_failed_commit_fails_its_whole_group_and_announces_nothing(tmp_path):
    store = SqliteStore.open(tmp_path / "g.db")
    conn = store._conn = _CountingConn(store._conn)

    async def go():
        await store.create("/k/before", b"v")
        rev = await store.revision()
        seen = []

        async def watch():
            async for ev in store.watch("/k/", rev):
                seen.append(ev.key)
                if ev.key == "/k/after":
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        conn.fail = 1
        results = await asyncio.gather(store.create("/k/x", b"1"), store.update("/k/before", b"2", 0),
                                       return_exceptions=True)
        assert all(isinstance(r, StorageError) and "commit" in str(r) for r in results), results
        assert await store.get("/k/x") is None
        assert (await store.get("/k/before")).value == b"v"
        after = await store.create("/k/after", b"v")
        assert after > rev + 2  # the failed group's revisions are not reused
        await asyncio.wait_for(watcher, 5)
        assert seen == ["/k/after"]

    try:
        run(go())
    finally:
        store.close_sync()
