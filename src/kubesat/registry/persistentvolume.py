"""core/v1 PersistentVolume and PersistentVolumeClaim: Kubernetes' defaults, validation messages, the
storage-object-in-use protection finalizers its admission adds, status kept apart from spec, and the
columns `kubectl get pv,pvc` prints."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from kubesat.apimachinery.duration import age
from kubesat.apimachinery.quantity import parse_quantity
from kubesat.errors import FieldError, forbidden_field, invalid_value, not_supported, required
from kubesat.registry.meta import age_column, as_dict, column, dns1123_subdomain, field_doc, name_column
from kubesat.registry.podtemplate import validate_label_selector
from kubesat.registry.strategy import Strategy

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
# The order (and short names) kubectl prints access modes in, whatever order the object lists them.
ACCESS_MODE_SHORT = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                     ("ReadWriteOncePod", "RWOP"))
RECLAIM_POLICIES = ["Delete", "Recycle", "Retain"]
VOLUME_MODES = ["Block", "Filesystem"]
HOST_PATH_TYPES = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate",
                   "Socket"]
# The volume sources of a PersistentVolumeSource, in the order Kubernetes' validation visits them.
VOLUME_SOURCES = ("gcePersistentDisk", "awsElasticBlockStore", "hostPath", "glusterfs", "flexVolume", "nfs", "rbd",
                  "quobyte", "cinder", "cephfs", "fc", "flocker", "azureFile", "vsphereVolume", "azureDisk",
                  "photonPersistentDisk", "portworxVolume", "scaleIO", "local", "storageos", "csi", "iscsi")

PV_DEF = "io.k8s.api.core.v1.PersistentVolumeSpec"
PV_STATUS_DEF = "io.k8s.api.core.v1.PersistentVolumeStatus"
PVC_DEF = "io.k8s.api.core.v1.PersistentVolumeClaimSpec"
PVC_STATUS_DEF = "io.k8s.api.core.v1.PersistentVolumeClaimStatus"


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def storage_of(resources: Any) -> Decimal | None:
    """The `storage` amount of a ResourceList (capacity or requests), or None when absent or not a quantity."""
    return parse_quantity(as_dict(resources).get("storage"))


def claim_class(pvc: dict[str, Any]) -> str:
    """The class a claim asks for: the beta annotation over spec.storageClassName (GetPersistentVolumeClaimClass)."""
    beta = as_dict(as_dict(pvc.get("metadata")).get("annotations")).get(BETA_CLASS_ANNOTATION)
    if beta is not None:
        return str(beta)
    return str(as_dict(pvc.get("spec")).get("storageClassName") or "")


def volume_class(pv: dict[str, Any]) -> str:
    beta = as_dict(as_dict(pv.get("metadata")).get("annotations")).get(BETA_CLASS_ANNOTATION)
    if beta is not None:
        return str(beta)
    return str(as_dict(pv.get("spec")).get("storageClassName") or "")


def access_modes_text(modes: Any) -> str:
    """GetAccessModesAsString: `RWO,ROX,...` in Kubernetes' fixed order."""
    have = set(_l(modes))
    return ",".join(short for mode, short in ACCESS_MODE_SHORT if mode in have)


def _add_finalizer(obj: dict[str, Any], finalizer: str) -> None:
    meta = obj.setdefault("metadata", {})
    finalizers = meta.get("finalizers")
    if not isinstance(finalizers, list):
        finalizers = meta["finalizers"] = []
    if finalizer not in finalizers:
        finalizers.append(finalizer)


