"""CustomResourceDefinitions through kubectl and the official client: a CRD is Established and served at once, its
custom resources answer every verb with printer columns, short names, categories, status and scale subresources,
RBAC and garbage collection, and deleting the CRD deletes them."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from .conftest import Server, start_server, wait_for
from .webhookserver import WebhookServer

GROUP = "stable.example.com"


def crd_yaml(group: str = GROUP, plural: str = "crontabs", kind: str = "CronTab", short: str = "ct",
             scope: str = "Namespaced", extra_version: str = "") -> str:
    return f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: {scope}
  names:
    plural: {plural}
    singular: {kind.lower()}
    kind: {kind}
    shortNames: [{short}]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec: {{type: string}}
              image: {{type: string}}
              replicas: {{type: integer}}
          status:
            type: object
            properties:
              replicas: {{type: integer}}
              labelSelector: {{type: string}}
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.labelSelector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Image
      type: string
      priority: 1
      jsonPath: .spec.image
    selectableFields:
    - jsonPath: .spec.cronSpec
{extra_version}"""


def cr(name: str, cron: str = "* * * * */5", replicas: int = 1, group: str = GROUP, kind: str = "CronTab",
       **meta: Any) -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": name, **meta},
            "spec": {"cronSpec": cron, "image": "img", "replicas": replicas}}


def established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    crd = ext.read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


def install(server: Server, ext: client.ApiextensionsV1Api, yaml_text: str, name: str) -> None:
    server.kubectl("apply", "-f", "-", input=yaml_text)
    wait_for(lambda: established(ext, name), 5, f"{name} Established")


@pytest.fixture(scope="module")
def ext(api: client.ApiClient) -> client.ApiextensionsV1Api:
    return client.ApiextensionsV1Api(api)


