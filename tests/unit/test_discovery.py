"""Discovery documents: plain, aggregated, and Accept-header negotiation."""

from __future__ import annotations

import base64

import pytest

from kubesat.api import discovery
from kubesat.registry import kinds

KUBECTL_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def test_api_versions() -> None:
    assert discovery.api_versions("10.0.0.1:6443") == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}],
    }


def test_api_group_list_and_group() -> None:
    doc = discovery.api_group_list()
    assert doc["kind"] == "APIGroupList" and doc["apiVersion"] == "v1"
    names = [g["name"] for g in doc["groups"]]
    assert "" not in names
    assert set(names) == {g for g in kinds.GROUP_ORDER if g}
    # kube-apiserver's group priorities: authentication > authorization > certificates > rbac > storage
    # > admissionregistration > apiextensions > coordination > discovery.
    assert names == ["apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "batch",
                     "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
                     "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
                     "coordination.k8s.io", "discovery.k8s.io"]
    rbac = discovery.api_group("rbac.authorization.k8s.io")
    assert rbac == {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "rbac.authorization.k8s.io",
        "versions": [{"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"},
    }
    assert discovery.api_group("nope.example.com") is None
    assert discovery.api_group("") is None


def test_core_resource_list() -> None:
    doc = discovery.api_resource_list("", "v1")
    assert doc is not None
    assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == "v1" and "apiVersion" not in doc
    by_name = {r["name"]: r for r in doc["resources"]}
    assert [r["name"] for r in doc["resources"]] == sorted(by_name)
    assert by_name["serviceaccounts"] == {
        "name": "serviceaccounts", "singularName": "serviceaccount", "namespaced": True, "kind": "ServiceAccount",
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        "shortNames": ["sa"], "storageVersionHash": "pbx9ZvyFpBE=",
    }
    assert by_name["serviceaccounts/token"] == {
        "name": "serviceaccounts/token", "singularName": "", "namespaced": True,
        "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"],
    }
    assert by_name["pods/status"] == {
        "name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod",
        "verbs": ["get", "patch", "update"],
    }
    assert by_name["pods"]["categories"] == ["all"]
    assert by_name["pods"]["storageVersionHash"] == "xPOwRZ+Yhw8="
    assert by_name["namespaces"]["verbs"] == ["create", "delete", "get", "list", "patch", "update", "watch"]
    assert by_name["namespaces/finalize"]["verbs"] == ["update"]
    assert by_name["replicationcontrollers"]["shortNames"] == ["rc"]
    assert by_name["replicationcontrollers"]["categories"] == ["all"]
    assert by_name["replicationcontrollers/scale"]["group"] == "autoscaling"
    assert by_name["replicationcontrollers/status"]["kind"] == "ReplicationController"


