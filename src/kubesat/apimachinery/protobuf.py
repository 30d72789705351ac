"""Strict decoder turning the Kubernetes protobuf request bodies that kubectl sends into Kubernetes' JSON form."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from kubesat.apimachinery import metatime
from kubesat.apimachinery.protobuf_tables import (
    BOOL,
    BYTES,
    EXTRA,
    FIELDSV1,
    INLINE,
    INT32,
    INT64,
    INTORSTR,
    MAP,
    MESSAGES,
    MICROTIME,
    MSG,
    PTR,
    QUANTITY,
    RAWEXTENSION,
    REP,
    STRING,
    TIME,
    Spec,
)

__all__ = ["MAGIC", "ProtobufError", "decode"]


class ProtobufError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf object of a known kind."""


MAGIC = b"k8s\x00"
MAX_BODY = 3 * 1024 * 1024
MAX_DEPTH = 64

# Field tables: message -> {field number: (JSON name, kind | flags[, message name or map value kind])}.  They and
# the value kinds are generated from Kubernetes' generated.proto files into protobuf_tables.py.  Scalars that
# are not pointers follow Go's omitempty: zero values are left out.
# The few messages below are of groups whose proto files the tables are not generated from (certificates/v1 and
# the older SelfSubjectReview versions); they are typed here, checked against k8s.io/api v0.32.4.
_UNGENERATED: dict[str, dict[int, Spec]] = {
    "authentication.v1alpha1.SelfSubjectReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("status", MSG, "authentication.v1alpha1.SelfSubjectReviewStatus"),
    },
    "authentication.v1alpha1.SelfSubjectReviewStatus": {
        1: ("userInfo", MSG, "authentication.v1.UserInfo"),
    },
    "authentication.v1beta1.SelfSubjectReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("status", MSG, "authentication.v1beta1.SelfSubjectReviewStatus"),
    },
    "authentication.v1beta1.SelfSubjectReviewStatus": {
        1: ("userInfo", MSG, "authentication.v1.UserInfo"),
    },
    "certificates.v1.CertificateSigningRequest": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "certificates.v1.CertificateSigningRequestSpec"),
        3: ("status", MSG, "certificates.v1.CertificateSigningRequestStatus"),
    },
    "certificates.v1.CertificateSigningRequestSpec": {
        1: ("request", BYTES),
        2: ("username", STRING),
        3: ("uid", STRING),
        4: ("groups", STRING | REP),
        5: ("usages", STRING | REP),
        6: ("extra", MAP, EXTRA),
        7: ("signerName", STRING),
        8: ("expirationSeconds", INT32 | PTR),
    },
    "certificates.v1.CertificateSigningRequestStatus": {
        1: ("conditions", MSG | REP, "certificates.v1.CertificateSigningRequestCondition"),
        2: ("certificate", BYTES),
    },
    "certificates.v1.CertificateSigningRequestCondition": {
        1: ("type", STRING),
        2: ("reason", STRING),
        3: ("message", STRING),
        4: ("lastUpdateTime", TIME),
        5: ("lastTransitionTime", TIME),
        6: ("status", STRING),
    },
}
_MESSAGES: dict[str, dict[int, Spec]] = {**MESSAGES, **_UNGENERATED}

SPAN = 15  # internal: the (start, stop) byte offsets of a length-delimited payload

# The small messages behind the special kinds, decoded like any other and then converted.
_HELPERS: dict[str, dict[int, Spec]] = {
    "meta.v1.Time": {1: ("seconds", INT64 | PTR), 2: ("nanos", INT32 | PTR)},
    "intstr.IntOrString": {1: ("type", INT64 | PTR), 2: ("intVal", INT32 | PTR), 3: ("strVal", STRING | PTR)},
    "resource.Quantity": {1: ("string", STRING | PTR)},
    "meta.v1.FieldsV1": {1: ("raw", SPAN)},
    "runtime.RawExtension": {1: ("raw", SPAN)},
    "ExtraValue": {1: ("items", STRING | REP)},
    # runtime.Unknown, the envelope after the magic, and its runtime.TypeMeta.
    "runtime.TypeMeta": {1: ("apiVersion", STRING | PTR), 2: ("kind", STRING | PTR)},
    "runtime.Unknown": {
        1: ("typeMeta", MSG, "runtime.TypeMeta"),
        2: ("raw", SPAN),
        3: ("contentEncoding", STRING | PTR),
        4: ("contentType", STRING | PTR),
    },
}
_HELPER_OF = {
    TIME: "meta.v1.Time",
    MICROTIME: "meta.v1.Time",
    INTORSTR: "intstr.IntOrString",
    QUANTITY: "resource.Quantity",
    FIELDSV1: "meta.v1.FieldsV1",
    RAWEXTENSION: "runtime.RawExtension",
    EXTRA: "ExtraValue",
}