@pytest.fixture(scope="module")
def objs(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture(scope="module")
def crontabs(server: Server, ext: client.ApiextensionsV1Api) -> str:
    install(server, ext, crd_yaml(), f"crontabs.{GROUP}")
    return f"crontabs.{GROUP}"


def kubectl(server: Server, tmp_path: Path, *args: str, check: bool = True, input: str | None = None) -> Any:
    """kubectl with a discovery cache of the test's own (kubectl caches discovery across runs)."""
    return server.kubectl("--cache-dir", str(tmp_path / "kube-cache"), *args, check=check, input=input)


def test_crd_established_and_served_within_a_second(server: Server, ext: client.ApiextensionsV1Api,
                                                     tmp_path: Path) -> None:
    body = yaml.safe_load(crd_yaml("quick.example.com", "widgets", "Widget", "wd"))
    start = time.monotonic()
    ext.create_custom_resource_definition(body)
    wait_for(lambda: established(ext, "widgets.quick.example.com"), 1.0, "Established within 1 s")
    crd = ext.read_custom_resource_definition("widgets.quick.example.com")
    assert time.monotonic() - start < 1.0
    conds = {c.type: (c.status, c.reason, c.message) for c in crd.status.conditions}
    assert conds["NamesAccepted"] == ("True", "NoConflicts", "no conflicts found")
    assert conds["Established"] == ("True", "InitialNamesAccepted", "the initial names have been accepted")
    assert crd.status.stored_versions == ["v1"]
    assert crd.status.accepted_names.kind == "Widget" and crd.status.accepted_names.short_names == ["wd"]
    assert crd.spec.names.list_kind == "WidgetList" and crd.spec.conversion.strategy == "None"
    # kubectl finds it at once through fresh discovery.
    out = kubectl(server, tmp_path, "get", "widgets").stderr
    assert "No resources found" in out
    assert "widgets" in kubectl(server, tmp_path, "api-resources", "--api-group=quick.example.com").stdout


def test_cr_verbs_through_kubectl(server: Server, crontabs: str, tmp_path: Path) -> None:
    kubectl(server, tmp_path, "apply", "-f", "-", input=json.dumps(cr("k1", replicas=2)))
    table = kubectl(server, tmp_path, "get", "crontabs").stdout.splitlines()
    # Printer columns given: no Age column is added.
    assert table[0].split() == ["NAME", "SPEC", "REPLICAS"]
    assert table[1].split() == ["k1", "*", "*", "*", "*", "*/5", "2"]
    wide = kubectl(server, tmp_path, "get", "ct", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "SPEC", "REPLICAS", "IMAGE"]
    assert "crontab.stable.example.com/k1" in kubectl(server, tmp_path, "get", "all").stdout
    refused = kubectl(server, tmp_path, "patch", "ct", "k1", "-p", '{"spec":{"image":"x"}}', check=False)
    assert refused.returncode != 0
    assert ("the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml") in refused.stderr
    kubectl(server, tmp_path, "patch", "ct", "k1", "--type=merge", "-p", '{"spec":{"image":"merged"}}')
    kubectl(server, tmp_path, "patch", "ct", "k1", "--type=json", "-p",
            '[{"op":"replace","path":"/spec/cronSpec","value":"1 2 3 4 5"}]')
    got = json.loads(kubectl(server, tmp_path, "get", "ct", "k1", "-o", "json").stdout)
    assert got["spec"]["image"] == "merged" and got["spec"]["cronSpec"] == "1 2 3 4 5"
    kubectl(server, tmp_path, "apply", "--server-side", "--force-conflicts", "--field-manager=tester", "-f", "-",
            input=json.dumps(cr("k1", cron="ssa", replicas=2)), check=True)
    assert json.loads(kubectl(server, tmp_path, "get", "ct", "k1", "-o", "json").stdout)["spec"]["cronSpec"] == "ssa"
    kubectl(server, tmp_path, "delete", "ct", "k1")
    assert kubectl(server, tmp_path, "get", "ct", "k1", check=False).returncode != 0


def test_cr_verbs_through_the_official_client(server: Server, objs: client.CustomObjectsApi, crontabs: str) -> None:
    ns = "crd-client"
    server.kubectl("create", "namespace", ns)
    for i in range(5):
        objs.create_namespaced_custom_object(GROUP, "v1", ns, "crontabs",
                                             cr(f"c{i}", cron=f"{i} * * * *", labels={"n": str(i % 2)}))
    got = objs.get_namespaced_custom_object(GROUP, "v1", ns, "crontabs", "c1")
    assert got["metadata"]["generation"] == 1 and got["apiVersion"] == f"{GROUP}/v1"
    names = lambda lst: sorted(i["metadata"]["name"] for i in lst["items"])  # noqa: E731
    assert names(objs.list_namespaced_custom_object(GROUP, "v1", ns, "crontabs", label_selector="n=1")) == ["c1", "c3"]
    assert names(objs.list_namespaced_custom_object(GROUP, "v1", ns, "crontabs",
                                                    field_selector="metadata.name=c2")) == ["c2"]
    assert names(objs.list_namespaced_custom_object(GROUP, "v1", ns, "crontabs",
                                                    field_selector="spec.cronSpec=3 * * * *")) == ["c3"]
    with pytest.raises(ApiException) as e:
        objs.list_namespaced_custom_object(GROUP, "v1", ns, "crontabs", field_selector="spec.image=img")
    assert e.value.status == 400 and "field label not supported: spec.image" in e.value.body
    page = objs.list_namespaced_custom_object(GROUP, "v1", ns, "crontabs", limit=2)
    assert len(page["items"]) == 2 and page["metadata"]["continue"]
    rest = objs.list_namespaced_custom_object(GROUP, "v1", ns, "crontabs", limit=10,
                                              _continue=page["metadata"]["continue"])
    assert len(rest["items"]) == 3
    assert len(objs.list_cluster_custom_object(GROUP, "v1", "crontabs")["items"]) >= 5
    rv = objs.list_namespaced_custom_object(GROUP, "v1", ns, "crontabs")["metadata"]["resourceVersion"]
    events: list[tuple[str, str]] = []

    def watch_them() -> None:
        for ev in watch.Watch().stream(objs.list_namespaced_custom_object, GROUP, "v1", ns, "crontabs",
                                       resource_version=rv, timeout_seconds=5):
            events.append((ev["type"], ev["object"]["metadata"]["name"]))
            if len(events) == 2:
                return

    t = threading.Thread(target=watch_them)
    t.start()
    time.sleep(0.3)
    objs.patch_namespaced_custom_object(GROUP, "v1", ns, "crontabs", "c0", {"spec": {"image": "new"}})
    objs.delete_namespaced_custom_object(GROUP, "v1", ns, "crontabs", "c4")
    t.join(10)
    assert events == [("MODIFIED", "c0"), ("DELETED", "c4")]
    objs.delete_collection_namespaced_custom_object(GROUP, "v1", ns, "crontabs", label_selector="n=1")
    assert names(objs.list_namespaced_custom_object(GROUP, "v1", ns, "crontabs")) == ["c0", "c2"]
    with pytest.raises(ApiException) as e:
        objs.get_namespaced_custom_object(GROUP, "v1", ns, "crontabs", "c1")
    assert e.value.status == 404 and f'crontabs.{GROUP} \\"c1\\" not found' in e.value.body


def test_status_subresource_and_generation(objs: client.CustomObjectsApi, crontabs: str) -> None:
    body = cr("gen")
    body["status"] = {"replicas": 9}
    created = objs.create_namespaced_custom_object(GROUP, "v1", "default", "crontabs", body)
    assert "status" not in created and created["metadata"]["generation"] == 1
    st = objs.patch_namespaced_custom_object_status(GROUP, "v1", "default", "crontabs", "gen",
                                                    {"status": {"replicas": 3}, "spec": {"image": "ignored"}})
    assert st["status"] == {"replicas": 3} and st["spec"]["image"] == "img" and st["metadata"]["generation"] == 1
    main = objs.patch_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "gen",
                                               {"status": {"replicas": 7}, "metadata": {"labels": {"a": "b"}}})
    assert main["status"] == {"replicas": 3} and main["metadata"]["generation"] == 1
    bumped = objs.patch_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "gen",
                                                 {"spec": {"image": "changed"}})
    assert bumped["metadata"]["generation"] == 2


