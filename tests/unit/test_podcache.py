"""The controllers' pod cache indexed by controller, the selector read once for many objects, and the cached
timestamp parsing they rely on."""

from __future__ import annotations

from typing import Any

from kubesat.controllers.podcache import PodCache
from kubesat.controllers.workload import claim, matcher, parse_time, selector_matches


def pod(name: str, owner: str | None = None, ns: str = "ns", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {"app": "web"}}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                    "uid": owner, "controller": True}]
    return {"metadata": meta}


def names(pods: list[dict[str, Any]]) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods)


def test_candidates_are_the_owners_pods_and_the_namespaces_orphans_only() -> None:
    cache = PodCache()
    cache.fill([pod("a1", "a"), pod("a2", "a"), pod("b1", "b"), pod("o1"), pod("x1", "a", ns="other")])
    assert names(cache.candidates("ns", "a")) == ["a1", "a2", "o1"]
    assert names(cache.candidates("ns", "b")) == ["b1", "o1"]
    assert names(cache.candidates("ns", "c")) == ["o1"]
    assert names(cache.candidates("other", "a")) == ["x1"]


def test_candidates_follow_a_pod_whose_controller_changes_and_its_removal() -> None:
    cache = PodCache()
    cache.fill([pod("p")])
    cache.put(pod("p", "a"))  # adopted
    assert names(cache.candidates("ns", "a")) == ["p"] and names(cache.candidates("ns", "b")) == []
    cache.put(pod("p", "b"))
    assert names(cache.candidates("ns", "a")) == [] and names(cache.candidates("ns", "b")) == ["p"]
    cache.remove("ns", "p")
    assert cache.candidates("ns", "b") == [] and cache.pods("ns") == []


def test_a_cached_pod_changed_in_place_is_still_indexed_once() -> None:
    cache = PodCache()
    orphan = pod("p")
    cache.fill([orphan])
    # A controller adopting the pod changes the cached dict itself before the watch shows the update.
    orphan["metadata"]["ownerReferences"] = pod("p", "a")["metadata"]["ownerReferences"]
    assert names(cache.candidates("ns", "a")) == ["p"]
    cache.put(pod("p", "a"))
    assert names(cache.candidates("ns", "a")) == ["p"] and names(cache.candidates("ns", "b")) == []


def test_claim_over_candidates_equals_claim_over_the_namespace() -> None:
    cache = PodCache()
    cache.fill([pod("a1", "a"), pod("b1", "b"), pod("o1"), pod("o2", labels={"app": "db"}),
                pod("a2", "a", labels={"app": "db"})])
    owner = {"metadata": {"name": "a", "uid": "a"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}
    whole, narrow = claim(owner, cache.pods("ns")), claim(owner, cache.candidates("ns", "a"))
    for part in ("owned", "adopt", "release"):
        assert names(getattr(whole, part)) == names(getattr(narrow, part))
    assert names(narrow.owned) == ["a1"] and names(narrow.adopt) == ["o1"] and names(narrow.release) == ["a2"]


def test_matcher_reads_a_selector_as_selector_matches_does() -> None:
    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                                "values": ["db"]}]}
    for labels in ({"app": "web"}, {"app": "web", "tier": "db"}, {"app": "db"}, None):
        assert matcher(sel)(labels) == selector_matches(sel, labels)
    assert matcher(sel)({"app": "web"}) and not matcher(sel)({"app": "web", "tier": "db"})
    assert not matcher({})({"app": "web"}) and not matcher(None)({})  # an empty selector selects nothing


def test_parse_time_reads_rfc3339_and_refuses_the_rest() -> None:
    assert parse_time("2026-01-02T03:04:05Z") == 1767323045.0
    assert parse_time("2026-01-02T03:04:05.250000Z") == 1767323045.25
    assert parse_time("2026-01-02T03:04:05Z") == 1767323045.0  # the cached answer is the same
    assert parse_time("not a time at all!!!") is None and parse_time(None) is None and parse_time({"a": 1}) is None
