"""The Node authorizer: what a kubelet (user `system:node:<name>` in group `system:nodes`) may do.

As kube-apiserver's `--authorization-mode=Node,RBAC`: a node reads only the Secrets, ConfigMaps,
PersistentVolumeClaims, PersistentVolumes and ResourceClaims that pods bound to it use, creates
tokens only for their ServiceAccounts, touches only its own Node and Lease, and gets the rest of
the `system:node` ClusterRole outright; everything else is "no opinion", left to RBAC. Which
objects a node can reach is a graph kept current from store events (pods, by `spec.nodeName`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubesat.auth.admission import container_env_refs, pod_secret_names
from kubesat.auth.authz import ALLOW, NO_OPINION, Attributes, Authorizer
from kubesat.auth.bootstrap_policy import node_rules
from kubesat.auth.rbac import Rule, rules_allow
from kubesat.auth.user import UserInfo

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"

# Vertex kinds of the graph: the resource a request names, for the kinds a pod refers to.
SECRET = "secrets"
CONFIGMAP = "configmaps"
PVC = "persistentvolumeclaims"
PV = "persistentvolumes"
RESOURCE_CLAIM = "resourceclaims"
SERVICE_ACCOUNT = "serviceaccounts"
POD = "pods"
VOLUME_ATTACHMENT = "volumeattachments"

Ref = tuple[str, str, str]  # (vertex kind, namespace, name)


def node_identity(user: UserInfo) -> tuple[str, bool]:
    """(node name, is a node), as Kubernetes' default node identifier reads a user: the name prefix and the group."""
    if not user.name.startswith(NODE_USER_PREFIX) or NODES_GROUP not in user.groups:
        return "", False
    return user.name[len(NODE_USER_PREFIX):], True


# ----------------------------------------------------------------------------- pod references
def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def pod_configmap_names(pod: dict[str, Any]) -> list[str]:
    """Every ConfigMap a pod refers to (Kubernetes' VisitPodConfigmapNames, all container kinds)."""
    spec = _d(pod.get("spec"))
    out = container_env_refs(spec, "configMapRef", "configMapKeyRef")
    for v in _l(spec.get("volumes")):
        v = _d(v)
        if isinstance(v.get("configMap"), dict):
            out.append(v["configMap"].get("name") or "")
        for src in _l(_d(v.get("projected")).get("sources")):
            cm = _d(src).get("configMap")
            if isinstance(cm, dict):
                out.append(cm.get("name") or "")
    return out


def _pvc_names(pod: dict[str, Any]) -> list[str]:
    """Claims a pod's volumes use; an ephemeral volume's claim is named `<pod>-<volume>`."""
    pod_name = _d(pod.get("metadata")).get("name") or ""
    out = []
    for v in _l(_d(pod.get("spec")).get("volumes")):
        v = _d(v)
        claim = _d(v.get("persistentVolumeClaim")).get("claimName")
        if claim:
            out.append(claim)
        elif isinstance(v.get("ephemeral"), dict):
            out.append(f"{pod_name}-{v.get('name') or ''}")
    return out


def _resource_claim_names(pod: dict[str, Any]) -> list[str]:
    """Claims a pod names directly, or was given from a template (recorded in its status)."""
    generated = {_d(s).get("name"): _d(s).get("resourceClaimName")
                 for s in _l(_d(pod.get("status")).get("resourceClaimStatuses"))}
    out = []
    for c in _l(_d(pod.get("spec")).get("resourceClaims")):
        c = _d(c)
        name = c.get("resourceClaimName") or (generated.get(c.get("name")) if c.get("resourceClaimTemplateName")
                                              else None)
        if name:
            out.append(name)
    return out


def pod_references(pod: dict[str, Any]) -> frozenset[Ref]:
    """The objects a pod gives its node a path to: itself, its ServiceAccount, Secrets, ConfigMaps, claims."""
    meta = _d(pod.get("metadata"))
    ns = meta.get("namespace") or ""
    refs: set[Ref] = {(POD, ns, meta.get("name") or "")}
    sa = _d(pod.get("spec")).get("serviceAccountName")
    if sa:
        refs.add((SERVICE_ACCOUNT, ns, sa))
    for kind, names in ((SECRET, pod_secret_names(pod)), (CONFIGMAP, pod_configmap_names(pod)),
                        (PVC, _pvc_names(pod)), (RESOURCE_CLAIM, _resource_claim_names(pod))):
        refs.update((kind, ns, n) for n in names if n)
    return frozenset(refs)