def test_scale_subresource(server: Server, objs: client.CustomObjectsApi, crontabs: str, tmp_path: Path) -> None:
    objs.create_namespaced_custom_object(GROUP, "v1", "default", "crontabs", cr("scaled", replicas=2))
    objs.patch_namespaced_custom_object_status(GROUP, "v1", "default", "crontabs", "scaled",
                                               {"status": {"replicas": 2, "labelSelector": "app=x"}})
    scale = objs.get_namespaced_custom_object_scale(GROUP, "v1", "default", "crontabs", "scaled")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 2, "selector": "app=x"}
    kubectl(server, tmp_path, "scale", "ct", "scaled", "--replicas=5")
    got = objs.get_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "scaled")
    assert got["spec"]["replicas"] == 5 and got["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as e:
        objs.patch_namespaced_custom_object_scale(GROUP, "v1", "default", "crontabs", "scaled",
                                                  {"spec": {"replicas": -1}})
    assert e.value.status == 422 and ".spec.replicas: Invalid value: -1: should be a non-negative integer" \
        in json.loads(e.value.body)["message"]


def test_rbac_on_custom_resources(server: Server, api: client.ApiClient, objs: client.CustomObjectsApi,
                                  crontabs: str) -> None:
    server.kubectl("create", "namespace", "crd-rbac")
    server.kubectl("create", "serviceaccount", "reader", "-n", "crd-rbac")
    server.kubectl("create", "role", "ct-reader", "-n", "crd-rbac", "--verb=get,list", f"--resource=crontabs.{GROUP}")
    server.kubectl("create", "rolebinding", "ct-reader", "-n", "crd-rbac", "--role=ct-reader",
                   "--serviceaccount=crd-rbac:reader")
    objs.create_namespaced_custom_object(GROUP, "v1", "crd-rbac", "crontabs", cr("visible"))
    token = server.kubectl("create", "token", "reader", "-n", "crd-rbac").stdout.strip()
    cfg = client.Configuration(host=server.url, api_key={"authorization": f"Bearer {token}"})
    cfg.ssl_ca_cert = str(server.ca_file)
    as_reader = client.CustomObjectsApi(client.ApiClient(cfg))
    got = wait_for(lambda: _try(lambda: as_reader.get_namespaced_custom_object(
        GROUP, "v1", "crd-rbac", "crontabs", "visible")), 5, "the binding")
    assert got["metadata"]["name"] == "visible"
    with pytest.raises(ApiException) as e:
        as_reader.create_namespaced_custom_object(GROUP, "v1", "crd-rbac", "crontabs", cr("nope"))
    assert e.value.status == 403
    assert (f'crontabs.{GROUP} is forbidden: User "system:serviceaccount:crd-rbac:reader" cannot create resource '
            f'"crontabs" in API group "{GROUP}" in the namespace "crd-rbac"') in json.loads(e.value.body)["message"]
    with pytest.raises(ApiException) as e:
        as_reader.list_namespaced_custom_object(GROUP, "v1", "default", "crontabs")
    assert e.value.status == 403



def test_an_aggregated_cluster_role_grants_custom_resources_to_edit(server: Server, crontabs: str) -> None:
    """A ClusterRole labelled aggregate-to-edit lends its rules on a custom resource to `edit`, as the
    clusterrole-aggregation controller does: `edit` lists them and a user bound to it gets them."""
    as_dev = ["--as=system:serviceaccount:crd-agg:dev", "-n", "crd-agg"]
    server.kubectl("create", "namespace", "crd-agg")
    server.kubectl("create", "serviceaccount", "dev", "-n", "crd-agg")
    server.kubectl("create", "rolebinding", "dev-edit", "-n", "crd-agg", "--clusterrole=edit",
                   "--serviceaccount=crd-agg:dev")
    assert server.kubectl("auth", "can-i", "create", f"crontabs.{GROUP}", *as_dev, check=False).stdout.strip() == "no"
    rules = [{"apiGroups": [GROUP], "resources": ["crontabs"], "verbs": ["get", "list", "watch", "create", "delete"]}]
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "crontabs-edit", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
        "rules": rules}))
    wait_for(lambda: server.kubectl("auth", "can-i", "create", f"crontabs.{GROUP}", *as_dev,
                                    check=False).stdout.strip() == "yes", 10, "edit to take the crontabs rules")
    edit = json.loads(server.kubectl("get", "clusterrole", "edit", "-o", "json").stdout)
    assert rules[0] in edit["rules"]
    server.kubectl("apply", "-f", "-", *as_dev, input=json.dumps(cr("by-dev")))
    assert "by-dev" in server.kubectl("get", f"crontabs.{GROUP}", *as_dev).stdout


def _status_of(fn: Any) -> int:
    try:
        fn()
        return 200
    except ApiException as e:
        return int(e.status)


def _try(fn: Any) -> Any:
    try:
        return fn()
    except ApiException:
        return None


def test_garbage_collection_and_namespace_deletion(server: Server, api: client.ApiClient,
                                                   objs: client.CustomObjectsApi, crontabs: str) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "ct-owner"}})
    owned = cr("owned", ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "ct-owner",
                                          "uid": owner.metadata.uid}])
    objs.create_namespaced_custom_object(GROUP, "v1", "default", "crontabs", owned)
    core.delete_namespaced_config_map("ct-owner", "default")
    wait_for(lambda: _try(lambda: objs.get_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "owned"))
             is None, 10, "the owned custom resource collected")
    # A custom resource as the owner: its dependent goes with it.
    boss = objs.create_namespaced_custom_object(GROUP, "v1", "default", "crontabs", cr("boss"))
    core.create_namespaced_config_map("default", {"metadata": {"name": "ct-dependent", "ownerReferences": [
        {"apiVersion": f"{GROUP}/v1", "kind": "CronTab", "name": "boss", "uid": boss["metadata"]["uid"]}]}})
    objs.delete_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "boss")
    wait_for(lambda: _try(lambda: core.read_namespaced_config_map("ct-dependent", "default")) is None, 10,
             "the custom resource's dependent collected")
    server.kubectl("create", "namespace", "crd-gone")
    objs.create_namespaced_custom_object(GROUP, "v1", "crd-gone", "crontabs", cr("inside"))
    server.kubectl("delete", "namespace", "crd-gone", "--wait=false")
    wait_for(lambda: core.list_namespace(field_selector="metadata.name=crd-gone").items == [], 15,
             "the namespace and its custom resources gone")
    assert objs.list_namespaced_custom_object(GROUP, "v1", "crd-gone", "crontabs")["items"] == []


