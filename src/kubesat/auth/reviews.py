"""Access reviews (the SubjectAccessReview kinds, SelfSubjectRulesReview): attributes, validation, status; no HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubesat import errors
from kubesat.auth.authz import ALLOW, DENY, Attributes
from kubesat.auth.escalation import go_quote
from kubesat.errors import GoValue
from kubesat.auth.rbac import Rule
from kubesat.auth.user import UserInfo

AUTHZ_GROUP = "authorization.k8s.io"
SAR = "SubjectAccessReview"
SELF_SAR = "SelfSubjectAccessReview"
LOCAL_SAR = "LocalSubjectAccessReview"
SELF_RULES = "SelfSubjectRulesReview"


# ------------------------------------------------------------------------------ attributes
def user_from_sar_spec(spec: dict[str, Any]) -> UserInfo:
    """The user a SubjectAccessReview asks about (spec.user, uid, groups, extra)."""
    extra = {k: tuple(v or ()) for k, v in (spec.get("extra") or {}).items()}
    return UserInfo(spec.get("user") or "", spec.get("uid") or "", tuple(spec.get("groups") or ()), extra)


def attributes_from_sar_spec(spec: dict[str, Any], user: UserInfo) -> Attributes:
    """The authorizer attributes of a (Self/Local)SubjectAccessReview spec; an empty version means every version."""
    ra = spec.get("resourceAttributes")
    if ra is not None:
        return Attributes(
            user=user,
            verb=ra.get("verb") or "",
            resource_request=True,
            namespace=ra.get("namespace") or "",
            api_group=ra.get("group") or "",
            api_version=ra.get("version") or "*",
            resource=ra.get("resource") or "",
            subresource=ra.get("subresource") or "",
            name=ra.get("name") or "",
        )
    nra = spec.get("nonResourceAttributes") or {}
    return Attributes(user=user, verb=nra.get("verb") or "", resource_request=False, path=nra.get("path") or "")


# ------------------------------------------------------------------------------ validation
def _nonresource_repr(nra: dict[str, Any] | None) -> Any:
    if nra is None:
        return "null"
    return GoValue(f'authorization.NonResourceAttributes{{Path:{go_quote(nra.get("path") or "")}, '
                    f'Verb:{go_quote(nra.get("verb") or "")}}}')


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def _go_time(ts: Any) -> str:
    if not ts:
        return "time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)"
    try:
        t = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return "time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)"
    return (f"time.Date({t.year}, time.{_MONTHS[t.month - 1]}, {t.day}, {t.hour}, {t.minute}, {t.second}, "
            f"{t.microsecond * 1000}, time.Local)")


def _go_map(m: Any) -> str:
    if not m:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(f"{go_quote(k)}:{go_quote(str(v))}" for k, v in sorted(m.items())) + "}"


def _object_meta_repr(meta: dict[str, Any]) -> GoValue:
    """ObjectMeta as Go's %#v prints it (pointers and nested structs approximated)."""
    s = go_quote
    fin = meta.get("finalizers")
    parts = [
        f"Name:{s(meta.get('name') or '')}",
        f"GenerateName:{s(meta.get('generateName') or '')}",
        f"Namespace:{s(meta.get('namespace') or '')}",
        f"SelfLink:{s(meta.get('selfLink') or '')}",
        f"UID:{s(meta.get('uid') or '')}",
        f"ResourceVersion:{s(meta.get('resourceVersion') or '')}",
        f"Generation:{int(meta.get('generation') or 0)}",
        f"CreationTimestamp:{_go_time(meta.get('creationTimestamp'))}",
        "DeletionTimestamp:" + (_go_time(meta["deletionTimestamp"]) if meta.get("deletionTimestamp") else "<nil>"),
        "DeletionGracePeriodSeconds:" + ("(*int64)(0xc000000000)" if meta.get("deletionGracePeriodSeconds") is not None
                                         else "(*int64)(nil)"),
        f"Labels:{_go_map(meta.get('labels'))}",
        f"Annotations:{_go_map(meta.get('annotations'))}",
        "OwnerReferences:" + ("[]v1.OwnerReference{...}" if meta.get("ownerReferences")
                              else "[]v1.OwnerReference(nil)"),
        "Finalizers:" + ("[]string{" + ", ".join(s(f) for f in fin) + "}" if fin else "[]string(nil)"),
        "ManagedFields:" + ("[]v1.ManagedFieldsEntry{...}" if meta.get("managedFields")
                            else "[]v1.ManagedFieldsEntry(nil)"),
    ]
    return GoValue("v1.ObjectMeta{" + ", ".join(parts) + "}")


_META_FIELDS = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
                "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
                "ownerReferences", "finalizers")


def _meta_empty(meta: dict[str, Any], except_namespace: bool = False) -> bool:
    return not any(meta.get(k) not in (None, "", 0, {}, [])
                   for k in _META_FIELDS if not (except_namespace and k == "namespace"))


