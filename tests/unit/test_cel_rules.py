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


# --- Kubernetes' function libraries --------------------------------------------------------------------------------

def value(expr: str, **variables: Any) -> Any:
    compiled = cel.compile_expression(expr, {name: None for name in variables})
    return cel.evaluate(compiled, variables)


@pytest.mark.parametrize("expr, want", [
    # strings (ext.Strings)
    ("'hello'.charAt(1)", "e"),
    ("'hello'.indexOf('l')", 2),
    ("'hello'.indexOf('l', 3)", 3),
    ("'hello'.lastIndexOf('l')", 3),
    ("'HeLLo'.lowerAscii()", "hello"),
    ("'HeLLo'.upperAscii()", "HELLO"),
    ("'a-b-c'.replace('-', '+')", "a+b+c"),
    ("'a-b-c'.replace('-', '+', 1)", "a+b-c"),
    ("'a,b,c'.split(',')", ["a", "b", "c"]),
    ("'a,b,c'.split(',', 2)", ["a", "b,c"]),
    ("'hello'.substring(1)", "ello"),
    ("'hello'.substring(1, 3)", "el"),
    ("'  hi \\t'.trim()", "hi"),
    ("['a', 'b'].join()", "ab"),
    ("['a', 'b'].join('-')", "a-b"),
    ("'abc'.reverse()", "cba"),
    ("strings.quote('a\"b')", '"a\\"b"'),
    ("'%s has %d items (%.2f)'.format([dyn('list'), 3, 1.5])", "list has 3 items (1.50)"),
    # lists
    ("[1, 2, 3].isSorted()", True),
    ("['b', 'a'].isSorted()", False),
    ("[1, 2, 3].sum()", 6),
    ("[1.5, 2.5].sum()", 4.0),
    ("[3, 1, 2].min()", 1),
    ("['a', 'c', 'b'].max()", "c"),
    ("[1, 2, 1].indexOf(1)", 0),
    ("[1, 2, 1].lastIndexOf(1)", 2),
    ("['x', 'y'].indexOf('z')", -1),
    # regex
    ("'abc 123'.find('[0-9]+')", "123"),
    ("'a1b22c333'.findAll('[0-9]+')", ["1", "22", "333"]),
    ("'a1b22c333'.findAll('[0-9]+', 2)", ["1", "22"]),
    ("'abc'.matches('^a')", True),
    # URLs
    ("url('https://user@example.com:8443/a%20b?x=1&x=2&y').getScheme()", "https"),
    ("url('https://example.com:8443/p').getHost()", "example.com:8443"),
    ("url('https://[::1]:80/p').getHostname()", "::1"),
    ("url('https://example.com:8443/p').getPort()", "8443"),
    ("url('https://example.com/a%20b').getEscapedPath()", "/a%20b"),
    ("url('https://example.com/?x=1&x=2&y').getQuery()", {"x": ["1", "2"], "y": [""]}),
    ("isURL('https://example.com')", True),
    ("isURL('not a url')", False),
    # IPs and CIDRs
    ("ip('10.0.0.1').family()", 4),
    ("ip('::1').isLoopback()", True),
    ("ip('0.0.0.0').isUnspecified()", True),
    ("ip('169.254.1.1').isLinkLocalUnicast()", True),
    ("ip('224.0.0.1').isLinkLocalMulticast()", True),
    ("ip('8.8.8.8').isGlobalUnicast()", True),
    ("isIP('1.2.3.4') && !isIP('1.2.3')", True),
    ("ip.isCanonical('2001:db8::1') && !ip.isCanonical('2001:DB8::1')", True),
    ("ip('10.0.0.1') == ip('10.0.0.1')", True),
    ("cidr('10.0.0.0/8').containsIP('10.1.2.3')", True),
    ("cidr('10.0.0.0/8').containsIP(ip('11.1.2.3'))", False),
    ("cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16')", True),
    ("cidr('10.0.0.0/8').containsCIDR(cidr('0.0.0.0/0'))", False),
    ("cidr('10.1.2.3/8').ip() == ip('10.1.2.3')", True),
    ("cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8')", True),
    ("cidr('10.0.0.0/8').prefixLength()", 8),
    ("isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0')", True),
    ("string(ip('2001:DB8::1'))", "2001:db8::1"),
    ("string(cidr('10.1.2.3/8'))", "10.1.2.3/8"),
    ("string(cidr('10.1.2.3/8').masked())", "10.0.0.0/8"),
    ("string(1) + string(true) + string(2u) + string(1.5)", "1true21.5"),
    # quantities
    ("quantity('1Gi').isGreaterThan(quantity('1000Mi'))", True),
    ("quantity('100m').isLessThan(quantity('1'))", True),
    ("quantity('1') == quantity('1000m')", True),
    ("quantity('1.5').compareTo(quantity('2'))", -1),
    ("quantity('-3').sign()", -1),
    ("quantity('2k').asInteger()", 2000),
    ("quantity('1.5').isInteger()", False),
    ("quantity('250m').asApproximateFloat()", 0.25),
    ("quantity('1').add(quantity('500m')) == quantity('1500m')", True),
    ("quantity('2').sub(1) == quantity('1')", True),
    ("isQuantity('128Mi') && !isQuantity('12x')", True),
    # sets
    ("sets.contains([1, 2, 3], [1, 3])", True),
    ("sets.equivalent([1, 2], [2, 1, 1])", True),
    ("sets.intersects([1, 2], [3])", False),
    # optionals
    ("optional.of(1).orValue(2)", 1),
    ("{'a': 1}.?b.orValue(5)", 5),
])
def test_library_functions(expr: str, want: Any) -> None:
    assert value(expr) == want


