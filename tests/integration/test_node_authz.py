"""Node credentials, the Node authorizer and NodeRestriction against a real server, with a node's kubeconfig.

Pods are bound by setting spec.nodeName as the admin (no scheduler involved); node n1 acts through
`kubesat kubeconfig --node n1`, with kubectl and the official client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .conftest import Server

pytestmark = pytest.mark.integration

N1 = "system:node:n1"
AS_N1 = ("--as", N1, "--as-group", "system:nodes")

OBJECTS = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: only-n2}
---
apiVersion: v1
kind: Secret
metadata: {name: s-mine}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: s-theirs}
stringData: {k: v}
---
apiVersion: v1
kind: Pod
metadata: {name: p-mine}
spec:
  nodeName: n1
  containers: [{name: c, image: nginx, env: [{name: K, valueFrom: {secretKeyRef: {name: s-mine, key: k}}}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: p-theirs}
spec:
  nodeName: n2
  containers: [{name: c, image: nginx}]
  volumes: [{name: v, secret: {secretName: s-theirs}}]
---
apiVersion: v1
kind: Pod
metadata: {name: p-only-n2}
spec:
  nodeName: n2
  serviceAccountName: only-n2
  containers: [{name: c, image: nginx}]
---
apiVersion: v1
kind: Node
metadata: {name: n2}
"""


def node_kubeconfig(server: Server, node: str) -> Path:
    out = subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", node, "--data-dir",
                          str(server.data_dir)], capture_output=True, text=True, check=True).stdout
    path = server.data_dir.parent / f"{node}.kubeconfig"
    path.write_text(out)
    return path


@pytest.fixture(scope="module")
def n1(server: Server) -> Path:
    server.kubectl("apply", "-f", "-", input=OBJECTS)
    return node_kubeconfig(server, "n1")


@pytest.fixture(scope="module")
def n1_api(n1: Path) -> client.CoreV1Api:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(n1), client_configuration=cfg)
    return client.CoreV1Api(client.ApiClient(cfg))


