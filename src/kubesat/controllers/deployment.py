"""The Deployment controller: one ReplicaSet per pod template, rolled from old to new by the RollingUpdate or
Recreate strategy, with revisions, proportional scaling, pause, history cleanup and the status and conditions
`kubectl rollout` reads, as kube-controller-manager's deployment controller does."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kubesat import errors
from kubesat.controllers.base import Key, WorkQueue, cancel, loads, watch_in_background
from kubesat.controllers.events import EventRecorder, object_reference
from kubesat.controllers.workload import (
    Creator, adopt, apps_kind, as_int, claim, controller_ref, creator, d, lst, owner_reference, parse_time, release,
    selector_matches,
)
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry, rfc3339
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.deployment")

PODS = builtin_kind("v1", "Pod")
COMPONENT = "deployment-controller"

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Deployment annotations never copied to its ReplicaSets.
_NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
               MAX_REPLICAS, "deprecated.deployment.rollback.to"}
_SAFE_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand's alphabet
_MAX_INT32 = 2**31 - 1

# Progressing and Available condition reasons and messages (deploymentutil).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"
RS_CREATE_ERROR = "ReplicaSetCreateError"
RETRY_SECONDS = 1.0


def deployments() -> Any:
    return apps_kind("Deployment", "deployments")


def replicasets() -> Any:
    return apps_kind("ReplicaSet", "replicasets")


# ------------------------------------------------------------------------------------------------ spec reading

def replicas_of(obj: dict[str, Any]) -> int:
    """spec.replicas, defaulting to 1 as the API does."""
    return as_int(d(obj.get("spec")).get("replicas"), 1)


def actual(rs: dict[str, Any]) -> int:
    return as_int(d(rs.get("status")).get("replicas"))


def revision_of(rs: dict[str, Any]) -> int:
    value = d(d(rs.get("metadata")).get("annotations")).get(REVISION, "")
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def created_at(obj: dict[str, Any]) -> tuple[float, str]:
    meta = d(obj.get("metadata"))
    return parse_time(meta.get("creationTimestamp")) or 0.0, str(meta.get("name", ""))


def is_rolling(deploy: dict[str, Any]) -> bool:
    return bool(d(d(deploy.get("spec")).get("strategy")).get("type", "RollingUpdate") != "Recreate")


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString against a total: ints as they are, "N%" of the total rounded up or down."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    raise ValueError(f"invalid value for IntOrString: {value!r}")


def fenceposts(deploy: dict[str, Any]) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods: surge rounds up, unavailable down; both zero makes unavailable 1."""
    ru = d(d(d(deploy.get("spec")).get("strategy")).get("rollingUpdate"))
    desired = replicas_of(deploy)
    surge = scaled_value(ru.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(deploy: dict[str, Any]) -> int:
    return fenceposts(deploy)[0] if is_rolling(deploy) else 0


def max_unavailable(deploy: dict[str, Any]) -> int:
    desired = replicas_of(deploy)
    if not is_rolling(deploy) or desired == 0:
        return 0
    return min(fenceposts(deploy)[1], desired)


def progress_deadline(deploy: dict[str, Any]) -> int | None:
    value = d(deploy.get("spec")).get("progressDeadlineSeconds", 600)
    return None if not isinstance(value, int) or value == _MAX_INT32 else value


# ------------------------------------------------------------------------------------------------ templates

def template_hash(template: dict[str, Any], collision_count: int | None) -> str:
    """The pod-template-hash: FNV-32a, its decimal digits written in the safe alphabet, as ComputeHash does.
    Kubernetes hashes the Go struct's printed form; kubesat hashes the template's canonical JSON, so the value
    differs from Kubernetes' for the same template (its form and length are the same)."""
    h = 0x811C9DC5
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(8, "little")
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_CHARS[ord(c) % len(_SAFE_CHARS)] for c in str(h))


