"""Typed reads of schema keywords whose JSON value may be of any type (a wrong type reads as absent)."""

from __future__ import annotations

from typing import Any


def obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def seq(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def text(v: Any) -> str:
    return v if isinstance(v, str) else ""
