"""The kubesat.io/local provisioner's Delete, server side: a released provisioned volume is handed to the Ready
nodes through their Node annotations and deleted only once none of them still holds it; Retain keeps it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from kubesat.controllers import localvolumes
from kubesat.controllers import volumebinding as vb
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry
from kubesat.storage.interface import WatchEvent
from kubesat.storage.memory import MemoryStore

NAMESPACES = builtin_kind("v1", "Namespace")
NODES, PVS, PVCS, CLASSES = localvolumes.NODES, vb.PVS, vb.PVCS, vb.CLASSES


def _node(name: str, ready: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": ready}]}}


def _claim(name: str, cls: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                                                 "resources": {"requests": {"storage": "1Gi"}}}}


async def _released_volume(registry: Registry, controller: vb.PersistentVolumeController, cls: str) -> str:
    await registry.create(PVCS, "ns", _claim("c", cls))
    await controller.sync()
    name = str((await registry.get(PVCS, "ns", "c"))["spec"]["volumeName"])
    await registry.delete(PVCS, "ns", "c")
    for _ in range(3):
        await controller.sync()
    return name


async def _annotations(registry: Registry, node: str) -> dict[str, Any]:
    return dict((await registry.get(NODES, "", node))["metadata"].get("annotations") or {})


def test_the_ready_nodes_remove_the_directory_before_the_volume_goes() -> None:
    async def run() -> None:
        registry = Registry(MemoryStore.open())
        controller = vb.PersistentVolumeController(registry)
        await registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        await controller.ensure_default_class()
        await registry.create(NODES, "", _node("up", "True"))
        await registry.create(NODES, "", _node("down", "Unknown"))
        name = await _released_volume(registry, controller, "standard")
        key = f"delete.volumes.kubesat.io/{name}"
        assert key in await _annotations(registry, "up") and key not in await _annotations(registry, "down")
        pv = await registry.get(PVS, "", name)
        assert pv["status"]["phase"] == "Released"
        assert pv["metadata"]["annotations"][localvolumes.HANDED_OVER] == "true"
        await controller.sync()
        assert await registry.get_or_none(PVS, "", name) is not None  # the node has not answered yet

        def lift(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"]["annotations"].pop(key)
            return obj

        await registry.guaranteed_update(NODES, "", "up", lift)  # what the agent does once the directory is gone
        for _ in range(3):
            await controller.sync()
        assert await registry.get_or_none(PVS, "", name) is None

    asyncio.run(run())


def test_without_a_ready_node_the_volume_goes_at_once_and_retain_keeps_it() -> None:
    async def run() -> None:
        registry = Registry(MemoryStore.open())
        controller = vb.PersistentVolumeController(registry)
        await registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        await controller.ensure_default_class()
        await registry.create(NODES, "", _node("registered-by-hand", "Unknown"))
        name = await _released_volume(registry, controller, "standard")
        assert await registry.get_or_none(PVS, "", name) is None
        await registry.create(NODES, "", _node("up", "True"))
        await registry.create(CLASSES, "", {"metadata": {"name": "keep"}, "provisioner": vb.LOCAL_PROVISIONER,
                                            "reclaimPolicy": "Retain"})
        kept = await _released_volume(registry, controller, "keep")
        assert (await registry.get(PVS, "", kept))["status"]["phase"] == "Released"
        assert not await _annotations(registry, "up")

    asyncio.run(run())


def test_node_keys_and_the_events_that_wake_the_controller() -> None:
    assert localvolumes.node_key("pvc-1") == "delete.volumes.kubesat.io/pvc-1"
    assert localvolumes.node_key("a" * 64) is None and localvolumes.node_key("a..b") is None

    def ev(new: dict[str, Any] | None, old: dict[str, Any] | None) -> WatchEvent:
        return WatchEvent("PUT" if new else "DELETE", "/registry/minions/n",
                          None if new is None else orjson.dumps(new), None if old is None else orjson.dumps(old), 1)

    asked = {"metadata": {"annotations": {"delete.volumes.kubesat.io/pvc-1": "true"}}}
    assert localvolumes.requests_changed(ev(asked, {"metadata": {}}))
    assert localvolumes.requests_changed(ev(None, asked))
    assert not localvolumes.requests_changed(ev({**asked, "status": {"x": 1}}, asked))
