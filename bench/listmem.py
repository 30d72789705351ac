"""Server memory (RSS) of large lists and of watches that start with a full list, against a real
`kubesat serve` holding many Pods.

Usage: python bench/listmem.py [--objects 10000] [--watches 200] [--writers 4]
Prints VmRSS (and the peak, VmHWM) of the server process: settled after seeding, after one full
`GET /api/v1/pods`, while `--watches` concurrent watches without a resourceVersion (each starts with
every Pod as ADDED) are open, and after they are closed. Target (issue 8): the growth is bounded by a
chunk of the list, not by the number of objects.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from suite.common import rss_mb
from throughput import free_port, tls_context

POD = {"spec": {"serviceAccountName": "default", "automountServiceAccountToken": False,
                "containers": [{"name": "c", "image": "busybox", "env": [{"name": "A", "value": "b" * 64}]}]}}


def seed(data: Path, port: int, count: int, writers: int) -> None:
    ctx = tls_context(data)

    def post(conn: http.client.HTTPSConnection, path: str, obj: dict) -> None:
        conn.request("POST", path, body=json.dumps(obj), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status not in (201, 409):
            raise SystemExit(f"POST {path}: {r.status}")

    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    post(conn, "/api/v1/namespaces", {"metadata": {"name": "bench"}})
    time.sleep(0.5)

    def run(part: int) -> None:
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
        for i in range(part, count, writers):
            post(c, "/api/v1/namespaces/bench/pods", {"metadata": {"name": f"pod-{i}"}, **POD})

    threads = [threading.Thread(target=run, args=(p,)) for p in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def full_list(data: Path, port: int) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls_context(data))
    conn.request("GET", "/api/v1/pods")
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"GET /api/v1/pods: {r.status}")
    return len(json.loads(body)["items"])


async def one_watch(ctx: ssl.SSLContext, port: int, want: int, all_started: asyncio.Event,
                    started: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(b"GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise SystemExit(f"watch: {head!r}")
    events = 0
    while events < want:  # chunked body: size line, data, CRLF
        size = int((await reader.readline()).strip(), 16)
        events += (await reader.readexactly(size + 2)).count(b"\n") - 1
    started[0] += 1
    if started[0] == started[1]:
        all_started.set()
    await all_started.wait()
    await asyncio.sleep(0)
    writer.close()


async def watches(data: Path, port: int, n: int, want: int, pid: int) -> tuple[float, float]:
    ctx = tls_context(data)
    all_started = asyncio.Event()
    started = [0, n]
    # Measured while every watch is open and has had all its initial events.
    measured: list[tuple[float, float]] = []

    async def measure() -> None:
        await all_started.wait()
        measured.append(rss_mb(pid))

    await asyncio.gather(measure(), *(one_watch(ctx, port, want, all_started, started) for _ in range(n)))
    return measured[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--watches", type=int, default=200)
    ap.add_argument("--writers", type=int, default=4, help="client threads seeding the Pods")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "serve", "--no-node",
                                 "--data-dir", str(data), "--port",
                                 str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()
            print(f"fresh server: RSS {rss_mb(proc.pid)[0]:.0f} MB")
            t0 = time.perf_counter()
            seed(data, port, args.objects, args.writers)
            time.sleep(2)
            base, hwm = rss_mb(proc.pid)
            print(f"stored {args.objects} Pods in {time.perf_counter() - t0:.1f} s: RSS {base:.0f} MB (peak {hwm:.0f})")
            t0 = time.perf_counter()
            items = full_list(data, port)
            took = time.perf_counter() - t0
            cur, hwm = rss_mb(proc.pid)
            print(f"after GET /api/v1/pods ({items} items, {took:.2f} s): RSS {cur:.0f} MB (+{cur - base:.0f}; "
                  f"peak {hwm:.0f})")
            t0 = time.perf_counter()
            cur, hwm = asyncio.run(watches(data, port, args.watches, args.objects, proc.pid))
            print(f"{args.watches} watches open with their {args.objects} initial events each "
                  f"({time.perf_counter() - t0:.1f} s): RSS {cur:.0f} MB (+{cur - base:.0f}; peak {hwm:.0f})")
            time.sleep(2)
            cur, hwm = rss_mb(proc.pid)
            print(f"after the watches closed: RSS {cur:.0f} MB (+{cur - base:.0f}; peak {hwm:.0f})")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
