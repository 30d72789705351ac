"""The CronJob controller's planner on a fake clock: schedule times (cron, descriptors, @every, time zones), the
Job it creates and its name, concurrency policies, startingDeadlineSeconds, suspend, finished and vanished Jobs
leaving status.active, history limits; and the controller against an in-memory store on an injected clock."""

from __future__ import annotations

import asyncio
import calendar
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kubesat.controllers import cronjob as cc
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry, rfc3339
from kubesat.registry.strategies import STRATEGIES
from kubesat.storage.memory import MemoryStore

CRONJOBS = builtin_kind("batch/v1", "CronJob")
JOBS = builtin_kind("batch/v1", "Job")
NAMESPACES = builtin_kind("v1", "Namespace")
EVENTS = builtin_kind("v1", "Event")


def at(text: str) -> float:
    """Seconds since the epoch of a UTC time `YYYY-MM-DDTHH:MM:SS`."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S")))


CREATED = at("2026-03-01T10:00:30")


def cronjob(schedule: str = "*/5 * * * *", **spec: Any) -> dict[str, Any]:
    obj = {"apiVersion": "batch/v1", "kind": "CronJob",
           "metadata": {"name": "tick", "namespace": "ns", "uid": "cj-uid", "creationTimestamp": rfc3339(CREATED)},
           "spec": {"schedule": schedule, "jobTemplate": {
               "metadata": {"labels": {"app": "tick"}},
               "spec": {"template": {"spec": {"restartPolicy": "Never",
                                              "containers": [{"name": "c", "image": "busybox"}]}}}}, **spec}}
    STRATEGIES[("batch/v1", "CronJob")].prepare_for_create(obj)
    obj["status"] = {}
    return obj


def owned_job(name: str, condition: str = "", start: float = CREATED, uid: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": rfc3339(start)}
    if condition:
        status["conditions"] = [{"type": condition, "status": "True"}]
        if condition == "Complete":
            status["completionTime"] = rfc3339(start + 10)
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}",
                         "ownerReferences": [{"kind": "CronJob", "name": "tick", "uid": "cj-uid", "controller": True}]},
            "status": status}


def test_schedule_times() -> None:
    recent, following = cc.schedule_times("*/5 * * * *", None, CREATED, at("2026-03-01T10:07:00"))
    assert (recent, following) == (at("2026-03-01T10:05:00"), at("2026-03-01T10:10:00"))
    # Exactly on a schedule time counts; nothing since `after` gives None.
    assert cc.schedule_times("*/5 * * * *", None, CREATED, at("2026-03-01T10:05:00"))[0] == at("2026-03-01T10:05:00")
    assert cc.schedule_times("*/5 * * * *", None, CREATED, at("2026-03-01T10:04:59"))[0] is None
    assert cc.schedule_times("@hourly", None, CREATED, at("2026-03-01T12:30:00"))[0] == at("2026-03-01T12:00:00")
    # 09:00 in Paris (UTC+1 in March) is 08:00 UTC.
    assert cc.schedule_times("0 9 * * *", "Europe/Paris", CREATED, at("2026-03-02T08:30:00"))[0] == \
        at("2026-03-02T08:00:00")
    assert cc.schedule_times("@every 90s", None, CREATED, CREATED + 200) == (CREATED + 180, CREATED + 270)
    assert cc.job_name("tick", at("2026-03-01T10:05:00")) == f"tick-{int(at('2026-03-01T10:05:00') // 60)}"


def test_many_missed_times_are_reported_and_only_the_last_runs() -> None:
    assert cc.missed_count("*/5 * * * *", None, CREATED, at("2026-03-01T11:00:00")) == 12
    assert cc.missed_count("*/5 * * * *", None, CREATED, at("2026-03-01T10:04:00")) == 0
    plan = cc.plan_cronjob(cronjob(), [], at("2026-03-02T10:00:30"))  # a day asleep: 288 times missed
    assert ("Warning", "TooManyMissedTimes", "too many missed start times. Set or decrease "
                                             ".spec.startingDeadlineSeconds or check clock skew") in plan.events
    assert plan.status["lastScheduleTime"] == "2026-03-02T10:00:00Z"


def test_nothing_before_the_first_schedule_time() -> None:
    plan = cc.plan_cronjob(cronjob(), [], at("2026-03-01T10:03:00"))
    assert plan.create is None and plan.events == []
    assert plan.requeue_after == 120 + cc.NEXT_SYNC_SLACK  # woken just after 10:05


def test_a_schedule_time_creates_its_job() -> None:
    now = at("2026-03-01T10:05:02")
    plan = cc.plan_cronjob(cronjob(), [], now)
    job = plan.create
    assert job is not None
    scheduled = at("2026-03-01T10:05:00")
    assert job["metadata"]["name"] == f"tick-{int(scheduled // 60)}"
    assert job["metadata"]["labels"] == {"app": "tick"}
    assert job["metadata"]["annotations"] == {"batch.kubernetes.io/cronjob-scheduled-timestamp":
                                              "2026-03-01T10:05:00Z"}
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert plan.status["lastScheduleTime"] == "2026-03-01T10:05:00Z"
    # Once lastScheduleTime says so, the same time is not run twice.
    done = cronjob()
    done["status"] = plan.status
    assert cc.plan_cronjob(done, [], now + 5).create is None


def test_only_the_most_recent_missed_time_runs() -> None:
    plan = cc.plan_cronjob(cronjob(), [], at("2026-03-01T11:02:00"))
    assert plan.status["lastScheduleTime"] == "2026-03-01T11:00:00Z"


def test_starting_deadline_skips_a_time_too_far_gone() -> None:
    plan = cc.plan_cronjob(cronjob(startingDeadlineSeconds=10), [], at("2026-03-01T10:05:30"))
    assert plan.create is None and "lastScheduleTime" not in plan.status
    assert cc.plan_cronjob(cronjob(startingDeadlineSeconds=60), [], at("2026-03-01T10:05:30")).create is not None


def test_suspended_cronjobs_create_nothing() -> None:
    assert cc.plan_cronjob(cronjob(suspend=True), [], at("2026-03-01T10:05:02")).create is None


def _running(policy: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cj = cronjob(concurrencyPolicy=policy)
    run = owned_job("tick-1")
    cj["status"] = {"active": [{"kind": "Job", "name": "tick-1", "namespace": "ns", "uid": "uid-tick-1"}]}
    return cj, [run]


def test_concurrency_policies() -> None:
    now = at("2026-03-01T10:05:01")
    cj, jobs = _running("Allow")
    allow = cc.plan_cronjob(cj, jobs, now)
    assert allow.create is not None and allow.delete == []
    cj, jobs = _running("Forbid")
    forbid = cc.plan_cronjob(cj, jobs, now)
    assert forbid.create is None and forbid.events == [
        ("Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency "
                                       "policy is Forbid")]
    cj, jobs = _running("Replace")
    replace = cc.plan_cronjob(cj, jobs, now)
    assert replace.create is not None and [j["metadata"]["name"] for j in replace.delete] == ["tick-1"]
    assert "active" not in replace.status


def test_finished_and_missing_jobs_leave_active() -> None:
    cj = cronjob()
    cj["status"] = {"active": [{"name": "tick-1", "uid": "uid-tick-1"}, {"name": "tick-2", "uid": "uid-tick-2"}]}
    plan = cc.plan_cronjob(cj, [owned_job("tick-1", "Complete", start=CREATED + 60)], at("2026-03-01T10:03:00"))
    assert "active" not in plan.status
    assert plan.status["lastSuccessfulTime"] == rfc3339(CREATED + 70)
    assert ("Normal", "SawCompletedJob", "Saw completed job: tick-1, condition: Complete") in plan.events
    assert ("Normal", "MissingJob", "Active job went missing: tick-2") in plan.events


def test_an_unknown_running_job_is_reported() -> None:
    plan = cc.plan_cronjob(cronjob(), [owned_job("by-hand")], at("2026-03-01T10:03:00"))
    assert plan.events == [("Warning", "UnexpectedJob", "Saw a job that the controller did not create or forgot: "
                                                        "by-hand")]


def test_history_limits_delete_the_oldest_finished_jobs() -> None:
    jobs = [owned_job(f"ok-{i}", "Complete", start=CREATED + i) for i in range(5)]
    jobs += [owned_job(f"bad-{i}", "Failed", start=CREATED + i) for i in range(3)]
    plan = cc.plan_cronjob(cronjob(), jobs, at("2026-03-01T10:03:00"))
    assert sorted(j["metadata"]["name"] for j in plan.delete) == ["bad-0", "bad-1", "ok-0", "ok-1"]


# =============================================================================== the controller
class Env:
    """A clock set to `now` that then runs at real speed (the controller's timers are real)."""

    def __init__(self, now: float) -> None:
        self.start, self.began, self.reads = now, time.monotonic(), 0
        self.registry = Registry(MemoryStore.open(), clock=self.clock)
        self.controller = cc.CronJobController(self.registry, clock=self.clock)

    def clock(self) -> float:
        self.reads += 1  # never the same time twice: Events are named by time
        return self.start + (time.monotonic() - self.began) + self.reads * 1e-6


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_the_controller_fires_on_its_injected_clock() -> None:
    async def t() -> None:
        env = Env(at("2026-03-01T10:04:59") + 0.7)
        await env.registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        await env.controller.start()
        try:
            body = copy.deepcopy(cronjob())
            body["metadata"] = {"name": "tick"}
            del body["status"]
            await env.registry.create(CRONJOBS, "ns", body)

            async def fired() -> bool:
                return bool((await env.registry.list(JOBS, "ns")).items)
            await eventually(fired, 3.0)  # 10:05 is a moment away on the injected clock
            job = (await env.registry.list(JOBS, "ns")).items[0]
            assert job["metadata"]["name"] == f"tick-{int(at('2026-03-01T10:05:00') // 60)}"
            assert job["spec"]["backoffLimit"] == 6  # the Job got the Job defaults when it was created

            async def recorded() -> bool:
                status = (await env.registry.get(CRONJOBS, "ns", "tick")).get("status", {})
                return bool(status.get("active"))
            await eventually(recorded)
            status = (await env.registry.get(CRONJOBS, "ns", "tick"))["status"]
            assert status["lastScheduleTime"] == "2026-03-01T10:05:00Z"
            assert status["active"][0]["uid"] == job["metadata"]["uid"]
            messages = [e["message"] for e in (await env.registry.list(EVENTS, "ns")).items
                        if e["reason"] == "SuccessfulCreate"]
            assert messages == [f"Created job {job['metadata']['name']}"]
        finally:
            await env.controller.stop()

    asyncio.run(t())


def test_a_job_of_the_same_name_that_is_not_its_own_is_left_alone() -> None:
    async def t() -> None:
        env = Env(at("2026-03-01T10:04:59") + 0.7)
        await env.registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        taken = f"tick-{int(at('2026-03-01T10:05:00') // 60)}"
        await env.registry.create(JOBS, "ns", {"metadata": {"name": taken}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
        await env.controller.start()
        try:
            body = copy.deepcopy(cronjob())
            body["metadata"] = {"name": "tick"}
            del body["status"]
            await env.registry.create(CRONJOBS, "ns", body)
            await asyncio.sleep(0.8)  # past 10:05 on the injected clock
            status = (await env.registry.get(CRONJOBS, "ns", "tick")).get("status", {})
            assert "active" not in status and "lastScheduleTime" not in status
            job = await env.registry.get(JOBS, "ns", taken)
            assert not job["metadata"].get("ownerReferences")
        finally:
            await env.controller.stop()

    asyncio.run(t())
