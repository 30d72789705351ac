"""Tests for the Kubernetes protobuf request-body decoder, against bodies captured from the real kubectl."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from datetime import datetime, timedelta, UTC
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesat.apimachinery import protobuf
from kubesat.apimachinery.protobuf import MAGIC, ProtobufError, decode

try:  # tests/unit may or may not be a package
    from .kubectl_capture import COMMANDS, FIXTURES, KUBECTL, write_request
except ImportError:
    from kubectl_capture import COMMANDS, FIXTURES, KUBECTL, write_request  # type: ignore[no-redef]

PROTOBUF = "application/vnd.kubernetes.protobuf"
PROTOBUF_ACCEPT = "application/vnd.kubernetes.protobuf,application/json"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.bin"))

# What kubectl v1.32.4 sends for each command: (method, path, query, Content-Type, Accept).
WIRE: dict[str, tuple[str, str, str, str, str]] = {
    "serviceaccount": (
        "POST", "/api/v1/namespaces/production/serviceaccounts",
        "fieldManager=kubectl-create&fieldValidation=Strict", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "role": (
        "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/production/roles",
        "fieldManager=kubectl-create&fieldValidation=Strict", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "clusterrole": (
        "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "fieldManager=kubectl-create&fieldValidation=Strict", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "clusterrole_aggregated": (
        "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "fieldManager=kubectl-create&fieldValidation=Strict", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "rolebinding": (
        "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/production/rolebindings",
        "fieldManager=kubectl-create&fieldValidation=Strict", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "clusterrolebinding": (
        "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "fieldManager=kubectl-create&fieldValidation=Strict", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "namespace": (
        "POST", "/api/v1/namespaces", "fieldManager=kubectl-create&fieldValidation=Strict", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "secret": (
        "POST", "/api/v1/namespaces/production/secrets",
        "fieldManager=kubectl-create&fieldValidation=Strict", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "configmap": (
        "POST", "/api/v1/namespaces/production/configmaps",
        "fieldManager=kubectl-create&fieldValidation=Strict", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "token": ("POST", "/api/v1/namespaces/production/serviceaccounts/app/token", "", PROTOBUF, PROTOBUF_ACCEPT),
    "can_i": ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "", PROTOBUF, PROTOBUF_ACCEPT),
    "can_i_subresource": (
        "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "can_i_nonresource": (
        "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    "can_i_list": ("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", "", PROTOBUF, PROTOBUF_ACCEPT),
    "whoami": ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "", PROTOBUF, PROTOBUF_ACCEPT),
    "whoami_v1beta1": ("POST", "/apis/authentication.k8s.io/v1beta1/selfsubjectreviews", "", PROTOBUF, PROTOBUF_ACCEPT),
    "whoami_v1alpha1": (
        "POST", "/apis/authentication.k8s.io/v1alpha1/selfsubjectreviews", "", PROTOBUF, PROTOBUF_ACCEPT,
    ),
    # kubectl run sends its Pod as JSON, not protobuf.
    "run": ("POST", "/api/v1/namespaces/production/pods", "fieldManager=kubectl-run", "application/json",
            "application/json, */*"),
}


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.bin").read_bytes()


def expected(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# --------------------------------------------------------------------------------------------------------------
# A tiny protobuf encoder for the tests, driven by the decoder's own field tables.

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _ld(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _time(text: str, micro: bool) -> bytes:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    t = datetime.strptime(text, fmt).replace(tzinfo=UTC)
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    seconds = delta.days * 86400 + delta.seconds
    out = _key(1, 0) + _varint(seconds)
    return out + (_key(2, 0) + _varint(delta.microseconds * 1000) if micro else b"")


def _value(kind: int, ref: Any, v: Any) -> tuple[int, bytes]:
    """(wire type, encoded value) of one JSON value."""
    P = protobuf
    if kind == P.STRING:
        return 2, v.encode()
    if kind == P.BYTES:
        return 2, base64.b64decode(v)
    if kind == P.BOOL:
        return 0, _varint(int(v))
    if kind in (P.INT32, P.INT64):
        return 0, _varint(v)
    if kind == P.MSG:
        return 2, encode_message(v, ref)
    if kind in (P.TIME, P.MICROTIME):
        return 2, _time(v, kind == P.MICROTIME)
    if kind == P.INTORSTR:
        if isinstance(v, str):
            return 2, _key(1, 0) + _varint(1) + _key(2, 0) + _varint(0) + _ld(3, v.encode())
        return 2, _key(1, 0) + _varint(0) + _key(2, 0) + _varint(v) + _ld(3, b"")
    if kind == P.QUANTITY:
        return 2, _ld(1, v.encode())
    if kind in (P.FIELDSV1, P.RAWEXTENSION):
        return 2, _ld(1, json.dumps(v).encode())
    if kind == P.EXTRA:
        return 2, b"".join(_ld(1, s.encode()) for s in v)
    raise AssertionError(kind)


def encode_message(obj: dict, message: str) -> bytes:
    """Encode a JSON-form object with the decoder's table for MESSAGE (fields in number order)."""
    out = bytearray()
    for number, spec in sorted(protobuf._MESSAGES[message].items()):
        name, code = spec[0], spec[1]
        ref = spec[2] if len(spec) > 2 else None
        kind = code & 0xFF
        if kind == protobuf.INLINE:
            out += _ld(number, encode_message(obj, ref))
            continue
        if name not in obj:
            continue
        v = obj[name]
        if kind == protobuf.MAP:
            vkind, vref = (protobuf.MSG, ref) if isinstance(ref, str) else (ref, None)
            for k, item in v.items():
                wire, data = _value(vkind, vref, item)
                out += _ld(number, _ld(1, k.encode()) + (_ld(2, data) if wire == 2 else _key(2, 0) + data))
            continue
        for item in v if code & protobuf.REP else [v]:
            wire, data = _value(kind, ref, item)
            out += _ld(number, data) if wire == 2 else _key(number, 0) + data
    return bytes(out)


