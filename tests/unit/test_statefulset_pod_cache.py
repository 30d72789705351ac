"""The StatefulSet controller reads pods from its watch-fed cache: none is kept (nor decoded) while no set exists,
the first set's sync fills it once from a list, pods are made once each, and an orphan is adopted from it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kubesat.controllers.statefulset import StatefulSetController, statefulsets
from kubesat.registry.kinds import lookup_kind
from kubesat.registry.store import Registry
from kubesat.storage.memory import MemoryStore

NAMESPACES = lookup_kind("v1", "Namespace")
SERVICEACCOUNTS = lookup_kind("v1", "ServiceAccount")
PODS = lookup_kind("v1", "Pod")
EVENTS = lookup_kind("v1", "Event")


def stateful_set(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"replicas": replicas, "serviceName": "web", "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


def bare_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_pods_come_from_the_cache_filled_once_and_are_made_once() -> None:
    async def t() -> None:
        registry = Registry(MemoryStore.open())
        await registry.create(NAMESPACES, "", {"metadata": {"name": "ns"}})
        await registry.create(SERVICEACCOUNTS, "ns", {"metadata": {"name": "default"}})
        pod_lists = 0
        real_list = registry.list

        async def counting_list(info: Any, namespace: str, **kw: Any) -> Any:
            nonlocal pod_lists
            pod_lists += info is PODS
            return await real_list(info, namespace, **kw)

        registry.list = counting_list  # type: ignore[method-assign]
        controller = StatefulSetController(registry)
        await controller.start()
        try:
            await registry.create(PODS, "ns", bare_pod("other", {"app": "db"}))
            await asyncio.sleep(0.1)
            assert controller.pods.pods("ns") == []  # no set: nothing kept
            # An orphan with the set's labels and an ordinal name: the set adopts it instead of making web-1.
            await registry.create(PODS, "ns", bare_pod("web-1", {"app": "web"}))
            await registry.create(statefulsets(), "ns", stateful_set(3))

            async def three() -> bool:
                pods = (await real_list(PODS, "ns")).items
                mine = [p for p in pods if (p["metadata"].get("ownerReferences") or [{}])[0].get("kind")
                        == "StatefulSet"]
                return sorted(p["metadata"]["name"] for p in mine) == ["web-0", "web-1", "web-2"]
            await eventually(three)
            await asyncio.sleep(0.2)  # later syncs (status, expectations met) read the cache only
            created = sorted(e["message"] for e in (await real_list(EVENTS, "ns")).items
                             if e["reason"] == "SuccessfulCreate")
            assert created == ["create Pod web-0 in StatefulSet web successful",
                               "create Pod web-2 in StatefulSet web successful"]
            assert pod_lists == 1
            assert sorted(p["metadata"]["name"] for p in controller.pods.pods("ns")) == [
                "other", "web-0", "web-1", "web-2"]
        finally:
            await controller.stop()

    asyncio.run(t())
