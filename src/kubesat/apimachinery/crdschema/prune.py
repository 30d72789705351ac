"""Pruning (dropping fields a structural schema does not specify) and dropping nulls a schema does not allow."""

from __future__ import annotations

from typing import Any

from kubesat.apimachinery.crdschema.bounds import Budget

_META = ("apiVersion", "kind", "metadata")
# ObjectMeta's fields: an embedded resource's metadata keeps only these (Kubernetes round-trips it through ObjectMeta).
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers",
    "managedFields"})
# additionalProperties: true without a schema: the values are kept, but nothing inside them is specified.
_NOTHING: dict[str, Any] = {}


def _child(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _sub(s: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The schema of key in an object of schema s; None when the key is unknown."""
    props = s.get("properties")
    if isinstance(props, dict) and isinstance(props.get(key), dict):
        sub: dict[str, Any] = props[key]
        return sub
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    if extra is True or (extra is not None and extra is not False):
        return _NOTHING
    return None


def _coerce_meta(meta: dict[str, Any], path: str, found: list[str]) -> None:
    """An embedded resource's metadata loses the keys ObjectMeta does not have (the root's is the caller's)."""
    for k in list(meta):
        if k not in OBJECT_META_FIELDS:
            found.append(f"{path}.{k}")
            del meta[k]


def _prune(x: Any, s: dict[str, Any] | None, parent: str, found: list[str], budget: Budget, depth: int) -> None:
    budget.step(depth)
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields") is True:
        _skip(x, s, parent, found, budget, depth)
        return
    if isinstance(x, dict):
        embedded = s is not None and s.get("x-kubernetes-embedded-resource") is True
        if embedded and parent and isinstance(x.get("metadata"), dict):
            _coerce_meta(x["metadata"], _child(parent, "metadata"), found)
        for k in list(x):
            if embedded and k in _META:
                continue
            sub = None if s is None or s is _NOTHING else _sub(s, k)
            if sub is None:
                found.append(_child(parent, k))
                del x[k]
            elif isinstance(x[k], (dict, list)):
                _prune(x[k], None if sub is _NOTHING else sub, _child(parent, k), found, budget, depth + 1)
            else:
                budget.step(depth + 1)  # a scalar: nothing in it to prune
    elif isinstance(x, list):
        items = s.get("items") if s is not None else None
        for i, v in enumerate(x):
            _prune(v, items if isinstance(items, dict) else None, f"{parent}[{i}]", found, budget, depth + 1)


def _skip(x: Any, s: dict[str, Any], parent: str, found: list[str], budget: Budget, depth: int) -> None:
    """Below preserve-unknown-fields: unknown keys stay, known ones are pruned by their own schema."""
    if isinstance(x, dict):
        embedded = s.get("x-kubernetes-embedded-resource") is True
        if embedded and parent and isinstance(x.get("metadata"), dict):
            _coerce_meta(x["metadata"], _child(parent, "metadata"), found)
        for k in list(x):
            if embedded and k in _META:
                continue
            sub = _sub(s, k)
            if sub is not None:
                _prune(x[k], None if sub is _NOTHING else sub, _child(parent, k), found, budget, depth + 1)
    elif isinstance(x, list):
        items = s.get("items")
        for i, v in enumerate(x):
            if isinstance(items, dict):
                budget.step(depth + 1)
                _skip(v, items, f"{parent}[{i}]", found, budget, depth + 1)


def prune_paths(schema: dict[str, Any], obj: Any, budget: Budget) -> list[str]:
    """Prune obj in place as the resource root (apiVersion, kind and metadata stay) and list the paths removed."""
    root = dict(schema)
    root["x-kubernetes-embedded-resource"] = True
    found: list[str] = []
    _prune(obj, root, "", found, budget, 0)
    return sorted(found)


def _null_dropping_schema(s: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if s is None:
        return None
    sub = _sub(s, key)
    return None if sub is _NOTHING else sub


def drop_nulls(x: Any, s: dict[str, Any] | None, budget: Budget, depth: int = 0) -> None:
    """Remove null values whose schema is neither nullable nor defaulted (Kubernetes does this before defaulting)."""
    budget.step(depth)
    if isinstance(x, dict):
        for k in list(x):
            v = x[k]
            if v is not None and not isinstance(v, (dict, list)):
                budget.step(depth + 1)  # a scalar: nothing in it to drop
                continue
            sub = _null_dropping_schema(s, k)
            if v is None and sub is not None and sub.get("nullable") is not True and sub.get("default") is None:
                del x[k]
            else:
                drop_nulls(v, sub, budget, depth + 1)
    elif isinstance(x, list):
        items = s.get("items") if s is not None else None
        for v in x:
            drop_nulls(v, items if isinstance(items, dict) else None, budget, depth + 1)


def prune_embedded(schema: dict[str, Any], obj: Any, as_resource: bool, budget: Budget) -> list[str]:
    """Prune obj (a default value) by schema; as a resource it keeps its apiVersion, kind and metadata."""
    root = dict(schema)
    if as_resource:
        root["x-kubernetes-embedded-resource"] = True
    found: list[str] = []
    _prune(obj, root, "", found, budget, 0)
    return found