def as_n1(server: Server, n1: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return server.kubectl(*args, kubeconfig=str(n1), check=False, input=input)


def refused(e: pytest.ExceptionInfo[ApiException]) -> str:
    assert e.value.status == 403, e.value.body
    body = json.loads(e.value.body)
    assert body["reason"] == "Forbidden"
    return str(body["message"])


def uid(server: Server, pod: str) -> str:
    return server.kubectl("get", "pod", pod, "-o", "jsonpath={.metadata.uid}").stdout


def token_request(pod: str | None, pod_uid: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"expirationSeconds": 600}
    if pod:
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": pod_uid}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


# ------------------------------------------------------------------------------------ identity
def test_node_kubeconfig_authenticates_as_the_node(server: Server, n1: Path) -> None:
    who = json.loads(as_n1(server, n1, "auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert who["username"] == N1
    assert who["groups"] == ["system:nodes", "system:authenticated"]


def test_kubeconfig_refuses_a_bad_node_name(server: Server) -> None:
    res = subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", "Bad_Name", "--data-dir",
                          str(server.data_dir)], capture_output=True, text=True)
    assert res.returncode == 1 and "invalid node name 'Bad_Name'" in res.stderr and not res.stdout


# --------------------------------------------------------------------------------------- reads
def test_reads_only_what_its_pods_use(server: Server, n1: Path) -> None:
    assert as_n1(server, n1, "get", "secret", "s-mine", "-o", "name").stdout.strip() == "secret/s-mine"
    # the default pod's projected volume reads kube-root-ca.crt
    assert as_n1(server, n1, "get", "configmap", "kube-root-ca.crt", "-o", "name").returncode == 0
    res = as_n1(server, n1, "get", "secret", "s-theirs")
    assert res.returncode == 1
    assert res.stderr.strip() == (
        'Error from server (Forbidden): secrets "s-theirs" is forbidden: User "system:node:n1" cannot get resource '
        '"secrets" in API group "" in the namespace "default": no relationship found between node \'n1\' and this '
        "object")
    assert "can only read resources of this type" in as_n1(server, n1, "delete", "secret", "s-mine").stderr
    listed = as_n1(server, n1, "get", "pods")
    assert "can only list/watch pods with spec.nodeName field selector" in listed.stderr
    mine = as_n1(server, n1, "get", "pods", "--field-selector", "spec.nodeName=n1", "-o", "name")
    assert mine.stdout.split() == ["pod/p-mine"]
    assert "node 'n1' cannot read 'n2', only its own Node object" in as_n1(server, n1, "get", "node", "n2").stderr


def test_pod_deleted_revokes_access_at_once(server: Server, n1: Path) -> None:
    server.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Secret
metadata: {name: s-short}
stringData: {k: v}
---
apiVersion: v1
kind: Pod
metadata: {name: p-short}
spec:
  nodeName: n1
  containers: [{name: c, image: nginx}]
  volumes: [{name: v, secret: {secretName: s-short}}]
""")
    assert as_n1(server, n1, "get", "secret", "s-short", "-o", "name").returncode == 0
    server.kubectl("delete", "pod", "p-short", "--grace-period=0", "--force")
    res = as_n1(server, n1, "get", "secret", "s-short")
    assert "no relationship found between node 'n1' and this object" in res.stderr


# -------------------------------------------------------------------------------------- tokens
def test_token_only_for_a_pod_on_this_node(server: Server, n1_api: client.CoreV1Api) -> None:
    ok = n1_api.create_namespaced_service_account_token("default", "default",
                                                         token_request("p-mine", uid(server, "p-mine")))
    review = server.kubectl("create", "-o", "json", "-f", "-", input=json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": ok.status.token}}))
    status = json.loads(review.stdout)["status"]
    assert status["authenticated"] and status["user"]["username"] == "system:serviceaccount:default:default"
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["p-mine"]
    assert status["user"]["extra"]["authentication.kubernetes.io/node-name"] == ["n1"]

    cases = [
        ("default", token_request("p-theirs", uid(server, "p-theirs")),
         'serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different node'),
        ("default", token_request(None, None),
         'serviceaccounts "default" is forbidden: node requested token not bound to a pod'),
        ("default", token_request("p-mine", None),
         'serviceaccounts "default" is forbidden: node requested token with a pod binding without a uid'),
        ("default", token_request("p-mine", "0000"),
         'serviceaccounts "default" is forbidden: the UID in the bound object reference (0000) does not match the '
         "UID in record. The object might have been deleted and then recreated"),
        ("only-n2", token_request("p-only-n2", uid(server, "p-only-n2")),
         'serviceaccounts "only-n2" is forbidden: User "system:node:n1" cannot create resource '
         '"serviceaccounts/token" in API group "" in the namespace "default": no relationship found between node '
         "'n1' and this object"),
    ]
    for sa, body, message in cases:
        with pytest.raises(ApiException) as e:
            n1_api.create_namespaced_service_account_token(sa, "default", body)
        assert refused(e) == message


# ------------------------------------------------------------------------------ nodes, leases
def test_node_changes_only_itself(server: Server, n1: Path, n1_api: client.CoreV1Api) -> None:
    made = n1_api.create_node({"apiVersion": "v1", "kind": "Node",
                               "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}})
    assert made.metadata.name == "n1"
    n1_api.patch_node("n1", {"metadata": {"labels": {"example.com/rack": "r1"}}})
    n1_api.patch_node_status("n1", {"status": {"conditions": [{"type": "Ready", "status": "True",
                                                               "reason": "KubeletReady"}]}})

    with pytest.raises(ApiException) as e:
        n1_api.patch_node("n2", {"metadata": {"labels": {"example.com/rack": "r1"}}})
    assert refused(e) == 'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    with pytest.raises(ApiException) as e:
        n1_api.patch_node_status("n2", {"status": {"conditions": []}})
    assert refused(e) == 'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    with pytest.raises(ApiException) as e:
        n1_api.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n3"}})
    assert refused(e) == 'nodes "n3" is forbidden: node "n1" is not allowed to modify node "n3"'
    with pytest.raises(ApiException) as e:
        n1_api.patch_node("n1", {"metadata": {"labels": {"node-restriction.kubernetes.io/pool": "secure"}}})
    assert refused(e) == 'nodes "n1" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool'
    with pytest.raises(ApiException) as e:
        n1_api.patch_node("n1", {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})
    assert refused(e) == 'nodes "n1" is forbidden: node "n1" is not allowed to modify taints'
    res = as_n1(server, n1, "delete", "node", "n2")
    assert 'User "system:node:n1" cannot delete resource "nodes"' in res.stderr
    labels = json.loads(server.kubectl("get", "node", "n2", "-o", "json").stdout)["metadata"].get("labels") or {}
    assert "example.com/rack" not in labels


def test_lease_only_its_own(server: Server, n1: Path) -> None:
    coordination = client.CoordinationV1Api(client.ApiClient(_cfg(n1)))

    def lease(name: str) -> dict[str, Any]:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}}

    coordination.create_namespaced_lease("kube-node-lease", lease("n1"))
    coordination.patch_namespaced_lease("n1", "kube-node-lease", {"spec": {"leaseDurationSeconds": 41}})
    with pytest.raises(ApiException) as e:
        coordination.create_namespaced_lease("kube-node-lease", lease("n2"))
    assert refused(e) == ('leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same '
                          "name as the requesting node")
    with pytest.raises(ApiException) as e:
        coordination.create_namespaced_lease("default", lease("n1"))
    assert 'can only access leases in the "kube-node-lease" system namespace' in refused(e)


def _cfg(kubeconfig: Path) -> client.Configuration:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return cfg


def test_pod_status_only_of_its_own_pods(server: Server, n1_api: client.CoreV1Api) -> None:
    done = n1_api.patch_namespaced_pod_status("p-mine", "default", {"status": {"phase": "Running"}})
    assert done.status.phase == "Running"
    with pytest.raises(ApiException) as e:
        n1_api.patch_namespaced_pod_status("p-theirs", "default", {"status": {"phase": "Running"}})
    assert refused(e) == ('pods "p-theirs" is forbidden: node "n1" can only update pod status for pods with '
                          "spec.nodeName set to itself")
    with pytest.raises(ApiException) as e:
        n1_api.delete_namespaced_pod("p-theirs", "default")
    assert refused(e) == 'pods "p-theirs" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself'
    with pytest.raises(ApiException) as e:
        n1_api.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sneaky"},
                                                 "spec": {"nodeName": "n1", "containers": [{"name": "c",
                                                                                            "image": "nginx"}]}})
    assert refused(e) == ('pods "sneaky" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, '
                          'node "n1" can only create mirror pods')


# ------------------------------------------------------------------------------- access reviews
def test_can_i_answers_as_kubernetes(server: Server, n1: Path) -> None:
    def can_i(*args: str) -> str:
        return server.kubectl("auth", "can-i", *args, check=False).stdout.strip()

    assert can_i(*AS_N1, "get", "secret/s-mine") == "yes"
    assert can_i(*AS_N1, "get", "secret/s-theirs") == "no - no relationship found between node 'n1' and this object"
    assert can_i(*AS_N1, "create", "serviceaccounts/default", "--subresource=token") == "yes"
    assert can_i(*AS_N1, "create", "serviceaccounts/only-n2", "--subresource=token") == \
        "no - no relationship found between node 'n1' and this object"
    assert can_i(*AS_N1, "list", "pods") == "no - can only list/watch pods with spec.nodeName field selector"
    assert can_i(*AS_N1, "update", "leases/n1", "-n", "kube-node-lease") == "yes"
    assert can_i(*AS_N1, "create", "events") == "yes"  # system:node's static rules
    assert can_i(*AS_N1, "list", "namespaces") == "no"
    # without the group, the user is no node: RBAC alone answers (the system:node binding has no subjects)
    assert can_i("--as", N1, "get", "secret/s-mine") == "no"
    # the node asking about itself
    res = server.kubectl("auth", "can-i", "get", "secret/s-theirs", kubeconfig=str(n1), check=False)
    assert res.stdout.strip() == "no - no relationship found between node 'n1' and this object"


def test_subject_access_review_and_rules_review(server: Server, api: client.ApiClient) -> None:
    authz = client.AuthorizationV1Api(api)
    sar = authz.create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": N1, "groups": ["system:nodes"],
                 "resourceAttributes": {"verb": "get", "resource": "secrets", "namespace": "default",
                                        "name": "s-theirs"}}})
    assert not sar.status.allowed
    assert sar.status.reason == "no relationship found between node 'n1' and this object"
    rules = json.loads(server.kubectl("create", "--validate=false", "-o", "json", "-f", "-", *AS_N1, input=json.dumps({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": "default"}})).stdout)["status"]
    assert rules["incomplete"] is True
    assert rules["evaluationError"] == "node authorizer does not support user rule resolution"
