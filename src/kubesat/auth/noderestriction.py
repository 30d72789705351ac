"""NodeRestriction admission: what a node may write, checked on the objects themselves.

The Node authorizer lets a node create and update Nodes, Leases, mirror pods, pod status and tokens
without knowing whose they are; these checks keep each node to its own, with Kubernetes' messages
(403 `<resource> "<name>" is forbidden: <why>`). Pure functions over dicts; the server wires them in.
"""

from __future__ import annotations

from typing import Any

from kubesat import errors
from kubesat.auth.admission import MIRROR_POD_ANNOTATION, pod_secret_names
from kubesat.auth.node import NODE_LEASE_NAMESPACE, pod_configmap_names

NODE_RESTRICTION_LABEL_DOMAIN = "node-restriction.kubernetes.io"

# Labels a kubelet may set on its own Node (k8s.io/kubelet's well-known kubelet labels).
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
})
KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _name(obj: dict[str, Any]) -> str:
    return _d(obj.get("metadata")).get("name") or ""


def _spec_node(pod: dict[str, Any] | None) -> str:
    return _d(_d(pod).get("spec")).get("nodeName") or ""


# ---------------------------------------------------------------------------------------- labels
def _label_domain(key: str) -> str:
    domain, sep, _ = key.partition("/")
    return domain if sep else ""