# ------------------------------------------------------------------------------------ the graph
@dataclass(frozen=True, slots=True)
class _PodEdges:
    node: str
    refs: frozenset[Ref]


class NodeGraph:
    """For each node, how many of its pods reach each object: a pod put, moved or deleted changes the
    answer for the very next request (no cache stands between the graph and a decision)."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], _PodEdges] = {}
        self._reach: dict[str, dict[Ref, int]] = {}
        # pvc -> pv edges (a claim's spec.volumeName), and each volume's claims: a node reaches a volume
        # through a claim its pods use.
        self._claim_volume: dict[tuple[str, str], str] = {}
        self._volume_claims: dict[str, set[tuple[str, str]]] = {}
        # Writes may run on worker threads while the event loop decides.
        self._lock = threading.Lock()

    def put_pod(self, pod: dict[str, Any]) -> None:
        meta = _d(pod.get("metadata"))
        key = (meta.get("namespace") or "", meta.get("name") or "")
        node = _d(pod.get("spec")).get("nodeName") or ""
        edges = _PodEdges(node, pod_references(pod)) if node else None
        with self._lock:
            old = self._pods.get(key)
            if old == edges:
                return
            if old is not None:
                self._unlink(old)
                del self._pods[key]
            if edges is not None:  # an unscheduled pod leads to no node
                self._pods[key] = edges
                reach = self._reach.setdefault(edges.node, {})
                for ref in edges.refs:
                    reach[ref] = reach.get(ref, 0) + 1

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            old = self._pods.pop((namespace, name), None)
            if old is not None:
                self._unlink(old)

    def _unlink(self, edges: _PodEdges) -> None:
        reach = self._reach.get(edges.node)
        if reach is None:
            return
        for ref in edges.refs:
            n = reach.get(ref, 0) - 1
            if n > 0:
                reach[ref] = n
            else:
                reach.pop(ref, None)
        if not reach:
            del self._reach[edges.node]

    def put_claim(self, pvc: dict[str, Any]) -> None:
        """Record the volume a PersistentVolumeClaim is bound to (none yet: no edge)."""
        meta = _d(pvc.get("metadata"))
        key = (meta.get("namespace") or "", meta.get("name") or "")
        volume = str(_d(pvc.get("spec")).get("volumeName") or "")
        with self._lock:
            if self._claim_volume.get(key, "") == volume:
                return
            self._unlink_claim(key)
            if volume:
                self._claim_volume[key] = volume
                self._volume_claims.setdefault(volume, set()).add(key)

    def delete_claim(self, namespace: str, name: str) -> None:
        with self._lock:
            self._unlink_claim((namespace, name))

    def _unlink_claim(self, key: tuple[str, str]) -> None:
        volume = self._claim_volume.pop(key, None)
        if volume is None:
            return
        claims = self._volume_claims.get(volume)
        if claims is not None:
            claims.discard(key)
            if not claims:
                del self._volume_claims[volume]

    def has_path(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """Whether a pod bound to `node` refers to the object (a volume: through a claim bound to it)."""
        with self._lock:
            reach = self._reach.get(node)
            if reach is None:
                return False
            if kind == PV:
                return any((PVC, ns, claim) in reach for ns, claim in self._volume_claims.get(name, ()))
            return (kind, namespace, name) in reach

    def pods_on(self, node: str) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(k for k, e in self._pods.items() if e.node == node)

    def load(self, pods: Iterable[dict[str, Any]]) -> None:
        for p in pods:
            self.put_pod(p)


# ---------------------------------------------------------------------------- the authorizer
def _no_relationship(node: str) -> tuple[str, str]:
    return NO_OPINION, f"no relationship found between node '{node}' and this object"


def exact_fields(raw: str) -> dict[str, str]:
    """The `field=value` (or `==`) terms of a field selector; `!=` terms constrain nothing a node may rely on."""
    out: dict[str, str] = {}
    for term in raw.split(","):
        if "!=" in term:
            continue
        field, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep:
            out[field.strip()] = value.strip()
    return out


def _object_name(attrs: Attributes) -> str:
    """The request's object name; a list or watch of one object names it with a metadata.name field selector
    (kube-apiserver reads it into the request's name)."""
    if attrs.name or attrs.verb not in ("list", "watch") or not attrs.field_selector:
        return attrs.name
    return exact_fields(attrs.field_selector).get("metadata.name", "")


class NodeAuthorizer:
    """`Node` then the next authorizer (RBAC), as kube-apiserver's union of `--authorization-mode=Node,RBAC`:
    the first allow wins; when neither allows, their reasons are joined by newlines."""

    def __init__(self, graph: NodeGraph, fallback: Authorizer) -> None:
        self.graph = graph
        self.fallback = fallback
        self.rules = tuple(Rule.from_api(r) for r in node_rules())

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        # The cheap test first: anyone who is not a node goes straight to RBAC.
        if not attrs.user.name.startswith(NODE_USER_PREFIX):
            return self.fallback.authorize(attrs)
        node, is_node = node_identity(attrs.user)
        if not is_node:
            return self.fallback.authorize(attrs)
        decision, reason = self.decide(node, attrs)
        if decision != NO_OPINION:
            return decision, reason
        decision, other = self.fallback.authorize(attrs)
        if decision != NO_OPINION:
            return decision, other
        return NO_OPINION, "\n".join(r for r in (reason, other) if r)

    def decide(self, node: str, attrs: Attributes) -> tuple[str, str]:
        """The Node authorizer alone: allow, or no opinion with Kubernetes' reason."""
        if not node:
            return NO_OPINION, f'unknown node for user "{attrs.user.name}"'
        if attrs.resource_request:
            decide = _BY_RESOURCE.get((attrs.api_group, attrs.resource))
            if decide is not None:
                return decide(self, node, attrs)
        if rules_allow(self.rules, attrs):
            return ALLOW, ""
        return NO_OPINION, ""

    # --- graph-limited kinds ---
    def _related(self, node: str, kind: str, attrs: Attributes) -> tuple[str, str]:
        name = _object_name(attrs)
        if not name:
            return NO_OPINION, "No Object name found"
        if self.graph.has_path(node, kind, attrs.namespace, name):
            return ALLOW, ""
        return _no_relationship(node)

    def _read_namespaced(self, node: str, attrs: Attributes, kind: str) -> tuple[str, str]:
        if attrs.verb not in ("get", "list", "watch"):
            return NO_OPINION, "can only read resources of this type"
        if attrs.subresource:
            return NO_OPINION, "cannot read subresource"
        if not attrs.namespace:
            return NO_OPINION, "can only read namespaced object of this type"
        return self._related(node, kind, attrs)

    def _get(self, node: str, attrs: Attributes, kind: str) -> tuple[str, str]:
        if attrs.verb != "get":
            return NO_OPINION, "can only get individual resources of this type"
        if attrs.subresource:
            return NO_OPINION, "cannot get subresource"
        return self._related(node, kind, attrs)

    def _secret(self, node: str, attrs: Attributes) -> tuple[str, str]:
        return self._read_namespaced(node, attrs, SECRET)

    def _configmap(self, node: str, attrs: Attributes) -> tuple[str, str]:
        return self._read_namespaced(node, attrs, CONFIGMAP)

    def _pvc(self, node: str, attrs: Attributes) -> tuple[str, str]:
        if attrs.subresource == "status":
            if attrs.verb not in ("update", "patch"):
                return NO_OPINION, "can only get/update/patch this type"
            return self._related(node, PVC, attrs)
        return self._get(node, attrs, PVC)

    def _pv(self, node: str, attrs: Attributes) -> tuple[str, str]:
        return self._get(node, attrs, PV)

    def _resource_claim(self, node: str, attrs: Attributes) -> tuple[str, str]:
        return self._get(node, attrs, RESOURCE_CLAIM)

    def _volume_attachment(self, node: str, attrs: Attributes) -> tuple[str, str]:
        return self._get(node, attrs, VOLUME_ATTACHMENT)

    def _service_account(self, node: str, attrs: Attributes) -> tuple[str, str]:
        if attrs.verb != "create" or not attrs.name:
            return NO_OPINION, "can only create tokens for individual service accounts"
        if attrs.subresource != "token":
            return NO_OPINION, "can only create token subresource of serviceaccount"
        if self.graph.has_path(node, SERVICE_ACCOUNT, attrs.namespace, attrs.name):
            return ALLOW, ""
        return _no_relationship(node)

    # --- kinds limited by name (NodeRestriction checks the bodies) ---
    def _lease(self, node: str, attrs: Attributes) -> tuple[str, str]:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return NO_OPINION, "can only get, create, update, patch, or delete a node lease"
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            return NO_OPINION, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
        # A create names no object in its path: NodeRestriction checks the body's name.
        if attrs.verb != "create" and attrs.name != node:
            return NO_OPINION, "can only access node lease with the same name as the requesting node"
        return ALLOW, ""

    def _csinode(self, node: str, attrs: Attributes) -> tuple[str, str]:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return NO_OPINION, "can only get, create, update, patch, or delete a CSINode"
        if attrs.subresource:
            return NO_OPINION, "cannot authorize CSINode subresources"
        if attrs.verb != "create" and attrs.name != node:
            return NO_OPINION, "can only access CSINode with the same name as the requesting node"
        return ALLOW, ""

    def _node(self, node: str, attrs: Attributes) -> tuple[str, str]:
        verb = attrs.verb
        if not attrs.subresource:
            if verb in ("create", "update", "patch"):
                return ALLOW, ""  # NodeRestriction keeps a node to its own Node object
            if verb in ("get", "list", "watch"):
                # By name, not through the graph, so that a kubelet can look for its Node before creating it.
                name = _object_name(attrs)
                if name == node:
                    return ALLOW, ""
                if not name:
                    return NO_OPINION, f"node '{node}' cannot read all nodes, only its own Node object"
                return NO_OPINION, f"node '{node}' cannot read '{name}', only its own Node object"
        elif attrs.subresource == "status" and verb in ("update", "patch"):
            return ALLOW, ""
        return NO_OPINION, ""

    def _pod(self, node: str, attrs: Attributes) -> tuple[str, str]:
        verb, sub = attrs.verb, attrs.subresource
        if not sub:
            if verb == "get":
                return self._get(node, attrs, POD)
            if verb in ("list", "watch"):
                if exact_fields(attrs.field_selector).get("spec.nodeName") == node:
                    return ALLOW, ""
                if _object_name(attrs):
                    return self._related(node, POD, attrs)
                return NO_OPINION, "can only list/watch pods with spec.nodeName field selector"
            if verb in ("create", "delete"):
                return ALLOW, ""  # mirror pods; NodeRestriction keeps them to this node
        elif (sub == "status" and verb in ("update", "patch")) or (sub == "eviction" and verb == "create"):
            return ALLOW, ""
        return NO_OPINION, ""


_BY_RESOURCE = {
    ("", "secrets"): NodeAuthorizer._secret,
    ("", "configmaps"): NodeAuthorizer._configmap,
    ("", "persistentvolumeclaims"): NodeAuthorizer._pvc,
    ("", "persistentvolumes"): NodeAuthorizer._pv,
    ("resource.k8s.io", "resourceclaims"): NodeAuthorizer._resource_claim,
    ("storage.k8s.io", "volumeattachments"): NodeAuthorizer._volume_attachment,
    ("", "serviceaccounts"): NodeAuthorizer._service_account,
    ("coordination.k8s.io", "leases"): NodeAuthorizer._lease,
    ("storage.k8s.io", "csinodes"): NodeAuthorizer._csinode,
    ("", "nodes"): NodeAuthorizer._node,
    ("", "pods"): NodeAuthorizer._pod,
}

RULES_NOT_ENUMERATED = "node authorizer does not support user rule resolution"
