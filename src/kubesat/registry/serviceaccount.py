"""ServiceAccount: metadata rules only; `secrets` references keep just their names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubesat.errors import FieldError
from kubesat.registry.meta import age_column, column, field_doc, name_column, validate_kube_finalizers
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import age


def _clean_secret_references(obj: dict[str, Any]) -> None:
    # Kubernetes honours only the name of each `secrets` entry and drops the rest.
    secrets = obj.get("secrets")
    if isinstance(secrets, list):
        obj["secrets"] = [{"name": s.get("name", "")} if isinstance(s, dict) else s for s in secrets]


class ServiceAccountStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        _clean_secret_references(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _clean_secret_references(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_kube_finalizers(obj.get("metadata") or {})

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Secrets", field_doc("io.k8s.api.core.v1.ServiceAccount", "secrets")),
            age_column(),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        secrets = obj.get("secrets")
        name = (obj.get("metadata") or {}).get("name", "")
        return [name, len(secrets) if isinstance(secrets, list) else 0, age(obj, now)]
