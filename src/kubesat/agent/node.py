"""The agent's Node: registration, status and Lease heartbeats, and "not ready" on the way out.

The objects are shaped as the 1.32 kubelet makes them (conditions with its reasons and messages,
nodeInfo, addresses, capacity), so `kubectl get nodes` and `kubectl describe node` read as on a cluster.
So are the kubelet's Node events: `Starting` ("Starting kubelet."), then, as the kubelet's status setters
fill in a node's conditions afresh at each start, `NodeHasSufficientMemory`, `NodeHasNoDiskPressure` and
`NodeHasSufficientPID` ("Node <n> status is now: <reason>"), and `NodeReady` / `NodeNotReady` when Ready
changes. (A kubelet first reports a new node not ready until its runtime is up, then `NodeReady`; the agent
has no runtime to wait for and registers ready, and says `NodeReady` then.)
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubesat.agent.client import ApiClient, ApiError
from kubesat.agent.events import EventRecorder, node_ref

LEASE_NAMESPACE = "kube-node-lease"
# The kubelet's defaults: its Lease lasts 40 s and is renewed every quarter of that.
LEASE_DURATION_SECONDS = 40
RENEW_INTERVAL = 10.0
MAX_PODS = 110
# The Kubernetes version the agent reports as its kubelet's (the server's API version).
KUBELET_VERSION = "v1.32.4"

_PRESSURE = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)
# The event each condition's healthy status gives when the kubelet sets it (pkg/kubelet/nodestatus/setters.go).
_PRESSURE_EVENTS = ("NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID")
READY = ("True", "KubeletReady", "kubelet is posting ready status")
# How long a bridge agent whose new Node has no podCIDR waits for the server's node IPAM controller to give it one.
POD_CIDR_WAIT = 10.0
SHUTTING_DOWN = ("False", "KubeletNotReady", "node is shutting down")


def micro_time(t: datetime) -> str:
    """A MicroTime as the API writes it (Lease renewTime)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NodeFacts:
    """What the agent reports about its machine; read once at start."""

    name: str
    address: str
    runtime: str
    cpu: int = field(default_factory=lambda: os.cpu_count() or 1)
    memory_ki: int = 0
    storage_ki: int = 0
    boot_id: str = ""
    machine_id: str = ""
    kubelet_port: int = 10250  # where the agent serves the kubelet API (status.daemonEndpoints)
    pod_cidr: str = ""  # registered as spec.podCIDR (the bridge pod network's --pod-cidr); "": the server gives one

    @classmethod
    def read(cls, name: str, address: str, root: Path, runtime: str) -> NodeFacts:
        stat = os.statvfs(root)
        return cls(name=name, address=address, runtime=runtime, memory_ki=_mem_total_ki(),
                   storage_ki=stat.f_blocks * stat.f_frsize // 1024,
                   boot_id=_read_first("/proc/sys/kernel/random/boot_id") or str(uuid.uuid4()),
                   machine_id=_read_first("/etc/machine-id") or uuid.uuid5(uuid.NAMESPACE_DNS, name).hex)


