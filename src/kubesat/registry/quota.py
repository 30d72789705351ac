"""core/v1 LimitRange and ResourceQuota: their defaults, validation and columns, and how much of each
quota-tracked resource an object uses (the quota evaluators' counting, shared by the admission check and
the controller that keeps `status.used`)."""

from __future__ import annotations

from decimal import Decimal
from datetime import datetime
from typing import Any

from kubesat.apimachinery.duration import age
from kubesat.apimachinery.quantity import format_quantity, parse_quantity
from kubesat.errors import FieldError, invalid_value, not_supported
from kubesat.registry.meta import as_dict, column, name_column
from kubesat.registry.strategy import Strategy

LIMIT_TYPES = ["Container", "PersistentVolumeClaim", "Pod"]
# The resources a pod is counted against (requests.* and their short names, limits.*).
COMPUTE = ("cpu", "memory", "ephemeral-storage")
# Object counts the quota system knows by a short name: the core resources it named before count/*.
SHORT_COUNTS = {"pods": "pods", "services": "services", "configmaps": "configmaps", "secrets": "secrets",
                "persistentvolumeclaims": "persistentvolumeclaims", "resourcequotas": "resourcequotas",
                "replicationcontrollers": "replicationcontrollers"}
BYTE_RESOURCES = ("memory", "storage", "ephemeral-storage")


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
        return _validate_amounts(as_dict(obj.get("spec")).get("hard"), "spec.hard")

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

