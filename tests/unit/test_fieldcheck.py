"""Strict decoding checks: unknown, duplicate and wrongly typed fields, on the seeds' manifests and by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesat.registry import kinds
from kubesat.apimachinery import fieldcheck, schema

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"
POD = "io.k8s.api.core.v1.Pod"


def _definition(doc: dict[str, Any]) -> str:
    if doc["apiVersion"] == "apps/v1":
        return f"io.k8s.api.apps.v1.{doc['kind']}"
    info = kinds.lookup_kind(doc["apiVersion"], doc["kind"])
    assert info is not None, doc["kind"]
    return info.definition


def _load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((SEEDS / name).read_text()) if d]


def _valid_seed_files() -> list[str]:
    out = []
    for p in sorted(SEEDS.glob("*.yaml")):
        try:
            list(yaml.safe_load_all(p.read_text()))
        except yaml.YAMLError:
            continue
        out.append(p.name)
    return out


needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason="seed manifests not available")


@needs_seeds
def test_seed_pod_with_misindented_field_ref() -> None:
    [pod] = _load("000-pod-projected-token-indented.yaml")
    unknown = fieldcheck.unknown_fields(pod, POD)
    assert unknown == [
        "spec.volumes[0].projected.sources[2].downwardAPI.items[0].apiVersion",
        "spec.volumes[0].projected.sources[2].downwardAPI.items[0].fieldPath",
    ]
    assert fieldcheck.type_errors(pod, POD) == []
    assert fieldcheck.strict_error_message(unknown, []) == (
        'strict decoding error: unknown field "spec.volumes[0].projected.sources[2].downwardAPI.items[0].apiVersion", '
        'unknown field "spec.volumes[0].projected.sources[2].downwardAPI.items[0].fieldPath"'
    )


@needs_seeds
def test_seed_pod_fixed_is_clean() -> None:
    [pod] = _load("000-pod-projected-token-fixed.yaml")
    assert fieldcheck.unknown_fields(pod, POD) == []
    assert fieldcheck.type_errors(pod, POD) == []


@needs_seeds
def test_every_valid_seed_manifest() -> None:
    names = _valid_seed_files()
    assert "000-pod-projected-token.yaml" not in names  # not valid YAML, never reaches a server
    assert "001-deployment.yaml" in names
    for name in names:
        for doc in _load(name):
            d = _definition(doc)
            unknown = fieldcheck.unknown_fields(doc, d)
            if name == "000-pod-projected-token-indented.yaml":
                assert len(unknown) == 2
            else:
                assert unknown == [], (name, unknown)
            assert fieldcheck.type_errors(doc, d) == [], name
            assert fieldcheck.find_duplicate_fields(json.dumps(doc).encode()) == []


def test_unknown_fields_paths() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "bogus": 1,
        "metadata": {"name": "p", "labels": {"any-key": "v"}, "annotations": {"x/y": "z"}, "nam": "typo",
                     "managedFields": [{"fieldsV1": {"f:anything": {}}}]},
        "spec": {
            "containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1"}}},
                           {"name": "d", "Image": "case matters", "ports": [{"containerPort": 80, "hostport": 1}]}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "unknownObject": {"deep": {"deeper": 1}},
        },
        "status": None,
    }
    assert fieldcheck.unknown_fields(pod, POD) == [
        "bogus",
        "metadata.nam",
        "spec.containers[1].Image",
        "spec.containers[1].ports[0].hostport",
        "spec.unknownObject",
    ]


def test_nested_api_version_and_kind_are_not_free() -> None:
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"},
          "secrets": [{"name": "s", "kind": "Secret", "apiVersion": "v1", "extra": True}]}
    # ObjectReference has apiVersion and kind; the extra key is the only unknown.
    assert fieldcheck.unknown_fields(sa, "io.k8s.api.core.v1.ServiceAccount") == ["secrets[0].extra"]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "kind": "x"}]}
    assert fieldcheck.unknown_fields(role, "io.k8s.api.rbac.v1.Role") == ["rules[0].kind"]


def test_intorstring_and_quantity_are_leaves() -> None:
    pod = {"spec": {"containers": [{"name": "c", "livenessProbe": {"httpGet": {"port": "http"}},
                                    "resources": {"requests": {"memory": "64Mi"}}}]}}
    assert fieldcheck.unknown_fields(pod, POD) == []
    assert fieldcheck.type_errors(pod, POD) == []


def test_type_errors_wording() -> None:
    pod = {
        "metadata": {"name": 5, "labels": {"a": 1}},
        "spec": {
            "containers": [{"name": "c", "ports": [{"containerPort": "80"}], "stdin": "yes"}],
            "volumes": {"name": "v"},
            "activeDeadlineSeconds": 1.5,
            "priority": 3_000_000_000,
        },
    }
    assert fieldcheck.type_errors(pod, POD) == [
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of type string",
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
        "json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort "
        "of type int32",
        "json: cannot unmarshal string into Go struct field Container.spec.containers.stdin of type bool",
        "json: cannot unmarshal object into Go struct field PodSpec.spec.volumes of type []v1.Volume",
        "json: cannot unmarshal number 1.5 into Go struct field PodSpec.spec.activeDeadlineSeconds of type int64",
        "json: cannot unmarshal number 3000000000 into Go struct field PodSpec.spec.priority of type int32",
    ]


def test_type_errors_struct_and_list_mismatch() -> None:
    assert fieldcheck.type_errors({"spec": "x"}, POD) == [
        "json: cannot unmarshal string into Go struct field Pod.spec of type v1.PodSpec"
    ]
    assert fieldcheck.type_errors({"metadata": []}, POD) == [
        "json: cannot unmarshal array into Go struct field Pod.metadata of type v1.ObjectMeta"
    ]
    role = {"rules": [{"verbs": "get"}]}
    assert fieldcheck.type_errors(role, "io.k8s.api.rbac.v1.Role") == [
        "json: cannot unmarshal string into Go struct field PolicyRule.rules.verbs of type []string"
    ]
    # Integral floats (what YAML 3.0 becomes) and nulls are accepted.
    assert fieldcheck.type_errors({"spec": {"priority": 3.0, "nodeName": None}}, POD) == []


def test_type_errors_special_types() -> None:
    pod = {"metadata": {"creationTimestamp": 12},
           "spec": {"containers": [{"name": "c", "livenessProbe": {"httpGet": {"port": {"a": 1}}},
                                    "resources": {"limits": {"cpu": "1 core"}, "requests": {"memory": 128}}}]}}
    # A time that does not decode ends the decoding: it is the only message.
    assert fieldcheck.type_errors(pod, POD) == [
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of type string",
    ]
    del pod["metadata"]
    assert fieldcheck.type_errors(pod, POD) == [
        "json: cannot unmarshal object into Go value of type int32",
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
    ]
    assert fieldcheck.quantity_error("1Gb").startswith("quantities must match")
    assert fieldcheck.quantity_error("1kK") == "unable to parse quantity's suffix"
    assert fieldcheck.quantity_error("100m") is None
    assert fieldcheck.quantity_error("1e3") is None


def test_secret_data_must_be_base64() -> None:
    secret = "io.k8s.api.core.v1.Secret"
    assert fieldcheck.type_errors({"data": {"token": "dG9rZW4="}}, secret) == []
    assert fieldcheck.type_errors({"data": {"token": "abc!"}}, secret) == ["illegal base64 data at input byte 3"]
    assert fieldcheck.type_errors({"data": {"token": "abc"}}, secret) == ["illegal base64 data at input byte 0"]
    assert fieldcheck.type_errors({"data": {"token": 7}}, secret) == [
        "json: cannot unmarshal number into Go struct field Secret.data of type []uint8"
    ]
    assert fieldcheck.type_errors({"stringData": {"token": "not base64!"}}, secret) == []


@pytest.mark.parametrize(
    ("data", "offset"),
    [(b"", None), (b"YQ==", None), (b"YWI=", None), (b"YWJj", None), (b"YW\nJj", None), (b"Y", 0),
     (b"YQ=", 3), (b"YQ==YQ==", 4), (b"=AAA", 0), (b"YW*j", 2), (b"YWJjZA", 4)],
)
def test_base64_offsets(data: bytes, offset: int | None) -> None:
    assert fieldcheck.base64_error_offset(data) == offset


def test_duplicates() -> None:
    raw = b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"}},' \
          b'"spec":{"containers":[{"name":"c","image":"i","image":"j"}]}}'
    dups = fieldcheck.find_duplicate_fields(raw)
    assert dups == ["metadata.name", "metadata.labels.x", "spec.containers[0].image"]
    assert fieldcheck.strict_error_message([], ["metadata.name"]) == (
        'strict decoding error: duplicate field "metadata.name"'
    )
    assert fieldcheck.strict_error_message(["a"], ["b"]) == (
        'strict decoding error: unknown field "a", duplicate field "b"'
    )
    assert fieldcheck.find_duplicate_fields(b"not json") == []
    assert fieldcheck.find_duplicate_fields(b'{"a":1,"b":{"a":1}}') == []


def test_unknown_definition_or_non_object() -> None:
    assert fieldcheck.unknown_fields({"a": 1}, "io.k8s.api.nope.v1.Nothing") == []
    assert fieldcheck.type_errors({"a": 1}, "io.k8s.api.nope.v1.Nothing") == []


# --------------------------------------------------------------------------- fast check

_FAST_DEFS = ["io.k8s.api.authentication.v1.TokenReview", "io.k8s.api.authentication.v1.TokenRequest",
              "io.k8s.api.authorization.v1.SubjectAccessReview", "io.k8s.api.core.v1.Pod",
              "io.k8s.api.core.v1.ConfigMap", "io.k8s.api.core.v1.Secret", "io.k8s.api.rbac.v1.ClusterRole"]


def _count_keys(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                     st.sampled_from(["1Gi", "2024-01-01T00:00:00Z", "aGk="]))


def _shaped(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that fit a schema node, each leaf now and then of a wrong type and each object now and then
    with an unknown field: documents on both sides of the line the fast check draws."""
    ref = node.get("$ref", "")
    name = ref[len("#/definitions/"):] if ref.startswith("#/definitions/") else None
    s = (schema.get(name) or {}) if name else node
    good: st.SearchStrategy[Any]
    if name and name.endswith(("IntOrString", "Quantity", "Time", "MicroTime")):
        good = st.sampled_from(["1", "1Gi", "2024-01-01T00:00:00Z", 3, 2**40, 1.5])
    elif "properties" in s and depth < 4:
        props = {k: _shaped(v, depth + 1) for k, v in s["properties"].items()}
        fitting = st.fixed_dictionaries({}, optional=props)
        good = st.one_of(fitting, fitting, fitting, fitting, fitting, fitting,
                         fitting.map(lambda d: {**d, "zUnknown": 1}))
    elif s.get("type") == "array" and isinstance(s.get("items"), dict) and depth < 4:
        good = st.lists(_shaped(s["items"], depth + 1), max_size=2)
    elif isinstance(s.get("additionalProperties"), dict) and depth < 4:
        good = st.dictionaries(st.text(max_size=3), _shaped(s["additionalProperties"], depth + 1), max_size=2)
    elif s.get("type") == "string":
        good = st.text(max_size=6) if s.get("format") != "byte" else st.sampled_from(["aGk=", "!!"])
    elif s.get("type") == "integer":
        good = st.integers(-(2**33), 2**33)
    elif s.get("type") == "boolean":
        good = st.booleans()
    elif s.get("type") == "number":
        good = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-5, 5)
    else:
        good = _SCALARS
    return st.one_of(*[good] * 12, _SCALARS)


