"""Embedded resources (x-kubernetes-embedded-resource) in a custom resource: apiVersion, kind and their metadata."""

from __future__ import annotations

import re
from typing import Any

from kubesat import errors
from kubesat.errors import FieldError
from kubesat.apimachinery.crdschema import nodes
from kubesat.apimachinery.crdschema.bounds import Budget
from kubesat.apimachinery.crdschema.gofmt import field_value
from kubesat.apimachinery.crdschema.validate import MetaValidator

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
                "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
                "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def _dns1035(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _DNS1035.fullmatch(value):
        out.append(_DNS1035_MSG)
    return out


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _resource(path: str, x: dict[str, Any], meta: MetaValidator | None) -> list[FieldError]:
    errs: list[FieldError] = []
    if "apiVersion" not in x:
        errs.append(errors.required(_child(path, "apiVersion"), "must not be empty"))
    if "kind" not in x:
        errs.append(errors.required(_child(path, "kind"), "must not be empty"))
    for k, v in x.items():
        if k == "apiVersion":
            errs.extend(_api_version(_child(path, k), v))
        elif k == "kind":
            errs.extend(_kind(_child(path, k), v))
        elif k == "metadata" and meta is not None:
            if isinstance(v, dict):
                errs.extend(meta(v, _child(path, k)))
            else:
                errs.append(errors.invalid_value(_child(path, k), field_value(v),
                                                 "json: cannot unmarshal into Go value of type v1.ObjectMeta"))
    return errs


def _api_version(path: str, v: Any) -> list[FieldError]:
    if not isinstance(v, str):
        return [errors.invalid_value(path, field_value(v), "must be a string")]
    if not v:
        return [errors.invalid_value(path, v, "must not be empty")]
    if v != "/" and v.count("/") > 1:
        return [errors.invalid_value(path, v, f"unexpected GroupVersion string: {v}")]
    return []


def _kind(path: str, v: Any) -> list[FieldError]:
    if not isinstance(v, str):
        return [errors.invalid_value(path, field_value(v), "must be a string")]
    if not v:
        return [errors.invalid_value(path, v, "must not be empty")]
    problems = _dns1035(v.lower())
    if problems:
        return [errors.invalid_value(path, v, "may have mixed case, but should otherwise match: " + ",".join(problems))]
    return []


def _walk(path: str, s: dict[str, Any] | None, x: Any, meta: MetaValidator | None, budget: Budget,
          depth: int) -> list[FieldError]:
    if s is None:
        return []
    budget.step(depth)
    errs: list[FieldError] = []
    if isinstance(x, dict):
        if s.get("x-kubernetes-embedded-resource") is True:
            errs.extend(_resource(path, x, meta))
        props = nodes.obj(s.get("properties"))
        extra = s.get("additionalProperties")
        for k, v in x.items():
            if isinstance(props.get(k), dict):
                errs.extend(_walk(_child(path, k), props[k], v, meta, budget, depth + 1))
            elif isinstance(extra, dict):
                errs.extend(_walk(f"{path}[{k}]", extra, v, meta, budget, depth + 1))
    elif isinstance(x, list):
        items = s.get("items")
        for i, v in enumerate(x):
            errs.extend(_walk(f"{path}[{i}]", items if isinstance(items, dict) else None, v, meta, budget, depth + 1))
    return errs


def embedded_errors(schema: dict[str, Any], obj: Any, path: str, meta: MetaValidator | None,
                    budget: Budget) -> list[FieldError]:
    """apiVersion and kind of each embedded resource below the root (the root's own are the caller's)."""
    if not isinstance(obj, dict):
        return []
    errs: list[FieldError] = []
    props = nodes.obj(schema.get("properties"))
    extra = schema.get("additionalProperties")
    for k, v in obj.items():
        if isinstance(props.get(k), dict):
            errs.extend(_walk(_child(path, k), props[k], v, meta, budget, 1))
        elif isinstance(extra, dict):
            errs.extend(_walk(f"{path}[{k}]", extra, v, meta, budget, 1))
    return errs
