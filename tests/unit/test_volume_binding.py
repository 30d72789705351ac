"""The persistent-volume controller: its matching rules (class, mode, access modes, size, selector, named and
pre-bound volumes, the smallest fit), volume phases and the provisioned volume; then passes over an in-memory
store: binding, provisioning, Retain and Delete reclaim, a failed reclaim, Lost claims, protection finalizers,
waiting for the first consumer, and the default StorageClass."""

from __future__ import annotations

import asyncio
from typing import Any

from kubesat.controllers import volumebinding as vb
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.memory import MemoryStore

NAMESPACES = builtin_kind("v1", "Namespace")
EVENTS = builtin_kind("v1", "Event")
NOW = 1_800_000_000.0


def pv(name: str, size: str = "1Gi", cls: str = "", modes: tuple[str, ...] = ("ReadWriteOnce",),
       labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
                     "hostPath": {"path": f"/srv/{name}"}, **spec}}


def pvc(name: str, size: str = "1Gi", cls: str | None = "", modes: tuple[str, ...] = ("ReadWriteOnce",),
        uid: str = "", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}, **spec}
    if cls is not None:
        body["storageClassName"] = cls
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}"}, "spec": body}


# ------------------------------------------------------------------------------------------ the rules
def test_a_volume_fits_by_class_mode_access_size_and_selector() -> None:
    want = pvc("c", "500Mi", modes=("ReadWriteOnce",))
    assert vb.volume_fits(pv("a"), want)
    assert not vb.volume_fits(pv("a", cls="fast"), want)
    assert not vb.volume_fits(pv("a", "100Mi"), want)
    assert not vb.volume_fits(pv("a", modes=("ReadOnlyMany",)), want)
    assert not vb.volume_fits(pv("a", volumeMode="Block"), want)
    assert not vb.volume_fits(pv("a", claimRef={"namespace": "ns", "name": "other"}), want)
    picky = pvc("c", selector={"matchLabels": {"tier": "gold"}})
    assert not vb.volume_fits(pv("a"), picky)
    assert vb.volume_fits(pv("a", labels={"tier": "gold"}), picky)


def test_the_smallest_fit_wins_unless_one_is_named_or_pre_bound() -> None:
    volumes = [pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "100Mi")]
    assert vb.find_volume(pvc("c", "1Gi"), volumes)["metadata"]["name"] == "small"  # type: ignore[index]
    assert vb.find_volume(pvc("c", "1Gi", volumeName="big"), volumes)["metadata"]["name"] == "big"  # type: ignore[index]
    prebound = [*volumes, pv("mine", "20Gi", claimRef={"namespace": "ns", "name": "c"})]
    assert vb.find_volume(pvc("c", "1Gi"), prebound)["metadata"]["name"] == "mine"  # type: ignore[index]
    taken = [pv("t", claimRef={"namespace": "ns", "name": "c", "uid": "someone-else"})]
    assert vb.find_volume(pvc("c", volumeName="t"), taken) is None
    assert vb.find_volume(pvc("c", "50Gi"), volumes) is None


def test_volume_phases() -> None:
    claims = {("ns", "c"): {**pvc("c"), "spec": {"volumeName": "a"}}}
    assert vb.volume_phase(pv("a"), claims) == "Available"
    assert vb.volume_phase(pv("a", claimRef={"namespace": "ns", "name": "c", "uid": "uid-c"}), claims) == "Bound"
    assert vb.volume_phase(pv("a", claimRef={"namespace": "ns", "name": "gone", "uid": "u"}), claims) == "Released"
    assert vb.volume_phase(pv("a", claimRef={"namespace": "ns", "name": "c", "uid": "old"}), claims) == "Released"
    # Pre-bound by name to a claim that does not exist yet: still Available.
    assert vb.volume_phase(pv("a", claimRef={"namespace": "ns", "name": "later"}), claims) == "Available"


