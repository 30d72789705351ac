"""A hostPath volume's `type`, checked as the kubelet's hostPath plugin checks it before mounting:
DirectoryOrCreate and FileOrCreate make what is missing (0755, 0644), the others want the path to be that kind
of file, and "" checks nothing."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from kubesat.agent.runtime.mounts import MountError

_KINDS: dict[str, tuple[Callable[[int], bool], str]] = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _make(path: str, kind: str) -> None:
    try:
        if kind == "DirectoryOrCreate":
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
    except OSError as e:
        raise MountError(f"hostPath type check failed: {path}: {e.strerror}") from None


def check_type(path: str, kind: str) -> None:
    """Raise MountError (in the kubelet's words) when `path` is not what `kind` asks for."""
    if not kind:
        return
    if kind in ("DirectoryOrCreate", "FileOrCreate"):
        if not os.path.lexists(path):
            _make(path, kind)
            return
        kind = kind.removesuffix("OrCreate")
    if kind not in _KINDS:
        raise MountError(f"{kind} is an invalid volume type")
    test, what = _KINDS[kind]
    try:
        ok = test(os.stat(path).st_mode)
    except OSError:
        ok = False
    if not ok:
        raise MountError(f"hostPath type check failed: {path} is not {what}")
