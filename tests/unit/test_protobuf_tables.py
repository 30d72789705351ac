"""Tests for the generated protobuf field tables and the script that writes them from Kubernetes' proto files."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from kubesat.apimachinery import protobuf, protobuf_tables
from kubesat.apimachinery.protobuf import MAGIC, ProtobufError, decode
from kubesat.apimachinery.protobuf_tables import (
    BOOL,
    INLINE,
    INT32,
    INT64,
    INTORSTR,
    MAP,
    MESSAGES,
    MSG,
    PTR,
    RAWEXTENSION,
    REP,
    STRING,
    TIME,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_protobuf_tables.py"
TABLES = ROOT / "src" / "kubesat" / "apimachinery" / "protobuf_tables.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protobuf_tables", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


gen = _load_script()


# --------------------------------------------------------------------------------------------------------------
# Key facts of the generated tables (numbers, JSON names and flags as in Kubernetes v1.32)

FACTS = [
    ("core.v1.PodSpec", 2, ("containers", MSG | REP, "core.v1.Container")),
    ("core.v1.PodSpec", 10, ("nodeName", STRING)),
    ("core.v1.PodSpec", 21, ("automountServiceAccountToken", BOOL | PTR)),
    ("core.v1.PodSpec", 4, ("terminationGracePeriodSeconds", INT64 | PTR)),
    ("core.v1.Volume", 2, ("volumeSource", INLINE, "core.v1.VolumeSource")),
    ("meta.v1.ObjectMeta", 11, ("labels", MAP, STRING)),
    ("meta.v1.ObjectMeta", 8, ("creationTimestamp", TIME)),
    ("apps.v1.DeploymentSpec", 1, ("replicas", INT32 | PTR)),
    ("apps.v1.DeploymentSpec", 3, ("template", MSG, "core.v1.PodTemplateSpec")),
    ("apps.v1.DeploymentSpec", 5, ("minReadySeconds", INT32)),
    ("apps.v1.DeploymentSpec", 7, ("paused", BOOL)),
    ("apps.v1.DeploymentSpec", 9, ("progressDeadlineSeconds", INT32 | PTR)),
    ("apps.v1.RollingUpdateDeployment", 1, ("maxUnavailable", INTORSTR)),
    ("apps.v1.ControllerRevision", 2, ("data", RAWEXTENSION)),
    ("batch.v1.JobSpec", 3, ("activeDeadlineSeconds", INT64 | PTR)),
    ("batch.v1.JobSpec", 7, ("backoffLimit", INT32 | PTR)),
    ("batch.v1.JobSpec", 10, ("suspend", BOOL | PTR)),
    ("batch.v1.CronJobSpec", 8, ("timeZone", STRING | PTR)),
    ("policy.v1.PodDisruptionBudgetStatus", 2, ("disruptedPods", MAP, TIME)),
    ("networking.v1.IngressRule", 2, ("ingressRuleValue", INLINE, "networking.v1.IngressRuleValue")),
    # Proto names built from Go names with an initialism; the JSON names are the Go json tags.
    ("networking.v1.IngressClassParametersReference", 1, ("apiGroup", STRING | PTR)),
    ("authentication.v1.BoundObjectReference", 4, ("uid", STRING)),
]


@pytest.mark.parametrize("message, number, spec", FACTS, ids=[f"{m}.{s[0]}" for m, _, s in FACTS])
def test_generated_field(message, number, spec):
    assert MESSAGES[message][number] == spec


def test_the_decoder_uses_the_generated_tables():
    for name, fields in MESSAGES.items():
        assert protobuf._MESSAGES[name] is fields
    assert protobuf.STRING == protobuf_tables.STRING and protobuf.PTR == protobuf_tables.PTR


def test_the_module_says_it_is_generated():
    head = " ".join(line.lstrip("# ") for line in TABLES.read_text(encoding="utf-8").splitlines()[:6])
    assert "GENERATED from the generated.proto files of Kubernetes v1.32" in head
    assert "`python scripts/gen_protobuf_tables.py PROTO_DIR --out src/kubesat/apimachinery/protobuf_tables.py`" in head
    assert "Do not edit" in head


WORKLOADS = {
    ("apps/v1", "Deployment"), ("apps/v1", "ReplicaSet"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
    ("apps/v1", "ControllerRevision"), ("autoscaling/v1", "Scale"), ("batch/v1", "Job"), ("batch/v1", "CronJob"),
    ("policy/v1", "PodDisruptionBudget"), ("policy/v1", "Eviction"), ("events.k8s.io/v1", "Event"),
    ("networking.k8s.io/v1", "Ingress"), ("networking.k8s.io/v1", "IngressClass"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("v1", "PersistentVolume"), ("v1", "PersistentVolumeClaim"),
    ("v1", "ReplicationController"), ("v1", "LimitRange"), ("v1", "ResourceQuota"),
}


def test_every_workload_kind_has_a_table_and_its_delete_options():
    for api_version, kind in WORKLOADS:
        message = protobuf._KINDS[(api_version, kind)]
        assert message in MESSAGES and message.endswith(f".{kind}"), (api_version, kind)
        assert protobuf._KINDS[(api_version, "DeleteOptions")] == "meta.v1.DeleteOptions"


def test_every_root_of_the_script_is_a_decodable_kind():
    assert set(gen.ROOTS) <= set(protobuf._KINDS.values())
    assert set(gen.ROOTS) <= set(MESSAGES)


def test_a_kind_without_a_table_is_still_refused():
    body = MAGIC + _ld(1, _ld(1, b"storage.k8s.io/v1") + _ld(2, b"StorageClass")) + _ld(2, b"")
    with pytest.raises(ProtobufError, match='no protobuf decoding is known for apiVersion "storage.k8s.io/v1", '
                                            'kind "StorageClass"'):
        decode(body)


# --------------------------------------------------------------------------------------------------------------
# Bodies written out field by field (numbers from the v1.32 proto files, not from the tables under test)

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _str(number: int, text: str) -> bytes:
    return _ld(number, text.encode())


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _entry(number: int, key: str, value: bytes) -> bytes:
    return _ld(number, _str(1, key) + _ld(2, value))


def _object(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _str(1, api_version) + _str(2, kind)
    return MAGIC + _ld(1, type_meta) + _ld(2, raw) + _str(3, "") + _str(4, "")


def test_decode_a_deployment_body():
    labels = _entry(11, "app", b"web")
    meta = _str(1, "web") + _str(3, "default") + _ld(8, b"") + labels  # an empty creationTimestamp: omitted
    container = _str(1, "nginx") + _str(2, "nginx:1.27") + _str(3, "nginx") + _str(3, "-g") + _ld(
        6, _str(1, "http") + _int(3, 80) + _str(4, "TCP")
    )
    pod_spec = _ld(2, container) + _str(3, "Always") + _int(4, 30) + _str(10, "") + _int(11, 0)
    template = _ld(1, _ld(11, b"\x0a\x03app\x12\x03web")) + _ld(2, pod_spec)
    rolling = _ld(1, _int(1, 0) + _int(2, 0)) + _ld(2, _int(1, 1) + _str(3, "25%"))  # maxUnavailable 0, maxSurge
    spec = (
        _int(1, 0)  # replicas: a pointer, so the zero stays
        + _ld(2, _ld(1, b"\x0a\x03app\x12\x03web"))
        + _ld(3, template)
        + _ld(4, _str(1, "RollingUpdate") + _ld(2, rolling))
        + _int(5, 0)  # minReadySeconds: a plain int32, so the zero goes
        + _int(6, 10)
        + _int(7, 0)  # paused: a plain bool
        + _int(9, 600)
    )
    status = _int(1, 3) + _int(2, 0)  # observedGeneration, replicas (plain: dropped)
    body = _object("apps/v1", "Deployment", _ld(1, meta) + _ld(2, spec) + _ld(3, status))
    assert decode(body) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "command": ["nginx", "-g"],
                        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                    }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {"observedGeneration": 3},
    }


def test_decode_a_cronjob_body():
    job_spec = _int(3, 0) + _int(7, 6) + _int(10, 0)  # activeDeadlineSeconds 0 and suspend false are pointers
    spec = _str(1, "*/5 * * * *") + _str(3, "Forbid") + _ld(5, _ld(2, job_spec)) + _str(8, "Etc/UTC")
    body = _object("batch/v1", "CronJob", _ld(1, _str(1, "tick")) + _ld(2, spec))
    assert decode(body)["spec"] == {
        "schedule": "*/5 * * * *",
        "concurrencyPolicy": "Forbid",
        "jobTemplate": {"spec": {"activeDeadlineSeconds": 0, "backoffLimit": 6, "suspend": False}},
        "timeZone": "Etc/UTC",
    }


def test_decode_a_pod_disruption_budget_with_disrupted_pods():
    when = _int(1, 1_700_000_000)
    status = _int(1, 2) + _entry(2, "web-1", when) + _entry(2, "web-2", b"") + _int(3, 1)
    spec = _ld(1, _int(1, 0) + _str(3, "50%")) + _str(4, "AlwaysAllow")  # minAvailable 0 (an int)
    body = _object("policy/v1", "PodDisruptionBudget", _ld(1, _str(1, "pdb")) + _ld(2, spec) + _ld(3, status))
    obj = decode(body)
    assert obj["spec"] == {"minAvailable": 0, "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    assert obj["status"] == {
        "observedGeneration": 2,
        "disruptedPods": {"web-1": "2023-11-14T22:13:20Z", "web-2": None},  # Go's zero time is null
        "disruptionsAllowed": 1,
    }


def test_decode_a_controller_revision_and_an_ingress():
    data = b'{"spec":{"template":{"metadata":{"labels":{"app":"web"}}}}}'
    body = _object("apps/v1", "ControllerRevision", _ld(1, _str(1, "web-1")) + _ld(2, _ld(1, data)) + _int(3, 1))
    assert decode(body)["data"] == {"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}}
    with pytest.raises(ProtobufError, match="RawExtension at byte .* does not hold a JSON document"):
        decode(_object("apps/v1", "ControllerRevision", _ld(2, _ld(1, b"\x0a\x00"))))

    backend = _ld(4, _str(1, "web") + _ld(2, _int(2, 80)))
    path = _str(1, "/") + _ld(2, backend) + _str(3, "Prefix")
    rule = _str(1, "example.com") + _ld(2, _ld(1, _ld(1, path)))  # IngressRuleValue is inlined into the rule
    body = _object("networking.k8s.io/v1", "Ingress", _ld(2, _ld(3, rule) + _str(4, "nginx")))
    assert decode(body)["spec"] == {
        "rules": [{
            "host": "example.com",
            "http": {"paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                "pathType": "Prefix"}]},
        }],
        "ingressClassName": "nginx",
    }


# --------------------------------------------------------------------------------------------------------------
# The generator

PROTO = """\
/* licence
   text */
