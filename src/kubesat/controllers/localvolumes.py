"""The kubesat.io/local provisioner's deleter: a released provisioned volume with reclaimPolicy Delete is handed
to the Ready nodes (an annotation on each Node, which its agent can read), each agent removes the volume's
directory under its root and takes the annotation off, and the PersistentVolume may go once no Node holds it.

Kubernetes splits it the same way: the persistent-volume controller marks the volume Released and the
provisioner deletes the storage, then the object. Here the storage is a directory on the nodes, which only
their agents may touch, and a node reads nothing of a volume whose claim is gone (the Node authorizer), so
the request travels on the Node object, which the node reads and writes as its own.
"""

from __future__ import annotations

import re
from typing import Any

from kubesat.controllers.base import loads
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.meta import as_dict
from kubesat.registry.store import Registry
from kubesat.storage.interface import WatchEvent

NODES = builtin_kind("v1", "Node")
PVS = builtin_kind("v1", "PersistentVolume")
# On a Node: `delete.volumes.kubesat.io/<pv name>` asks its agent to remove that volume's directory.
DELETE_PREFIX = "delete.volumes.kubesat.io/"
# On the PersistentVolume: the Ready nodes were asked (the volume goes once none of them still holds it).
HANDED_OVER = "volumes.kubesat.io/delete-requested"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


def node_key(pv_name: str) -> str | None:
    """The Node annotation for a volume (None when its name cannot be an annotation key's name part)."""
    return DELETE_PREFIX + pv_name if _NAME.match(pv_name) and ".." not in pv_name else None


def _annotations(obj: dict[str, Any] | None) -> dict[str, Any]:
    return as_dict(as_dict(as_dict(obj).get("metadata")).get("annotations"))


def node_ready(node: dict[str, Any]) -> bool:
    return any(as_dict(c).get("type") == "Ready" and as_dict(c).get("status") == "True"
               for c in as_dict(node.get("status")).get("conditions") or [])


def requests_changed(ev: WatchEvent) -> bool:
    """A Node event that adds or lifts a delete request (or deletes a Node that held one)."""
    def held(raw: bytes | None) -> set[str]:
        return {k for k in _annotations(loads(raw)) if k.startswith(DELETE_PREFIX)}
    return held(ev.value) != held(ev.prev_value)


async def _ask(registry: Registry, node: str, key: str) -> None:
    def mutate(obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("metadata", {}).setdefault("annotations", {})[key] = "true"
        return obj

    await registry.guaranteed_update(NODES, "", node, mutate)


async def _mark_handed_over(registry: Registry, pv_name: str) -> None:
    def mutate(obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("metadata", {}).setdefault("annotations", {})[HANDED_OVER] = "true"
        return obj

    await registry.guaranteed_update(PVS, "", pv_name, mutate)


async def release(registry: Registry, pv: dict[str, Any]) -> bool:
    """Hand a released provisioned volume to the Ready nodes; True once it may be deleted (no node holds it)."""
    name = str(as_dict(pv.get("metadata")).get("name") or "")
    key = node_key(name)
    if key is None:
        return True  # not a name the local provisioner gives: nothing of it on any node
    nodes = (await registry.list(NODES, "")).items
    if _annotations(pv).get(HANDED_OVER) != "true":
        ready = [str(as_dict(n.get("metadata")).get("name")) for n in nodes if node_ready(n)]
        for node in ready:
            await _ask(registry, node, key)
        if not ready:
            return True
        await _mark_handed_over(registry, name)
        return False
    return not any(key in _annotations(n) for n in nodes)
