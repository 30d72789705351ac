"""The process runtime's exec sessions: a command run in a running container (`kubectl exec`, exec probes, hooks).

Each runs through the sandbox helper's `exec` mode (see `sandbox.py`), one helper per command. Starting the helper
(a fresh `python -I -S`: the interpreter and its imports) took 20-50 ms on a 2-core machine, most of an exec's time,
so it is started before it is needed: one helper waits on a socket pair, and an exec hands it the container's
pidfd and the command's stdin, stdout and stderr (SCM_RIGHTS) and then the spec (the command, its environment,
user and directory, so never written to a file), while the next helper is started. The helper is the agent's
child as before: its exit status is the command's. When no helper is waiting (the first exec, or several at
once) one is started there and then; a waiting helper that has died meanwhile is replaced the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import socket
import struct
import subprocess
import termios
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubesat.agent.runtime import ExecRequest, RuntimeFailure

READ_CHUNK = 65536
KILL_GRACE = 2.0  # after SIGTERM, before SIGKILL
CLOSE_WAIT = 2.0  # for a waiting helper to leave once its socket is closed


@dataclass
class _Streams:
    """The command's stdin, stdout and stderr: what the helper is given (`child`, closed here once handed over)
    and the agent's ends ("stdin" written, "stdout" and "stderr" read; "tty": a pseudo-terminal's master, which is
    all three). A stream the request does not ask for is /dev/null."""

    child: list[int]
    agent: dict[str, int]

    @classmethod
    def open(cls, request: ExecRequest) -> _Streams:
        if request.tty:
            master, slave = pty.openpty()
            return cls([slave, slave, slave], {"tty": master})
        streams = cls([], {})
        try:
            for name, wanted, agent_reads in (("stdin", request.stdin, False), ("stdout", request.stdout, True),
                                              ("stderr", request.stderr, True)):
                if not wanted:
                    streams.child.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
                    continue
                r, w = os.pipe()
                streams.child.append(w if agent_reads else r)
                streams.agent[name] = r if agent_reads else w
        except OSError:
            streams.close_child()
            streams.close_agent()
            raise
        return streams

    def close_child(self) -> None:
        for fd in set(self.child):
            os.close(fd)
        self.child = []

    def close_agent(self) -> None:
        for fd in self.agent.values():
            os.close(fd)
        self.agent = {}


class _Waiting:
    """A helper started in `exec` mode, waiting for its request on the other end of `sock`."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock

    async def send(self, payload: bytes, fds: list[int]) -> None:
        """The request: its length with the descriptors attached, then the spec."""
        socket.send_fds(self.sock, [struct.pack("!I", len(payload))], fds)
        await asyncio.get_running_loop().sock_sendall(self.sock, payload)
        self.sock.close()

    async def discard(self) -> None:
        """Close its socket (a helper without a request leaves) and wait for it to go."""
        self.sock.close()
        try:
            await asyncio.wait_for(self.proc.wait(), CLOSE_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class ExecHelpers:
    """Starts exec sessions, each through its own helper; keeps one helper started ahead of the next exec."""

    def __init__(self, helper: Sequence[str]) -> None:
        self.helper = list(helper)  # the interpreter and sandbox.py, as the runtime runs it
        self._spare: asyncio.Task[_Waiting] | None = None
        self._closed = False

    async def start(self, spec: dict[str, Any], pidfd: int, request: ExecRequest) -> ProcessExec:
        """Run `spec`'s command in the namespaces of the process `pidfd` refers to, streams as `request` asks."""
        payload = json.dumps(spec).encode()
        streams = _Streams.open(request)
        try:
            proc = await self._hand_over(payload, [pidfd, *streams.child])
        except BaseException:
            streams.close_agent()
            raise
        finally:
            streams.close_child()
        return await ProcessExec.open(proc, streams.agent)

    async def close(self) -> None:
        self._closed = True
        spare, self._spare = self._spare, None
        if spare is not None:
            with contextlib.suppress(RuntimeFailure):
                await (await spare).discard()

    async def _hand_over(self, payload: bytes, fds: list[int]) -> asyncio.subprocess.Process:
        error: OSError | None = None
        for _ in range(2):  # a waiting helper may have died meanwhile (killed, out of memory): then a new one
            helper = await self._take()
            self._refill()
            try:
                await helper.send(payload, fds)
            except OSError as e:
                error = e
                await helper.discard()
                continue
            except BaseException:
                await helper.discard()
                raise
            return helper.proc
        raise RuntimeFailure(f"could not start the sandbox helper: {error}")

    async def _take(self) -> _Waiting:
        spare, self._spare = self._spare, None
        if spare is not None:
            try:
                helper = await asyncio.shield(spare)  # its start is not the caller's to cancel
            except RuntimeFailure:
                pass
            except asyncio.CancelledError:
                if self._spare is None:
                    self._spare = spare
                raise
            else:
                if helper.proc.returncode is None:
                    return helper
                await helper.discard()
        return await self._spawn()

    def _refill(self) -> None:
        if self._spare is None and not self._closed:
            self._spare = asyncio.create_task(self._spawn())

    async def _spawn(self) -> _Waiting:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.helper, "exec", str(theirs.fileno()), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),))
        except OSError as e:
            ours.close()
            raise RuntimeFailure(f"could not start the sandbox helper: {e}") from None
        finally:
            theirs.close()
        ours.setblocking(False)
        return _Waiting(proc, ours)


