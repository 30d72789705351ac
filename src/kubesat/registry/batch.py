"""batch/v1 Jobs and CronJobs: v1 defaults, the generated selector, validation with Kubernetes' messages and the
`kubectl get` rows, as Kubernetes 1.32 has them.

A Job's pod template is defaulted and validated by the Pod rules (registry/pod.py); the Job adds its own:
restartPolicy Never or OnFailure, the selector kube-apiserver generates from the Job's uid, and the counts.
A CronJob's schedule is read by `croniter` with robfig/cron's standard rules (five fields or a descriptor).
"""

from __future__ import annotations

import copy
import re
import zoneinfo
from datetime import datetime
from typing import Any

from croniter import croniter
from croniter.croniter import CroniterError

from kubesat.errors import FieldError, duplicate, invalid_value, not_supported, required, too_long
from kubesat.registry.jobindexes import index_format_error, overlap_error
from kubesat.registry.meta import (
    GoValue, age_column, as_dict, column, dns1123_subdomain, field_doc, name_column, regex_error, validate_labels,
)
from kubesat.registry.pod import apply_pod_defaults, validate_pod_spec
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import age, human_duration, parse_time
from kubesat.apimachinery.selectors import labels_match, selector_from_label_selector_object

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME_LABEL = "job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"
CRONJOB_SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_INDEXED = 100_000  # completions (kubesat's bound), parallelism and maxFailedIndexes of an Indexed Job
MAX_MANAGED_BY = 63
MAX_SUCCEEDED_INDEXES = 64 * 1024
MAX_SUCCESS_RULES = 20
JOB_CONTROLLER_NAME = "kubernetes.io/job-controller"
_HTTP_PATH_FMT = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
_HTTP_PATH = re.compile("^" + _HTTP_PATH_FMT + "$")
MAX_CRONJOB_NAME = 52  # a Job's name adds "-" and up to 10 digits of minutes, and must stay a 63-character label
_JOB_SPEC = "io.k8s.api.batch.v1.JobSpec"
_JOB_STATUS = "io.k8s.api.batch.v1.JobStatus"
_CJ_SPEC = "io.k8s.api.batch.v1.CronJobSpec"
_CJ_STATUS = "io.k8s.api.batch.v1.CronJobStatus"
_COMPLETION_MODES = ["NonIndexed", "Indexed"]
_CONCURRENCY = ["Allow", "Forbid", "Replace"]
_RULE_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_TZ_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# ----------------------------------------------------------------------------------- defaults


def apply_job_spec_defaults(spec: dict[str, Any]) -> None:
    """SetDefaults_Job's spec part, and the Pod defaults on its template."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        # With a per-index limit the global one is effectively off, as Kubernetes defaults it.
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    for rule in _l(as_dict(spec.get("podFailurePolicy")).get("rules")):
        for pattern in _l(as_dict(rule).get("onPodConditions")):
            if isinstance(pattern, dict):
                pattern.setdefault("status", "True")
    template = spec.get("template")
    if not isinstance(template, dict):
        template = spec["template"] = {}
    apply_pod_defaults(template)


def generate_selector(job: dict[str, Any]) -> None:
    """The job strategy's generated selector: the Job's name and uid as template labels (both spellings), and
    the uid label selected. Labels the client set are kept (a conflict fails validation)."""
    meta = as_dict(job.get("metadata"))
    spec = job["spec"]
    template = spec["template"]
    tmeta = template.setdefault("metadata", {})
    labels = tmeta.setdefault("labels", {}) if isinstance(tmeta, dict) else None
    if not isinstance(labels, dict):
        return  # not an object: validation says so
    for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
        labels.setdefault(key, meta.get("name", ""))
    for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
        labels.setdefault(key, meta.get("uid", ""))
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        selector = spec["selector"] = {}
    match = selector.get("matchLabels")
    if not isinstance(match, dict):
        match = selector["matchLabels"] = {}
    match.setdefault(CONTROLLER_UID_LABEL, meta.get("uid", ""))


def _default_job_labels(job: dict[str, Any]) -> None:
    # A Job without labels of its own takes its template's (v1 defaulting, seen once the object is read back).
    meta = job.setdefault("metadata", {})
    template_labels = as_dict(as_dict(as_dict(job.get("spec")).get("template")).get("metadata")).get("labels")
    if not meta.get("labels") and template_labels and isinstance(template_labels, dict):
        meta["labels"] = dict(template_labels)


def apply_cronjob_defaults(cj: dict[str, Any]) -> None:
    """SetDefaults_CronJob, and the Pod defaults on the job template's pod template (not the Job defaults)."""
    spec = cj.get("spec")
    if not isinstance(spec, dict):
        spec = cj["spec"] = {}
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    jt = spec.get("jobTemplate")
    if not isinstance(jt, dict):
        jt = spec["jobTemplate"] = {}
    jspec = jt.get("spec")
    if not isinstance(jspec, dict):
        jspec = jt["spec"] = {}
    template = jspec.get("template")
    if not isinstance(template, dict):
        template = jspec["template"] = {}
    apply_pod_defaults(template)


