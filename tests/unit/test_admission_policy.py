"""ValidatingAdmissionPolicy's pure parts: defaults, validation messages, columns, matching and evaluation."""

from __future__ import annotations

from typing import Any

from kubesat.auth import authz
from kubesat.auth.policyadmission import (
    ValidatingPolicyAdmission, _denial, _Request, admission_request, matched_resource, namespace_variable, shown_name,
)
from kubesat.auth.policyevaluation import Evaluation, compile_policy
from kubesat.auth.user import UserInfo
from kubesat.registry.admissionpolicytypes import expression_warnings
from kubesat.auth.webhookrules import RequestResource
from kubesat.auth.webhooks import Attributes
from kubesat.registry.admissionpolicy import (
    cel_type_name, default_binding, default_policy, param_ref_cell, validate_binding, validate_policy,
)

class _StubRegistry:
    def __init__(self) -> None:
        self.on_write: list[Any] = []
        self.on_delete: list[Any] = []


def _registry_stub() -> Any:
    return _StubRegistry()


CM = RequestResource("", "v1", "configmaps", "", "ConfigMap", "ns1")


def _attrs(name: str = "c", op: str = "CREATE", r: RequestResource = CM,
           equivalents: tuple[RequestResource, ...] = ()) -> Attributes:
    return Attributes(op, r, name, None, False, None, equivalents)


def _texts(errs: list[Any]) -> list[str]:
    return [e.text() for e in errs]


def _policy(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "matchConstraints": {"resourceRules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                                "resources": ["configmaps"]}]},
        "validations": [{"expression": "true"}]}
    base.update(spec)
    obj = {"metadata": {"name": "p", "generation": 1}, "spec": base}
    default_policy(obj)
    return obj


def test_defaults() -> None:
    p = _policy()
    assert p["spec"]["failurePolicy"] == "Fail"
    mc = p["spec"]["matchConstraints"]
    assert (mc["matchPolicy"], mc["namespaceSelector"], mc["objectSelector"]) == ("Equivalent", {}, {})
    assert mc["resourceRules"][0]["scope"] == "*"
    b = {"spec": {"paramRef": {"name": "x"}, "matchResources": {}}}
    default_binding(b)
    assert b["spec"]["paramRef"]["parameterNotFoundAction"] == "Deny"
    assert b["spec"]["matchResources"]["matchPolicy"] == "Equivalent"


def test_policy_validation_messages() -> None:
    assert validate_policy(_policy()) == []
    errs = _texts(validate_policy(_policy(
        paramKind={"apiVersion": "a/b/c", "kind": "Bad_Kind"},
        validations=[{"expression": " ", "message": "two\nlines"}],
        auditAnnotations=[{"key": "k", "valueExpression": "1"}, {"key": "k", "valueExpression": "'x'"}],
        variables=[{"name": "if", "expression": "1"}])))
    assert 'spec.paramKind.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c' in errs
    assert any(e.startswith('spec.paramKind.kind: Invalid value: "Bad_Kind": may have mixed case, but should '
                            "otherwise match: a DNS-1035 label") for e in errs)
    assert "spec.validations[0].expression: Required value: expression is not specified" in errs
    assert any(e.startswith("spec.validations[0].message: Invalid value: ")
               and e.endswith(": message must not contain line breaks") for e in errs)
    assert ('spec.auditAnnotations[0].valueExpression: Invalid value: "1": must evaluate to one of '
            "[string null_type] but got int") in errs
    assert 'spec.auditAnnotations[1].key: Duplicate value: "k"' in errs
    assert 'spec.variables[0].name: Invalid value: "if": name is not a valid CEL identifier' in errs


def test_params_only_with_a_param_kind() -> None:
    errs = _texts(validate_policy(_policy(validations=[{"expression": "params.x == 1"}])))
    assert len(errs) == 1 and "compilation failed: ERROR: <input>:1:" in errs[0]
    assert "undeclared reference to 'params" in errs[0]
    assert validate_policy(_policy(validations=[{"expression": "params.x == 1"}],
                                   paramKind={"apiVersion": "v1", "kind": "ConfigMap"})) == []


def test_binding_validation_and_columns() -> None:
    b = {"spec": {"policyName": "Bad_Name", "validationActions": ["Audit", "Audit"],
                  "matchResources": {"matchPolicy": "Sometimes", "namespaceSelector": {}, "objectSelector": {}}}}
    errs = _texts(validate_binding(b))
    assert any(e.startswith('spec.policyName: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain') for e in errs)
    assert 'spec.validationActions[1]: Duplicate value: "Audit"' in errs
    assert ('spec.matchResouces.matchPolicy: Unsupported value: "Sometimes": supported values: "Equivalent", '
            '"Exact"') in errs
    assert param_ref_cell({"spec": {"paramRef": {"name": "x"}}}) == "*/x"
    assert param_ref_cell({"spec": {"paramRef": {"name": "x", "namespace": "n"}}}) == "n/x"
    assert param_ref_cell({"spec": {}}) == "<unset>"
    assert param_ref_cell({"spec": {"paramRef": {"selector": {"matchLabels": {"a": "b"}}}}}) == \
        "&LabelSelector{MatchLabels:map[string]string{a: b,},MatchExpressions:[]LabelSelectorRequirement{},}"


def test_cel_type_names() -> None:
    assert [cel_type_name(t) for t in ("INT", "LIST<INT>", "MAP<STRING, INT>", "NULL", "DURATION")] == \
        ["int", "list(int)", "map(string, int)", "null_type", "google.protobuf.Duration"]


def test_matching_rules_excludes_names_and_equivalents() -> None:
    rule = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
            "scope": "*"}
    assert matched_resource({"resourceRules": [rule]}, _attrs()) is CM
    assert matched_resource({"resourceRules": [rule]}, _attrs(op="DELETE")) is None
    assert matched_resource({"resourceRules": [{**rule, "resourceNames": ["other"]}]}, _attrs()) is None
    assert matched_resource({"resourceRules": [rule], "excludeResourceRules": [rule]}, _attrs()) is None
    assert matched_resource({}, _attrs()) is CM  # a binding without rules matches whatever its policy matched
    v2 = RequestResource("g", "v2", "things", "", "Thing", "ns1")
    v1 = RequestResource("g", "v1", "things", "", "Thing", "ns1")
    only_v1 = {"operations": ["*"], "apiGroups": ["g"], "apiVersions": ["v1"], "resources": ["things"]}
    assert matched_resource({"resourceRules": [only_v1]}, _attrs(r=v2, equivalents=(v1,))) is v1
    assert matched_resource({"resourceRules": [only_v1], "matchPolicy": "Exact"},
                            _attrs(r=v2, equivalents=(v1,))) is None


