"""HTTPS throughput over keep-alive connections: /livez (the cheapest endpoint), TokenReview and
TokenRequest, against a real `kubesat serve` holding 10,000 ServiceAccounts and 10,000 Pods.

Usage: python bench/throughput.py [--objects 10000] [--seconds 5] [--clients 4] [--token-clients 1,2,4,8]
                                  [--server-arg=--token-signing-processes=N]
Targets (issue 3): TokenReview >= 0.5x /livez; TokenRequest >= 0.6x the raw RSA-2048 sign rate per server
process (its peak over the client counts: a server's capacity is what it serves once it is kept busy).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_context(data: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(data / "pki" / "ca.crt"))
    user = yaml.safe_load((data / "admin.kubeconfig").read_text())["users"][0]["user"]
    cert = data / f"bench-admin-{os.getpid()}.crt"
    key = data / f"bench-admin-{os.getpid()}.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    os.chmod(key, 0o600)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def worker(data: str, port: int, method: str, path: str, body: bytes, seconds: float, q: mp.Queue) -> None:
    ctx = tls_context(Path(data))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    headers = {"Content-Type": "application/json"} if body else {}
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        conn.request(method, path, body=body or None, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status >= 400:
            raise SystemExit(f"{method} {path}: {r.status}")
        n += 1
    q.put(n)


def rate(data: Path, port: int, method: str, path: str, body: bytes, seconds: float, clients: int) -> float:
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=worker, args=(str(data), port, method, path, body, seconds, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def raw_sign_rate(seconds: float = 2.0) -> float:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    msg = b"x" * 600
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
        n += 1
    return n / seconds


def populate(data: Path, port: int, count: int) -> None:
    ctx = tls_context(data)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)

    def post(path: str, obj: dict) -> None:
        conn.request("POST", path, body=json.dumps(obj), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status not in (201, 409):
            raise SystemExit(f"POST {path}: {r.status}")

    post("/api/v1/namespaces", {"metadata": {"name": "bench"}})
    time.sleep(0.5)
    for i in range(count):
        post("/api/v1/namespaces/bench/serviceaccounts", {"metadata": {"name": f"sa-{i}"}})
        post("/api/v1/namespaces/bench/pods", {"metadata": {"name": f"pod-{i}"}, "spec": {
            "serviceAccountName": f"sa-{i}", "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "busybox"}]}})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=4, help="client processes for /livez and TokenReview")
    ap.add_argument("--token-clients", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4, 8],
                    help="client counts to measure TokenRequest at (comma-separated)")
    ap.add_argument("--server-arg", dest="server_args", action="append", default=[],
                    help="extra `kubesat serve` argument (repeatable), e.g. --server-arg=--token-signing-processes=0")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "serve", "--no-node",
                                 "--data-dir", str(data), "--port",
                                 str(port), *args.server_args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()
            t0 = time.perf_counter()
            populate(data, port, args.objects)
            print(f"stored {args.objects} ServiceAccounts and {args.objects} Pods in {time.perf_counter() - t0:.1f} s")
            ctx = tls_context(data)
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
            mid = args.objects // 2
            conn.request("POST", f"/api/v1/namespaces/bench/serviceaccounts/sa-{mid}/token",
                         body=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                          "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                                      "name": f"pod-{mid}"}}}),
                         headers={"Content-Type": "application/json"})
            token = json.loads(conn.getresponse().read())["status"]["token"]
            review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                 "spec": {"token": token}}).encode()
            livez = rate(data, port, "GET", "/livez", b"", args.seconds, args.clients)
            tr = rate(data, port, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", review, args.seconds,
                      args.clients)
            treq = {n: rate(data, port, "POST", f"/api/v1/namespaces/bench/serviceaccounts/sa-{mid}/token",
                            b'{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}',
                            args.seconds, n)
                    for n in args.token_clients}
            sign = raw_sign_rate()
            print(f"/livez: {livez:,.0f} req/s ({args.clients} clients)")
            print(f"TokenReview: {tr:,.0f} req/s = {tr / livez:.2f}x /livez (target >= 0.5x; {args.clients} clients)")
            print(f"raw RSA-2048 sign on one core: {sign:,.0f}/s")
            for n, r in treq.items():
                print(f"TokenRequest, {n} client(s): {r:,.0f} req/s = {r / sign:.2f}x raw sign")
            best = max(treq, key=lambda n: treq[n])
            print(f"TokenRequest peak: {treq[best]:,.0f} req/s at {best} clients = {treq[best] / sign:.2f}x raw sign "
                  f"(target >= 0.6x per server process; server args: {' '.join(args.server_args) or 'defaults'})")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
