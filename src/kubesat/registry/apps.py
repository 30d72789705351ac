"""apps/v1 workloads: DeploymentStrategy, ReplicaSetStrategy, StatefulSetStrategy, DaemonSetStrategy and
ControllerRevisionStrategy, with Kubernetes 1.32's v1 defaults, validation, update rules, `kubectl get` rows,
and the autoscaling/v1 Scale their scale subresource reads and writes.

The pod template is defaulted and validated as a pod's spec is (registry/podtemplate.py). Spec changes bump
metadata.generation (a Deployment's annotation changes too, since they are copied to its ReplicaSets); the
main resource keeps the stored status and the status subresource keeps the stored spec. No controller is
here: registry objects only.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from typing import Any

from kubesat.apimachinery.duration import age
from kubesat.errors import FieldError, forbidden_field, invalid_value, not_supported, required
from kubesat.registry.meta import (
    IMMUTABLE,
    dns1123_label,
    IS_NEGATIVE,
    GoValue,
    age_column,
    as_dict,
    column,
    field_doc,
    go_quote,
    name_column,
    regex_error,
)
from kubesat.registry.podtemplate import (
    apply_template_defaults,
    format_labels,
    go_label_selector,
    go_string_map,
    selector_is_empty,
    selector_matches,
    selector_string,
    template_labels,
    validate_label_selector,
    validate_pod_template,
)
from kubesat.registry.strategy import Strategy

_PERCENT_RE = re.compile(r"^[0-9]+%$")
_PERCENT_MSG = regex_error("a valid percent string must be a numeric string followed by an ending '%'",
                           "[0-9]+%", "1%", "93%")
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
_CONTAINERS_DOC = "Names of each container in the template."
_IMAGES_DOC = "Images referenced by each container in the template."
_READY_DOC = "Number of the pod with ready state"


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


def _nonnegative(value: Any, path: str) -> list[FieldError]:
    return [invalid_value(path, value, IS_NEGATIVE)] if _int(value) < 0 else []


# ----------------------------------------------------------------------------------- shared rules


def _go_int_or_string(v: Any) -> GoValue:
    if isinstance(v, str):
        return GoValue(f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{go_quote(v)}}}")
    return GoValue(f"intstr.IntOrString{{Type:0, IntVal:{_int(v)}, StrVal:\"\"}}")


def _percent(v: Any) -> int | None:
    """The number of a valid percent string ("25%" -> 25); None for anything else."""
    return int(v[:-1]) if isinstance(v, str) and _PERCENT_RE.match(v) else None


def _int_or_percent_value(v: Any) -> int:
    pct = _percent(v)
    if pct is not None:
        return pct
    if isinstance(v, str):
        return int(v) if v.lstrip("-").isdigit() else 0
    return _int(v)


def _positive_int_or_percent(v: Any, path: str) -> list[FieldError]:
    """ValidatePositiveIntOrPercent."""
    if isinstance(v, str):
        return [] if _PERCENT_RE.match(v) else [invalid_value(path, _go_int_or_string(v), _PERCENT_MSG)]
    return _nonnegative(v, path)


def _not_over_100_percent(v: Any, path: str) -> list[FieldError]:
    pct = _percent(v)
    if pct is None or pct <= 100:
        return []
    return [invalid_value(path, _go_int_or_string(v), "must not be greater than 100%")]


def _selector_and_template(spec: dict[str, Any], what: str) -> tuple[list[FieldError], bool]:
    """spec.selector: required, valid, not empty; returns the errors and whether it can be used as a selector."""
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        return [required("spec.selector", "")], True
    errs = validate_label_selector(selector, "spec.selector")
    usable = not errs
    if selector_is_empty(selector):
        errs.append(_empty_selector(selector, what))
    return errs, usable


def _empty_selector(selector: Any, what: str) -> FieldError:
    return invalid_value("spec.selector", go_label_selector(selector), f"empty selector is invalid for {what}")


def _template_matches(spec: dict[str, Any]) -> list[FieldError]:
    """The template's labels must be selected by spec.selector (an empty selector selects everything, an absent
    one nothing)."""
    if selector_matches(spec.get("selector"), template_labels(spec)):
        return []
    meta = as_dict(as_dict(spec.get("template")).get("metadata"))
    return [invalid_value("spec.template.metadata.labels", go_string_map(meta.get("labels")),
                          "`selector` does not match template `labels`")]


def _restart_policy_always(spec: dict[str, Any], kind: str, deadline_forbidden: bool) -> list[FieldError]:
    """Pods of these controllers restart forever and have no deadline."""
    errs: list[FieldError] = []
    pod_spec = as_dict(as_dict(spec.get("template")).get("spec"))
    rp = pod_spec.get("restartPolicy")
    if rp != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", rp if isinstance(rp, str) else "", ["Always"]))
    ads = pod_spec.get("activeDeadlineSeconds")
    if ads is not None:
        path = "spec.template.spec.activeDeadlineSeconds"
        detail = f"activeDeadlineSeconds in {kind} is not Supported"
        errs.append(forbidden_field(path, detail) if deadline_forbidden else invalid_value(path, ads, detail))
    return errs


def _replica_set_like_template(spec: dict[str, Any], kind: str, usable: bool) -> list[FieldError]:
    """ValidatePodTemplateSpecForReplicaSet: selector match, the template, restartPolicy Always, no deadline."""
    if not usable:
        return [invalid_value("spec.selector", go_label_selector(spec.get("selector")), "invalid label selector")]
    template = as_dict(spec.get("template"))
    errs = _template_matches(spec)
    errs += validate_pod_template(template, "spec.template")
    return errs + _restart_policy_always(spec, kind, deadline_forbidden=False)


def _selector_immutable(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """apps/v1 never lets a workload's selector change."""
    selector = as_dict(new.get("spec")).get("selector")
    if selector == as_dict(old.get("spec")).get("selector"):
        return []
    shown = go_label_selector(selector) if isinstance(selector, dict) else None
    return [invalid_value("spec.selector", shown, IMMUTABLE)]


