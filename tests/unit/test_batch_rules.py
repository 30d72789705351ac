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


# ------------------------------------------------------------------ backoffLimitPerIndex, successPolicy, managedBy
def _indexed(**spec: Any) -> dict[str, Any]:
    return _job(completionMode="Indexed", completions=spec.pop("completions", 4), **spec)


def test_backoff_limit_per_index_and_max_failed_indexes_validated() -> None:
    assert _errors(JOBS, _indexed(backoffLimitPerIndex=1, maxFailedIndexes=2)) == []
    assert _errors(JOBS, _job(backoffLimitPerIndex=1, maxFailedIndexes=1)) == [
        "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode",
        "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode"]
    assert _errors(JOBS, _indexed(maxFailedIndexes=1)) == [
        "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified"]
    assert _errors(JOBS, _indexed(backoffLimitPerIndex=-1)) == [
        "spec.backoffLimitPerIndex: Invalid value: -1: must be greater than or equal to 0"]
    assert _errors(JOBS, _indexed(backoffLimitPerIndex=1, maxFailedIndexes=5)) == [
        "spec.maxFailedIndexes: Invalid value: 5: must be less than or equal to completions"]
    assert _errors(JOBS, _indexed(completions=4, parallelism=100_001)) == [
        "spec.parallelism: Invalid value: 100001: must be less than or equal to 100000 when completion mode is "
        "Indexed"]


def test_fail_index_rule_needs_backoff_limit_per_index() -> None:
    policy = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]}
    assert _errors(JOBS, _indexed(podFailurePolicy=policy)) == [
        'spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex to be '
        'set']
    assert _errors(JOBS, _indexed(podFailurePolicy=policy, backoffLimitPerIndex=2)) == []
    # A FailJob rule goes with a per-index limit too.
    fail_job = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]}
    assert _errors(JOBS, _indexed(podFailurePolicy=fail_job, backoffLimitPerIndex=2)) == []


def test_success_policy_validated() -> None:
    assert _errors(JOBS, _indexed(successPolicy={"rules": [{"succeededIndexes": "0,2-3", "succeededCount": 2}]})) == []
    assert _errors(JOBS, _job(successPolicy={"rules": [{"succeededCount": 1}]})) == [
        "spec.successPolicy: Invalid value: batch.SuccessPolicy{...}: requires indexed completion mode"]
    assert _errors(JOBS, _indexed(successPolicy={"rules": []})) == [
        "spec.successPolicy.rules: Required value: at least one rules must be specified when the successPolicy is "
        "specified"]
    assert _errors(JOBS, _indexed(successPolicy={"rules": [{}]})) == [
        "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be "
        "specified"]
    bad = {"rules": [{"succeededIndexes": "2-1"}, {"succeededIndexes": "0,9"}, {"succeededIndexes": "x"},
                     {"succeededIndexes": "1-2-3"}, {"succeededIndexes": "2,1"}]}
    assert _errors(JOBS, _indexed(successPolicy=bad)) == [
        'spec.successPolicy.rules[0].succeededIndexes: Invalid value: "2-1": error parsing succeededIndexes: '
        'non-increasing order, previous: 2, current: 1',
        'spec.successPolicy.rules[1].succeededIndexes: Invalid value: "0,9": error parsing succeededIndexes: '
        'too large index: "9"',
        'spec.successPolicy.rules[2].succeededIndexes: Invalid value: "x": error parsing succeededIndexes: '
        'cannot convert string to integer for index: "x"',
        'spec.successPolicy.rules[3].succeededIndexes: Invalid value: "1-2-3": error parsing succeededIndexes: '
        'the fragment "1-2-3" violates the requirement that an index interval can have at most two parts '
        "separated by '-'",
        'spec.successPolicy.rules[4].succeededIndexes: Invalid value: "2,1": error parsing succeededIndexes: '
        'non-increasing order, previous: 2, current: 1']
    counts = {"rules": [{"succeededCount": 5}, {"succeededIndexes": "0-1", "succeededCount": 3},
                        {"succeededCount": -1}]}
    assert _errors(JOBS, _indexed(successPolicy=counts)) == [
        "spec.successPolicy.rules[0].succeededCount: Invalid value: 5: must be less than or equal to 4 (the number "
        "of specified completions)",
        "spec.successPolicy.rules[1].succeededCount: Invalid value: 3: must be less than or equal to 2 (the number "
        "of indexes in the specified succeededIndexes field)",
        "spec.successPolicy.rules[2].succeededCount: Invalid value: -1: must be greater than or equal to 0"]
    many = {"rules": [{"succeededCount": 1}] * 21}
    assert _errors(JOBS, _indexed(successPolicy=many)) == [
        "spec.successPolicy.rules: Too many: 21: must have at most 20 items"]
    long_indexes = {"rules": [{"succeededIndexes": "0," * 40_000 + "1"}]}
    assert "spec.successPolicy.rules[0].succeededIndexes: Too long: may not be more than 65536 bytes" in \
        _errors(JOBS, _indexed(successPolicy=long_indexes))


