"""The process runtime's exec sessions (`runtime/execs.py`): a helper started ahead of the exec gets the command's
streams and spec over its socket, joins the target's namespaces and runs the command; its exit status is the
command's; a waiting helper that died is replaced; closing leaves no helper behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kubesat.agent.runtime import ExecRequest, ExecSession
from kubesat.agent.runtime.execs import ExecHelpers
from kubesat.agent.runtime.process import HELPER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="joining a process's namespaces needs root")


def _spec(argv: list[str], **extra: object) -> dict[str, Any]:
    spec: dict[str, Any] = {"argv": argv, "env": {"PATH": os.environ["PATH"], "MINE": "kept"}, "uid": os.getuid(),
                            "gid": os.getgid(), "groups": [], "tty": False, "userns": False, "cwd": "/"}
    spec.update(extra)
    return spec


async def _drain(read: Callable[[], Awaitable[bytes]]) -> bytes:
    out = b""
    while chunk := await read():
        out += chunk
    return out


async def _run(session: ExecSession) -> tuple[int, bytes, bytes]:
    out, err = await asyncio.gather(_drain(session.read_stdout), _drain(session.read_stderr))
    return await asyncio.wait_for(session.wait(), 10), out, err


def _with_target(scenario: Callable[[ExecHelpers, int], Awaitable[None]]) -> None:
    """Run `scenario` with a pool and the pidfd of a process to exec beside (in this test's own namespaces)."""
    target = subprocess.Popen(["sleep", "60"])
    pidfd = os.pidfd_open(target.pid)

    async def go() -> None:
        helpers = ExecHelpers(HELPER)
        try:
            await scenario(helpers, pidfd)
        finally:
            await helpers.close()
    try:
        asyncio.run(go())
    finally:
        os.close(pidfd)
        target.kill()
        target.wait()


def test_the_command_runs_with_its_environment_and_its_exit_code_and_streams_come_back() -> None:
    async def scenario(helpers: ExecHelpers, pidfd: int) -> None:
        for _ in range(3):  # the first from a helper started there and then, the others from the one waiting
            session = await helpers.start(_spec(["sh", "-c", 'echo "out $MINE $(pwd)"; echo err >&2; exit 3']),
                                          pidfd, ExecRequest("uid", "c", ["sh"]))
            assert await _run(session) == (3, b"out kept /\n", b"err\n")
    _with_target(scenario)


def test_stdin_is_written_and_closed_and_unrequested_streams_are_dev_null() -> None:
    async def scenario(helpers: ExecHelpers, pidfd: int) -> None:
        session = await helpers.start(_spec(["sh", "-c", "cat; readlink /proc/self/fd/2"]), pidfd,
                                      ExecRequest("uid", "c", ["sh"], stdin=True, stderr=False))
        await session.write_stdin(b"hello\n")
        await session.close_stdin()
        assert await _run(session) == (0, b"hello\n/dev/null\n", b"")
        session = await helpers.start(_spec(["sh", "-c", "readlink /proc/self/fd/0; echo done >&2"]), pidfd,
                                      ExecRequest("uid", "c", ["sh"], stdout=False))
        assert await _run(session) == (0, b"", b"done\n")
    _with_target(scenario)


def test_a_tty_session_has_a_terminal_and_its_size() -> None:
    async def scenario(helpers: ExecHelpers, pidfd: int) -> None:
        session = await helpers.start(_spec(["sh", "-c", "sleep 0.2; test -t 0 && stty size"], tty=True), pidfd,
                                      ExecRequest("uid", "c", ["sh"], stdin=True, stderr=False, tty=True))
        session.resize(100, 30)
        code, out, err = await _run(session)
        assert (code, out.replace(b"\r", b""), err) == (0, b"30 100\n", b"")
        await session.kill()
    _with_target(scenario)


def test_a_missing_command_is_127_with_the_runtimes_words() -> None:
    async def scenario(helpers: ExecHelpers, pidfd: int) -> None:
        session = await helpers.start(_spec(["no-such-command-here"]), pidfd, ExecRequest("uid", "c", ["x"]))
        code, _out, err = await _run(session)
        assert code == 127
        assert b'exec: "no-such-command-here": executable file not found in $PATH' in err
    _with_target(scenario)


def test_a_killed_session_ends_and_a_dead_waiting_helper_is_replaced() -> None:
    async def scenario(helpers: ExecHelpers, pidfd: int) -> None:
        session = await helpers.start(_spec(["sleep", "30"]), pidfd, ExecRequest("uid", "c", ["sleep"]))
        await session.kill()
        assert await asyncio.wait_for(session.wait(), 10) == 128 + signal.SIGTERM
        spare = helpers._spare
        assert spare is not None
        (await spare).proc.kill()  # the waiting helper dies before it is used
        await (await spare).proc.wait()
        session = await helpers.start(_spec(["echo", "fine"]), pidfd, ExecRequest("uid", "c", ["echo"]))
        assert await _run(session) == (0, b"fine\n", b"")
    _with_target(scenario)


def test_closing_leaves_no_helper_waiting() -> None:
    async def scenario(helpers: ExecHelpers, pidfd: int) -> None:
        session = await helpers.start(_spec(["true"]), pidfd, ExecRequest("uid", "c", ["true"]))
        assert (await _run(session))[0] == 0
        spare = helpers._spare
        assert spare is not None
        waiting = (await spare).proc
        await helpers.close()
        assert waiting.returncode == 0  # its socket closed, it left without running anything
        assert helpers._spare is None
        session = await helpers.start(_spec(["true"]), pidfd, ExecRequest("uid", "c", ["true"]))
        assert (await _run(session))[0] == 0  # still works, one helper per exec, none kept once closed
        assert helpers._spare is None
    _with_target(scenario)