def _pruned(v: Any) -> Any:
    """Empty maps and lists dropped: the semantic equality Kubernetes uses treats them as absent."""
    if isinstance(v, dict):
        out = {k: _pruned(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in ({}, [], None)}
    if isinstance(v, list):
        return [_pruned(x) for x in v]
    return v


def equal_ignore_hash(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two pod templates are the same but for the pod-template-hash label."""
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for t in (a, b):
        d(d(t.get("metadata")).get("labels")).pop(HASH_LABEL, None)
    return bool(_pruned(a) == _pruned(b))


def find_new_rs(deploy: dict[str, Any], rses: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The oldest ReplicaSet whose template is the Deployment's."""
    template = d(d(deploy.get("spec")).get("template"))
    for rs in sorted(rses, key=created_at):
        if equal_ignore_hash(d(d(rs.get("spec")).get("template")), template):
            return rs
    return None


def copy_annotations(deploy: dict[str, Any], rs: dict[str, Any]) -> bool:
    """The Deployment's annotations onto its ReplicaSet (but the controller's own); True when any changed."""
    src = d(d(deploy.get("metadata")).get("annotations"))
    dst = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in src.items():
        if k not in _NOT_COPIED and dst.get(k) != v:
            dst[k] = v
            changed = True
    return changed


def set_replicas_annotations(rs: dict[str, Any], desired: int, maximum: int) -> bool:
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    want = {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(maximum)}
    if all(ann.get(k) == v for k, v in want.items()):
        return False
    ann.update(want)
    return True


def set_new_rs_annotations(deploy: dict[str, Any], rs: dict[str, Any], new_revision: int, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: copied annotations, the revision (the one it had goes to revision-history),
    and for a ReplicaSet about to be created its desired and max replicas."""
    changed = copy_annotations(deploy, rs)
    ann = rs["metadata"]["annotations"]
    old = str(ann.get(REVISION, ""))
    if old and not old.isdigit():
        return changed
    if (int(old) if old else 0) < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old:
            history = str(ann.get(REVISION_HISTORY, ""))
            ann[REVISION_HISTORY] = f"{history},{old}" if history else old
    if not exists and set_replicas_annotations(rs, replicas_of(deploy), replicas_of(deploy) + max_surge(deploy)):
        changed = True
    return changed


def new_replica_set(deploy: dict[str, Any], collision_count: int | None) -> dict[str, Any]:
    """The ReplicaSet for the Deployment's current template: `<deploy>-<hash>`, the hash in its selector and
    template labels, owned by the Deployment, at zero replicas (the caller sizes it)."""
    meta, spec = d(deploy.get("metadata")), d(deploy.get("spec"))
    template = copy.deepcopy(d(spec.get("template")))
    h = template_hash(template, collision_count)
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = dict(d(tmeta.get("labels")), **{HASH_LABEL: h})
    selector = copy.deepcopy(d(spec.get("selector")))
    selector["matchLabels"] = dict(d(selector.get("matchLabels")), **{HASH_LABEL: h})
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": f"{meta.get('name', '')}-{h}", "namespace": meta.get("namespace", ""),
                     "labels": dict(tmeta["labels"]),
                     "ownerReferences": [owner_reference(deploy, "apps/v1", "Deployment")]},
        "spec": {"replicas": 0, "minReadySeconds": as_int(spec.get("minReadySeconds")), "selector": selector,
                 "template": template},
    }


# ------------------------------------------------------------------------------------------------ sizing

def new_rs_new_replicas(deploy: dict[str, Any], all_rses: list[dict[str, Any]], new_rs: dict[str, Any]) -> int:
    """How big the new ReplicaSet may be now (NewRSNewReplicas)."""
    desired = replicas_of(deploy)
    if not is_rolling(deploy):
        return desired
    current = sum(replicas_of(rs) for rs in all_rses)
    max_total = desired + max_surge(deploy)
    if current >= max_total:
        return replicas_of(new_rs)
    room = min(max_total - current, desired - replicas_of(new_rs))
    return replicas_of(new_rs) + room


def reconcile_new(deploy: dict[str, Any], all_rses: list[dict[str, Any]], new_rs: dict[str, Any]) -> int | None:
    """The new ReplicaSet's next size in a rolling update; None when it stays."""
    desired, have = replicas_of(deploy), replicas_of(new_rs)
    if have == desired:
        return None
    if have > desired:
        return desired
    want = new_rs_new_replicas(deploy, all_rses, new_rs)
    return None if want == have else want


def _available(rs: dict[str, Any]) -> int:
    return as_int(d(rs.get("status")).get("availableReplicas"))


def reconcile_old(deploy: dict[str, Any], all_rses: list[dict[str, Any]], old_rses: list[dict[str, Any]],
                  new_rs: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """Old ReplicaSets to scale down in a rolling update, as (replica set, new size): first their unhealthy
    pods, then healthy ones, never below minimum availability counting the new ReplicaSet's unavailable pods."""
    if sum(actual(rs) for rs in old_rses) == 0:
        return []
    all_pods = sum(actual(rs) for rs in all_rses)
    min_available = replicas_of(deploy) - max_unavailable(deploy)
    new_unavailable = replicas_of(new_rs) - _available(new_rs)
    budget = all_pods - min_available - new_unavailable
    if budget <= 0:
        return []
    sizes = {id(rs): replicas_of(rs) for rs in all_rses}
    olds = sorted(old_rses, key=created_at)
    cleaned = 0
    for rs in olds:  # cleanupUnhealthyReplicas
        if cleaned >= budget:
            break
        have = sizes[id(rs)]
        if have == 0 or have == _available(rs):
            continue
        down = min(budget - cleaned, have - _available(rs))
        sizes[id(rs)] = have - down
        cleaned += down
    available = sum(_available(rs) for rs in all_rses)
    total_down = available - min_available
    down_so_far = 0
    for rs in olds:  # scaleDownOldReplicaSetsForRollingUpdate
        if total_down <= 0 or down_so_far >= total_down:
            break
        have = sizes[id(rs)]
        if have == 0:
            continue
        down = min(have, total_down - down_so_far)
        sizes[id(rs)] = have - down
        down_so_far += down
    return [(rs, sizes[id(rs)]) for rs in olds if sizes[id(rs)] != replicas_of(rs)]


def _go_round(x: float) -> int:
    """Go's math.Round: halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _fraction(rs: dict[str, Any], deploy: dict[str, Any]) -> int:
    desired = replicas_of(deploy)
    if desired == 0:
        return -replicas_of(rs)
    target = desired + max_surge(deploy)
    annotated = str(d(d(rs.get("metadata")).get("annotations")).get(MAX_REPLICAS, ""))
    base = int(annotated) if annotated.isdigit() else as_int(d(deploy.get("status")).get("replicas"))
    if base == 0:
        return 0
    return _go_round(replicas_of(rs) * target / base) - replicas_of(rs)


def proportional_sizes(deploy: dict[str, Any], active: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """A rolling Deployment resized mid-rollout: the difference spread over its active ReplicaSets in proportion
    to their size (GetReplicaSetProportion); what rounding leaves over goes to the largest."""
    desired = replicas_of(deploy)
    allowed = desired + max_surge(deploy) if desired > 0 else 0
    to_add = allowed - sum(replicas_of(rs) for rs in active)
    if to_add > 0:  # bigger first, newer first among equals
        ordered = sorted(active, key=lambda rs: (-replicas_of(rs), -created_at(rs)[0]))
    else:  # bigger first, older first among equals
        ordered = sorted(active, key=lambda rs: (-replicas_of(rs), created_at(rs)[0]))
    sizes: list[list[Any]] = []
    added = 0
    for rs in ordered:
        share = 0
        if to_add != 0 and replicas_of(rs) != 0 and to_add != added:
            frac, left = _fraction(rs, deploy), to_add - added
            share = min(frac, left) if to_add > 0 else max(frac, left)
        sizes.append([rs, replicas_of(rs) + share])
        added += share
    if to_add != 0 and sizes:
        sizes[0][1] = max(sizes[0][1] + to_add - added, 0)
    return [(rs, n) for rs, n in sizes]


def active_or_latest(new_rs: dict[str, Any] | None, olds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The one ReplicaSet with replicas (or, with none, the new or the newest); None when several have some."""
    if new_rs is None and not olds:
        return None
    newest_first = sorted(olds, key=created_at, reverse=True)
    active = [rs for rs in ([new_rs] if new_rs else []) + newest_first if replicas_of(rs) > 0]
    if not active:
        return new_rs if new_rs is not None else newest_first[0]
    return active[0] if len(active) == 1 else None


def is_saturated(deploy: dict[str, Any], rs: dict[str, Any] | None) -> bool:
    if rs is None:
        return False
    desired = replicas_of(deploy)
    annotated = d(d(rs.get("metadata")).get("annotations")).get(DESIRED_REPLICAS)
    return replicas_of(rs) == desired and annotated == str(desired) and _available(rs) == desired


def scale_plan(deploy: dict[str, Any], new_rs: dict[str, Any] | None,
               olds: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """The sizes a scaling event (or a paused Deployment) gives its ReplicaSets (dc.scale)."""
    desired = replicas_of(deploy)
    one = active_or_latest(new_rs, olds)
    if one is not None:
        return [] if replicas_of(one) == desired else [(one, desired)]
    if is_saturated(deploy, new_rs):
        return [(rs, 0) for rs in olds if replicas_of(rs) > 0]
    if not is_rolling(deploy):
        return []
    active = [rs for rs in ([new_rs] if new_rs else []) + olds if replicas_of(rs) > 0]
    return [(rs, n) for rs, n in proportional_sizes(deploy, active)]


def is_scaling_event(deploy: dict[str, Any], rses: list[dict[str, Any]]) -> bool:
    """An active ReplicaSet was sized for another replica count than the Deployment's now."""
    desired = str(replicas_of(deploy))
    for rs in rses:
        if replicas_of(rs) <= 0:
            continue
        annotated = d(d(rs.get("metadata")).get("annotations")).get(DESIRED_REPLICAS)
        if isinstance(annotated, str) and annotated.isdigit() and annotated != desired:
            return True
    return False


def cleanup_candidates(deploy: dict[str, Any], olds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Old ReplicaSets beyond revisionHistoryLimit, oldest revision first, that are empty and settled."""
    limit = d(deploy.get("spec")).get("revisionHistoryLimit", 10)
    if not isinstance(limit, int):
        return []
    alive = [rs for rs in olds if not d(rs.get("metadata")).get("deletionTimestamp")]
    extra = len(alive) - limit
    if extra <= 0:
        return []
    out = []
    for rs in sorted(alive, key=lambda r: (revision_of(r), created_at(r)))[:extra]:
        settled = as_int(d(rs.get("status")).get("observedGeneration")) >= as_int(rs["metadata"].get("generation"))
        if actual(rs) == 0 and replicas_of(rs) == 0 and settled:
            out.append(rs)
    return out


# ------------------------------------------------------------------------------------------------ status

def get_condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((d(c) for c in lst(status.get("conditions")) if d(c).get("type") == type_), None)


def set_condition(status: dict[str, Any], cond: dict[str, Any]) -> None:
    """SetDeploymentCondition: the same status and reason changes nothing; the same status keeps its
    lastTransitionTime."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime")
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def remove_condition(status: dict[str, Any], type_: str) -> None:
    kept = [c for c in lst(status.get("conditions")) if d(c).get("type") != type_]
    if kept:
        status["conditions"] = kept
    else:
        status.pop("conditions", None)


def condition(type_: str, status: str, reason: str, message: str, now: float) -> dict[str, Any]:
    stamp = rfc3339(now)
    return {"type": type_, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


def calculate_status(deploy: dict[str, Any], all_rses: list[dict[str, Any]], new_rs: dict[str, Any] | None,
                     now: float) -> dict[str, Any]:
    """The counts over all its ReplicaSets and the Available condition; zero counts are left out (omitempty)."""
    old = d(deploy.get("status"))
    available = sum(_available(rs) for rs in all_rses)
    counts = {
        "observedGeneration": as_int(d(deploy.get("metadata")).get("generation")),
        "replicas": sum(actual(rs) for rs in all_rses),
        "updatedReplicas": actual(new_rs) if new_rs else 0,
        "readyReplicas": sum(as_int(d(rs.get("status")).get("readyReplicas")) for rs in all_rses),
        "availableReplicas": available,
        "unavailableReplicas": max(sum(replicas_of(rs) for rs in all_rses) - available, 0),
    }
    status: dict[str, Any] = {k: v for k, v in counts.items() if v}
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if "collisionCount" in old:
        status["collisionCount"] = old["collisionCount"]
    if available >= replicas_of(deploy) - max_unavailable(deploy):
        set_condition(status, condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.",
                                        now))
    else:
        set_condition(status, condition("Available", "False", MIN_UNAVAILABLE,
                                        "Deployment does not have minimum availability.", now))
    return status


def _n(status: dict[str, Any], key: str) -> int:
    return as_int(status.get(key))


def is_complete(deploy: dict[str, Any], status: dict[str, Any]) -> bool:
    desired = replicas_of(deploy)
    return (_n(status, "updatedReplicas") == desired and _n(status, "replicas") == desired
            and _n(status, "availableReplicas") == desired
            and _n(status, "observedGeneration") >= as_int(d(deploy.get("metadata")).get("generation")))


def is_progressing(deploy: dict[str, Any], new: dict[str, Any]) -> bool:
    old = d(deploy.get("status"))
    old_olds = _n(old, "replicas") - _n(old, "updatedReplicas")
    new_olds = _n(new, "replicas") - _n(new, "updatedReplicas")
    return (_n(new, "updatedReplicas") > _n(old, "updatedReplicas") or new_olds < old_olds
            or _n(new, "readyReplicas") > _n(old, "readyReplicas")
            or _n(new, "availableReplicas") > _n(old, "availableReplicas"))


def timed_out(deploy: dict[str, Any], status: dict[str, Any], now: float) -> bool:
    deadline = progress_deadline(deploy)
    cond = get_condition(status, "Progressing")
    if deadline is None or cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    return since is not None and since + deadline < now


def rollout_status(deploy: dict[str, Any], all_rses: list[dict[str, Any]], new_rs: dict[str, Any] | None,
                   now: float) -> dict[str, Any]:
    """syncRolloutStatus: the status plus the Progressing condition (complete, progressing or timed out)."""
    status = calculate_status(deploy, all_rses, new_rs, now)
    if progress_deadline(deploy) is None:
        remove_condition(status, "Progressing")
        return status
    current = get_condition(d(deploy.get("status")), "Progressing")
    done = (_n(status, "replicas") == _n(status, "updatedReplicas") and current is not None
            and current.get("reason") == NEW_RS_AVAILABLE)
    if done:
        return status
    what = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else f'Deployment "{deploy["metadata"]["name"]}"'
    if is_complete(deploy, status):
        set_condition(status, condition("Progressing", "True", NEW_RS_AVAILABLE, f"{what} has successfully progressed.",
                                        now))
    elif is_progressing(deploy, status):
        cond = condition("Progressing", "True", RS_UPDATED, f"{what} is progressing.", now)
        if current is not None and current.get("status") == "True":
            cond["lastTransitionTime"] = current.get("lastTransitionTime")
        remove_condition(status, "Progressing")
        set_condition(status, cond)
    elif timed_out(deploy, status, now):
        set_condition(status, condition("Progressing", "False", TIMED_OUT, f"{what} has timed out progressing.", now))
    return status


def paused_condition(deploy: dict[str, Any], now: float) -> dict[str, Any] | None:
    """checkPausedConditions: Progressing Unknown when a Deployment is paused or resumed (None: no change)."""
    if progress_deadline(deploy) is None:
        return None
    cond = get_condition(d(deploy.get("status")), "Progressing")
    if cond is not None and cond.get("reason") == TIMED_OUT:
        return None
    paused_now = bool(d(deploy.get("spec")).get("paused"))
    was_paused = cond is not None and cond.get("reason") == PAUSED
    if paused_now and not was_paused:
        return condition("Progressing", "Unknown", PAUSED, "Deployment is paused", now)
    if not paused_now and was_paused:
        return condition("Progressing", "Unknown", RESUMED, "Deployment is resumed", now)
    return None


def recheck_in(deploy: dict[str, Any], status: dict[str, Any], now: float) -> float | None:
    """When a rollout still going must be checked against its progress deadline (requeueStuckDeployment)."""
    deadline = progress_deadline(deploy)
    cond = get_condition(status, "Progressing")
    if deadline is None or cond is None or cond.get("reason") in (NEW_RS_AVAILABLE, TIMED_OUT):
        return None
    if is_complete(deploy, status):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    return max(since + deadline - now, 0.0) + 1.0


@dataclass
class Sets:
    """A Deployment's ReplicaSets for one sync: the new one (None until made) and the others."""

    new: dict[str, Any] | None
    old: list[dict[str, Any]]

    @property
    def all(self) -> list[dict[str, Any]]:
        return self.old + ([self.new] if self.new is not None else [])


# ------------------------------------------------------------------------------------------------ the shell

class DeploymentController:
    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time,
                 create: Creator | None = None) -> None:
        self.registry = registry
        self.clock = clock
        self.create = creator(registry, create)
        self.deploy_info = deployments()
        self.rs_info = replicasets()
        self.events = EventRecorder(registry, COMPONENT, clock=clock)
        self.queue = WorkQueue(self.sync, "deployment")
        self.selectors: dict[str, dict[str, Any]] = {}  # namespace -> deployment -> selector
        self.rs_owner: dict[Key, str] = {}  # ReplicaSet -> its controlling Deployment's name
        self._watch: Any = None

    async def start(self) -> None:
        rev = await self.resync()
        self.queue.start()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self.resync, "deployment")

    async def stop(self) -> None:
        await cancel(self._watch)
        await self.queue.stop()

    async def resync(self) -> int:
        rev = await self.registry.revision()
        self.selectors.clear()
        self.rs_owner.clear()
        for rs in (await self.registry.list(self.rs_info, "")).items:
            self._note_rs(rs["metadata"].get("namespace", ""), rs["metadata"]["name"], rs)
        for dep in (await self.registry.list(self.deploy_info, "")).items:
            ns, name = dep["metadata"].get("namespace", ""), dep["metadata"]["name"]
            self.selectors.setdefault(ns, {})[name] = d(dep.get("spec")).get("selector")
            self.queue.add((ns, name))
        return rev

    def _note_rs(self, ns: str, name: str, rs: dict[str, Any] | None) -> None:
        ref = controller_ref(rs) if rs is not None else None
        if ref is not None and ref.get("kind") == "Deployment":
            self.rs_owner[(ns, name)] = str(ref.get("name", ""))
        else:
            self.rs_owner.pop((ns, name), None)

    async def _on_event(self, ev: WatchEvent) -> None:
        obj = loads(ev.value) if ev.type != "DELETE" else None
        if ev.key.startswith(self.deploy_info.storage_prefix()):
            ns, _, name = ev.key[len(self.deploy_info.storage_prefix()):].partition("/")
            if obj is None:
                self.selectors.get(ns, {}).pop(name, None)
            else:
                self.selectors.setdefault(ns, {})[name] = d(obj.get("spec")).get("selector")
            self.queue.add((ns, name))
        elif ev.key.startswith(self.rs_info.storage_prefix()):
            ns, _, name = ev.key[len(self.rs_info.storage_prefix()):].partition("/")
            self._rs_event(ns, name, obj, loads(ev.prev_value))
        elif ev.type == "DELETE" and ev.key.startswith(PODS.storage_prefix()):
            # A Recreate rollout waits for the old pods to be gone.
            pod = loads(ev.prev_value)
            ref = controller_ref(pod) if pod else None
            if pod is not None and ref is not None:
                ns = pod["metadata"].get("namespace", "")
                owner = self.rs_owner.get((ns, str(ref.get("name", ""))))
                if owner:
                    self.queue.add((ns, owner))

    def _rs_event(self, ns: str, name: str, rs: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        self._note_rs(ns, name, rs)
        for obj in (rs, old):
            ref = controller_ref(obj) if obj is not None else None
            if ref is not None:
                if ref.get("kind") == "Deployment":
                    self.queue.add((ns, str(ref.get("name", ""))))
            elif obj is not None and obj is rs:
                labels = d(obj.get("metadata")).get("labels")
                for dep, selector in self.selectors.get(ns, {}).items():
                    if selector_matches(selector, labels):
                        self.queue.add((ns, dep))

    # -------------------------------------------------------------------------------------- one sync
    async def sync(self, key: Key) -> None:
        ns, name = key
        deploy = await self.registry.get_or_none(self.deploy_info, ns, name)
        if deploy is None:
            return
        spec = d(deploy.get("spec"))
        selector = d(spec.get("selector"))
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            await self.events.event(object_reference(deploy), "Warning", "SelectingAll",
                                    "This deployment is selecting all pods. A non-empty selector is required.")
            return
        rses = await self._claim_replica_sets(deploy)
        if deploy["metadata"].get("deletionTimestamp"):
            sets = await self._sets(deploy, rses, create=False)
            await self._write_status(deploy, calculate_status(deploy, sets.all, sets.new, self.clock()))
            return
        cond = paused_condition(deploy, self.clock())
        if cond is not None:
            status = copy.deepcopy(d(deploy.get("status")))
            set_condition(status, cond)
            deploy = await self._write_status(deploy, status)
        try:
            if spec.get("paused") or is_scaling_event(deploy, rses):
                await self._scale_only(deploy, rses)
            elif is_rolling(deploy):
                await self._rollout_rolling(deploy, rses)
            else:
                await self._rollout_recreate(deploy, rses)
        except errors.StatusError as e:
            # Refused writes (a conflict, a hash collision, a namespace being deleted) are retried a little later.
            log.info("deployment %s/%s: %s", ns, name, e.message)
            self.queue.add_after(key, RETRY_SECONDS)

    async def _claim_replica_sets(self, deploy: dict[str, Any]) -> list[dict[str, Any]]:
        ns = deploy["metadata"].get("namespace", "")
        found = claim(deploy, (await self.registry.list(self.rs_info, ns)).items)
        ref = owner_reference(deploy, "apps/v1", "Deployment")
        for rs in found.release:
            await release(self.registry, self.rs_info, rs, ref["uid"])
        return found.owned + [rs for rs in found.adopt if await adopt(self.registry, self.rs_info, rs, ref)]

    async def _sets(self, deploy: dict[str, Any], rses: list[dict[str, Any]], *, create: bool) -> Sets:
        """getAllReplicaSetsAndSyncRevision: the new ReplicaSet brought to the next revision (made if asked)."""
        new = find_new_rs(deploy, rses)
        olds = [rs for rs in rses if rs is not new]
        revision = max((revision_of(rs) for rs in olds), default=0) + 1
        if new is not None:
            new = await self._sync_existing_new(deploy, new, revision)
        elif create:
            new = await self._create_new(deploy, olds, revision)
        return Sets(new, olds)

    async def _sync_existing_new(self, deploy: dict[str, Any], rs: dict[str, Any], revision: int) -> dict[str, Any]:
        want = copy.deepcopy(rs)
        min_ready = as_int(d(deploy.get("spec")).get("minReadySeconds"))
        changed = set_new_rs_annotations(deploy, want, revision, True)
        if changed or as_int(d(want.get("spec")).get("minReadySeconds")) != min_ready:
            want["spec"]["minReadySeconds"] = min_ready
            return await self._update_rs(rs, lambda cur: _take_meta_and_min_ready(cur, want))
        await self._set_deployment_revision(deploy, revision_of(rs))
        if get_condition(d(deploy.get("status")), "Progressing") is None:
            status = copy.deepcopy(d(deploy.get("status")))
            name = rs["metadata"]["name"]
            set_condition(status, condition("Progressing", "True", FOUND_NEW_RS, f'Found new replica set "{name}"',
                                            self.clock()))
            await self._write_status(deploy, status)
        return rs

    async def _create_new(self, deploy: dict[str, Any], olds: list[dict[str, Any]], revision: int) -> dict[str, Any]:
        collisions = d(deploy.get("status")).get("collisionCount")
        rs = new_replica_set(deploy, collisions if isinstance(collisions, int) else None)
        rs["spec"]["replicas"] = new_rs_new_replicas(deploy, olds + [rs], rs)
        set_new_rs_annotations(deploy, rs, revision, False)
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        try:
            created = await self.create(self.rs_info, ns, rs)
        except errors.StatusError as e:
            if e.reason != "AlreadyExists":
                message = f'Failed to create new replica set "{name}": {e.message}'
                await self.events.event(object_reference(deploy), "Warning", RS_CREATE_ERROR, message)
                status = copy.deepcopy(d(deploy.get("status")))
                set_condition(status, condition("Progressing", "False", RS_CREATE_ERROR, message, self.clock()))
                await self._write_status(deploy, status)
                raise
            return await self._name_taken(deploy, ns, name)
        n = replicas_of(created)
        if n > 0:
            await self.events.event(object_reference(deploy), "Normal", "ScalingReplicaSet",
                                    f"Scaled up replica set {name} from 0 to {n}")
        await self._set_deployment_revision(deploy, revision)
        status = copy.deepcopy(d(deploy.get("status")))
        set_condition(status, condition("Progressing", "True", NEW_RS_CREATED, f'Created new replica set "{name}"',
                                        self.clock()))
        await self._write_status(deploy, status)
        return created

    async def _name_taken(self, deploy: dict[str, Any], ns: str, name: str) -> dict[str, Any]:
        """The new ReplicaSet's name is taken: ours with the same template is the new one; anything else is a
        hash collision, counted in status.collisionCount so the next try hashes differently."""
        existing = await self.registry.get_or_none(self.rs_info, ns, name)
        uid = deploy["metadata"].get("uid")
        template = d(d(deploy.get("spec")).get("template"))
        if existing is not None and (controller_ref(existing) or {}).get("uid") == uid \
                and equal_ignore_hash(d(d(existing.get("spec")).get("template")), template):
            return existing
        status = copy.deepcopy(d(deploy.get("status")))
        status["collisionCount"] = as_int(status.get("collisionCount")) + 1
        await self._write_status(deploy, status)
        raise errors.conflict(self.rs_info.plural, name, "hash collision: retrying with a new collisionCount",
                              self.rs_info.group)

    async def _set_deployment_revision(self, deploy: dict[str, Any], revision: int) -> None:
        """The Deployment carries its newest revision in the same annotation as its ReplicaSets."""
        value = str(revision)
        if d(d(deploy.get("metadata")).get("annotations")).get(REVISION) == value:
            return

        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            cur["metadata"].setdefault("annotations", {})[REVISION] = value
            return cur

        def same_generation(current: dict[str, Any] | None, new: dict[str, Any]) -> None:
            # Kubernetes writes this annotation through the status subresource, which keeps metadata changes and
            # so never bumps the generation for it; kubesat's status writes keep only status, hence the main
            # resource with the generation held.
            if current is not None:
                new["metadata"]["generation"] = current["metadata"].get("generation")

        meta = deploy["metadata"]
        updated, _ = await self.registry.guaranteed_update(self.deploy_info, meta.get("namespace", ""), meta["name"],
                                                           mutate, hook=same_generation)
        _refresh(deploy, updated)

    # -------------------------------------------------------------------------------------- strategies
    async def _scale_only(self, deploy: dict[str, Any], rses: list[dict[str, Any]]) -> None:
        sets = await self._sets(deploy, rses, create=False)
        for rs, n in scale_plan(deploy, sets.new, sets.old):
            await self._scale(deploy, rs, n)
        if d(deploy.get("spec")).get("paused"):
            await self._cleanup(deploy, sets.old)
        await self._write_status(deploy, calculate_status(deploy, sets.all, sets.new, self.clock()))

    async def _rollout_rolling(self, deploy: dict[str, Any], rses: list[dict[str, Any]]) -> None:
        sets = await self._sets(deploy, rses, create=True)
        assert sets.new is not None  # made when missing
        up = reconcile_new(deploy, sets.all, sets.new)
        if up is not None:
            await self._scale(deploy, sets.new, up)
        else:
            active_old = [rs for rs in sets.old if replicas_of(rs) > 0]
            downs = reconcile_old(deploy, sets.all, active_old, sets.new)
            for rs, n in downs:
                await self._scale(deploy, rs, n)
            if not downs and is_complete(deploy, d(deploy.get("status"))):
                await self._cleanup(deploy, sets.old)
        await self._sync_rollout_status(deploy, sets)

    async def _rollout_recreate(self, deploy: dict[str, Any], rses: list[dict[str, Any]]) -> None:
        sets = await self._sets(deploy, rses, create=False)
        active_old = [rs for rs in sets.old if replicas_of(rs) > 0]
        if active_old:
            for rs in active_old:
                await self._scale(deploy, rs, 0)
            await self._sync_rollout_status(deploy, sets)
            return
        if await self._old_pods_running(deploy, sets.old):
            await self._sync_rollout_status(deploy, sets)
            return
        if sets.new is None:
            sets = await self._sets(deploy, rses, create=True)
        assert sets.new is not None
        if replicas_of(sets.new) != replicas_of(deploy):
            await self._scale(deploy, sets.new, replicas_of(deploy))
        if is_complete(deploy, d(deploy.get("status"))):
            await self._cleanup(deploy, sets.old)
        await self._sync_rollout_status(deploy, sets)

    async def _old_pods_running(self, deploy: dict[str, Any], olds: list[dict[str, Any]]) -> bool:
        if any(actual(rs) > 0 for rs in olds):
            return True
        uids = {rs["metadata"].get("uid") for rs in olds}
        pods = (await self.registry.list(PODS, deploy["metadata"].get("namespace", ""))).items
        return any((controller_ref(p) or {}).get("uid") in uids
                   and d(p.get("status")).get("phase") not in ("Succeeded", "Failed") for p in pods)

    # -------------------------------------------------------------------------------------- writes
    async def _scale(self, deploy: dict[str, Any], rs: dict[str, Any], n: int) -> None:
        """Resize a ReplicaSet and stamp the Deployment's size on it; a ScalingReplicaSet event when it moved."""
        before = replicas_of(rs)
        desired, maximum = replicas_of(deploy), replicas_of(deploy) + max_surge(deploy)
        if before == n and not set_replicas_annotations(copy.deepcopy(rs), desired, maximum):
            return

        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            cur.setdefault("spec", {})["replicas"] = n
            set_replicas_annotations(cur, desired, maximum)
            return cur

        await self._update_rs(rs, mutate)
        if before != n:
            way = "up" if n > before else "down"
            await self.events.event(object_reference(deploy), "Normal", "ScalingReplicaSet",
                                    f"Scaled {way} replica set {rs['metadata']['name']} from {before} to {n}")

    async def _update_rs(self, rs: dict[str, Any], mutate: Callable[[dict[str, Any]], dict[str, Any]]
                         ) -> dict[str, Any]:
        meta = rs["metadata"]
        uid = meta.get("uid")

        def guarded(cur: dict[str, Any]) -> dict[str, Any]:
            if cur["metadata"].get("uid") != uid:
                raise errors.conflict(self.rs_info.plural, meta["name"], "the object was replaced", self.rs_info.group)
            return mutate(cur)

        updated, _ = await self.registry.guaranteed_update(self.rs_info, meta.get("namespace", ""), meta["name"],
                                                           guarded)
        _refresh(rs, updated)
        return rs

    async def _cleanup(self, deploy: dict[str, Any], olds: list[dict[str, Any]]) -> None:
        for rs in cleanup_candidates(deploy, olds):
            meta = rs["metadata"]
            try:
                await self.registry.delete(self.rs_info, meta.get("namespace", ""), meta["name"],
                                           DeleteOptions(uid=meta.get("uid", "")))
            except errors.StatusError as e:
                if e.code not in (404, 409):
                    raise

    async def _sync_rollout_status(self, deploy: dict[str, Any], sets: Sets) -> None:
        now = self.clock()
        status = rollout_status(deploy, sets.all, sets.new, now)
        await self._write_status(deploy, status)
        wait = recheck_in(deploy, status, now)
        if wait is not None:
            meta = deploy["metadata"]
            self.queue.add_after((meta.get("namespace", ""), meta["name"]), wait)

    async def _write_status(self, deploy: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        if _same_status(status, d(deploy.get("status"))):
            return deploy
        meta = deploy["metadata"]
        uid = meta.get("uid")

        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            if cur["metadata"].get("uid") != uid:
                raise errors.conflict(self.deploy_info.plural, meta["name"], "the object was replaced",
                                      self.deploy_info.group)
            cur["status"] = status
            return cur

        try:
            updated, _ = await self.registry.guaranteed_update(self.deploy_info, meta.get("namespace", ""),
                                                               meta["name"], mutate, subresource="status")
        except errors.StatusError as e:
            if e.code in (404, 409):
                return deploy
            raise
        _refresh(deploy, updated)
        return deploy


def _same_status(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for the conditions' lastUpdateTime of an unchanged condition (which SetDeploymentCondition
    would not have touched)."""
    return bool(_pruned(a) == _pruned(b))


def _refresh(target: dict[str, Any], updated: dict[str, Any]) -> None:
    target.clear()
    target.update(updated)


def _take_meta_and_min_ready(cur: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    cur["metadata"]["annotations"] = want["metadata"].get("annotations") or {}
    cur.setdefault("spec", {})["minReadySeconds"] = want["spec"]["minReadySeconds"]
    return cur
