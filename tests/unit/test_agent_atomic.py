"""The kubelet's AtomicWriter: layout, modes, no-op writes, pruning, path checks, and readers never see a mix."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from kubesat.agent.atomic import AtomicWriter, FileProjection, InvalidPathError, validate_path

TS_RE = re.compile(r"^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$")


def fp(data: str | bytes, mode: int = 0o644) -> FileProjection:
    return FileProjection(data.encode() if isinstance(data, str) else data, mode)


def ts_dirs(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if TS_RE.match(p.name))


def test_layout_links_through_data(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path, clock=lambda: 1796292930.5)  # 2026-12-03 10:15:30 UTC
    assert w.write({"token": fp("t1"), "ca.crt": fp("ca"), "namespace": fp("default")}) is True
    [ts] = ts_dirs(tmp_path)
    assert ts.startswith("..2026_12_03_10_15_30.")
    assert os.readlink(tmp_path / "..data") == ts
    assert os.stat(tmp_path / ts).st_mode & 0o777 == 0o755
    for name in ("token", "ca.crt", "namespace"):
        assert os.readlink(tmp_path / name) == f"..data/{name}"
    assert (tmp_path / "token").read_text() == "t1"
    assert sorted(os.listdir(tmp_path)) == sorted(["..data", ts, "token", "ca.crt", "namespace"])


def test_modes_exact_regardless_of_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        AtomicWriter(tmp_path).write({"a": fp("x", 0o644), "b": fp("y", 0o400), "c": fp("z", 0o777)})
    finally:
        os.umask(old)
    modes = {n: os.stat(tmp_path / n).st_mode & 0o7777 for n in "abc"}
    assert modes == {"a": 0o644, "b": 0o400, "c": 0o777}


def test_unchanged_payload_writes_nothing(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    payload = {"token": fp("t"), "d/e": fp("x")}
    assert w.write(payload) is True
    before = ts_dirs(tmp_path)
    st = os.stat(tmp_path / "token")
    assert w.write(dict(payload)) is False
    assert ts_dirs(tmp_path) == before
    assert os.stat(tmp_path / "token").st_ino == st.st_ino


def test_mode_change_alone_rewrites(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    w.write({"token": fp("t", 0o644)})
    assert w.write({"token": fp("t", 0o600)}) is True
    assert os.stat(tmp_path / "token").st_mode & 0o777 == 0o600


def test_new_payload_replaces_dir_and_removes_old_kubelet_exact(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path, grace=0)
    w.write({"token": fp("t1")})
    [first] = ts_dirs(tmp_path)
    assert w.write({"token": fp("t2")}) is True
    [second] = ts_dirs(tmp_path)
    assert first != second
    assert (tmp_path / "token").read_text() == "t2"
    assert not (tmp_path / "..data_tmp").exists()


def test_replaced_dir_kept_for_its_grace(tmp_path: Path) -> None:
    mono = [100.0]
    w = AtomicWriter(tmp_path, grace=1.0, monotonic=lambda: mono[0])
    w.write({"token": fp("t1")})
    [first] = ts_dirs(tmp_path)
    w.write({"token": fp("t2")})
    second = w.current_dir()
    assert ts_dirs(tmp_path) == sorted([first, second])
    assert w.prune() is True  # still within its grace
    mono[0] += 1.5
    w.write({"token": fp("t3")})  # the first is past its grace, the second has just been replaced
    assert ts_dirs(tmp_path) == sorted([second, w.current_dir()])
    mono[0] += 1.5
    assert w.prune() is False
    assert ts_dirs(tmp_path) == [w.current_dir()]
    w.write({"token": fp("t4")})
    w.prune(force=True)
    assert ts_dirs(tmp_path) == [w.current_dir()]


def test_removed_key_removes_its_link(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    w.write({"a": fp("1"), "b": fp("2"), "dir/x": fp("3")})
    assert w.write({"a": fp("1")}) is True
    assert not os.path.lexists(tmp_path / "b")
    assert not os.path.lexists(tmp_path / "dir")
    assert sorted(n for n in os.listdir(tmp_path) if not n.startswith("..")) == ["a"]


def test_nested_paths(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    w.write({"a/b/c": fp("deep"), "a/d": fp("side"), "top": fp("t")})
    assert os.readlink(tmp_path / "a") == "..data/a"
    assert (tmp_path / "a/b/c").read_text() == "deep"
    assert (tmp_path / "a/d").read_text() == "side"
    # Dropping one nested file keeps the shared top-level link.
    w.write({"a/d": fp("side"), "top": fp("t")})
    assert not (tmp_path / "a/b").exists()
    assert (tmp_path / "a/d").read_text() == "side"


def test_read_returns_current_payload(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    payload = {"token": fp("t", 0o600), "x/y": fp("z")}
    w.write(payload)
    assert w.read() == payload
    assert AtomicWriter(tmp_path / "none").read() == {}


@pytest.mark.parametrize(("path", "message"), [
    ("", "invalid path: must not be empty"),
    ("/etc/passwd", "invalid path: must be relative path: /etc/passwd"),
    ("a/../b", "invalid path: must not contain '..': a/../b"),
    ("..", "invalid path: must not contain '..'"),
    ("..data", "invalid path: must not start with '..': ..data"),
    ("..secret/x", "invalid path: must not start with '..'"),
    ("x" * 256, "invalid path: filenames must be less than or equal to 255 characters"),
    ("/".join(["x" * 200] * 21), "invalid path: must be less than or equal to 4096 characters"),
])
def test_invalid_paths_refused(tmp_path: Path, path: str, message: str) -> None:
    with pytest.raises(InvalidPathError, match=re.escape(message)):
        AtomicWriter(tmp_path).write({"ok": fp("1"), path: fp("2")})
    assert not os.path.lexists(tmp_path / "..data")


def test_valid_paths_cleaned() -> None:
    assert validate_path("a//b/") == "a/b"
    assert validate_path("a..b/..c") == "a..b/..c"  # only the first element may not start with '..'
    assert validate_path("x" * 255) == "x" * 255


def test_crash_leftovers_are_cleared(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path, grace=0)
    w.write({"token": fp("t1")})
    os.symlink("..nowhere", tmp_path / "..data_tmp")
    (tmp_path / "..2020_01_01_00_00_00.000000001").mkdir()
    w.write({"token": fp("t2")})
    assert len(ts_dirs(tmp_path)) == 1
    assert not os.path.lexists(tmp_path / "..data_tmp")
    assert (tmp_path / "token").read_text() == "t2"


def test_deleted_user_link_restored_without_rewrite(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    w.write({"token": fp("t")})
    before = ts_dirs(tmp_path)
    (tmp_path / "token").unlink()
    assert w.write({"token": fp("t")}) is True
    assert ts_dirs(tmp_path) == before
    assert (tmp_path / "token").read_text() == "t"


def test_reader_never_sees_partial_or_mixed(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path)
    # Large, distinct payloads: a torn read would show two different fill bytes or a short length.
    size = 64 * 1024

    def payload(i: int) -> dict[str, FileProjection]:
        b = bytes([65 + i % 26])
        return {"token": FileProjection(b * size + str(i).encode(), 0o644),
                "ns": FileProjection(b * 100, 0o644)}

    w.write(payload(0))
    stop = threading.Event()
    bad: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                with open(tmp_path / "token", "rb") as f:
                    data = f.read()
            except FileNotFoundError as exc:  # a missing file is as bad as a torn one
                bad.append(f"missing: {exc}")
                continue
            reads += 1
            body, tail = data[:size], data[size:]
            if len(set(body)) != 1 or not tail.isdigit() or body[:1] != bytes([65 + int(tail) % 26]):
                bad.append(f"torn read of {len(data)} bytes")

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(1, 301):
            assert w.write(payload(i)) is True
    finally:
        stop.set()
        t.join()
    assert not bad, bad[:5]
    assert reads > 0
    assert (tmp_path / "token").read_bytes().endswith(b"300")
    w.prune(force=True)
    assert ts_dirs(tmp_path) == [w.current_dir()]


def test_update_swaps_only_the_given_files_and_links_the_rest(tmp_path: Path) -> None:
    w = AtomicWriter(tmp_path / "vol", grace=0.0)
    with pytest.raises(FileNotFoundError):
        w.update({"token": FileProjection(b"t0", 0o644)})
    w.write({"token": FileProjection(b"t1", 0o600), "ca.crt": FileProjection(b"ca", 0o644),
             "sub/dir/x": FileProjection(b"x", 0o400)})
    before = w.current_dir()
    inode = os.stat(tmp_path / "vol" / "ca.crt").st_ino
    w.update({"token": FileProjection(b"t2", 0o600)})
    assert w.current_dir() != before
    assert {k: (v.data, v.mode) for k, v in w.read().items()} == {
        "token": (b"t2", 0o600), "ca.crt": (b"ca", 0o644), "sub/dir/x": (b"x", 0o400)}
    assert os.stat(tmp_path / "vol" / "ca.crt").st_ino == inode  # linked, not rewritten
    w.prune()
    assert sorted(p.name for p in (tmp_path / "vol").iterdir()) == sorted(
        ["..data", w.current_dir() or "", "token", "ca.crt", "sub"])
