"""RBAC rule and subject matching, table-driven from Kubernetes' documented examples."""

from __future__ import annotations

import pytest

from kubesat.auth.authz import ALLOW, Attributes
from kubesat.auth import rbac
from kubesat.auth.rbac import RBACAuthorizer, RBACIndex, Rule
from kubesat.auth.user import UserInfo

ALICE = UserInfo("alice", groups=("devs", "system:authenticated"))


def res(verb, resource, group="", sub="", name="", ns="default", user=ALICE) -> Attributes:
    return Attributes(user, verb, True, ns, group, "v1", resource, sub, name, "")


def url(verb, path, user=ALICE) -> Attributes:
    return Attributes(user, verb, False, path=path)


POD_READER = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]}


@pytest.mark.parametrize("rule,attrs,allowed", [
    # The "pod-reader" Role from the RBAC docs.
    (POD_READER, res("get", "pods"), True),
    (POD_READER, res("list", "pods"), True),
    (POD_READER, res("delete", "pods"), False),
    (POD_READER, res("get", "secrets"), False),
    (POD_READER, res("get", "pods", group="apps"), False),
    # Subresources must be named: pods does not cover pods/log.
    (POD_READER, res("get", "pods", sub="log"), False),
    ({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}, res("get", "pods", sub="log"), True),
    # resourceNames restricts to named objects; list has no name so it does not match.
    ({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["my-configmap"], "verbs": ["update", "get"]},
     res("get", "configmaps", name="my-configmap"), True),
    ({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["my-configmap"], "verbs": ["update", "get"]},
     res("get", "configmaps", name="other"), False),
    ({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["my-configmap"], "verbs": ["list"]},
     res("list", "configmaps"), False),
    # Wildcards.
    ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, res("delete", "deployments", group="apps"), True),
    ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, res("get", "pods", sub="exec"), True),
    ({"apiGroups": [""], "resources": ["*/status"], "verbs": ["get"]}, res("get", "pods", sub="status"), True),
    # Kubernetes matches only "*" and "*/sub" as wildcards; "pods/*" is a literal that matches nothing real.
    ({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]}, res("get", "pods", sub="log"), False),
    ({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]}, res("get", "pods"), False),
    # The TokenRequest subresource.
    ({"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
     res("create", "serviceaccounts", sub="token", name="app"), True),
    ({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create"]},
     res("create", "serviceaccounts", sub="token", name="app"), False),
    # Non-resource URLs.
    ({"nonResourceURLs": ["/healthz", "/version"], "verbs": ["get"]}, url("get", "/healthz"), True),
    ({"nonResourceURLs": ["/healthz/*"], "verbs": ["get"]}, url("get", "/healthz/etcd"), True),
    ({"nonResourceURLs": ["/healthz/*"], "verbs": ["get"]}, url("get", "/version"), False),
    ({"nonResourceURLs": ["*"], "verbs": ["*"]}, url("post", "/anything"), True),
    ({"nonResourceURLs": ["/healthz"], "verbs": ["get"]}, url("post", "/healthz"), False),
    # A resource rule never matches a non-resource request and vice versa.
    (POD_READER, url("get", "/api/v1/pods"), False),
    ({"nonResourceURLs": ["*"], "verbs": ["get"]}, res("get", "pods"), False),
])
def test_rule_matching(rule, attrs, allowed) -> None:
    assert Rule.from_api(rule).allows(attrs) is allowed


