"""A ValidatingAdmissionPolicy's status.typeChecking: its validations checked against the schemas of the kinds its
rules name (and its paramKind's), as kube-apiserver's type-checking controller reports them."""

from __future__ import annotations

import logging
from typing import Any

from kubesat.apimachinery import schema
from kubesat.apimachinery.cel import DYN, CompileError, DeclType, Env, decl_type
from kubesat.registry import kinds
from kubesat.registry.admissionpolicy import variable_names
from kubesat.registry.kinds import ResourceInfo

log = logging.getLogger("kubesat.admission")

MAX_TYPES_TO_CHECK = 10  # kinds checked per policy, as Kubernetes bounds them
MAX_SCHEMA_DEPTH = 24  # nesting followed through $refs; deeper nodes are typed dynamically
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_DYN_SCHEMA: dict[str, Any] = {"x-kubernetes-int-or-string": True}  # what decl_type types as dyn
_KEPT = ("type", "format", "enum", "maxLength", "maxItems", "maxProperties", "required",
         "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string")


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def inline(s: Any, depth: int = 0) -> dict[str, Any]:
    """An OpenAPI schema with its $refs followed (to a bounded depth), in the form decl_type reads."""
    if not isinstance(s, dict):
        return _DYN_SCHEMA
    name = schema.ref_name(s)
    if name is not None:
        s = schema.get(name) or {}
    if depth > MAX_SCHEMA_DEPTH or s.get("format") == "int-or-string" or s.get("x-kubernetes-int-or-string"):
        return _DYN_SCHEMA
    if not s.get("type"):
        return _DYN_SCHEMA
    out = {k: v for k, v in s.items() if k in _KEPT}
    if isinstance(s.get("properties"), dict):
        out["properties"] = {k: inline(v, depth + 1) for k, v in s["properties"].items()}
    for key in ("additionalProperties", "items"):
        if isinstance(s.get(key), dict):
            out[key] = inline(s[key], depth + 1)
    return out


def object_schema(info: ResourceInfo) -> dict[str, Any] | None:
    """The schema of a kind's objects: its OpenAPI definition, or a custom resource's version schema with the full
    ObjectMeta (as kube-apiserver's schema resolver gives it)."""
    if info.custom is None:
        return inline({"$ref": f"#/definitions/{info.definition}"}) if schema.get(info.definition) else None
    root = ((info.custom.version.get("schema") or {}).get("openAPIV3Schema"))
    if not isinstance(root, dict):
        return None
    props = dict(root.get("properties") or {})
    props["metadata"] = inline({"$ref": f"#/definitions/{OBJECT_META}"})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    return {**root, "properties": props}


def gvk_text(info: ResourceInfo) -> str:
    """schema.GroupVersionKind's String(): `apps/v1, Kind=Deployment`, `/v1, Kind=ConfigMap`."""
    return f"{info.group}/{info.version}, Kind={info.kind}"


def types_to_check(spec: dict[str, Any]) -> list[ResourceInfo]:
    """The kinds matchConstraints' rules name without wildcards (resources, not subresources), sorted."""
    found: dict[tuple[str, str, str], ResourceInfo] = {}
    for rule in _l((spec.get("matchConstraints") or {}).get("resourceRules")):
        if not isinstance(rule, dict):
            continue
        groups, versions, resources = (sorted(str(x) for x in _l(rule.get(k)))
                                       for k in ("apiGroups", "apiVersions", "resources"))
        if any("*" in x for x in groups + versions + resources):
            continue
        for g in groups:
            for v in versions:
                for r in resources:
                    info = kinds.lookup(g, v, r) if "/" not in r else None
                    if info is not None and len(found) < MAX_TYPES_TO_CHECK:
                        found[(info.group, info.version, info.kind)] = info
    return [found[k] for k in sorted(found)]


def _decl(info: ResourceInfo | None) -> DeclType | None:
    s = object_schema(info) if info is not None else None
    return decl_type(s) if s is not None else None


def _env(object_type: DeclType, params: DeclType | None, has_params: bool) -> Env:
    names = variable_names(has_params)
    types: dict[str, DeclType | None] = dict.fromkeys(names, DYN)
    types["object"] = types["oldObject"] = object_type
    if has_params:
        types["params"] = params or DYN
    return Env(types)


def expression_warnings(policy: dict[str, Any]) -> list[dict[str, str]]:
    """status.typeChecking.expressionWarnings: for each validation expression and messageExpression that does not
    check against a matched kind, `<gvk>: compilation failed: <issues>` per kind."""
    spec: dict[str, Any] = policy["spec"] if isinstance(policy.get("spec"), dict) else {}
    pk = spec.get("paramKind")
    has_params = isinstance(pk, dict)
    params = _decl(kinds.lookup_kind(str(pk.get("apiVersion", "")), str(pk.get("kind", "")))) \
        if isinstance(pk, dict) else None
    envs = []
    for info in types_to_check(spec):
        t = _decl(info)
        if t is not None:
            envs.append((gvk_text(info), _env(t, params, has_params)))
    warnings = []
    for i, v in enumerate(_l(spec.get("validations"))):
        v = v if isinstance(v, dict) else {}
        for key in ("expression", "messageExpression"):
            expression = v.get(key)
            if not isinstance(expression, str) or not expression.strip():
                continue
            text = _check(envs, expression)
            if text:
                warnings.append({"fieldRef": f"spec.validations[{i}].{key}", "warning": text})
    return warnings


def _check(envs: list[tuple[str, Env]], expression: str) -> str:
    results = []
    for gvk, env in envs:
        try:
            env.compile(expression)
        except CompileError as e:
            results.append(f"{gvk}: compilation failed: {e}\n")
    return "\n".join(results)
