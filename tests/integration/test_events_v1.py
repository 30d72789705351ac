"""events.k8s.io/v1 Events against a real server: the official client's EventsV1Api and CoreV1Api over the same
stored Events, watches through both, validation, field selectors, and kubectl get, events and describe."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from kubernetes import client, watch

from tests.integration.conftest import Server, wait_for
from tests.integration.rawclient import RawClient

NS = "default"
EVENT_TIME = "2026-01-02T03:04:05.123456Z"
# A MicroTime needs its six fractional digits (kube-apiserver refuses "…:05Z" and "…:05+00:00"); the official client
# writes a datetime with isoformat(), which leaves them out when they are all zero: hence not a whole second here.
SEEN = "2026-01-02T03:09:05.500000Z"


@pytest.fixture(scope="module")
def core(api) -> client.CoreV1Api:  # type: ignore[no-untyped-def]
    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def events(api) -> client.EventsV1Api:  # type: ignore[no-untyped-def]
    return client.EventsV1Api(api)


@pytest.fixture(scope="module")
def raw(server: Server) -> RawClient:
    return RawClient.admin(server.data_dir, server.port)


def _namespace(core: client.CoreV1Api, name: str) -> str:
    core.create_namespace({"metadata": {"name": name}})
    return name


def _v1_event(name: str, ns: str, regarding: dict[str, Any], **extra: Any) -> client.EventsV1Event:
    fields: dict[str, Any] = {
        "metadata": client.V1ObjectMeta(name=name, namespace=ns), "event_time": EVENT_TIME,
        "reporting_controller": "example.com/operator", "reporting_instance": "operator-0",
        "action": "Reconciling", "reason": "Synced", "note": "reconciled the object", "type": "Normal",
        "regarding": client.V1ObjectReference(**regarding),
    }
    fields.update(extra)
    return client.EventsV1Event(**fields)


def _new_style_core_event(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": "ConfigMap", "name": "settings", "namespace": ns},
            "eventTime": EVENT_TIME, "reportingComponent": "example.com/legacy", "reportingInstance": "legacy-0",
            "action": "Updating", "reason": "Changed", "message": "through core/v1", "type": "Warning",
            "series": {"count": 2, "lastObservedTime": SEEN}}


def test_discovery_lists_events_k8s_io_v1(server: Server) -> None:
    doc = json.loads(server.kubectl("get", "--raw", "/apis/events.k8s.io/v1").stdout)
    [events] = [r for r in doc["resources"] if r["name"] == "events"]
    assert (events["kind"], events["namespaced"], events["shortNames"]) == ("Event", True, ["ev"])
    assert "events.k8s.io/v1" in server.kubectl("api-versions").stdout.split()


def test_created_with_a_series_through_events_v1_read_through_core(core: client.CoreV1Api,
                                                                   events: client.EventsV1Api) -> None:
    ns = _namespace(core, "ev-v1-to-core")
    series = client.EventsV1EventSeries(count=3, last_observed_time=SEEN)
    made = events.create_namespaced_event(ns, _v1_event("op.1", ns, {"kind": "Pod", "name": "web", "namespace": ns},
                                                        series=series))
    assert made.series.count == 3 and made.note == "reconciled the object"
    stored = core.read_namespaced_event("op.1", ns)
    assert stored.message == "reconciled the object"
    assert (stored.involved_object.kind, stored.involved_object.name) == ("Pod", "web")
    assert (stored.reporting_component, stored.reporting_instance, stored.action) == (
        "example.com/operator", "operator-0", "Reconciling")
    assert stored.series.count == 3
    assert stored.metadata.resource_version == made.metadata.resource_version
    # The recorder bumps a series with a patch of the newer form; the core form sees the new count.
    events.patch_namespaced_event("op.1", ns,
                                  {"series": {"count": 4, "lastObservedTime": "2026-01-02T03:10:05.000000Z"}})
    assert core.read_namespaced_event("op.1", ns).series.count == 4


def test_created_through_core_read_through_events_v1(core: client.CoreV1Api, events: client.EventsV1Api) -> None:
    ns = _namespace(core, "ev-core-to-v1")
    core.create_namespaced_event(ns, _new_style_core_event("legacy.1", ns))
    seen = events.read_namespaced_event("legacy.1", ns)
    assert seen.note == "through core/v1"
    assert (seen.regarding.kind, seen.regarding.name) == ("ConfigMap", "settings")
    assert (seen.reporting_controller, seen.type, seen.series.count) == ("example.com/legacy", "Warning", 2)
    assert [e.metadata.name for e in events.list_namespaced_event(ns).items] == ["legacy.1"]
    # Deleting through one API deletes the one stored object.
    events.delete_namespaced_event("legacy.1", ns)
    assert core.list_namespaced_event(ns).items == []


def _post(raw: RawClient, path: str, body: dict[str, Any]) -> Any:
    """A create with the body exactly as given (the official client rewrites timestamps in its own format)."""
    got = raw.request("POST", path, json.dumps(body).encode(), "application/json")
    assert got.status == 201, got.body
    return got.json()


def test_an_old_style_core_event_reads_with_null_event_time(core: client.CoreV1Api, raw: RawClient) -> None:
    ns = _namespace(core, "ev-old-style")
    _post(raw, f"/api/v1/namespaces/{ns}/events", {
        "metadata": {"name": "old.1"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": ns},
        "reason": "Pulled", "message": "image pulled", "type": "Normal", "count": 5,
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2026-01-02T03:00:00Z", "lastTimestamp": "2026-01-02T03:05:00Z"})
    got = raw.request("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events/old.1")
    assert got.status == 200
    body = got.json()
    # As kube-apiserver writes it: the deprecated fields carry the old ones, eventTime is null.
    assert body["eventTime"] is None
    assert (body["deprecatedCount"], body["deprecatedSource"], body["deprecatedLastTimestamp"]) == (
        5, {"component": "kubelet", "host": "n1"}, "2026-01-02T03:05:00Z")
    assert "message" not in body and "involvedObject" not in body


def _watch_one(stream_fn: Any, ns: str, seen: list[Any], ready: threading.Event) -> None:
    w = watch.Watch()
    ready.set()
    for ev in w.stream(stream_fn, ns, timeout_seconds=10):
        seen.append((ev["type"], ev["object"]))
        w.stop()


def test_watches_through_both_apis_see_writes_through_the_other(core: client.CoreV1Api,
                                                                events: client.EventsV1Api) -> None:
    ns = _namespace(core, "ev-watch")
    v1_seen: list[Any] = []
    core_seen: list[Any] = []
    ready_v1, ready_core = threading.Event(), threading.Event()
    watchers = [threading.Thread(target=_watch_one, args=(events.list_namespaced_event, ns, v1_seen, ready_v1)),
                threading.Thread(target=_watch_one, args=(core.list_namespaced_event, ns, core_seen, ready_core))]
    for t in watchers:
        t.start()
    ready_v1.wait(5)
    ready_core.wait(5)
    # Both watches start from "now"; writes after they are open arrive as ADDED.
    core.create_namespaced_event(ns, _new_style_core_event("via-core", ns))
    for t in watchers:
        t.join(15)
    assert v1_seen and core_seen
    kind, obj = v1_seen[0]
    assert (kind, type(obj).__name__, obj.note) == ("ADDED", "EventsV1Event", "through core/v1")
    kind, obj = core_seen[0]
    assert (kind, type(obj).__name__, obj.message) == ("ADDED", "CoreV1Event", "through core/v1")

    core_seen.clear()
    rv = core.list_namespaced_event(ns).metadata.resource_version
    w = watch.Watch()
    done = threading.Event()

    def watch_core() -> None:
        for ev in w.stream(core.list_namespaced_event, ns, resource_version=rv, timeout_seconds=10):
            core_seen.append((ev["type"], ev["object"]))
            w.stop()
        done.set()

    t = threading.Thread(target=watch_core)
    t.start()
    events.create_namespaced_event(ns, _v1_event("via-v1", ns, {"kind": "Pod", "name": "web", "namespace": ns}))
    assert done.wait(15)
    kind, obj = core_seen[0]
    assert (kind, obj.metadata.name, obj.message, obj.reporting_component) == (
        "ADDED", "via-v1", "reconciled the object", "example.com/operator")


def test_events_v1_create_validation(core: client.CoreV1Api, raw: RawClient) -> None:
    ns = _namespace(core, "ev-invalid")
    body = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "bad", "namespace": ns},
            "reason": "R", "deprecatedCount": 2, "series": {"count": 1}}
    got = raw.request("POST", f"/apis/events.k8s.io/v1/namespaces/{ns}/events", json.dumps(body).encode(),
                      "application/json")
    assert got.status == 422
    status = got.json()
    assert status["details"]["group"] == "events.k8s.io" and status["details"]["kind"] == "Event"
    assert status["message"] == (
        'Event.events.k8s.io "bad" is invalid: [involvedObject.namespace: Invalid value: "": does not match '
        'event.namespace, series.count: Invalid value: "": should be at least 2, '
        'series.lastObservedTime: Required value, eventTime: Required value, '
        'type: Invalid value: "": has invalid value: , count: Invalid value: "": needs to be unset]')
    note = "x" * 1025
    long_note = dict(body, deprecatedCount=0, series=None, eventTime=EVENT_TIME, type="Normal", action="A",
                     reportingController="example.com/c", reportingInstance="c-0", note=note,
                     regarding={"kind": "Pod", "name": "p", "namespace": ns})
    got = raw.request("POST", f"/apis/events.k8s.io/v1/namespaces/{ns}/events", json.dumps(long_note).encode(),
                      "application/json")
    assert got.status == 422
    assert got.json()["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": 'Invalid value: "": can have at most 1024 characters',
         "field": "message"}]
    # Nothing was stored, and the 404 names the resource as this API serves it.
    missing = raw.request("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events/bad")
    assert missing.status == 404 and missing.json()["message"] == 'events.events.k8s.io "bad" not found'


def test_events_v1_update_keeps_the_recorded_fields(core: client.CoreV1Api, events: client.EventsV1Api,
                                                   raw: RawClient) -> None:
    ns = _namespace(core, "ev-immutable")
    events.create_namespaced_event(ns, _v1_event("fixed", ns, {"kind": "Pod", "name": "web", "namespace": ns}))
    got = raw.request("PATCH", f"/apis/events.k8s.io/v1/namespaces/{ns}/events/fixed",
                      json.dumps({"note": "rewritten"}).encode(), "application/merge-patch+json")
    assert got.status == 422
    assert got.json()["message"] == (
        'Event.events.k8s.io "fixed" is invalid: message: Invalid value: "rewritten": field is immutable')


def test_events_v1_field_selectors(core: client.CoreV1Api, events: client.EventsV1Api, raw: RawClient) -> None:
    ns = _namespace(core, "ev-fields")
    events.create_namespaced_event(ns, _v1_event("a", ns, {"kind": "Pod", "name": "web", "namespace": ns}))
    events.create_namespaced_event(ns, _v1_event("b", ns, {"kind": "Pod", "name": "db", "namespace": ns},
                                                 type="Warning"))
    names = [e.metadata.name for e in events.list_namespaced_event(ns, field_selector="regarding.name=db").items]
    assert names == ["b"]
    names = [e.metadata.name for e in events.list_namespaced_event(
        ns, field_selector="type=Normal,reportingController=example.com/operator").items]
    assert names == ["a"]
    # The core spellings belong to core/v1, as in Kubernetes.
    got = raw.request("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3Ddb")
    assert got.status == 400 and "field label not supported: involvedObject.name" in got.json()["message"]


def test_kubectl_get_events_and_describe_show_an_events_v1_event(server: Server, core: client.CoreV1Api,
                                                                 raw: RawClient) -> None:
    ns = _namespace(core, "ev-kubectl")
    pod = core.create_namespaced_pod(ns, {"metadata": {"name": "web"},
                                          "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    # As client-go's events recorder writes one: MicroTimes with their six fractional digits.
    _post(raw, f"/apis/events.k8s.io/v1/namespaces/{ns}/events", {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "web.op"},
        "eventTime": EVENT_TIME, "series": {"count": 3, "lastObservedTime": SEEN},
        "reportingController": "example.com/operator", "reportingInstance": "operator-0", "action": "Restarting",
        "reason": "BackOff", "note": "restarting failed container", "type": "Warning",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": ns, "uid": pod.metadata.uid}})
    out = server.kubectl("get", "events.v1.events.k8s.io", "-n", ns, "-o", "wide").stdout
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    [row] = [r for r in rows if "web.op" in r]
    assert "Warning" in row and "BackOff" in row and "pod/web" in row and "restarting failed container" in row
    assert "example.com/operator, operator-0" in row
    got = json.loads(server.kubectl("get", "events.v1.events.k8s.io", "web.op", "-n", ns, "-o", "json").stdout)
    assert got["apiVersion"] == "events.k8s.io/v1" and got["note"] == "restarting failed container"
    listed = server.kubectl("events", "-n", ns).stdout
    assert "BackOff" in listed and "(x3 over" in listed and "Pod/web" in listed
    described = wait_for(lambda: (lambda s: s if "BackOff" in s else None)(
        server.kubectl("describe", "pod", "web", "-n", ns).stdout), what="the event in describe")
    events_part = described.split("Events:", 1)[1]
    assert "Warning" in events_part and "restarting failed container" in events_part
    assert "example.com/operator" in events_part


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _num(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def test_a_protobuf_events_v1_body_is_stored_as_core(core: client.CoreV1Api, raw: RawClient) -> None:
    """client-go sends built-in kinds as protobuf: an events.k8s.io/v1 Event in the runtime.Unknown envelope."""
    ns = _namespace(core, "ev-protobuf")
    seconds = 1_767_323_045  # 2026-01-02T03:04:05Z
    event = b"".join([
        _bytes(1, _bytes(1, "pb.1")),
        _bytes(2, _num(1, seconds) + _num(2, 123_456_000)),
        _bytes(3, _num(1, 2) + _bytes(2, _num(1, seconds + 300))),
        _bytes(4, "example.com/scheduler"), _bytes(5, "scheduler-0"), _bytes(6, "Binding"),
        _bytes(7, "Scheduled"), _bytes(8, _bytes(1, "Pod") + _bytes(2, ns) + _bytes(3, "web")),
        _bytes(10, "Successfully assigned"), _bytes(11, "Normal"),
    ])
    body = b"k8s\x00" + _bytes(1, _bytes(1, "events.k8s.io/v1") + _bytes(2, "Event")) + _bytes(2, event)
    got = raw.request("POST", f"/apis/events.k8s.io/v1/namespaces/{ns}/events", body,
                      "application/vnd.kubernetes.protobuf")
    assert got.status == 201, got.body
    made = got.json()
    assert (made["eventTime"], made["series"]["count"], made["regarding"]["name"]) == (
        "2026-01-02T03:04:05.123456Z", 2, "web")
    stored = core.read_namespaced_event("pb.1", ns)
    assert (stored.message, stored.reporting_component, stored.involved_object.kind) == (
        "Successfully assigned", "example.com/scheduler", "Pod")
