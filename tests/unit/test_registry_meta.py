"""Name formats and ObjectMeta rules, with the detail messages kube-apiserver v1.32 prints."""

from __future__ import annotations

import pytest

from kubesat.registry import meta as m

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
QNAME_TAIL = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def texts(errs) -> list[str]:
    return [e.text() for e in errs]


# ---------------------------------------------------------------------------------- names

@pytest.mark.parametrize("name", [
    "a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2",
    "a.a", "ab.a", "abc.a", "a1.a", "a-1.a", "a--1--2--b.a", "a.1", "ab.1", "0.a", "01.a", "1-a.1",
    "a.b.c.d.e", "aa.bb.cc.dd.ee", "1.2.3.4.5", "11.22.33.44.55", "a" * 253,
    "a" * 63 + "." + "b" * 63,
])
def test_subdomain_valid(name: str) -> None:
    assert m.dns1123_subdomain(name) == []


@pytest.mark.parametrize("name", [
    "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_", "_1",
    "1_2", ".", "a.", ".a", "a..b", "1.", ".1", "1..2", " ", "a ", " a", "a b", "1 ", " 1", "1 2",
    "A.a", "aB.a", "ab.A", "A1.a", "a1.A", "A.1", "aB.1", "A1.1", "1A.1", "0.A", "01.A", "012.A",
    "1A.a", "1a.A", "A.B.C.D.E", "AA.BB.CC.DD.EE", "a.B.c.d.e", "aa.bB.cc.dd.ee",
    "a@b", "a,b", "a_b", "a;b", "a:b", "a%b", "a?b", "a$b", "bad\n",
])
def test_subdomain_invalid(name: str) -> None:
    assert m.dns1123_subdomain(name) == [SUBDOMAIN_MSG]


def test_subdomain_too_long() -> None:
    assert m.dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]
    assert m.dns1123_subdomain("A" * 254) == ["must be no more than 253 characters", SUBDOMAIN_MSG]


@pytest.mark.parametrize("name", ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "1a", "1-a", "a" * 63])
def test_label_valid(name: str) -> None:
    assert m.dns1123_label(name) == []


@pytest.mark.parametrize("name,expect", [
    ("", [LABEL_MSG]),
    ("A", [LABEL_MSG]),
    ("a-", [LABEL_MSG]),
    ("a_b", [LABEL_MSG]),
    ("a.b", ["must not contain dots"]),
    ("kube.system", ["must not contain dots"]),
    ("a" * 64, ["must be no more than 63 characters"]),
    ("A" * 64, ["must be no more than 63 characters", LABEL_MSG]),
])
def test_label_invalid(name: str, expect: list[str]) -> None:
    assert m.dns1123_label(name) == expect


@pytest.mark.parametrize("name,prefix,expect", [
    ("system:controller:foo", False, []),
    ("a b", False, []),
    ("UPPER_under", False, []),
    ("..a", False, []),
    (".", False, ["may not be '.'"]),
    ("..", False, ["may not be '..'"]),
    ("a/b", False, ["may not contain '/'"]),
    ("a%b", False, ["may not contain '%'"]),
    ("a/%", False, ["may not contain '/'", "may not contain '%'"]),
    (".", True, []),
    ("a/", True, ["may not contain '/'"]),
])
def test_path_segment(name: str, prefix: bool, expect: list[str]) -> None:
    assert m.path_segment_name(name, prefix) == expect


@pytest.mark.parametrize("name", [
    "simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple", "now-with-dashes/simple",
    "now-with-dashes/now-with-dashes", "now.with.dots/simple", "now-with.dashes-and.dots/simple",
    "1-num.2-num/3-num", "1234/5678", "1.2.3.4/5678", "Uppercase_Is_OK_123", "example.com/Uppercase_Is_OK_123",
    "requests.storage-foo", "a" * 63, "a" * 253 + "/" + "b" * 63,
])
def test_qualified_name_valid(name: str) -> None:
    assert m.qualified_name(name) == []


@pytest.mark.parametrize("name,expect", [
    ("nospecialchars%^=@", ["name part " + QNAME_TAIL]),
    ("cantendwithadash-", ["name part " + QNAME_TAIL]),
    ("-cantstartwithadash-", ["name part " + QNAME_TAIL]),
    ("only/one/slash", ["a qualified name " + QNAME_TAIL
                        + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]),
    ("Example.com/abc", ["prefix part " + SUBDOMAIN_MSG]),
    ("example_com/abc", ["prefix part " + SUBDOMAIN_MSG]),
    ("example.com/", ["name part must be non-empty", "name part " + QNAME_TAIL]),
    ("/simple", ["prefix part must be non-empty"]),
    ("example.com/*", ["name part " + QNAME_TAIL]),
    ("a" * 64, ["name part must be no more than 63 characters"]),
    ("a" * 254 + "/abc", ["prefix part must be no more than 253 characters"]),
    ("", ["name part must be non-empty", "name part " + QNAME_TAIL]),
])
def test_qualified_name_invalid(name: str, expect: list[str]) -> None:
    assert m.qualified_name(name) == expect


