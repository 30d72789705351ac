"""CRD x-kubernetes-validations: CRD-time checks and evaluation against custom resources, in Kubernetes' words."""

from __future__ import annotations

from typing import Any

import pytest

from kubesat.apimachinery import cel

ROOT = "spec.validation.openAPIV3Schema"


def texts(errs: list[Any]) -> list[str]:
    return [e.text() for e in errs]


def obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def with_rules(schema: dict[str, Any], *rules: Any) -> dict[str, Any]:
    return {**schema, "x-kubernetes-validations": [r if isinstance(r, dict) else {"rule": r} for r in rules]}


INT, STR, BOOL = {"type": "integer"}, {"type": "string"}, {"type": "boolean"}
REPLICAS = obj(minReplicas=INT, maxReplicas=INT, name=STR, items={"type": "array", "items": STR}, x=INT)


def spec_schema(*rules: Any, spec: dict[str, Any] = REPLICAS) -> dict[str, Any]:
    return obj(spec=with_rules(spec, *rules))


def resource(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def run(schema: dict[str, Any], new: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return texts(cel.validate_rules(schema, resource(new), resource(old) if old is not None else None))


# --- evaluation ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, spec, ok", [
    ("self.minReplicas <= self.maxReplicas", {"minReplicas": 1, "maxReplicas": 3}, True),
    ("self.minReplicas <= self.maxReplicas", {"minReplicas": 4, "maxReplicas": 3}, False),
    ("self.name.matches('^[a-z]+$')", {"name": "web"}, True),
    ("self.name.matches('^[a-z]+$')", {"name": "Web1"}, False),
    ("self.items.all(i, i.size() < 10)", {"items": ["a", "bb"]}, True),
    ("self.items.all(i, i.size() < 3)", {"items": ["a", "bbbb"]}, False),
    ("has(self.x) ? self.x > 0 : true", {}, True),
    ("has(self.x) ? self.x > 0 : true", {"x": 0}, False),
    ("self.items.exists(i, i == 'b')", {"items": ["a", "b"]}, True),
    ("self.items.exists_one(i, i == 'a')", {"items": ["a", "a"]}, False),
    ("self.items.map(i, i + '!').filter(i, i.startsWith('a')) == ['a!']", {"items": ["a", "b"]}, True),
    ("size(self.items) == 2 && self.items[1] == 'b'", {"items": ["a", "b"]}, True),
    ("'b' in self.items", {"items": ["a", "b"]}, True),
])
def test_rules_pass_and_fail(rule: str, spec: dict[str, Any], ok: bool) -> None:
    got = run(spec_schema(rule), spec)
    assert got == ([] if ok else [f'spec: Invalid value: "object": failed rule: {rule}'])


def test_message_replaces_the_rule() -> None:
    schema = spec_schema({"rule": "self.minReplicas <= self.maxReplicas", "message": "  min must not exceed max "})
    got = run(schema, {"minReplicas": 5, "maxReplicas": 1})
    assert got == ['spec: Invalid value: "object": min must not exceed max']


def test_message_expression() -> None:
    schema = spec_schema({"rule": "self.x < 10", "message": "too big",
                          "messageExpression": "'x is ' + string(self.x) + ', at most 9'"})
    assert run(schema, {"x": 12}) == ['spec: Invalid value: "object": x is 12, at most 9']


@pytest.mark.parametrize("expr", ["''", "'   '", "'two\\nlines'", "'a' + string(1/0)"])
def test_message_expression_falls_back_to_message(expr: str) -> None:
    schema = spec_schema({"rule": "self.x < 10", "message": "too big", "messageExpression": expr})
    assert run(schema, {"x": 12}) == ['spec: Invalid value: "object": too big']


