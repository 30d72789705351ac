"""When a pod on a node with NoExecute taints is to be deleted: kube-controller-manager's rules."""

from __future__ import annotations

from kubesat.controllers.tainteviction import FOREVER, eviction_delay, no_execute_taints

UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
DEDICATED = {"key": "dedicated", "value": "db", "effect": "NoExecute"}


def test_an_untolerated_taint_means_now() -> None:
    assert eviction_delay([UNREACHABLE], []) == 0
    assert eviction_delay([UNREACHABLE, DEDICATED],
                          [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]) == 0
    assert eviction_delay([DEDICATED], [{"key": "dedicated", "operator": "Equal", "value": "web"}]) == 0


def test_the_shortest_toleration_used_decides() -> None:
    tols = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
            {"key": "dedicated", "operator": "Equal", "value": "db", "tolerationSeconds": 60},
            {"key": "other", "operator": "Exists", "tolerationSeconds": 1}]  # not used: no such taint
    assert eviction_delay([UNREACHABLE, DEDICATED], tols) == 60
    assert eviction_delay([UNREACHABLE], tols) == 300


def test_no_seconds_is_for_ever_and_zero_or_less_is_now() -> None:
    assert eviction_delay([UNREACHABLE], [{"operator": "Exists"}]) == FOREVER
    assert eviction_delay([UNREACHABLE], [{"operator": "Exists", "tolerationSeconds": 0}]) == 0
    assert eviction_delay([UNREACHABLE], [{"operator": "Exists", "tolerationSeconds": -5}]) == 0
    assert eviction_delay([], []) == FOREVER


def test_only_no_execute_taints_count() -> None:
    node = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, DEDICATED, "junk",
                                {"key": "b", "effect": "PreferNoSchedule"}]}}
    assert no_execute_taints(node) == [DEDICATED]
    assert no_execute_taints({"spec": {"taints": "junk"}}) == []


def test_hostile_toleration_values_are_not_seconds() -> None:
    assert eviction_delay([UNREACHABLE], [{"operator": "Exists", "tolerationSeconds": True}]) == FOREVER
    assert eviction_delay([UNREACHABLE], [{"operator": "Exists", "tolerationSeconds": "10"}]) == FOREVER
    assert eviction_delay([UNREACHABLE], [{"operator": "Exists", "tolerationSeconds": 7.5}]) == FOREVER