def _spec_errors(spec: dict[str, Any], subject_required: bool) -> list[errors.FieldError]:
    out: list[errors.FieldError] = []
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if ra is not None and nra is not None:
        out.append(errors.invalid_value("spec.nonResourceAttributes", _nonresource_repr(nra),
                                        "cannot be specified in combination with resourceAttributes"))
    if ra is None and nra is None:
        out.append(errors.invalid_value("spec.resourceAttributes", "null",
                                        "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
    if subject_required and not spec.get("user") and not spec.get("groups"):
        out.append(errors.invalid_value("spec.user", spec.get("user") or "",
                                        "at least one of user or group must be specified"))
    return out


def validate_sar(kind: str, obj: dict[str, Any], url_namespace: str = "") -> None:
    """Validate a SubjectAccessReview, SelfSubjectAccessReview or LocalSubjectAccessReview as Kubernetes does.

    Raises 422 Invalid worded like kube-apiserver, whose decoded object carries no kind, hence
    `.authorization.k8s.io "" is invalid: ...`. For LocalSubjectAccessReview an empty
    metadata.namespace is taken from the URL first (it is filled in before validation) and a
    different one is a 400. SelfSubjectRulesReview has no validation. Field and label selectors
    in resourceAttributes are not validated.
    """
    spec = obj.get("spec") or {}
    meta = dict(obj.get("metadata") or {})
    errs: list[errors.FieldError]
    if kind == SELF_RULES:
        return
    if kind == LOCAL_SAR:
        ns = meta.get("namespace") or ""
        if url_namespace:
            if ns and ns != url_namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request")
            ns = meta["namespace"] = url_namespace
        errs = _spec_errors(spec, subject_required=True)
        if not _meta_empty(meta, except_namespace=True):
            errs.append(errors.invalid_value("metadata", _object_meta_repr(meta), "must be empty except for namespace"))
        ra = spec.get("resourceAttributes")
        if ra is not None and (ra.get("namespace") or "") != ns:
            errs.append(errors.invalid_value("spec.resourceAttributes.namespace", ra.get("namespace") or "",
                                             "must match metadata.namespace"))
        if spec.get("nonResourceAttributes") is not None:
            errs.append(errors.invalid_value("spec.nonResourceAttributes",
                                             _nonresource_repr(spec["nonResourceAttributes"]),
                                             "disallowed on this kind of request"))
    else:
        errs = _spec_errors(spec, subject_required=(kind == SAR))
        if not _meta_empty(meta):
            errs.append(errors.invalid_value("metadata", _object_meta_repr(meta), "must be empty"))
    if errs:
        raise errors.invalid("", "", errs, AUTHZ_GROUP)
    if kind == LOCAL_SAR and not url_namespace:
        raise errors.bad_request("namespace is required on this type: ")


# ------------------------------------------------------------------------------ status
def sar_status(decision: str, reason: str, evaluation_error: str = "") -> dict[str, Any]:
    """A SubjectAccessReviewStatus: `allowed` always, `denied` only on an explicit deny, empty strings omitted."""
    out: dict[str, Any] = {"allowed": decision == ALLOW}
    if decision == DENY:
        out["denied"] = True
    if reason:
        out["reason"] = reason
    if evaluation_error:
        out["evaluationError"] = evaluation_error
    return out


def _field(r: Rule, key: str, values: frozenset[str] | tuple[str, ...]) -> list[str]:
    raw = r.raw.get(key) if r.raw else None
    return list(raw) if raw else sorted(values)


# What the privileged-group authorizer reports for system:masters ahead of RBAC's own rules.
MASTERS_RULES: list[Rule] = [
    Rule.from_api({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
    Rule.from_api({"verbs": ["*"], "nonResourceURLs": ["*"]}),
]


def rules_review_status(rules: list[Rule], incomplete: bool = False, evaluation_error: str = "") -> dict[str, Any]:
    """A SelfSubjectRulesReview status: every rule as a resource rule and/or a non-resource rule, in order."""
    resource_rules: list[dict[str, Any]] = []
    non_resource_rules: list[dict[str, Any]] = []
    for r in rules:
        if r.resources:
            rr: dict[str, Any] = {"verbs": _field(r, "verbs", r.verbs)}
            for key, values in (("apiGroups", r.api_groups), ("resources", r.resources),
                                ("resourceNames", r.resource_names)):
                if values:
                    rr[key] = _field(r, key, values)
            resource_rules.append(rr)
        if r.non_resource_urls:
            non_resource_rules.append({"verbs": _field(r, "verbs", r.verbs),
                                       "nonResourceURLs": list(r.non_resource_urls)})
    out: dict[str, Any] = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                           "incomplete": incomplete}
    if evaluation_error:
        out["evaluationError"] = evaluation_error
    return out