_META = "meta.v1.DeleteOptions"
_KINDS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "core.v1.ConfigMap",
    ("v1", "Event"): "core.v1.Event",
    ("v1", "Namespace"): "core.v1.Namespace",
    ("v1", "Node"): "core.v1.Node",
    ("v1", "Pod"): "core.v1.Pod",
    ("v1", "Secret"): "core.v1.Secret",
    ("v1", "ServiceAccount"): "core.v1.ServiceAccount",
    ("v1", "Service"): "core.v1.Service",
    ("v1", "Endpoints"): "core.v1.Endpoints",
    ("discovery.k8s.io/v1", "EndpointSlice"): "discovery.v1.EndpointSlice",
    ("rbac.authorization.k8s.io/v1", "Role"): "rbac.v1.Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "rbac.v1.ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rbac.v1.RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "rbac.v1.ClusterRoleBinding",
    ("authentication.k8s.io/v1", "TokenRequest"): "authentication.v1.TokenRequest",
    ("authentication.k8s.io/v1", "TokenReview"): "authentication.v1.TokenReview",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "authentication.v1.SelfSubjectReview",
    ("authentication.k8s.io/v1beta1", "SelfSubjectReview"): "authentication.v1beta1.SelfSubjectReview",
    ("authentication.k8s.io/v1alpha1", "SelfSubjectReview"): "authentication.v1alpha1.SelfSubjectReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "authorization.v1.SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "authorization.v1.SelfSubjectRulesReview",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "authorization.v1.SubjectAccessReview",
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): "authorization.v1.LocalSubjectAccessReview",
    ("coordination.k8s.io/v1", "Lease"): "coordination.v1.Lease",
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): "certificates.v1.CertificateSigningRequest",
    # Workloads and the rest of the kinds a client may send; the API serves only the ones registered there.
    ("v1", "LimitRange"): "core.v1.LimitRange",
    ("v1", "PersistentVolume"): "core.v1.PersistentVolume",
    ("v1", "PersistentVolumeClaim"): "core.v1.PersistentVolumeClaim",
    ("v1", "ReplicationController"): "core.v1.ReplicationController",
    ("v1", "ResourceQuota"): "core.v1.ResourceQuota",
    ("apps/v1", "ControllerRevision"): "apps.v1.ControllerRevision",
    ("apps/v1", "DaemonSet"): "apps.v1.DaemonSet",
    ("apps/v1", "Deployment"): "apps.v1.Deployment",
    ("apps/v1", "ReplicaSet"): "apps.v1.ReplicaSet",
    ("apps/v1", "StatefulSet"): "apps.v1.StatefulSet",
    ("autoscaling/v1", "Scale"): "autoscaling.v1.Scale",
    ("batch/v1", "CronJob"): "batch.v1.CronJob",
    ("batch/v1", "Job"): "batch.v1.Job",
    ("events.k8s.io/v1", "Event"): "events.v1.Event",
    ("networking.k8s.io/v1", "Ingress"): "networking.v1.Ingress",
    ("networking.k8s.io/v1", "IngressClass"): "networking.v1.IngressClass",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networking.v1.NetworkPolicy",
    ("policy/v1", "Eviction"): "policy.v1.Eviction",
    ("policy/v1", "PodDisruptionBudget"): "policy.v1.PodDisruptionBudget",
}
# DeleteOptions is meta.k8s.io/v1's, and also registered in every group version.
for _api in {"meta.k8s.io/v1", *(api for api, _ in _KINDS)}:
    _KINDS[(_api, "DeleteOptions")] = _META