# ----------------------------------------------------------------------------------- validation


def _nonnegative(spec: dict[str, Any], key: str, path: str) -> list[FieldError]:
    value = spec.get(key)
    if value is None:
        return []
    if _int(value) is None or value < 0:
        return [invalid_value(f"{path}.{key}", value, "must be greater than or equal to 0")]
    return []


def _validate_pod_failure_policy(spec: dict[str, Any], path: str) -> list[FieldError]:
    policy = spec.get("podFailurePolicy")
    if policy is None:
        return []
    errs: list[FieldError] = []
    restart = as_dict(as_dict(spec.get("template")).get("spec")).get("restartPolicy")
    if restart != "Never":
        errs.append(invalid_value(f"{path}.template.spec.restartPolicy", restart,
                                  'only "Never" is supported when podFailurePolicy is specified'))
    for i, rule in enumerate(_l(as_dict(policy).get("rules"))):
        rule = as_dict(rule)
        rp = f"{path}.podFailurePolicy.rules[{i}]"
        action = rule.get("action")
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errs.append(invalid_value(f"{rp}.action", action, "requires the backoffLimitPerIndex to be set"))
        elif action not in _RULE_ACTIONS:
            errs.append(not_supported(f"{rp}.action", action, _RULE_ACTIONS))
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conditions is None):
            errs.append(invalid_value(rp, GoValue("specifying one of OnExitCodes and OnPodConditions is required"),
                                      "specifying one of OnExitCodes and OnPodConditions is required"))
        if codes is not None:
            op = as_dict(codes).get("operator")
            if op not in ("In", "NotIn"):
                errs.append(not_supported(f"{rp}.onExitCodes.operator", op, ["In", "NotIn"]))
            if not _l(as_dict(codes).get("values")):
                errs.append(required(f"{rp}.onExitCodes.values", "at least one value is required"))
    return errs


def _validate_indexed(spec: dict[str, Any], path: str) -> list[FieldError]:
    mode = spec.get("completionMode")
    if mode is not None and mode not in _COMPLETION_MODES:
        return [not_supported(f"{path}.completionMode", mode, _COMPLETION_MODES)]
    per_index, max_failed = _int(spec.get("backoffLimitPerIndex")), _int(spec.get("maxFailedIndexes"))
    if mode != "Indexed":  # a CronJob's job template is not defaulted: unset means NonIndexed
        return [invalid_value(f"{path}.{key}", value, "requires indexed completion mode")
                for key, value in (("backoffLimitPerIndex", per_index), ("maxFailedIndexes", max_failed))
                if value is not None]
    errs: list[FieldError] = []
    completions, parallelism = _int(spec.get("completions")), _int(spec.get("parallelism"))
    if completions is None:
        errs.append(required(f"{path}.completions", "when completion mode is Indexed"))
    elif completions > MAX_INDEXED:  # kubesat's bound (Kubernetes 1.28+ has none without backoffLimitPerIndex)
        errs.append(invalid_value(f"{path}.completions", completions, f"must be less than or equal to {MAX_INDEXED}"))
    if parallelism is not None and parallelism > MAX_INDEXED:
        errs.append(invalid_value(f"{path}.parallelism", parallelism,
                                  f"must be less than or equal to {MAX_INDEXED} when completion mode is Indexed"))
    if completions is not None and max_failed is not None and max_failed > completions:
        errs.append(invalid_value(f"{path}.maxFailedIndexes", max_failed, "must be less than or equal to completions"))
    if max_failed is not None and max_failed > MAX_INDEXED:
        errs.append(invalid_value(f"{path}.maxFailedIndexes", max_failed,
                                  f"must be less than or equal to {MAX_INDEXED}"))
    return errs