def test_cluster_scoped_and_protobuf(server: Server, ext: client.ApiextensionsV1Api, objs: client.CustomObjectsApi,
                                     api: client.ApiClient) -> None:
    install(server, ext, crd_yaml("cluster.example.com", "clocks", "Clock", "clk", scope="Cluster"),
            "clocks.cluster.example.com")
    objs.create_cluster_custom_object("cluster.example.com", "v1", "clocks", cr("tick", group="cluster.example.com",
                                                                                 kind="Clock"))
    got = objs.get_cluster_custom_object("cluster.example.com", "v1", "clocks", "tick")
    assert "namespace" not in got["metadata"]
    path = "/apis/cluster.example.com/v1/clocks/tick"
    status, body, ctype = _raw(api, path, "application/vnd.kubernetes.protobuf")
    assert status == 406 and "only the following media types are accepted: application/json, application/yaml" \
        in body
    status, body, ctype = _raw(api, path, "application/vnd.kubernetes.protobuf, application/json")
    assert status == 200 and json.loads(body)["metadata"]["name"] == "tick" and ctype.startswith("application/json")


def _raw(api: client.ApiClient, path: str, accept: str) -> tuple[int, str, str]:
    try:
        r = api.rest_client.pool_manager.request(
            "GET", api.configuration.host + path, headers={"Accept": accept}, preload_content=True)
    except Exception as e:  # noqa: BLE001
        raise AssertionError(e) from None
    return r.status, r.data.decode(), r.headers.get("content-type", "")


def test_deleting_the_crd_deletes_its_resources(server: Server, ext: client.ApiextensionsV1Api,
                                                objs: client.CustomObjectsApi, tmp_path: Path) -> None:
    install(server, ext, crd_yaml("doomed.example.com", "gadgets", "Gadget", "gd"), "gadgets.doomed.example.com")
    for ns in ("default", "kube-system"):
        objs.create_namespaced_custom_object("doomed.example.com", "v1", ns, "gadgets",
                                             cr("g", group="doomed.example.com", kind="Gadget"))
    held = cr("held", group="doomed.example.com", kind="Gadget", finalizers=["example.com/hold"])
    objs.create_namespaced_custom_object("doomed.example.com", "v1", "default", "gadgets", held)
    ext.delete_custom_resource_definition("gadgets.doomed.example.com")
    crd = ext.read_custom_resource_definition("gadgets.doomed.example.com")
    assert "customresourcecleanup.apiextensions.k8s.io" in crd.metadata.finalizers
    wait_for(lambda: len(objs.list_cluster_custom_object("doomed.example.com", "v1", "gadgets")["items"]) == 1, 5,
             "the unheld gadgets deleted")
    with pytest.raises(ApiException) as e:
        objs.create_namespaced_custom_object("doomed.example.com", "v1", "default", "gadgets",
                                             cr("late", group="doomed.example.com", kind="Gadget"))
    assert e.value.status == 405 and "create not allowed while custom resource definition is terminating" \
        in e.value.body
    conds = {c.type: c for c in ext.read_custom_resource_definition("gadgets.doomed.example.com").status.conditions}
    assert conds["Terminating"].status == "True" and conds["Terminating"].reason == "InstanceDeletionInProgress"
    objs.patch_namespaced_custom_object("doomed.example.com", "v1", "default", "gadgets", "held",
                                        {"metadata": {"finalizers": None}})
    wait_for(lambda: _try(lambda: ext.read_custom_resource_definition("gadgets.doomed.example.com")) is None, 5,
             "the CRD gone")
    # As in Kubernetes the CRD's endpoints go as its delete is observed, a moment after the delete commits.
    wait_for(lambda: _status_of(lambda: objs.list_cluster_custom_object("doomed.example.com", "v1", "gadgets"))
             == 404, 5, "the gadgets no longer served")
    groups = [g.name for g in client.ApisApi(objs.api_client).get_api_versions().groups]
    assert "doomed.example.com" not in groups
    assert kubectl(server, tmp_path, "get", "gadgets", check=False).returncode != 0


