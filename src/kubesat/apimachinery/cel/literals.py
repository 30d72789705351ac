"""The literal checks of Kubernetes' environment that the engine's checker lacks: list and map literals of one type
(`[1, 'a']`: `expected type 'int' but found 'string'`) and, since 1.29, valid literal durations, timestamps and regular
expressions (`duration('1x')`: `invalid duration argument`)."""

from __future__ import annotations

import re
from typing import Any

from kubesat.apimachinery.cel.checked import Checked, Node
from kubesat.apimachinery.cel.values import parse_duration, parse_timestamp

_NAMES = {"timestamp": "google.protobuf.Timestamp", "duration": "google.protobuf.Duration", "null": "null_type"}


def type_name(t: Any) -> str:
    """A checked type as cel-go prints it."""
    if isinstance(t, tuple):
        if t[0] == "list":
            return f"list({type_name(t[1])})"
        if t[0] == "map":
            return f"map({type_name(t[1])}, {type_name(t[2])})"
        if t[0] == "wrapper":
            return f"wrapper({type_name(t[1])})"
        return str(t[1])
    return _NAMES.get(t, str(t))


def _assignable(a: Any, b: Any) -> bool:
    if a == b or "dyn" in (a, b) or "error" in (a, b):
        return True
    if "null" in (a, b):
        other = b if a == "null" else a
        return isinstance(other, tuple) or other in ("timestamp", "duration", "any")
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] and len(a) == len(b):
        return all(_assignable(x, y) for x, y in zip(a[1:], b[1:], strict=True))
    return False


def _general(a: Any, b: Any) -> Any:
    """The less specific of two assignable types (dyn over anything, anything over null)."""
    if "dyn" in (a, b):
        return "dyn"
    return b if a in ("null", "error") else a


def mismatches(tree: Checked) -> list[tuple[int, str]]:
    """(source offset, message) of each literal whose elements, keys or values differ in type, and of each invalid
    literal argument of duration(), timestamp() and matches()."""
    out: list[tuple[int, str]] = []
    _walk(tree.root, tree, out)
    return out


def _valid_regex(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


_LITERAL_CHECKS = {
    "duration": lambda s: parse_duration(s) is not None,
    "timestamp": lambda s: parse_timestamp(s) is not None,
    "matches": _valid_regex,
}


def _walk(node: Node | None, tree: Checked, out: list[tuple[int, str]]) -> None:
    if node is None:
        return
    if node.kind == "list":
        _join(node.args, tree, out)
    elif node.kind == "map":
        _join(node.args[0::2], tree, out)
        _join(node.args[1::2], tree, out)
    elif node.kind == "call" and node.name in _LITERAL_CHECKS and node.args:
        arg = node.args[0]
        if arg.kind == "const" and isinstance(arg.value, str) and not _LITERAL_CHECKS[node.name](arg.value):
            out.append((tree.positions.get(arg.id, 0), f"invalid {node.name} argument"))
    for child in (node.operand, node.iter_range, node.accu_init, node.loop_condition, node.loop_step, node.result,
                  *node.args):
        _walk(child, tree, out)


def _join(elements: list[Node], tree: Checked, out: list[tuple[int, str]]) -> None:
    joined: Any = None
    for e in elements:
        t = tree.types.get(e.id, "dyn")
        if joined is None:
            joined = t
        elif _assignable(joined, t):
            joined = _general(joined, t)
        else:
            out.append((tree.positions.get(e.id, 0),
                        f"expected type '{type_name(joined)}' but found '{type_name(t)}'"))
            return


def issue_text(source: str, offset: int, message: str) -> str:
    """One issue as cel-go writes it: `ERROR: <input>:line:column: message` and the line with a caret."""
    before = source[:offset]
    line = before.count("\n") + 1
    start = before.rfind("\n") + 1
    column = offset - start + 1
    end = source.find("\n", offset)
    text = source[start:] if end < 0 else source[start:end]
    return f"ERROR: <input>:{line}:{column}: {message}\n | {text}\n | {'.' * (column - 1)}^"