def test_apps_resource_list() -> None:
    doc = discovery.api_resource_list("apps", "v1")
    assert doc is not None and doc["groupVersion"] == "apps/v1"
    by_name = {r["name"]: r for r in doc["resources"]}
    assert sorted(by_name) == [
        "controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
        "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
        "statefulsets/scale", "statefulsets/status"]
    assert by_name["deployments"]["shortNames"] == ["deploy"] and by_name["deployments"]["categories"] == ["all"]
    assert by_name["deployments"]["storageVersionHash"] == discovery.storage_version_hash("apps", "v1", "Deployment")
    assert by_name["deployments/scale"] == {
        "name": "deployments/scale", "singularName": "", "namespaced": True, "group": "autoscaling",
        "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}
    assert [by_name[n]["shortNames"] for n in ("replicasets", "statefulsets", "daemonsets")] == \
        [["rs"], ["sts"], ["ds"]]
    assert "shortNames" not in by_name["controllerrevisions"]


def test_group_resource_list() -> None:
    doc = discovery.api_resource_list("rbac.authorization.k8s.io", "v1")
    assert doc is not None and doc["apiVersion"] == "v1"
    assert doc["groupVersion"] == "rbac.authorization.k8s.io/v1"
    assert [r["name"] for r in doc["resources"]] == ["clusterrolebindings", "clusterroles", "rolebindings", "roles"]
    assert doc["resources"][3]["storageVersionHash"] == "7FuwZcIIItM="
    authn = discovery.api_resource_list("authentication.k8s.io", "v1")
    assert authn is not None
    tr = {r["name"]: r for r in authn["resources"]}["tokenreviews"]
    assert tr["verbs"] == ["create"] and "storageVersionHash" not in tr
    assert discovery.api_resource_list("rbac.authorization.k8s.io", "v1beta1") is None
    assert discovery.api_resource_list("", "v2") is None


def test_storage_version_hash_is_eight_bytes() -> None:
    h = discovery.storage_version_hash("coordination.k8s.io", "v1", "Lease")
    assert len(base64.b64decode(h)) == 8


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_aggregated_core(version: str) -> None:
    doc = discovery.aggregated_discovery(True, version)
    assert doc["kind"] == "APIGroupDiscoveryList"
    assert doc["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    assert doc["metadata"] == {}
    [core] = doc["items"]
    assert "name" not in core["metadata"]
    [v1] = core["versions"]
    assert v1["version"] == "v1" and v1["freshness"] == "Current"
    res = {r["resource"]: r for r in v1["resources"]}
    sa = res["serviceaccounts"]
    assert sa["scope"] == "Namespaced" and sa["singularResource"] == "serviceaccount"
    assert sa["responseKind"]["kind"] == "ServiceAccount"
    assert sa["shortNames"] == ["sa"]
    assert sa["subresources"] == [{
        "subresource": "token",
        "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
        "verbs": ["create"],
    }]
    assert res["namespaces"]["scope"] == "Cluster"
    assert [s["subresource"] for s in res["namespaces"]["subresources"]] == ["finalize", "status"]
    assert res["pods"]["categories"] == ["all"]


def test_aggregated_groups() -> None:
    doc = discovery.aggregated_discovery(False, "v2")
    names = [item["metadata"]["name"] for item in doc["items"]]
    assert names == [g["name"] for g in discovery.api_group_list()["groups"]]
    authz = doc["items"][names.index("authorization.k8s.io")]
    res = {r["resource"]: r for r in authz["versions"][0]["resources"]}
    assert res["localsubjectaccessreviews"]["scope"] == "Namespaced"
    assert res["selfsubjectaccessreviews"]["verbs"] == ["create"]
    with pytest.raises(ValueError):
        discovery.aggregated_discovery(False, "v1")


@pytest.mark.parametrize(
    ("accept", "want"),
    [
        (KUBECTL_ACCEPT, "v2"),
        ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "v2beta1"),
        ("application/json", None),
        ("", None),
        ("*/*", None),
        ("application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", None),
        ("application/json;q=0.5, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", "v2"),
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0, application/json", None),
        ("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
         "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", "v2"),
        ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json", None),
        ("application/json; g=apidiscovery.k8s.io ; v=v2 ; as=APIGroupDiscoveryList", "v2"),
    ],
)
def test_accept_wants_aggregated(accept: str, want: str | None) -> None:
    assert discovery.accept_wants_aggregated(accept) == want


def test_batch_resource_list() -> None:
    doc = discovery.api_resource_list("batch", "v1")
    assert doc is not None and doc["groupVersion"] == "batch/v1"
    by_name = {r["name"]: r for r in doc["resources"]}
    assert sorted(by_name) == ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]
    assert by_name["cronjobs"]["shortNames"] == ["cj"] and by_name["cronjobs"]["categories"] == ["all"]
    assert by_name["jobs"]["categories"] == ["all"] and "shortNames" not in by_name["jobs"]
    assert by_name["jobs/status"]["verbs"] == ["get", "patch", "update"]


def test_persistent_volumes_in_core() -> None:
    doc = discovery.api_resource_list("", "v1")
    assert doc is not None
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["persistentvolumes"]["namespaced"] is False
    assert by_name["persistentvolumes"]["shortNames"] == ["pv"]
    assert by_name["persistentvolumes"]["storageVersionHash"] == "HN/zwEC+JgM="
    assert by_name["persistentvolumeclaims"]["namespaced"] is True
    assert by_name["persistentvolumeclaims"]["shortNames"] == ["pvc"]
    assert by_name["persistentvolumeclaims"]["storageVersionHash"] == "QWTyNDq0dC4="
    for sub in ("persistentvolumes/status", "persistentvolumeclaims/status"):
        assert by_name[sub]["verbs"] == ["get", "patch", "update"]
