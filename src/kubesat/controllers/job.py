"""The Job controller: runs a Job's pods to completion, as kube-controller-manager's job controller does.

Each sync takes the Job's pods (those it is the controller of, from a watch-fed cache), and a pure planner
(`plan_job`) says what follows: the new status (active, ready, succeeded, failed, terminating, conditions,
times), the pods to create (one per missing completion index in Indexed mode) or delete, and the Events.
Failed pods are replaced after an exponential back-off (10 s doubling, at most 6 min); more failures than
backoffLimit (for restartPolicy OnFailure, container restarts count too) fail the Job with
BackoffLimitExceeded, and a podFailurePolicy rule can fail it at once (FailJob) or not count a failure
(Ignore). A finished Job with ttlSecondsAfterFinished is deleted once that has passed (foreground, so its
pods go first), as the ttl-after-finished controller does.

An Indexed Job with backoffLimitPerIndex counts failures per index instead: each pod carries its index's
failures so far (`batch.kubernetes.io/job-index-failure-count`, and `...-ignored-failure-count` for those an
Ignore rule matched), an index is retried after its own back-off, and one whose pod fails with its count at the
limit (or on a FailIndex rule) is failed for good (`status.failedIndexes`). An index's last failed pod keeps
its finalizer, uncounted, until its replacement exists, so its count carries over. The Job fails
(MaxFailedIndexesExceeded) once more indexes failed than maxFailedIndexes, or (FailedIndexes) once every index
succeeded or failed with some failed. A successPolicy rule met sets SuccessCriteriaMet (reason SuccessPolicy),
stops the pods left and then completes the Job. A Job whose spec.managedBy names another controller is left
to it (only its ttlSecondsAfterFinished is kept).

Pods are tracked as Kubernetes 1.26+ tracks them: each is made with the `batch.kubernetes.io/job-tracking`
finalizer, so it cannot go before it is counted. A pod that ended (succeeded; failed; or deleted before it
finished, counted as failed unless only Failed pods are replaced: podReplacementPolicy Failed or a
podFailurePolicy) is first recorded by UID in `status.uncountedTerminatedPods` (an Indexed Job's success
goes straight into `completedIndexes`: an index cannot count twice), that status is written, then the
finalizer is taken off, then the UIDs are moved into `succeeded` and `failed`: a controller stopped in
between counts each pod once. An Ignore'd failure loses its finalizer uncounted. The counters are
cumulative and every decision uses them (completions reached, backoffLimit, how many pods to start, which
indexes are missing); only the back-off delay is timed from the Failed pods that still exist. The pods a
suspended or complete Job stops lose the finalizer before their delete (not failures); those a failing Job
stops count as failed. A tracked pod nothing will count loses the finalizer, else it would stay Terminating
for ever: one whose Job is gone, replaced (another UID), being deleted or finished, and one with no
controller (orphaned by the garbage collector). A pod the Job adopts gets the finalizer in the adopting write
and is counted like the Job's own; a released one loses it in the releasing write. Pods without the finalizer
(made before kubesat tracked pods) are not counted, as in Kubernetes.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from itertools import islice
from dataclasses import dataclass, field
from typing import Any

from kubesat import errors
from kubesat.controllers.base import WorkQueue, cancel, loads, resource_of_key, split_key, watch_in_background
from kubesat.controllers.events import EventRecorder, object_reference
from kubesat.controllers.podcache import Expectations, PodCache, delete_owned_pod
from kubesat.controllers.workload import (
    adopt, as_int, claim, controller_ref, d, is_ready, lst, owner_reference, parse_time,
    release, write_status, PodCreator, pod_creator,
)
from kubesat.registry.batch import COMPLETION_INDEX_KEY, JOB_CONTROLLER_NAME
from kubesat.registry.jobindexes import format_indexes, parse_indexes
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry, rfc3339
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.job")

JOBS = builtin_kind("batch/v1", "Job")
PODS = builtin_kind("v1", "Pod")
COMPONENT = "job-controller"
BACKOFF_BASE = 10.0
BACKOFF_MAX = 360.0
BURST = 500  # pods created or deleted in one sync at most
REASON_BACKOFF = "BackoffLimitExceeded"
MESSAGE_BACKOFF = "Job has reached the specified backoff limit"
REASON_DEADLINE = "DeadlineExceeded"
MESSAGE_DEADLINE = "Job was active longer than specified deadline"
REASON_POLICY = "PodFailurePolicy"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
REASON_COMPLETIONS = "CompletionsReached"
MESSAGE_COMPLETIONS = "Reached expected number of succeeded pods"
REASON_FAILED_INDEXES = "FailedIndexes"
MESSAGE_FAILED_INDEXES = "Job has failed indexes"
REASON_MAX_FAILED_INDEXES = "MaxFailedIndexesExceeded"
MESSAGE_MAX_FAILED_INDEXES = "Job has exceeded the specified maximal number of failed indexes"
REASON_SUCCESS_POLICY = "SuccessPolicy"
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
MAX_INT32 = 2**31 - 1

Event = tuple[str, str, str]  # (type, reason, message)


@dataclass
class JobPlan:
    """What one sync of a Job does."""

    status: dict[str, Any]
    create: list[int | None] = field(default_factory=list)  # one per pod: its completion index (None: NonIndexed)
    delete: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    # Pod tracking: the finished pods' UIDs are written first in status.uncountedTerminatedPods (`recorded`),
    # then the pods in `untrack` lose their finalizer, then `status` (the UIDs moved into the counters) is
    # written. `untrack_deleted`: the pods in `delete` lose their finalizer before the delete (not counted).
    recorded: dict[str, Any] | None = None
    untrack: list[dict[str, Any]] = field(default_factory=list)
    untrack_deleted: bool = False
    annotations: dict[int, dict[str, str]] = field(default_factory=dict)  # per created index (failure counts)


# ------------------------------------------------------------------------------------------------ pod facts

def is_finished_job(job: dict[str, Any]) -> bool:
    return any(d(c).get("type") in ("Complete", "Failed") and d(c).get("status") == "True"
               for c in lst(d(job.get("status")).get("conditions")))


def finish_time(job: dict[str, Any]) -> float | None:
    """When a finished Job finished: its completionTime, else its Complete/Failed condition's transition."""
    status = d(job.get("status"))
    done = parse_time(status.get("completionTime"))
    if done is not None:
        return done
    for c in lst(status.get("conditions")):
        if d(c).get("type") in ("Complete", "Failed") and d(c).get("status") == "True":
            return parse_time(d(c).get("lastTransitionTime"))
    return None