syntax = "proto2";

package k8s.io.api.example.v1;

import "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto";

// Widget is a made-up kind.
message Widget {
  // +optional
  optional .k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;

  optional WidgetSpec spec = 2;
}

message WidgetSpec {
  optional int32 size = 1;

  repeated string tags = 2;

  map<string, .k8s.io.apimachinery.pkg.api.resource.Quantity> limits = 3;

  optional string uID = 4;

  optional bytes blob = 5;
}
"""


def test_parse_proto_reads_messages_fields_and_types():
    messages = gen.parse_proto(PROTO, "example.proto")
    assert sorted(messages) == ["example.v1.Widget", "example.v1.WidgetSpec"]
    fields = {f.name: f for f in messages["example.v1.WidgetSpec"].fields}
    assert (fields["size"].number, fields["size"].type, fields["size"].repeated) == (1, "int32", False)
    assert fields["tags"].repeated and fields["tags"].type == "string"
    assert fields["limits"].map_value and fields["limits"].type == "resource.Quantity"
    assert messages["example.v1.Widget"].fields[0].type == "meta.v1.ObjectMeta"
    assert messages["example.v1.Widget"].fields[1].type == "example.v1.WidgetSpec"


def test_spec_lines_name_kinds_and_flags():
    spec_fields = {f.name: f for f in gen.parse_proto(PROTO, "example.proto")["example.v1.WidgetSpec"].fields}
    owner = "example.v1.WidgetSpec"
    assert gen.spec(owner, spec_fields["size"]) == '("size", INT32)'
    assert gen.spec(owner, spec_fields["tags"]) == '("tags", STRING | REP)'
    assert gen.spec(owner, spec_fields["limits"]) == '("limits", MAP, QUANTITY)'
    assert gen.spec(owner, spec_fields["uID"]) == '("uid", STRING)'
    assert gen.spec(owner, spec_fields["blob"]) == '("blob", BYTES)'


@pytest.mark.parametrize("proto_name, json_name", [
    ("uID", "uid"), ("aPIGroup", "apiGroup"), ("podIP", "podIP"), ("hostIPC", "hostIPC"), ("name", "name"),
])
def test_json_names(proto_name, json_name):
    assert gen.json_name(proto_name) == json_name


def test_short_package_names():
    assert gen.short_package("k8s.io.api.core.v1") == "core.v1"
    assert gen.short_package("k8s.io.apimachinery.pkg.apis.meta.v1") == "meta.v1"
    assert gen.short_package("k8s.io.apimachinery.pkg.util.intstr") == "intstr"
    assert gen.short_package("k8s.io.api.authentication.v1beta1") == "authentication.v1beta1"


@pytest.mark.parametrize("text, message", [
    ("message X {\n  optional string a = 1\n}\n", "unexpected line in message"),
    ("message X {\n  oneof y {\n}\n", "unexpected line in message"),
    ("enum Y {\n}\n", "unexpected line outside a message"),
    ("message X {\n  optional string a = 1;\n", "is not closed"),
])
def test_parse_proto_refuses_what_it_does_not_understand(text, message):
    with pytest.raises(gen.ProtoError, match=message):
        gen.parse_proto(text, "bad.proto")


def test_overrides_must_name_real_fields(monkeypatch):
    messages = gen.parse_proto(PROTO, "example.proto")
    monkeypatch.setattr(gen, "INLINE", {})
    monkeypatch.setattr(gen, "POINTERS", {"example.v1.WidgetSpec": ["sise"]})
    with pytest.raises(gen.ProtoError, match="POINTERS names example.v1.WidgetSpec.sise"):
        gen.render(messages, ["example.v1.WidgetSpec"])
    monkeypatch.setattr(gen, "POINTERS", {"example.v1.WidgetSpec": ["tags"]})
    with pytest.raises(gen.ProtoError, match="wrong shape"):
        gen.render(messages, ["example.v1.WidgetSpec"])
    monkeypatch.setattr(gen, "POINTERS", {"example.v1.WidgetSpec": ["size"]})
    text = gen.render(messages, ["example.v1.WidgetSpec"])
    assert '1: ("size", INT32 | PTR),' in text and "example.v1.Widget\"" not in text


def test_a_missing_message_is_an_error(tmp_path):
    with pytest.raises(gen.ProtoError, match="message example.v1.Gadget is not in the proto files"):
        gen.render(gen.parse_proto(PROTO, "example.proto"), ["example.v1.Gadget"])
    assert gen.main([str(tmp_path)]) == 1  # no generated.proto files there


PROTO_DIR = os.environ.get("KUBESAT_PROTO_DIR", "")


@pytest.mark.skipif(not PROTO_DIR, reason="KUBESAT_PROTO_DIR (Kubernetes' v1.32 generated.proto files) is not set")
def test_the_committed_tables_are_what_the_script_writes(tmp_path):
    out = tmp_path / "protobuf_tables.py"
    assert gen.main([PROTO_DIR, "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == TABLES.read_text(encoding="utf-8")
