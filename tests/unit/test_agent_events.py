"""The agent's event recorder: the kubelet's event shape, names unique per recorder, a bounded queue that drops
past 1000 as client-go's broadcaster does, and the kubelet's event rate (eventRecordQPS/eventBurst)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubesat.agent import events
from kubesat.agent.events import EventRecorder, node_ref


class Api:
    def __init__(self) -> None:
        self.sent: list[tuple[float, dict[str, Any]]] = []

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.sent.append((time.monotonic(), body))
        return body


def test_events_are_shaped_and_named_as_the_kubelets() -> None:
    rec = EventRecorder(Api(), "n1", clock=lambda: 1_800_000_000.0)  # type: ignore[arg-type]
    a = rec.body(node_ref("n1"), "Normal", "Starting", "Starting kubelet.")
    b = rec.body(node_ref("n1"), "Normal", "NodeReady", "Node n1 status is now: NodeReady")
    assert a["metadata"]["name"] != b["metadata"]["name"]  # the same clock reading, still two names
    assert a["metadata"]["name"].startswith("n1.") and a["metadata"]["namespace"] == "default"
    assert a["involvedObject"] == {"kind": "Node", "name": "n1", "uid": "n1"}
    assert a["source"] == {"component": "kubelet", "host": "n1"} and a["count"] == 1
    assert a["firstTimestamp"] == a["lastTimestamp"] == "2027-01-15T08:00:00Z"


def test_the_queue_is_bounded() -> None:
    async def main() -> None:
        rec = EventRecorder(Api(), "n1")  # type: ignore[arg-type]
        for i in range(events.MAX_QUEUED_EVENTS + 5):
            rec.record(node_ref("n1"), "Normal", "R", str(i))
        assert rec.pending() == events.MAX_QUEUED_EVENTS and rec.dropped == 5
    asyncio.run(main())


def test_events_are_sent_at_the_kubelets_rate() -> None:
    async def main() -> None:
        api = Api()
        rec = EventRecorder(api, "n1")  # type: ignore[arg-type]
        for i in range(60):
            rec.record(node_ref("n1"), "Normal", "R", str(i))
        task = asyncio.create_task(rec.run(qps=100.0, burst=10))
        await asyncio.sleep(0.3)
        task.cancel()
        # A burst of 10 at once, then 100 a second: about 40 in 0.3 s, far from all 60.
        assert 25 <= len(api.sent) <= 45, len(api.sent)
        start = api.sent[0][0]
        assert sum(1 for at, _ in api.sent if at - start < 0.02) <= 12
    asyncio.run(main())
