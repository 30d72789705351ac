"""A small operator as users write them, run in a pod by tests/integration/test_operator.py: it reconciles
Widgets (widgets.example.com) with the official client's watch from its in-cluster ServiceAccount token, and
serves a mutating and a validating admission webhook over HTTPS from the same process.

- Reconcile: each Widget's status gets `phase: Ready`, `observedGeneration` and `replicas` = spec.size.
- Mutating webhook (/mutate): a Widget without spec.size gets size 1 and the label `widgets.example.com/managed`.
- Validating webhook (/validate): a Widget with spec.size above 10 is denied with "size N is above 10".

Usage: widget_operator.py CERT KEY PORT (the serving certificate and key, and the port to serve webhooks on).
"""

from __future__ import annotations

import base64
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

GROUP, VERSION, PLURAL = "example.com", "v1", "widgets"
MAX_SIZE = 10


def mutate(review: dict[str, Any]) -> dict[str, Any]:
    request = review["request"]
    obj = request["object"]
    patch: list[dict[str, Any]] = []
    if "size" not in (obj.get("spec") or {}):
        patch.append({"op": "add", "path": "/spec/size", "value": 1} if "spec" in obj
                     else {"op": "add", "path": "/spec", "value": {"size": 1}})
    if not (obj.get("metadata") or {}).get("labels"):
        patch.append({"op": "add", "path": "/metadata/labels", "value": {}})
    patch.append({"op": "add", "path": "/metadata/labels/widgets.example.com~1managed", "value": "true"})
    return {"uid": request["uid"], "allowed": True, "patchType": "JSONPatch",
            "patch": base64.b64encode(json.dumps(patch).encode()).decode()}


def validate(review: dict[str, Any]) -> dict[str, Any]:
    request = review["request"]
    size = ((request.get("object") or {}).get("spec") or {}).get("size", 0)
    if isinstance(size, int) and size > MAX_SIZE:
        return {"uid": request["uid"], "allowed": False,
                "status": {"code": 403, "message": f"size {size} is above {MAX_SIZE}"}}
    return {"uid": request["uid"], "allowed": True}


class Webhooks(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        handler = {"/mutate": mutate, "/validate": validate}.get(self.path.split("?")[0])
        if handler is None:
            self.send_error(404)
            return
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": handler(review)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        print("webhook:", format % args, flush=True)


def serve_webhooks(cert: str, key: str, port: int) -> None:
    server = ThreadingHTTPServer(("0.0.0.0", port), Webhooks)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"webhooks serving on :{port}", flush=True)


def reconcile(api: client.CustomObjectsApi, widget: dict[str, Any]) -> None:
    meta = widget["metadata"]
    status = {"phase": "Ready", "observedGeneration": meta.get("generation"),
              "replicas": (widget.get("spec") or {}).get("size", 0)}
    if widget.get("status") == status:
        return
    api.patch_namespaced_custom_object_status(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"],
                                              {"status": status})
    print(f"reconciled {meta['namespace']}/{meta['name']}: {status}", flush=True)


def main() -> None:
    cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    serve_webhooks(cert, key, port)
    config.load_incluster_config()
    api = client.CustomObjectsApi()
    namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    while True:
        stream = watch.Watch().stream(api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                      timeout_seconds=60)
        for event in stream:
            if event["type"] in ("ADDED", "MODIFIED"):
                reconcile(api, event["object"])


if __name__ == "__main__":
    main()
