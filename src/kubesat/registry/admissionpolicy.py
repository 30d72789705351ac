"""admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding: v1 defaults,
validation (expressions compiled) with Kubernetes' messages, and the `kubectl get` columns."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any

from kubesat.apimachinery.cel import DYN, CompileError, Compiled, Env
from kubesat.apimachinery.cel.checked import Node
from kubesat.apimachinery.duration import age
from kubesat.errors import FieldError, duplicate, forbidden_field, invalid_value, not_supported, required, too_many
from kubesat.registry.admissionregistration import FAILURE_POLICIES, MATCH_POLICIES, validate_rule
from kubesat.registry.meta import (
    GoValue, age_column, as_dict, column, dns1035_label, dns1123_subdomain, go_quote, go_struct, name_column,
    path_segment_name, qualified_name,
)
from kubesat.registry.podtemplate import validate_label_selector
from kubesat.registry.strategy import Strategy

REASONS = ["Forbidden", "Invalid", "RequestEntityTooLarge"]
VALIDATION_ACTIONS = ["Audit", "Deny", "Warn"]
NOT_FOUND_ACTIONS = ["Deny", "Allow"]
MAX_AUDIT_ANNOTATIONS = 20
MAX_MATCH_CONDITIONS = 64
MAX_VALUE_EXPRESSION_BYTES = 5 * 1024
MAX_COMPILED = 4096  # expressions checked per policy at most (each list is bounded by the request size anyway)
# The variables a policy's expressions see; `params` only with a paramKind, `authorizer` in all but messageExpression.
BASE_VARIABLES = ("object", "oldObject", "request", "namespaceObject", "variables")
_CEL_IDENT = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")
_CEL_RESERVED = frozenset({"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
                           "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
                           "void", "while"})
_NEWLINES = re.compile(r"[\n\r]+")


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


# ------------------------------------------------------------------------------------------------ compiling
def variable_names(has_params: bool, has_authorizer: bool = True, has_variables: bool = True) -> tuple[str, ...]:
    """The variables an expression is checked against: matchConditions have no `variables`, messageExpression no
    `authorizer`."""
    names = BASE_VARIABLES if has_variables else tuple(n for n in BASE_VARIABLES if n != "variables")
    return names + (("params",) if has_params else ()) + (("authorizer",) if has_authorizer else ())


@functools.lru_cache(maxsize=8)
def _env(names: tuple[str, ...]) -> Env:
    return Env(dict.fromkeys(names, DYN))


def compile_policy_expression(expression: str, names: tuple[str, ...]) -> Compiled:
    """One policy expression checked against dynamic admission variables (raises CompileError)."""
    return _env(names).compile(expression)


def variable_references(node: Node | None) -> list[tuple[str, int]]:
    """Each `variables.NAME` (or `variables['NAME']`) an expression reads: (NAME, the node's id)."""
    if node is None:
        return []
    if node.kind == "select" and node.operand is not None and node.operand.kind == "ident" \
            and node.operand.name == "variables":
        return [(node.name, node.id)]
    if node.kind == "call" and node.name == "_[_]" and len(node.args) == 2 and node.args[0].kind == "ident" \
            and node.args[0].name == "variables" and isinstance(node.args[1].value, str):
        return [(node.args[1].value, node.id)]
    out: list[tuple[str, int]] = []
    for child in (node.operand, node.iter_range, node.accu_init, node.loop_condition, node.loop_step, node.result,
                  *node.args):
        out += variable_references(child)
    return out


def _undefined_variables(compiled: Compiled, defined: frozenset[str]) -> str:
    """cel-go's issues for `variables.X` naming no variable declared before (the `variables` object's fields)."""
    expr = compiled.source
    issues = []
    refs = [(compiled.checked.positions.get(i, 0), name) for name, i in variable_references(compiled.checked.root)]
    for offset, name in sorted(refs):
        if name in defined:
            continue
        line_start = expr.rfind("\n", 0, offset) + 1
        line_end = expr.find("\n", offset)
        text = expr[line_start:] if line_end < 0 else expr[line_start:line_end]
        line, col = expr.count("\n", 0, offset) + 1, offset - line_start
        issues.append(f"ERROR: <input>:{line}:{col + 1}: undefined field '{name}'\n | {text}\n | {'.' * col}^")
    return "\n".join(issues)


_CEL_TYPE_NAMES = {"NULL": "null_type", "DURATION": "google.protobuf.Duration",
                   "TIMESTAMP": "google.protobuf.Timestamp"}


def cel_type_name(result_type: str) -> str:
    """The checker's type name as cel-go prints it (`int`, `list(int)`, `map(string, int)`)."""
    text = _CEL_TYPE_NAMES.get(result_type, result_type)
    return text.replace("<", "(").replace(">", ")").lower() if text == result_type else text


def _compile_errors(expression: str, path: str, names: tuple[str, ...], returns: tuple[str, ...],
                    shown: str | None = None, defined: frozenset[str] = frozenset()) -> list[FieldError]:
    """compile.go's CompileCELExpression: `compilation failed: <issues>` (a variable used must be declared before),
    or the wrong result type."""
    value = expression if shown is None else shown
    try:
        compiled = compile_policy_expression(expression, names)
    except CompileError as e:
        return [invalid_value(path, value, f"compilation failed: {e}")]
    undefined = _undefined_variables(compiled, defined)
    if undefined:
        return [invalid_value(path, value, f"compilation failed: {undefined}")]
    if not returns or compiled.result_type == "DYN" or compiled.result_type in returns:
        return []
    got = cel_type_name(compiled.result_type)
    if len(returns) == 1:
        return [invalid_value(path, value, f"must evaluate to {cel_type_name(returns[0])} but got {got}")]
    wanted = " ".join(cel_type_name(r) for r in returns)
    return [invalid_value(path, value, f"must evaluate to one of [{wanted}] but got {got}")]


# ------------------------------------------------------------------------------------------------ defaults
def default_match_resources(mr: dict[str, Any]) -> None:
    """SetDefaults_MatchResources and SetDefaults_Rule of each (named) rule."""
    mr.setdefault("matchPolicy", "Equivalent")
    if mr.get("namespaceSelector") is None:
        mr["namespaceSelector"] = {}
    if mr.get("objectSelector") is None:
        mr["objectSelector"] = {}
    for key in ("resourceRules", "excludeResourceRules"):
        for rule in _l(mr.get(key)):
            if isinstance(rule, dict) and rule.get("scope") is None:
                rule["scope"] = "*"


def default_policy(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("failurePolicy", "Fail")
    if isinstance(spec.get("matchConstraints"), dict):
        default_match_resources(spec["matchConstraints"])


def default_binding(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if isinstance(spec.get("matchResources"), dict):
        default_match_resources(spec["matchResources"])
    if isinstance(spec.get("paramRef"), dict) and spec["paramRef"].get("parameterNotFoundAction") is None:
        spec["paramRef"]["parameterNotFoundAction"] = "Deny"


# ---------------------------------------------------------------------------------------------- validation
def validate_param_kind(pk: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    api_version = _s(pk.get("apiVersion"))
    if not api_version:
        errs.append(required(f"{path}.apiVersion"))
    elif api_version.count("/") > 1:
        errs.append(invalid_value(f"{path}.apiVersion", api_version,
                                  f"unexpected GroupVersion string: {api_version}"))
    elif api_version != "/":
        group, _, version = api_version.rpartition("/")
        if group and dns1123_subdomain(group):
            errs.append(invalid_value(f"{path}.apiVersion", group, ",".join(dns1123_subdomain(group))))
        if not version:
            errs.append(invalid_value(f"{path}.apiVersion", api_version, "version must be specified"))
        elif dns1035_label(version):
            errs.append(invalid_value(f"{path}.apiVersion", version, ",".join(dns1035_label(version))))
    kind = _s(pk.get("kind"))
    if not kind:
        errs.append(required(f"{path}.kind"))
    elif dns1035_label(kind.lower()):
        errs.append(invalid_value(f"{path}.kind", kind, "may have mixed case, but should otherwise match: "
                                  + ",".join(dns1035_label(kind.lower()))))
    return errs


def _validate_named_rule(rule: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, name in enumerate(_l(rule.get("resourceNames"))):
        name = str(name)
        errs += [invalid_value(f"{path}.resourceNames[{i}]", name, m) for m in path_segment_name(name)]
        if name in seen:
            errs.append(duplicate(f"{path}.resourceNames[{i}]", name))
        seen.add(name)
    return errs + validate_rule(rule, path)


def validate_match_resources(mr: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    policy = mr.get("matchPolicy")
    if policy is None:
        errs.append(required(f"{path}.matchPolicy"))
    elif policy not in MATCH_POLICIES:
        errs.append(not_supported(f"{path}.matchPolicy", policy, MATCH_POLICIES))
    for key in ("namespaceSelector", "objectSelector"):
        if mr.get(key) is None:
            errs.append(required(f"{path}.{key}"))
        else:
            errs += validate_label_selector(mr.get(key), f"{path}.{key}")
    for key in ("resourceRules", "excludeResourceRules"):
        for i, rule in enumerate(_l(mr.get(key))):
            errs += _validate_named_rule(as_dict(rule), f"{path}.{key}[{i}]")
    return errs


def _validate_match_conditions(conds: list[Any], path: str, has_params: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(conds) > MAX_MATCH_CONDITIONS:
        errs.append(too_many(path, len(conds), MAX_MATCH_CONDITIONS))
    seen: set[str] = set()
    for i, cond in enumerate(conds[:MAX_MATCH_CONDITIONS * 2]):
        c = as_dict(cond)
        expression = _s(c.get("expression")).strip()
        if not expression:
            errs.append(required(f"{path}[{i}].expression"))
        else:
            errs += _compile_errors(expression, f"{path}[{i}].expression",
                                    variable_names(has_params, has_variables=False), ("BOOL",))
        name = _s(c.get("name"))
        if not name:
            errs.append(required(f"{path}[{i}].name"))
            continue
        errs += [invalid_value(f"{path}[{i}].name", name, m) for m in qualified_name(name)]
        if name in seen:
            errs.append(duplicate(f"{path}[{i}].name", name))
        seen.add(name)
    return errs


def _validate_variable(v: dict[str, Any], path: str, has_params: bool, defined: frozenset[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    name = _s(v.get("name"))
    if not name.strip():
        errs.append(required(f"{path}.name", "name is not specified"))
    elif not _CEL_IDENT.match(name) or name in _CEL_RESERVED:
        errs.append(invalid_value(f"{path}.name", name, "name is not a valid CEL identifier"))
    expression = _s(v.get("expression"))
    if not expression.strip():
        errs.append(required(f"{path}.expression", "expression is not specified"))
    else:
        errs += _compile_errors(expression, f"{path}.expression", variable_names(has_params), (), defined=defined)
    return errs


def _validate_validation(v: dict[str, Any], path: str, has_params: bool, defined: frozenset[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    expression = _s(v.get("expression"))
    if not expression.strip():
        errs.append(required(f"{path}.expression", "expression is not specified"))
    else:
        errs += _compile_errors(expression, f"{path}.expression", variable_names(has_params), ("BOOL",),
                                defined=defined)
    message_expression = _s(v.get("messageExpression"))
    if message_expression and not message_expression.strip():
        errs.append(invalid_value(f"{path}.messageExpression", message_expression, "must be non-empty if specified"))
    elif message_expression.strip():
        errs += _compile_errors(message_expression, f"{path}.messageExpression",
                                variable_names(has_params, has_authorizer=False), ("STRING",), defined=defined)
    message = _s(v.get("message"))
    if message and not message.strip():
        errs.append(invalid_value(f"{path}.message", message, "message must be non-empty if specified"))
    elif _NEWLINES.search(message.strip()):
        errs.append(invalid_value(f"{path}.message", message, "message must not contain line breaks"))
    reason = v.get("reason")
    if reason is not None and reason not in REASONS:
        errs.append(not_supported(f"{path}.reason", reason, REASONS))
    return errs


def _validate_audit_annotation(a: dict[str, Any], policy_name: str, path: str, has_params: bool,
                               defined: frozenset[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    key = _s(a.get("key"))
    if policy_name:
        full = f"{policy_name}/{key}"
        errs += [invalid_value(f"{path}.key", full, m) for m in qualified_name(full)]
    else:
        errs.append(invalid_value(f"{path}.key", key, "requires metadata.name be non-empty"))
    value_expression = _s(a.get("valueExpression"))
    trimmed = value_expression.strip()
    if not trimmed:
        errs.append(required(f"{path}.valueExpression", "valueExpression is not specified"))
    elif len(trimmed.encode()) > MAX_VALUE_EXPRESSION_BYTES:
        errs.append(required(f"{path}.valueExpression",
                             f"must not exceed {MAX_VALUE_EXPRESSION_BYTES} bytes in length"))
    else:
        errs += _compile_errors(trimmed, f"{path}.valueExpression", variable_names(has_params), ("STRING", "NULL"),
                                shown=value_expression, defined=defined)
    return errs


def _go_audit_annotations(items: list[Any]) -> GoValue:
    shown = [go_struct("admissionregistration.AuditAnnotation",
                       [("Key", _s(as_dict(a).get("key"))), ("ValueExpression", _s(as_dict(a).get("valueExpression")))])
             for a in items]
    return GoValue("[]admissionregistration.AuditAnnotation{" + ", ".join(str(s) for s in shown) + "}")


def _validate_audit_annotations(items: list[Any], policy_name: str, path: str, has_params: bool,
                                defined: frozenset[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(items) > MAX_AUDIT_ANNOTATIONS:
        errs.append(invalid_value(path, _go_audit_annotations(items),
                                  f"must not have more than {MAX_AUDIT_ANNOTATIONS} auditAnnotations"))
    keys: set[str] = set()
    for i, raw in enumerate(items[:MAX_COMPILED]):
        a = as_dict(raw)
        errs += _validate_audit_annotation(a, policy_name, f"{path}[{i}]", has_params, defined)
        key = _s(a.get("key"))
        if key in keys:
            errs.append(duplicate(f"{path}[{i}].key", key))
        keys.add(key)
    return errs


def validate_policy(obj: dict[str, Any]) -> list[FieldError]:
    """validateValidatingAdmissionPolicySpec."""
    spec = as_dict(obj.get("spec"))
    name = _s(as_dict(obj.get("metadata")).get("name"))
    errs: list[FieldError] = []
    failure = spec.get("failurePolicy")
    if failure is None:
        errs.append(required("spec.failurePolicy"))
    elif failure not in FAILURE_POLICIES:
        errs.append(not_supported("spec.failurePolicy", failure, FAILURE_POLICIES))
    has_params = isinstance(spec.get("paramKind"), dict)
    if has_params:
        errs += validate_param_kind(spec["paramKind"], "spec.paramKind")
    mc = spec.get("matchConstraints")
    if not isinstance(mc, dict):
        errs.append(required("spec.matchConstraints"))
    else:
        errs += validate_match_resources(mc, "spec.matchConstraints")
        if not _l(mc.get("resourceRules")):
            errs.append(required("spec.matchConstraints.resourceRules"))
    errs += _validate_match_conditions(_l(spec.get("matchConditions")), "spec.matchConditions", has_params)
    defined: set[str] = set()
    for i, v in enumerate(_l(spec.get("variables"))[:MAX_COMPILED]):
        errs += _validate_variable(as_dict(v), f"spec.variables[{i}]", has_params, frozenset(defined))
        defined.add(_s(as_dict(v).get("name")))
    validations, annotations = _l(spec.get("validations")), _l(spec.get("auditAnnotations"))
    if not validations and not annotations:
        why = "validations or auditAnnotations must contain at least one item"
        return errs + [required("spec.validations", why), required("spec.auditAnnotations", why)]
    for i, v in enumerate(validations[:MAX_COMPILED]):
        errs += _validate_validation(as_dict(v), f"spec.validations[{i}]", has_params, frozenset(defined))
    return errs + _validate_audit_annotations(annotations, name, "spec.auditAnnotations", has_params,
                                              frozenset(defined))


def validate_param_ref(pr: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name, selector = _s(pr.get("name")), pr.get("selector")
    exclusive = "name and selector are mutually exclusive"
    if name:
        errs += [invalid_value(f"{path}.name", name, m) for m in path_segment_name(name)]
        if selector is not None:
            errs.append(forbidden_field(f"{path}.name", exclusive))
    if selector is not None:
        errs += validate_label_selector(selector, f"{path}.selector")
        if name:
            errs.append(forbidden_field(f"{path}.selector", exclusive))
    if not name and selector is None:
        errs.append(required(path, "one of name or selector must be specified"))
    action = pr.get("parameterNotFoundAction")
    if not action:
        errs.append(required(f"{path}.parameterNotFoundAction"))
    elif action not in NOT_FOUND_ACTIONS:
        errs.append(not_supported(f"{path}.parameterNotFoundAction", action, NOT_FOUND_ACTIONS))
    return errs


def validate_validation_actions(actions: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, action in enumerate(actions):
        if action not in VALIDATION_ACTIONS:
            errs.append(not_supported(f"{path}[{i}]", action, VALIDATION_ACTIONS))
        if action in seen:
            errs.append(duplicate(f"{path}[{i}]", action))
        seen.add(str(action))
    if "Deny" in seen and "Warn" in seen:
        shown = GoValue("[]admissionregistration.ValidationAction{" + ", ".join(go_quote(a) for a in actions) + "}")
        errs.append(invalid_value(path, shown, "must not contain both Deny and Warn (repeating the same validation "
                                  "failure information in the API response and headers serves no purpose)"))
    if not seen:
        errs.append(required(path, "at least one validation action is required"))
    return errs


def validate_binding(obj: dict[str, Any]) -> list[FieldError]:
    """validateValidatingAdmissionPolicyBindingSpec (its matchResources path is spelt as Kubernetes spells it)."""
    spec = as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    policy = _s(spec.get("policyName"))
    if not policy:
        errs.append(required("spec.policyName"))
    else:
        errs += [invalid_value("spec.policyName", policy, m) for m in dns1123_subdomain(policy)]
    if isinstance(spec.get("paramRef"), dict):
        errs += validate_param_ref(spec["paramRef"], "spec.paramRef")
    if isinstance(spec.get("matchResources"), dict):
        errs += validate_match_resources(spec["matchResources"], "spec.matchResouces")
    return errs + validate_validation_actions(_l(spec.get("validationActions")), "spec.validationActions")


# ------------------------------------------------------------------------------------------------ strategies
def param_kind_cell(obj: dict[str, Any]) -> str:
    pk = as_dict(obj.get("spec")).get("paramKind")
    if not isinstance(pk, dict):
        return "<unset>"
    return f"{_s(pk.get('apiVersion'))}/{_s(pk.get('kind'))}"


def _go_selector(selector: dict[str, Any]) -> str:
    """LabelSelector's gogo-protobuf String(), as the ParamRef column prints a selector."""
    labels = as_dict(selector.get("matchLabels"))
    shown_labels = ",".join(f"{k}: {labels[k]}" for k in sorted(labels))
    exprs = []
    for e in _l(selector.get("matchExpressions")):
        d = as_dict(e)
        values = ",".join(str(v) for v in _l(d.get("values")))
        exprs.append(f"LabelSelectorRequirement{{Key:{_s(d.get('key'))},Operator:{_s(d.get('operator'))},"
                     f"Values:[]string{{{values}}},}}")
    shown_labels = f"map[string]string{{{shown_labels},}}" if labels else "map[string]string{}"
    return (f"&LabelSelector{{MatchLabels:{shown_labels},"
            f"MatchExpressions:[]LabelSelectorRequirement{{{','.join(exprs)}}},}}")


def param_ref_cell(obj: dict[str, Any]) -> str:
    pr = as_dict(obj.get("spec")).get("paramRef")
    if not isinstance(pr, dict):
        return "<unset>"
    name = _s(pr.get("name"))
    if name:
        return f"{_s(pr.get('namespace')) or '*'}/{name}"
    if isinstance(pr.get("selector"), dict):
        return _go_selector(pr["selector"])
    return "<unset>"


class ValidatingAdmissionPolicyStrategy(Strategy):
    has_generation = True
    has_status = True

    def spec_changed(self, new: dict[str, Any], old: dict[str, Any]) -> bool:
        return new.get("spec") != old.get("spec")

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        obj.pop("status", None)
        default_policy(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        new.pop("status", None)
        if "status" in old:
            new["status"] = old["status"]
        default_policy(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_policy(obj)

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(),
                column("Validations", "Validations indicates the number of validation rules defined in this "
                       "configuration", type_="integer"),
                column("ParamKind", "ParamKind specifies the kind of resources used to parameterize this policy"),
                age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        return [as_dict(obj.get("metadata")).get("name", ""), len(_l(as_dict(obj.get("spec")).get("validations"))),
                param_kind_cell(obj), age(obj, now)]


class ValidatingAdmissionPolicyBindingStrategy(Strategy):
    has_generation = True

    def spec_changed(self, new: dict[str, Any], old: dict[str, Any]) -> bool:
        return new.get("spec") != old.get("spec")

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        default_binding(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        default_binding(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_binding(obj)

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(),
                column("PolicyName", "PolicyName indicates the policy definition which the policy binding binded to"),
                column("ParamRef", "ParamRef indicates the param resource which sets the configration param"),
                age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        return [as_dict(obj.get("metadata")).get("name", ""), _s(as_dict(obj.get("spec")).get("policyName")),
                param_ref_cell(obj), age(obj, now)]
