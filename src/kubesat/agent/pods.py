"""The pods bound to this node: their volumes written, their tokens kept fresh, their status reported.

One loop follows the pods (a list, then a watch, with `spec.nodeName=<node>` as the kubelet asks for
them); each pod is synced as a whole: fetch what its volumes need, build their files (`volumes`),
project them atomically (`atomic`), report the pod Running. A second loop re-syncs a pod when one of
its tokens is due by the kubelet's rule (`refresh`), and every pod each sync period, so that
ConfigMap and Secret changes reach the files.

After a restart the agent adopts what is on disk: the first sync of a pod whose volume directories exist
reads the token files back (`AtomicWriter.read`, `refresh.token_lifetime`) into the token cache, so a
token that is still fresh is neither requested again nor rewritten, and its rotation stays on schedule;
directories of pods that are no longer bound to the node (deleted while the agent was down) are removed
after each full list. The refresh rule reads its own clock (`token_clock`), which tests may run fast;
everything sent to the server is stamped with the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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
from kubesat.agent.atomic import AtomicWriter, InvalidPathError, validate_path
from kubesat.agent.client import ApiClient, ApiError
from kubesat.agent.node import rfc3339

log = logging.getLogger("kubesat.agent")

# How often every pod's volumes are rebuilt from the API (the kubelet's sync period is 1 minute).
SYNC_PERIOD = 60.0
# How often the token clock is looked at.
REFRESH_TICK = 1.0
# The longest wait between two tries of a volume that could not be set up (the kubelet's 2m2s).
MAX_MOUNT_RETRY = 122.0
# A watch is re-opened this often (the server ends it then).
WATCH_SECONDS = 300
# Failed re-syncs of a pod (server unreachable) are retried after 1 s, doubling up to this; the files stay.
MAX_SYNC_RETRY = 16.0


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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    retry_at: float = 0.0  # monotonic: no re-sync before this after a failed one
    retries: refresh.Backoff = field(default_factory=lambda: refresh.Backoff(initial=1.0, factor=2.0,
                                                                              cap=MAX_SYNC_RETRY))

    def mount_retry_due(self, now: float) -> bool:
        """A pod whose volumes could not be set up is retried with the kubelet's backoff (from 2 s, doubling
        to about 2 minutes)."""
        if not self.failed_mount:
            return False
        wait: float = min(2.0 * 2.0 ** (self.mount_failures - 1), MAX_MOUNT_RETRY)
        return now - self.synced_at >= wait


def _rfc3339(t: float) -> str:
    return rfc3339(datetime.fromtimestamp(t, UTC))


class PodManager:
    """Everything the agent does for the pods bound to its node."""

    def __init__(self, api: ApiClient, node_name: str, root: Path, node: Callable[[], dict[str, Any]],
                 address: str, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random, token_clock: Callable[[], float] | None = None,
                 tick: float = REFRESH_TICK) -> None:
        self.api = api
        self.node_name = node_name
        self.root = root
        self.node = node
        self.address = address
        self.clock = clock  # real time: timestamps sent to the server, sync periods
        self.token_clock = token_clock or clock  # the refresh rule's "now" (injectable, e.g. running fast)
        self.tick = tick
        self.rand = rand
        self.pods: dict[str, _Pod] = {}
        self._rv = ""  # the last resourceVersion seen, to resume the watch where it stopped

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
        """List (unless a watch can resume from the last resourceVersion seen), then watch until it ends.

        A watch that ends or breaks (server restart) resumes from where it was, without re-syncing every
        pod; only a 410 Gone (the resourceVersion is too old) brings back a full list.
        """
        selector = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        if not self._rv:
            listed = await self.api.get("/api/v1/pods", selector)
            seen = set()
            for pod in listed.get("items") or []:
                seen.add(pod["metadata"]["uid"])
                await self.sync(pod)
            for uid in set(self.pods) - seen:
                self.teardown(uid)
            self.remove_orphans(seen)
            self._rv = str((listed.get("metadata") or {}).get("resourceVersion", ""))
        params = dict(selector, resourceVersion=self._rv, timeoutSeconds=str(WATCH_SECONDS),
                      allowWatchBookmarks="true")
        try:
            async for kind, pod in self.api.watch("/api/v1/pods", params):
                if stop.is_set():
                    return
                rv = str((pod.get("metadata") or {}).get("resourceVersion", ""))
                if kind == "DELETED":
                    self.teardown(pod["metadata"]["uid"])
                elif kind in ("ADDED", "MODIFIED"):
                    await self.sync(pod)
                if rv:
                    self._rv = rv
        except ApiError as e:
            if e.code == 410:  # too old: list again
                self._rv = ""
                return
            raise

    def remove_orphans(self, bound: set[str]) -> None:
        """Remove the directories under ROOT/pods of pods not bound here any more (deleted while we were down)."""
        try:
            entries = list(os.scandir(self.root / "pods"))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name not in bound and entry.name not in self.pods and entry.is_dir(follow_symlinks=False):
                log.info("removing the volumes of pod %s, no longer bound to node %s", entry.name, self.node_name)
                shutil.rmtree(entry.path, ignore_errors=True)

    async def keep_fresh(self, stop: asyncio.Event) -> None:
        """Re-sync a pod when one of its tokens is due, and every pod each sync period.

        A pod whose re-sync failed (server unreachable) is retried with backoff; its files stay as they are.
        """
        while True:
            try:
                await asyncio.wait_for(stop.wait(), self.tick)
                return
            except TimeoutError:
                pass
            now, token_now, mono = self.clock(), self.token_clock(), time.monotonic()
            for state in list(self.pods.values()):
                if mono < state.retry_at:
                    continue
                due = any(refresh.requires_refresh(t.issued, t.expires, token_now, t.jitter)
                          for t in state.tokens.values())
                if due or state.mount_retry_due(now) or now - state.synced_at >= SYNC_PERIOD:
                    try:
                        await self.sync(state.obj)
                        state.retries.reset()
                        state.retry_at = 0.0
                    except (ApiError, httpx.HTTPError) as e:
                        delay = state.retries.next_delay()
                        state.retry_at = time.monotonic() + delay
                        log.warning("sync of pod %s failed (retrying in %.1f s): %s", _name(state.obj), delay, e)

    # ------------------------------------------------------------------------ one pod
    async def sync(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionTimestamp"):
            await self._finish_deletion(pod)
            return
        state = self.pods.get(uid)
        if state is None:
            state = self.pods[uid] = _Pod(pod)
            self._adopt(state, pod)
        async with state.lock:
            if self.pods.get(uid) is not state:
                return  # torn down while waiting
            await self._sync(state, pod)

    def _adopt(self, state: _Pod, pod: dict[str, Any]) -> None:
        """Take over what an earlier run of the agent left for this pod: its tokens, and its reported status.

        Each serviceAccountToken file is read back from the volume's current `..data`; a token bound to this
        pod for the planned service account goes into the cache with the lifetime the server gave it, so it
        is refreshed when the rule says and not before (and the unchanged payload is not rewritten).
        """
        uid = pod["metadata"]["uid"]
        projected = self.root / "pods" / uid / "volumes" / volumes.PLUGIN_DIRS["projected"]
        if not projected.is_dir():
            return
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            if not isinstance(vol, dict) or not isinstance(vol.get("projected"), dict):
                continue
            sources = [s["serviceAccountToken"] for s in vol["projected"].get("sources") or []
                       if isinstance(s, dict) and isinstance(s.get("serviceAccountToken"), dict)]
            if not sources:
                continue
            try:
                files = AtomicWriter(projected / str(vol.get("name", ""))).read()
            except OSError as e:
                log.warning("could not read back volume %s of pod %s: %s", vol.get("name"), _name(pod), e)
                continue
            for src in sources:
                spec = volumes.token_request(pod, src)
                try:
                    held = files.get(validate_path(str(src.get("path", ""))))
                    token = held.data.decode() if held is not None else ""
                    if spec.key in state.tokens or not token or not _bound_to(token, spec):
                        continue
                    issued, expires = refresh.token_lifetime(token)
                except (InvalidPathError, UnicodeDecodeError, refresh.TokenFormatError):
                    continue
                state.tokens[spec.key] = _Token(token, issued, expires, self.rand())
                log.info("adopted the token of pod %s in volume %s (issued %s, refresh due %s)", _name(pod),
                         vol.get("name"), _rfc3339(issued), _rfc3339(refresh.refresh_at(issued, expires)))
        if state.tokens and (pod.get("status") or {}).get("phase") == "Running":
            state.reported = True  # an earlier run reported it; its conditions' transition times stand

    async def _sync(self, state: _Pod, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
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
        if self.pods.get(uid) is not state:
            return  # deleted while its volumes were being fetched: write nothing back
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
        now = self.token_clock()
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


def _bound_to(token: str, spec: volumes.TokenRequestSpec) -> bool:
    """Whether a token read from disk is the one this projection asks for: same pod, service account, audience."""
    try:
        claims = refresh.token_claims(token)
    except refresh.TokenFormatError:
        return False
    k8s = claims.get("kubernetes.io")
    pod = k8s.get("pod") if isinstance(k8s, dict) else None
    if not isinstance(pod, dict) or pod.get("uid") != spec.pod_uid:
        return False
    if claims.get("sub") != f"system:serviceaccount:{spec.namespace}:{spec.service_account}":
        return False
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    return all(a in auds for a in spec.audiences)


def _name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
