"""YAML bodies become JSON in a helper process, so that parsing them never stalls the server.

PyYAML can spend seconds on a few MiB of YAML, or on a few KiB nested deeply, much of it in C that never
lets the event loop run. One long-lived helper (`python -m kubesat.apimachinery.yamlproc`, started with the server,
and again after one is killed) parses them on the other core; one that takes too long is killed and replaced.
A body that is JSON (as kubectl's apply bodies are) skips the helper.

Frames on the pipes: to the helper, a 4-byte big-endian length and the YAML; back, one status byte
(`0` JSON follows, `1` a Kubernetes Status follows) and a 4-byte length.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from typing import Any

import orjson

from kubesat import errors, limits
from kubesat.apimachinery import codec
from kubesat.apimachinery import fieldcheck

log = logging.getLogger("kubesat.api")

# A body still being parsed after this long is refused and its helper replaced.
PARSE_SECONDS = 10.0
_HEADER = struct.Struct(">I")


class YamlHelper:
    """The helper process and the one-at-a-time turn at it."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._turn = asyncio.Lock()

    async def start(self) -> None:
        """Start the helper now, so that its start-up never delays a request."""
        await self._process()

    async def to_json(self, raw: bytes) -> bytes:
        """The JSON of one YAML document, checked against the body limits; a StatusError as load_yaml raises it."""
        if await _is_json(raw):
            return raw
        async with self._turn:
            try:
                return await asyncio.wait_for(self._ask(raw), PARSE_SECONDS)
            except TimeoutError:
                self._kill()
                raise errors.bad_request(
                    f"error converting YAML to JSON: not done within {PARSE_SECONDS:g} s") from None
            except (OSError, asyncio.IncompleteReadError, ConnectionError):
                self._kill()
                log.warning("the YAML helper process stopped; parsing this body in the server")
                return orjson.dumps(codec.load_yaml(raw))

    async def _ask(self, raw: bytes) -> bytes:
        proc = await self._process()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(_HEADER.pack(len(raw)) + raw)
        await proc.stdin.drain()
        head = await proc.stdout.readexactly(1 + _HEADER.size)
        payload = await proc.stdout.readexactly(_HEADER.unpack(head[1:])[0])
        if head[:1] == b"0":
            return payload
        status: dict[str, Any] = orjson.loads(payload)
        raise errors.StatusError(status["code"], status.get("reason", ""), status.get("message", ""))

    async def _process(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kubesat.apimachinery.yamlproc",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
        self._proc = None

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _is_json(raw: bytes) -> bool:
    """Whether a YAML body is plain JSON without duplicate keys, which parses the same either way."""
    if raw.lstrip()[:1] not in (b"{", b"["):
        return False
    if len(raw) > limits.OFFLOAD_BYTES:
        return await asyncio.to_thread(_parses_as_json, raw)
    return _parses_as_json(raw)


def _parses_as_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return not fieldcheck.find_duplicate_fields(raw)


def main() -> None:
    """The helper: answer frames until the server closes the pipe."""
    read, write = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = read.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        raw = read.read(_HEADER.unpack(head)[0])
        try:
            status, out = b"0", orjson.dumps(codec.load_yaml(raw))
        except errors.StatusError as e:
            status, out = b"1", orjson.dumps(e.status())
        except Exception as e:  # noqa: BLE001 - whatever the parser trips on is the body's fault, never fatal here
            status, out = b"1", orjson.dumps(errors.bad_request(f"error converting YAML to JSON: {e}").status())
        write.write(status + _HEADER.pack(len(out)) + out)
        write.flush()


if __name__ == "__main__":
    main()
