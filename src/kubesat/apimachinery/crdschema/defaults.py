"""Defaulting a custom resource top-down from its structural schema's `default` values."""

from __future__ import annotations

import copy
from typing import Any

from kubesat.apimachinery.crdschema import nodes
from kubesat.apimachinery.crdschema.bounds import Budget


def nodes_in(value: Any) -> int:
    """How many JSON nodes a value holds (what a copy of it costs)."""
    if isinstance(value, dict):
        return 1 + sum(nodes_in(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(nodes_in(v) for v in value)
    return 1


def _copy(value: Any, budget: Budget) -> Any:
    """A default's copy, charged to the budget by its size, so that many nulls cannot multiply a large default."""
    if isinstance(value, (dict, list)):
        budget.charge(nodes_in(value))
        return copy.deepcopy(value)
    return value


def _non_nullable_null(x: Any, s: Any) -> bool:
    return x is None and isinstance(s, dict) and s.get("nullable") is not True


def default(x: Any, s: Any, budget: Budget, depth: int = 0) -> None:
    """Fill absent properties (and nulls where the schema is not nullable) with copies of their defaults."""
    if not isinstance(s, dict):
        return
    budget.step(depth)
    if isinstance(x, dict):
        props = nodes.obj(s.get("properties"))
        for k, prop in props.items():
            if not isinstance(prop, dict) or prop.get("default") is None:
                continue
            if k not in x or _non_nullable_null(x[k], prop):
                x[k] = _copy(prop["default"], budget)
        extra = s.get("additionalProperties")
        for k in list(x):
            if isinstance(props.get(k), dict):
                default(x[k], props[k], budget, depth + 1)
            elif isinstance(extra, dict):
                if _non_nullable_null(x[k], extra):
                    x[k] = _copy(extra.get("default"), budget)
                default(x[k], extra, budget, depth + 1)
    elif isinstance(x, list):
        items = s.get("items")
        for i in range(len(x)):
            if _non_nullable_null(x[i], items) and isinstance(items, dict):
                x[i] = _copy(items.get("default"), budget)
            default(x[i], items, budget, depth + 1)