BAD_STORAGE = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.bad.example.com
spec:
  group: bad.example.com
  scope: Namespaced
  names: {plural: things, kind: Thing}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
  - {name: v2, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
"""


def _refusal(ext: client.ApiextensionsV1Api, body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as e:
        ext.create_custom_resource_definition(body)
    assert e.value.status == 422
    return json.loads(e.value.body)


def _body(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)


def test_bad_definitions_refused_with_kubernetes_messages(ext: client.ApiextensionsV1Api) -> None:
    status = _refusal(ext, _body(BAD_STORAGE))
    fields = {(c["field"], c["message"].rsplit(": ", 1)[-1]) for c in status["details"]["causes"]}
    assert ("spec.versions", "must have exactly one version marked as storage version") in fields
    assert ("status.storedVersions", "must have the storage version v2") in fields
    assert status["message"].startswith(
        'CustomResourceDefinition.apiextensions.k8s.io "things.bad.example.com" is invalid: [')
    bad_name = _body(BAD_STORAGE.replace("storage: true, schema: {openAPIV3Schema: {type: object}}}\n  - {name: v2, "
                                         "served: true, storage: true", "storage: true, schema: {openAPIV3Schema: "
                                         "{type: object}}}\n  - {name: v2, served: true, storage: false"))
    bad_name["metadata"]["name"] = "wrong.bad.example.com"
    status = _refusal(ext, bad_name)
    assert status["message"] == ('CustomResourceDefinition.apiextensions.k8s.io "wrong.bad.example.com" is invalid: '
                                 'metadata.name: Invalid value: "wrong.bad.example.com": '
                                 'must be spec.names.plural+"."+spec.group')
    no_dot = _body(BAD_STORAGE.replace("bad.example.com", "nodot").replace("v2, served: true, storage: true",
                                                                           "v2, served: true, storage: false"))
    assert _refusal(ext, no_dot)["details"]["causes"][0]["message"] == (
        'Invalid value: "nodot": should be a domain with at least one dot')
    no_schema = _body(BAD_STORAGE.replace(", schema: {openAPIV3Schema: {type: object}}", "")
                      .replace("v2, served: true, storage: true", "v2, served: true, storage: false"))
    causes = _refusal(ext, no_schema)["details"]["causes"]
    assert {(c["field"], c["message"]) for c in causes} == {
        ("spec.versions[0].schema.openAPIV3Schema", "Required value: schemas are required"),
        ("spec.versions[1].schema.openAPIV3Schema", "Required value: schemas are required")}
    column = _body(crd_yaml("cols.example.com", "rows", "Row", "rw").replace("type: integer\n      jsonPath",
                                                                              "type: int\n      jsonPath"))
    causes = _refusal(ext, column)["details"]["causes"]
    # One version: Kubernetes' internal form holds its columns (and schema, subresources) once, and names them so.
    assert causes == [{"reason": "FieldValueInvalid", "field": "spec.additionalPrinterColumns[1].type",
                       "message": 'Invalid value: "int": must be one of boolean,date,integer,number,string'}]
    scale = _body(crd_yaml("scale.example.com", "rows", "Row", "rw").replace("specReplicasPath: .spec.replicas",
                                                                              "specReplicasPath: .status.replicas"))
    causes = _refusal(ext, scale)["details"]["causes"]
    assert causes[0]["field"] == "spec.subresources.scale.specReplicasPath"
    assert causes[0]["message"] == 'Invalid value: ".status.replicas": should be a json path under .spec'


def test_conflicting_names_not_accepted(server: Server, ext: client.ApiextensionsV1Api, crontabs: str) -> None:
    # Another CRD of the group asking for CronTab's kind (and so its listKind, the last name checked).
    other = _body(crd_yaml(GROUP, "crontabs2", "CronTab", "ct2"))
    ext.create_custom_resource_definition(other)

    def names_condition() -> Any:
        crd = ext.read_custom_resource_definition(f"crontabs2.{GROUP}")
        return next((c for c in crd.status.conditions or [] if c.type == "NamesAccepted"), None)

    cond = wait_for(names_condition, 5, "NamesAccepted")
    assert (cond.status, cond.reason, cond.message) == ("False", "ListKindConflict",
                                                        '"CronTabList" is already in use')
    kind_only = _body(crd_yaml(GROUP, "crontabs4", "CronTab", "ct4"))
    kind_only["spec"]["names"]["listKind"] = "CronTab4List"
    ext.create_custom_resource_definition(kind_only)
    wait_for(lambda: next((c.message for c in ext.read_custom_resource_definition(f"crontabs4.{GROUP}").status
                           .conditions or [] if c.type == "NamesAccepted" and c.reason == "KindConflict"), None)
             == '"CronTab" is already in use', 5, "KindConflict")
    crd = ext.read_custom_resource_definition(f"crontabs2.{GROUP}")
    est = next(c for c in crd.status.conditions if c.type == "Established")
    assert (est.status, est.reason, est.message) == ("False", "NotAccepted", "not all names are accepted")
    with pytest.raises(ApiException) as e:
        client.CustomObjectsApi(ext.api_client).list_cluster_custom_object(GROUP, "v1", "crontabs2")
    assert e.value.status == 404
    short = _body(crd_yaml(GROUP, "crontabs3", "CronTab3", "crontabs"))
    ext.create_custom_resource_definition(short)
    wait_for(lambda: next((c.reason for c in ext.read_custom_resource_definition(f"crontabs3.{GROUP}").status.conditions
                           or [] if c.type == "NamesAccepted"), None) == "ShortNamesConflict", 5, "ShortNamesConflict")


def test_schema_prunes_defaults_and_validates(server: Server, ext: client.ApiextensionsV1Api,
                                               objs: client.CustomObjectsApi, tmp_path: Path) -> None:
    body = _body(crd_yaml("schema.example.com", "boxes", "Box", "bx"))
    spec_props = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    spec_props["image"]["default"] = "nginx"
    spec_props["replicas"]["minimum"] = 1
    ext.create_custom_resource_definition(body)
    wait_for(lambda: established(ext, "boxes.schema.example.com"), 5, "Established")
    box = cr("b1", group="schema.example.com", kind="Box")
    del box["spec"]["image"]
    box["spec"]["foo"] = 1
    strict = kubectl(server, tmp_path, "create", "-f", "-", input=json.dumps(box), check=False)
    assert strict.returncode != 0 and ('Box in version "v1" cannot be handled as a Box: strict decoding error: '
                                       'unknown field "spec.foo"') in strict.stderr
    created = objs.create_namespaced_custom_object("schema.example.com", "v1", "default", "boxes", box)
    assert created["spec"] == {"cronSpec": "* * * * */5", "image": "nginx", "replicas": 1}  # pruned, defaulted
    box["metadata"]["name"] = "b2"
    box["spec"]["replicas"] = 0
    with pytest.raises(ApiException) as e:
        objs.create_namespaced_custom_object("schema.example.com", "v1", "default", "boxes", box)
    assert json.loads(e.value.body)["message"] == (
        'Box.schema.example.com "b2" is invalid: spec.replicas: Invalid value: 0: spec.replicas in body should be '
        'greater than or equal to 1')
    box["spec"]["replicas"] = "two"
    with pytest.raises(ApiException) as e:
        objs.create_namespaced_custom_object("schema.example.com", "v1", "default", "boxes", box)
    causes = {(c["field"], c["message"]) for c in json.loads(e.value.body)["details"]["causes"]}
    assert ("spec.replicas", 'Invalid value: "string": spec.replicas in body must be of type integer: "string"') \
        in causes
    assert (".spec.replicas", "Invalid value: 0: .spec.replicas accessor error: two is of the type string, "
                              "expected int64") in causes
    bad = _body(crd_yaml("schema.example.com", "cans", "Can", "cn"))
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["q"] = {
        "properties": {}}
    causes = _refusal(ext, bad)["details"]["causes"]
    assert {"reason": "FieldValueRequired",
            "field": "spec.validation.openAPIV3Schema.properties[spec].properties[q].type",
            "message": "Required value: must not be empty for specified object fields"} in causes


def test_openapi_and_kubectl_explain(server: Server, ext: client.ApiextensionsV1Api, tmp_path: Path) -> None:
    body = _body(crd_yaml("explain.example.com", "notes", "Note", "nt"))
    spec = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["description"] = "What the note says."
    spec["properties"]["image"]["description"] = "The picture on the note."
    ext.create_custom_resource_definition(body)
    wait_for(lambda: established(ext, "notes.explain.example.com"), 5, "Established")
    out = kubectl(server, tmp_path, "explain", "notes").stdout
    assert "KIND:       Note" in out and "GROUP:      explain.example.com" in out
    assert "spec\t<Object>\n    What the note says." in out
    assert "Standard object's metadata." in out
    assert "The picture on the note." in kubectl(server, tmp_path, "explain", "nt.spec.image").stdout
    v2 = json.loads(server.kubectl("get", "--raw", "/openapi/v2").stdout)
    note = v2["definitions"]["com.example.explain.v1.Note"]
    assert note["x-kubernetes-group-version-kind"] == [{"group": "explain.example.com", "kind": "Note",
                                                        "version": "v1"}]
    assert "/apis/explain.example.com/v1/namespaces/{namespace}/notes/{name}" in v2["paths"]
    index = json.loads(server.kubectl("get", "--raw", "/openapi/v3").stdout)["paths"]
    assert "apis/explain.example.com/v1" in index
    ext.delete_custom_resource_definition("notes.explain.example.com")
    wait_for(lambda: "apis/explain.example.com/v1" not in json.loads(
        server.kubectl("get", "--raw", "/openapi/v3").stdout)["paths"], 5, "the CRD's OpenAPI gone")
    assert "com.example.explain.v1.Note" not in json.loads(
        server.kubectl("get", "--raw", "/openapi/v2").stdout)["definitions"]


def test_served_again_after_a_restart(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data")
    try:
        srv.kubectl("apply", "-f", "-", input=crd_yaml("restart.example.com", "lamps", "Lamp", "lp"))
        srv.kubectl("wait", "--for=condition=Established", "crd/lamps.restart.example.com", "--timeout=5s")
        srv.kubectl("--cache-dir", str(tmp_path / "c"), "create", "-f", "-",
                    input=json.dumps(cr("on", group="restart.example.com", kind="Lamp")))
    finally:
        srv.stop()
    srv = start_server(tmp_path / "data", port=srv.port)
    try:
        out = wait_for(lambda: srv.kubectl("--cache-dir", str(tmp_path / "c"), "get", "lamps", check=False).stdout,
                       5, "lamps served after the restart")
        assert out.split("\n")[1].split()[0] == "on"
    finally:
        srv.stop()


def test_validation_rules(server: Server, ext: client.ApiextensionsV1Api, objs: client.CustomObjectsApi) -> None:
    body = _body(crd_yaml("rules.example.com", "dials", "Dial", "dl"))
    spec = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [{"rule": "self.replicas <= 10", "message": "at most 10 replicas"},
                                        {"rule": "self.image == oldSelf.image", "message": "image is immutable"}]
    ext.create_custom_resource_definition(body)
    wait_for(lambda: established(ext, "dials.rules.example.com"), 5, "Established")
    objs.create_namespaced_custom_object("rules.example.com", "v1", "default", "dials",
                                         cr("d", group="rules.example.com", kind="Dial", replicas=3))
    with pytest.raises(ApiException) as e:
        objs.create_namespaced_custom_object("rules.example.com", "v1", "default", "dials",
                                             cr("big", group="rules.example.com", kind="Dial", replicas=11))
    assert json.loads(e.value.body)["message"] == ('Dial.rules.example.com "big" is invalid: spec: Invalid value: '
                                                   '"object": at most 10 replicas')
    with pytest.raises(ApiException) as e:
        objs.patch_namespaced_custom_object("rules.example.com", "v1", "default", "dials", "d",
                                            {"spec": {"image": "other"}})
    assert json.loads(e.value.body)["message"].endswith('spec: Invalid value: "object": image is immutable')
    bad = _body(crd_yaml("rules.example.com", "knobs", "Knob", "kn"))
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] = [
        {"rule": "self.nope > 1"}]
    causes = _refusal(ext, bad)["details"]["causes"]
    assert causes[0]["field"] == "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    assert "undefined field 'nope'" in causes[0]["message"]


def test_versions_share_storage_and_warn_when_deprecated(server: Server, ext: client.ApiextensionsV1Api,
                                                          objs: client.CustomObjectsApi, tmp_path: Path) -> None:
    body = _body(crd_yaml("versions.example.com", "bells", "Bell", "bl"))
    v1 = body["spec"]["versions"][0]
    beta = {**copy.deepcopy(v1), "name": "v1beta1", "storage": False, "deprecated": True}
    beta["additionalPrinterColumns"] = v1["additionalPrinterColumns"][:1]
    body["spec"]["versions"] = [beta, v1]
    ext.create_custom_resource_definition(body)
    wait_for(lambda: established(ext, "bells.versions.example.com"), 5, "Established")
    old = cr("ding", group="versions.example.com", kind="Bell")
    old["apiVersion"] = "versions.example.com/v1beta1"
    made = kubectl(server, tmp_path, "create", "-f", "-", input=json.dumps(old))
    assert "Warning: versions.example.com/v1beta1 Bell is deprecated; use versions.example.com/v1 Bell" in made.stderr
    assert objs.get_namespaced_custom_object("versions.example.com", "v1", "default", "bells", "ding")[
        "apiVersion"] == "versions.example.com/v1"
    as_beta = objs.get_namespaced_custom_object("versions.example.com", "v1beta1", "default", "bells", "ding")
    assert as_beta["apiVersion"] == "versions.example.com/v1beta1" and as_beta["spec"]["replicas"] == 1
    group = client.ApisApi(objs.api_client).get_api_versions().groups
    versions = next(g for g in group if g.name == "versions.example.com")
    assert [v.version for v in versions.versions] == ["v1", "v1beta1"]
    assert versions.preferred_version.version == "v1"
    table = kubectl(server, tmp_path, "get", "bells.v1beta1.versions.example.com").stdout.splitlines()
    assert table[0].split() == ["NAME", "SPEC"]


def test_tightened_schema_ratchets_unchanged_values(server: Server, ext: client.ApiextensionsV1Api,
                                                     objs: client.CustomObjectsApi) -> None:
    ext.create_custom_resource_definition(_body(crd_yaml("ratchet.example.com", "gears", "Gear", "gr")))
    wait_for(lambda: established(ext, "gears.ratchet.example.com"), 5, "Established")
    objs.create_namespaced_custom_object("ratchet.example.com", "v1", "default", "gears",
                                         cr("g1", group="ratchet.example.com", kind="Gear", replicas=1))
    crd = ext.read_custom_resource_definition("gears.ratchet.example.com")
    crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties["replicas"].minimum = 5
    ext.replace_custom_resource_definition("gears.ratchet.example.com", crd)
    wait_for(lambda: "minimum" in json.dumps(objs.api_client.sanitize_for_serialization(
        ext.read_custom_resource_definition("gears.ratchet.example.com").spec)), 5, "the new schema")
    # replicas: 1 no longer passes, but an update that leaves it alone goes through (CRDValidationRatcheting).
    time.sleep(0.2)  # as in Kubernetes, the new schema applies a moment after the CRD's update commits
    objs.patch_namespaced_custom_object("ratchet.example.com", "v1", "default", "gears", "g1",
                                        {"spec": {"image": "new"}})
    with pytest.raises(ApiException) as e:
        objs.patch_namespaced_custom_object("ratchet.example.com", "v1", "default", "gears", "g1",
                                            {"spec": {"replicas": 2}})
    assert "spec.replicas in body should be greater than or equal to 5" in json.loads(e.value.body)["message"]


def test_server_side_apply_follows_the_schemas_list_types(ext: client.ApiextensionsV1Api,
                                                          objs: client.CustomObjectsApi, api: client.ApiClient) -> None:
    body = _body(crd_yaml("ssa.example.com", "routers", "Router", "rt"))
    props = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    props["ports"] = {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}
    props["tags"] = {"type": "array", "items": {"type": "string"}}  # atomic, as lists are by default
    ext.create_custom_resource_definition(body)
    wait_for(lambda: established(ext, "routers.ssa.example.com"), 5, "Established")
    path = "/apis/ssa.example.com/v1/namespaces/default/routers/r1"

    def apply(manager: str, spec: dict[str, Any]) -> dict[str, Any]:
        doc = {"apiVersion": "ssa.example.com/v1", "kind": "Router", "metadata": {"name": "r1"}, "spec": spec}
        r = api.rest_client.pool_manager.request(
            "PATCH", f"{api.configuration.host}{path}?fieldManager={manager}", body=json.dumps(doc),
            headers={"Content-Type": "application/apply-patch+yaml"})
        assert r.status in (200, 201), r.data
        return json.loads(r.data)

    apply("a", {"ports": [{"name": "http", "port": 80}], "tags": ["x"]})
    got = apply("b", {"ports": [{"name": "https", "port": 443}]})
    assert sorted(p["name"] for p in got["spec"]["ports"]) == ["http", "https"]  # merged by key
    owned = {m["manager"]: json.dumps(m["fieldsV1"]) for m in got["metadata"]["managedFields"]}
    assert 'k:{\\"name\\":\\"http\\"}' in owned["a"] and 'k:{\\"name\\":\\"https\\"}' in owned["b"]
    got = apply("a", {"ports": [{"name": "http", "port": 8080}], "tags": ["y"]})
    assert {p["name"]: p["port"] for p in got["spec"]["ports"]} == {"http": 8080, "https": 443}
    assert got["spec"]["tags"] == ["y"]


def test_resource_quota_counts_custom_resources(server: Server, objs: client.CustomObjectsApi,
                                                api: client.ApiClient, crontabs: str) -> None:
    server.kubectl("create", "namespace", "crd-quota")
    core = client.CoreV1Api(api)
    objs.create_namespaced_custom_object(GROUP, "v1", "crd-quota", "crontabs", cr("before"))
    core.create_namespaced_resource_quota("crd-quota", {"metadata": {"name": "q"},
                                                        "spec": {"hard": {f"count/crontabs.{GROUP}": "2"}}})
    # The quota controller counts what was there before the quota.
    wait_for(lambda: (core.read_namespaced_resource_quota("q", "crd-quota").status.used or {}).get(
        f"count/crontabs.{GROUP}") == "1", 5, "the quota counted")
    objs.create_namespaced_custom_object(GROUP, "v1", "crd-quota", "crontabs", cr("one"))
    with pytest.raises(ApiException) as e:
        objs.create_namespaced_custom_object(GROUP, "v1", "crd-quota", "crontabs", cr("two"))
    assert e.value.status == 403 and "exceeded quota: q" in e.value.body


def _conversion_review(request: dict[str, Any]) -> bytes:
    """A conversion webhook: v1's spec.cronSpec is v2's spec.schedule."""
    out = []
    for obj in request["objects"]:
        obj = copy.deepcopy(obj)
        want = request["desiredAPIVersion"]
        spec = obj.setdefault("spec", {})
        if want.endswith("/v2") and "cronSpec" in spec:
            spec["schedule"] = spec.pop("cronSpec")
        if want.endswith("/v1") and "schedule" in spec:
            spec["cronSpec"] = spec.pop("schedule")
        obj["apiVersion"] = want
        out.append(obj)
    return json.dumps({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
                       "response": {"uid": request["uid"], "result": {"status": "Success"},
                                    "convertedObjects": out}}).encode()


def test_conversion_webhook(ext: client.ApiextensionsV1Api, objs: client.CustomObjectsApi) -> None:
    with WebhookServer() as hook:
        hook.paths["convert"] = _conversion_review
        body = _body(crd_yaml("convert.example.com", "clocks", "Clock", "ck"))
        v1 = body["spec"]["versions"][0]
        v2 = copy.deepcopy(v1)
        v2.update({"name": "v2", "storage": False})
        v2_spec = v2["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        v2_spec["schedule"] = v2_spec.pop("cronSpec")
        v2["additionalPrinterColumns"] = [{"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"}]
        v2["selectableFields"] = [{"jsonPath": ".spec.schedule"}]
        body["spec"]["versions"] = [v1, v2]
        body["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
            "clientConfig": {"url": hook.url("convert"), "caBundle": hook.ca_bundle},
            "conversionReviewVersions": ["v1"]}}
        ext.create_custom_resource_definition(body)
        wait_for(lambda: established(ext, "clocks.convert.example.com"), 5, "Established")
        objs.create_namespaced_custom_object("convert.example.com", "v1", "default", "clocks",
                                             cr("c1", cron="1 * * * *", group="convert.example.com", kind="Clock"))
        as_v2 = objs.get_namespaced_custom_object("convert.example.com", "v2", "default", "clocks", "c1")
        assert as_v2["apiVersion"] == "convert.example.com/v2" and as_v2["spec"]["schedule"] == "1 * * * *"
        assert "cronSpec" not in as_v2["spec"]
        made = {"apiVersion": "convert.example.com/v2", "kind": "Clock", "metadata": {"name": "c2"},
                "spec": {"schedule": "2 * * * *", "image": "img", "replicas": 1}}
        objs.create_namespaced_custom_object("convert.example.com", "v2", "default", "clocks", made)
        as_v1 = objs.get_namespaced_custom_object("convert.example.com", "v1", "default", "clocks", "c2")
        assert as_v1["spec"]["cronSpec"] == "2 * * * *"  # stored in v1, through the webhook
        listed = objs.list_namespaced_custom_object("convert.example.com", "v2", "default", "clocks")
        assert sorted(i["spec"]["schedule"] for i in listed["items"]) == ["1 * * * *", "2 * * * *"]
        reviews = hook.got("convert")
        assert reviews[0]["apiVersion"] == "apiextensions.k8s.io/v1" and reviews[0]["kind"] == "ConversionReview"
        assert reviews[0]["request"]["desiredAPIVersion"] == "convert.example.com/v2"
        hook.paths["convert"] = lambda request: json.dumps({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": request["uid"], "result": {"status": "Failure", "message": "cannot convert"}}
        }).encode()
        with pytest.raises(ApiException) as e:
            objs.get_namespaced_custom_object("convert.example.com", "v2", "default", "clocks", "c1")
        assert e.value.status == 500
        assert json.loads(e.value.body)["message"] == ("conversion webhook for "
                                                       "convert.example.com/v1, Kind=Clock failed: cannot convert")


def test_invalid_ca_bundle_keeps_the_crd_from_being_established(ext: client.ApiextensionsV1Api,
                                                                objs: client.CustomObjectsApi) -> None:
    body = _body(crd_yaml("cabundle.example.com", "kettles", "Kettle", "kt"))
    v2 = {**copy.deepcopy(body["spec"]["versions"][0]), "name": "v2", "storage": False}
    body["spec"]["versions"].append(v2)
    body["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
        "clientConfig": {"url": "https://127.0.0.1:9/convert", "caBundle": "bm90IGEgY2VydGlmaWNhdGU="},
        "conversionReviewVersions": ["v1"]}}
    ext.create_custom_resource_definition(body)  # tolerated before the CRD is established

    def established_condition() -> Any:
        crd = ext.read_custom_resource_definition("kettles.cabundle.example.com")
        return next((c for c in crd.status.conditions or [] if c.type == "Established"), None)

    cond = wait_for(established_condition, 5, "the Established condition")
    assert (cond.status, cond.reason, cond.message) == ("False", "InvalidCABundle",
                                                        "The conversion webhook CABundle is invalid")
    assert _status_of(lambda: objs.list_cluster_custom_object("cabundle.example.com", "v1", "kettles")) == 404
