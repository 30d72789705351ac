"""Helpers for Table rows: ages and timestamps printed the way kubectl prints them."""

from __future__ import annotations

from datetime import datetime, UTC
from typing import Any


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """Kubernetes' HumanDuration: 5s, 3m2s, 10m, 2h5m, 3d4h, 400d, 3y20d ..."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"  # a timestamp a moment in the future is clock skew, not an error
    if s < 60 * 2:
        return f"{s}s"
    m = s // 60
    if m < 10:
        rest = s % 60
        return f"{m}m{rest}s" if rest else f"{m}m"
    if m < 60 * 3:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        rest = (s % 3600) // 60
        return f"{h}h{rest}m" if rest else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        rest = h % 24
        return f"{h // 24}d{rest}h" if rest else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        dy = (h // 24) % 365
        return f"{h // 24 // 365}y{dy}d" if dy else f"{h // 24 // 365}y"
    return f"{h // 24 // 365}y"


def age(obj: dict[str, Any], now: datetime) -> str:
    ts = parse_time(obj.get("metadata", {}).get("creationTimestamp"))
    if ts is None:
        return "<unknown>"
    return human_duration((now - ts).total_seconds())
