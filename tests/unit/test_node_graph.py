"""The Node authorizer's graph and decisions, and NodeRestriction's checks, as pure functions (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from kubesat import errors
from kubesat.auth import noderestriction as nr
from kubesat.auth.bootstrap_policy import cluster_role_bindings, cluster_roles
from kubesat.auth.authz import ALLOW, NO_OPINION, Attributes
from kubesat.auth.node import NodeAuthorizer, NodeGraph, exact_fields, node_identity, pod_references
from kubesat.auth.user import UserInfo

N1 = UserInfo("system:node:n1", groups=("system:nodes", "system:authenticated"))
NO_REL = "no relationship found between node 'n1' and this object"


class Recorder:
    """The next authorizer (RBAC's place): no opinion, and counts how often it was asked."""

    def __init__(self, decision: tuple[str, str] = (NO_OPINION, "")) -> None:
        self.decision = decision
        self.calls = 0

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        self.calls += 1
        return self.decision


def pod(name: str, node: str = "", ns: str = "default", **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}], **spec}
    if node:
        s["nodeName"] = node
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"}, "spec": s}


def full_pod(name: str = "p", node: str = "n1") -> dict[str, Any]:
    return pod(
        name, node,
        serviceAccountName="sa",
        imagePullSecrets=[{"name": "pull"}],
        initContainers=[{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
        containers=[{"name": "c", "env": [
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
        ], "envFrom": [{"configMapRef": {"name": "envfrom-cm"}}]}],
        volumes=[
            {"name": "s", "secret": {"secretName": "vol-secret"}},
            {"name": "c", "configMap": {"name": "vol-cm"}},
            {"name": "pj", "projected": {"sources": [{"secret": {"name": "proj-secret"}},
                                                     {"configMap": {"name": "proj-cm"}},
                                                     {"serviceAccountToken": {"path": "token"}}]}},
            {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        ],
        resourceClaims=[{"name": "gpu", "resourceClaimName": "gpu-claim"},
                        {"name": "tpl", "resourceClaimTemplateName": "t"}],
    ) | {"status": {"resourceClaimStatuses": [{"name": "tpl", "resourceClaimName": "p-tpl-abc"}]}}


def attrs(verb: str, resource: str, name: str = "", ns: str = "default", sub: str = "", group: str = "",
          user: UserInfo = N1, field_selector: str = "") -> Attributes:
    return Attributes(user, verb, True, ns, group, "v1", resource, sub, name, field_selector=field_selector)


def setup(*pods: dict[str, Any]) -> tuple[NodeGraph, NodeAuthorizer, Recorder]:
    g = NodeGraph()
    g.load(pods)
    rbac = Recorder()
    return g, NodeAuthorizer(g, rbac), rbac


# ------------------------------------------------------------------------------- identity, refs
def test_node_identity_needs_name_prefix_and_group() -> None:
    assert node_identity(N1) == ("n1", True)
    assert node_identity(UserInfo("system:node:n1")) == ("", False)  # --as without --as-group system:nodes
    assert node_identity(UserInfo("alice", groups=("system:nodes",))) == ("", False)
    assert node_identity(UserInfo("system:node:", groups=("system:nodes",))) == ("", True)


def test_pod_references_cover_every_kind_of_reference() -> None:
    refs = pod_references(full_pod())
    want = {("pods", "default", "p"), ("serviceaccounts", "default", "sa")}
    want |= {("secrets", "default", s) for s in ("pull", "init-env", "env-secret", "vol-secret", "proj-secret")}
    want |= {("configmaps", "default", c) for c in ("env-cm", "envfrom-cm", "vol-cm", "proj-cm")}
    want |= {("persistentvolumeclaims", "default", c) for c in ("data", "p-scratch")}
    want |= {("resourceclaims", "default", c) for c in ("gpu-claim", "p-tpl-abc")}
    assert refs == want


def test_exact_fields() -> None:
    assert exact_fields("spec.nodeName=n1,metadata.name==x,status.phase!=Failed") == {
        "spec.nodeName": "n1", "metadata.name": "x"}
    assert exact_fields("") == {}


# ------------------------------------------------------------------------------------ the graph
def test_get_referenced_objects_only() -> None:
    _, authz, _ = setup(full_pod(), pod("other", "n2", volumes=[{"name": "v", "secret": {"secretName": "theirs"}}]))
    for resource, name in (("secrets", "vol-secret"), ("secrets", "pull"), ("configmaps", "proj-cm"),
                           ("persistentvolumeclaims", "data"), ("pods", "p")):
        assert authz.authorize(attrs("get", resource, name)) == (ALLOW, ""), (resource, name)
    assert authz.authorize(attrs("get", "resourceclaims", "gpu-claim", group="resource.k8s.io"))[0] == ALLOW
    assert authz.authorize(attrs("get", "secrets", "theirs")) == (NO_OPINION, NO_REL)
    assert authz.authorize(attrs("get", "secrets", "vol-secret", ns="other")) == (NO_OPINION, NO_REL)
    assert authz.authorize(attrs("get", "pods", "other")) == (NO_OPINION, NO_REL)


def test_pod_deleted_or_moved_revokes_at_once() -> None:
    g, authz, _ = setup(full_pod())
    get = attrs("get", "secrets", "vol-secret")
    assert authz.authorize(get)[0] == ALLOW
    g.put_pod(full_pod(node="n2"))
    assert authz.authorize(get) == (NO_OPINION, NO_REL)
    assert authz.authorize(attrs("get", "secrets", "vol-secret", user=UserInfo(
        "system:node:n2", groups=("system:nodes",))))[0] == ALLOW
    g.put_pod(full_pod())
    assert authz.authorize(get)[0] == ALLOW
    g.delete_pod("default", "p")
    assert authz.authorize(get) == (NO_OPINION, NO_REL)
    assert g._reach == {}  # nothing left behind


def test_shared_reference_stays_until_last_pod_goes() -> None:
    vol = [{"name": "v", "secret": {"secretName": "shared"}}]
    g, authz, _ = setup(pod("a", "n1", volumes=vol), pod("b", "n1", volumes=vol))
    get = attrs("get", "secrets", "shared")
    g.delete_pod("default", "a")
    assert authz.authorize(get)[0] == ALLOW
    g.put_pod(pod("b", "n1"))  # b stops using it
    assert authz.authorize(get)[0] == NO_OPINION


def test_unscheduled_pod_leads_nowhere() -> None:
    g, authz, _ = setup(pod("p", volumes=[{"name": "v", "secret": {"secretName": "s"}}]))
    assert authz.authorize(attrs("get", "secrets", "s"))[0] == NO_OPINION
    assert g.pods_on("n1") == []


# ---------------------------------------------------------------------------------- decisions
def test_read_verbs_and_shapes() -> None:
    _, authz, _ = setup(full_pod())
    assert authz.authorize(attrs("list", "secrets", field_selector="metadata.name=vol-secret"))[0] == ALLOW
    assert authz.authorize(attrs("watch", "configmaps", field_selector="metadata.name=vol-cm"))[0] == ALLOW
    assert authz.authorize(attrs("list", "secrets")) == (NO_OPINION, "No Object name found")
    assert authz.authorize(attrs("update", "secrets", "vol-secret")) == (
        NO_OPINION, "can only read resources of this type")
    assert authz.authorize(attrs("list", "secrets", ns="")) == (
        NO_OPINION, "can only read namespaced object of this type")
    assert authz.authorize(attrs("list", "persistentvolumeclaims", "data")) == (
        NO_OPINION, "can only get individual resources of this type")


def test_token_requests() -> None:
    _, authz, _ = setup(full_pod())
    assert authz.authorize(attrs("create", "serviceaccounts", "sa", sub="token"))[0] == ALLOW
    assert authz.authorize(attrs("create", "serviceaccounts", "default", sub="token")) == (NO_OPINION, NO_REL)
    assert authz.authorize(attrs("get", "serviceaccounts", "sa")) == (
        NO_OPINION, "can only create tokens for individual service accounts")
    assert authz.authorize(attrs("create", "serviceaccounts", "sa")) == (
        NO_OPINION, "can only create token subresource of serviceaccount")


def test_nodes_leases_pods() -> None:
    _, authz, _ = setup(full_pod())
    assert authz.authorize(attrs("get", "nodes", "n1", ns=""))[0] == ALLOW
    assert authz.authorize(attrs("watch", "nodes", ns="", field_selector="metadata.name=n1"))[0] == ALLOW
    assert authz.authorize(attrs("get", "nodes", "n2", ns="")) == (
        NO_OPINION, "node 'n1' cannot read 'n2', only its own Node object")
    assert authz.authorize(attrs("list", "nodes", ns="")) == (
        NO_OPINION, "node 'n1' cannot read all nodes, only its own Node object")
    for verb in ("create", "update", "patch"):
        assert authz.authorize(attrs(verb, "nodes", "n2", ns=""))[0] == ALLOW  # NodeRestriction decides
    assert authz.authorize(attrs("patch", "nodes", "n1", ns="", sub="status"))[0] == ALLOW
    assert authz.authorize(attrs("delete", "nodes", "n1", ns="")) == (NO_OPINION, "")

    lease = "coordination.k8s.io"
    assert authz.authorize(attrs("update", "leases", "n1", ns="kube-node-lease", group=lease))[0] == ALLOW
    assert authz.authorize(attrs("create", "leases", ns="kube-node-lease", group=lease))[0] == ALLOW
    assert authz.authorize(attrs("update", "leases", "n2", ns="kube-node-lease", group=lease)) == (
        NO_OPINION, "can only access node lease with the same name as the requesting node")
    assert authz.authorize(attrs("get", "leases", "n1", ns="default", group=lease)) == (
        NO_OPINION, 'can only access leases in the "kube-node-lease" system namespace')
    assert authz.authorize(attrs("list", "leases", ns="kube-node-lease", group=lease)) == (
        NO_OPINION, "can only get, create, update, patch, or delete a node lease")

    assert authz.authorize(attrs("list", "pods", ns="", field_selector="spec.nodeName=n1"))[0] == ALLOW
    assert authz.authorize(attrs("watch", "pods", ns="", field_selector="spec.nodeName=n2")) == (
        NO_OPINION, "can only list/watch pods with spec.nodeName field selector")
    assert authz.authorize(attrs("patch", "pods", "anything", sub="status"))[0] == ALLOW
    assert authz.authorize(attrs("update", "pods", "p")) == (NO_OPINION, "")


def test_static_node_rules_and_fallback() -> None:
    _, authz, rbac = setup()
    assert authz.authorize(attrs("create", "tokenreviews", ns="", group="authentication.k8s.io"))[0] == ALLOW
    assert authz.authorize(attrs("create", "events", "", ns="default"))[0] == ALLOW
    assert authz.authorize(attrs("list", "services"))[0] == ALLOW
    assert rbac.calls == 0
    assert authz.authorize(attrs("delete", "secrets", "x")) == (NO_OPINION, "can only read resources of this type")
    assert rbac.calls == 1
    rbac.decision = (ALLOW, "RBAC: allowed")
    assert authz.authorize(attrs("delete", "secrets", "x")) == (ALLOW, "RBAC: allowed")
    rbac.decision = (NO_OPINION, "rbac says")
    assert authz.authorize(attrs("get", "secrets", "x")) == (NO_OPINION, f"{NO_REL}\nrbac says")


def test_non_nodes_go_straight_to_the_next_authorizer() -> None:
    _, authz, rbac = setup(full_pod())
    for user in (UserInfo("alice", groups=("system:nodes",)), UserInfo("system:node:n1")):
        assert authz.authorize(attrs("get", "secrets", "vol-secret", user=user)) == (NO_OPINION, "")
    assert rbac.calls == 2
    nameless = UserInfo("system:node:", groups=("system:nodes",))
    assert authz.authorize(attrs("get", "secrets", "x", user=nameless)) == (
        NO_OPINION, 'unknown node for user "system:node:"')


def test_system_node_role_is_bootstrapped_but_bound_to_nobody() -> None:
    roles = {r["metadata"]["name"]: r for r in cluster_roles()}
    bindings = {b["metadata"]["name"]: b for b in cluster_role_bindings()}
    assert {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]} in \
        roles["system:node"]["rules"]
    assert "subjects" not in bindings["system:node"]
    assert bindings["system:node"]["roleRef"]["name"] == "system:node"


# ----------------------------------------------------------------------------- NodeRestriction
def forbidden(fn: Any, *args: Any) -> str:
    with pytest.raises(errors.StatusError) as e:
        fn(*args)
    assert e.value.code == 403, e.value.message
    return str(e.value.message)


def node(name: str, labels: dict[str, str] | None = None, taints: list[Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"taints": taints} if taints else {}
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def test_node_writes() -> None:
    assert forbidden(nr.check_node, "n1", "n2", None, node("n2")) == \
        'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    nr.check_node("n1", "n1", None, node("n1", {"kubernetes.io/hostname": "h", "node.kubernetes.io/x": "y",
                                                 "example.com/free": "z", "kubelet.kubernetes.io/a": "b"}))
    assert forbidden(nr.check_node, "n1", "n1", None, node("n1", {
        "node-restriction.kubernetes.io/pool": "a", "node-role.kubernetes.io/master": "", "k8s.io/x": "1"})) == (
        'nodes "n1" is forbidden: node "n1" is not allowed to set the following labels: k8s.io/x, '
        'node-restriction.kubernetes.io/pool, node-role.kubernetes.io/master')
    old = node("n1", {"node-restriction.kubernetes.io/pool": "a"}, taints=[{"key": "k", "effect": "NoSchedule"}])
    taints = old["spec"]["taints"]
    nr.check_node("n1", "n1", old, node("n1", {"node-restriction.kubernetes.io/pool": "a", "x": "1"}, taints))
    assert forbidden(nr.check_node, "n1", "n1", old, node("n1", {}, old["spec"]["taints"])) == \
        'nodes "n1" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool'
    assert forbidden(nr.check_node, "n1", "n1", old, node("n1", old["metadata"]["labels"])) == \
        'nodes "n1" is forbidden: node "n1" is not allowed to modify taints'