@pytest.mark.parametrize("expr, words", [
    ("'ab'.charAt(5)", "index out of range: 5"),
    ("'ab'.substring(3)", "index out of range: 3"),
    ("[].min()", "min called on empty list"),
    ("url('no url')", 'URL parse error during conversion from string: parse "no url": invalid URI for request'),
    ("ip('1.2.3')", 'IP Address "1.2.3" parse error during conversion from string: ParseAddr("1.2.3"): '
                    "unable to parse IP"),
    ("quantity('1.5').asInteger()", "cannot convert value to integer"),
])
def test_library_errors(expr: str, words: str) -> None:
    with pytest.raises(cel.CelError) as e:
        value(expr)
    assert str(e.value) == words


def test_library_types_are_checked() -> None:
    with pytest.raises(cel.CompileError) as e:
        cel.compile_expression("url('https://x').getHost() + 1", {})
    assert str(e.value).startswith("ERROR: <input>:1:28: found no matching overload for '_+_' applied to "
                                   "'(string, int)'")


# --- admission's variables (matchConditions, ValidatingAdmissionPolicy) --------------------------------------------

def test_admission_variables() -> None:
    obj_ = {"metadata": {"name": "a", "labels": {"team": "x"}}, "spec": {"replicas": 3}}
    request = {"operation": "CREATE", "userInfo": {"username": "alice"}}
    compiled = cel.compile_expression(
        "request.operation == 'CREATE' && object.spec.replicas <= 5 && 'team' in object.metadata.labels",
        {"object": None, "oldObject": None, "request": None, "params": None})
    assert cel.evaluate(compiled, {"object": obj_, "oldObject": None, "request": request, "params": None}) is True
    with pytest.raises(cel.CompileError):
        cel.compile_expression("nosuch.x == 1", {"object": None})


# --- schema typing of values ---------------------------------------------------------------------------------------

def test_date_time_is_a_timestamp_and_duration_a_duration() -> None:
    schema = obj(spec=with_rules(obj(at={"type": "string", "format": "date-time"},
                                     ttl={"type": "string", "format": "duration"},
                                     data={"type": "string", "format": "byte"}),
                                 "self.at > timestamp('2020-01-01T00:00:00Z')",
                                 "self.ttl < duration('1h')",
                                 "self.data == b'hi'"))
    assert cel.rule_errors(schema, ROOT) == []
    assert run(schema, {"at": "2021-05-01T10:00:00.123456789Z", "ttl": "30m", "data": "aGk="}) == []
    assert len(run(schema, {"at": "2019-05-01T10:00:00Z", "ttl": "2h", "data": "aGk="})) == 2


def test_number_is_a_double_and_int_or_string_is_dyn() -> None:
    schema = obj(spec=with_rules(obj(ratio={"type": "number"}, port={"x-kubernetes-int-or-string": True}),
                                 "self.ratio == 1.0",
                                 "type(self.port) == int ? self.port > 0 : self.port.endsWith('%')"))
    assert cel.rule_errors(schema, ROOT) == []
    assert run(schema, {"ratio": 1, "port": 80}) == []
    assert run(schema, {"ratio": 1, "port": "50%"}) == []
    assert run(schema, {"ratio": 1.0, "port": "50"}) == [
        'spec: Invalid value: "object": failed rule: type(self.port) == int ? self.port > 0 : '
        "self.port.endsWith('%')"]


def test_escaped_property_names() -> None:
    schema = obj(spec=with_rules(obj(**{"foo-bar": INT, "a.b": INT, "namespace": STR, "x__y": INT}),
                                 "self.foo__dash__bar == 1 && self.a__dot__b == 2 && self.__namespace__ == 'n' && "
                                 "self.x__underscores__y == 3"))
    assert cel.rule_errors(schema, ROOT) == []
    assert run(schema, {"foo-bar": 1, "a.b": 2, "namespace": "n", "x__y": 3}) == []


