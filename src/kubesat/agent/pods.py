"""The pods bound to this node: their volumes written, their tokens kept fresh, their status reported.

One loop follows the pods (a list, then a watch, with `spec.nodeName=<node>` as the kubelet asks for them) and
hands each pod to a pool of workers (`SYNC_WORKERS`, one pod at a time per worker, the newest object of a pod
wins): a new pod is synced as a whole (fetch what its volumes need, build their files with `volumes`, project
them atomically with `atomic`, report the pod Running); an update that changes none of a pod's inputs (our own
status write comes back as one) only replaces the object kept. A second loop hands a pod back to the workers
when one of its tokens is due by the kubelet's rule (`refresh`): the token-only refresh requests that token and
swaps just its files (`AtomicWriter.update`: the other files of the volume are linked from the current
generation, not rebuilt); and every `SYNC_PERIOD` for a whole re-sync, so that ConfigMap and Secret changes
reach the files (objects are read through a cache of `OBJECT_TTL` seconds, the kubelet's `Cache` strategy: a
change reaches the files within a minute).

What is kept per pod is trimmed (`_trim`): the metadata, the spec's fields the volumes and status use, the
status fields reported, each token once; the payloads themselves are not kept.

After a restart the agent adopts what is on disk: the first sync of a pod whose volume directories exist reads
the token files back (`AtomicWriter.read`, `refresh.token_lifetime`) into the token cache, so a token that is
still fresh is neither requested again nor rewritten, and its rotation stays on schedule (its jitter derives
from the token itself: `refresh.stable_jitter`); directories of pods that are no longer bound to the node
(deleted while the agent was down) are removed after each full list.

The refresh rule reads its own clock (`token_clock`), which tests may run fast; everything sent to the server is
stamped with the real one. A token's times come from the server's (real) clock, so on arrival they are moved
into the refresh clock's frame: by how far that clock has run ahead of real time so far (`_lead`). A token then
ages at the refresh clock's rate from the moment it arrived, and is refreshed at 80 % of its own life as the
server issued it, however long the fast clock has been running.

A pod being deleted (deletionTimestamp set) is terminated as the kubelet terminates a running pod: its
containers stopped within the grace period (`Runtime.stop_pod`, the seam a runtime plugs into; with no runtime
there is no process to stop, and the agent records the `Killing` Event per running container that the runtime
would), the status written terminal, the volumes torn down, then the pod deleted with grace 0 and a UID
precondition, which removes it from the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from kubesat.agent import claims, refresh, volumes
from kubesat.agent.atomic import REPLACED_GRACE, AtomicWriter, FileProjection, InvalidPathError, validate_path
from kubesat.agent.client import ApiClient, ApiError
from kubesat.agent.events import EventRecorder, pod_ref
from kubesat.agent.node import rfc3339
from kubesat.agent.containers import Containers
from kubesat.agent.runtime import Runtime

log = logging.getLogger("kubesat.agent")

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

# How often every pod's volumes are rebuilt from the API (the kubelet's sync period is 1 minute); with the
# object cache's TTL, a ConfigMap or Secret change reaches the files within 60 s.
SYNC_PERIOD = 55.0
OBJECT_TTL = 5.0
# At most this many ConfigMaps and Secrets are cached (expired ones go first; then all).
MAX_CACHED_OBJECTS = 4096
# How often the token clock is looked at.
REFRESH_TICK = 1.0
# The longest wait between two tries of a volume that could not be set up (the kubelet's 2m2s).
MAX_MOUNT_RETRY = 122.0
# A watch is re-opened this often (the server ends it then).
WATCH_SECONDS = 300
# Failed re-syncs of a pod (server unreachable) are retried after 1 s, doubling up to this; the files stay.
MAX_SYNC_RETRY = 16.0
# Pods synced at once (the kubelet has a worker per pod; here a pool shares one connection pool).
SYNC_WORKERS = 8
# Status writes at once. As the kubelet's status manager, they are made apart from the pod syncs, so that
# writing a pod's volumes never waits for another pod's status patch.
STATUS_WORKERS = 4

# What the kubelet's status manager writes for a container the runtime has no record of when the pod is
# terminated (TerminatePod): with no runtime, that is every container.
UNKNOWN_TERMINATION = {"exitCode": 137, "reason": "ContainerStatusUnknown",
                       "message": "The container could not be located when the pod was terminated"}

_ACTIVE, _TERMINATING, _TERMINATED = 0, 1, 2


@dataclass(slots=True)
class _Token:
    value: str
    issued: float  # on the refresh clock (see `PodManager._lead`)
    expires: float
    jitter: float
    due: float = 0.0

    def __post_init__(self) -> None:
        self.due = refresh.refresh_at(self.issued, self.expires, self.jitter)

    def needs_refresh(self, now: float) -> bool:
        """The kubelet's rule (refresh.requires_refresh), with the refresh point worked out once."""
        return now > self.due or now < self.issued


