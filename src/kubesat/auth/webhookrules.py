"""Which admission webhooks a request reaches: rules (operations, groups, versions, resources and subresources,
scope), matchPolicy Equivalent, the exempt kinds, and the namespace and object selectors, as pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubesat.registry.kinds import ResourceInfo
from kubesat.registry.podtemplate import selector_matches

ADMISSION_GROUP = "admissionregistration.k8s.io"
# Kubernetes never calls webhooks on writes of the objects that configure admission.
EXEMPT_RESOURCES = frozenset({
    "validatingwebhookconfigurations", "mutatingwebhookconfigurations",
    "validatingadmissionpolicies", "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies", "mutatingadmissionpolicybindings",
})


@dataclass(frozen=True)
class RequestResource:
    """What a rule is matched against: the group, version and resource a request names, and its subresource."""

    group: str
    version: str
    resource: str
    subresource: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    # (group, version) of the kind when it is not the resource's: a subresource's own (policy/v1 Eviction).
    kind_group_version: tuple[str, str] | None = None

    @classmethod
    def of(cls, res: ResourceInfo, subresource: str, namespace: str) -> RequestResource:
        """The resource of a request; the kind is the subresource's when it has one of its own."""
        sub = next((s for s in res.subresources if s.name == subresource), None) if subresource else None
        if sub is None or (sub.kind == res.kind and not sub.group and not sub.version):
            return cls(res.group, res.version, res.plural, subresource, res.kind, namespace)
        gv = (sub.group or res.group, sub.version or res.version) if sub.group or sub.version else None
        return cls(res.group, res.version, res.plural, subresource, sub.kind, namespace, gv)

    def gvk(self) -> dict[str, str]:
        group, version = self.kind_group_version or (self.group, self.version)
        return {"group": group, "version": version, "kind": self.kind}


def exempt(r: RequestResource) -> bool:
    return r.group == ADMISSION_GROUP and r.resource in EXEMPT_RESOURCES


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _resource_matches(patterns: list[Any], resource: str, subresource: str) -> bool:
    for p in patterns:
        p = str(p)
        if p == "*/*":
            return True
        if p == "*" and not subresource:
            return True
        res, _, sub = p.partition("/")
        if res in ("*", resource) and (sub == subresource or (sub == "*" and subresource)):
            return True
    return False


def _scope_matches(scope: str, r: RequestResource) -> bool:
    is_namespace = r.group == "" and r.resource == "namespaces"
    if scope == "Namespaced":
        return bool(r.namespace) and not is_namespace
    if scope == "Cluster":
        return not r.namespace or is_namespace
    return True


def rule_matches(rule: dict[str, Any], operation: str, r: RequestResource) -> bool:
    """One RuleWithOperations against an operation on a (group, version, resource, subresource)."""
    ops = _l(rule.get("operations"))
    if "*" not in ops and operation not in ops:
        return False
    groups, versions = _l(rule.get("apiGroups")), _l(rule.get("apiVersions"))
    if "*" not in groups and r.group not in groups:
        return False
    if "*" not in versions and r.version not in versions:
        return False
    if not _resource_matches(_l(rule.get("resources")), r.resource, r.subresource):
        return False
    return _scope_matches(str(rule.get("scope") or "*"), r)


def hook_matches(hook: dict[str, Any], operation: str, r: RequestResource) -> bool:
    return any(rule_matches(rule, operation, r) for rule in _l(hook.get("rules")) if isinstance(rule, dict))


def matching_resource(hook: dict[str, Any], operation: str, r: RequestResource,
                      equivalents: list[RequestResource]) -> RequestResource | None:
    """The resource the hook matched: the request's own, else (matchPolicy Equivalent) the first equivalent
    resource (another version of the same group and resource) its rules name; None when it does not match."""
    if hook_matches(hook, operation, r):
        return r
    if hook.get("matchPolicy", "Equivalent") != "Equivalent":
        return None
    return next((e for e in equivalents if hook_matches(hook, operation, e)), None)


def selector_is_everything(selector: Any) -> bool:
    return not isinstance(selector, dict) or (not selector.get("matchLabels") and not selector.get("matchExpressions"))


def labels_of(obj: dict[str, Any] | None) -> dict[str, str]:
    labels = ((obj or {}).get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def object_selector_matches(hook: dict[str, Any], obj: dict[str, Any] | None, old: dict[str, Any] | None) -> bool:
    """objectSelector: the new or the old object's labels (with neither object, no match)."""
    sel = hook.get("objectSelector")
    if selector_is_everything(sel):
        return True
    return any(selector_matches(sel, labels_of(o)) for o in (obj, old) if o is not None)
