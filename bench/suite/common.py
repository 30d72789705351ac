"""What every section shares: result entries, servers (kubesat and the bare ASGI floor), /proc readings."""

from __future__ import annotations

import base64
import operator
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent
FLOOR_APP = Path(__file__).resolve().with_name("floor.py")

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


@dataclass
class Entry:
    """One figure beside its reference, measured in the same run.

    ratio is always value / reference_value. target reads "<ratio|value> <op> <number>", e.g.
    "ratio >= 0.7" or "value < 5"; met is whether it holds (null when no target is set).
    """

    section: str
    name: str
    value: float
    unit: str
    reference: str
    reference_value: float | None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.reference_value:
            self.ratio = self.value / self.reference_value
        if self.target:
            what, op, number = self.target.split()
            subject = self.ratio if what == "ratio" else self.value
            self.met = None if subject is None else bool(_OPS[op](subject, float(number)))

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("value", "reference_value", "ratio"):
            if isinstance(d[k], float):
                d[k] = round(d[k], 4)
        return d


@dataclass
class Results:
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kw: Any) -> Entry:
        e = Entry(*args, **kw)
        self.entries.append(e)
        print(f"  {format_entry(e)}", flush=True)
        return e

    def note(self, line: str) -> None:
        self.notes.append(line)
        print(f"  note: {line}", flush=True)


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit in ("req/s", "/s", "ops/s") or abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}" if v != int(v) or unit not in ("", "count") else f"{v:.0f}"
    return f"{s} {unit}".strip()


def format_entry(e: Entry) -> str:
    ratio = f"{e.ratio:.2f}x" if e.ratio is not None else "-"
    met = "" if e.met is None else ("  MET" if e.met else "  MISSED")
    target = f"  [{e.target}]" if e.target else ""
    return f"{e.name}: {fmt(e.value, e.unit)} vs {e.reference} {fmt(e.reference_value, e.unit)} = {ratio}{target}{met}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of one process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its child processes (kubesat's signing helper)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:  # fields[1] is the parent's pid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def stop_process(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s; the process's log file closed and removed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
    Path(log.name).unlink(missing_ok=True)


class Proc:
    """A server process started by the bench; `url` is its HTTPS base, `ready_s` its time to "ready"."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        start = time.perf_counter()
        # stderr goes to a file, never a pipe nobody reads (a full pipe would stall the server)
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.ready_s = time.perf_counter() - start
        if b"ready" not in line:
            self.proc.kill()
            self.proc.wait()
            err = Path(self.log.name).read_text(errors="replace")
            raise SystemExit(f"{name} did not start: {line!r}\n{err[-2000:]}")
        # Nothing reads the pipes from here on; the servers write little (warnings only).
        self.proc.stdout.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc, self.log)


class Kubesat(Proc):
    """`kubesat serve` with default flags but for its local node (--no-node): the server is measured alone
    (the pods of the scale section would otherwise all run on it); the agent section starts its own."""

    def __init__(self, data: Path, *extra: str) -> None:
        self.data = data
        port = free_port()
        super().__init__("kubesat", [sys.executable, "-m", "kubesat.cli", "serve", "--data-dir", str(data),
                                     "--port", str(port), "--no-node", *extra], port)

    @property
    def kubeconfig(self) -> Path:
        return self.data / "admin.kubeconfig"

    @property
    def ca(self) -> Path:
        return self.data / "pki" / "ca.crt"

    def kubectl(self, *args: str) -> str:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        return subprocess.run(["kubectl", *args], env=env, check=True, capture_output=True, text=True).stdout

    def tls_context(self) -> ssl.SSLContext:
        """The admin client certificate from admin.kubeconfig, trusting the server's CA."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        user = yaml.safe_load(self.kubeconfig.read_text())["users"][0]["user"]
        cert, key = self.data / "bench-admin.crt", self.data / "bench-admin.key"
        if not key.exists():
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            os.chmod(key, 0o600)
        ctx.load_cert_chain(str(cert), str(key))
        return ctx


class Floor(Proc):
    """The bare ASGI app on kubesat's HTTP stack and TLS certificate (suite/floor.py)."""

    def __init__(self, pki: Path) -> None:
        port = free_port()
        super().__init__("floor", [sys.executable, str(FLOOR_APP), "--port", str(port),
                                   "--cert", str(pki / "apiserver.crt"), "--key", str(pki / "apiserver.key"),
                                   "--ca", str(pki / "ca.crt")], port)


def bench_identity(server: Kubesat, name: str = "bench") -> str:
    """A service account bound to cluster-admin, and a day-long token of its own."""
    server.kubectl("create", "serviceaccount", name)
    server.kubectl("create", "clusterrolebinding", name, "--clusterrole=cluster-admin",
                   f"--serviceaccount=default:{name}")
    return server.kubectl("create", "token", name, "--duration=24h").strip()