def test_managed_by_validated() -> None:
    assert _errors(JOBS, _job(managedBy="kubernetes.io/job-controller")) == []
    assert _errors(JOBS, _job(managedBy="example.com/custom-controller")) == []
    assert _errors(JOBS, _job(managedBy="custom")) == [
        'spec.managedBy: Invalid value: "custom": must be a domain-prefixed path (such as "acme.io/foo")']
    assert _errors(JOBS, _job(managedBy="Example_com/x")) == [
        'spec.managedBy: Invalid value: "Example_com": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    assert _errors(JOBS, _job(managedBy="example.com/a b")) == [
        'spec.managedBy: Invalid value: "a b": Invalid path (regex used for validation is '
        "'[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')"]
    assert _errors(JOBS, _job(managedBy="example.com/" + "x" * 60)) == [
        "spec.managedBy: Too long: may not be more than 63 bytes"]
    assert _errors(JOBS, _job(managedBy="")) == ["spec.managedBy: Required value"]


def test_new_fields_are_immutable_but_max_failed_indexes() -> None:
    old = _indexed(backoffLimitPerIndex=1, maxFailedIndexes=1, managedBy="example.com/x",
                   successPolicy={"rules": [{"succeededCount": 1}]})
    for key, value, shown in (("backoffLimitPerIndex", 2, "2"), ("managedBy", "example.com/y", '"example.com/y"'),
                              ("successPolicy", {"rules": [{"succeededCount": 2}]}, "batch.SuccessPolicy{...}")):
        new = copy.deepcopy(old)
        new["spec"][key] = value
        JOBS.prepare_for_update(new, old)
        assert [e.text() for e in JOBS.validate_update(new, old)] == [
            f"spec.{key}: Invalid value: {shown}: field is immutable"]
    unset = copy.deepcopy(old)
    del unset["spec"]["managedBy"]
    JOBS.prepare_for_update(unset, old)
    assert [e.text() for e in JOBS.validate_update(unset, old)] == [
        "spec.managedBy: Invalid value: null: field is immutable"]
    scaled = copy.deepcopy(old)
    scaled["spec"]["maxFailedIndexes"] = 3
    JOBS.prepare_for_update(scaled, old)
    assert JOBS.validate_update(scaled, old) == []


def _status_errors(old: dict[str, Any], **status: Any) -> list[str]:
    new = copy.deepcopy(old)
    new["status"] = {**old.get("status", {}), **status}
    return [e.text() for e in JOBS.validate_update(new, old)]


def _cond(kind: str) -> dict[str, Any]:
    return {"type": kind, "status": "True"}


def test_status_writes_checked_as_kube_apiserver_1_32_does() -> None:
    old = _indexed(backoffLimitPerIndex=1)
    old["status"] = {"startTime": "2026-01-01T00:00:00Z", "succeeded": 2, "failed": 1, "completedIndexes": "0,1"}
    assert _status_errors(old, failed=0) == ["status.failed: Invalid value: 0: cannot decrease the failed counter"]
    assert _status_errors(old, succeeded=1, completedIndexes="0") == [
        "status.succeeded: Invalid value: 1: cannot decrease the succeeded counter"]
    assert _status_errors(old, completedIndexes="0,7") == [
        'status.completedIndexes: Invalid value: "0,7": error parsing completedIndexes: too large index: "7"']
    assert _status_errors(old, failedIndexes="1") == [
        'status.failedIndexes: Invalid value: "1": failedIndexes and completedIndexes overlap at index: 1']
    assert _status_errors(old, uncountedTerminatedPods={"succeeded": ["a", ""], "failed": ["a"]}) == [
        'status.uncountedTerminatedPods.succeeded[1]: Invalid value: "": must not be empty',
        'status.uncountedTerminatedPods.failed[0]: Duplicate value: "a"']
    assert _status_errors(old, conditions=[_cond("Complete")]) == [
        "status.completionTime: Required value: completionTime is required for Complete jobs"]
    assert _status_errors(old, completionTime="2026-01-01T00:00:05Z") == [  # a metav1.Time, as Go prints it
        "status.completionTime: Invalid value: 2026-01-01 00:00:05 +0000 UTC: cannot set completionTime when there "
        "is no Complete=True condition"]
    assert _status_errors(old, conditions=[_cond("Failed")], uncountedTerminatedPods={"failed": ["u1"]}) == [
        'status.uncountedTerminatedPods: Invalid value: batch.UncountedTerminatedPods{Succeeded:[]types.UID(nil), '
        'Failed:[]types.UID{"u1"}}: uncountedTerminatedPods needs to be empty for finished job']
    assert _status_errors(old, conditions=[_cond("Failed")], active=1) == [
        "status.active: Invalid value: 1: active>0 is invalid for finished job"]
    assert _status_errors(old, conditions=[_cond("SuccessCriteriaMet"), _cond("FailureTarget")]) == [
        "status.conditions: Invalid value: cannot set SuccessCriteriaMet=True and FailureTarget=true conditions"]
    done = copy.deepcopy(old)
    done["status"]["conditions"] = [_cond("FailureTarget"), _cond("Failed")]
    assert _status_errors(done, conditions=[]) == [
        "status.conditions: Invalid value: cannot disable the terminal Failed=True condition",
        "status.conditions: Invalid value: cannot disable the terminal FailureTarget=True condition"]
    plain = _job()
    plain["status"] = {"startTime": "2026-01-01T00:00:00Z"}
    assert _status_errors(plain, completedIndexes="0") == [
        'status.completedIndexes: Invalid value: "0": cannot set non-empty completedIndexes when non-indexed '
        "completion mode"]
    assert _status_errors(plain, failedIndexes="") == [
        'status.failedIndexes: Invalid value: "": cannot set non-null failedIndexes when backoffLimitPerIndex is '
        "null"]
    # What the job controller writes passes.
    assert _status_errors(old, active=1, ready=0, failedIndexes="2", failed=2) == []
