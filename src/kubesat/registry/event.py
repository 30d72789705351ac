"""core/v1 Event: the legacy (v1) event rules, the `kubectl get events` table and its field selectors."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, UTC
from typing import Any

from kubesat.errors import FieldError, invalid_value, required
from kubesat.registry.meta import as_dict, column, dns1123_subdomain, field_doc, name_column, qualified_name
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import human_duration

REPORTING_INSTANCE_LIMIT = 128
ACTION_LIMIT = 128
REASON_LIMIT = 128
NOTE_LIMIT = 1024

_EVENT = "io.k8s.api.core.v1.Event"
_REF = "io.k8s.api.core.v1.ObjectReference"
_TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_any_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with or without fractional seconds (Time and MicroTime)."""
    if not isinstance(value, str) or not value:
        return None
    m = _TIME_RE.match(value)
    if not m:
        return None
    base, frac, zone = m.groups()
    try:
        ts = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    if frac:
        ts = ts.replace(microsecond=int((frac[1:] + "000000")[:6]))
    if zone == "Z":
        return ts.replace(tzinfo=UTC)
    sign = 1 if zone[0] == "+" else -1
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    return (ts - sign * timedelta(hours=hours, minutes=minutes)).replace(tzinfo=UTC)


def _since(value: Any, now: datetime) -> str:
    ts = parse_any_time(value)
    if ts is None:
        return "<unknown>"
    return human_duration((now - ts).total_seconds())


def _source(obj: dict[str, Any]) -> str:
    src = as_dict(obj.get("source"))
    component = src.get("component") or obj.get("reportingComponent") or ""
    instance = src.get("host") or obj.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else component


def _validate_reporting(obj: dict[str, Any]) -> list[FieldError]:
    """What a new-style event (one with an eventTime) must say: who reported what, and why."""
    errs: list[FieldError] = []
    controller = obj.get("reportingComponent") or ""
    if not controller:
        errs.append(required("reportingController"))
    for msg in qualified_name(controller):
        errs.append(invalid_value("reportingController", controller, msg))
    instance = obj.get("reportingInstance") or ""
    if not instance:
        errs.append(required("reportingInstance"))
    if len(instance) > REPORTING_INSTANCE_LIMIT:
        errs.append(invalid_value("reportingInstance", "", f"can have at most {REPORTING_INSTANCE_LIMIT} characters"))
    action = obj.get("action") or ""
    if not action:
        errs.append(required("action"))
    if len(action) > ACTION_LIMIT:
        errs.append(invalid_value("action", "", f"can have at most {ACTION_LIMIT} characters"))
    reason = obj.get("reason") or ""
    if not reason:
        errs.append(required("reason"))
    if len(reason) > REASON_LIMIT:
        errs.append(invalid_value("reason", "", f"can have at most {REASON_LIMIT} characters"))
    if len(obj.get("message") or "") > NOTE_LIMIT:
        errs.append(invalid_value("message", "", f"can have at most {NOTE_LIMIT} characters"))
    return errs


class EventStrategy(Strategy):
    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs: list[FieldError] = []
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        involved = as_dict(obj.get("involvedObject"))
        involved_ns = involved.get("namespace") or ""
        if not obj.get("eventTime"):
            # An old-style event: its namespace follows the object it is about.
            if not involved_ns:
                if namespace not in ("", "default"):
                    errs.append(invalid_value("involvedObject.namespace", involved_ns,
                                              "does not match event.namespace"))
            elif namespace != involved_ns:
                errs.append(invalid_value("involvedObject.namespace", involved_ns, "does not match event.namespace"))
        else:
            if not involved_ns and namespace not in ("default", "kube-system"):
                errs.append(invalid_value("involvedObject.namespace", involved_ns, "does not match event.namespace"))
            errs += _validate_reporting(obj)
        for msg in dns1123_subdomain(namespace):
            errs.append(invalid_value("namespace", namespace, msg))
        return errs

    # --- reads --------------------------------------------------------------------------
    def table_columns(self) -> list[dict[str, Any]]:
        return [
            column("Last Seen", field_doc(_EVENT, "lastTimestamp")),
            column("Type", field_doc(_EVENT, "type")),
            column("Reason", field_doc(_EVENT, "reason")),
            column("Object", field_doc(_EVENT, "involvedObject")),
            column("Subobject", field_doc(_REF, "fieldPath"), priority=1),
            column("Source", field_doc(_EVENT, "source"), priority=1),
            column("Message", field_doc(_EVENT, "message")),
            column("First Seen", field_doc(_EVENT, "firstTimestamp"), priority=1),
            column("Count", field_doc(_EVENT, "count"), priority=1),
            name_column(priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        first = _since(obj.get("firstTimestamp") if obj.get("firstTimestamp") else obj.get("eventTime"), now)
        last = _since(obj.get("lastTimestamp"), now) if obj.get("lastTimestamp") else first
        count = obj.get("count") or 0
        series = obj.get("series")
        if isinstance(series, dict):
            last = _since(series.get("lastObservedTime"), now)
            count = series.get("count") or 0
        elif not count:
            count = 1  # a singleton event of the newer API carries no count
        involved = as_dict(obj.get("involvedObject"))
        kind = str(involved.get("kind") or "").lower()
        target = f"{kind}/{involved['name']}" if involved.get("name") else kind
        return [
            last,
            obj.get("type") or "",
            obj.get("reason") or "",
            target,
            involved.get("fieldPath") or "",
            _source(obj),
            str(obj.get("message") or "").strip(),
            first,
            int(count),
            (obj.get("metadata") or {}).get("name", ""),
        ]

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        involved = as_dict(obj.get("involvedObject"))
        if field.startswith("involvedObject."):
            sub = field[len("involvedObject."):]
            if sub in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
                return str(involved.get(sub) or "")
            return None
        if field == "reason":
            return str(obj.get("reason") or "")
        if field == "reportingComponent":
            return str(obj.get("reportingComponent") or "")
        if field == "source":
            src = as_dict(obj.get("source"))
            return str(src.get("component") or obj.get("reportingComponent") or "")
        if field == "type":
            return str(obj.get("type") or "")
        return super().field_value(obj, field)
