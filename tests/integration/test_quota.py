"""LimitRanges and ResourceQuotas through kubectl against a real server: defaults filled in at admission,
pods refused past a range or a quota in Kubernetes' words, and the quota's used amounts kept current."""

from __future__ import annotations

import json

import pytest

from .conftest import Server, wait_for

pytestmark = pytest.mark.integration

NS = "quota-test"
MANIFESTS = f"""
apiVersion: v1
kind: LimitRange
metadata: {{name: limits, namespace: {NS}}}
spec:
  limits:
  - type: Container
    max: {{cpu: "1"}}
    defaultRequest: {{cpu: 100m, memory: 64Mi}}
    default: {{memory: 128Mi}}
---
apiVersion: v1
kind: ResourceQuota
metadata: {{name: compute, namespace: {NS}}}
spec:
  hard: {{pods: "2", requests.cpu: "1", limits.memory: 1Gi, count/configmaps: "3"}}
"""


def _used(server: Server) -> dict[str, str]:
    quota = json.loads(server.kubectl("get", "quota", "compute", "-n", NS, "-o", "json").stdout)
    return (quota.get("status") or {}).get("used") or {}


def test_limit_ranges_and_quotas_are_enforced(server: Server) -> None:
    server.kubectl("create", "namespace", NS)
    server.kubectl("apply", "-f", "-", input=MANIFESTS)
    # kube-root-ca.crt is the namespace's first ConfigMap.
    wait_for(lambda: _used(server).get("pods") == "0" and _used(server).get("count/configmaps") == "1",
             what="quota status computed")

    server.kubectl("run", "a", "--image=registry.example/a:1", "-n", NS)
    pod = json.loads(server.kubectl("get", "pod", "a", "-n", NS, "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == \
        "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a"

    overrides = json.dumps({"spec": {"containers": [
        {"name": "big", "image": "x", "resources": {"limits": {"cpu": "2"}}}]}})
    out = server.kubectl("run", "big", "--image=registry.example/a:1", "-n", NS, "--overrides", overrides,
                         check=False)
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in out.stderr

    server.kubectl("run", "b", "--image=registry.example/a:1", "-n", NS)
    out = server.kubectl("run", "c", "--image=registry.example/a:1", "-n", NS, check=False)
    assert ('pods "c" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2'
            in out.stderr), out.stderr
    wait_for(lambda: _used(server) == {"pods": "2", "requests.cpu": "200m", "limits.memory": "256Mi",
                                       "count/configmaps": "1"}, what="usage after two pods")
    row = server.kubectl("get", "quota", "compute", "-n", NS).stdout.splitlines()[1]
    assert "count/configmaps: 1/3, pods: 2/2, requests.cpu: 200m/1" in row and "limits.memory: 256Mi/1Gi" in row

    for name in ("one", "two"):
        server.kubectl("create", "configmap", name, "-n", NS)
    out = server.kubectl("create", "configmap", "three", "-n", NS, check=False)
    assert "exceeded quota: compute, requested: count/configmaps=1, used: count/configmaps=3, " \
           "limited: count/configmaps=3" in out.stderr

    # Usage falls as pods go, and the freed room admits the next one.
    server.kubectl("delete", "pod", "a", "-n", NS, "--grace-period=0", "--force")
    wait_for(lambda: _used(server).get("pods") == "1", what="usage after a delete")
    server.kubectl("run", "c", "--image=registry.example/a:1", "-n", NS)


def test_bad_ranges_and_quotas_are_refused(server: Server) -> None:
    out = server.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "bad"},
        "spec": {"hard": {"pods": "-1"}}}))
    assert "spec.hard[pods]: Invalid value" in out.stderr and "must be greater than or equal to 0" in out.stderr
    out = server.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "bad"},
        "spec": {"limits": [{"type": "Node", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}))
    assert 'spec.limits[0].type: Unsupported value: "Node"' in out.stderr
    assert "min value 2 is greater than max value 1" in out.stderr


SCOPED = """
apiVersion: v1
kind: ResourceQuota
metadata: {name: best-effort, namespace: quota-scopes}
spec:
  hard: {pods: "1"}
  scopes: [BestEffort]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: deadlined, namespace: quota-scopes}
spec:
  hard: {pods: "1", requests.cpu: 500m}
  scopes: [Terminating, NotBestEffort]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: everything, namespace: quota-scopes}
spec:
  hard: {pods: "10", count/configmaps: "5"}
"""


def _quota_used(server: Server, name: str, ns: str = "quota-scopes") -> dict[str, str]:
    quota = json.loads(server.kubectl("get", "quota", name, "-n", ns, "-o", "json").stdout)
    return (quota.get("status") or {}).get("used") or {}


def _pod(name: str, cpu: str | None = None, deadline: int | None = None) -> str:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if cpu:
        spec["containers"][0]["resources"] = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "quota-scopes"},
                       "spec": spec})


