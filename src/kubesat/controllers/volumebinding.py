"""The persistent-volume controller (kube-controller-manager's, with a trivial local provisioner): binds pending
claims to fitting volumes, provisions volumes for claims of a class whose provisioner is `kubesat.io/local`,
keeps both sides' phases, reclaims released volumes, and lifts the protection finalizers once nothing uses them.

The provisioner's design: the server does not know where a node agent keeps its files, so a provisioned volume
is a `hostPath` PersistentVolume whose path is relative (`volumes/<pv-name>`), marked with the annotation
`pv.kubernetes.io/provisioned-by: kubesat.io/local`; the agent that runs a pod using it resolves that path
under its own root (`<root>/volumes/<pv-name>`) and creates the directory. Every agent of a cluster would see a
different directory; kubesat clusters have one node, so this is the simplest sound choice (a multi-node cluster
would need `local` volumes with node affinity). Deleting a provisioned volume (reclaimPolicy Delete) asks the
Ready nodes to remove its directory and deletes the PersistentVolume once they have (controllers/localvolumes.py).

Kubesat keeps the controller level-triggered and small: any change to a volume, claim, class or a pod that
mounts a claim marks the cluster dirty, and one pass reconciles everything from a fresh read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kubesat import errors
from kubesat.apimachinery.selectors import labels_match, selector_from_label_selector_object
from kubesat.controllers import localvolumes
from kubesat.controllers.base import cancel, loads, resource_of_key, watch_in_background
from kubesat.controllers.events import EventRecorder, object_reference
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.meta import as_dict
from kubesat.registry.persistentvolume import (
    BETA_CLASS_ANNOTATION,
    PV_PROTECTION,
    PVC_PROTECTION,
    claim_class,
    storage_of,
    volume_class,
)
from kubesat.registry.storageclass import DEFAULT_CLASS_ANNOTATION
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.volumebinding")

PVS = builtin_kind("v1", "PersistentVolume")
PVCS = builtin_kind("v1", "PersistentVolumeClaim")
PODS = builtin_kind("v1", "Pod")
CLASSES = builtin_kind("storage.k8s.io/v1", "StorageClass")

LOCAL_PROVISIONER = "kubesat.io/local"
DEFAULT_CLASS = "standard"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
COMPONENT = "persistentvolume-controller"
# A burst of events (a pod and its claim written together) is handled in one pass.
SETTLE = 0.05
MAX_REMEMBERED = 4096


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return as_dict(obj.get("metadata"))


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return as_dict(obj.get("spec"))


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return _meta(obj).get("namespace", ""), _meta(obj).get("name", "")


def default_storage_class() -> dict[str, Any]:
    """The class a kubesat server creates at first start, as kind and minikube clusters ship one."""
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": DEFAULT_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": LOCAL_PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}


def pick_default_class(classes: Iterable[dict[str, Any]]) -> str | None:
    """The DefaultStorageClass admission's choice: the newest class marked default (then by name)."""
    marked = [c for c in classes if as_dict(_meta(c).get("annotations")).get(DEFAULT_CLASS_ANNOTATION) == "true"
              or as_dict(_meta(c).get("annotations")).get("storageclass.beta.kubernetes.io/is-default-class")
              == "true"]
    if not marked:
        return None
    marked.sort(key=lambda c: (str(_meta(c).get("creationTimestamp", "")), str(_meta(c).get("name", ""))))
    return str(_meta(marked[-1]).get("name", ""))


def needs_default_class(pvc: dict[str, Any]) -> bool:
    """A claim that named no class at all (not even ""), with no beta class annotation, and is not bound."""
    return ("storageClassName" not in _spec(pvc) or _spec(pvc).get("storageClassName") is None) \
        and BETA_CLASS_ANNOTATION not in as_dict(_meta(pvc).get("annotations")) and not _spec(pvc).get("volumeName")


# ------------------------------------------------------------------------------------------- matching
def claim_uses(pod: dict[str, Any]) -> set[str]:
    """The claims a pod's volumes name (an ephemeral volume's claim is `<pod>-<volume>`)."""
    out = set()
    for v in _spec(pod).get("volumes") or []:
        v = as_dict(v)
        name = as_dict(v.get("persistentVolumeClaim")).get("claimName")
        if name:
            out.add(str(name))
        elif isinstance(v.get("ephemeral"), dict):
            out.add(f"{_meta(pod).get('name', '')}-{v.get('name', '')}")
    return out