def envelope(api_version: str, kind: str, raw: bytes, extra: bytes = b"") -> bytes:
    type_meta = _ld(1, api_version.encode()) + _ld(2, kind.encode())
    return MAGIC + _ld(1, type_meta) + _ld(2, raw) + _ld(3, b"") + _ld(4, b"") + extra


def encode(obj: dict, message: str) -> bytes:
    return envelope(obj["apiVersion"], obj["kind"], encode_message(obj, message))


# --------------------------------------------------------------------------------------------------------------
# Captured kubectl bodies


def test_every_command_has_a_fixture():
    for name, wire in WIRE.items():
        suffix = ".bin" if wire[3] == PROTOBUF else ".body.json"
        assert (FIXTURES / f"{name}{suffix}").is_file(), name
    assert set(WIRE) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(WIRE))
def test_recorded_wire_format(name):
    """The method, path, Content-Type and Accept kubectl v1.32.4 used when the fixture was captured."""
    meta = json.loads((FIXTURES / f"{name}.request.json").read_text())
    method, path, query, content_type, accept = WIRE[name]
    assert meta["kubectl"] == COMMANDS[name]
    assert (meta["method"], meta["path"], meta["query"]) == (method, path, query)
    assert meta["content-type"] == content_type
    assert meta["accept"] == accept


@pytest.mark.parametrize("name", NAMES)
def test_fixture_decodes_to_expected_json(name):
    body = fixture(name)
    assert body.startswith(MAGIC)
    assert decode(body) == expected(name)


def test_create_token_flags():
    obj = decode(fixture("token"))
    assert obj["apiVersion"] == "authentication.k8s.io/v1" and obj["kind"] == "TokenRequest"
    assert obj["spec"]["expirationSeconds"] == 24 * 3600
    assert obj["spec"]["audiences"] == ["a", "b"]
    assert obj["spec"]["boundObjectRef"] == {
        "kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": "0a1b2c3d-0000-4000-8000-00000000abcd",
    }


