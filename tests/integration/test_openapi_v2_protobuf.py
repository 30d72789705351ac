"""/openapi/v2 in gnostic's protobuf form on a real server, read by the real kubectl: explain from the v2 document,
and client-side validation of the create-only review kinds (TokenReview, SubjectAccessReview)."""

from __future__ import annotations

import hashlib
import json

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


def test_create_token_review_is_validated_client_side(server: Server) -> None:
    # kubectl lists CustomResourceDefinitions (always none here), then validates the TokenReview
    # against the protobuf /openapi/v2 before it creates it.
    token = server.kubectl("create", "token", "default").stdout.strip()
    res = server.kubectl("create", "-f", "-", "-o", "yaml", "-v=6", input=_token_review(token))
    status = yaml.safe_load(res.stdout)["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == "system:serviceaccount:default:default"
    assert CRD_LIST in res.stderr and "/openapi/v2" in res.stderr  # it did take the client-side path


def test_unknown_field_fails_client_side_validation(server: Server) -> None:
    res = server.kubectl("create", "-f", "-", input=_token_review("x", field="tokn"), check=False)
    assert res.returncode != 0
    assert 'unknown field "tokn"' in res.stderr, res.stderr
    assert "io.k8s.api.authentication.v1.TokenReviewSpec" in res.stderr
    assert "turn validation off with --validate=false" in res.stderr


def test_create_subject_access_review(server: Server) -> None:
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": "system:serviceaccount:default:default",
                    "resourceAttributes": {"verb": "list", "resource": "secrets", "namespace": "default"}}}
    res = server.kubectl("create", "-f", "-", "-o", "jsonpath={.status.allowed}", input=yaml.safe_dump(sar))
    assert res.stdout == "false"
    sar["spec"] = {"user": "someone", "groups": ["system:masters"],
                   "resourceAttributes": {"verb": "list", "resource": "secrets", "namespace": "default"}}
    res = server.kubectl("create", "-f", "-", "-o", "jsonpath={.status.allowed}", input=yaml.safe_dump(sar))
    assert res.stdout == "true"


_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "foos.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "foos", "kind": "Foo"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object"}}}]},
}


def test_custom_resource_definitions_are_created_applied_and_deleted(server: Server) -> None:
    """CRDs are served in full (tests/integration/test_crd.py has the rest): kubectl creates, applies, deletes one."""
    assert "No resources found" in server.kubectl("get", "crd").stderr
    listed = json.loads(server.kubectl("get", "--raw", CRD_LIST).stdout)
    assert listed["kind"] == "CustomResourceDefinitionList" and listed["items"] == []
    assert "created" in server.kubectl("create", "-f", "-", input=yaml.safe_dump(_CRD)).stdout
    server.kubectl("wait", "--for=condition=Established", "crd/foos.example.com", "--timeout=5s")
    assert "configured" in server.kubectl("apply", "-f", "-", input=yaml.safe_dump(_CRD)).stdout
    server.kubectl("delete", "crd", "foos.example.com")
    assert json.loads(server.kubectl("get", "--raw", CRD_LIST).stdout)["items"] == []
    res = server.kubectl("get", "crd", "foos.example.com", check=False)
    assert res.returncode != 0 and "NotFound" in res.stderr
