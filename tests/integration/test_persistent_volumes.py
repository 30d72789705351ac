"""PersistentVolumes and PersistentVolumeClaims against a real server with its local node (process runtime) and
the real kubectl: a claim of the default class provisioned and bound, a file written by one pod and read back by
the next, a pre-created hostPath volume bound to a matching claim and Released after it, protection finalizers,
Delete reclaim, a pod waiting for an unbound claim, `kubectl get pv,pvc` columns and bad input refused in
Kubernetes' words."""

from __future__ import annotations

import base64
import json
import shutil
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client, config

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, start_server, wait_for

NODE = "pv-node"

pytestmark = pytest.mark.skipif(runtime_available() is not None or not shutil.which("sh"),
                                reason=f"needs the process runtime ({runtime_available()})")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("volumes") / "data"
    server = start_server(data, node=True, extra=["--node-name", NODE, "--node-runtime", "process"])
    yield server
    server.stop()


def _json(server: Server, *args: str) -> Any:
    return json.loads(server.kubectl(*args, "-o", "json").stdout)


def _rows(server: Server, *args: str) -> list[list[str]]:
    return [line.split() for line in server.kubectl("get", *args).stdout.splitlines()]


def _claim(name: str, size: str = "100Mi", **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                                **spec}})


def _pod(name: str, claim: str, script: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"terminationGracePeriodSeconds": 1,
                                "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script],
                                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}})


def _phase(server: Server, kind: str, name: str, ns: str = "default") -> str:
    args = [kind, name] if kind == "pv" else [kind, name, "-n", ns]
    out = server.kubectl("get", *args, "-o", "jsonpath={.status.phase}", check=False)
    return out.stdout if out.returncode == 0 else "<gone>"