def test_create_secret_data_is_base64():
    data = decode(fixture("secret"))["data"]
    assert {k: base64.b64decode(v).decode() for k, v in data.items()} == {"username": "admin", "password": "s3cr=t"}


def test_create_configmap_binary_data():
    obj = decode(fixture("configmap"))
    assert obj["data"] == {"mode": "fast", "level": "3"}
    assert base64.b64decode(obj["binaryData"]["blob"]) == bytes([0xFF, 0x00, 0xFE, 0x80])


def test_rbac_rules_keep_the_core_group():
    rules = decode(fixture("role"))["rules"]
    assert rules == [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods", "pods/log"],
                      "resourceNames": ["web-0"]}]


def test_can_i_attributes():
    assert decode(fixture("can_i"))["spec"]["resourceAttributes"] == {
        "namespace": "production", "verb": "list", "resource": "pods",
    }
    assert decode(fixture("can_i_nonresource"))["spec"]["nonResourceAttributes"] == {"path": "/logs", "verb": "get"}
    assert decode(fixture("can_i_list"))["spec"] == {"namespace": "production"}


def test_kubectl_run_sends_json():
    body = json.loads((FIXTURES / "run.body.json").read_text())
    assert body["kind"] == "Pod" and body["spec"]["containers"][0]["image"] == "nginx:1.27"


@pytest.mark.skipif(not os.access(KUBECTL, os.X_OK), reason="kubectl is not installed")
@pytest.mark.parametrize("name", sorted(WIRE))
def test_live_kubectl_still_sends_the_same(name):
    """Run today's kubectl again: same request line and media types, and a body that decodes the same."""
    req = write_request(name, COMMANDS[name])
    method, path, query, content_type, accept = WIRE[name]
    assert (req.method, req.path, req.query) == (method, path, query)
    assert req.content_type == content_type
    assert req.accept == accept
    if content_type == PROTOBUF:
        assert decode(req.body) == expected(name)


# --------------------------------------------------------------------------------------------------------------
# Semantics on hand-built bodies

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web-0",
        "generateName": "web-",
        "namespace": "production",
        "uid": "u-1",
        "resourceVersion": "7",
        "generation": 3,
        "creationTimestamp": "2024-01-02T03:04:05Z",
        "deletionTimestamp": "2024-01-02T03:05:05Z",
        "deletionGracePeriodSeconds": 0,
        "labels": {"app": "web", "empty": ""},
        "annotations": {"note": "x"},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u-0", "controller": True,
             "blockOwnerDeletion": False},
        ],
        "finalizers": ["example.com/keep"],
        "managedFields": [
            {"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2024-01-02T03:04:05Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}},
        ],
    },
    "spec": {
        "serviceAccountName": "app",
        "automountServiceAccountToken": False,
        "nodeName": "node-1",
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "supplementalGroups": [1, 2]},
        "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c"], "args": ["true"],
                            "resources": {}}],
        "containers": [
            {
                "name": "web",
                "image": "nginx:1.27",
                "command": ["nginx"],
                "args": ["-g", "daemon off;"],
                "env": [
                    {"name": "MODE", "value": "fast"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password",
                                                                  "optional": False}}},
                ],
                "envFrom": [{"configMapRef": {"name": "settings"}}],
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/token", "readOnly": True}],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
                "readinessProbe": {"tcpSocket": {"port": "http"}},
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}, "privileged": False},
            }
        ],
        "volumes": [
            {"name": "token", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}},
            {"name": "cfg", "configMap": {"name": "settings", "optional": True}},
            {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 256}},
            {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "info", "downwardAPI": {"items": [{"path": "cpu", "resourceFieldRef": {
                "containerName": "web", "resource": "limits.cpu", "divisor": "1m"}}]}},
        ],
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 0}],
    },
    "status": {"phase": "Running", "podIP": "10.0.0.5", "startTime": "2024-01-02T03:04:06Z"},
}