def test_preserve_unknown_fields_hide_unknown_fields() -> None:
    schema = obj(spec=with_rules({"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                  "properties": {"known": INT}}, "self.known > 0"))
    assert cel.rule_errors(schema, ROOT) == []
    unknown = obj(spec=with_rules({"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                   "properties": {"known": INT}}, "self.other > 0"))
    assert "undefined field 'other'" in cel.rule_errors(unknown, ROOT)[0].detail


def test_embedded_resource_sees_only_type_and_name() -> None:
    embedded = {"type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True}
    schema = obj(spec=obj(template=with_rules(embedded, "self.kind == 'Pod' && self.metadata.name.startsWith('p')")))
    assert cel.rule_errors(schema, ROOT) == []
    tpl = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod", "labels": {"a": "b"}}, "spec": {}}
    assert run(schema, {"template": tpl}) == []


def test_map_values_and_keys() -> None:
    labels = with_rules({"type": "object", "additionalProperties": STR, "maxProperties": 10},
                        "self.all(k, k.startsWith('app') && self[k].size() < 5)")
    schema = obj(spec=obj(labels=labels))
    assert cel.rule_errors(schema, ROOT) == []
    assert run(schema, {"labels": {"app": "web"}}) == []
    assert run(schema, {"labels": {"team": "web"}}) != []


# --- runtime cost ----------------------------------------------------------------------------------------------------

def test_runtime_call_cost_limit() -> None:
    schema = obj(spec=obj(l=with_rules({"type": "array", "items": STR}, "self.all(x, self.all(y, x == y || true))")))
    got = run(schema, {"l": [str(i) for i in range(2000)]})
    assert got == ["spec.l: Invalid value: \"array\": 'operation cancelled: actual cost limit exceeded': no further "
                   "validation rules will be run due to call cost exceeds limit for rule: "
                   "self.all(x, self.all(y, x == y || true))"]
    assert run(schema, {"l": ["a", "a"]}) == []


def test_runtime_budget_for_the_whole_object() -> None:
    item = with_rules(obj(l={"type": "array", "items": INT}), "self.l.all(x, self.l.all(y, x >= 0))")
    schema = obj(spec=obj(items={"type": "array", "items": item}))
    spec = {"items": [{"l": list(range(90))} for _ in range(400)]}
    got = run(schema, spec)
    assert got[-1].endswith("validation failed due to running out of cost budget, no further validation rules will "
                            "be run")
    assert len(got) == 1


def test_iteration_cap_of_the_engine() -> None:
    # cel-expr-python stops an evaluation after 9,999 comprehension iterations (Kubernetes has only the cost limit).
    compiled = cel.compile_expression("l.all(x, x >= 0)", {"l": None})
    assert cel.evaluate(compiled, {"l": list(range(9_999))}) is True
    with pytest.raises(cel.CelError, match="Iteration budget exceeded"):
        cel.evaluate(compiled, {"l": list(range(10_000))})


def test_optional_old_self_runs_on_create_with_an_empty_optional() -> None:
    schema = spec_schema({"rule": "!oldSelf.hasValue() || self.x >= oldSelf.value().x", "optionalOldSelf": True,
                          "message": "x may only grow"},
                         {"rule": "oldSelf.hasValue() || self.x < 100", "optionalOldSelf": True,
                          "message": "new objects start below 100"})
    assert cel.rule_errors(schema, ROOT) == []
    assert run(schema, {"x": 5}) == []
    assert run(schema, {"x": 500}) == ['spec: Invalid value: "object": new objects start below 100']
    assert run(schema, {"x": 4}, {"x": 5}) == ['spec: Invalid value: "object": x may only grow']
    assert run(schema, {"x": 500}, {"x": 5}) == []


def test_optional_old_self_compile_errors_point_into_the_rule() -> None:
    errs = cel.rule_errors(spec_schema({"rule": "oldSelf.value().nope > 1", "optionalOldSelf": True}), ROOT)
    assert errs[0].detail == ("compilation failed: ERROR: <input>:1:16: undefined field 'nope'\n"
                              " | oldSelf.value().nope > 1\n | ...............^")


def test_runtime_cost_grows_with_the_values() -> None:
    compiled = cel.compile_expression("object.spec.items.all(i, i.size() < 10)", {"object": None})
    small = cel.runtime_cost(compiled, {"object": {"spec": {"items": ["a"] * 10}}})
    large = cel.runtime_cost(compiled, {"object": {"spec": {"items": ["a"] * 1000}}})
    assert 10 < small < large
    assert large >= 1000 * 4  # at least the loop's condition and step per item


def test_unchanged_schema_skips_the_per_rule_limit() -> None:
    lst = with_rules({"type": "array", "maxItems": 1_000_000, "items": {"type": "string", "maxLength": 16}},
                     "self.all(x, x.contains('gpu'))")
    schema = obj(tags=lst)
    assert [e.detail.split(" (")[0] for e in cel.rule_errors(schema, ROOT)] == [
        "estimated rule cost exceeds budget by factor of 1.100000x"]
    assert cel.rule_errors(schema, ROOT, old_schema=schema) == []


@pytest.mark.parametrize("expr, words", [
    ("[1][5] == 1", "index '5' out of range in list size '1'"),
    ("{'a': 1}['b'] == 1", "no such key: b"),
    ("5 % 0 == 0", "modulus by zero"),
    ("9223372036854775807 + 1 > 0", "integer overflow"),
    ("p > 0", "no such overload"),
])
def test_runtime_error_words_are_cel_gos(expr: str, words: str) -> None:
    with pytest.raises(cel.CelError) as e:
        value(expr, p="text")
    assert str(e.value) == words


def test_runtime_overload_error_wording_in_a_rule() -> None:
    schema = obj(spec=obj(port=with_rules({"x-kubernetes-int-or-string": True}, "self > 0")))
    assert run(schema, {"port": "80"}) == [
        "spec.port: Invalid value: \"\": 'no such overload': call arguments did not match a supported operator, "
        "function or macro signature for rule: self > 0"]


# --- the authorizer library (ValidatingAdmissionPolicy, matchConditions) -------------------------------------------

def test_authorizer_checks_go_through_the_callback() -> None:
    asked: list[dict[str, Any]] = []

    def authorize(attributes: dict[str, Any]) -> tuple[str, str, str]:
        asked.append(attributes)
        if attributes.get("resource") == "deployments" and attributes["verb"] == "update":
            return "allow", "RBAC: allowed by ClusterRoleBinding", ""
        return "noOpinion", "", ""

    variables = {"authorizer": None, "object": None}
    activation = {"authorizer": cel.authorizer_value(authorize), "object": {}}
    expr = ("authorizer.group('apps').resource('deployments').namespace('ns').name('web').check('update')"
            ".allowed()")
    assert cel.evaluate(cel.compile_expression(expr, variables), activation) is True
    assert asked[-1] == {"serviceAccount": [], "group": "apps", "resource": "deployments", "subresource": "",
                         "namespace": "ns", "name": "web", "fieldSelector": "", "labelSelector": "",
                         "verb": "update"}
    denied = "authorizer.serviceAccount('kube-system', 'sa').path('/healthz').check('get')"
    decision = cel.compile_expression(f"{denied}.allowed() || {denied}.reason() != ''", variables)
    assert cel.evaluate(decision, activation) is False
    assert asked[-1] == {"serviceAccount": ["kube-system", "sa"], "path": "/healthz", "verb": "get"}
    assert cel.runtime_cost(cel.compile_expression(f"{denied}.allowed()", variables), activation) >= 350_000


def test_cross_type_numeric_comparisons() -> None:
    schema = obj(spec=with_rules(obj(ratio={"type": "number"}, n=INT), "self.ratio <= 1 && self.n > 0.5"))
    assert cel.rule_errors(schema, ROOT) == []
    assert run(schema, {"ratio": 0.5, "n": 1}) == []
    assert run(schema, {"ratio": 2, "n": 1}) == [
        'spec: Invalid value: "object": failed rule: self.ratio <= 1 && self.n > 0.5']
    assert value("1 < 1.5 && 2u >= 1 && 3.0 > 2") is True
    with pytest.raises(cel.CompileError, match="found no matching overload for '_<_' applied to '\\(int, string\\)'"):
        cel.compile_expression("1 < 'a'", {})


@pytest.mark.parametrize("expr, issue", [
    ("[1, 'a'].size() == 2", "ERROR: <input>:1:5: expected type 'int' but found 'string'\n | [1, 'a'].size() == 2\n"
                             " | ....^"),
    ("{'a': 1, 'b': 'x'}.size() == 2", "ERROR: <input>:1:15: expected type 'int' but found 'string'"),
    ("[[1], ['a']].size() == 2", "ERROR: <input>:1:7: expected type 'list(int)' but found 'list(string)'"),
    ("duration('1x') > duration('1s')", "ERROR: <input>:1:10: invalid duration argument\n | duration('1x') > "
                                        "duration('1s')\n | .........^"),
    ("timestamp('2020-13-01T00:00:00Z') > timestamp(0)", "ERROR: <input>:1:11: invalid timestamp argument"),
    ("'a'.matches('[')", "ERROR: <input>:1:13: invalid matches argument"),
])
def test_aggregate_literals_are_homogeneous(expr: str, issue: str) -> None:
    with pytest.raises(cel.CompileError) as e:
        cel.compile_expression(expr, {})
    assert str(e.value).startswith(issue)


def test_dynamic_aggregate_literals_are_allowed() -> None:
    assert value("[1, dyn('a')].size() == 2 && [null, {'a': 1}].size() == 2") is True