def _status_counts(status: dict[str, Any], fields: tuple[str, ...]) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in fields:
        errs += _nonnegative(status.get(f), f"status.{f}")
    return errs


def _collision_count_kept(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """status.collisionCount, once set, never goes down (the controllers derive hash names from it)."""
    before = as_dict(old.get("status")).get("collisionCount")
    after = as_dict(new.get("status")).get("collisionCount")
    if before is None or (after is not None and _int(after) >= _int(before)):
        return []
    return [invalid_value("status.collisionCount", _int(after), "cannot be decremented")]


def _containers_and_images(obj: dict[str, Any]) -> tuple[str, str]:
    containers = _l(as_dict(as_dict(as_dict(obj.get("spec")).get("template")).get("spec")).get("containers"))
    names = ",".join(str(as_dict(c).get("name") or "") for c in containers)
    images = ",".join(str(as_dict(c).get("image") or "") for c in containers)
    return names, images


def _name(obj: dict[str, Any]) -> str:
    return str(as_dict(obj.get("metadata")).get("name", ""))


def _keep_status(new: dict[str, Any], old: dict[str, Any], zero: dict[str, Any]) -> None:
    new["status"] = copy.deepcopy(old["status"]) if isinstance(old.get("status"), dict) else dict(zero)


class _WorkloadStrategy(Strategy):
    """What the four pod controllers' kinds share: status and generation, defaults on every write."""

    has_status = True
    has_generation = True
    # Status fields Go always serializes (no omitempty), so a fresh or rewritten status shows them as 0.
    status_zero: dict[str, Any] = {}
    # Whether a status write keeps the stored labels (a Deployment's) or takes the ones sent.
    status_keeps_labels = False

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        apply_template_defaults(_spec(obj))

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        self.apply_defaults(obj)
        obj["status"] = dict(self.status_zero)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        self.apply_defaults(new)
        _keep_status(new, old, self.status_zero)

    def prepare_for_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        sent = as_dict(new.get("metadata"))
        super().prepare_for_status_update(new, old)
        # /status keeps the stored spec but takes the metadata it is sent: controllers record annotations (a
        # Deployment's revision) there without a new generation. A Deployment's labels stay as stored.
        meta = new["metadata"] = dict(as_dict(new.get("metadata")))
        for key in ("annotations",) if self.status_keeps_labels else ("annotations", "labels"):
            if key in sent:
                meta[key] = sent[key]
            else:
                meta.pop(key, None)
        status = new.get("status")
        if not isinstance(status, dict):
            status = new["status"] = {}
        for k, v in self.status_zero.items():
            status.setdefault(k, v)


# ----------------------------------------------------------------------------------- Deployment

_DEPLOYMENT_STATUS = "io.k8s.api.apps.v1.DeploymentStatus"
_DEPLOYMENT_SPEC = "io.k8s.api.apps.v1.DeploymentSpec"


def apply_deployment_defaults(obj: dict[str, Any]) -> None:
    """SetDefaults_Deployment (apps/v1) and the pod template's defaults."""
    spec = _spec(obj)
    spec.setdefault("replicas", 1)
    strategy = spec.get("strategy")
    if not isinstance(strategy, dict):
        strategy = spec["strategy"] = {}
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if not isinstance(rolling, dict):
            rolling = strategy["rollingUpdate"] = {}
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = "25%"
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    apply_template_defaults(spec)


def _deployment_strategy(spec: dict[str, Any]) -> list[FieldError]:
    """ValidateDeploymentStrategy."""
    strategy = as_dict(spec.get("strategy"))
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            return [forbidden_field("spec.strategy.rollingUpdate",
                                    "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if kind == "RollingUpdate":
        if not isinstance(rolling, dict):
            return [required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")]
        path = "spec.strategy.rollingUpdate"
        unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
        errs = _positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
        errs += _positive_int_or_percent(surge, f"{path}.maxSurge")
        if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
            errs.append(invalid_value(f"{path}.maxUnavailable", _go_int_or_string(unavailable),
                                      "may not be 0 when `maxSurge` is 0"))
        return errs + _not_over_100_percent(unavailable, f"{path}.maxUnavailable")
    rolling_shown = "(*apps.RollingUpdateDeployment)(nil)" if rolling is None else "(*apps.RollingUpdateDeployment)"
    shown = GoValue(f"apps.DeploymentStrategy{{Type:{go_quote(kind if isinstance(kind, str) else '')}, "
                    f"RollingUpdate:{rolling_shown}}}")
    return [not_supported("spec.strategy", shown, ["Recreate", "RollingUpdate"])]


def validate_deployment(obj: dict[str, Any]) -> list[FieldError]:
    """ValidateDeploymentSpec, in Kubernetes' order."""
    spec = as_dict(obj.get("spec"))
    errs = _nonnegative(spec.get("replicas"), "spec.replicas")
    selector_errs, usable = _selector_and_template(spec, "deployment")
    errs += selector_errs
    errs += _replica_set_like_template(spec, "ReplicaSet", usable)
    errs += _deployment_strategy(spec)
    min_ready = _int(spec.get("minReadySeconds"))
    errs += _nonnegative(min_ready, "spec.minReadySeconds")
    if spec.get("revisionHistoryLimit") is not None:
        errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        errs += _nonnegative(deadline, "spec.progressDeadlineSeconds")
        if _int(deadline) <= min_ready:
            errs.append(invalid_value("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    return errs


def _replica_counts(status: dict[str, Any], counts: tuple[str, ...], fields: tuple[str, ...],
                    available_detail: str) -> list[FieldError]:
    """The status checks the replica controllers' kinds share: counts not negative, none of `fields` above
    status.replicas, availableReplicas not above readyReplicas."""
    errs = _status_counts(status, counts)
    replicas, ready = _int(status.get("replicas")), _int(status.get("readyReplicas"))
    for f in fields:
        if _int(status.get(f)) > replicas:
            errs.append(invalid_value(f"status.{f}", status.get(f), "cannot be greater than status.replicas"))
    if _int(status.get("availableReplicas")) > ready:
        errs.append(invalid_value("status.availableReplicas", status.get("availableReplicas"), available_detail))
    return errs


def validate_deployment_status(obj: dict[str, Any]) -> list[FieldError]:
    """ValidateDeploymentStatus."""
    return _replica_counts(as_dict(obj.get("status")), (
        "observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
        "unavailableReplicas", "collisionCount"), ("updatedReplicas", "readyReplicas", "availableReplicas"),
        "cannot be greater than readyReplicas")


class DeploymentStrategy(_WorkloadStrategy):
    status_keeps_labels = True

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        apply_deployment_defaults(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_for_update(new, old)
        # Annotations are copied to the Deployment's ReplicaSets, so changing them is a new generation too (the
        # store counts spec changes itself).
        new_meta, old_meta = as_dict(new.get("metadata")), as_dict(old.get("metadata"))
        if new.get("spec") == old.get("spec") and new_meta.get("annotations") != old_meta.get("annotations"):
            new_meta["generation"] = _int(old_meta.get("generation"), 1) + 1

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_deployment(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return validate_deployment(new) + _selector_immutable(new, old) + validate_deployment_status(new) + \
            _collision_count_kept(new, old)

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Ready", _READY_DOC),
            column("Up-to-date", field_doc(_DEPLOYMENT_STATUS, "updatedReplicas")),
            column("Available", field_doc(_DEPLOYMENT_STATUS, "availableReplicas")),
            age_column(),
            column("Containers", _CONTAINERS_DOC, priority=1),
            column("Images", _IMAGES_DOC, priority=1),
            column("Selector", field_doc(_DEPLOYMENT_SPEC, "selector"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        names, images = _containers_and_images(obj)
        return [_name(obj), f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
                _int(status.get("updatedReplicas")), _int(status.get("availableReplicas")), age(obj, now),
                names, images, selector_string(spec.get("selector"))]


# ----------------------------------------------------------------------------------- ReplicaSet

_RS_SPEC = "io.k8s.api.apps.v1.ReplicaSetSpec"
_RS_STATUS = "io.k8s.api.apps.v1.ReplicaSetStatus"


def validate_replica_set(obj: dict[str, Any]) -> list[FieldError]:
    """ValidateReplicaSetSpec."""
    spec = as_dict(obj.get("spec"))
    errs = _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    # Kubernetes' ReplicaSet validation names deployments in this message (the check was copied from there).
    selector_errs, usable = _selector_and_template(spec, "deployment")
    return errs + selector_errs + _replica_set_like_template(spec, "ReplicaSet", usable)


class ReplicaSetStrategy(_WorkloadStrategy):
    status_zero = {"replicas": 0}

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        spec = _spec(obj)
        spec.setdefault("replicas", 1)
        apply_template_defaults(spec)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_replica_set(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        status = as_dict(new.get("status"))
        errs = validate_replica_set(new) + _selector_immutable(new, old)
        # ValidateReplicaSetStatus.
        return errs + _replica_counts(status, ("replicas", "fullyLabeledReplicas", "readyReplicas",
                                               "availableReplicas", "observedGeneration"),
                                      ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"),
                                      "cannot be greater than readyReplicas")

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Desired", field_doc(_RS_SPEC, "replicas"), type_="integer"),
            column("Current", field_doc(_RS_STATUS, "replicas"), type_="integer"),
            column("Ready", field_doc(_RS_STATUS, "readyReplicas"), type_="integer"),
            age_column(),
            column("Containers", _CONTAINERS_DOC, priority=1),
            column("Images", _IMAGES_DOC, priority=1),
            column("Selector", field_doc(_RS_SPEC, "selector"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        names, images = _containers_and_images(obj)
        return [_name(obj), _int(spec.get("replicas")), _int(status.get("replicas")),
                _int(status.get("readyReplicas")), age(obj, now), names, images,
                selector_string(spec.get("selector"))]

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        if field == "status.replicas":
            return str(_int(as_dict(obj.get("status")).get("replicas")))
        return super().field_value(obj, field)


# ----------------------------------------------------------------------------------- StatefulSet

_STS_UPDATABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                  "minReadySeconds")
_RETENTION = ["Retain", "Delete"]


def apply_stateful_set_defaults(obj: dict[str, Any]) -> None:
    """SetDefaults_StatefulSet (apps/v1, with 1.32's default feature gates)."""
    spec = _spec(obj)
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    update = spec.get("updateStrategy")
    if not isinstance(update, dict):
        update = spec["updateStrategy"] = {}
    if not update.get("type"):
        update["type"] = "RollingUpdate"
        if not isinstance(update.get("rollingUpdate"), dict):
            update["rollingUpdate"] = {}
    rolling = update.get("rollingUpdate")
    if update["type"] == "RollingUpdate" and isinstance(rolling, dict) and rolling.get("partition") is None:
        rolling["partition"] = 0
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if not isinstance(policy, dict):
        policy = spec["persistentVolumeClaimRetentionPolicy"] = {}
    for key in ("whenDeleted", "whenScaled"):
        if not policy.get(key):
            policy[key] = "Retain"
    spec.setdefault("replicas", 1)
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    apply_template_defaults(spec)
    for claim in _l(spec.get("volumeClaimTemplates")):
        if isinstance(claim, dict):
            _default_claim_template(claim)


def _default_claim_template(claim: dict[str, Any]) -> None:
    """A volumeClaimTemplate as apps/v1 shows it: typed as a v1 PersistentVolumeClaim, with its defaults."""
    claim.setdefault("apiVersion", "v1")
    claim.setdefault("kind", "PersistentVolumeClaim")
    meta = claim.get("metadata")
    if isinstance(meta, dict):
        meta.setdefault("creationTimestamp", None)
    spec = claim.get("spec")
    if isinstance(spec, dict) and not spec.get("volumeMode"):
        spec["volumeMode"] = "Filesystem"
    status = claim.get("status")
    if not isinstance(status, dict):
        status = claim["status"] = {}
    if not status.get("phase"):
        status["phase"] = "Pending"


def _stateful_set_policies(spec: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    pmp = spec.get("podManagementPolicy")
    if not pmp:
        errs.append(required("spec.podManagementPolicy", ""))
    elif pmp not in ("OrderedReady", "Parallel"):
        errs.append(invalid_value("spec.podManagementPolicy", pmp, "must be 'OrderedReady' or 'Parallel'"))
    update = as_dict(spec.get("updateStrategy"))
    kind, rolling = update.get("type"), update.get("rollingUpdate")
    if not kind:
        errs.append(required("spec.updateStrategy", ""))
    elif kind == "OnDelete":
        if rolling is not None:
            partition = _int(as_dict(rolling).get("partition"))
            shown = GoValue(f"apps.RollingUpdateStatefulSetStrategy{{Partition:{partition}, "
                            "MaxUnavailable:(*intstr.IntOrString)(nil)}")
            errs.append(invalid_value("spec.updateStrategy.rollingUpdate", shown,
                                      "only allowed for updateStrategy 'RollingUpdate'"))
    elif kind == "RollingUpdate":
        if isinstance(rolling, dict):
            errs += _nonnegative(rolling.get("partition"), "spec.updateStrategy.rollingUpdate.partition")
    else:
        shown = GoValue(f"apps.StatefulSetUpdateStrategy{{Type:{go_quote(kind)}}}")
        errs.append(invalid_value("spec.updateStrategy", shown, "must be 'RollingUpdate' or 'OnDelete'"))
    policy = as_dict(spec.get("persistentVolumeClaimRetentionPolicy"))
    for key in ("whenDeleted", "whenScaled"):
        if policy and policy.get(key) not in _RETENTION:
            errs.append(not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{key}", policy.get(key), _RETENTION))
    return errs


def validate_stateful_set(obj: dict[str, Any]) -> list[FieldError]:
    """ValidateStatefulSetSpec: the template's labels and annotations only (its pod spec is not validated, as in
    Kubernetes, since its volume mounts may name volumeClaimTemplates)."""
    spec = as_dict(obj.get("spec"))
    errs = _stateful_set_policies(spec)
    errs += _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    if isinstance(spec.get("ordinals"), dict):
        errs += _nonnegative(spec["ordinals"].get("start"), "spec.ordinals.start")
    selector_errs, usable = _selector_and_template(spec, "statefulset")
    errs += selector_errs
    if not usable:
        errs.append(invalid_value("spec.selector", go_label_selector(spec.get("selector")), ""))
    else:
        errs += _template_matches(spec)
        meta = as_dict(as_dict(spec.get("template")).get("metadata"))
        from_template = validate_pod_template({"metadata": meta, "spec": {}}, "spec.template")
        errs += [e for e in from_template if not e.field.startswith("spec.template.spec")]
    return errs + _restart_policy_always(spec, "StatefulSet", deadline_forbidden=True)


class StatefulSetStrategy(_WorkloadStrategy):
    status_zero = {"replicas": 0, "availableReplicas": 0}
    name_rule = "label"  # its pods' hostnames are NAME-ORDINAL

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        apply_stateful_set_defaults(obj)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_stateful_set(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs = validate_stateful_set(new)
        spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
        fixed = {k: v for k, v in spec.items() if k not in _STS_UPDATABLE}
        if fixed != {k: v for k, v in old_spec.items() if k not in _STS_UPDATABLE}:
            errs.append(forbidden_field("spec", "updates to statefulset spec for fields other than 'replicas', "
                                        "'ordinals', 'template', 'updateStrategy', "
                                        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
        # ValidateStatefulSetStatus.
        return errs + _replica_counts(as_dict(new.get("status")), (
            "replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas",
            "observedGeneration", "collisionCount"), ("readyReplicas", "currentReplicas", "updatedReplicas",
                                                      "availableReplicas"),
            "cannot be greater than status.readyReplicas") + _collision_count_kept(new, old)

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Ready", _READY_DOC), age_column(),
                column("Containers", _CONTAINERS_DOC, priority=1), column("Images", _IMAGES_DOC, priority=1)]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        names, images = _containers_and_images(obj)
        return [_name(obj), f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}", age(obj, now),
                names, images]


# ----------------------------------------------------------------------------------- DaemonSet

_DS_STATUS = "io.k8s.api.apps.v1.DaemonSetStatus"


def apply_daemon_set_defaults(obj: dict[str, Any]) -> None:
    """SetDefaults_DaemonSet (apps/v1)."""
    spec = _spec(obj)
    update = spec.get("updateStrategy")
    if not isinstance(update, dict):
        update = spec["updateStrategy"] = {}
    if not update.get("type"):
        update["type"] = "RollingUpdate"
    if update["type"] == "RollingUpdate":
        rolling = update.get("rollingUpdate")
        if not isinstance(rolling, dict):
            rolling = update["rollingUpdate"] = {}
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = 1
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    apply_template_defaults(spec)


def _daemon_set_update_strategy(spec: dict[str, Any]) -> list[FieldError]:
    update = as_dict(spec.get("updateStrategy"))
    kind = update.get("type")
    if kind == "OnDelete":
        return []
    if kind != "RollingUpdate":
        shown = GoValue(f"apps.DaemonSetUpdateStrategy{{Type:{go_quote(kind if isinstance(kind, str) else '')}}}")
        return [not_supported("spec.updateStrategy", shown, ["RollingUpdate", "OnDelete"])]
    rolling = update.get("rollingUpdate")
    path = "spec.updateStrategy.rollingUpdate"
    if not isinstance(rolling, dict):
        return [required(path, "")]
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = _positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    errs += _positive_int_or_percent(surge, f"{path}.maxSurge")
    errs += _not_over_100_percent(unavailable, f"{path}.maxUnavailable")
    errs += _not_over_100_percent(surge, f"{path}.maxSurge")
    has_unavailable, has_surge = _int_or_percent_value(unavailable) != 0, _int_or_percent_value(surge) != 0
    if has_unavailable and has_surge:
        errs.append(invalid_value(f"{path}.maxSurge", _go_int_or_string(surge),
                                  "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        errs.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return errs


def validate_daemon_set(obj: dict[str, Any]) -> list[FieldError]:
    """ValidateDaemonSetSpec."""
    spec = as_dict(obj.get("spec"))
    selector = spec.get("selector")
    errs = validate_label_selector(selector, "spec.selector")
    if not errs:
        errs += _template_matches(spec)
    if isinstance(selector, dict) and selector_is_empty(selector):
        errs.append(_empty_selector(selector, "daemonset"))
    errs += validate_pod_template(as_dict(spec.get("template")), "spec.template")
    errs += _restart_policy_always(spec, "DaemonSet", deadline_forbidden=True)
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _daemon_set_update_strategy(spec)
    if spec.get("revisionHistoryLimit") is not None:
        errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    return errs


class DaemonSetStrategy(_WorkloadStrategy):
    status_zero = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                   "numberReady": 0}

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        apply_daemon_set_defaults(obj)

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        super().prepare_for_create(obj)
        # The internal templateGeneration, which apps/v1 carries as an annotation.
        meta = obj.setdefault("metadata", {})
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
        annotations[TEMPLATE_GENERATION_ANNOTATION] = "1"
        meta["annotations"] = annotations

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_for_update(new, old)
        old_annotations = as_dict(as_dict(old.get("metadata")).get("annotations"))
        stored = str(old_annotations.get(TEMPLATE_GENERATION_ANNOTATION, "0"))
        generation = int(stored) if stored.isdigit() else 0
        if as_dict(new.get("spec")).get("template") != as_dict(old.get("spec")).get("template"):
            generation += 1
        if generation:
            meta = new.setdefault("metadata", {})
            annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
            annotations[TEMPLATE_GENERATION_ANNOTATION] = str(generation)
            meta["annotations"] = annotations

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_daemon_set(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return validate_daemon_set(new) + _selector_immutable(new, old) + _status_counts(
            as_dict(new.get("status")), ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled",
                                         "numberReady", "observedGeneration", "updatedNumberScheduled",
                                         "numberAvailable", "numberUnavailable", "collisionCount")) + \
            _collision_count_kept(new, old)

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Desired", field_doc(_DS_STATUS, "desiredNumberScheduled"), type_="integer"),
            column("Current", field_doc(_DS_STATUS, "currentNumberScheduled"), type_="integer"),
            column("Ready", field_doc(_DS_STATUS, "numberReady"), type_="integer"),
            column("Up-to-date", field_doc(_DS_STATUS, "updatedNumberScheduled"), type_="integer"),
            column("Available", field_doc(_DS_STATUS, "numberAvailable"), type_="integer"),
            column("Node Selector", field_doc("io.k8s.api.core.v1.PodSpec", "nodeSelector")),
            age_column(),
            column("Containers", _CONTAINERS_DOC, priority=1),
            column("Images", _IMAGES_DOC, priority=1),
            column("Selector", field_doc("io.k8s.api.apps.v1.DaemonSetSpec", "selector"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        names, images = _containers_and_images(obj)
        node_selector = as_dict(as_dict(spec.get("template")).get("spec")).get("nodeSelector")
        return [_name(obj), _int(status.get("desiredNumberScheduled")), _int(status.get("currentNumberScheduled")),
                _int(status.get("numberReady")), _int(status.get("updatedNumberScheduled")),
                _int(status.get("numberAvailable")), format_labels(node_selector), age(obj, now), names, images,
                selector_string(spec.get("selector"))]


# ----------------------------------------------------------------------------------- ControllerRevision


def _go_raw_extension(data: Any) -> GoValue:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return GoValue("runtime.RawExtension{Raw:[]uint8{" + ", ".join(f"0x{b:x}" for b in raw) + "}, "
                   "Object:runtime.Object(nil)}")


def _controller_of(obj: dict[str, Any]) -> str:
    """`kind.group/name` of the owner that is the controller, as the printer shows it; `<none>` without one."""
    for ref in _l(as_dict(obj.get("metadata")).get("ownerReferences")):
        ref = as_dict(ref)
        if ref.get("controller") is True:
            api_version = str(ref.get("apiVersion") or "")
            group = api_version.split("/", 1)[0] if "/" in api_version else ""
            kind = str(ref.get("kind") or "")
            qualified = f"{kind}.{group}" if group else kind
            return f"{qualified.lower()}/{ref.get('name', '')}"
    return "<none>"


class ControllerRevisionStrategy(Strategy):
    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs: list[FieldError] = []
        if obj.get("data") is None:
            errs.append(required("data", "data is mandatory"))
        return errs + _nonnegative(obj.get("revision"), "revision")

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs = self.validate(new)
        if new.get("data") != old.get("data"):
            errs.append(invalid_value("data", _go_raw_extension(new.get("data")), IMMUTABLE))
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Controller", "Controller of the object"),
                column("Revision", field_doc("io.k8s.api.apps.v1.ControllerRevision", "revision")), age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        return [_name(obj), _controller_of(obj), _int(obj.get("revision")), age(obj, now)]


# ----------------------------------------------------------------------------------- warnings


def name_warnings(obj: dict[str, Any]) -> list[str]:
    """WarningsOnCreate of Deployments and ReplicaSets: their name starts their pods' names and hostnames, where
    only a DNS label works well."""
    name = str(as_dict(obj.get("metadata")).get("name") or "")
    msgs = dns1123_label(name) if name else []
    if not msgs:
        return []
    return ["metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; "
            f"a DNS label is recommended: [{' '.join(msgs)}]"]


# ----------------------------------------------------------------------------------- Scale


def scale_of(obj: dict[str, Any], selector: str, api_version: str = "autoscaling/v1") -> dict[str, Any]:
    """The autoscaling/v1 Scale a workload's scale subresource answers with."""
    meta = as_dict(obj.get("metadata"))
    scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                  if k in meta}
    return {
        "kind": "Scale",
        "apiVersion": api_version,
        "metadata": scale_meta,
        "spec": {"replicas": _int(as_dict(obj.get("spec")).get("replicas"))},
        "status": {"replicas": _int(as_dict(obj.get("status")).get("replicas")), "selector": selector},
    }


def validate_scale(scale: dict[str, Any]) -> list[FieldError]:
    """ValidateScale: only spec.replicas is read from a Scale written to a workload."""
    replicas = as_dict(scale.get("spec")).get("replicas")
    return _nonnegative(replicas, "spec.replicas")
