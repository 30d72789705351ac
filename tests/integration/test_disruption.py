"""PodDisruptionBudgets against a real server and its local node: the disruption controller's status,
`kubectl get pdb`, the eviction subresource's answers, and a `kubectl drain` that a budget blocks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .conftest import Server, start_server, wait_for

pytestmark = pytest.mark.integration

NODE = "drainee"
NS = "default"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("pdb") / "data", node=True,
                       extra=["--node-name", NODE, "--node-runtime", "none"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def core(local: Server) -> client.CoreV1Api:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(local.kubeconfig), client_configuration=cfg)
    return client.CoreV1Api(client.ApiClient(cfg))


def _budget(server: Server, name: str) -> dict:
    return json.loads(server.kubectl("get", "pdb", name, "-o", "json").stdout).get("status") or {}


def _ready(server: Server, pod: str) -> bool:
    obj = json.loads(server.kubectl("get", "pod", pod, "-o", "json", check=False).stdout or "{}")
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _evict(core: client.CoreV1Api, pod: str) -> ApiException | None:
    try:
        core.create_namespaced_pod_eviction(pod, NS, {"apiVersion": "policy/v1", "kind": "Eviction",
                                                      "metadata": {"name": pod, "namespace": NS}})
    except ApiException as e:
        return e
    return None


def test_a_budget_blocks_a_drain_and_counts_evictions(local: Server, core: client.CoreV1Api) -> None:
    wait_for(lambda: local.kubectl("get", "node", NODE, check=False).returncode == 0, 30, "the local node")
    for pod in ("db-0", "db-1"):
        local.kubectl("run", pod, "--image=registry.example/db:1", "--labels=app=db")
    for pod in ("db-0", "db-1"):
        wait_for(lambda pod=pod: _ready(local, pod), 30, f"{pod} ready")
    local.kubectl("create", "pdb", "db", "--selector=app=db", "--min-available=2")
    status = wait_for(lambda: (s := _budget(local, "db")).get("currentHealthy") == 2 and s, 15, "budget status")
    assert (status["expectedPods"], status["desiredHealthy"], status["disruptionsAllowed"]) == (2, 2, 0)
    assert status["conditions"][0]["reason"] == "InsufficientPods"
    row = local.kubectl("get", "pdb", "db").stdout.splitlines()
    assert row[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert row[1].split()[:4] == ["db", "2", "N/A", "0"]

    # The drain cordons the node, then is refused eviction until it gives up.
    out = local.kubectl("drain", NODE, "--force", "--grace-period=0", "--timeout=3s", check=False)
    assert out.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in out.stderr, out.stderr
    node = json.loads(local.kubectl("get", "node", NODE, "-o", "json").stdout)
    assert node["spec"].get("unschedulable") is True
    assert local.kubectl("get", "pod", "db-0", check=False).returncode == 0

    err = _evict(core, "db-0")
    assert err is not None and err.status == 429
    cause = json.loads(err.body)["details"]["causes"][0]
    assert cause == {"reason": "DisruptionBudget",
                     "message": "The disruption budget db needs 2 healthy pods and has 2 currently"}

    # One disruption allowed: the first eviction takes it, the second is refused.
    local.kubectl("patch", "pdb", "db", "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
    wait_for(lambda: _budget(local, "db").get("disruptionsAllowed") == 1, 15, "one disruption allowed")
    assert _evict(core, "db-0") is None
    err = _evict(core, "db-1")
    assert err is not None and err.status == 429
    wait_for(lambda: local.kubectl("get", "pod", "db-0", check=False).returncode != 0, 30, "db-0 gone")
    local.kubectl("uncordon", NODE)


def test_eviction_and_budgets_refuse_bad_input(local: Server, core: client.CoreV1Api) -> None:
    local.kubectl("run", "lonely", "--image=registry.example/x:1")
    try:
        core.create_namespaced_pod_eviction("lonely", NS, {"apiVersion": "policy/v1", "kind": "Eviction",
                                                           "metadata": {"name": "other"}})
        raise AssertionError("a mismatched name was accepted")
    except ApiException as e:
        assert e.status == 400 and "name in URL does not match name in Eviction object" in e.body
    err = _evict(core, "missing")
    assert err is not None and err.status == 404
    out = local.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "both"},
        "spec": {"minAvailable": 1, "maxUnavailable": "150%", "selector": {"matchLabels": {"a": "b"}}}}))
    assert out.returncode != 0
    assert "minAvailable and maxUnavailable cannot be both set" in out.stderr
    assert 'spec.maxUnavailable: Invalid value: "150%": must not be greater than 100%' in out.stderr
    # A pod no budget selects is evicted outright, even with the largest grace period there is.
    core.create_namespaced_pod_eviction("lonely", NS, {"apiVersion": "policy/v1", "kind": "Eviction",
                                                       "metadata": {"name": "lonely"},
                                                       "deleteOptions": {"gracePeriodSeconds": 2**63 - 1}})