class ProcessExec:
    """An ExecSession: the helper's exit status, and the command's pipes (or a pseudo-terminal's master)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.master: int | None = None
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._pty_queue: asyncio.Queue[bytes] | None = None

    @classmethod
    async def open(cls, proc: asyncio.subprocess.Process, ends: dict[str, int]) -> ProcessExec:
        """The session over the agent's ends of the streams (each is taken over, closed with its transport)."""
        loop = asyncio.get_running_loop()
        session = cls(proc)
        try:
            if "tty" in ends:
                session.master = ends.pop("tty")
                session._start_pty_reader()
            if "stdout" in ends:
                session.stdout = await _reader(ends.pop("stdout"))
            if "stderr" in ends:
                session.stderr = await _reader(ends.pop("stderr"))
            if "stdin" in ends:
                transport, protocol = await loop.connect_write_pipe(
                    lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
                    os.fdopen(ends.pop("stdin"), "wb", buffering=0))
                session.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        except BaseException:
            for fd in ends.values():
                os.close(fd)
            await session.kill()
            raise
        return session

    def _start_pty_reader(self) -> None:
        assert self.master is not None
        master = self.master
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._pty_queue = queue
        loop = asyncio.get_running_loop()
        os.set_blocking(master, False)

        def readable() -> None:
            try:
                data = os.read(master, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
            queue.put_nowait(data)
        loop.add_reader(master, readable)

    async def write_stdin(self, data: bytes) -> None:
        if self.master is not None:
            os.write(self.master, data)
        elif self.stdin is not None:
            self.stdin.write(data)
            await self.stdin.drain()

    async def close_stdin(self) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x04")
        elif self.stdin is not None:
            self.stdin.close()

    async def read_stdout(self) -> bytes:
        if self._pty_queue is not None:
            return await self._pty_queue.get()
        if self.stdout is None:
            return b""
        return await self.stdout.read(READ_CHUNK)

    async def read_stderr(self) -> bytes:
        if self.master is not None or self.stderr is None:
            return b""
        return await self.stderr.read(READ_CHUNK)

    def resize(self, width: int, height: int) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        code = await self.proc.wait()
        if self.master is not None and self._pty_queue is not None:
            self._pty_queue.put_nowait(b"")
        return code if code >= 0 else 128 - code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), KILL_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
        if self.stdin is not None:
            self.stdin.close()
        if self.master is not None:
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(self.master)
                os.close(self.master)
            self.master = None


async def _reader(fd: int) -> asyncio.StreamReader:
    """A stream over the read end of a pipe (closed at its end of file)."""
    reader = asyncio.StreamReader(limit=READ_CHUNK)
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                       os.fdopen(fd, "rb", buffering=0))
    return reader
