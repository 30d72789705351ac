"""coordination.k8s.io/v1 Lease: durations and transition counts must make sense."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubesat.errors import FieldError, invalid_value
from kubesat.registry.meta import age_column, as_dict, column, field_doc, name_column
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import age


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _drop_gated_fields(obj: dict[str, Any]) -> None:
    # spec.strategy and spec.preferredHolder belong to the CoordinatedLeaderElection feature,
    # which is off by default in v1.32: the API server drops them.
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.pop("strategy", None)
        spec.pop("preferredHolder", None)


class LeaseStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        _drop_gated_fields(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _drop_gated_fields(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs: list[FieldError] = []
        spec = as_dict(obj.get("spec"))
        duration = _int(spec.get("leaseDurationSeconds"))
        if duration is not None and duration <= 0:
            errs.append(invalid_value("spec.leaseDurationSeconds", duration, "must be greater than 0"))
        transitions = _int(spec.get("leaseTransitions"))
        if transitions is not None and transitions < 0:
            errs.append(invalid_value("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Holder", field_doc("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")),
            age_column(),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec = as_dict(obj.get("spec"))
        return [(obj.get("metadata") or {}).get("name", ""), spec.get("holderIdentity") or "", age(obj, now)]
