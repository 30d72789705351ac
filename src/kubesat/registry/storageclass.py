"""storage.k8s.io/v1 StorageClass: Kubernetes' defaults (reclaimPolicy Delete, volumeBindingMode Immediate),
validation (a provisioner, and no changes to what a class promised once created) and `kubectl get sc`
columns, with the default class marked `(default)`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubesat.apimachinery.duration import age
from kubesat.errors import FieldError, forbidden_field, invalid_value, not_supported, required
from kubesat.registry.meta import age_column, as_dict, column, name_column, qualified_name
from kubesat.registry.strategy import Strategy

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
RECLAIM_POLICIES = ["Delete", "Retain"]
BINDING_MODES = ["Immediate", "WaitForFirstConsumer"]


def apply_defaults(obj: dict[str, Any]) -> None:
    if obj.get("reclaimPolicy") is None:
        obj["reclaimPolicy"] = "Delete"
    if obj.get("volumeBindingMode") is None:
        obj["volumeBindingMode"] = "Immediate"


def validate_storage_class(obj: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    provisioner = obj.get("provisioner")
    if not provisioner:
        errs.append(required("provisioner"))
    else:
        for msg in qualified_name(str(provisioner).lower()):
            errs.append(invalid_value("provisioner", provisioner, msg))
    if obj.get("reclaimPolicy") not in RECLAIM_POLICIES:
        errs.append(not_supported("reclaimPolicy", obj.get("reclaimPolicy"), RECLAIM_POLICIES))
    if obj.get("volumeBindingMode") not in BINDING_MODES:
        errs.append(not_supported("volumeBindingMode", obj.get("volumeBindingMode"), BINDING_MODES))
    params = obj.get("parameters")
    if params is not None and not isinstance(params, dict):
        errs.append(invalid_value("parameters", params, "must be a map of strings"))
    return errs


class StorageClassStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        apply_defaults(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        apply_defaults(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_storage_class(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs = validate_storage_class(new)
        for key in ("parameters", "provisioner", "reclaimPolicy"):
            if (new.get(key) or None) != (old.get(key) or None):
                errs.append(forbidden_field(key, f"updates to {key} are forbidden."))
        if new.get("volumeBindingMode") != old.get("volumeBindingMode"):
            errs.append(invalid_value("volumeBindingMode", new.get("volumeBindingMode"), "field is immutable"))
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Provisioner", "Indicates the type of the provisioner."),
            column("ReclaimPolicy", "Dynamically provisioned PersistentVolumes of this storage class are created "
                                    "with this reclaimPolicy. Defaults to Delete."),
            column("VolumeBindingMode", "VolumeBindingMode indicates how PersistentVolumeClaims should be bound "
                                        "and provisioned."),
            column("AllowVolumeExpansion", "AllowVolumeExpansion shows whether the storage class allows volume "
                                           "expand.", type_="boolean"),
            age_column(),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        meta = as_dict(obj.get("metadata"))
        name = str(meta.get("name", ""))
        annotations = as_dict(meta.get("annotations"))
        if annotations.get(DEFAULT_CLASS_ANNOTATION) == "true" \
                or annotations.get("storageclass.beta.kubernetes.io/is-default-class") == "true":
            name += " (default)"
        return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy", "Delete"),
                obj.get("volumeBindingMode", "Immediate"), bool(obj.get("allowVolumeExpansion")), age(obj, now)]
