"""ResourceQuota admission under racing creates, in process: a registry that yields at every read and write
interleaves the creates as a slow store would, and still no quota is charged past its hard amount."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from kubesat import errors
from kubesat.api import quota_api
from kubesat.api.resources import ResourceHandler
from kubesat.auth.quotacharges import QuotaCharges
from kubesat.controllers.resourcequota import ResourceQuotaController
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry
from kubesat.storage.memory import MemoryStore

NAMESPACES, CONFIGMAPS = builtin_kind("v1", "Namespace"), builtin_kind("v1", "ConfigMap")
QUOTAS = quota_api.QUOTAS


class YieldingRegistry(Registry):
    """Every list and write lets the other tasks run first."""

    async def list(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return await super().list(*args, **kwargs)

    async def guaranteed_update(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return await super().guaranteed_update(*args, **kwargs)

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return await super().create(*args, **kwargs)


async def _setup(hard: str) -> Registry:
    registry = YieldingRegistry(MemoryStore.open())
    await registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
    await registry.create(QUOTAS, "ns", {"metadata": {"name": "q"}, "spec": {"hard": {"configmaps": hard}}})
    await ResourceQuotaController(registry).sync("ns")
    return registry


async def _outcome(job: Any) -> int:
    try:
        await job
    except errors.StatusError as e:
        return e.code
    return 201


def test_unlocked_charges_conflict_rather_than_over_admit() -> None:
    """Without the namespace's lock, the resourceVersion guard alone keeps the count: a loser re-reads."""
    async def run() -> tuple[list[int], dict[str, Any]]:
        registry = await _setup("5")
        charges = QuotaCharges()
        outcomes = await asyncio.gather(*(_outcome(quota_api.charge(
            registry, "configmaps", "", "ns", {"metadata": {"name": f"c{i}"}}, charges.begin("ns")))
            for i in range(20)))
        return outcomes, await registry.get(QUOTAS, "ns", "q")

    outcomes, quota = asyncio.run(run())
    assert outcomes.count(201) <= 5 and set(outcomes) <= {201, 403, 409}
    assert quota["status"]["used"] == {"configmaps": str(outcomes.count(201))}


def test_admission_admits_exactly_the_room_left() -> None:
    async def run() -> tuple[list[int], int, dict[str, Any]]:
        registry = await _setup("5")
        handler = SimpleNamespace(admission=[])
        quota_api.install(cast(ResourceHandler, handler), registry)
        step = handler.admission[-1]
        request = SimpleNamespace(info=SimpleNamespace(subresource=""), query={})

        async def create(i: int) -> None:
            obj = {"metadata": {"name": f"c{i}"}}
            settle = await step(request, CONFIGMAPS, "ns", obj)
            await registry.create(CONFIGMAPS, "ns", obj)
            settle(True)

        outcomes = await asyncio.gather(*(_outcome(create(i)) for i in range(20)))
        stored = len((await registry.list(CONFIGMAPS, "ns")).items)
        return outcomes, stored, await registry.get(QUOTAS, "ns", "q")

    outcomes, stored, quota = asyncio.run(run())
    assert outcomes.count(201) == 5 and outcomes.count(403) == 15
    assert stored == 5 and quota["status"]["used"] == {"configmaps": "5"}


def test_a_recount_waits_for_the_charges_in_flight() -> None:
    async def run() -> tuple[bool, bool, dict[str, Any]]:
        registry = await _setup("5")
        charges = QuotaCharges()
        controller = ResourceQuotaController(registry, charges)
        ticket = charges.begin("ns")
        await quota_api.charge(registry, "configmaps", "", "ns", {"metadata": {"name": "c"}}, ticket)
        held = await controller.sync("ns")  # the object is not stored yet: a recount now would lose the charge
        await registry.create(CONFIGMAPS, "ns", {"metadata": {"name": "c"}})
        ticket.settle(True)
        done = await controller.sync("ns")
        return held, done, await registry.get(QUOTAS, "ns", "q")

    held, done, quota = asyncio.run(run())
    assert not held and done and quota["status"]["used"] == {"configmaps": "1"}


def test_a_status_written_by_hand_is_corrected_by_the_full_recount() -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        registry = await _setup("5")
        controller = ResourceQuotaController(registry, full_resync=0.3)
        await controller.start()
        await asyncio.sleep(0.05)  # the first sync, at start
        try:
            def by_hand(obj: dict[str, Any]) -> dict[str, Any]:
                obj["status"]["used"] = {"configmaps": "4"}
                return obj

            await registry.guaranteed_update(QUOTAS, "ns", "q", by_hand, subresource="status")
            await asyncio.sleep(0.05)
            early = await registry.get(QUOTAS, "ns", "q")  # a status-only change is no reason to recount...
            for _ in range(100):
                await asyncio.sleep(0.02)
                late = await registry.get(QUOTAS, "ns", "q")
                if late["status"]["used"] == {"configmaps": "0"}:
                    break
            return early, late  # ...but the periodic recount puts it right
        finally:
            await controller.stop()

    early, late = asyncio.run(run())
    assert early["status"]["used"] == {"configmaps": "4"} and late["status"]["used"] == {"configmaps": "0"}