def _binding(kind, name, ns, role_kind, role_name, subjects):
    meta = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {"kind": kind, "metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                                        "name": role_name}, "subjects": subjects}


def test_authorizer_subjects_and_scopes() -> None:
    idx = RBACIndex()
    idx.put_role({"metadata": {"name": "pod-reader", "namespace": "default"}, "rules": [POD_READER]})
    idx.put_cluster_role({"metadata": {"name": "secret-reader"},
                          "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]})
    idx.put_binding(_binding("RoleBinding", "read-pods", "default", "Role", "pod-reader",
                             [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}]))
    idx.put_binding(_binding("RoleBinding", "read-secrets", "development", "ClusterRole", "secret-reader",
                             [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]))
    idx.put_binding(_binding("ClusterRoleBinding", "sa-global", "", "ClusterRole", "secret-reader",
                             [{"kind": "ServiceAccount", "name": "robot", "namespace": "ops"}]))
    az = RBACAuthorizer(idx)
    jane = UserInfo("jane", groups=("system:authenticated",))
    robot = UserInfo("system:serviceaccount:ops:robot", groups=("system:serviceaccounts",))
    assert az.authorize(res("get", "pods", user=jane))[0] == ALLOW
    assert az.authorize(res("get", "pods", ns="other", user=jane))[0] != ALLOW
    # A RoleBinding to a ClusterRole grants it only in the binding's namespace.
    assert az.authorize(res("get", "secrets", ns="development"))[0] == ALLOW
    assert az.authorize(res("get", "secrets", ns="default"))[0] != ALLOW
    assert az.authorize(res("list", "secrets", ns="anywhere", user=robot))[0] == ALLOW
    assert az.authorize(res("list", "secrets", ns="", user=robot))[0] == ALLOW
    other_robot = UserInfo("system:serviceaccount:dev:robot")
    assert az.authorize(res("list", "secrets", user=other_robot))[0] != ALLOW
    # Deleting the binding revokes at once.
    idx.delete_binding("", "sa-global")
    assert az.authorize(res("list", "secrets", ns="anywhere", user=robot))[0] != ALLOW
    # system:masters is always allowed.
    root = UserInfo("root", groups=("system:masters",))
    assert az.authorize(res("delete", "nodes", ns="", user=root))[0] == ALLOW


def test_aggregated_cluster_roles() -> None:
    idx = RBACIndex()
    idx.put_cluster_role({"metadata": {"name": "monitoring"}, "aggregationRule": {"clusterRoleSelectors": [
        {"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]}, "rules": []})
    assert idx.cluster_role_rules("monitoring") == ()
    idx.put_cluster_role({"metadata": {"name": "monitoring-endpoints",
                                       "labels": {"rbac.example.com/aggregate-to-monitoring": "true"}},
                          "rules": [{"apiGroups": [""], "resources": ["services", "endpoints", "pods"],
                                     "verbs": ["get", "list", "watch"]}]})
    rules = idx.cluster_role_rules("monitoring")
    assert any(r.allows(res("watch", "endpoints")) for r in rules)


def test_remembered_decisions_follow_every_index_change() -> None:
    """Decisions are remembered, but each kind of update (role, cluster role, binding; put and
    delete) makes the authorizer decide again."""
    idx = RBACIndex()
    az = RBACAuthorizer(idx)
    ask = res("get", "pods")
    assert az.authorize(ask)[0] != ALLOW
    idx.put_role({"metadata": {"name": "r", "namespace": "default"}, "rules": [POD_READER]})
    assert az.authorize(ask)[0] != ALLOW  # a role alone grants nothing
    idx.put_binding(_binding("RoleBinding", "b", "default", "Role", "r",
                             [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]))
    assert az.authorize(ask)[0] == ALLOW
    idx.put_role({"metadata": {"name": "r", "namespace": "default"}, "rules": []})
    assert az.authorize(ask)[0] != ALLOW
    idx.put_role({"metadata": {"name": "r", "namespace": "default"}, "rules": [POD_READER]})
    assert az.authorize(ask)[0] == ALLOW
    idx.delete_role("default", "r")
    assert az.authorize(ask)[0] != ALLOW
    idx.put_cluster_role({"metadata": {"name": "c"}, "rules": [POD_READER]})
    idx.put_binding(_binding("ClusterRoleBinding", "cb", "", "ClusterRole", "c",
                             [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]))
    assert az.authorize(ask)[0] == ALLOW
    idx.delete_cluster_role("c")
    assert az.authorize(ask)[0] != ALLOW
    idx.put_cluster_role({"metadata": {"name": "c"}, "rules": [POD_READER]})
    assert az.authorize(ask)[0] == ALLOW
    idx.delete_binding("", "cb")
    assert az.authorize(ask)[0] != ALLOW
    # The same attributes for another user are a different decision.
    idx.put_binding(_binding("ClusterRoleBinding", "cb", "", "ClusterRole", "c",
                             [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]))
    assert az.authorize(ask)[0] != ALLOW
    assert az.authorize(res("get", "pods", user=UserInfo("bob")))[0] == ALLOW


def test_remembered_decisions_are_bounded() -> None:
    az = RBACAuthorizer(RBACIndex())
    for i in range(rbac.MAX_REMEMBERED_DECISIONS * 3):
        az.authorize(res("get", "pods", name=f"p{i}"))
    assert len(az._decisions) <= rbac.MAX_REMEMBERED_DECISIONS
