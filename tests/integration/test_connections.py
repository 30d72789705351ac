"""Connection bounds through the real server: header size and count caps, header/handshake/idle timeouts, busy port.

The server runs with a 2 s header timeout and a 3 s idle timeout so the clocks can be watched in seconds.
Throughout every attack a keep-alive connection opened before it asks `/readyz`, which must answer in 100 ms.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import os
import select
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import Server, free_port, start_server

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
MAX_HEADER_BYTES = 1 << 20
MAX_HEADER_FIELDS = 1000
READY_WITHIN = 0.100
# How late the server may close a connection past its deadline (timers, a loaded machine).
LATE = 1.5
# 20 connections may each hold at most 1 MiB of header (plus TLS buffers); without the cap each holds
# everything it sent (4 MiB here, so more than 80 MiB in all).
RSS_GROWTH_BOUND = 48 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("kubesat") / "data"
    srv = start_server(data_dir, extra=["--request-header-timeout", f"{HEADER_TIMEOUT:g}s",
                                        "--idle-connection-timeout", f"{IDLE_TIMEOUT:g}s"])
    yield srv
    srv.stop()


def _context(server: Server, client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    if client_cert:
        pki = server.data_dir / "pki"
        ctx.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    return ctx


def _tls(server: Server, client_cert: bool = False) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return _context(server, client_cert).wrap_socket(raw, server_hostname="127.0.0.1")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class ReadyProbe:
    """A keep-alive admin connection, opened before an attack, that times `GET /readyz` on it."""

    def __init__(self, server: Server) -> None:
        self.conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=_context(server, True),
                                                timeout=10)
        self.seconds: list[float] = []
        self.ask()  # connected and handshaken before the attack starts
        self.seconds.clear()

    def ask(self) -> None:
        started = time.perf_counter()
        self.conn.request("GET", "/readyz")
        res = self.conn.getresponse()
        body = res.read()
        self.seconds.append(time.perf_counter() - started)
        assert (res.status, body) == (200, b"ok")

    def request(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        self.conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
        res = self.conn.getresponse()
        return res.status, json.loads(res.read())

    def assert_fast_after(self) -> None:
        """Ask once more after the attack, then hold every answer during and after it to the bound."""
        self.ask()
        slowest = max(self.seconds)
        assert slowest < READY_WITHIN, f"/readyz took {slowest * 1000:.0f} ms (of {len(self.seconds)} probes)"

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def probe(server: Server) -> Iterator[ReadyProbe]:
    p = ReadyProbe(server)
    yield p
    p.close()


def _answer(sock: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes the connection ('' if it only closed it)."""
    sock.settimeout(10)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
        pass
    return got


def _is_closed(sock: socket.socket) -> bool:
    """True once the server closed or reset the connection; never blocks."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


class Opened:
    """A connection and when it was opened (for TLS: when the handshake ended, as the server's clock starts)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.at = time.monotonic()


def _watch_closing(conns: dict[str, Opened], probe: ReadyProbe, until: float,
                   tick: Iterator[None] | None = None) -> dict[str, float]:
    """How long after its opening each connection was closed, asking /readyz all along."""
    deadline = time.monotonic() + until
    closed: dict[str, float] = {}
    while len(closed) < len(conns) and time.monotonic() < deadline:
        if tick is not None:
            next(tick)
        for name, conn in conns.items():
            if name not in closed and _is_closed(conn.sock):
                closed[name] = time.monotonic() - conn.at
        probe.ask()
        time.sleep(0.05)
    return closed


def test_headers_over_one_mib_get_431(server: Server, probe: ReadyProbe) -> None:
    line = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
    end = b"\r\n\r\n"
    fits = _tls(server)
    fits.sendall(line + b"a" * (MAX_HEADER_BYTES - len(line) - len(end)) + end)
    fits.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = _answer(fits)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.count(b"HTTP/1.1 200 ") == 2, "the request exactly at the cap and the next one are answered"
    probe.ask()
    over = _tls(server)
    over.sendall(line + b"a" * (MAX_HEADER_BYTES - len(line) - len(end) + 1) + end)
    probe.ask()
    answer = _answer(over)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    assert answer.endswith(b"\r\n\r\n431 Request Header Fields Too Large")
    probe.assert_fast_after()


def test_more_than_1000_header_fields_get_431(server: Server, probe: ReadyProbe) -> None:
    def request(fields: int) -> bytes:
        sock = _tls(server)
        extra = b"".join(b"X-F%d: v\r\n" % i for i in range(fields - 2))
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra + b"\r\n")
        return _answer(sock)

    assert request(MAX_HEADER_FIELDS).startswith(b"HTTP/1.1 200 ")
    probe.ask()
    assert request(MAX_HEADER_FIELDS + 1).startswith(b"HTTP/1.1 431 ")
    probe.assert_fast_after()