def test_pod_status_and_delete() -> None:
    mine, theirs = pod("a", "n1"), pod("b", "n2")
    nr.check_pod_status_update("n1", mine, mine | {"status": {"phase": "Running"}})
    assert forbidden(nr.check_pod_status_update, "n1", theirs, theirs) == (
        'pods "b" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself')
    relabelled = {**mine, "metadata": {**mine["metadata"], "labels": {"x": "y"}}}
    assert "cannot update labels through pod status" in forbidden(nr.check_pod_status_update, "n1", mine, relabelled)
    nr.check_pod_delete("n1", mine)
    assert forbidden(nr.check_pod_delete, "n1", theirs) == \
        'pods "b" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself'


def mirror(**over: Any) -> dict[str, Any]:
    p = pod("static-n1", "n1")
    p["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    p["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "node-uid",
                                         "controller": True}]
    p["spec"].update(over)
    return p


def test_mirror_pods() -> None:
    nr.check_mirror_pod_create("n1", mirror(), "node-uid")
    assert 'node "n1" can only create mirror pods' in forbidden(nr.check_mirror_pod_create, "n1", pod("x", "n1"), "u")
    assert forbidden(nr.check_mirror_pod_create, "n1", mirror(nodeName="n2"), "node-uid") == \
        'pods "static-n1" is forbidden: node "n1" can only create pods with spec.nodeName set to itself'
    assert "UID mismatch" in forbidden(nr.check_mirror_pod_create, "n1", mirror(), "other-uid")
    assert "reference a service account" in forbidden(nr.check_mirror_pod_create, "n1",
                                                      mirror(serviceAccountName="sa"), "node-uid")
    vol = [{"name": "v", "configMap": {"name": "c"}}]
    assert "reference configmaps" in forbidden(nr.check_mirror_pod_create, "n1", mirror(volumes=vol), "node-uid")


