"""rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding.

Names only have to be usable as a URL path segment. Rules need verbs, and either resources (with
API groups) or, in ClusterRoles only, non-resource URLs. A binding's roleRef is fixed for life.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubesat.errors import FieldError, forbidden_field, invalid_value, not_supported, required
from kubesat.registry.meta import (
    age_column,
    column,
    created_at_column,
    field_doc,
    go_quote,
    go_strings,
    GoValue,
    label_value,
    name_column,
    name_is_subdomain,
    path_segment_name,
    qualified_name,
    validate_labels,
)
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import age

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ["ServiceAccount", "User", "Group"]


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def validate_policy_rule(rule: dict[str, Any], namespaced: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not _list(rule.get("verbs")):
        errs.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = _list(rule.get("nonResourceURLs"))
    if urls:
        if namespaced:
            errs.append(invalid_value(f"{path}.nonResourceURLs", go_strings(urls),
                                      "namespaced rules cannot apply to non-resource URLs"))
        if _list(rule.get("apiGroups")) or _list(rule.get("resources")) or _list(rule.get("resourceNames")):
            errs.append(invalid_value(f"{path}.nonResourceURLs", go_strings(urls),
                                      "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not _list(rule.get("apiGroups")):
        errs.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not _list(rule.get("resources")):
        errs.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    if _list(rule.get("resourceNames")) and len(_list(rule.get("resources"))) > 1:
        errs.append(required(f"{path}.resourceNames", "resource names cannot apply to multiple resources"))
    return errs


def _validate_rules(obj: dict[str, Any], namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, rule in enumerate(_list(obj.get("rules"))):
        errs += validate_policy_rule(_dict(rule), namespaced, f"rules[{i}]")
    return errs


def validate_label_selector(selector: dict[str, Any], path: str) -> list[FieldError]:
    """metav1 LabelSelector rules: matchLabels as labels; matchExpressions with a known operator."""
    errs = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, raw in enumerate(_list(selector.get("matchExpressions"))):
        expr = _dict(raw)
        ipath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator") or ""
        values = _list(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{ipath}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden_field(f"{ipath}.values",
                                            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid_value(f"{ipath}.operator", op, "not a valid selector operator"))
        key = str(expr.get("key") or "")
        for msg in qualified_name(key):
            errs.append(invalid_value(f"{ipath}.key", key, msg))
        for j, v in enumerate(values):
            v = str(v)
            for msg in label_value(v):
                errs.append(invalid_value(f"{ipath}.values[{j}]", v, msg))
    return errs


def _role_ref_go(ref: dict[str, Any]) -> GoValue:
    return GoValue(
        f'rbac.RoleRef{{APIGroup:{go_quote(ref.get("apiGroup", ""))}, Kind:{go_quote(ref.get("kind", ""))}, '
        f'Name:{go_quote(ref.get("name", ""))}}}'
    )


def _role_ref(obj: dict[str, Any]) -> dict[str, Any]:
    ref = _dict(obj.get("roleRef"))
    return {"apiGroup": ref.get("apiGroup") or "", "kind": ref.get("kind") or "", "name": ref.get("name") or ""}


def _default_binding(obj: dict[str, Any]) -> None:
    """The v1 defaults: roleRef.apiGroup, and the apiGroup of User and Group subjects."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for s in _list(obj.get("subjects")):
        if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = GROUP