def validate_managed_by(value: Any, path: str) -> list[FieldError]:
    """IsDomainPrefixedPath (`acme.io/foo`) and at most 63 characters."""
    if value is None:
        return []
    if not isinstance(value, str) or not value:
        return [required(path)] if value == "" else [invalid_value(path, value, "must be a string")]
    errs: list[FieldError] = []
    host, slash, rest = value.partition("/")
    if not slash or not host or not rest:
        errs.append(invalid_value(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")'))
    else:
        errs += [invalid_value(path, host, msg) for msg in dns1123_subdomain(host)]
        if not _HTTP_PATH.match(rest):
            errs.append(invalid_value(path, rest, regex_error("Invalid path", _HTTP_PATH_FMT)))
    if len(value) > MAX_MANAGED_BY:
        errs.append(too_long(path, MAX_MANAGED_BY))
    return errs


def _validate_success_policy(spec: dict[str, Any], path: str) -> list[FieldError]:
    policy = spec.get("successPolicy")
    if policy is None:
        return []
    path = f"{path}.successPolicy"
    if spec.get("completionMode") != "Indexed":
        return [invalid_value(path, GoValue("batch.SuccessPolicy{...}"), "requires indexed completion mode")]
    rules = _l(as_dict(policy).get("rules"))
    errs: list[FieldError] = []
    if not rules:
        errs.append(required(f"{path}.rules", "at least one rules must be specified when the successPolicy is "
                                              "specified"))
    if len(rules) > MAX_SUCCESS_RULES:
        errs.append(FieldError("FieldValueTooMany", f"{path}.rules", f"must have at most {MAX_SUCCESS_RULES} items",
                               len(rules), True))
    completions = _int(spec.get("completions"))
    for i, rule in enumerate(rules):
        errs += _validate_success_rule(as_dict(rule), completions, f"{path}.rules[{i}]")
    return errs


def _validate_success_rule(rule: dict[str, Any], completions: int | None, path: str) -> list[FieldError]:
    indexes, count = rule.get("succeededIndexes"), rule.get("succeededCount")
    errs: list[FieldError] = []
    if indexes is None and count is None:
        errs.append(required(path, "at least one of succeededCount or succeededIndexes must be specified"))
    total = 0
    if isinstance(indexes, str):
        if len(indexes) > MAX_SUCCEEDED_INDEXES:
            errs.append(too_long(f"{path}.succeededIndexes", MAX_SUCCEEDED_INDEXES))
        if completions is not None:
            total, why = index_format_error(indexes, completions)
            if why is not None:
                errs.append(invalid_value(f"{path}.succeededIndexes", indexes,
                                          f"error parsing succeededIndexes: {why}"))
    count = _int(count)
    if count is not None:
        errs += _nonnegative(rule, "succeededCount", path)
        if completions is not None and count > completions:
            errs.append(invalid_value(f"{path}.succeededCount", count, f"must be less than or equal to {completions} "
                                                                       "(the number of specified completions)"))
        if indexes is not None and count > total:
            errs.append(invalid_value(f"{path}.succeededCount", count, f"must be less than or equal to {total} (the "
                                                                       "number of indexes in the specified "
                                                                       "succeededIndexes field)"))
    return errs


def validate_job_spec(spec: dict[str, Any], path: str) -> list[FieldError]:
    """validateJobSpec: the counts, managedBy, the completion mode and its per-index fields, the pod failure and
    success policies, the pod template and its restart policy."""
    errs: list[FieldError] = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                "backoffLimitPerIndex", "maxFailedIndexes"):
        errs += _nonnegative(spec, key, path)
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    errs += validate_managed_by(spec.get("managedBy"), f"{path}.managedBy")
    errs += _validate_indexed(spec, path)
    template = as_dict(spec.get("template"))
    errs += validate_labels(as_dict(template.get("metadata")).get("labels"), f"{path}.template.metadata.labels")
    tspec = as_dict(template.get("spec"))
    errs += validate_pod_spec(tspec, f"{path}.template.spec")
    restart = tspec.get("restartPolicy")
    if restart not in ("OnFailure", "Never"):
        errs.append(not_supported(f"{path}.template.spec.restartPolicy", restart, ["OnFailure", "Never"]))
    errs += _validate_pod_failure_policy(spec, path)
    errs += _validate_success_policy(spec, path)
    return errs


def _has_label(labels: dict[str, Any], key: str, want: str) -> list[FieldError]:
    path = f"spec.template.metadata.labels[{key}]"
    if key not in labels:
        return [required(path, f"must be '{want}'")]
    if labels[key] != want:
        return [invalid_value(path, labels[key], f"must be '{want}'")]
    return []


def _selects(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    """Whether a label selector object matches `labels`; a malformed one (refused elsewhere) matches nothing."""
    expressions = selector.get("matchExpressions")
    if not isinstance(selector.get("matchLabels", {}), dict) or \
            not all(isinstance(e, dict) for e in _l(expressions)) or not isinstance(expressions or [], list):
        return False
    return labels_match(selector_from_label_selector_object(selector), labels)


def _validate_generated_selector(job: dict[str, Any]) -> list[FieldError]:
    spec = as_dict(job.get("spec"))
    if spec.get("manualSelector") is True or not isinstance(spec.get("selector"), dict):
        return []
    meta = as_dict(job.get("metadata"))
    uid, name = str(meta.get("uid") or ""), str(meta.get("name") or "")
    errs: list[FieldError] = [] if uid else [required("metadata.uid")]
    labels = as_dict(as_dict(as_dict(spec.get("template")).get("metadata")).get("labels"))
    for key, want in ((LEGACY_CONTROLLER_UID_LABEL, uid), (LEGACY_JOB_NAME_LABEL, name),
                      (CONTROLLER_UID_LABEL, uid), (JOB_NAME_LABEL, name)):
        errs += _has_label(labels, key, want)
    expected = {LEGACY_CONTROLLER_UID_LABEL: uid, LEGACY_JOB_NAME_LABEL: name,
                CONTROLLER_UID_LABEL: uid, JOB_NAME_LABEL: name}
    if not _selects(spec["selector"], expected):
        errs.append(invalid_value("spec.selector", format_selector(spec["selector"]), "`selector` not auto-generated"))
    return errs


def validate_job(job: dict[str, Any]) -> list[FieldError]:
    spec = as_dict(job.get("spec"))
    errs = _validate_generated_selector(job)
    errs += validate_job_spec(spec, "spec")
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        errs.append(required("spec.selector"))
    else:
        labels = as_dict(as_dict(as_dict(spec.get("template")).get("metadata")).get("labels"))
        if not _selects(selector, labels):
            errs.append(invalid_value("spec.template.metadata.labels", format_labels(labels),
                                      "`selector` does not match template `labels`"))
    return errs


def _immutable(new: dict[str, Any], old: dict[str, Any], key: str, shown: Any = None) -> list[FieldError]:
    if new.get(key) == old.get(key):
        return []
    value = new.get(key)
    return [invalid_value(f"spec.{key}", value if shown is None or value is None else shown, "field is immutable")]


def validate_job_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_job(new)
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    errs += _immutable(spec, old_spec, "completions")
    errs += _immutable(spec, old_spec, "completionMode")
    errs += _immutable(spec, old_spec, "podFailurePolicy", GoValue("batch.PodFailurePolicy{...}"))
    errs += _immutable(spec, old_spec, "selector", GoValue(format_selector(as_dict(spec.get("selector")))))
    errs += _immutable(spec, old_spec, "template", GoValue("core.PodTemplateSpec{...}"))
    errs += _immutable(spec, old_spec, "backoffLimitPerIndex")
    errs += _immutable(spec, old_spec, "managedBy")
    errs += _immutable(spec, old_spec, "successPolicy", GoValue("batch.SuccessPolicy{...}"))
    return errs


def _status_counts(status: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("active", "succeeded", "failed", "ready", "terminating"):
        errs += _nonnegative(status, key, "status")
    return errs


def _true(status: dict[str, Any], kind: str) -> bool:
    return any(as_dict(c).get("type") == kind and as_dict(c).get("status") == "True"
               for c in _l(status.get("conditions")))


def _conditions_error(detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", "status.conditions", detail)  # the value is omitted, as Go's OmitValueType


def _uncounted_errors(status: dict[str, Any]) -> list[FieldError]:
    """uncountedTerminatedPods: no empty UID, none listed twice (across succeeded and failed)."""
    uncounted = as_dict(status.get("uncountedTerminatedPods"))
    seen: set[str] = set()
    errs: list[FieldError] = []
    for key in ("succeeded", "failed"):
        for i, uid in enumerate(_l(uncounted.get(key))):
            path = f"status.uncountedTerminatedPods.{key}[{i}]"
            if uid == "":
                errs.append(invalid_value(path, uid, "must not be empty"))
            elif str(uid) in seen:
                errs.append(duplicate(path, uid))
            else:
                seen.add(str(uid))
    return errs


def _index_errors(job: dict[str, Any], old_status: dict[str, Any]) -> list[FieldError]:
    """completedIndexes and failedIndexes, checked when they change (as kube-apiserver does since the Job status
    may be written by another controller, spec.managedBy)."""
    spec, status = as_dict(job.get("spec")), as_dict(job.get("status"))
    completions = _int(spec.get("completions"))
    completed, failed = str(status.get("completedIndexes") or ""), status.get("failedIndexes")
    completed_changed = completed != str(old_status.get("completedIndexes") or "")
    failed_changed = failed != old_status.get("failedIndexes")
    errs: list[FieldError] = []
    if completed_changed and completions is not None:
        why = index_format_error(completed, completions)[1]
        if why is not None:
            errs.append(invalid_value("status.completedIndexes", completed, f"error parsing completedIndexes: {why}"))
    if failed_changed and completions is not None and spec.get("backoffLimitPerIndex") is not None \
            and isinstance(failed, str):
        why = index_format_error(failed, completions)[1]
        if why is not None:
            errs.append(invalid_value("status.failedIndexes", failed, f"error parsing failedIndexes: {why}"))
    if completed_changed and completed and spec.get("completionMode") != "Indexed":
        errs.append(invalid_value("status.completedIndexes", completed,
                                  "cannot set non-empty completedIndexes when non-indexed completion mode"))
    if failed_changed and spec.get("backoffLimitPerIndex") is None and failed is not None:
        errs.append(invalid_value("status.failedIndexes", failed,
                                  "cannot set non-null failedIndexes when backoffLimitPerIndex is null"))
    if (failed_changed or completed_changed) and completions is not None and isinstance(failed, str):
        why_overlap = overlap_error(completed, failed, completions)
        if why_overlap is not None:
            errs.append(invalid_value("status.failedIndexes", failed, why_overlap))
    return errs


def _finished_errors(job: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """The rules on a finished Job's status, each checked when what it is about changes."""
    status, old_status = as_dict(job.get("status")), as_dict(old.get("status"))
    finished = _true(status, "Complete") or _true(status, "Failed")
    finished_changed = finished != (_true(old_status, "Complete") or _true(old_status, "Failed"))
    complete, complete_changed = _true(status, "Complete"), _true(status, "Complete") != _true(old_status, "Complete")
    failed_changed = _true(status, "Failed") != _true(old_status, "Failed")
    target_changed = _true(status, "FailureTarget") != _true(old_status, "FailureTarget")
    start, done = status.get("startTime"), status.get("completionTime")
    start_changed, done_changed = start != old_status.get("startTime"), done != old_status.get("completionTime")
    uncounted = as_dict(status.get("uncountedTerminatedPods"))
    errs: list[FieldError] = []
    if finished and (finished_changed or status.get("active") != old_status.get("active")) and \
            (_int(status.get("active")) or 0) > 0:
        errs.append(invalid_value("status.active", status.get("active"), "active>0 is invalid for finished job"))
    if finished and (finished_changed or start_changed) and start is None:
        errs.append(required("status.startTime", "startTime is required for finished job"))
    if finished and (finished_changed or uncounted != as_dict(old_status.get("uncountedTerminatedPods"))) and \
            (_l(uncounted.get("succeeded")) or _l(uncounted.get("failed"))):
        errs.append(invalid_value("status.uncountedTerminatedPods", _go_uncounted(uncounted),
                                  "uncountedTerminatedPods needs to be empty for finished job"))
    if start_changed and old_status.get("startTime") is not None and \
            not as_dict(job.get("spec")).get("suspend"):
        errs.append(required("status.startTime", "startTime cannot be removed for unsuspended job"))
    if (start_changed or done_changed) and start and done and _before(done, start):
        errs.append(invalid_value("status.completionTime", _go_time(done),
                                  "completionTime cannot be set before startTime"))
    if done is not None and old_status.get("completionTime") is not None and done_changed:
        errs.append(invalid_value("status.completionTime", _go_time(done), "completionTime cannot be mutated"))
    if (complete_changed or done_changed) and done is not None and not complete:
        errs.append(invalid_value("status.completionTime", _go_time(done),
                                  "cannot set completionTime when there is no Complete=True condition"))
    if (complete_changed or done_changed) and done is None and complete:
        errs.append(required("status.completionTime", "completionTime is required for Complete jobs"))
    if (complete_changed or failed_changed) and complete and _true(status, "Failed"):
        errs.append(_conditions_error("cannot set Complete=True and Failed=true conditions"))
    if (complete_changed or target_changed) and complete and _true(status, "FailureTarget"):
        errs.append(_conditions_error("cannot set Complete=True and FailureTarget=true conditions"))
    return errs


def _go_time(value: Any) -> Any:
    """A status time as Go prints a metav1.Time in a message (time.Time's String, the server's zone UTC)."""
    when = parse_time(value) if isinstance(value, str) else None
    return GoValue(when.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")) if when is not None else value


def _go_uncounted(uncounted: dict[str, Any]) -> GoValue:
    """uncountedTerminatedPods as Go's %#v prints it."""
    def uids(key: str) -> str:
        raw = uncounted.get(key)
        if not isinstance(raw, list):
            return "[]types.UID(nil)"
        return "[]types.UID{" + ", ".join('"' + str(u).replace('"', '\\"') + '"' for u in raw) + "}"
    return GoValue(f"batch.UncountedTerminatedPods{{Succeeded:{uids('succeeded')}, Failed:{uids('failed')}}}")


def _before(a: Any, b: Any) -> bool:
    first, second = parse_time(a), parse_time(b)
    return first is not None and second is not None and first < second


def _success_criteria_errors(job: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    status, old_status = as_dict(job.get("status")), as_dict(old.get("status"))
    met, complete = _true(status, "SuccessCriteriaMet"), _true(status, "Complete")
    errs: list[FieldError] = []
    if met and _true(status, "Failed"):
        errs.append(_conditions_error("cannot set SuccessCriteriaMet=True and Failed=true conditions"))
    if met and _true(status, "FailureTarget"):
        errs.append(_conditions_error("cannot set SuccessCriteriaMet=True and FailureTarget=true conditions"))
    if as_dict(job.get("spec")).get("successPolicy") is not None and not met and complete:
        errs.append(_conditions_error("cannot set Complete=True for Job with SuccessPolicy unless "
                                      "SuccessCriteriaMet=True"))
    if _true(old_status, "SuccessCriteriaMet") and not met:
        errs.append(_conditions_error("cannot disable the SuccessCriteriaMet=True condition"))
    if _true(old_status, "Complete") and not _true(old_status, "SuccessCriteriaMet") and met:
        errs.append(_conditions_error("cannot set SuccessCriteriaMet=True for Job already has Complete=true "
                                      "conditions"))
    return errs


def _transition_errors(job: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """Counters that only grow and terminal conditions that stay."""
    spec, status, old_status = as_dict(job.get("spec")), as_dict(job.get("status")), as_dict(old.get("status"))
    errs: list[FieldError] = []
    for kind in ("Failed", "Complete", "FailureTarget"):
        if _true(old_status, kind) and not _true(status, kind):
            errs.append(_conditions_error(f"cannot disable the terminal {kind}=True condition"))
    failed = _int(status.get("failed")) or 0
    if failed < (_int(old_status.get("failed")) or 0):
        errs.append(invalid_value("status.failed", failed, "cannot decrease the failed counter"))
    # An Indexed Job with completions == parallelism may be scaled down, and lose successes with it.
    scalable = spec.get("completionMode") == "Indexed" and spec.get("completions") == spec.get("parallelism")
    if not scalable and (_int(status.get("succeeded")) or 0) < (_int(old_status.get("succeeded")) or 0):
        errs.append(invalid_value("status.succeeded", _int(status.get("succeeded")) or 0,
                                  "cannot decrease the succeeded counter"))
    return errs


def validate_job_status_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """ValidateJobStatusUpdate with the options kube-apiserver 1.32 sets (JobManagedBy on): the counts, the
    uncounted UIDs, the index strings, the finished-Job rules and the allowed transitions."""
    status = as_dict(new.get("status"))
    errs = _status_counts(status) + _uncounted_errors(status)
    errs += _finished_errors(new, old)
    errs += _index_errors(new, as_dict(old.get("status")))
    errs += _success_criteria_errors(new, old)
    return errs + _transition_errors(new, old)


def every_interval(text: str) -> float | None:
    """The interval of robfig's `@every <duration>` (h, m, s units), at least one second; None if not one."""
    if not text.startswith("@every "):
        return None
    rest, total, number = text[len("@every "):].strip(), 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for ch in rest:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number and number.count(".") <= 1 and number != ".":
            total += float(number) * units[ch]
            number = ""
        else:
            return None
    if number or not rest:
        return None
    return max(1.0, float(int(total)))  # robfig rounds down to whole seconds, and to at least one


def schedule_errors(schedule: str) -> list[str]:
    """Why robfig/cron's standard parser (as Kubernetes uses it) refuses `schedule`; empty when it parses."""
    text = schedule.strip()
    if not text:
        return ["empty spec string"]
    if text.startswith(("TZ=", "CRON_TZ=")):
        zone, _, text = text.partition(" ")
        try:
            zoneinfo.ZoneInfo(zone.split("=", 1)[1])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return [f"provided bad location {zone.split('=', 1)[1]}: unknown time zone {zone.split('=', 1)[1]}"]
        text = text.strip()
    if text.startswith("@"):
        if text in _DESCRIPTORS:
            return []
        if text.startswith("@every "):
            if every_interval(text) is None:
                return [f'failed to parse duration {text}: time: invalid duration "{text[len("@every "):]}"']
            return []
        return [f"unrecognized descriptor: {text}"]
    fields = text.split()
    if len(fields) != 5:
        return [f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"]
    try:
        croniter(text)
    except (CroniterError, ValueError) as e:
        return [str(e)]
    return []


def validate_time_zone(tz: Any) -> list[FieldError]:
    if tz is None:
        return []
    path = "spec.timeZone"
    if not isinstance(tz, str) or not tz:
        return [invalid_value(path, tz, "timeZone must be nil or non-empty string")]
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            return [invalid_value(path, tz, f"unknown time zone {tz}")]
    if tz.lower() == "local":
        return [invalid_value(path, tz, "timeZone must be an explicit time zone as defined in "
                                        "https://www.iana.org/time-zones")]
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [invalid_value(path, tz, f"unknown time zone {tz}")]
    return []


def _validate_job_template(spec: dict[str, Any]) -> list[FieldError]:
    jspec = as_dict(as_dict(spec.get("jobTemplate")).get("spec"))
    path = "spec.jobTemplate.spec"
    errs = validate_job_spec(jspec, path)
    if jspec.get("selector") is not None:
        errs.append(invalid_value(f"{path}.selector", format_selector(as_dict(jspec.get("selector"))),
                                  "`selector` will be auto-generated"))
    if jspec.get("manualSelector") is True:
        errs.append(not_supported(f"{path}.manualSelector", True, ["nil", "false"]))
    return errs


def validate_cronjob(cj: dict[str, Any], allow_tz_in_schedule: bool = False) -> list[FieldError]:
    spec = as_dict(cj.get("spec"))
    errs: list[FieldError] = []
    schedule = spec.get("schedule")
    if not schedule:
        errs.append(required("spec.schedule"))
    elif not isinstance(schedule, str):
        errs.append(invalid_value("spec.schedule", schedule, "must be a string"))
    else:
        errs += [invalid_value("spec.schedule", schedule, m) for m in schedule_errors(schedule)]
        if "TZ" in schedule and not allow_tz_in_schedule:
            errs.append(invalid_value("spec.schedule", schedule,
                                      "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
        elif "TZ" in schedule and spec.get("timeZone") is not None:
            errs.append(invalid_value("spec.schedule", schedule,
                                      "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
    errs += validate_time_zone(spec.get("timeZone"))
    errs += _nonnegative(spec, "startingDeadlineSeconds", "spec")
    policy = spec.get("concurrencyPolicy")
    if not policy:
        errs.append(required("spec.concurrencyPolicy"))
    elif policy not in _CONCURRENCY:
        errs.append(not_supported("spec.concurrencyPolicy", policy, _CONCURRENCY))
    errs += _validate_job_template(spec)
    errs += _nonnegative(spec, "successfulJobsHistoryLimit", "spec")
    errs += _nonnegative(spec, "failedJobsHistoryLimit", "spec")
    return errs


# ----------------------------------------------------------------------------------- schedule


def cron_schedule(schedule: str, tz: str | None) -> tuple[str, zoneinfo.ZoneInfo]:
    """The five-field expression and the zone a (valid) schedule runs in: `TZ=` in the schedule, else the
    timeZone field, else UTC (kube-controller-manager's local zone; kubesat's is UTC)."""
    text = schedule.strip()
    zone = tz or "UTC"
    if text.startswith(("TZ=", "CRON_TZ=")):
        prefix, _, text = text.partition(" ")
        zone = prefix.split("=", 1)[1]
        text = text.strip()
    return text, zoneinfo.ZoneInfo(zone)


# ----------------------------------------------------------------------------------- table


def format_labels(labels: dict[str, Any]) -> str:
    """labels.FormatLabels: k=v pairs sorted by key, `<none>` when empty."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def format_selector(selector: dict[str, Any]) -> str:
    """metav1.FormatLabelSelector: matchLabels then matchExpressions, `<none>` for an empty selector."""
    parts = [f"{k}={v}" for k, v in sorted(as_dict(selector.get("matchLabels")).items())]
    for e in _l(selector.get("matchExpressions")):
        e = as_dict(e)
        key, op, values = e.get("key", ""), e.get("operator", ""), ",".join(str(v) for v in _l(e.get("values")))
        if op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            parts.append(f"{key} {str(op).lower()} ({values})")
    return ",".join(parts) or "<none>"


def _container_cells(pod_spec: dict[str, Any]) -> tuple[str, str]:
    containers = [as_dict(c) for c in _l(pod_spec.get("containers"))]
    return ",".join(str(c.get("name", "")) for c in containers), ",".join(str(c.get("image", "")) for c in containers)


def _has_condition(status: dict[str, Any], kind: str) -> bool:
    return any(as_dict(c).get("type") == kind and as_dict(c).get("status") == "True"
               for c in _l(status.get("conditions")))


def job_status_word(job: dict[str, Any]) -> str:
    status = as_dict(job.get("status"))
    if _has_condition(status, "Complete"):
        return "Complete"
    if _has_condition(status, "Failed"):
        return "Failed"
    if as_dict(job.get("metadata")).get("deletionTimestamp"):
        return "Terminating"
    if _has_condition(status, "Suspended"):
        return "Suspended"
    if _has_condition(status, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _completions_cell(spec: dict[str, Any], succeeded: int) -> str:
    completions = _int(spec.get("completions"))
    if completions is not None:
        return f"{succeeded}/{completions}"
    parallelism = _int(spec.get("parallelism")) or 0
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _duration_cell(status: dict[str, Any], now: datetime) -> str:
    start = parse_time(status.get("startTime"))
    if start is None:
        return ""
    end = parse_time(status.get("completionTime")) or now
    return human_duration((end - start).total_seconds())


def _since(ts: Any, now: datetime) -> str:
    when = parse_time(ts)
    return "<unknown>" if when is None else human_duration((now - when).total_seconds())


# ----------------------------------------------------------------------------------- strategies


class JobStrategy(Strategy):
    has_status = True
    has_generation = True
    default_propagation = "Orphan"  # batch/v1 keeps the pre-GC default: a Job deleted plainly leaves its pods

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = obj["spec"] = {}
        apply_job_spec_defaults(spec)
        if spec.get("manualSelector") is None:
            spec["manualSelector"] = False
        if not spec["manualSelector"]:
            generate_selector(obj)
        _default_job_labels(obj)
        obj["status"] = {}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        spec = new.get("spec")
        if not isinstance(spec, dict):
            spec = new["spec"] = {}
        old_spec = as_dict(old.get("spec"))
        apply_job_spec_defaults(spec)
        if spec.get("manualSelector") is None:
            spec["manualSelector"] = old_spec.get("manualSelector", False)
        if spec.get("selector") is None and old_spec.get("selector") is not None:
            spec["selector"] = copy.deepcopy(old_spec["selector"])
        _default_job_labels(new)
        new["status"] = copy.deepcopy(old.get("status") or {})

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_job(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        if new.get("spec") == old.get("spec"):  # a status write: the spec was validated before
            return validate_job_status_update(new, old) if new.get("status") != old.get("status") else []
        return validate_job_update(new, old) + _status_counts(as_dict(new.get("status")))

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Status", "Status of the job."),
            column("Completions", field_doc(_JOB_STATUS, "succeeded")),
            column("Duration", "Time required to complete the job."),
            age_column(),
            column("Containers", "Names of each container in the template.", priority=1),
            column("Images", "Images referenced by each container in the template.", priority=1),
            column("Selector", field_doc(_JOB_SPEC, "selector"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        names, images = _container_cells(as_dict(as_dict(spec.get("template")).get("spec")))
        succeeded = _int(status.get("succeeded")) or 0
        return [as_dict(obj.get("metadata")).get("name", ""), job_status_word(obj), _completions_cell(spec, succeeded),
                _duration_cell(status, now), age(obj, now), names, images,
                format_selector(as_dict(spec.get("selector")))]

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        if field == "status.successful":
            return str(_int(as_dict(obj.get("status")).get("succeeded")) or 0)
        return super().field_value(obj, field)


class CronJobStrategy(Strategy):
    has_status = True
    has_generation = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        apply_cronjob_defaults(obj)
        obj["status"] = {}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        apply_cronjob_defaults(new)
        new["status"] = copy.deepcopy(old.get("status") or {})

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs = validate_cronjob(obj)
        name = str(as_dict(obj.get("metadata")).get("name") or "")
        if len(name) > MAX_CRONJOB_NAME:
            errs.insert(0, invalid_value("metadata.name", name, f"must be no more than {MAX_CRONJOB_NAME} characters"))
        return errs

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        if new.get("spec") == old.get("spec"):
            return []
        # A schedule that already carried TZ= (from before the timeZone field) may keep it.
        old_schedule = str(as_dict(old.get("spec")).get("schedule") or "")
        return validate_cronjob(new, allow_tz_in_schedule="TZ" in old_schedule)

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Schedule", field_doc(_CJ_SPEC, "schedule")),
            column("Timezone", field_doc(_CJ_SPEC, "timeZone")),
            column("Suspend", field_doc(_CJ_SPEC, "suspend"), type_="boolean"),
            column("Active", field_doc(_CJ_STATUS, "active"), type_="integer"),
            column("Last Schedule", field_doc(_CJ_STATUS, "lastScheduleTime")),
            age_column(),
            column("Containers", "Names of each container in the template.", priority=1),
            column("Images", "Images referenced by each container in the template.", priority=1),
            column("Selector", field_doc(_JOB_SPEC, "selector"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        jspec = as_dict(as_dict(spec.get("jobTemplate")).get("spec"))
        names, images = _container_cells(as_dict(as_dict(jspec.get("template")).get("spec")))
        suspend = spec.get("suspend")
        last = status.get("lastScheduleTime")
        return [as_dict(obj.get("metadata")).get("name", ""), spec.get("schedule", ""),
                spec.get("timeZone") or "<none>",
                "<unset>" if suspend is None else ("True" if suspend else "False"), len(_l(status.get("active"))),
                _since(last, now) if last else "<none>", age(obj, now), names, images,
                format_selector(as_dict(jspec.get("selector")))]