def test_token_request_binding() -> None:
    def body(ref: dict[str, Any] | None) -> dict[str, Any]:
        return {"spec": {"boundObjectRef": ref} if ref else {}}

    assert forbidden(nr.token_request_pod, "sa", body(None)) == \
        'serviceaccounts "sa" is forbidden: node requested token not bound to a pod'
    assert "not bound to a pod" in forbidden(nr.token_request_pod, "sa", body({"apiVersion": "v1", "kind": "Secret",
                                                                              "name": "s", "uid": "u"}))
    assert forbidden(nr.token_request_pod, "sa", body({"apiVersion": "v1", "kind": "Pod", "name": "p"})) == \
        'serviceaccounts "sa" is forbidden: node requested token with a pod binding without a uid'
    assert nr.token_request_pod("sa", body({"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"})) == ("p", "u")
    nr.check_token_request_pod("n1", "sa", "uid-a", pod("a", "n1"))
    assert forbidden(nr.check_token_request_pod, "n1", "sa", "uid-b", pod("b", "n2")) == (
        'serviceaccounts "sa" is forbidden: node requested token bound to a pod scheduled on a different node')
    stale = forbidden(nr.check_token_request_pod, "n1", "sa", "old", pod("a", "n1"))
    assert "does not match the UID in record" in stale