def test_pod_round_trip():
    assert decode(encode(POD, "core.v1.Pod")) == POD


def test_pointer_zero_values_are_kept_and_plain_zero_values_dropped():
    spec = protobuf._MESSAGES["core.v1.PodSpec"]
    auto = next(n for n, s in spec.items() if s[0] == "automountServiceAccountToken")
    node = next(n for n, s in spec.items() if s[0] == "nodeName")
    raw = _key(auto, 0) + _varint(0) + _ld(node, b"")
    obj = decode(envelope("v1", "Pod", _ld(2, raw)))
    assert obj == {"apiVersion": "v1", "kind": "Pod", "spec": {"automountServiceAccountToken": False}}
    token = _ld(2, _key(4, 0) + _varint(0))  # TokenRequestSpec.expirationSeconds = 0
    assert decode(envelope("authentication.k8s.io/v1", "TokenRequest", token))["spec"] == {"expirationSeconds": 0}


def test_empty_time_is_omitted_and_epoch_is_not():
    meta = _ld(1, b"x") + _ld(8, b"")
    assert decode(envelope("v1", "Namespace", _ld(1, meta)))["metadata"] == {"name": "x"}
    meta = _ld(1, b"x") + _ld(8, _key(1, 0) + _varint(0))
    assert decode(envelope("v1", "Namespace", _ld(1, meta)))["metadata"]["creationTimestamp"] == "1970-01-01T00:00:00Z"


def test_time_and_microtime_formats():
    t = _key(1, 0) + _varint(1704164645) + _key(2, 0) + _varint(123456789)
    lease = _ld(2, _ld(1, b"me") + _ld(3, t) + _ld(4, t) + _key(2, 0) + _varint(15))
    obj = decode(envelope("coordination.k8s.io/v1", "Lease", lease))
    assert obj["spec"] == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": "2024-01-02T03:04:05.123456Z",
        "renewTime": "2024-01-02T03:04:05.123456Z",
    }
    meta = _ld(8, t)
    assert decode(envelope("v1", "Namespace", _ld(1, meta)))["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"


def test_negative_int64_and_int32():
    meta = _key(7, 0) + _varint(-5) + _key(10, 0) + _varint(-1)
    assert decode(envelope("v1", "Namespace", _ld(1, meta)))["metadata"] == {
        "generation": -5, "deletionGracePeriodSeconds": -1,
    }
    lease = _ld(2, _key(2, 0) + _varint(-7))
    assert decode(envelope("coordination.k8s.io/v1", "Lease", lease))["spec"] == {"leaseDurationSeconds": -7}


def test_event_node_and_lease_round_trip():
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "production"},
        "involvedObject": {"kind": "Pod", "namespace": "production", "name": "web", "uid": "u", "apiVersion": "v1",
                           "fieldPath": "spec.containers{web}"},
        "reason": "Pulled", "message": "pulled", "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2024-01-02T03:04:05Z", "lastTimestamp": "2024-01-02T03:04:06Z", "count": 2,
        "type": "Normal", "eventTime": "2024-01-02T03:04:05.000001Z", "reportingComponent": "kubelet",
        "reportingInstance": "node-1", "action": "Pull",
        "series": {"count": 3, "lastObservedTime": "2024-01-02T03:04:07.500000Z"},
    }
    assert decode(encode(event, "core.v1.Event")) == event
    node = {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {"zone": "a"}},
        "spec": {"podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24"], "providerID": "kind://node-1",
                 "unschedulable": True, "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "4", "pods": "110"}, "addresses": [{"type": "InternalIP",
                                                                            "address": "10.1.1.1"}]},
    }
    assert decode(encode(node, "core.v1.Node")) == node
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
             "spec": {"holderIdentity": "me", "leaseTransitions": 0, "preferredHolder": "you",
                      "strategy": "OldestEmulationVersion"}}
    assert decode(encode(lease, "coordination.v1.Lease")) == lease