# Compiled tables: (message name, {number: (JSON name, kind, repeated, pointer, wire type, sub-table)}).
# The sub-table's type depends on the kind (a _Table for messages and special kinds, (entry _Table, value
# kind) for maps, None for scalars), which a tuple type cannot say; the decoder reads it by kind.
_Field = tuple[str, int, bool, bool, int, Any]
_Table = tuple[str, dict[int, _Field]]
_MAP_DEFAULTS: dict[int, Callable[[], Any]] = {
    STRING: str,
    BYTES: str,
    QUANTITY: lambda: "0",
    TIME: lambda: None,  # Go's zero time, as JSON
    EXTRA: list,
    MSG: dict,
}


def _compile() -> dict[str, _Table]:
    specs = {**_MESSAGES, **_HELPERS}
    tables: dict[str, _Table] = {name: (name, {}) for name in specs}

    def field(owner: str, name: str, code: int, ref: str | int | None) -> _Field:
        kind = code & 0xFF
        sub: Any = None
        if kind in (MSG, INLINE):
            sub = tables[str(ref)]
        elif kind in _HELPER_OF:
            sub = tables[_HELPER_OF[kind]]
        elif kind == MAP:
            vkind, vref = (MSG, ref) if isinstance(ref, str) else (int(ref or 0), None)
            if vkind not in _MAP_DEFAULTS:
                raise AssertionError(f"{owner}.{name}: unsupported map value kind {vkind}")
            entry: _Table = (f"{owner}.{name} entry", {})
            entry[1][1] = field(entry[0], "key", STRING | PTR, None)
            entry[1][2] = field(entry[0], "value", vkind | PTR, vref)
            sub = (entry, vkind)
        elif kind not in (STRING, BYTES, BOOL, INT32, INT64, SPAN):
            raise AssertionError(f"{owner}.{name}: unknown kind {kind}")
        wire = 0 if kind in (BOOL, INT32, INT64) else 2
        return (name, kind, bool(code & REP), bool(code & PTR), wire, sub)

    for owner, fields in specs.items():
        compiled = tables[owner][1]
        for number, spec in fields.items():
            compiled[number] = field(owner, spec[0], spec[1], spec[2] if len(spec) == 3 else None)
    return tables


_TABLES = _compile()
_ENVELOPE = _TABLES["runtime.Unknown"]
_U64 = (1 << 64) - 1
_OMIT: Any = object()


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    """Read a base-128 varint at buf[i:end]; answer (value, next index)."""
    result = 0
    shift = 0
    while i < end:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift >= 70:
            raise ProtobufError(f"varint longer than 10 bytes at byte {i - 10}")
    raise ProtobufError(f"protobuf body is truncated at byte {end}: a varint runs past the end of its message")


def _scalar(kind: int, value: int) -> int | bool:
    if kind == BOOL:
        return value != 0
    if kind == INT64:
        value &= _U64
        return value - (1 << 64) if value >> 63 else value
    value &= 0xFFFFFFFF  # INT32: Go keeps the low 32 bits
    return value - (1 << 32) if value >> 31 else value


def _text(buf: bytes, start: int, stop: int) -> str:
    try:
        return buf[start:stop].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtobufError(f"invalid UTF-8 in a string field at byte {start + e.start}") from None


def _timestamp(fields: dict[str, Any], micro: bool) -> str | None:
    """A Timestamp as Kubernetes' JSON writes it (a Time drops its nanoseconds, as its protobuf decoding does)."""
    seconds = fields.get("seconds", 0)
    if not metatime.FIRST_SECOND <= seconds <= metatime.LAST_SECOND:  # past what RFC 3339 writes: refused
        raise ProtobufError(f"timestamp {seconds} seconds after 1970 is out of range")
    return metatime.format_parts(seconds, fields.get("nanos", 0), micro)


