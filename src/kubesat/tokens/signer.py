"""RSA signatures in helper processes, away from the event loop and its GIL.

An RSA-2048 signature costs about a quarter of a millisecond of CPU. Made on the event loop it
stalls every other request for that long; made on a thread, the thread and the loop queue for
the GIL at every hand-over. A child process has an interpreter of its own: the loop writes the
signing input to the child's pipe and goes on serving, and the signature comes back on the
child's other pipe, read by the loop like any socket. (Kubernetes moves signing out of the API
server too, with its external JWT signer; here the signer is kubesat's own child.)

Frames, both ways: a 4-byte big-endian length, then the frame.
  parent -> child   b"K" kid b"\\0" PKCS#8-DER private key   learn a key (no answer)
                    b"S" kid b"\\0" signing input            sign (one answer, in order)
  child -> parent   b"O" signature  |  b"E" UTF-8 error text

The private key crosses only this pipe between kubesat's own processes; nothing is written to
disk or logged. A child that dies (or cannot start) costs nothing but speed: its pending
signatures and all later ones are made in the server process until a new child is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import collections
import logging
import os
import signal
import sys
import time
from typing import BinaryIO
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubesat.tokens.issuer import signature_counter
from kubesat.tokens.jwt import signature
from kubesat.tokens.keys import SigningKey

log = logging.getLogger("kubesat.signer")

MAX_FRAME = 1 << 20  # a signing input is a few KB; anything near this is a broken peer
RESPAWN_SECONDS = 5.0  # a child that died is not replaced more often than this
ANSWER_SECONDS = 5.0  # a signature takes well under a millisecond; a child this late is stuck


class SignerUnavailable(Exception):
    """The child cannot answer (not started, exited, pipe closed): sign in-process instead."""


def _prefixed(payload: bytes) -> bytes:
    """A frame on the pipe, either way: 4-byte big-endian length, then the payload."""
    return len(payload).to_bytes(4, "big") + payload


def _frame(kind: bytes, kid: str, body: bytes) -> bytes:
    return _prefixed(kind + kid.encode("ascii") + b"\0" + body)


def _private_der(key: SigningKey) -> bytes:
    return key.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# ---------------------------------------------------------------------------------------------- child


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve_child(inp: BinaryIO, out: BinaryIO) -> int:
    """The child's loop: learn keys, answer each sign frame in order; returns at end of input."""
    keys: dict[bytes, SigningKey] = {}
    while True:
        head = _read_exact(inp, 4)
        if head is None:
            return 0
        n = int.from_bytes(head, "big")
        if n > MAX_FRAME:
            return 2
        frame = _read_exact(inp, n)
        if frame is None:
            return 0
        kind, (kid, _, body) = frame[:1], frame[1:].partition(b"\0")
        if kind == b"K":
            loaded = serialization.load_der_private_key(body, None)
            if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                return 2  # not a signing key: the parent only sends its own SigningKey's
            keys[kid] = SigningKey(loaded)
            continue
        if kind != b"S":
            return 2
        key = keys.get(kid)
        try:
            if key is None:
                raise LookupError(f"signer has no key {kid.decode('ascii', 'replace')}")
            answer = b"O" + signature(body, key)
        except Exception as e:  # noqa: BLE001 - every failure is answered, in order
            answer = b"E" + f"{type(e).__name__}: {e}".encode()
        out.write(_prefixed(answer))
        out.flush()


def main() -> int:
    # Ctrl-C reaches the whole process group; the server shuts the child down by closing its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return serve_child(sys.stdin.buffer, sys.stdout.buffer)


# ---------------------------------------------------------------------------------------------- parent


