"""Custom resources under load (issue 13): 10,000 custom resources of a CRD whose schema has 50 fields and
5 CEL rules, created through the API with wrk, against 10,000 ConfigMaps created the same way in the same run
(target: the custom resources' rate at least 0.5x the ConfigMaps')."""

from __future__ import annotations

import http.client
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from suite import wrk
from suite.common import Kubesat, Results, bench_identity

SECTION = "customresources"
GROUP = "bench.kubesat.io"
FIELDS = 50
CONNECTIONS = 8
# Five rules of the kinds operators write: bounds between fields, a pattern, a list check, a transition rule
# and a has() guard.
RULES = [
    {"rule": "self.f0 <= self.f1", "message": "f0 must not exceed f1"},
    {"rule": "self.name.matches('^[a-z][a-z0-9-]*$')", "message": "name must be a DNS label"},
    {"rule": "self.tags.all(t, t.size() <= 16)", "message": "tags are at most 16 characters"},
    {"rule": "!has(self.f2) || self.f2 >= 0", "message": "f2 must not be negative"},
    {"rule": "self.mode == 'a' || self.mode == 'b'", "message": "mode is a or b"},
]


def _spec_schema() -> dict[str, Any]:
    props: dict[str, Any] = {f"f{i}": {"type": "integer", "minimum": 0, "maximum": 1_000_000}
                             for i in range(FIELDS - 3)}
    props["name"] = {"type": "string", "maxLength": 63}
    props["mode"] = {"type": "string", "enum": ["a", "b"]}
    props["tags"] = {"type": "array", "maxItems": 8, "items": {"type": "string", "maxLength": 32}}
    return {"type": "object", "properties": props, "x-kubernetes-validations": RULES}


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": "gadgets", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": _spec_schema()}}}}]},
    }


def gadget_template() -> str:
    """A Gadget's body with `%d` where wrk puts a counter (the name)."""
    spec: dict[str, Any] = {f"f{i}": i * 10 for i in range(FIELDS - 3)}
    spec.update({"name": "gadget", "mode": "a", "tags": ["one", "two", "three"]})
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g-NUM"}, "spec": spec}
    return json.dumps(body).replace("NUM", "%d")


def configmap_template() -> str:
    data = {f"k{i}": str(i * 10) for i in range(FIELDS)}
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-NUM"},
                       "data": data}).replace("NUM", "%d")


def _call(ks: Kubesat, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", ks.port, context=ks.tls_context())
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _established(ks: Kubesat) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, _ = _call(ks, "GET", f"/apis/{GROUP}/v1/namespaces/bench/gadgets?limit=1")
        if status == 200:
            return
        time.sleep(0.05)
    raise SystemExit("the bench CRD was not served within 10 s")


def _create(ks: Kubesat, token: str, path: str, template: str, count: int) -> float:
    """Create `count` objects with wrk; objects per second."""
    load = wrk.Load("POST", path, token, None, 201, '"creationTimestamp"', limit=count, body_tpl=template)
    r = wrk.run(ks.url, load, 3600, CONNECTIONS, timeout_s=30)
    if int(r.raw["good_ok"]) < count or r.raw["failed"]:  # type: ignore[call-overload]
        raise SystemExit(f"creating {path}: {r.raw}")
    return count / (r.raw["duration_us"] / 1e6)  # type: ignore[operator]


def run(res: Results, quick: bool) -> None:
    count = 2_000 if quick else 10_000
    print(f"[{SECTION}] {count} custom resources ({FIELDS} fields, {len(RULES)} CEL rules) vs {count} ConfigMaps",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="kubesat-bench-cr-") as d:
        ks = Kubesat(Path(d) / "data")
        try:
            token = bench_identity(ks)
            status, body = _call(ks, "POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}})
            if status != 201:
                raise SystemExit(f"namespace: {status} {body[:200]!r}")
            status, body = _call(ks, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd())
            if status != 201:
                raise SystemExit(f"CRD: {status} {body[:300]!r}")
            _established(ks)
            refused = _call(ks, "POST", f"/apis/{GROUP}/v1/namespaces/bench/gadgets",
                            json.loads(gadget_template().replace("%d", "bad").replace('"mode": "a"', '"mode": "c"')))
            if refused[0] != 422:  # the rules are enforced, not skipped
                raise SystemExit(f"a Gadget breaking a rule was answered {refused[0]}")
            cms = _create(ks, token, "/api/v1/namespaces/bench/configmaps", configmap_template(), count)
            crs = _create(ks, token, f"/apis/{GROUP}/v1/namespaces/bench/gadgets", gadget_template(), count)
        finally:
            ks.stop()
    res.add(SECTION, f"create {count} custom resources (50 fields, 5 rules)", crs, "objects/s",
            f"{count} ConfigMaps of 50 keys", cms, target="ratio >= 0.5")
