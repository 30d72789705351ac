"""Which pods a scoped ResourceQuota counts, and the scope rules of its validation."""

from __future__ import annotations

from kubesat.registry.quota import quota_matches, validate_scopes


def _quota(scopes: list[str] | None = None, exprs: list[dict] | None = None, hard: dict | None = None) -> dict:
    spec: dict = {"hard": hard or {"pods": "5"}}
    if scopes is not None:
        spec["scopes"] = scopes
    if exprs is not None:
        spec["scopeSelector"] = {"matchExpressions": exprs}
    return {"metadata": {"name": "q"}, "spec": spec}


def _pod(**spec: object) -> dict:
    return {"spec": {"containers": [{"name": "c"}], **spec}}


BURSTABLE = [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]


def test_unscoped_counts_everything_and_scoped_only_pods() -> None:
    assert quota_matches(_quota(), "configmaps", "", {})
    assert not quota_matches(_quota(["BestEffort"]), "configmaps", "", {})
    assert not quota_matches(_quota(["BestEffort"]), "deployments", "apps", {})


def test_terminating_and_best_effort() -> None:
    assert quota_matches(_quota(["Terminating"]), "pods", "", _pod(activeDeadlineSeconds=0))
    assert not quota_matches(_quota(["Terminating"]), "pods", "", _pod())
    assert quota_matches(_quota(["NotTerminating"]), "pods", "", _pod())
    assert quota_matches(_quota(["BestEffort"]), "pods", "", _pod())
    assert not quota_matches(_quota(["BestEffort"]), "pods", "", _pod(containers=BURSTABLE))
    assert quota_matches(_quota(["NotBestEffort", "NotTerminating"]), "pods", "", _pod(containers=BURSTABLE))
    assert not quota_matches(_quota(["NotBestEffort", "Terminating"]), "pods", "", _pod(containers=BURSTABLE))


def test_priority_class_selector() -> None:
    high = _pod(priorityClassName="high")
    none = _pod()
    q_in = _quota(exprs=[{"scopeName": "PriorityClass", "operator": "In", "values": ["high", "mid"]}])
    q_not = _quota(exprs=[{"scopeName": "PriorityClass", "operator": "NotIn", "values": ["high"]}])
    q_any = _quota(exprs=[{"scopeName": "PriorityClass", "operator": "Exists"}])
    assert quota_matches(q_in, "pods", "", high) and not quota_matches(q_in, "pods", "", none)
    assert not quota_matches(q_not, "pods", "", high) and quota_matches(q_not, "pods", "", none)
    assert quota_matches(q_any, "pods", "", high) and not quota_matches(q_any, "pods", "", none)


def test_cross_namespace_pod_affinity() -> None:
    q = _quota(["CrossNamespacePodAffinity"])
    term = {"labelSelector": {}, "topologyKey": "k", "namespaces": ["other"]}
    assert quota_matches(q, "pods", "", _pod(affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term]}}))
    weighted = {"weight": 1, "podAffinityTerm": {"topologyKey": "k", "namespaceSelector": {}}}
    assert quota_matches(q, "pods", "", _pod(affinity={"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [weighted]}}))
    assert not quota_matches(q, "pods", "", _pod(affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "k"}]}}))


def test_validation_messages() -> None:
    def details(q: dict) -> list[tuple[str, str]]:
        return [(e.field, e.detail) for e in validate_scopes(q)]

    assert details(_quota(["BestEffort"], hard={"pods": "1", "count/configmaps": "1"})) == []  # not standard
    assert details(_quota(["BestEffort"], hard={"requests.cpu": "1"})) == [
        ("spec.scopes", "unsupported scope applied to resource")]
    assert details(_quota(exprs=[{"scopeName": "PriorityClass", "operator": "Exists", "values": ["a"]}])) == [
        ("spec.scopeSelector.matchExpressions.values",
         "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector")]
    assert details(_quota(exprs=[{"scopeName": "PriorityClass", "operator": "Near", "values": ["a"]}])) == [
        ("spec.scopeSelector.matchExpressions.operator", "not a valid selector operator")]
    assert ("spec.scopeSelector.matchExpressions", "conflicting scopes") in details(_quota(exprs=[
        {"scopeName": "BestEffort", "operator": "Exists"}, {"scopeName": "NotBestEffort", "operator": "Exists"}]))
    assert details(_quota([1, None], hard={"pods": "1"}))[0] == ("spec.scopes", "unsupported scope")  # hostile