def ephemeral_claims(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(namespace, claim) for each generic ephemeral volume of a pod: `<pod>-<volume>` from its template,
    owned by the pod (so the garbage collector removes it with the pod)."""
    meta = _meta(pod)
    out = []
    for v in _spec(pod).get("volumes") or []:
        template = as_dict(as_dict(as_dict(v).get("ephemeral")).get("volumeClaimTemplate"))
        if not template:
            continue
        tmeta = as_dict(template.get("metadata"))
        cmeta: dict[str, Any] = {"name": f"{meta.get('name', '')}-{as_dict(v).get('name', '')}",
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta.get("name", ""),
                                                      "uid": meta.get("uid", ""), "controller": True,
                                                      "blockOwnerDeletion": True}]}
        for key in ("labels", "annotations"):
            if tmeta.get(key):
                cmeta[key] = dict(tmeta[key])
        out.append((str(meta.get("namespace", "")), {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                     "metadata": cmeta, "spec": dict(as_dict(template.get("spec")))}))
    return out


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = _meta(owner).get("uid")
    return any(as_dict(r).get("uid") == uid and as_dict(r).get("controller")
               for r in _meta(obj).get("ownerReferences") or [])


def claim_in_use(pvc: dict[str, Any], pods: Iterable[dict[str, Any]]) -> bool:
    """The pvc-protection controller's test: a scheduled pod of the claim's namespace that has not finished."""
    ns, name = _key(pvc)
    for pod in pods:
        if _meta(pod).get("namespace") != ns or not _spec(pod).get("nodeName"):
            continue
        if as_dict(pod.get("status")).get("phase") in ("Succeeded", "Failed"):
            continue
        if name in claim_uses(pod):
            return True
    return False


def volume_fits(pv: dict[str, Any], pvc: dict[str, Any]) -> bool:
    """Whether an unclaimed volume can serve the claim: class, volume mode, access modes, size and selector."""
    spec, want = _spec(pv), _spec(pvc)
    if _meta(pv).get("deletionTimestamp") or spec.get("claimRef"):
        return False
    if volume_class(pv) != claim_class(pvc):
        return False
    if (spec.get("volumeMode") or "Filesystem") != (want.get("volumeMode") or "Filesystem"):
        return False
    if not set(want.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    need = storage_of(as_dict(want.get("resources")).get("requests")) or Decimal(0)
    have = storage_of(spec.get("capacity")) or Decimal(0)
    if have < need:
        return False
    selector = want.get("selector")
    return not selector or labels_match(selector_from_label_selector_object(selector), _meta(pv).get("labels"))


def _claim_ref_points_to(pv: dict[str, Any], pvc: dict[str, Any]) -> bool:
    ref = as_dict(_spec(pv).get("claimRef"))
    ns, name = _key(pvc)
    if ref.get("namespace") != ns or ref.get("name") != name:
        return False
    return not ref.get("uid") or ref.get("uid") == _meta(pvc).get("uid")


def find_volume(pvc: dict[str, Any], pvs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The volume to bind a pending claim to: the one it names, one pre-bound to it, or the smallest that fits."""
    wanted = _spec(pvc).get("volumeName")
    if wanted:
        pv = next((v for v in pvs if _meta(v).get("name") == wanted), None)
        if pv is None or _meta(pv).get("deletionTimestamp"):
            return None
        ref = _spec(pv).get("claimRef")
        return pv if not ref or _claim_ref_points_to(pv, pvc) else None
    prebound = [v for v in pvs if _spec(v).get("claimRef") and _claim_ref_points_to(v, pvc)
                and not _meta(v).get("deletionTimestamp")]
    if prebound:
        return prebound[0]
    fitting = [v for v in pvs if volume_fits(v, pvc)]
    if not fitting:
        return None
    return min(fitting, key=lambda v: (storage_of(_spec(v).get("capacity")) or Decimal(0), _meta(v).get("name", "")))


def claim_ref(pvc: dict[str, Any]) -> dict[str, Any]:
    meta = _meta(pvc)
    return {"kind": "PersistentVolumeClaim", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
            "uid": meta.get("uid", ""), "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion", "")}


