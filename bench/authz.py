"""RBAC decision cost with 1,000 Roles and 1,000 RoleBindings in the request's namespace and 100
ClusterRoleBindings, then again with 50,000 more objects in other namespaces (it must not grow).

Usage: python bench/authz.py   (target: < 50 us per decision, flat across the two runs)
"""

from __future__ import annotations

import time

from kubesat.auth.authz import Attributes
from kubesat.auth.bootstrap_policy import cluster_role_bindings, cluster_roles
from kubesat.auth.rbac import RBACAuthorizer, RBACIndex
from kubesat.auth.user import UserInfo


def populate(idx: RBACIndex, ns: str, n: int) -> None:
    for i in range(n):
        idx.put_role({"metadata": {"name": f"role-{i}", "namespace": ns},
                      "rules": [{"apiGroups": [""], "resources": [f"res{i}"], "verbs": ["get", "list"]}]})
        idx.put_binding({"metadata": {"name": f"rb-{i}", "namespace": ns},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"role-{i}"},
                         "subjects": [{"kind": "ServiceAccount", "name": f"sa-{i}", "namespace": ns}]})


def measure(az: RBACAuthorizer, attrs: list[Attributes], seconds: float = 2.0) -> float:
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in attrs:
            az.authorize(a)
        n += len(attrs)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    idx = RBACIndex()
    for r in cluster_roles():
        idx.put_cluster_role(r)
    for b in cluster_role_bindings():
        idx.put_binding(b)
    for i in range(100 - len(cluster_role_bindings())):
        idx.put_binding({"metadata": {"name": f"crb-{i}"},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                         "subjects": [{"kind": "Group", "name": f"group-{i}"}]})
    populate(idx, "prod", 1000)
    az = RBACAuthorizer(idx)
    sa = UserInfo("system:serviceaccount:prod:sa-500",
                  groups=("system:serviceaccounts", "system:serviceaccounts:prod", "system:authenticated"))
    attrs = [
        Attributes(sa, "get", True, "prod", "", "v1", "res500", "", "x"),       # allowed by its own Role
        Attributes(sa, "delete", True, "prod", "", "v1", "res500", "", "x"),    # denied after every rule
        Attributes(sa, "create", True, "", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"),
        Attributes(sa, "get", False, path="/version"),
    ]
    before = measure(az, attrs)
    for k in range(50):
        populate(idx, f"other-{k}", 1000)
    after = measure(az, attrs)
    print(f"per decision: {before:.2f} us with 1000 roles/bindings in the namespace and 100 cluster bindings")
    print(f"per decision: {after:.2f} us after adding 50,000 roles and bindings in 50 other namespaces")
    print(f"target < 50 us: {'met' if max(before, after) < 50 else 'MISSED'}; growth {after / before:.2f}x")


if __name__ == "__main__":
    main()
