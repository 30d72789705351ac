"""Pure pieces of the API core: request paths, selectors, ages, codecs, Status errors."""

from __future__ import annotations

import pytest

from kubesat import errors
from kubesat.api import requestinfo
from kubesat.api.app import WARNING_ITEM_RUNES, WARNING_TOTAL_RUNES, warning_headers
from kubesat.apimachinery import codec
from kubesat.api.tables import wants_table
from kubesat.apimachinery.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from kubesat.apimachinery.duration import human_duration


@pytest.mark.parametrize("method,path,watch,expect", [
    ("GET", "/api/v1/namespaces/ns1/pods/p", False, ("get", "", "v1", "ns1", "pods", "p", "")),
    ("GET", "/api/v1/namespaces/ns1/pods", False, ("list", "", "v1", "ns1", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns1/pods", True, ("watch", "", "v1", "ns1", "pods", "", "")),
    ("GET", "/api/v1/pods", False, ("list", "", "v1", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns1", False, ("get", "", "v1", "ns1", "namespaces", "ns1", "")),
    ("PUT", "/api/v1/namespaces/ns1/finalize", False, ("update", "", "v1", "ns1", "namespaces", "ns1", "finalize")),
    ("GET", "/api/v1/namespaces/ns1/status", False, ("get", "", "v1", "ns1", "namespaces", "ns1", "status")),
    ("GET", "/api/v1/namespaces", False, ("list", "", "v1", "", "namespaces", "", "")),
    ("POST", "/api/v1/namespaces/ns/serviceaccounts/sa/token", False,
     ("create", "", "v1", "ns", "serviceaccounts", "sa", "token")),
    ("DELETE", "/apis/rbac.authorization.k8s.io/v1/namespaces/x/roles", False,
     ("deletecollection", "rbac.authorization.k8s.io", "v1", "x", "roles", "", "")),
    ("PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", False,
     ("patch", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "admin", "")),
    ("GET", "/api/v1/watch/namespaces/ns/pods", False, ("watch", "", "v1", "ns", "pods", "", "")),
])
def test_request_info(method, path, watch, expect) -> None:
    info = requestinfo.parse(method, path, watch)
    assert info.resource_request
    assert (info.verb, info.api_group, info.api_version, info.namespace, info.resource, info.name,
            info.subresource) == expect


@pytest.mark.parametrize("path", ["/version", "/healthz", "/api", "/apis", "/api/v1", "/apis/apps",
                                  "/apis/apps/v1", "/openapi/v3", "/.well-known/openid-configuration"])
def test_non_resource_paths(path) -> None:
    assert not requestinfo.parse("GET", path, False).resource_request


@pytest.mark.parametrize("selector,labels,match", [
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app!=web", {}, True),
    ("app!=web", {"app": "web"}, False),
    ("env in (prod, qa)", {"env": "qa"}, True),
    ("env in (prod,qa),tier", {"env": "qa"}, False),
    ("env notin (prod)", {}, True),
    ("!legacy", {"legacy": "x"}, False),
    ("!legacy", {"app": "x"}, True),
    ("app", {"app": ""}, True),
    ("", {"a": "b"}, True),
])
def test_label_selectors(selector, labels, match) -> None:
    assert labels_match(parse_label_selector(selector), labels) is match


@pytest.mark.parametrize("bad", ["app=(", "a b", "=x", "app in (a b)", "-x=1"])
def test_bad_label_selectors_are_400(bad) -> None:
    with pytest.raises(errors.StatusError) as e:
        parse_label_selector(bad)
    assert e.value.code == 400


def test_field_selectors() -> None:
    sel = parse_field_selector("metadata.name=a,spec.nodeName!=n1", lambda f: True, "Pod", "v1")
    values = {"metadata.name": "a", "spec.nodeName": "n2"}
    assert fields_match(sel, values.get)
    assert not fields_match(sel, {"metadata.name": "a", "spec.nodeName": "n1"}.get)
    with pytest.raises(errors.StatusError) as e:
        parse_field_selector("spec.bogus=1", lambda f: f == "metadata.name", "Pod", "v1")
    assert e.value.code == 400 and "field label not supported: spec.bogus" in e.value.message


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (185, "3m5s"), (600, "10m"), (3 * 3600 - 1, "179m"),
    (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"), (30 * 3600, "30h"), (50 * 3600, "2d2h"), (10 * 86400, "10d"),
    (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds, text) -> None:
    assert human_duration(seconds) == text


def test_wants_table() -> None:
    kubectl_get = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                   "g=meta.k8s.io,application/json")
    assert wants_table(kubectl_get)
    assert not wants_table("application/json")
    assert not wants_table(None)


def test_decode_errors_are_status_values() -> None:
    with pytest.raises(errors.StatusError) as e:
        codec.decode_object("application/json", b"{not json")
    assert e.value.code == 400 and e.value.reason == "BadRequest"
    with pytest.raises(errors.StatusError) as e:
        codec.decode_object("text/plain", b"{}")
    assert e.value.code == 415 and e.value.reason == "UnsupportedMediaType"
    with pytest.raises(errors.StatusError) as e:
        codec.decode_object("application/yaml", b"a: [1, 2")
    assert e.value.code == 400 and "error converting YAML to JSON" in e.value.message
    with pytest.raises(errors.StatusError) as e:
        codec.decode_object("application/yaml", b"a: 1\na: 2\n")
    assert e.value.code == 400 and "already defined" in e.value.message
    with pytest.raises(errors.StatusError) as e:
        codec.decode_object("application/json", b"[1]")
    assert e.value.code == 400


def test_check_kind() -> None:
    obj: dict = {}
    codec.check_kind(obj, "v1", "Secret")
    assert obj == {"apiVersion": "v1", "kind": "Secret"}
    with pytest.raises(errors.StatusError) as e:
        codec.check_kind({"apiVersion": "v2", "kind": "Secret"}, "v1", "Secret")
    assert "does not match the expected API version (v1)" in e.value.message


def test_invalid_status_shape() -> None:
    err = errors.invalid("Pod", "foo-pod", [errors.required("spec.containers")])
    st = err.status()
    assert st["code"] == 422 and st["reason"] == "Invalid"
    assert st["message"] == 'Pod "foo-pod" is invalid: spec.containers: Required value'
    assert st["details"]["causes"] == [{"reason": "FieldValueRequired", "message": "Required value",
                                        "field": "spec.containers"}]
    two = errors.invalid("Role", "r", [errors.required("rules[0].verbs"), errors.invalid_value("a", 1, "bad")],
                         "rbac.authorization.k8s.io")
    assert two.message == ('Role.rbac.authorization.k8s.io "r" is invalid: '
                           '[rules[0].verbs: Required value, a: Invalid value: 1: bad]')


def test_warning_headers_are_deduplicated_and_bounded_as_kube_apiserver_bounds_them() -> None:
    assert warning_headers(["a", "a", "", "b"]) == [(b"warning", b'299 - "a"'), (b"warning", b'299 - "b"')]
    huge = ["x" * 100_000, "y" * 10, "z" * 5000]
    heads = warning_headers(huge)
    assert [len(v) for _, v in heads] == [WARNING_ITEM_RUNES + 8, 10 + 8, WARNING_ITEM_RUNES + 8]
    many = [f"{i:04d}" + "w" * 300 for i in range(40)]
    heads = warning_headers(many)
    assert sum(len(v) - 8 for _, v in heads) <= WARNING_TOTAL_RUNES + WARNING_ITEM_RUNES
    assert len(heads) == WARNING_TOTAL_RUNES // WARNING_ITEM_RUNES
