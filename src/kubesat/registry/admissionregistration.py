"""admissionregistration.k8s.io/v1 Validating- and MutatingWebhookConfiguration: v1 defaults, validation with
Kubernetes' messages, and the `kubectl get` columns."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from kubesat.apimachinery.cel import DYN, CompileError, compile_expression
from kubesat.apimachinery.duration import age
from kubesat.errors import FieldError, duplicate, invalid_value, not_supported, required, too_many
from kubesat.registry.meta import (
    GoValue, age_column, as_dict, column, dns1035_label, dns1123_subdomain, go_quote, name_column, qualified_name,
)
from kubesat.registry.podtemplate import validate_label_selector
from kubesat.registry.strategy import Strategy

OPERATIONS = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]
SCOPES = ["*", "Cluster", "Namespaced"]
FAILURE_POLICIES = ["Fail", "Ignore"]
MATCH_POLICIES = ["Equivalent", "Exact"]
NO_SIDE_EFFECTS = ["None", "NoneOnDryRun"]
REINVOCATION_POLICIES = ["IfNeeded", "Never"]
REVIEW_VERSIONS = ["v1", "v1beta1"]
MAX_MATCH_CONDITIONS = 64
# What a matchCondition may name.
MATCH_CONDITION_VARIABLES = ("object", "oldObject", "request", "namespaceObject", "authorizer")
_URL_FORM = "; desired format: https://host[/path]"


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _go_list(type_name: str, values: list[Any]) -> GoValue:
    return GoValue(f"[]{type_name}{{" + ", ".join(go_quote(v) for v in values) + "}")


# ------------------------------------------------------------------------------------------------ defaults
def default_webhook(hook: dict[str, Any], mutating: bool) -> None:
    """SetDefaults_{Validating,Mutating}Webhook, SetDefaults_Rule and SetDefaults_ServiceReference of v1."""
    hook.setdefault("failurePolicy", "Fail")
    hook.setdefault("matchPolicy", "Equivalent")
    if hook.get("namespaceSelector") is None:
        hook["namespaceSelector"] = {}
    if hook.get("objectSelector") is None:
        hook["objectSelector"] = {}
    if hook.get("timeoutSeconds") is None:
        hook["timeoutSeconds"] = 10
    if mutating and hook.get("reinvocationPolicy") is None:
        hook["reinvocationPolicy"] = "Never"
    for rule in _l(hook.get("rules")):
        if isinstance(rule, dict) and rule.get("scope") is None:
            rule["scope"] = "*"
    service = as_dict(hook.get("clientConfig")).get("service")
    if isinstance(service, dict) and service.get("port") is None:
        service["port"] = 443


def default_configuration(obj: dict[str, Any], mutating: bool) -> None:
    for hook in _l(obj.get("webhooks")):
        if isinstance(hook, dict):
            default_webhook(hook, mutating)


# ---------------------------------------------------------------------------------------------- validation
def fully_qualified_name(path: str, name: str) -> list[FieldError]:
    """IsFullyQualifiedName: a DNS subdomain of at least three segments."""
    if not name:
        return [required(path)]
    errs = dns1123_subdomain(name)
    if errs:
        return [invalid_value(path, name, ",".join(errs))]
    if len(name.split(".")) < 3:
        return [invalid_value(path, name, "should be a domain with at least three segments separated by dots")]
    return []


def _validate_resources(resources: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not resources:
        errs.append(required(path))
    wild_sub: set[str] = set()  # x/*
    wild_res: set[str] = set()  # */x
    double = single = plain = False
    for i, item in enumerate(resources):
        rs = str(item)
        if not rs:
            errs.append(required(f"{path}[{i}]"))
            continue
        double = double or rs == "*/*"
        single = single or rs == "*"
        if "/" not in rs:
            plain = rs != "*"  # as Kubernetes: the last plain entry decides
            continue
        res, sub = rs.split("/", 1)
        if res in wild_sub:
            errs.append(invalid_value(f"{path}[{i}]", rs, f"if '{res}/*' is present, must not specify {rs}"))
        if sub in wild_res:
            errs.append(invalid_value(f"{path}[{i}]", rs, f"if '*/{sub}' is present, must not specify {rs}"))
        if sub == "*":
            wild_sub.add(res)
        if res == "*":
            wild_res.add(sub)
    if len(resources) > 1 and double:
        errs.append(invalid_value(path, _go_list("string", resources),
                                  "if '*/*' is present, must not specify other resources"))
    if single and plain:
        errs.append(invalid_value(path, _go_list("string", resources),
                                  "if '*' is present, must not specify other resources without subresources"))
    return errs


def validate_rule(rule: dict[str, Any], path: str) -> list[FieldError]:
    """validateRuleWithOperations: operations, apiGroups, apiVersions, resources (subresources allowed), scope."""
    errs: list[FieldError] = []
    ops = _l(rule.get("operations"))
    if not ops:
        errs.append(required(f"{path}.operations"))
    if len(ops) > 1 and "*" in ops:
        errs.append(invalid_value(f"{path}.operations", _go_list("admissionregistration.OperationType", ops),
                                  "if '*' is present, must not specify other operations"))
    for i, op in enumerate(ops):
        if op not in OPERATIONS:
            errs.append(not_supported(f"{path}.operations[{i}]", op, OPERATIONS))
    groups = _l(rule.get("apiGroups"))
    if not groups:
        errs.append(required(f"{path}.apiGroups"))
    if len(groups) > 1 and "*" in groups:
        errs.append(invalid_value(f"{path}.apiGroups", _go_list("string", groups),
                                  "if '*' is present, must not specify other API groups"))
    versions = _l(rule.get("apiVersions"))
    if not versions:
        errs.append(required(f"{path}.apiVersions"))
    if len(versions) > 1 and "*" in versions:
        errs.append(invalid_value(f"{path}.apiVersions", _go_list("string", versions),
                                  "if '*' is present, must not specify other API versions"))
    errs += [required(f"{path}.apiVersions[{i}]") for i, v in enumerate(versions) if v == ""]
    errs += _validate_resources(_l(rule.get("resources")), f"{path}.resources")
    scope = rule.get("scope")
    if scope is not None and scope not in SCOPES:
        errs.append(not_supported(f"{path}.scope", scope, SCOPES))
    return errs


def validate_url(path: str, url: str) -> list[FieldError]:
    """ValidateWebhookURL with https forced."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
    except ValueError as e:
        return [required(path, f"url must be a valid URL: {e}{_URL_FORM}")]
    errs: list[FieldError] = []
    if parts.scheme != "https":
        errs.append(invalid_value(path, parts.scheme, "'https' is the only allowed URL scheme" + _URL_FORM))
    if not host:
        errs.append(invalid_value(path, host, "host must be provided" + _URL_FORM))
    if "@" in parts.netloc:
        errs.append(invalid_value(path, parts.netloc.rsplit("@", 1)[0], "user information is not permitted in the URL"))
    if parts.fragment:
        errs.append(invalid_value(path, parts.fragment, "fragments are not permitted in the URL"))
    if parts.query:
        errs.append(invalid_value(path, parts.query, "query parameters are not permitted in the URL"))
    return errs


