"""Create latency with and without a validating admission webhook, against the webhook's own response time.

A `kubesat serve` (no node) and the HTTPS webhook server of the integration tests (a thread in this process);
ConfigMap creates over one keep-alive HTTPS connection, in alternating rounds without any webhook configuration
and with one ValidatingWebhookConfiguration (url, caBundle) that allows every ConfigMap create. The webhook's own
time is a direct POST of an AdmissionReview to it over a keep-alive connection from this process.

Usage: python bench/webhooks.py [--rounds 4] [--per-round 150]
Target: p50 with the webhook <= p50 without + the webhook's own p50 + 2 ms.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.integration.webhookserver import WebhookServer  # noqa: E402 - the repository root is on the path now

VWC_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "serve", "--data-dir", str(data_dir), "--port",
                             str(port), "--no-node"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if b"ready" not in line:
        proc.kill()
        raise SystemExit(f"kubesat did not start: {line!r}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def creates(api: httpx.Client, n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{tag}-{i}"}, "data": {"k": "v"}}
        start = time.perf_counter()
        r = api.post("/api/v1/namespaces/default/configmaps", json=body)
        out.append(time.perf_counter() - start)
        if r.status_code != 201:
            raise SystemExit(f"create failed: {r.status_code} {r.text}")
    return out


def webhook_own(hooks: WebhookServer, n: int) -> list[float]:
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=base64.b64decode(hooks.ca_bundle).decode())
    out = []
    with httpx.Client(verify=ctx) as c:
        for _ in range(n):
            review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "request": {"uid": str(uuid.uuid4()), "operation": "CREATE",
                                  "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}}}
            start = time.perf_counter()
            c.post(hooks.url("allow") + "?timeout=10s", json=review).raise_for_status()
            out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--per-round", type=int, default=150)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, WebhookServer() as hooks:
        data = Path(tmp) / "data"
        port = free_port()
        proc = start_server(data, port)
        try:
            pki = data / "pki"
            tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            tls.load_cert_chain(pki / "admin.crt", pki / "admin.key")
            api = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls)
            config = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                      "metadata": {"name": "bench"}, "webhooks": [{
                          "name": "allow.bench.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                          "clientConfig": {"url": hooks.url("allow"), "caBundle": hooks.ca_bundle},
                          "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                     "resources": ["configmaps"]}]}]}
            creates(api, 50, "warm")  # the server's first requests
            without: list[float] = []
            with_hook: list[float] = []
            own: list[float] = []
            for rnd in range(args.rounds):
                without += creates(api, args.per_round, f"plain-{rnd}")
                api.post(VWC_PATH, json=config).raise_for_status()
                creates(api, 5, f"warm-{rnd}")  # the server's connection to the webhook
                with_hook += creates(api, args.per_round, f"hooked-{rnd}")
                api.delete(f"{VWC_PATH}/bench").raise_for_status()
                own += webhook_own(hooks, args.per_round)
            calls = len(hooks.got("allow"))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    a, b, w = p50_ms(without), p50_ms(with_hook), p50_ms(own)
    result = {"create_p50_ms_without": round(a, 2), "create_p50_ms_with_webhook": round(b, 2),
              "webhook_own_p50_ms": round(w, 2), "added_p50_ms": round(b - a, 2),
              "target_added_ms": round(w + 2, 2), "met": b - a <= w + 2, "webhook_calls": calls,
              "samples_each": len(without)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
