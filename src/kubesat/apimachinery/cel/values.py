"""JSON values as the CEL runtime sees them, typed by their schema node as Kubernetes does (UnstructuredToVal):
timestamps, durations and bytes from their string formats, doubles for numbers, escaped property names."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from kubesat.apimachinery.cel.decltype import DeclType

_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_timestamp(text: str, date_only: bool = False) -> datetime | None:
    try:
        if date_only:
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        t = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("z", "Z")))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def parse_duration(text: str) -> timedelta | None:
    """A Go duration (`1h30m`, `-300ms`), as Kubernetes' format `duration` accepts."""
    s = text
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return timedelta(0)
    if not s:
        return None
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        return None
    try:
        return timedelta(seconds=sign * total)
    except OverflowError:
        return None


def to_cel(value: Any, t: DeclType | None) -> Any:
    """The value with its schema's types applied; values a schema does not describe pass unchanged."""
    if value is None or t is None:
        return value
    kind = t.kind
    if kind == "object" and isinstance(value, dict):
        out: dict[str, Any] = {}
        for cel_name, sub in t.fields.items():
            name = t.names[cel_name]
            if name in value:
                v = value[name]
                out[cel_name] = v if _unchanged(v, sub.kind) else to_cel(v, sub)
        return out
    if kind == "map" and isinstance(value, dict):
        return {k: to_cel(v, t.elem) for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [to_cel(v, t.elem) for v in value]
    if isinstance(value, str):
        return _from_string(value, t)
    if kind == "double" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


_FROM_STRING = ("timestamp", "duration", "bytes")


def _unchanged(v: Any, kind: str) -> bool:
    """A shortcut of to_cel for the common scalars: whether it would hand the value back as it is."""
    tv = type(v)
    if tv is str:
        return kind not in _FROM_STRING
    if tv is int:
        return kind != "double"
    return v is None or tv is bool or tv is float


def _from_string(value: str, t: DeclType) -> Any:
    # The runtime takes timestamps and durations inside maps and lists only as their protobuf messages.
    if t.kind == "timestamp":
        parsed = parse_timestamp(value, t.format == "date")
        if parsed is None:
            return value
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(parsed)
        return ts
    if t.kind == "duration":
        d = parse_duration(value)
        if d is None:
            return value
        out = duration_pb2.Duration()
        out.FromTimedelta(d)
        return out
    if t.kind == "bytes":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
    return value