def test_quota_scopes_select_the_pods_they_count(server: Server) -> None:
    server.kubectl("create", "namespace", "quota-scopes")
    server.kubectl("apply", "-f", "-", input=SCOPED)
    wait_for(lambda: _quota_used(server, "best-effort").get("pods") == "0", what="quota status computed")
    server.kubectl("create", "-f", "-", input=_pod("idle-1"))  # BestEffort, no deadline
    out = server.kubectl("create", "-f", "-", input=_pod("idle-2"), check=False)
    assert out.returncode == 1
    assert ('pods "idle-2" is forbidden: exceeded quota: best-effort, requested: pods=1, used: pods=1, '
            'limited: pods=1') in out.stderr
    server.kubectl("create", "-f", "-", input=_pod("busy", cpu="200m"))  # Burstable: not BestEffort
    server.kubectl("create", "-f", "-", input=_pod("batch-1", cpu="300m", deadline=60))  # Terminating, NotBestEffort
    out = server.kubectl("create", "-f", "-", input=_pod("batch-2", cpu="300m", deadline=60), check=False)
    assert "exceeded quota: deadlined, requested: pods=1,requests.cpu=300m, used: pods=1,requests.cpu=300m" \
        in out.stderr
    wait_for(lambda: (_quota_used(server, "best-effort"), _quota_used(server, "deadlined"),
                      _quota_used(server, "everything").get("pods")) ==
             ({"pods": "1"}, {"pods": "1", "requests.cpu": "300m"}, "3"), what="each quota's own count")
    # A scoped quota counts pods only: ConfigMaps count against the unscoped one alone.
    assert _quota_used(server, "everything")["count/configmaps"] == "1"


@pytest.mark.parametrize(("spec", "message"), [
    ({"hard": {"cpu": "1"}, "scopes": ["BestEffort"]},
     'spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort"}: unsupported scope applied to resource'),
    ({"hard": {"pods": "1"}, "scopes": ["Terminating", "NotTerminating"]},
     'spec.scopes: Invalid value: []core.ResourceQuotaScope{"Terminating", "NotTerminating"}: conflicting scopes'),
    ({"hard": {"pods": "1"}, "scopes": ["Sometimes"]},
     'spec.scopes: Invalid value: []core.ResourceQuotaScope{"Sometimes"}: unsupported scope'),
    ({"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In"}]}},
     "spec.scopeSelector.matchExpressions.values: Required value: must be at least one value when "
     "`operator` is 'In' or 'NotIn' for scope selector"),
    ({"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
        {"scopeName": "BestEffort", "operator": "In", "values": ["x"]}]}},
     "spec.scopeSelector.matchExpressions.operator: Invalid value: \"In\": must be 'Exist' when scope is any of "),
])
def test_bad_scopes_are_refused(server: Server, spec: dict, message: str) -> None:
    out = server.kubectl("create", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "bad-scope", "namespace": "default"},
        "spec": spec}))
    assert out.returncode == 1 and message in out.stderr, out.stderr


def test_a_replica_sets_pods_pass_the_same_admission_as_a_users(server: Server) -> None:
    """kube-controller-manager creates pods through the API: a LimitRange defaults them, and a quota refuses the
    ones past it, which the ReplicaSet reports as FailedCreate events in kube-apiserver's words."""
    ns = "quota-rs"
    server.kubectl("create", "namespace", ns)
    server.kubectl("apply", "-f", "-", input=MANIFESTS.replace(NS, ns))
    wait_for(lambda: _quota_used(server, "compute", ns).get("pods") == "0", 20, "the quota's first status")
    server.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3", "-n", ns)

    def refused() -> list[str]:
        events = json.loads(server.kubectl("get", "events", "-n", ns, "--field-selector", "reason=FailedCreate",
                                           "-o", "json").stdout)["items"]
        return [e["message"] for e in events]
    messages = wait_for(refused, 30, "a FailedCreate event")
    rs = json.loads(server.kubectl("get", "rs", "-n", ns, "-o", "json").stdout)["items"][0]["metadata"]["name"]
    assert (f'Error creating: pods "{rs}-" is forbidden: exceeded quota: compute, requested: pods=1, '
            "used: pods=2, limited: pods=2") in messages, messages
    pods = json.loads(server.kubectl("get", "pods", "-n", ns, "-o", "json", "--show-managed-fields").stdout)["items"]
    assert len(pods) == 2
    for pod in pods:  # the LimitRange's defaults, filled in at admission
        resources = pod["spec"]["containers"][0]["resources"]
        assert resources == {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}
        managers = [m["manager"] for m in pod["metadata"]["managedFields"]]
        assert managers == ["kube-controller-manager"], managers


def test_a_deployments_replica_sets_pass_admission_too(server: Server) -> None:
    """The deployment controller's ReplicaSets are created through admission as its own ServiceAccount: a quota on
    ReplicaSets refuses a rollout's new one, and the Deployment says so as kube-controller-manager's does."""
    ns = "quota-deploy"
    server.kubectl("create", "namespace", ns)
    server.kubectl("create", "quota", "rs-quota", "--hard=count/replicasets.apps=1", "-n", ns)
    wait_for(lambda: _quota_used(server, "rs-quota", ns).get("count/replicasets.apps") == "0", 20,
             "the quota's first status")
    server.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=0", "-n", ns)
    wait_for(lambda: _quota_used(server, "rs-quota", ns).get("count/replicasets.apps") == "1", 20,
             "the first ReplicaSet counted")
    server.kubectl("set", "image", "deployment/web", "nginx=nginx:2", "-n", ns)

    def refused() -> list[str]:
        events = json.loads(server.kubectl("get", "events", "-n", ns, "--field-selector",
                                           "reason=ReplicaSetCreateError", "-o", "json").stdout)["items"]
        return [e["message"] for e in events]
    messages = wait_for(refused, 30, "a ReplicaSetCreateError event")
    assert any(m.startswith('Failed to create new replica set "web-') and "is forbidden: exceeded quota: rs-quota, "
               "requested: count/replicasets.apps=1, used: count/replicasets.apps=1, limited: "
               "count/replicasets.apps=1" in m for m in messages), messages
    assert len(json.loads(server.kubectl("get", "rs", "-n", ns, "-o", "json").stdout)["items"]) == 1
