"""events.k8s.io/v1 Event: its conversion to and from the stored core/v1 Event, its stricter rules, table and fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubesat.errors import FieldError, invalid_value, required
from kubesat.registry.event import EventStrategy, parse_any_time
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.meta import GoValue, as_dict
from kubesat.registry.strategy import Strategy

API_VERSION = "events.k8s.io/v1"
CORE_API_VERSION = "v1"

# events.k8s.io/v1 name -> core/v1 name, for the fields whose names differ (the rest carry over as they are).
_RENAMED = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_TO_V1 = {core: v1 for v1, core in _RENAMED.items()}
_SHARED = ("metadata", "eventTime", "series", "reportingInstance", "action", "reason", "related", "type")
# Go writes these of an events.k8s.io/v1 Event even when unset (non-pointer structs; eventTime is not omitempty).
_ALWAYS_WRITTEN: dict[str, Any] = {
    "eventTime": None, "regarding": {}, "deprecatedSource": {},
    "deprecatedFirstTimestamp": None, "deprecatedLastTimestamp": None,
}


def _unset(value: Any) -> bool:
    """A zero value Go's omitempty (or a zero Time's null) leaves out of the stored form."""
    return value is None or value == "" or value == 0 or value == {}


def to_core(obj: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event as the core/v1 Event it is stored as (what Convert_v1_Event_To_core_Event does)."""
    out: dict[str, Any] = {"apiVersion": CORE_API_VERSION, "kind": "Event"}
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or _unset(value) and key != "metadata":
            continue
        if key in _RENAMED:
            out[_RENAMED[key]] = value
        elif key in _SHARED:
            out[key] = value
    return out


def from_core(obj: dict[str, Any]) -> dict[str, Any]:
    """A stored core/v1 Event as events.k8s.io/v1 shows it, with the fields Go always writes."""
    out: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "Event"}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key in _TO_V1:
            if not _unset(value):
                out[_TO_V1[key]] = value
        elif key in _SHARED and (key == "metadata" or not _unset(value)):
            out[key] = value
    for key, default in _ALWAYS_WRITTEN.items():
        out.setdefault(key, default)
    return out


_CORE = EventStrategy(builtin_kind(CORE_API_VERSION, "Event"))


def _legacy_errors(obj: dict[str, Any]) -> list[FieldError]:
    """The rules every Event passes, whichever API wrote it; Kubernetes names their fields in the core form."""
    return _CORE.validate(to_core(obj))


def _series_errors(obj: dict[str, Any]) -> list[FieldError]:
    series = obj.get("series")
    if series is None:
        return []
    series = as_dict(series)
    errs: list[FieldError] = []
    count = series.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 2:
        errs.append(invalid_value("series.count", "", "should be at least 2"))
    if parse_any_time(series.get("lastObservedTime")) is None:
        errs.append(required("series.lastObservedTime"))
    return errs


def validate_create(obj: dict[str, Any]) -> list[FieldError]:
    """ValidateEventCreate for events.k8s.io/v1: the legacy rules, then the ones a new-style event must keep."""
    errs = _legacy_errors(obj) + _series_errors(obj)
    if not obj.get("eventTime"):
        errs.append(required("eventTime"))
    kind = obj.get("type") or ""
    if kind not in ("Normal", "Warning"):
        errs.append(invalid_value("type", "", f"has invalid value: {kind}"))
    # The deprecated fields belong to the older API; a new event leaves them to the server.
    for v1_name in ("deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedCount"):
        if not _unset(obj.get(v1_name)):
            errs.append(invalid_value(_RENAMED[v1_name], "", "needs to be unset"))
    source = as_dict(obj.get("deprecatedSource"))
    if source.get("component") or source.get("host"):
        errs.append(invalid_value("source", "", "needs to be unset"))
    return errs


# events.k8s.io/v1 name of each field an update may not change, with the (core) name Kubernetes reports.
_IMMUTABLE = (
    ("regarding", "involvedObject"), ("reason", "reason"), ("note", "message"), ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"), ("type", "type"), ("eventTime", "eventTime"), ("action", "action"),
    ("related", "related"), ("reportingController", "reportingController"),
    ("reportingInstance", "reportingInstance"),
)


def _shown(value: Any) -> Any:
    """An immutable field's new value as the message shows it: scalars as they are, objects by their Go type."""
    if isinstance(value, dict):
        return GoValue("core.ObjectReference{...}" if "kind" in value or "name" in value else "core.EventSource{...}")
    return "" if value is None else value


def validate_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """ValidateEventUpdate for events.k8s.io/v1: only the series may move on once an event is recorded."""
    errs = _legacy_errors(new)
    if new.get("series") != old.get("series"):
        errs += _series_errors(new)
    for v1_name, reported in _IMMUTABLE:
        now, before = new.get(v1_name), old.get(v1_name)
        if (None if _unset(now) else now) != (None if _unset(before) else before):
            errs.append(invalid_value(reported, _shown(now), "field is immutable"))
    return errs


class EventsV1Strategy(Strategy):
    """Hooks on the events.k8s.io/v1 form; the store keeps the core form (registry/conversion.py converts)."""

    allow_create_on_update = True  # as the core Event: a PUT of a missing event records it

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_create(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return validate_update(new, old)

    def table_columns(self) -> list[dict[str, Any]]:
        # Kubernetes prints both versions from the one internal Event, with the core columns.
        return _CORE.table_columns()

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        return _CORE.table_cells(to_core(obj), now)

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        regarding = as_dict(obj.get("regarding"))
        if field.startswith("regarding."):
            sub = field[len("regarding."):]
            if sub in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
                return str(regarding.get(sub) or "")
            return None
        if field in ("reason", "reportingController", "type"):
            return str(obj.get(field) or "")
        return super().field_value(obj, field)