def _events(server: Server, ns: str, name: str) -> list[tuple[str, str]]:
    items = _json(server, "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["reason"], e["message"]) for e in items]


def test_default_class_claim_is_provisioned_and_bound(srv: Server) -> None:
    assert _rows(srv, "sc")[1][:5] == ["standard", "(default)", "kubesat.io/local", "Delete", "Immediate"]
    srv.kubectl("create", "-f", "-", input=_claim("data"))
    wait_for(lambda: _phase(srv, "pvc", "data") == "Bound", 15, "claim data Bound")
    pvc = _json(srv, "get", "pvc", "data")
    assert pvc["spec"]["storageClassName"] == "standard"  # DefaultStorageClass admission
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    notes = pvc["metadata"]["annotations"]
    assert notes["pv.kubernetes.io/bind-completed"] == "yes"
    assert notes["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert notes["volume.kubernetes.io/storage-provisioner"] == "kubesat.io/local"
    volume = pvc["spec"]["volumeName"]
    assert volume == f"pvc-{pvc['metadata']['uid']}"
    assert pvc["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "100Mi"}}
    pv = _json(srv, "get", "pv", volume)
    assert pv["spec"]["claimRef"]["name"] == "data" and pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
    assert pv["spec"]["hostPath"] == {"path": f"volumes/{volume}", "type": "DirectoryOrCreate"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "kubesat.io/local"
    assert pv["status"]["phase"] == "Bound"
    assert ("ProvisioningSucceeded", f"Successfully provisioned volume {volume} using kubesat.io/local") \
        in _events(srv, "default", "data")
    rows = _rows(srv, "pv,pvc")
    assert rows[0] == ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS", "CLAIM",
                       "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"]
    assert rows[1][:8] == [f"persistentvolume/{volume}", "100Mi", "RWO", "Delete", "Bound", "default/data",
                           "standard", "<unset>"]
    header = next(r for r in rows[2:] if r and r[0] == "NAME")
    assert header == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
                      "VOLUMEATTRIBUTESCLASS", "AGE"]
    claim_row = next(r for r in rows if r and r[0] == "persistentvolumeclaim/data")
    assert claim_row[:7] == ["persistentvolumeclaim/data", "Bound", volume, "100Mi", "RWO", "standard", "<unset>"]


def test_a_file_outlives_its_pod(srv: Server) -> None:
    srv.kubectl("create", "-f", "-", input=_claim("shared"))
    srv.kubectl("create", "-f", "-", input=_pod("writer", "shared", "echo kept > /data/note && sleep 3600"))
    wait_for(lambda: _phase(srv, "pod", "writer") == "Running", 30, "writer Running")
    wait_for(lambda: srv.kubectl("exec", "writer", "--", "cat", "/data/note", check=False).stdout == "kept\n",
             15, "the note written")
    # The claim is in use: deleting it waits for the pod (pvc-protection).
    srv.kubectl("delete", "pvc", "shared", "--wait=false")
    assert _rows(srv, "pvc", "shared")[1][1] == "Terminating"
    srv.kubectl("delete", "pod", "writer", "--grace-period=1")
    wait_for(lambda: _phase(srv, "pvc", "shared") == "<gone>", 15, "claim shared gone once unused")


def test_second_pod_reads_what_the_first_wrote(srv: Server) -> None:
    srv.kubectl("create", "-f", "-", input=_claim("keep"))
    srv.kubectl("create", "-f", "-", input=_pod("first", "keep", "echo hello > /data/greeting && sleep 3600"))
    wait_for(lambda: srv.kubectl("exec", "first", "--", "cat", "/data/greeting", check=False).stdout == "hello\n",
             30, "first pod wrote")
    srv.kubectl("delete", "pod", "first", "--grace-period=1")
    srv.kubectl("create", "-f", "-", input=_pod("second", "keep", "cat /data/greeting && sleep 3600"))
    wait_for(lambda: srv.kubectl("logs", "second", check=False).stdout == "hello\n", 30, "second pod read it")
    volume = _json(srv, "get", "pvc", "keep")["spec"]["volumeName"]
    assert (srv.data_dir / "node" / "volumes" / volume / "greeting").read_text() == "hello\n"
    srv.kubectl("delete", "pod", "second", "--grace-period=1")
    srv.kubectl("delete", "pvc", "keep")
    # reclaimPolicy Delete: the provisioned volume goes with its claim.
    wait_for(lambda: _phase(srv, "pv", volume) == "<gone>", 15, "provisioned volume deleted")


def test_precreated_host_path_volume_is_bound_then_released(srv: Server, tmp_path: Any) -> None:
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "manual-1", "labels": {"tier": "a"}},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                   "storageClassName": "manual", "hostPath": {"path": str(tmp_path)}}}
    srv.kubectl("create", "-f", "-", input=json.dumps(pv))
    wait_for(lambda: _phase(srv, "pv", "manual-1") == "Available", 15, "manual-1 Available")
    created = _json(srv, "get", "pv", "manual-1")
    assert created["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert created["spec"]["volumeMode"] == "Filesystem" and created["spec"]["hostPath"]["type"] == ""
    srv.kubectl("create", "-f", "-", input=_claim("too-big", "2Gi", storageClassName="manual"))
    srv.kubectl("create", "-f", "-", input=_claim("fits", "500Mi", storageClassName="manual",
                                                 selector={"matchLabels": {"tier": "a"}}))
    wait_for(lambda: _phase(srv, "pvc", "fits") == "Bound", 15, "claim fits Bound")
    assert _rows(srv, "pvc", "fits")[1][:6] == ["fits", "Bound", "manual-1", "1Gi", "RWO,ROX", "manual"]
    assert _phase(srv, "pvc", "too-big") == "Pending"
    assert _rows(srv, "pv", "manual-1")[1][:7] == ["manual-1", "1Gi", "RWO,ROX", "Retain", "Bound", "default/fits",
                                                   "manual"]
    assert ("ExternalProvisioning" not in {r for r, _ in _events(srv, "default", "too-big")})
    srv.kubectl("delete", "pvc", "fits")
    wait_for(lambda: _phase(srv, "pv", "manual-1") == "Released", 15, "manual-1 Released")
    srv.kubectl("delete", "pvc", "too-big")


def test_pod_waits_for_an_unbound_claim(srv: Server) -> None:
    srv.kubectl("create", "-f", "-", input=_claim("nobody", storageClassName=""))
    srv.kubectl("create", "-f", "-", input=_pod("waiter", "nobody", "sleep 3600"))
    message = ('MountVolume.SetUp failed for volume "data" : error processing PVC default/nobody: PVC default/nobody '
               'has non-bound phase ("Pending") or empty pvc.Spec.VolumeName ("")')
    wait_for(lambda: ("FailedMount", message) in _events(srv, "default", "waiter"), 20, "FailedMount event")
    assert _phase(srv, "pod", "waiter") == "Pending"
    assert ("FailedBinding", "no persistent volumes available for this claim and no storage class is set") \
        in _events(srv, "default", "nobody")
    srv.kubectl("delete", "pod", "waiter", "--grace-period=0", "--force")
    srv.kubectl("delete", "pvc", "nobody")


BAD = [
    ({"accessModes": [], "resources": {"requests": {"storage": "1Gi"}}},
     'PersistentVolumeClaim "bad" is invalid: spec.accessModes: Required value: at least 1 access mode is required'),
    ({"accessModes": ["ReadWriteOnce"]},
     'PersistentVolumeClaim "bad" is invalid: spec.resources[storage]: Required value'),
    ({"accessModes": ["ReadWriteAlways"], "resources": {"requests": {"storage": "1Gi"}}},
     'spec.accessModes: Unsupported value: "ReadWriteAlways": supported values: "ReadOnlyMany", "ReadWriteMany", '
     '"ReadWriteOnce", "ReadWriteOncePod"'),
    ({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "0"}}},
     'spec.resources[storage]: Invalid value: "0": must be greater than zero'),
]


