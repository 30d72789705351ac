"""Jobs and CronJobs against a real server and a real agent running pods as processes: a Job whose pods exit 0
completes (`kubectl wait --for=condition=complete`), one whose pods exit 1 fails once its backoffLimit is spent,
an Indexed Job hands each pod its index, `kubectl get` shows Kubernetes' columns, a bad Job is refused with
Kubernetes' message, a CronJob fires on the server's (shifted) clock, and `kubectl create job --from=cronjob/`
makes a Job the server accepts and runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, start_server, wait_for

NODE = "batch-n1"
CLOCKSHIFT = Path(__file__).resolve().parent / "clockshift"

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason=f"no process runtime: {runtime_available()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose wall clock the test can move forward (clockshift), with a process-runtime agent."""
    tmp = tmp_path_factory.mktemp("batch")
    offset = tmp / "clock-offset"
    offset.write_text("0")
    env = dict(os.environ, KUBESAT_TEST_CLOCK_OFFSET_FILE=str(offset),
               PYTHONPATH=os.pathsep.join(p for p in (str(CLOCKSHIFT), os.environ.get("PYTHONPATH")) if p))
    srv = start_server(tmp / "data", env=env)
    kubeconfig = tmp / "node.kubeconfig"
    kubeconfig.write_bytes(subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", NODE,
                                           "--data-dir", str(srv.data_dir)], capture_output=True,
                                          check=True).stdout)
    log = (tmp / "agent.log").open("wb")
    agent = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig),
                              "--node-name", NODE, "--root", str(tmp / "root"), "--runtime", "process",
                              "--service-relay-port", "0", "--port", "0", "--hide-path", str(srv.data_dir)],
                             stderr=log)
    try:
        wait_for(lambda: '"Ready"' in srv.kubectl("get", "node", NODE, "-o", "json", check=False).stdout, 30,
                 "the agent's node")
        yield srv
    finally:
        agent.terminate()
        agent.wait(timeout=20)
        log.close()
        srv.stop()


def _job_yaml(name: str, script: str, extra: str = "") -> str:
    return f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}, namespace: default}}
spec:
{extra}
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      containers:
      - name: work
        image: busybox
        command: ["/bin/sh", "-c", {json.dumps(script)}]