def volume_phase(pv: dict[str, Any], claims: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The phase a volume should be in, from its claimRef and the claim it names (if that still exists)."""
    ref = as_dict(_spec(pv).get("claimRef"))
    if not ref:
        return "Available"
    claim = claims.get((str(ref.get("namespace", "")), str(ref.get("name", ""))))
    if claim is None or (ref.get("uid") and ref.get("uid") != _meta(claim).get("uid")):
        # Pre-bound to a claim that does not exist yet: still available to it.
        return "Released" if ref.get("uid") else "Available"
    return "Bound" if _spec(claim).get("volumeName") == _meta(pv).get("name") else "Available"


def provisioned_volume(pvc: dict[str, Any], sc: dict[str, Any]) -> dict[str, Any]:
    """The PersistentVolume the local provisioner makes for a claim: a hostPath relative to the agent's root."""
    name = f"pvc-{_meta(pvc).get('uid', '')}"
    want = _spec(pvc)
    spec: dict[str, Any] = {
        "capacity": {"storage": as_dict(as_dict(want.get("resources")).get("requests")).get("storage")},
        "accessModes": list(want.get("accessModes") or []),
        "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
        "storageClassName": _meta(sc).get("name", ""),
        "volumeMode": want.get("volumeMode") or "Filesystem",
        "hostPath": {"path": f"volumes/{name}", "type": "DirectoryOrCreate"},
        "claimRef": claim_ref(pvc),
    }
    if sc.get("mountOptions"):
        spec["mountOptions"] = list(sc["mountOptions"])
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: LOCAL_PROVISIONER,
                                                       BOUND_BY_CONTROLLER: "yes"}},
            "spec": spec}


