"""Container probes as the kubelet runs them: exec, httpGet and tcpSocket, with their timing fields.

`probe_once` is one try (success, output); `Prober` keeps a probe's consecutive counts and says when the result
flips, by successThreshold and failureThreshold. Sources: pkg/kubelet/prober/ (prober.go, worker.go).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

MAX_OUTPUT = 10 * 1024  # the kubelet keeps at most 10 KiB of a probe's output


@dataclass(frozen=True)
class ProbeTiming:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: dict[str, Any]) -> ProbeTiming:
        def num(key: str, default: int, low: int) -> int:
            v = probe.get(key)
            return max(low, int(v)) if isinstance(v, int) and not isinstance(v, bool) else default
        return cls(num("initialDelaySeconds", 0, 0), num("periodSeconds", 10, 1), num("timeoutSeconds", 1, 1),
                   num("successThreshold", 1, 1), num("failureThreshold", 3, 1))


ExecFn = Callable[[list[str], float], Awaitable[tuple[int, bytes]]]


def _port(value: Any, container: dict[str, Any]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    for p in container.get("ports") or []:
        if isinstance(p, dict) and p.get("name") == value:
            return int(p.get("containerPort", 0))
    try:
        return int(str(value))
    except ValueError:
        return 0


async def _http(get: dict[str, Any], container: dict[str, Any], host: str, timeout: float,
                client: httpx.AsyncClient) -> tuple[bool, str]:
    port = _port(get.get("port"), container)
    scheme = str(get.get("scheme") or "HTTP").lower()
    path = str(get.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": "kube-probe/1.32", "Accept": "*/*"}
    for h in get.get("httpHeaders") or []:
        if isinstance(h, dict) and h.get("name"):
            headers[str(h["name"])] = str(h.get("value", ""))
    url = f"{scheme}://{get.get('host') or host}:{port}{path}"
    try:
        resp = await client.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        return False, f'Get "{url}": {e}'
    body = resp.content[:MAX_OUTPUT].decode("utf-8", "replace")
    if 200 <= resp.status_code < 400:
        return True, body
    return False, f"HTTP probe failed with statuscode: {resp.status_code}"


async def _tcp(sock: dict[str, Any], container: dict[str, Any], host: str, timeout: float) -> tuple[bool, str]:
    port = _port(sock.get("port"), container)
    target = f"{sock.get('host') or host}:{port}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(sock.get("host") or host, port), timeout)
    except (OSError, TimeoutError) as e:
        return False, f"dial tcp {target}: {e}"
    writer.close()
    return True, ""


async def probe_once(probe: dict[str, Any], container: dict[str, Any], host: str, run: ExecFn,
                     client: httpx.AsyncClient) -> tuple[bool, str]:
    """One try of a probe: (success, output or the reason it failed)."""
    timeout = ProbeTiming.of(probe).timeout
    if isinstance(probe.get("exec"), dict):
        command = [str(a) for a in probe["exec"].get("command") or []]
        try:
            code, out = await run(command, timeout)
        except TimeoutError:
            return False, f"command {command!r} timed out"
        text = out[:MAX_OUTPUT].decode("utf-8", "replace")
        return code == 0, text
    if isinstance(probe.get("httpGet"), dict):
        return await _http(probe["httpGet"], container, host, timeout, client)
    if isinstance(probe.get("tcpSocket"), dict):
        return await _tcp(probe["tcpSocket"], container, host, timeout)
    return True, ""  # grpc and unknown handlers: not run, counted as success


class Prober:
    """Consecutive results of one probe; `record` returns the new result when it flips."""

    def __init__(self, timing: ProbeTiming, initial: bool) -> None:
        self.timing = timing
        self.result = initial
        self._run = 0
        self._last: bool | None = None

    def record(self, ok: bool) -> bool | None:
        self._run = self._run + 1 if self._last == ok else 1
        self._last = ok
        threshold = self.timing.success_threshold if ok else self.timing.failure_threshold
        if ok != self.result and self._run >= threshold:
            self.result = ok
            return ok
        return None
