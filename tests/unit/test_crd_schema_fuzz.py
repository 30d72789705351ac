"""Hostile or malformed schemas and objects: the structural-schema engine answers with errors, never a crash."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesat.apimachinery import structural

_KEYWORDS = ["type", "format", "default", "nullable", "enum", "maximum", "minimum", "exclusiveMaximum",
             "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
             "multipleOf", "maxProperties", "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not",
             "properties", "additionalProperties", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
             "x-kubernetes-embedded-resource", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
             "x-kubernetes-map-type", "x-kubernetes-validations", "$ref", "id", "description", "title"]
_TYPES = st.sampled_from(["object", "array", "string", "integer", "number", "boolean", "null", "", "bogus"])
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False, width=32),
              st.sampled_from(["", "a", "ab", "1", "(?=x)", "^[a-z]+$", "a**", "map", "set", "atomic", "date-time"])),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.sampled_from("abkn"), kids, max_size=3)),
    max_leaves=8)


def _schema(kids: Any) -> Any:
    value = st.one_of(_json, kids, st.lists(kids, max_size=2),
                      st.dictionaries(st.sampled_from("abkn"), kids, max_size=3),
                      _TYPES, st.lists(st.sampled_from("abk"), max_size=3))
    return st.dictionaries(st.sampled_from(_KEYWORDS), value, max_size=6)


_schemas = st.recursive(st.dictionaries(st.sampled_from(["type"]), _TYPES, max_size=1), _schema, max_leaves=10)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_schemas, obj=_json)
def test_any_schema_and_object_give_errors_not_exceptions(schema: dict[str, Any], obj: Any) -> None:
    for e in structural.definition_errors(schema, "s"):
        assert e.text()
    root = {"type": "object", "properties": {"spec": schema}}
    structural.definition_errors(root, "s", status_enabled=True, old_schemas=[schema, root, None])
    doc = {"apiVersion": "g/v1", "kind": "K", "metadata": {}, "spec": copy.deepcopy(obj)}
    for e in structural.validate(root, doc) + structural.validate_update(root, doc, {"spec": obj}):
        assert e.text()
    structural.prune(root, doc)
    structural.drop_nulls(root, doc)
    structural.apply_defaults(root, doc)
