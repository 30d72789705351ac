"""A bridge agent's podCIDR (agent/node.py NodeHeartbeat.pod_cidr): the registered Node's, else the one the
server's node IPAM controller writes just after registration, read again for a bounded time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from kubesat.agent.node import NodeFacts, NodeHeartbeat


class Api:
    """The Node as a server shows it: without a podCIDR for the first `late` reads."""

    def __init__(self, late: int, cidr: str) -> None:
        self.late, self.cidr, self.reads = late, cidr, 0

    async def get(self, path: str) -> dict[str, Any]:
        assert path == "/api/v1/nodes/n1"
        self.reads += 1
        spec = {"podCIDR": self.cidr, "podCIDRs": [self.cidr]} if self.reads > self.late else {}
        return {"metadata": {"name": "n1"}, "spec": spec}


def heartbeat(api: Api, node: dict[str, Any]) -> NodeHeartbeat:
    hb = NodeHeartbeat(api, NodeFacts(name="n1", address="127.0.0.1", runtime="process"),  # type: ignore[arg-type]
                       lambda: datetime.now(UTC))
    hb.node = node
    return hb


def test_the_registered_nodes_podcidr_is_taken_without_a_read() -> None:
    api = Api(0, "10.244.9.0/24")
    hb = heartbeat(api, {"spec": {"podCIDR": "10.244.1.0/24"}})
    assert asyncio.run(hb.pod_cidr()) == "10.244.1.0/24" and api.reads == 0


def test_one_given_just_after_registration_is_waited_for() -> None:
    api = Api(2, "10.244.3.0/24")
    hb = heartbeat(api, {"spec": {}})
    assert asyncio.run(hb.pod_cidr(timeout=5, poll=0.01)) == "10.244.3.0/24" and api.reads == 3
    assert hb.node["spec"]["podCIDRs"] == ["10.244.3.0/24"]


def test_none_in_time_is_empty() -> None:
    api = Api(10**6, "10.244.3.0/24")
    hb = heartbeat(api, {"spec": "junk"})
    assert asyncio.run(hb.pod_cidr(timeout=0.1, poll=0.01)) == ""
