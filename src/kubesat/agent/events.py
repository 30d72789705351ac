"""Events as the kubelet records them: shaped as client-go's recorder makes them, sent in the background.

`EventRecorder.record` never waits for the server: events go to a bounded queue that one sender drains, as
client-go's broadcaster queues them (1000 at most; past that an event is dropped with a log line, as the
kubelet's is), at most 50 a second with bursts of 100 (the kubelet's eventRecordQPS and eventBurst: its
event client is rate-limited so, and a node starting thousands of pods does not flood the API server with
their Events). `EventRecorder.send` is the same event sent at once, for the few the agent waits for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from kubesat.agent.client import ApiClient, ApiError

log = logging.getLogger("kubesat.agent")

# client-go's broadcaster queues this many events (maxQueuedEvents); more are dropped.
MAX_QUEUED_EVENTS = 1000
# KubeletConfiguration's eventRecordQPS and eventBurst defaults: the rate of the kubelet's event client.
EVENT_QPS = 50.0
EVENT_BURST = 100
COMPONENT = "kubelet"


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_ref(pod: dict[str, Any], container: str | None = None) -> dict[str, Any]:
    """The involvedObject of a pod's event; a container's events name it in fieldPath, as the kubelet's do."""
    meta = pod.get("metadata") or {}
    ref = {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name", ""),
           "namespace": meta.get("namespace", "default"), "uid": meta.get("uid", ""),
           "resourceVersion": meta.get("resourceVersion", "")}
    if container is not None:
        ref["fieldPath"] = f"spec.containers{{{container}}}"
    return ref


def node_ref(name: str) -> dict[str, Any]:
    """The kubelet's nodeRef: kind Node, the node's name where the UID goes, no namespace."""
    return {"kind": "Node", "name": name, "uid": name}


class EventRecorder:
    """Events from the kubelet on `host`, stamped with `clock` (real time)."""

    def __init__(self, api: ApiClient, host: str, clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.host = host
        self.clock = clock
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_QUEUED_EVENTS)
        self._last_ns = 0
        self.dropped = 0

    def body(self, ref: dict[str, Any], kind: str, reason: str, message: str) -> dict[str, Any]:
        """The Event: named `<object>.<unix nanoseconds in hex>` as client-go names it (unique per recorder)."""
        now = self.clock()
        ns = max(int(now * 1e9), self._last_ns + 1)
        self._last_ns = ns
        stamp = _rfc3339(now)
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{ref['name']}.{ns:x}", "namespace": ref.get("namespace") or "default"},
            "involvedObject": ref, "type": kind, "reason": reason, "message": message,
            "source": {"component": COMPONENT, "host": self.host},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "reportingComponent": COMPONENT, "reportingInstance": self.host,
        }

    def record(self, ref: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Queue an event for the sender; dropped (and logged) when the queue is full."""
        try:
            self._queue.put_nowait(self.body(ref, kind, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % MAX_QUEUED_EVENTS == 0:  # one line per thousand, not each
                log.warning("event queue full (%d queued): dropped %d events so far, the last %s %s for %s",
                            MAX_QUEUED_EVENTS, self.dropped, kind, reason, ref.get("name"))

    async def send(self, ref: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Send an event now; a failure is logged, never raised."""
        await self._post(self.body(ref, kind, reason, message))

    async def _post(self, body: dict[str, Any]) -> None:
        ns = body["metadata"]["namespace"]
        try:
            await self.api.create(f"/api/v1/namespaces/{ns}/events", body)
        except (ApiError, httpx.HTTPError) as e:
            log.warning("could not record event %s for %s %s: %s", body["reason"], body["involvedObject"]["kind"],
                        body["involvedObject"]["name"], e)

    async def run(self, qps: float = EVENT_QPS, burst: int = EVENT_BURST) -> None:
        """Send queued events one at a time, at most `qps` a second after a burst of `burst`, until cancelled."""
        tokens, last = float(burst), time.monotonic()
        while True:
            body = await self._queue.get()
            now = time.monotonic()
            tokens = min(float(burst), tokens + (now - last) * qps)
            last = now
            if tokens < 1.0:
                await asyncio.sleep((1.0 - tokens) / qps)
                tokens, last = 1.0, time.monotonic()
            tokens -= 1.0
            await self._post(body)

    def pending(self) -> int:
        return self._queue.qsize()
