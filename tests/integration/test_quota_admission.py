"""ResourceQuota admission as kube-apiserver's plugin does it, against a real server with the official client:
each create is charged to the quota's status.used (guarded by resourceVersion) before it is stored, so that
racing creates never pass a quota's last unit, and the controller releases what was charged but never stored."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import Server, wait_for

pytestmark = pytest.mark.integration

BURST = 20


def _namespace(api: client.ApiClient, name: str, hard: dict[str, str]) -> client.CoreV1Api:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_resource_quota(name, {"metadata": {"name": "q"}, "spec": {"hard": hard}})
    wait_for(lambda: set(_used(core, name)) == set(hard), what="quota status computed")
    return core


def _used(core: client.CoreV1Api, ns: str) -> dict[str, str]:
    status = core.read_namespaced_resource_quota("q", ns).status
    return dict((status.used if status else None) or {})


def _burst(create: Any) -> tuple[int, list[ApiException]]:
    """Fire BURST creates at once; (how many succeeded, the refusals)."""
    def one(i: int) -> ApiException | None:
        try:
            create(i)
        except ApiException as e:
            return e
        return None

    with ThreadPoolExecutor(BURST) as pool:
        outcomes = list(pool.map(one, range(BURST)))
    refusals = [e for e in outcomes if e is not None]
    return BURST - len(refusals), refusals


@pytest.fixture(scope="module")
def burst_api(api: client.ApiClient) -> client.ApiClient:
    """The admin client with a connection for every thread of a burst."""
    cfg = api.configuration
    cfg.connection_pool_maxsize = BURST
    return client.ApiClient(cfg)


def test_racing_pod_creates_never_pass_the_last_unit(burst_api: client.ApiClient) -> None:
    core = _namespace(burst_api, "quota-race-pods", {"pods": "5"})
    pod = {"metadata": {}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    created, refusals = _burst(lambda i: core.create_namespaced_pod(
        "quota-race-pods", {**pod, "metadata": {"name": f"p{i}"}}))
    assert created == 5, [e.body for e in refusals]
    for e in refusals:
        assert e.status == 403, e.body
        assert "exceeded quota: q, requested: pods=1, used: pods=5, limited: pods=5" in json.loads(e.body)["message"]
    assert len(core.list_namespaced_pod("quota-race-pods").items) == 5
    assert _used(core, "quota-race-pods") == {"pods": "5"}  # charged by admission: no wait for the controller


def test_racing_configmap_creates_never_pass_the_last_unit(burst_api: client.ApiClient) -> None:
    ns = "quota-race-cms"
    core = _namespace(burst_api, ns, {"count/configmaps": "6"})
    wait_for(lambda: _used(core, ns) == {"count/configmaps": "1"}, what="kube-root-ca.crt counted")
    created, refusals = _burst(lambda i: core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm{i}"}}))
    assert created == 5 and {e.status for e in refusals} == {403}
    assert len(core.list_namespaced_config_map(ns).items) == 6
    assert _used(core, ns) == {"count/configmaps": "6"}


def test_status_used_is_charged_at_once_and_a_failed_create_is_released(api: client.ApiClient) -> None:
    ns = "quota-charge"
    core = _namespace(api, ns, {"configmaps": "3"})
    wait_for(lambda: _used(core, ns) == {"configmaps": "1"}, what="kube-root-ca.crt counted")
    core.create_namespaced_config_map(ns, {"metadata": {"name": "one"}})
    assert _used(core, ns) == {"configmaps": "2"}
    # Charged, then refused by the registry (the name is taken): the controller gives the unit back.
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "one"}})
    assert e.value.status == 409
    wait_for(lambda: _used(core, ns) == {"configmaps": "2"}, what="the failed create's charge released")
    # A dry run is checked but not charged.
    core.create_namespaced_config_map(ns, {"metadata": {"name": "two"}}, dry_run="All")
    assert _used(core, ns) == {"configmaps": "2"}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "two"}})
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "three"}}, dry_run="All")
    assert e.value.status == 403 and "exceeded quota: q, requested: configmaps=1, used: configmaps=3, " \
        "limited: configmaps=3" in json.loads(e.value.body)["message"]
    # A delete gives the unit back.
    core.delete_namespaced_config_map("two", ns)
    wait_for(lambda: _used(core, ns) == {"configmaps": "2"}, what="usage after a delete")


def test_a_quota_status_without_usage_is_status_unknown(api: client.ApiClient, server: Server) -> None:
    ns = "quota-unknown"
    core = _namespace(api, ns, {"pods": "3", "requests.cpu": "1"})
    # Its status rewritten by hand, as the controller leaves it alone (it ignores status-only changes).
    core.patch_namespaced_resource_quota_status("q", ns, {"status": {"used": {"requests.cpu": None}}})
    assert _used(core, ns) == {"pods": "0"}
    out = server.kubectl("run", "p", "--image=busybox", "-n", ns, "--overrides", json.dumps({"spec": {
        "containers": [{"name": "p", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]}}),
        check=False)
    assert out.returncode == 1
    assert 'pods "p" is forbidden: status unknown for quota: q, resources: pods,requests.cpu' in out.stderr, \
        out.stderr
    # A change of the spec makes the controller count again.
    core.patch_namespaced_resource_quota("q", ns, {"spec": {"hard": {"pods": "4"}}})
    wait_for(lambda: _used(core, ns) == {"pods": "0", "requests.cpu": "0"}, what="recount after a spec change")
    server.kubectl("run", "p", "--image=busybox", "-n", ns, "--overrides", json.dumps({"spec": {
        "containers": [{"name": "p", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]}}))
    assert _used(core, ns) == {"pods": "1", "requests.cpu": "100m"}