@pytest.mark.parametrize("reason, words", [
    ("FieldValueForbidden", "spec: Forbidden: failed rule: self.x < 10"),
    ("FieldValueRequired", "spec: Required value: failed rule: self.x < 10"),
    ("FieldValueDuplicate", 'spec: Duplicate value: "object"'),
    ("FieldValueInvalid", 'spec: Invalid value: "object": failed rule: self.x < 10'),
])
def test_reason_sets_the_error_type(reason: str, words: str) -> None:
    errs = cel.validate_rules(spec_schema({"rule": "self.x < 10", "reason": reason}), resource({"x": 12}), None)
    assert texts(errs) == [words]
    assert errs[0].type == reason


def test_field_path_replaces_the_error_path() -> None:
    schema = spec_schema({"rule": "self.x < 10", "fieldPath": ".x"})
    assert run(schema, {"x": 12}) == ['spec.x: Invalid value: "object": failed rule: self.x < 10']


def test_root_rule_prints_a_nil_path() -> None:
    schema = with_rules(obj(spec=REPLICAS), "self.spec.x > 0")
    assert run(schema, {"x": 0}) == ['<nil>: Invalid value: "object": failed rule: self.spec.x > 0']


def test_root_sees_metadata_name_but_not_labels() -> None:
    schema = with_rules(obj(spec=REPLICAS), "self.metadata.name == 'w' && self.kind == 'Widget'")
    assert run(schema, {}) == []
    errs = cel.rule_errors(with_rules(obj(spec=REPLICAS), "self.metadata.labels.size() > 0"), ROOT)
    assert errs[0].field == f"{ROOT}.x-kubernetes-validations[0].rule"
    assert errs[0].detail.startswith("compilation failed: ERROR: <input>:1:14: undefined field 'labels'")


def test_runtime_error_words() -> None:
    assert run(spec_schema("self.x / 0 == 1"), {"x": 1}) == [
        'spec: Invalid value: "object": division by zero evaluating rule: self.x / 0 == 1']
    assert run(spec_schema("self.x == 1"), {}) == [
        'spec: Invalid value: "object": no such key: x evaluating rule: self.x == 1']


def test_rules_on_list_items_use_the_item_path() -> None:
    schema = obj(spec=obj(ports={"type": "array", "items": with_rules(obj(port=INT), "self.port > 0")}))
    got = run(schema, {"ports": [{"port": 1}, {"port": 0}]})
    assert got == ['spec.ports[1]: Invalid value: "object": failed rule: self.port > 0']


def test_null_values_are_not_validated() -> None:
    schema = obj(spec=obj(x=with_rules({"type": "integer", "nullable": True}, "self > 0")))
    assert run(schema, {"x": None}) == []
    assert run(schema, {"x": 0}) == ['spec.x: Invalid value: "integer": failed rule: self > 0']


# --- transition rules ----------------------------------------------------------------------------------------------

def test_transition_rule_runs_only_on_update() -> None:
    schema = spec_schema({"rule": "self == oldSelf", "message": "spec is immutable"})
    assert run(schema, {"x": 1}) == []
    assert run(schema, {"x": 1}, {"x": 1}) == []
    assert run(schema, {"x": 2}, {"x": 1}) == ['spec: Invalid value: "object": spec is immutable']


def test_transition_rule_on_a_scalar() -> None:
    schema = obj(spec=obj(x=with_rules(INT, "self >= oldSelf")))
    assert run(schema, {"x": 1}, {"x": 2}) == ['spec.x: Invalid value: "integer": failed rule: self >= oldSelf']
    assert run(schema, {"x": 1}, {}) == []  # no old value: the rule does not run