def validate_service(path: str, service: dict[str, Any]) -> list[FieldError]:
    """ValidateWebhookService: name, namespace, port and path (DNS-subdomain segments)."""
    errs: list[FieldError] = []
    if not service.get("name"):
        errs.append(required(f"{path}.name", "service name is required"))
    if not service.get("namespace"):
        errs.append(required(f"{path}.namespace", "service namespace is required"))
    port = service.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        errs.append(invalid_value(f"{path}.port", port,
                                  "port is not valid: must be between 1 and 65535, inclusive"))
    url_path = service.get("path")
    if not isinstance(url_path, str) or url_path in ("", "/"):
        return errs
    if url_path == "//":
        return errs + [invalid_value(f"{path}.path", url_path, "segment[0] may not be empty")]
    if not url_path.startswith("/"):
        errs.append(invalid_value(f"{path}.path", url_path, "must start with a '/'"))
    steps = url_path[1:]
    if steps.endswith("/"):
        steps = steps[:-1]
    for i, step in enumerate(steps.split("/")):
        if not step:
            errs.append(invalid_value(f"{path}.path", url_path, f"segment[{i}] may not be empty"))
            continue
        errs += [invalid_value(f"{path}.path", url_path, f"segment[{i}]: {m}") for m in dns1123_subdomain(step)]
    return errs


def _validate_client_config(cc: dict[str, Any], path: str) -> list[FieldError]:
    url, service = cc.get("url"), cc.get("service")
    if (url is None) == (service is None):
        return [required(path, "exactly one of url or service is required")]
    if url is not None:
        return validate_url(f"{path}.url", str(url))
    return validate_service(f"{path}.service", as_dict(service))