def _special(kind: int, fields: dict[str, Any], buf: bytes, empty: bool) -> Any:
    """Turn a decoded helper message into its JSON value (or _OMIT)."""
    if kind in (TIME, MICROTIME):
        # Kubernetes writes the zero time as an empty message.
        return _OMIT if empty else _timestamp(fields, kind == MICROTIME)
    if kind == QUANTITY:
        return fields.get("string") or "0"
    if kind == INTORSTR:
        which = fields.get("type", 0)
        if which == 0:
            return fields.get("intVal", 0)
        if which == 1:
            return fields.get("strVal", "")
        raise ProtobufError(f"IntOrString type {which} is neither 0 (int) nor 1 (string)")
    if kind == EXTRA:
        return fields.get("items", [])
    # FIELDSV1 and RAWEXTENSION: the raw bytes are a JSON document.
    start, stop = fields.get("raw", (0, 0))
    if start == stop:
        return _OMIT
    try:
        return json.loads(buf[start:stop].decode("utf-8"))
    except (ValueError, RecursionError):
        what = "FieldsV1" if kind == FIELDSV1 else "RawExtension"
        raise ProtobufError(f"{what} at byte {start} does not hold a JSON document") from None


def _message(buf: bytes, i: int, end: int, table: _Table, depth: int, out: dict[str, Any]) -> dict[str, Any]:
    """Decode the message in buf[i:end] into out (a dict in Kubernetes' JSON form) and return it."""
    if depth > MAX_DEPTH:
        raise ProtobufError(f"protobuf messages nest deeper than {MAX_DEPTH} at byte {i}")
    msg_name, fields = table
    while i < end:
        at = i
        key = buf[i]
        if key < 0x80:
            i += 1
        else:
            key, i = _varint(buf, i, end)
        number = key >> 3
        wire = key & 7
        if number == 0:
            raise ProtobufError(f"invalid field number 0 at byte {at}")
        # The usual short fields inline; _payload reads every other shape and names what is wrong.
        if wire == 2 and i < end and buf[i] < 0x80 and i + 1 + buf[i] <= end:
            value = i + 1
            i = value + buf[i]
        elif wire == 0 and i < end and buf[i] < 0x80:
            value = buf[i]
            i += 1
        else:
            value, i = _payload(buf, i, end, number, wire, at)

        spec = fields.get(number)
        if spec is None:
            continue  # unknown field: skipped
        name, kind, rep, ptr, want, _ = spec
        if wire != want:
            _packed(buf, value, i, spec, wire, f"field {number} ({name}) of {msg_name} at byte {at}", out)
            continue

        if want == 0:
            v: Any = _scalar(kind, value)
        elif kind == STRING:
            v = _text(buf, value, i)
        else:
            v = _field_value(buf, value, i, spec, depth, out)
            if v is _OMIT:
                continue
        if rep:
            items = out.get(name)
            if not isinstance(items, list):
                items = out[name] = []
            items.append(v)
        elif not ptr and kind <= INT64 and not v:
            out.pop(name, None)  # Go's omitempty on a non-pointer zero value
        else:
            out[name] = v
    return out


def _payload(buf: bytes, i: int, end: int, number: int, wire: int, at: int) -> tuple[int, int]:
    """Read the value of field `number` (key at byte `at`) that starts at buf[i].

    Answers (value, next index): the value itself for a varint, else the offset its bytes start at.
    """
    if wire == 0:
        if i >= end:
            raise ProtobufError(f"protobuf body is truncated at byte {end}: field {number} has no value")
        value = buf[i]
        if value < 0x80:
            return value, i + 1
        return _varint(buf, i, end)
    if wire == 2:
        if i < end and buf[i] < 0x80:
            size = buf[i]
            i += 1
        else:
            size, i = _varint(buf, i, end)
        if i + size > end:
            raise ProtobufError(
                f"protobuf body is truncated at byte {end}: field {number} at byte {at} "
                f"needs {size} bytes, only {end - i} remain"
            )
        return i, i + size
    if wire == 1 or wire == 5:
        stop = i + (8 if wire == 1 else 4)
        if stop > end:
            raise ProtobufError(f"protobuf body is truncated at byte {end}: fixed-size field {number} at byte {at}")
        return i, stop
    raise ProtobufError(f"unsupported wire type {wire} for field {number} at byte {at}")


