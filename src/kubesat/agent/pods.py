"""The pods bound to this node: their volumes written, their tokens kept fresh, their status reported.

One loop follows the pods (a list, then a watch, with `spec.nodeName=<node>` as the kubelet asks for
them); each pod is synced as a whole: fetch what its volumes need, build their files (`volumes`),
project them atomically (`atomic`), report the pod Running. A second loop re-syncs a pod when one of
its tokens is due by the kubelet's rule (`refresh`), and every pod each sync period, so that
ConfigMap and Secret changes reach the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from kubesat.agent import refresh, volumes
from kubesat.agent.atomic import AtomicWriter
from kubesat.agent.client import ApiClient, ApiError

log = logging.getLogger("kubesat.agent")

# How often every pod's volumes are rebuilt from the API (the kubelet's sync period is 1 minute).
SYNC_PERIOD = 60.0
# How often the token clock is looked at.
REFRESH_TICK = 1.0
# The longest wait between two tries of a volume that could not be set up (the kubelet's 2m2s).
MAX_MOUNT_RETRY = 122.0
# A watch is re-opened this often (the server ends it then).
WATCH_SECONDS = 300


@dataclass
class _Token:
    value: str
    issued: float
    expires: float
    jitter: float


@dataclass
class _Pod:
    obj: dict[str, Any]
    tokens: dict[str, _Token] = field(default_factory=dict)
    writers: dict[str, AtomicWriter] = field(default_factory=dict)
    reported: bool = False
    failed_mount: str | None = None
    mount_failures: int = 0
    synced_at: float = 0.0

    def mount_retry_due(self, now: float) -> bool:
        """A pod whose volumes could not be set up is retried with the kubelet's backoff (from 2 s, doubling
        to about 2 minutes)."""
        if not self.failed_mount:
            return False
        wait: float = min(2.0 * 2.0 ** (self.mount_failures - 1), MAX_MOUNT_RETRY)
        return now - self.synced_at >= wait


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodManager:
    """Everything the agent does for the pods bound to its node."""

    def __init__(self, api: ApiClient, node_name: str, root: Path, node: Callable[[], dict[str, Any]],
                 address: str, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random) -> None:
        self.api = api
        self.node_name = node_name
        self.root = root
        self.node = node
        self.address = address
        self.clock = clock
        self.rand = rand
        self.pods: dict[str, _Pod] = {}

    # ------------------------------------------------------------------ following the pods
    async def follow(self, stop: asyncio.Event) -> None:
        """List and watch this node's pods until stopped; a lost connection is retried with backoff."""
        backoff = refresh.Backoff(initial=1.0, factor=2.0, cap=30.0)
        while not stop.is_set():
            try:
                await self._list_and_watch(stop)
                backoff.reset()
            except (ApiError, httpx.HTTPError) as e:
                delay = backoff.next_delay()
                log.warning("pod watch for node %s failed (retrying in %.0f s): %s", self.node_name, delay, e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _list_and_watch(self, stop: asyncio.Event) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        listed = await self.api.get("/api/v1/pods", selector)
        seen = set()
        for pod in listed.get("items") or []:
            seen.add(pod["metadata"]["uid"])
            await self.sync(pod)
        for uid in set(self.pods) - seen:
            self.teardown(uid)
        rv = str((listed.get("metadata") or {}).get("resourceVersion", ""))
        params = dict(selector, resourceVersion=rv, timeoutSeconds=str(WATCH_SECONDS))
        async for kind, pod in self.api.watch("/api/v1/pods", params):
            if stop.is_set():
                return
            if kind == "DELETED":
                self.teardown(pod["metadata"]["uid"])
            elif kind in ("ADDED", "MODIFIED"):
                await self.sync(pod)

    async def keep_fresh(self, stop: asyncio.Event) -> None:
        """Re-sync a pod when one of its tokens is due, and every pod each sync period."""
        while True:
            try:
                await asyncio.wait_for(stop.wait(), REFRESH_TICK)
                return
            except TimeoutError:
                pass
            now = self.clock()
            for state in list(self.pods.values()):
                due = any(refresh.requires_refresh(t.issued, t.expires, now, t.jitter) for t in state.tokens.values())
                if due or state.mount_retry_due(now) or now - state.synced_at >= SYNC_PERIOD:
                    try:
                        await self.sync(state.obj)
                    except (ApiError, httpx.HTTPError) as e:
                        log.warning("sync of pod %s failed: %s", _name(state.obj), e)

    # ------------------------------------------------------------------------ one pod
    async def sync(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionTimestamp"):
            await self._finish_deletion(pod)
            return
        state = self.pods.setdefault(uid, _Pod(pod))
        state.obj = pod
        state.synced_at = self.clock()
        plan = volumes.plan(pod)
        ns = pod["metadata"].get("namespace", "default")
        fetched = volumes.Fetched(
            configmaps={n: await self._get_or_none(f"/api/v1/namespaces/{ns}/configmaps/{n}") for n in plan.configmaps},
            secrets={n: await self._get_or_none(f"/api/v1/namespaces/{ns}/secrets/{n}") for n in plan.secrets},
        )
        errors = await self._tokens(state, plan, fetched)
        results = volumes.payloads(pod, fetched, self.node())
        errors += [r.event_message for r in results.values() if r.event_message]
        if errors:
            await self._failed_mount(state, errors[0])
            return
        pod_dir = self.root / "pods" / uid
        for result in results.values():
            target = pod_dir / result.rel_dir
            if result.kind == "files":
                writer = state.writers.get(result.name)
                if writer is None:
                    writer = state.writers[result.name] = AtomicWriter(target, f"{_name(pod)}/{result.name}")
                writer.write(result.files, result.uid, result.gid)
                writer.prune()
            elif result.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
        if not state.reported or state.failed_mount:
            await self._report_running(state)

    async def _tokens(self, state: _Pod, plan: volumes.VolumePlan, fetched: volumes.Fetched) -> list[str]:
        """Fresh tokens into `fetched.tokens`; a failed refresh keeps the old token while it is valid."""
        errors: list[str] = []
        now = self.clock()
        for spec in plan.tokens:
            held = state.tokens.get(spec.key)
            if held is None or refresh.requires_refresh(held.issued, held.expires, now, held.jitter):
                try:
                    answer = await self.api.create(
                        f"/api/v1/namespaces/{spec.namespace}/serviceaccounts/{spec.service_account}/token",
                        spec.body())
                    issued, expires = refresh.token_request_times(answer)
                    held = state.tokens[spec.key] = _Token(answer["status"]["token"], issued, expires, self.rand())
                except (ApiError, httpx.HTTPError) as e:
                    problem = refresh.fetch_error(spec.key, str(e), held is not None,
                                                  held is not None and refresh.expired(held.expires, now))
                    if problem:
                        errors.append(problem)
                    if held is None or problem:
                        continue
            fetched.tokens[spec.key] = held.value
        return errors

    async def _get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.api.get(path)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def _failed_mount(self, state: _Pod, message: str) -> None:
        state.mount_failures += 1
        if state.failed_mount == message:
            return
        state.failed_mount = message
        await self.event(state.obj, "Warning", "FailedMount", message)

    async def _report_running(self, state: _Pod) -> None:
        """The pod Running, as the kubelet reports a pod whose containers started (no runtime yet: at once)."""
        pod = state.obj
        now = _rfc3339(self.clock())
        status = pod.get("status") or {}
        started = status.get("startTime") or now
        conditions = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                      for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")]
        containers = [{
            "name": c.get("name", ""), "image": c.get("image", ""), "imageID": "",
            "containerID": f"kubesat://{pod['metadata']['uid']}/{c.get('name', '')}",
            "ready": True, "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}},
        } for c in (pod.get("spec") or {}).get("containers") or []]
        patch = {"status": {
            "phase": "Running", "hostIP": self.address, "hostIPs": [{"ip": self.address}],
            "podIP": self.address, "podIPs": [{"ip": self.address}], "startTime": started,
            "conditions": conditions, "containerStatuses": containers,
        }}
        ns, name = pod["metadata"].get("namespace", "default"), pod["metadata"]["name"]
        state.obj = await self.api.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", patch)
        state.reported = True
        state.failed_mount = None
        state.mount_failures = 0

    async def _finish_deletion(self, pod: dict[str, Any]) -> None:
        """A pod being deleted: its files go, then the pod (grace already honoured by the caller's wait)."""
        uid = pod["metadata"]["uid"]
        self.teardown(uid)
        ns, name = pod["metadata"].get("namespace", "default"), pod["metadata"]["name"]
        try:
            await self.api.delete(f"/api/v1/namespaces/{ns}/pods/{name}",
                                  {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    def teardown(self, uid: str) -> None:
        """Forget a pod and remove its directory."""
        self.pods.pop(uid, None)
        shutil.rmtree(self.root / "pods" / uid, ignore_errors=True)

    async def event(self, pod: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        ns = meta.get("namespace", "default")
        now = _rfc3339(self.clock())
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{int(self.clock() * 1e9):x}", "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": ns,
                               "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion", "")},
            "type": kind, "reason": reason, "message": message,
            "source": {"component": "kubelet", "host": self.node_name},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": "kubelet", "reportingInstance": self.node_name,
        }
        try:
            await self.api.create(f"/api/v1/namespaces/{ns}/events", body)
        except ApiError as e:
            log.warning("could not record event %s for pod %s: %s", reason, _name(pod), e)


def _name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