@pytest.mark.parametrize(("spec", "message"), BAD)
def test_bad_claims_refused(srv: Server, spec: dict[str, Any], message: str) -> None:
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "bad"}, "spec": spec}
    out = srv.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
    assert out.returncode != 0 and message in out.stderr


def test_bad_volumes_refused(srv: Server) -> None:
    base = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "bad"}}
    out = srv.kubectl("create", "-f", "-", check=False, input=json.dumps(
        {**base, "spec": {"accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/srv"}}}))
    assert 'PersistentVolume "bad" is invalid: spec.capacity: Required value' in out.stderr
    out = srv.kubectl("create", "-f", "-", check=False, input=json.dumps(
        {**base, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}))
    assert 'PersistentVolume "bad" is invalid: spec: Required value: must specify a volume type' in out.stderr
    out = srv.kubectl("create", "-f", "-", check=False, input=json.dumps(
        {**base, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                          "hostPath": {"path": "/srv"}, "nfs": {"server": "a", "path": "/b"}}}))
    assert "spec.nfs: Forbidden: may not specify more than 1 volume type" in out.stderr
    out = srv.kubectl("create", "-f", "-", check=False, input=json.dumps(
        {**base, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                          "local": {"path": "/srv"}}}))
    assert "spec.nodeAffinity: Required value: Local volume requires node affinity" in out.stderr


def test_claim_spec_is_immutable(srv: Server) -> None:
    srv.kubectl("create", "-f", "-", input=_claim("fixed", storageClassName=""))
    out = srv.kubectl("patch", "pvc", "fixed", "-p", '{"spec":{"accessModes":["ReadWriteMany"]}}', check=False)
    assert out.returncode != 0
    assert ('PersistentVolumeClaim "fixed" is invalid: spec: Forbidden: spec is immutable after creation except '
            "resources.requests and volumeAttributesClassName for bound claims") in out.stderr
    out = srv.kubectl("patch", "pvc", "fixed", "-p", '{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}',
                      check=False)
    assert "spec is immutable after creation" in out.stderr  # not bound: no resize either
    srv.kubectl("delete", "pvc", "fixed")


def _ld(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (tag, length, bytes); lengths here stay under 128."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_a_protobuf_claim_is_decoded(srv: Server, tmp_path: Any) -> None:
    # PersistentVolumeClaim{metadata{name}, spec{accessModes, resources{requests{storage: 64Mi}}, storageClassName}}
    requests_entry = _ld(1, b"storage") + _ld(2, _ld(1, b"64Mi"))
    spec = _ld(1, b"ReadWriteOnce") + _ld(2, _ld(2, requests_entry)) + _ld(5, b"standard")
    raw = _ld(1, _ld(1, b"from-proto")) + _ld(2, spec)
    body = b"k8s\x00" + _ld(1, _ld(1, b"v1") + _ld(2, b"PersistentVolumeClaim")) + _ld(2, raw)
    user = yaml.safe_load(srv.kubeconfig.read_text())["users"][0]["user"]
    cert, key = tmp_path / "admin.crt", tmp_path / "admin.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    r = requests.post(f"{srv.url}/api/v1/namespaces/default/persistentvolumeclaims", data=body, timeout=30,
                      cert=(str(cert), str(key)), verify=str(srv.ca_file),
                      headers={"Content-Type": "application/vnd.kubernetes.protobuf",
                               "Accept": "application/json"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["spec"]["resources"] == {"requests": {"storage": "64Mi"}}
    assert made["spec"]["accessModes"] == ["ReadWriteOnce"] and made["status"] == {"phase": "Pending"}
    wait_for(lambda: _phase(srv, "pvc", "from-proto") == "Bound", 15, "protobuf claim Bound")
    srv.kubectl("delete", "pvc", "from-proto")


def test_the_official_client_reads_status_and_refuses_bad_input(srv: Server) -> None:
    api = client.CoreV1Api(config.new_client_from_config(str(srv.kubeconfig)))
    claim = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="typed"),
        spec=client.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteOnce"],
                                                resources=client.V1VolumeResourceRequirements(
                                                    requests={"storage": "10Mi"})))
    api.create_namespaced_persistent_volume_claim("default", claim)
    wait_for(lambda: api.read_namespaced_persistent_volume_claim_status("typed", "default").status.phase == "Bound",
             15, "typed claim Bound")
    bound = api.read_namespaced_persistent_volume_claim("typed", "default")
    volume = api.read_persistent_volume(bound.spec.volume_name)
    assert volume.spec.claim_ref.name == "typed" and volume.status.phase == "Bound"
    names = [v.metadata.name for v in api.list_persistent_volume().items]
    assert bound.spec.volume_name in names
    bad = client.V1PersistentVolume(metadata=client.V1ObjectMeta(name="nothing"),
                                    spec=client.V1PersistentVolumeSpec(capacity={"storage": "1Gi"},
                                                                       access_modes=["ReadWriteOnce"]))
    with pytest.raises(client.ApiException) as err:
        api.create_persistent_volume(bad)
    assert err.value.status == 422
    assert "spec: Required value: must specify a volume type" in json.loads(err.value.body)["message"]
    api.delete_namespaced_persistent_volume_claim("typed", "default")


