"""policy/v1 PodDisruptionBudget: validation of minAvailable/maxUnavailable, the status the disruption
controller owns, and the columns `kubectl get pdb` prints."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from kubesat.apimachinery.duration import age
from kubesat.errors import FieldError, invalid_value
from kubesat.registry.meta import age_column, as_dict, column, name_column
from kubesat.registry.strategy import Strategy

_PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MESSAGE = ("a valid percent string must be a numeric string followed by an ending '%' "
                    "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")


def _check_int_or_percent(value: Any, path: str) -> list[FieldError]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int | str):
        return [invalid_value(path, value, "must be an integer or percentage (e.g '5%')")]
    if isinstance(value, int):
        return [invalid_value(path, value, "must be greater than or equal to 0")] if value < 0 else []
    if not _PERCENT.match(value):
        return [invalid_value(path, value, _PERCENT_MESSAGE)]
    if int(value[:-1]) > 100:
        return [invalid_value(path, value, "must not be greater than 100%")]
    return []


def validate_budget(obj: dict[str, Any]) -> list[FieldError]:
    spec = as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.append(invalid_value("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    errs += _check_int_or_percent(spec.get("minAvailable"), "spec.minAvailable")
    errs += _check_int_or_percent(spec.get("maxUnavailable"), "spec.maxUnavailable")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("IfHealthyBudget", "AlwaysAllow"):
        errs.append(invalid_value("spec.unhealthyPodEvictionPolicy", policy,
                                  'supported values: "AlwaysAllow", "IfHealthyBudget"'))
    return errs


def scaled(value: int | str, total: int) -> int:
    """An int-or-percent against `total`, a percentage rounded up (as the disruption controller scales both)."""
    if isinstance(value, int):
        return value
    return math.ceil(int(value.rstrip("%")) * total / 100)


class PodDisruptionBudgetStrategy(Strategy):
    has_status = True
    has_generation = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        new["status"] = old.get("status") or {}

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_budget(obj)

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Min Available", "The minimum number of pods that must be available simultaneously. "
                                    "This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
            column("Max Unavailable", "The maximum number of pods that may be unavailable. This can be either an "
                                      "integer or a string specifying a percentage, e.g. \"33%\"."),
            column("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.",
                   type_="integer"),
            age_column(),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        least = spec.get("minAvailable")
        most = spec.get("maxUnavailable")
        return [as_dict(obj.get("metadata")).get("name", ""), "N/A" if least is None else least,
                "N/A" if most is None else most, int(status.get("disruptionsAllowed") or 0), age(obj, now)]
