"""LimitRanger and ResourceQuota admission decisions, and how objects are counted against quotas."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from kubesat import errors
from kubesat.apimachinery.quantity import format_quantity
from kubesat.auth.quota import LIMIT_RANGER_ANNOTATION, admit_pod_limits, admit_quota
from kubesat.registry.quota import apply_limit_range_defaults, object_usage, pod_usage


def _pod(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": list(containers), "initContainers": init or []}}


def _c(name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests:
        res["requests"] = requests
    if limits:
        res["limits"] = limits
    return {"name": name, "resources": res}


def _range(**item: Any) -> dict[str, Any]:
    lr = {"spec": {"limits": [{"type": "Container", **item}]}}
    apply_limit_range_defaults(lr)
    return lr


def test_limit_range_defaults_follow_max_and_default() -> None:
    lr = _range(max={"cpu": "2"}, default={"memory": "1Gi"})
    item = lr["spec"]["limits"][0]
    assert item["default"] == {"memory": "1Gi", "cpu": "2"}
    assert item["defaultRequest"] == {"memory": "1Gi", "cpu": "2"}


def test_limit_ranger_fills_missing_amounts_and_says_so() -> None:
    pod = _pod(_c("app", requests={"cpu": "50m"}))
    admit_pod_limits(pod, [_range(default={"cpu": "500m", "memory": "128Mi"}, defaultRequest={"cpu": "100m"})])
    res = pod["spec"]["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "50m", "memory": "128Mi"}  # what the pod set stays
    assert res["limits"] == {"cpu": "500m", "memory": "128Mi"}
    assert pod["metadata"]["annotations"][LIMIT_RANGER_ANNOTATION] == \
        "LimitRanger plugin set: memory request for container app; cpu, memory limit for container app"


@pytest.mark.parametrize(("item", "container", "message"), [
    ({"max": {"cpu": "1"}}, _c("a", limits={"cpu": "2"}), "maximum cpu usage per Container is 1, but limit is 2"),
    ({"min": {"memory": "64Mi"}}, _c("a", requests={"memory": "32Mi"}, limits={"memory": "1Gi"}),
     "minimum memory usage per Container is 64Mi, but request is 32Mi"),
    ({"maxLimitRequestRatio": {"cpu": "2"}}, _c("a", requests={"cpu": "100m"}, limits={"cpu": "400m"}),
     "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"),
])
def test_limit_ranger_refuses_in_kubernetes_words(item: dict[str, Any], container: dict[str, Any],
                                                  message: str) -> None:
    lr = {"spec": {"limits": [{"type": "Container", **item}]}}
    with pytest.raises(errors.StatusError) as e:
        admit_pod_limits(_pod(container), [lr])
    assert e.value.code == 403
    assert e.value.message == f'pods "p" is forbidden: {message}'


def test_pod_usage_sums_containers_and_takes_the_largest_init_container() -> None:
    pod = _pod(_c("a", requests={"cpu": "100m"}), _c("b", requests={"cpu": "200m", "memory": "1Gi"}),
               init=[_c("i", requests={"cpu": "1"})])
    usage = pod_usage(pod)
    assert usage["requests.cpu"] == Decimal(1) and usage["cpu"] == Decimal(1)
    assert format_quantity(usage["requests.memory"], binary=True) == "1Gi"
    assert usage["pods"] == 1
    assert pod_usage({**pod, "status": {"phase": "Succeeded"}}) == {}


def test_object_counts_use_short_and_count_names() -> None:
    assert object_usage("configmaps", "", {}) == {"count/configmaps": 1, "configmaps": 1}
    assert object_usage("deployments", "apps", {}) == {"count/deployments.apps": 1}
    lb = object_usage("services", "", {"spec": {"type": "LoadBalancer", "ports": [{}, {}]}})
    assert lb["services.loadbalancers"] == 1 and lb["services.nodeports"] == 2


def test_quota_refuses_what_would_exceed_it() -> None:
    quota = {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1"}}}
    pod = _pod(_c("a", requests={"cpu": "600m"}))
    admit_quota("pods", "", pod, [quota], {"q": {"pods": Decimal(1), "requests.cpu": Decimal("0.3")}})
    with pytest.raises(errors.StatusError) as e:
        admit_quota("pods", "", pod, [quota], {"q": {"pods": Decimal(2), "requests.cpu": Decimal("0.5")}})
    assert e.value.message == ('pods "p" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=600m, '
                               "used: pods=2,requests.cpu=500m, limited: pods=2,requests.cpu=1")


def test_quota_on_cpu_makes_every_container_say_it() -> None:
    quota = {"metadata": {"name": "q"}, "spec": {"hard": {"limits.cpu": "4", "requests.memory": "1Gi"}}}
    pod = _pod(_c("a", requests={"memory": "1Mi"}), _c("b"))
    with pytest.raises(errors.StatusError) as e:
        admit_quota("pods", "", pod, [quota], {"q": {}})
    assert e.value.message == ('pods "p" is forbidden: failed quota: q: must specify limits.cpu for: a,b; '
                               "requests.memory for: b")