@pytest.mark.parametrize("value", ["", "simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1",
                                   "1234", "a" * 63, "Upper_case"])
def test_label_value_valid(value: str) -> None:
    assert m.label_value(value) == []


@pytest.mark.parametrize("value,expect", [
    ("nospecialchars%^=@", [LABEL_VALUE_MSG]),
    ("Tama-nui-te-rā.is.Māori.sun", [LABEL_VALUE_MSG]),
    ("\\backslashes\\are\\bad", [LABEL_VALUE_MSG]),
    ("-starts-with-dash", [LABEL_VALUE_MSG]),
    ("ends-with-dash-", [LABEL_VALUE_MSG]),
    (".starts.with.dot", [LABEL_VALUE_MSG]),
    ("a" * 64, ["must be no more than 63 characters"]),
])
def test_label_value_invalid(value: str, expect: list[str]) -> None:
    assert m.label_value(value) == expect


@pytest.mark.parametrize("key,expect", [
    ("a", []), ("a.b", []), ("A_B-c.d", []), (".dotfile", []),
    (".", ["must not be '.'"]),
    ("..", ["must not be '..'"]),
    ("..x", ["must not start with '..'"]),
    ("foo bar", ["a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                 "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]),
])
def test_config_map_key(key: str, expect: list[str]) -> None:
    assert m.config_map_key(key) == expect


def test_name_rules_and_generate_name_masking() -> None:
    assert set(m.NAME_RULES) == {"subdomain", "label", "path_segment", "dns1035"}
    assert m.NAME_RULES["dns1035"]("svc-", True) == []
    assert m.NAME_RULES["dns1035"]("1svc", False) == [
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
        "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
        "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
    assert m.NAME_RULES["subdomain"]("web-", True) == []
    assert m.NAME_RULES["subdomain"]("web-", False) == [SUBDOMAIN_MSG]
    assert m.NAME_RULES["label"]("ns-", True) == []
    assert m.NAME_RULES["path_segment"]("a/b", True) == ["may not contain '/'"]


# ---------------------------------------------------------------------------- object meta

def _ok(**extra) -> dict:
    return {"name": "ok", "namespace": "ns", **extra}


def test_object_meta_valid() -> None:
    meta = _ok(labels={"app": "x", "example.com/tier": ""}, annotations={"Example.com/Note": "anything at all"},
               finalizers=["example.com/hold"],
               ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u1",
                                 "controller": True}])
    assert m.validate_object_meta(meta, namespaced=True, name_rule="subdomain") == []


def test_object_meta_name_required() -> None:
    errs = m.validate_object_meta({"namespace": "ns"}, namespaced=True, name_rule="subdomain")
    assert texts(errs) == ["metadata.name: Required value: name or generateName is required"]
    assert errs[0].cause() == {"reason": "FieldValueRequired",
                               "message": "Required value: name or generateName is required",
                               "field": "metadata.name"}


def test_object_meta_bad_name_and_generate_name() -> None:
    errs = m.validate_object_meta({"name": "Bad_Name", "namespace": "ns"}, namespaced=True, name_rule="subdomain")
    assert texts(errs) == [f'metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN_MSG}']
    errs = m.validate_object_meta({"generateName": "Web-", "name": "Web-abcde", "namespace": "ns"},
                                  namespaced=True, name_rule="subdomain")
    assert [e.field for e in errs] == ["metadata.generateName", "metadata.name"]


def test_object_meta_namespace_scope() -> None:
    assert texts(m.validate_object_meta({"name": "a"}, namespaced=True, name_rule="subdomain")) == [
        "metadata.namespace: Required value"]
    bad_ns = {"name": "a", "namespace": "Bad.NS"}
    assert texts(m.validate_object_meta(bad_ns, namespaced=True, name_rule="subdomain")) == [
        f'metadata.namespace: Invalid value: "Bad.NS": {LABEL_MSG}']
    assert texts(m.validate_object_meta({"name": "a", "namespace": "ns"}, namespaced=False, name_rule="subdomain")) == [
        "metadata.namespace: Forbidden: not allowed on this type"]


