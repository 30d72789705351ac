"""Volume planning and payloads against the seed pods and the kubelet's rules (modes, keys, optional, downward API)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesat.agent.atomic import FileProjection
from kubesat.agent.fieldpath import format_map, go_quote, metadata_field, pod_field, resource_field
from kubesat.agent.volumes import Fetched, TokenRequestSpec, payloads, plan

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
UID = "0b7c3a2e-1111-2222-3333-444455556666"
CA = {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}}


def seed(name: str) -> dict[str, Any]:
    pod = yaml.safe_load((SEEDS / name).read_text())
    pod["metadata"].update(namespace="default", uid=UID)
    return pod


def kube_api_access_pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns1", "uid": UID},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "c"}], **spec, "volumes": [
                {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                        "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]}}


def test_automount_off_pod_needs_nothing() -> None:
    pod = seed("000-pod-automount-off.yaml")
    p = plan(pod)
    assert (p.configmaps, p.secrets, p.tokens) == ([], [], [])
    assert payloads(pod, Fetched()) == {}


def test_fixed_projected_pod_gets_its_three_sources() -> None:
    pod = seed("000-pod-projected-token-fixed.yaml")
    p = plan(pod)
    assert p.configmaps == ["kube-root-ca.crt"]
    assert p.secrets == []
    [tr] = p.tokens
    assert tr == TokenRequestSpec("default", "foo-sa", (), 3607, "foo-pod", UID)
    assert tr.body() == {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
        "expirationSeconds": 3607, "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "foo-pod",
                                                      "uid": UID}}}
    res = payloads(pod, Fetched(configmaps={"kube-root-ca.crt": CA}, tokens={tr.key: "tok.en.x"}))
    vol = res["serviceaccount-token"]
    assert vol.error is None and vol.kind == "files"
    assert vol.plugin_dir == "kubernetes.io~projected"
    assert vol.rel_dir == "volumes/kubernetes.io~projected/serviceaccount-token"
    assert vol.files == {"token": FileProjection(b"tok.en.x", 0o444),
                         "ca.crt": FileProjection(b"-----BEGIN CERTIFICATE-----\n", 0o444),
                         "namespace": FileProjection(b"default", 0o444)}


def test_default_token_volume_modes_and_kube_root_ca() -> None:
    pod = kube_api_access_pod()
    p = plan(pod)
    assert p.configmaps == ["kube-root-ca.crt"]
    [tr] = p.tokens
    vol = payloads(pod, Fetched(configmaps={"kube-root-ca.crt": CA}, tokens={tr.key: "T"}))["kube-api-access-abcde"]
    assert {k: (f.data, oct(f.mode)) for k, f in vol.files.items()} == {
        "token": (b"T", "0o644"), "ca.crt": (CA["data"]["ca.crt"].encode(), "0o644"), "namespace": (b"ns1", "0o644")}


def test_token_0600_with_common_run_as_user_and_0640_with_fs_group() -> None:
    pod = kube_api_access_pod(securityContext={"runAsUser": 1000})
    [tr] = plan(pod).tokens
    fetched = Fetched(configmaps={"kube-root-ca.crt": CA}, tokens={tr.key: "T"})
    vol = payloads(pod, fetched)["kube-api-access-abcde"]
    assert vol.files["token"] == FileProjection(b"T", 0o600, 1000)
    assert vol.files["ca.crt"].mode == 0o644 and vol.gid is None
    pod = kube_api_access_pod(securityContext={"fsGroup": 2000})
    vol = payloads(pod, fetched)["kube-api-access-abcde"]
    assert vol.files["token"] == FileProjection(b"T", 0o640, None)
    assert vol.files["namespace"].mode == 0o644 and vol.gid == 2000
    # Containers disagreeing on runAsUser: no owner, defaultMode.
    pod = kube_api_access_pod(containers=[{"name": "a", "securityContext": {"runAsUser": 1}},
                                          {"name": "b", "securityContext": {"runAsUser": 2}}])
    assert payloads(pod, fetched)["kube-api-access-abcde"].files["token"] == FileProjection(b"T", 0o644)


def test_audience_and_default_expiration() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {"serviceAccountName": "sa", "volumes": [
        {"name": "v", "projected": {"sources": [{"serviceAccountToken": {"audience": "vault", "path": "t"}}]}}]}}
    [tr] = plan(pod).tokens
    assert tr.audiences == ("vault",) and tr.expiration_seconds == 3600
    assert tr.body()["spec"]["audiences"] == ["vault"]


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_secret_and_configmap_volumes_items_modes_binary() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {"volumes": [
        {"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400,
                                 "items": [{"key": "user", "path": "u/name"},
                                           {"key": "pw", "path": "pw", "mode": 0o440}]}},
        {"name": "s-all", "secret": {"secretName": "creds"}},
        {"name": "c", "configMap": {"name": "cfg"}}]}}
    p = plan(pod)
    assert (p.configmaps, p.secrets) == (["cfg"], ["creds"])
    fetched = Fetched(secrets={"creds": {"data": {"user": b64("bob"), "pw": b64("hunter2")}}},
                      configmaps={"cfg": {"data": {"a": "1"}, "binaryData": {"b": b64("\x00\x01")}}})
    res = payloads(pod, fetched)
    assert res["s"].plugin_dir == "kubernetes.io~secret"
    assert res["s"].files == {"u/name": FileProjection(b"bob", 0o400), "pw": FileProjection(b"hunter2", 0o440)}
    assert res["s-all"].files == {"user": FileProjection(b"bob", 0o644), "pw": FileProjection(b"hunter2", 0o644)}
    assert res["c"].plugin_dir == "kubernetes.io~configmap"
    assert res["c"].files == {"a": FileProjection(b"1", 0o644), "b": FileProjection(b"\x00\x01", 0o644)}


def test_missing_objects_and_keys_in_the_kubelets_words() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {"volumes": [
        {"name": "c", "configMap": {"name": "nope"}},
        {"name": "s", "secret": {"secretName": "gone"}},
        {"name": "ck", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "k"}]}},
        {"name": "sk", "secret": {"secretName": "creds", "items": [{"key": "k", "path": "k"}]}},
        {"name": "opt", "configMap": {"name": "nope", "optional": True}},
        {"name": "optkey", "configMap": {"name": "cfg", "optional": True, "items": [{"key": "k", "path": "k"}]}},
        {"name": "proj", "projected": {"sources": [{"configMap": {"name": "nope"}}, {"secret": {"name": "gone"}}]}},
    ]}}
    res = payloads(pod, Fetched(configmaps={"nope": None, "cfg": {"data": {}}}, secrets={"creds": {"data": {}}}))
    assert res["c"].error == 'configmap "nope" not found'
    assert res["c"].event_message == 'MountVolume.SetUp failed for volume "c" : configmap "nope" not found'
    assert res["s"].error == 'secret "gone" not found'
    assert res["ck"].error == "configmap references non-existent config key: k"
    assert res["sk"].error == "references non-existent secret key: k"
    assert res["opt"].error is None and res["opt"].files == {}
    assert res["optkey"].error is None and res["optkey"].files == {}
    assert res["proj"].error == '[configmap "nope" not found, secret "gone" not found]'


def test_downward_api_volume_fields() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u-1",
                        "labels": {"zeta": "z", "app": "web"}, "annotations": {"note": 'say "hi"\n\tbye'}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {
               "requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}],
               "volumes": [{"name": "info", "downwardAPI": {"defaultMode": 0o600, "items": [
                   {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                   {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
                   {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}, "mode": 0o644},
                   {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                   {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                   {"path": "cpu_m", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu",
                                                          "divisor": "1m"}},
                   {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu"}},
                   {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                        "divisor": "1Mi"}},
                   {"path": "cpu_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
               ]}}]}}
    node = {"status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}}
    vol = payloads(pod, Fetched(), node)["info"]
    assert vol.error is None and vol.plugin_dir == "kubernetes.io~downward-api"
    got = {k: f.data.decode() for k, f in vol.files.items()}
    assert got == {"name": "p", "uid": "u-1", "labels": 'app="web"\nzeta="z"',
                   "annotations": 'note="say \\"hi\\"\\n\\tbye"', "app": "web",
                   "cpu_m": "250", "cpu": "1", "mem": "128", "cpu_limit": "4"}
    assert vol.files["labels"].mode == 0o644 and vol.files["name"].mode == 0o600


def test_downward_api_unsupported_field_in_volume() -> None:
    # The kubelet's volume plugin only projects metadata fields (the API refuses others for volumes).
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "volumes": [{"name": "d", "downwardAPI": {
        "items": [{"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}]}}
    assert payloads(pod, Fetched())["d"].error == "unsupported fieldPath: spec.nodeName"


def test_empty_dir_host_path_trust_bundle_and_others() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {"volumes": [
        {"name": "scratch", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory"}},
        {"name": "host", "hostPath": {"path": "/var/log"}},
        {"name": "pvc", "persistentVolumeClaim": {"claimName": "x"}},
        {"name": "ctb", "projected": {"sources": [{"clusterTrustBundle": {"signerName": "a/b", "path": "b.pem"}}]}},
    ]}}
    res = payloads(pod, Fetched())
    assert (res["scratch"].kind, res["scratch"].plugin_dir, res["mem"].medium) == (
        "dir", "kubernetes.io~empty-dir", "Memory")
    assert (res["host"].kind, res["host"].host_path, res["host"].rel_dir) == ("hostPath", "/var/log", "")
    # A claim the agent could not resolve (agent/claims.py) waits with the kubelet's reason.
    assert (res["pvc"].kind, res["pvc"].error) == ("hostPath", 'persistentvolumeclaim "x" not found')
    assert res["ctb"].unsupported == ["clusterTrustBundle"] and res["ctb"].files == {} and res["ctb"].error is None


def test_invalid_item_path_is_an_error() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"volumes": [{"name": "c", "configMap": {
        "name": "cfg", "items": [{"key": "a", "path": "../escape"}]}}]}}
    res = payloads(pod, Fetched(configmaps={"cfg": {"data": {"a": "1"}}}))
    assert res["c"].error == "invalid path: must not contain '..': ../escape"


def test_missing_token_is_an_error() -> None:
    pod = kube_api_access_pod()
    vol = payloads(pod, Fetched(configmaps={"kube-root-ca.crt": CA}))["kube-api-access-abcde"]
    assert vol.error is not None and vol.error.startswith("failed to fetch token")


@pytest.mark.parametrize(("s", "q"), [
    ("plain", '"plain"'), ('a"b\\c', '"a\\"b\\\\c"'), ("\x1b\x7f", '"\\x1b\\x7f"'),
    ("é ü", '"é ü"'), ("\u00a0\u2028", '"\\u00a0\\u2028"'), ("\U0001f600", '"\U0001f600"'),
    ("\a\b\f\v", '"\\a\\b\\f\\v"'),
])
def test_go_quote(s: str, q: str) -> None:
    assert go_quote(s) == q


def test_format_map_and_field_helpers() -> None:
    assert format_map({}) == ""
    assert format_map({"b": "2", "a": "1"}) == 'a="1"\nb="2"'
    pod = {"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"nodeName": "n1", "serviceAccountName": "sa"},
           "status": {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}], "hostIP": "10.1.1.1"}}
    assert metadata_field(pod, "metadata.labels['missing']") == ""
    assert pod_field(pod, "spec.nodeName") == "n1"
    assert pod_field(pod, "spec.serviceAccountName") == "sa"
    assert pod_field(pod, "status.podIPs") == "10.0.0.5,fd00::5"
    assert pod_field(pod, "status.hostIP") == "10.1.1.1"
    assert pod_field(pod, "metadata.name") == "p"
    with pytest.raises(ValueError, match='fieldPath "metadata.name\\[\'x\'\\]" does not support subscript'):
        metadata_field(pod, "metadata.name['x']")
    with pytest.raises(ValueError, match="container nope not found"):
        resource_field(pod, {"containerName": "nope", "resource": "limits.cpu"}, None)
