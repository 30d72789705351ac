"""Times as Kubernetes keeps them, through the real clients: what a client sends with an offset or a fraction reads
back in the canonical UTC form (seconds; microseconds for a MicroTime), and a time that does not parse is a 400
naming it, on every way of writing (create, update, each patch type, server-side apply, /status)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
import yaml
from kubernetes import client

from .conftest import Server
from .rawclient import Answer, RawClient

pytestmark = pytest.mark.integration

NS = "times"
BAD = "yesterday"
BAD_MESSAGE = 'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'
PODS = f"/api/v1/namespaces/{NS}/pods"
EVENTS = f"/api/v1/namespaces/{NS}/events"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def _event(name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": NS},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": NS}, "reason": "Tested", "message": "m",
            "type": "Normal", "source": {"component": "tests"}, **fields}


@pytest.fixture(scope="module")
def raw(server: Server) -> RawClient:
    c = RawClient.admin(server.data_dir, server.port)
    assert c.request("POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": NS}}).encode(),
                     "application/json").status == 201
    return c


def _send(raw: RawClient, method: str, path: str, body: Any, content_type: str = "application/json") -> Answer:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw.request(method, path, data, content_type)


def _bad_request(answer: Answer, kind: str = "Pod") -> None:
    assert answer.status == 400, (answer.status, answer.body[:600])
    status = answer.json()
    assert status["reason"] == "BadRequest"
    assert status["message"] == f'{kind} in version "v1" cannot be handled as a {kind}: {BAD_MESSAGE}'


def _get(server: Server, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(server.kubectl("get", "-n", NS, "-o", "json", *args).stdout)
    return out


def test_kubectl_create_event_with_offsets_reads_back_canonical(server: Server, raw: RawClient) -> None:
    event = _event("offsets", firstTimestamp="2026-12-03T10:00:00+02:00", lastTimestamp="2026-12-03T10:00:00.75Z",
                   eventTime="2026-12-03T10:00:00.123456-01:30", count=1,
                   reportingComponent="tests", reportingInstance="here", action="Testing")
    server.kubectl("create", "-f", "-", input=json.dumps(event))
    got = _get(server, "event", "offsets")
    assert (got["firstTimestamp"], got["lastTimestamp"], got["eventTime"]) == (
        "2026-12-03T08:00:00Z", "2026-12-03T10:00:00Z", "2026-12-03T11:30:00.123456Z")
    # The same through events.k8s.io/v1, which stores through the core form.
    v1 = _send(raw, "GET", f"/apis/events.k8s.io/v1/namespaces/{NS}/events/offsets", b"").json()
    assert (v1["deprecatedFirstTimestamp"], v1["eventTime"]) == ("2026-12-03T08:00:00Z", "2026-12-03T11:30:00.123456Z")


def test_kubectl_apply_and_server_side_apply_canonicalize(server: Server) -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "held", "namespace": NS},
             "spec": {"holderIdentity": "me", "renewTime": "2026-12-03T10:00:00.123456+02:00",
                      "acquireTime": "2026-12-03T10:00:00,000001Z"}}
    server.kubectl("apply", "-f", "-", input=yaml.safe_dump(lease))
    spec = _get(server, "lease", "held")["spec"]
    assert (spec["renewTime"], spec["acquireTime"]) == ("2026-12-03T08:00:00.123456Z", "2026-12-03T10:00:00.000001Z")
    lease["spec"]["renewTime"] = "2026-12-03T12:00:00.654321-00:30"
    server.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(lease))
    assert _get(server, "lease", "held")["spec"]["renewTime"] == "2026-12-03T12:30:00.654321Z"


def test_pod_condition_with_an_offset_through_status(server: Server) -> None:
    server.kubectl("create", "-f", "-", input=json.dumps(_pod("cond")))
    patch = {"status": {"conditions": [{"type": "Tested", "status": "True",
                                        "lastTransitionTime": "2026-12-03T10:00:00.9+01:00"}],
                        "startTime": "2026-12-03T05:00:00-05:00"}}
    server.kubectl("patch", "pod", "cond", "-n", NS, "--subresource=status", "--type=strategic", "-p",
                   json.dumps(patch))
    status = _get(server, "pod", "cond")["status"]
    tested = next(c for c in status["conditions"] if c["type"] == "Tested")
    assert tested["lastTransitionTime"] == "2026-12-03T09:00:00Z"
    assert status["startTime"] == "2026-12-03T10:00:00Z"


def test_official_client_datetimes(api: client.ApiClient, raw: RawClient) -> None:
    """The Python client writes datetimes with isoformat() (+00:00): stored and read back as Kubernetes writes them."""
    coordination = client.CoordinationV1Api(api)
    renew = datetime.datetime(2026, 12, 3, 10, 0, 0, 250_000, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    coordination.create_namespaced_lease(NS, client.V1Lease(
        metadata=client.V1ObjectMeta(name="from-python"), spec=client.V1LeaseSpec(renew_time=renew)))
    stored = _send(raw, "GET", f"{LEASES}/from-python", b"").json()
    assert stored["spec"]["renewTime"] == "2026-12-03T09:00:00.250000Z"
    assert coordination.read_namespaced_lease("from-python", NS).spec.renew_time == renew


def test_a_micro_time_wants_its_six_digits(raw: RawClient) -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "short"},
             "spec": {"renewTime": "2026-12-03T10:00:00Z"}}
    a = _send(raw, "POST", LEASES, lease)
    assert a.status == 400, a.body[:400]
    assert a.json()["message"] == (
        'Lease in version "v1" cannot be handled as a Lease: parsing time "2026-12-03T10:00:00Z" as '
        '"2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"')


def test_protobuf_times_come_out_canonical(server: Server) -> None:
    """kubectl sends batch/v1 bodies as protobuf (seconds and nanos): a Time keeps whole seconds."""
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pb", "namespace": NS},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox"}]}}},
           "status": {"startTime": "2026-12-03T10:00:00+02:00"}}
    server.kubectl("create", "-f", "-", input=json.dumps(job))
    got = _get(server, "job", "pb")
    # A create drops a client's status; what the server wrote is canonical either way.
    for value in (got["metadata"]["creationTimestamp"], (got.get("status") or {}).get("startTime")):
        assert value is None or (len(value) == 20 and value.endswith("Z")), value


@pytest.mark.parametrize("path_kind", ["pod", "event"])
def test_unparseable_time_on_create_is_400(raw: RawClient, path_kind: str) -> None:
    if path_kind == "pod":
        body = _pod("bad-create")
        body["metadata"]["creationTimestamp"] = BAD
        _bad_request(_send(raw, "POST", PODS, body))
    else:
        _bad_request(_send(raw, "POST", EVENTS, _event("bad-create", firstTimestamp=BAD)), "Event")
    assert _send(raw, "GET", f"{PODS if path_kind == 'pod' else EVENTS}/bad-create", b"").status == 404


def _existing_pod(raw: RawClient, name: str) -> dict[str, Any]:
    a = _send(raw, "POST", PODS, _pod(name))
    assert a.status == 201, a.body[:400]
    created: dict[str, Any] = a.json()
    return created


def test_unparseable_time_on_update_is_400(raw: RawClient) -> None:
    pod = _existing_pod(raw, "bad-update")
    pod["status"] = {"conditions": [{"type": "Tested", "status": "True", "lastTransitionTime": BAD}]}
    _bad_request(_send(raw, "PUT", f"{PODS}/bad-update/status", pod))
    pod["status"] = {}
    pod["metadata"]["creationTimestamp"] = BAD
    _bad_request(_send(raw, "PUT", f"{PODS}/bad-update", pod))


@pytest.mark.parametrize(("content_type", "patch"), [
    ("application/merge-patch+json", {"status": {"startTime": BAD}}),
    ("application/strategic-merge-patch+json",
     {"status": {"conditions": [{"type": "Tested", "status": "True", "lastTransitionTime": BAD}]}}),
    ("application/json-patch+json", [{"op": "add", "path": "/status/startTime", "value": BAD}]),
])
def test_unparseable_time_in_a_patch_is_400(raw: RawClient, content_type: str, patch: Any) -> None:
    name = "bad-" + content_type.split("/")[1].split("+")[0]
    _existing_pod(raw, name)
    _bad_request(_send(raw, "PATCH", f"{PODS}/{name}/status", patch, content_type))
    assert BAD.encode() not in _send(raw, "GET", f"{PODS}/{name}", b"").body  # (the scheduler may write it meanwhile)


def test_unparseable_time_in_server_side_apply_is_400(raw: RawClient) -> None:
    body = yaml.safe_dump({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "bad-apply"},
                           "involvedObject": {"kind": "Pod", "name": "p"}, "lastTimestamp": BAD}).encode()
    a = raw.request("PATCH", f"{EVENTS}/bad-apply?fieldManager=tests", body, "application/apply-patch+yaml")
    _bad_request(a, "Event")
    assert _send(raw, "GET", f"{EVENTS}/bad-apply", b"").status == 404


def test_number_for_a_time_names_the_field(raw: RawClient) -> None:
    a = _send(raw, "POST", EVENTS, _event("number", lastTimestamp=1764756000))
    assert a.status == 400, a.body[:400]
    assert a.json()["message"] == ('Event in version "v1" cannot be handled as a Event: json: cannot unmarshal '
                                   'number into Go struct field Event.lastTimestamp of type string')