"""


def _get(server: Server, kind: str, name: str) -> dict:
    return json.loads(server.kubectl("get", kind, name, "-o", "json").stdout)


def _events(server: Server, name: str) -> list[dict]:
    out = server.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return json.loads(out.stdout)["items"]


def _slowly(pred):  # type: ignore[no-untyped-def]
    """A predicate that runs kubectl, polled gently (the machine is shared)."""
    def check():  # type: ignore[no-untyped-def]
        value = pred()
        if not value:
            time.sleep(0.4)
        return value
    return check


def test_a_job_runs_its_pods_to_completion(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input=_job_yaml("ok", "echo finished; exit 0",
                                                       "  completions: 2\n  parallelism: 2"))
    server.kubectl("wait", "--for=condition=complete", "job/ok", "--timeout=90s", timeout=100)
    job = _get(server, "job", "ok")
    status = job["status"]
    assert status["succeeded"] == 2 and "failed" not in status and "active" not in status
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert status["conditions"][1]["reason"] == "CompletionsReached"
    assert status["startTime"] <= status["completionTime"]
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    pods = json.loads(server.kubectl("get", "pods", "-l", "job-name=ok", "-o", "json").stdout)["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Job", "ok", uid, True)
    reasons = [(e["reason"], e["message"]) for e in _events(server, "ok")]
    assert ("Completed", "Job completed") in reasons
    assert sum(1 for r, m in reasons if r == "SuccessfulCreate" and m.startswith("Created pod: ok-")) == 2
    assert server.kubectl("logs", "job/ok").stdout.strip() == "finished"  # kubectl finds a pod by the selector
    table = server.kubectl("get", "jobs").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    row = next(line.split() for line in table[1:] if line.startswith("ok "))
    assert row[1:3] == ["Complete", "2/2"]


def test_a_failing_job_exhausts_its_backoff_limit(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input=_job_yaml("bad", "exit 1", "  backoffLimit: 1"))
    server.kubectl("wait", "--for=condition=failed", "job/bad", "--timeout=90s", timeout=100)
    status = _get(server, "job", "bad")["status"]
    assert status["failed"] == 2 and "succeeded" not in status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded", "Job has reached the specified backoff "
                                                                             "limit")
    assert any(c["type"] == "FailureTarget" for c in status["conditions"])
    warnings = [(e["type"], e["reason"], e["message"]) for e in _events(server, "bad")]
    assert ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit") in warnings
    row = next(line.split() for line in server.kubectl("get", "jobs").stdout.splitlines() if line.startswith("bad "))
    assert row[1:3] == ["Failed", "0/1"]


def test_an_indexed_job_gives_each_pod_its_index(server: Server, api: client.ApiClient) -> None:
    script = 'test "$JOB_COMPLETION_INDEX" = "$(hostname | sed s/^idx-//)"'
    server.kubectl("apply", "-f", "-", input=_job_yaml("idx", script, "  completions: 3\n  parallelism: 3\n"
                                                                       "  completionMode: Indexed"))
    server.kubectl("wait", "--for=condition=complete", "job/idx", "--timeout=90s", timeout=100)
    job = client.BatchV1Api(api).read_namespaced_job_status("idx", "default")
    assert job.status.completed_indexes == "0-2" and job.status.succeeded == 3
    pods = json.loads(server.kubectl("get", "pods", "-l", "job-name=idx", "-o", "json").stdout)["items"]
    indexes = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1", "2"]


def test_a_finished_job_goes_after_its_ttl_with_its_pods(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input=_job_yaml("brief", "exit 0", "  ttlSecondsAfterFinished: 0"))
    server.kubectl("wait", "--for=delete", "job/brief", "--timeout=90s", timeout=100)
    wait_for(_slowly(lambda: server.kubectl("get", "pods", "-l", "job-name=brief", "-o", "name").stdout == ""), 30,
             "the Job's pods gone with it")


def test_a_bad_job_is_refused_with_kubernetes_words(server: Server) -> None:
    manifest = _job_yaml("always", "exit 0").replace("restartPolicy: Never", "restartPolicy: Always")
    out = server.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert out.returncode != 0
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"' \
        in out.stderr
    out = server.kubectl("create", "cronjob", "odd", "--image=busybox", "--schedule=61 * * * *", check=False)
    assert out.returncode != 0 and 'spec.schedule: Invalid value: "61 * * * *"' in out.stderr


def _cronjob_yaml(name: str, schedule: str, suspend: bool = False) -> str:
    return f"""
apiVersion: batch/v1
kind: CronJob
metadata: {{name: {name}, namespace: default}}
spec:
  schedule: "{schedule}"
  suspend: {str(suspend).lower()}
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 2
          containers:
          - name: tick
            image: busybox
            command: ["/bin/sh", "-c", "exit 0"]