def test_the_provisioned_volume() -> None:
    sc = {"metadata": {"name": "standard"}, "provisioner": vb.LOCAL_PROVISIONER, "reclaimPolicy": "Delete"}
    made = vb.provisioned_volume(pvc("c", "3Gi", "standard", ("ReadWriteMany",), uid="1234"), sc)
    assert made["metadata"]["name"] == "pvc-1234"
    assert made["metadata"]["annotations"] == {"pv.kubernetes.io/provisioned-by": "kubesat.io/local",
                                               "pv.kubernetes.io/bound-by-controller": "yes"}
    spec = made["spec"]
    assert spec["hostPath"] == {"path": "volumes/pvc-1234", "type": "DirectoryOrCreate"}
    assert spec["capacity"] == {"storage": "3Gi"} and spec["accessModes"] == ["ReadWriteMany"]
    assert spec["persistentVolumeReclaimPolicy"] == "Delete" and spec["storageClassName"] == "standard"
    assert spec["claimRef"]["uid"] == "1234" and spec["claimRef"]["namespace"] == "ns"


def test_the_default_class_is_the_newest_marked_one() -> None:
    def sc(name: str, created: str, default: bool) -> dict[str, Any]:
        notes = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        return {"metadata": {"name": name, "creationTimestamp": created, "annotations": notes}}
    assert vb.pick_default_class([sc("a", "2026-01-01T00:00:00Z", False)]) is None
    assert vb.pick_default_class([sc("a", "2026-01-01T00:00:00Z", True), sc("b", "2026-01-02T00:00:00Z", True),
                                  sc("c", "2026-01-03T00:00:00Z", False)]) == "b"


