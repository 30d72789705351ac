"""The structural-schema engine for custom resources: CR validation, pruning and defaulting, worded as Kubernetes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesat.apimachinery import structural
from kubesat.apimachinery.crdschema.bounds import Budget, TooMuchWork
from kubesat.apimachinery.crdschema.gofmt import go_float
from kubesat.apimachinery.crdschema.prune import drop_nulls, prune_paths


def texts(schema: dict[str, Any], obj: Any, path: str = "") -> list[str]:
    return [e.text() for e in structural.validate(schema, obj, path)]


def obj_schema(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


# ----------------------------------------------------------------------------- validate: cases from Kubernetes

INT_OR_STRING_ANYOF = obj_schema(field={"nullable": True, "x-kubernetes-int-or-string": True,
                                        "anyOf": [{"type": "integer"}, {"type": "string"}]})


@pytest.mark.parametrize("value,seen", [(True, "boolean"), (1.2, "number"), ({}, "object"), ([], "array")])
def test_int_or_string_with_any_of(value: Any, seen: str) -> None:
    assert sorted(texts(INT_OR_STRING_ANYOF, {"field": value})) == sorted([
        '<nil>: Invalid value: "": "field" must validate at least one schema (anyOf)',
        f'field: Invalid value: "{seen}": field in body must be of type integer,string: "{seen}"',
        f'field: Invalid value: "{seen}": field in body must be of type integer: "{seen}"',
    ])


@pytest.mark.parametrize("value", [None, 42, "foo"])
def test_int_or_string_accepts(value: Any) -> None:
    assert texts(INT_OR_STRING_ANYOF, {"field": value}) == []
    assert texts(INT_OR_STRING_ANYOF, {}) == []


def test_int_or_string_with_all_of_any_of() -> None:
    schema = obj_schema(field={"nullable": True, "x-kubernetes-int-or-string": True,
                               "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}]})
    assert sorted(texts(schema, {"field": True})) == sorted([
        '<nil>: Invalid value: "": "field" must validate all the schemas (allOf). None validated',
        '<nil>: Invalid value: "": "field" must validate at least one schema (anyOf)',
        'field: Invalid value: "boolean": field in body must be of type integer,string: "boolean"',
        'field: Invalid value: "boolean": field in body must be of type integer: "boolean"',
    ])


@pytest.mark.parametrize("value,seen", [("foo", "string"), (42, "integer"), (True, "boolean"), (1.2, "number"),
                                        ([], "array"), (None, "null")])
def test_type_errors_name_the_json_type(value: Any, seen: str) -> None:
    schema = obj_schema(field={"type": "object"})
    assert texts(schema, {"field": value}) == [
        f'field: Invalid value: "{seen}": field in body must be of type object: "{seen}"']


def test_invalid_pattern_is_reported_on_the_value() -> None:
    schema = obj_schema(field={"type": "string", "pattern": "+"})
    assert texts(schema, {"field": "foo"}) == [
        "field: Invalid value: \"foo\": field in body should match '+, but pattern is invalid: error parsing regexp: "
        "missing argument to repetition operator: `+`'"]


def test_required() -> None:
    schema = {"type": "object", "required": ["field"], "properties": {
        "field": {"type": "object", "required": ["nested"], "properties": {"nested": {}}}}}
    assert texts(schema, {"test": "a"}) == ["field: Required value"]
    assert texts(schema, {"field": {}}) == ["field.nested: Required value"]


def test_enum_with_wrong_types() -> None:
    schema = obj_schema(field={"type": "object", "required": ["nestedint", "nestedstring"], "properties": {
        "nestedint": {"type": "integer", "enum": [1, 2]}, "nestedstring": {"type": "string", "enum": ["a", "b"]}}})
    assert texts(schema, {"field": {}}) == ["field.nestedint: Required value", "field.nestedstring: Required value"]
    assert sorted(texts(schema, {"field": {"nestedint": "x", "nestedstring": True}})) == sorted([
        'field.nestedint: Invalid value: "string": field.nestedint in body must be of type integer: "string"',
        'field.nestedint: Unsupported value: "x": supported values: "1", "2"',
        'field.nestedstring: Invalid value: "boolean": field.nestedstring in body must be of type string: "boolean"',
        'field.nestedstring: Unsupported value: true: supported values: "a", "b"',
    ])


def test_max_properties_max_items_max_length() -> None:
    assert texts(obj_schema(fieldX={"type": "object", "maxProperties": 2, "additionalProperties": {"type": "boolean"}}),
                 {"fieldX": {"a": True, "b": True, "c": True}}) == ["fieldX: Too many: 3: must have at most 2 items"]
    assert texts(obj_schema(fieldX={"type": "array", "maxItems": 2, "items": {"type": "string"}}),
                 {"fieldX": ["a", "b", "c"]}) == ["fieldX: Too many: 3: must have at most 2 items"]
    assert texts(obj_schema(fieldX={"type": "string", "maxLength": 2}), {"fieldX": "abc"}) == [
        "fieldX: Too long: may not be more than 2 bytes"]


def test_too_many_cause_reason() -> None:
    schema = obj_schema(x={"type": "array", "maxItems": 1, "items": {"type": "integer"}})
    errs = structural.validate(schema, {"x": [1, 2]})
    assert errs[0].cause() == {"reason": "FieldValueTooMany", "message": "Too many: 2: must have at most 1 items",
                               "field": "x"}


# ----------------------------------------------------------------------------- validate: the other keywords

SPEC = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
    "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
    "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "exclusiveMaximum": True, "maximum": 1.5},
    "step": {"type": "integer", "multipleOf": 5},
    "weight": {"type": "number", "multipleOf": 0.5},
    "color": {"type": "string", "enum": ["red", "blue"]},
    "name": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$"},
    "when": {"type": "string", "format": "date-time"},
    "id": {"type": "string", "format": "uuid"},
    "size": {"type": "string", "format": "int32"},
    "list": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name"],
                                                        "properties": {"name": {"type": "string"}}}},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
    "opt": {"type": "string", "nullable": True},
    "port": {"x-kubernetes-int-or-string": True},
    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}}}}


@pytest.mark.parametrize("spec,want", [
    ({"replicas": 0}, "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"),
    ({"replicas": 11}, "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
    ({"ratio": 0}, "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"),
    ({"ratio": 1.5}, "spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than 1.5"),
    ({"step": 7}, "spec.step: Invalid value: 7: spec.step in body should be a multiple of 5"),
    ({"weight": 0.3}, "spec.weight: Invalid value: 0.3: spec.weight in body should be a multiple of 0.5"),
    ({"color": "green"}, 'spec.color: Unsupported value: "green": supported values: "red", "blue"'),
    ({"name": "a"}, 'spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long'),
    ({"name": "AB"}, "spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"),
    ({"when": "yesterday"},
     'spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"'),
    ({"id": "x"}, 'spec.id: Invalid value: "x": spec.id in body must be of type uuid: "x"'),
    ({"list": []}, "spec.list: Invalid value: 0: spec.list in body should have at least 1 items"),
    ({"list": [{}]}, "spec.list[0].name: Required value"),
    ({"list": [{"name": 1}]},
     'spec.list[0].name: Invalid value: "integer": spec.list[0].name in body must be of type string: "integer"'),
    ({"labels": {}}, "spec.labels: Invalid value: 0: spec.labels in body should have at least 1 properties"),
    ({"labels": {"a.b/c": 1}},
     'spec.labels.a.b/c: Invalid value: "integer": spec.labels.a.b/c in body must be of type string: "integer"'),
    ({"port": 1.5}, 'spec.port: Invalid value: "number": spec.port in body must be of type integer,string: "number"'),
    ({"replicas": None},
     'spec.replicas: Invalid value: "null": spec.replicas in body must be of type integer: "null"'),
])
def test_keyword_messages(spec: dict[str, Any], want: str) -> None:
    assert texts(SPEC, {"spec": spec}) == [want]


@pytest.mark.parametrize("spec", [
    {"replicas": 1}, {"replicas": 10}, {"replicas": 3.0}, {"ratio": 0.5}, {"step": -10}, {"weight": 1.5},
    {"name": "ab"}, {"when": "2024-01-02T03:04:05Z"}, {"id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
    {"size": "not-checked"}, {"opt": None}, {"port": 8080}, {"port": "http"}, {"free": {"any": {"thing": 1}}},
    {"labels": {"a": "b"}},
])
def test_valid_values(spec: dict[str, Any]) -> None:
    assert texts(SPEC, {"spec": spec}) == []


def test_paths_are_prefixed_and_root_errors_use_the_prefix() -> None:
    assert texts(obj_schema(a={"type": "integer"}), {"a": "x"}, path="status") == [
        'status.a: Invalid value: "string": a in body must be of type integer: "string"']


def test_enum_of_numbers_accepts_a_float_of_the_same_value() -> None:
    schema = obj_schema(n={"type": "number", "enum": [1, 2.5, 3.0, {"a": 1}]})
    assert texts(schema, {"n": 1.0}) == []
    assert texts(schema, {"n": 4}) == ['n: Unsupported value: 4: supported values: "1", "2.5", "3", "{\\"a\\":1}"']


def test_one_of_and_not() -> None:
    schema = obj_schema(v={"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}], "not": {"enum": [99]}})
    assert texts(schema, {"v": 5}) == [
        '<nil>: Invalid value: "": "v" must validate one and only one schema (oneOf). Found 2 valid alternatives']
    assert texts(schema, {"v": 99}) == ['<nil>: Invalid value: "": "v" must not validate the schema (not)']


def test_additional_properties_false_forbids_keys() -> None:
    schema = obj_schema(m={"type": "object", "additionalProperties": False})
    assert texts(schema, {"m": {"x": 1}}) == ['m: Invalid value: "x": m.x in body is a forbidden property']


# ----------------------------------------------------------------------------- list types and embedded resources

def test_list_set_duplicates() -> None:
    schema = obj_schema(s={"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}})
    assert texts(schema, {"s": ["a", "b", "a", "a"]}) == ['s[2]: Duplicate value: "a"']


def test_list_map_duplicate_keys() -> None:
    schema = obj_schema(m={"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
                           "items": {"type": "object", "required": ["k"], "properties": {
                               "k": {"type": "string"}, "v": {"type": "integer"}}}})
    assert texts(schema, {"m": [{"k": "a", "v": 1}, {"k": "a", "v": 2}]}) == [
        'm[1]: Duplicate value: map[string]interface {}{"k":"a"}']


def test_list_map_in_additional_properties_uses_key_paths() -> None:
    inner = {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}}
    schema = obj_schema(m={"type": "object", "additionalProperties": inner})
    assert texts(schema, {"m": {"x": [1, 1]}}) == ["m[x][1]: Duplicate value: 1"]


def test_embedded_resource_needs_api_version_and_kind() -> None:
    schema = obj_schema(template={"type": "object", "x-kubernetes-embedded-resource": True,
                                  "x-kubernetes-preserve-unknown-fields": True})
    assert texts(schema, {"template": {}}) == [
        "template.apiVersion: Required value: must not be empty", "template.kind: Required value: must not be empty"]
    assert texts(schema, {"template": {"apiVersion": "a/b/c", "kind": "My_Kind"}}) == [
        'template.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c',
        'template.kind: Invalid value: "My_Kind": may have mixed case, but should otherwise match: a DNS-1035 label '
        "must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with "
        "an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
        "'[a-z]([-a-z0-9]*[a-z0-9])?')"]


def test_embedded_metadata_goes_to_the_callers_validator() -> None:
    schema = obj_schema(template={"type": "object", "x-kubernetes-embedded-resource": True,
                                  "x-kubernetes-preserve-unknown-fields": True})
    seen: list[tuple[dict[str, Any], str]] = []

    def meta(m: dict[str, Any], path: str) -> list[Any]:
        seen.append((m, path))
        return []

    structural.validate(schema, {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}},
                        embedded_meta=meta)
    assert seen == [({"name": "x"}, "template.metadata")]


# ----------------------------------------------------------------------------- pruning

PRUNE = {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {
        "a": {"type": "string"},
        "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"y": {"type": "string"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                 "properties": {"known": {"type": "object", "properties": {"z": {"type": "string"}}}}},
        "embedded": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {
            "spec": {"type": "object"}}},
        "anymap": {"type": "object", "additionalProperties": True},
    }}}}


def test_prune_removes_unknown_fields_and_lists_their_paths() -> None:
    obj = {"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "n", "rootmeta": "is the caller's"}, "extra": 1,
           "spec": {"a": "x", "b": 1, "list": [{"x": 1, "q": 2}], "map": {"k": {"y": "1", "w": 2}},
                    "free": {"anything": {"deep": 1}, "known": {"z": "1", "zz": 2}},
                    "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "colour": 1}, "junk": 1,
                                 "spec": {"x": 1}},
                    "anymap": {"k": "scalar stays", "o": {"inner": "goes"}}}}
    removed = structural.prune(PRUNE, obj)
    assert removed == ["extra", "spec.anymap.o.inner", "spec.b", "spec.embedded.junk", "spec.embedded.metadata.colour",
                       "spec.embedded.spec.x", "spec.free.known.zz", "spec.list[0].q", "spec.map.k.w"]
    assert obj == {"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "n", "rootmeta": "is the caller's"},
                   "spec": {"a": "x", "list": [{"x": 1}], "map": {"k": {"y": "1"}},
                            "free": {"anything": {"deep": 1}, "known": {"z": "1"}},
                            "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
                            "anymap": {"k": "scalar stays", "o": {}}}}


def test_warning_and_strict_texts() -> None:
    assert structural.unknown_field_warnings(["spec.foo"]) == ['unknown field "spec.foo"']
    assert structural.strict_unknown_fields_message("Foo", "v1", ["spec.a", "spec.b"]) == (
        'Foo in version "v1" cannot be handled as a Foo: strict decoding error: unknown field "spec.a", '
        'unknown field "spec.b"')


# ----------------------------------------------------------------------------- defaulting and nulls

DEFAULTS = {"type": "object", "properties": {"spec": {"type": "object", "default": {}, "properties": {
    "replicas": {"type": "integer", "default": 1},
    "mode": {"type": "string", "default": "auto"},
    "nullable": {"type": "string", "nullable": True, "default": "d"},
    "list": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "integer", "default": 7}}}},
    "map": {"type": "object", "additionalProperties": {"type": "string", "default": "v"}},
}}}}


def test_defaults_top_down() -> None:
    obj: dict[str, Any] = {}
    structural.apply_defaults(DEFAULTS, obj)
    assert obj == {"spec": {"replicas": 1, "mode": "auto", "nullable": "d"}}


def test_defaults_fill_nulls_only_where_not_nullable() -> None:
    obj = {"spec": {"mode": None, "nullable": None, "list": [{}, {"p": 1}], "map": {"a": None, "b": "x"}}}
    structural.apply_defaults(DEFAULTS, obj)
    assert obj == {"spec": {"replicas": 1, "mode": "auto", "nullable": None, "list": [{"p": 7}, {"p": 1}],
                            "map": {"a": "v", "b": "x"}}}


def test_defaults_are_copies() -> None:
    schema = obj_schema(a={"type": "object", "default": {"x": [1]}})
    one: dict[str, Any] = {}
    structural.apply_defaults(schema, one)
    one["a"]["x"].append(2)
    two: dict[str, Any] = {}
    structural.apply_defaults(schema, two)
    assert two == {"a": {"x": [1]}}


def test_drop_nulls() -> None:
    schema = obj_schema(a={"type": "string"}, b={"type": "string", "nullable": True},
                        c={"type": "string", "default": "x"})
    obj = {"a": None, "b": None, "c": None, "d": None}
    structural.drop_nulls(schema, obj)
    assert obj == {"b": None, "c": None, "d": None}


# ----------------------------------------------------------------------------- bounds

def _deep(levels: int) -> Any:
    deep: Any = "x"
    for _ in range(levels):
        deep = {"a": deep}
    return deep


def test_deep_objects_give_one_error_not_a_crash() -> None:
    deep = _deep(500)
    schema: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    recursive: dict[str, Any] = {"type": "object", "properties": {}}
    recursive["properties"]["a"] = recursive  # a schema that refers to itself
    assert len(structural.validate(recursive, deep)) == 1
    with pytest.raises(structural.TooMuchWork):
        structural.prune(recursive, _deep(500))
    assert structural.validate(schema, {"spec": 1}) == []


def test_go_float_formatting() -> None:
    assert [go_float(f) for f in (1.0, 0.5, 1e6, 123456.0, 1e-5, 2.5e21)] == [
        "1", "0.5", "1e+06", "123456", "1e-05", "2.5e+21"]


# ----------------------------------------------------------------------------- property: pruning is idempotent

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
_values = st.recursive(_scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                        st.dictionaries(st.sampled_from("abxyz"), kids, max_size=3)),
                       max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(spec=st.dictionaries(st.sampled_from(["a", "list", "map", "free", "anymap", "zz"]), _values, max_size=5))
def test_prune_is_idempotent_on_valid_objects(spec: dict[str, Any]) -> None:
    obj = {"apiVersion": "g/v1", "kind": "K", "metadata": {}, "spec": spec}
    structural.prune(PRUNE, obj)
    if structural.validate(PRUNE, obj):
        return
    once = copy.deepcopy(obj)
    assert structural.prune(PRUNE, obj) == []
    assert obj == once


def test_prune_nested_preserve_unknown_fields_as_kubernetes() -> None:
    """Kubernetes' own pruning case: preserve-unknown-fields keeps unknown keys, not unknown keys of known children."""
    obj_s: dict[str, Any] = {"type": "object"}
    keep = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    with_specified = {"type": "object", "properties": {"specified": obj_s}}
    schema = {**keep, "properties": {
        "alpha": {"type": "string"}, "beta": {"type": "number"},
        "pruning": {"type": "object", "properties": {"preserving": keep, "pruning": obj_s}},
        "preserving": {**keep, "properties": {"preserving": keep, "pruning": obj_s,
                                              "preservingUnknownType": {"x-kubernetes-preserve-unknown-fields": True}}},
        "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {**keep,
                                                                              "additionalProperties": with_specified},
        "preservingAdditionalPropertiesKeyPruneValues": {"type": "object", "additionalProperties": with_specified},
    }}
    unspecified = {"unspecified": "bar"}
    obj = {
        "unspecified": "bar", "alpha": "abc", "beta": 42.0, "unspecifiedObject": dict(unspecified),
        "pruning": {"unspecified": "bar", "unspecifiedObject": dict(unspecified), "pruning": dict(unspecified),
                    "apiVersion": "unknown", "preserving": dict(unspecified)},
        "preserving": {"unspecified": "bar", "unspecifiedObject": dict(unspecified), "pruning": dict(unspecified),
                       "preserving": dict(unspecified), "preservingUnknownType": [{"foo": True}, {"bar": True}]},
        "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {
            "foo": {"specified": dict(unspecified), "unspecified": "bar"}},
        "preservingAdditionalPropertiesKeyPruneValues": {"foo": {"specified": dict(unspecified), "unspecified": "bar"}},
    }
    assert structural.prune(schema, obj) == [
        "preserving.pruning.unspecified",
        "preservingAdditionalPropertiesKeyPruneValues.foo.specified.unspecified",
        "preservingAdditionalPropertiesKeyPruneValues.foo.unspecified",
        "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields.foo.specified.unspecified",
        "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields.foo.unspecified",
        "pruning.apiVersion", "pruning.pruning.unspecified", "pruning.unspecified", "pruning.unspecifiedObject"]
    assert obj == {
        "unspecified": "bar", "alpha": "abc", "beta": 42.0, "unspecifiedObject": unspecified,
        "pruning": {"pruning": {}, "preserving": unspecified},
        "preserving": {"unspecified": "bar", "unspecifiedObject": unspecified, "pruning": {},
                       "preserving": unspecified, "preservingUnknownType": [{"foo": True}, {"bar": True}]},
        "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {"foo": {"specified": {}}},
        "preservingAdditionalPropertiesKeyPruneValues": {"foo": {"specified": {}}},
    }


