"""CRD-time checks of a version's openAPIV3Schema, with apiextensions-apiserver's exact messages."""

from __future__ import annotations

from typing import Any

import pytest

from kubesat.apimachinery import structural
from kubesat.apimachinery.crdschema import re2vm, regex

P = "spec.versions[0].schema.openAPIV3Schema"


def texts(schema: dict[str, Any], status: bool = False) -> list[str]:
    return [e.text() for e in structural.definition_errors(schema, P, status_enabled=status)]


def obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def test_a_good_schema_has_no_errors() -> None:
    schema = obj(spec=obj(replicas={"type": "integer", "default": 1, "minimum": 0},
                          ports={"type": "array", "x-kubernetes-list-type": "map",
                                 "x-kubernetes-list-map-keys": ["name"],
                                 "items": obj(name={"type": "string"}, port={"type": "integer"}) | {
                                     "required": ["name"]}},
                          port={"x-kubernetes-int-or-string": True,
                                "anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": "^[a-z]+$"},
                          free={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                          template={"type": "object", "x-kubernetes-embedded-resource": True,
                                    "x-kubernetes-preserve-unknown-fields": True}),
                 metadata=obj(name={"type": "string", "maxLength": 20}))
    assert texts(schema) == []


@pytest.mark.parametrize("schema,want", [
    ({"type": "object", "properties": {"a": {}}},
     [f"{P}.properties[a].type: Required value: must not be empty for specified object fields"]),
    ({"type": "object", "properties": {"a": {"type": "array", "items": {}}}},
     [f"{P}.properties[a].items.type: Required value: must not be empty for specified array items"]),
    ({"properties": {"a": {"type": "string"}}}, [f"{P}.type: Required value: must not be empty at the root"]),
    ({"type": "string"}, [f'{P}.type: Invalid value: "string": must be object at the root']),
    (obj(a={"type": "array"}), [f"{P}.properties[a].items: Required value: must be specified"]),
    ({"type": "object", "additionalProperties": {"type": "string"}},
     [f"{P}.additionalProperties: Forbidden: must not be used at the root"]),
    (obj(kind={"type": "integer"}), [f'{P}.properties[kind].type: Invalid value: "integer": must be string']),
    (obj(metadata=obj(labels={"type": "object"})),
     [f"{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but "
      "metadata is implicitly specified"]),
    (obj(e={"type": "object", "x-kubernetes-embedded-resource": True}),
     [f"{P}.properties[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true "
      "without x-kubernetes-preserve-unknown-fields"]),
    (obj(e={"x-kubernetes-int-or-string": True, "x-kubernetes-preserve-unknown-fields": True}),
     [f"{P}.properties[e].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if "
      "x-kubernetes-int-or-string is true"]),
    (obj(a={"type": "string", "anyOf": [{"type": "string"}]}),
     [f"{P}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"]),
    (obj(a={"type": "string", "allOf": [{"description": "x", "nullable": True}]}),
     [f"{P}.properties[a].allOf[0].description: Forbidden: must be empty to be structural",
      f"{P}.properties[a].allOf[0].nullable: Forbidden: must be false to be structural"]),
    (obj(a={"type": "object", "anyOf": [{"properties": {"b": {"minimum": 1}}}]}),
     []),
    ({"type": "object", "anyOf": [{"properties": {"b": {"minimum": 1}}}]},
     [f"{P}.properties[b]: Required value: because it is defined in {P}.anyOf[0].properties[b]"]),
    (obj(a={"type": "string", "pattern": "(?!x)"}),
     [f'{P}.properties[a].pattern: Invalid value: "(?!x)": must be a valid regular expression, but isn\'t: error '
      "parsing regexp: invalid or unsupported Perl syntax: `(?!`"]),
])
def test_structural_rules(schema: dict[str, Any], want: list[str]) -> None:
    assert texts(schema) == want


@pytest.mark.parametrize("schema,want", [
    (obj(a={"type": "array", "uniqueItems": True, "items": {"type": "string"}}),
     [f"{P}.properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity "
      "becomes quadratic"]),
    (obj(a={"type": "object", "properties": {"b": {"type": "string"}}, "additionalProperties": {"type": "string"}}),
     [f"{P}.properties[a].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"]),
    (obj(a={"type": "string", "$ref": "#/x"}), [f"{P}.properties[a].$ref: Forbidden: $ref is not supported"]),
    (obj(a={"type": "object", "patternProperties": {"x": {"type": "string"}}}),
     [f"{P}.properties[a].patternProperties: Forbidden: patternProperties is not supported"]),
    (obj(a={"type": "object", "dependencies": {}}), [f"{P}.properties[a].dependencies: Forbidden: dependencies is "
                                                     "not supported"]),
    (obj(a={"type": "object", "definitions": {}}), []),
    (obj(a={"type": "array", "items": [{"type": "string"}]}),
     [f"{P}.properties[a].items: Forbidden: items must be a schema object and not an array"]),
    (obj(a={"type": "null"}),
     [f'{P}.properties[a].type: Unsupported value: "null": supported values: "array", "boolean", "integer", '
      '"number", "object", "string"',
      f"{P}.properties[a].type: Forbidden: type cannot be set to null, use nullable as an alternative"]),
    (obj(a={"type": "string", "x-kubernetes-preserve-unknown-fields": False}),
     [f"{P}.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"]),
    (obj(a={"type": "string", "x-kubernetes-list-type": "set"}),
     [f'{P}.properties[a].type: Invalid value: "string": must be array if x-kubernetes-list-type is specified']),
    (obj(a={"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}),
     [f'{P}.properties[a].x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", '
      '"map"']),
    (obj(a={"type": "array", "x-kubernetes-list-type": "map", "items": obj(k={"type": "string"})}),
     [f"{P}.properties[a].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type "
      "is map"]),
    (obj(a={"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
            "items": obj(k={"type": "string"})}),
     [f"{P}.properties[a].items.properties[k].default: Required value: this property is in "
      "x-kubernetes-list-map-keys, so it must have a default or be a required property"]),
    (obj(a={"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["z"],
            "items": obj(k={"type": "string"})}),
     [f'{P}.properties[a].x-kubernetes-list-map-keys: Invalid value: []string{{"z"}}: entries must all be names of '
      "item properties"]),
    (obj(a={"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object"}}),
     [f"{P}.properties[a].items.x-kubernetes-map-type: Invalid value: null: must be atomic as item of a list with "
      "x-kubernetes-list-type=set"]),
    (obj(a={"type": "string", "x-kubernetes-validations": [{"rule": " "}]}),
     [f"{P}.properties[a].x-kubernetes-validations[0].rule: Required value: rule is not specified"]),
    (obj(metadata={"type": "object", "default": {}}),
     [f"{P}.properties[metadata].default: Forbidden: must not be set in top-level metadata"]),
])
def test_keyword_rules(schema: dict[str, Any], want: list[str]) -> None:
    assert texts(schema) == want


def test_root_nullable_and_status() -> None:
    assert texts({"type": "object", "nullable": True}) == [
        f"{P}.nullable: Forbidden: nullable cannot be true at the root"]
    assert texts({"type": "object", "properties": {}, "additionalProperties": False}, status=True)[0].startswith(
        f"{P}: Invalid value: apiextensions.JSONSchemaProps{{...}}: only [Description Type Format")


def test_defaults_must_validate_and_be_pruned() -> None:
    schema = obj(spec=obj(n={"type": "integer", "default": "x"},
                          o={"type": "object", "properties": {"a": {"type": "string"}}, "default": {"b": 1}},
                          m={"type": "integer", "default": 3, "maximum": 2}))
    assert texts(schema) == [
        f'{P}.properties[spec].properties[m].default: Invalid value: 3:  in body should be less than or equal to 2',
        f'{P}.properties[spec].properties[n].default: Invalid value: "string":  in body must be of type integer: '
        '"string"',
        f'{P}.properties[spec].properties[o].default: Invalid value: map[string]interface {{}}{{"b":1}}: must not have '
        "unknown fields",
    ]


def test_defaults_are_not_checked_when_the_schema_is_not_structural() -> None:
    schema = obj(spec=obj(n={"type": "integer", "default": "x"}, a={"type": "array"}))
    assert texts(schema) == [f"{P}.properties[spec].properties[a].items: Required value: must be specified"]


def test_schema_keyword_fails_structural_conversion_only_when_alone() -> None:
    assert texts({"type": "object", "$schema": "x"}) == [
        f"{P}: Invalid value: \"\": OpenAPIV3Schema 'schema' is not supported"]


def test_hostile_schema_is_bounded() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(300):
        deep = {"type": "object", "properties": {"a": deep}}
    assert len(texts(deep)) == 1


@pytest.mark.parametrize("pattern,error", [
    ("(?=a)", "invalid or unsupported Perl syntax: `(?=`"),
    ("(?<!a)", "invalid named capture: `(?<!a)`"),
    (r"(a)\1", r"invalid escape sequence: `\1`"),
    ("a**", "invalid nested repetition operator: `**`"),
    ("a{1001}", "invalid repeat count: `{1001}`"),
    ("[z-a]", "invalid character class range: `z-a`"),
    ("(a", "missing closing ): `(a`"),
    ("a)", "unexpected ): `a)`"),
    ("[a", "missing closing ]: `[a`"),
    ("a\\", "trailing backslash at end of expression: ``"),
    (r"\Z", r"invalid escape sequence: `\Z`"),
])
def test_go_regexp_errors(pattern: str, error: str) -> None:
    with pytest.raises(regex.RegexError) as e:
        regex.check(pattern)
    assert str(e.value) == f"error parsing regexp: {error}"


@pytest.mark.parametrize("pattern,text,matches", [
    ("^[a-z]+$", "abc", True), ("^[a-z]+$", "abc\n", False), ("a(?i)b", "aB", True), ("a(?i)b", "AB", False),
    ("a{,2}", "a{,2}", True), (r"\d+", "x٣", False), (r"\pL", "é", True), ("[[:digit:]]x", "1x", True),
    (r"\Qa.b\E", "axb", False), (r"\x{41}", "A", True), ("(?s)a.b", "a\nb", True), ("a.b", "a\nb", False),
    ("^(?P<n>x)|(?<m>y)$", "y", True), (r"^[\s\S]*$", "a\nb", True), (r"^[\D]+$", "a1", False),
    (r"^[^\W_]+$", "ab1", True), (r"^[^\W_]+$", "a_b", False), ("^[[:^alpha:]]+$", "1a", False),
    (r"^[\P{L}]+$", "12", True), (r"^[\P{L}]+$", "é", False), (r"^\w+$", "é", False), (r"^\s$", "\v", False),
])
def test_patterns_match_as_re2(pattern: str, text: str, matches: bool) -> None:
    assert bool(regex.translate(pattern).search(text)) is matches


@pytest.mark.parametrize("pattern,text", [
    ("^(a+)+$", "a" * 5000 + "b"), ("^(a|aa)*$", "a" * 5000 + "b"), ("^(a*)*b$", "a" * 5000),
    ("^a*a*a*a*a*a*c$", "a" * 5000), (r"^(\w+\s?)*$", "word " * 2000 + "!"),
], ids=["nested-plus", "alternation-star", "nested-star", "many-stars", "words"])
def test_patterns_that_backtrack_exponentially_in_python_run_in_linear_time(pattern: str, text: str) -> None:
    matcher = regex.translate(pattern)
    assert matcher.risky
    assert matcher.search(text) is False
    assert matcher.nfa is not None


def test_long_texts_are_searched_in_linear_time() -> None:
    matcher = regex.translate("x.*y")
    assert not matcher.risky
    assert matcher.search("x" * 200_000) is False
    assert matcher.search("x" * 200_000 + "y") is True
    assert matcher.nfa is not None


@pytest.mark.parametrize("pattern,text,matches", [
    ("^(a+)+$", "aaa", True), ("^(ab|a)*c$", "ababac", True), ("^(ab|a)*c$", "ababbc", False),
    ("(?i)^(A|b)+$", "aBab", True), (r"^\b(x+)+\b$", "xxx", True), ("^(a{2,3})+$", "aaaaa", True),
    ("^(a{2,3})+$", "a", False), ("(?m)^(b+)+$", "a\nbb\nc", True), ("^([^a]+)+$", "bcd", True),
    ("^([^a]+)+$", "bad", False),
])
def test_the_linear_matcher_agrees_with_re2(pattern: str, text: str, matches: bool) -> None:
    matcher = regex.translate(pattern)
    assert matcher.search(text) is matches
    assert re2vm.Program(matcher.rx.pattern).search(text) is matches


@pytest.mark.parametrize("schema", [
    obj(a={"type": "bogus"}),
    obj(a={"type": "object", "properties": {"b": {"type": "string"}}, "default": {"c": 1}}),
    obj(a={"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object"}}),
    obj(a={"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
           "items": obj(k={"type": "string"})}),
], ids=["invalid-type", "unpruned-default", "non-atomic-set", "map-key-without-default"])
def test_updates_keep_accepting_what_the_old_crd_already_had(schema: dict[str, Any]) -> None:
    assert len(texts(schema)) == 1
    assert structural.definition_errors(schema, P, old_schemas=[schema]) == []
    assert len(structural.definition_errors(schema, P, old_schemas=[obj(a={"type": "string"})])) == 1


@pytest.mark.parametrize("schema,want", [
    ({"type": "object", "properties": {"foo": {"type": "string"}},
      "allOf": [{"properties": {"notfoo": {"minLength": 2}}}]},
     f"{P}.properties[notfoo]: Required value: because it is defined in {P}.allOf[0].properties[notfoo]"),
    ({"type": "object", "allOf": [{"items": {"minLength": 2}}]},
     f"{P}.items: Required value: because it is defined in {P}.allOf[0].items"),
])
def test_junctors_name_only_what_is_structurally_defined(schema: dict[str, Any], want: str) -> None:
    """Kubernetes' TestValidateStructuralCompleteness cases, at a CRD's schema path."""
    assert texts(schema) == [want]
