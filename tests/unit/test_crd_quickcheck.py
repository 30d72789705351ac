"""The quick validity check agrees with the worded validator: it never passes an object the validator faults,
and on the keywords it models it passes every object the validator accepts."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesat import limits
from kubesat.apimachinery import structural
from kubesat.apimachinery.crdschema import defaults as _defaults
from kubesat.apimachinery.crdschema import quickcheck
from kubesat.apimachinery.crdschema.bounds import Budget
from kubesat.apimachinery.crdschema.validate import schema_errors

_KEYWORDS = ["type", "format", "nullable", "enum", "maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum",
             "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf", "maxProperties",
             "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not", "properties",
             "additionalProperties", "x-kubernetes-int-or-string", "x-kubernetes-list-type"]
_TYPES = st.sampled_from(["object", "array", "string", "integer", "number", "boolean", "null", "", "bogus"])
# Any JSON value, and any schema: keywords with values of any type (as the fuzz test of the engine draws them).
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False, width=32),
              st.sampled_from(["", "a", "ab", "1", "(?=x)", "^[a-z]+$", "a**", "map", "set", "date", "2024-01-02"])),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.sampled_from("abkn"), kids, max_size=3)),
    max_leaves=8)


def _schema(kids: Any) -> Any:
    value = st.one_of(_json, kids, st.lists(kids, max_size=2),
                      st.dictionaries(st.sampled_from("abkn"), kids, max_size=3),
                      _TYPES, st.lists(st.sampled_from("abk"), max_size=3))
    return st.dictionaries(st.sampled_from(_KEYWORDS), value, max_size=6)


_schemas = st.recursive(st.dictionaries(st.sampled_from(["type"]), _TYPES, max_size=1), _schema, max_leaves=10)


def _errors(schema: dict[str, Any], obj: Any) -> list[Any]:
    return schema_errors(schema, obj, "", Budget())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_schemas, obj=_json)
def test_never_passes_what_the_validator_faults(schema: dict[str, Any], obj: Any) -> None:
    if quickcheck.passes(schema, obj):
        assert _errors(schema, obj) == []


# Schemas of only the keywords the check models, and values that often fit them.
_words = st.sampled_from(["", "a", "ab", "abc", "b", "x-1", "Z"])
_plain = st.recursive(
    st.one_of(st.booleans(), st.integers(-3, 3), _words),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.sampled_from("abk"), kids, max_size=3)),
    max_leaves=8)


def _modelled(kids: Any) -> Any:
    bound = st.one_of(st.integers(-3, 3), st.sampled_from([-1.5, 0.5, 2.0]))
    count = st.integers(0, 3)
    return st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["object", "array", "string", "integer", "number", "boolean"]),
        "x-kubernetes-int-or-string": st.just(True),
        "minimum": bound, "maximum": bound, "exclusiveMinimum": st.booleans(), "exclusiveMaximum": st.booleans(),
        "maxLength": count, "minLength": count, "pattern": st.sampled_from(["^a", "b$", "^[a-z]+$", "x-"]),
        "enum": st.lists(_words, min_size=1, max_size=3),
        "maxItems": count, "minItems": count, "maxProperties": count, "minProperties": count,
        "items": kids, "properties": st.dictionaries(st.sampled_from("abk"), kids, max_size=3),
        "additionalProperties": st.one_of(st.booleans(), kids),
        "required": st.lists(st.sampled_from("abk"), max_size=2), "description": st.just("d"),
    })


_modelled_schemas = st.recursive(st.fixed_dictionaries({"type": st.sampled_from(["string", "integer"])}),
                                 _modelled, max_leaves=8)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_modelled_schemas, obj=_plain)
def test_agrees_with_the_validator_on_the_modelled_keywords(schema: dict[str, Any], obj: Any) -> None:
    assert quickcheck.passes(schema, obj) == (_errors(schema, obj) == [])


def test_a_typical_custom_resource_takes_the_quick_path() -> None:
    props: dict[str, Any] = {f"f{i}": {"type": "integer", "minimum": 0, "maximum": 100} for i in range(20)}
    props["mode"] = {"type": "string", "enum": ["a", "b"]}
    props["tags"] = {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 5}}
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": props,
                                                        "required": ["mode"]}}}
    spec: dict[str, Any] = {f"f{i}": i for i in range(20)}
    spec.update(mode="a", tags=["x", "y"])
    assert quickcheck.passes(schema, {"spec": spec})
    assert not quickcheck.has_embedded(schema) and not quickcheck.has_list_types(schema)
    spec["f3"] = 101
    assert not quickcheck.passes(schema, {"spec": spec})
    assert [e.text() for e in structural.validate(schema, {"spec": spec})] == \
        ["spec.f3: Invalid value: 101: spec.f3 in body should be less than or equal to 100"]


def test_formats_of_strings() -> None:
    schema = {"type": "string", "format": "date"}
    assert quickcheck.passes(schema, "2024-01-02") and _errors(schema, "2024-01-02") == []
    assert not quickcheck.passes(schema, "2024-13-02") and _errors(schema, "2024-13-02")
    assert not quickcheck.passes({"format": "date"}, "2024-01-02")  # no type: left to the validator


def test_keywords_it_does_not_model_are_left_to_the_validator() -> None:
    for extra in ({"multipleOf": 2}, {"anyOf": [{"minimum": 0}]}, {"not": {"maximum": -1}},
                  {"enum": [1, 2]}, {"uniqueItems": True}):
        assert not quickcheck.passes({"type": "integer", **extra}, 4)
    assert not quickcheck.passes({"type": "integer"}, None)
    assert not quickcheck.passes({"type": "integer"}, 4.0)  # an integral float: the validator decides


def test_embedded_resources_set_lists_and_defaults_are_noticed() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {
        "type": "object", "x-kubernetes-embedded-resource": True}}}}
    assert quickcheck.has_embedded(schema) and not quickcheck.has_list_types(schema)
    assert not quickcheck.has_defaults(schema)
    schema = {"type": "object", "additionalProperties": {"type": "array", "x-kubernetes-list-type": "set"}}
    assert quickcheck.has_list_types(schema) and not quickcheck.has_embedded(schema)
    schema = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string",
                                                                                    "default": "x"}}}
    assert quickcheck.has_defaults(schema)
    obj = {"a": [None, "y"]}
    structural.apply_defaults(schema, obj)
    assert obj == {"a": ["x", "y"]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_schemas, obj=_json)
def test_defaulting_skipped_only_where_it_changes_nothing(schema: dict[str, Any], obj: Any) -> None:
    if quickcheck.has_defaults(schema):
        return
    before = copy.deepcopy(obj)
    _defaults.default(obj, schema, Budget())
    assert obj == before


def test_past_the_step_budget_it_does_not_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in "abcdef"}}
    obj = dict.fromkeys("abcdef", 1)
    assert quickcheck.passes(schema, obj)
    monkeypatch.setattr(limits, "MAX_SCHEMA_STEPS", 5)
    assert not quickcheck.passes(schema, obj)
