"""batch/v1 Job and CronJob rules: v1 defaults, the generated selector and labels, validation messages as
Kubernetes 1.32 words them, and the `kubectl get` cells."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kubesat.registry.batch import schedule_errors
from kubesat.registry.strategies import STRATEGIES

JOBS = STRATEGIES[("batch/v1", "Job")]
CRONJOBS = STRATEGIES[("batch/v1", "CronJob")]
POD_TEMPLATE: dict[str, Any] = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}


def _job(**spec: Any) -> dict[str, Any]:
    job = {"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
           "spec": {"template": copy.deepcopy(POD_TEMPLATE), **spec}}
    JOBS.prepare_for_create(job)
    return job


def _errors(strategy: Any, obj: dict[str, Any]) -> list[str]:
    return [e.text() for e in strategy.validate(obj)]


def _cronjob(schedule: str = "*/5 * * * *", **spec: Any) -> dict[str, Any]:
    cj = {"metadata": {"name": "nightly", "namespace": "default", "uid": "u-2"},
          "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": copy.deepcopy(POD_TEMPLATE)}}, **spec}}
    CRONJOBS.prepare_for_create(cj)
    return cj


def test_job_defaults_and_generated_selector() -> None:
    job = _job()
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed" and spec["suspend"] is False and spec["manualSelector"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    generated = {"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi",
                 "controller-uid": "u-1", "job-name": "pi"}
    assert spec["template"]["metadata"]["labels"] == generated
    assert job["metadata"]["labels"] == generated  # a Job without labels takes its template's
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"  # the Pod defaults, reused
    assert job["status"] == {}
    assert _errors(JOBS, job) == []


def test_job_parallelism_alone_leaves_completions_unset() -> None:
    spec = _job(parallelism=3)["spec"]
    assert spec["parallelism"] == 3 and "completions" not in spec
    assert _job(backoffLimitPerIndex=1, completionMode="Indexed", completions=2)["spec"]["backoffLimit"] == 2147483647


def test_job_restart_policy_must_be_never_or_on_failure() -> None:
    job = {"metadata": {"name": "pi", "uid": "u-1"},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    JOBS.prepare_for_create(job)
    assert _errors(JOBS, job) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"']


def test_job_counts_and_modes_validated() -> None:
    assert _errors(JOBS, _job(parallelism=-1)) == [
        "spec.parallelism: Invalid value: -1: must be greater than or equal to 0"]
    assert _errors(JOBS, _job(backoffLimit=-2)) == [
        "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0"]
    assert _errors(JOBS, _job(completionMode="Sometimes")) == [
        'spec.completionMode: Unsupported value: "Sometimes": supported values: "NonIndexed", "Indexed"']
    assert _errors(JOBS, _job(completionMode="Indexed", parallelism=2)) == [
        "spec.completions: Required value: when completion mode is Indexed"]
    assert _errors(JOBS, _job(completionMode="Indexed", completions=3)) == []


def test_malformed_selectors_and_labels_are_refused_not_crashed_on() -> None:
    job = _job(manualSelector=True, selector={"matchExpressions": [1]})
    assert "spec.template.metadata.labels" in " ".join(_errors(JOBS, job))
    odd = {"metadata": {"name": "pi", "uid": "u-1"},
           "spec": {"template": {"metadata": {"labels": "x"}, **copy.deepcopy(POD_TEMPLATE)}}}
    JOBS.prepare_for_create(odd)
    assert _errors(JOBS, odd)


def test_job_template_validated_with_the_pod_rules() -> None:
    job = _job()
    job["spec"]["template"]["spec"]["containers"] = []
    assert _errors(JOBS, job) == ["spec.template.spec.containers: Required value"]


def test_job_selector_must_be_generated_unless_manual() -> None:
    job = _job(selector={"matchLabels": {"app": "x"}})
    job["spec"]["template"]["metadata"]["labels"]["app"] = "x"
    errs = _errors(JOBS, job)
    assert errs == ["spec.selector: Invalid value: \"app=x,batch.kubernetes.io/controller-uid=u-1\": "
                    "`selector` not auto-generated"]
    manual = {"metadata": {"name": "m", "uid": "u-3"},
              "spec": {"manualSelector": True, "selector": {"matchLabels": {"app": "y"}},
                       "template": {"metadata": {"labels": {"app": "z"}}, **copy.deepcopy(POD_TEMPLATE)}}}
    JOBS.prepare_for_create(manual)
    assert _errors(JOBS, manual) == [
        'spec.template.metadata.labels: Invalid value: "app=z": `selector` does not match template `labels`']


def test_job_pod_failure_policy_needs_never() -> None:
    job = _job(podFailurePolicy={"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})
    assert job["spec"]["podReplacementPolicy"] == "Failed"
    assert _errors(JOBS, job) == []
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert _errors(JOBS, job) == ['spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is '
                                  'supported when podFailurePolicy is specified']


def test_job_update_keeps_status_and_immutable_fields() -> None:
    old = _job(completions=2)
    old["status"] = {"succeeded": 1}
    new = copy.deepcopy(old)
    new["status"] = {"succeeded": 99}
    new["spec"]["completions"] = 3
    JOBS.prepare_for_update(new, old)
    assert new["status"] == {"succeeded": 1}
    assert [e.text() for e in JOBS.validate_update(new, old)] == [
        "spec.completions: Invalid value: 3: field is immutable"]
    suspended = copy.deepcopy(old)
    suspended["spec"]["suspend"] = True
    JOBS.prepare_for_update(suspended, old)
    assert JOBS.validate_update(suspended, old) == []


def test_job_table_cells() -> None:
    job = _job(completions=2)
    job["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    job["status"] = {"startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:07Z", "succeeded": 2,
                     "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                    {"type": "Complete", "status": "True"}]}
    names = [c["name"] for c in JOBS.table_columns()]
    assert names == ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"]
    now = datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)
    assert JOBS.table_cells(job, now) == ["pi", "Complete", "2/2", "7s", "60s", "c", "busybox",
                                          "batch.kubernetes.io/controller-uid=u-1"]
    job["status"] = {"conditions": [{"type": "FailureTarget", "status": "True"}]}
    assert JOBS.table_cells(job, now)[1:4] == ["FailureTarget", "0/2", ""]
    assert JOBS.field_value(job, "status.successful") == "0"


def test_cronjob_defaults() -> None:
    cj = _cronjob()
    spec = cj["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"]) == ("Allow", False)
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    # The job template gets the Pod defaults but not the Job ones.
    jspec = spec["jobTemplate"]["spec"]
    assert "backoffLimit" not in jspec and jspec["template"]["spec"]["schedulerName"] == "default-scheduler"
    assert _errors(CRONJOBS, cj) == []


@pytest.mark.parametrize("schedule", ["* * * * *", "*/15 2-4 * * 1-5", "@hourly", "@daily", "@every 1h",
                                      "0 0 1 jan *", "30 6 * * sun"])
def test_cronjob_schedules_accepted(schedule: str) -> None:
    assert schedule_errors(schedule) == []


def test_cronjob_schedule_and_time_zone_validated() -> None:
    assert _errors(CRONJOBS, _cronjob("foo")) == [
        'spec.schedule: Invalid value: "foo": expected exactly 5 fields, found 1: [foo]']
    assert _errors(CRONJOBS, _cronjob("@fortnightly")) == [
        'spec.schedule: Invalid value: "@fortnightly": unrecognized descriptor: @fortnightly']
    assert _errors(CRONJOBS, _cronjob("61 * * * *"))[0].startswith('spec.schedule: Invalid value: "61 * * * *": ')
    assert _errors(CRONJOBS, _cronjob("@every x")) == [
        'spec.schedule: Invalid value: "@every x": failed to parse duration @every x: time: invalid duration "x"']
    assert _errors(CRONJOBS, _cronjob("TZ=UTC 0 * * * *")) == [
        'spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field '
        'instead']
    cj = _cronjob()
    del cj["spec"]["schedule"]
    assert _errors(CRONJOBS, cj) == ["spec.schedule: Required value"]
    assert _errors(CRONJOBS, _cronjob(timeZone="Europe/Paris")) == []
    assert _errors(CRONJOBS, _cronjob(timeZone="Mars/Olympus")) == [
        'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus']
    assert _errors(CRONJOBS, _cronjob(concurrencyPolicy="Sometimes")) == [
        'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"']


def test_cronjob_name_and_job_template_rules() -> None:
    long = _cronjob()
    long["metadata"]["name"] = "x" * 53
    assert _errors(CRONJOBS, long) == [f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 '
                                       'characters']
    cj = _cronjob()
    cj["spec"]["jobTemplate"]["spec"]["selector"] = {"matchLabels": {"a": "b"}}
    assert _errors(CRONJOBS, cj) == [
        'spec.jobTemplate.spec.selector: Invalid value: "a=b": `selector` will be auto-generated']
    cj = _cronjob()
    cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert _errors(CRONJOBS, cj) == ['spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: '
                                     '"Always": supported values: "OnFailure", "Never"']


def test_cronjob_table_cells() -> None:
    cj = _cronjob(timeZone="Etc/UTC")
    cj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    names = [c["name"] for c in CRONJOBS.table_columns()]
    assert names[:7] == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"]
    now = datetime(2026, 1, 1, 0, 10, 0, tzinfo=UTC)
    assert CRONJOBS.table_cells(cj, now)[:7] == ["nightly", "*/5 * * * *", "Etc/UTC", "False", 0, "<none>", "10m"]
    cj["status"] = {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2026-01-01T00:05:00Z"}
    assert CRONJOBS.table_cells(cj, now)[4:6] == [1, "5m"]