def test_transition_rule_follows_map_list_keys() -> None:
    item = with_rules(obj(name=STR, v=INT), "self.v >= oldSelf.v")
    lst = {"type": "array", "items": item, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
    schema = obj(spec=obj(l=lst))
    old = {"l": [{"name": "a", "v": 1}, {"name": "b", "v": 5}]}
    assert run(schema, {"l": [{"name": "b", "v": 4}, {"name": "a", "v": 2}]}, old) == [
        'spec.l[0]: Invalid value: "object": failed rule: self.v >= oldSelf.v']


def test_unchanged_values_ratchet_into_warnings() -> None:
    schema = spec_schema("self.x < 10")
    warnings: list[str] = []
    errs = cel.validate_rules(schema, resource({"x": 12}), resource({"x": 12}), warnings=warnings)
    assert errs == []
    assert warnings == ['spec: Invalid value: "object": failed rule: self.x < 10']


# --- CRD-time checks -----------------------------------------------------------------------------------------------

def rule_path(i: int = 0, where: str = ".properties[spec]") -> str:
    return f"{ROOT}{where}.x-kubernetes-validations[{i}]"


def test_valid_rules_have_no_errors() -> None:
    assert cel.rule_errors(spec_schema("self.minReplicas <= self.maxReplicas", "self == oldSelf"), ROOT) == []


def test_compile_error_words() -> None:
    errs = cel.rule_errors(spec_schema("self.nope > 1"), ROOT)
    assert len(errs) == 1
    assert errs[0].field == f"{rule_path()}.rule"
    assert errs[0].type == "FieldValueInvalid"
    assert errs[0].detail == ("compilation failed: ERROR: <input>:1:5: undefined field 'nope'\n"
                              " | self.nope > 1\n | ....^")
    assert str(errs[0].value).startswith('apiextensions.ValidationRule{Rule:"self.nope > 1", Message:""')


def test_syntax_error_words() -> None:
    errs = cel.rule_errors(spec_schema("self.x >"), ROOT)
    assert errs[0].detail.startswith("compilation failed: ERROR: <input>:1:9: Syntax error: mismatched input '<EOF>'")


def test_rule_must_be_a_bool() -> None:
    errs = cel.rule_errors(spec_schema("self.x"), ROOT)
    assert [(e.field, e.detail) for e in errs] == [(f"{rule_path()}.rule", "cel expression must evaluate to a bool")]


def test_message_expression_checks() -> None:
    errs = cel.rule_errors(spec_schema({"rule": "self.x > 0", "messageExpression": "self.x"},
                                       {"rule": "self.x > 0", "messageExpression": "self.y"}), ROOT)
    assert [(e.field, e.detail.split("\n")[0]) for e in errs] == [
        (f"{rule_path(0)}.messageExpression", "messageExpression must evaluate to a string"),
        (f"{rule_path(1)}.messageExpression",
         "messageExpression compilation failed: ERROR: <input>:1:5: undefined field 'y'"),
    ]


def test_rule_shape_errors() -> None:
    errs = cel.rule_errors(spec_schema({"rule": " "}, {"rule": "self.x > 0", "reason": "Bogus"},
                                       {"rule": "self.x > 0", "message": "a\nb"},
                                       {"rule": "self.x > 0 &&\nself.x < 5"},
                                       {"rule": "self.x > 0", "fieldPath": ".nope"},
                                       {"rule": "self.x > 0", "fieldPath": ".items[0]"}), ROOT)
    assert texts(errs) == [
        f"{rule_path(0)}.rule: Required value: rule is not specified",
        f'{rule_path(1)}.reason: Unsupported value: "Bogus": supported values: "FieldValueDuplicate", '
        '"FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"',
        f'{rule_path(2)}.message: Invalid value: "a\nb": message must not contain line breaks',  # (Go: %q escapes)
        f"{rule_path(3)}.message: Required value: message must be specified if rule contains line breaks",
        f'{rule_path(4)}.fieldPath: Invalid value: ".nope": fieldPath must be a valid path',
        f'{rule_path(5)}.fieldPath: Invalid value: ".items[0]": fieldPath must be a valid path',
    ]


def test_field_path_forms() -> None:
    s = obj(spec=obj(**{"a.b": INT}), m={"type": "object", "additionalProperties": INT})
    assert cel.rules.field_path(s, ".spec['a.b']") == "spec.a.b"
    assert cel.rules.field_path(s, ".m.key") == "m[key]"
    assert cel.rules.field_path(s, ".spec[0]") is None


def test_old_self_forbidden_under_atomic_lists() -> None:
    lst = {"type": "array", "items": with_rules(obj(v=INT), "self.v == oldSelf.v")}
    errs = cel.rule_errors(obj(spec=obj(l=lst)), ROOT)
    where = f"{ROOT}.properties[spec].properties[l]"
    assert texts(errs) == [
        f'{where}.items.x-kubernetes-validations[0].rule: Invalid value: "self.v == oldSelf.v": oldSelf cannot be '
        f"used on the uncorrelatable portion of the schema within {where}"]


def test_old_self_allowed_under_map_lists() -> None:
    lst = {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
           "items": with_rules(obj(k=STR, v=INT), "self.v == oldSelf.v")}
    assert cel.rule_errors(obj(spec=obj(l=lst)), ROOT) == []


def test_optional_old_self_needs_old_self() -> None:
    errs = cel.rule_errors(spec_schema({"rule": "self.x > 0", "optionalOldSelf": True}), ROOT)
    assert texts(errs) == [f"{rule_path()}.optionalOldSelf: Invalid value: true: "
                           "may not be set if oldSelf is not used in rule"]


UNBOUNDED_RULE = "self.all(x, self.all(y, x != y))"
FACTOR_WORDS = ("(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, "
                "and strings are declared)")


def test_unbounded_nested_rule_exceeds_the_cost_limits() -> None:
    lst = with_rules({"type": "array", "items": STR}, UNBOUNDED_RULE)
    errs = cel.rule_errors(obj(spec=obj(l=lst)), ROOT)
    where = f"{ROOT}.properties[spec].properties[l].x-kubernetes-validations[0].rule"
    assert texts(errs) == [
        f"{where}: Forbidden: estimated rule cost exceeds budget by factor of more than 100x {FACTOR_WORDS}",
        f"{where}: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 "
        "schema",
        f"{ROOT}: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds "
        f"budget by factor of more than 100x {FACTOR_WORDS}",
    ]


def test_bounds_bring_the_rule_under_the_limit() -> None:
    lst = with_rules({"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 64}}, UNBOUNDED_RULE)
    assert cel.rule_errors(obj(spec=obj(l=lst)), ROOT) == []


@pytest.mark.parametrize("max_length, max_items", [(16, 909_090), (63, 333_333), (253, 94_339), (1024, 24_154)])
def test_estimate_matches_kubernetes_boundary(max_length: int, max_items: int) -> None:
    # The largest maxItems Kubernetes accepts for this rule, measured against kube-apiserver's validator.
    def errs(n: int) -> list[Any]:
        lst = with_rules({"type": "array", "maxItems": n, "items": {"type": "string", "maxLength": max_length}},
                         "self.all(x, x.contains('gpu'))")
        return cel.rule_errors(obj(tags=lst), ROOT)
    assert errs(max_items) == []
    over = errs(max_items + 1)
    assert over[0].detail.startswith("estimated rule cost exceeds budget by factor of 1.0000")


def test_cost_factor_words() -> None:
    assert "factor of 1.500000x" not in cel.rules.cost_error_message("x", 15, 10)
    assert "factor of 1.5x" in cel.rules.cost_error_message("x", 15, 10)
    assert "factor of 1.200000x" in cel.rules.cost_error_message("x", 12, 10)
    assert "factor of more than 100x" in cel.rules.cost_error_message("x", 1001, 10)


def test_cardinality_multiplies_rules_under_lists() -> None:
    inner = with_rules({"type": "string"}, "self.contains('gpu')")
    assert cel.rule_errors(obj(tags={"type": "array", "items": inner}), ROOT) != []
    assert cel.rule_errors(obj(tags={"type": "array", "maxItems": 10, "items": inner}), ROOT) == []
