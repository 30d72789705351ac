"""RBAC: rule matching, subject matching and an authorizer over an in-memory index of roles and bindings.

The index is fed by store events (see `RBACCache`), so a decision reads only the bindings of the
request's namespace and the cluster bindings that name one of the user's subjects: the cost does
not grow with the number of objects elsewhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubesat.auth.authz import ALLOW, NO_OPINION, Attributes
from kubesat.auth.user import MASTERS, UserInfo
from kubesat.apimachinery.selectors import labels_match, selector_from_label_selector_object

RBAC_GROUP = "rbac.authorization.k8s.io"
SA_PREFIX = "system:serviceaccount:"


# ----------------------------------------------------------------------------- rule matching
@dataclass(frozen=True, slots=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    resource_names: frozenset[str]
    non_resource_urls: tuple[str, ...]
    raw: dict[str, Any] = field(compare=False, hash=False, default_factory=dict)

    @classmethod
    def from_api(cls, r: dict[str, Any]) -> Rule:
        return cls(
            frozenset(r.get("verbs") or ()),
            frozenset(r.get("apiGroups") or ()),
            frozenset(r.get("resources") or ()),
            frozenset(r.get("resourceNames") or ()),
            tuple(r.get("nonResourceURLs") or ()),
            r,
        )

    def allows(self, attrs: Attributes) -> bool:
        if "*" not in self.verbs and attrs.verb not in self.verbs:
            return False
        if attrs.resource_request:
            return (
                self._group_ok(attrs.api_group)
                and self._resource_ok(attrs.resource, attrs.subresource)
                and self._name_ok(attrs.name)
            )
        return self._url_ok(attrs.path)

    def _group_ok(self, group: str) -> bool:
        return "*" in self.api_groups or group in self.api_groups

    def _resource_ok(self, resource: str, sub: str) -> bool:
        res = self.resources
        if "*" in res:
            return True
        if not sub:
            return resource in res
        return f"{resource}/{sub}" in res or f"*/{sub}" in res

    def _name_ok(self, name: str) -> bool:
        if not self.resource_names:
            return True
        return name in self.resource_names

    def _url_ok(self, path: str) -> bool:
        for u in self.non_resource_urls:
            if u == "*" or u == path:
                return True
            if u.endswith("*") and path.startswith(u[:-1]):
                return True
        return False


def rules_allow(rules: Iterable[Rule], attrs: Attributes) -> bool:
    return any(r.allows(attrs) for r in rules)


# -------------------------------------------------------------------------- subject matching
def subject_keys(user: UserInfo) -> list[tuple[str, str, str]]:
    """The (kind, namespace, name) subject keys a user matches, for index lookups."""
    keys = [("User", "", user.name)]
    keys += [("Group", "", g) for g in user.groups]
    if user.name.startswith(SA_PREFIX):
        rest = user.name[len(SA_PREFIX):]
        ns, sep, name = rest.partition(":")
        if sep and ns and name and ":" not in name:
            keys.append(("ServiceAccount", ns, name))
    return keys


def binding_subject_keys(binding: dict[str, Any]) -> list[tuple[str, str, str]]:
    ns = binding.get("metadata", {}).get("namespace", "")
    out = []
    for s in binding.get("subjects") or []:
        kind = s.get("kind", "")
        if kind == "ServiceAccount":
            out.append(("ServiceAccount", s.get("namespace") or ns, s.get("name", "")))
        elif kind in ("User", "Group"):
            out.append((kind, "", s.get("name", "")))
    return out


# ------------------------------------------------------------------------------- the index
def _changes(update: Callable[..., None]) -> Callable[..., None]:
    """An index update that bumps the index's generation once it is done, so that a decision made
    while it ran is never remembered as current."""
    @functools.wraps(update)
    def run(self: RBACIndex, *args: Any) -> None:
        try:
            update(self, *args)
        finally:
            self.generation += 1
    return run


@dataclass
class _Binding:
    namespace: str  # "" for ClusterRoleBindings
    name: str
    role_kind: str
    role_name: str
    subjects: tuple[tuple[str, str, str], ...] = ()


class RBACIndex:
    """Roles, ClusterRoles and bindings, indexed by namespace and subject."""

    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], tuple[Rule, ...]] = {}  # (ns, name) -> rules
        self.cluster_roles: dict[str, tuple[Rule, ...]] = {}
        self.cluster_role_objs: dict[str, dict[str, Any]] = {}
        self.aggregated: dict[str, tuple[Rule, ...]] = {}  # aggregationRule result cache
        # subject key -> bindings, per namespace ("" = cluster bindings)
        self.by_subject: dict[str, dict[tuple[str, str, str], dict[str, _Binding]]] = {}
        self.binding_keys: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        # Bumped by every update, so that whoever remembers a decision knows when to forget it.
        self.generation = 0

    # --- updates (called from store events) ---
    @_changes
    def put_role(self, obj: dict[str, Any]) -> None:
        m = obj["metadata"]
        self.roles[(m.get("namespace", ""), m["name"])] = tuple(Rule.from_api(r) for r in obj.get("rules") or [])

    @_changes
    def delete_role(self, namespace: str, name: str) -> None:
        self.roles.pop((namespace, name), None)

    @_changes
    def put_cluster_role(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        self.cluster_roles[name] = tuple(Rule.from_api(r) for r in obj.get("rules") or [])
        self.cluster_role_objs[name] = obj
        self.aggregated.clear()

    @_changes
    def delete_cluster_role(self, name: str) -> None:
        self.cluster_roles.pop(name, None)
        self.cluster_role_objs.pop(name, None)
        self.aggregated.clear()

    @_changes
    def put_binding(self, obj: dict[str, Any]) -> None:
        m = obj["metadata"]
        ns = m.get("namespace", "")
        self.delete_binding(ns, m["name"])
        ref = obj.get("roleRef") or {}
        keys = binding_subject_keys(obj)
        b = _Binding(ns, m["name"], ref.get("kind", ""), ref.get("name", ""), tuple(keys))
        per_ns = self.by_subject.setdefault(ns, {})
        for k in keys:
            per_ns.setdefault(k, {})[m["name"]] = b
        self.binding_keys[(ns, m["name"])] = keys

    @_changes
    def delete_binding(self, namespace: str, name: str) -> None:
        keys = self.binding_keys.pop((namespace, name), None)
        if not keys:
            return
        per_ns = self.by_subject.get(namespace, {})
        for k in keys:
            d = per_ns.get(k)
            if d is not None:
                d.pop(name, None)
                if not d:
                    del per_ns[k]

    # --- reads ---
    def cluster_role_rules(self, name: str) -> tuple[Rule, ...]:
        obj = self.cluster_role_objs.get(name)
        if obj is not None and obj.get("aggregationRule"):
            cached = self.aggregated.get(name)
            if cached is None:
                cached = self._aggregate(obj)
                self.aggregated[name] = cached
            return cached
        return self.cluster_roles.get(name, ())

    def _aggregate(self, obj: dict[str, Any], visiting: frozenset[str] = frozenset()) -> tuple[Rule, ...]:
        """An aggregated ClusterRole's rules: its own plus those of every ClusterRole its selectors match.

        Aggregation nests (admin selects edit, which selects view), so selected roles contribute their
        own aggregated rules; `visiting` breaks cycles.
        """
        me = obj["metadata"]["name"]
        visiting = visiting | {me}
        # An aggregated role's own `rules` are what the aggregation last wrote there, so only the
        # selected roles count (as Kubernetes' aggregation controller overwrites them).
        rules: list[Rule] = []
        seen: set[Rule] = set()
        selectors = [selector_from_label_selector_object(s)
                     for s in (obj.get("aggregationRule") or {}).get("clusterRoleSelectors") or []]
        for other_name, other in sorted(self.cluster_role_objs.items()):
            if other_name in visiting:
                continue
            labels = other.get("metadata", {}).get("labels") or {}
            if any(sel and labels_match(sel, labels) for sel in selectors):
                nested = self._aggregate(other, visiting) if other.get("aggregationRule") \
                    else self.cluster_roles.get(other_name, ())
                for r in nested:
                    if r not in seen:
                        seen.add(r)
                        rules.append(r)
        return tuple(rules)

    def role_rules(self, b: _Binding) -> tuple[Rule, ...]:
        if b.role_kind == "ClusterRole":
            return self.cluster_role_rules(b.role_name)
        if b.role_kind == "Role" and b.namespace:
            return self.roles.get((b.namespace, b.role_name), ())
        return ()

    def bindings_for(self, user: UserInfo, namespace: str) -> Iterable[_Binding]:
        keys = subject_keys(user)
        cluster = self.by_subject.get("", {})
        for k in keys:
            for b in cluster.get(k, {}).values():
                yield b
        if namespace:
            per_ns = self.by_subject.get(namespace, {})
            for k in keys:
                for b in per_ns.get(k, {}).values():
                    yield b

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        """Every rule the user holds in `namespace` (cluster-wide rules included)."""
        out: list[Rule] = []
        for b in self.bindings_for(user, namespace):
            out.extend(self.role_rules(b))
        return out


# Decisions remembered at most; past this the memory starts over (an identity can vary the
# attributes of its requests at will, so the memory must not grow with them).
MAX_REMEMBERED_DECISIONS = 4096

_DecisionKey = tuple[str, tuple[str, ...], str, bool, str, str, str, str, str, str]


class RBACAuthorizer:
    """Kubernetes' authorizer chain for kubesat: system:masters first, then RBAC; no opinion means deny.

    A decision depends only on the user's name and groups, the request's attributes and the index,
    so decisions are remembered until the index next changes: a client repeating one request (a
    controller's list, a TokenReview webhook) is decided once per RBAC change.
    """

    def __init__(self, index: RBACIndex) -> None:
        self.index = index
        self._decisions: dict[_DecisionKey, tuple[str, str]] = {}
        self._generation = index.generation

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        user = attrs.user
        if MASTERS in user.groups:
            return ALLOW, ""
        if self._generation != self.index.generation or len(self._decisions) >= MAX_REMEMBERED_DECISIONS:
            self._decisions.clear()
            self._generation = self.index.generation
        key = (user.name, tuple(user.groups), attrs.verb, attrs.resource_request, attrs.namespace, attrs.api_group,
               attrs.resource, attrs.subresource, attrs.name, attrs.path)
        decision = self._decisions.get(key)
        if decision is None:
            generation = self.index.generation
            decision = self._decide(attrs)
            if generation == self.index.generation:  # no update ran meanwhile (writes may run on threads)
                self._decisions[key] = decision
        return decision

    def _decide(self, attrs: Attributes) -> tuple[str, str]:
        user = attrs.user
        keys = set(subject_keys(user))
        for b in self.index.bindings_for(user, attrs.namespace):
            for r in self.index.role_rules(b):
                if r.allows(attrs):
                    return ALLOW, _reason(b, keys)
        return NO_OPINION, ""


def _reason(b: _Binding, user_keys: set[tuple[str, str, str]]) -> str:
    who = next((k for k in b.subjects if k in user_keys), None)
    subject = ""
    if who is not None:
        subject = f' to {who[0]} "{who[2]}/{who[1]}"' if who[0] == "ServiceAccount" else f' to {who[0]} "{who[2]}"'
    if b.namespace:
        return f'RBAC: allowed by RoleBinding "{b.name}/{b.namespace}" of {b.role_kind} "{b.role_name}"{subject}'
    return f'RBAC: allowed by ClusterRoleBinding "{b.name}" of ClusterRole "{b.role_name}"{subject}'
