"""The CEL type of each node of a CRD's structural schema, with the size bounds the cost estimate uses, as Kubernetes
derives them (apiserver pkg/cel/common/schemas.go)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubesat import limits

# Sizes in bytes of the smallest JSON forms, as Kubernetes counts them.
MAX_DURATION_SIZE_JSON = 32
MAX_DATETIME_SIZE_JSON = 32
MIN_DURATION_SIZE_JSON = 3
JSON_DATE_SIZE = 12
MIN_DATETIME_SIZE_JSON = 21
MIN_STRING_SIZE = 2
MIN_BOOL_SIZE = 4
MIN_NUMBER_SIZE = 1

_RESERVED = frozenset({
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
    "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
})
_EXPAND = re.compile(r"__|[^a-zA-Z0-9_]")
_ESCAPES = {"__": "__underscores__", ".": "__dot__", "-": "__dash__", "/": "__slash__"}


def escape(name: str) -> str | None:
    """The CEL field name of a property, or None when the property cannot be named in CEL."""
    if not name or name[0].isdigit():
        return None
    if name in _RESERVED:
        return f"__{name}__"
    ok = True

    def sub(m: re.Match[str]) -> str:
        nonlocal ok
        rep = _ESCAPES.get(m.group(0))
        if rep is None:
            ok = False
            return ""
        return rep

    out = _EXPAND.sub(sub, name)
    return out if ok else None


@dataclass
class DeclType:
    """kind: object, list, map, string, bytes, int, double, bool, timestamp, duration or dyn."""

    kind: str
    max_elements: int = 0
    min_size: int = 1
    fields: dict[str, DeclType] = field(default_factory=dict)  # CEL (escaped) name -> type, for objects
    names: dict[str, str] = field(default_factory=dict)  # CEL name -> property name
    elem: DeclType | None = None  # list items, map values
    is_root: bool = False  # a resource root: only apiVersion, kind, metadata.name/generateName of metadata
    format: str = ""  # date or date-time for timestamps


def _max_string_length(s: dict[str, Any]) -> int:
    if s.get("x-kubernetes-int-or-string"):
        return limits.MAX_REQUEST_BYTES - 2
    fmt = s.get("format")
    if fmt == "duration":
        return MAX_DURATION_SIZE_JSON
    if fmt == "date":
        return JSON_DATE_SIZE
    if fmt == "date-time":
        return MAX_DATETIME_SIZE_JSON
    return limits.MAX_REQUEST_BYTES - 2


def _nonneg(v: Any) -> int:
    return max(int(v), 0) if isinstance(v, int) and not isinstance(v, bool) else 0


def with_type_and_object_meta(s: dict[str, Any]) -> dict[str, Any]:
    """A resource root's schema with apiVersion, kind and metadata.name/generateName always declared."""
    props = s.get("properties") or {}
    meta = props.get("metadata") or {}
    mprops = meta.get("properties") or {}
    if (props.get("kind", {}).get("type") == "string" and props.get("apiVersion", {}).get("type") == "string"
            and meta.get("type") == "object" and mprops.get("name", {}).get("type") == "string"
            and mprops.get("generateName", {}).get("type") == "string"):
        return s
    string = {"type": "string"}
    new_props = dict(props)
    new_props["kind"] = string
    new_props["apiVersion"] = string
    new_props["metadata"] = {"type": "object", "properties": {"name": string, "generateName": string}}
    return {**s, "properties": new_props}


def decl_type(s: dict[str, Any] | None, is_root: bool = False, depth: int = 0) -> DeclType | None:
    """The CEL type of a schema node, or None when CEL rules cannot see it."""
    if not isinstance(s, dict) or depth > limits.MAX_DEPTH:
        return None
    if s.get("x-kubernetes-int-or-string"):
        max_len = s.get("maxLength")
        n = _nonneg(max_len) * 4 if max_len is not None else _max_string_length(s)
        return DeclType("dyn", n, 1)
    if is_root:
        s = with_type_and_object_meta(s)
    kind = s.get("type")
    if kind == "array":
        return _array(s, depth)
    if kind == "object":
        return _object(s, is_root, depth)
    if kind == "string":
        return _string(s)
    if kind == "boolean":
        return DeclType("bool", 0, MIN_BOOL_SIZE)
    if kind == "number":
        return DeclType("double", 0, MIN_NUMBER_SIZE)
    if kind == "integer":
        return DeclType("int", 0, MIN_NUMBER_SIZE)
    return None


def _array(s: dict[str, Any], depth: int) -> DeclType | None:
    items = s.get("items")
    if not isinstance(items, dict):
        return None
    elem = decl_type(items, bool(items.get("x-kubernetes-embedded-resource")), depth + 1)
    if elem is None:
        return None
    if s.get("maxItems") is not None:
        n = _nonneg(s.get("maxItems"))
    else:
        n = (limits.MAX_REQUEST_BYTES - 2) // (elem.min_size + 1)
    return DeclType("list", n, 2, elem=elem)


def _object(s: dict[str, Any], is_root: bool, depth: int) -> DeclType | None:
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        elem = decl_type(extra, bool(extra.get("x-kubernetes-embedded-resource")), depth + 1)
        if elem is None:
            return None
        if s.get("maxProperties") is not None:
            n = _nonneg(s.get("maxProperties"))
        else:
            n = (limits.MAX_REQUEST_BYTES - 2) // (elem.min_size + 6)
        return DeclType("map", n, 2, elem=elem)
    required = set(s.get("required") or [])
    out = DeclType("object", 0, 2, is_root=is_root)
    for name, prop in (s.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        t = decl_type(prop, bool(prop.get("x-kubernetes-embedded-resource")), depth + 1)
        if t is None:
            continue
        cel_name = escape(name)
        if cel_name is not None:
            out.fields[cel_name] = t
            out.names[cel_name] = name
        if name in required and "default" not in prop:
            out.min_size += len(name) + t.min_size + 4
    return out


def _string(s: dict[str, Any]) -> DeclType:
    fmt = s.get("format")
    max_len = s.get("maxLength")
    if fmt == "byte":
        n = _nonneg(max_len) if max_len is not None else _max_string_length(s)
        return DeclType("bytes", n, MIN_STRING_SIZE)
    if fmt == "duration":
        return DeclType("duration", _max_string_length(s), MIN_DURATION_SIZE_JSON)
    if fmt == "date":
        return DeclType("timestamp", _max_string_length(s), JSON_DATE_SIZE, format="date")
    if fmt == "date-time":
        return DeclType("timestamp", _max_string_length(s), MIN_DATETIME_SIZE_JSON)
    if max_len is not None:
        n = _nonneg(max_len) * 4
    elif s.get("enum"):
        n = max((len(v) for v in s["enum"] if isinstance(v, str)), default=0)
    else:
        n = _max_string_length(s)
    return DeclType("string", n, MIN_STRING_SIZE)


def max_cardinality(t: DeclType) -> int:
    """How often data of this type could repeat in one request, for a rule under unbounded lists or maps."""
    return limits.MAX_REQUEST_BYTES // (t.min_size + 1)
