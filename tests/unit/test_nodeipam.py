"""The node IPAM controller (controllers/nodeipam.py): kube-controller-manager's RangeAllocator over a cidrset."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from kubesat.controllers import nodeipam
from kubesat.controllers.nodeipam import CidrSet, CIDRError, Exhausted, NodeIpamController, check_options
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.memory import MemoryStore

NODES = builtin_kind("v1", "Node")
EVENTS = builtin_kind("v1", "Event")
NAMESPACES = builtin_kind("v1", "Namespace")
NOW = 1_700_000_000.0


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


# =============================================================================== the cidrset
def test_next_free_in_order_then_round_robin_after_a_release() -> None:
    s = CidrSet(net("10.244.0.0/22"), 24)
    assert [str(s.allocate_next()) for _ in range(3)] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    s.release(net("10.244.0.0/24"))
    # As the cidrset: the search goes on after the last one given, then wraps around to the released one.
    assert str(s.allocate_next()) == "10.244.3.0/24"
    assert str(s.allocate_next()) == "10.244.0.0/24"
    with pytest.raises(Exhausted, match="no remaining CIDRs left"):
        s.allocate_next()
    s.release(net("10.244.2.0/24"))
    assert str(s.allocate_next()) == "10.244.2.0/24"


def test_occupy_marks_every_subnet_a_cidr_overlaps() -> None:
    s = CidrSet(net("10.0.0.0/16"), 24)
    s.occupy(net("10.0.0.0/23"))  # two subnets
    s.occupy(net("10.0.5.128/25"))  # inside one
    assert s.used() == 3 and s.is_used(net("10.0.5.0/24"))
    assert str(s.allocate_next()) == "10.0.2.0/24"
    s.occupy(net("10.0.0.0/8"))  # holds the whole cluster CIDR
    assert s.used() == 256
    with pytest.raises(Exhausted):
        s.allocate_next()
    for outside in ("10.1.0.0/24", "192.168.0.0/24", "fd00::/64"):
        with pytest.raises(CIDRError):
            s.occupy(net(outside))


def test_a_mask_equal_to_the_prefix_is_one_subnet_and_ipv6_works() -> None:
    one = CidrSet(net("10.9.0.0/24"), 24)
    assert str(one.allocate_next()) == "10.9.0.0/24"
    with pytest.raises(Exhausted):
        one.allocate_next()
    v6 = CidrSet(net("fd00:10::/48"), 64)
    assert [str(v6.allocate_next()) for _ in range(2)] == ["fd00:10::/64", "fd00:10:0:1::/64"]


def test_flags_are_checked_in_one_line() -> None:
    assert check_options("10.244.0.0/16", None) == (net("10.244.0.0/16"), 24)
    assert check_options("10.244.7.9/16", 26) == (net("10.244.0.0/16"), 26)  # host bits dropped, as Go's
    assert check_options("fd00::/48", None) == (net("fd00::/48"), 64)
    assert check_options("10.0.0.0/24", 24)[1] == 24  # kube-controller-manager allows mask == prefix
    for cidr, mask, words in [("bogus", None, "invalid CIDR address: bogus"), ("10.0.0.0", None, "invalid CIDR"),
                              ("10.0.0.0/33", None, "invalid CIDR"), ("", None, "empty"),
                              ("10.0.0.0/16", 8, "must be between"), ("10.0.0.0/16", 33, "and 32"),
                              ("fd00::/48", 96, "at most 16 bits"), ("10.0.0.0/16,fd00::/48", None, "one CIDR")]:
        with pytest.raises(CIDRError, match=words) as e:
            check_options(cidr, mask)
        assert "\n" not in str(e.value)


# =============================================================================== the controller
class Env:
    def __init__(self, cluster: str = "10.244.0.0/16", mask: int = 24) -> None:
        self.now = NOW
        self.registry = Registry(MemoryStore.open(), clock=self.clock)
        self.cluster, self.mask = net(cluster), mask
        self.controller: NodeIpamController | None = None

    def clock(self) -> float:
        self.now += 0.001
        return self.now

    async def start(self, service_cidr: Any = nodeipam.SERVICE_CIDR) -> NodeIpamController:
        if await self.registry.get_or_none(NAMESPACES, "", "default") is None:
            await self.registry.create(NAMESPACES, "", {"metadata": {"name": "default"}})  # the Events' namespace
        self.controller = NodeIpamController(self.registry, self.cluster, self.mask, service_cidr)
        await self.controller.start()
        return self.controller

    async def stop(self) -> None:
        if self.controller is not None:
            await self.controller.stop()

    async def node(self, name: str, cidr: str = "") -> dict[str, Any]:
        spec = {"podCIDR": cidr} if cidr else {}
        return await self.registry.create(NODES, "", {"metadata": {"name": name}, "spec": spec})

    async def cidr(self, name: str) -> str:
        node = await self.registry.get_or_none(NODES, "", name)
        assert node is not None
        return str((node.get("spec") or {}).get("podCIDR") or "")

    async def assigned(self, *names: str) -> str:
        """Wait until every named node has a podCIDR; the last one's."""
        async def given() -> bool:
            return all([await self.cidr(n) for n in names])
        await eventually(given)
        return await self.cidr(names[-1])

    async def events(self) -> list[dict[str, Any]]:
        return [e for e in (await self.registry.list(EVENTS, "default")).items if e["reason"] == "CIDRNotAvailable"]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_new_nodes_get_the_next_free_subnet_in_both_fields_and_keep_it() -> None:
    async def t() -> None:
        env = Env()
        await env.start()
        try:
            await env.node("a")
            await env.node("b")

            await env.assigned("a", "b")
            a = await env.registry.get_or_none(NODES, "", "a")
            assert a is not None
            assert a["spec"] == {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}
            assert await env.cidr("b") == "10.244.1.0/24"
            # A node created with a podCIDR keeps it, and that subnet is not given again.
            await env.node("c", "10.244.2.0/24")
            await env.node("d")

            await env.assigned("d")
            assert await env.cidr("c") == "10.244.2.0/24"
            assert await env.cidr("d") == "10.244.3.0/24"
        finally:
            await env.stop()
    asyncio.run(t())