# ----------------------------------------------------------------------------- updates (validation ratcheting)

RATCHET = {"type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
    "size": {"type": "integer", "maximum": 5},
    "name": {"type": "string", "maxLength": 3},
    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string", "maxLength": 2}},
    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
              "items": {"type": "object", "required": ["name"], "properties": {
                  "name": {"type": "string"}, "port": {"type": "integer", "maximum": 100}}}},
}}}}


def update_texts(new: Any, old: Any) -> list[str]:
    return [e.text() for e in structural.validate_update(RATCHET, new, old)]


def test_unchanged_invalid_values_are_allowed_on_update() -> None:
    old = {"spec": {"size": 9, "name": "toolong"}}
    assert update_texts({"spec": {"size": 9, "name": "toolong"}}, old) == []
    assert update_texts({"spec": {"size": 9, "name": "long2"}}, old) == [
        "spec.name: Too long: may not be more than 3 bytes"]
    assert update_texts({"spec": {"size": 10, "name": "toolong"}}, old) == [
        "spec.size: Invalid value: 10: spec.size in body should be less than or equal to 5"]


def test_ratcheting_follows_map_list_keys_but_not_set_items() -> None:
    old = {"spec": {"size": 1, "ports": [{"name": "a", "port": 200}], "tags": ["long"]}}
    new = {"spec": {"size": 1, "ports": [{"name": "b", "port": 1}, {"name": "a", "port": 200}], "tags": ["long", "x"]}}
    assert update_texts(new, old) == ["spec.tags[0]: Too long: may not be more than 2 bytes"]


