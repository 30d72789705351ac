"""ConfigMap: `data` (strings) and `binaryData` (base64) keys, no key in both, 1 MiB in all."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from kubesat.errors import FieldError, forbidden_field, invalid_value, too_long
from kubesat.registry.meta import (
    age_column,
    as_dict,
    column,
    config_map_key,
    field_doc,
    name_column,
    validate_kube_finalizers,
)
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import age

MAX_CONFIGMAP_SIZE = 1 * 1024 * 1024  # the same limit as Secrets
IMMUTABLE_WHEN_SET = "field is immutable when `immutable` is set"


def _binary_size(value: Any) -> int:
    try:
        return len(base64.b64decode(str(value or ""), validate=True))
    except (binascii.Error, ValueError):
        return len(str(value)) * 3 // 4


class ConfigMapStrategy(Strategy):
    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs = validate_kube_finalizers(obj.get("metadata") or {})
        data = as_dict(obj.get("data"))
        binary = as_dict(obj.get("binaryData"))
        total = 0
        for key, value in data.items():
            for msg in config_map_key(key):
                errs.append(invalid_value(f"data[{key}]", key, msg))
            if key in binary:
                errs.append(invalid_value(f"data[{key}]", key, "duplicate of key present in binaryData"))
            total += len(value.encode()) if isinstance(value, str) else 0
        for key, value in binary.items():
            for msg in config_map_key(key):
                errs.append(invalid_value(f"binaryData[{key}]", key, msg))
            total += _binary_size(value)
        if total > MAX_CONFIGMAP_SIZE:
            # Kubernetes reports this one against the whole object: an empty field path.
            errs.append(too_long("", MAX_CONFIGMAP_SIZE))
        return errs

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs: list[FieldError] = []
        if old.get("immutable") is True:
            if new.get("immutable") is not True:
                errs.append(forbidden_field("immutable", IMMUTABLE_WHEN_SET))
            if (new.get("data") or {}) != (old.get("data") or {}):
                errs.append(forbidden_field("data", IMMUTABLE_WHEN_SET))
            if (new.get("binaryData") or {}) != (old.get("binaryData") or {}):
                errs.append(forbidden_field("binaryData", IMMUTABLE_WHEN_SET))
        return errs + self.validate(new)

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Data", field_doc("io.k8s.api.core.v1.ConfigMap", "data")), age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        data = as_dict(obj.get("data"))
        binary = as_dict(obj.get("binaryData"))
        return [(obj.get("metadata") or {}).get("name", ""), len(data) + len(binary), age(obj, now)]