class _Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pending: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.keys: set[str] = set()
        self.alive = True
        self.reader = asyncio.get_running_loop().create_task(self._read())

    def _send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, ConnectionError, RuntimeError) as e:
            self._die(f"pipe closed: {e}")
            raise SignerUnavailable(str(e)) from None

    def sign(self, data: bytes, key: SigningKey, der: bytes) -> asyncio.Future[bytes]:
        if not self.alive:
            raise SignerUnavailable("signer exited")
        if key.kid not in self.keys:
            self._send(_frame(b"K", key.kid, der))
            self.keys.add(key.kid)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        self._send(_frame(b"S", key.kid, data))
        return fut

    async def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        try:
            while True:
                n = int.from_bytes(await out.readexactly(4), "big")
                if n > MAX_FRAME or not self.pending:
                    self._die("signer sent an unexpected frame")
                    return
                frame = await out.readexactly(n)
                fut = self.pending.popleft()
                if fut.done():  # the request went away (client disconnected)
                    continue
                if frame[:1] == b"O":
                    fut.set_result(frame[1:])
                else:
                    fut.set_exception(RuntimeError(frame[1:].decode("utf-8", "replace")))
        except (asyncio.IncompleteReadError, ConnectionError):
            self._die("signer exited")
        except asyncio.CancelledError:
            self._die("signer closed")
            raise

    def _die(self, why: str) -> None:
        if self.alive:
            self.alive = False
            if self.pending:
                log.warning("token signer process %s: %s; signing in the server process", self.proc.pid, why)
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(SignerUnavailable(why))

    def kill(self) -> None:
        """Stop a stuck child; its pending requests fail over when its pipe closes."""
        self._die("signer stopped answering")
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def close(self) -> None:
        self.alive = False
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 2)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader
        self._die("signer closed")


def _child_env() -> dict[str, str]:
    # The child imports kubesat from wherever this process did (installed or a source tree).
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    return env


class ProcessSigner:
    """`processes` child signers; each signature goes to the child with the fewest pending.

    Children start on first use, in the background: the signatures asked for while they boot
    (about a tenth of a second) are made in-process, as are all of them when a child cannot run.
    """

    def __init__(self, processes: int = 1, *, timeout: float = ANSWER_SECONDS,
                 busy: Callable[[], bool] | None = None) -> None:
        self.processes = processes
        self.timeout = timeout
        # Whether other requests are being served. When they are not and no child has work, the
        # hand-over (two process wake-ups) would cost more than it saves: sign in place instead.
        self.busy = busy
        self._count_helper = signature_counter("helper")
        self._count_server = signature_counter("server")
        self._children: list[_Child] = []
        self._starting: asyncio.Task[None] | None = None
        self._last_start = -RESPAWN_SECONDS
        self._der: dict[str, bytes] = {}
        self._closed = False

    def _ready(self) -> list[_Child]:
        live = [c for c in self._children if c.alive]
        if len(live) != len(self._children):
            self._children = live
        if len(live) < self.processes and self._starting is None and not self._closed:
            now = time.monotonic()
            if now - self._last_start >= RESPAWN_SECONDS:
                self._last_start = now
                self._starting = asyncio.get_running_loop().create_task(self._spawn(self.processes - len(live)))
        return live

    async def _spawn(self, count: int) -> None:
        try:
            for _ in range(count):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "kubesat.tokens.signer",
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=_child_env(),
                )
                if self._closed:
                    proc.kill()
                    await proc.wait()
                    return
                self._children.append(_Child(proc))
        except OSError as e:
            log.warning("could not start a token signer process (%s); signing in the server process", e)
        finally:
            self._starting = None

    async def sign(self, data: bytes, key: SigningKey) -> bytes:
        live = self._ready()
        if live and self.busy is not None and not any(c.pending for c in live):
            # Let requests that arrived meanwhile start first, so `busy` sees them.
            await asyncio.sleep(0)
            if not self.busy() and not any(c.pending for c in live):
                live = []
        if live:
            der = self._der.get(key.kid)
            if der is None:
                der = self._der[key.kid] = _private_der(key)
            child = min(live, key=lambda c: len(c.pending))
            try:
                sig = await asyncio.wait_for(child.sign(data, key, der), self.timeout)
                self._count_helper()
                return sig
            except SignerUnavailable:
                pass
            except RuntimeError as e:  # the child answered with an error: try here, where it raises for real
                log.warning("token signer process %s could not sign (%s); signing in the server process",
                            child.proc.pid, e)
            except TimeoutError:
                # A child that stops answering is as good as dead: its queue fails over to in-process.
                log.warning("token signer process %s did not answer within %g s; restarting it",
                            child.proc.pid, self.timeout)
                child.kill()
        self._count_server()
        return signature(data, key)

    @property
    def running(self) -> int:
        """Children up and answering (for tests and diagnostics)."""
        return sum(1 for c in self._children if c.alive)

    async def close(self) -> None:
        self._closed = True
        if self._starting is not None:
            await self._starting
        children, self._children = self._children, []
        for c in children:
            await c.close()


if __name__ == "__main__":
    sys.exit(main())
