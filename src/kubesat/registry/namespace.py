"""Namespace: cluster-scoped, named like a DNS label, held by the `kubernetes` finalizer while it empties."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubesat.errors import FieldError, invalid_value
from kubesat.registry.meta import (
    FINALIZER_KUBERNETES,
    age_column,
    as_dict,
    column,
    kube_finalizer_name,
    name_column,
    qualified_name,
    validate_kube_finalizers,
)
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import age

# Every namespace carries its own name in this label (kube-apiserver sets it on create and update).
NAME_LABEL = "kubernetes.io/metadata.name"
ACTIVE = "Active"
TERMINATING = "Terminating"


def _spec_finalizers(obj: dict[str, Any]) -> list[Any]:
    spec = obj.get("spec")
    fins = spec.get("finalizers") if isinstance(spec, dict) else None
    return fins if isinstance(fins, list) else []


class NamespaceStrategy(Strategy):
    name_rule = "label"
    has_status = True

    @staticmethod
    def _label_name(obj: dict[str, Any]) -> None:
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            return
        labels = meta.get("labels")
        if not isinstance(labels, dict):
            labels = meta["labels"] = {}
        labels[NAME_LABEL] = name

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"phase": ACTIVE}
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = obj["spec"] = {}
        fins = spec.get("finalizers")
        if not isinstance(fins, list):
            fins = []
        if FINALIZER_KUBERNETES not in fins:
            fins = [*fins, FINALIZER_KUBERNETES]
        spec["finalizers"] = fins
        self._label_name(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        # spec.finalizers changes only through /finalize, status only through /status.
        old_spec = as_dict(old.get("spec"))
        spec = new.get("spec")
        if not isinstance(spec, dict):
            spec = new["spec"] = {}
        if "finalizers" in old_spec:
            spec["finalizers"] = list(old_spec["finalizers"])
        else:
            spec.pop("finalizers", None)
        if not spec and "spec" not in old:
            new.pop("spec", None)
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
        self._label_name(new)

    def prepare_for_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_for_status_update(new, old)
        self._label_name(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs = validate_kube_finalizers(obj.get("metadata") or {})
        for f in _spec_finalizers(obj):
            f = f if isinstance(f, str) else str(f)
            for msg in qualified_name(f):
                errs.append(invalid_value("spec.finalizers", f, msg))
            errs += kube_finalizer_name(f, "spec.finalizers")
        return errs

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs = self.validate(new)
        phase = (new.get("status") or {}).get("phase", "")
        if not (new.get("metadata") or {}).get("deletionTimestamp"):
            if phase != ACTIVE:
                errs.append(invalid_value("status.Phase", phase,
                                          "may only be 'Active' if `deletionTimestamp` is empty"))
        elif phase != TERMINATING:
            errs.append(invalid_value("status.Phase", phase,
                                      "may only be 'Terminating' if `deletionTimestamp` is not empty"))
        return errs

    # --- delete: the namespace lingers, Terminating, until its content is gone ------------
    def graceful_delete(self, obj: dict[str, Any]) -> bool:
        return bool(_spec_finalizers(obj))

    def on_delete_requested(self, obj: dict[str, Any]) -> None:
        status = obj.get("status")
        if not isinstance(status, dict):
            status = obj["status"] = {}
        status["phase"] = TERMINATING

    def finalized(self, obj: dict[str, Any]) -> bool:
        return not (obj.get("metadata") or {}).get("finalizers") and not _spec_finalizers(obj)

    # --- reads --------------------------------------------------------------------------
    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Status", "The status of the namespace"), age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        meta = obj.get("metadata") or {}
        return [meta.get("name", ""), (obj.get("status") or {}).get("phase", ""), age(obj, now)]

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        if field == "status.phase":
            return str((obj.get("status") or {}).get("phase", ""))
        return super().field_value(obj, field)
