"""What workload specs share: the pod template (its defaults and validation, those of a pod's spec) and the
label selector that picks its pods (validation, matching, and the forms Kubernetes prints it in).

Messages and the Go-style rendering of bad values follow Kubernetes 1.32 (core validation's
ValidatePodTemplateSpec, apimachinery's ValidateLabelSelector and labels.Selector's String()).
"""

from __future__ import annotations

from typing import Any

from kubesat.errors import FieldError, forbidden_field, invalid_value, required
from kubesat.registry.meta import GoValue, as_dict, go_quote, label_value, qualified_name, validate_annotations, \
    validate_labels
from kubesat.registry.pod import apply_pod_defaults, validate_pod_spec

SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


# ----------------------------------------------------------------------------------- pod template


def apply_template_defaults(owner_spec: dict[str, Any]) -> dict[str, Any]:
    """Default `template` of a workload spec as a pod's spec is defaulted; returns the template."""
    template = owner_spec.get("template")
    if not isinstance(template, dict):
        template = owner_spec["template"] = {}
    meta = template.get("metadata")
    if not isinstance(meta, dict):
        meta = template["metadata"] = {}
    # A template's ObjectMeta is serialized with its zero creationTimestamp, as Kubernetes shows it.
    meta.setdefault("creationTimestamp", None)
    apply_pod_defaults(template)
    return template


def validate_pod_template(template: dict[str, Any], path: str) -> list[FieldError]:
    """ValidatePodTemplateSpec: the template's labels and annotations, then its pod spec."""
    meta = as_dict(template.get("metadata"))
    errs = validate_labels(meta.get("labels"), f"{path}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    spec = as_dict(template.get("spec"))
    errs += validate_pod_spec(spec, f"{path}.spec")
    if _l(spec.get("ephemeralContainers")):
        errs.append(forbidden_field(f"{path}.spec.ephemeralContainers",
                                    "ephemeral containers not allowed in pod template"))
    return errs


def template_labels(owner_spec: dict[str, Any]) -> dict[str, str]:
    labels = as_dict(as_dict(as_dict(owner_spec.get("template")).get("metadata")).get("labels"))
    return {str(k): str(v) for k, v in labels.items()}


def go_string_map(values: Any) -> GoValue:
    """map[string]string{"a":"b"} as Go's %#v prints it (keys sorted), map[string]string(nil) for none."""
    if not isinstance(values, dict):
        return GoValue("map[string]string(nil)")
    inner = ", ".join(f"{go_quote(k)}:{go_quote(values[k])}" for k in sorted(values))
    return GoValue("map[string]string{" + inner + "}")


# ----------------------------------------------------------------------------------- label selector


def _go_requirement(expr: Any) -> str:
    e = as_dict(expr)
    values = e.get("values")
    shown = ("[]string{" + ", ".join(go_quote(v) for v in _l(values)) + "}") if isinstance(values, list) \
        else "[]string(nil)"
    return (f"v1.LabelSelectorRequirement{{Key:{go_quote(e.get('key'))}, "
            f"Operator:{go_quote(e.get('operator'))}, Values:{shown}}}")


def go_label_selector(selector: Any) -> GoValue:
    """A metav1.LabelSelector as Go's %#v prints it in a field error."""
    sel = as_dict(selector)
    exprs = sel.get("matchExpressions")
    if isinstance(exprs, list):
        shown = "[]v1.LabelSelectorRequirement{" + ", ".join(_go_requirement(e) for e in exprs) + "}"
    else:
        shown = "[]v1.LabelSelectorRequirement(nil)"
    return GoValue(f"v1.LabelSelector{{MatchLabels:{go_string_map(sel.get('matchLabels')).text}, "
                   f"MatchExpressions:{shown}}}")


def _requirement_errors(expr: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    op = expr.get("operator")
    values = _l(expr.get("values"))
    if op in ("In", "NotIn"):
        if not values:
            errs.append(required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(forbidden_field(f"{path}.values",
                                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
    else:
        errs.append(invalid_value(f"{path}.operator", op if isinstance(op, str) else "",
                                  "not a valid selector operator"))
    key = str(expr.get("key") or "")
    errs += [invalid_value(f"{path}.key", key, m) for m in qualified_name(key)]
    for i, v in enumerate(values):
        errs += [invalid_value(f"{path}.values[{i}]", str(v), m) for m in label_value(str(v))]
    return errs


def validate_label_selector(selector: Any, path: str) -> list[FieldError]:
    """ValidateLabelSelector (strict label values); nothing for an absent selector."""
    if not isinstance(selector, dict):
        return []
    errs = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(_l(selector.get("matchExpressions"))):
        errs += _requirement_errors(as_dict(expr), f"{path}.matchExpressions[{i}]")
    return errs


def selector_is_empty(selector: Any) -> bool:
    """A selector object with neither matchLabels nor matchExpressions (it selects everything)."""
    sel = as_dict(selector)
    return not as_dict(sel.get("matchLabels")) and not _l(sel.get("matchExpressions"))


def selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector object selects `labels`: an absent one selects nothing, an empty one everything."""
    if not isinstance(selector, dict):
        return False
    for k, v in as_dict(selector.get("matchLabels")).items():
        if labels.get(str(k)) != str(v):
            return False
    for expr in _l(selector.get("matchExpressions")):
        e = as_dict(expr)
        key, op, values = str(e.get("key") or ""), e.get("operator"), [str(v) for v in _l(e.get("values"))]
        present = key in labels
        ok = {"In": present and labels.get(key) in values,
              "NotIn": not present or labels.get(key) not in values,
              "Exists": present,
              "DoesNotExist": not present}.get(str(op), False)
        if not ok:
            return False
    return True


def selector_string(selector: Any) -> str:
    """labels.Selector's String() of a LabelSelector object (requirements by key, values sorted), as `kubectl get
    -o wide` and a Scale's status.selector show it; "" for an absent or empty selector."""
    sel = as_dict(selector)
    parts: list[tuple[str, str]] = []
    for k, v in as_dict(sel.get("matchLabels")).items():
        parts.append((str(k), f"{k}={v}"))
    for expr in _l(sel.get("matchExpressions")):
        e = as_dict(expr)
        key, op = str(e.get("key") or ""), e.get("operator")
        values = ",".join(sorted({str(v) for v in _l(e.get("values"))}))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                "Exists": key, "DoesNotExist": f"!{key}"}.get(str(op), "")
        parts.append((key, text))
    return ",".join(text for _, text in sorted(parts, key=lambda p: p[0]))


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: `k=v,k2=v2` in key order, `<none>` for none."""
    values = as_dict(labels)
    return ",".join(f"{k}={values[k]}" for k in sorted(values)) or "<none>"
