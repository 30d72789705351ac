"""The checked syntax tree of a compiled expression, read from the engine's serialized `cel.expr.CheckedExpr`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Wire types of the protobuf encoding.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: varints as ints, length-delimited as bytes."""
    out: list[tuple[int, int, Any]] = []
    i, n = 0, len(data)
    while i < n:
        key, i = _varint(data, i)
        num, wire = key >> 3, key & 7
        value: Any
        if wire == _VARINT:
            value, i = _varint(data, i)
        elif wire == _LEN:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        elif wire == _I64:
            value, i = data[i:i + 8], i + 8
        elif wire == _I32:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((num, wire, value))
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass
class Node:
    """One expression: kind is const, ident, select, call, list, map, struct or comprehension."""

    id: int
    kind: str
    name: str = ""  # ident name, selected field, function name, struct type
    value: Any = None  # a constant's value
    operand: Node | None = None  # select operand, call target
    test_only: bool = False  # has()
    args: list[Node] = field(default_factory=list)  # call args, list elements, map keys and values interleaved
    iter_var: str = ""
    iter_var2: str = ""
    accu_var: str = ""
    iter_range: Node | None = None
    accu_init: Node | None = None
    loop_condition: Node | None = None
    loop_step: Node | None = None
    result: Node | None = None


@dataclass
class Checked:
    """The tree, the type the checker gave each node, the overloads each call resolved to, and positions."""

    root: Node
    types: dict[int, Any]  # node id -> a type (see _type)
    overloads: dict[int, list[str]]
    references: dict[int, str]  # ident node id -> the variable it names
    positions: dict[int, int]


def parse(serialized: bytes) -> Checked:
    """The CheckedExpr inside the engine's `serialize()` output (a google.protobuf.Any)."""
    payload = b""
    for num, _, value in _fields(serialized):
        if num == 2:
            payload = value
    types: dict[int, Any] = {}
    overloads: dict[int, list[str]] = {}
    references: dict[int, str] = {}
    positions: dict[int, int] = {}
    root: Node | None = None
    for num, _, value in _fields(payload):
        if num == 2:
            key, ref = _map_entry(value)
            names = [v.decode() for n, _, v in _fields(ref) if n == 3]
            ident = [v.decode() for n, _, v in _fields(ref) if n == 1]
            if names:
                overloads[key] = names
            if ident:
                references[key] = ident[0]
        elif num == 3:
            key, t = _map_entry(value)
            types[key] = _type(t)
        elif num == 4:
            root = _expr(value)
        elif num == 5:
            for n, _, v in _fields(value):
                if n == 4:
                    k, p = _int_entry(v)
                    positions[k] = p
    if root is None:
        raise ValueError("no expression in the checked result")
    return Checked(root, types, overloads, references, positions)


def _map_entry(data: bytes) -> tuple[int, bytes]:
    key, value = 0, b""
    for num, _, v in _fields(data):
        if num == 1:
            key = _signed(v)
        elif num == 2:
            value = v
    return key, value


def _int_entry(data: bytes) -> tuple[int, int]:
    key = value = 0
    for num, _, v in _fields(data):
        if num == 1:
            key = _signed(v)
        elif num == 2:
            value = v
    return key, value


_PRIMITIVES = {1: "bool", 2: "int", 3: "uint", 4: "double", 5: "string", 6: "bytes"}
_WELL_KNOWN = {1: "any", 2: "timestamp", 3: "duration"}


def _type(data: bytes) -> Any:
    """A checked type as a small value: 'int', 'dyn', ('list', elem), ('map', key, value), ('message', name)."""
    for num, _, v in _fields(data):
        if num == 1:
            return "dyn"
        if num == 2:
            return "null"
        if num == 3:
            return _PRIMITIVES.get(v, "dyn")
        if num == 4:
            return ("wrapper", _PRIMITIVES.get(v, "dyn"))
        if num == 5:
            return _WELL_KNOWN.get(v, "dyn")
        if num == 6:
            elems = [_type(e) for n, _, e in _fields(v) if n == 1]
            return ("list", elems[0] if elems else "dyn")
        if num == 7:
            parts = {n: _type(e) for n, _, e in _fields(v)}
            return ("map", parts.get(1, "dyn"), parts.get(2, "dyn"))
        if num == 9:
            return ("message", v.decode())
        if num == 10:
            return ("param", v.decode())
        if num == 11:
            return "type"
        if num == 12:
            return "error"
        if num == 14:
            names = [e.decode() for n, _, e in _fields(v) if n == 1]
            return ("abstract", names[0] if names else "")
    return "dyn"


def _expr(data: bytes) -> Node:
    node = Node(0, "const")
    for num, _, v in _fields(data):
        if num == 2:
            node.id = _signed(v)
        elif num == 3:
            node.kind, node.value = "const", _constant(v)
        elif num == 4:
            node.kind = "ident"
            node.name = next((e.decode() for n, _, e in _fields(v) if n == 1), "")
        elif num == 5:
            _select(node, v)
        elif num == 6:
            _call(node, v)
        elif num == 7:
            node.kind = "list"
            node.args = [_expr(e) for n, _, e in _fields(v) if n == 1]
        elif num == 8:
            _struct(node, v)
        elif num == 9:
            _comprehension(node, v)
    return node


def _constant(data: bytes) -> Any:
    for num, wire, v in _fields(data):
        if num == 1:
            return None
        if num == 2:
            return bool(v)
        if num == 3:
            return _signed(v)
        if num == 4:
            return v
        if num == 5:
            return ("double", v)
        if num in (6, 7):
            return v.decode("utf-8", "replace") if num == 6 else v
        del wire
    return None


def _select(node: Node, data: bytes) -> None:
    node.kind = "select"
    for num, _, v in _fields(data):
        if num == 1:
            node.operand = _expr(v)
        elif num == 2:
            node.name = v.decode()
        elif num == 3:
            node.test_only = bool(v)


def _call(node: Node, data: bytes) -> None:
    node.kind = "call"
    for num, _, v in _fields(data):
        if num == 1:
            node.operand = _expr(v)
        elif num == 2:
            node.name = v.decode()
        elif num == 3:
            node.args.append(_expr(v))


def _struct(node: Node, data: bytes) -> None:
    node.kind = "struct"
    for num, _, v in _fields(data):
        if num == 1:
            node.name = v.decode()
        elif num == 2:
            entry = {n: e for n, _, e in _fields(v)}
            if 3 in entry:
                node.kind = "map"
                node.args.append(_expr(entry[3]))
            if 4 in entry:
                node.args.append(_expr(entry[4]))
    if node.name:
        node.kind = "struct"


def _comprehension(node: Node, data: bytes) -> None:
    node.kind = "comprehension"
    for num, _, v in _fields(data):
        if num == 1:
            node.iter_var = v.decode()
        elif num == 2:
            node.iter_range = _expr(v)
        elif num == 3:
            node.accu_var = v.decode()
        elif num == 4:
            node.accu_init = _expr(v)
        elif num == 5:
            node.loop_condition = _expr(v)
        elif num == 6:
            node.loop_step = _expr(v)
        elif num == 7:
            node.result = _expr(v)
        elif num == 8:
            node.iter_var2 = v.decode()