def _run(policy: dict[str, Any], obj: dict[str, Any], params: Any = None) -> tuple[list[Any], list[Any]]:
    cp = compile_policy(policy)
    activation = {"object": obj, "oldObject": None, "request": admission_request(_attrs(), CM), "params": params,
                  "namespaceObject": None, "variables": {}}
    decisions, annotations = Evaluation(cp, activation).run()
    return list(decisions), list(annotations)


def test_evaluation_messages_and_failure_policy() -> None:
    obj = {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    decisions, _ = _run(_policy(validations=[
        {"expression": "object.data.size() < 2"},
        {"expression": "object.data.size() < 2", "message": "static"},
        {"expression": "object.data.size() < 2", "message": "static", "reason": "Forbidden",
         "messageExpression": "'has ' + string(object.data.size())"},
        {"expression": "object.data.size() < 2", "message": "static", "messageExpression": "''"},
        {"expression": "object.data.size() < 9"}]), obj)
    assert [(d.message, d.reason, d.index) for d in decisions] == [
        ("failed expression: object.data.size() < 2", "Invalid", 0), ("static", "Invalid", 1),
        ("has 2", "Forbidden", 2), ("static", "Invalid", 3)]
    bad = [{"expression": "object.nope == 1"}]
    decisions, _ = _run(_policy(validations=bad), obj)
    assert [d.message for d in decisions] == ["expression 'object.nope == 1' resulted in error: no such key: nope"]
    assert _run(_policy(validations=bad, failurePolicy="Ignore"), obj)[0] == []


def test_match_conditions_variables_and_audit_annotations() -> None:
    obj = {"metadata": {"name": "c", "labels": {"team": "a"}}, "data": {}}
    skip = _policy(matchConditions=[{"name": "m", "expression": "object.metadata.labels.team == 'b'"}],
                   validations=[{"expression": "false"}])
    assert _run(skip, obj) == ([], [])
    pol = _policy(variables=[{"name": "team", "expression": "object.metadata.labels.team"},
                             {"name": "upper", "expression": "variables.team.upperAscii()"}],
                  validations=[{"expression": "variables.upper == 'B'",
                                "messageExpression": "'team ' + variables.upper"}],
                  auditAnnotations=[{"key": "team", "valueExpression": "variables.team"},
                                    {"key": "none", "valueExpression": "null"}])
    decisions, annotations = _run(pol, obj)
    assert [d.message for d in decisions] == ["team A"]
    assert annotations == [("team", "a")]
    with_params = _policy(paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
                          validations=[{"expression": "object.data.size() <= int(params.data.max)"}])
    assert _run(with_params, {"data": {"a": "1"}}, {"data": {"max": "0"}})[0][0].message.startswith("failed")
    assert _run(with_params, {"data": {"a": "1"}}, {"data": {"max": "1"}})[0] == []


def test_denial_status_and_namespace_variable() -> None:
    decisions, _ = _run(_policy(validations=[{"expression": "false", "reason": "RequestEntityTooLarge"}]), {})
    err = _denial(_attrs(), "c", "p", "b", decisions[0])
    assert (err.code, err.reason) == (413, "RequestEntityTooLarge")
    assert err.message == "configmaps \"c\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied " \
        "request: failed expression: false"
    assert err.details == {"name": "c", "kind": "configmaps", "causes": [{"message": err.message.split(": ", 1)[1]}]}
    assert shown_name(_attrs(name=""), {"metadata": {"generateName": "web-"}}) == "web-"
    assert shown_name(_attrs(name=""), None) == "Unknown"
    assert shown_name(_attrs(name="c"), None) == "c"
    ns = namespace_variable({"metadata": {"name": "n", "managedFields": [{}], "labels": {"a": "b"}}})
    assert ns is not None and ns["metadata"] == {"name": "n", "labels": {"a": "b"}}


def test_runtime_cost_limits() -> None:
    obj = {"data": {f"k{i}": "v" for i in range(200)}}
    heavy = "object.data.all(a, object.data.all(b, object.data.all(c, a != '' && b != '' && c != '')))"
    decisions, _ = _run(_policy(validations=[{"expression": heavy}]), obj)
    assert [d.message for d in decisions] == [
        f"expression '{heavy}' resulted in error: operation cancelled: actual cost limit exceeded"]
    assert _run(_policy(validations=[{"expression": heavy}]), {"data": {"a": "v"}})[0] == []
    medium = "object.data.all(a, object.data.all(b, a != '' && b != ''))"  # about 1/25 of the budget each
    decisions, _ = _run(_policy(validations=[{"expression": medium}] * 60), obj)
    assert [d.message for d in decisions] == [
        "validation failed due to running out of cost budget, no further validation rules will be run"]
    assert _run(_policy(validations=[{"expression": medium}] * 60, failurePolicy="Ignore"), obj)[0] == []


def test_variables_are_evaluated_on_use() -> None:
    obj = {"metadata": {"name": "c"}, "data": {"a": "1"}}
    broken = {"name": "broken", "expression": "object.data.missing"}
    pol = _policy(variables=[broken, {"name": "keys", "expression": "object.data.size()"}],
                  validations=[{"expression": "variables.keys < 1", "messageExpression": "'keys: ' + "
                                "string(variables.keys)"}])
    assert [d.message for d in _run(pol, obj)[0]] == ["keys: 1"]  # the unused broken variable fails nothing
    pol = _policy(variables=[broken], validations=[{"expression": "variables.broken == '1'"}])
    assert [d.message for d in _run(pol, obj)[0]] == [
        "expression 'variables.broken == '1'' resulted in error: no such key: missing"]
    pol = _policy(validations=[{"expression": "variables['nope'] == 1"}])
    assert [d.message for d in _run(pol, obj)[0]] == [
        "expression 'variables['nope'] == 1' resulted in error: no such key: nope"]


def test_authorizer_request_resource() -> None:
    seen: list[dict[str, Any]] = []

    class Recorder:
        def authorize(self, attrs: authz.Attributes) -> tuple[str, str]:
            seen.append({"user": attrs.user.name, "verb": attrs.verb, "group": attrs.api_group,
                         "resource": attrs.resource, "namespace": attrs.namespace, "name": attrs.name})
            return (authz.ALLOW, "") if attrs.verb == "create" else (authz.NO_OPINION, "no rule")

    plugin = ValidatingPolicyAdmission(_registry_stub(), Recorder)
    attrs = Attributes("CREATE", CM, "c", UserInfo("alice"), False, None)
    value = _Request(plugin, attrs, None, {}).authorizer_variable()
    pol = _policy(validations=[{"expression": "authorizer.requestResource.check('create').allowed()"},
                               {"expression": "authorizer.requestResource.check('delete').reason() == ''",
                                "message": "delete refused"}])
    cp = compile_policy(pol)
    activation = {"object": {}, "oldObject": None, "request": {}, "params": None, "namespaceObject": None,
                  "variables": {}, "authorizer": value}
    decisions, _ = Evaluation(cp, activation).run()
    assert [d.message for d in decisions] == ["delete refused"]
    assert seen == [{"user": "alice", "verb": v, "group": "", "resource": "configmaps", "namespace": "ns1",
                     "name": "c"} for v in ("create", "delete")]


def test_variables_must_be_declared_before_use() -> None:
    errs = _texts(validate_policy(_policy(
        variables=[{"name": "a", "expression": "variables.b + 1"}, {"name": "b", "expression": "1"}],
        validations=[{"expression": "variables.a == 2 && variables.nope"}])))
    assert errs == [
        "spec.variables[0].expression: Invalid value: \"variables.b + 1\": compilation failed: ERROR: <input>:1:10: "
        "undefined field 'b'\n | variables.b + 1\n | .........^",
        "spec.validations[0].expression: Invalid value: \"variables.a == 2 && variables.nope\": compilation failed: "
        "ERROR: <input>:1:30: undefined field 'nope'\n | variables.a == 2 && variables.nope\n"
        " | .............................^"]
    errs = _texts(validate_policy(_policy(matchConditions=[{"name": "m", "expression": "variables.a"}])))
    assert len(errs) == 1 and "undeclared reference to 'variables" in errs[0]


def test_match_conditions_have_their_own_budget() -> None:
    obj = {"data": {f"k{i}": "v" for i in range(21)}}
    triple = "object.data.all(a, object.data.all(b, object.data.all(c, a != '' && b != '' && c != '')))"  # ~58,000
    conditions = [{"name": f"c{i}", "expression": triple} for i in range(45)]  # past 2,500,000 together
    decisions, _ = _run(_policy(matchConditions=conditions, validations=[{"expression": "true"}]), obj)
    assert [d.message for d in decisions] == [
        "validation failed due to running out of cost budget, no further validation rules will be run"]
    # Under the conditions' budget, the validations get a budget of their own (10,000,000).
    assert _run(_policy(matchConditions=conditions[:40], validations=[{"expression": triple}] * 150), obj)[0] == []


def test_type_checking_against_the_matched_kinds() -> None:
    rules = [{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
              "resources": ["deployments", "replicasets", "deployments/scale"]},
             {"operations": ["CREATE"], "apiGroups": ["*"], "apiVersions": ["v1"], "resources": ["pods"]}]
    pol = _policy(matchConstraints={"resourceRules": rules},
                  validations=[{"expression": "object.spec.replicas <= 5 && object.metadata.labels.app != ''"},
                               {"expression": "object.spec.replicaz <= 5",
                                "messageExpression": "'n: ' + string(object.spec.template.spec.containers.size())"}])
    assert expression_warnings(pol) == [{
        "fieldRef": "spec.validations[1].expression",
        "warning": "apps/v1, Kind=Deployment: compilation failed: ERROR: <input>:1:12: undefined field 'replicaz'\n"
                   " | object.spec.replicaz <= 5\n | ...........^\n\n"
                   "apps/v1, Kind=ReplicaSet: compilation failed: ERROR: <input>:1:12: undefined field 'replicaz'\n"
                   " | object.spec.replicaz <= 5\n | ...........^\n"}]
    with_params = _policy(paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
                          validations=[{"expression": "object.data.size() < int(params.dat.max)"}])
    (w,) = expression_warnings(with_params)
    assert w["warning"].startswith("/v1, Kind=ConfigMap: compilation failed: ERROR: <input>:1:32: undefined field "
                                   "'dat'")