@pytest.mark.parametrize("api_version", ["v1", "meta.k8s.io/v1", "rbac.authorization.k8s.io/v1"])
def test_delete_options(api_version):
    opts = {"apiVersion": api_version, "kind": "DeleteOptions", "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u-1", "resourceVersion": "9"}, "orphanDependents": False,
            "propagationPolicy": "Foreground", "dryRun": ["All"]}
    assert decode(encode(opts, "meta.v1.DeleteOptions")) == opts


def test_reviews_with_extra_and_selectors():
    review = {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {},
        "spec": {"token": "abc", "audiences": ["api"]},
        "status": {"authenticated": True, "audiences": ["api"], "user": {
            "username": "system:serviceaccount:production:app", "uid": "u", "groups": ["system:serviceaccounts"],
            "extra": {"authentication.kubernetes.io/pod-name": ["web-0"], "empty": []}}},
    }
    expect = json.loads(json.dumps(review))
    assert decode(encode(review, "authentication.v1.TokenReview")) == expect
    sar = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
        "metadata": {"namespace": "production"},
        "spec": {
            "resourceAttributes": {
                "namespace": "production", "verb": "list", "group": "apps", "version": "v1",
                "resource": "deployments", "subresource": "scale", "name": "web",
                "fieldSelector": {"rawSelector": "metadata.name=web",
                                  "requirements": [{"key": "metadata.name", "operator": "In", "values": ["web"]}]},
                "labelSelector": {"rawSelector": "app=web",
                                  "requirements": [{"key": "app", "operator": "In", "values": ["web"]}]},
            },
            "user": "alice", "groups": ["devs"], "uid": "u-2", "extra": {"scopes": ["a", "b"]},
        },
    }
    assert decode(encode(sar, "authorization.v1.LocalSubjectAccessReview")) == sar
    for kind in ("SubjectAccessReview", "SelfSubjectAccessReview"):
        body = encode({**sar, "kind": kind, "metadata": {}}, f"authorization.v1.{kind}")
        assert decode(body)["spec"]["resourceAttributes"] == sar["spec"]["resourceAttributes"]


def test_unknown_fields_of_every_wire_type_are_skipped():
    unknown = (
        _key(90, 0) + _varint(2**63)
        + _key(91, 1) + b"\x01" * 8
        + _ld(92, b"\xff\xfe not utf-8")
        + _key(93, 5) + b"\x02" * 4
    )
    raw = _ld(1, unknown + _ld(1, b"app") + unknown + _ld(3, b"production")) + unknown
    obj = decode(envelope("v1", "ServiceAccount", raw, extra=unknown))
    assert obj == {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "production"}}


def test_repeated_and_packed_scalars_and_last_value_wins():
    packed = _ld(4, _varint(1) + _varint(2) + _varint(300))  # PodSecurityContext.supplementalGroups
    plain = _key(4, 0) + _varint(7)
    spec = _ld(14, packed + plain)
    obj = decode(envelope("v1", "Pod", _ld(2, spec)))
    assert obj["spec"]["securityContext"]["supplementalGroups"] == [1, 2, 300, 7]
    meta = _ld(1, b"first") + _ld(1, b"second")
    assert decode(envelope("v1", "Namespace", _ld(1, meta)))["metadata"] == {"name": "second"}


def test_duplicated_message_fields_merge():
    raw = _ld(1, _ld(1, b"a")) + _ld(1, _ld(3, b"ns"))
    assert decode(envelope("v1", "ServiceAccount", raw))["metadata"] == {"name": "a", "namespace": "ns"}


def test_int_or_string():
    port_int = _ld(2, _key(1, 0) + _varint(0) + _key(2, 0) + _varint(8080))  # HTTPGetAction.port
    port_str = _ld(2, _key(1, 0) + _varint(1) + _ld(3, b"http"))
    for port, want in ((port_int, 8080), (port_str, "http")):
        container = _ld(1, b"c") + _ld(10, _ld(1, _ld(2, port)))  # Container.livenessProbe.handler.httpGet
        obj = decode(envelope("v1", "Pod", _ld(2, _ld(2, container))))
        assert obj["spec"]["containers"][0]["livenessProbe"] == {"httpGet": {"port": want}}
    bad = _ld(2, _key(1, 0) + _varint(2))
    container = _ld(1, b"c") + _ld(10, _ld(1, _ld(2, bad)))
    with pytest.raises(ProtobufError, match="IntOrString"):
        decode(envelope("v1", "Pod", _ld(2, _ld(2, container))))