def _in_domain(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def is_kubelet_label(key: str) -> bool:
    return key in KUBELET_LABELS or any(_in_domain(_label_domain(key), d) for d in KUBELET_LABEL_DOMAINS)


def modified_labels(new: dict[str, str] | None, old: dict[str, str] | None) -> set[str]:
    new, old = new or {}, old or {}
    return {k for k in new.keys() | old.keys() if new.get(k) != old.get(k) or (k in new) != (k in old)}


def forbidden_labels(keys: set[str]) -> list[str]:
    """Of the labels a node adds, changes or removes, those it may not: node-restriction.kubernetes.io ones, and
    kubernetes.io / k8s.io ones other than the kubelet's own. Sorted, as Kubernetes lists them."""
    out = set()
    for key in keys:
        domain = _label_domain(key)
        if _in_domain(domain, NODE_RESTRICTION_LABEL_DOMAIN):
            out.add(key)
        kubernetes = _in_domain(domain, "kubernetes.io") or _in_domain(domain, "k8s.io")
        if kubernetes and not is_kubelet_label(key):
            out.add(key)
    return sorted(out)


# ------------------------------------------------------------------------------------------ checks
def check_node(node: str, name: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    """A node writes only its own Node; never a configSource, never its taints after creation, and only the
    labels a kubelet may set. `new` None: a delete."""
    if name != node:
        raise errors.forbidden("nodes", name, f'node "{node}" is not allowed to modify node "{name}"')
    if new is None:
        return
    spec, labels = _d(new.get("spec")), _d(new.get("metadata")).get("labels")
    if old is None:
        if spec.get("configSource") is not None:
            raise errors.forbidden("nodes", name,
                                   f'node "{node}" is not allowed to create pods with a non-nil configSource')
        bad = forbidden_labels(modified_labels(labels, None))
        if bad:
            raise errors.forbidden("nodes", name,
                                   f'node "{node}" is not allowed to set the following labels: {", ".join(bad)}')
        return
    old_spec = _d(old.get("spec"))
    if spec.get("configSource") is not None and spec.get("configSource") != old_spec.get("configSource"):
        raise errors.forbidden("nodes", name,
                               f'node "{node}" is not allowed to update configSource to a new non-nil configSource')
    if (spec.get("taints") or None) != (old_spec.get("taints") or None):
        raise errors.forbidden("nodes", name, f'node "{node}" is not allowed to modify taints')
    bad = forbidden_labels(modified_labels(labels, _d(old.get("metadata")).get("labels")))
    if bad:
        # Kubernetes words this one without the node's name.
        raise errors.forbidden("nodes", name, f"is not allowed to modify labels: {', '.join(bad)}")


def check_lease(namespace: str, name: str, node: str) -> None:
    if namespace != NODE_LEASE_NAMESPACE:
        raise errors.forbidden("leases", name,
                               f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace',
                               "coordination.k8s.io")
    if name != node:
        raise errors.forbidden("leases", name, "can only access node lease with the same name as the requesting node",
                               "coordination.k8s.io")


def check_pod_status_update(node: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    name = _name(old)
    if _spec_node(old) != node:
        raise errors.forbidden("pods", name,
                               f'node "{node}" can only update pod status for pods with spec.nodeName set to itself')
    if (_d(old.get("metadata")).get("labels") or {}) != (_d(new.get("metadata")).get("labels") or {}):
        raise errors.forbidden("pods", name, f'node "{node}" cannot update labels through pod status')
    claims = [(_d(s).get("name"), _d(s).get("resourceClaimName"))
              for s in _l(_d(old.get("status")).get("resourceClaimStatuses"))]
    if claims != [(_d(s).get("name"), _d(s).get("resourceClaimName"))
                  for s in _l(_d(new.get("status")).get("resourceClaimStatuses"))]:
        raise errors.forbidden("pods", name, f'node "{node}" cannot update resource claim statues')


def check_pod_delete(node: str, pod: dict[str, Any]) -> None:
    if _spec_node(pod) != node:
        raise errors.forbidden("pods", _name(pod),
                               f'node "{node}" can only delete pods with spec.nodeName set to itself')


def check_mirror_pod_create(node: str, pod: dict[str, Any], node_uid: str | None) -> None:
    """A node creates only mirror pods of its own static pods: bound to itself, owned by its Node (by UID), and
    referring to no other API object. `node_uid` None: the Node does not exist (404)."""
    name = _name(pod) or _d(pod.get("metadata")).get("generateName") or ""

    def refuse(why: str) -> errors.StatusError:
        return errors.forbidden("pods", name, why)

    meta = _d(pod.get("metadata"))
    if MIRROR_POD_ANNOTATION not in _d(meta.get("annotations")):
        raise refuse(f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, node "{node}" can only create '
                     "mirror pods")
    if _spec_node(pod) != node:
        raise refuse(f'node "{node}" can only create pods with spec.nodeName set to itself')
    owners = _l(meta.get("ownerReferences"))
    if len(owners) > 1:
        raise refuse(f'node "{node}" can only create pods with a single owner reference set to itself')
    owner = _d(owners[0]) if owners else {}
    if not owners or owner.get("apiVersion") != "v1" or owner.get("kind") != "Node" or owner.get("name") != node:
        raise refuse(f'node "{node}" can only create pods with an owner reference set to itself')
    if owner.get("controller") is not True:
        raise refuse(f'node "{node}" can only create pods with a controller owner reference set to itself')
    if owner.get("blockOwnerDeletion") is True:
        raise refuse(f'node "{node}" must not set blockOwnerDeletion on an owner reference')
    if node_uid is None:
        raise errors.not_found("nodes", node)
    if owner.get("uid") != node_uid:
        raise refuse(f"node {node} UID mismatch: expected {owner.get('uid') or ''} got {node_uid}")
    spec = _d(pod.get("spec"))
    if spec.get("serviceAccountName"):
        raise refuse(f'node "{node}" can not create pods that reference a service account')
    if pod_secret_names(pod):
        raise refuse(f'node "{node}" can not create pods that reference secrets')
    if pod_configmap_names(pod):
        raise refuse(f'node "{node}" can not create pods that reference configmaps')
    volumes = [_d(v) for v in _l(spec.get("volumes"))]
    if any(_d(s).get("clusterTrustBundle") is not None for v in volumes
           for s in _l(_d(v.get("projected")).get("sources"))):
        raise refuse(f'node "{node}" can not create pods that reference clustertrustbundles')
    if any(v.get("persistentVolumeClaim") is not None for v in volumes):
        raise refuse(f'node "{node}" can not create pods that reference persistentvolumeclaims')


def token_request_pod(sa_name: str, body: dict[str, Any]) -> tuple[str, str]:
    """The (name, uid) of the pod a node's TokenRequest must be bound to; 403 when it is bound to none."""
    ref = _d(_d(body.get("spec")).get("boundObjectRef"))
    if not ref or ref.get("apiVersion") != "v1" or ref.get("kind") != "Pod" or not ref.get("name"):
        raise errors.forbidden("serviceaccounts", sa_name, "node requested token not bound to a pod")
    if not ref.get("uid"):
        raise errors.forbidden("serviceaccounts", sa_name, "node requested token with a pod binding without a uid")
    return str(ref["name"]), str(ref["uid"])


def check_token_request_pod(node: str, sa_name: str, uid: str, pod: dict[str, Any]) -> None:
    if uid != _d(pod.get("metadata")).get("uid"):
        raise errors.forbidden("serviceaccounts", sa_name,
                               f"the UID in the bound object reference ({uid}) does not match the UID in record. "
                               "The object might have been deleted and then recreated")
    if _spec_node(pod) != node:
        raise errors.forbidden("serviceaccounts", sa_name, "node requested token bound to a pod scheduled on a "
                                                           "different node")


def unexpected_pod_write(node: str, name: str, subresource: str, operation: str) -> errors.StatusError:
    """What a node is told for pod writes outside mirror pods, status and eviction."""
    if subresource:
        why = f"unexpected pod subresource \"{subresource}\", only 'status' and 'eviction' are allowed"
        return errors.forbidden("pods", name, why)
    return errors.forbidden("pods", name,
                            f'unexpected operation "{operation}", node "{node}" can only create and delete mirror pods')
