"""A structural schema compiled once into a yes/no check that a value has no OpenAPI errors (anything it does not
model answers no), and whether the schema has embedded resources, set/map lists or defaults: the common, valid
custom resource then skips the walks that would find nothing (validate.py, embedded.py, lists.py, defaults.py)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from kubesat import limits
from kubesat.apimachinery.crdschema import formats, nodes, regex

# The Python types a value of each OpenAPI type decodes to (an integral float for "integer" is left to the
# validator); a type name outside these admits nothing here.
_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,), "number": (int, float), "string": (str,), "boolean": (bool,), "object": (dict,),
    "array": (list,),
}
# Keywords the validator honours that are not modelled: a node with one is left to the validator.
_UNMODELLED = ("multipleOf", "anyOf", "oneOf", "allOf", "not")


def _count(v: Any) -> int | None:
    return v if type(v) is int else None


def _number(v: Any) -> int | float | None:
    return v if type(v) in (int, float) else None


class _Node:
    """One schema node's checks, read from its keywords once."""

    __slots__ = ("opaque", "types", "fmt", "enum", "max_len", "min_len", "pattern", "minimum", "maximum",
                 "exclusive_min", "exclusive_max", "items", "min_items", "max_items", "min_props", "max_props",
                 "props", "required", "closed", "extra")

    def __init__(self, s: dict[str, Any], depth: int) -> None:
        self.opaque = depth > limits.MAX_DEPTH or any(k in s for k in _UNMODELLED) or s.get("uniqueItems") is True
        t = s.get("type")
        names = ["integer", "string"] if s.get("x-kubernetes-int-or-string") is True else \
            [t] if isinstance(t, str) and t else []
        self.types: tuple[type, ...] | None = tuple(x for n in names for x in _TYPES.get(n, ())) if names else None
        f = s.get("format")
        self.fmt = f if isinstance(f, str) and formats.is_supported(f) else ""
        if self.fmt and self.types is None:
            self.opaque = True  # the validator's type check for a format without a type is not modelled
        self.enum = self._enum(s.get("enum"))
        self.max_len, self.min_len = _count(s.get("maxLength")), _count(s.get("minLength"))
        self.pattern = self._pattern(s.get("pattern"))
        self.minimum, self.maximum = _number(s.get("minimum")), _number(s.get("maximum"))
        self.exclusive_min, self.exclusive_max = s.get("exclusiveMinimum") is True, s.get("exclusiveMaximum") is True
        items = s.get("items")
        self.items = _Node(items, depth + 1) if isinstance(items, dict) and not self.opaque else None
        self.min_items, self.max_items = _count(s.get("minItems")), _count(s.get("maxItems"))
        self.min_props, self.max_props = _count(s.get("minProperties")), _count(s.get("maxProperties"))
        self.props = {} if self.opaque else \
            {k: _Node(v, depth + 1) for k, v in nodes.obj(s.get("properties")).items() if isinstance(v, dict)}
        self.required = tuple(k for k in nodes.seq(s.get("required")) if isinstance(k, str))
        extra = s.get("additionalProperties")
        self.closed = extra is False
        self.extra = _Node(extra, depth + 1) if isinstance(extra, dict) and not self.opaque else None

    def _enum(self, enum: Any) -> frozenset[str] | None:
        if not isinstance(enum, list) or not enum:
            return None
        if not all(isinstance(v, str) for v in enum):
            self.opaque = True  # numbers and strings compare across types there (reflect's Convert)
            return None
        return frozenset(enum)

    def _pattern(self, pattern: Any) -> regex.Matcher | None:
        if not isinstance(pattern, str) or not pattern:
            return None
        try:
            return regex.translate(pattern)
        except regex.RegexError:
            self.opaque = True  # the validator reports the invalid pattern
        except regex.Unsupported:
            pass  # the validator does not check it either
        return None


class _Walk:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = limits.MAX_SCHEMA_STEPS