# --------------------------------------------------------------------------------------------------------------
# Malformed bodies


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "magic"),
        (b"k8s", "magic"),
        (b"{\"kind\": \"Pod\"}", "magic"),
        (b"k8s\x01" + b"\x0a\x00", "magic"),
        (MAGIC + b"\x0a", "truncated"),
        (MAGIC + b"\x0a\x05\x0a\x03v1", "truncated"),
        (MAGIC + b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (MAGIC + b"\x08\x80", "truncated"),
        (MAGIC + b"\x09\x00", "truncated"),
        (MAGIC + b"\x0b", "wire type 3"),
        (MAGIC + b"\x0e", "wire type 6"),
        (MAGIC + b"\x00\x00", "field number 0"),
        (MAGIC + b"\x08\x01", "wire type 0, expected 2"),
    ],
)
def test_malformed(body, message):
    with pytest.raises(ProtobufError, match=message):
        decode(body)


def test_unknown_kind_names_it():
    with pytest.raises(ProtobufError, match='apiVersion "storage.k8s.io/v1", kind "StorageClass"'):
        decode(envelope("storage.k8s.io/v1", "StorageClass", b""))
    with pytest.raises(ProtobufError, match='apiVersion "", kind ""'):
        decode(MAGIC)


def test_wrong_wire_type_for_a_known_field():
    with pytest.raises(ProtobufError, match="wire type 0, expected 2"):
        decode(envelope("v1", "ServiceAccount", _ld(1, _key(1, 0) + _varint(1))))
    with pytest.raises(ProtobufError, match="wire type 2, expected 0"):
        decode(envelope("v1", "Secret", _ld(5, b"")))


def test_invalid_utf8():
    with pytest.raises(ProtobufError, match="UTF-8"):
        decode(envelope("v1", "ServiceAccount", _ld(1, _ld(1, b"a\xffb"))))
    with pytest.raises(ProtobufError, match="UTF-8"):
        decode(envelope("v1", "ServiceAccount", _ld(1, _ld(11, _ld(1, b"\xc3") + _ld(2, b"v")))))


def test_length_past_end_of_nested_message():
    meta = _ld(1, b"name")
    # metadata holds 6 bytes, but the name inside it claims 5 where only 4 remain
    raw = _key(1, 2) + _varint(len(meta)) + meta[:1] + bytes([meta[1] + 1]) + meta[2:]
    with pytest.raises(ProtobufError, match="truncated"):
        decode(envelope("v1", "ServiceAccount", raw))


def test_envelope_encoding_and_content_type():
    raw = encode_message({"metadata": {"name": "x"}}, "core.v1.Namespace")
    type_meta = _ld(1, b"v1") + _ld(2, b"Namespace")
    with pytest.raises(ProtobufError, match="contentEncoding"):
        decode(MAGIC + _ld(1, type_meta) + _ld(2, raw) + _ld(3, b"gzip"))
    with pytest.raises(ProtobufError, match="contentType"):
        decode(MAGIC + _ld(1, type_meta) + _ld(2, raw) + _ld(4, b"application/json"))


def test_bad_timestamps_and_fields_v1():
    huge = _ld(8, _key(1, 0) + _varint(2**62))
    with pytest.raises(ProtobufError, match="out of range"):
        decode(envelope("v1", "Namespace", _ld(1, huge)))
    entry = _ld(17, _ld(7, _ld(1, b"{not json")))
    with pytest.raises(ProtobufError, match="FieldsV1"):
        decode(envelope("v1", "Namespace", _ld(1, entry)))


