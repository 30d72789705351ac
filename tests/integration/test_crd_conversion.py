"""CRD conversion webhooks against a real HTTPS webhook in the test process: v1 (the storage version) holds
`spec.hostPort: "host:port"`, v2 holds `spec.host` and `spec.port`; kubectl and the official client read, list,
watch and write through both, and a webhook that fails is refused with kube-apiserver's words."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from .conftest import Server, free_port, wait_for
from .webhookserver import WebhookServer

GROUP = "conv.example.com"
NS = "default"
V1, V2 = f"{GROUP}/v1", f"{GROUP}/v2"


def to_version(obj: dict[str, Any], want: str) -> dict[str, Any]:
    """The webhook's conversion: v1's hostPort is v2's host and port."""
    obj = copy.deepcopy(obj)
    spec = obj.setdefault("spec", {})
    if want.endswith("/v2") and "hostPort" in spec:
        host, _, port = spec.pop("hostPort").rpartition(":")
        spec.update(host=host, port=int(port))
    elif want.endswith("/v1") and "host" in spec:
        spec["hostPort"] = f"{spec.pop('host')}:{spec.pop('port')}"
    obj["apiVersion"] = want
    return obj


def answer(request: dict[str, Any], objects: list[Any] | None = None, result: dict[str, Any] | None = None,
           review_version: str = "v1") -> bytes:
    if objects is None:
        objects = [to_version(o, request["desiredAPIVersion"]) for o in request["objects"]]
    return json.dumps({"apiVersion": f"apiextensions.k8s.io/{review_version}", "kind": "ConversionReview",
                       "response": {"uid": request["uid"], "result": result or {"status": "Success"},
                                    "convertedObjects": objects}}).encode()


def crd(plural: str, kind: str, url: str, ca_bundle: str, review_versions: list[str]) -> dict[str, Any]:
    def version(name: str, storage: bool, spec: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "served": True, "storage": storage, "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {"type": "object", "properties": spec}}}}}

    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}"},
            "spec": {"group": GROUP, "scope": "Namespaced",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
                     "versions": [version("v1", True, {"hostPort": {"type": "string"}}),
                                  version("v2", False, {"host": {"type": "string"}, "port": {"type": "integer"}})],
                     "conversion": {"strategy": "Webhook", "webhook": {
                         "clientConfig": {"url": url, "caBundle": ca_bundle},
                         "conversionReviewVersions": review_versions}}}}


def install(ext: client.ApiextensionsV1Api, objs: client.CustomObjectsApi, body: dict[str, Any]) -> None:
    ext.create_custom_resource_definition(body)
    plural = body["spec"]["names"]["plural"]

    def served() -> bool:
        try:
            objs.list_namespaced_custom_object(GROUP, "v1", NS, plural)
            return True
        except ApiException:
            return False

    wait_for(served, 5, f"{plural} served")


