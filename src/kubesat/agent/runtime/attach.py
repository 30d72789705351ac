"""A running container's stdio as `attach` sessions see it: the container runtime's part of `kubectl attach`.

A container whose spec says `stdin: true` has its stdin kept open by the runtime (a pipe, or with `tty: true` the
pseudo-terminal's master); otherwise its stdin is /dev/null. Its output goes to the CRI log as always and, from
the moment a session attaches, to that session as well (nothing written before is replayed). As containerd's CRI
does it (`ContainerIO.Attach`):

- a session's stdin reaches the container only when the container has one; otherwise it is read and dropped;
- when a session's stdin ends, a `stdinOnce` container without a TTY has its stdin closed and the session lasts
  until the output ends; any other session ends there;
- a session ends when the container's output ends (its process exited), and when its caller goes away (then a
  `stdinOnce` container without a TTY has its stdin closed too, if the session had stdin).

Bounds: at most MAX_SESSIONS sessions per container (another is refused); a session's output that its caller has
not taken yet is at most MAX_BUFFERED bytes. A caller that falls further behind is dropped, not waited for: its
session ends with an error, so that a slow client never holds back the container's output (nor its log) and
never grows the agent's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios

from kubesat.agent.runtime import RuntimeFailure

MAX_SESSIONS = 16
MAX_BUFFERED = 1 << 20


class ContainerIO:
    """One container instance's stdin and its attached sessions. `stdin_fd` (non-blocking, owned from now on)
    is the write end of its stdin pipe or, with a TTY, a descriptor of the terminal's master; None when the
    container has neither."""

    def __init__(self, name: str, stdin_fd: int | None, has_stdin: bool, tty: bool, stdin_once: bool) -> None:
        self.name = name
        self.tty = tty
        self.has_stdin = has_stdin and stdin_fd is not None
        self.stdin_once = stdin_once
        self.ended = False
        self._fd = stdin_fd
        self._sessions: set[AttachSession] = set()
        self._lock = asyncio.Lock()
        self._writable: asyncio.Future[None] | None = None
        if stdin_fd is not None:
            os.set_blocking(stdin_fd, False)

    def attach(self, stdin: bool, stdout: bool, stderr: bool) -> AttachSession:
        """A new session (RuntimeFailure when the output has ended or too many are attached)."""
        if self.ended:
            raise RuntimeFailure("container is in CONTAINER_EXITED state")
        if len(self._sessions) >= MAX_SESSIONS:
            raise RuntimeFailure(f"too many attach sessions to container {self.name} (at most {MAX_SESSIONS})")
        session = AttachSession(self, stdin, stdout, stderr and not self.tty)
        self._sessions.add(session)
        return session

    def publish(self, stream: str, data: bytes) -> None:
        """Output the container wrote on `stream` (stdout, or stderr; a TTY's is all stdout)."""
        for session in list(self._sessions):
            session.deliver(stream, data)

    def end_output(self) -> None:
        """The container's output has ended (its stdout and stderr closed): every session ends, and no other
        can start."""
        self.ended = True
        for session in list(self._sessions):
            session.finish()

    def end(self) -> None:
        """The container's process is gone: the sessions end, and its stdin is closed."""
        self.end_output()
        self._close_fd()

    def forget(self, session: AttachSession) -> None:
        self._sessions.discard(session)

    async def write_stdin(self, data: bytes) -> None:
        """Into the container's stdin, waiting while its pipe is full (back-pressure on the caller); dropped
        once the stdin is closed."""
        async with self._lock:
            view = memoryview(data)
            while view and self.has_stdin and self._fd is not None:
                try:
                    view = view[os.write(self._fd, view):]
                except BlockingIOError:
                    await self._wait_writable(self._fd)
                except OSError:  # the process closed its end, or exited
                    self.close_stdin()

    async def _wait_writable(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._writable = waiter
        loop.add_writer(fd, _resolve, waiter)
        try:
            await waiter
        finally:
            self._writable = None
            if self._fd == fd:
                loop.remove_writer(fd)

    def close_stdin(self) -> None:
        """No more stdin: the container reads end of file (not with a TTY, whose master stays open)."""
        self.has_stdin = False
        if not self.tty:
            self._close_fd()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_writer(fd)
        if self._writable is not None:
            _resolve(self._writable)
        with contextlib.suppress(OSError):
            os.close(fd)

    def resize(self, width: int, height: int) -> None:
        if self.tty and self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class AttachSession:
    """One caller attached to a container: an ExecSession whose `wait` returns 0 when the session ends (the
    container's exit code is its status's business, not the session's), raises RuntimeFailure when the caller
    was dropped, and whose `kill` detaches (the process goes on)."""

    def __init__(self, io: ContainerIO, stdin: bool, stdout: bool, stderr: bool) -> None:
        self._io = io
        self._stdin = stdin
        self._stdin_ended = False
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        if stdout or io.tty:
            self._queues["stdout"] = asyncio.Queue()
        if stderr:
            self._queues["stderr"] = asyncio.Queue()
        self._buffered = 0
        self._done = asyncio.Event()
        self._error = ""

    def deliver(self, stream: str, data: bytes) -> None:
        queue = self._queues.get(stream)
        if queue is None or self._done.is_set():
            return
        self._buffered += len(data)
        if self._buffered > MAX_BUFFERED:
            self.finish(f"the client fell more than {MAX_BUFFERED} bytes behind the container's output")
            return
        queue.put_nowait(data)

    def finish(self, error: str = "") -> None:
        """End the session: what is queued is still read (unless it ends in error), then end of stream."""
        if self._done.is_set():
            return
        self._io.forget(self)
        self._error = error
        for queue in self._queues.values():
            if error:
                while not queue.empty():
                    queue.get_nowait()
            queue.put_nowait(b"")
        self._buffered = 0
        self._done.set()

    async def _read(self, stream: str) -> bytes:
        queue = self._queues.get(stream)
        if queue is None:
            return b""
        data = await queue.get()
        self._buffered = max(0, self._buffered - len(data))
        return data

    async def read_stdout(self) -> bytes:
        return await self._read("stdout")

    async def read_stderr(self) -> bytes:
        return await self._read("stderr")

    async def write_stdin(self, data: bytes) -> None:
        if self._stdin and not self._stdin_ended and not self._done.is_set():
            await self._io.write_stdin(data)

    async def close_stdin(self) -> None:
        """The caller's stdin ended (see the module's docstring for what follows)."""
        if not self._stdin or self._stdin_ended:
            return
        self._stdin_ended = True
        if not self._io.has_stdin:
            if not self._queues:
                self.finish()
            return
        if self._io.stdin_once and not self._io.tty:
            self._io.close_stdin()
            if not self._queues:
                self.finish()
            return
        self.finish()

    def resize(self, width: int, height: int) -> None:
        self._io.resize(width, height)

    async def wait(self) -> int:
        await self._done.wait()
        if self._error:
            raise RuntimeFailure(self._error)
        return 0

    async def kill(self) -> None:
        """The caller went away: detach."""
        if self._stdin and not self._stdin_ended and self._io.has_stdin and self._io.stdin_once \
                and not self._io.tty:
            self._io.close_stdin()
        self.finish()
