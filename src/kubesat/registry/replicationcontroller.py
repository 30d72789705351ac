"""core/v1 ReplicationController: Kubernetes 1.32's v1 defaults (the selector and labels from the template's
labels, one replica), validation with its messages, update rules and `kubectl get` columns; its scale
subresource answers an autoscaling/v1 Scale (api/scale_api.py) and controllers/replicationcontroller.py runs it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubesat.errors import FieldError, forbidden_field, invalid_value, not_supported, required
from kubesat.registry.apps import ReplicaSetStrategy
from kubesat.registry.meta import IS_NEGATIVE, age_column, as_dict, column, field_doc, name_column, validate_labels
from kubesat.registry.podtemplate import apply_template_defaults, format_labels, go_string_map, validate_pod_template

_SPEC = "io.k8s.api.core.v1.ReplicationControllerSpec"
_STATUS = "io.k8s.api.core.v1.ReplicationControllerStatus"
_STATUS_COUNTS = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration")


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _nonnegative(value: Any, path: str) -> list[FieldError]:
    return [invalid_value(path, value, IS_NEGATIVE)] if _int(value) < 0 else []


def apply_replication_controller_defaults(obj: dict[str, Any]) -> None:
    """SetDefaults_ReplicationController: an empty selector and empty labels take the template's labels."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    template = spec.get("template")
    labels = as_dict(as_dict(template).get("metadata")).get("labels") if isinstance(template, dict) else None
    if isinstance(labels, dict) and labels:
        if not as_dict(spec.get("selector")):
            spec["selector"] = dict(labels)
        meta = obj.setdefault("metadata", {})
        if not as_dict(meta.get("labels")):
            meta["labels"] = dict(labels)
    spec.setdefault("replicas", 1)
    if isinstance(template, dict):
        apply_template_defaults(spec)


def _template(spec: dict[str, Any]) -> list[FieldError]:
    """ValidatePodTemplateSpecForRC."""
    template = spec.get("template")
    if not isinstance(template, dict):
        return [required("spec.template", "")]
    selector = {str(k): str(v) for k, v in as_dict(spec.get("selector")).items()}
    labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    errs: list[FieldError] = []
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        errs.append(invalid_value("spec.template.metadata.labels", go_string_map(labels),
                                  "`selector` does not match template `labels`"))
    errs += validate_pod_template(template, "spec.template")
    pod_spec = as_dict(template.get("spec"))
    rp = pod_spec.get("restartPolicy")
    if rp != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", rp if isinstance(rp, str) else "", ["Always"]))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden_field("spec.template.spec.activeDeadlineSeconds",
                                    "activeDeadlineSeconds in ReplicationController is not Supported"))
    return errs


def validate_replication_controller(obj: dict[str, Any]) -> list[FieldError]:
    """ValidateReplicationControllerSpec."""
    spec = as_dict(obj.get("spec"))
    errs = _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector = spec.get("selector")
    if not as_dict(selector):
        errs.append(required("spec.selector", ""))
    else:
        errs += validate_labels(selector, "spec.selector")
    errs += _nonnegative(spec.get("replicas"), "spec.replicas")
    return errs + _template(spec)


class ReplicationControllerStrategy(ReplicaSetStrategy):
    """A ReplicaSet's status and generation rules with core/v1's map selector, which may change."""

    default_propagation = "Orphan"  # core/v1 keeps the pre-GC default: an RC deleted plainly leaves its pods

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        apply_replication_controller_defaults(obj)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_replication_controller(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        status = as_dict(new.get("status"))
        errs = validate_replication_controller(new)
        for f in _STATUS_COUNTS:
            errs += _nonnegative(status.get(f), f"status.{f}")
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Desired", field_doc(_SPEC, "replicas"), type_="integer"),
            column("Current", field_doc(_STATUS, "replicas"), type_="integer"),
            column("Ready", field_doc(_STATUS, "readyReplicas"), type_="integer"),
            age_column(),
            column("Containers", "Names of each container in the template.", priority=1),
            column("Images", "Images referenced by each container in the template.", priority=1),
            column("Selector", field_doc(_SPEC, "selector"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        cells = super().table_cells(obj, now)
        cells[-1] = self.scale_selector(obj)
        return cells

    def scale_selector(self, obj: dict[str, Any]) -> str:
        """labels.SelectorFromSet(spec.selector).String(): `k=v,...`, empty for no selector."""
        selector = as_dict(as_dict(obj.get("spec")).get("selector"))
        return format_labels(selector) if selector else ""