def bound_claim_status(pv: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    status = dict(old)
    status.update({"phase": "Bound", "accessModes": list(_spec(pv).get("accessModes") or []),
                   "capacity": dict(as_dict(_spec(pv).get("capacity")))})
    return status


def _remember(pvs: list[dict[str, Any]], pv: dict[str, Any]) -> None:
    """Put a volume just written into this pass's list, so that no later claim of the pass takes it again."""
    name = _meta(pv).get("name")
    pvs[:] = [v for v in pvs if _meta(v).get("name") != name] + [pv]


# ------------------------------------------------------------------------------------------- controller
class PersistentVolumeController:
    """One worker reconciling every volume and claim whenever something they depend on changes."""

    def __init__(self, registry: Registry, *, clock: Callable[[], float] | None = None) -> None:
        self.registry = registry
        self.clock = clock or registry.clock
        self.events = EventRecorder(registry, COMPONENT, clock=self.clock)
        self._wake = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._said: set[tuple[str, str, str]] = set()  # (uid, reason, message) already recorded

    async def start(self) -> None:
        await self.ensure_default_class()
        rev = await self._resync()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self._resync, "volumebinding")
        self._worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        await cancel(self._watch)
        await cancel(self._worker)

    async def ensure_default_class(self) -> None:
        """Create `standard` unless it exists or another class is already the default."""
        classes = (await self.registry.list(CLASSES, "")).items
        if any(_meta(c).get("name") == DEFAULT_CLASS for c in classes) or pick_default_class(classes):
            return
        try:
            await self.registry.create(CLASSES, "", default_storage_class())
        except errors.StatusError as e:
            if e.reason != "AlreadyExists":
                raise

    async def _resync(self) -> int:
        rev = await self.registry.revision()
        self._wake.set()
        return rev

    async def _on_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is PVS or info is PVCS or info is CLASSES:
            self._wake.set()
        elif info is localvolumes.NODES:
            if localvolumes.requests_changed(ev):
                self._wake.set()
        elif info is PODS:
            new, old = loads(ev.value), loads(ev.prev_value)
            if any(p is not None and claim_uses(p) for p in (new, old)):
                self._wake.set()

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(SETTLE)
            self._wake.clear()
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next change tries again
                log.exception("volumebinding: pass failed")

    async def sync(self) -> None:
        """One pass: claims first (binding, provisioning), then volumes (phases, reclaim, finalizers)."""
        pvs = (await self.registry.list(PVS, "")).items
        pvcs = (await self.registry.list(PVCS, "")).items
        pods = (await self.registry.list(PODS, "")).items
        classes = {str(_meta(c).get("name")): c for c in (await self.registry.list(CLASSES, "")).items}
        await self._ephemeral_claims(pods, {_key(c): c for c in pvcs})
        for pvc in pvcs:
            await self._guarded(self._sync_claim(pvc, pvs, pods, classes), pvc)
        claims = {_key(c): c for c in (await self.registry.list(PVCS, "")).items}
        for pv in (await self.registry.list(PVS, "")).items:
            await self._guarded(self._sync_volume(pv, claims), pv)

    async def _guarded(self, step: Awaitable[None], obj: dict[str, Any]) -> None:
        """One object's step; a refused write (a conflict, a vanished object) waits for the next pass."""
        try:
            await step
        except errors.StatusError as e:
            log.info("volumebinding: %s %s: %s", obj.get("kind"), "/".join(_key(obj)).strip("/"), e.message)
            if e.code == 409:
                self._wake.set()

    # --- generic ephemeral volumes (the ephemeral volume controller's job) ---
    async def _ephemeral_claims(self, pods: list[dict[str, Any]], pvcs: dict[tuple[str, str], dict[str, Any]]) -> None:
        for pod in pods:
            if _meta(pod).get("deletionTimestamp"):
                continue
            for ns, want in ephemeral_claims(pod):
                name = _meta(want)["name"]
                have = pvcs.get((ns, name))
                if have is None:
                    await self._guarded(self._create_claim(ns, want), pod)
                elif not owned_by(have, pod):
                    await self._say(pod, "Warning", "FailedBinding",
                                    f"PVC {ns}/{name} was not created for pod {ns}/{_meta(pod).get('name')} "
                                    "(pod is not owner)")

    async def _create_claim(self, ns: str, claim: dict[str, Any]) -> None:
        try:
            await self.registry.create(PVCS, ns, claim)
        except errors.StatusError as e:
            if e.reason != "AlreadyExists":
                raise

    # --- claims ---
    async def _sync_claim(self, pvc: dict[str, Any], pvs: list[dict[str, Any]], pods: list[dict[str, Any]],
                          classes: dict[str, dict[str, Any]]) -> None:
        meta = _meta(pvc)
        if meta.get("deletionTimestamp"):
            if PVC_PROTECTION in (meta.get("finalizers") or []) and not claim_in_use(pvc, pods):
                await self._drop_finalizer(PVCS, pvc, PVC_PROTECTION)
            return
        name = _spec(pvc).get("volumeName")
        if name and as_dict(pvc.get("status")).get("phase") == "Bound":
            pv = next((v for v in pvs if _meta(v).get("name") == name), None)
            if pv is None:
                await self._claim_status(pvc, {**as_dict(pvc.get("status")), "phase": "Lost"})
                await self._say(pvc, "Warning", "ClaimLost",
                                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
            elif not _spec(pv).get("claimRef"):
                _remember(pvs, await self._bind(pv, pvc))  # someone cleared the volume's claimRef: bind again
            elif not _claim_ref_points_to(pv, pvc):
                await self._claim_status(pvc, {**as_dict(pvc.get("status")), "phase": "Lost"})
                await self._say(pvc, "Warning", "ClaimMisbound",
                                "Two claims are bound to the same volume, this one is bound incorrectly")
            return
        if needs_default_class(pvc):
            chosen = pick_default_class(classes.values())
            if chosen:
                pvc = await self._set_class(pvc, chosen)
        pv = find_volume(pvc, pvs)
        if pv is not None:
            _remember(pvs, await self._bind(pv, pvc))
            return
        if name:
            return  # the claim names a volume that does not exist (yet): it stays Pending
        bound = await self._provision_or_wait(pvc, pods, classes)
        if bound is not None:
            _remember(pvs, bound)

    async def _provision_or_wait(self, pvc: dict[str, Any], pods: list[dict[str, Any]],
                                 classes: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """The volume provisioned and bound for the claim, or None when it waits (with an Event saying why)."""
        cls_name = claim_class(pvc)
        if not cls_name:
            await self._say(pvc, "Normal", "FailedBinding",
                            "no persistent volumes available for this claim and no storage class is set")
            return None
        sc = classes.get(cls_name)
        if sc is None:
            await self._say(pvc, "Warning", "ProvisioningFailed",
                            f'storageclass.storage.k8s.io "{cls_name}" not found')
            return None
        provisioner = str(sc.get("provisioner", ""))
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            node = self._first_consumer_node(pvc, pods)
            if not node:
                await self._say(pvc, "Normal", "WaitForFirstConsumer",
                                "waiting for first consumer to be created before binding")
                return None
            await self._annotate(pvc, {SELECTED_NODE: node})
        if provisioner != LOCAL_PROVISIONER:
            await self._annotate(pvc, {STORAGE_PROVISIONER: provisioner, BETA_STORAGE_PROVISIONER: provisioner})
            await self._say(pvc, "Normal", "ExternalProvisioning",
                            f"Waiting for a volume to be created either by the external provisioner '{provisioner}' "
                            "or manually by the system administrator. If volume creation is delayed, please verify "
                            "that the provisioner is running and correctly registered.")
            return None
        return await self._provision(pvc, sc)

    def _first_consumer_node(self, pvc: dict[str, Any], pods: list[dict[str, Any]]) -> str:
        ns, name = _key(pvc)
        for pod in pods:
            if _meta(pod).get("namespace") == ns and name in claim_uses(pod) and _spec(pod).get("nodeName"):
                return str(_spec(pod)["nodeName"])
        return ""

    async def _provision(self, pvc: dict[str, Any], sc: dict[str, Any]) -> dict[str, Any] | None:
        await self._annotate(pvc, {STORAGE_PROVISIONER: LOCAL_PROVISIONER, BETA_STORAGE_PROVISIONER: LOCAL_PROVISIONER})
        await self._say(pvc, "Normal", "Provisioning",
                        f'External provisioner is provisioning volume for claim "{"/".join(_key(pvc))}"')
        pv = provisioned_volume(pvc, sc)
        try:
            created = await self.registry.create(PVS, "", pv)
        except errors.StatusError as e:
            if e.reason != "AlreadyExists":
                await self._say(pvc, "Warning", "ProvisioningFailed", e.message)
                return None
            created = await self.registry.get(PVS, "", pv["metadata"]["name"])
        await self._say(pvc, "Normal", "ProvisioningSucceeded",
                        f"Successfully provisioned volume {_meta(created).get('name')} using {LOCAL_PROVISIONER}")
        return await self._bind(created, pvc)

    async def _bind(self, pv: dict[str, Any], pvc: dict[str, Any]) -> dict[str, Any]:
        """Kubernetes' order: the volume's claimRef, its phase, the claim's volumeName, the claim's status."""
        pv_name = str(_meta(pv).get("name"))
        ns, name = _key(pvc)
        ref = claim_ref(pvc)

        def to_claim(obj: dict[str, Any]) -> dict[str, Any]:
            spec = obj.setdefault("spec", {})
            if spec.get("claimRef") and not _claim_ref_points_to(obj, pvc):
                raise errors.conflict(PVS.plural, pv_name, "the volume was claimed by another claim meanwhile")
            if not _claim_ref_points_to(obj, pvc) or not as_dict(spec.get("claimRef")).get("uid"):
                spec["claimRef"] = ref
                obj["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
            return obj

        pv, _ = await self.registry.guaranteed_update(PVS, "", pv_name, to_claim)
        await self._volume_status(pv, "Bound")
        by_controller = not _spec(pvc).get("volumeName")

        def to_volume(obj: dict[str, Any]) -> dict[str, Any]:
            obj.setdefault("spec", {})["volumeName"] = pv_name
            notes = obj["metadata"].setdefault("annotations", {})
            notes[BIND_COMPLETED] = "yes"
            if by_controller:
                notes[BOUND_BY_CONTROLLER] = "yes"
            return obj

        pvc, _ = await self.registry.guaranteed_update(PVCS, ns, name, to_volume)
        await self._claim_status(pvc, bound_claim_status(pv, as_dict(pvc.get("status"))))
        return pv

    # --- volumes ---
    async def _sync_volume(self, pv: dict[str, Any], claims: dict[tuple[str, str], dict[str, Any]]) -> None:
        meta, status = _meta(pv), as_dict(pv.get("status"))
        phase = volume_phase(pv, claims)
        if status.get("phase") == "Failed" and phase == "Released":
            phase = "Failed"  # a failed reclaim stays failed until an administrator steps in
        if phase != status.get("phase"):
            await self._volume_status(pv, phase)
        if phase == "Released" and not meta.get("deletionTimestamp"):
            await self._reclaim(pv)
        if meta.get("deletionTimestamp") and phase != "Bound" and PV_PROTECTION in (meta.get("finalizers") or []):
            await self._drop_finalizer(PVS, pv, PV_PROTECTION)

    async def _reclaim(self, pv: dict[str, Any]) -> None:
        policy = _spec(pv).get("persistentVolumeReclaimPolicy")
        if policy == "Retain":
            return
        name = str(_meta(pv).get("name"))
        if policy == "Delete" and as_dict(_meta(pv).get("annotations")).get(PROVISIONED_BY) == LOCAL_PROVISIONER:
            if not await localvolumes.release(self.registry, pv):
                return  # the nodes remove its directory first
            try:
                await self.registry.delete(PVS, "", name, DeleteOptions())
            except errors.StatusError as e:
                if e.code != 404:
                    raise
            return
        why = (f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched'
               if policy == "Delete" else "No recycler plugin found for the volume!")
        await self._volume_status(pv, "Failed", why)
        await self._say(pv, "Warning", "VolumeFailedDelete" if policy == "Delete" else "VolumeFailedRecycle", why)

    # --- writes ---
    def _stamp(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def _volume_status(self, pv: dict[str, Any], phase: str, message: str = "") -> None:
        stamp = self._stamp()

        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            status = as_dict(obj.get("status"))
            if status.get("phase") != phase:
                status["lastPhaseTransitionTime"] = stamp
            status["phase"] = phase
            status.pop("reason", None)
            status.pop("message", None)
            if message:
                status["message"] = message
            obj["status"] = status
            return obj

        await self._quiet(self.registry.guaranteed_update(PVS, "", str(_meta(pv).get("name")), mutate,
                                                          subresource="status"))

    async def _claim_status(self, pvc: dict[str, Any], status: dict[str, Any]) -> None:
        ns, name = _key(pvc)

        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            obj["status"] = status
            return obj

        await self._quiet(self.registry.guaranteed_update(PVCS, ns, name, mutate, subresource="status"))

    async def _set_class(self, pvc: dict[str, Any], name: str) -> dict[str, Any]:
        """The retroactive default class: a claim made without a class (past the admission plugin, or before
        a default existed) gets the default class's name."""
        ns, claim = _key(pvc)

        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            if needs_default_class(obj):
                obj.setdefault("spec", {})["storageClassName"] = name
            return obj

        updated, _ = await self.registry.guaranteed_update(PVCS, ns, claim, mutate)
        return updated

    async def _annotate(self, pvc: dict[str, Any], notes: dict[str, str]) -> None:
        if all(as_dict(_meta(pvc).get("annotations")).get(k) == v for k, v in notes.items()):
            return
        ns, name = _key(pvc)

        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"].setdefault("annotations", {}).update(notes)
            return obj

        await self._quiet(self.registry.guaranteed_update(PVCS, ns, name, mutate))

    async def _drop_finalizer(self, info: Any, obj: dict[str, Any], finalizer: str) -> None:
        ns, name = _key(obj)

        def mutate(cur: dict[str, Any]) -> dict[str, Any]:
            cur["metadata"]["finalizers"] = [f for f in cur["metadata"].get("finalizers") or [] if f != finalizer]
            return cur

        await self._quiet(self.registry.guaranteed_update(info, ns, name, mutate))

    async def _quiet(self, write: Awaitable[Any]) -> None:
        """A write that may find its object gone (deleted meanwhile): nothing left to do then."""
        try:
            await write
        except errors.StatusError as e:
            if e.code != 404:
                raise

    async def _say(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event once per object, reason and message (a pass repeats itself while a claim waits)."""
        key = (str(_meta(obj).get("uid", "")), reason, message)
        if key in self._said:
            return
        if len(self._said) > MAX_REMEMBERED:
            self._said.clear()
        self._said.add(key)
        await self.events.event(object_reference(obj), type_, reason, message)
