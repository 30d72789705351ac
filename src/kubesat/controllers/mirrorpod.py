"""The API server shown as kubeadm shows it: a mirror pod `kube-system/kube-apiserver-<node>` on the local node,
whose container command is the server's own command line with every token flag spelled out, so that the
runbook's `kubectl get pod -n kube-system kube-apiserver-<node> -o yaml | grep service-account-issuer`
answers. Like the kubelet's mirror pods it carries the `kubernetes.io/config.mirror` annotation (the agent
never runs it), is owned by its Node (it goes when the Node goes), and its status says Running since the
server started. It is written once the Node exists, and again whenever the Node comes back."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

from kubesat import errors
from kubesat.controllers.base import cancel, resource_of_key, split_key, watch_in_background
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry

log = logging.getLogger("kubesat.controllers.mirrorpod")

PODS = builtin_kind("v1", "Pod")
NODES = builtin_kind("v1", "Node")
NAMESPACE = "kube-system"
KUBERNETES_VERSION = "v1.32.4"


def mirror_pod(node: dict[str, Any], command: list[str], address: str) -> dict[str, Any]:
    """The mirror pod's object (without status) for `node`."""
    name = node["metadata"]["name"]
    digest = hashlib.sha256("\0".join(command).encode()).hexdigest()[:32]
    return {
        "metadata": {
            "name": f"kube-apiserver-{name}",
            "labels": {"component": "kube-apiserver", "tier": "control-plane"},
            "annotations": {
                "kubernetes.io/config.hash": digest,
                "kubernetes.io/config.mirror": digest,
                "kubernetes.io/config.source": "file",
                "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": address,
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                 "uid": node["metadata"].get("uid", ""), "controller": True}],
        },
        "spec": {
            "nodeName": name,
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "priority": 2000001000,
            "containers": [{"name": "kube-apiserver", "image": f"registry.k8s.io/kube-apiserver:{KUBERNETES_VERSION}",
                            "command": list(command)}],
        },
    }


class MirrorPodPublisher:
    def __init__(self, registry: Registry, node_name: str, command: list[str], address: str) -> None:
        self.registry = registry
        self.node_name = node_name
        self.command = command
        self.address = address
        self.started = registry.now()
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rev = await self.registry.revision()
        node = await self.registry.get_or_none(NODES, "", self.node_name)
        if node is not None:
            await self.publish(node)
        self._watch = watch_in_background(self.registry.store, rev, self._on_event, self._resync, "mirror-pod")

    async def stop(self) -> None:
        await cancel(self._watch)

    async def _resync(self) -> int:
        node = await self.registry.get_or_none(NODES, "", self.node_name)
        if node is not None:
            await self.publish(node)
        return await self.registry.revision()

    async def _on_event(self, ev: Any) -> None:
        if ev.type != "PUT" or not ev.created or resource_of_key(ev.key) is not NODES:
            return
        if split_key(NODES, ev.key)[1] == self.node_name:
            node = await self.registry.get_or_none(NODES, "", self.node_name)
            if node is not None:
                await self.publish(node)

    async def publish(self, node: dict[str, Any]) -> None:
        want = mirror_pod(node, self.command, self.address)
        name = want["metadata"]["name"]
        current = await self.registry.get_or_none(PODS, NAMESPACE, name)
        if current is not None and (current["metadata"].get("annotations") or {}).get("kubernetes.io/config.mirror") \
                == want["metadata"]["annotations"]["kubernetes.io/config.mirror"] \
                and (current["metadata"].get("ownerReferences") or [{}])[0].get("uid") == node["metadata"].get("uid"):
            return
        if current is not None:  # a pod's spec cannot change: the kubelet replaces a changed mirror pod
            with contextlib.suppress(errors.StatusError):
                await self.registry.delete(PODS, NAMESPACE, name, DeleteOptions(grace_period=0))
        try:
            created = await self.registry.create(PODS, NAMESPACE, want)
        except errors.StatusError as e:
            log.warning("mirror pod %s/%s: %s", NAMESPACE, name, e.message)
            return
        created["status"] = self._status(created)
        with contextlib.suppress(errors.StatusError):
            await self.registry.update(PODS, NAMESPACE, name, created, subresource="status")

    def _status(self, pod: dict[str, Any]) -> dict[str, Any]:
        now = self.registry.now()
        ip = self.address.rpartition(":")[0].strip("[]")
        conditions = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                      for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                "PodScheduled")]
        return {
            **(pod.get("status") or {}),
            "phase": "Running", "conditions": conditions, "hostIP": ip, "hostIPs": [{"ip": ip}],
            "podIP": ip, "podIPs": [{"ip": ip}], "startTime": self.started,
            "containerStatuses": [{"name": "kube-apiserver", "ready": True, "started": True, "restartCount": 0,
                                   "image": pod["spec"]["containers"][0]["image"], "imageID": "",
                                   "containerID": f"kubesat://{pod['metadata']['uid']}/kube-apiserver",
                                   "state": {"running": {"startedAt": self.started}}}],
        }
