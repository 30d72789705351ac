"""ValidatingAdmissionPolicy and its bindings against a real kubesat, through kubectl and the official client:
the kinds' defaults, columns and validation messages, and the policies' denials, warnings, params, match
conditions, selectors, variables, message expressions and failure policies."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.conftest import Server, wait_for

GROUP = "admissionregistration.k8s.io"
VAP = "validatingadmissionpolicies"
VAPB = "validatingadmissionpolicybindings"


def _rule(resource: str = "configmaps", group: str = "", ops: list[str] | None = None) -> dict[str, Any]:
    return {"operations": ops or ["CREATE", "UPDATE"], "apiGroups": [group],
            "apiVersions": ["v1" if not group else "*"], "resources": [resource]}


def _policy(name: str, validations: list[dict[str, Any]], rules: list[dict[str, Any]] | None = None,
            **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
            "spec": {"matchConstraints": {"resourceRules": [_rule()] if rules is None else rules},
                     "validations": validations, **spec}}


def _binding(name: str, policy: str, actions: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
            "spec": {"policyName": policy, "validationActions": ["Deny"] if actions is None else actions, **spec}}


def _apply(server: Server, *objs: dict[str, Any]) -> None:
    for obj in objs:
        server.kubectl("apply", "-f", "-", input=json.dumps(obj))


def _delete(server: Server, *names: tuple[str, str]) -> None:
    for plural, name in names:
        server.kubectl("delete", plural, name, "--ignore-not-found")


def _ns(server: Server, name: str, labels: dict[str, str] | None = None) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}))


def _cm(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": data}


def _create_cm(api: client.ApiClient, ns: str, body: dict[str, Any]) -> ApiException | None:
    try:
        client.CoreV1Api(api).create_namespaced_config_map(ns, body)
    except ApiException as e:
        return e
    return None


def _refused(api: client.ApiClient, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as ei:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, "v1", plural, body)
    assert ei.value.status == 422, ei.value.body
    return json.loads(ei.value.body)


def _audit_annotations(server: Server, name: str, key: str) -> dict[str, str]:
    """The annotations of the audit event of a write of `name` that carries `key` (waited for a moment)."""
    deadline = time.monotonic() + 5
    while True:
        for line in (server.data_dir / "audit.log").read_text().splitlines():
            event = json.loads(line)
            if (event.get("objectRef") or {}).get("name") == name and key in (event.get("annotations") or {}):
                return dict(event["annotations"])
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------- the kinds
def test_defaults_status_and_columns(server: Server) -> None:
    pol = _policy("cols.example.com", [{"expression": "true"}],
                  paramKind={"apiVersion": "v1", "kind": "ConfigMap"})
    _apply(server, pol, _binding("cols-b", "cols.example.com",
                                 paramRef={"name": "limits", "namespace": "default"}))
    got = json.loads(server.kubectl("get", VAP, "cols.example.com", "-o", "json").stdout)
    assert got["spec"]["failurePolicy"] == "Fail"
    mc = got["spec"]["matchConstraints"]
    assert mc["matchPolicy"] == "Equivalent" and mc["namespaceSelector"] == {} and mc["objectSelector"] == {}
    assert mc["resourceRules"][0]["scope"] == "*"
    assert got["metadata"]["generation"] == 1
    wait_for(lambda: json.loads(server.kubectl("get", VAP, "cols.example.com", "-o", "json").stdout)
             .get("status", {}).get("observedGeneration") == 1, 10, "status.observedGeneration")
    b = json.loads(server.kubectl("get", VAPB, "cols-b", "-o", "json").stdout)
    assert b["spec"]["paramRef"]["parameterNotFoundAction"] == "Deny"
    table = server.kubectl("get", VAP, "cols.example.com").stdout.splitlines()
    assert table[0].split() == ["NAME", "VALIDATIONS", "PARAMKIND", "AGE"]
    assert table[1].split()[:3] == ["cols.example.com", "1", "v1/ConfigMap"]
    table = server.kubectl("get", VAPB, "cols-b").stdout.splitlines()
    assert table[0].split() == ["NAME", "POLICYNAME", "PARAMREF", "AGE"]
    assert table[1].split()[:3] == ["cols-b", "cols.example.com", "default/limits"]
    _delete(server, (VAPB, "cols-b"), (VAP, "cols.example.com"))


def test_bad_policies_refused_in_kubernetes_words(api: client.ApiClient) -> None:
    body = _refused(api, VAP, _policy("bad", [{"expression": "object.data.size() <"},
                                              {"expression": "1 + 1", "reason": "Teapot"},
                                              {"expression": "true", "messageExpression": "42"}],
                                      rules=[], failurePolicy="Sometimes"))
    msg = body["message"]
    assert msg.startswith('ValidatingAdmissionPolicy.admissionregistration.k8s.io "bad" is invalid: [')
    assert 'spec.failurePolicy: Unsupported value: "Sometimes": supported values: "Fail", "Ignore"' in msg
    assert "spec.matchConstraints.resourceRules: Required value" in msg
    assert 'spec.validations[0].expression: Invalid value: "object.data.size() <": compilation failed: ' \
        "ERROR: <input>:1:" in msg
    assert 'spec.validations[1].expression: Invalid value: "1 + 1": must evaluate to bool but got int' in msg
    assert 'spec.validations[1].reason: Unsupported value: "Teapot": supported values: "Forbidden", "Invalid", ' \
        '"RequestEntityTooLarge"' in msg
    assert 'spec.validations[2].messageExpression: Invalid value: "42": must evaluate to string but got int' in msg
    body = _refused(api, VAP, _policy("empty", []))
    assert body["message"] == (
        'ValidatingAdmissionPolicy.admissionregistration.k8s.io "empty" is invalid: [spec.validations: Required '
        "value: validations or auditAnnotations must contain at least one item, spec.auditAnnotations: Required "
        "value: validations or auditAnnotations must contain at least one item]")
    body = _refused(api, VAP, _policy("vars", [{"expression": "true"}],
                                      variables=[{"name": "1x", "expression": "true"}],
                                      matchConditions=[{"name": "a", "expression": "true"},
                                                       {"name": "a", "expression": "'s'"}]))
    msg = body["message"]
    assert 'spec.variables[0].name: Invalid value: "1x": name is not a valid CEL identifier' in msg
    assert 'spec.matchConditions[1].expression: Invalid value: "\'s\'": must evaluate to bool but got string' in msg
    assert 'spec.matchConditions[1].name: Duplicate value: "a"' in msg


def test_unknown_fields_and_explain(server: Server) -> None:
    pol = _policy("strict", [{"expression": "true", "mesage": "typo"}])
    res = server.kubectl("create", "-f", "-", input=json.dumps(pol), check=False)
    assert res.returncode == 1
    assert 'strict decoding error: unknown field "spec.validations[0].mesage"' in res.stderr
    out = server.kubectl("explain", "validatingadmissionpolicy.spec.validations.messageExpression").stdout
    assert "messageExpression" in out and "KIND:       ValidatingAdmissionPolicy" in out


def test_bad_bindings_refused_in_kubernetes_words(api: client.ApiClient) -> None:
    body = _refused(api, VAPB, _binding("b1", "p", actions=["Deny", "Warn", "Shout"],
                                        paramRef={"name": "x", "selector": {}, "parameterNotFoundAction": "Maybe"}))
    msg = body["message"]
    assert 'spec.validationActions[2]: Unsupported value: "Shout": supported values: "Audit", "Deny", "Warn"' in msg
    assert 'spec.validationActions: Invalid value: []admissionregistration.ValidationAction{"Deny", "Warn", ' \
        '"Shout"}: must not contain both Deny and Warn (repeating the same validation failure information in the ' \
        "API response and headers serves no purpose)" in msg
    assert "spec.paramRef.name: Forbidden: name and selector are mutually exclusive" in msg
    assert "spec.paramRef.selector: Forbidden: name and selector are mutually exclusive" in msg
    assert 'spec.paramRef.parameterNotFoundAction: Unsupported value: "Maybe": supported values: "Deny", ' \
        '"Allow"' in msg
    body = _refused(api, VAPB, _binding("b2", "", actions=[], paramRef={}))
    assert body["message"] == (
        'ValidatingAdmissionPolicyBinding.admissionregistration.k8s.io "b2" is invalid: [spec.policyName: Required '
        "value, spec.paramRef: Required value: one of name or selector must be specified, "
        "spec.validationActions: Required value: at least one validation action is required]")


# ----------------------------------------------------------------------------------------------- enforcement
def test_deny_with_message_and_code_then_warn(server: Server, api: client.ApiClient) -> None:
    _ns(server, "vap-deny")
    _apply(server, _policy("small-cm", [{"expression": "object.data.size() <= 3", "message": "at most 3 keys"}]),
           _binding("small-cm-b", "small-cm"))
    big = _cm("big", {k: "v" for k in "abcd"})
    err = _create_cm(api, "vap-deny", big)
    assert err is not None and err.status == 422
    status = json.loads(err.body)
    want = ('configmaps "big" is forbidden: ValidatingAdmissionPolicy \'small-cm\' with binding \'small-cm-b\' '
            "denied request: at most 3 keys")
    assert status["message"] == want and status["reason"] == "Invalid"
    assert status["details"]["causes"] == [{"message": want.split(": ", 1)[1]}]
    assert _create_cm(api, "vap-deny", _cm("ok", {"a": "1"})) is None
    # Validating admission runs after the name is generated (BeforeCreate): the message shows it.
    generated = {**big, "metadata": {"generateName": "big-"}}
    err = _create_cm(api, "vap-deny", generated)
    assert err is not None and re.match(r'configmaps "big-[a-z0-9]{5}" is forbidden: ', json.loads(err.body)["message"])
    res = server.kubectl("create", "-n", "vap-deny", "-f", "-", input=json.dumps(big), check=False)
    # kubectl prints an Invalid status from its causes (one without a field): as it prints kube-apiserver's.
    assert res.returncode == 1 and res.stderr.strip() == f'The configmaps "big" is invalid: : {want.split(": ", 1)[1]}'
    # Warn only: the write goes through and kubectl prints the warning.
    _apply(server, _binding("small-cm-b", "small-cm", actions=["Warn", "Audit"]))
    res = server.kubectl("create", "-n", "vap-deny", "-f", "-", input=json.dumps(big))
    assert ("Warning: Validation failed for ValidatingAdmissionPolicy 'small-cm' with binding 'small-cm-b': "
            "at most 3 keys") in res.stderr
    _delete(server, (VAPB, "small-cm-b"), (VAP, "small-cm"))


def test_deployment_replicas_forbidden_reason_and_message_expression(server: Server, api: client.ApiClient) -> None:
    _ns(server, "vap-deploy")
    rules = [_rule("deployments", "apps")]
    _apply(server, _policy("replicas", [{
        "expression": "object.spec.replicas <= 5", "reason": "Forbidden",
        "messageExpression": "'replicas ' + string(object.spec.replicas) + ' is over 5'"}], rules=rules),
        _binding("replicas-b", "replicas"))
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 7, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    with pytest.raises(ApiException) as ei:
        client.AppsV1Api(api).create_namespaced_deployment("vap-deploy", dep)
    assert ei.value.status == 403
    assert json.loads(ei.value.body)["message"] == (
        'deployments.apps "web" is forbidden: ValidatingAdmissionPolicy \'replicas\' with binding \'replicas-b\' '
        "denied request: replicas 7 is over 5")
    dep["spec"]["replicas"] = 2
    client.AppsV1Api(api).create_namespaced_deployment("vap-deploy", dep)
    # The rule names deployments, not deployments/scale: the scale subresource is not matched.
    server.kubectl("scale", "-n", "vap-deploy", "deployment/web", "--replicas=9")
    res = server.kubectl("patch", "-n", "vap-deploy", "deployment/web", "-p", '{"spec":{"replicas":6}}', check=False)
    assert "replicas 6 is over 5" in res.stderr
    _delete(server, (VAPB, "replicas-b"), (VAP, "replicas"))


def test_params_by_name_selector_and_not_found(server: Server, api: client.ApiClient) -> None:
    _ns(server, "vap-params")
    _apply(server, _policy("max-keys", [{
        "expression": "object.data.size() <= int(params.data.max)",
        "messageExpression": "'more than ' + params.data.max + ' keys'"}],
        paramKind={"apiVersion": "v1", "kind": "ConfigMap"}),
        _binding("max-keys-b", "max-keys", paramRef={"name": "limit", "parameterNotFoundAction": "Deny"},
                 matchResources={"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vap-params"}},
                                 "objectSelector": {"matchExpressions": [{"key": "param", "operator":
                                                                          "DoesNotExist"}]}}))
    err = _create_cm(api, "vap-params", _cm("two", {"a": "1", "b": "2"}))
    assert err is not None and err.status == 422
    assert json.loads(err.body)["message"] == (
        'configmaps "two" is forbidden: ValidatingAdmissionPolicy \'max-keys\' with binding \'max-keys-b\' denied '
        "request: failed to configure binding: no params found for policy binding with `Deny` "
        "parameterNotFoundAction")
    assert _create_cm(api, "vap-params", _cm("limit", {"max": "1"}, {"param": "yes"})) is None
    err = _create_cm(api, "vap-params", _cm("two", {"a": "1", "b": "2"}))
    assert err is not None and "denied request: more than 1 keys" in json.loads(err.body)["message"]
    assert _create_cm(api, "vap-params", _cm("one", {"a": "1"})) is None
    # By selector: every selected param is checked.
    _apply(server, _binding("max-keys-b", "max-keys",
                            paramRef={"selector": {"matchLabels": {"param": "yes"}},
                                      "parameterNotFoundAction": "Allow"},
                            matchResources={"objectSelector": {"matchExpressions": [{"key": "param",
                                                                                     "operator": "DoesNotExist"}]}}))
    assert _create_cm(api, "vap-params", _cm("limit2", {"max": "3"}, {"param": "yes"})) is None
    err = _create_cm(api, "vap-params", _cm("two", {"a": "1", "b": "2"}))
    assert err is not None and "more than 1 keys" in json.loads(err.body)["message"]
    client.CoreV1Api(api).delete_namespaced_config_map("limit", "vap-params")
    assert _create_cm(api, "vap-params", _cm("two", {"a": "1", "b": "2"})) is None
    # Allow with nothing selected: no validation.
    _apply(server, _binding("max-keys-b", "max-keys",
                            paramRef={"selector": {"matchLabels": {"param": "none"}},
                                      "parameterNotFoundAction": "Allow"},
                            matchResources={"objectSelector": {"matchExpressions": [{"key": "param",
                                                                                     "operator": "DoesNotExist"}]}}))
    err = _create_cm(api, "vap-params", _cm("many", {k: "v" for k in "abcdef"}))
    assert err is None, err.body
    _delete(server, (VAPB, "max-keys-b"), (VAP, "max-keys"))


def test_match_conditions_namespace_selector_and_variables(server: Server, api: client.ApiClient) -> None:
    _ns(server, "vap-on", {"policy": "on"})
    _ns(server, "vap-off")
    _apply(server, _policy("named", [{"expression": "variables.prefixed", "message": "name must start with app-"}],
                           matchConditions=[{"name": "not-exempt",
                                             "expression": "!has(object.metadata.labels) || "
                                                           "!('exempt' in object.metadata.labels)"}],
                           variables=[{"name": "name", "expression": "object.metadata.name"},
                                      {"name": "prefixed", "expression": "variables.name.startsWith('app-')"}],
                           matchConstraints={"resourceRules": [_rule()],
                                             "namespaceSelector": {"matchLabels": {"policy": "on"}}}),
           _binding("named-b", "named"))
    err = _create_cm(api, "vap-on", _cm("db", {}))
    assert err is not None and "denied request: name must start with app-" in json.loads(err.body)["message"]
    assert _create_cm(api, "vap-on", _cm("app-db", {})) is None
    assert _create_cm(api, "vap-on", _cm("db", {}, {"exempt": "yes"})) is None  # matchCondition false: skipped
    assert _create_cm(api, "vap-off", _cm("db", {})) is None  # namespace not selected
    _delete(server, (VAPB, "named-b"), (VAP, "named"))


def test_failure_policy_on_runtime_errors(server: Server, api: client.ApiClient) -> None:
    _ns(server, "vap-errors")
    expr = "object.data.missing == 'x'"
    _apply(server, _policy("errs", [{"expression": expr}]), _binding("errs-b", "errs"))
    err = _create_cm(api, "vap-errors", _cm("c1", {"a": "1"}))
    assert err is not None and err.status == 422
    assert json.loads(err.body)["message"] == (
        'configmaps "c1" is forbidden: ValidatingAdmissionPolicy \'errs\' with binding \'errs-b\' denied request: '
        f"expression '{expr}' resulted in error: no such key: missing")
    _apply(server, _policy("errs", [{"expression": expr}], failurePolicy="Ignore"))
    assert _create_cm(api, "vap-errors", _cm("c1", {"a": "1"})) is None
    # A false result still denies under Ignore.
    _apply(server, _policy("errs", [{"expression": "false"}], failurePolicy="Ignore"))
    err = _create_cm(api, "vap-errors", _cm("c2", {"a": "1"}))
    assert err is not None and "denied request: failed expression: false" in json.loads(err.body)["message"]
    _delete(server, (VAPB, "errs-b"), (VAP, "errs"))


def test_policy_on_a_custom_resource(server: Server, api: client.ApiClient) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.vap.example.com"},
           "spec": {"group": "vap.example.com", "scope": "Namespaced",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "size": {"type": "integer"}}}}}}}]}}
    _apply(server, crd)
    wait_for(lambda: server.kubectl("get", "gadgets", check=False).returncode == 0, 10, "gadgets served")
    rules = [{"operations": ["CREATE"], "apiGroups": ["vap.example.com"], "apiVersions": ["v1"],
              "resources": ["gadgets"]}]
    _apply(server, _policy("gadget-size", [{"expression": "object.spec.size < 10", "message": "too big"},
                                           {"expression": "object.spec.sise < 10 && object.metadata.name != ''"}],
                           rules=rules),
           _binding("gadget-size-b", "gadget-size"))
    # status.typeChecking: the typo checked against the Gadget schema (the policy still applies).
    wait_for(lambda: json.loads(server.kubectl("get", VAP, "gadget-size", "-o", "json").stdout)
             .get("status", {}).get("observedGeneration") == 1, 10, "the type check")
    status = json.loads(server.kubectl("get", VAP, "gadget-size", "-o", "json").stdout)["status"]
    assert status["typeChecking"] == {"expressionWarnings": [{
        "fieldRef": "spec.validations[1].expression",
        "warning": "vap.example.com/v1, Kind=Gadget: compilation failed: ERROR: <input>:1:12: undefined field "
                   "'sise'\n | object.spec.sise < 10 && object.metadata.name != ''\n | ...........^\n"}]}
    _apply(server, _policy("gadget-size", [{"expression": "object.spec.size < 10", "message": "too big"}],
                           rules=rules))
    wait_for(lambda: json.loads(server.kubectl("get", VAP, "gadget-size", "-o", "json").stdout)
             .get("status", {}) == {"observedGeneration": 2, "typeChecking": {}}, 10, "the second type check")
    g = {"apiVersion": "vap.example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 12}}
    res = server.kubectl("create", "-n", "default", "-f", "-", input=json.dumps(g), check=False)
    assert res.stderr.strip() == ('The gadgets "g1" is invalid: : ValidatingAdmissionPolicy \'gadget-size\' with '
                                  "binding 'gadget-size-b' denied request: too big")
    with pytest.raises(ApiException) as ei:
        client.CustomObjectsApi(api).create_namespaced_custom_object("vap.example.com", "v1", "default", "gadgets", g)
    assert ei.value.status == 422 and json.loads(ei.value.body)["message"] == (
        'gadgets.vap.example.com "g1" is forbidden: ValidatingAdmissionPolicy \'gadget-size\' with binding '
        "'gadget-size-b' denied request: too big")
    g["spec"]["size"] = 3
    server.kubectl("create", "-n", "default", "-f", "-", input=json.dumps(g))
    _delete(server, (VAPB, "gadget-size-b"), (VAP, "gadget-size"))


def test_audit_action_and_audit_annotations(server: Server, api: client.ApiClient) -> None:
    _ns(server, "vap-audit")
    _apply(server, _policy("audited", [{"expression": "object.data.size() <= 1", "message": "one key at most"}],
                           auditAnnotations=[{"key": "keys", "valueExpression": "string(object.data.size())"}]),
           _binding("audited-b", "audited", actions=["Audit"]))
    assert _create_cm(api, "vap-audit", _cm("audited-cm", {"a": "1", "b": "2"})) is None
    annotations = _audit_annotations(server, "audited-cm", "validation.policy.admission.k8s.io/validation_failure")
    assert json.loads(annotations["validation.policy.admission.k8s.io/validation_failure"]) == [
        {"message": "one key at most", "policy": "audited", "binding": "audited-b", "expressionIndex": 0,
         "validationActions": ["Audit"]}]
    assert annotations["audited/keys"] == "2"
    _delete(server, (VAPB, "audited-b"), (VAP, "audited"))


def test_delete_sees_old_object(server: Server, api: client.ApiClient) -> None:
    _ns(server, "vap-delete")
    _apply(server, _policy("keep", [{"expression": "object == null && request.operation == 'DELETE' && "
                                                   "!(has(oldObject.metadata.labels) && "
                                                   "'protected' in oldObject.metadata.labels)",
                                     "messageExpression": "oldObject.metadata.name + ' is protected'"}],
                           rules=[_rule(ops=["DELETE"])]),
           _binding("keep-b", "keep"))
    assert _create_cm(api, "vap-delete", _cm("guarded", {}, {"protected": "yes"})) is None
    assert _create_cm(api, "vap-delete", _cm("free", {})) is None
    res = server.kubectl("delete", "configmap", "-n", "vap-delete", "guarded", check=False)
    assert res.returncode == 1 and res.stderr.strip() == (
        "The configmaps \"guarded\" is invalid: : ValidatingAdmissionPolicy 'keep' with binding 'keep-b' denied "
        "request: guarded is protected")
    server.kubectl("delete", "configmap", "-n", "vap-delete", "free")
    _delete(server, (VAPB, "keep-b"), (VAP, "keep"))


def test_authorizer_variable(server: Server, api: client.ApiClient) -> None:
    _ns(server, "vap-authz")
    may = "authorizer.group('').resource('secrets').namespace(object.metadata.namespace).check('list').allowed()"
    sa_may = ("authorizer.serviceAccount('vap-authz', 'nobody').group('').resource('secrets')"
              ".namespace(object.metadata.namespace).check('list').allowed()")
    _apply(server, _policy("authz", [{"expression": may, "message": "requester may not list secrets"},
                                     {"expression": sa_may, "message": "nobody may not list secrets"},
                                     {"expression": "authorizer.requestResource.check('create').allowed()",
                                      "message": "requester may not create it"}]),
           _binding("authz-b", "authz"))
    err = _create_cm(api, "vap-authz", _cm("c", {}))  # the admin may; the ServiceAccount has no role
    assert err is not None and json.loads(err.body)["message"].endswith("denied request: nobody may not list secrets")
    server.kubectl("create", "rolebinding", "nobody-view", "-n", "vap-authz", "--clusterrole=admin",
                   "--serviceaccount=vap-authz:nobody")
    assert _create_cm(api, "vap-authz", _cm("c", {})) is None
    _delete(server, (VAPB, "authz-b"), (VAP, "authz"))


def test_readme_example(server: Server) -> None:
    policy = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: replicas-limit}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  validations:
  - expression: object.spec.replicas <= int(params.data.max)
    messageExpression: "'replicas must be at most ' + params.data.max"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: replicas-limit}
spec:
  policyName: replicas-limit
  validationActions: [Deny]
  paramRef: {name: replicas-limit, namespace: default, parameterNotFoundAction: Deny}
"""
    server.kubectl("apply", "-f", "-", input=policy)
    server.kubectl("create", "configmap", "replicas-limit", "-n", "default", "--from-literal=max=5")
    res = server.kubectl("create", "deployment", "web", "-n", "default", "--image=nginx", "--replicas=9", check=False)
    assert res.returncode == 1 and res.stderr.strip() == (
        'error: failed to create deployment: deployments.apps "web" is forbidden: ValidatingAdmissionPolicy '
        "'replicas-limit' with binding 'replicas-limit' denied request: replicas must be at most 5")
    server.kubectl("create", "deployment", "web", "-n", "default", "--image=nginx", "--replicas=3")
    _delete(server, (VAPB, "replicas-limit"), (VAP, "replicas-limit"))


def test_policies_never_apply_to_admission_kinds(server: Server, api: client.ApiClient) -> None:
    _apply(server, _policy("no-admission", [{"expression": "false"}],
                           rules=[_rule("*", GROUP, ["*"])]), _binding("no-admission-b", "no-admission"))
    _apply(server, _policy("still-ok", [{"expression": "true"}]))  # not refused: policies are exempt
    _delete(server, (VAPB, "no-admission-b"), (VAP, "no-admission"), (VAP, "still-ok"))
