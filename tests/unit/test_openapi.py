"""OpenAPI documents, checked by shape and by the real kubectl (explain, apply, api-resources) on a loopback server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubesat.api import discovery, openapi
from kubesat.registry import kinds

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


# --------------------------------------------------------------------------------- pure checks

def test_v2_document_shape() -> None:
    doc = json.loads(openapi.openapi_v2())
    assert doc["swagger"] == "2.0"
    assert doc["info"] == {"title": "Kubernetes", "version": "v1.32.0"}
    defs = doc["definitions"]
    for r in kinds.RESOURCES:
        assert r.definition in defs
        gvks = defs[r.definition]["x-kubernetes-group-version-kind"]
        assert {"group": r.group, "version": r.version, "kind": r.kind} in gvks
        if "list" in r.verbs:
            assert r.definition + "List" in defs
    for meta in ("Status", "DeleteOptions", "APIResourceList", "WatchEvent", "ObjectMeta"):
        assert f"io.k8s.apimachinery.pkg.apis.meta.v1.{meta}" in defs
    # Every reference resolves inside the document.
    refs: set[str] = set()
    openapi._refs_in(doc, refs)
    assert refs <= set(defs)


def test_v2_paths_and_operation_ids() -> None:
    paths = json.loads(openapi.openapi_v2())["paths"]
    pods = paths["/api/v1/namespaces/{namespace}/pods"]
    assert pods["get"]["operationId"] == "listCoreV1NamespacedPod"
    assert pods["get"]["x-kubernetes-action"] == "list"
    assert pods["get"]["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Pod", "version": "v1"}
    assert pods["post"]["operationId"] == "createCoreV1NamespacedPod"
    assert pods["delete"]["operationId"] == "deleteCoreV1CollectionNamespacedPod"
    item = paths["/api/v1/namespaces/{namespace}/pods/{name}"]
    assert {item[m]["operationId"] for m in ("get", "put", "patch", "delete")} == {
        "readCoreV1NamespacedPod", "replaceCoreV1NamespacedPod", "patchCoreV1NamespacedPod", "deleteCoreV1NamespacedPod"
    }
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert paths["/api/v1/watch/namespaces/{namespace}/pods/{name}"]["get"]["operationId"] == "watchCoreV1NamespacedPod"
    token = paths["/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"]["post"]
    assert token["operationId"] == "createCoreV1NamespacedServiceAccountToken"
    assert token["x-kubernetes-group-version-kind"] == {
        "group": "authentication.k8s.io", "kind": "TokenRequest", "version": "v1"
    }
    assert paths["/api/v1/namespaces/{name}/finalize"]["put"]["operationId"] == "replaceCoreV1NamespaceFinalize"
    roles = paths["/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles"]
    assert roles["get"]["operationId"] == "listRbacAuthorizationV1NamespacedRole"
    review = paths["/apis/authentication.k8s.io/v1/tokenreviews"]
    assert set(review) == {"post", "parameters"}
    assert review["post"]["operationId"] == "createAuthenticationV1TokenReview"
    assert "/apis/rbac.authorization.k8s.io/" in paths and "/api/v1/" in paths


def test_v3_index_lists_every_group_version_with_hash() -> None:
    index = openapi.openapi_v3_index(openapi.openapi_v3_hash)["paths"]
    expected = {"api", "apis", "api/v1"} | {f"apis/{g}/v1" for g in kinds.GROUP_ORDER if g} | {
        f"apis/{g}" for g in kinds.GROUP_ORDER if g
    }
    assert expected <= set(index)
    url = index["apis/rbac.authorization.k8s.io/v1"]["serverRelativeURL"]
    h = openapi.openapi_v3_hash("apis/rbac.authorization.k8s.io/v1")
    assert url == f"/openapi/v3/apis/rbac.authorization.k8s.io/v1?hash={h}"
    assert len(h) == 128 and h == h.upper()
    for key in index:
        assert openapi.openapi_v3_group(key) is not None, key


def test_v3_group_document() -> None:
    doc = json.loads(openapi.openapi_v3_group("api/v1") or b"")
    assert doc["openapi"].startswith("3.0")
    schemas = doc["components"]["schemas"]
    sa = schemas["io.k8s.api.core.v1.ServiceAccount"]
    assert sa["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "ServiceAccount", "version": "v1"}]
    assert sa["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    text = json.dumps(doc)
    assert "#/definitions/" not in text
    assert "io.k8s.api.authentication.v1.TokenRequest" in schemas
    assert "io.k8s.api.rbac.v1.Role" not in schemas
    op = doc["paths"]["/api/v1/namespaces/{namespace}/serviceaccounts"]["post"]
    assert op["requestBody"]["content"]["*/*"]["schema"]["$ref"].endswith("io.k8s.api.core.v1.ServiceAccount")
    assert openapi.openapi_v3_group("apis/nope.example.com/v1") is None
    assert openapi.openapi_v3_group("api/v2") is None
    # Query strings and slashes do not change the key.
    assert openapi.openapi_v3_group("/api/v1?hash=X") == openapi.openapi_v3_group("api/v1")


def test_documents_are_cached_and_stable() -> None:
    assert openapi.openapi_v2() is openapi.openapi_v2()
    assert openapi.openapi_v3_hash("api/v1") == openapi.openapi_v3_hash("api/v1/")


# ------------------------------------------------------------------------ loopback kube server

class _FakeServer:
    """Discovery and OpenAPI from kubesat's modules; resource GETs answer 404 and JSON POSTs echo back."""

    def __init__(self, aggregated: bool = True) -> None:
        self.aggregated = aggregated
        self.log: list[tuple[str, str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, ct: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ct)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                accept = self.headers.get("Accept", "")
                fake.log.append(("GET", self.path, accept))
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                parts = [p for p in path.split("/") if p]
                if path == "/version":
                    return self._send(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.4"})
                if path in ("/api", "/apis"):
                    agg = discovery.accept_wants_aggregated(accept) if fake.aggregated else None
                    if agg:
                        ct = f"application/json;g=apidiscovery.k8s.io;v={agg};as=APIGroupDiscoveryList"
                        return self._send(200, discovery.aggregated_discovery(path == "/api", agg), ct)
                    if path == "/api":
                        return self._send(200, discovery.api_versions("127.0.0.1:6443"))
                    return self._send(200, discovery.api_group_list())
                if path == "/openapi/v3":
                    return self._send(200, openapi.openapi_v3_index(openapi.openapi_v3_hash))
                if path.startswith("/openapi/v3/"):
                    doc = openapi.openapi_v3_group(path[len("/openapi/v3/"):])
                    return self._send(200, doc) if doc else self._send(404, _not_found())
                doc = None
                if len(parts) == 2 and parts[0] == "api":
                    doc = discovery.api_resource_list("", parts[1])
                elif len(parts) == 2 and parts[0] == "apis":
                    doc = discovery.api_group(parts[1])
                elif len(parts) == 3 and parts[0] == "apis":
                    doc = discovery.api_resource_list(parts[1], parts[2])
                return self._send(200, doc) if doc is not None else self._send(404, _not_found())

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.log.append(("POST", self.path, self.headers.get("Content-Type", "")))
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    return self._send(201, body)
                return self._send(415, {"kind": "Status", "apiVersion": "v1", "code": 415})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _not_found() -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404}


needs_kubectl = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl binary not available")


@pytest.fixture
def server() -> Iterator[_FakeServer]:
    s = _FakeServer()
    yield s
    s.close()


def _kubectl(server: _FakeServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "KUBECONFIG": "/dev/null"}
    return subprocess.run([KUBECTL, f"--server={server.url}", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@needs_kubectl
def test_kubectl_explain_serviceaccount(server: _FakeServer, tmp_path: Path) -> None:
    res = _kubectl(server, tmp_path, "explain", "serviceaccount")
    assert res.returncode == 0, res.stderr
    assert "KIND:       ServiceAccount" in res.stdout
    assert "VERSION:    v1" in res.stdout
    assert "automountServiceAccountToken\t<boolean>" in res.stdout
    assert "metadata\t<ObjectMeta>" in res.stdout
    assert "secrets\t<[]ObjectReference>" in res.stdout
    gets = [p for m, p, _ in server.log if m == "GET"]
    assert "/openapi/v3" in [p.split("?")[0] for p in gets]
    assert any(p.startswith("/openapi/v3/api/v1?hash=") for p in gets)


@needs_kubectl
def test_kubectl_explain_nested_fields(server: _FakeServer, tmp_path: Path) -> None:
    res = _kubectl(server, tmp_path, "explain", "pod.spec.containers.name")
    assert res.returncode == 0, res.stderr
    assert "FIELD: name <string>" in res.stdout
    assert "Name of the container specified as a DNS_LABEL" in res.stdout
    res = _kubectl(server, tmp_path, "explain", "pod.spec.containers")
    assert res.returncode == 0, res.stderr
    assert "FIELD: containers <[]Container>" in res.stdout
    res = _kubectl(server, tmp_path, "explain", "role.rules")
    assert res.returncode == 0, res.stderr
    assert "GROUP:      rbac.authorization.k8s.io" in res.stdout
    assert "FIELD: rules <[]PolicyRule>" in res.stdout
    assert "verbs\t<[]string> -required-" in res.stdout


@needs_kubectl
def test_kubectl_explain_recursive_projected_volume(server: _FakeServer, tmp_path: Path) -> None:
    res = _kubectl(server, tmp_path, "explain", "pod.spec.volumes.projected.sources.serviceAccountToken")
    assert res.returncode == 0, res.stderr
    for f in ("audience\t<string>", "expirationSeconds\t<integer>", "path\t<string> -required-"):
        assert f in res.stdout


@needs_kubectl
def test_kubectl_apply_fetches_openapi_then_creates(server: _FakeServer, tmp_path: Path) -> None:
    manifest = tmp_path / "sa.yaml"
    manifest.write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: foo\n  namespace: default\n")
    res = _kubectl(server, tmp_path, "apply", "-f", str(manifest))
    assert res.returncode == 0, res.stderr
    assert "serviceaccount/foo created" in res.stdout
    paths = [p for _, p, _ in server.log]
    assert any(p.startswith("/openapi/v3/api/v1?hash=") for p in paths)
    posts = [(p, ct) for m, p, ct in server.log if m == "POST"]
    assert posts and posts[0][0].startswith("/api/v1/namespaces/default/serviceaccounts?")
    assert "fieldValidation=Strict" in posts[0][0]


@needs_kubectl
def test_kubectl_api_resources_with_aggregated_discovery(server: _FakeServer, tmp_path: Path) -> None:
    res = _kubectl(server, tmp_path, "api-resources")
    assert res.returncode == 0, res.stderr
    _check_api_resources(res.stdout)
    # Aggregated discovery answered: no per group-version APIResourceList was needed.
    gets = [p.split("?")[0] for m, p, _ in server.log if m == "GET"]
    assert "/api/v1" not in gets


@needs_kubectl
def test_kubectl_api_resources_with_plain_discovery(tmp_path: Path) -> None:
    s = _FakeServer(aggregated=False)
    try:
        res = _kubectl(s, tmp_path, "api-resources")
        assert res.returncode == 0, res.stderr
        _check_api_resources(res.stdout)
        gets = [p.split("?")[0] for m, p, _ in s.log if m == "GET"]
        assert "/api/v1" in gets and "/apis/rbac.authorization.k8s.io/v1" in gets
    finally:
        s.close()


def _check_api_resources(out: str) -> None:
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert rows["serviceaccounts"] == ["serviceaccounts", "sa", "v1", "true", "ServiceAccount"]
    assert rows["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert rows["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert rows["roles"] == ["roles", "rbac.authorization.k8s.io/v1", "true", "Role"]
    assert rows["tokenreviews"] == ["tokenreviews", "authentication.k8s.io/v1", "false", "TokenReview"]
    assert "serviceaccounts/token" not in rows
