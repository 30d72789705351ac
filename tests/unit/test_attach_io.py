"""The process runtime's attach sessions (agent/runtime/attach.py) on real pipes: output from the moment of
attaching, a slow caller dropped at the buffer bound while the others go on, the session limit, containerd's
stdin rules (stdinOnce closes the container's stdin, otherwise the session ends with its stdin; no stdin: the
input is dropped), back-pressure on a full stdin pipe, and the end of the output ending every session."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import pytest

from kubesat.agent.runtime import RuntimeFailure
from kubesat.agent.runtime.attach import MAX_BUFFERED, MAX_SESSIONS, AttachSession, ContainerIO


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


async def _drain(session: AttachSession, stream: str = "stdout") -> bytes:
    read = session.read_stdout if stream == "stdout" else session.read_stderr
    out = b""
    while chunk := await read():
        out += chunk
    return out


def _pipe_io(stdin_once: bool = False, has_stdin: bool = True) -> tuple[ContainerIO, int]:
    """A container's IO over a real stdin pipe; the read end (the container's side) is returned too."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    return ContainerIO("c", w, has_stdin, tty=False, stdin_once=stdin_once), r


def test_output_from_the_moment_of_attaching() -> None:
    async def scenario() -> None:
        io = ContainerIO("c", None, False, tty=False, stdin_once=False)
        io.publish("stdout", b"before\n")
        session = io.attach(stdin=False, stdout=True, stderr=True)
        io.publish("stdout", b"out\n")
        io.publish("stderr", b"err\n")
        io.end()
        assert await _drain(session) == b"out\n"
        assert await _drain(session, "stderr") == b"err\n"
        assert await session.wait() == 0
        with pytest.raises(RuntimeFailure, match="CONTAINER_EXITED"):
            io.attach(stdin=False, stdout=True, stderr=False)
    _run(scenario)


def test_a_slow_caller_is_dropped_and_the_others_go_on() -> None:
    async def scenario() -> None:
        io = ContainerIO("c", None, False, tty=False, stdin_once=False)
        slow = io.attach(stdin=False, stdout=True, stderr=False)
        fast = io.attach(stdin=False, stdout=True, stderr=False)
        chunk = b"x" * 65536
        got = 0
        for _ in range(MAX_BUFFERED // len(chunk) + 2):
            io.publish("stdout", chunk)
            got += len(await fast.read_stdout())
        assert got == (MAX_BUFFERED // len(chunk) + 2) * len(chunk)
        assert await slow.read_stdout() == b""  # what it had queued is dropped with it
        with pytest.raises(RuntimeFailure, match="fell more than"):
            await slow.wait()
        io.end()
        assert await fast.wait() == 0
    _run(scenario)


def test_sessions_are_bounded() -> None:
    async def scenario() -> None:
        io = ContainerIO("c", None, False, tty=False, stdin_once=False)
        sessions = [io.attach(stdin=False, stdout=True, stderr=False) for _ in range(MAX_SESSIONS)]
        with pytest.raises(RuntimeFailure, match="too many attach sessions"):
            io.attach(stdin=False, stdout=True, stderr=False)
        await sessions[0].kill()
        io.attach(stdin=False, stdout=True, stderr=False)
    _run(scenario)


def test_stdin_once_closes_the_containers_stdin_and_the_session_waits_for_the_output() -> None:
    async def scenario() -> None:
        io, r = _pipe_io(stdin_once=True)
        session = io.attach(stdin=True, stdout=True, stderr=False)
        await session.write_stdin(b"hello\n")
        await session.close_stdin()
        assert os.read(r, 100) == b"hello\n"
        assert os.read(r, 100) == b""  # end of file: the container's stdin is closed
        io.publish("stdout", b"got hello\n")
        io.end()
        assert await _drain(session) == b"got hello\n"
        assert await session.wait() == 0
        os.close(r)
    _run(scenario)


def test_without_stdin_once_the_session_ends_with_its_stdin() -> None:
    async def scenario() -> None:
        io, r = _pipe_io()
        first = io.attach(stdin=True, stdout=True, stderr=False)
        await first.write_stdin(b"one\n")
        await first.close_stdin()
        assert await first.wait() == 0
        assert os.read(r, 100) == b"one\n"
        with pytest.raises(BlockingIOError):  # still open, nothing more in it
            os.read(r, 100)
        second = io.attach(stdin=True, stdout=True, stderr=False)
        await second.write_stdin(b"two\n")
        assert os.read(r, 100) == b"two\n"
        io.end()
        os.close(r)
    _run(scenario)


def test_a_caller_gone_closes_a_stdin_once_containers_stdin() -> None:
    async def scenario() -> None:
        io, r = _pipe_io(stdin_once=True)
        watcher = io.attach(stdin=False, stdout=True, stderr=False)
        await watcher.kill()  # no stdin: the container's stays open
        with pytest.raises(BlockingIOError):
            os.read(r, 100)
        session = io.attach(stdin=True, stdout=True, stderr=False)
        await session.kill()
        assert os.read(r, 100) == b""
        os.close(r)
    _run(scenario)


def test_input_to_a_container_without_stdin_is_dropped() -> None:
    async def scenario() -> None:
        io = ContainerIO("c", None, False, tty=False, stdin_once=False)
        session = io.attach(stdin=True, stdout=True, stderr=False)
        await session.write_stdin(b"nowhere\n")
        await session.close_stdin()
        io.publish("stdout", b"still here\n")
        io.end()
        assert await _drain(session) == b"still here\n"
    _run(scenario)


def test_a_full_stdin_pipe_holds_the_writer_back() -> None:
    async def scenario() -> None:
        io, r = _pipe_io()
        session = io.attach(stdin=True, stdout=False, stderr=False)
        data = bytes(range(256)) * 4096  # 1 MiB, far more than a pipe holds
        writer = asyncio.create_task(session.write_stdin(data))
        await asyncio.sleep(0.05)
        assert not writer.done()
        got = b""
        while len(got) < len(data):
            try:
                got += os.read(r, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.001)
        await writer
        assert got == data
        io.end()  # closes the container's stdin, even while a writer would wait
        assert os.read(r, 100) == b""
        os.close(r)
    _run(scenario)


def test_the_end_releases_a_blocked_writer() -> None:
    async def scenario() -> None:
        io, r = _pipe_io()
        session = io.attach(stdin=True, stdout=True, stderr=False)
        writer = asyncio.create_task(session.write_stdin(b"y" * (1 << 20)))
        await asyncio.sleep(0.05)
        assert not writer.done()
        io.end()
        await writer
        assert await session.wait() == 0
        os.close(r)
    _run(scenario)
