"""The process runtime: each container a local process in a sandbox of its own, run as the kubelet runs them.

A container's process is started by `sandbox.py` in new mount, PID and UTS namespaces (see there), and the agent,
a child subreaper, becomes the parent of its PID 1: it waits for it through a pidfd, reads its stdout and stderr
into CRI log files (`logs`), and signals it. A pod's init containers run one after the other, then its
containers start; a container that exits is started again as the pod's restartPolicy says, with the kubelet's
crash-loop back-off (`lifecycle`); probes decide `started` and `ready` and restart a container that fails its
liveness probe. Stopping a pod runs each container's preStop hook, sends SIGTERM, and SIGKILL once the grace
period is over. Containers run as nobody (65534) unless the pod's securityContext names a user; root only with
`allow_privileged`. A container whose spec says `stdin: true` has its stdin kept open (a pipe the agent holds),
one that says `tty: true` runs on a pseudo-terminal; `attach` sessions (`attach.py`) write that stdin and get the
output from the moment they attach, while it still goes to the log.

With a bridge pod network (`use_network`, podnet.py) each pod but a hostNetwork one gets a network namespace of
its own, made before its first container starts and removed once its containers stopped; every container joins
it, and probes and port-forward reach the pod at its own address.

As root the namespaces are the agent's to make; otherwise an unprivileged user namespace maps the agent's own
user to root inside (and the container runs as that user: runAsUser cannot be honoured then).
`runtime_available` says why neither is possible on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import pty
import pwd
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kubesat.agent import envvars
from kubesat.agent.netns import NETNS_DIR, PodNetwork, PodNetworkError
from kubesat.agent.runtime import (ExecRequest, ExecSession, PodSandboxConfig, RuntimeFailure, attach, lifecycle, logs,
                                   probes, write_hosts_file)
from kubesat.agent.runtime.execs import ExecHelpers
from kubesat.agent.runtime.mounts import MountError, plan
from kubesat.agent.runtime.hostpath import check_type

log = logging.getLogger("kubesat.agent")

SANDBOX = str(Path(__file__).with_name("sandbox.py"))
HELPER = [sys.executable, "-I", "-S", SANDBOX]
NOBODY = 65534
# A container without a command: kept running, idle, and gone at SIGTERM (it is its sandbox's PID 1, which
# ignores signals it has no handler for).
IDLE = ["/bin/sh", "-c", 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done']
READ_CHUNK = 65536
PRIVATE_DIRS = ("/tmp", "/var/tmp")  # each container has its own, empty, in memory
STOP_ON_CLOSE = 2.0  # grace given to every container when the agent stops
_PR_SET_CHILD_SUBREAPER = 36
# The C library as the interpreter has it loaded (not ctypes.util.find_library, which runs `ldconfig -p`).
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def runtime_available() -> str | None:
    """None when `--runtime process` can work here, else the reason it cannot and the fix, in one line."""
    if sys.platform != "linux":
        return "the process runtime needs Linux namespaces; use --runtime none"
    if _LIBC is None:
        return "the C library cannot be loaded for the namespace calls; use --runtime none"
    if os.geteuid() == 0:
        return None
    probe = subprocess.run(HELPER[:3] + ["-c", _USERNS_PROBE], capture_output=True, timeout=20, check=False)
    if probe.returncode != 0:
        why = probe.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
        return (f"unprivileged user namespaces are not available ({why[0]}): run the agent as root, or allow "
                "them (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0), or use "
                "--runtime none")
    return None


_USERNS_PROBE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x00020000) != 0:
    sys.exit(os.strerror(ctypes.get_errno()))
"""


def _subreaper() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _read_all(fd: int, limit: int = 65536) -> bytes:
    out = b""
    with contextlib.suppress(OSError):
        while len(out) < limit:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            out += chunk
    os.close(fd)
    return out