@pytest.mark.parametrize("definition", _FAST_DEFS)
@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data())
def test_the_fast_check_never_passes_what_the_walks_refuse(definition: str, data: st.DataObject) -> None:
    doc = data.draw(_shaped({"$ref": "#/definitions/" + definition}))
    if not isinstance(doc, dict):
        return
    n = fieldcheck.fitting_keys(doc, definition)
    if n >= 0:
        assert fieldcheck.type_errors(doc, definition) == []
        assert fieldcheck.unknown_fields(doc, definition) == []
        assert n == _count_keys(doc)


def test_the_fast_check_passes_a_plain_token_review() -> None:
    doc = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
           "spec": {"token": "t", "audiences": ["a", "b"]}}
    assert fieldcheck.fitting_keys(doc, "io.k8s.api.authentication.v1.TokenReview") == 5
    doc["spec"]["token"] = 1
    assert fieldcheck.fitting_keys(doc, "io.k8s.api.authentication.v1.TokenReview") == -1


def test_without_a_definition_every_field_fits_and_duplicates_still_show() -> None:
    doc = {"apiVersion": "g/v1", "kind": "Gadget", "metadata": {"name": "a"},
           "spec": {"f0": 1, "tags": ["x", {"k": 1}], "deep": {"a": {"b": None}}}}
    assert fieldcheck.fitting_keys(doc, "io.k8s.api.nope.v1.Nothing") == _count_keys(doc) == 11
    raw = b'{"apiVersion":"g/v1","kind":"Gadget","metadata":{"name":"a"},"spec":{"f0":1,"f0":2}}'
    keys = fieldcheck.fitting_keys(json.loads(raw), "io.k8s.api.nope.v1.Nothing")
    assert fieldcheck.find_duplicate_fields(raw, keys) == ["spec.f0"]
    clean = json.dumps(doc).encode()
    assert fieldcheck.find_duplicate_fields(clean, fieldcheck.fitting_keys(doc, "io.k8s.api.nope.v1.Nothing")) == []
    deep: Any = {}
    for _ in range(200):
        deep = {"a": deep}
    assert fieldcheck.fitting_keys(deep, "io.k8s.api.nope.v1.Nothing") == -1