def _packed(buf: bytes, start: int, stop: int, spec: _Field, wire: int, where: str, out: dict[str, Any]) -> None:
    """A field whose wire type is not its table's: a packed repeated scalar in buf[start:stop], or an error.

    The scalars are appended to the list out[name].
    """
    name, kind, rep, _, want, _ = spec
    if not (rep and want == 0 and wire == 2):
        raise ProtobufError(f"{where} has wire type {wire}, expected {want}")
    items = out.setdefault(name, [])
    p = start
    while p < stop:
        raw, p = _varint(buf, p, stop)
        items.append(_scalar(kind, raw))


def _field_value(buf: bytes, start: int, stop: int, spec: _Field, depth: int, out: dict[str, Any]) -> Any:
    """The JSON value of a length-delimited field other than a string, whose bytes are buf[start:stop].

    Answers _OMIT when there is nothing to store: an inlined struct or a map entry already went into out,
    and an omitted special value (a zero time, an empty FieldsV1) removed a previous singular value.
    """
    name, kind, rep, _, _, sub = spec
    if kind == MSG:
        previous = None if rep else out.get(name)
        return _message(buf, start, stop, sub, depth + 1, previous if isinstance(previous, dict) else {})
    if kind == INLINE:
        _message(buf, start, stop, sub, depth + 1, out)
        return _OMIT
    if kind == MAP:
        _map_entry(buf, start, stop, sub, depth, name, out)
        return _OMIT
    if kind == BYTES:
        return base64.b64encode(buf[start:stop]).decode("ascii")
    if kind == SPAN:
        return (start, stop)
    v = _special(kind, _message(buf, start, stop, sub, depth + 1, {}), buf, start == stop)
    if v is _OMIT and not rep:
        out.pop(name, None)
    return v


def _map_entry(buf: bytes, start: int, stop: int, sub: tuple[_Table, int], depth: int, name: str,
               out: dict[str, Any]) -> None:
    """Decode one map entry message in buf[start:stop] into the map out[name] (created when missing)."""
    entry, vkind = sub
    pair = _message(buf, start, stop, entry, depth + 1, {})
    mapping = out.get(name)
    if not isinstance(mapping, dict):
        mapping = out[name] = {}
    mapping[pair.get("key", "")] = pair["value"] if "value" in pair else _MAP_DEFAULTS[vkind]()


def decode(body: bytes) -> dict[str, Any]:
    """Decode a `application/vnd.kubernetes.protobuf` body into the object's JSON form (a dict)."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ProtobufError(f"protobuf body must be bytes, not {type(body).__name__}")
    buf = bytes(body)
    if len(buf) > MAX_BODY:
        raise ProtobufError(f"protobuf body of {len(buf)} bytes exceeds the limit of {MAX_BODY} bytes")
    if buf[:4] != MAGIC:
        raise ProtobufError("protobuf body does not start with the Kubernetes magic bytes 6b 38 73 00 (k8s\\0)")
    envelope = _message(buf, 4, len(buf), _ENVELOPE, 0, {})
    type_meta = envelope.get("typeMeta", {})
    api_version = type_meta.get("apiVersion", "")
    kind = type_meta.get("kind", "")
    encoding = envelope.get("contentEncoding", "")
    if encoding:
        raise ProtobufError(f'unsupported contentEncoding "{encoding}" in the protobuf envelope')
    content_type = envelope.get("contentType", "")
    if content_type not in ("", "application/vnd.kubernetes.protobuf"):
        raise ProtobufError(f'unsupported contentType "{content_type}" in the protobuf envelope')
    message = _KINDS.get((api_version, kind))
    if message is None:
        raise ProtobufError(f'no protobuf decoding is known for apiVersion "{api_version}", kind "{kind}"')
    start, stop = envelope.get("raw", (4, 4))
    return _message(buf, start, stop, _TABLES[message], 1, {"apiVersion": api_version, "kind": kind})
