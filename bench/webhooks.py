"""Create latency with and without a validating admission webhook, against the webhook's own response time.

A `kubesat serve` (no node) and the HTTPS webhook server of the integration tests (a thread in this process).
wrk (one connection, keep-alive, a ServiceAccount token) creates ConfigMaps in alternating rounds: without any
webhook configuration, then with one ValidatingWebhookConfiguration (url, caBundle) that allows every ConfigMap
create. The webhook's own time is wrk POSTing an AdmissionReview to it directly over one keep-alive connection.
Each figure is wrk's p50 over the round; the reported p50 is the median of the rounds'.

Usage: python bench/webhooks.py [--rounds 4] [--per-round 300]
Target: p50 with the webhook <= p50 without + the webhook's own p50 + 2 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from suite import wrk  # noqa: E402 - bench/ is on the path now
from suite.common import Kubesat, bench_identity  # noqa: E402
from tests.integration.webhookserver import WebhookServer  # noqa: E402 - the repository root is on the path now

VWC_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def _call(ks: Kubesat, method: str, path: str, body: object = None) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", ks.port, context=ks.tls_context())
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def creates(ks: Kubesat, token: str, n: int, tag: str) -> float:
    """wrk's p50 (ms) of `n` ConfigMap creates over one connection."""
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{tag}-NUM"},
                       "data": {"k": "v"}}).replace("NUM", "%d")
    r = wrk.run(ks.url, wrk.Load("POST", CONFIGMAPS, token, None, 201, '"creationTimestamp"', limit=n,
                                 body_tpl=body), 3600, 1, timeout_s=30)
    if int(r.raw["good_ok"]) < n or r.raw["failed"]:  # type: ignore[call-overload]
        raise SystemExit(f"creates {tag}: {r.raw}")
    return r.p50_ms


def webhook_own(hooks: WebhookServer, seconds: float) -> float:
    """wrk's p50 (ms) of AdmissionReviews POSTed straight to the webhook over one connection."""
    review = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                         "request": {"uid": str(uuid.uuid4()), "operation": "CREATE",
                                     "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}}})
    base, _, path = hooks.url("allow").partition("/allow")
    r = wrk.run(base, wrk.Load("POST", "/allow" + path + "?timeout=10s", "", review, 200, '"allowed"'), seconds, 1)
    if r.failures:
        raise SystemExit(f"the webhook's own time: {r.raw}")
    return r.p50_ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--per-round", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, WebhookServer() as hooks:
        ks = Kubesat(Path(tmp) / "data")
        try:
            token = bench_identity(ks)
            config = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                      "metadata": {"name": "bench"}, "webhooks": [{
                          "name": "allow.bench.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                          "clientConfig": {"url": hooks.url("allow"), "caBundle": hooks.ca_bundle},
                          "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                     "resources": ["configmaps"]}]}]}
            creates(ks, token, 50, "warm")  # the server's first requests
            without, with_hook, own = [], [], []
            calls = 0  # the webhook calls the hooked creates made (the direct POSTs of webhook_own not counted)
            for rnd in range(args.rounds):
                without.append(creates(ks, token, args.per_round, f"plain-{rnd}"))
                if _call(ks, "POST", VWC_PATH, config) != 201:
                    raise SystemExit("could not create the webhook configuration")
                creates(ks, token, 5, f"warm-{rnd}")  # the server's connection to the webhook
                before = len(hooks.got("allow"))
                with_hook.append(creates(ks, token, args.per_round, f"hooked-{rnd}"))
                calls += len(hooks.got("allow")) - before
                _call(ks, "DELETE", f"{VWC_PATH}/bench")
                own.append(webhook_own(hooks, 2))
        finally:
            ks.stop()
    a, b, w = (statistics.median(x) for x in (without, with_hook, own))
    result = {"create_p50_ms_without": round(a, 2), "create_p50_ms_with_webhook": round(b, 2),
              "webhook_own_p50_ms": round(w, 2), "added_p50_ms": round(b - a, 2),
              "target_added_ms": round(w + 2, 2), "met": b - a <= w + 2, "webhook_calls": calls,
              "rounds": args.rounds, "creates_per_round": args.per_round}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
