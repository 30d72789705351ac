"""Watch a server's /readyz latency from its own keep-alive connection while an attack runs beside it."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from pathlib import Path
from types import TracebackType

# What the hardening issue asks of the server during and after every attack.
READYZ_BUDGET = 0.100


def admin_context(data_dir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
    ctx.load_cert_chain(str(data_dir / "pki" / "admin.crt"), str(data_dir / "pki" / "admin.key"))
    return ctx


class ReadyzProbe:
    """A thread that asks /readyz every `every` seconds and keeps the slowest answer (a failure is infinite).

    The connection is opened and used once before the attack starts, so TLS set-up is not counted.
    """

    def __init__(self, port: int, data_dir: Path, every: float = 0.01) -> None:
        self.port = port
        self.every = every
        self.ctx = admin_context(data_dir)
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._conn = http.client.HTTPSConnection("127.0.0.1", port, context=self.ctx, timeout=10)
        self._ask()  # warm: connect and handshake now

    def _ask(self) -> float:
        started = time.perf_counter()
        self._conn.request("GET", "/readyz")
        res = self._conn.getresponse()
        res.read()
        if res.status != 200:
            raise AssertionError(f"/readyz answered {res.status}")
        return time.perf_counter() - started

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.latencies.append(self._ask())
            except (OSError, http.client.HTTPException, AssertionError) as e:
                self.failures.append(repr(e))
                self._conn.close()
                self._conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
            self._stop.wait(self.every)

    def __enter__(self) -> "ReadyzProbe":
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        time.sleep(0.2)  # and after the attack
        self._stop.set()
        self._thread.join(15)
        self._conn.close()

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=float("inf"))

    def check(self, what: str, budget: float = READYZ_BUDGET) -> None:
        assert not self.failures, f"/readyz failed during {what}: {self.failures[:3]}"
        assert self.latencies, f"/readyz was never answered during {what}"
        assert self.slowest < budget, (
            f"/readyz took {self.slowest * 1000:.0f} ms during {what} (budget {budget * 1000:.0f} ms; "
            f"{len(self.latencies)} probes)")
