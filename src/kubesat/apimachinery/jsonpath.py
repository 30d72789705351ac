"""The part of kubectl's JSONPath that CRD printer columns use: fields, indexes, `[*]` and `[?(@.f=="v")]` filters."""

from __future__ import annotations

import re
from typing import Any

MAX_STEPS = 64  # a column's path is short; a longer one is refused rather than walked

_STEP = re.compile(r"""\.([^.\[]+)|\[(\*|-?\d+|\?\(@\.([^=!<>)]+)\s*(==|!=)\s*(?:"([^"]*)"|'([^']*)'|([^)\s]+))\))\]""")


class PathError(ValueError):
    """A path outside the supported subset."""


def parse(path: str) -> list[tuple[str, Any]]:
    """Steps of a path such as `.status.conditions[?(@.type=="Ready")].status` (braces, if any, dropped)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text and not text.startswith((".", "[")):
        text = "." + text
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None or len(steps) >= MAX_STEPS:
            raise PathError(f"unsupported JSONPath {path!r}")
        pos = m.end()
        if m.group(1) is not None:
            steps.append(("field", m.group(1)))
        elif m.group(2) == "*":
            steps.append(("all", None))
        elif m.group(3) is not None:
            wanted = next((g for g in (m.group(5), m.group(6), m.group(7)) if g is not None), "")
            steps.append(("filter", (m.group(3).split("."), m.group(4), wanted)))
        else:
            steps.append(("index", int(m.group(2))))
    return steps


def _field_of(value: Any, names: list[str]) -> Any:
    for name in names:
        if not isinstance(value, dict) or name not in value:
            return None
        value = value[name]
    return value


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _step(values: list[Any], kind: str, arg: Any) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if kind == "field":
            if isinstance(v, dict) and arg in v:
                out.append(v[arg])
        elif kind == "all":
            out.extend(v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else [])
        elif kind == "index":
            if isinstance(v, list) and -len(v) <= arg < len(v):
                out.append(v[arg])
        elif isinstance(v, list):
            names, op, wanted = arg
            for item in v:
                got = _field_of(item, names)
                if got is not None and (_scalar_text(got) == wanted) == (op == "=="):
                    out.append(item)
    return out


def find(obj: Any, steps: list[tuple[str, Any]]) -> list[Any]:
    """Every value the path reaches in obj, in document order."""
    values = [obj]
    for kind, arg in steps:
        values = _step(values, kind, arg)
        if not values:
            break
    return values