# ------------------------------------------------------------------------------------------ validation
def validate_access_modes(modes: Any, path: str, required_detail: str) -> list[FieldError]:
    errs: list[FieldError] = []
    modes = _l(modes)
    if not modes:
        errs.append(required(path, required_detail))
    rwop = other = False
    for mode in modes:
        if mode not in ACCESS_MODES:
            errs.append(not_supported(path, mode, ACCESS_MODES))
        elif mode == "ReadWriteOncePod":
            rwop = True
        else:
            other = True
    if rwop and other:
        errs.append(forbidden_field(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _validate_quantity(value: Any, path: str) -> list[FieldError]:
    amount = parse_quantity(value)
    if amount is None:
        return [invalid_value(path, value, "quantities must match the regular expression "
                                           "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    if amount <= 0:
        return [invalid_value(path, value, "must be greater than zero")]
    return []


def _validate_class_name(name: Any, path: str) -> list[FieldError]:
    if not name:
        return []
    return [invalid_value(path, name, msg) for msg in dns1123_subdomain(str(name))]


def _validate_volume_mode(spec: dict[str, Any], path: str) -> list[FieldError]:
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        return [not_supported(path, mode, VOLUME_MODES)]
    return []


def _validate_path(value: Any, path: str) -> list[FieldError]:
    if not value:
        return [required(path)]
    if ".." in str(value).split("/"):
        return [invalid_value(path, value, "must not contain '..'")]
    return []


def _validate_source(spec: dict[str, Any]) -> list[FieldError]:
    present = [k for k in VOLUME_SOURCES if spec.get(k) is not None]
    if not present:
        return [required("spec", "must specify a volume type")]
    errs = [forbidden_field(f"spec.{k}", "may not specify more than 1 volume type") for k in present[1:]]
    if "hostPath" in present:
        host = as_dict(spec.get("hostPath"))
        errs += _validate_path(host.get("path"), "spec.hostPath.path")
        kind = host.get("type")
        if kind is not None and kind not in HOST_PATH_TYPES:
            errs.append(not_supported("spec.hostPath.type", kind, HOST_PATH_TYPES))
    if "local" in present:
        errs += _validate_path(as_dict(spec.get("local")).get("path"), "spec.local.path")
        if not spec.get("nodeAffinity"):
            errs.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    return errs


def validate_volume(pv: dict[str, Any]) -> list[FieldError]:
    spec = as_dict(pv.get("spec"))
    errs = validate_access_modes(spec.get("accessModes"), "spec.accessModes", "")
    capacity = spec.get("capacity")
    if not capacity:
        errs.append(required("spec.capacity"))
    else:
        for key, value in as_dict(capacity).items():
            if key != "storage":
                errs.append(not_supported("spec.capacity", key, ["storage"]))
            else:
                errs += _validate_quantity(value, "spec.capacity[storage]")
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy not in RECLAIM_POLICIES:
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES))
    errs += _validate_class_name(spec.get("storageClassName"), "spec.storageClassName")
    errs += _validate_volume_mode(spec, "spec.volumeMode")
    errs += _validate_source(spec)
    return errs


def validate_claim(pvc: dict[str, Any]) -> list[FieldError]:
    spec = as_dict(pvc.get("spec"))
    errs = validate_access_modes(spec.get("accessModes"), "spec.accessModes", "at least 1 access mode is required")
    requests = as_dict(as_dict(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        errs.append(required("spec.resources[storage]"))
    else:
        errs += _validate_quantity(requests["storage"], "spec.resources[storage]")
    if spec.get("selector") is not None:
        errs += validate_label_selector(spec["selector"], "spec.selector")
    errs += _validate_class_name(spec.get("storageClassName"), "spec.storageClassName")
    errs += _validate_volume_mode(spec, "spec.volumeMode")
    return errs


def _without(spec: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in keys}


def validate_claim_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """What may change in a claim's spec: volumeName once (the binder sets it), storageClassName from unset
    (a default class given later), the storage request of a bound claim, and volumeAttributesClassName."""
    errs = validate_claim(new)
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    loose = ["volumeAttributesClassName"]
    if not old_spec.get("volumeName"):
        loose.append("volumeName")
    if old_spec.get("storageClassName") is None:
        loose.append("storageClassName")
    new_cmp, old_cmp = _without(new_spec, *loose), _without(old_spec, *loose)
    if as_dict(new.get("status")).get("phase") == "Bound":
        new_cmp["resources"] = _with_request(new_spec, old_spec)
    if new_cmp != old_cmp:
        errs.append(forbidden_field("spec", "spec is immutable after creation except resources.requests and "
                                            "volumeAttributesClassName for bound claims"))
    old_size = storage_of(as_dict(old_spec.get("resources")).get("requests"))
    new_size = storage_of(as_dict(new_spec.get("resources")).get("requests"))
    status_size = storage_of(as_dict(old.get("status")).get("capacity")) or Decimal(0)
    # Shrinking is allowed only back towards what the volume has (recovery from a failed expansion).
    if old_size is not None and new_size is not None and new_size < old_size and new_size <= status_size:
        errs.append(forbidden_field("spec.resources.requests.storage", "field can not be less than status.capacity"))
    return errs


def _with_request(new_spec: dict[str, Any], old_spec: dict[str, Any]) -> dict[str, Any]:
    """The new spec's resources with the old storage request, so that only other changes compare unequal."""
    resources = dict(as_dict(new_spec.get("resources")))
    requests = dict(as_dict(resources.get("requests")))
    old_storage = as_dict(as_dict(old_spec.get("resources")).get("requests")).get("storage")
    if old_storage is not None:
        requests["storage"] = old_storage
    resources["requests"] = requests
    return resources


def validate_volume_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_volume(new)
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    new_source = {k: new_spec.get(k) for k in VOLUME_SOURCES if new_spec.get(k) is not None}
    old_source = {k: old_spec.get(k) for k in VOLUME_SOURCES if old_spec.get(k) is not None}
    if new_source != old_source:
        errs.append(forbidden_field("spec.persistentvolumesource",
                                    "spec.persistentvolumesource is immutable after creation"))
    if new_spec.get("volumeMode") != old_spec.get("volumeMode"):
        errs.append(invalid_value("spec.volumeMode", new_spec.get("volumeMode"), "field is immutable"))
    if old_spec.get("nodeAffinity") and new_spec.get("nodeAffinity") != old_spec.get("nodeAffinity"):
        errs.append(invalid_value("spec.nodeAffinity", new_spec.get("nodeAffinity"), "field is immutable"))
    return errs


# ------------------------------------------------------------------------------------------ defaults
def default_volume(pv: dict[str, Any]) -> None:
    spec = pv.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    host = spec.get("hostPath")
    if isinstance(host, dict):
        host.setdefault("type", "")


def default_claim(pvc: dict[str, Any]) -> None:
    spec = pvc.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")


# ------------------------------------------------------------------------------------------ strategies
class PersistentVolumeStrategy(Strategy):
    has_status = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        default_volume(obj)
        created = as_dict(obj.get("metadata")).get("creationTimestamp")
        obj["status"] = {"phase": "Pending"}
        if created:
            obj["status"]["lastPhaseTransitionTime"] = created
        _add_finalizer(obj, PV_PROTECTION)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        default_volume(new)
        new["status"] = old.get("status") or {}

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_volume(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return validate_volume_update(new, old)

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Capacity", field_doc(PV_DEF, "capacity")),
            column("Access Modes", field_doc(PV_DEF, "accessModes")),
            column("Reclaim Policy", field_doc(PV_DEF, "persistentVolumeReclaimPolicy")),
            column("Status", field_doc(PV_STATUS_DEF, "phase")),
            column("Claim", field_doc(PV_DEF, "claimRef")),
            column("StorageClass", "StorageClass of the pv"),
            column("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
            column("Reason", field_doc(PV_STATUS_DEF, "reason")),
            age_column(),
            column("VolumeMode", field_doc(PV_DEF, "volumeMode"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        meta, spec, status = as_dict(obj.get("metadata")), as_dict(obj.get("spec")), as_dict(obj.get("status"))
        ref = as_dict(spec.get("claimRef"))
        claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if spec.get("claimRef") else ""
        phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "")
        return [meta.get("name", ""), str(as_dict(spec.get("capacity")).get("storage", "")),
                access_modes_text(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""), phase,
                claim, volume_class(obj), spec.get("volumeAttributesClassName") or "<unset>",
                status.get("reason", ""), age(obj, now), spec.get("volumeMode") or "<unset>"]


class PersistentVolumeClaimStrategy(Strategy):
    has_status = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        default_claim(obj)
        obj["status"] = {"phase": "Pending"}
        _add_finalizer(obj, PVC_PROTECTION)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        default_claim(new)
        new["status"] = old.get("status") or {}

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_claim(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return validate_claim_update(new, old)

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Status", field_doc(PVC_STATUS_DEF, "phase")),
            column("Volume", field_doc(PVC_DEF, "volumeName")),
            column("Capacity", field_doc(PVC_STATUS_DEF, "capacity")),
            column("Access Modes", field_doc(PVC_STATUS_DEF, "accessModes")),
            column("StorageClass", "StorageClass of the pvc"),
            column("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
            age_column(),
            column("VolumeMode", field_doc(PVC_DEF, "volumeMode"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        meta, spec, status = as_dict(obj.get("metadata")), as_dict(obj.get("spec")), as_dict(obj.get("status"))
        phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "")
        capacity = modes = ""
        # Capacity and modes are the bound volume's, shown only once the claim names one.
        if spec.get("volumeName"):
            capacity = str(as_dict(status.get("capacity")).get("storage", ""))
            modes = access_modes_text(status.get("accessModes"))
        return [meta.get("name", ""), phase, spec.get("volumeName", ""), capacity, modes, claim_class(obj),
                spec.get("volumeAttributesClassName") or "<unset>", age(obj, now), spec.get("volumeMode") or "<unset>"]
