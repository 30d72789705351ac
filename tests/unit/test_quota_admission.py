"""LimitRanger and ResourceQuota admission decisions, and how objects are counted against quotas."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from kubesat import errors
from kubesat.apimachinery.quantity import format_quantity
from kubesat.auth.quota import LIMIT_RANGER_ANNOTATION, admit_pod_limits, charge_quotas
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


def _quota(hard: dict[str, str], used: dict[str, str] | None, name: str = "q") -> dict[str, Any]:
    """A quota as the controller leaves it: status.hard its spec's, status.used counted (None: no status yet)."""
    quota: dict[str, Any] = {"metadata": {"name": name}, "spec": {"hard": hard}}
    if used is not None:
        quota["status"] = {"hard": hard, "used": used}
    return quota


def test_quota_refuses_what_would_exceed_it() -> None:
    hard = {"pods": "2", "requests.cpu": "1"}
    pod = _pod(_c("a", requests={"cpu": "600m"}))
    assert charge_quotas("pods", "", pod, [_quota(hard, {"pods": "1", "requests.cpu": "300m"})]) == \
        {"q": {"pods": "2", "requests.cpu": "900m"}}
    with pytest.raises(errors.StatusError) as e:
        charge_quotas("pods", "", pod, [_quota(hard, {"pods": "2", "requests.cpu": "500m"})])
    assert e.value.message == ('pods "p" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=600m, '
                               "used: pods=2,requests.cpu=500m, limited: pods=2,requests.cpu=1")


def test_quota_on_cpu_makes_every_container_say_it() -> None:
    quota = _quota({"limits.cpu": "4", "requests.memory": "1Gi"}, {})
    pod = _pod(_c("a", requests={"memory": "1Mi"}), _c("b"))
    with pytest.raises(errors.StatusError) as e:
        charge_quotas("pods", "", pod, [quota])
    assert e.value.message == ('pods "p" is forbidden: failed quota: q: must specify limits.cpu for: a,b; '
                               "requests.memory for: b")


def test_charge_keeps_the_other_amounts_and_formats_bytes_in_binary() -> None:
    quota = _quota({"pods": "5", "requests.memory": "1Gi", "count/configmaps": "3"},
                   {"pods": "1", "requests.memory": "256Mi", "count/configmaps": "2"})
    pod = _pod(_c("a", requests={"memory": "256Mi"}))
    assert charge_quotas("pods", "", pod, [quota]) == \
        {"q": {"pods": "2", "requests.memory": "512Mi", "count/configmaps": "2"}}
    # A ConfigMap charges only its count; at the limit it is refused with the usage the status records.
    assert charge_quotas("configmaps", "", {"metadata": {"name": "c"}}, [quota])["q"]["count/configmaps"] == "3"
    full = _quota({"count/configmaps": "2"}, {"count/configmaps": "2"})
    with pytest.raises(errors.StatusError) as e:
        charge_quotas("configmaps", "", {"metadata": {"name": "c"}}, [full])
    assert e.value.code == 403 and e.value.message == (
        'configmaps "c" is forbidden: exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=2, '
        "limited: count/configmaps=2")


def test_a_quota_without_status_limits_nothing_yet() -> None:
    """Kubernetes reads status.hard: a quota the controller has not synced restricts no resource."""
    assert charge_quotas("pods", "", _pod(_c("a")), [_quota({"pods": "0"}, None)]) == {}


def test_status_without_a_usage_is_status_unknown() -> None:
    quota = _quota({"pods": "3", "count/pods": "3", "configmaps": "1"}, {"pods": "1", "configmaps": "0"})
    with pytest.raises(errors.StatusError) as e:
        charge_quotas("pods", "", _pod(_c("a")), [quota])
    assert e.value.code == 403
    assert e.value.message == 'pods "p" is forbidden: status unknown for quota: q, resources: count/pods,pods'
    # A usage that cannot be read is no usage either.
    with pytest.raises(errors.StatusError):
        charge_quotas("pods", "", _pod(_c("a")), [_quota({"pods": "3"}, {"pods": "lots"})])
    # Other kinds are not held back by the pods' missing usage.
    assert charge_quotas("configmaps", "", {"metadata": {"name": "c"}}, [quota]) == \
        {"q": {"pods": "1", "configmaps": "1"}}


def test_every_quota_is_checked_before_any_is_charged() -> None:
    roomy = _quota({"pods": "10"}, {"pods": "0"}, "a-roomy")
    full = _quota({"pods": "1"}, {"pods": "1"}, "b-full")
    with pytest.raises(errors.StatusError) as e:
        charge_quotas("pods", "", _pod(_c("a")), [full, roomy])
    assert "exceeded quota: b-full" in e.value.message
    assert charge_quotas("pods", "", _pod(_c("a")), [roomy]) == {"a-roomy": {"pods": "1"}}


def test_scoped_quota_charges_only_the_pods_it_selects() -> None:
    quota = _quota({"pods": "1"}, {"pods": "1"})
    quota["spec"]["scopes"] = ["Terminating"]
    assert charge_quotas("pods", "", _pod(_c("a")), [quota]) == {}
    deadlined = _pod(_c("a"))
    deadlined["spec"]["activeDeadlineSeconds"] = 30
    with pytest.raises(errors.StatusError):
        charge_quotas("pods", "", deadlined, [quota])


def test_a_finished_pod_charges_nothing() -> None:
    pod = {**_pod(_c("a")), "status": {"phase": "Succeeded"}}
    assert charge_quotas("pods", "", pod, [_quota({"pods": "1"}, {"pods": "1"})]) == {}
