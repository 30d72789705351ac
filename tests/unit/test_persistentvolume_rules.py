"""PersistentVolume and PersistentVolumeClaim strategies: defaults, validation messages, update rules, protection
finalizers and table cells; the agent's claim resolution; the Node authorizer's pod -> pvc -> pv path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubesat.agent import claims, volumes
from kubesat.auth.node import PV, PVC, NodeGraph
from kubesat.errors import FieldError
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.persistentvolume import access_modes_text, validate_claim_update
from kubesat.registry.strategies import STRATEGIES

PV_STRATEGY = STRATEGIES[("v1", "PersistentVolume")]
PVC_STRATEGY = STRATEGIES[("v1", "PersistentVolumeClaim")]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def texts(errs: list[FieldError]) -> list[str]:
    return [e.text() for e in errs]


def volume(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                            "hostPath": {"path": "/srv/a"}}
    base.update(spec)
    obj = {"metadata": {"name": "pv1", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": base}
    PV_STRATEGY.prepare_for_create(obj)
    return obj


def claim(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    base.update(spec)
    obj = {"metadata": {"name": "c", "namespace": "ns"}, "spec": base}
    PVC_STRATEGY.prepare_for_create(obj)
    return obj


def test_volume_defaults_status_and_finalizer() -> None:
    pv = volume()
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"
    assert pv["spec"]["hostPath"]["type"] == ""
    assert pv["status"] == {"phase": "Pending", "lastPhaseTransitionTime": "2026-01-01T00:00:00Z"}
    assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    assert PV_STRATEGY.validate(pv) == []


def test_claim_defaults_status_and_finalizer() -> None:
    pvc = claim()
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["status"] == {"phase": "Pending"}
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert PVC_STRATEGY.validate(pvc) == []


def test_volume_validation_messages() -> None:
    assert texts(PV_STRATEGY.validate(volume(capacity={}))) == ["spec.capacity: Required value"]
    assert texts(PV_STRATEGY.validate(volume(accessModes=[]))) == ["spec.accessModes: Required value"]
    assert texts(PV_STRATEGY.validate(volume(accessModes=["ReadWriteOncePod", "ReadWriteOnce"]))) == [
        "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"]
    assert texts(PV_STRATEGY.validate(volume(hostPath=None))) == ["spec: Required value: must specify a volume type"]
    assert texts(PV_STRATEGY.validate(volume(nfs={"server": "s", "path": "/p"}))) == [
        "spec.nfs: Forbidden: may not specify more than 1 volume type"]
    assert texts(PV_STRATEGY.validate(volume(persistentVolumeReclaimPolicy="Keep"))) == [
        'spec.persistentVolumeReclaimPolicy: Unsupported value: "Keep": supported values: "Delete", "Recycle", '
        '"Retain"']
    assert texts(PV_STRATEGY.validate(volume(hostPath={"path": "/a/../b"}))) == [
        "spec.hostPath.path: Invalid value: \"/a/../b\": must not contain '..'"]
    assert texts(PV_STRATEGY.validate(volume(capacity={"storage": "-1Gi"}))) == [
        'spec.capacity[storage]: Invalid value: "-1Gi": must be greater than zero']


def test_claim_validation_messages() -> None:
    assert texts(PVC_STRATEGY.validate(claim(accessModes=None))) == [
        "spec.accessModes: Required value: at least 1 access mode is required"]
    assert texts(PVC_STRATEGY.validate(claim(resources={}))) == ["spec.resources[storage]: Required value"]
    assert texts(PVC_STRATEGY.validate(claim(volumeMode="Raw"))) == [
        'spec.volumeMode: Unsupported value: "Raw": supported values: "Block", "Filesystem"']
    assert texts(PVC_STRATEGY.validate(claim(storageClassName="Bad_Name")))[0].startswith(
        'spec.storageClassName: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')


def test_claim_update_rules() -> None:
    old = claim(storageClassName="standard")
    immutable = ("spec: Forbidden: spec is immutable after creation except resources.requests and "
                 "volumeAttributesClassName for bound claims")
    changed = claim(storageClassName="standard", accessModes=["ReadWriteMany"])
    assert texts(validate_claim_update(changed, old)) == [immutable]
    # The binder sets volumeName once; a default class may be set on a claim that had none.
    named = claim(storageClassName="standard", volumeName="pv1")
    assert validate_claim_update(named, old) == []
    assert validate_claim_update(claim(storageClassName="late"), claim()) == []
    assert texts(validate_claim_update(claim(storageClassName="other", volumeName="pv1"), named)) == [immutable]
    # An unbound claim cannot be resized; a bound one can grow, and shrink only while above its capacity.
    bigger = claim(storageClassName="standard", resources={"requests": {"storage": "2Gi"}})
    assert texts(validate_claim_update(bigger, old)) == [immutable]
    bound_old = claim(storageClassName="standard", volumeName="pv1")
    bound_old["status"] = {"phase": "Bound", "capacity": {"storage": "1Gi"}}
    grown = claim(storageClassName="standard", volumeName="pv1", resources={"requests": {"storage": "2Gi"}})
    grown["status"] = bound_old["status"]
    assert validate_claim_update(grown, bound_old) == []
    shrunk = claim(storageClassName="standard", volumeName="pv1", resources={"requests": {"storage": "512Mi"}})
    shrunk["status"] = bound_old["status"]
    assert texts(validate_claim_update(shrunk, bound_old)) == [
        "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]


def test_volume_source_is_immutable() -> None:
    old = volume()
    new = volume(hostPath={"path": "/srv/b"})
    assert "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation" \
        in texts(PV_STRATEGY.validate_update(new, old))
    bound = volume(claimRef={"namespace": "ns", "name": "c"})
    assert PV_STRATEGY.validate_update(bound, old) == []


def test_status_is_kept_apart_from_spec() -> None:
    old = claim()
    old["status"] = {"phase": "Bound"}
    new = claim()
    new["status"] = {"phase": "Lost"}
    PVC_STRATEGY.prepare_for_update(new, old)
    assert new["status"] == {"phase": "Bound"}


def test_table_cells() -> None:
    pv = volume(storageClassName="manual", claimRef={"namespace": "ns", "name": "c"},
                accessModes=["ReadOnlyMany", "ReadWriteOnce"])
    pv["status"] = {"phase": "Bound"}
    cells = PV_STRATEGY.table_cells(pv, NOW)
    assert cells[:9] == ["pv1", "1Gi", "RWO,ROX", "Retain", "Bound", "ns/c", "manual", "<unset>", ""]
    assert [c["name"] for c in PV_STRATEGY.table_columns()] == [
        "Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
        "VolumeAttributesClass", "Reason", "Age", "VolumeMode"]
    pvc = claim(storageClassName="manual")
    assert PVC_STRATEGY.table_cells(pvc, NOW)[:7] == ["c", "Pending", "", "", "", "manual", "<unset>"]
    pvc["spec"]["volumeName"] = "pv1"
    pvc["status"] = {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}
    pvc["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert PVC_STRATEGY.table_cells(pvc, NOW)[:5] == ["c", "Terminating", "pv1", "1Gi", "RWO"]
    assert access_modes_text(["ReadWriteOncePod", "ReadWriteMany"]) == "RWX,RWOP"


def test_served_with_short_names_and_status() -> None:
    pvs = builtin_kind("v1", "PersistentVolume")
    pvcs = builtin_kind("v1", "PersistentVolumeClaim")
    assert not pvs.namespaced and pvs.short_names == ("pv",)
    assert pvcs.namespaced and pvcs.short_names == ("pvc",)
    assert [s.name for s in pvs.subresources] == ["status"] == [s.name for s in pvcs.subresources]


# ------------------------------------------------------------------------------------------ the agent's side
def provisioned(name: str = "pvc-1", path: str = "volumes/pvc-1") -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": "kubesat.io/local"}},
            "spec": {"hostPath": {"path": path, "type": "DirectoryOrCreate"}}}


def test_claim_problems_in_the_kubelet_words() -> None:
    assert claims.claim_problem("ns", "c", None) == 'persistentvolumeclaim "c" not found'
    pending = {"spec": {}, "status": {"phase": "Pending"}}
    assert claims.claim_problem("ns", "c", pending) == (
        'error processing PVC ns/c: PVC ns/c has non-bound phase ("Pending") or empty pvc.Spec.VolumeName ("")')
    assert claims.claim_problem("ns", "c", {"spec": {"volumeName": "v"}, "status": {"phase": "Bound"}}) == ""


def test_only_provisioned_volumes_resolve_under_the_root(tmp_path: Path) -> None:
    assert claims.volume_dir(provisioned(), tmp_path).path == str(tmp_path / "volumes" / "pvc-1")
    escape = claims.volume_dir(provisioned(path="volumes/../../etc"), tmp_path)
    assert escape.path == "" and "must name one directory under the node's volumes" in escape.error
    relative = claims.volume_dir({"metadata": {"name": "x"}, "spec": {"hostPath": {"path": "volumes/x"}}}, tmp_path)
    assert relative.path == "" and "must be an absolute path without '..'" in relative.error
    # An absolute path is a host path, whatever the annotation says: mounted only under --allow-host-path.
    host = claims.volume_dir(provisioned(path="/etc"), tmp_path)
    assert (host.path, host.on_host) == ("/etc", True)
    other = claims.volume_dir({"metadata": {"name": "n"}, "spec": {"nfs": {"server": "s", "path": "/"}}}, tmp_path)
    assert other.path == "" and "is not a volume this node provides" in other.error


def test_a_claim_volume_is_planned_and_mounted_from_its_directory() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"},
           "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]}}
    assert volumes.plan(pod).claims == ["c"]
    ok = volumes.payloads(pod, volumes.Fetched(claims={"c": claims.ClaimVolume(path="/r/volumes/pvc-1")}))
    assert ok["data"].kind == "hostPath" and ok["data"].host_path == "/r/volumes/pvc-1" and ok["data"].error is None
    waiting = volumes.payloads(pod, volumes.Fetched(claims={"c": claims.ClaimVolume(error="PVC is not bound")}))
    assert waiting["data"].event_message == 'MountVolume.SetUp failed for volume "data" : PVC is not bound'


def test_a_node_reaches_a_volume_through_its_pods_claim() -> None:
    graph = NodeGraph()
    graph.put_pod({"metadata": {"name": "p", "namespace": "ns"},
                   "spec": {"nodeName": "n1", "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}})
    assert graph.has_path("n1", PVC, "ns", "c")
    assert not graph.has_path("n1", PV, "", "pv1")  # the claim is not bound yet
    graph.put_claim({"metadata": {"name": "c", "namespace": "ns"}, "spec": {"volumeName": "pv1"}})
    assert graph.has_path("n1", PV, "", "pv1")
    assert not graph.has_path("n2", PV, "", "pv1")
    graph.put_claim({"metadata": {"name": "other", "namespace": "ns"}, "spec": {"volumeName": "pv2"}})
    assert not graph.has_path("n1", PV, "", "pv2")  # no pod of n1 uses that claim
    graph.delete_claim("ns", "c")
    assert not graph.has_path("n1", PV, "", "pv1")
    graph.put_claim({"metadata": {"name": "c", "namespace": "ns"}, "spec": {"volumeName": "pv1"}})
    graph.delete_pod("ns", "p")
    assert not graph.has_path("n1", PV, "", "pv1")


def test_an_ephemeral_volume_uses_the_pods_own_claim() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "pod-uid"},
           "spec": {"volumes": [{"name": "tmp", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}}
    assert volumes.plan(pod).claims == ["p-tmp"]
    found = volumes.payloads(pod, volumes.Fetched(claims={"p-tmp": claims.ClaimVolume(path="/r/volumes/v")}))
    assert found["tmp"].host_path == "/r/volumes/v"
    mine = {"metadata": {"ownerReferences": [{"uid": "pod-uid", "controller": True}]}}
    assert claims.not_owner(pod, "p-tmp", mine) == ""
    assert claims.not_owner(pod, "p-tmp", {"metadata": {}}) == \
        "PVC ns/p-tmp was not created for pod ns/p (pod is not owner)"
