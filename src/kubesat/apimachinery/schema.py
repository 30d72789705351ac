"""Kubernetes' OpenAPI definitions for the served types, loaded from the kubernetes-validate package.

kubernetes-validate ships the definitions of each Kubernetes release as JSON schema (`$defs`,
nullable type lists). This module turns them back into OpenAPI v2 form (`#/definitions/NAME`
references, one type per schema) once, lazily, so a cold start does not pay for it.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any

import orjson

KUBERNETES_SCHEMA_VERSION = "v1.32.0"

# Definitions whose JSON-schema form lost the OpenAPI v2 shape; restored as Kubernetes publishes them.
_SCALAR_OVERRIDES: dict[str, dict[str, Any]] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
}


def _normalize(node: Any, parent_key: str = "") -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out[k] = v.replace("#/$defs/", "#/definitions/")
            elif k == "type" and isinstance(v, list):
                kinds = [t for t in v if t != "null"]
                if kinds:
                    out[k] = kinds[0]
            elif k == "properties" and isinstance(v, dict):
                props = {}
                for pname, pschema in v.items():
                    p = _normalize(pschema, pname)
                    if pname in ("apiVersion", "kind") and isinstance(p, dict):
                        p.pop("enum", None)
                    props[pname] = p
                out[k] = props
            else:
                out[k] = _normalize(v, k)
        return out
    if isinstance(node, list):
        return [_normalize(v, parent_key) for v in node]
    return node


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """All definitions, OpenAPI v2 shaped, keyed by name (e.g. io.k8s.api.core.v1.Pod)."""
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    raw = orjson.loads((root / f"{KUBERNETES_SCHEMA_VERSION}-local" / "_definitions.json").read_bytes())
    defs = raw.get("$defs") or raw.get("definitions") or {}
    out: dict[str, dict[str, Any]] = {}
    for name, schema in defs.items():
        norm = _normalize(schema)
        if name in _SCALAR_OVERRIDES:
            desc = schema.get("description")
            norm = dict(_SCALAR_OVERRIDES[name])
            if desc:
                norm["description"] = desc
        out[name] = norm
    return out


def get(name: str) -> dict[str, Any] | None:
    return definitions().get(name)


def ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        return ref[len("#/definitions/"):]
    return None


def resolve(schema: dict[str, Any] | None) -> dict[str, Any]:
    """Follow a `$ref` (one level is all Kubernetes definitions use) to the schema it names."""
    if not schema:
        return {}
    name = ref_name(schema)
    if name is None:
        return schema
    return definitions().get(name, {})


def field_schema(schema: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The schema of property `name` of an object schema, resolved, or None if it has no such field."""
    s = resolve(schema)
    props = s.get("properties")
    if props is None or name not in props:
        return None
    return resolve(props[name])


def items_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return resolve(resolve(schema).get("items"))


def list_merge_info(list_schema: dict[str, Any]) -> tuple[str | None, str | None, list[str]]:
    """(patch strategy, patch merge key, list-map keys) of an array property schema (unresolved)."""
    return (
        list_schema.get("x-kubernetes-patch-strategy"),
        list_schema.get("x-kubernetes-patch-merge-key"),
        list(list_schema.get("x-kubernetes-list-map-keys") or []),
    )
