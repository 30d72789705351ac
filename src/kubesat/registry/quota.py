"""core/v1 LimitRange and ResourceQuota: their defaults, validation and columns, and how much of each
quota-tracked resource an object uses (the quota evaluators' counting, shared by the admission check and
the controller that keeps `status.used`)."""

from __future__ import annotations

from decimal import Decimal
from datetime import datetime
from typing import Any

from kubesat.apimachinery.duration import age
from kubesat.apimachinery.quantity import format_quantity, parse_quantity
from kubesat.errors import FieldError, invalid_value, not_supported, required
from kubesat.registry.meta import GoValue, as_dict, column, go_quote, name_column
from kubesat.registry.pod import pod_qos
from kubesat.registry.strategy import Strategy

LIMIT_TYPES = ["Container", "PersistentVolumeClaim", "Pod"]
# The resources a pod is counted against (requests.* and their short names, limits.*).
COMPUTE = ("cpu", "memory", "ephemeral-storage")
# Object counts the quota system knows by a short name: the core resources it named before count/*.
SHORT_COUNTS = {"pods": "pods", "services": "services", "configmaps": "configmaps", "secrets": "secrets",
                "persistentvolumeclaims": "persistentvolumeclaims", "resourcequotas": "resourcequotas",
                "replicationcontrollers": "replicationcontrollers"}
BYTE_RESOURCES = ("memory", "storage", "ephemeral-storage")
# Quota scopes (all of them select pods) and the resources a quota with each may track.
POD_SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
              "CrossNamespacePodAffinity")
