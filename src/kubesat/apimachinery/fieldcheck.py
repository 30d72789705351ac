"""Strict decoding checks (unknown, duplicate and wrongly typed fields) worded as kube-apiserver words them."""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from collections.abc import Callable

from kubesat import limits
from kubesat.errors import go_json_kind
from kubesat.apimachinery import metatime, schema

_DEF = "#/definitions/"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_MICRO_TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
_TIMES = ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", _MICRO_TIME)
# Types with their own JSON decoding that take any JSON value.
_OPAQUE = ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "io.k8s.apimachinery.pkg.runtime.RawExtension")

_GO_NAMES = {
    _INT_OR_STRING: "intstr.IntOrString",
    _QUANTITY: "resource.Quantity",
}

_QUANTITY_FORMAT = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_QUANTITY_FORMAT_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_QUANTITY_SUFFIXES = {"", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
_DECIMAL_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")

_SCALAR_TYPES = ("string", "integer", "number", "boolean")  # values with no fields of their own
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1), "int": (-(2**63), 2**63 - 1)}


# ----------------------------------------------------------------------------------------- schema

def _ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_DEF):
        return ref[len(_DEF):]
    return None


# id(schema node) -> (definition name, resolved schema, the node itself: kept so its id stays its own).
_RESOLVED: dict[int, tuple[str | None, dict[str, Any], dict[str, Any]]] = {}


