"""The Kubernetes 1.32 bootstrap ClusterRoles and ClusterRoleBindings kubesat needs, and their reconciliation."""

from __future__ import annotations

import copy
from typing import Any

from kubesat.auth.escalation import covers
from kubesat.auth.rbac import Rule

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABELS: dict[str, str] = {"kubernetes.io/bootstrapping": "rbac-defaults"}
BOOTSTRAP_ANNOTATIONS: dict[str, str] = {AUTOUPDATE: "true"}
AGGREGATE_TO_ADMIN = "rbac.authorization.k8s.io/aggregate-to-admin"
AGGREGATE_TO_EDIT = "rbac.authorization.k8s.io/aggregate-to-edit"
AGGREGATE_TO_VIEW = "rbac.authorization.k8s.io/aggregate-to-view"

# Verb sets of the bootstrap policy, each already in the sorted order Kubernetes stores.
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
READ_WRITE = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _rule(verbs: list[str], groups: list[str] | None = None, resources: list[str] | None = None,
          names: list[str] | None = None, urls: list[str] | None = None) -> dict[str, Any]:
    """A PolicyRule in the v1 JSON field order, every list sorted as Kubernetes' rule builder does."""
    out: dict[str, Any] = {"verbs": sorted(verbs)}
    if groups:
        out["apiGroups"] = sorted(groups)
    if resources:
        out["resources"] = sorted(resources)
    if names:
        out["resourceNames"] = sorted(names)
    if urls:
        out["nonResourceURLs"] = sorted(urls)
    return out


def _cluster_role(name: str, rules: list[dict[str, Any]] | None, labels: dict[str, str] | None = None,
                  aggregate_label: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {**BOOTSTRAP_LABELS, **(labels or {})},
        "annotations": dict(BOOTSTRAP_ANNOTATIONS),
    }
    obj: dict[str, Any] = {"kind": "ClusterRole", "apiVersion": RBAC_API_VERSION, "metadata": meta, "rules": rules}
    if aggregate_label:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {aggregate_label: "true"}}]}
    return obj


def _aggregate_to_admin_rules() -> list[dict[str, Any]]:
    return [
        _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
        _rule(READ_WRITE, [RBAC_GROUP], ["roles", "rolebindings"]),
    ]