def validate_subject(subject: dict[str, Any], namespaced: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = str(subject.get("name") or "")
    api_group = str(subject.get("apiGroup") or "")
    kind = str(subject.get("kind") or "")
    if not name:
        errs.append(required(f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            for msg in name_is_subdomain(name, False):
                errs.append(invalid_value(f"{path}.name", name, msg))
        if api_group:
            errs.append(not_supported(f"{path}.apiGroup", api_group, [""]))
        if not namespaced and not subject.get("namespace"):
            errs.append(required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if not name:
            errs.append(invalid_value(f"{path}.name", name, f"{kind.lower()} name cannot be empty"))
        if api_group != GROUP:
            errs.append(not_supported(f"{path}.apiGroup", api_group, [GROUP]))
    else:
        errs.append(not_supported(f"{path}.kind", kind, SUBJECT_KINDS))
    return errs


def _validate_binding(obj: dict[str, Any], namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    ref = _role_ref(obj)
    if ref["apiGroup"] != GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref["apiGroup"], [GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref["kind"] not in kinds:
        errs.append(not_supported("roleRef.kind", ref["kind"], kinds))
    if not ref["name"]:
        errs.append(required("roleRef.name"))
    else:
        for msg in path_segment_name(ref["name"]):
            errs.append(invalid_value("roleRef.name", ref["name"], msg))
    for i, s in enumerate(_list(obj.get("subjects"))):
        errs += validate_subject(_dict(s), namespaced, f"subjects[{i}]")
    return errs


def _binding_update(new: dict[str, Any], old: dict[str, Any], namespaced: bool) -> list[FieldError]:
    errs = _validate_binding(new, namespaced)
    if _role_ref(new) != _role_ref(old):
        errs.append(invalid_value("roleRef", _role_ref_go(_role_ref(new)), "cannot change roleRef"))
    return errs


def _subject_strings(obj: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    users, groups, sas = [], [], []
    for s in _list(obj.get("subjects")):
        s = _dict(s)
        kind = s.get("kind")
        if kind == "ServiceAccount":
            sas.append(f"{s.get('namespace') or ''}/{s.get('name') or ''}")
        elif kind == "User":
            users.append(str(s.get("name") or ""))
        elif kind == "Group":
            groups.append(str(s.get("name") or ""))
    return users, groups, sas


# --- strategies ---------------------------------------------------------------------------


class _RoleTable(Strategy):
    """Roles have no printer of their own in Kubernetes: the default Name / Created At table."""

    name_rule = "path_segment"

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), created_at_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        meta = obj.get("metadata") or {}
        return [meta.get("name", ""), meta.get("creationTimestamp") or ""]


class RoleStrategy(_RoleTable):
    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return _validate_rules(obj, True)


class ClusterRoleStrategy(_RoleTable):
    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs = _validate_rules(obj, False)
        agg = obj.get("aggregationRule")
        if isinstance(agg, dict):
            selectors = _list(agg.get("clusterRoleSelectors"))
            if not selectors:
                errs.append(required("aggregationRule.clusterRoleSelectors",
                                     "at least one clusterRoleSelector required if aggregationRule is non-nil"))
            for i, sel in enumerate(selectors):
                errs += validate_label_selector(_dict(sel), f"aggregationRule.clusterRoleSelectors[{i}]")
        return errs


class _BindingBase(Strategy):
    name_rule = "path_segment"
    namespaced_binding = True
    _definition = "io.k8s.api.rbac.v1.RoleBinding"
    _noun = "roleBinding"

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        _default_binding(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _default_binding(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return _validate_binding(obj, self.namespaced_binding)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return _binding_update(new, old, self.namespaced_binding)

    def table_columns(self) -> list[dict[str, Any]]:
        # Kubernetes describes the column with the v1beta1 field doc, which lacks the v1 immutability note.
        role_doc = field_doc(self._definition, "roleRef").replace(" This field is immutable.", "")
        return [
            name_column(),
            column("Role", role_doc),
            age_column(),
            column("Users", f"Users in the {self._noun}", priority=1),
            column("Groups", f"Groups in the {self._noun}", priority=1),
            column("ServiceAccounts", f"ServiceAccounts in the {self._noun}", priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        ref = _role_ref(obj)
        users, groups, sas = _subject_strings(obj)
        return [
            (obj.get("metadata") or {}).get("name", ""),
            f"{ref['kind']}/{ref['name']}",
            age(obj, now),
            ", ".join(users),
            ", ".join(groups),
            ", ".join(sas),
        ]


class RoleBindingStrategy(_BindingBase):
    pass


class ClusterRoleBindingStrategy(_BindingBase):
    namespaced_binding = False
    _definition = "io.k8s.api.rbac.v1.ClusterRoleBinding"
    _noun = "clusterRoleBinding"