def _phase(pod: dict[str, Any]) -> str:
    return str(d(pod.get("status")).get("phase") or "")


def _deleting(pod: dict[str, Any]) -> bool:
    return bool(d(pod.get("metadata")).get("deletionTimestamp"))


def is_tracked(pod: dict[str, Any]) -> bool:
    """The pod still carries the job-tracking finalizer: its end is not yet in the Job's counters."""
    return TRACKING_FINALIZER in lst(d(pod.get("metadata")).get("finalizers"))


def _only_replace_failed(job: dict[str, Any]) -> bool:
    """podReplacementPolicy Failed (implied by a podFailurePolicy): a pod counts as failed only once Failed."""
    spec = d(job.get("spec"))
    return spec.get("podReplacementPolicy") == "Failed" or bool(spec.get("podFailurePolicy"))


def is_pod_failed(job: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Failed, or (unless only failed pods are replaced) deleted before it finished: an orphan pod never gets
    the chance to reach Failed."""
    phase = _phase(pod)
    if phase == "Failed":
        return True
    return not _only_replace_failed(job) and _deleting(pod) and phase != "Succeeded"


def pod_index(pod: dict[str, Any]) -> int | None:
    """The completion index an Indexed Job's pod carries (annotation, or the label kubesat also sets)."""
    meta = d(pod.get("metadata"))
    raw = d(meta.get("annotations")).get(COMPLETION_INDEX_KEY, d(meta.get("labels")).get(COMPLETION_INDEX_KEY))
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    return None


def _exit_codes(pod: dict[str, Any], container: str | None) -> list[tuple[str, int]]:
    status = d(pod.get("status"))
    out = []
    for cs in lst(status.get("initContainerStatuses")) + lst(status.get("containerStatuses")):
        cs = d(cs)
        if container is not None and cs.get("name") != container:
            continue
        code = d(d(cs.get("state")).get("terminated")).get("exitCode")
        if isinstance(code, int) and code != 0:  # successful containers are left out of the check
            out.append((str(cs.get("name", "")), code))
    return out


def _rule_matches(rule: dict[str, Any], pod: dict[str, Any]) -> tuple[str, int] | None | bool:
    """(container, exit code) for an onExitCodes match, True for an onPodConditions match, None for none."""
    codes = d(rule.get("onExitCodes"))
    if codes:
        values = {v for v in lst(codes.get("values")) if isinstance(v, int)}
        container = codes.get("containerName")
        for name, code in _exit_codes(pod, container if isinstance(container, str) else None):
            if (codes.get("operator") == "In") == (code in values):
                return name, code
        return None
    conditions = {(d(c).get("type"), d(c).get("status")) for c in lst(d(pod.get("status")).get("conditions"))}
    if any((d(p).get("type"), d(p).get("status", "True")) in conditions for p in lst(rule.get("onPodConditions"))):
        return True
    return None


def failure_action(job: dict[str, Any], pod: dict[str, Any]) -> tuple[str, str]:
    """The podFailurePolicy action for a failed pod (Count when no rule matches) and, for FailJob, the
    message the Job's Failed condition carries."""
    rules = lst(d(d(job.get("spec")).get("podFailurePolicy")).get("rules"))
    meta = d(pod.get("metadata"))
    for i, rule in enumerate(rules):
        rule = d(rule)
        hit = _rule_matches(rule, pod)
        if hit is None:
            continue
        action = str(rule.get("action") or "Count")
        if isinstance(hit, tuple):
            message = (f"Container {hit[0]} for pod {meta.get('namespace', '')}/{meta.get('name', '')} failed with "
                       f"exit code {hit[1]} matching {action} rule at index {i}")
        else:
            message = f"Pod {meta.get('namespace', '')}/{meta.get('name', '')} has condition matching {action} " \
                      f"rule at index {i}"
        return action, message
    return "Count", ""


def _restarts(pods: list[dict[str, Any]]) -> int:
    return sum(as_int(d(cs).get("restartCount"))
               for p in pods for cs in lst(d(p.get("status")).get("containerStatuses")))


def _finished_at(pod: dict[str, Any]) -> float | None:
    times = [parse_time(d(d(d(cs).get("state")).get("terminated")).get("finishedAt"))
             for cs in lst(d(pod.get("status")).get("containerStatuses"))]
    found = [t for t in times if t is not None]
    return max(found) if found else None


def _failed_at(pod: dict[str, Any]) -> float:
    """When a failed pod ended: its containers' last finish, else (a pod deleted before it ended) its deletion
    time less the grace period, else its creation."""
    meta = d(pod.get("metadata"))
    deleted = parse_time(meta.get("deletionTimestamp"))
    if (done := _finished_at(pod)) is not None:
        return done
    if deleted is not None:
        return deleted - as_int(meta.get("deletionGracePeriodSeconds"))
    return parse_time(meta.get("creationTimestamp")) or 0.0


# ------------------------------------------------------------------------------------------------ indexes

def is_managed_elsewhere(job: dict[str, Any]) -> bool:
    """spec.managedBy names another controller: this one leaves the Job (and its pods) alone."""
    managed_by = d(job.get("spec")).get("managedBy")
    return managed_by is not None and managed_by != JOB_CONTROLLER_NAME


def per_index_limit(job: dict[str, Any]) -> int | None:
    """An Indexed Job's backoffLimitPerIndex (None: failures are counted for the whole Job only)."""
    spec = d(job.get("spec"))
    limit = spec.get("backoffLimitPerIndex")
    return limit if spec.get("completionMode") == "Indexed" and isinstance(limit, int) else None


def _count_annotation(pod: dict[str, Any], key: str) -> int:
    """A failure-count annotation; 0 when absent or not an int32 (it may have been edited)."""
    raw = d(d(pod.get("metadata")).get("annotations")).get(key)
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        return 0
    value = int(raw)
    return value if value <= MAX_INT32 else 0


def index_failure_counts(pod: dict[str, Any]) -> tuple[int, int]:
    """The failures (counted, ignored) the pod's index had before this pod was made."""
    return _count_annotation(pod, INDEX_FAILURE_COUNT), _count_annotation(pod, INDEX_IGNORED_FAILURE_COUNT)


def is_index_failed(job: dict[str, Any], pod: dict[str, Any], limit: int) -> bool:
    """The failed pod ends its index: a FailIndex rule matched, or its index had used up backoffLimitPerIndex."""
    if not is_pod_failed(job, pod):
        return False
    action = failure_action(job, pod)[0] if d(job.get("spec")).get("podFailurePolicy") else "Count"
    if action == "FailIndex":
        return True
    return action != "Ignore" and index_failure_counts(pod)[0] >= limit


def replacement_counts(job: dict[str, Any], replaced: dict[str, Any] | None) -> dict[str, str]:
    """The failure-count annotations of an index's next pod: the replaced pod's, plus its own failure."""
    if replaced is None:
        return {INDEX_FAILURE_COUNT: "0"}
    counted, ignored = index_failure_counts(replaced)
    if d(job.get("spec")).get("podFailurePolicy") and failure_action(job, replaced)[0] == "Ignore":
        ignored += 1
    else:
        counted += 1
    out = {INDEX_FAILURE_COUNT: str(counted)}
    if ignored:
        out[INDEX_IGNORED_FAILURE_COUNT] = str(ignored)
    return out


@dataclass
class _Indexes:
    """An Indexed Job's indexes after this sync: succeeded; failed (with backoffLimitPerIndex, else None); and per
    index to run again, its last failed pod, whose finalizer stays until a replacement exists (it carries the
    index's failure count, and the replacement's back-off is timed from it)."""

    succeeded: set[int]
    failed: set[int] | None
    held: dict[int, dict[str, Any]]


def _newer_failure(pod: dict[str, Any], than: dict[str, Any]) -> bool:
    return sum(index_failure_counts(than)) <= sum(index_failure_counts(pod)) and \
        _failed_at(pod) >= _failed_at(than)


def index_state(job: dict[str, Any], pods: list[dict[str, Any]], active: list[dict[str, Any]]) -> _Indexes:
    status = d(job.get("status"))
    completions = as_int(d(job.get("spec")).get("completions"))
    tracked = [(i, p) for p in pods if is_tracked(p) and (i := _index_in_range(job, p)) is not None]
    succeeded = parse_indexes(status.get("completedIndexes"), completions) | \
        {i for i, p in tracked if _phase(p) == "Succeeded"}
    limit = per_index_limit(job)
    if limit is None:
        return _Indexes(succeeded, None, {})
    failed = parse_indexes(status.get("failedIndexes"), completions) | \
        {i for i, p in tracked if is_index_failed(job, p, limit)}
    settled = succeeded | failed | {pod_index(p) for p in active}
    held: dict[int, dict[str, Any]] = {}
    for i, p in tracked:
        if i not in settled and is_pod_failed(job, p) and (i not in held or _newer_failure(p, held[i])):
            held[i] = p
    return _Indexes(succeeded, failed, held)


def success_policy_match(job: dict[str, Any], succeeded: set[int]) -> str | None:
    """The message of the first successPolicy rule the succeeded indexes meet (`Matched rules at index N`)."""
    spec = d(job.get("spec"))
    completions = as_int(spec.get("completions"))
    rules = lst(d(spec.get("successPolicy")).get("rules"))
    if not succeeded or spec.get("completionMode") != "Indexed":
        return None
    for i, rule in enumerate(d(r) for r in rules):
        count, wanted = rule.get("succeededCount"), rule.get("succeededIndexes")
        if isinstance(wanted, str):
            required_indexes = parse_indexes(wanted, completions)
            hit = len(required_indexes & succeeded)
            if required_indexes and (hit == len(required_indexes) or (isinstance(count, int) and hit >= count)):
                return f"Matched rules at index {i}"
        elif isinstance(count, int) and len(succeeded) >= count:
            return f"Matched rules at index {i}"
    return None


def _indexes_failure(job: dict[str, Any], indexes: _Indexes) -> tuple[str, str] | None:
    """More failed indexes than maxFailedIndexes, or every index settled with some failed."""
    if indexes.failed is None:
        return None
    spec = d(job.get("spec"))
    most = spec.get("maxFailedIndexes")
    if isinstance(most, int) and len(indexes.failed) > most:
        return REASON_MAX_FAILED_INDEXES, MESSAGE_MAX_FAILED_INDEXES
    if indexes.failed and len(indexes.failed) + len(indexes.succeeded) >= as_int(spec.get("completions")):
        return REASON_FAILED_INDEXES, MESSAGE_FAILED_INDEXES
    return None


def _index_backoff(create: list[int | None], held: dict[int, dict[str, Any]],
                   now: float) -> tuple[list[int | None], float]:
    """The indexes whose own back-off (10 s doubling per failure of the index, at most 6 min, from its last
    failure) has passed, and the shortest wait of the others."""
    ready: list[int | None] = []
    waits: list[float] = []
    for index in create:
        last = held.get(index) if index is not None else None
        if last is None:
            ready.append(index)
            continue
        failures = sum(index_failure_counts(last)) + 1
        delay = min(BACKOFF_BASE * float(2 ** min(failures - 1, 16)), BACKOFF_MAX)
        left = _failed_at(last) + delay - now
        if left > 0:
            waits.append(left)
        else:
            ready.append(index)
    return ready, min(waits) if waits else 0.0


# ------------------------------------------------------------------------------------------------ planning

def _condition(kind: str, reason: str, message: str, now: str, status: str = "True") -> dict[str, Any]:
    return {"type": kind, "status": status, "lastProbeTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def _set_condition(status: dict[str, Any], cond: dict[str, Any]) -> bool:
    """Add or update a condition; False when it already said the same."""
    conditions = [d(c) for c in lst(status.get("conditions"))]
    for i, c in enumerate(conditions):
        if c.get("type") == cond["type"]:
            if c.get("status") == cond["status"] and c.get("reason") == cond["reason"]:
                return False
            conditions[i] = cond
            status["conditions"] = conditions
            return True
    status["conditions"] = [*conditions, cond]
    return True


@dataclass
class _Pods:
    """The pods that exist now (the counters are the status's: see _record)."""

    active: list[dict[str, Any]]
    terminating: int
    failed: list[dict[str, Any]]  # Failed pods an Ignore rule does not match: the back-off is timed from them
    fail_job: str  # a FailJob rule's message, if one matched


def _sort_pods(job: dict[str, Any], pods: list[dict[str, Any]]) -> _Pods:
    out = _Pods([], 0, [], "")
    for pod in pods:
        phase = _phase(pod)
        if phase == "Succeeded":
            continue
        if phase == "Failed":
            action, message = failure_action(job, pod)
            if action == "FailJob" and not out.fail_job:
                out.fail_job = message
            if action != "Ignore":
                out.failed.append(pod)
        elif _deleting(pod):
            out.terminating += 1
        else:
            out.active.append(pod)
    return out


def _finish(plan: JobPlan, sorted_pods: _Pods, kind: str, reason: str, message: str, now: str,
            event: Event) -> None:
    """Stop the Job's pods; the terminal condition (Complete or Failed) once none is left terminating, as 1.32
    adds it only after the pods are gone (SuccessCriteriaMet or FailureTarget says it is coming)."""
    plan.delete = sorted_pods.active[:BURST]
    plan.status["active"] = 0
    plan.status["terminating"] = sorted_pods.terminating + len(plan.delete)
    if plan.status["terminating"]:
        return
    if _set_condition(plan.status, _condition(kind, reason, message, now)):
        if kind == "Complete":
            plan.status["completionTime"] = now
        plan.events.append(event)


def _fail(plan: JobPlan, sorted_pods: _Pods, reason: str, message: str, now: str) -> None:
    _set_condition(plan.status, _condition("FailureTarget", reason, message, now))
    _finish(plan, sorted_pods, "Failed", reason, message, now, ("Warning", reason, message))


def _complete(plan: JobPlan, sorted_pods: _Pods, now: str, reason: str = REASON_COMPLETIONS,
              message: str = MESSAGE_COMPLETIONS) -> None:
    """SuccessCriteriaMet (completions reached, or a successPolicy rule met), the pods left stopped (not counted as
    failures), then Complete with the same reason and message."""
    plan.untrack_deleted = True
    _set_condition(plan.status, _condition("SuccessCriteriaMet", reason, message, now))
    _finish(plan, sorted_pods, "Complete", reason, message, now, ("Normal", "Completed", "Job completed"))


def _decided(status: dict[str, Any]) -> dict[str, Any] | None:
    """A FailureTarget or SuccessCriteriaMet condition an earlier sync set: the Job's outcome is known."""
    for c in lst(status.get("conditions")):
        if d(c).get("type") in ("FailureTarget", "SuccessCriteriaMet") and d(c).get("status") == "True":
            return d(c)
    return None


def _failure_reason(job: dict[str, Any], sorted_pods: _Pods, now: float) -> tuple[str, str] | None:
    spec, status = d(job.get("spec")), d(job.get("status"))
    if sorted_pods.fail_job:
        return REASON_POLICY, sorted_pods.fail_job
    failures = as_int(status.get("failed"))  # cumulative: pods removed after they were counted still count
    if d(spec.get("template")).get("spec", {}).get("restartPolicy") == "OnFailure":
        failures += _restarts(sorted_pods.active)
    if failures > as_int(spec.get("backoffLimit"), 6):
        return REASON_BACKOFF, MESSAGE_BACKOFF
    deadline = spec.get("activeDeadlineSeconds")
    start = parse_time(status.get("startTime"))
    if isinstance(deadline, int) and start is not None and now - start >= deadline:
        return REASON_DEADLINE, MESSAGE_DEADLINE
    return None


def _backoff_left(sorted_pods: _Pods, now: float) -> float:
    """Seconds before a failed pod may be replaced: 10 s doubling per failure, at most 6 min, from the newest
    failure."""
    if not sorted_pods.failed:
        return 0.0
    delay = min(BACKOFF_BASE * float(2 ** (len(sorted_pods.failed) - 1)), BACKOFF_MAX)
    last: float = max((_finished_at(p) or now) for p in sorted_pods.failed)
    return max(0.0, last + delay - now)


def _to_create(job: dict[str, Any], sorted_pods: _Pods, succeeded: int, indexes: _Indexes) -> list[int | None]:
    spec = d(job.get("spec"))
    parallelism = as_int(spec.get("parallelism"), 1)
    completions = spec.get("completions")
    active = sorted_pods.active
    if spec.get("podReplacementPolicy") == "Failed" and sorted_pods.terminating:
        return []  # a pod is replaced only once it has fully terminated
    if spec.get("completionMode") == "Indexed" and isinstance(completions, int):
        # Neither a succeeded nor a failed index is run again; the first pending ones go first.
        settled = indexes.succeeded | (indexes.failed or set()) | {pod_index(p) for p in active}
        room = min(max(0, parallelism - len(active)), BURST)
        return list(islice((i for i in range(completions) if i not in settled), room))
    if isinstance(completions, int):
        want = min(parallelism, completions - succeeded)
    else:
        want = 0 if succeeded else parallelism  # a work queue: once one pod succeeded, no new ones
    return [None] * max(0, min(want - len(active), BURST))


def _suspend(plan: JobPlan, job: dict[str, Any], sorted_pods: _Pods, now: str) -> None:
    spec = d(job.get("spec"))
    if spec.get("suspend"):
        plan.delete = sorted_pods.active[:BURST]
        plan.untrack_deleted = True  # a suspended Job's pods are not failures
        plan.status["active"] = 0
        plan.status.pop("startTime", None)
        if _set_condition(plan.status, _condition("Suspended", "JobSuspended", "Job suspended", now)):
            plan.events.append(("Normal", "Suspended", "Job suspended"))
    elif any(d(c).get("type") == "Suspended" and d(c).get("status") == "True"
             for c in lst(plan.status.get("conditions"))):
        _set_condition(plan.status, _condition("Suspended", "JobResumed", "Job resumed", now, "False"))
        plan.events.append(("Normal", "Resumed", "Job resumed"))


@dataclass
class _Tracking:
    """A Job's ended pods not yet in its counters: their UIDs (those recorded by an earlier sync too), in
    Indexed mode the indexes that succeeded, and the pods whose finalizer may now go."""

    succeeded: list[str]
    failed: list[str]
    indexes: set[int]
    untrack: list[dict[str, Any]]


def _index_in_range(job: dict[str, Any], pod: dict[str, Any]) -> int | None:
    index, completions = pod_index(pod), d(job.get("spec")).get("completions")
    return index if index is not None and isinstance(completions, int) and index < completions else None


def _track(job: dict[str, Any], pods: list[dict[str, Any]], failing: bool, hold: set[str]) -> _Tracking:
    """The tracked pods that ended: succeeded, or failed (deleted before they finished, also when only failed
    pods are replaced once the Job is failing; the running pods a failing Job deletes count the sync after);
    a failure an Ignore rule matches, or of an index out of range, is not counted,
    but its finalizer goes all the same. The pods in `hold` (an index's last failure, until it is replaced) wait."""
    uncounted = d(d(job.get("status")).get("uncountedTerminatedPods"))
    out = _Tracking([str(u) for u in lst(uncounted.get("succeeded"))], [str(u) for u in lst(uncounted.get("failed"))],
                    set(), [])
    seen = {*out.succeeded, *out.failed}
    indexed = d(job.get("spec")).get("completionMode") == "Indexed"
    for pod in pods:
        if not is_tracked(pod):
            continue
        uid = str(d(pod.get("metadata")).get("uid", ""))
        if uid in hold:
            continue
        index = _index_in_range(job, pod) if indexed else None
        if _phase(pod) == "Succeeded":
            if index is not None:
                out.indexes.add(index)  # an index is counted once however many pods succeed in it
            elif not indexed and uid not in seen:
                out.succeeded.append(uid)
        elif (failing and _deleting(pod)) or is_pod_failed(job, pod):
            counted = _phase(pod) != "Failed" or failure_action(job, pod)[0] != "Ignore"
            if counted and (index is not None or not indexed) and uid not in seen:
                out.failed.append(uid)
        else:
            continue
        seen.add(uid)
        out.untrack.append(pod)
    return out


def _omit_zero(status: dict[str, Any]) -> dict[str, Any]:
    for key in ("active", "succeeded", "failed"):
        if not status.get(key):
            status.pop(key, None)  # omitted when zero, as the API writes them (ready and terminating stay)
    return status


def count_uncounted(status: dict[str, Any], keep: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The status with uncountedTerminatedPods' UIDs moved into succeeded and failed, but for those in `keep`
    (pods that still carry the finalizer: counted once it is gone)."""
    out = copy.deepcopy(status)
    uncounted = d(out.get("uncountedTerminatedPods"))
    left: dict[str, list[str]] = {}
    for key in ("succeeded", "failed"):
        uids = [str(u) for u in lst(uncounted.get(key))]
        out[key] = as_int(out.get(key)) + sum(1 for u in uids if u not in keep)
        if any(u in keep for u in uids):
            left[key] = [u for u in uids if u in keep]
    out["uncountedTerminatedPods"] = left
    return _omit_zero(out)


def _record(plan: JobPlan, job: dict[str, Any], pods: list[dict[str, Any]], indexes: _Indexes, failing: bool = False,
            settled: bool = False) -> None:
    """Pod tracking for one sync: `plan.recorded` (the ended pods' UIDs added to uncountedTerminatedPods and,
    Indexed, their indexes to completedIndexes, which an index cannot be counted in twice), `plan.untrack` and
    `plan.status`: the counters once those pods have lost their finalizer. An index's last failed pod keeps its
    finalizer until replaced, unless the Job's outcome is `settled` (or it is failing)."""
    hold = set() if failing or settled else {str(d(p.get("metadata")).get("uid", "")) for p in indexes.held.values()}
    tracking = _track(job, pods, failing, hold)
    recorded = copy.deepcopy(d(job.get("status")))
    uncounted = {k: v for k, v in (("succeeded", tracking.succeeded), ("failed", tracking.failed)) if v}
    recorded["uncountedTerminatedPods"] = uncounted
    spec = d(job.get("spec"))
    if spec.get("completionMode") == "Indexed":
        done = parse_indexes(recorded.get("completedIndexes"), as_int(spec.get("completions"))) | tracking.indexes
        recorded["completedIndexes"] = format_indexes(done)
        if not recorded["completedIndexes"]:
            del recorded["completedIndexes"]  # omitted when empty, as the API writes it
        recorded["succeeded"] = len(done)
        uncounted.pop("succeeded", None)  # Indexed successes are counted by index, never by UID
        if indexes.failed is not None:
            recorded["failedIndexes"] = format_indexes(indexes.failed)
    plan.recorded = _omit_zero(recorded) if tracking.untrack else None
    plan.untrack = tracking.untrack
    plan.status = count_uncounted(recorded)


def plan_job(job: dict[str, Any], pods: list[dict[str, Any]], now: float) -> JobPlan:
    """One sync of an unfinished Job against its pods at time `now` (seconds since the epoch)."""
    plan = _plan(job, pods, now)
    _omit_zero(plan.status)
    return plan


def _failing(job: dict[str, Any], plan: JobPlan, sorted_pods: _Pods, now: float,
             indexes: _Indexes) -> tuple[str, str] | None:
    """Why the Job fails now (before this sync it had not): a FailJob rule, backoffLimit, deadline, then the
    failed indexes (maxFailedIndexes exceeded, or every index settled with some failed)."""
    status = plan.status
    if _decided(status) is not None or d(job.get("spec")).get("suspend"):
        return None
    started = {**status, "startTime": status.get("startTime") or rfc3339(now)}
    return _failure_reason({**job, "status": started}, sorted_pods, now) or _indexes_failure(job, indexes)


def _succeeding(job: dict[str, Any], plan: JobPlan, indexes: _Indexes) -> str | None:
    """A successPolicy rule met now (before this sync none had been)."""
    if _decided(plan.status) is not None or d(job.get("spec")).get("suspend"):
        return None
    return success_policy_match(job, indexes.succeeded)


def _settle(plan: JobPlan, job: dict[str, Any], pods: list[dict[str, Any]], sorted_pods: _Pods,
            now: float) -> tuple[tuple[str, str] | None, str | None, _Indexes]:
    """Pod tracking for the sync, and whether the Job fails or meets its successPolicy now: once its outcome is
    known, no failed pod waits for a replacement, and (failing) every deleted pod not succeeded counts as failed."""
    indexes = index_state(job, pods, sorted_pods.active)
    _record(plan, job, pods, indexes)
    failure = _failing(job, plan, sorted_pods, now, indexes)
    success = _succeeding(job, plan, indexes) if failure is None else None
    decided = _decided(plan.status)
    if failure is not None or (decided is not None and decided["type"] == "FailureTarget"):
        _record(plan, job, pods, indexes, failing=True)
    elif success is not None or decided is not None:
        _record(plan, job, pods, indexes, settled=True)
    return failure, success, indexes


def _plan(job: dict[str, Any], pods: list[dict[str, Any]], now: float) -> JobPlan:
    """Decisions use the cumulative counters (status.succeeded and failed after this sync's ended pods are
    moved in), never the pods that happen to still exist; only the back-off delay is timed from failed pods."""
    spec = d(job.get("spec"))
    stamp = rfc3339(now)
    plan = JobPlan(status={})
    sorted_pods = _sort_pods(job, pods)
    failure, success, indexes = _settle(plan, job, pods, sorted_pods, now)
    decided = _decided(plan.status)
    status = plan.status
    status["active"] = len(sorted_pods.active)
    status["ready"] = sum(1 for p in sorted_pods.active if is_ready(p))
    status["terminating"] = sorted_pods.terminating
    if decided is not None:
        reason, message = str(decided.get("reason", "")), str(decided.get("message", ""))
        if decided["type"] == "FailureTarget":
            _fail(plan, sorted_pods, reason, message, stamp)
        else:
            _complete(plan, sorted_pods, stamp, reason, message)
        return plan
    _suspend(plan, job, sorted_pods, stamp)
    if spec.get("suspend"):
        return plan
    status.setdefault("startTime", stamp)
    if failure is not None:
        _fail(plan, sorted_pods, failure[0], failure[1], stamp)
        return plan
    if success is not None:
        _complete(plan, sorted_pods, stamp, REASON_SUCCESS_POLICY, success)
        return plan
    completions = spec.get("completions")
    succeeded = as_int(status.get("succeeded"))
    done = (isinstance(completions, int) and succeeded >= completions) or \
        (not isinstance(completions, int) and succeeded > 0 and not sorted_pods.active)
    if done:
        _complete(plan, sorted_pods, stamp)
        return plan
    _start_pods(plan, job, sorted_pods, indexes, now)
    deadline = spec.get("activeDeadlineSeconds")
    start = parse_time(status.get("startTime"))
    if isinstance(deadline, int) and start is not None:
        left = start + deadline - now
        plan.requeue_after = left if plan.requeue_after is None else min(plan.requeue_after, left)
    return plan


def _start_pods(plan: JobPlan, job: dict[str, Any], sorted_pods: _Pods, indexes: _Indexes, now: float) -> None:
    """The pods to make now, each after its back-off: the Job's (from its newest failure) or, with
    backoffLimitPerIndex, each index's own; a new pod of such an index carries the index's failure counts."""
    create = _to_create(job, sorted_pods, as_int(plan.status.get("succeeded")), indexes)
    if per_index_limit(job) is None:
        wait = _backoff_left(sorted_pods, now) if create else 0.0
        if wait > 0:
            plan.requeue_after = wait
        else:
            plan.create = create
        return
    plan.create, wait = _index_backoff(create, indexes.held, now)
    if wait > 0:
        plan.requeue_after = wait
    plan.annotations = {i: replacement_counts(job, indexes.held.get(i)) for i in plan.create if i is not None}


def pod_from_template(job: dict[str, Any], index: int | None,
                      extra_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A new pod of the Job: its template, its controller reference and, in Indexed mode, the completion index
    (annotation and label, JOB_COMPLETION_INDEX from the annotation, hostname `<job>-<index>`) and, with
    backoffLimitPerIndex, the index's failure counts (`extra_annotations`)."""
    meta = d(job.get("metadata"))
    template = copy.deepcopy(d(d(job.get("spec")).get("template")))
    tmeta = d(template.get("metadata"))
    spec = d(template.get("spec"))
    name = str(meta.get("name", ""))
    labels = dict(d(tmeta.get("labels")))
    annotations = dict(d(tmeta.get("annotations")))
    generate = f"{name}-"
    if index is not None:
        labels[COMPLETION_INDEX_KEY] = str(index)
        annotations[COMPLETION_INDEX_KEY] = str(index)
        annotations.update(extra_annotations or {})
        generate = f"{name}-{index}-"
        spec.setdefault("hostname", f"{name}-{index}")
        env_ref = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": f"metadata.annotations['{COMPLETION_INDEX_KEY}']"}}}
        for key in ("initContainers", "containers"):
            for c in lst(spec.get(key)):
                env = [e for e in lst(d(c).get("env")) if d(e).get("name") != "JOB_COMPLETION_INDEX"]
                d(c)["env"] = [*env, copy.deepcopy(env_ref)]
    pod_meta: dict[str, Any] = {"generateName": generate, "namespace": meta.get("namespace", ""), "labels": labels,
                                "ownerReferences": [owner_reference(job, "batch/v1", "Job")]}
    if annotations:
        pod_meta["annotations"] = annotations
    finalizers = [f for f in lst(tmeta.get("finalizers")) if f != TRACKING_FINALIZER]
    pod_meta["finalizers"] = [*finalizers, TRACKING_FINALIZER]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


# ------------------------------------------------------------------------------------------------ controller

RETRY_UNTRACK = 1.0  # seconds before a sync whose finalizer removal failed is tried again


def _job_ref(ref: dict[str, Any] | None) -> bool:
    return ref is not None and ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1"


class JobController:
    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time,
                 create_pod: PodCreator | None = None) -> None:
        self.registry = registry
        self.clock = clock
        self.create_pod = pod_creator(registry, create_pod)
        self.events = EventRecorder(registry, COMPONENT, clock=clock)
        self.queue = WorkQueue(self.sync, "job")
        self.orphans = WorkQueue(self._sync_orphan, "job-orphan-pods")  # tracked pods with no controller
        # Pods from a watch-fed cache (a Job syncs on each of its pods' changes; a store list each time would
        # cost a namespace scan), with the creations and deletions not yet seen coming back.
        self.pods = PodCache()
        self.expectations = Expectations()
        self._watch: Any = None

    async def start(self) -> None:
        self.queue.start()
        self.orphans.start()
        rev = await self.resync()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self.resync, "job")

    async def stop(self) -> None:
        await cancel(self._watch)
        await self.queue.stop()
        await self.orphans.stop()

    async def resync(self) -> int:
        rev = await self.registry.revision()
        pods = (await self.registry.list(PODS, "")).items
        self.pods.fill(pods)
        for job in (await self.registry.list(JOBS, "")).items:
            meta = job["metadata"]
            self.queue.add((meta.get("namespace", ""), meta["name"]))
        for pod in pods:  # a tracked pod whose Job went while the controller was away
            if is_tracked(pod):
                self._pod_changed(pod)
        return rev

    def _pod_changed(self, pod: dict[str, Any]) -> None:
        """Sync the pod's Job; a tracked pod with no controller (orphaned, released) loses its finalizer."""
        meta = pod["metadata"]
        ref = controller_ref(pod)
        if _job_ref(ref):
            self.queue.add((meta.get("namespace", ""), str(d(ref).get("name", ""))))
        elif ref is None and is_tracked(pod):
            self.orphans.add((meta.get("namespace", ""), meta["name"]))

    async def _on_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is JOBS:
            self.queue.add(split_key(JOBS, ev.key))
        elif info is PODS:
            ns, name = split_key(PODS, ev.key)
            pod = loads(ev.value) if ev.type != "DELETE" else None
            if pod is None:
                self.pods.remove(ns, name)
            else:
                self.pods.put(pod)
            self.expectations.observe(pod, ns, name)
            self._pod_changed(pod if pod is not None else loads(ev.prev_value) or {"metadata": {"name": name}})

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        job = await self.registry.get_or_none(JOBS, ns, name)
        if job is not None and is_managed_elsewhere(job):
            # Another controller runs it (and tracks its pods); only its ttlSecondsAfterFinished is kept here,
            # as the ttl-after-finished controller does not look at managedBy.
            self.expectations.forget(key)
            if is_finished_job(job):
                await self._expire(job, self.clock())
            return
        await self._untrack_stale(ns, name, job)
        if job is None or d(job.get("metadata")).get("deletionTimestamp"):
            self.expectations.forget(key)
            return
        now = self.clock()
        if is_finished_job(job):
            await self._expire(job, now)
            return
        if not self.expectations.satisfied(key):
            # The watch brings the pods made or removed, each syncing again; this is the fallback.
            self.queue.add_after(key, self.expectations.timeout + 1.0)
            return
        self.expectations.forget(key)
        pods = await self._claim(job)
        plan = plan_job(job, pods, now)
        if not await self._flush(job, plan):
            self.queue.add_after(key, RETRY_UNTRACK)
            return
        ref = object_reference(job)
        for pod in plan.delete:
            if plan.untrack_deleted:
                await self._untrack(pod)
            await delete_owned_pod(self.registry, self.pods, self.expectations, self.events, key, ref, pod)
        created = 0
        for index in plan.create:
            extra = plan.annotations.get(index) if index is not None else None
            created += await self._create_pod(key, ref, job, index, extra)
        if created:
            plan.status["active"] = as_int(plan.status.get("active")) + created
        written = job if plan.recorded is None else {**job, "status": plan.recorded}
        await write_status(self.registry, JOBS, written, plan.status)
        for type_, reason, message in plan.events:
            await self.events.event(ref, type_, reason, message)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)
        elif is_finished_job({"status": plan.status}):
            await self._expire({**job, "status": plan.status}, now)

    async def _flush(self, job: dict[str, Any], plan: JobPlan) -> bool:
        """Write the ended pods' UIDs in uncountedTerminatedPods, then take their finalizers off: counted once,
        even if the controller stops in between. False when a finalizer stayed (the others are counted now)."""
        if plan.recorded is None:
            return True
        await write_status(self.registry, JOBS, job, plan.recorded)
        kept = {str(p["metadata"].get("uid", "")) for p in plan.untrack if not await self._untrack(p)}
        if not kept:
            return True
        await write_status(self.registry, JOBS, {**job, "status": plan.recorded}, count_uncounted(plan.recorded, kept))
        return False

    async def _untrack(self, pod: dict[str, Any]) -> bool:
        """Take the job-tracking finalizer off a pod (a deleted one with no grace left is then removed); False
        when the API refused."""
        meta = pod["metadata"]

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            cmeta = current["metadata"]
            if cmeta.get("uid") != meta.get("uid"):
                raise errors.not_found("pods", meta["name"])  # that pod is gone; this is another
            finalizers = [f for f in lst(cmeta.get("finalizers")) if f != TRACKING_FINALIZER]
            if finalizers:
                cmeta["finalizers"] = finalizers
            else:
                cmeta.pop("finalizers", None)
            return current

        try:
            await self.registry.guaranteed_update(PODS, meta.get("namespace", ""), meta["name"], mutate)
        except errors.StatusError as e:
            if e.code == 404:
                return True
            log.warning("pod %s/%s: removing %s: %s", meta.get("namespace"), meta["name"], TRACKING_FINALIZER,
                        e.message)
            return False
        return True

    async def _untrack_stale(self, ns: str, name: str, job: dict[str, Any] | None) -> None:
        """The finalizer off the tracked pods of a Job that is gone, replaced, being deleted or finished: nothing
        will count them, and they would stay Terminating for ever."""
        live = job is not None and not d(job.get("metadata")).get("deletionTimestamp") and not is_finished_job(job)
        uid = d(job.get("metadata")).get("uid") if job is not None else None
        for pod in self.pods.pods(ns):
            ref = controller_ref(pod)
            if is_tracked(pod) and _job_ref(ref) and d(ref).get("name") == name and \
                    not (live and d(ref).get("uid") == uid):
                await self._untrack(pod)

    async def _sync_orphan(self, key: tuple[str, str]) -> None:
        pod = self.pods.get(*key)
        if pod is not None and is_tracked(pod) and controller_ref(pod) is None:
            await self._untrack(pod)

    async def _claim(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The Job's pods, as ControllerRefManager claims them: orphans its selector matches are adopted (a
        manual selector may pick up pods made before the Job) with the tracking finalizer, so their end is
        counted as its own pods' is; its pods that no longer match are released, finalizer and all."""
        found = claim(job, self.pods.pods(job["metadata"].get("namespace", "")))
        ref = owner_reference(job, "batch/v1", "Job")
        for pod in found.release:
            await release(self.registry, PODS, pod, ref["uid"], TRACKING_FINALIZER)
        return found.owned + [p for p in found.adopt if await adopt(self.registry, PODS, p, ref, TRACKING_FINALIZER)]

    async def _create_pod(self, key: tuple[str, str], ref: dict[str, Any], job: dict[str, Any],
                          index: int | None, extra: dict[str, str] | None = None) -> int:
        try:
            created = await self.create_pod(pod_from_template(job, index, extra))
        except errors.StatusError as e:
            await self.events.event(ref, "Warning", "FailedCreate", f"Error creating: {e.message}")
            return 0
        name = created["metadata"]["name"]
        if self.pods.get(key[0], name) is None:  # the watch may have brought it already
            self.expectations.expect_create(key, key[0], name)
        await self.events.event(ref, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        return 1

    async def _expire(self, job: dict[str, Any], now: float) -> None:
        """ttlSecondsAfterFinished: delete the finished Job (and, foreground, its pods) once it has passed."""
        ttl = d(job.get("spec")).get("ttlSecondsAfterFinished")
        done = finish_time(job)
        if not isinstance(ttl, int) or done is None:
            return
        meta = job["metadata"]
        left = done + ttl - now
        if left > 0:
            self.queue.add_after((meta.get("namespace", ""), meta["name"]), left)
            return
        try:
            await self.registry.delete(JOBS, meta.get("namespace", ""), meta["name"],
                                       DeleteOptions(propagation="Foreground", uid=meta.get("uid", "")))
        except errors.StatusError as e:
            if e.code not in (404, 409):
                log.warning("job %s/%s: ttl deletion failed: %s", meta.get("namespace"), meta["name"], e.message)