def test_a_changed_parent_keeps_its_own_errors() -> None:
    assert update_texts({"spec": {"name": "abc"}}, {"spec": {"name": "ab"}}) == ["spec.size: Required value"]


def test_list_duplicates_count_on_update_only_if_the_old_object_had_none() -> None:
    old = {"spec": {"size": 1, "tags": ["a", "a"]}}
    assert update_texts({"spec": {"size": 1, "tags": ["b", "b"]}}, old) == []
    assert update_texts({"spec": {"size": 1, "tags": ["b", "b"]}}, {"spec": {"size": 1}}) == [
        'spec.tags[1]: Duplicate value: "b"']


def test_defaults_cannot_multiply_without_bound() -> None:
    big = {"k": list(range(1000))}
    schema = obj_schema(items={"type": "array", "items": {"type": "object", "default": big}})
    with pytest.raises(structural.TooMuchWork):
        structural.apply_defaults(schema, {"items": [None] * 5000})
    small: dict[str, Any] = {"items": [None] * 10}
    structural.apply_defaults(schema, small)
    assert small["items"][9] == big


def test_prune_and_drop_nulls_charge_one_step_per_value() -> None:
    """Scalars are not walked into, but each still counts against the bound as one step."""
    from_schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        k: {"type": "integer"} for k in "abcd"}}}}
    obj = {"spec": {"a": 1, "b": 2, "c": None, "d": [1, 2]}}
    # root, spec, 4 values, 2 items; dropping the null does not walk it
    for walk, steps in ((lambda b: prune_paths(from_schema, copy.deepcopy(obj), b), 8),
                        (lambda b: drop_nulls(copy.deepcopy(obj), from_schema, b), 7)):
        walk(Budget(steps))
        with pytest.raises(TooMuchWork):
            walk(Budget(steps - 1))
