"""Watch a server's /readyz latency while an attack runs beside it, from a process of its own.

The probe runs in a separate process so that what the test itself does (building and sending a large
body, decoding answers) cannot hold up the measurement through the test process's own interpreter lock.
Run as a script it probes until its stdin closes, then prints what it saw as JSON.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from collections.abc import Callable

T = TypeVar("T")

# What the hardening issue asks of the server during and after every attack.
READYZ_BUDGET = 0.100


def admin_context(data_dir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
    ctx.load_cert_chain(str(data_dir / "pki" / "admin.crt"), str(data_dir / "pki" / "admin.key"))
    return ctx


class ReadyzProbe:
    """Asks /readyz every `every` seconds on one keep-alive connection while the `with` block runs, and for
    0.2 s after it; `latencies` holds (wall-clock start, seconds) per probe, and a failure is recorded."""

    def __init__(self, port: int, data_dir: Path, every: float = 0.01) -> None:
        self.args = [sys.executable, __file__, str(port), str(data_dir), str(every)]
        self.latencies: list[tuple[float, float]] = []
        self.failures: list[str] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ReadyzProbe:
        self._proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()  # connected, handshake done, first answer in
        if first.strip() != "ready":
            raise AssertionError(f"the /readyz probe did not start: {first!r}")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        time.sleep(0.2)  # and after the attack
        assert self._proc is not None
        out, _ = self._proc.communicate("", timeout=30)
        seen = json.loads(out)
        self.latencies = [tuple(x) for x in seen["latencies"]]  # type: ignore[misc]
        self.failures = seen["failures"]

    @property
    def slowest(self) -> float:
        return max((s for _, s in self.latencies), default=float("inf"))

    def slow(self, budget: float = READYZ_BUDGET) -> list[tuple[float, float]]:
        return [(t, s) for t, s in self.latencies if s >= budget]

    def check(self, what: str, budget: float = READYZ_BUDGET) -> None:
        assert not self.failures, f"/readyz failed during {what}: {self.failures[:3]}"
        assert self.latencies, f"/readyz was never answered during {what}"
        assert self.slowest < budget, (
            f"/readyz took {self.slowest * 1000:.0f} ms during {what} (budget {budget * 1000:.0f} ms; "
            f"{len(self.latencies)} probes)")


def probe_while(port: int, data_dir: Path, send: Callable[[], T], tries: int = 3,
                budget: float = READYZ_BUDGET) -> tuple[T, ReadyzProbe]:
    """send() with /readyz probed during and after it, repeated (up to `tries` times in all) while a probe
    is over budget; the last answer and probe.

    A stall the request causes shows on every try; a slow probe from a busy machine (the scheduler,
    other tests) does not repeat, so only a request that is over budget every time fails the check.
    """
    for _ in range(tries):
        with ReadyzProbe(port, data_dir) as probe:
            answer = send()
        if probe.latencies and not probe.failures and probe.slowest < budget:
            break
    return answer, probe


def _probe(port: int, data_dir: Path, every: float) -> None:
    ctx = admin_context(data_dir)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    latencies: list[tuple[float, float]] = []
    failures: list[str] = []
    stop = threading.Event()

    def ask() -> None:
        nonlocal conn
        wall, started = time.time(), time.perf_counter()
        try:
            conn.request("GET", "/readyz")
            res = conn.getresponse()
            res.read()
            if res.status != 200:
                failures.append(f"/readyz answered {res.status}")
        except (OSError, http.client.HTTPException) as e:
            failures.append(repr(e))
            conn.close()
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
            return
        latencies.append((wall, time.perf_counter() - started))

    ask()
    latencies.clear()
    print("ready", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        ask()
        stop.wait(every)
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


if __name__ == "__main__":
    _probe(int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