def _validate_match_conditions(conds: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(conds) > MAX_MATCH_CONDITIONS:
        errs.append(too_many(path, len(conds), MAX_MATCH_CONDITIONS))
    seen: set[str] = set()
    for i, cond in enumerate(conds[:MAX_MATCH_CONDITIONS * 2]):
        c = as_dict(cond)
        expression = str(c.get("expression") or "").strip()
        if not expression:
            errs.append(required(f"{path}[{i}].expression"))
        else:
            errs += _compile_errors(expression, f"{path}[{i}].expression")
        name = str(c.get("name") or "")
        if not name:
            errs.append(required(f"{path}[{i}].name"))
            continue
        errs += [invalid_value(f"{path}[{i}].name", name, m) for m in qualified_name(name)]
        if name in seen:
            errs.append(duplicate(f"{path}[{i}].name", name))
        seen.add(name)
    return errs


def _compile_errors(expression: str, path: str) -> list[FieldError]:
    try:
        compiled = compile_expression(expression, dict.fromkeys(MATCH_CONDITION_VARIABLES, DYN))
    except CompileError as e:
        return [invalid_value(path, expression, f"compilation failed: {e}")]
    if compiled.result_type not in ("BOOL", "DYN"):
        return [invalid_value(path, expression, "cel expression must evaluate to a bool")]
    return []


def _validate_review_versions(versions: list[Any], path: str) -> list[FieldError]:
    if not versions:
        return [required(path, "must specify one of v1, v1beta1")]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, v in enumerate(versions):
        if v in seen:
            errs.append(invalid_value(f"{path}[{i}]", v, "duplicate version"))
            continue
        seen.add(v)
        errs += [invalid_value(f"{path}[{i}]", v, m) for m in dns1035_label(str(v))]
    if not seen & set(REVIEW_VERSIONS):
        errs.append(invalid_value(path, _go_list("string", versions), "must include at least one of v1, v1beta1"))
    return errs


def validate_webhook(hook: dict[str, Any], path: str, mutating: bool) -> list[FieldError]:
    errs = fully_qualified_name(f"{path}.name", str(hook.get("name") or ""))
    for i, rule in enumerate(_l(hook.get("rules"))):
        errs += validate_rule(as_dict(rule), f"{path}.rules[{i}]")
    for key, allowed in (("failurePolicy", FAILURE_POLICIES), ("matchPolicy", MATCH_POLICIES)):
        if hook.get(key) is not None and hook[key] not in allowed:
            errs.append(not_supported(f"{path}.{key}", hook[key], allowed))
    side = hook.get("sideEffects")
    if side is None:
        errs.append(required(f"{path}.sideEffects", "must specify one of None, NoneOnDryRun"))
    elif side not in NO_SIDE_EFFECTS:
        errs.append(not_supported(f"{path}.sideEffects", side, NO_SIDE_EFFECTS))
    timeout = hook.get("timeoutSeconds")
    if isinstance(timeout, int) and not 1 <= timeout <= 30:
        errs.append(invalid_value(f"{path}.timeoutSeconds", timeout,
                                  "the timeout value must be between 1 and 30 seconds"))
    for key in ("namespaceSelector", "objectSelector"):
        errs += validate_label_selector(hook.get(key), f"{path}.{key}")
    if mutating and hook.get("reinvocationPolicy") is not None \
            and hook["reinvocationPolicy"] not in REINVOCATION_POLICIES:
        errs.append(not_supported(f"{path}.reinvocationPolicy", hook["reinvocationPolicy"], REINVOCATION_POLICIES))
    errs += _validate_client_config(as_dict(hook.get("clientConfig")), f"{path}.clientConfig")
    errs += _validate_match_conditions(_l(hook.get("matchConditions")), f"{path}.matchConditions")
    return errs


def validate_configuration(obj: dict[str, Any], mutating: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, raw in enumerate(_l(obj.get("webhooks"))):
        hook = as_dict(raw)
        errs += validate_webhook(hook, f"webhooks[{i}]", mutating)
        errs += _validate_review_versions(_l(hook.get("admissionReviewVersions")),
                                          f"webhooks[{i}].admissionReviewVersions")
        name = hook.get("name")
        if name:
            if name in names:
                errs.append(duplicate(f"webhooks[{i}].name", name))
            names.add(name)
    return errs


class _WebhookConfigurationStrategy(Strategy):
    mutating = False
    has_generation = True  # bumped when the webhooks change, as Kubernetes' strategy does

    def spec_changed(self, new: dict[str, Any], old: dict[str, Any]) -> bool:
        return new.get("webhooks") != old.get("webhooks")

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        default_configuration(obj, self.mutating)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        default_configuration(new, self.mutating)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_configuration(obj, self.mutating)

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(),
                column("Webhooks", "Webhooks indicates the number of webhooks in the configuration", type_="integer"),
                age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        return [as_dict(obj.get("metadata")).get("name", ""), len(_l(obj.get("webhooks"))), age(obj, now)]


class ValidatingWebhookConfigurationStrategy(_WebhookConfigurationStrategy):
    mutating = False


class MutatingWebhookConfigurationStrategy(_WebhookConfigurationStrategy):
    mutating = True