def _endless_header(port: int, ca_file: str) -> bytes:
    """One connection sending a header that never ends (4 MiB of it, four times the cap); what it got back."""
    ctx = ssl.create_default_context(cafile=ca_file)
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1")
    chunk = b"a" * 65536
    try:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        for _ in range(64):
            sock.sendall(chunk)
    except OSError:
        pass  # the server closed it after its answer
    return _answer(sock)


def _endless_headers(port: int, ca_file: str, connections: int) -> list[bytes]:
    os.nice(19)  # a real attacker has CPUs of its own: it must not take the server's two cores here
    with ThreadPoolExecutor(connections) as pool:
        return list(pool.map(lambda _: _endless_header(port, ca_file), range(connections)))


def test_never_ending_headers_are_cut_and_memory_stays_bounded(server: Server, probe: ReadyProbe) -> None:
    pid = server.proc.pid
    before = _rss(pid)
    peak = before
    # The attackers run in another process, so the probe times the server, not this process's GIL.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as attacker:
        attack = attacker.submit(_endless_headers, server.port, str(server.ca_file), 20)
        while not attack.done():
            peak = max(peak, _rss(pid))
            probe.ask()
            time.sleep(0.05)
        answers = attack.result()
    for answer in answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert any(a.startswith(b"HTTP/1.1 431 ") for a in answers), "no connection saw the 431"
    growth = peak - before
    assert growth < RSS_GROWTH_BOUND, f"RSS grew by {growth / 2**20:.0f} MiB"
    probe.assert_fast_after()


def test_slowloris_and_silent_connections_are_closed_after_the_header_timeout(
        server: Server, probe: ReadyProbe) -> None:
    slow = {f"slowloris-{i}": Opened(_tls(server)) for i in range(20)}
    for conn in slow.values():
        conn.sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    silent_tls = {f"tls-without-request-{i}": Opened(_tls(server)) for i in range(10)}
    no_hello = {f"tcp-without-clienthello-{i}": Opened(socket.create_connection(("127.0.0.1", server.port)))
                for i in range(20)}

    def trickle() -> Iterator[None]:
        while True:
            for conn in slow.values():
                with contextlib.suppress(OSError):
                    conn.sock.sendall(b"a")
            yield

    conns = {**slow, **silent_tls, **no_hello}
    closed = _watch_closing(conns, probe, HEADER_TIMEOUT + LATE + 1, trickle())
    assert set(closed) == set(conns), f"still open: {sorted(set(conns) - set(closed))}"
    early = {name: t for name, t in closed.items() if t < HEADER_TIMEOUT - 0.2}
    assert not early, f"closed before the header timeout: {early}"
    late = {name: t for name, t in closed.items() if t > HEADER_TIMEOUT + LATE}
    assert not late, f"closed late: {late}"
    probe.assert_fast_after()
    for conn in conns.values():
        conn.sock.close()


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(server: Server, probe: ReadyProbe) -> None:
    sock = _tls(server)
    sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.settimeout(10)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    closed = _watch_closing({"idle": Opened(sock)}, probe, IDLE_TIMEOUT + LATE)
    assert "idle" in closed, f"an idle keep-alive connection was still open after {IDLE_TIMEOUT + LATE:g} s"
    # Past the header timeout: between requests only the idle clock runs.
    assert IDLE_TIMEOUT - 0.2 <= closed["idle"] <= IDLE_TIMEOUT + LATE, closed
    probe.assert_fast_after()
    sock.close()


