"""events.k8s.io/v1 Event: conversion to and from core/v1, its validation, table and field selectors, and the
converting store that serves it over the core Events' keys."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, UTC
from typing import Any

import orjson
import pytest

from kubesat import errors
from kubesat.registry import eventsv1
from kubesat.registry.conversion import ConvertedStore, conversion_for, served_registry
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry
from kubesat.registry.strategies import strategy_for
from kubesat.storage.memory import MemoryStore

V1 = builtin_kind("events.k8s.io/v1", "Event")
CORE = builtin_kind("v1", "Event")
NAMESPACES = builtin_kind("v1", "Namespace")

EVENT_TIME = "2026-01-02T03:04:05.123456Z"
SEEN = "2026-01-02T03:09:05.000000Z"


def _v1_event(**extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default"},
        "eventTime": EVENT_TIME,
        "series": {"count": 3, "lastObservedTime": SEEN},
        "reportingController": "example.com/controller", "reportingInstance": "controller-0",
        "action": "Reconciling", "reason": "Synced", "note": "all good", "type": "Normal",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "default", "uid": "u-1"},
        "related": {"apiVersion": "v1", "kind": "Node", "name": "n1"},
    }
    obj.update(extra)
    return obj


def _core_event(**extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web.2", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Scheduled", "message": "Successfully assigned default/web to n1", "type": "Normal",
        "source": {"component": "default-scheduler", "host": "n1"},
        "firstTimestamp": "2026-01-02T03:00:00Z", "lastTimestamp": "2026-01-02T03:01:00Z", "count": 2,
    }
    obj.update(extra)
    return obj


# ------------------------------------------------------------------------------------------ conversion
def test_v1_to_core_renames_every_field_kubernetes_renames() -> None:
    core = eventsv1.to_core(_v1_event(deprecatedSource={"component": "c", "host": "h"},
                                      deprecatedFirstTimestamp="2026-01-01T00:00:00Z",
                                      deprecatedLastTimestamp="2026-01-01T00:01:00Z", deprecatedCount=4))
    assert core["apiVersion"] == "v1" and core["kind"] == "Event"
    assert core["involvedObject"]["uid"] == "u-1"
    assert core["message"] == "all good"
    assert core["reportingComponent"] == "example.com/controller"
    assert core["source"] == {"component": "c", "host": "h"}
    assert (core["firstTimestamp"], core["lastTimestamp"], core["count"]) == (
        "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", 4)
    for same in ("eventTime", "series", "reportingInstance", "action", "reason", "type", "related"):
        assert core[same] == _v1_event()[same], same
    for v1_only in ("regarding", "note", "reportingController", "deprecatedSource", "deprecatedCount"):
        assert v1_only not in core


def test_core_to_v1_writes_what_go_always_writes() -> None:
    v1 = eventsv1.from_core(_core_event())
    assert v1["apiVersion"] == "events.k8s.io/v1"
    assert v1["regarding"] == {"kind": "Pod", "name": "web", "namespace": "default"}
    assert v1["note"] == "Successfully assigned default/web to n1"
    assert v1["deprecatedSource"] == {"component": "default-scheduler", "host": "n1"}
    assert (v1["deprecatedFirstTimestamp"], v1["deprecatedLastTimestamp"], v1["deprecatedCount"]) == (
        "2026-01-02T03:00:00Z", "2026-01-02T03:01:00Z", 2)
    assert v1["eventTime"] is None  # an old-style event has none: Go writes null, not nothing
    assert "message" not in v1 and "involvedObject" not in v1 and "source" not in v1


def test_v1_round_trip_through_core_is_lossless() -> None:
    original = _v1_event()
    back = eventsv1.from_core(eventsv1.to_core(copy.deepcopy(original)))
    # Only the fields Go writes for an unset value are added.
    assert back == {**original, "deprecatedSource": {}, "deprecatedFirstTimestamp": None,
                    "deprecatedLastTimestamp": None}


def test_core_round_trip_through_v1_is_lossless() -> None:
    for original in (_core_event(), _core_event(eventTime=EVENT_TIME, reportingComponent="kubelet",
                                                reportingInstance="n1", action="Pulling",
                                                series={"count": 2, "lastObservedTime": SEEN})):
        assert eventsv1.to_core(eventsv1.from_core(copy.deepcopy(original))) == original


def test_unset_values_are_not_stored() -> None:
    core = eventsv1.to_core(_v1_event(deprecatedSource={}, deprecatedFirstTimestamp=None, deprecatedCount=0,
                                      note=""))
    assert not {"source", "firstTimestamp", "count", "message"} & set(core)


# ------------------------------------------------------------------------------------------ validation
def _texts(errs: list[errors.FieldError]) -> list[str]:
    return [e.text() for e in errs]


def test_a_complete_new_event_is_valid() -> None:
    assert eventsv1.validate_create(_v1_event()) == []


def test_create_requires_what_a_new_event_says() -> None:
    obj = {"metadata": {"name": "x", "namespace": "default"}, "reason": "R", "deprecatedCount": 3,
           "deprecatedSource": {"component": "kubelet"}, "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z",
           "series": {"count": 1}}
    assert _texts(eventsv1.validate_create(obj)) == [
        'series.count: Invalid value: "": should be at least 2',
        "series.lastObservedTime: Required value",
        "eventTime: Required value",
        'type: Invalid value: "": has invalid value: ',
        'firstTimestamp: Invalid value: "": needs to be unset',
        'count: Invalid value: "": needs to be unset',
        'source: Invalid value: "": needs to be unset',
    ]


def test_create_with_event_time_needs_the_reporter_and_action() -> None:
    obj = _v1_event(reportingController="", reportingInstance="", action="", note="n" * 1025)
    texts = _texts(eventsv1.validate_create(obj))
    # An empty controller is also not a qualified name (two more causes, as Kubernetes lists them).
    assert texts[1:3] == ['reportingController: Invalid value: "": name part must be non-empty',
                          'reportingController: Invalid value: "": name part must consist of alphanumeric '
                          "characters, '-', '_' or '.', and must start and end with an alphanumeric character "
                          "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                          "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]
    assert texts[:1] + texts[3:] == [
        "reportingController: Required value",
        "reportingInstance: Required value",
        "action: Required value",
        'message: Invalid value: "": can have at most 1024 characters',
    ]


def test_regarding_in_another_namespace_is_refused() -> None:
    obj = _v1_event(regarding={"kind": "Node", "name": "n1"})
    obj["metadata"]["namespace"] = "team-a"
    assert _texts(eventsv1.validate_create(obj)) == [
        'involvedObject.namespace: Invalid value: "": does not match event.namespace']


def test_update_may_move_the_series_only() -> None:
    old = _v1_event()
    moved = _v1_event(series={"count": 4, "lastObservedTime": "2026-01-02T03:10:00.000000Z"})
    assert eventsv1.validate_update(moved, old) == []
    changed = _v1_event(note="other", reason="Other", regarding={"kind": "Pod", "name": "db",
                                                                 "namespace": "default"})
    assert _texts(eventsv1.validate_update(changed, old)) == [
        "involvedObject: Invalid value: core.ObjectReference{...}: field is immutable",
        'reason: Invalid value: "Other": field is immutable',
        'message: Invalid value: "other": field is immutable',
    ]
    broken = _v1_event(series={"count": 1, "lastObservedTime": SEEN})
    assert _texts(eventsv1.validate_update(broken, old)) == [
        'series.count: Invalid value: "": should be at least 2']


# ------------------------------------------------------------------------------------------ reads
def test_table_row_is_the_core_row_of_the_converted_event() -> None:
    now = datetime(2026, 1, 2, 3, 10, 5, tzinfo=UTC)
    v1_row = strategy_for(V1).table_cells(_v1_event(), now)
    core_row = strategy_for(CORE).table_cells(eventsv1.to_core(_v1_event()), now)
    assert v1_row == core_row
    assert v1_row[:4] == ["60s", "Normal", "Synced", "pod/web"]
    assert v1_row[8] == 3  # the series count
    assert [c["name"] for c in strategy_for(V1).table_columns()] == [
        c["name"] for c in strategy_for(CORE).table_columns()]


def test_field_selectors_use_the_events_k8s_io_names() -> None:
    s = strategy_for(V1)
    obj = _v1_event()
    assert s.field_value(obj, "regarding.name") == "web"
    assert s.field_value(obj, "regarding.uid") == "u-1"
    assert s.field_value(obj, "reportingController") == "example.com/controller"
    assert s.field_value(obj, "type") == "Normal"
    assert s.field_value(obj, "metadata.name") == "web.1"
    assert s.field_value(obj, "regarding.bogus") is None
    assert V1.field_selectors and "involvedObject.name" not in V1.field_selectors
    assert V1.storage_prefix() == CORE.storage_prefix() == "/registry/events/"


# ------------------------------------------------------------------------------------------ the store view
def _registries() -> tuple[Registry, Registry, MemoryStore]:
    store = MemoryStore()
    base = Registry(store, clock=lambda: 1_767_323_045.0)
    return base, served_registry(base, V1), store


async def _with_namespace(base: Registry) -> None:
    await base.create(NAMESPACES, "", {"metadata": {"name": "default"}})


def test_created_through_v1_is_stored_and_read_as_core() -> None:
    async def run() -> None:
        base, view, store = _registries()
        await _with_namespace(base)
        made = await view.create(V1, "default", _v1_event())
        assert made["apiVersion"] == "events.k8s.io/v1" and made["note"] == "all good"
        raw = await store.get("/registry/events/default/web.1")
        assert raw is not None
        stored = orjson.loads(raw.value)
        assert stored["apiVersion"] == "v1" and stored["message"] == "all good" and "note" not in stored
        core = await base.get(CORE, "default", "web.1")
        assert core["reportingComponent"] == "example.com/controller"
        assert core["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]

    asyncio.run(run())


def test_core_events_are_listed_watched_and_patched_through_v1() -> None:
    async def run() -> None:
        base, view, _ = _registries()
        await _with_namespace(base)
        rev = await base.revision()
        watch = view.watch(V1, "default", after_revision=rev).__aiter__()
        await base.create(CORE, "default", _core_event())
        kind, seen = await asyncio.wait_for(watch.__anext__(), 5)
        assert (kind, seen["note"], seen["regarding"]["name"]) == ("ADDED", eventsv1.from_core(_core_event())["note"],
                                                                   "web")
        page = await view.list(V1, "default", fields=(("regarding.name", "=", "web"),))
        assert [o["metadata"]["name"] for o in page.items] == ["web.2"]

        def bump(obj: dict[str, Any]) -> dict[str, Any]:
            assert obj["apiVersion"] == "events.k8s.io/v1"  # the patch applies to the converted form
            obj["series"] = {"count": 7, "lastObservedTime": SEEN}
            return obj

        await view.guaranteed_update(V1, "default", "web.2", bump)
        assert (await base.get(CORE, "default", "web.2"))["series"]["count"] == 7
        kind, seen = await asyncio.wait_for(watch.__anext__(), 5)
        assert (kind, seen["series"]["count"], seen["deprecatedCount"]) == ("MODIFIED", 7, 2)

        def recount(obj: dict[str, Any]) -> dict[str, Any]:
            obj["deprecatedCount"] = 8
            return obj

        with pytest.raises(errors.StatusError) as refused:  # the older API's fields are fixed through this one
            await view.guaranteed_update(V1, "default", "web.2", recount)
        assert refused.value.message.endswith("count: Invalid value: 8: field is immutable")
        gone, _ = await view.delete(V1, "default", "web.2")
        assert gone["apiVersion"] == "events.k8s.io/v1"
        assert await base.get_or_none(CORE, "default", "web.2") is None
        await watch.aclose()  # type: ignore[attr-defined]

    asyncio.run(run())


def test_v1_errors_name_the_events_k8s_io_resource() -> None:
    async def run() -> None:
        base, view, _ = _registries()
        await _with_namespace(base)
        with pytest.raises(errors.StatusError) as missing:
            await view.get(V1, "default", "nope")
        assert missing.value.message == 'events.events.k8s.io "nope" not found'
        with pytest.raises(errors.StatusError) as bad:
            await view.create(V1, "default", _v1_event(eventTime=None))
        assert bad.value.code == 422
        assert bad.value.message.startswith('Event.events.k8s.io "web.1" is invalid: eventTime: Required value')

    asyncio.run(run())


def test_values_outside_the_prefix_pass_unconverted() -> None:
    async def run() -> None:
        base, _, store = _registries()
        view_store = ConvertedStore(lambda: store, V1.storage_prefix(), conversion_for(V1))
        await _with_namespace(base)
        kv = await view_store.get("/registry/namespaces/default")
        assert kv is not None and orjson.loads(kv.value)["kind"] == "Namespace"

    asyncio.run(run())


def test_a_put_of_a_missing_event_records_it() -> None:
    async def run() -> None:
        base, view, _ = _registries()
        await _with_namespace(base)
        made, created = await view.update(V1, "default", "web.1", _v1_event())
        assert created and made["note"] == "all good"
        assert (await base.get(CORE, "default", "web.1"))["message"] == "all good"

    asyncio.run(run())