# The Event a process-runtime pod gets at its start when the agent gives pods no network of their own.
SHARED_NETWORK_REASON = "SharedHostNetwork"
SHARED_NETWORK_MESSAGE = ("kubesat runs this pod in the node's network: its IP is the node's and its containers' "
                          "ports are the host's, shared with every other pod (no pod network: {why})")


@dataclass(slots=True, eq=False)
class _Pod:
    # The trimmed pod as JSON: one buffer outside Python's small-object heap, where its hundreds of small dicts
    # and strings would pin half-empty arenas left by the watch's parsing (the agent's RSS with 5000 pods).
    raw: bytes
    tokens: dict[str, _Token] = field(default_factory=dict)
    writers: dict[str, AtomicWriter] = field(default_factory=dict)
    reported: bool = False
    failed_mount: str | None = None
    mount_failures: int = 0
    synced_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stale: bool = True  # a whole sync is needed: never synced, or the last try failed
    report_due: bool = False  # volumes written, Running not yet reported (the status workers' queue)
    report_retry_at: float = 0.0  # monotonic: no new try of the report before this after a failed one
    retry_at: float = 0.0  # monotonic: no new try before this after a failed one
    failures: int = 0
    prune_at: float = 0.0  # monotonic: replaced generations of its volumes can go then (0: none)
    life: int = _ACTIVE
    stopped: dict[str, dict[str, Any]] | None = None  # once stopped: container -> state.terminated from the runtime

    def mount_retry_due(self, now: float) -> bool:
        """A pod whose volumes could not be set up is retried with the kubelet's backoff (from 2 s, doubling
        to about 2 minutes)."""
        if not self.failed_mount:
            return False
        wait: float = min(2.0 * 2.0 ** (self.mount_failures - 1), MAX_MOUNT_RETRY)
        return now - self.synced_at >= wait

    def tokens_due(self, now: float) -> bool:
        return any(t.needs_refresh(now) for t in self.tokens.values())

    @property
    def obj(self) -> dict[str, Any]:
        """The trimmed pod (a fresh copy: change it by assigning)."""
        pod: dict[str, Any] = orjson.loads(self.raw)
        return pod

    @obj.setter
    def obj(self, pod: dict[str, Any]) -> None:
        self.raw = orjson.dumps(pod)


def _rfc3339(t: float) -> str:
    return rfc3339(datetime.fromtimestamp(t, UTC))


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


_META_KEPT = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "deletionTimestamp",
              "deletionGracePeriodSeconds")
_SPEC_KEPT = ("volumes", "serviceAccountName", "serviceAccount", "nodeName", "securityContext",
              "terminationGracePeriodSeconds", "restartPolicy")
_CONTAINER_KEPT = ("name", "image", "securityContext", "resources", "tty")  # tty: the kubelet API's attach
_CONTAINER_STATUS_KEPT = ("name", "image", "imageID", "containerID", "restartCount", "state")
_STATUS_KEPT = ("phase", "startTime")