@pytest.mark.parametrize("piece", [None, 1], ids=["one-write", "byte-by-byte"])
def test_pipelined_requests_are_all_answered(server: Server, probe: ReadyProbe, piece: int | None) -> None:
    """Header bytes are held back until a line ends; nothing of a body or a next request may be lost."""
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, indent=1).encode()
    review = (b"POST /apis/authentication.k8s.io/v1/selfsubjectreviews HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    ready = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    last = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    payload = review + ready + last
    sock = _tls(server, client_cert=True)
    step = piece or len(payload)
    for start in range(0, len(payload), step):
        sock.sendall(payload[start:start + step])
    statuses = [part.split(b"\r\n", 1)[0] for part in _answer(sock).split(b"HTTP/1.1 ")[1:]]
    assert statuses == [b"201 Created", b"200 OK", b"200 OK"]
    probe.assert_fast_after()


def test_answer_before_a_large_body_ends_says_close_and_closes(server: Server, probe: ReadyProbe) -> None:
    """A body nobody will read is not waited for: the early answer says `Connection: close`, as Go's does
    with more than 256 KiB left, and the connection is closed."""
    sock = _tls(server)
    sock.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
    started = time.monotonic()
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"\r\nconnection: close\r\n" in answer.split(b"\r\n\r\n", 1)[0].lower() + b"\r\n", answer[:300]
    assert time.monotonic() - started < 1.0, "the server waited for the body before closing"
    probe.assert_fast_after()


def test_answer_before_a_small_body_ends_keeps_the_connection(server: Server, probe: ReadyProbe) -> None:
    """With at most 256 KiB of body left, Go reads and drops the rest and the connection serves the next
    request; the early answer does not say close."""
    sock = _tls(server)
    sock.settimeout(10)
    sock.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Authorization: Bearer not-a-token\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 401 "), head[:200]
    assert b"connection: close" not in head.lower(), head[:300]
    sock.sendall(b"x" * 100000 + b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    rest = _answer(sock)
    assert b"HTTP/1.1 200 " in rest, rest[:300]
    probe.assert_fast_after()


def test_watch_without_events_outlives_both_timeouts(server: Server, probe: ReadyProbe) -> None:
    name = "connections-watch"
    watch = http.client.HTTPSConnection("127.0.0.1", server.port, context=_context(server, True), timeout=10)
    watch.request("GET", f"/api/v1/namespaces/default/configmaps?watch=true&fieldSelector=metadata.name%3D{name}")
    res = watch.getresponse()
    assert res.status == 200
    quiet_until = time.monotonic() + max(HEADER_TIMEOUT, IDLE_TIMEOUT) + 1.5
    while time.monotonic() < quiet_until:
        probe.ask()
        time.sleep(0.1)
    assert not _is_closed(watch.sock), "the server closed a quiet watch"
    status, _ = probe.request("POST", "/api/v1/namespaces/default/configmaps",
                              {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    assert status == 201
    event = json.loads(res.readline())
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", name)
    probe.assert_fast_after()
    watch.close()


def test_busy_port_is_one_line(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", free_port()))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        res = subprocess.run([sys.executable, "-m", "kubesat.cli", "serve", "--data-dir", str(tmp_path / "data"),
                              "--port", str(port)], check=False, capture_output=True, text=True, timeout=60)
    finally:
        holder.close()
    assert res.returncode != 0
    assert res.stdout == ""
    assert res.stderr == (f"kubesat: error: port {port} on 127.0.0.1 is in use (by pid {os.getpid()}); "
                          "choose another with --port\n")
