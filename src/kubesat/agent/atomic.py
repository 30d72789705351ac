"""The kubelet's AtomicWriter: a volume's files swapped all at once through a `..data` symlink.

Layout of a target directory (pkg/volume/util/atomic_writer.go):

    ..2026_12_03_10_15_30.123456789/   the files of one payload (mode 0755)
    ..data -> ..2026_12_03_10_15_30.123456789
    token -> ..data/token              one link per top-level name of the payload

A new payload goes to a fresh timestamped directory; `..data_tmp` is pointed at it and renamed over `..data`,
which is atomic, so a reader opening `token` sees the whole old file or the whole new one, never a mix.
The writer is not safe for concurrent writers: one writer per target directory, as in the kubelet.

One deliberate difference: the kubelet deletes the replaced directory at once, so a reader that resolved `..data`
an instant before the swap gets ENOENT on the file (seen here a few times in 2,000 back-to-back writes, even when
one previous generation was kept: a preempted reader can stall for a whole write). So a replaced directory lives on
for `grace` seconds (monotonic clock) and is removed by the first `write` or `prune()` after that; the agent calls
`prune()` on its sync tick, which gives the kubelet's one-directory layout between writes. `grace=0` is the kubelet.

`update` is the token-only refresh: a payload that differs from the current one only in the files it is given.
Those are written to the new timestamped directory and every other file is hard-linked from the current one (the
same bytes, mode and owner, without reading or rewriting them); the swap is the same rename.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DATA_DIR_NAME = "..data"
NEW_DATA_DIR_NAME = "..data_tmp"
MAX_FILE_NAME_LENGTH = 255
MAX_PATH_LENGTH = 4096
_TS_FORMAT = "..%Y_%m_%d_%H_%M_%S."
_TS_DIGITS = 9
# How long a replaced timestamped directory is kept for readers on their way into it (see the module doc).
REPLACED_GRACE = 1.0
# One generator for every writer's directory suffixes (a Random per writer costs 2.5 KB, times every volume).
_RAND = random.Random()


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The process's umask at start: a timestamped directory needs a chmod after mkdir only if it narrows 0755.
_UMASK = _read_umask()


@dataclass(frozen=True)
class FileProjection:
    """One file of a payload: its bytes, its exact mode and, for the token file, its owner (the pod's runAsUser)."""

    data: bytes
    mode: int
    uid: int | None = None


class InvalidPathError(ValueError):
    """A payload path the kubelet refuses; the message starts with `invalid path: ` as the kubelet's does."""


def validate_path(path: str) -> str:
    """Check a payload path as the kubelet does and return it cleaned (`a//b/` -> `a/b`)."""
    if path == "":
        raise InvalidPathError(f'invalid path: must not be empty: "{path}"')
    if path.startswith("/"):
        raise InvalidPathError(f"invalid path: must be relative path: {path}")
    if len(path.encode()) > MAX_PATH_LENGTH:
        raise InvalidPathError(f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters")
    items = path.split("/")
    for item in items:
        if item == "..":
            raise InvalidPathError(f"invalid path: must not contain '..': {path}")
        if len(item.encode()) > MAX_FILE_NAME_LENGTH:
            raise InvalidPathError(
                f"invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise InvalidPathError(f"invalid path: must not start with '..': {path}")
    clean = posixpath.normpath(path)
    if clean == ".":
        raise InvalidPathError(f"invalid path: must not be empty: \"{path}\"")
    return clean


def validate_payload(payload: dict[str, FileProjection]) -> dict[str, FileProjection]:
    """The payload with every path validated and cleaned; the first bad path raises InvalidPathError."""
    return {validate_path(k): v for k, v in payload.items()}


def _top(path: str) -> str:
    return path.split("/", 1)[0]


def _with_parents(paths: dict[str, FileProjection]) -> set[str]:
    out: set[str] = set()
    for p in paths:
        while p:
            out.add(p)
            p = posixpath.dirname(p)
    return out


def _remove_tree(path: str) -> None:
    """Remove a directory the writer made (files, links, subdirectories; links are not followed), with fewer
    system calls than shutil.rmtree's descriptor walk; anything odd falls back to it."""
    try:
        with os.scandir(path) as it:
            entries = list(it)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path)
            else:
                os.unlink(entry.path)
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class AtomicWriter:
    """Projects a payload into `target_dir` atomically; `write` returns whether anything on disk changed."""

    def __init__(self, target_dir: Path, log_name: str = "", *, clock: Callable[[], float] = time.time,
                 rand: random.Random | None = None, grace: float = REPLACED_GRACE,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.target_dir = Path(target_dir)
        self.grace = grace
        self._monotonic = monotonic
        self._replaced: dict[str, float] = {}  # timestamped dir -> when `..data` stopped pointing at it
        self._scanned = False  # the target looked through once for leftovers of a crash
        self._log_name = log_name
        self._clock = clock
        self._rand = rand or _RAND

    @property
    def log_name(self) -> str:
        return self._log_name or str(self.target_dir)

    # -- reading the current state -------------------------------------------------------------------------------

    def current_dir(self) -> str | None:
        """Name of the timestamped directory `..data` points at, or None before the first write."""
        try:
            return os.readlink(self.target_dir / DATA_DIR_NAME)
        except FileNotFoundError:
            return None

    def read(self) -> dict[str, FileProjection]:
        """What the volume holds now (paths relative to the target), e.g. to adopt it after a restart."""
        cur = self.current_dir()
        if cur is None:
            return {}
        base = self.target_dir / cur
        out: dict[str, FileProjection] = {}
        for root, _dirs, files in os.walk(base):
            for name in files:
                full = Path(root) / name
                st = full.lstat()
                out[full.relative_to(base).as_posix()] = FileProjection(full.read_bytes(), st.st_mode & 0o7777)
        return out

    def _old_paths(self, old_dir: Path) -> set[str]:
        paths: set[str] = set()
        for root, dirs, files in os.walk(old_dir):
            for name in dirs + files:
                paths.add((Path(root) / name).relative_to(old_dir).as_posix())
        return paths

    @staticmethod
    def _unchanged(payload: dict[str, FileProjection], old_dir: Path) -> bool:
        for rel, proj in payload.items():
            path = old_dir / rel
            try:
                st = path.lstat()
                if (st.st_mode & 0o7777) != proj.mode or path.read_bytes() != proj.data:
                    return False
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return False
        return True

    # -- writing ---------------------------------------------------------------------------------------------------

    def write(self, payload: dict[str, FileProjection], uid: int | None = None, gid: int | None = None) -> bool:
        """Make the target hold exactly `payload`; True if anything changed. Raises InvalidPathError, OSError."""
        clean = validate_payload(payload)
        old_name = self.current_dir()
        to_remove: set[str] = set()
        if old_name is None:
            self.target_dir.mkdir(parents=True, exist_ok=True)
        else:
            old_dir = self.target_dir / old_name
            to_remove = self._old_paths(old_dir) - _with_parents(clean)
            if not to_remove and self._unchanged(clean, old_dir):
                # Nothing to swap, but a user-visible link deleted by hand comes back, as with the kubelet.
                return self._create_user_visible(clean)
        new_dir = self._new_ts_dir()
        try:
            self._write_files(clean, new_dir, uid, gid)
            self._swap(new_dir.name)
        except BaseException:
            shutil.rmtree(new_dir, ignore_errors=True)
            raise
        self._create_user_visible(clean)
        self._remove_user_visible(to_remove)
        if old_name is not None:
            self._replaced[old_name] = self._monotonic()
        self._remove_stale_dirs(new_dir.name, force=False, when_due=True)
        log.debug("%s: wrote %d files to %s", self.log_name, len(clean), new_dir.name)
        return True

    def update(self, changed: dict[str, FileProjection], uid: int | None = None, gid: int | None = None) -> None:
        """Swap in the current payload with the files of `changed` replaced (or added), the others unchanged.

        The files of `changed` are written to a new timestamped directory, every other file of the current one is
        hard-linked into it (copied where the filesystem refuses a link), then `..data` is swapped as by `write`.
        Raises FileNotFoundError before the first `write`, InvalidPathError, OSError.
        """
        clean = validate_payload(changed)
        old_name = self.current_dir()
        if old_name is None:
            raise FileNotFoundError(f"{self.log_name}: nothing written yet to update")
        new_dir = self._new_ts_dir()
        try:
            self._write_files(clean, new_dir, uid, gid)
            self._link_others(self.target_dir / old_name, new_dir, clean)
            self._swap(new_dir.name)
        except BaseException:
            shutil.rmtree(new_dir, ignore_errors=True)
            raise
        self._create_user_visible(clean)
        self._replaced[old_name] = self._monotonic()
        self._remove_stale_dirs(new_dir.name, force=False, when_due=True)
        log.debug("%s: replaced %d files in %s", self.log_name, len(clean), new_dir.name)

    @staticmethod
    def _link_others(old_dir: Path, new_dir: Path, written: dict[str, FileProjection], prefix: str = "") -> None:
        with os.scandir(old_dir) as it:
            entries = list(it)
        for entry in entries:
            rel = prefix + entry.name
            dst = new_dir / entry.name
            if entry.is_dir(follow_symlinks=False):
                dst.mkdir(mode=0o755, exist_ok=True)
                AtomicWriter._link_others(Path(entry.path), dst, written, rel + "/")
                continue
            if rel in written:
                continue
            try:
                os.link(entry.path, dst, follow_symlinks=False)
            except OSError:
                st = entry.stat(follow_symlinks=False)
                fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                try:
                    _write_all(fd, Path(entry.path).read_bytes())
                    os.fchmod(fd, st.st_mode & 0o7777)
                    if _is_root():
                        os.fchown(fd, st.st_uid, st.st_gid)
                finally:
                    os.close(fd)

    def _new_ts_dir(self) -> Path:
        prefix = time.strftime(_TS_FORMAT, time.gmtime(self._clock()))
        while True:
            path = self.target_dir / f"{prefix}{self._rand.randrange(10 ** _TS_DIGITS):0{_TS_DIGITS}d}"
            try:
                path.mkdir(0o755)
            except FileExistsError:
                continue
            # 0755 whatever the umask, so that group and others can walk to the files.
            if _UMASK & 0o755:
                path.chmod(0o755)
            return path

    def _write_files(self, payload: dict[str, FileProjection], base: Path, uid: int | None, gid: int | None) -> None:
        chown = _is_root()
        if chown and (uid is not None or gid is not None):
            os.chown(base, -1 if uid is None else uid, -1 if gid is None else gid)
        for rel, proj in payload.items():
            full = base / rel
            if full.parent != base:
                full.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, proj.data)
                # fchmod, not the open mode: the umask must not narrow the mode the pod asked for.
                os.fchmod(fd, proj.mode)
                owner = proj.uid if proj.uid is not None else uid
                if chown and (owner is not None or gid is not None):
                    os.fchown(fd, -1 if owner is None else owner, -1 if gid is None else gid)
            finally:
                os.close(fd)

    def _swap(self, new_name: str) -> None:
        tmp = self.target_dir / NEW_DATA_DIR_NAME
        # A `..data_tmp` left by a crash between symlink and rename would block every later write.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(new_name, tmp)
        os.replace(tmp, self.target_dir / DATA_DIR_NAME)

    def _create_user_visible(self, payload: dict[str, FileProjection]) -> bool:
        created = False
        for name in {_top(p) for p in payload}:
            link = self.target_dir / name
            if not os.path.lexists(link):
                os.symlink(posixpath.join(DATA_DIR_NAME, name), link)
                created = True
        return created

    def _remove_user_visible(self, paths: set[str]) -> None:
        for p in paths:
            if "/" in p:
                continue  # only the top-level links live outside the data directory
            try:
                (self.target_dir / p).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("%s: error pruning old user-visible path %s: %s", self.log_name, p, exc)

    def prune(self, force: bool = False) -> bool:
        """Remove replaced timestamped directories past their grace (all of them if `force`); True if some remain."""
        cur = self.current_dir()
        if cur is None:
            return False
        return self._remove_stale_dirs(cur, force=force)

    def _remove_stale_dirs(self, current: str, force: bool, when_due: bool = False) -> bool:
        now = self._monotonic()
        if when_due and self._scanned and all(now - t < self.grace for t in self._replaced.values()):
            return bool(self._replaced)  # nothing to remove yet: no need to list the directory
        self._scanned = True
        remaining = False
        for entry in os.scandir(self.target_dir):
            name = entry.name
            if not name.startswith("..") or name in (current, DATA_DIR_NAME) or not entry.is_dir(follow_symlinks=False):
                continue
            replaced = self._replaced.get(name)
            # Unknown directories are leftovers of a crash: no reader is on its way into them.
            if not force and replaced is not None and now - replaced < self.grace:
                remaining = True
                continue
            _remove_tree(entry.path)
            self._replaced.pop(name, None)
        return remaining