def _trim(pod: dict[str, Any]) -> dict[str, Any]:
    """What the agent keeps of a pod: what its volumes, its status, its termination and attach (a container's
    `tty`) read, nothing else (managedFields, conditions, other spec fields go)."""
    meta, spec, status = _d(pod.get("metadata")), _d(pod.get("spec")), _d(pod.get("status"))
    out_spec = {k: spec[k] for k in _SPEC_KEPT if k in spec}
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        if isinstance(spec.get(kind), list):
            out_spec[kind] = [{k: c[k] for k in _CONTAINER_KEPT if k in c} for c in spec[kind] if isinstance(c, dict)]
    out_status = {k: status[k] for k in _STATUS_KEPT if k in status}
    if isinstance(status.get("containerStatuses"), list):
        out_status["containerStatuses"] = [{k: c[k] for k in _CONTAINER_STATUS_KEPT if k in c}
                                           for c in status["containerStatuses"] if isinstance(c, dict)]
    return {"metadata": {k: meta[k] for k in _META_KEPT if k in meta}, "spec": out_spec, "status": out_status}


def _inputs_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether an update changes what the pod's files are made of (its spec, or labels/annotations for the
    downward API)."""
    om, nm = old["metadata"], new["metadata"]
    return bool(old["spec"] != new["spec"] or om.get("labels") != nm.get("labels")
                or om.get("annotations") != nm.get("annotations"))


class PodManager:
    """Everything the agent does for the pods bound to its node."""

    def __init__(self, api: ApiClient, node_name: str, root: Path, node: Callable[[], dict[str, Any]],
                 address: str, clock: Callable[[], float] = time.time, token_clock: Callable[[], float] | None = None,
                 tick: float = REFRESH_TICK, clock_offset: float = 0.0, runtime: Runtime | None = None,
                 workers: int = SYNC_WORKERS, rand: Callable[[], float] = random.random) -> None:
        self.api = api
        self.node_name = node_name
        self.root = root
        self.node = node
        self.address = address
        self.clock = clock  # real time: timestamps sent to the server, sync periods
        self.token_clock = token_clock or clock  # the refresh rule's "now" (injectable, e.g. running fast)
        self.clock_offset = clock_offset  # the refresh clock's fixed shift (part of a token's age, unlike its rate)
        self.tick = tick
        self.rand = rand  # retry backoff spread
        self.runtime = runtime  # None: no processes (containers reported running once the volumes are written)
        self.workers = workers
        self.events = EventRecorder(api, node_name, clock)
        self.pods: dict[str, _Pod] = {}
        self._rv = ""  # the last resourceVersion seen, to resume the watch where it stopped
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()  # uids in the queue (each at most once)
        self._status_queue: asyncio.Queue[str] = asyncio.Queue()
        self._status_queued: set[str] = set()
        self._incoming: dict[str, bytes] = {}  # uid -> the newest object not yet handled (trimmed, as JSON)
        self._objects: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}  # ConfigMaps and Secrets

    # ------------------------------------------------------------------ following the pods
    async def follow(self, stop: asyncio.Event) -> None:
        """List and watch this node's pods until stopped (a lost connection is retried with backoff), with the
        sync workers and the event sender running beside."""
        helpers = [asyncio.create_task(_serve_queue(self._queue, self._queued, self.work, "sync"))
                   for _ in range(self.workers)]
        helpers += [asyncio.create_task(_serve_queue(self._status_queue, self._status_queued, self.report,
                                                     "status report"))
                    for _ in range(STATUS_WORKERS)]
        helpers.append(asyncio.create_task(self.events.run()))
        backoff = refresh.Backoff(initial=1.0, factor=2.0, cap=30.0)
        try:
            while not stop.is_set():
                try:
                    await self._list_and_watch(stop)
                    backoff.reset()
                except (ApiError, httpx.HTTPError) as e:
                    delay = backoff.next_delay()
                    log.warning("pod watch for node %s failed (retrying in %.0f s): %s", self.node_name, delay, e)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _list_and_watch(self, stop: asyncio.Event) -> None:
        """List (unless a watch can resume from the last resourceVersion seen), then watch until it ends.

        A watch that ends or breaks (server restart) resumes from where it was, without re-syncing every
        pod; only a 410 Gone (the resourceVersion is too old) brings back a full list.
        """
        selector = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        if not self._rv:
            self._rv = await self._relist(selector)
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
                    self.offer(pod)
                if rv:
                    self._rv = rv
        except ApiError as e:
            if e.code == 410:  # too old: list again
                self._rv = ""
                return
            raise

    async def _relist(self, selector: dict[str, str]) -> str:
        """Offer every listed pod, tear down those gone, and return the list's resourceVersion. In a method of
        its own so that the parsed list (7 KB a pod) is freed before the watch that follows, not held by it."""
        listed = await self.api.get("/api/v1/pods", selector)
        seen = set()
        for pod in listed.get("items") or []:
            seen.add(pod["metadata"]["uid"])
            self.offer(pod)
        for uid in set(self.pods) - seen:
            self.teardown(uid)
        self.remove_orphans(seen)
        return str((listed.get("metadata") or {}).get("resourceVersion", ""))

    def offer(self, pod: dict[str, Any]) -> None:
        """Hand the newest object of a pod to the workers. A mirror pod (the API's picture of a static pod, e.g.
        the server's kube-apiserver pod) is not the agent's to run, as the kubelet never runs one."""
        if MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
            return
        uid = pod["metadata"]["uid"]
        self._incoming[uid] = orjson.dumps(_trim(pod))
        self._enqueue(uid)

    def _enqueue(self, uid: str) -> None:
        if uid not in self._queued:
            self._queued.add(uid)
            self._queue.put_nowait(uid)

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
        """Each tick: hand the workers every pod with a token due, a sync period past, a failed volume to retry
        or a failed step whose backoff is over; remove replaced volume generations past their grace."""
        while True:
            try:
                await asyncio.wait_for(stop.wait(), self.tick)
                return
            except TimeoutError:
                pass
            self.check(self.clock(), self.token_clock(), time.monotonic())

    def check(self, now: float, token_now: float, mono: float) -> None:
        """One tick of `keep_fresh`."""
        self._expire_objects(mono, full=False)
        for uid, state in self.pods.items():
            if state.prune_at and mono >= state.prune_at:
                state.prune_at = 0.0
                for writer in state.writers.values():
                    with contextlib.suppress(OSError):
                        if writer.prune():
                            state.prune_at = mono + writer.grace
            if state.report_due and mono >= state.report_retry_at:
                self._report_later(uid)
            if uid in self._queued or mono < state.retry_at or state.life == _TERMINATED:
                continue
            if (state.life == _TERMINATING or state.stale or state.mount_retry_due(now)
                    or (not state.failed_mount and now - state.synced_at >= SYNC_PERIOD)
                    or state.tokens_due(token_now)):
                self._enqueue(uid)

    def _report_later(self, uid: str) -> None:
        if uid not in self._status_queued:
            self._status_queued.add(uid)
            self._status_queue.put_nowait(uid)

    async def report(self, uid: str) -> None:
        """Report a pod whose volumes are written Running; a failure is retried with backoff."""
        state = self.pods.get(uid)
        if state is None or not state.report_due:
            return
        async with state.lock:
            if self.pods.get(uid) is not state or not state.report_due or state.life != _ACTIVE:
                return
            try:
                await self._report_running(state)
                state.report_due = False
            except (ApiError, httpx.HTTPError) as e:
                delay = min(MAX_SYNC_RETRY, 2.0 ** state.failures) * (1 + 0.1 * self.rand())
                state.failures += 1
                state.report_retry_at = time.monotonic() + delay
                log.warning("status of pod %s not written (retrying in %.1f s): %s", uid, delay, e)

    # ------------------------------------------------------------------------ one pod
    async def work(self, uid: str) -> None:
        """Do what a pod needs now: terminate it, sync it whole, refresh its due tokens, or keep its newest object.

        A step that fails (server unreachable, disk error) is retried with backoff; the files stay as they are.
        """
        raw = self._incoming.pop(uid, None)
        state = self.pods.get(uid)
        if state is None:
            if raw is None:
                return
            state = self.pods[uid] = _Pod(raw)
            self._adopt(state, state.obj)
        async with state.lock:
            if self.pods.get(uid) is not state:
                return  # torn down while waiting
            changed = False
            if raw is None or raw == state.raw:
                pod = state.obj
            else:
                pod = orjson.loads(raw)
                changed = _inputs_changed(state.obj, pod)
                state.raw = raw
            try:
                await self._step(state, pod, changed)
                state.failures = 0
                state.retry_at = 0.0
            except (ApiError, httpx.HTTPError, OSError) as e:
                state.stale = True
                delay = min(MAX_SYNC_RETRY, 2.0 ** state.failures) * (1 + 0.1 * self.rand())
                state.failures += 1
                state.retry_at = time.monotonic() + delay
                log.warning("sync of pod %s failed (retrying in %.1f s): %s", _name(pod), delay, e)

    async def _step(self, state: _Pod, pod: dict[str, Any], changed: bool) -> None:
        if pod["metadata"].get("deletionTimestamp") or state.life != _ACTIVE:
            if state.life != _TERMINATED:
                await self._terminate(state, pod)
            return
        now = self.clock()
        if (state.stale or state.failed_mount or (not state.reported and not state.report_due) or changed
                or now - state.synced_at >= SYNC_PERIOD):
            await self._sync(state, pod)
        elif state.tokens_due(self.token_clock()):
            await self._refresh_tokens(state)

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
                adopted = state.tokens[spec.key] = self._token(token, issued, expires)
                log.info("adopted the token of pod %s in volume %s (issued %s, refresh due %s)", _name(pod),
                         vol.get("name"), _rfc3339(issued), _rfc3339(adopted.due - self._lead()))
        if state.tokens and (pod.get("status") or {}).get("phase") == "Running":
            state.reported = True  # an earlier run reported it; its conditions' transition times stand

    def _lead(self) -> float:
        """How far the refresh clock has run ahead of real time (its fixed offset aside): 0 unless a test runs
        it fast. Added to the server's times of a token as it arrives, so that its age on the refresh clock is
        its age when it arrived, plus the time since on that clock, plus the offset."""
        return self.token_clock() - self.clock() - self.clock_offset

    def _token(self, value: str, issued: float, expires: float) -> _Token:
        """A token with the server's (real-time) issue and expiry, in the refresh clock's frame."""
        lead = self._lead()
        return _Token(value, issued + lead, expires + lead, refresh.stable_jitter(value))

    async def _sync(self, state: _Pod, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        state.obj = pod
        state.synced_at = self.clock()
        plan = volumes.plan(pod)
        ns = pod["metadata"].get("namespace", "default")
        fetched = volumes.Fetched(
            configmaps={n: await self._object("configmaps", ns, n) for n in plan.configmaps},
            secrets={n: await self._object("secrets", ns, n) for n in plan.secrets},
            claims=await claims.resolve_all(self._get_or_none, pod, plan.claims, self.root),
        )
        errors = await self._tokens(state, plan, fetched)
        results = volumes.payloads(pod, fetched, self.node())
        errors += [r.event_message for r in results.values() if r.event_message]
        state.stale = False
        if errors:
            self._failed_mount(state, errors[0])
            return
        if self.pods.get(uid) is not state:
            return  # deleted while its volumes were being fetched: write nothing back
        pod_dir = self.root / "pods" / uid
        for result in results.values():
            if result.kind == "files" and result.name not in state.writers:
                state.writers[result.name] = AtomicWriter(pod_dir / result.rel_dir)
        # The files are written in a thread: on a slow filesystem each creation can take a millisecond of
        # wall time, which would stall every other pod's requests on the event loop. One pod's volumes are
        # only ever written by the worker holding its lock.
        if await asyncio.to_thread(_write_volumes, state.writers, results, pod_dir):
            state.prune_at = time.monotonic() + REPLACED_GRACE
        if self.pods.get(uid) is not state:
            shutil.rmtree(pod_dir, ignore_errors=True)  # torn down while being written
            return
        if isinstance(self.runtime, Containers):  # a runtime that runs processes reports the status itself
            if not state.reported and self.runtime.shares_host_network and \
                    not (state.obj.get("spec") or {}).get("hostNetwork"):
                # No pod network: say so on the pod, once, where `kubectl describe` shows it.
                self.events.record(pod_ref(state.obj), "Normal", SHARED_NETWORK_REASON,
                                   SHARED_NETWORK_MESSAGE.format(why=self.runtime.host_network_why or "host"))
            await self.runtime.sync(state.obj, results)
            state.reported, state.failed_mount, state.mount_failures = True, None, 0
        elif not state.reported or state.failed_mount:
            state.failed_mount, state.mount_failures = None, 0
            state.report_due = True
            self._report_later(uid)

    async def _tokens(self, state: _Pod, plan: volumes.VolumePlan, fetched: volumes.Fetched) -> list[str]:
        """Fresh tokens into `fetched.tokens`; a failed refresh keeps the old token while it is valid."""
        errors: list[str] = []
        now = self.token_clock()
        for spec in plan.tokens:
            held = state.tokens.get(spec.key)
            if held is None or held.needs_refresh(now):
                try:
                    held = state.tokens[spec.key] = await self._request_token(spec)
                except (ApiError, httpx.HTTPError) as e:
                    problem = refresh.fetch_error(spec.key, str(e), held is not None,
                                                  held is not None and refresh.expired(held.expires, now))
                    if problem:
                        errors.append(problem)
                    if held is None or problem:
                        continue
            fetched.tokens[spec.key] = held.value
        return errors

    async def _request_token(self, spec: volumes.TokenRequestSpec) -> _Token:
        """A TokenRequest for one projection; each outcome is one log line naming the pod, its ServiceAccount and
        the audiences (never the token), so that the node's log answers "is the token being rotated?"."""
        who = (f'pod="{spec.namespace}/{spec.pod_name}" serviceAccount="{spec.service_account}" '
               f"audiences={list(spec.audiences) or ['(API audiences)']}")
        try:
            answer = await self.api.create(
                f"/api/v1/namespaces/{spec.namespace}/serviceaccounts/{spec.service_account}/token", spec.body())
            issued, expires = refresh.token_request_times(answer)
        except (ApiError, httpx.HTTPError, KeyError, TypeError, ValueError) as e:
            log.warning('Couldn\'t update token %s cacheKey="%s" err="%s"', who, spec.key, e)
            raise
        log.info("Token refreshed %s expirationSeconds=%d expires=%s", who, spec.expiration_seconds,
                 _rfc3339(expires))
        return self._token(str(answer["status"]["token"]), issued, expires)

    async def _refresh_tokens(self, state: _Pod) -> None:
        """The token-only refresh: request each due token and swap just its files, keeping the rest of each
        volume as the last sync wrote it. A failed request keeps the old token in place while it is valid
        (and is retried with backoff); past its expiry it is the kubelet's FailedMount."""
        pod = state.obj
        now = self.token_clock()
        fresh: dict[str, str] = {}
        for spec in volumes.plan(pod).tokens:
            held = state.tokens.get(spec.key)
            if held is not None and not held.needs_refresh(now):
                continue
            try:
                state.tokens[spec.key] = token = await self._request_token(spec)
            except (ApiError, httpx.HTTPError) as e:
                problem = refresh.fetch_error(spec.key, str(e), held is not None,
                                              held is not None and refresh.expired(held.expires, now))
                if problem:
                    self._failed_mount(state, problem)
                raise
            fresh[spec.key] = token.value
        files: dict[str, dict[str, FileProjection]] = {}
        gids: dict[str, int | None] = {}
        for tf in volumes.token_files(pod):
            if tf.key in fresh:
                files.setdefault(tf.volume, {})[tf.path] = FileProjection(fresh[tf.key].encode(), tf.mode, tf.uid)
                gids[tf.volume] = tf.gid
        for name, changed in files.items():
            writer = state.writers.get(name)
            if writer is None or writer.current_dir() is None:
                state.stale = True  # never written whole: the next sync writes it
                continue
            writer.update(changed, None, gids[name])
            state.prune_at = time.monotonic() + writer.grace

    async def _object(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap or Secret (its data), or None when it does not exist; read through the TTL cache."""
        key = (kind, ns, name)
        mono = time.monotonic()
        hit = self._objects.get(key)
        if hit is not None and mono - hit[0] < OBJECT_TTL:
            return hit[1]
        obj = await self._get_or_none(f"/api/v1/namespaces/{ns}/{kind}/{name}")
        if obj is None:
            self._objects.pop(key, None)  # a missing object is asked for again at the next try
            return None
        if len(self._objects) >= MAX_CACHED_OBJECTS:
            self._expire_objects(mono, full=True)
        kept: dict[str, Any] = {k: obj[k] for k in ("data", "binaryData") if k in obj}
        self._objects[key] = (mono, kept)
        return kept

    def _expire_objects(self, mono: float, full: bool) -> None:
        for key in [k for k, (at, _) in self._objects.items() if mono - at >= OBJECT_TTL]:
            del self._objects[key]
        if full and len(self._objects) >= MAX_CACHED_OBJECTS:
            self._objects.clear()

    async def _get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.api.get(path)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def _failed_mount(self, state: _Pod, message: str) -> None:
        state.mount_failures += 1
        if state.failed_mount == message:
            return
        state.failed_mount = message
        self.events.record(pod_ref(state.obj), "Warning", "FailedMount", message)

    async def _report_running(self, state: _Pod) -> None:
        """The pod Running, as the kubelet reports a pod whose containers started (no runtime yet: at once),
        after a `Started` Event per container as the kubelet emits when it starts one (a runtime records its own)."""
        pod = state.obj
        now = _rfc3339(self.clock())
        status = pod.get("status") or {}
        started = status.get("startTime") or now
        conditions = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                      for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")]
        specs = [c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
        containers = [{
            "name": str(c.get("name", "")), "image": c.get("image", ""), "imageID": "",
            "containerID": f"kubesat://{pod['metadata']['uid']}/{c.get('name', '')}",
            "ready": True, "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}},
        } for c in specs]
        patch = {"status": {
            "phase": "Running", "hostIP": self.address, "hostIPs": [{"ip": self.address}],
            "podIP": self.address, "podIPs": [{"ip": self.address}], "startTime": started,
            "conditions": conditions, "containerStatuses": containers,
        }}
        ns, name = pod["metadata"].get("namespace", "default"), pod["metadata"]["name"]
        state.obj = _trim(await self.api.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", patch))
        if not state.reported and self.runtime is None:
            for c in containers:
                self.events.record(pod_ref(pod, c["name"]), "Normal", "Started", f"Started container {c['name']}")
        state.reported = True
        state.failed_mount = None
        state.mount_failures = 0

    # --------------------------------------------------------------------- termination
    async def _terminate(self, state: _Pod, pod: dict[str, Any]) -> None:
        """A pod being deleted, as the kubelet terminates it: `Killing` per running container and the runtime
        stops them within the grace period; the status written terminal; the volumes torn down; the pod
        deleted with grace 0 and its UID as precondition. Each step is done once; a failed one is retried."""
        state.obj = pod
        state.life = _TERMINATING
        meta = pod["metadata"]
        if state.stopped is None:
            grace = meta.get("deletionGracePeriodSeconds")
            seconds = float(grace) if isinstance(grace, int) and not isinstance(grace, bool) else 0.0
            state.stopped = await self._stop_containers(pod, seconds)
            log.info("pod %s: containers stopped; tearing it down", _name(pod))
        ns, name, uid = meta.get("namespace", "default"), meta["name"], meta["uid"]
        try:
            await self.api.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", self._terminal_status(pod, state))
        except ApiError as e:
            if e.code != 404:
                raise
        await self._remove_volumes(state, uid)
        try:
            await self.api.delete(f"/api/v1/namespaces/{ns}/pods/{name}",
                                  {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        state.life = _TERMINATED

    async def _stop_containers(self, pod: dict[str, Any], grace: float) -> dict[str, dict[str, Any]]:
        """Stop the pod's containers within `grace` seconds; each one's `state.terminated` as the runtime saw it.

        With no runtime there is no process: the `Killing` Events the runtime would record are recorded here,
        and no container has a terminated state to report."""
        uid = str(pod["metadata"]["uid"])
        if self.runtime is None:
            for c in _d(pod.get("status")).get("containerStatuses") or []:
                if "running" in _d(c.get("state")):
                    name = str(c.get("name", ""))
                    self.events.record(pod_ref(pod, name), "Normal", "Killing", f"Stopping container {name}")
            return {}
        await self.runtime.stop_pod(uid, grace)
        stopped = {str(c.get("name", "")): _d(c.get("state")).get("terminated")
                   for c in self.runtime.container_statuses(uid) or []}
        self.runtime.forget_pod(uid)
        return {name: term for name, term in stopped.items() if isinstance(term, dict)}

    def _terminal_status(self, pod: dict[str, Any], state: _Pod) -> dict[str, Any]:
        """The status the kubelet writes once a pod's containers are stopped: each container terminated as the
        runtime reported it (or, with no record of it, ContainerStatusUnknown, exit code 137, as the status
        manager's TerminatePod writes), the phase terminal (Succeeded when every container exited 0, else
        Failed: getPhase for a terminal pod), Ready and ContainersReady False (PodCompleted or PodFailed) and
        PodReadyToStartContainers False (the sandbox is gone)."""
        now = _rfc3339(self.clock())
        stopped = state.stopped or {}
        statuses: list[dict[str, Any]] = []
        for c in _d(pod.get("status")).get("containerStatuses") or []:
            name = str(c.get("name", ""))
            term = stopped.get(name) or _d(_d(c.get("state")).get("terminated")) or dict(UNKNOWN_TERMINATION)
            # containerStatuses is an atomic list (a patch replaces it whole): every field, no nulls.
            statuses.append({"name": name, "image": c.get("image", ""), "imageID": c.get("imageID", ""),
                             "containerID": c.get("containerID", ""), "restartCount": c.get("restartCount", 0),
                             "ready": False, "started": False, "state": {"terminated": term}})
        succeeded = bool(statuses) and all(s["state"]["terminated"].get("exitCode") == 0 for s in statuses)
        phase, reason = ("Succeeded", "PodCompleted") if succeeded else ("Failed", "PodFailed")
        conditions: list[dict[str, Any]] = [
            {"type": "PodReadyToStartContainers", "status": "False", "lastProbeTime": None, "lastTransitionTime": now}]
        conditions += [{"type": t, "status": "False", "reason": reason, "lastProbeTime": None,
                        "lastTransitionTime": now} for t in ("ContainersReady", "Ready")]
        status: dict[str, Any] = {"phase": phase, "conditions": conditions}
        if statuses:
            status["containerStatuses"] = statuses
        return {"status": status}

    async def _remove_volumes(self, state: _Pod, uid: str) -> None:
        state.writers.clear()
        state.tokens.clear()
        state.prune_at = 0.0
        # In a thread: removing the files of hundreds of pods a rollout deletes held up every other pod's work.
        await asyncio.to_thread(shutil.rmtree, self.root / "pods" / uid, ignore_errors=True)

    def teardown(self, uid: str) -> None:
        """Forget a pod and remove its directory."""
        self.pods.pop(uid, None)
        self._incoming.pop(uid, None)
        if self.runtime is not None:
            self.runtime.forget_pod(uid)
        shutil.rmtree(self.root / "pods" / uid, ignore_errors=True)


def _write_volumes(writers: dict[str, AtomicWriter], results: dict[str, volumes.VolumeResult], pod_dir: Path) -> bool:
    """Write each files volume (atomically) and make each emptyDir; True if a replaced generation remains."""
    remaining = False
    for result in results.values():
        if result.kind == "files":
            writer = writers[result.name]
            if writer.write(result.files, result.uid, result.gid) and writer.prune():
                remaining = True
        elif result.kind == "dir":
            (pod_dir / result.rel_dir).mkdir(parents=True, exist_ok=True)
    return remaining


async def _serve_queue(queue: asyncio.Queue[str], queued: set[str], handle: Callable[[str], Awaitable[None]],
                       what: str) -> None:
    """One worker: take a pod's uid from the queue (it may be queued again from then on) and handle it."""
    while True:
        uid = await queue.get()
        queued.discard(uid)
        try:
            await handle(uid)
        except Exception:  # noqa: BLE001 - one pod's bug must not stop the worker that serves all the others
            log.exception("%s of pod %s failed", what, uid)


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