def test_nesting_limit(monkeypatch):
    monkeypatch.setattr(protobuf, "MAX_DEPTH", 3)
    assert decode(fixture("namespace"))["metadata"] == {"name": "staging"}
    with pytest.raises(ProtobufError, match="deeper than 3"):
        decode(encode(POD, "core.v1.Pod"))


def test_size_limit_and_type():
    with pytest.raises(ProtobufError, match="exceeds"):
        decode(MAGIC + b"\x00" * protobuf.MAX_BODY)
    with pytest.raises(ProtobufError, match="bytes"):
        decode("k8s\x00")  # type: ignore[arg-type]
    assert decode(bytearray(fixture("token"))) == decode(memoryview(fixture("token")))


def test_large_body_is_fast():
    data = {f"key-{i}": base64.b64encode(os.urandom(64)).decode() for i in range(20000)}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "big"}, "data": data}
    body = encode(secret, "core.v1.Secret")
    assert len(body) < protobuf.MAX_BODY
    start = time.perf_counter()
    assert decode(body)["data"] == data
    assert time.perf_counter() - start < 2.0
    junk = MAGIC + _ld(2, bytes(2_000_000)) + bytes(range(256)) * 1000
    start = time.perf_counter()
    with pytest.raises(ProtobufError):
        decode(junk)
    assert time.perf_counter() - start < 2.0


def test_tables_resolve_and_cover_every_kind():
    assert set(protobuf._KINDS.values()) <= set(protobuf._TABLES)
    for name, fields in protobuf._MESSAGES.items():
        for number, spec in fields.items():
            assert number > 0 and spec[0], (name, number)


# --------------------------------------------------------------------------------------------------------------
# Fuzzing

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_reject(body: bytes) -> None:
    start = time.perf_counter()
    with contextlib.suppress(ProtobufError):
        assert isinstance(decode(body), dict)
    assert time.perf_counter() - start < 1.0


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_after_magic(tail):
    _decode_or_reject(MAGIC + tail)


@FUZZ
@given(st.sampled_from(NAMES), st.data())
def test_fuzz_truncations(name, data):
    body = fixture(name)
    _decode_or_reject(body[: data.draw(st.integers(0, len(body) - 1))])


@FUZZ
@given(st.sampled_from(NAMES), st.data())
def test_fuzz_bit_flips(name, data):
    body = bytearray(fixture(name))
    for _ in range(data.draw(st.integers(1, 4))):
        bit = data.draw(st.integers(0, len(body) * 8 - 1))
        body[bit // 8] ^= 1 << (bit % 8)
    _decode_or_reject(bytes(body))


@FUZZ
@given(st.sampled_from(NAMES), st.data())
def test_fuzz_splices(name, data):
    body = fixture(name)
    at = data.draw(st.integers(4, len(body)))
    _decode_or_reject(body[:at] + data.draw(st.binary(max_size=64)) + body[at:])


# Round trips of random objects built from the decoder's own tables (as Go would serialise them).

_INT32 = st.integers(-(2**31), 2**31 - 1)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_TEXT = st.text(max_size=8)
# From just after Go's zero time (0001-01-01T00:00:00Z, which Kubernetes writes as null) to the end of year 9999.
_SECONDS = st.integers(-62135596799, 253402300799)


def _time_text(micro: bool) -> st.SearchStrategy[str]:
    def fmt(s: int, us: int) -> str:
        t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=s)
        text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        return f"{text}.{us:06d}Z" if micro else f"{text}Z"

    return st.builds(fmt, _SECONDS, st.integers(0, 999999) if micro else st.just(0))