def _lookup(node: dict[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """(definition name if node is a reference, the schema it stands for); schema nodes live as long as
    the schema, so each is resolved once."""
    if not node:
        return None, {}
    hit = _RESOLVED.get(id(node))
    if hit is not None and hit[2] is node:
        return hit[0], hit[1]
    name = _ref_name(node)
    resolved = (name, node if name is None else (schema.get(name) or {}), node)
    _RESOLVED[id(node)] = resolved
    return resolved[0], resolved[1]


@functools.cache
def _reference(definition: str) -> dict[str, Any]:
    return {"$ref": _DEF + definition}


def _is_opaque(name: str | None, s: dict[str, Any]) -> bool:
    if name in _OPAQUE or s.get("x-kubernetes-preserve-unknown-fields"):
        return True
    kind = s.get("type")
    return kind in (None, "object") and "properties" not in s and "additionalProperties" not in s and "items" not in s


def _go_type(node: dict[str, Any] | None) -> str:
    """The Go type name reflect would print for a field of this schema (best effort: named scalars stay plain)."""
    name, s = _lookup(node)
    if name is not None:
        if name in _GO_NAMES:
            return _GO_NAMES[name]
        if "properties" in s or name in _TIMES:
            parts = name.split(".")
            return f"{parts[-2]}.{parts[-1]}"
    kind = s.get("type")
    fmt = s.get("format")
    if kind == "array":
        return "[]" + _go_type(s.get("items"))
    if kind == "object" or "additionalProperties" in s:
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            return "map[string]" + _go_type(extra)
        return "map[string]interface {}"
    if kind == "string":
        return "[]uint8" if fmt == "byte" else "string"
    if kind == "integer":
        return fmt if fmt in ("int32", "int64") else "int"
    if kind == "number":
        return "float32" if fmt == "float" else "float64"
    if kind == "boolean":
        return "bool"
    return "interface {}"


# --------------------------------------------------------------------------------- unknown fields

def unknown_fields(obj: dict[str, Any], definition: str, prune: bool = False) -> list[str]:
    """Paths of the fields of obj the definition does not have, in document order (e.g. spec.volumes[0].foo).

    With prune, they are also removed from obj, as decoding into Kubernetes' Go types drops them.
    """
    root = schema.get(definition)
    if root is None or not isinstance(obj, dict):
        return []
    out: list[str] = []
    drop: list[tuple[dict[str, Any], str]] = []
    props = root.get("properties") or {}
    for key, value in obj.items():
        if key in props:
            if isinstance(value, (dict, list)):  # a scalar has no fields to be unknown
                _unknown_walk(value, props[key], key, out, drop)
        elif key not in ("apiVersion", "kind"):
            out.append(key)
            drop.append((obj, key))
    if prune:
        for parent, key in drop:
            parent.pop(key, None)
    return out


def _unknown_walk(value: Any, node: dict[str, Any], path: str, out: list[str],
                  drop: list[tuple[dict[str, Any], str]]) -> None:
    if value is None:
        return
    name, s = _lookup(node)
    if name in (_INT_OR_STRING, _QUANTITY) or name in _TIMES or _is_opaque(name, s):
        return
    if isinstance(value, dict):
        props = s.get("properties")
        if props is not None:
            for key, sub in value.items():
                if key in props:
                    if isinstance(sub, (dict, list)):
                        _unknown_walk(sub, props[key], f"{path}.{key}", out, drop)
                else:
                    out.append(f"{path}.{key}")
                    drop.append((value, key))
            return
        extra = s.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("type") not in _SCALAR_TYPES:
            for key, sub in value.items():
                _unknown_walk(sub, extra, f"{path}.{key}", out, drop)
        return
    if isinstance(value, list) and s.get("type") == "array":
        items = s.get("items")
        if isinstance(items, dict):
            for i, sub in enumerate(value):
                _unknown_walk(sub, items, f"{path}[{i}]", out, drop)


# ------------------------------------------------------------------------------------- fast check

# A Check answers how many object keys a value holds when it certainly has neither a type error nor
# an unknown field, and -1 when it may have one (then the walks below find and word them).
Check = Callable[[Any], int]
_CHECKS: dict[int, tuple[Check, dict[str, Any]]] = {}  # id(schema node) -> (its check, the node)


def fitting_keys(obj: dict[str, Any], definition: str) -> int:
    """The number of object keys in obj if it certainly fits the definition (no type error, no unknown
    field), else -1. One walk with checks made once per schema node, for the hot paths' bodies."""
    if schema.get(definition) is None:
        return _keys_in(obj, 0)  # no Go type to decode into (a custom resource): every field fits
    return _check_for(_reference(definition))(obj)


def _keys_in(value: Any, depth: int) -> int:
    """The number of object keys in a JSON value, -1 past the nesting bound."""
    if depth > limits.MAX_DEPTH:
        return -1
    if type(value) is dict:
        keys = len(value)
        for sub in value.values():
            if type(sub) is dict or type(sub) is list:
                n = _keys_in(sub, depth + 1)
                if n < 0:
                    return -1
                keys += n
        return keys
    if type(value) is list:
        keys = 0
        for sub in value:
            if type(sub) is dict or type(sub) is list:
                n = _keys_in(sub, depth + 1)
                if n < 0:
                    return -1
                keys += n
        return keys
    return 0


def _check_for(node: dict[str, Any]) -> Check:
    hit = _CHECKS.get(id(node))
    if hit is not None and hit[1] is node:
        return hit[0]
    check = _make_check(node)
    _CHECKS[id(node)] = (check, node)
    return check


def _accept(value: Any) -> int:
    return 0


def _refuse(value: Any) -> int:
    return -1


def _make_check(node: dict[str, Any]) -> Check:
    name, s = _lookup(node)
    if name in _TIMES:  # a time not in its canonical form goes the slow way, to be rewritten or refused
        micro = name == _MICRO_TIME
        return lambda v: 0 if metatime.is_canonical(v, micro) else -1
    if name == _INT_OR_STRING:
        return lambda v: 0 if type(v) is str or (type(v) is int and -(2**31) <= v < 2**31) else -1
    if name == _QUANTITY or s.get("x-kubernetes-preserve-unknown-fields") and "properties" in s:
        return _refuse  # rare: the walks decide
    if _is_opaque(name, s):
        return _accept
    props = s.get("properties")
    if props is not None:
        return _object_check(props)
    kind = s.get("type")
    if kind == "array":
        items = s.get("items")
        return _each_check(items, list, _members) if isinstance(items, dict) else _accept
    extra = s.get("additionalProperties")
    if kind == "object" or extra is not None:
        return _each_check(extra, dict, dict.values) if isinstance(extra, dict) else _accept
    return _scalar_check(kind, s.get("format"))


def _object_check(props: dict[str, Any]) -> Check:
    fields: dict[str, Check] = {}  # filled on first use: schemas refer to themselves

    def check(value: Any) -> int:
        if type(value) is not dict:
            return -1
        keys = len(value)
        for key, sub in value.items():
            if sub is None:
                if key not in props:
                    return -1
                continue
            field = fields.get(key)
            if field is None:
                if key not in props:
                    return -1
                field = fields[key] = _check_for(props[key])
            n = field(sub)
            if n < 0:
                return -1
            keys += n
        return keys

    return check


def _members(value: list[Any]) -> list[Any]:
    return value


def _each_check(node: dict[str, Any], container: type[list[Any]] | type[dict[str, Any]],
                members: Callable[[Any], Any]) -> Check:
    """A list or a map whose every member must fit node (a map's own keys count too)."""
    def check(value: list[Any] | dict[str, Any]) -> int:
        if type(value) is not container:
            return -1
        item = _check_for(node)
        keys = len(value) if container is dict else 0
        for sub in members(value):
            if sub is not None:
                n = item(sub)
                if n < 0:
                    return -1
                keys += n
        return keys

    return check


def _scalar_check(kind: str | None, fmt: str | None) -> Check:
    if kind == "string":
        return _refuse if fmt == "byte" else (lambda v: 0 if type(v) is str else -1)
    if kind == "boolean":
        return lambda v: 0 if type(v) is bool else -1
    if kind == "integer":
        lo, hi = _INT_RANGES.get(fmt or "", _INT_RANGES["int64"])
        return lambda v: 0 if type(v) is int and lo <= v <= hi else -1
    if kind == "number":
        return lambda v: 0 if type(v) in (int, float) else -1
    return _accept


# ------------------------------------------------------------------------------------ type errors

_json_kind = go_json_kind


def _number_literal(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _type_message(value_desc: str, go_type: str, stack: list[str], struct: str) -> str:
    if stack:
        return f"json: cannot unmarshal {value_desc} into Go struct field {struct}.{'.'.join(stack)} of type {go_type}"
    return f"json: cannot unmarshal {value_desc} into Go value of type {go_type}"


def type_errors(obj: dict[str, Any], definition: str) -> list[str]:
    """Go-json-style messages for the values decoding obj into its Go type refuses; the first is the one
    kube-apiserver reports. Decoding also rewrites what it reads: valid times are put in obj in their canonical
    form, as Kubernetes stores them.

    encoding/json notes a value of the wrong type and goes on (reporting the first such at the end), but a
    time that does not decode stops it at once: that message comes first, and the walk ends there.
    """
    root = schema.get(definition)
    if root is None or not isinstance(obj, dict):
        return []
    out: list[str] = []
    try:
        _type_walk(obj, _reference(definition), [], definition.rsplit(".", 1)[-1], out)
    except _Stop as e:
        return [e.message, *out]
    return out


class _Stop(Exception):
    """A value whose decoding error ends the decoding (its message is what Kubernetes answers)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _type_walk(value: Any, node: dict[str, Any], stack: list[str], struct: str, out: list[str]) -> Any:
    """value as decoding leaves it (the same object unless it is a time to rewrite); messages go to out."""
    if value is None:
        return None  # null leaves any Go value at its zero value
    name, s = _lookup(node)
    if name in _TIMES:
        return _decode_time(value, name == _MICRO_TIME, stack, struct)
    if name is not None and _check_named_type(name, value, out):
        return value
    if s.get("x-kubernetes-preserve-unknown-fields"):
        return value
    props = s.get("properties")
    if props is not None:
        _walk_struct(value, node, name, props, stack, struct, out)
        return value
    kind = s.get("type")
    if kind == "array":
        _walk_array(value, node, s, stack, struct, out)
    elif kind == "object" or "additionalProperties" in s:
        _walk_map(value, node, s, stack, struct, out)
    else:
        _check_scalar(value, s, node, stack, struct, out)
    return value


def _decode_time(value: Any, micro: bool, stack: list[str], struct: str) -> str | None:
    """A metav1.Time or MicroTime: its canonical text (None for Go's zero time), or _Stop with Go's words."""
    if not isinstance(value, str):  # UnmarshalJSON's decoding into a string, with the field's context
        raise _Stop(_type_message(_json_kind(value), "string", stack, struct))
    try:
        return metatime.canonical(value, micro)
    except metatime.TimeParseError as e:
        raise _Stop(str(e)) from None


def _check_named_type(name: str, value: Any, out: list[str]) -> bool:
    """Types with a JSON form of their own (opaque, int-or-string, quantity): True if `name` is one."""
    if name in _OPAQUE:
        return True
    if name == _INT_OR_STRING:
        _check_int_or_string(value, out)
    elif name == _QUANTITY:
        _check_quantity(value, out)
    else:
        return False
    return True


def _walk_struct(value: Any, node: dict[str, Any], name: str | None, props: dict[str, Any], stack: list[str],
                 struct: str, out: list[str]) -> None:
    if not isinstance(value, dict):
        out.append(_type_message(_json_kind(value), _go_type(node), stack, struct))
        return
    here = (name or "").rsplit(".", 1)[-1] or struct
    for key, sub in value.items():
        prop = props.get(key)
        if prop is None:
            continue
        if type(sub) is str and prop.get("type") == "string" and "format" not in prop:
            continue  # the most common field of all, fitting its schema: no walk needed
        decoded = _type_walk(sub, prop, [*stack, key], here, out)
        if decoded is not sub:
            value[key] = decoded  # an existing key: the dict keeps its size while iterated


def _walk_array(value: Any, node: dict[str, Any], s: dict[str, Any], stack: list[str], struct: str,
                out: list[str]) -> None:
    if not isinstance(value, list):
        out.append(_type_message(_json_kind(value), _go_type(node), stack, struct))
        return
    items = s.get("items")
    if isinstance(items, dict):
        for i, sub in enumerate(value):
            decoded = _type_walk(sub, items, stack, struct, out)
            if decoded is not sub:
                value[i] = decoded


def _walk_map(value: Any, node: dict[str, Any], s: dict[str, Any], stack: list[str], struct: str,
              out: list[str]) -> None:
    extra = s.get("additionalProperties")
    if not isinstance(extra, dict):
        return  # free-form object
    if not isinstance(value, dict):
        out.append(_type_message(_json_kind(value), _go_type(node), stack, struct))
        return
    if extra.get("type") == "string" and "format" not in extra and all(type(sub) is str for sub in value.values()):
        return  # labels, annotations, ConfigMap data: one pass instead of one walk per value
    for key, sub in value.items():
        decoded = _type_walk(sub, extra, stack, struct, out)
        if decoded is not sub:
            value[key] = decoded


def _check_scalar(value: Any, s: dict[str, Any], node: dict[str, Any], stack: list[str], struct: str,
                  out: list[str]) -> None:
    """Go type names are worked out only for a value that does not fit (most values do)."""
    kind = s.get("type")
    if kind == "string":
        if not isinstance(value, str):
            out.append(_type_message(_json_kind(value), _go_type(node), stack, struct))
        elif s.get("format") == "byte":
            offset = base64_error_offset(value.encode())
            if offset is not None:
                out.append(f"illegal base64 data at input byte {offset}")
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            out.append(_type_message(_json_kind(value), _go_type(node), stack, struct))
        return
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(_type_message(_json_kind(value), _go_type(node), stack, struct))
            return
        lo, hi = _INT_RANGES.get(s.get("format") or "", _INT_RANGES["int64"])
        if (isinstance(value, float) and not value.is_integer()) or not lo <= value <= hi:
            out.append(_type_message(f"number {_number_literal(value)}", _go_type(node), stack, struct))
        return
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        out.append(_type_message(_json_kind(value), _go_type(node), stack, struct))


def _check_int_or_string(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        return
    if isinstance(value, (bool, dict, list)):
        out.append(_type_message(_json_kind(value), "int32", [], ""))
        return
    lo, hi = _INT_RANGES["int32"]
    if (isinstance(value, float) and not value.is_integer()) or not lo <= value <= hi:
        out.append(_type_message(f"number {_number_literal(value)}", "int32", [], ""))


def _check_quantity(value: Any, out: list[str]) -> None:
    if isinstance(value, (bool, dict, list)):
        out.append(_QUANTITY_FORMAT_ERROR)
        return
    text = value.strip() if isinstance(value, str) else _number_literal(value)
    problem = quantity_error(text)
    if problem:
        out.append(problem)


def quantity_error(text: str) -> str | None:
    """Why resource.ParseQuantity would refuse text, in its words, or None if it parses."""
    m = _QUANTITY_FORMAT.match(text)
    if not m:
        return _QUANTITY_FORMAT_ERROR
    number, suffix = m.group(1), m.group(2)
    digits = number.lstrip("+-")
    if digits.count(".") > 1 or digits in ("", "."):
        return "unable to parse numeric part of quantity"
    if suffix not in _QUANTITY_SUFFIXES and not _DECIMAL_EXPONENT.match(suffix):
        return "unable to parse quantity's suffix"
    return None


_B64 = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def base64_error_offset(data: bytes) -> int | None:
    """Byte offset Go's base64.StdEncoding would report as illegal in data, or None if it decodes."""
    i, n = 0, len(data)
    while True:
        j = 0  # symbols of the current quantum read so far
        while j < 4:
            if i == n:
                if j == 0:
                    return None
                return i - j  # an unfinished quantum without padding
            c = data[i]
            i += 1
            if c in _B64:
                j += 1
                continue
            if c in (0x0A, 0x0D):
                continue
            if c != 0x3D:  # '='
                return i - 1
            if j < 2:
                return i - 1
            if j == 2:
                while i < n and data[i] in (0x0A, 0x0D):
                    i += 1
                if i == n:
                    return n
                if data[i] != 0x3D:
                    return i - 1
                i += 1
            while i < n and data[i] in (0x0A, 0x0D):
                i += 1
            return i if i < n else None


# ----------------------------------------------------------------------------------- strict errors

def strict_error_message(unknown: list[str], duplicates: list[str]) -> str:
    """The 400 message of a strict decoding failure: strict decoding error: unknown field "a", ..."""
    parts = [f'unknown field "{u}"' for u in unknown] + [f'duplicate field "{d}"' for d in duplicates]
    return "strict decoding error: " + ", ".join(parts)


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object kept as its (key, value) pairs, duplicates included."""


# The end of every object key in a JSON text (and of any string value followed by a colon).
_KEY_END = re.compile(rb'"[ \t\r\n]*:')


def find_duplicate_fields(raw_json: bytes, decoded_keys: int | None = None) -> list[str]:
    """Paths of keys that occur more than once in the same JSON object (e.g. metadata.name), in document order.

    `decoded_keys`, how many object keys the decoded body has (duplicates collapsed), makes the usual
    case cheap: each key of the text ends in a quote and a colon (so may a string value), so when the
    text holds no more of those than the decoded body has keys, no key was repeated.
    """
    if decoded_keys is not None and len(_KEY_END.findall(raw_json)) <= decoded_keys:
        return []
    # First a pass that keeps nothing (objects become None), so a large body without duplicates, the
    # usual case, costs one scan; the Python hook also lets other threads run meanwhile.
    found = False

    def spot(pairs: list[tuple[str, Any]]) -> None:
        nonlocal found
        if len(pairs) > 1 and not found and len({k for k, _ in pairs}) != len(pairs):
            found = True

    try:
        json.loads(raw_json, object_pairs_hook=spot)
        if not found:
            return []
        doc = json.loads(raw_json, object_pairs_hook=_Pairs)
    except (ValueError, TypeError, RecursionError):
        return []
    out: list[str] = []
    _dup_walk(doc, "", out)
    return out


def _dup_walk(node: Any, path: str, out: list[str]) -> None:
    # Paths are only built for containers and duplicates: large flat maps stay cheap.
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, value in node:
            if key in seen:
                out.append(f"{path}.{key}" if path else key)
            seen.add(key)
            if isinstance(value, list):
                _dup_walk(value, f"{path}.{key}" if path else key, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, list):
                _dup_walk(value, f"{path}[{i}]", out)
