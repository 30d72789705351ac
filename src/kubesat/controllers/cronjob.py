"""The CronJob controller: creates a CronJob's Jobs at its schedule times, as kube-controller-manager's
cronjob controller (v2) does.

A pure planner (`plan_cronjob`) takes the CronJob, the Jobs it owns and the time, and says what a sync does:
the Jobs seen finished leave status.active (SawCompletedJob), the most recent missed schedule time not
older than startingDeadlineSeconds gets a Job named `<cronjob>-<minutes since the epoch>` unless
concurrencyPolicy Forbid finds one still running (Replace deletes those first), finished Jobs beyond the
history limits are deleted, and the next sync is due at the next schedule time. The clock is injected, so
tests move time instead of waiting for it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from croniter import croniter

from kubesat import errors
from kubesat.controllers.base import WorkQueue, cancel, loads, resource_of_key, split_key, watch_in_background
from kubesat.controllers.events import EventRecorder, object_reference
from kubesat.controllers.workload import (
    Creator, controller_ref, creator, d, lst, owner_reference, parse_time, write_status,
)
from kubesat.registry.batch import CRONJOB_SCHEDULED_TIMESTAMP, cron_schedule, every_interval, schedule_errors
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry, rfc3339
from kubesat.storage.interface import WatchEvent

CRONJOBS = builtin_kind("batch/v1", "CronJob")
JOBS = builtin_kind("batch/v1", "Job")
COMPONENT = "cronjob-controller"
NEXT_SYNC_SLACK = 0.1  # the controller wakes a moment after a schedule time, never a moment before
RETRY_AFTER = 10.0  # a Job that could not be created is tried again this much later

Event = tuple[str, str, str]  # (type, reason, message)


@dataclass
class CronPlan:
    """What one sync of a CronJob does."""

    status: dict[str, Any]
    create: dict[str, Any] | None = None  # the Job to create
    delete: list[dict[str, Any]] = field(default_factory=list)  # Jobs to delete (Replace, history limits)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


# ------------------------------------------------------------------------------------------------ schedule

def schedule_times(schedule: str, tz: str | None, after: float, until: float) -> tuple[float | None, float]:
    """(the most recent schedule time in (after, until], or None; the first schedule time after `until`)."""
    interval = every_interval(schedule.strip())
    if interval is not None:
        # A fixed interval counts from the last time the CronJob ran (or was created), as robfig's does.
        steps = int((until - after) // interval)
        recent = after + steps * interval if steps >= 1 else None
        return recent, (recent if recent is not None else after) + interval
    expr, zone = cron_schedule(schedule, tz)
    moment = datetime.fromtimestamp(until, UTC).astimezone(zone)
    prev = croniter(expr, moment + timedelta(microseconds=1)).get_prev(datetime).timestamp()
    following = croniter(expr, moment).get_next(datetime).timestamp()
    return (prev if prev > after else None), following


def missed_count(schedule: str, tz: str | None, after: float, until: float) -> int:
    """How many schedule times fell in (after, until], estimated as Kubernetes does: from the gap between the
    first two, so that a CronJob asleep for years costs two parses, not a walk over every missed minute."""
    interval = every_interval(schedule.strip())
    if interval is not None:
        return max(0, int((until - after) // interval))
    expr, zone = cron_schedule(schedule, tz)
    it = croniter(expr, datetime.fromtimestamp(after, UTC).astimezone(zone))
    first = it.get_next(datetime).timestamp()
    second = it.get_next(datetime).timestamp()
    if until < first:
        return 0
    return int((until - first) // max(1.0, round(second - first))) + 1


def job_name(cronjob_name: str, scheduled: float) -> str:
    """`<cronjob>-<scheduled time in minutes since the epoch>`: the same for a retried sync of one time."""
    return f"{cronjob_name}-{int(scheduled // 60)}"


def job_from_template(cj: dict[str, Any], scheduled: float) -> dict[str, Any]:
    meta = d(cj.get("metadata"))
    template = d(d(cj.get("spec")).get("jobTemplate"))
    tmeta = d(template.get("metadata"))
    tz = d(cj.get("spec")).get("timeZone")
    _, zone = cron_schedule(str(d(cj.get("spec")).get("schedule") or "* * * * *"), tz if isinstance(tz, str) else None)
    stamp = datetime.fromtimestamp(scheduled, UTC).astimezone(zone).isoformat().replace("+00:00", "Z")
    annotations = {**d(tmeta.get("annotations")), CRONJOB_SCHEDULED_TIMESTAMP: stamp}
    job_meta: dict[str, Any] = {"name": job_name(str(meta.get("name", "")), scheduled),
                                "namespace": meta.get("namespace", ""), "annotations": annotations,
                                "ownerReferences": [owner_reference(cj, "batch/v1", "CronJob")]}
    if tmeta.get("labels"):
        job_meta["labels"] = dict(d(tmeta.get("labels")))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
            "spec": copy.deepcopy(d(template.get("spec")))}


def job_reference(job: dict[str, Any]) -> dict[str, Any]:
    """The ObjectReference status.active holds."""
    meta = d(job.get("metadata"))
    return {"kind": "Job", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
            "uid": meta.get("uid", ""), "apiVersion": "batch/v1", "resourceVersion": meta.get("resourceVersion", "")}


# ------------------------------------------------------------------------------------------------ planning

def _finished_condition(job: dict[str, Any]) -> str:
    for c in lst(d(job.get("status")).get("conditions")):
        if d(c).get("type") in ("Complete", "Failed") and d(c).get("status") == "True":
            return str(d(c)["type"])
    return ""


def _track_jobs(plan: CronPlan, jobs: list[dict[str, Any]]) -> None:
    """status.active against the Jobs that exist: finished ones leave it, vanished ones too."""
    status = plan.status
    active = [d(r) for r in lst(status.get("active"))]
    active_uids = {r.get("uid") for r in active}
    for job in jobs:
        meta = d(job.get("metadata"))
        condition = _finished_condition(job)
        if meta.get("uid") not in active_uids and not condition:
            plan.events.append(("Warning", "UnexpectedJob",
                                f"Saw a job that the controller did not create or forgot: {meta.get('name', '')}"))
        elif meta.get("uid") in active_uids and condition:
            active = [r for r in active if r.get("uid") != meta.get("uid")]
            plan.events.append(("Normal", "SawCompletedJob",
                                f"Saw completed job: {meta.get('name', '')}, condition: {condition}"))
        if condition == "Complete":
            done = d(job.get("status")).get("completionTime")
            last = parse_time(status.get("lastSuccessfulTime"))
            when = parse_time(done)
            if when is not None and (last is None or when > last):
                status["lastSuccessfulTime"] = done
    existing = {d(j.get("metadata")).get("uid") for j in jobs}
    for ref in list(active):
        if ref.get("uid") not in existing:
            active.remove(ref)
            plan.events.append(("Normal", "MissingJob", f"Active job went missing: {ref.get('name', '')}"))
    if active:
        status["active"] = active
    else:
        status.pop("active", None)


def _start_time(job: dict[str, Any]) -> float:
    meta = d(job.get("metadata"))
    return parse_time(d(job.get("status")).get("startTime")) or parse_time(meta.get("creationTimestamp")) or 0.0


def _history(plan: CronPlan, cj: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
    """Finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit, oldest first, to delete."""
    spec = d(cj.get("spec"))
    for kind, key in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
        limit = spec.get(key)
        if not isinstance(limit, int):
            continue
        done = sorted((j for j in jobs if _finished_condition(j) == kind), key=_start_time)
        plan.delete += done[:max(0, len(done) - limit)]


def _next_in(following: float, now: float) -> float:
    return max(0.0, following - now) + NEXT_SYNC_SLACK


def _go_time(ts: float) -> str:
    """A Go time.RFC1123Z rendering for the MissSchedule message."""
    return format_datetime(datetime.fromtimestamp(ts, UTC)).replace("-0000", "+0000")


def plan_cronjob(cj: dict[str, Any], jobs: list[dict[str, Any]], now: float) -> CronPlan:
    """One sync of a CronJob against the Jobs it owns at time `now` (seconds since the epoch)."""
    spec, meta = d(cj.get("spec")), d(cj.get("metadata"))
    plan = CronPlan(status=copy.deepcopy(d(cj.get("status"))))
    _track_jobs(plan, jobs)
    _history(plan, cj, jobs)
    schedule = str(spec.get("schedule") or "")
    tz = spec.get("timeZone") if isinstance(spec.get("timeZone"), str) else None
    if meta.get("deletionTimestamp") or spec.get("suspend") or schedule_errors(schedule):
        return plan
    earliest = parse_time(plan.status.get("lastScheduleTime")) or parse_time(meta.get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if isinstance(deadline, int):
        earliest = max(earliest, now - deadline)
    scheduled, following = schedule_times(schedule, tz, earliest, now)
    plan.requeue_after = _next_in(following, now)
    if scheduled is None:
        return plan
    if missed_count(schedule, tz, earliest, now) > 100:
        plan.events.append(("Warning", "TooManyMissedTimes", "too many missed start times. Set or decrease "
                                                             ".spec.startingDeadlineSeconds or check clock skew"))
    if isinstance(deadline, int) and scheduled < now - deadline:
        plan.events.append(("Warning", "MissSchedule", f"Missed scheduled time to start a job: {_go_time(scheduled)}"))
        return plan
    active = lst(plan.status.get("active"))
    policy = spec.get("concurrencyPolicy") or "Allow"
    if policy == "Forbid" and active:
        plan.events.append(("Normal", "JobAlreadyActive", "Not starting job because prior execution is running "
                                                          "and concurrency policy is Forbid"))
        return plan
    if policy == "Replace" and active:
        running = {d(r).get("uid") for r in active}
        plan.delete += [j for j in jobs if d(j.get("metadata")).get("uid") in running]
        plan.status.pop("active", None)
    plan.create = job_from_template(cj, scheduled)
    plan.status["lastScheduleTime"] = rfc3339(scheduled)
    return plan


# ------------------------------------------------------------------------------------------------ controller

class CronJobController:
    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time,
                 create: Creator | None = None) -> None:
        self.registry = registry
        self.clock = clock
        self.create = creator(registry, create)
        self.events = EventRecorder(registry, COMPONENT, clock=clock)
        self.queue = WorkQueue(self.sync, "cronjob")
        self._watch: Any = None

    async def start(self) -> None:
        self.queue.start()
        rev = await self.resync()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self.resync, "cronjob")

    async def stop(self) -> None:
        await cancel(self._watch)
        await self.queue.stop()

    async def resync(self) -> int:
        rev = await self.registry.revision()
        for cj in (await self.registry.list(CRONJOBS, "")).items:
            self.queue.add((cj["metadata"].get("namespace", ""), cj["metadata"]["name"]))
        return rev

    async def _on_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is CRONJOBS:
            self.queue.add(split_key(CRONJOBS, ev.key))
        elif info is JOBS:
            job = loads(ev.value if ev.value is not None else ev.prev_value) or {}
            ref = controller_ref(job)
            if ref is not None and ref.get("kind") == "CronJob" and ref.get("apiVersion") == "batch/v1":
                self.queue.add((split_key(JOBS, ev.key)[0], str(ref.get("name", ""))))

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        cj = await self.registry.get_or_none(CRONJOBS, ns, name)
        if cj is None:
            return
        uid = cj["metadata"].get("uid")
        jobs = [j for j in (await self.registry.list(JOBS, ns)).items if d(controller_ref(j)).get("uid") == uid]
        plan = plan_cronjob(cj, jobs, self.clock())
        ref = object_reference(cj)
        for job in plan.delete:
            await self._delete_job(ref, job)
        if plan.create is not None:
            created = await self._create_job(ref, plan.create)
            if created is None:
                # Not run: the same schedule time is tried again shortly (lastScheduleTime stays where it was).
                before = d(cj.get("status")).get("lastScheduleTime")
                if before is None:
                    plan.status.pop("lastScheduleTime", None)
                else:
                    plan.status["lastScheduleTime"] = before
                self.queue.add_after(key, RETRY_AFTER)
            else:
                plan.status["active"] = [*lst(plan.status.get("active")), job_reference(created)]
        await write_status(self.registry, CRONJOBS, cj, plan.status)
        for type_, reason, message in plan.events:
            await self.events.event(ref, type_, reason, message)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)

    async def _create_job(self, ref: dict[str, Any], job: dict[str, Any]) -> dict[str, Any] | None:
        ns = str(job["metadata"]["namespace"])
        try:
            created = await self.create(JOBS, ns, job)
        except errors.StatusError as e:
            if e.code == 409:
                # Made by an earlier sync whose status write was lost, it is this schedule time's Job; one of the
                # same name that is not the CronJob's is left alone.
                found = await self.registry.get_or_none(JOBS, ns, job["metadata"]["name"])
                owner = job["metadata"]["ownerReferences"][0]["uid"]
                return found if found is not None and d(controller_ref(found)).get("uid") == owner else None
            await self.events.event(ref, "Warning", "FailedCreate", f"Error creating job: {e.message}")
            return None
        await self.events.event(ref, "Normal", "SuccessfulCreate", f"Created job {created['metadata']['name']}")
        return created

    async def _delete_job(self, ref: dict[str, Any], job: dict[str, Any]) -> None:
        meta = job["metadata"]
        try:
            await self.registry.delete(JOBS, meta.get("namespace", ""), meta["name"],
                                       DeleteOptions(propagation="Background", uid=meta.get("uid", "")))
        except errors.StatusError as e:
            if e.code != 404:
                await self.events.event(ref, "Warning", "FailedDelete", f"Deleted job: {e.message}")
            return
        await self.events.event(ref, "Normal", "SuccessfulDelete", f"Deleted job {meta['name']}")
