"""CustomResourceDefinitions: from a CRD's create to its custom resources served (Established, listed, created)."""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from suite.common import Kubesat, Results

SECTION = "crd"


def _crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {"type": "object",
                                                         "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }


class _Client:
    def __init__(self, ks: Kubesat) -> None:
        self.conn = http.client.HTTPSConnection("127.0.0.1", ks.port, context=ks.tls_context())

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")


def _established(doc: dict[str, Any]) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (doc.get("status") or {}).get("conditions") or [])


def _one(c: _Client, group: str) -> tuple[float, float]:
    """(ms to Established as a client polling sees it, ms to a custom resource created) after the CRD's create."""
    t0 = time.perf_counter()
    status, _ = c.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", _crd(group))
    assert status == 201, status
    while True:
        _, doc = c.call("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}")
        if _established(doc):
            break
    established = time.perf_counter()
    while True:
        status, _ = c.call("POST", f"/apis/{group}/v1/namespaces/default/widgets",
                           {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}})
        if status == 201:
            break
    served = time.perf_counter()
    return (established - t0) * 1000, (served - t0) * 1000


def run(res: Results, quick: bool) -> None:
    n = 10 if quick else 50
    print(f"[crd] {n} CRDs, each created then polled until Established and a custom resource is created", flush=True)
    with tempfile.TemporaryDirectory(prefix="kubesat-bench-crd-") as d:
        ks = Kubesat(Path(d) / "data")
        try:
            c = _Client(ks)
            c.call("GET", "/api/v1/namespaces/default")  # the connection and the first request's costs
            started = time.perf_counter()
            c.call("GET", "/api/v1/namespaces/default")
            floor = (time.perf_counter() - started) * 1000
            results = [_one(c, f"g{i}.bench.example.com") for i in range(n)]
        finally:
            ks.stop()
    est = sorted(r[0] for r in results)
    served = sorted(r[1] for r in results)
    res.add(SECTION, "CRD create -> Established (median)", statistics.median(est), "ms", "GET namespace", floor,
            detail=f"{n} CRDs; max {est[-1]:.1f} ms")
    res.add(SECTION, "CRD create -> custom resource created (max)", served[-1], "ms", "GET namespace", floor,
            target="value < 1000", detail=f"{n} CRDs; median {statistics.median(served):.1f} ms")
