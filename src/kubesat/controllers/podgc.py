"""The pod garbage collector: pods bound to a node that no longer exists are marked Failed and removed, as
kube-controller-manager's podgc controller does (its orphan pass), so that a deleted node's pods do not stay
Terminating for ever with nobody left to finish them.

Kubernetes checks every pod each 20 s against its informer's node list and waits a 40 s quarantine before it
trusts that a node is gone. Kubesat's registry is read directly, so it acts on what it sees: when a Node is
deleted (and once at start for nodes deleted while the server was down) it waits the same quarantine, checks
that the node is still gone, and collects that node's pods.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubesat import errors
from kubesat.controllers.base import cancel, resource_of_key, split_key, watch_in_background
from kubesat.registry.kinds import builtin_kind
from kubesat.apimachinery.selectors import parse_field_selector
from kubesat.registry.store import DeleteOptions, Registry

log = logging.getLogger("kubesat.controllers.podgc")

PODS = builtin_kind("v1", "Pod")
NODES = builtin_kind("v1", "Node")
# podgc's quarantine before a node missing from the informer counts as deleted.
QUARANTINE = 40.0
ORPHAN_CONDITION = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists"}


class PodGCController:
    def __init__(self, registry: Registry, *, quarantine: float = QUARANTINE) -> None:
        self.registry = registry
        self.quarantine = quarantine
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rev = await self.registry.revision()
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self._resync, "podgc")
        self._later(self.sweep_all())

    async def stop(self) -> None:
        await cancel(self._watch)
        for t in list(self._tasks):
            await cancel(t)

    def _later(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resync(self) -> int:
        self._later(self.sweep_all())
        return await self.registry.revision()

    async def _on_event(self, ev: Any) -> None:
        if ev.type == "DELETE" and resource_of_key(ev.key) is NODES:
            _, name = split_key(NODES, ev.key)
            self._later(self._after_quarantine(name))

    async def _after_quarantine(self, node: str) -> None:
        await asyncio.sleep(self.quarantine)
        await self.collect(node)

    async def sweep_all(self) -> None:
        """Once the quarantine has passed: collect the pods of every node that does not exist."""
        await asyncio.sleep(self.quarantine)
        nodes = {n["metadata"]["name"] for n in (await self.registry.list(NODES, "")).items}
        bound = {str((p.get("spec") or {}).get("nodeName") or "") for p in (await self.registry.list(PODS, "")).items}
        for node in sorted(bound - nodes - {""}):
            await self.collect(node)

    async def collect(self, node: str) -> int:
        """Mark Failed and delete every pod bound to `node`, if that node does not exist. Returns how many."""
        if await self.registry.get_or_none(NODES, "", node) is not None:
            return 0
        fields = parse_field_selector(f"spec.nodeName={node}", lambda f: f == "spec.nodeName", "Pod", "v1")
        pods = (await self.registry.list(PODS, "", fields=fields)).items
        done = 0
        for pod in pods:
            try:
                await self._collect_pod(pod)
                done += 1
            except errors.StatusError as e:
                if e.code not in (404, 409):
                    log.warning("podgc: removing pod %s/%s: %s", pod["metadata"].get("namespace"),
                                pod["metadata"]["name"], e.message)
        if done:
            log.info("podgc: removed %d pod(s) of deleted node %s", done, node)
        return done

    async def _collect_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", ""), meta["name"], meta.get("uid", "")
        now = self.registry.now()

        def mark_failed(current: dict[str, Any]) -> dict[str, Any]:
            status = current.setdefault("status", {})
            if status.get("phase") not in ("Succeeded", "Failed"):
                status["phase"] = "Failed"
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
            conditions.append(dict(ORPHAN_CONDITION, lastProbeTime=None, lastTransitionTime=now))
            status["conditions"] = conditions
            return current

        await self.registry.guaranteed_update(PODS, ns, name, mark_failed, subresource="status")
        await self.registry.delete(PODS, ns, name, DeleteOptions(grace_period=0, uid=uid))