@dataclass
class _Stdio:
    """A container process's stdin, stdout and stderr: what the sandbox helper is given (`child`), what the agent
    reads (stream name -> descriptor) and where it writes the container's stdin. With a TTY all three are a
    pseudo-terminal, read and written through its master; else pipes, and stdin a pipe kept open only when the
    spec asks for `stdin` (/dev/null otherwise)."""

    child: tuple[int, int, int]
    reads: dict[str, int]
    stdin: int | None

    @classmethod
    def open(cls, tty: bool, keep_stdin: bool) -> _Stdio:
        if tty:
            master, slave = pty.openpty()
            return cls((slave, slave, slave), {"stdout": master}, os.dup(master))
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if keep_stdin else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None)
        return cls((in_r, out_w, err_w), {"stdout": out_r, "stderr": err_r}, in_w)

    def close_child(self) -> None:
        for fd in set(self.child):
            os.close(fd)

    def close_agent(self) -> None:
        for fd in [*self.reads.values(), *([self.stdin] if self.stdin is not None else [])]:
            os.close(fd)


@dataclass
class _Instance:
    """One run of a container: its sandbox's PID 1, its log, its stdio for attach sessions, its end."""

    id: str
    pid: int
    pidfd: int
    log: logs.ContainerLog
    io: attach.ContainerIO
    started_at: float
    exited: asyncio.Future[int]
    streams_done: asyncio.Event = field(default_factory=asyncio.Event)
    open_streams: int = 0
    killed_by_probe: str = ""

    async def output_done(self) -> None:
        """After the process's exit: its output read to the end (2 s at most), its log closed, sessions ended."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.streams_done.wait(), 2.0)
        self.log.close()
        self.io.end()


@dataclass
class _Container:
    spec: dict[str, Any]
    init: bool
    argv: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    groups: list[int]
    mounts: list[dict[str, Any]]
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    instance: _Instance | None = None
    instance_id: str = ""
    probe_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    terminated_ever: bool = False
    config_error: str = ""  # why the node refuses to start it (CreateContainerConfigError)
    last_log: Path | None = None  # the log of the instance lastState describes

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))


@dataclass
class _Pod:
    config: PodSandboxConfig
    containers: dict[str, _Container]
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    backoff: lifecycle.CrashBackoff = field(default_factory=lifecycle.CrashBackoff)
    address: str = ""  # its own IP (bridge pod network); "" in the host's network
    netns: str = ""  # its network namespace's path, which every container joins

    @property
    def uid(self) -> str:
        return str(self.config.pod["metadata"]["uid"])

    @property
    def dir(self) -> Path:
        return self.config.log_dir.parent


class ProcessRuntime:
    """See the module's docstring."""

    name = "process"

    def __init__(self, root: Path, masks: Sequence[Path] = (), allow_privileged: bool = False,
                 allow_host_paths: Sequence[Path] = (), pod_address: str = "127.0.0.1",
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.masks = [str(Path(m).absolute()) for m in [root, *masks]]
        self.allow_privileged = allow_privileged
        self.allow_host_paths = list(allow_host_paths)
        self.pod_address = pod_address
        self.clock = clock
        self.userns = os.geteuid() != 0
        self.pods: dict[str, _Pod] = {}
        self.network: PodNetwork | None = None  # the bridge pod network (use_network); None: the host's network
        self._http = httpx.AsyncClient(verify=False, follow_redirects=False)  # noqa: S501 - probes, as the kubelet's
        self.execs = ExecHelpers(HELPER)  # exec sessions, probes and hooks
        _subreaper()
        self._kill_leftovers()

    def use_network(self, network: PodNetwork) -> None:
        """Give each pod (but hostNetwork ones) a network namespace of its own on this bridge network."""
        self.network = network

    # ------------------------------------------------------------------ the Runtime interface
    async def start_pod(self, config: PodSandboxConfig) -> None:
        uid = str(config.pod["metadata"]["uid"])
        if uid in self.pods:
            self.pods[uid].config.pod = config.pod
            return
        containers = {}
        spec = config.pod.get("spec") or {}
        for init, c in [(True, c) for c in spec.get("initContainers") or []] + \
                       [(False, c) for c in spec.get("containers") or []]:
            containers[str(c.get("name", ""))] = self._container(config, c, init)
        pod = self.pods[uid] = _Pod(config, containers)
        if any(c.init for c in containers.values()):
            for c in containers.values():
                c.state = {"waiting": {"reason": "PodInitializing"}}
        pod.task = asyncio.create_task(self._run_pod(pod))

    def _container(self, config: PodSandboxConfig, c: dict[str, Any], init: bool) -> _Container:
        """What a container is started with; a configuration the node refuses leaves it waiting with the reason
        (CreateContainerConfigError) and raises RuntimeFailure."""
        env = dict(config.environments.get(str(c.get("name", ""))) or {})
        uid, gid, groups = _identity(config.pod, c)
        ctr = _Container(c, init, [], env, uid, gid, groups, [])
        try:
            ctr.argv = envvars.command_line(c, env)
            if uid == 0 and not self.allow_privileged and not self.userns:
                raise MountError("container's runAsUser is 0 (root), which this node does not allow "
                                 "(kubesat agent --allow-privileged)")
            if (c.get("securityContext") or {}).get("privileged") is True and not self.allow_privileged:
                raise MountError("privileged containers are not allowed on this node (kubesat agent "
                                 "--allow-privileged)")
            sources = {n: str(v.host_path) for n, v in config.volumes.items() if not _on_host(config, n)}
            host_paths = {n: str(v.host_path) for n, v in config.volumes.items() if _on_host(config, n)}
            ctr.mounts = [m.spec() for m in plan(c, sources, host_paths, self.allow_host_paths,
                                                 lambda n, path: check_type(path, config.volumes[n].host_type))]
        except (MountError, envvars.EnvError) as e:
            ctr.config_error = str(e)
        return ctr

    async def stop_pod(self, pod_uid: str, grace_seconds: float) -> None:
        pod = self.pods.get(pod_uid)
        if pod is None:
            return
        pod.stopping = True
        if pod.task is not None:
            pod.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pod.task
        deadline = time.monotonic() + max(0.0, grace_seconds)
        await asyncio.gather(*(self._stop_container(pod, c, deadline) for c in pod.containers.values()
                               if c.instance is not None))
        if self.network is not None and pod.netns:
            await asyncio.to_thread(self.network.detach, pod_uid)
            pod.netns = ""
        self._notify(pod)

    def container_statuses(self, pod_uid: str) -> list[dict[str, Any]] | None:
        status = self.pod_status(pod_uid)
        return None if status is None else status["containerStatuses"]

    def pod_status(self, pod_uid: str) -> dict[str, Any] | None:
        pod = self.pods.get(pod_uid)
        if pod is None:
            return None
        inits = [self._status(c) for c in pod.containers.values() if c.init]
        regular = sorted((self._status(c) for c in pod.containers.values() if not c.init), key=lambda s: s["name"])
        phase = lifecycle.phase(pod.config.pod, inits, regular)
        status: dict[str, Any] = {"phase": phase, "initContainerStatuses": inits, "containerStatuses": regular,
                                  "conditions": lifecycle.conditions(pod.config.pod, phase, inits, regular)}
        if pod.address:
            status["podIP"] = pod.address
        return status

    def forget_pod(self, pod_uid: str) -> None:
        if self.network is not None:  # its address may be reserved before it started
            self.network.detach_soon(pod_uid)
        pod = self.pods.pop(pod_uid, None)
        if pod is None:
            return
        if pod.task is not None:
            pod.task.cancel()
        for c in pod.containers.values():
            self._cancel_probes(c)
            if c.instance is not None:
                _signal(c.instance, signal.SIGKILL)
                c.instance.io.end()  # no supervisor is left to do it at the exit

    async def close(self) -> None:
        await asyncio.gather(*(self.stop_pod(uid, STOP_ON_CLOSE) for uid in list(self.pods)))
        for uid in list(self.pods):
            self.forget_pod(uid)
        await self._http.aclose()
        await self.execs.close()

    def log_path(self, pod_uid: str, container: str, previous: bool = False) -> Path | None:
        pod = self.pods.get(pod_uid)
        c = pod.containers.get(container) if pod else None
        if pod is None or c is None:
            return None
        if previous:  # the instance lastState.terminated describes, as the kubelet reads it
            if not c.last_state or c.last_log is None:
                return None
            path = c.last_log
        else:
            path = logs.log_file(pod.config.log_dir, container, c.restart_count)
        return path if path.exists() else None

    async def exec(self, request: ExecRequest) -> ExecSession:
        pod = self.pods.get(request.pod_uid)
        c = pod.containers.get(request.container) if pod else None
        if pod is None or c is None or c.instance is None or c.instance.exited.done():
            raise RuntimeFailure(f'container not found ("{request.container}")')
        spec = self._exec_spec(pod, c, request.command, request.tty)
        return await self.execs.start(spec, c.instance.pidfd, request)

    async def attach(self, request: ExecRequest) -> ExecSession:
        """A session on the container's process (see `attach`), refused in the CRI's words (the kubelet relays
        its gRPC errors as they read)."""
        if request.tty and request.stderr:
            raise RuntimeFailure("rpc error: code = InvalidArgument desc = tty and stderr cannot both be true")
        pod = self.pods.get(request.pod_uid)
        c = pod.containers.get(request.container) if pod else None
        if pod is None or c is None:
            raise RuntimeFailure(f'rpc error: code = NotFound desc = container "{request.container}" not found')
        if c.instance is None or c.instance.exited.done():
            raise RuntimeFailure("rpc error: code = Unknown desc = container is in CONTAINER_EXITED state")
        try:
            return c.instance.io.attach(request.stdin, request.stdout, request.stderr)
        except RuntimeFailure as e:
            raise RuntimeFailure(f"rpc error: code = Unknown desc = {e}") from None

    async def open_port(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if pod_uid not in self.pods:
            raise RuntimeFailure(f"pod {pod_uid} not found")
        try:
            return await asyncio.open_connection(self._address(self.pods[pod_uid]), port)
        except OSError as e:
            raise RuntimeFailure(f"failed to connect to localhost:{port} inside namespace of pod: {e}") from None

    # ------------------------------------------------------------------ a pod's life
    async def _run_pod(self, pod: _Pod) -> None:
        try:
            if not await self._network_up(pod):
                return
            for c in [c for c in pod.containers.values() if c.init]:
                if not await self._run_init(pod, c):
                    return
            regular = [c for c in pod.containers.values() if not c.init]
            await asyncio.gather(*(self._keep(pod, c) for c in regular))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not leave the pod silently half-started
            log.exception("the containers of pod %s stopped being supervised", lifecycle.pod_full_name(pod.config.pod))

    async def _network_up(self, pod: _Pod) -> bool:
        """The pod's network namespace on the bridge network (none needed in the host's network); False when it
        cannot be made, the reason shown on its containers and in an Event."""
        if self.network is None or (pod.config.pod.get("spec") or {}).get("hostNetwork"):
            return True
        try:
            pod.netns = await asyncio.to_thread(self.network.attach, pod.uid)
        except PodNetworkError as e:
            message = f"Failed to create pod sandbox: {e}"
            self._event(pod, "Warning", "FailedCreatePodSandBox", message, None)
            for c in pod.containers.values():
                c.state = {"waiting": {"reason": "ContainerCreating", "message": message}}
            self._notify(pod)
            return False
        pod.address = self.network.address(pod.uid) or ""
        self._notify(pod)
        return True

    def _address(self, pod: _Pod) -> str:
        """Where the agent reaches the pod (probes, port-forward): its own IP, else the node's."""
        return pod.address or self.pod_address

    async def _run_init(self, pod: _Pod, c: _Container) -> bool:
        """Run an init container until it succeeds (True), or fails for good under restartPolicy Never."""
        policy = lifecycle.restart_policy(pod.config.pod)
        while not pod.stopping:
            code = await self._run_once(pod, c)
            if code is None:
                return False
            if code == 0:
                return True
            if not lifecycle.should_restart(policy, code, init=True):
                return False
            await self._back_off(pod, c)
        return False

    async def _keep(self, pod: _Pod, c: _Container) -> None:
        policy = lifecycle.restart_policy(pod.config.pod)
        while not pod.stopping:
            code = await self._run_once(pod, c)
            if code is None or not lifecycle.should_restart(policy, code):
                return
            await self._back_off(pod, c)

    async def _back_off(self, pod: _Pod, c: _Container) -> None:
        """Wait as the crash-loop back-off says (CrashLoopBackOff meanwhile), then count the restart."""
        key = f"{pod.uid}/{c.name}"
        finished = float(c.state.get("terminated", {}).get("_finished", self.clock()))
        wait = pod.backoff.wait(key, finished, self.clock())
        if wait > 0:
            c.last_state = {"terminated": _public(c.state["terminated"])}
            c.last_log = logs.log_file(pod.config.log_dir, c.name, c.restart_count)
            c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": lifecycle.backoff_message(
                pod.backoff.current(key), c.name, pod.config.pod)}}
            self._event(pod, "Warning", "BackOff", lifecycle.backoff_event(c.name, pod.config.pod), c.name)
            self._notify(pod)
            await asyncio.sleep(wait)
        pod.backoff.next(key, finished, self.clock())

    async def _run_once(self, pod: _Pod, c: _Container) -> int | None:
        """Start the container, wait for its end, record it; its exit code (None: it could not be started)."""
        if c.config_error:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": c.config_error}}
            self._event(pod, "Warning", "Failed", f"Error: {c.config_error}", c.name)
            self._notify(pod)
            return None
        if c.terminated_ever:
            c.last_state = {"terminated": _public(c.state.get("terminated") or
                                                  c.last_state.get("terminated") or {})}
            c.last_log = logs.log_file(pod.config.log_dir, c.name, c.restart_count)
            c.restart_count += 1
            logs.remove_instance(pod.config.log_dir, c.name, c.restart_count - 2)
        try:
            inst = await self._spawn(pod, c)
        except RuntimeFailure as e:
            now = self.clock()
            c.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": str(e),
                                      "startedAt": _rfc3339(now), "finishedAt": _rfc3339(now),
                                      "containerID": _container_id(c.instance_id), "_finished": now}}
            c.terminated_ever = True
            self._event(pod, "Warning", "Failed", f"Error: {e}", c.name)
            self._notify(pod)
            return 128
        c.instance = inst
        c.state = {"running": {"startedAt": _rfc3339(inst.started_at)}}
        c.started = not isinstance(c.spec.get("startupProbe"), dict)
        c.ready = c.started and not isinstance(c.spec.get("readinessProbe"), dict)
        self._event(pod, "Normal", "Started", f"Started container {c.name}", c.name)
        if not _argv(c.spec):
            self._event(pod, "Normal", "EntrypointNotRun", _no_command_message(c.spec), c.name)
        self._notify(pod)
        self._start_probes(pod, c, inst)
        code = await asyncio.shield(inst.exited)
        await inst.output_done()
        self._cancel_probes(c)
        finished = self.clock()
        c.state = {"terminated": {
            "exitCode": code, "reason": lifecycle.terminated_reason(code), "startedAt": _rfc3339(inst.started_at),
            "finishedAt": _rfc3339(finished), "containerID": _container_id(inst.id), "_finished": finished}}
        c.terminated_ever = True
        c.ready = False
        c.instance = None
        self._notify(pod)
        return code

    # ------------------------------------------------------------------ processes
    def _spec(self, pod: _Pod, c: _Container) -> dict[str, Any]:
        hosts = pod.dir / "etc-hosts"
        mounts = list(c.mounts)
        if hosts.exists():
            mounts.append({"source": str(hosts), "subPath": "", "target": "/etc/hosts", "readOnly": True})
        tty = c.spec.get("tty") is True
        env = {**c.env, "TERM": c.env.get("TERM", "xterm")} if tty else c.env  # as containerd's WithTTY
        return {"mounts": mounts, "masks": self.masks, "scratch": str(pod.dir), "argv": c.argv or IDLE,
                "private": list(PRIVATE_DIRS), "tty": tty,
                "env": env, "uid": c.uid, "gid": c.gid, "groups": c.groups, "userns": self.userns,
                "cwd": str(c.spec.get("workingDir") or ""), "hostname": _hostname(pod.config.pod),
                "netns": pod.netns, "detach": [str(NETNS_DIR)] if self.network is not None else []}

    def _exec_spec(self, pod: _Pod, c: _Container, command: list[str], tty: bool) -> dict[str, Any]:
        env = dict(c.env)
        if tty:
            env.setdefault("TERM", "xterm")
        return {"argv": command, "env": env, "uid": c.uid, "gid": c.gid, "groups": c.groups, "tty": tty,
                "userns": self.userns, "cwd": str(c.spec.get("workingDir") or ""), "netns": pod.netns}

    def _write_hosts(self, pod: _Pod) -> None:
        write_hosts_file(pod.dir / "etc-hosts", pod.config.hosts_entries)

    async def _spawn(self, pod: _Pod, c: _Container) -> _Instance:
        if c.instance_id == "" or c.terminated_ever:
            c.instance_id = uuid.uuid4().hex
        self._write_hosts(pod)
        spec_file = pod.dir / f".sandbox-{c.instance_id}.json"
        fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._spec(pod, c), f)
        log_file = logs.ContainerLog(logs.log_file(pod.config.log_dir, c.name, c.restart_count))
        tty = c.spec.get("tty") is True
        try:
            stdio = _Stdio.open(tty, c.spec.get("stdin") is True)
        except OSError as e:  # out of descriptors or pseudo-terminals
            log_file.close()
            raise RuntimeFailure(f"could not open the container's stdio: {e}") from None
        rep_r, rep_w = os.pipe()
        fail_r, fail_w = os.pipe()
        try:
            helper = await asyncio.create_subprocess_exec(
                *HELPER, "run", str(spec_file), str(rep_w), str(fail_w), stdin=stdio.child[0],
                stdout=stdio.child[1], stderr=stdio.child[2], pass_fds=(rep_w, fail_w))
        except OSError as e:
            for fd_ in (rep_r, rep_w, fail_r, fail_w):
                os.close(fd_)
            stdio.close_child()
            stdio.close_agent()
            log_file.close()
            raise RuntimeFailure(f"could not start the sandbox helper: {e}") from None
        stdio.close_child()
        for fd_ in (rep_w, fail_w):
            os.close(fd_)
        await helper.wait()
        loop = asyncio.get_running_loop()
        reported = await loop.run_in_executor(None, _read_all, rep_r)
        if not reported.strip().isdigit():
            failure = (await loop.run_in_executor(None, _read_all, fail_r)).decode(errors="replace")
            stdio.close_agent()
            log_file.close()
            raise RuntimeFailure(failure or f"the sandbox helper exited with status {helper.returncode}")
        pid = int(reported)
        pidfd = os.pidfd_open(pid)
        io = attach.ContainerIO(c.name, stdio.stdin, c.spec.get("stdin") is True, tty, c.spec.get("stdinOnce") is True)
        inst = _Instance(c.instance_id, pid, pidfd, log_file, io, self.clock(), loop.create_future())
        self._pid_file(pod, c, pid)
        loop.add_reader(pidfd, self._reap, inst)
        for stream, fd_ in stdio.reads.items():
            self._pump(inst, fd_, stream)
        failure = (await loop.run_in_executor(None, _read_all, fail_r)).decode(errors="replace")
        if failure:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(inst.exited), 5.0)
            await inst.output_done()
            raise RuntimeFailure(failure)
        return inst

    def _pid_file(self, pod: _Pod, c: _Container, pid: int) -> None:
        """Where a later run of the agent finds the processes an agent killed -9 left behind."""
        with contextlib.suppress(OSError):
            (pod.dir / f".pid-{c.name}").write_text(f"{pid} {_start_time(pid)}")

    def _kill_leftovers(self) -> None:
        for pid_file in self.root.glob("pods/*/.pid-*"):
            with contextlib.suppress(OSError, ValueError):
                pid, start = pid_file.read_text().split()
                if _start_time(int(pid)) == start:
                    log.warning("killing container process %s left by an earlier run of the agent", pid)
                    os.kill(int(pid), signal.SIGKILL)
                pid_file.unlink()

    def _reap(self, inst: _Instance) -> None:
        loop = asyncio.get_running_loop()
        try:
            info = os.waitid(os.P_PIDFD, inst.pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            info = None
        if info is None:
            return
        loop.remove_reader(inst.pidfd)
        os.close(inst.pidfd)
        inst.pidfd = -1
        code = info.si_status if info.si_code == os.CLD_EXITED else 128 + info.si_status
        if not inst.exited.done():
            inst.exited.set_result(code)

    def _pump(self, inst: _Instance, fd: int, stream: str) -> None:
        """The container's stream into its log and its attached sessions, as it comes (a terminal's master
        reads EIO once the process is gone: the end, as for a pipe)."""
        loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        inst.open_streams += 1

        def readable() -> None:
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                inst.log.write(stream, data)
                inst.io.publish(stream, data)
                return
            loop.remove_reader(fd)
            os.close(fd)
            inst.log.close_stream(stream)
            inst.open_streams -= 1
            if inst.open_streams == 0:
                inst.streams_done.set()
                inst.io.end_output()
        loop.add_reader(fd, readable)

    # ------------------------------------------------------------------ stopping
    async def _stop_container(self, pod: _Pod, c: _Container, deadline: float) -> None:
        inst = c.instance
        if inst is None:
            return
        self._cancel_probes(c)
        self._event(pod, "Normal", "Killing", f"Stopping container {c.name}", c.name)
        hook = ((c.spec.get("lifecycle") or {}).get("preStop") or {})
        if isinstance(hook.get("exec"), dict) and not inst.exited.done():
            command = [str(a) for a in hook["exec"].get("command") or []]
            remaining = deadline - time.monotonic()
            if command and remaining > 0:
                await self._hook(pod, c, command, remaining)
        elif isinstance(hook.get("sleep"), dict):
            await asyncio.sleep(min(float(hook["sleep"].get("seconds", 0)), max(0.0, deadline - time.monotonic())))
        _signal(inst, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(inst.exited), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            _signal(inst, signal.SIGKILL)
        code = await asyncio.shield(inst.exited)
        await inst.output_done()
        finished = self.clock()
        c.state = {"terminated": {
            "exitCode": code, "reason": lifecycle.terminated_reason(code), "startedAt": _rfc3339(inst.started_at),
            "finishedAt": _rfc3339(finished), "containerID": _container_id(inst.id), "_finished": finished}}
        c.ready = False
        c.instance = None

    async def _hook(self, pod: _Pod, c: _Container, command: list[str], timeout: float) -> None:
        try:
            code, out = await self._run_in(pod, c, command, timeout)
        except (RuntimeFailure, TimeoutError) as e:
            code, out = -1, str(e).encode()
        if code != 0:
            self._event(pod, "Warning", "FailedPreStopHook",
                        f"PreStopHook failed: command {command!r} exited with {code}: "
                        f"{out[:1024].decode(errors='replace')}", c.name)

    async def _run_in(self, pod: _Pod, c: _Container, command: list[str], timeout: float) -> tuple[int, bytes]:
        """Run a command in the container (hooks, exec probes): its exit code and output, within `timeout`."""
        if c.instance is None or c.instance.pidfd < 0:
            raise RuntimeFailure(f'container not found ("{c.name}")')
        session = await self.execs.start(self._exec_spec(pod, c, command, False), c.instance.pidfd,
                                         ExecRequest(pod.uid, c.name, command))
        readers = [asyncio.create_task(_drain(session.read_stdout)), asyncio.create_task(_drain(session.read_stderr))]
        try:
            out, _ = await asyncio.wait_for(asyncio.gather(*readers), timeout)
            return await asyncio.wait_for(session.wait(), timeout), out
        except (TimeoutError, asyncio.CancelledError):
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await session.kill()
            raise

    # ------------------------------------------------------------------ probes
    def _start_probes(self, pod: _Pod, c: _Container, inst: _Instance) -> None:
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.spec.get(kind)
            if isinstance(probe, dict):
                c.probe_tasks.append(asyncio.create_task(self._probe_loop(pod, c, inst, kind, probe)))

    def _cancel_probes(self, c: _Container) -> None:
        for task in c.probe_tasks:
            task.cancel()
        c.probe_tasks = []

    async def _probe_loop(self, pod: _Pod, c: _Container, inst: _Instance, kind: str, probe: dict[str, Any]) -> None:
        timing = probes.ProbeTiming.of(probe)
        prober = probes.Prober(timing, initial=kind == "livenessProbe")
        word = {"startupProbe": "Startup", "livenessProbe": "Liveness", "readinessProbe": "Readiness"}[kind]
        await asyncio.sleep(timing.initial_delay)
        while c.instance is inst:
            if kind != "startupProbe" and not c.started:
                await asyncio.sleep(min(timing.period, 1.0))
                continue
            ok, output = await probes.probe_once(probe, c.spec, self._address(pod),
                                                 lambda cmd, t: self._run_in(pod, c, cmd, t), self._http)
            if not ok:
                self._event(pod, "Warning", "Unhealthy", f"{word} probe failed: {output}"[:1024], c.name)
            flipped = prober.record(ok)
            if flipped is not None and self._probe_result(pod, c, inst, kind, flipped):
                return
            await asyncio.sleep(timing.period)

    def _probe_result(self, pod: _Pod, c: _Container, inst: _Instance, kind: str, ok: bool) -> bool:
        """Act on a probe whose result flipped; True when the probe is done with this instance."""
        if kind == "readinessProbe":
            c.ready = ok
            self._notify(pod)
            return False
        if kind == "startupProbe" and ok:
            c.started = True
            c.ready = not isinstance(c.spec.get("readinessProbe"), dict)
            self._notify(pod)
            return True
        word = "startup" if kind == "startupProbe" else "liveness"
        self._event(pod, "Normal", "Killing", f"Container {c.name} failed {word} probe, will be restarted", c.name)
        grace = float((pod.config.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30) or 0)
        asyncio.create_task(self._kill_instance(inst, grace))
        return True

    async def _kill_instance(self, inst: _Instance, grace: float) -> None:
        _signal(inst, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(inst.exited), grace)
        except TimeoutError:
            _signal(inst, signal.SIGKILL)

    # ------------------------------------------------------------------ reporting
    def _notify(self, pod: _Pod) -> None:
        if pod.config.notify is not None:
            pod.config.notify()

    def _event(self, pod: _Pod, kind: str, reason: str, message: str, container: str | None) -> None:
        if pod.config.record_event is not None:
            pod.config.record_event(kind, reason, message, container)

    def _status(self, c: _Container) -> dict[str, Any]:
        state = {k: _public(v) for k, v in c.state.items()}
        status: dict[str, Any] = {
            "name": c.name, "state": state, "lastState": c.last_state, "ready": c.ready,
            "restartCount": c.restart_count, "image": str(c.spec.get("image", "")), "imageID": "",
            "started": c.started and "running" in c.state,
        }
        if c.instance_id:
            status["containerID"] = _container_id(c.instance_id)
        return status


async def _drain(read: Callable[[], Any]) -> bytes:
    out = b""
    while True:
        chunk = await read()
        if not chunk:
            return out
        if len(out) < probes.MAX_OUTPUT:
            out += chunk


# -- helpers ----------------------------------------------------------------------------------------------------

def _argv(c: dict[str, Any]) -> list[str]:
    return [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]


def _no_command_message(c: dict[str, Any]) -> str:
    return (f'Container {c.get("name", "")} has no command: the entrypoint of image "{c.get("image", "")}" did not '
            "run (kubesat runs the host's programs, not images); the container is kept running idle so that "
            "exec works")


def _on_host(config: PodSandboxConfig, name: str) -> bool:
    """A path of the host: the volume says so, or it is the pod's hostPath volume."""
    if config.volumes[name].on_host:
        return True
    for v in (config.pod.get("spec") or {}).get("volumes") or []:
        if isinstance(v, dict) and v.get("name") == name:
            return "hostPath" in v
    return False


def _identity(pod: dict[str, Any], c: dict[str, Any]) -> tuple[int, int, list[int]]:
    """(uid, gid, supplementary groups): the container's securityContext over the pod's; nobody by default."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = c.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if not isinstance(uid, int) or isinstance(uid, bool) or uid < 0:
        uid = NOBODY
    if not isinstance(gid, int) or isinstance(gid, bool) or gid < 0:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = NOBODY if uid == NOBODY else uid
    groups = [g for g in pod_sc.get("supplementalGroups") or [] if isinstance(g, int) and g >= 0][:32]
    fs_group = pod_sc.get("fsGroup")
    if isinstance(fs_group, int) and fs_group >= 0 and fs_group not in groups:
        groups.append(fs_group)
    return uid, gid, groups


def _hostname(pod: dict[str, Any]) -> str:
    name = str((pod.get("spec") or {}).get("hostname") or (pod.get("metadata") or {}).get("name", ""))
    return name[:63].rstrip("-.")


def _signal(inst: _Instance, sig: int) -> None:
    if inst.pidfd >= 0:
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(inst.pidfd, sig)


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _public(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith("_")}


def _container_id(instance_id: str) -> str:
    return f"kubesat://{instance_id}"


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