def test_a_deleted_nodes_subnet_is_given_again() -> None:
    async def t() -> None:
        env = Env("10.244.0.0/23", 24)
        await env.start()
        try:
            await env.node("a")
            await env.node("b")

            await env.assigned("a", "b")
            freed = await env.cidr("a")
            await env.registry.delete(NODES, "", "a", DeleteOptions())
            await env.node("c")

            await env.assigned("c")
            assert await env.cidr("c") == freed
        finally:
            await env.stop()
    asyncio.run(t())


def test_existing_nodes_are_marked_at_start_and_the_service_range_is_skipped() -> None:
    async def t() -> None:
        env = Env("10.96.0.0/11", 12)  # two /12s: the first is kubeadm's service range
        env.mask = 12
        await env.node("old", "10.244.0.0/24")  # outside the cluster CIDR: logged, marks nothing
        await env.start()
        try:
            await env.node("new")

            await env.assigned("new")
            assert await env.cidr("new") == "10.112.0.0/12"
        finally:
            await env.stop()

        env2 = Env("10.244.0.0/22", 24)
        for name, cidr in [("a", "10.244.0.0/24"), ("b", "10.244.2.0/24")]:
            await env2.node(name, cidr)
        await env2.node("waiting")  # created while no controller ran
        controller = await env2.start()
        try:
            await env2.assigned("waiting")
            assert await env2.cidr("waiting") == "10.244.1.0/24"
            assert controller.cidrs.used() == 3
        finally:
            await env2.stop()
    asyncio.run(t())


def test_exhaustion_gives_the_event_and_no_cidr_until_one_is_freed() -> None:
    async def t() -> None:
        env = Env("10.244.0.0/24", 25)  # two subnets
        await env.start()
        try:
            for name in ("a", "b", "c"):
                await env.node(name)

            async def event() -> bool:
                return bool(await env.events())
            await eventually(event)
            assert await env.cidr("c") == ""
            ev = (await env.events())[0]
            assert ev["message"] == "Node c status is now: CIDRNotAvailable"
            assert ev["type"] == "Normal" and ev["source"] == {"component": "cidrAllocator"}
            assert ev["involvedObject"]["kind"] == "Node" and ev["involvedObject"]["name"] == "c"
            freed = await env.cidr("a")
            await env.registry.delete(NODES, "", "a", DeleteOptions())

            await env.assigned("c")
            assert await env.cidr("c") == freed
        finally:
            await env.stop()
    asyncio.run(t())


def test_hostile_stored_nodes_do_not_stop_the_controller() -> None:
    async def t() -> None:
        env = Env("10.244.0.0/22", 24)
        store = env.registry.store
        # Written past the API's validation, as an older version or another writer might have left them.
        for name, spec in [("garbage", {"podCIDR": "not-a-cidr", "podCIDRs": ["not-a-cidr"]}),
                           ("ipv6", {"podCIDRs": ["fd00::/64"]}),
                           ("wrongtype", "junk"),
                           ("list", {"podCIDRs": "10.244.0.0/24"}),
                           ("whole", {"podCIDRs": ["10.244.1.0/24"]})]:
            await store.create(NODES.key("", name), orjson.dumps({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": name}, "spec": spec}))
        controller = await env.start()
        try:
            await env.node("fresh")

            await env.assigned("fresh")
            assert await env.cidr("fresh") not in ("10.244.1.0/24", "")
            assert controller.cidrs.is_used(net("10.244.1.0/24"))
            assert await env.cidr("garbage") == "not-a-cidr"  # left as it is
        finally:
            await env.stop()
    asyncio.run(t())