def backend(name: str, version: str = "v1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{version}", "kind": "Backend", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def objs(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture(scope="module")
def hook(api: client.ApiClient, objs: client.CustomObjectsApi) -> Iterator[WebhookServer]:
    with WebhookServer() as s:
        s.paths["convert"] = answer
        install(client.ApiextensionsV1Api(api), objs,
                crd("backends", "Backend", s.url("convert"), s.ca_bundle, ["v1", "v1beta1"]))
        yield s


@pytest.fixture
def converting(hook: WebhookServer) -> Iterator[WebhookServer]:
    """The hook, converting again once the test is over (tests make it misbehave)."""
    yield hook
    hook.paths["convert"] = answer


def reviews_since(hook: WebhookServer, start: int) -> list[dict[str, Any]]:
    return hook.got("convert")[start:]


def test_created_through_v2_stored_as_v1_read_through_both(converting: WebhookServer,
                                                             objs: client.CustomObjectsApi) -> None:
    start = len(converting.got("convert"))
    made = objs.create_namespaced_custom_object(GROUP, "v2", NS, "backends",
                                                backend("b1", "v2", host="db", port=5432))
    assert made["apiVersion"] == V2 and made["spec"] == {"host": "db", "port": 5432}
    first = reviews_since(converting, start)[0]
    assert first["apiVersion"] == "apiextensions.k8s.io/v1" and first["kind"] == "ConversionReview"
    assert first["request"]["desiredAPIVersion"] == V1 and first["_query"] == "timeout=30s"
    assert [o["spec"] for o in first["request"]["objects"]] == [{"host": "db", "port": 5432}]
    stored = objs.get_namespaced_custom_object(GROUP, "v1", NS, "backends", "b1")
    assert stored["apiVersion"] == V1 and stored["spec"] == {"hostPort": "db:5432"}
    before = len(converting.got("convert"))
    objs.get_namespaced_custom_object(GROUP, "v1", NS, "backends", "b1")
    assert len(converting.got("convert")) == before  # the stored version: no call
    as_v2 = objs.get_namespaced_custom_object(GROUP, "v2", NS, "backends", "b1")
    assert as_v2["apiVersion"] == V2 and as_v2["spec"] == {"host": "db", "port": 5432}
    assert as_v2["metadata"]["uid"] == stored["metadata"]["uid"]
    last = converting.got("convert")[-1]["request"]
    assert last["desiredAPIVersion"] == V2 and last["objects"][0]["spec"] == {"hostPort": "db:5432"}


def test_kubectl_reads_and_writes_both_versions(converting: WebhookServer, server: Server, tmp_path: Path) -> None:
    cache = ["--cache-dir", str(tmp_path / "kube-cache")]
    server.kubectl(*cache, "create", "-f", "-", input=json.dumps(backend("k1", "v2", host="cache", port=6379)))
    got = json.loads(server.kubectl(*cache, "get", f"backends.v2.{GROUP}", "k1", "-o", "json").stdout)
    assert got["apiVersion"] == V2 and got["spec"] == {"host": "cache", "port": 6379}
    out = server.kubectl(*cache, "get", f"backends.v1.{GROUP}", "k1", "-o", "jsonpath={.spec.hostPort}").stdout
    assert out == "cache:6379"
    server.kubectl(*cache, "patch", f"backends.v2.{GROUP}", "k1", "--type=merge", "-p", '{"spec":{"port":6380}}')
    out = server.kubectl(*cache, "get", f"backends.v1.{GROUP}", "k1", "-o", "jsonpath={.spec.hostPort}").stdout
    assert out == "cache:6380"
    table = server.kubectl(*cache, "get", f"backends.v2.{GROUP}", "-o", "custom-columns=N:.metadata.name,H:.spec.host,"
                           "P:.spec.port", "--no-headers").stdout.split("\n")
    assert ["k1", "cache", "6380"] in [line.split() for line in table]  # a list at v2 through kubectl


def test_a_list_at_v2_is_converted_in_one_review(converting: WebhookServer, objs: client.CustomObjectsApi) -> None:
    for i in range(3):
        objs.create_namespaced_custom_object(GROUP, "v1", "kube-public", "backends",
                                             backend(f"l{i}", hostPort=f"h{i}:{8000 + i}"))
    start = len(converting.got("convert"))
    listed = objs.list_namespaced_custom_object(GROUP, "v2", "kube-public", "backends")
    assert listed["apiVersion"] == V2
    assert [(i["apiVersion"], i["spec"]) for i in listed["items"]] == [
        (V2, {"host": f"h{i}", "port": 8000 + i}) for i in range(3)]
    calls = reviews_since(converting, start)
    assert len(calls) == 1 and len(calls[0]["request"]["objects"]) == 3


def test_a_watch_at_v2_sees_v2_objects(converting: WebhookServer, objs: client.CustomObjectsApi) -> None:
    rv = objs.list_namespaced_custom_object(GROUP, "v2", NS, "backends")["metadata"]["resourceVersion"]

    def create_later() -> None:
        time.sleep(0.5)
        objs.create_namespaced_custom_object(GROUP, "v1", NS, "backends", backend("w1", hostPort="web:80"))

    threading.Thread(target=create_later, daemon=True).start()
    w = watch.Watch()
    seen = None
    for ev in w.stream(objs.list_namespaced_custom_object, GROUP, "v2", NS, "backends", resource_version=rv,
                       timeout_seconds=10):
        if ev["object"]["metadata"]["name"] == "w1":
            seen = ev
            w.stop()
    assert seen is not None and seen["type"] == "ADDED"
    assert seen["object"]["apiVersion"] == V2 and seen["object"]["spec"] == {"host": "web", "port": 80}


def failure(objs: client.CustomObjectsApi, name: str, version: str = "v2") -> dict[str, Any]:
    with pytest.raises(ApiException) as e:
        objs.get_namespaced_custom_object(GROUP, version, NS, "backends", name)
    assert e.value.status == 500
    status: dict[str, Any] = json.loads(e.value.body)
    assert "reason" not in status  # kube-apiserver passes the converter's error on as it stands
    return status


def test_bad_answers_are_refused_with_kubernetes_words(converting: WebhookServer, objs: client.CustomObjectsApi,
                                                       server: Server, tmp_path: Path) -> None:
    objs.create_namespaced_custom_object(GROUP, "v1", NS, "backends", backend("bad", hostPort="x:1"))
    prefix = f"conversion webhook for {V1}, Kind=Backend"
    converting.paths["convert"] = lambda request: b"garbage"
    assert failure(objs, "bad")["message"] == (f"{prefix} failed: couldn't get version/kind; json parse error: "
                                               "invalid character 'g' looking for beginning of value")
    converting.paths["convert"] = lambda request: answer(request, [], {"status": "Failure",
                                                                       "message": "cannot convert x:1"})
    assert failure(objs, "bad")["message"] == f"{prefix} failed: cannot convert x:1"
    converting.paths["convert"] = lambda request: answer(request, [], {"status": "Failure"})
    assert failure(objs, "bad")["message"] == f"{prefix} failed: response.result.status was 'Failure', not 'Success'"

    def renamed(request: dict[str, Any]) -> bytes:
        out = [to_version(o, request["desiredAPIVersion"]) for o in request["objects"]]
        out[0]["metadata"]["name"] = "other"
        return answer(request, out)

    converting.paths["convert"] = renamed
    assert failure(objs, "bad")["message"] == f"{prefix} returned invalid object: must have the same name: bad != other"
    converting.paths["convert"] = lambda request: answer(request, [])
    assert failure(objs, "bad")["message"] == f"{prefix} returned 0 objects, expected 1"
    converting.paths["convert"] = lambda request: answer(request, [{**o, "apiVersion": V1}
                                                                   for o in request["objects"]])
    assert failure(objs, "bad")["message"] == (f"{prefix} returned invalid object at index 0: invalid groupVersion "
                                               f"(expected {V2}, received {V1})")
    converting.paths["convert"] = lambda request: json.dumps({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "response": {"uid": "not-yours", "result": {"status": "Success"}, "convertedObjects": []}}).encode()
    assert failure(objs, "bad")["message"].startswith(f'{prefix} failed: expected response.uid="')
    # kubectl prints the message with no reason, as for kube-apiserver
    res = server.kubectl("--cache-dir", str(tmp_path / "kc"), "get", f"backends.v2.{GROUP}", "bad", check=False)
    assert res.returncode == 1
    assert res.stderr.strip().startswith(f'Error from server: {prefix} failed: expected response.uid="')
    # a write through v2 fails the same way, naming v2, and stores nothing
    converting.paths["convert"] = lambda request: answer(request, [], {"status": "Failure", "message": "no"})
    with pytest.raises(ApiException) as e:
        objs.create_namespaced_custom_object(GROUP, "v2", NS, "backends", backend("never", "v2", host="a", port=1))
    assert e.value.status == 500
    assert json.loads(e.value.body)["message"] == f"conversion webhook for {V2}, Kind=Backend failed: no"
    # a delete through v2 reads the object first: it fails the same way and the object stays
    with pytest.raises(ApiException) as e:
        objs.delete_namespaced_custom_object(GROUP, "v2", NS, "backends", "bad")
    assert e.value.status == 500
    assert json.loads(e.value.body)["message"] == f"{prefix} failed: no"
    converting.paths["convert"] = answer
    with pytest.raises(ApiException) as e:
        objs.get_namespaced_custom_object(GROUP, "v1", NS, "backends", "never")
    assert e.value.status == 404
    assert objs.get_namespaced_custom_object(GROUP, "v1", NS, "backends", "bad")["spec"] == {"hostPort": "x:1"}


def test_labels_and_annotations_are_all_a_webhook_may_change(converting: WebhookServer,
                                                             objs: client.CustomObjectsApi) -> None:
    objs.create_namespaced_custom_object(GROUP, "v1", NS, "backends", backend("meta", hostPort="m:1"))

    def relabelled(request: dict[str, Any]) -> bytes:
        out = [to_version(o, request["desiredAPIVersion"]) for o in request["objects"]]
        out[0]["metadata"].update(labels={"converted": "yes"}, generation=99, finalizers=["x/y"])
        return answer(request, out)

    converting.paths["convert"] = relabelled
    got = objs.get_namespaced_custom_object(GROUP, "v2", NS, "backends", "meta")
    assert got["metadata"]["labels"] == {"converted": "yes"}
    assert got["metadata"]["generation"] == 1 and "finalizers" not in got["metadata"]

    def bad_label(request: dict[str, Any]) -> bytes:
        out = [to_version(o, request["desiredAPIVersion"]) for o in request["objects"]]
        out[0]["metadata"]["labels"] = {"ok": "not ok!"}
        return answer(request, out)

    converting.paths["convert"] = bad_label
    assert failure(objs, "meta")["message"].startswith(
        f'conversion webhook for {V1}, Kind=Backend returned invalid metadata: metadata.labels: Invalid value: '
        '"not ok!": a valid label must be')


def test_a_webhook_that_is_down(objs: client.CustomObjectsApi, api: client.ApiClient, hook: WebhookServer) -> None:
    port = free_port()
    url = f"https://127.0.0.1:{port}/convert"
    install(client.ApiextensionsV1Api(api), objs, crd("downs", "Down", url, hook.ca_bundle, ["v1"]))
    objs.create_namespaced_custom_object(GROUP, "v1", NS, "downs",
                                         {"apiVersion": V1, "kind": "Down", "metadata": {"name": "d"},
                                          "spec": {"hostPort": "d:1"}})
    with pytest.raises(ApiException) as e:
        objs.get_namespaced_custom_object(GROUP, "v2", NS, "downs", "d")
    assert e.value.status == 500
    assert json.loads(e.value.body)["message"] == (
        f'conversion webhook for {V1}, Kind=Down failed: Post "{url}?timeout=30s": dial tcp 127.0.0.1:{port}: '
        "connect: connection refused")


def test_a_v1beta1_only_webhook_gets_a_v1beta1_review(objs: client.CustomObjectsApi, api: client.ApiClient,
                                                       hook: WebhookServer) -> None:
    hook.paths["convert-beta"] = lambda request: answer(request, review_version="v1beta1")
    install(client.ApiextensionsV1Api(api), objs,
            crd("betas", "Beta", hook.url("convert-beta"), hook.ca_bundle, ["v1beta1"]))
    objs.create_namespaced_custom_object(GROUP, "v1", NS, "betas", {"apiVersion": V1, "kind": "Beta",
                                                                   "metadata": {"name": "b"},
                                                                   "spec": {"hostPort": "beta:2"}})
    got = objs.get_namespaced_custom_object(GROUP, "v2", NS, "betas", "b")
    assert got["spec"] == {"host": "beta", "port": 2}
    sent = hook.got("convert-beta")[-1]
    assert sent["apiVersion"] == "apiextensions.k8s.io/v1beta1" and sent["request"]["desiredAPIVersion"] == V2


def raw_watch(server: Server, path: str) -> list[dict[str, Any]]:
    res = server.kubectl("get", "--raw", path, check=False)
    out = res.stdout + res.stderr
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_a_watch_at_v2_ends_with_an_error_event_when_conversion_fails(converting: WebhookServer,
                                                                        objs: client.CustomObjectsApi,
                                                                        server: Server) -> None:
    rv = objs.list_namespaced_custom_object(GROUP, "v2", "kube-system", "backends")["metadata"]["resourceVersion"]
    converting.paths["convert"] = lambda request: answer(request, [], {"status": "Failure", "message": "broken"})

    def create_later() -> None:
        time.sleep(1)
        objs.create_namespaced_custom_object(GROUP, "v1", "kube-system", "backends", backend("we", hostPort="e:1"))

    threading.Thread(target=create_later, daemon=True).start()
    path = f"/apis/{GROUP}/v2/namespaces/kube-system/backends?watch=true"
    events = raw_watch(server, f"{path}&resourceVersion={rv}&timeoutSeconds=10")
    # as kube-apiserver's etcd watcher: the converter's error as an InternalError, and the watch ends
    message = f"conversion webhook for {V1}, Kind=Backend failed: broken"
    assert events == [{"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 500,
        "reason": "InternalError", "details": {"causes": [{"message": message}]},
        "message": f"Internal error occurred: {message}"}}]
    # a watch that starts with the objects there (no resourceVersion) fails the same way
    events = raw_watch(server, f"{path}&timeoutSeconds=3")
    assert [(ev["type"], ev["object"]["message"]) for ev in events] == [
        ("ERROR", f"Internal error occurred: {message}")]


def test_objects_of_an_old_storage_version_are_converted_when_it_changes(objs: client.CustomObjectsApi,
                                                                           api: client.ApiClient,
                                                                           hook: WebhookServer) -> None:
    hook.paths["convert-mig"] = answer
    ext = client.ApiextensionsV1Api(api)
    install(ext, objs, crd("migrations", "Migration", hook.url("convert-mig"), hook.ca_bundle, ["v1"]))
    objs.create_namespaced_custom_object(GROUP, "v1", NS, "migrations", {
        "apiVersion": V1, "kind": "Migration", "metadata": {"name": "old"}, "spec": {"hostPort": "old:1"}})
    assert hook.got("convert-mig") == []  # written at the storage version: no call
    ext.patch_custom_resource_definition("migrations.conv.example.com", [
        {"op": "replace", "path": "/spec/versions/0/storage", "value": False},
        {"op": "replace", "path": "/spec/versions/1/storage", "value": True}])

    def stored_v2() -> bool:  # a write at v2 needs no call once v2 is stored
        start = len(hook.got("convert-mig"))
        objs.create_namespaced_custom_object(GROUP, "v2", NS, "migrations", {
            "apiVersion": V2, "kind": "Migration", "metadata": {"generateName": "new-"},
            "spec": {"host": "new", "port": 2}})
        return hook.got("convert-mig")[start:] == []

    wait_for(stored_v2, 5, "v2 the storage version")
    before = len(hook.got("convert-mig"))
    # the object still stored as v1 is converted when read at v2, the new storage version
    got = objs.get_namespaced_custom_object(GROUP, "v2", NS, "migrations", "old")
    assert got["apiVersion"] == V2 and got["spec"] == {"host": "old", "port": 1}
    calls = hook.got("convert-mig")[before:]
    assert [(c["request"]["desiredAPIVersion"], [o["apiVersion"] for o in c["request"]["objects"]])
            for c in calls] == [(V2, [V1])]


def test_a_webhook_behind_a_service(objs: client.CustomObjectsApi, api: client.ApiClient, server: Server) -> None:
    with WebhookServer(names=("convsvc.default.svc",)) as srv:
        srv.paths["convert"] = answer
        server.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "convsvc", "namespace": NS},
            "spec": {"ports": [{"port": 443, "targetPort": srv.port}]}}))
        body = crd("relays", "Relay", "", srv.ca_bundle, ["v1"])
        body["spec"]["conversion"]["webhook"]["clientConfig"] = {
            "service": {"name": "convsvc", "namespace": NS, "path": "/convert"}, "caBundle": srv.ca_bundle}
        install(client.ApiextensionsV1Api(api), objs, body)
        objs.create_namespaced_custom_object(GROUP, "v1", NS, "relays", {
            "apiVersion": V1, "kind": "Relay", "metadata": {"name": "s"}, "spec": {"hostPort": "svc:3"}})
        # no endpoints yet: kube-apiserver's words, the Service's URL named
        with pytest.raises(ApiException) as e:
            objs.get_namespaced_custom_object(GROUP, "v2", NS, "relays", "s")
        assert json.loads(e.value.body)["message"] == (
            f'conversion webhook for {V1}, Kind=Relay failed: Post '
            '"https://convsvc.default.svc:443/convert?timeout=30s": no endpoints available for service "convsvc"')
        server.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "convsvc", "namespace": NS},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": srv.port}]}]}))
        got = objs.get_namespaced_custom_object(GROUP, "v2", NS, "relays", "s")
        assert got["spec"] == {"host": "svc", "port": 3} and srv.got("convert")[-1]["_query"] == "timeout=30s"
