"""Kubernetes API mechanics over real HTTPS: concurrency, paging, watch, patch, apply, dry run, deletion."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
import requests
import yaml
from kubernetes import client, watch

from .conftest import Server, start_server

pytestmark = pytest.mark.integration


class Raw:
    """requests with the admin client certificate, for what the typed clients hide."""

    def __init__(self, server: Server, tmp) -> None:
        user = yaml.safe_load(server.kubeconfig.read_text())["users"][0]["user"]
        cert, key = tmp / "admin.crt", tmp / "admin.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        self.s = requests.Session()
        self.s.cert = (str(cert), str(key))
        self.s.verify = str(server.ca_file)
        self.url = server.url

    def req(self, method: str, path: str, **kw):
        kw.setdefault("timeout", 30)
        # Per request: REQUESTS_CA_BUNDLE in the environment would override a session-level verify.
        kw.setdefault("verify", self.s.verify)
        return self.s.request(method, self.url + path, **kw)


@pytest.fixture(scope="module")
def raw(server: Server, tmp_path_factory) -> Raw:
    return Raw(server, tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def ns(raw: Raw) -> str:
    r = raw.req("POST", "/api/v1/namespaces", json={"metadata": {"name": "mech"}})
    assert r.status_code == 201, r.text
    return "mech"


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_create_get_update_conflict(raw: Raw, ns: str) -> None:
    r = raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=cm("c1", a="1"))
    assert r.status_code == 201
    obj = r.json()
    meta = obj["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"].endswith("Z")
    assert raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=cm("c1")).json()["reason"] == "AlreadyExists"
    obj["data"]["a"] = "2"
    r2 = raw.req("PUT", f"/api/v1/namespaces/{ns}/configmaps/c1", json=obj)
    assert r2.status_code == 200
    assert int(r2.json()["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    stale = raw.req("PUT", f"/api/v1/namespaces/{ns}/configmaps/c1", json=obj)  # old resourceVersion
    assert stale.status_code == 409
    body = stale.json()
    assert body["reason"] == "Conflict"
    assert ("the object has been modified; please apply your changes to the latest version and try again"
            in body["message"])


def test_dry_run_writes_nothing(raw: Raw, ns: str) -> None:
    r = raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", json=cm("dry"))
    assert r.status_code == 201
    assert raw.req("GET", f"/api/v1/namespaces/{ns}/configmaps/dry").status_code == 404
    assert raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps?dryRun=Bogus", json=cm("dry")).status_code == 400


def test_pagination(raw: Raw, ns: str) -> None:
    for i in range(7):
        assert raw.req("POST", f"/api/v1/namespaces/{ns}/secrets",
                       json={"metadata": {"name": f"page-{i}", "labels": {"page": "yes"}}}).status_code == 201
    names, cont, pages = [], "", 0
    while True:
        q = "?labelSelector=page%3Dyes&limit=3" + (f"&continue={cont}" if cont else "")
        body = raw.req("GET", f"/api/v1/namespaces/{ns}/secrets{q}").json()
        names += [i["metadata"]["name"] for i in body["items"]]
        pages += 1
        cont = body["metadata"].get("continue", "")
        if not cont:
            break
    assert pages == 3
    assert names == [f"page-{i}" for i in range(7)]
    bad = raw.req("GET", f"/api/v1/namespaces/{ns}/secrets?limit=2&continue=not-a-token")
    assert bad.status_code == 400


def test_field_selectors(raw: Raw, ns: str) -> None:
    raw.req("POST", f"/api/v1/namespaces/{ns}/secrets",
            json={"metadata": {"name": "typed"}, "type": "kubernetes.io/basic-auth", "stringData": {"username": "u"}})
    body = raw.req("GET", f"/api/v1/namespaces/{ns}/secrets?fieldSelector=type%3Dkubernetes.io/basic-auth").json()
    assert [i["metadata"]["name"] for i in body["items"]] == ["typed"]
    assert base64.b64decode(body["items"][0]["data"]["username"]) == b"u"
    bad = raw.req("GET", f"/api/v1/namespaces/{ns}/secrets?fieldSelector=spec.nope%3D1")
    assert bad.status_code == 400


def test_watch_resume_and_gone(raw: Raw, ns: str) -> None:
    first = raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=cm("w1")).json()
    rv = first["metadata"]["resourceVersion"]
    raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=cm("w2"))
    raw.req("DELETE", f"/api/v1/namespaces/{ns}/configmaps/w1")
    events = []
    with raw.req("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2",
                 stream=True) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line:
                ev = json.loads(line)
                events.append((ev["type"], ev["object"]["metadata"]["name"]))
            if len(events) >= 2:
                break
    assert events == [("ADDED", "w2"), ("DELETED", "w1")]


def test_watch_from_compacted_revision_is_gone(tmp_path) -> None:
    small = start_server(tmp_path / "data", extra=["--event-history", "100"])
    try:
        raw = Raw(small, tmp_path)
        first = raw.req("POST", "/api/v1/namespaces/default/configmaps", json=cm("first")).json()
        for i in range(150):
            raw.req("POST", "/api/v1/namespaces/default/configmaps", json=cm(f"fill-{i}"))
        rv = first["metadata"]["resourceVersion"]
        gone = raw.req("GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1")
        # As kube-apiserver answers it: 200, and one ERROR event carrying the 410 Status.
        assert gone.status_code == 200, gone.text
        events = [json.loads(line) for line in gone.text.splitlines() if line]
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        body = events[0]["object"]
        assert (body["kind"], body["code"], body["reason"]) == ("Status", 410, "Expired")
        assert body["message"].startswith(f"too old resource version: {rv}")
        # A recent resourceVersion still resumes.
        recent = raw.req("GET", "/api/v1/namespaces/default/configmaps?limit=1").json()["metadata"]["resourceVersion"]
        ok = raw.req("GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={recent}&timeoutSeconds=1")
        assert ok.status_code == 200
    finally:
        small.stop()


def test_watch_live_events_and_bookmarks(raw: Raw, ns: str) -> None:
    got: list[tuple[str, str]] = []
    rv = raw.req("GET", f"/api/v1/namespaces/{ns}/configmaps").json()["metadata"]["resourceVersion"]

    def consume() -> None:
        with raw.req("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=5",
                     stream=True) as r:
            for line in r.iter_lines():
                if line:
                    ev = json.loads(line)
                    got.append((ev["type"], ev["object"]["metadata"].get("name", "")))
                    if ev["type"] == "MODIFIED":
                        return

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)
    raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=cm("live", a="1"))
    raw.req("PATCH", f"/api/v1/namespaces/{ns}/configmaps/live", data=json.dumps({"data": {"a": "2"}}),
            headers={"Content-Type": "application/merge-patch+json"})
    t.join(10)
    assert ("ADDED", "live") in got and ("MODIFIED", "live") in got


def test_patch_types(raw: Raw, ns: str) -> None:
    raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=cm("p", a="1", b="2"))
    url = f"/api/v1/namespaces/{ns}/configmaps/p"
    r = raw.req("PATCH", url, data=json.dumps([{"op": "replace", "path": "/data/a", "value": "x"}]),
                headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200 and r.json()["data"]["a"] == "x"
    r = raw.req("PATCH", url, data=json.dumps({"data": {"b": None}}),
                headers={"Content-Type": "application/merge-patch+json"})
    assert r.json()["data"] == {"a": "x"}
    r = raw.req("PATCH", url, data=json.dumps({"metadata": {"labels": {"l": "v"}}}),
                headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.json()["metadata"]["labels"] == {"l": "v"}
    bad = raw.req("PATCH", url, data="{}", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 415


def test_server_side_apply_conflict(server: Server, ns: str) -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: mech\ndata:\n  k: one\n"
    out = server.kubectl("apply", "--server-side", "-f", "-", input=manifest).stdout
    assert "configmap/ssa serverside-applied" in out
    server.kubectl("patch", "configmap", "ssa", "-n", ns, "--type=merge", "-p", '{"data":{"k":"two"}}')
    res = server.kubectl("apply", "--server-side", "-f", "-", input=manifest.replace("one", "three"), check=False)
    assert res.returncode != 0
    assert "conflict" in res.stderr.lower()
    server.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest.replace("one", "three"))
    obj = json.loads(server.kubectl("get", "configmap", "ssa", "-n", ns, "-o", "json", "--show-managed-fields").stdout)
    assert obj["data"]["k"] == "three"
    assert any(m["manager"] == "kubectl" and m["operation"] == "Apply" for m in obj["metadata"]["managedFields"])


def test_finalizers_and_deletion_timestamp(raw: Raw, ns: str) -> None:
    body = cm("fin")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=body)
    r = raw.req("DELETE", f"/api/v1/namespaces/{ns}/configmaps/fin")
    assert r.status_code == 200 and r.json()["metadata"]["deletionTimestamp"]  # the object, kept: 200
    held = raw.req("GET", f"/api/v1/namespaces/{ns}/configmaps/fin").json()
    assert held["metadata"]["deletionTimestamp"]
    # 202 only when the request set orphanDependents=false and the object stays.
    r = raw.req("DELETE", f"/api/v1/namespaces/{ns}/configmaps/fin", json={"orphanDependents": False})
    assert r.status_code == 202
    raw.req("PATCH", f"/api/v1/namespaces/{ns}/configmaps/fin", data=json.dumps({"metadata": {"finalizers": None}}),
            headers={"Content-Type": "application/merge-patch+json"})
    assert raw.req("GET", f"/api/v1/namespaces/{ns}/configmaps/fin").status_code == 404


def test_owner_references_garbage_collection(raw: Raw, ns: str) -> None:
    owner = raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=cm("owner")).json()
    dep = cm("dependent")
    dep["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                           "uid": owner["metadata"]["uid"]}]
    assert raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=dep).status_code == 201
    raw.req("DELETE", f"/api/v1/namespaces/{ns}/configmaps/owner")
    deadline = time.time() + 10
    while time.time() < deadline:
        if raw.req("GET", f"/api/v1/namespaces/{ns}/configmaps/dependent").status_code == 404:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the dependent outlived its owner")


def test_namespace_defaults_are_recreated(raw: Raw, server: Server) -> None:
    raw.req("POST", "/api/v1/namespaces", json={"metadata": {"name": "defaults"}})

    def wait_for(path: str) -> dict:
        deadline = time.time() + 10
        while time.time() < deadline:
            r = raw.req("GET", path)
            if r.status_code == 200:
                return r.json()
            time.sleep(0.05)
        raise AssertionError(f"{path} never appeared")

    wait_for("/api/v1/namespaces/defaults/serviceaccounts/default")
    ca = wait_for("/api/v1/namespaces/defaults/configmaps/kube-root-ca.crt")
    assert ca["data"]["ca.crt"] == server.ca_file.read_text()
    raw.req("DELETE", "/api/v1/namespaces/defaults/serviceaccounts/default")
    raw.req("DELETE", "/api/v1/namespaces/defaults/configmaps/kube-root-ca.crt")
    again = wait_for("/api/v1/namespaces/defaults/serviceaccounts/default")
    assert again["metadata"]["uid"]
    wait_for("/api/v1/namespaces/defaults/configmaps/kube-root-ca.crt")


def test_namespace_deletion_removes_everything(server: Server, raw: Raw) -> None:
    server.kubectl("create", "namespace", "doomed")
    server.kubectl("create", "configmap", "x", "-n", "doomed", "--from-literal=a=b")
    server.kubectl("create", "serviceaccount", "robot", "-n", "doomed")
    out = server.kubectl("delete", "namespace", "doomed", timeout=60).stdout
    assert 'namespace "doomed" deleted' in out
    assert raw.req("GET", "/api/v1/namespaces/doomed").status_code == 404
    assert raw.req("GET", "/api/v1/namespaces/doomed/configmaps").json()["items"] == []


def test_immutable_secret_type(raw: Raw, ns: str) -> None:
    s = raw.req("POST", f"/api/v1/namespaces/{ns}/secrets", json={"metadata": {"name": "imm"}, "type": "Opaque"}).json()
    s["type"] = "kubernetes.io/basic-auth"
    r = raw.req("PUT", f"/api/v1/namespaces/{ns}/secrets/imm", json=s)
    assert r.status_code == 422
    assert "field is immutable" in r.json()["message"]


@pytest.mark.parametrize("name", ["Bad_Name", "UPPER", "a" * 254, "-lead"])
def test_invalid_names_are_422(raw: Raw, ns: str, name: str) -> None:
    r = raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps", json=cm(name))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "metadata.name"


def test_bad_input_answers(raw: Raw, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    cases = [
        (raw.req("POST", base, data=b"{bad json", headers={"Content-Type": "application/json"}), 400, "BadRequest"),
        (raw.req("POST", base, data=b"a: [", headers={"Content-Type": "application/yaml"}), 400, "BadRequest"),
        (raw.req("POST", base, data=b"k8s\x00\x0a\xff",
                 headers={"Content-Type": "application/vnd.kubernetes.protobuf"}), 400, "BadRequest"),
        (raw.req("POST", base, data=b"{}", headers={"Content-Type": "text/csv"}), 415, "UnsupportedMediaType"),
        (raw.req("POST", base, data=b"x" * (3 * 1024 * 1024 + 10), headers={"Content-Type": "application/json"}),
         413, "RequestEntityTooLarge"),
        (raw.req("GET", "/api/v1/namespaces/mech/widgets"), 404, "NotFound"),
        (raw.req("GET", "/apis/nope.example.com/v1/things"), 404, "NotFound"),
        (raw.req("POST", base, json={"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}}),
         400, "BadRequest"),
        (raw.req("POST", base + "?fieldValidation=Strict", json={"metadata": {"name": "x"}, "bogus": 1}),
         400, "BadRequest"),
        (raw.req("POST", base, json={"metadata": {"name": "x"}, "data": {"k": 5}}), 400, "BadRequest"),
        (raw.req("POST", "/api/v1/namespaces/nowhere/configmaps", json=cm("x")), 404, "NotFound"),
    ]
    for r, code, reason in cases:
        assert r.status_code == code, (r.request.method, r.request.url, r.status_code, r.text[:300])
        body = r.json()
        assert body["kind"] == "Status" and body["reason"] == reason, body
    # Nothing half-written.
    names = [i["metadata"]["name"] for i in raw.req("GET", base).json()["items"]]
    assert "x" not in names


def test_table_columns_match_kubectl(server: Server) -> None:
    cols = {
        ("serviceaccounts", "default"): ["NAME", "SECRETS", "AGE"],
        ("secrets", "default"): ["NAME", "TYPE", "DATA", "AGE"],
        ("configmaps", "default"): ["NAME", "DATA", "AGE"],
        ("namespaces", ""): ["NAME", "STATUS", "AGE"],
        ("roles", "default"): ["NAME", "CREATED", "AT"],
    }
    server.kubectl("create", "role", "reader", "--verb=get", "--resource=pods")
    server.kubectl("create", "secret", "generic", "tbl", "--from-literal=a=b")
    for (res, ns), header in cols.items():
        args = ["get", res] + (["-n", ns] if ns else [])
        out = server.kubectl(*args).stdout.splitlines()
        assert out[0].split() == header, (res, out[0])


def test_explain_uses_openapi(server: Server) -> None:
    out = server.kubectl("explain", "serviceaccount.automountServiceAccountToken").stdout
    assert "automountServiceAccountToken" in out and "boolean" in out


def test_delete_collection_with_selector(raw: Raw, ns: str) -> None:
    for i in range(3):
        raw.req("POST", f"/api/v1/namespaces/{ns}/configmaps",
                json={"metadata": {"name": f"dc-{i}", "labels": {"batch": "dc" if i < 2 else "keep"}}})
    r = raw.req("DELETE", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=batch%3Ddc")
    assert r.status_code == 200, r.text
    assert sorted(i["metadata"]["name"] for i in r.json()["items"]) == ["dc-0", "dc-1"]
    left = raw.req("GET", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=batch").json()["items"]
    assert [i["metadata"]["name"] for i in left] == ["dc-2"]


def test_official_client_watch(api, ns: str) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="via-client")))
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=3):
        seen.append((ev["type"], ev["object"].metadata.name))
        if ev["object"].metadata.name == "via-client":
            w.stop()
    assert ("ADDED", "via-client") in seen