_POD_COMPUTE = {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
_SCOPE_RESOURCES = {scope: {"pods"} | _POD_COMPUTE for scope in POD_SCOPES} | {"BestEffort": {"pods"}}
_CONFLICTS = (("Terminating", "NotTerminating"), ("BestEffort", "NotBestEffort"))
SCOPE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def is_binary(resource: str) -> bool:
    return resource.rsplit(".", 1)[-1] in BYTE_RESOURCES


def pod_terminal(pod: dict[str, Any]) -> bool:
    return as_dict(pod.get("status")).get("phase") in ("Succeeded", "Failed")


def _container_amounts(containers: list[Any], part: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for c in containers:
        for name, q in as_dict(as_dict(as_dict(c).get("resources")).get(part)).items():
            amount = parse_quantity(q)
            if amount is not None:
                out[name] = out.get(name, Decimal(0)) + amount
    return out


def pod_amounts(pod: dict[str, Any], part: str) -> dict[str, Decimal]:
    """A pod's requests or limits: the containers' sum, or the largest init container's where that is more."""
    spec = as_dict(pod.get("spec"))
    total = _container_amounts(_l(spec.get("containers")), part)
    for init in _l(spec.get("initContainers")):
        for name, amount in _container_amounts([init], part).items():
            if amount > total.get(name, Decimal(0)):
                total[name] = amount
    return total


def pod_usage(pod: dict[str, Any]) -> dict[str, Decimal]:
    """What one pod counts for in a quota (nothing once it has finished)."""
    if pod_terminal(pod):
        return {}
    usage = {"pods": Decimal(1), "count/pods": Decimal(1)}
    for name, amount in pod_amounts(pod, "requests").items():
        usage[f"requests.{name}"] = amount
        if name in COMPUTE:
            usage[name] = amount
    for name, amount in pod_amounts(pod, "limits").items():
        usage[f"limits.{name}"] = amount
    return usage


def object_usage(plural: str, group: str, obj: dict[str, Any]) -> dict[str, Decimal]:
    """What one object of any kind counts for: its count, and a pod's or a claim's amounts."""
    if plural == "pods" and not group:
        return pod_usage(obj)
    usage = {f"count/{plural}.{group}" if group else f"count/{plural}": Decimal(1)}
    if not group and plural in SHORT_COUNTS:
        usage[SHORT_COUNTS[plural]] = Decimal(1)
    if not group and plural == "services":
        kind = as_dict(obj.get("spec")).get("type")
        if kind in ("NodePort", "LoadBalancer"):
            usage["services.nodeports"] = Decimal(len(_l(as_dict(obj.get("spec")).get("ports"))))
        if kind == "LoadBalancer":
            usage["services.loadbalancers"] = Decimal(1)
    if not group and plural == "persistentvolumeclaims":
        storage = parse_quantity(as_dict(as_dict(as_dict(obj.get("spec")).get("resources")).get("requests"))
                                 .get("storage"))
        if storage is not None:
            usage["requests.storage"] = storage
    return usage


def counted_resource(name: str) -> tuple[str, str] | None:
    """(plural, group) of the kind whose objects a quota's resource name counts (None: no kind counts it)."""
    if name.startswith("count/"):
        plural, _, group = name[len("count/"):].partition(".")
        return plural, group
    if name == "requests.storage" or name.endswith(".storageclass.storage.k8s.io/requests.storage"):
        return "persistentvolumeclaims", ""
    if name in COMPUTE or name.startswith(("requests.", "limits.", "hugepages-")):
        return "pods", ""
    if name.startswith("services."):
        return "services", ""
    if name in SHORT_COUNTS:
        return SHORT_COUNTS[name], ""
    return None


def _scope_requirements(quota: dict[str, Any]) -> list[dict[str, Any]]:
    """spec.scopes (each as an Exists requirement) and spec.scopeSelector's matchExpressions."""
    spec = as_dict(quota.get("spec"))
    out = [{"scopeName": s, "operator": "Exists"} for s in _l(spec.get("scopes"))]
    return out + [as_dict(e) for e in _l(as_dict(spec.get("scopeSelector")).get("matchExpressions"))]


def _cross_namespace_affinity(pod: dict[str, Any]) -> bool:
    affinity = as_dict(as_dict(pod.get("spec")).get("affinity"))
    for kind in ("podAffinity", "podAntiAffinity"):
        rules = as_dict(affinity.get(kind))
        terms = _l(rules.get("requiredDuringSchedulingIgnoredDuringExecution")) + [
            as_dict(w).get("podAffinityTerm") for w in _l(rules.get("preferredDuringSchedulingIgnoredDuringExecution"))]
        if any(_l(as_dict(t).get("namespaces")) or as_dict(t).get("namespaceSelector") is not None for t in terms):
            return True
    return False


def _pod_in_scope(pod: dict[str, Any], req: dict[str, Any]) -> bool:
    """One scope requirement against a pod, as the pod quota evaluator reads it."""
    spec = as_dict(pod.get("spec"))
    scope = str(req.get("scopeName") or "")
    deadline = spec.get("activeDeadlineSeconds")
    terminating: bool = isinstance(deadline, int) and not isinstance(deadline, bool) and deadline >= 0
    if scope in ("Terminating", "NotTerminating"):
        return terminating == (scope == "Terminating")
    if scope in ("BestEffort", "NotBestEffort"):
        return (pod_qos(spec) == "BestEffort") == (scope == "BestEffort")
    if scope == "CrossNamespacePodAffinity":
        return _cross_namespace_affinity(pod)
    if scope == "PriorityClass":
        name = str(spec.get("priorityClassName") or "")
        op, values = req.get("operator"), [str(v) for v in _l(req.get("values"))]
        if op == "Exists":
            return bool(name)
        # The rest as a label selector over {PriorityClass: name}, where the key is always present.
        return {"In": name in values, "NotIn": name not in values}.get(str(op), False)
    return False


def quota_matches(quota: dict[str, Any], plural: str, group: str, obj: dict[str, Any]) -> bool:
    """Whether a quota counts `obj`: an unscoped one counts everything; scopes select pods only, all must hold."""
    reqs = _scope_requirements(quota)
    if not reqs:
        return True
    if plural != "pods" or group:
        return False
    return all(_pod_in_scope(obj, r) for r in reqs)


_EXISTS_ONLY = ("must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, "
                "ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or "
                "ResourceQuotaScopeCrossNamespacePodAffinity")
_NO_VALUES = "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector"
# The quota resource names validation knows ("standard"); a scope is checked against these only.
_STANDARD = {"pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
             "persistentvolumeclaims", "services.nodeports", "services.loadbalancers", "requests.storage",
             "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage",
             "limits.cpu", "limits.memory", "limits.ephemeral-storage"}


def _go_strings(type_: str, values: list[Any]) -> str:
    """A slice as Go's %#v prints it: `[]T{"a", "b"}` (`[]T(nil)` when empty)."""
    return f"[]{type_}{{{', '.join(go_quote(v) for v in values)}}}" if values else f"[]{type_}(nil)"


def _go_selector(exprs: list[Any]) -> GoValue:
    reqs = ", ".join(f"core.ScopedResourceSelectorRequirement{{ScopeName:{go_quote(as_dict(e).get('scopeName'))}, "
                     f"Operator:{go_quote(as_dict(e).get('operator'))}, "
                     f"Values:{_go_strings('string', _l(as_dict(e).get('values')))}}}" for e in exprs)
    return GoValue(f"core.ScopeSelector{{MatchExpressions:[]core.ScopedResourceSelectorRequirement{{{reqs}}}}}")


def _scope_fits(scope: str, resource: str) -> bool:
    return resource not in _STANDARD or scope not in _SCOPE_RESOURCES or resource in _SCOPE_RESOURCES[scope]


def _validate_selector(spec: dict[str, Any]) -> list[FieldError]:
    """validateScopedResourceSelectorRequirement: known scopes, operators and values that fit them."""
    exprs = _l(as_dict(spec.get("scopeSelector")).get("matchExpressions"))
    path, shown, errs = "spec.scopeSelector.matchExpressions", _go_selector(exprs), []
    for e in map(as_dict, exprs):
        name, op, values = str(e.get("scopeName") or ""), e.get("operator"), _l(e.get("values"))
        if name not in POD_SCOPES:
            errs.append(invalid_value(f"{path}.scopeName", name, "unsupported scope"))
        if any(not _scope_fits(name, r) for r in as_dict(spec.get("hard"))):
            errs.append(invalid_value(path, shown, "unsupported scope applied to resource"))
        if name in POD_SCOPES and name != "PriorityClass" and op != "Exists":
            errs.append(invalid_value(f"{path}.operator", op, _EXISTS_ONLY))
        if op in ("In", "NotIn") and not values:
            errs.append(required(f"{path}.values",
                                 "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"))
        elif op in ("Exists", "DoesNotExist") and values:
            errs.append(invalid_value(f"{path}.values", GoValue(_go_strings("string", values)), _NO_VALUES))
        elif op not in SCOPE_OPERATORS:
            errs.append(invalid_value(f"{path}.operator", op, "not a valid selector operator"))
    named = {str(as_dict(e).get("scopeName")) for e in exprs}
    errs += [invalid_value(path, shown, "conflicting scopes") for a, b in _CONFLICTS if {a, b} <= named]
    return errs


def validate_scopes(quota: dict[str, Any]) -> list[FieldError]:
    """validateResourceQuotaScopes and the scope selector's rules, worded as Kubernetes words them."""
    spec = as_dict(quota.get("spec"))
    scopes = [str(s) for s in _l(spec.get("scopes"))]
    shown, errs = GoValue(_go_strings("core.ResourceQuotaScope", scopes)), []
    for scope in scopes:
        if scope not in POD_SCOPES:
            errs.append(invalid_value("spec.scopes", shown, "unsupported scope"))
        if any(not _scope_fits(scope, r) for r in as_dict(spec.get("hard"))):
            errs.append(invalid_value("spec.scopes", shown, "unsupported scope applied to resource"))
    errs += [invalid_value("spec.scopes", shown, "conflicting scopes") for a, b in _CONFLICTS if {a, b} <= set(scopes)]
    return errs + _validate_selector(spec)


def format_amounts(amounts: dict[str, Decimal], names: list[str] | None = None) -> dict[str, str]:
    return {k: format_quantity(amounts.get(k, Decimal(0)), is_binary(k)) for k in (names or sorted(amounts))}


def _validate_amounts(values: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for name, q in as_dict(values).items():
        amount = parse_quantity(q)
        if amount is None:
            errs.append(invalid_value(f"{path}[{name}]", q, "quantities must match the regular expression "
                                      "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
        elif amount < 0:
            errs.append(invalid_value(f"{path}[{name}]", q, "must be greater than or equal to 0"))
    return errs


class ResourceQuotaStrategy(Strategy):
    has_status = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        obj.pop("status", None)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return _validate_amounts(as_dict(obj.get("spec")).get("hard"), "spec.hard") + validate_scopes(obj)

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Age", "CreationTimestamp"),
                column("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
                column("Limit", "Limits control the maximum amount of cpu/memory that a container may use "
                                "independent of contention on the node.")]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        status = as_dict(obj.get("status"))
        hard, used = as_dict(status.get("hard") or as_dict(obj.get("spec")).get("hard")), as_dict(status.get("used"))
        requests: list[str] = []
        limits: list[str] = []
        for name in sorted(hard):
            text = f"{name}: {used.get(name, '0')}/{hard[name]}"
            (limits if name.startswith("limits.") else requests).append(text)
        return [as_dict(obj.get("metadata")).get("name", ""), age(obj, now), ", ".join(requests), ", ".join(limits)]


def apply_limit_range_defaults(obj: dict[str, Any]) -> None:
    """A Container limit's default limit is its max, and its default request its default limit (or min)."""
    for item in _l(as_dict(obj.get("spec")).get("limits")):
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        default = item.setdefault("default", {})
        for name, q in as_dict(item.get("max")).items():
            default.setdefault(name, q)
        request = item.setdefault("defaultRequest", {})
        for name, q in default.items():
            request.setdefault(name, q)
        for name, q in as_dict(item.get("min")).items():
            request.setdefault(name, q)
        for key in ("default", "defaultRequest"):
            if not item[key]:
                del item[key]


def validate_limit_range(obj: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, item in enumerate(_l(as_dict(obj.get("spec")).get("limits"))):
        item, path = as_dict(item), f"spec.limits[{i}]"
        if item.get("type") not in LIMIT_TYPES:
            errs.append(not_supported(f"{path}.type", item.get("type"), LIMIT_TYPES))
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            errs += _validate_amounts(item.get(key), f"{path}.{key}")
        low, high = as_dict(item.get("min")), as_dict(item.get("max"))
        for name in set(low) & set(high):
            a, b = parse_quantity(low[name]), parse_quantity(high[name])
            if a is not None and b is not None and a > b:
                errs.append(invalid_value(f"{path}.min[{name}]", low[name],
                                          f"min value {low[name]} is greater than max value {high[name]}"))
    return errs


class LimitRangeStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        apply_limit_range_defaults(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        apply_limit_range_defaults(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_limit_range(obj)

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Created At", "CreationTimestamp", type_="date")]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        created = as_dict(obj.get("metadata")).get("creationTimestamp") or ""
        return [as_dict(obj.get("metadata")).get("name", ""), created]