def test_a_claim_is_in_use_by_a_scheduled_unfinished_pod() -> None:
    def pod(node: str, phase: str) -> dict[str, Any]:
        return {"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": phase},
                "spec": {"nodeName": node, "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}}
    assert vb.claim_in_use(pvc("c"), [pod("n1", "Running")])
    assert not vb.claim_in_use(pvc("c"), [pod("", "Pending")])
    assert not vb.claim_in_use(pvc("c"), [pod("n1", "Succeeded")])
    assert not vb.claim_in_use(pvc("other"), [pod("n1", "Running")])


# ------------------------------------------------------------------------------------------ the controller
PVS, PVCS, PODS, CLASSES = vb.PVS, vb.PVCS, vb.PODS, vb.CLASSES


class Env:
    def __init__(self) -> None:
        self.now = NOW
        self.registry = Registry(MemoryStore.open(), clock=self.clock)
        self.controller = vb.PersistentVolumeController(self.registry, clock=self.clock)

    def clock(self) -> float:
        self.now += 0.001
        return self.now

    async def setup(self) -> None:
        await self.registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        await self.controller.ensure_default_class()

    async def claim(self, name: str) -> dict[str, Any]:
        return await self.registry.get(PVCS, "ns", name)

    async def volume(self, name: str) -> dict[str, Any] | None:
        return await self.registry.get_or_none(PVS, "", name)

    async def reasons(self) -> set[str]:
        return {e["reason"] for e in (await self.registry.list(EVENTS, "ns")).items}


def run(body: Any) -> None:
    async def t() -> None:
        env = Env()
        await env.setup()
        await body(env)
    asyncio.run(t())


def test_a_pending_claim_is_bound_to_an_available_volume() -> None:
    async def body(env: Env) -> None:
        await env.registry.create(PVS, "", pv("a", "2Gi"))
        await env.registry.create(PVCS, "ns", pvc("c"))
        await env.controller.sync()
        claim, volume = await env.claim("c"), await env.volume("a")
        assert volume is not None
        assert claim["spec"]["volumeName"] == "a"
        assert claim["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}}
        assert claim["metadata"]["annotations"] == {"pv.kubernetes.io/bind-completed": "yes",
                                                    "pv.kubernetes.io/bound-by-controller": "yes"}
        assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
        assert volume["status"]["phase"] == "Bound"
        # The claim goes: Released, kept (Retain), and its finalizer lifted once deleted.
        await env.registry.delete(PVCS, "ns", "c")
        await env.controller.sync()
        assert await env.registry.get_or_none(PVCS, "ns", "c") is None
        await env.controller.sync()
        released = await env.volume("a")
        assert released is not None and released["status"]["phase"] == "Released"
        await env.registry.delete(PVS, "", "a")
        await env.controller.sync()
        assert await env.volume("a") is None
    run(body)


def test_two_claims_never_share_a_volume() -> None:
    async def body(env: Env) -> None:
        await env.registry.create(PVS, "", pv("only"))
        await env.registry.create(PVCS, "ns", pvc("c1"))
        await env.registry.create(PVCS, "ns", pvc("c2"))
        await env.controller.sync()
        phases = sorted([(await env.claim(n))["status"]["phase"] for n in ("c1", "c2")])
        assert phases == ["Bound", "Pending"]
        assert "FailedBinding" in await env.reasons()
    run(body)


def test_a_claim_of_the_default_class_is_provisioned_and_deleted_with_it() -> None:
    async def body(env: Env) -> None:
        await env.registry.create(PVCS, "ns", pvc("c", cls="standard"))
        await env.controller.sync()
        claim = await env.claim("c")
        name = f"pvc-{claim['metadata']['uid']}"
        assert claim["spec"]["volumeName"] == name and claim["status"]["phase"] == "Bound"
        assert claim["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == "kubesat.io/local"
        assert {"ProvisioningSucceeded"} <= await env.reasons()
        await env.registry.delete(PVCS, "ns", "c")
        for _ in range(3):
            await env.controller.sync()
        assert await env.volume(name) is None  # Delete: released, deleted, its finalizer lifted
    run(body)


def test_another_provisioner_is_waited_for() -> None:
    async def body(env: Env) -> None:
        await env.registry.create(CLASSES, "", {"metadata": {"name": "ext"}, "provisioner": "example.com/nfs"})
        await env.registry.create(PVCS, "ns", pvc("c", cls="ext"))
        await env.controller.sync()
        claim = await env.claim("c")
        assert claim["status"]["phase"] == "Pending"
        assert claim["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == "example.com/nfs"
        assert "ExternalProvisioning" in await env.reasons()
    run(body)


def test_wait_for_first_consumer() -> None:
    async def body(env: Env) -> None:
        await env.registry.create(CLASSES, "", {"metadata": {"name": "late"}, "provisioner": vb.LOCAL_PROVISIONER,
                                                "volumeBindingMode": "WaitForFirstConsumer"})
        await env.registry.create(PVCS, "ns", pvc("c", cls="late"))
        await env.controller.sync()
        assert (await env.claim("c"))["status"]["phase"] == "Pending"
        assert "WaitForFirstConsumer" in await env.reasons()
        await env.registry.create(PODS, "ns", {"metadata": {"name": "p"}, "spec": {
            "nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}})
        await env.controller.sync()
        claim = await env.claim("c")
        assert claim["status"]["phase"] == "Bound"
        assert claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "n1"
    run(body)


def test_a_used_claim_keeps_its_finalizer() -> None:
    async def body(env: Env) -> None:
        await env.registry.create(PVCS, "ns", pvc("c", cls="standard"))
        await env.registry.create(PODS, "ns", {"metadata": {"name": "p"}, "spec": {
            "nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}})
        await env.controller.sync()
        await env.registry.delete(PVCS, "ns", "c")
        await env.controller.sync()
        assert (await env.claim("c"))["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
        await env.registry.delete(PODS, "ns", "p", DeleteOptions(grace_period=0))
        await env.controller.sync()
        assert await env.registry.get_or_none(PVCS, "ns", "c") is None
    run(body)


def test_delete_of_a_volume_not_provisioned_here_fails() -> None:
    async def body(env: Env) -> None:
        await env.registry.create(PVS, "", pv("a", persistentVolumeReclaimPolicy="Delete"))
        await env.registry.create(PVCS, "ns", pvc("c"))
        await env.controller.sync()
        await env.registry.delete(PVCS, "ns", "c")
        await env.controller.sync()
        await env.controller.sync()
        volume = await env.volume("a")
        assert volume is not None and volume["status"]["phase"] == "Failed"
        assert volume["status"]["message"] == ('error getting deleter volume plugin for volume "a": '
                                               "no deletable volume plugin matched")
    run(body)


def test_a_bound_claim_whose_volume_is_gone_is_lost() -> None:
    async def body(env: Env) -> None:
        await env.registry.create(PVS, "", pv("a"))
        await env.registry.create(PVCS, "ns", pvc("c"))
        await env.controller.sync()

        def unprotect(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"]["finalizers"] = []
            return obj
        await env.registry.guaranteed_update(PVS, "", "a", unprotect)
        await env.registry.delete(PVS, "", "a")
        await env.controller.sync()
        assert (await env.claim("c"))["status"]["phase"] == "Lost"
        assert "ClaimLost" in await env.reasons()
    run(body)


def test_the_default_class_is_made_once() -> None:
    async def body(env: Env) -> None:
        classes = (await env.registry.list(CLASSES, "")).items
        assert [c["metadata"]["name"] for c in classes] == ["standard"]
        assert classes[0]["provisioner"] == "kubesat.io/local"
        await env.controller.ensure_default_class()
        assert len((await env.registry.list(CLASSES, "")).items) == 1
    run(body)


def test_a_claim_made_without_a_class_gets_the_default_one() -> None:
    async def body(env: Env) -> None:
        # Written past the admission plugin (a controller's create): the binder assigns the default class.
        await env.registry.create(PVCS, "ns", pvc("c", cls=None))
        await env.registry.create(PVCS, "ns", pvc("none", cls=""))
        await env.controller.sync()
        claim = await env.claim("c")
        assert claim["spec"]["storageClassName"] == "standard" and claim["status"]["phase"] == "Bound"
        # An explicit "" asks for no class: left alone, and Pending without a volume.
        unclassed = await env.claim("none")
        assert unclassed["spec"]["storageClassName"] == "" and unclassed["status"]["phase"] == "Pending"
    run(body)


def test_a_bound_claim_is_rebound_or_misbound_by_its_volume_claim_ref() -> None:
    async def body(env: Env) -> None:
        await env.registry.create(PVS, "", pv("a"))
        await env.registry.create(PVCS, "ns", pvc("c"))
        await env.controller.sync()

        def claim_ref(ref: dict[str, Any] | None) -> Any:
            def mutate(obj: dict[str, Any]) -> dict[str, Any]:
                obj["spec"]["claimRef"] = ref
                return obj
            return mutate
        await env.registry.guaranteed_update(PVS, "", "a", claim_ref(None))
        await env.controller.sync()
        volume = await env.volume("a")
        assert volume is not None and volume["spec"]["claimRef"]["name"] == "c"
        assert volume["status"]["phase"] == "Bound"
        await env.registry.guaranteed_update(PVS, "", "a", claim_ref({"namespace": "ns", "name": "x", "uid": "u"}))
        await env.controller.sync()
        assert (await env.claim("c"))["status"]["phase"] == "Lost"
        assert "ClaimMisbound" in await env.reasons()
    run(body)


def test_a_generic_ephemeral_volume_gets_its_claim() -> None:
    async def body(env: Env) -> None:
        template = {"metadata": {"labels": {"kind": "scratch"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Mi"}}}}
        created = await env.registry.create(PODS, "ns", {"metadata": {"name": "p"}, "spec": {
            "nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "tmp", "ephemeral": {"volumeClaimTemplate": template}}]}})
        await env.controller.sync()
        await env.controller.sync()  # the new claim's own pass: default class, provisioned, bound
        claim = await env.claim("p-tmp")
        assert claim["metadata"]["labels"] == {"kind": "scratch"}
        assert claim["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "p",
                                                         "uid": created["metadata"]["uid"], "controller": True,
                                                         "blockOwnerDeletion": True}]
        assert claim["spec"]["storageClassName"] == "standard" and claim["status"]["phase"] == "Bound"
        # A same-named claim of someone else is not the pod's: an event, and nothing made.
        await env.registry.create(PVCS, "ns", pvc("q-tmp"))
        await env.registry.create(PODS, "ns", {"metadata": {"name": "q"}, "spec": {
            "nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "tmp", "ephemeral": {"volumeClaimTemplate": template}}]}})
        await env.controller.sync()
        messages = {e["message"] for e in (await env.registry.list(EVENTS, "ns")).items}
        assert "PVC ns/q-tmp was not created for pod ns/q (pod is not owner)" in messages
    run(body)
