"""RBAC escalation prevention: rule coverage, Kubernetes' compact rule printing and the role/binding write checks."""

from __future__ import annotations

from typing import Any
from collections.abc import Iterable

from kubesat import errors
from kubesat.auth.rbac import Rule
from kubesat.auth.user import MASTERS, UserInfo

RBAC_GROUP = "rbac.authorization.k8s.io"

# What setting an aggregationRule requires: everything (`*` on `*.*` and on every URL).
FULL_AUTHORITY: list[dict[str, Any]] = [
    {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
    {"verbs": ["*"], "nonResourceURLs": ["*"]},
]


# ------------------------------------------------------------------------------- coverage
def breakdown(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """A PolicyRule split into atomic rules: one (group, resource, verb[, name]) or one (url, verb) each."""
    verbs = list(rule.get("verbs") or [])
    names = list(rule.get("resourceNames") or [])
    out: list[dict[str, Any]] = []
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for verb in verbs:
                if names:
                    out.extend({"verbs": [verb], "apiGroups": [group], "resources": [resource],
                                "resourceNames": [n]} for n in names)
                else:
                    out.append({"verbs": [verb], "apiGroups": [group], "resources": [resource]})
    for url in rule.get("nonResourceURLs") or []:
        for verb in verbs:
            out.append({"verbs": [verb], "nonResourceURLs": [url]})
    return out


def _resource_covered(owner: frozenset[str], resource: str) -> bool:
    if "*" in owner or resource in owner:
        return True
    if "/" not in resource:
        return False
    return "*/" + resource.split("/", 1)[1] in owner


def _url_covered(owner_urls: Iterable[str], url: str) -> bool:
    return any(o == url or (o.endswith("*") and url.startswith(o.rstrip("*"))) for o in owner_urls)


def rule_covers(owner: Rule, atom: dict[str, Any]) -> bool:
    """Whether one owner rule covers one atomic rule (a request's wildcard is only covered by a wildcard)."""
    verbs = atom.get("verbs") or []
    groups = atom.get("apiGroups") or []
    resources = atom.get("resources") or []
    names = atom.get("resourceNames") or []
    urls = atom.get("nonResourceURLs") or []
    if "*" not in owner.verbs and not all(v in owner.verbs for v in verbs):
        return False
    if "*" not in owner.api_groups and not all(g in owner.api_groups for g in groups):
        return False
    if not all(_resource_covered(owner.resources, r) for r in resources):
        return False
    if not all(_url_covered(owner.non_resource_urls, u) for u in urls):
        return False
    if not names:
        return not owner.resource_names
    return not owner.resource_names or all(n in owner.resource_names for n in names)


def compact_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge atomic rules that name one group and one resource and nothing else, differing only by verb."""
    out: list[dict[str, Any]] = []
    simple: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rules:
        groups, resources = r.get("apiGroups") or [], r.get("resources") or []
        is_simple = (not r.get("resourceNames") and not r.get("nonResourceURLs")
                     and len(groups) == 1 and len(resources) == 1)
        if not is_simple:
            out.append(r)
            continue
        key = (groups[0], resources[0])
        if key in simple:
            simple[key]["verbs"] = simple[key]["verbs"] + list(r.get("verbs") or [])
        else:
            simple[key] = {"verbs": list(r.get("verbs") or []), "apiGroups": [groups[0]], "resources": [resources[0]]}
    return out + list(simple.values())


def covers(owner_rules: list[Rule], requested: list[dict[str, Any]], *,
           compact: bool = True) -> tuple[bool, list[dict[str, Any]]]:
    """Whether `owner_rules` cover every requested PolicyRule, and the uncovered atomic rules (compacted by default)."""
    missing = [atom for rule in requested for atom in breakdown(rule)
               if not any(rule_covers(o, atom) for o in owner_rules)]
    return (not missing, compact_rules(missing) if compact else missing)


# ------------------------------------------------------------------------------- printing
def go_quote(s: str) -> str:
    """A string as Go's %q prints it."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def go_quote_list(items: Iterable[str]) -> str:
    """A []string as Go's %q prints it: `["a" "b"]`."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def compact_string(rule: dict[str, Any]) -> str:
    """Kubernetes' one-line form of a rule: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["delete"]}`."""
    parts = []
    for label, key in (("APIGroups", "apiGroups"), ("Resources", "resources"), ("NonResourceURLs", "nonResourceURLs"),
                       ("ResourceNames", "resourceNames"), ("Verbs", "verbs")):
        if rule.get(key):
            parts.append(f"{label}:{go_quote_list(rule[key])}")
    return "{" + ", ".join(parts) + "}"


def escalation_message(
    user: UserInfo, missing: list[dict[str, Any]], resolution_errors: tuple[str, ...] | list[str] = ()
) -> str:
    """The reason Kubernetes gives when a write would grant rules the user does not hold."""
    lines = sorted({compact_string(r) for r in compact_rules(missing)})
    msg = (f"user {go_quote(user.name)} (groups={go_quote_list(user.groups)}) is attempting to grant RBAC "
           "permissions not currently held:\n" + "\n".join(lines))
    if resolution_errors:
        msg += "; resolution errors: [" + " ".join(resolution_errors) + "]"
    return msg


def escalation_forbidden(resource: str, name: str, user: UserInfo, missing: list[dict[str, Any]],
                         resolution_errors: tuple[str, ...] | list[str] = ()) -> errors.StatusError:
    """The 403 for an escalating write to `<resource>.rbac.authorization.k8s.io "<name>"`."""
    return errors.forbidden(resource, name, escalation_message(user, missing, resolution_errors), RBAC_GROUP)


def aggregation_rule_forbidden(name: str) -> errors.StatusError:
    """The 403 for setting or changing a ClusterRole's aggregationRule without full authority."""
    return errors.forbidden("clusterroles", name, "must have cluster-admin privileges to use the aggregationRule",
                            RBAC_GROUP)


def role_ref_not_found(role_ref: dict[str, Any]) -> errors.StatusError:
    """What Kubernetes answers when a binding's roleRef names a role that does not exist (the getter's 404)."""
    resource = "clusterroles" if role_ref.get("kind") == "ClusterRole" else "roles"
    return errors.not_found(resource, role_ref.get("name", ""), RBAC_GROUP)


# ------------------------------------------------------------------------------- write checks
def check_role_write(user: UserInfo, rules_of_user: list[Rule], new_rules: list[dict[str, Any]],
                     can_escalate: bool, *,
                     only_gc_fields: bool = False) -> list[dict[str, Any]]:
    """The rules a Role/ClusterRole create (old_rules None) or update would grant beyond the user's own ([] = allowed).

    Allowed outright for system:masters, for `escalate` on the role and for updates touching only
    GC fields (finalizers, ownerReferences). Any other update is checked against all its rules,
    unchanged or not, as kube-apiserver's role storage does (so a label change on a role the user
    could not have written is refused too).
    """
    if MASTERS in user.groups or can_escalate or only_gc_fields:
        return []
    _, missing = covers(rules_of_user, new_rules)
    return missing


def holds_full_authority(rules_of_user: list[Rule]) -> bool:
    """Whether the user holds `*` on `*.*` and on every URL (what an aggregationRule needs)."""
    return covers(rules_of_user, FULL_AUTHORITY)[0]


def check_binding_write(user: UserInfo, rules_of_user: list[Rule], role_rules: list[Rule] | None,
                        can_bind: bool, *, role_ref: dict[str, Any] | None = None) -> list[dict[str, Any]] | str:
    """The referenced role's rules the user does not hold ([] = allowed), or a resolution error string.

    Allowed for system:masters, for `bind` on the referenced role, or when the user already holds
    every rule of the role. A role that cannot be resolved gives the getter's message
    (`clusterroles.rbac.authorization.k8s.io "x" not found`), which Kubernetes returns as a 404.
    """
    if MASTERS in user.groups or can_bind:
        return []
    if role_rules is None:
        ref = role_ref or {}
        kind = ref.get("kind", "")
        if kind not in ("Role", "ClusterRole"):
            return f"unsupported role reference kind: {go_quote(kind)}"
        return role_ref_not_found(ref).message
    requested = [r.raw or _rule_to_api(r) for r in role_rules]
    _, missing = covers(rules_of_user, requested)
    return missing


def _rule_to_api(r: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"verbs": sorted(r.verbs)}
    if r.api_groups:
        out["apiGroups"] = sorted(r.api_groups)
    if r.resources:
        out["resources"] = sorted(r.resources)
    if r.resource_names:
        out["resourceNames"] = sorted(r.resource_names)
    if r.non_resource_urls:
        out["nonResourceURLs"] = list(r.non_resource_urls)
    return out
