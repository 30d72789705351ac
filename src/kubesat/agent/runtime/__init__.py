"""What the agent asks of a container runtime, and what the kubelet API's streams (exec, attach, logs,
port-forward) ask of it: the seam between the pod manager, the runtime that runs containers, and the
agent's HTTPS server.

Two runtimes implement it: `none` (no process: containers are reported running at once, as before there
was a runtime) and `process` (each container a local process in a sandbox of its own). Everything here is
plain data and protocols; nothing imports the implementations.

Changes since the first version (`exec`, `log_path`, `open_port` and ExecSession are unchanged):
PodSandboxConfig gained `notify` (called when a container's state changes, so the pod's status is reported)
and `record_event` (the runtime's Events: Started, Killing, BackOff, Unhealthy ...); Runtime gained
`pod_status` (phase, conditions, init and regular container statuses in one answer), `forget_pod` (drop a
stopped pod's state) and `close` (stop every container when the agent stops); later `attach` (a session on a
running container's own process, its stdin kept open when the spec asks: see `attach.py`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class RuntimeFailure(Exception):
    """A runtime could not do what was asked; the message is worded for `kubectl` (e.g. `container not found
    ("app")`)."""


@dataclass(frozen=True)
class VolumeMountSource:
    """Where one of a pod's volumes is on the host: its directory (or, for hostPath, the host path). `on_host`:
    a path of the host (a hostPath volume, or a hostPath or local PersistentVolume), mounted only under the
    directories the agent allows."""

    name: str
    host_path: Path
    on_host: bool = False
    host_type: str = ""  # a host path's hostPath `type`, checked before it is mounted


@dataclass
class PodSandboxConfig:
    """What a runtime needs to start a pod's containers: the pod object as the API has it, its volumes on
    the host (by volume name), the container environments the agent built (by container name), and the
    directory where the pod's logs go (`<root>/pods/<uid>/...` or the kubelet's `/var/log/pods` layout)."""

    pod: dict[str, Any]
    volumes: Mapping[str, VolumeMountSource]
    environments: Mapping[str, Mapping[str, str]]
    log_dir: Path
    hosts_entries: Mapping[str, str] = field(default_factory=dict)  # host name -> address, for /etc/hosts
    # Called (no arguments) whenever a container's state, readiness or restart count changes.
    notify: Callable[[], None] | None = None
    # record_event(type, reason, message, container or None): an Event about the pod, sent by the caller.
    record_event: Callable[[str, str, str, str | None], None] | None = None


def hosts_file_text(entries: Mapping[str, str]) -> str:
    """A pod's /etc/hosts: localhost, then one line per address with every name that points at it."""
    lines = ["# Kubernetes-managed hosts file (kubesat process runtime).", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback"]
    by_address: dict[str, list[str]] = {}
    for name, address in entries.items():
        by_address.setdefault(address, []).append(name)
    lines += [f"{address}\t{' '.join(names)}" for address, names in by_address.items()]
    return "\n".join(lines) + "\n"


def write_hosts_file(path: Path, entries: Mapping[str, str]) -> None:
    """Write a pod's hosts file in place (mode 0644). In place, not by rename: running containers have this
    very inode bound at /etc/hosts, so they see a rewrite (when Services change) and would not see a new file."""
    data = hosts_file_text(entries).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))  # after the write, so a reader never meets an empty file
    finally:
        os.close(fd)
    path.chmod(0o644)


@dataclass
class ExecRequest:
    """One `exec` (or `attach` when `command` is empty) into a running container."""

    pod_uid: str
    container: str
    command: list[str]
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False


class ExecSession(Protocol):
    """A process started by `exec`: its streams and its end. With a TTY, stderr is merged into stdout.
    An `attach` session has the same shape: its `wait` is 0 when the session ends (RuntimeFailure when the
    caller was dropped) and its `kill` detaches, leaving the process running."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    async def read_stdout(self) -> bytes: ...  # b"" at end of stream
    async def read_stderr(self) -> bytes: ...  # b"" at end of stream (always with a TTY)
    def resize(self, width: int, height: int) -> None: ...
    async def wait(self) -> int: ...  # the exit code
    async def kill(self) -> None: ...


class Runtime(Protocol):
    """A container runtime as the agent's pod manager and kubelet API use it."""

    name: str  # "none" or "process"

    async def start_pod(self, config: PodSandboxConfig) -> None:
        """Start (or keep running) the pod's init containers, then its containers, as its spec says."""
        ...

    async def stop_pod(self, pod_uid: str, grace_seconds: float) -> None:
        """Stop every container of the pod: SIGTERM (after preStop hooks), SIGKILL once the grace has run out."""
        ...

    def container_statuses(self, pod_uid: str) -> list[dict[str, Any]] | None:
        """The pod's `containerStatuses` as the kubelet reports them; None when the runtime has no such pod."""
        ...

    def pod_status(self, pod_uid: str) -> dict[str, Any] | None:
        """What the runtime knows of the pod's status: `phase`, `initContainerStatuses`, `containerStatuses`
        and `conditions` (type -> (status, reason, message) for Initialized, ContainersReady, Ready)."""
        ...

    def forget_pod(self, pod_uid: str) -> None:
        """Drop what the runtime keeps of a pod (after stop_pod); a process still running is killed."""
        ...

    async def close(self) -> None:
        """The agent is stopping: stop every container (a short grace), so that none outlives it."""
        ...

    async def exec(self, request: ExecRequest) -> ExecSession:
        """Start a command in a running container (RuntimeFailure when it cannot)."""
        ...

    async def attach(self, request: ExecRequest) -> ExecSession:
        """Attach to a running container's process (`request.tty` as the container's spec says; RuntimeFailure,
        worded as the CRI's, when it cannot)."""
        ...

    def log_path(self, pod_uid: str, container: str, previous: bool = False) -> Path | None:
        """The container's current (or previous instance's) log file in CRI format, if there is one."""
        ...

    async def open_port(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to `port` in the pod's network (port-forward)."""
        ...
