"""CRD logic without a server: validation words, name acceptance, printer-column JSONPath, version order, the
served table's generation."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kubesat.apimachinery import jsonpath
from kubesat.controllers.crd import accepted_names
from kubesat.registry import kinds
from kubesat.registry.apiextensions import CustomResourceDefinitionStrategy, validate_crd, validate_crd_update
from kubesat.registry.customresource import CustomResourceStrategy, open_where_preserved, infos_for, published_schema

CRD_INFO = kinds.builtin_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def crd(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "things", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object"}}}]},
    }
    base["spec"].update(spec)
    CustomResourceDefinitionStrategy(CRD_INFO).prepare_for_create(base)
    return base


def texts(obj: dict[str, Any]) -> list[str]:
    return [e.text() for e in validate_crd(obj)]


def test_a_valid_crd_gets_v1_defaults() -> None:
    obj = crd()
    assert texts(obj) == []
    assert obj["spec"]["names"]["singular"] == "thing" and obj["spec"]["names"]["listKind"] == "ThingList"
    assert obj["spec"]["conversion"] == {"strategy": "None"}
    assert obj["status"] == {"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": ["v1"]}


def test_storage_versions_words() -> None:
    v = {"served": True, "schema": {"openAPIV3Schema": {"type": "object"}}}
    two = crd(versions=[{"name": "v1", "storage": True, **v}, {"name": "v2", "storage": True, **v}])
    out = texts(two)
    assert any(t.startswith("spec.versions: Invalid value: [") and
               t.endswith(": must have exactly one version marked as storage version") for t in out)
    assert 'status.storedVersions: Invalid value: ["v1"]: must have the storage version v2' in out
    none = crd(versions=[{"name": "v1", "storage": False, **v}])
    assert "status.storedVersions: Invalid value: null: must have at least one stored version" in texts(none)
    dup = crd(versions=[{"name": "v1", "storage": True, **v}, {"name": "v1", "storage": False, **v}])
    assert any(t.endswith("must contain unique version names") for t in texts(dup))


def test_names_group_scope_words() -> None:
    obj = crd(group="nodot", scope="Everywhere")
    obj["metadata"]["name"] = "things.nodot"
    assert texts(obj) == ['spec.group: Invalid value: "nodot": should be a domain with at least one dot',
                          'spec.scope: Unsupported value: "Everywhere": supported values: "Cluster", "Namespaced"']
    obj = crd(names={"plural": "Things", "kind": "Thing", "listKind": "Thing", "shortNames": ["9x"]})
    obj["metadata"]["name"] = "Things.example.com"
    out = texts(obj)
    assert 'metadata.name: Invalid value: "Things.example.com": must be spec.names.plural+"."+spec.group' not in out
    assert any(t.startswith('spec.names.plural: Invalid value: "Things": a DNS-1035 label must consist of lower '
                            "case alphanumeric characters or '-', start with an alphabetic character, and end with "
                            "an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation "
                            "is '[a-z]([-a-z0-9]*[a-z0-9])?')") for t in out)
    assert 'spec.names.listKind: Invalid value: "Thing": kind and listKind may not be the same' in out
    assert any(t.startswith('spec.names.shortNames[0]: Invalid value: "9x"') for t in out)
    wrong = crd()
    wrong["metadata"]["name"] = "other.example.com"
    assert texts(wrong) == ['metadata.name: Invalid value: "other.example.com": '
                            'must be spec.names.plural+"."+spec.group']


def test_per_version_parts_are_named_at_the_top_when_shared() -> None:
    col = {"name": "X", "type": "int", "jsonPath": "spec.x"}
    v = {"served": True, "schema": {"openAPIV3Schema": {"type": "object"}}, "additionalPrinterColumns": [col]}
    one = crd(versions=[{"name": "v1", "storage": True, **v}])
    assert texts(one) == [
        'spec.additionalPrinterColumns[0].type: Invalid value: "int": must be one of '
        "boolean,date,integer,number,string",
        'spec.additionalPrinterColumns[0].JSONPath: Invalid value: "spec.x": must be a simple json path starting '
        "with ."]
    other = copy.deepcopy(v)
    other["additionalPrinterColumns"] = []
    two = crd(versions=[{"name": "v1", "storage": True, **v}, {"name": "v2", "storage": False, **other}])
    assert texts(two)[0].startswith("spec.versions[0].additionalPrinterColumns[0].type: ")


def test_scale_paths_and_conversion_words() -> None:
    sub = {"scale": {"specReplicasPath": ".status.r", "statusReplicasPath": "status.r"}}
    obj = crd(versions=[{"name": "v1", "served": True, "storage": True, "subresources": sub,
                         "schema": {"openAPIV3Schema": {"type": "object"}}}])
    assert texts(obj) == [
        'spec.subresources.scale.specReplicasPath: Invalid value: ".status.r": should be a json path under .spec',
        'spec.subresources.scale.statusReplicasPath: Invalid value: "status.r": must be a simple json path '
        "starting with ."]
    hook = crd(conversion={"strategy": "Webhook"})
    assert texts(hook) == ["spec.conversion.webhookClientConfig: Required value: required when strategy is set to "
                           "Webhook", "spec.conversion.conversionReviewVersions: Required value"]
    none = crd(conversion={"strategy": "None", "webhook": {"conversionReviewVersions": ["v1"]}})
    assert texts(none) == ["spec.conversion.conversionReviewVersions: Forbidden: should not be set when strategy is "
                           "not set to Webhook"]


def test_update_rules() -> None:
    old = crd()
    old["status"]["conditions"] = [{"type": "Established", "status": "True"}]
    new = copy.deepcopy(old)
    new["spec"]["scope"] = "Cluster"
    new["spec"]["names"]["kind"] = "Other"
    new["spec"]["group"] = "other.com"
    out = [e.text() for e in validate_crd_update(new, old)]
    assert 'spec.scope: Invalid value: "Cluster": field is immutable' in out
    assert 'spec.names.kind: Invalid value: "Other": field is immutable' in out
    assert 'spec.group: Invalid value: "other.com": field is immutable' in out
    # A new storage version is recorded; the old one stays stored.
    moved = copy.deepcopy(old)
    moved["spec"]["versions"] = [{**old["spec"]["versions"][0], "storage": False},
                                 {"name": "v2", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]
    CustomResourceDefinitionStrategy(CRD_INFO).prepare_for_update(moved, old)
    assert moved["status"]["storedVersions"] == ["v1", "v2"]


def _accepted(obj: dict[str, Any], name: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["name"] = name
    out["status"]["acceptedNames"] = copy.deepcopy(out["spec"]["names"])
    return out


def test_name_conflicts_in_a_group() -> None:
    first = _accepted(crd(names={"plural": "things", "kind": "Thing", "shortNames": ["th"]}), "things.example.com")
    second = crd(names={"plural": "others", "kind": "Other", "shortNames": ["th"]})
    second["metadata"]["name"] = "others.example.com"
    names, verdict = accepted_names(second, [first, second])
    assert verdict == ("False", "ShortNamesConflict", '"th" is already in use')
    assert names["plural"] == "others" and "shortNames" not in names
    third = crd(names={"plural": "things2", "kind": "Thing", "listKind": "Thing2List"})
    third["metadata"]["name"] = "things2.example.com"
    assert accepted_names(third, [first])[1] == ("False", "KindConflict", '"Thing" is already in use')
    elsewhere = crd(group="other.com", names={"plural": "things", "kind": "Thing", "shortNames": ["th"]})
    assert accepted_names(elsewhere, [first])[1] == ("True", "NoConflicts", "no conflicts found")


def test_printer_columns_and_jsonpath() -> None:
    steps = jsonpath.parse('.status.conditions[?(@.type=="Ready")].status')
    obj = {"status": {"conditions": [{"type": "Other", "status": "x"}, {"type": "Ready", "status": "True"}]}}
    assert jsonpath.find(obj, steps) == ["True"]
    assert jsonpath.find({"a": [1, 2, 3]}, jsonpath.parse(".a[*]")) == [1, 2, 3]
    assert jsonpath.find({"a": [1, 2, 3]}, jsonpath.parse(".a[-1]")) == [3]
    with pytest.raises(jsonpath.PathError):
        jsonpath.parse(".a[?(@.x ~ 1)]")
    spec = crd(versions=[{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {"type": "object"}},
                          "additionalPrinterColumns": [
                              {"name": "Ready", "type": "string",
                               "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                              {"name": "N", "type": "integer", "jsonPath": ".spec.n", "priority": 1},
                              {"name": "When", "type": "date", "jsonPath": ".spec.when"}]}])
    strategy = CustomResourceStrategy(infos_for(spec)[0])
    cols = strategy.table_columns()
    assert [(c["name"], c["type"], c["priority"]) for c in cols] == [
        ("Name", "string", 0), ("Ready", "string", 0), ("N", "integer", 1), ("When", "date", 0)]
    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    cells = strategy.table_cells({"metadata": {"name": "a"}, "spec": {"n": 3, "when": "2026-01-01T00:00:00Z"},
                                  **obj}, now)
    assert cells == ["a", "True", 3, "10m"]
    assert strategy.table_cells({"metadata": {"name": "b"}, "spec": {"when": "soon"}}, now) == \
        ["b", None, None, "<invalid>"]


def test_custom_table_generation_and_lookups() -> None:
    obj = crd(names={"plural": "gizmos", "kind": "Gizmo", "shortNames": ["gz"]}, group="unit.example.com")
    obj["metadata"]["name"] = "gizmos.unit.example.com"
    before = kinds.CUSTOM.generation
    kinds.CUSTOM.set("gizmos.unit.example.com", infos_for(obj))
    try:
        assert kinds.CUSTOM.generation == before + 1
        info = kinds.lookup("unit.example.com", "v1", "gizmos")
        assert info is not None and info.custom is not None and info.short_names == ("gz",)
        assert kinds.lookup_kind("unit.example.com/v1", "Gizmo") is info
        assert kinds.custom_resource_of_key("/registry/unit.example.com/gizmos/default/a") is info
        assert info.definition == "com.example.unit.v1.Gizmo"
        assert kinds.group_versions()["unit.example.com"] == ["v1"]
        assert kinds.lookup("", "v1", "pods") is kinds.builtin_kind("v1", "Pod")
    finally:
        kinds.CUSTOM.set("gizmos.unit.example.com", ())
    assert kinds.lookup("unit.example.com", "v1", "gizmos") is None
    assert kinds.CUSTOM.generation == before + 2


def test_kube_aware_version_order() -> None:
    versions = ["v1alpha1", "v2beta1", "foo", "v1", "v2", "v1beta2", "v10", "v1beta1"]
    assert sorted(versions, key=kinds.version_sort_key) == [
        "v10", "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]


def test_published_schema_and_its_apply_form() -> None:
    schema = {"type": "object", "properties": {"spec": {
        "type": "object", "nullable": True, "x-kubernetes-preserve-unknown-fields": True,
        "properties": {"a": {"type": "string"}}}}}
    obj = crd(versions=[{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}])
    info = infos_for(obj)[0]
    v3 = published_schema(info, False)
    assert v3["x-kubernetes-group-version-kind"] == [{"group": "example.com", "kind": "Thing", "version": "v1"}]
    assert v3["properties"]["metadata"]["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    assert v3["properties"]["spec"]["nullable"] is True
    assert "nullable" not in published_schema(info, True)["properties"]["spec"]
    opened = open_where_preserved(v3)
    assert opened["properties"]["spec"]["additionalProperties"] == {}
    assert "additionalProperties" not in opened  # the root keeps its declared fields only


def test_conversion_webhook_client_config_words() -> None:
    hook = crd(conversion={"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                                                              "clientConfig": {"url": "http://h/x?y=1"}}})
    assert texts(hook) == [
        "spec.conversion.webhookClientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; "
        "desired format: https://host[/path]",
        'spec.conversion.webhookClientConfig.url: Invalid value: "y=1": query parameters are not permitted in the URL']
    svc = crd(conversion={"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v3"],
                                                             "clientConfig": {"service": {"name": "s"}}}})
    assert texts(svc) == [
        "spec.conversion.webhookClientConfig.service.namespace: Required value: service namespace is required",
        'spec.conversion.conversionReviewVersions: Invalid value: ["v3"]: must include at least one of v1, v1beta1']
