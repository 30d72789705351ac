"""The Job controller's planner on a fake clock (pods to create and delete, status, conditions, events, back-off,
Indexed mode, podFailurePolicy, suspend, deadlines), the pods it builds, and the controller itself against an
in-memory store (pods created with the ServiceAccount plugin applied, status written, ttlSecondsAfterFinished)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

from kubesat.controllers import job as jc
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry, rfc3339
from kubesat.registry.strategies import STRATEGIES
from kubesat.storage.memory import MemoryStore

NOW = 1_800_000_000.0
JOBS = builtin_kind("batch/v1", "Job")
PODS = builtin_kind("v1", "Pod")
NAMESPACES = builtin_kind("v1", "Namespace")
SERVICEACCOUNTS = builtin_kind("v1", "ServiceAccount")
EVENTS = builtin_kind("v1", "Event")


def job(**spec: Any) -> dict[str, Any]:
    obj = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "pi", "namespace": "ns", "uid": "job-uid"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox"}]}}, **spec}}
    STRATEGIES[("batch/v1", "Job")].prepare_for_create(obj)
    return obj


def pod(name: str, phase: str = "Running", index: int | None = None, exit_code: int | None = None,
        finished: float | None = None, restarts: int = 0) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                            "finalizers": [jc.TRACKING_FINALIZER]}  # as the controller makes them
    if index is not None:
        meta["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    cs: dict[str, Any] = {"name": "c", "restartCount": restarts, "state": {}}
    if exit_code is not None:
        cs["state"] = {"terminated": {"exitCode": exit_code, "finishedAt": rfc3339(finished or NOW)}}
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": [cs]}}


def conditions(plan: jc.JobPlan) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in plan.status.get("conditions", [])]


def test_a_new_job_starts_its_pods() -> None:
    plan = jc.plan_job(job(completions=5, parallelism=2), [], NOW)
    assert plan.create == [None, None] and plan.delete == [] and plan.events == []
    assert plan.status["startTime"] == rfc3339(NOW) and plan.status["ready"] == 0 and plan.status["terminating"] == 0
    # Zero counts are left out, as the API writes them.
    assert "active" not in plan.status and "succeeded" not in plan.status and "failed" not in plan.status
    # Near the end, no more pods than completions left.
    plan = jc.plan_job(job(completions=3, parallelism=2), [pod("a", "Succeeded"), pod("b", "Succeeded")], NOW)
    assert plan.create == [None]


def test_enough_successes_complete_the_job() -> None:
    plan = jc.plan_job(job(completions=2), [pod("a", "Succeeded"), pod("b", "Succeeded")], NOW)
    assert conditions(plan) == [("SuccessCriteriaMet", "True", "CompletionsReached"),
                                ("Complete", "True", "CompletionsReached")]
    assert plan.status["conditions"][1]["message"] == "Reached expected number of succeeded pods"
    assert plan.status["completionTime"] == rfc3339(NOW) and plan.status["succeeded"] == 2
    assert plan.events == [("Normal", "Completed", "Job completed")] and plan.create == []
    assert jc.is_finished_job({"status": plan.status}) and jc.finish_time({"status": plan.status}) == NOW


def test_a_job_with_pods_left_completes_once_they_are_gone() -> None:
    done = [pod("a", "Succeeded"), pod("b", "Succeeded")]
    plan = jc.plan_job(job(completions=2), [*done, pod("c")], NOW)
    assert conditions(plan) == [("SuccessCriteriaMet", "True", "CompletionsReached")]
    assert [p["metadata"]["name"] for p in plan.delete] == ["c"] and plan.events == []
    later = job(completions=2)
    later["status"] = plan.status
    plan = jc.plan_job(later, done, NOW + 2)
    assert [c[0] for c in conditions(plan)] == ["SuccessCriteriaMet", "Complete"]
    assert plan.status["completionTime"] == rfc3339(NOW + 2) and plan.events == [("Normal", "Completed",
                                                                                  "Job completed")]


def test_a_work_queue_job_completes_when_one_succeeded_and_none_run() -> None:
    spec = {"parallelism": 3}
    running = jc.plan_job(job(**spec), [pod("a", "Succeeded"), pod("b")], NOW)
    assert running.create == [] and not running.status.get("conditions")
    done = jc.plan_job(job(**spec), [pod("a", "Succeeded"), pod("b", "Succeeded")], NOW)
    assert ("Complete", "True", "CompletionsReached") in conditions(done)


def test_failures_past_the_backoff_limit_fail_the_job() -> None:
    failed = [pod("a", "Failed", exit_code=1), pod("b", "Failed", exit_code=1)]
    plan = jc.plan_job(job(backoffLimit=1), [*failed, pod("c")], NOW)
    # The outcome first (FailureTarget) while the last pod is stopped; Failed once it is gone.
    assert conditions(plan) == [("FailureTarget", "True", "BackoffLimitExceeded")]
    assert [p["metadata"]["name"] for p in plan.delete] == ["c"] and plan.create == [] and plan.events == []
    assert plan.status["terminating"] == 1 and plan.status["failed"] == 2
    later = job(backoffLimit=1)
    later["status"] = plan.status
    plan = jc.plan_job(later, failed, NOW + 1)
    assert conditions(plan) == [("FailureTarget", "True", "BackoffLimitExceeded"),
                                ("Failed", "True", "BackoffLimitExceeded")]
    assert plan.status["conditions"][1]["message"] == "Job has reached the specified backoff limit"
    assert plan.events == [("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
    assert plan.create == [] and plan.delete == [] and "completionTime" not in plan.status


def test_container_restarts_count_under_on_failure() -> None:
    spec = job(backoffLimit=2)
    spec["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert not jc.plan_job(spec, [pod("a", restarts=2)], NOW).status.get("conditions")
    assert ("FailureTarget", "True", "BackoffLimitExceeded") in conditions(jc.plan_job(spec, [pod("a", restarts=3)],
                                                                                      NOW))


def test_a_failed_pod_is_replaced_after_the_back_off() -> None:
    failed = [pod("a", "Failed", exit_code=1, finished=NOW - 3)]
    waiting = jc.plan_job(job(), failed, NOW)
    assert waiting.create == [] and waiting.requeue_after == 7.0
    assert jc.plan_job(job(), failed, NOW + 7).create == [None]
    twice = failed + [pod("b", "Failed", exit_code=1, finished=NOW)]
    assert jc.plan_job(job(), twice, NOW).requeue_after == 20.0  # doubled


def test_terminating_pods_are_replaced_unless_the_policy_waits() -> None:
    going = pod("a")
    going["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    plan = jc.plan_job(job(), [going], NOW)
    assert plan.create == [None] and plan.status["terminating"] == 1
    assert jc.plan_job(job(podReplacementPolicy="Failed"), [going], NOW).create == []


def test_the_active_deadline_fails_the_job() -> None:
    running = job(activeDeadlineSeconds=30)
    running["status"] = {"startTime": rfc3339(NOW - 10)}
    plan = jc.plan_job(running, [pod("a")], NOW)
    assert plan.requeue_after == 20.0 and not plan.status.get("conditions")
    late = jc.plan_job(running, [], NOW + 20)
    assert ("Failed", "True", "DeadlineExceeded") in conditions(late)
    assert late.status["conditions"][-1]["message"] == "Job was active longer than specified deadline"


def test_indexed_jobs_fill_the_missing_indexes() -> None:
    spec = {"completions": 4, "parallelism": 2, "completionMode": "Indexed"}
    plan = jc.plan_job(job(**spec), [pod("a", "Succeeded", index=1), pod("b", index=0)], NOW)
    assert plan.create == [2] and plan.status["completedIndexes"] == "1" and plan.status["succeeded"] == 1
    done = [pod(f"p{i}", "Succeeded", index=i) for i in range(4)]
    finished = jc.plan_job(job(**spec), done, NOW)
    assert finished.status["completedIndexes"] == "0-3" and ("Complete", "True", "CompletionsReached") in \
        conditions(finished)
    assert jc.format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7,8"  # two in a row are not a range


def test_pod_failure_policy_fail_job_and_ignore() -> None:
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
                        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]}
    plan = jc.plan_job(job(podFailurePolicy=policy), [pod("a", "Failed", exit_code=42)], NOW)
    assert ("Failed", "True", "PodFailurePolicy") in conditions(plan)
    assert plan.status["conditions"][-1]["message"] == \
        "Container c for pod ns/a failed with exit code 42 matching FailJob rule at index 0"
    ignored = jc.plan_job(job(podFailurePolicy=policy, backoffLimit=0), [pod("b", "Failed", exit_code=7)], NOW)
    assert not ignored.status.get("conditions") and "failed" not in ignored.status and ignored.create == [None]


def test_suspending_and_resuming() -> None:
    suspended = jc.plan_job(job(suspend=True), [pod("a")], NOW)
    assert [p["metadata"]["name"] for p in suspended.delete] == ["a"] and suspended.create == []
    assert conditions(suspended) == [("Suspended", "True", "JobSuspended")]
    assert suspended.events == [("Normal", "Suspended", "Job suspended")] and "startTime" not in suspended.status
    resumed_job = job()
    resumed_job["status"] = suspended.status
    resumed = jc.plan_job(resumed_job, [], NOW + 5)
    assert conditions(resumed) == [("Suspended", "False", "JobResumed")]
    assert resumed.events == [("Normal", "Resumed", "Job resumed")] and resumed.create == [None]


def test_pods_built_from_the_template() -> None:
    indexed = job(completions=2, completionMode="Indexed")
    p = jc.pod_from_template(indexed, 1)
    assert p["metadata"]["generateName"] == "pi-1-"
    assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"
    assert p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
    assert p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == "job-uid"
    assert p["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                                                 "uid": "job-uid", "controller": True, "blockOwnerDeletion": True}]
    assert p["spec"]["hostname"] == "pi-1"
    assert p["spec"]["containers"][0]["env"] == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    plain = jc.pod_from_template(job(), None)
    assert plain["metadata"]["generateName"] == "pi-" and "hostname" not in plain["spec"]
    assert p["metadata"]["finalizers"] == plain["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]


def untracked(p: dict[str, Any]) -> dict[str, Any]:
    """The pod once the controller took its job-tracking finalizer off."""
    p["metadata"].pop("finalizers", None)
    return p


def test_ended_pods_are_recorded_by_uid_then_counted() -> None:
    plan = jc.plan_job(job(completions=3), [pod("a", "Succeeded"), pod("b")], NOW)
    # First written: the UID in uncountedTerminatedPods; then the finalizer goes; then the counter.
    assert plan.recorded is not None and plan.recorded["uncountedTerminatedPods"] == {"succeeded": ["uid-a"]}
    assert "succeeded" not in plan.recorded
    assert [p["metadata"]["name"] for p in plan.untrack] == ["a"]
    assert plan.status["succeeded"] == 1 and plan.status["uncountedTerminatedPods"] == {}
    # The counted pod deleted: the count stays, and a later success adds to it.
    later = job(completions=3)
    later["status"] = plan.status
    again = jc.plan_job(later, [pod("b", "Succeeded")], NOW + 1)
    assert again.status["succeeded"] == 2 and again.create == [None]
    # A pod without the finalizer was counted already: not again.
    assert jc.plan_job(later, [untracked(pod("a", "Succeeded"))], NOW + 1).recorded is None


def test_a_uid_recorded_before_a_crash_is_counted_once() -> None:
    crashed = job(completions=3)
    crashed["status"] = {"succeeded": 1, "uncountedTerminatedPods": {"succeeded": ["uid-a"]}}
    # The finalizer was still on: taken off again, counted once.
    plan = jc.plan_job(crashed, [pod("a", "Succeeded")], NOW)
    assert plan.recorded is not None and plan.recorded["uncountedTerminatedPods"] == {"succeeded": ["uid-a"]}
    assert plan.status["succeeded"] == 2
    # The finalizer was already off (or the pod gone): counted from the status alone.
    plan = jc.plan_job(crashed, [untracked(pod("a", "Succeeded"))], NOW)
    assert plan.recorded is None and plan.untrack == [] and plan.status["succeeded"] == 2
    kept = jc.count_uncounted({"succeeded": 1, "uncountedTerminatedPods": {"succeeded": ["x", "y"]}}, {"y"})
    assert kept == {"succeeded": 2, "uncountedTerminatedPods": {"succeeded": ["y"]}}


def test_a_pod_deleted_before_it_finished_counts_as_failed() -> None:
    going = pod("a")
    going["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    plan = jc.plan_job(job(), [going], NOW)
    assert plan.status["failed"] == 1 and plan.untrack == [going] and plan.status["terminating"] == 1
    # Only failed pods replaced: it counts (and loses its finalizer) once Failed.
    waiting = jc.plan_job(job(podReplacementPolicy="Failed"), [going], NOW)
    assert "failed" not in waiting.status and waiting.untrack == []
    going["status"]["phase"] = "Failed"
    assert jc.plan_job(job(podReplacementPolicy="Failed"), [going], NOW).status["failed"] == 1


def test_an_ignored_failure_loses_its_finalizer_uncounted() -> None:
    policy = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]}
    failed = pod("b", "Failed", exit_code=7)
    plan = jc.plan_job(job(podFailurePolicy=policy), [failed], NOW)
    assert plan.untrack == [failed] and "failed" not in plan.status
    assert plan.recorded is not None and plan.recorded["uncountedTerminatedPods"] == {}


def test_backoff_limit_uses_the_cumulative_count() -> None:
    counted = job(backoffLimit=2)
    counted["status"] = {"failed": 2}
    plan = jc.plan_job(counted, [pod("c", "Failed", exit_code=1)], NOW)  # the first two are gone
    assert ("FailureTarget", "True", "BackoffLimitExceeded") in conditions(plan) and plan.status["failed"] == 3


def test_stopped_pods_of_a_suspended_or_complete_job_are_not_counted() -> None:
    suspended = jc.plan_job(job(suspend=True), [pod("a")], NOW)
    assert suspended.untrack_deleted and [p["metadata"]["name"] for p in suspended.delete] == ["a"]
    complete = jc.plan_job(job(completions=1, parallelism=2), [pod("a", "Succeeded"), pod("b")], NOW)
    assert complete.untrack_deleted and [p["metadata"]["name"] for p in complete.delete] == ["b"]
    assert "failed" not in complete.status


def test_indexed_completed_indexes_are_cumulative() -> None:
    spec = {"completions": 3, "parallelism": 1, "completionMode": "Indexed"}
    plan = jc.plan_job(job(**spec), [pod("a", "Succeeded", index=0)], NOW)
    # An index is recorded in completedIndexes at once (it cannot be counted twice), not by UID.
    assert plan.recorded is not None and plan.recorded["completedIndexes"] == "0"
    assert plan.recorded["uncountedTerminatedPods"] == {}
    later = job(**spec)
    later["status"] = plan.status
    again = jc.plan_job(later, [pod("b", "Succeeded", index=2)], NOW + 1)  # index 0's pod is gone
    assert again.status["completedIndexes"] == "0,2" and again.status["succeeded"] == 2 and again.create == [1]
    assert jc.parse_indexes("0,2-4,x,7", 10) == {0, 2, 3, 4, 7}
    assert jc.parse_indexes("0,2-999999999", 5) == {0, 2, 3, 4}  # bounded by completions, whatever it says


# =============================================================================== the controller
class Env:
    def __init__(self) -> None:
        self.now = NOW
        self.registry = Registry(MemoryStore.open(), clock=self.clock)
        self.controller = jc.JobController(self.registry, clock=self.clock)

    def clock(self) -> float:
        self.now += 0.001  # never the same time twice: Events are named by time
        return self.now

    async def setup(self) -> None:
        await self.registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        await self.registry.create(SERVICEACCOUNTS, "ns", {"metadata": {"name": "default"}})

    async def set_phase(self, name: str, phase: str) -> None:
        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            cur["status"]["phase"] = phase
            return cur
        await self.registry.guaranteed_update(PODS, "ns", name, mutate, subresource="status")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_the_controller_runs_a_job_and_removes_it_after_its_ttl() -> None:
    async def t() -> None:
        env = Env()
        await env.setup()
        await env.controller.start()
        try:
            body = {"metadata": {"name": "pi"}, "spec": {"ttlSecondsAfterFinished": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
            created = await env.registry.create(JOBS, "ns", body)

            async def one_pod() -> bool:
                return len((await env.registry.list(PODS, "ns")).items) == 1
            await eventually(one_pod)
            p = (await env.registry.list(PODS, "ns")).items[0]
            assert p["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
            assert p["spec"]["serviceAccountName"] == "default"  # the ServiceAccount plugin ran
            await env.set_phase(p["metadata"]["name"], "Succeeded")

            async def deleting() -> bool:
                current = await env.registry.get_or_none(JOBS, "ns", "pi") or {"metadata": {}}
                return bool(current["metadata"].get("deletionTimestamp"))
            await eventually(deleting)  # complete, then deleted at once (ttl 0): foreground, so its pods go first
            current = await env.registry.get(JOBS, "ns", "pi")
            assert current["metadata"]["finalizers"] == ["foregroundDeletion"]
            assert [c["type"] for c in current["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
            reasons = {(e["reason"], e["message"]) for e in (await env.registry.list(EVENTS, "ns")).items}
            assert ("Completed", "Job completed") in reasons
            assert ("SuccessfulCreate", f"Created pod: {p['metadata']['name']}") in reasons
        finally:
            await env.controller.stop()

    asyncio.run(t())


def test_the_controller_makes_each_pod_once() -> None:
    async def t() -> None:
        env = Env()
        await env.setup()
        await env.controller.start()
        try:
            body = {"metadata": {"name": "wide"}, "spec": {"parallelism": 5, "completions": 5, "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
            await env.registry.create(JOBS, "ns", body)

            async def five() -> bool:
                return len((await env.registry.list(PODS, "ns")).items) == 5
            await eventually(five)
            await asyncio.sleep(0.3)  # the pods' own watch events sync the Job again: no more pods come of it
            assert len((await env.registry.list(PODS, "ns")).items) == 5

            async def counted() -> bool:
                return (await env.registry.get(JOBS, "ns", "wide")).get("status", {}).get("active") == 5
            await eventually(counted)
        finally:
            await env.controller.stop()

    asyncio.run(t())


def test_a_manual_selector_adopts_matching_orphans() -> None:
    async def t() -> None:
        env = Env()
        await env.setup()
        await env.controller.start()
        try:
            orphan = {"metadata": {"name": "early", "labels": {"app": "batch"}},
                      "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
            await env.registry.create(PODS, "ns", orphan)
            body = {"metadata": {"name": "manual"}, "spec": {
                "manualSelector": True, "selector": {"matchLabels": {"app": "batch"}},
                "template": {"metadata": {"labels": {"app": "batch"}}, "spec": {
                    "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
            created = await env.registry.create(JOBS, "ns", body)

            async def adopted() -> bool:
                pod = await env.registry.get(PODS, "ns", "early")
                return bool(pod["metadata"].get("ownerReferences"))
            await eventually(adopted)
            pod = await env.registry.get(PODS, "ns", "early")
            assert pod["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
            # Adopted with the tracking finalizer, in the same write: its end is counted as the Job's own pods' is.
            assert pod["metadata"]["finalizers"] == [jc.TRACKING_FINALIZER]
            await asyncio.sleep(0.2)
            assert [p["metadata"]["name"] for p in (await env.registry.list(PODS, "ns")).items] == ["early"]
            await env.set_phase("early", "Succeeded")

            async def counted() -> bool:
                current = await env.registry.get(PODS, "ns", "early")
                status = (await env.registry.get(JOBS, "ns", "manual")).get("status", {})
                return "finalizers" not in current["metadata"] and status.get("succeeded") == 1 and \
                    any(c["type"] == "Complete" for c in status.get("conditions", []))
            await eventually(counted)
        finally:
            await env.controller.stop()

    asyncio.run(t())


def test_the_controller_takes_the_finalizer_off_counted_orphaned_and_abandoned_pods() -> None:
    async def t() -> None:
        env = Env()
        await env.setup()
        await env.controller.start()
        try:
            body = {"metadata": {"name": "pair"}, "spec": {"parallelism": 3, "completions": 3, "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
            await env.registry.create(JOBS, "ns", body)

            async def pods() -> list[dict[str, Any]]:
                return sorted((await env.registry.list(PODS, "ns")).items, key=lambda p: p["metadata"]["name"])

            async def three() -> bool:
                return len(await pods()) == 3
            await eventually(three)
            done, orphan, left = await pods()
            assert all(p["metadata"]["finalizers"] == [jc.TRACKING_FINALIZER] for p in (done, orphan, left))
            await env.set_phase(done["metadata"]["name"], "Succeeded")

            async def counted() -> bool:
                current = await env.registry.get(PODS, "ns", done["metadata"]["name"])
                job_status = (await env.registry.get(JOBS, "ns", "pair")).get("status", {})
                return "finalizers" not in current["metadata"] and job_status.get("succeeded") == 1
            await eventually(counted)

            def drop_owner(cur: dict[str, Any]) -> dict[str, Any]:
                cur["metadata"].pop("ownerReferences")
                return cur
            await env.registry.guaranteed_update(PODS, "ns", orphan["metadata"]["name"], drop_owner)
            await env.registry.delete(JOBS, "ns", "pair")  # no garbage collector here: the pods stay

            async def released() -> bool:
                return all("finalizers" not in p["metadata"] for p in await pods()
                           if p["metadata"]["name"] in (orphan["metadata"]["name"], left["metadata"]["name"]))
            await eventually(released)
        finally:
            await env.controller.stop()

    asyncio.run(t())


# =============================================================================== backoffLimitPerIndex
def counted_pod(name: str, index: int, failures: int, phase: str = "Failed", exit_code: int | None = 1,
                finished: float | None = None) -> dict[str, Any]:
    """A pod of an index that had `failures` failures before it (the annotation the controller sets)."""
    p = pod(name, phase, index=index, exit_code=exit_code if phase == "Failed" else None, finished=finished)
    p["metadata"]["annotations"][jc.INDEX_FAILURE_COUNT] = str(failures)
    return p


def per_index_job(**spec: Any) -> dict[str, Any]:
    return job(**{"completionMode": "Indexed", "completions": 3, "parallelism": 3, "backoffLimitPerIndex": 1, **spec})


def test_a_failed_index_is_retried_after_its_own_back_off_with_its_failure_count() -> None:
    pods = [counted_pod("a", 0, 0, finished=NOW), counted_pod("b", 1, 0, "Running"), counted_pod("c", 2, 0, "Running")]
    plan = jc.plan_job(per_index_job(), pods, NOW + 1)
    # The failed pod keeps its finalizer (not counted yet) until its replacement exists; the index waits 10 s.
    assert plan.create == [] and 8.5 < (plan.requeue_after or 0) <= 9.0
    assert plan.untrack == [] and "failed" not in plan.status and plan.status["failedIndexes"] == ""
    assert not any(c[0] == "FailureTarget" for c in conditions(plan))
    later = jc.plan_job(per_index_job(), pods, NOW + 10.5)
    assert later.create == [0] and later.annotations == {0: {jc.INDEX_FAILURE_COUNT: "1"}}
    made = jc.pod_from_template(per_index_job(), 0, later.annotations[0])
    assert made["metadata"]["annotations"][jc.INDEX_FAILURE_COUNT] == "1"
    # Once the replacement runs, the failed pod is counted and its finalizer goes.
    replaced = jc.plan_job(per_index_job(), [*pods, counted_pod("d", 0, 1, "Running")], NOW + 11)
    assert [p["metadata"]["name"] for p in replaced.untrack] == ["a"] and replaced.status["failed"] == 1
    assert replaced.create == [] and replaced.status["failedIndexes"] == ""


def test_an_index_past_its_limit_fails_and_the_job_fails_once_every_index_is_settled() -> None:
    pods = [counted_pod("a", 0, 0, "Succeeded"), counted_pod("b", 1, 1), counted_pod("c", 2, 0, "Running")]
    plan = jc.plan_job(per_index_job(), pods, NOW)
    assert plan.status["failedIndexes"] == "1" and plan.status["failed"] == 1 and plan.create == []
    assert plan.status["completedIndexes"] == "0" and not any(c[0] == "FailureTarget" for c in conditions(plan))
    again = per_index_job()
    again["status"] = plan.status
    done = jc.plan_job(again, [pods[0], pods[1], counted_pod("c", 2, 0, "Succeeded")], NOW + 1)
    assert ("FailureTarget", "True", "FailedIndexes") in conditions(done)
    assert ("Failed", "True", "FailedIndexes") in conditions(done)
    failed = next(c for c in done.status["conditions"] if c["type"] == "Failed")
    assert failed["message"] == "Job has failed indexes"
    assert ("Warning", "FailedIndexes", "Job has failed indexes") in done.events
    assert done.status["completedIndexes"] == "0,2" and done.status["failedIndexes"] == "1"


def test_more_failed_indexes_than_allowed_fail_the_job_at_once() -> None:
    spec = per_index_job(maxFailedIndexes=0)
    plan = jc.plan_job(spec, [counted_pod("a", 0, 1), counted_pod("b", 1, 0, "Running"),
                              counted_pod("c", 2, 0, "Running")], NOW)
    assert ("FailureTarget", "True", "MaxFailedIndexesExceeded") in conditions(plan)
    target = next(c for c in plan.status["conditions"] if c["type"] == "FailureTarget")
    assert target["message"] == "Job has exceeded the specified maximal number of failed indexes"
    assert sorted(p["metadata"]["name"] for p in plan.delete) == ["b", "c"] and plan.create == []


def test_a_fail_index_rule_ends_the_index_at_once_and_an_ignored_failure_is_counted_apart() -> None:
    policy = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}},
                        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]}
    spec = per_index_job(backoffLimitPerIndex=5, podFailurePolicy=policy)
    plan = jc.plan_job(spec, [counted_pod("a", 0, 0, exit_code=42, finished=NOW - 60),
                              counted_pod("b", 1, 0, exit_code=7, finished=NOW - 60)], NOW)
    assert plan.status["failedIndexes"] == "0" and plan.status["failed"] == 1
    # Index 1's failure was ignored: its next pod carries that apart from the counted failures.
    assert plan.create == [1, 2]
    assert plan.annotations[1] == {jc.INDEX_FAILURE_COUNT: "0", jc.INDEX_IGNORED_FAILURE_COUNT: "1"}
    assert plan.annotations[2] == {jc.INDEX_FAILURE_COUNT: "0"}


def test_the_index_failure_count_annotation_is_read_defensively() -> None:
    for raw, want in (("3", 3), ("-1", 0), ("x", 0), ("99999999999", 0), ("٣", 0)):
        p = pod("a", index=0)
        p["metadata"]["annotations"][jc.INDEX_FAILURE_COUNT] = raw
        assert jc.index_failure_counts(p) == (want, 0)


# =============================================================================== successPolicy
def test_a_met_success_policy_stops_the_rest_and_completes_the_job() -> None:
    spec = job(completionMode="Indexed", completions=3, parallelism=3,
               successPolicy={"rules": [{"succeededIndexes": "0"}]})
    pods = [pod("a", "Succeeded", index=0), pod("b", index=1), pod("c", index=2)]
    plan = jc.plan_job(spec, pods, NOW)
    assert conditions(plan) == [("SuccessCriteriaMet", "True", "SuccessPolicy")]
    assert plan.status["conditions"][0]["message"] == "Matched rules at index 0"
    assert sorted(p["metadata"]["name"] for p in plan.delete) == ["b", "c"] and plan.untrack_deleted
    later = copy.deepcopy(spec)
    later["status"] = plan.status
    done = jc.plan_job(later, [pods[0]], NOW + 1)
    assert conditions(done) == [("SuccessCriteriaMet", "True", "SuccessPolicy"), ("Complete", "True", "SuccessPolicy")]
    assert done.status["conditions"][1]["message"] == "Matched rules at index 0"
    assert "failed" not in done.status and done.events == [("Normal", "Completed", "Job completed")]


def test_success_policy_rules_match_in_order() -> None:
    def matched(rules: list[dict[str, Any]], succeeded: set[int]) -> str | None:
        spec = job(completionMode="Indexed", completions=6, successPolicy={"rules": rules})
        return jc.success_policy_match(spec, succeeded)
    assert matched([{"succeededCount": 2}], {4}) is None
    assert matched([{"succeededCount": 2}], {1, 4}) == "Matched rules at index 0"
    assert matched([{"succeededIndexes": "1-4", "succeededCount": 3}, {"succeededIndexes": "0,5"}], {0, 1, 3, 5}) == \
        "Matched rules at index 1"
    assert matched([{"succeededIndexes": "1-4", "succeededCount": 3}], {1, 3, 4}) == "Matched rules at index 0"
    assert matched([{"succeededIndexes": "1-4"}], {1, 2, 3}) is None
    assert matched([{"succeededCount": 1}], set()) is None


def test_jobs_managed_by_another_controller_are_recognised() -> None:
    assert jc.is_managed_elsewhere(job(managedBy="example.com/queue"))
    assert not jc.is_managed_elsewhere(job(managedBy="kubernetes.io/job-controller"))
    assert not jc.is_managed_elsewhere(job())


def test_the_controller_leaves_a_job_managed_by_another_controller_alone() -> None:
    async def t() -> None:
        env = Env()
        await env.setup()
        await env.controller.start()
        try:
            template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
            await env.registry.create(JOBS, "ns", {"metadata": {"name": "queued"}, "spec": {
                "managedBy": "example.com/queue", "template": copy.deepcopy(template)}})
            await env.registry.create(JOBS, "ns", {"metadata": {"name": "ours"}, "spec": {
                "managedBy": "kubernetes.io/job-controller", "template": copy.deepcopy(template)}})

            async def names() -> list[str]:
                return [p["metadata"]["name"] for p in (await env.registry.list(PODS, "ns")).items]

            async def ours_started() -> bool:
                return any(n.startswith("ours-") for n in await names())
            await eventually(ours_started)
            await asyncio.sleep(0.3)
            assert all(n.startswith("ours-") for n in await names())
            assert (await env.registry.get(JOBS, "ns", "queued")).get("status") == {}
        finally:
            await env.controller.stop()

    asyncio.run(t())


def test_an_index_whose_pod_was_deleted_running_waits_from_the_deletion() -> None:
    gone = counted_pod("a", 0, 0, "Running")
    gone["metadata"].update(deletionTimestamp=rfc3339(NOW - 4), deletionGracePeriodSeconds=2)
    plan = jc.plan_job(per_index_job(parallelism=1, completions=1), [gone], NOW)
    assert plan.create == [] and 3.5 < (plan.requeue_after or 0) <= 4.0  # 10 s from NOW - 6
    assert plan.untrack == [] and plan.status["terminating"] == 1