def _ok(n: _Node, data: Any, depth: int, walk: _Walk) -> bool:
    """Whether the validator would find no error in data (False also when unsure, or past its step budget)."""
    walk.left -= 1
    if walk.left < 0 or depth > limits.MAX_DEPTH or n.opaque or data is None:
        return False
    tv = type(data)
    if n.types is not None and tv not in n.types:
        return False
    if n.enum is not None and (tv is not str or data not in n.enum):
        return False
    if tv is str:
        return _string_ok(n, data)
    if tv is int or tv is float:
        return _number_ok(n, data, tv is int)
    if tv is dict:
        return _object_ok(n, data, depth, walk)
    if tv is list:
        return _array_ok(n, data, depth, walk)
    return tv is bool


def _string_ok(n: _Node, data: str) -> bool:
    size = len(data)
    if (n.max_len is not None and size > n.max_len) or (n.min_len is not None and size < n.min_len):
        return False
    if n.pattern is not None and not n.pattern.search(data):
        return False
    return not n.fmt or formats.valid(n.fmt, data)


def _number_ok(n: _Node, data: int | float, integral: bool) -> bool:
    if n.minimum is not None:
        low = int(n.minimum) if integral else float(n.minimum)
        if data < low or (n.exclusive_min and data == low):
            return False
    if n.maximum is not None:
        high = int(n.maximum) if integral else float(n.maximum)
        if data > high or (n.exclusive_max and data == high):
            return False
    return True


def _object_ok(n: _Node, data: dict[str, Any], depth: int, walk: _Walk) -> bool:
    size = len(data)
    if (n.min_props is not None and size < n.min_props) or (n.max_props is not None and size > n.max_props):
        return False
    props = n.props
    for k, v in data.items():
        sub = props.get(k)
        if sub is not None:
            if not _ok(sub, v, depth + 1, walk):
                return False
        elif n.closed or (n.extra is not None and not _ok(n.extra, v, depth + 1, walk)):
            return False
    return all(k in data for k in n.required)


def _array_ok(n: _Node, data: list[Any], depth: int, walk: _Walk) -> bool:
    size = len(data)
    if (n.min_items is not None and size < n.min_items) or (n.max_items is not None and size > n.max_items):
        return False
    items = n.items
    return items is None or all(_ok(items, v, depth + 1, walk) for v in data)


def _mentions(s: dict[str, Any], found: Any, depth: int = 0) -> bool:
    """Whether `found` holds for s or a node below it along properties, additionalProperties and items."""
    if depth > limits.MAX_DEPTH or found(s):
        return True
    below = [s.get("items"), s.get("additionalProperties"), *nodes.obj(s.get("properties")).values()]
    return any(isinstance(b, dict) and _mentions(b, found, depth + 1) for b in below)


class _Root:
    __slots__ = ("schema", "node", "embedded", "lists", "defaults")

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.node = _Node(schema, 0)
        self.embedded = _mentions(schema, lambda s: s.get("x-kubernetes-embedded-resource") is True)
        self.lists = _mentions(schema, lambda s: s.get("x-kubernetes-list-type") in ("set", "map"))
        self.defaults = _mentions(schema, lambda s: s.get("default") is not None)


_lock = threading.Lock()
# Compiled roots by the schema's identity (the schema is kept, so the identity is not reused).
_compiled: OrderedDict[int, _Root] = OrderedDict()


def _root(schema: dict[str, Any]) -> _Root:
    hit = _compiled.get(id(schema))
    if hit is not None and hit.schema is schema:
        return hit
    root = _Root(schema)
    with _lock:
        _compiled[id(schema)] = root
        while len(_compiled) > limits.QUICKCHECK_SCHEMAS:
            _compiled.popitem(last=False)
    return root


def passes(schema: dict[str, Any], obj: Any) -> bool:
    """True only if the OpenAPI validation of obj against schema finds nothing (and stays within its budget)."""
    return _ok(_root(schema).node, obj, 0, _Walk())


def has_embedded(schema: dict[str, Any]) -> bool:
    """Whether the schema may have an x-kubernetes-embedded-resource node."""
    return _root(schema).embedded


def has_list_types(schema: dict[str, Any]) -> bool:
    """Whether the schema may have a set or map list (x-kubernetes-list-type)."""
    return _root(schema).lists


def has_defaults(schema: dict[str, Any]) -> bool:
    """Whether the schema may have a node with a default (else defaulting changes nothing)."""
    return _root(schema).defaults
