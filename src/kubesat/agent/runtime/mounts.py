"""A container's mounts, planned from its pod: each volumeMount's source on the host (subPath kept for the sandbox
to resolve inside the volume), its target, readOnly; hostPath volumes only under the directories the agent
allows. Pure, apart from resolving the allowed host paths' symlinks."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_MOUNTS = 256
MAX_PATH = 4096


class MountError(Exception):
    """A mount the pod asks for cannot be made; the message says why (for the container's waiting state)."""


@dataclass(frozen=True)
class Mount:
    source: str  # the volume's directory (or hostPath) on the host
    sub_path: str
    target: str
    read_only: bool
    recursive: bool  # hostPath: submounts (and the agent's masks over them) come along

    def spec(self) -> dict[str, Any]:
        return {"source": self.source, "subPath": self.sub_path, "target": self.target, "readOnly": self.read_only,
                "recursive": self.recursive}


def _clean_target(path: str) -> str:
    if not path.startswith("/") or len(path) > MAX_PATH or "\x00" in path:
        raise MountError(f"mountPath {path!r} must be an absolute path of at most {MAX_PATH} bytes")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise MountError(f"mountPath {path!r} must not contain '..'")
    if not parts:
        raise MountError("mountPath must not be /")
    return "/" + "/".join(parts)


def _clean_sub_path(sub: str) -> str:
    if sub.startswith("/") or len(sub) > MAX_PATH or "\x00" in sub or ".." in sub.split("/"):
        raise MountError(f"subPath {sub!r} must be a relative path without '..'")
    return "/".join(p for p in sub.split("/") if p not in ("", "."))


def allowed_host_path(path: str, allowed: Sequence[Path]) -> str | None:
    """A hostPath with its symlinks resolved, if that lies under one of the directories the agent allows (what
    is mounted is that resolved path, so that a symlink swapped in later is not followed); else None."""
    real = os.path.realpath(path)
    for base in allowed:
        b = os.path.realpath(base)
        if real == b or real.startswith(b.rstrip("/") + "/"):
            return real
    return None


def plan(container: dict[str, Any], sources: Mapping[str, str], host_paths: Mapping[str, str],
         allowed_host_paths: Sequence[Path], check: Callable[[str, str], None] | None = None) -> list[Mount]:
    """The container's mounts. `sources` maps a volume name to its directory under the agent's root;
    `host_paths` a hostPath volume's name to its path; `check(name, path)` is called with each allowed host
    path, symlinks resolved, before it is planned (the hostPath type check). Raises MountError."""
    mounts: list[Mount] = []
    vm = container.get("volumeMounts") or []
    if not isinstance(vm, list) or len(vm) > MAX_MOUNTS:
        raise MountError(f"a container may have at most {MAX_MOUNTS} volumeMounts")
    for m in vm:
        if not isinstance(m, dict):
            continue
        name = str(m.get("name", ""))
        target = _clean_target(str(m.get("mountPath", "")))
        sub = _clean_sub_path(str(m.get("subPath") or ""))
        read_only = m.get("readOnly") is True
        if name in host_paths:
            path = host_paths[name]
            real = allowed_host_path(path, allowed_host_paths)
            if real is None:
                raise MountError(f'hostPath volume "{name}" ({path}) is not under a directory this node allows '
                                 "(kubesat agent --allow-host-path DIR)")
            if check is not None:
                check(name, real)
            mounts.append(Mount(real, sub, target, read_only, True))
        elif name in sources:
            mounts.append(Mount(sources[name], sub, target, read_only, False))
        else:
            raise MountError(f'volumeMount "{name}" names no volume of the pod that this node set up')
    return mounts
