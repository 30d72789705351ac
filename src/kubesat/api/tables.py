"""Table responses (meta.k8s.io/v1 Table), which `kubectl get` asks for and prints as columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubesat.registry.strategy import Strategy


def wants_table(accept: str | None) -> bool:
    if not accept:
        return False
    for part in accept.split(","):
        params = {}
        bits = [b.strip() for b in part.split(";")]
        if bits[0].lower() != "application/json":
            continue
        for b in bits[1:]:
            k, _, v = b.partition("=")
            params[k.strip()] = v.strip()
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return True
        if not params:
            return False
    return False


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def to_table(
    strategy: Strategy,
    objs: list[dict[str, Any]],
    *,
    include_object: str = "Metadata",
    list_meta: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    rows = []
    for o in objs:
        row: dict[str, Any] = {"cells": strategy.table_cells(o, now)}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = _partial(o)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta or {},
        "columnDefinitions": strategy.table_columns(),
        "rows": rows,
    }