def _strategy(kind: int, ref: Any, ptr: bool, depth: int) -> st.SearchStrategy[Any]:
    P = protobuf
    if kind == P.STRING:
        return _TEXT if ptr else st.text(min_size=1, max_size=8)
    if kind == P.BYTES:
        return st.binary(min_size=0 if ptr else 1, max_size=8).map(lambda b: base64.b64encode(b).decode())
    if kind == P.BOOL:
        return st.booleans() if ptr else st.just(True)
    if kind == P.INT32:
        return _INT32 if ptr else _INT32.filter(bool)
    if kind == P.INT64:
        return _INT64 if ptr else _INT64.filter(bool)
    if kind == P.MSG:
        return _object(ref, depth + 1)
    if kind in (P.TIME, P.MICROTIME):
        return _time_text(kind == P.MICROTIME)
    if kind == P.INTORSTR:
        return _INT32 | _TEXT
    if kind == P.QUANTITY:
        return st.sampled_from(["1", "250m", "64Mi", "1.5Gi", "2e3"])
    if kind in (P.FIELDSV1, P.RAWEXTENSION):
        return st.dictionaries(st.text(max_size=4), st.just({}), min_size=1, max_size=2)
    if kind == P.EXTRA:
        return st.lists(_TEXT, max_size=3)
    raise AssertionError(kind)


def _object(message: str, depth: int = 0) -> st.SearchStrategy[dict]:
    if depth > 3:
        return st.just({})
    optional: dict[str, st.SearchStrategy[Any]] = {}
    inline: list[st.SearchStrategy[dict]] = []
    for spec in protobuf._MESSAGES[message].values():
        name, code = spec[0], spec[1]
        ref = spec[2] if len(spec) > 2 else None
        kind = code & 0xFF
        if kind == protobuf.INLINE:
            inline.append(_object(ref, depth + 1))
        elif kind == protobuf.MAP:
            vkind, vref = (protobuf.MSG, ref) if isinstance(ref, str) else (ref, None)
            optional[name] = st.dictionaries(_TEXT, _strategy(vkind, vref, True, depth), min_size=1, max_size=2)
        elif code & protobuf.REP:
            optional[name] = st.lists(_strategy(kind, ref, True, depth), min_size=1, max_size=2)
        else:
            optional[name] = _strategy(kind, ref, bool(code & protobuf.PTR), depth)
    base = st.fixed_dictionaries({}, optional=optional)
    for part in inline:
        base = st.builds(lambda a, b: {**b, **a}, base, part)
    return base


ROUND_TRIP = [
    ("v1", "ServiceAccount", "core.v1.ServiceAccount"),
    ("v1", "Secret", "core.v1.Secret"),
    ("v1", "ConfigMap", "core.v1.ConfigMap"),
    ("v1", "Pod", "core.v1.Pod"),
    ("v1", "Event", "core.v1.Event"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "rbac.v1.ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "rbac.v1.RoleBinding"),
    ("authentication.k8s.io/v1", "TokenRequest", "authentication.v1.TokenRequest"),
    ("authentication.k8s.io/v1", "TokenReview", "authentication.v1.TokenReview"),
    ("authorization.k8s.io/v1", "SubjectAccessReview", "authorization.v1.SubjectAccessReview"),
    ("coordination.k8s.io/v1", "Lease", "coordination.v1.Lease"),
    ("meta.k8s.io/v1", "DeleteOptions", "meta.v1.DeleteOptions"),
    ("apps/v1", "Deployment", "apps.v1.Deployment"),
    ("apps/v1", "ControllerRevision", "apps.v1.ControllerRevision"),
    ("batch/v1", "CronJob", "batch.v1.CronJob"),
    ("policy/v1", "PodDisruptionBudget", "policy.v1.PodDisruptionBudget"),
    ("networking.k8s.io/v1", "Ingress", "networking.v1.Ingress"),
    ("v1", "PersistentVolume", "core.v1.PersistentVolume"),
]


@pytest.mark.parametrize("api_version, kind, message", ROUND_TRIP, ids=[k for _, k, _ in ROUND_TRIP])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_round_trip_random_objects(api_version, kind, message, data):
    obj = data.draw(_object(message))
    body = envelope(api_version, kind, encode_message(obj, message))
    assert decode(body) == {"apiVersion": api_version, "kind": kind, **obj}
