"""Malformed requests that once answered 500: each must get a 4xx Status that names the problem, write nothing,
and leave the server ready."""

from __future__ import annotations

import json
import re
import time

import pytest

from .conftest import Server
from .rawclient import Answer, RawClient, status_problem

pytestmark = pytest.mark.integration

NS = "malformed"
SA = "attacker"
DEEP = 100_000


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def message(answer: Answer, *codes: int) -> str:
    """The Status message of a 4xx answer (one of `codes` when given)."""
    problem = status_problem(answer)
    assert problem is None and answer.status >= 400, (problem, answer.status, answer.body[:500])
    if codes:
        assert answer.status in codes, (answer.status, answer.body[:500])
    return answer.json()["message"]


def names_nul(text: str, value: str) -> bool:
    """Whether a message shows `value` (which holds a NUL), however it escapes the NUL."""
    return any(value.replace("\x00", nul) in text for nul in ("\x00", "\\x00", "\\u0000", "%00", "\\0"))


@pytest.fixture(scope="module")
def admin(server: Server) -> RawClient:
    client = RawClient.admin(server.data_dir, server.port)
    for path, obj in [("/api/v1/namespaces", {"metadata": {"name": NS}}),
                      (f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": SA}}),
                      (f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "victim"}, "data": {"a": "b"}})]:
        assert client.request("POST", path, body(obj), "application/json").status == 201
    return client


@pytest.fixture(scope="module")
def pod(server: Server, admin: RawClient) -> RawClient:
    """A client holding a pod's service-account token (no RBAC grants: self reviews are open to everyone)."""
    a = admin.request("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token", b"{}", "application/json")
    return RawClient(server.port, server.ca_file, token=a.json()["status"]["token"])


@pytest.fixture(autouse=True)
def stays_ready(admin: RawClient):  # type: ignore[no-untyped-def]
    yield
    started = time.perf_counter()
    ready = admin.request("GET", "/readyz")
    elapsed = time.perf_counter() - started
    assert ready.status == 200 and elapsed < 0.1, (ready.status, f"{elapsed * 1000:.0f} ms")


def signatures(admin: RawClient) -> float:
    """Tokens signed so far, from the server's metrics."""
    lines = admin.request("GET", "/metrics").body.decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("kubesat_token_signatures_total"))


def victim_version(admin: RawClient) -> str:
    return admin.request("GET", f"/api/v1/namespaces/{NS}/configmaps/victim").json()["metadata"]["resourceVersion"]


def test_token_request_with_a_number_for_bound_object_api_version(admin: RawClient) -> None:
    signed_before = signatures(admin)
    a = admin.request("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token", body(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"boundObjectRef": {"apiVersion": 1, "kind": "Pod", "name": "p"}}}), "application/json")
    msg = message(a, 400)
    # Kubernetes: TokenRequest in version "v1" cannot be handled as a TokenRequest: json: cannot unmarshal
    # number into Go struct field BoundObjectReference.spec.boundObjectRef.apiVersion of type string
    assert "cannot unmarshal number" in msg and "spec.boundObjectRef.apiVersion" in msg and "string" in msg, msg
    assert signatures(admin) == signed_before


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_nul_in_a_name_in_the_path(admin: RawClient, method: str) -> None:
    sent = b"" if method in ("GET", "DELETE") else body({"metadata": {"name": "a\x00b"}})
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    a = admin.request(method, f"/api/v1/namespaces/{NS}/configmaps/a%00b", sent, ctype)
    msg = message(a, 400, 404, 422)
    assert names_nul(msg, "a\x00b"), msg


@pytest.mark.parametrize("method,suffix", [("GET", "/configmaps"), ("GET", "/configmaps/x"), ("POST", "/configmaps")])
def test_nul_in_a_namespace_in_the_path(admin: RawClient, method: str, suffix: str) -> None:
    sent = body({"metadata": {"name": "x"}}) if method == "POST" else b""
    a = admin.request(method, f"/api/v1/namespaces/n%00s{suffix}", sent, "application/json")
    msg = message(a, 400, 404, 422)
    assert names_nul(msg, "n\x00s"), msg


def test_limit_too_large_for_an_int64(admin: RawClient) -> None:
    a = admin.request("GET", f"/api/v1/namespaces/{NS}/configmaps?limit=99999999999999999999")
    msg = message(a, 400)
    # Kubernetes: strconv.ParseInt: parsing "99999999999999999999": value out of range
    assert "99999999999999999999" in msg and re.search(r"limit|out of range", msg), msg


@pytest.mark.parametrize("patch_type", ["application/merge-patch+json", "application/strategic-merge-patch+json"])
def test_patch_nested_100000_deep(admin: RawClient, patch_type: str) -> None:
    before = victim_version(admin)
    patch = b'{"data":' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}"
    a = admin.request("PATCH", f"/api/v1/namespaces/{NS}/configmaps/victim", patch, patch_type)
    msg = message(a, 400, 422)
    assert re.search(r"depth|nest", msg, re.IGNORECASE), msg
    assert victim_version(admin) == before


def test_subject_access_review_with_a_number_for_user(admin: RawClient) -> None:
    a = admin.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
         "spec": {"user": 1, "resourceAttributes": {"verb": "get", "resource": "pods"}}}), "application/json")
    msg = message(a, 400)
    assert "cannot unmarshal number" in msg and "spec.user" in msg and "string" in msg, msg


def test_self_subject_rules_review_with_a_list_for_namespace_from_a_pod(pod: RawClient) -> None:
    a = pod.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", body(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": [1]}}),
        "application/json")
    msg = message(a, 400)
    assert "cannot unmarshal array" in msg and "spec.namespace" in msg and "string" in msg, msg


def test_yaml_lists_nested_5000_deep_are_rejected_at_once(admin: RawClient) -> None:
    """10 KB of nested flow sequences: rejecting it must not cost seconds of parsing (a cheap way to queue work)."""
    started = time.perf_counter()
    a = admin.request("POST", f"/api/v1/namespaces/{NS}/configmaps", b"[" * 5000 + b"]" * 5000, "application/yaml")
    elapsed = time.perf_counter() - started
    assert re.search(r"depth|nest", message(a, 400), re.IGNORECASE)
    assert elapsed < 1.0, f"{elapsed:.1f} s to reject 10 KB"
