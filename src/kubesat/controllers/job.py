"""The Job controller: runs a Job's pods to completion, as kube-controller-manager's job controller does.

Each sync takes the Job's pods (those it is the controller of, from a watch-fed cache), and a pure planner
(`plan_job`) says what follows: the new status (active, ready, succeeded, failed, terminating, conditions,
times), the pods to create (one per missing completion index in Indexed mode) or delete, and the Events.
Failed pods are replaced after an exponential back-off (10 s doubling, at most 6 min); more failures than
backoffLimit (for restartPolicy OnFailure, container restarts count too) fail the Job with
BackoffLimitExceeded, and a podFailurePolicy rule can fail it at once (FailJob) or not count a failure
(Ignore). A finished Job with ttlSecondsAfterFinished is deleted once that has passed (foreground, so its
pods go first), as the ttl-after-finished controller does.

Unlike Kubernetes, finished pods are counted from the pods that still exist (no job-tracking finalizer); the
counts never go down, so a pod removed after it was counted is still counted.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesat import errors
from kubesat.controllers.base import WorkQueue, cancel, loads, resource_of_key, split_key, watch_in_background
from kubesat.controllers.events import EventRecorder, object_reference
from kubesat.controllers.podcache import Expectations, PodCache, delete_owned_pod
from kubesat.controllers.workload import (
    adopt, as_int, claim, controller_ref, create_admitted_pod, d, is_ready, lst, owner_reference, parse_time,
    release, write_status,
)
from kubesat.registry.batch import COMPLETION_INDEX_KEY
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
REASON_COMPLETIONS = "CompletionsReached"
MESSAGE_COMPLETIONS = "Reached expected number of succeeded pods"

Event = tuple[str, str, str]  # (type, reason, message)


@dataclass
class JobPlan:
    """What one sync of a Job does."""

    status: dict[str, Any]
    create: list[int | None] = field(default_factory=list)  # one per pod: its completion index (None: NonIndexed)
    delete: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


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


def format_indexes(indexes: set[int]) -> str:
    """completedIndexes: ascending, runs of consecutive indexes as `a-b` (e.g. `1,3-5,7`)."""
    out: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


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
    active: list[dict[str, Any]]
    terminating: int
    succeeded: list[dict[str, Any]]
    failed: list[dict[str, Any]]  # counted failures (Ignore rules left out)
    fail_job: str  # a FailJob rule's message, if one matched


def _sort_pods(job: dict[str, Any], pods: list[dict[str, Any]]) -> _Pods:
    out = _Pods([], 0, [], [], "")
    for pod in pods:
        phase = _phase(pod)
        if phase == "Succeeded":
            out.succeeded.append(pod)
        elif phase == "Failed":
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


def _complete(plan: JobPlan, sorted_pods: _Pods, now: str) -> None:
    _set_condition(plan.status, _condition("SuccessCriteriaMet", REASON_COMPLETIONS, MESSAGE_COMPLETIONS, now))
    _finish(plan, sorted_pods, "Complete", REASON_COMPLETIONS, MESSAGE_COMPLETIONS, now,
            ("Normal", "Completed", "Job completed"))


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
    failures = len(sorted_pods.failed)
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


def _to_create(job: dict[str, Any], sorted_pods: _Pods, succeeded_indexes: set[int]) -> list[int | None]:
    spec = d(job.get("spec"))
    parallelism = as_int(spec.get("parallelism"), 1)
    completions = spec.get("completions")
    active = sorted_pods.active
    if spec.get("podReplacementPolicy") == "Failed" and sorted_pods.terminating:
        return []  # a pod is replaced only once it has fully terminated
    if spec.get("completionMode") == "Indexed" and isinstance(completions, int):
        busy = {pod_index(p) for p in active}
        missing = [i for i in range(completions) if i not in succeeded_indexes and i not in busy]
        room = max(0, parallelism - len(active))
        return list(missing[:min(room, BURST)])
    if isinstance(completions, int):
        want = min(parallelism, completions - len(sorted_pods.succeeded))
    else:
        want = 0 if sorted_pods.succeeded else parallelism  # a work queue: once one pod succeeded, no new ones
    return [None] * max(0, min(want - len(active), BURST))


def _suspend(plan: JobPlan, job: dict[str, Any], sorted_pods: _Pods, now: str) -> None:
    spec = d(job.get("spec"))
    if spec.get("suspend"):
        plan.delete = sorted_pods.active[:BURST]
        plan.status["active"] = 0
        plan.status.pop("startTime", None)
        if _set_condition(plan.status, _condition("Suspended", "JobSuspended", "Job suspended", now)):
            plan.events.append(("Normal", "Suspended", "Job suspended"))
    elif any(d(c).get("type") == "Suspended" and d(c).get("status") == "True"
             for c in lst(plan.status.get("conditions"))):
        _set_condition(plan.status, _condition("Suspended", "JobResumed", "Job resumed", now, "False"))
        plan.events.append(("Normal", "Resumed", "Job resumed"))


def plan_job(job: dict[str, Any], pods: list[dict[str, Any]], now: float) -> JobPlan:
    """One sync of an unfinished Job against its pods at time `now` (seconds since the epoch)."""
    plan = _plan(job, pods, now)
    for key in ("active", "succeeded", "failed"):
        if not plan.status.get(key):
            plan.status.pop(key, None)  # omitted when zero, as the API writes them (ready and terminating stay)
    return plan


def _plan(job: dict[str, Any], pods: list[dict[str, Any]], now: float) -> JobPlan:
    spec = d(job.get("spec"))
    stamp = rfc3339(now)
    plan = JobPlan(status=copy.deepcopy(d(job.get("status"))))
    status = plan.status
    sorted_pods = _sort_pods(job, pods)
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions")
    succeeded_indexes = {i for p in sorted_pods.succeeded if (i := pod_index(p)) is not None
                         and (not isinstance(completions, int) or i < completions)}
    succeeded = len(succeeded_indexes) if indexed else len(sorted_pods.succeeded)
    status["succeeded"] = max(as_int(status.get("succeeded")), succeeded)
    status["failed"] = max(as_int(status.get("failed")), len(sorted_pods.failed))
    status["active"] = len(sorted_pods.active)
    status["ready"] = sum(1 for p in sorted_pods.active if is_ready(p))
    status["terminating"] = sorted_pods.terminating
    status.setdefault("uncountedTerminatedPods", {})
    if indexed:
        status["completedIndexes"] = format_indexes(succeeded_indexes)
        if not status["completedIndexes"]:
            del status["completedIndexes"]  # omitted when empty, as the API writes it
    decided = _decided(status)
    if decided is not None:
        if decided["type"] == "FailureTarget":
            _fail(plan, sorted_pods, str(decided.get("reason", "")), str(decided.get("message", "")), stamp)
        else:
            _complete(plan, sorted_pods, stamp)
        return plan
    _suspend(plan, job, sorted_pods, stamp)
    if spec.get("suspend"):
        return plan
    status.setdefault("startTime", stamp)
    failure = _failure_reason({**job, "status": status}, sorted_pods, now)
    if failure is not None:
        _fail(plan, sorted_pods, failure[0], failure[1], stamp)
        return plan
    done = (isinstance(completions, int) and status["succeeded"] >= completions) or \
        (not isinstance(completions, int) and succeeded > 0 and not sorted_pods.active)
    if done:
        _complete(plan, sorted_pods, stamp)
        return plan
    create = _to_create(job, sorted_pods, succeeded_indexes)
    wait = _backoff_left(sorted_pods, now) if create else 0.0
    if wait > 0:
        plan.requeue_after = wait
    else:
        plan.create = create
    deadline = spec.get("activeDeadlineSeconds")
    start = parse_time(status.get("startTime"))
    if isinstance(deadline, int) and start is not None:
        left = start + deadline - now
        plan.requeue_after = left if plan.requeue_after is None else min(plan.requeue_after, left)
    return plan


def pod_from_template(job: dict[str, Any], index: int | None) -> dict[str, Any]:
    """A new pod of the Job: its template, its controller reference and, in Indexed mode, the completion index
    (annotation and label, JOB_COMPLETION_INDEX from the annotation, hostname `<job>-<index>`)."""
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
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


# ------------------------------------------------------------------------------------------------ controller

class JobController:
    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.clock = clock
        self.events = EventRecorder(registry, COMPONENT, clock=clock)
        self.queue = WorkQueue(self.sync, "job")
        # Pods from a watch-fed cache (a Job syncs on each of its pods' changes; a store list each time would
        # cost a namespace scan), with the creations and deletions not yet seen coming back.
        self.pods = PodCache()
        self.expectations = Expectations()
        self._watch: Any = None

    async def start(self) -> None:
        self.queue.start()
        rev = await self.resync()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self.resync, "job")

    async def stop(self) -> None:
        await cancel(self._watch)
        await self.queue.stop()

    async def resync(self) -> int:
        rev = await self.registry.revision()
        self.pods.fill((await self.registry.list(PODS, "")).items)
        for job in (await self.registry.list(JOBS, "")).items:
            meta = job["metadata"]
            self.queue.add((meta.get("namespace", ""), meta["name"]))
        return rev

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
            ref = controller_ref(pod if pod is not None else loads(ev.prev_value) or {})
            if ref is not None and ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1":
                self.queue.add((ns, str(ref.get("name", ""))))

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        job = await self.registry.get_or_none(JOBS, ns, name)
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
        ref = object_reference(job)
        for pod in plan.delete:
            await delete_owned_pod(self.registry, self.pods, self.expectations, self.events, key, ref, pod)
        created = 0
        for index in plan.create:
            created += await self._create_pod(key, ref, job, index)
        if created:
            plan.status["active"] = as_int(plan.status.get("active")) + created
        await write_status(self.registry, JOBS, job, plan.status)
        for type_, reason, message in plan.events:
            await self.events.event(ref, type_, reason, message)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)
        elif is_finished_job({"status": plan.status}):
            await self._expire({**job, "status": plan.status}, now)

    async def _claim(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The Job's pods, as ControllerRefManager claims them: orphans its selector matches are adopted (a
        manual selector may pick up pods made before the Job), its pods that no longer match released."""
        found = claim(job, self.pods.pods(job["metadata"].get("namespace", "")))
        ref = owner_reference(job, "batch/v1", "Job")
        for pod in found.release:
            await release(self.registry, PODS, pod, ref["uid"])
        return found.owned + [p for p in found.adopt if await adopt(self.registry, PODS, p, ref)]

    async def _create_pod(self, key: tuple[str, str], ref: dict[str, Any], job: dict[str, Any],
                          index: int | None) -> int:
        try:
            created = await create_admitted_pod(self.registry, pod_from_template(job, index))
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