"""


def test_kubectl_create_job_from_a_cronjob(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input=_cronjob_yaml("nightly", "0 3 * * *", suspend=True))
    cj = _get(server, "cronjob", "nightly")
    assert cj["spec"]["concurrencyPolicy"] == "Allow" and cj["spec"]["successfulJobsHistoryLimit"] == 3
    server.kubectl("create", "job", "by-hand", "--from=cronjob/nightly")
    job = _get(server, "job", "by-hand")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("CronJob", "nightly", cj["metadata"]["uid"])
    server.kubectl("wait", "--for=condition=complete", "job/by-hand", "--timeout=90s", timeout=100)
    table = server.kubectl("get", "cronjobs").stdout.splitlines()
    assert table[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    row = next(line for line in table[1:] if line.startswith("nightly "))
    assert row.split()[1:9] == ["0", "3", "*", "*", "*", "<none>", "True", "0"]


def _shift_server_clock(server: Server, seconds: float) -> None:
    (server.data_dir.parent / "clock-offset").write_text(f"{seconds:.3f}")
    server.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)


def test_a_cronjob_fires_on_the_servers_clock(server: Server, api: client.ApiClient) -> None:
    # Move the server's clock (forward only) to 3 s before a minute: an every-minute CronJob created now fires
    # then.
    now = time.time()
    _shift_server_clock(server, (60 - now % 60 - 3) % 60)
    server.kubectl("apply", "-f", "-", input=_cronjob_yaml("every-minute", "* * * * *"))
    cj = _get(server, "cronjob", "every-minute")
    jobs = wait_for(_slowly(lambda: json.loads(server.kubectl("get", "jobs", "-o", "json").stdout)["items"]
                            if any(j["metadata"]["name"].startswith("every-minute-") for j in
                                   json.loads(server.kubectl("get", "jobs", "-o", "json").stdout)["items"])
                            else None), 30, "the CronJob's first Job")
    job = next(j for j in jobs if j["metadata"]["name"].startswith("every-minute-"))
    minutes = int(job["metadata"]["name"].rsplit("-", 1)[1])
    assert job["metadata"]["ownerReferences"][0]["uid"] == cj["metadata"]["uid"]
    scheduled = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert scheduled == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(minutes * 60))
    name = job["metadata"]["name"]
    server.kubectl("wait", "--for=condition=complete", f"job/{name}", "--timeout=90s", timeout=100)
    status = wait_for(_slowly(lambda: (s := _get(server, "cronjob", "every-minute").get("status", {}))
                              .get("lastSuccessfulTime") and s), 30, "lastSuccessfulTime")
    assert status["lastScheduleTime"] == scheduled and not status.get("active")
    reasons = [(e["reason"], e["message"]) for e in _events(server, "every-minute")]
    assert ("SuccessfulCreate", f"Created job {name}") in reasons
    assert ("SawCompletedJob", f"Saw completed job: {name}, condition: Complete") in reasons
    read = client.BatchV1Api(api).read_namespaced_cron_job("every-minute", "default")
    assert read.spec.schedule == "* * * * *" and read.status.last_successful_time is not None
    resources = server.kubectl("api-resources", "--api-group=batch", "--no-headers").stdout.splitlines()
    assert sorted(line.split()[0] for line in resources) == ["cronjobs", "jobs"]
    assert next(line for line in resources if line.startswith("cronjobs")).split()[1] == "cj"


# ------------------------------------------------------------------ pod tracking (batch.kubernetes.io/job-tracking)
TRACKING = "batch.kubernetes.io/job-tracking"


def _pods(server: Server, job: str) -> list[dict]:
    return json.loads(server.kubectl("get", "pods", "-l", f"job-name={job}", "-o", "json").stdout)["items"]


def _running_pods(server: Server, job: str, count: int, phases: tuple[str, ...] = ("Running",)) -> list[dict]:
    return wait_for(_slowly(lambda: (pods := [p for p in _pods(server, job) if p["status"].get("phase") in phases])
                            and len(pods) >= count and pods), 60, f"{count} running pods of {job}")


def test_a_counted_pod_loses_its_finalizer_and_stays_counted_when_deleted(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input=_job_yaml("tracked", "sleep 2", "  completions: 2\n  parallelism: 1"))
    running = _running_pods(server, "tracked", 1, ("Pending", "Running"))[0]
    assert running["metadata"]["finalizers"] == [TRACKING]
    first = running["metadata"]["name"]
    done = wait_for(_slowly(lambda: (p := _get(server, "pod", first))["status"].get("phase") == "Succeeded"
                            and not p["metadata"].get("finalizers") and p), 60, "the first pod counted")
    assert _get(server, "job", "tracked")["status"]["succeeded"] == 1
    server.kubectl("delete", "pod", done["metadata"]["name"])
    assert _get(server, "job", "tracked")["status"]["succeeded"] >= 1  # not lowered (2 if the next one is done)
    # The second pod's success adds to the count, though the first pod is gone.
    server.kubectl("wait", "--for=condition=complete", "job/tracked", "--timeout=90s", timeout=100)
    assert _get(server, "job", "tracked")["status"]["succeeded"] == 2


def test_a_pod_deleted_while_running_counts_as_failed(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input=_job_yaml("dropped", "sleep 60", "  backoffLimit: 3"))
    name = _running_pods(server, "dropped", 1)[0]["metadata"]["name"]
    server.kubectl("delete", "pod", name, "--wait=false")
    wait_for(_slowly(lambda: _get(server, "job", "dropped")["status"].get("failed") == 1), 30, "the failure counted")
    wait_for(_slowly(lambda: server.kubectl("get", "pod", name, "--ignore-not-found", "-o", "name").stdout == ""), 30,
             "the deleted pod gone")
    server.kubectl("delete", "job", "dropped", "--wait=false")


@pytest.mark.parametrize("cascade", ["background", "foreground", "orphan"])
def test_a_deleted_job_leaves_no_pod_terminating(server: Server, cascade: str) -> None:
    name = f"gone-{cascade}"
    server.kubectl("apply", "-f", "-", input=_job_yaml(name, "sleep 60", "  parallelism: 2"))
    pods = _running_pods(server, name, 2)
    assert all(p["metadata"]["finalizers"] == [TRACKING] for p in pods)
    server.kubectl("delete", "job", name, f"--cascade={cascade}", "--wait=false")
    if cascade == "orphan":  # the orphans lose the finalizer: deleting them later is not held up
        wait_for(_slowly(lambda: all(not p["metadata"].get("finalizers") for p in _pods(server, name))), 30,
                 "the orphans' finalizers gone")
        server.kubectl("delete", "pods", "-l", f"job-name={name}", "--wait=false")
    wait_for(_slowly(lambda: not _pods(server, name)), 40, f"the pods of the {cascade}-deleted Job gone")
    server.kubectl("wait", "--for=delete", f"job/{name}", "--timeout=30s", timeout=40)


def test_an_indexed_jobs_completed_indexes_stay_when_its_pods_go(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input=_job_yaml("cumulative", "sleep 1", "  completions: 2\n  parallelism: 1\n"
                                                                              "  completionMode: Indexed"))
    wait_for(_slowly(lambda: _get(server, "job", "cumulative")["status"].get("completedIndexes") == "0"), 60,
             "index 0 completed")
    server.kubectl("delete", "pods", "-l", "job-name=cumulative,batch.kubernetes.io/job-completion-index=0")
    server.kubectl("wait", "--for=condition=complete", "job/cumulative", "--timeout=90s", timeout=100)
    status = _get(server, "job", "cumulative")["status"]
    assert status["completedIndexes"] == "0,1" and status["succeeded"] == 2  # two in a row: not a range
    assert [p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            for p in _pods(server, "cumulative")] == ["1"]  # index 0 was not run again


# ------------------------------------------------------------------ backoffLimitPerIndex, successPolicy, managedBy
FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
INDEX = "batch.kubernetes.io/job-completion-index"


def _indexed(completions: int, extra: str = "") -> str:
    return f"  completionMode: Indexed\n  completions: {completions}\n  parallelism: {completions}\n{extra}"


def test_an_index_past_its_backoff_limit_per_index_fails_and_is_not_run_again(server: Server) -> None:
    # Index 1 always fails: run once, then once more after its own 10 s back-off, then marked failed.
    server.kubectl("apply", "-f", "-", input=_job_yaml("per-index", 'test "$JOB_COMPLETION_INDEX" != 1',
                                                       _indexed(3, "  backoffLimitPerIndex: 1")))
    job = _get(server, "job", "per-index")
    assert job["spec"]["backoffLimit"] == 2147483647  # defaulted off: failures are counted per index
    server.kubectl("wait", "--for=condition=failed", "job/per-index", "--timeout=120s", timeout=130)
    status = _get(server, "job", "per-index")["status"]
    assert (status["failedIndexes"], status["completedIndexes"]) == ("1", "0,2")
    assert (status["failed"], status["succeeded"]) == (2, 2)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("FailedIndexes", "Job has failed indexes")
    assert any(c["type"] == "FailureTarget" and c["reason"] == "FailedIndexes" for c in status["conditions"])
    counts = sorted((p["metadata"]["annotations"][INDEX], p["metadata"]["annotations"][FAILURE_COUNT])
                    for p in _pods(server, "per-index"))
    assert counts == [("0", "0"), ("1", "0"), ("1", "1"), ("2", "0")]
    assert all(not p["metadata"].get("finalizers") for p in _pods(server, "per-index"))
    warnings = [(e["type"], e["reason"], e["message"]) for e in _events(server, "per-index")]
    assert ("Warning", "FailedIndexes", "Job has failed indexes") in warnings


def test_a_fail_index_rule_and_max_failed_indexes_fail_the_job_at_once(server: Server) -> None:
    script = 'if [ "$JOB_COMPLETION_INDEX" = 0 ]; then exit 42; fi; sleep 60'
    policy = ("  backoffLimitPerIndex: 3\n  maxFailedIndexes: 0\n  podFailurePolicy:\n    rules:\n"
              "    - action: FailIndex\n      onExitCodes: {operator: In, values: [42]}\n")
    server.kubectl("apply", "-f", "-", input=_job_yaml("max-failed", script, _indexed(3, policy)))
    server.kubectl("wait", "--for=condition=failed", "job/max-failed", "--timeout=90s", timeout=100)
    status = _get(server, "job", "max-failed")["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("MaxFailedIndexesExceeded", "Job has exceeded the specified "
                                                                                 "maximal number of failed indexes")
    assert status["failedIndexes"] == "0" and not status.get("active")
    # Index 0 was not retried (FailIndex), and the running indexes were stopped.
    index0 = [p for p in _pods(server, "max-failed") if p["metadata"]["annotations"][INDEX] == "0"]
    assert len(index0) == 1
    wait_for(_slowly(lambda: all(p["status"].get("phase") == "Failed" or p["metadata"]["annotations"][INDEX] == "0"
                                 for p in _pods(server, "max-failed"))), 40, "the other indexes stopped")


def test_a_met_success_policy_completes_the_job_and_stops_the_rest(server: Server, api: client.ApiClient) -> None:
    script = 'if [ "$JOB_COMPLETION_INDEX" = 0 ]; then exit 0; fi; sleep 60'
    policy = "  successPolicy:\n    rules:\n    - succeededIndexes: \"0\"\n"
    server.kubectl("apply", "-f", "-", input=_job_yaml("lead", script, _indexed(3, policy)))
    server.kubectl("wait", "--for=condition=complete", "job/lead", "--timeout=90s", timeout=100)
    job = client.BatchV1Api(api).read_namespaced_job_status("lead", "default")
    assert job.spec.success_policy.rules[0].succeeded_indexes == "0"
    kinds = [(c.type, c.reason, c.message) for c in job.status.conditions]
    assert kinds == [("SuccessCriteriaMet", "SuccessPolicy", "Matched rules at index 0"),
                     ("Complete", "SuccessPolicy", "Matched rules at index 0")]
    assert job.status.completed_indexes == "0" and job.status.succeeded == 1 and not job.status.failed
    assert not job.status.active and job.status.completion_time is not None
    wait_for(_slowly(lambda: [p["metadata"]["annotations"][INDEX] for p in _pods(server, "lead")] == ["0"]), 40,
             "the other indexes' pods gone")


def test_a_job_managed_by_another_controller_is_left_to_it(server: Server, api: client.ApiClient) -> None:
    server.kubectl("apply", "-f", "-", input=_job_yaml("external", "exit 0", "  managedBy: example.com/queue"))
    time.sleep(3)  # the job controller would have made its pod by now
    assert _pods(server, "external") == [] and not _get(server, "job", "external").get("status")
    out = server.kubectl("patch", "job", "external", "--type=merge", "-p", '{"spec":{"managedBy":"example.com/b"}}',
                         check=False)
    assert out.returncode != 0
    assert 'spec.managedBy: Invalid value: "example.com/b": field is immutable' in out.stderr
    # The other controller writes the status; kube-apiserver 1.32's rules for it apply.
    batch = client.BatchV1Api(api)
    batch.patch_namespaced_job_status("external", "default", {"status": {
        "startTime": "2026-01-01T00:00:00Z", "active": 1, "ready": 0}})
    with pytest.raises(client.ApiException) as bad:
        batch.patch_namespaced_job_status("external", "default", {"status": {
            "active": 0, "conditions": [{"type": "Complete", "status": "True"}]}})
    assert bad.value.status == 422
    body = json.loads(bad.value.body)
    assert body["message"] == ('Job.batch "external" is invalid: status.completionTime: Required value: '
                               "completionTime is required for Complete jobs")
    with pytest.raises(client.ApiException) as lowered:
        batch.patch_namespaced_job_status("external", "default", {"status": {"failed": 2}})
        batch.patch_namespaced_job_status("external", "default", {"status": {"failed": 1}})
    assert "status.failed: Invalid value: 1: cannot decrease the failed counter" in json.loads(lowered.value.body)[
        "message"]


BAD_JOBS = [
    ("  backoffLimitPerIndex: 1", "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode"),
    (_indexed(2, "  maxFailedIndexes: 1"),
     "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified"),
    (_indexed(2, "  backoffLimitPerIndex: -1"),
     "spec.backoffLimitPerIndex: Invalid value: -1: must be greater than or equal to 0"),
    (_indexed(2, "  backoffLimitPerIndex: 1\n  maxFailedIndexes: 3"),
     "spec.maxFailedIndexes: Invalid value: 3: must be less than or equal to completions"),
    (_indexed(2, "  podFailurePolicy:\n    rules:\n    - action: FailIndex\n      onExitCodes: {operator: In, values: "
                 "[3]}\n"),
     'spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set'),
    ("  successPolicy:\n    rules:\n    - succeededCount: 1\n",
     "spec.successPolicy: Invalid value: batch.SuccessPolicy{...}: requires indexed completion mode"),
    (_indexed(2, "  successPolicy:\n    rules: []\n"),
     "spec.successPolicy.rules: Required value: at least one rules must be specified when the successPolicy is "
     "specified"),
    (_indexed(2, "  successPolicy:\n    rules:\n    - succeededIndexes: \"0-5\"\n"),
     'spec.successPolicy.rules[0].succeededIndexes: Invalid value: "0-5": error parsing succeededIndexes: too '
     'large index: "5"'),
    (_indexed(2, "  successPolicy:\n    rules:\n    - succeededCount: 3\n"),
     "spec.successPolicy.rules[0].succeededCount: Invalid value: 3: must be less than or equal to 2 (the number of "
     "specified completions)"),
    (_indexed(2, "  successPolicy:\n    rules:\n    - {}\n"),
     "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be "
     "specified"),
    ("  managedBy: queue", 'spec.managedBy: Invalid value: "queue": must be a domain-prefixed path (such as '
                           '"acme.io/foo")'),
    ("  managedBy: example.com/" + "q" * 60, "spec.managedBy: Too long: may not be more than 63 bytes"),
]


def test_bad_values_of_the_new_fields_are_refused_with_kubernetes_words(server: Server) -> None:
    for i, (extra, message) in enumerate(BAD_JOBS):
        out = server.kubectl("apply", "-f", "-", input=_job_yaml(f"refused-{i}", "exit 0", extra), check=False)
        assert out.returncode != 0 and f'The Job "refused-{i}" is invalid: {message}' in out.stderr, out.stderr
    assert "refused-" not in server.kubectl("get", "jobs", "-o", "name").stdout


def test_an_adopted_pod_gets_the_tracking_finalizer_and_is_counted(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: early-bird, namespace: default, labels: {app: early}}
spec:
  restartPolicy: Never
  containers:
  - {name: work, image: busybox, command: ["/bin/sh", "-c", "exit 0"]}
""")
    wait_for(_slowly(lambda: _get(server, "pod", "early-bird")["status"].get("phase") == "Succeeded"), 60,
             "the orphan pod done")
    extra = ("  manualSelector: true\n  selector: {matchLabels: {app: early}}\n  completions: 2\n  parallelism: 1\n")
    manifest = _job_yaml("adopter", "exit 0", extra).replace("  template:\n", "  template:\n    metadata: {labels: "
                                                                               "{app: early}}\n")
    server.kubectl("apply", "-f", "-", input=manifest)
    server.kubectl("wait", "--for=condition=complete", "job/adopter", "--timeout=90s", timeout=100)
    job = _get(server, "job", "adopter")
    assert job["status"]["succeeded"] == 2
    adopted = _get(server, "pod", "early-bird")
    owner = adopted["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Job", job["metadata"]["uid"], True)
    assert not adopted["metadata"].get("finalizers")  # counted, then let go
    created = [e for e in _events(server, "adopter") if e["reason"] == "SuccessfulCreate"]
    assert len(created) == 1  # the adopted pod's success counted: one pod made, not two
