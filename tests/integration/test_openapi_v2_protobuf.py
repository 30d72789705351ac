"""/openapi/v2 in gnostic's protobuf form on a real server, read by the real kubectl: explain from the v2 document,
and client-side validation of the create-only review kinds (TokenReview, SubjectAccessReview)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from kubesat.api import openapi

from .conftest import Server
from .test_api_mechanics import Raw

pytestmark = pytest.mark.integration

PB = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
PB_AS_KUBECTL_ASKS = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
CRD_LIST = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@pytest.fixture(scope="module")
def raw(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Raw:
    return Raw(server, tmp_path_factory.mktemp("raw-openapi"))


# ---------------------------------------------------------------------------- the HTTP answer

def test_protobuf_form_under_both_names(raw: Raw) -> None:
    json_answer = raw.req("GET", "/openapi/v2", headers={"Accept": "application/json"})
    assert json_answer.status_code == 200
    assert json_answer.headers["content-type"] == "application/json"
    for accept in (PB_AS_KUBECTL_ASKS, PB):
        r = raw.req("GET", "/openapi/v2", headers={"Accept": accept})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == PB
        assert r.content == openapi.openapi_v2_protobuf()
        assert r.headers["etag"] == json_answer.headers["etag"]
        assert r.headers["vary"] == "Accept"
    assert json_answer.headers["etag"] == '"' + hashlib.sha512(json_answer.content).hexdigest().upper() + '"'


def test_if_none_match_and_not_acceptable(raw: Raw) -> None:
    etag = raw.req("GET", "/openapi/v2").headers["etag"]
    for accept in ("application/json", PB_AS_KUBECTL_ASKS):
        r = raw.req("GET", "/openapi/v2", headers={"Accept": accept, "If-None-Match": etag})
        assert r.status_code == 304 and r.content == b""
    r = raw.req("GET", "/openapi/v2", headers={"Accept": PB, "If-None-Match": '"stale"'})
    assert r.status_code == 200 and r.content == openapi.openapi_v2_protobuf()
    for accept in ("text/html", "application/vnd.kubernetes.protobuf", "application/json;q=0"):
        r = raw.req("GET", "/openapi/v2", headers={"Accept": accept})
        assert r.status_code == 406, (accept, r.status_code)
        assert r.json()["reason"] == "NotAcceptable"


# ----------------------------------------------------------------------------------- kubectl

def test_explain_from_the_v2_document(server: Server) -> None:
    # plaintext-openapiv2 makes kubectl download the protobuf form and parse every definition in it.
    out = server.kubectl("explain", "tokenreview.spec", "--output=plaintext-openapiv2").stdout
    assert "KIND:     TokenReview" in out and "VERSION:  authentication.k8s.io/v1" in out
    assert "token\t<string>" in out and "audiences\t<[]string>" in out
    out = server.kubectl("explain", "pod.spec.volumes.projected.sources.serviceAccountToken",
                         "--output=plaintext-openapiv2").stdout
    assert "expirationSeconds\t<integer>" in out
    # The default (OpenAPI v3) explain is unchanged.
    out = server.kubectl("explain", "serviceaccount.automountServiceAccountToken").stdout
    assert "automountServiceAccountToken" in out and "boolean" in out


def _token_review(token: str, field: str = "token") -> str:
    return yaml.safe_dump({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                           "spec": {field: token}})


def test_create_token_review_without_validation(server: Server) -> None:
    token = server.kubectl("create", "token", "default").stdout.strip()
    res = server.kubectl("create", "--validate=false", "-f", "-", "-o", "jsonpath={.status.authenticated}",
                         input=_token_review(token))
    assert res.stdout == "true"


class _CRDListStandIn:
    """A plain-HTTP front for the server that answers the CustomResourceDefinition list itself.

    kubectl decides between server- and client-side validation of a kind with no PATCH endpoint by asking whether it
    is a CRD (cli-runtime's QueryParamVerifier lists customresourcedefinitions). kubesat does not serve
    apiextensions.k8s.io, so this front answers that one list as a cluster without CRDs does (an empty list) and
    passes every other request to the server unchanged, as the admin (its client certificate). Drop it once kubesat
    serves that list.
    """

    def __init__(self, server: Server, tmp: Path) -> None:
        user = yaml.safe_load(server.kubeconfig.read_text())["users"][0]["user"]
        cert, key = tmp / "admin.crt", tmp / "admin.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        tls = ssl.create_default_context(cafile=str(server.ca_file))
        tls.load_cert_chain(str(cert), str(key))
        self.crd_lists = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                if self.command == "GET" and self.path.split("?", 1)[0] == CRD_LIST:
                    front.crd_lists += 1
                    empty = {"kind": "CustomResourceDefinitionList", "apiVersion": "apiextensions.k8s.io/v1",
                             "metadata": {"resourceVersion": "1"}, "items": []}
                    return self._answer(200, [("Content-Type", "application/json")], json.dumps(empty).encode())
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    r = conn.getresponse()
                    self._answer(r.status, r.getheaders(), r.read())
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.kubeconfig = tmp / "front.kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "front",
            "clusters": [{"name": "front", "cluster": {"server": f"http://127.0.0.1:{self.httpd.server_address[1]}"}}],
            "users": [{"name": "front", "user": {}}],
            "contexts": [{"name": "front", "context": {"cluster": "front", "user": "front"}}],
        }))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def front(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_CRDListStandIn]:
    f = _CRDListStandIn(server, tmp_path_factory.mktemp("front"))
    yield f
    f.close()


def test_create_token_review_is_validated_client_side(server: Server, front: _CRDListStandIn) -> None:
    token = server.kubectl("create", "token", "default").stdout.strip()
    before = front.crd_lists
    res = server.kubectl("create", "-f", "-", "-o", "yaml", input=_token_review(token),
                         kubeconfig=str(front.kubeconfig))
    status = yaml.safe_load(res.stdout)["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == "system:serviceaccount:default:default"
    assert front.crd_lists > before  # kubectl did take the client-side validation path


def test_unknown_field_fails_client_side_validation(server: Server, front: _CRDListStandIn) -> None:
    res = server.kubectl("create", "-f", "-", input=_token_review("x", field="tokn"), check=False,
                         kubeconfig=str(front.kubeconfig))
    assert res.returncode != 0
    assert 'unknown field "tokn"' in res.stderr, res.stderr
    assert "io.k8s.api.authentication.v1.TokenReviewSpec" in res.stderr
    assert "turn validation off with --validate=false" in res.stderr


def test_create_subject_access_review(server: Server, front: _CRDListStandIn) -> None:
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": "system:serviceaccount:default:default",
                    "resourceAttributes": {"verb": "list", "resource": "secrets", "namespace": "default"}}}
    res = server.kubectl("create", "-f", "-", "-o", "jsonpath={.status.allowed}", input=yaml.safe_dump(sar),
                         kubeconfig=str(front.kubeconfig))
    assert res.stdout == "false"
    sar["spec"] = {"user": "someone", "groups": ["system:masters"],
                   "resourceAttributes": {"verb": "list", "resource": "secrets", "namespace": "default"}}
    res = server.kubectl("create", "-f", "-", "-o", "jsonpath={.status.allowed}", input=yaml.safe_dump(sar),
                         kubeconfig=str(front.kubeconfig))
    assert res.stdout == "true"