def _read_first(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _mem_total_ki() -> int:
    for line in _read_first("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def node_object(facts: NodeFacts, now: datetime) -> dict[str, Any]:
    """The Node as the kubelet registers it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": facts.name,
            "labels": {
                "kubernetes.io/hostname": facts.name,
                "kubernetes.io/os": "linux" if os.name == "posix" else os.name,
                "kubernetes.io/arch": _arch(),
                "beta.kubernetes.io/os": "linux" if os.name == "posix" else os.name,
                "beta.kubernetes.io/arch": _arch(),
            },
        },
        "spec": {"podCIDR": facts.pod_cidr, "podCIDRs": [facts.pod_cidr]} if facts.pod_cidr else {},
        "status": node_status(facts, now, READY),
    }


def node_status(facts: NodeFacts, now: datetime, ready: tuple[str, str, str],
                previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Capacity, addresses, nodeInfo and conditions; a condition's transition time moves only when its status does."""
    resources = {"cpu": str(facts.cpu), "memory": f"{facts.memory_ki}Ki", "pods": str(MAX_PODS),
                 "ephemeral-storage": f"{facts.storage_ki}Ki"}
    return {
        "capacity": resources,
        "allocatable": dict(resources),
        "addresses": [{"type": "InternalIP", "address": facts.address}, {"type": "Hostname", "address": facts.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.kubelet_port}},
        "nodeInfo": {
            "machineID": facts.machine_id, "systemUUID": facts.machine_id, "bootID": facts.boot_id,
            "kernelVersion": platform.release(), "osImage": _os_image(),
            "containerRuntimeVersion": f"kubesat-{facts.runtime}://{KUBELET_VERSION}",
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
            "operatingSystem": "linux" if os.name == "posix" else os.name, "architecture": _arch(),
        },
        "conditions": _conditions(now, ready, previous),
    }


def _conditions(now: datetime, ready: tuple[str, str, str], previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in ((previous or {}).get("conditions") or []) if isinstance(c, dict)}
    wanted = [(t, "False", reason, message) for t, reason, message in _PRESSURE] + [("Ready", *ready)]
    out = []
    for kind, status, reason, message in wanted:
        old = before.get(kind) or {}
        moved = old.get("status") != status or not old.get("lastTransitionTime")
        out.append({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": rfc3339(now),
            "lastTransitionTime": rfc3339(now) if moved else old["lastTransitionTime"],
        })
    return out


def _ready_status(node: dict[str, Any]) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return str(c.get("status"))
    return None


def lease_object(node: dict[str, Any], now: datetime) -> dict[str, Any]:
    name = node["metadata"]["name"]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name, "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                 "uid": node["metadata"].get("uid", "")}],
        },
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                 "renewTime": micro_time(now)},
    }


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _os_image() -> str:
    for line in _read_first("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def default_address() -> str:
    """The address the local node reports: the loopback, which reaches the local server."""
    try:
        return socket.gethostbyname("localhost")
    except OSError:
        return "127.0.0.1"


class NodeHeartbeat:
    """Registers the Node, then keeps its Lease and status fresh."""

    def __init__(self, api: ApiClient, facts: NodeFacts, clock: Callable[[], datetime]) -> None:
        self.api = api
        self.facts = facts
        self.clock = clock
        self.node: dict[str, Any] = {}
        self.events = EventRecorder(api, facts.name, lambda: self.clock().timestamp())
        self._started = False

    async def register(self) -> dict[str, Any]:
        """Create the Node, or take over the one of that name (an agent restarted), and report ready."""
        ref = node_ref(self.facts.name)
        if not self._started:
            self._started = True
            await self.events.send(ref, "Normal", "Starting", "Starting kubelet.")
        was_ready: str | None = None
        try:
            self.node = await self.api.create("/api/v1/nodes", node_object(self.facts, self.clock()))
        except ApiError as e:
            if e.code != 409:
                raise
            self.node = await self.api.get(f"/api/v1/nodes/{self.facts.name}")
            was_ready = _ready_status(self.node)
        await self.report(READY, announce=False)
        for reason in _PRESSURE_EVENTS:
            await self.events.send(ref, "Normal", reason, f"Node {self.facts.name} status is now: {reason}")
        if was_ready != "True":
            await self.events.send(ref, "Normal", "NodeReady", f"Node {self.facts.name} status is now: NodeReady")
        await self.renew_lease()
        return self.node

    async def pod_cidr(self, timeout: float = POD_CIDR_WAIT, poll: float = 0.2) -> str:
        """The Node's spec.podCIDR: as last read, else as the server's node IPAM controller writes it just after
        the Node is created (read again until `timeout`); "" when none came."""
        deadline = time.monotonic() + timeout
        while True:
            spec = self.node.get("spec")
            cidr = str((spec if isinstance(spec, dict) else {}).get("podCIDR") or "")
            if cidr or time.monotonic() >= deadline:
                return cidr
            await asyncio.sleep(poll)
            self.node = await self.api.get(f"/api/v1/nodes/{self.facts.name}")

    async def report(self, ready: tuple[str, str, str], announce: bool = True) -> None:
        """Patch the node's status; `NodeReady` / `NodeNotReady` when Ready changes from what the node said."""
        before = _ready_status(self.node)
        status = node_status(self.facts, self.clock(), ready, self.node.get("status"))
        self.node = await self.api.patch(f"/api/v1/nodes/{self.facts.name}/status", {"status": status})
        if announce and before is not None and before != ready[0]:
            reason = "NodeReady" if ready[0] == "True" else "NodeNotReady"
            await self.events.send(node_ref(self.facts.name), "Normal", reason,
                                   f"Node {self.facts.name} status is now: {reason}")

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.facts.name}"
        lease = lease_object(self.node, self.clock())
        try:
            current = await self.api.get(path)
        except ApiError as e:
            if e.code != 404:
                raise
            await self.api.create(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases", lease)
            return
        current["spec"] = dict(current.get("spec") or {}, **lease["spec"])
        await self.api.update(path, current)