def test_the_node_reads_only_its_pods_claims_and_their_volumes(srv: Server) -> None:
    node = str(srv.data_dir / "node.kubeconfig")
    srv.kubectl("create", "-f", "-", input=_claim("mine"))
    srv.kubectl("create", "-f", "-", input=_claim("theirs"))
    wait_for(lambda: _phase(srv, "pvc", "theirs") == "Bound" and _phase(srv, "pvc", "mine") == "Bound", 15,
             "claims Bound")
    srv.kubectl("create", "-f", "-", input=_pod("user", "mine", "sleep 3600"))
    wait_for(lambda: _phase(srv, "pod", "user") == "Running", 30, "user Running")
    mine = _json(srv, "get", "pvc", "mine")["spec"]["volumeName"]
    theirs = _json(srv, "get", "pvc", "theirs")["spec"]["volumeName"]
    assert srv.kubectl("get", "pvc", "mine", "-o", "name", kubeconfig=node).stdout.strip() \
        == "persistentvolumeclaim/mine"
    assert srv.kubectl("get", "pv", mine, "-o", "name", kubeconfig=node).stdout.strip() == f"persistentvolume/{mine}"
    for args in (["pvc", "theirs"], ["pv", theirs], ["pvc"]):
        out = srv.kubectl("get", *args, kubeconfig=node, check=False)
        assert out.returncode != 0 and "Forbidden" in out.stderr, out.stderr
    assert f"no relationship found between node '{NODE}' and this object" in \
        srv.kubectl("get", "pv", theirs, kubeconfig=node, check=False).stderr
    srv.kubectl("delete", "pod", "user", "--grace-period=1")
    srv.kubectl("delete", "pvc", "mine", "theirs")


def test_a_generic_ephemeral_volume_lives_and_dies_with_its_pod(srv: Server) -> None:
    body = json.loads(_pod("scratch", "unused", "echo hi > /data/x && sleep 3600"))
    body["spec"]["volumes"] = [{"name": "data", "ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Mi"}}}}}}]
    srv.kubectl("create", "-f", "-", input=json.dumps(body))
    wait_for(lambda: srv.kubectl("exec", "scratch", "--", "cat", "/data/x", check=False).stdout == "hi\n", 30,
             "the ephemeral volume written")
    claim = _json(srv, "get", "pvc", "scratch-data")
    assert claim["metadata"]["ownerReferences"][0]["name"] == "scratch"
    assert claim["spec"]["storageClassName"] == "standard" and claim["status"]["phase"] == "Bound"
    volume = claim["spec"]["volumeName"]
    srv.kubectl("delete", "pod", "scratch", "--grace-period=1")
    # The garbage collector removes the claim with its pod; Delete reclaim removes the volume.
    wait_for(lambda: _phase(srv, "pvc", "scratch-data") == "<gone>", 30, "ephemeral claim gone")
    wait_for(lambda: _phase(srv, "pv", volume) == "<gone>", 15, "ephemeral volume gone")
