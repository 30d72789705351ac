"""Between the pod manager and a container runtime: a pod's containers started once its volumes are written, their
environment built (`envvars`, from the ConfigMaps, Secrets and Services it names), their status reported to the
server as the runtime's state changes, their Events sent, and the containers stopped when the pod is deleted.

It is the pod manager's `Runtime` (the runtime's calls pass through, `stop_pod` first silencing the pod's status
reports, `forget_pod` dropping what is kept here too), plus `sync`, which the pod manager calls after each
volume sync (the first one starts the containers). A pod's /etc/hosts names the `kubernetes` Service's relay and
the service proxy's Services; `refresh_hosts` rewrites it when the Services change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from kubesat.agent import envvars, servicenet
from kubesat.agent.netns import PodNetwork
from kubesat.agent.client import ApiClient, ApiError
from kubesat.agent.runtime import (ExecRequest, ExecSession, PodSandboxConfig, Runtime, VolumeMountSource,
                                   write_hosts_file)
from kubesat.agent.runtime.none import NoneRuntime
from kubesat.agent.runtime.process import ProcessRuntime, runtime_available

log = logging.getLogger("kubesat.agent")

KUBERNETES_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local")
# A pod's status is written at most this often while its containers change (several changes, one patch).
REPORT_DELAY = 0.05
# A container whose environment could not be built is tried again this often.
CONFIG_RETRY = 5.0

EventFn = Callable[[dict[str, Any], str | None, str, str, str], None]  # pod, container, type, reason, message


def make_runtime(name: str, root: Path, masks: Sequence[Path] = (), allow_privileged: bool = False,
                 allow_host_paths: Sequence[Path] = (), address: str = "127.0.0.1") -> Runtime:
    """The runtime `--runtime` names; ValueError with the reason (and the fix) when it cannot run here."""
    if name == "none":
        return NoneRuntime()
    if name != "process":
        raise ValueError(f"unknown runtime {name!r} (process or none)")
    why = runtime_available()
    if why is not None:
        raise ValueError(f"--runtime process: {why}")
    return ProcessRuntime(root, masks, allow_privileged, allow_host_paths, address)



def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Containers:
    """See the module's docstring."""

    def __init__(self, api: ApiClient, runtime: Runtime, root: Path, address: str, event: EventFn,
                 node: Callable[[], dict[str, Any]], server: str,
                 kubernetes: Callable[[], tuple[str, int]] | None = None,
                 clock: Callable[[], float] = time.time,
                 service_hosts: Callable[[str], Mapping[str, str]] | None = None,
                 network: PodNetwork | None = None, host_network_why: str = "",
                 host_kubernetes: Callable[[], tuple[str, int]] | None = None) -> None:
        self.api = api
        self.runtime = runtime
        self.name = runtime.name
        self.root = root
        self.address = address
        self.event = event
        self.node = node
        self.server = server
        self.kubernetes = kubernetes or self._server_endpoint
        # Where hostNetwork pods reach the API (the loopback relay; the pods' one may be on the bridge).
        self.host_kubernetes = host_kubernetes or self.kubernetes
        self.clock = clock
        # The Services' /etc/hosts names for a pod's namespace (the service proxy's); none without one.
        self.service_hosts = service_hosts or (lambda namespace: {})
        # The bridge pod network: each pod's own IP, and Services at their ClusterIPs; None: the host's network.
        self.network = network
        self.host_network_why = host_network_why  # why not, when network is None (for the pods' Event)
        self._pods: dict[str, dict[str, Any]] = {}
        self._configs: dict[str, PodSandboxConfig] = {}  # started pods' configurations, for their hosts files
        self._starting: dict[str, asyncio.Task[None]] = {}
        self._reporting: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[str] = set()
        self._transitions: dict[str, dict[str, tuple[str, str]]] = {}

    def _server_endpoint(self) -> tuple[str, int]:
        url = urlsplit(self.server)
        return url.hostname or "127.0.0.1", url.port or 443

    # ------------------------------------------------------------------ the pod manager's calls
    async def sync(self, pod: dict[str, Any], volumes: dict[str, Any]) -> None:
        """The pod's volumes are written: start its containers (once; later calls only keep the object)."""
        uid = pod["metadata"]["uid"]
        self._pods.setdefault(uid, pod)
        if uid in self._starting or uid in self._stopping:
            return
        self._starting[uid] = asyncio.create_task(self._start(pod, volumes))

    async def stop_pod(self, pod_uid: str, grace_seconds: float) -> None:
        """Stop the pod's containers within the grace period (the pod manager writes the terminal status)."""
        self._stopping.add(pod_uid)
        task = self._starting.get(pod_uid)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.runtime.stop_pod(pod_uid, grace_seconds)

    # The rest of the Runtime interface is the runtime's own.
    def container_statuses(self, pod_uid: str) -> list[dict[str, Any]] | None:
        return self.runtime.container_statuses(pod_uid)

    def pod_status(self, pod_uid: str) -> dict[str, Any] | None:
        return self.runtime.pod_status(pod_uid)

    def forget_pod(self, pod_uid: str) -> None:
        self.forget(pod_uid)

    async def start_pod(self, config: PodSandboxConfig) -> None:
        await self.runtime.start_pod(config)

    async def exec(self, request: ExecRequest) -> ExecSession:
        return await self.runtime.exec(request)

    async def attach(self, request: ExecRequest) -> ExecSession:
        return await self.runtime.attach(request)

    def log_path(self, pod_uid: str, container: str, previous: bool = False) -> Path | None:
        return self.runtime.log_path(pod_uid, container, previous)

    async def open_port(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await self.runtime.open_port(pod_uid, port)

    async def close(self) -> None:
        for uid in list(self._pods):
            self._stopping.add(uid)
        await self.runtime.close()

    def forget(self, uid: str) -> None:
        """The pod is gone: whatever still runs of it is killed."""
        for tasks in (self._starting, self._reporting):
            task = tasks.pop(uid, None)
            if task is not None:
                task.cancel()
        self._pods.pop(uid, None)
        self._configs.pop(uid, None)
        self._stopping.discard(uid)
        self._transitions.pop(uid, None)
        self.runtime.forget_pod(uid)

    # ------------------------------------------------------------------ starting
    async def _start(self, pod: dict[str, Any], volumes: dict[str, Any]) -> None:
        """Read the whole pod (the pod manager keeps only what volumes need), build the containers' configuration
        (retried while an object it needs is missing), start them."""
        uid = pod["metadata"]["uid"]
        meta = pod["metadata"]
        while True:
            try:
                full = await self.api.get(f"/api/v1/namespaces/{meta.get('namespace', 'default')}/pods/{meta['name']}")
                if full["metadata"].get("uid") != uid:
                    return  # replaced by another pod of the same name: that one is synced on its own
                pod = self._pods[uid] = full
                config = await self._config(pod, volumes)
                self._configs[uid] = config
                break
            except envvars.EnvError as e:
                self._config_error(pod, str(e))
            except (ApiError, httpx.HTTPError) as e:
                log.warning("pod %s: could not read what its containers' environment needs: %s", _name(pod), e)
            await asyncio.sleep(CONFIG_RETRY)
        await self.runtime.start_pod(config)

    def _config_error(self, pod: dict[str, Any], message: str) -> None:
        self.event(pod, None, "Warning", "Failed", f"Error: {message}")
        statuses = [{"name": c.get("name", ""), "image": c.get("image", ""), "imageID": "", "ready": False,
                     "started": False, "restartCount": 0, "lastState": {},
                     "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}}}
                    for c in (pod.get("spec") or {}).get("containers") or []]
        self._patch_later(pod["metadata"]["uid"], {"phase": "Pending", "containerStatuses": statuses})

    async def _config(self, pod: dict[str, Any], volumes: dict[str, Any]) -> PodSandboxConfig:
        uid = pod["metadata"]["uid"]
        sources = await self._env_sources(pod)
        environments: dict[str, dict[str, str]] = {}
        for c in envvars.all_containers(pod):
            built = envvars.container_env(self._with_addresses(pod), c, sources)
            environments[str(c.get("name", ""))] = built.env
            if built.skipped:
                self.event(pod, c.get("name"), "Warning", "InvalidEnvironmentVariableNames",
                           f"Keys [{', '.join(built.skipped)}] from the EnvFrom of container {c.get('name')} were "
                           "skipped since they are invalid environment variable names.")
        pod_dir = self.root / "pods" / uid
        mounts: dict[str, VolumeMountSource] = {}
        for name, result in volumes.items():
            if result.kind == "hostPath":
                mounts[name] = VolumeMountSource(name, Path(result.host_path or ""), on_host=result.on_host,
                                                 host_type=result.host_type)
            elif result.rel_dir:
                mounts[name] = VolumeMountSource(name, pod_dir / result.rel_dir)
                if result.kind == "dir":
                    (pod_dir / result.rel_dir).chmod(0o777)  # emptyDir: any of the pod's users may write
        return PodSandboxConfig(pod=pod, volumes=mounts, environments=environments, log_dir=pod_dir / "logs",
                                hosts_entries=self._hosts_entries(pod),
                                notify=lambda: self._patch_later(uid), record_event=self._event_for(uid))

    def _hosts_entries(self, pod: dict[str, Any]) -> dict[str, str]:
        """The pod's /etc/hosts names: the Services', and the `kubernetes` Service's (its relay) over them."""
        host, _port = self._kubernetes_for(pod)
        entries = dict(self.service_hosts(str(pod["metadata"].get("namespace") or "default")))
        entries.update({n: host for n in KUBERNETES_NAMES})
        return entries

    def _kubernetes_for(self, pod: dict[str, Any]) -> tuple[str, int]:
        """The kubernetes Service's relay this pod reaches: the loopback one for a hostNetwork pod."""
        return self.host_kubernetes() if (pod.get("spec") or {}).get("hostNetwork") else self.kubernetes()

    def refresh_hosts(self) -> None:
        """The Services changed: rewrite the hosts file of every started pod whose names changed, in place, so
        its running containers see the new Services (and its next containers start with them)."""
        for uid, config in list(self._configs.items()):
            if uid in self._stopping:
                continue
            entries = self._hosts_entries(config.pod)
            if entries == dict(config.hosts_entries):
                continue
            config.hosts_entries = entries
            path = self.root / "pods" / uid / "etc-hosts"
            if path.exists():
                try:
                    write_hosts_file(path, entries)
                except OSError as e:
                    log.warning("could not rewrite the hosts file of pod %s: %s", _name(config.pod), e)

    def _with_addresses(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The pod as its env's fieldRefs see it once running: its IPs set (status.podIP, status.hostIP)."""
        status = dict(pod.get("status") or {})
        for key, address in (("podIP", self._pod_ip(pod)), ("hostIP", self.address)):
            status.setdefault(key, address)
            status.setdefault(f"{key}s", [{"ip": address}])
        return dict(pod, status=status)

    @property
    def shares_host_network(self) -> bool:
        """Whether pods run in the node's network (no pod network of their own)."""
        return self.network is None

    def _pod_ip(self, pod: dict[str, Any]) -> str:
        """The pod's IP: its own on the bridge pod network (reserved here, before its containers start), else
        the node's."""
        if self.network is None or (pod.get("spec") or {}).get("hostNetwork"):
            return self.address
        return self.network.reserve(str(pod["metadata"]["uid"]))

    async def _env_sources(self, pod: dict[str, Any]) -> envvars.EnvSources:
        ns = pod["metadata"].get("namespace", "default")
        configmaps, secrets = envvars.references(pod)
        services: list[dict[str, Any]] = []
        if envvars.links_services(pod):
            with contextlib.suppress(ApiError):
                services = (await self.api.get(f"/api/v1/namespaces/{ns}/services")).get("items") or []
        # The variables name the address a pod reaches the Service at (its loopback one), not the ClusterIP.
        services = [servicenet.with_reachable_address(s, cluster_ips=self.network is not None) for s in services]
        host, port = self._kubernetes_for(pod)
        kubernetes = {"metadata": {"name": "kubernetes"},
                      "spec": {"clusterIP": host, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}}
        return envvars.EnvSources(
            configmaps={n: await self._get(f"/api/v1/namespaces/{ns}/configmaps/{n}") for n in sorted(configmaps)},
            secrets={n: await self._get(f"/api/v1/namespaces/{ns}/secrets/{n}") for n in sorted(secrets)},
            services=services, kubernetes=kubernetes,
            allocatable=(self.node().get("status") or {}).get("allocatable"))

    async def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.api.get(path)
        except ApiError as e:
            if e.code in (403, 404):
                return None
            raise

    def _event_for(self, uid: str) -> Callable[[str, str, str, str | None], None]:
        def record(kind: str, reason: str, message: str, container: str | None) -> None:
            pod = self._pods.get(uid)
            if pod is not None and uid not in self._stopping:
                self.event(pod, container, kind, reason, message)
        return record

    # ------------------------------------------------------------------ reporting
    def _patch_later(self, uid: str, status: dict[str, Any] | None = None) -> None:
        """Write the pod's status soon (changes close together make one patch)."""
        if uid in self._stopping or uid in self._reporting:
            return
        self._reporting[uid] = asyncio.create_task(self._report(uid, status))

    async def _report(self, uid: str, fixed: dict[str, Any] | None) -> None:
        await asyncio.sleep(REPORT_DELAY)
        self._reporting.pop(uid, None)
        pod = self._pods.get(uid)
        if pod is None or uid in self._stopping:
            return
        status = fixed or self.status(uid)
        if status is None:
            return
        meta = pod["metadata"]
        try:
            await self.api.patch(f"/api/v1/namespaces/{meta.get('namespace', 'default')}/pods/{meta['name']}/status",
                                 {"status": status})
        except (ApiError, httpx.HTTPError) as e:
            log.warning("could not report the status of pod %s: %s", _name(pod), e)
            await asyncio.sleep(1.0)
            self._patch_later(uid, fixed)

    def status(self, uid: str) -> dict[str, Any] | None:
        """The pod's status as the kubelet writes it, from the runtime's state."""
        pod = self._pods.get(uid)
        found = self.runtime.pod_status(uid)
        if pod is None or found is None:
            return None
        now = _rfc3339(self.clock())
        seen = self._transitions.setdefault(uid, {})
        conditions = []
        wanted = dict(found["conditions"])
        wanted["PodReadyToStartContainers"] = ("True", "", "")
        for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"):
            state, reason, message = wanted[kind]
            if seen.get(kind, ("", ""))[0] != state:
                seen[kind] = (state, now)
            cond: dict[str, Any] = {"type": kind, "status": state, "lastProbeTime": None,
                                    "lastTransitionTime": seen[kind][1]}
            if reason:
                cond["reason"] = reason
            if message:
                cond["message"] = message
            conditions.append(cond)
        pod_ip = str(found.get("podIP") or self.address)
        status: dict[str, Any] = {
            "phase": found["phase"], "conditions": conditions, "hostIP": self.address,
            "hostIPs": [{"ip": self.address}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
            "startTime": (pod.get("status") or {}).get("startTime") or now,
            "containerStatuses": found["containerStatuses"],
        }
        if found["initContainerStatuses"]:
            status["initContainerStatuses"] = found["initContainerStatuses"]
        (pod.setdefault("status", {}))["startTime"] = status["startTime"]
        return status


def _name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