def test_object_meta_labels_and_annotations() -> None:
    errs = m.validate_object_meta(_ok(labels={"bad key": "v", "k": "bad value"}), namespaced=True,
                                  name_rule="subdomain")
    assert texts(errs) == [
        f'metadata.labels: Invalid value: "bad key": name part {QNAME_TAIL}',
        f'metadata.labels: Invalid value: "bad value": {LABEL_VALUE_MSG}',
    ]
    errs = m.validate_object_meta(_ok(annotations={"a/b/c": "x"}), namespaced=True, name_rule="subdomain")
    assert [e.field for e in errs] == ["metadata.annotations"]
    big = {"big": "x" * (256 * 1024)}
    assert texts(m.validate_object_meta(_ok(annotations=big), namespaced=True, name_rule="subdomain")) == [
        "metadata.annotations: Too long: may not be more than 262144 bytes"]
    fits = {"k": "x" * (256 * 1024 - 1)}
    assert m.validate_object_meta(_ok(annotations=fits), namespaced=True, name_rule="subdomain") == []


def test_object_meta_owner_references() -> None:
    errs = m.validate_object_meta(_ok(ownerReferences=[{}]), namespaced=True, name_rule="subdomain")
    assert texts(errs) == [
        'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
        'metadata.ownerReferences.kind: Invalid value: "": must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": must not be empty',
    ]
    two = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": n, "uid": n, "controller": True} for n in ("a", "b")]
    errs = m.validate_object_meta(_ok(ownerReferences=two), namespaced=True, name_rule="subdomain")
    assert len(errs) == 1 and errs[0].field == "metadata.ownerReferences"
    assert errs[0].detail == ('Only one reference can have Controller set to true. Found "true" in references for '
                              "ReplicaSet/a and ReplicaSet/b")
    event_owner = [{"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"}]
    errs = m.validate_object_meta(_ok(ownerReferences=event_owner), namespaced=True, name_rule="subdomain")
    assert [e.detail for e in errs] == ["/v1, Kind=Event is disallowed from being an owner"]


def test_object_meta_finalizers() -> None:
    errs = m.validate_object_meta(_ok(finalizers=["orphan", "foregroundDeletion"]), namespaced=True,
                                  name_rule="subdomain")
    assert texts(errs) == ['metadata.finalizers: Invalid value: []string{"orphan", "foregroundDeletion"}: '
                           "finalizer orphan and foregroundDeletion cannot be both set"]
    errs = m.validate_object_meta(_ok(finalizers=["a/b/c"]), namespaced=True, name_rule="subdomain")
    assert [e.field for e in errs] == ["metadata.finalizers"]
    assert texts(m.validate_kube_finalizers({"finalizers": ["kubernetes", "x.io/y", "custom"]})) == [
        'metadata.finalizers[2]: Invalid value: "custom": '
        'name is neither a standard finalizer name nor is it fully qualified']


def test_object_meta_negative_generation() -> None:
    errs = m.validate_object_meta(_ok(generation=-1), namespaced=True, name_rule="subdomain")
    assert texts(errs) == ["metadata.generation: Invalid value: -1: must be greater than or equal to 0"]


def test_object_meta_rbac_names() -> None:
    assert m.validate_object_meta({"name": "system:auth-delegator"}, namespaced=False, name_rule="path_segment") == []
    errs = m.validate_object_meta({"name": "a/b"}, namespaced=False, name_rule="path_segment")
    assert texts(errs) == ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]


def test_namespace_names() -> None:
    assert m.validate_object_meta({"name": "kube-system"}, namespaced=False, name_rule="label") == []
    errs = m.validate_object_meta({"name": "a.b"}, namespaced=False, name_rule="label")
    assert texts(errs) == ['metadata.name: Invalid value: "a.b": must not contain dots']


# ------------------------------------------------------------------------------- updates

OLD = {"name": "a", "namespace": "ns", "uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z", "resourceVersion": "5"}


def test_object_meta_update_unchanged_is_valid() -> None:
    assert m.validate_object_meta_update(dict(OLD, labels={"x": "y"}), OLD) == []


@pytest.mark.parametrize("field,value,expect", [
    ("name", "b", 'metadata.name: Invalid value: "b": field is immutable'),
    ("namespace", "other", 'metadata.namespace: Invalid value: "other": field is immutable'),
    ("uid", "u2", 'metadata.uid: Invalid value: "u2": field is immutable'),
    ("creationTimestamp", "2025-02-03T04:05:06Z",
     "metadata.creationTimestamp: Invalid value: 2025-02-03 04:05:06 +0000 UTC: field is immutable"),
])
def test_object_meta_update_immutable(field: str, value: str, expect: str) -> None:
    assert texts(m.validate_object_meta_update(dict(OLD, **{field: value}), OLD)) == [expect]


def test_object_meta_update_runs_create_checks() -> None:
    errs = m.validate_object_meta_update(dict(OLD, labels={"k": "bad value"}, finalizers=["a/b/c"]), OLD)
    assert [e.field for e in errs] == ["metadata.labels", "metadata.finalizers"]
    assert m.validate_object_meta_update(dict(OLD, generation=1), dict(OLD, generation=2))[0].detail == \
        "must not be decremented"
    errs = m.validate_object_meta_update(dict(OLD), dict(OLD), namespaced=True, name_rule="subdomain")
    assert errs == []
