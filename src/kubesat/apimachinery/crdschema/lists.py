"""x-kubernetes-list-type set and map on custom resources: repeated items and keys are `Duplicate value` errors."""

from __future__ import annotations

import json
from typing import Any

from kubesat import errors
from kubesat.errors import FieldError
from kubesat.apimachinery.crdschema import nodes
from kubesat.apimachinery.crdschema.bounds import Budget
from kubesat.apimachinery.crdschema.gofmt import field_value


def _key(x: Any) -> str:
    """Identity of a set item: compounds by their JSON (sorted keys), scalars by type and value (1 is not 1.0)."""
    if isinstance(x, (dict, list)):
        return "c" + json.dumps(x, sort_keys=True, separators=(",", ":"))
    return f"s{type(x).__name__}:{x!r}"


def _repeats(items: list[Any]) -> list[int]:
    """The index of each value's second occurrence (Kubernetes reports a repeated value once)."""
    seen: dict[str, int] = {}
    out = []
    for i, x in enumerate(items):
        k = _key(x)
        seen[k] = seen.get(k, 0) + 1
        if seen[k] == 2:
            out.append(i)
    return out


def _list_map(path: str, s: dict[str, Any], obj: list[Any]) -> list[FieldError]:
    for i, x in enumerate(obj):
        if x is not None and not isinstance(x, dict):
            return [errors.invalid_value(f"{path}[{i}]", field_value(x),
                    "must be an object for an array of list-type map")]
    if len(obj) <= 1:
        return []
    names = [k for k in s.get("x-kubernetes-list-map-keys") or [] if isinstance(k, str)]
    keys: list[Any] = []
    for x in obj:
        found = {k: x[k] for k in names if isinstance(x, dict) and k in x}
        keys.append(found)
    return [errors.duplicate(f"{path}[{i}]", field_value(keys[i])) for i in _repeats(keys)]


def _array(path: str, s: dict[str, Any], obj: list[Any], budget: Budget, depth: int) -> list[FieldError]:
    errs: list[FieldError] = []
    kind = s.get("x-kubernetes-list-type")
    if kind == "set":
        errs.extend(errors.duplicate(f"{path}[{i}]", field_value(obj[i])) for i in _repeats(obj))
    elif kind == "map":
        errs.extend(_list_map(path, s, obj))
    items = s.get("items")
    if isinstance(items, dict):
        for i, x in enumerate(obj):
            errs.extend(_walk(f"{path}[{i}]", items, x, budget, depth + 1))
    return errs


def _walk(path: str, s: dict[str, Any], obj: Any, budget: Budget, depth: int) -> list[FieldError]:
    budget.step(depth)
    if isinstance(obj, list):
        return _array(path, s, obj, budget, depth)
    if not isinstance(obj, dict):
        return []
    errs: list[FieldError] = []
    props = nodes.obj(s.get("properties"))
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        for k, v in obj.items():
            errs.extend(_walk(f"{path}[{k}]", extra, v, budget, depth + 1))
    for k, v in obj.items():
        sub = props.get(k)
        if isinstance(sub, dict):
            errs.extend(_walk(f"{path}.{k}" if path else k, sub, v, budget, depth + 1))
    return errs


def list_errors(schema: dict[str, Any], obj: Any, path: str, budget: Budget) -> list[FieldError]:
    """Duplicate items of set lists and duplicate keys of map lists anywhere in obj."""
    if not isinstance(obj, dict):
        return []
    return _walk(path, schema, obj, budget, 0)