def _aggregate_to_edit_rules() -> list[dict[str, Any]]:
    return [
        # read on the escalating resources view leaves out
        _rule(READ, [""], ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"]),
        _rule(["impersonate"], [""], ["serviceaccounts"]),
        _rule(WRITE, [""], ["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
        _rule(["create"], [""], ["pods/eviction"]),
        _rule(WRITE, [""], ["replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                            "services/proxy", "persistentvolumeclaims", "configmaps", "secrets", "events"]),
        _rule(["create"], [""], ["serviceaccounts/token"]),
        _rule(WRITE, ["apps"], ["statefulsets", "statefulsets/scale", "daemonsets", "deployments",
                                "deployments/scale", "deployments/rollback", "replicasets", "replicasets/scale"]),
        _rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
        _rule(WRITE, ["batch"], ["jobs", "cronjobs"]),
        _rule(WRITE, ["extensions"], ["daemonsets", "deployments", "deployments/scale", "deployments/rollback",
                                      "ingresses", "replicasets", "replicasets/scale",
                                      "replicationcontrollers/scale", "networkpolicies"]),
        _rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
        _rule(WRITE, ["networking.k8s.io"], ["networkpolicies", "ingresses"]),
        _rule(READ_WRITE, ["coordination.k8s.io"], ["leases"]),
    ]


def _aggregate_to_view_rules() -> list[dict[str, Any]]:
    return [
        _rule(READ, [""], ["pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                           "services", "services/status", "endpoints", "persistentvolumeclaims",
                           "persistentvolumeclaims/status", "configmaps"]),
        _rule(READ, [""], ["limitranges", "resourcequotas", "bindings", "events", "pods/status",
                           "resourcequotas/status", "namespaces/status", "replicationcontrollers/status",
                           "pods/log"]),
        # reading namespaces at namespace scope means reading *this* namespace
        _rule(READ, [""], ["namespaces"]),
        _rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
        _rule(READ, ["apps"], ["controllerrevisions", "statefulsets", "statefulsets/status", "statefulsets/scale",
                               "daemonsets", "daemonsets/status", "deployments", "deployments/status",
                               "deployments/scale", "replicasets", "replicasets/status", "replicasets/scale"]),
        _rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        _rule(READ, ["batch"], ["jobs", "jobs/status", "cronjobs", "cronjobs/status"]),
        _rule(READ, ["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                                     "deployments/status", "ingresses", "ingresses/status", "replicasets",
                                     "replicasets/scale", "replicasets/status", "replicationcontrollers/scale",
                                     "networkpolicies"]),
        _rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        _rule(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
    ]


def node_rules() -> list[dict[str, Any]]:
    """The `system:node` ClusterRole's rules (1.32 NodeRules, default feature gates): what the Node authorizer
    grants every node outright; reads of Secrets, ConfigMaps, volumes and tokens it limits through its graph."""
    return [
        _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews", "subjectaccessreviews"]),
        _rule(READ, [""], ["services"]),
        _rule(["create", "get", "list", "watch"], [""], ["nodes"]),
        _rule(["patch", "update"], [""], ["nodes/status"]),
        _rule(["patch", "update"], [""], ["nodes"]),
        _rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
        _rule(READ, [""], ["pods"]),
        _rule(["create", "delete"], [""], ["pods"]),
        _rule(["patch", "update"], [""], ["pods/status"]),
        _rule(["create"], [""], ["pods/eviction"]),
        _rule(READ, [""], ["configmaps", "secrets"]),
        _rule(["get"], [""], ["persistentvolumeclaims", "persistentvolumes"]),
        _rule(["get"], [""], ["endpoints"]),
        _rule(["create", "get", "list", "watch"], ["certificates.k8s.io"], ["certificatesigningrequests"]),
        _rule(["create", "delete", "get", "patch", "update"], ["coordination.k8s.io"], ["leases"]),
        _rule(["get"], ["storage.k8s.io"], ["volumeattachments"]),
        _rule(["get", "patch", "update"], [""], ["persistentvolumeclaims/status"]),
        _rule(["create"], [""], ["serviceaccounts/token"]),
        _rule(READ, ["storage.k8s.io"], ["csidrivers"]),
        _rule(["create", "delete", "get", "patch", "update"], ["storage.k8s.io"], ["csinodes"]),
        _rule(READ, ["node.k8s.io"], ["runtimeclasses"]),
    ]


def cluster_roles() -> list[dict[str, Any]]:
    """The bootstrap ClusterRoles, as kube-apiserver 1.32 creates them (aggregated roles start with null rules)."""
    return [
        _cluster_role("cluster-admin", [_rule(["*"], ["*"], ["*"]), _rule(["*"], urls=["*"])]),
        _cluster_role("system:discovery", [_rule(["get"], urls=[
            "/livez", "/readyz", "/healthz", "/version", "/version/",
            "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"])]),
        _cluster_role("system:basic-user", [
            _rule(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
            _rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
        ]),
        _cluster_role("system:public-info-viewer", [_rule(["get"], urls=[
            "/livez", "/readyz", "/healthz", "/version", "/version/"])]),
        _cluster_role("admin", None, aggregate_label=AGGREGATE_TO_ADMIN),
        _cluster_role("edit", None, labels={AGGREGATE_TO_ADMIN: "true"}, aggregate_label=AGGREGATE_TO_EDIT),
        _cluster_role("view", None, labels={AGGREGATE_TO_EDIT: "true"}, aggregate_label=AGGREGATE_TO_VIEW),
        _cluster_role("system:aggregate-to-admin", _aggregate_to_admin_rules(), labels={AGGREGATE_TO_ADMIN: "true"}),
        _cluster_role("system:aggregate-to-edit", _aggregate_to_edit_rules(), labels={AGGREGATE_TO_EDIT: "true"}),
        _cluster_role("system:aggregate-to-view", _aggregate_to_view_rules(), labels={AGGREGATE_TO_VIEW: "true"}),
        _cluster_role("system:auth-delegator", [
            _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
            _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
        ]),
        _cluster_role("system:service-account-issuer-discovery", [
            _rule(["get"], urls=["/.well-known/openid-configuration", "/openid/v1/jwks"])]),
        _cluster_role("system:node", node_rules()),
        *_certificate_roles(),
    ]


_CSR_GROUP = "certificates.k8s.io"
BUILTIN_SIGNERS = ("kubernetes.io/kube-apiserver-client", "kubernetes.io/kube-apiserver-client-kubelet",
                   "kubernetes.io/kubelet-serving", "kubernetes.io/legacy-unknown")
SELF_NODE_CLIENT = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
NODE_CLIENT = "system:certificates.k8s.io:certificatesigningrequests:nodeclient"
# The group of the bootstrap tokens `kubeadm token create` (and `kubesat kubeconfig --bootstrap`) makes.
KUBEADM_NODE_TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def _certificate_roles() -> list[dict[str, Any]]:
    """1.32's CSR roles: the bootstrapper's, the two the csrapproving controller checks, one approver per signer."""
    roles = [
        _cluster_role("system:node-bootstrapper", [
            _rule(["create", "get", "list", "watch"], [_CSR_GROUP], ["certificatesigningrequests"])]),
        _cluster_role("system:certificates.k8s.io:certificatesigningrequests:nodeclient", [
            _rule(["create"], [_CSR_GROUP], ["certificatesigningrequests/nodeclient"])]),
        _cluster_role(SELF_NODE_CLIENT, [
            _rule(["create"], [_CSR_GROUP], ["certificatesigningrequests/selfnodeclient"])]),
    ]
    for signer in BUILTIN_SIGNERS:
        roles.append(_cluster_role(f"system:certificates.k8s.io:{signer.split('/', 1)[1]}-approver", [
            _rule(["approve"], [_CSR_GROUP], ["signers"], names=[signer])]))
    return roles


def _binding(role: str, groups: list[str]) -> dict[str, Any]:
    return {
        "kind": "ClusterRoleBinding",
        "apiVersion": RBAC_API_VERSION,
        "metadata": {"name": role, "labels": dict(BOOTSTRAP_LABELS), "annotations": dict(BOOTSTRAP_ANNOTATIONS)},
        "subjects": [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": g} for g in groups],
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
    }


def cluster_role_bindings() -> list[dict[str, Any]]:
    """The bootstrap ClusterRoleBindings kubesat needs, as kube-apiserver 1.32 creates them."""
    return [
        _binding("cluster-admin", ["system:masters"]),
        _binding("system:discovery", ["system:authenticated"]),
        _binding("system:basic-user", ["system:authenticated"]),
        _binding("system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]),
        _binding("system:service-account-issuer-discovery", ["system:serviceaccounts"]),
        # Kept without subjects since the Node authorizer took over (1.8): nodes get system:node's rules from it.
        _subjectless(_binding("system:node", [])),
        # Not Kubernetes' own but what kubeadm adds (kubeadm:node-autoapprove-certificate-rotation): nodes'
        # renewals of their own client certificates are approved by the csrapproving controller.
        _binding_to("kubesat:node-autoapprove-certificate-rotation", SELF_NODE_CLIENT, ["system:nodes"]),
        # kubeadm's bindings for joining nodes: its bootstrap tokens' group may create CSRs, and their node
        # client CSRs are approved by the csrapproving controller.
        _binding_to("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", [KUBEADM_NODE_TOKEN_GROUP]),
        _binding_to("kubeadm:node-autoapprove-bootstrap", NODE_CLIENT, [KUBEADM_NODE_TOKEN_GROUP]),
    ]


def _binding_to(name: str, role: str, groups: list[str]) -> dict[str, Any]:
    binding = _binding(role, groups)
    binding["metadata"]["name"] = name
    return binding


def _subjectless(binding: dict[str, Any]) -> dict[str, Any]:
    binding.pop("subjects", None)
    return binding


# ------------------------------------------------------------------------------ reconciliation
def _protected(existing: dict[str, Any]) -> bool:
    return ((existing.get("metadata") or {}).get("annotations") or {}).get(AUTOUPDATE) == "false"


def _merge_metadata(out: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Add the desired labels and annotations to `out` (existing values win); True if anything changed."""
    changed = False
    meta = out.setdefault("metadata", {})
    for key in ("annotations", "labels"):
        want = (desired.get("metadata") or {}).get(key) or {}
        have = meta.get(key)
        merged = {**want, **(have or {})}
        if merged != (have or {}) or (have is None and want):
            meta[key] = merged
            changed = True
    return changed


def reconcile_cluster_role(existing: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any] | None:
    """The ClusterRole to write so `existing` grants at least `desired` (None: nothing to write).

    Mirrors Kubernetes' union-mode reconciliation: a missing role is created; a role annotated
    `autoupdate: "false"` is left alone; otherwise desired labels/annotations are added (existing
    values win), the atomic rules `existing` does not cover are appended (user rules are never
    removed), missing aggregation selectors are appended, and an aggregationRule on a role that
    should not aggregate is dropped.
    """
    if existing is None:
        return copy.deepcopy(desired)
    if _protected(existing):
        return None
    out = copy.deepcopy(existing)
    changed = _merge_metadata(out, desired)

    have_rules = [Rule.from_api(r) for r in existing.get("rules") or []]
    ok, missing = covers(have_rules, desired.get("rules") or [], compact=False)
    if not ok:
        out["rules"] = list(existing.get("rules") or []) + missing
        changed = True

    want_agg = desired.get("aggregationRule")
    have_agg = existing.get("aggregationRule")
    if want_agg is None and have_agg is not None:
        out.pop("aggregationRule", None)
        changed = True
    elif want_agg is not None:
        have_sel = list((have_agg or {}).get("clusterRoleSelectors") or [])
        extra = [s for s in want_agg.get("clusterRoleSelectors") or [] if s not in have_sel]
        if extra:
            out["aggregationRule"] = {**(have_agg or {}), "clusterRoleSelectors": have_sel + copy.deepcopy(extra)}
            changed = True
    return out if changed else None


def _subject_key(s: dict[str, Any]) -> tuple[str, str, str, str]:
    return (s.get("kind", ""), s.get("apiGroup", ""), s.get("name", ""), s.get("namespace", ""))


def reconcile_binding(existing: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any] | None:
    """The (Cluster)RoleBinding to write so `existing` binds at least `desired`'s subjects (None: nothing to write).

    A missing binding is created; `autoupdate: "false"` leaves it alone; otherwise missing labels,
    annotations and subjects are added. roleRef is immutable: when it differs Kubernetes deletes the
    binding and creates `desired` ("recreate"), so this returns a deep copy of `desired` with no
    resourceVersion and the caller must delete `existing` before creating it (check `roleRef`).
    """
    if existing is None:
        return copy.deepcopy(desired)
    if _protected(existing):
        return None
    if (existing.get("roleRef") or {}) != (desired.get("roleRef") or {}):
        return copy.deepcopy(desired)
    out = copy.deepcopy(existing)
    changed = _merge_metadata(out, desired)
    have = list(existing.get("subjects") or [])
    keys = {_subject_key(s) for s in have}
    missing = [copy.deepcopy(s) for s in desired.get("subjects") or [] if _subject_key(s) not in keys]
    if missing:
        out["subjects"] = have + missing
        changed = True
    return out if changed else None


def needs_recreate(existing: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether reconciling `existing` towards `desired` means delete-then-create (roleRef differs, not protected)."""
    return (existing is not None and not _protected(existing)
            and (existing.get("roleRef") or {}) != (desired.get("roleRef") or {}))
