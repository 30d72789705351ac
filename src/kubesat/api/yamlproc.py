"""Large YAML bodies become JSON in a short-lived child process, so that parsing them never stalls the server.

PyYAML spends seconds on a few MiB of YAML, much of it in C that never lets the event loop run; a child
process takes that time on the other core, can be killed when it runs too long, and gives back its
memory when it exits. Run as `python -m kubesat.api.yamlproc`: YAML on stdin, one status byte and
JSON (or a Kubernetes Status) on stdout.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from kubesat import errors
from kubesat.api import codec

# Below this, parsing in place costs less than starting a child.
OFFLOAD_BYTES = 64 * 1024
# A body still being parsed after this long is refused.
PARSE_SECONDS = 10.0
# Children parse one body at a time: a client sending many large bodies waits for its turn.
_turn = asyncio.Semaphore(1)


async def yaml_to_json(raw: bytes) -> bytes:
    """The JSON of one YAML document, checked against the body limits; a StatusError as load_yaml raises it."""
    async with _turn:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kubesat.api.yamlproc",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(raw), PARSE_SECONDS)
        except asyncio.TimeoutError:
            raise errors.bad_request(f"error converting YAML to JSON: not done within {PARSE_SECONDS:g} s") from None
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if out[:1] == b"0":
        return out[1:]
    if out[:1] == b"1":
        status: dict[str, Any] = orjson.loads(out[1:])
        raise errors.StatusError(status["code"], status.get("reason", ""), status.get("message", ""))
    raise errors.bad_request("error converting YAML to JSON: the parser stopped without an answer")


def main() -> None:
    raw = sys.stdin.buffer.read()
    try:
        out = b"0" + orjson.dumps(codec.load_yaml(raw))
    except errors.StatusError as e:
        out = b"1" + orjson.dumps(e.status())
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main()
