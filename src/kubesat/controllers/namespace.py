"""Namespace controllers: the built-in namespaces, each namespace's `default` ServiceAccount and
`kube-root-ca.crt` ConfigMap (recreated when deleted), and emptying a deleted namespace."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubesat import errors
from kubesat.controllers.base import loads, resource_of_key, cancel, watch_in_background, split_key
from kubesat.registry.kinds import builtin_kind, stored_resources
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.namespace")

BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)

NAMESPACES = builtin_kind("v1", "Namespace")
SERVICEACCOUNTS = builtin_kind("v1", "ServiceAccount")
CONFIGMAPS = builtin_kind("v1", "ConfigMap")
assert NAMESPACES and SERVICEACCOUNTS and CONFIGMAPS


def _active(ns: dict[str, Any]) -> bool:
    return (not ns.get("metadata", {}).get("deletionTimestamp")
            and ns.get("status", {}).get("phase", "Active") == "Active")


def _ignorable(e: errors.StatusError) -> bool:
    # The object is there already, or the namespace is going away: nothing to do.
    return e.reason in ("AlreadyExists", "NotFound", "Forbidden", "Conflict")


class NamespaceController:
    def __init__(self, registry: Registry, root_ca_pem: str) -> None:
        self.registry = registry
        self.root_ca_pem = root_ca_pem
        self._task: asyncio.Task[None] | None = None
        self._finalizing: set[str] = set()

    async def bootstrap(self) -> None:
        """Create the built-in namespaces and reconcile every namespace once."""
        for name in BUILTIN_NAMESPACES:
            try:
                await self.registry.create(NAMESPACES, "", {"metadata": {"name": name}})
            except errors.StatusError as e:
                if e.reason != "AlreadyExists":
                    raise
        await self.resync()

    async def resync(self) -> int:
        page = await self.registry.list(NAMESPACES, "")
        for ns in page.items:
            await self.reconcile(ns)
        return int(page.resource_version)

    async def start(self) -> None:
        rev = await self.resync()
        self._task = watch_in_background(self.registry.store, rev, self._on_event, self.resync, "namespace-controller")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _on_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is None:
            return
        ns_name, name = split_key(info, ev.key)
        if info is NAMESPACES:
            if ev.type == "PUT":
                obj = loads(ev.value)
                if obj is not None:
                    await self.reconcile(obj)
            return
        if info is SERVICEACCOUNTS and name == "default" and ev.type == "DELETE":
            await self._ensure_namespace_defaults(ns_name)
        elif info is CONFIGMAPS and name == ROOT_CA_CONFIGMAP:
            if ev.type == "DELETE":
                await self._ensure_namespace_defaults(ns_name)
            else:
                cm = loads(ev.value) or {}
                if (cm.get("data") or {}).get("ca.crt") != self.root_ca_pem:
                    await self._ensure_root_ca(ns_name)
        elif ev.type == "DELETE" and ns_name in self._finalizing:
            ns = await self.registry.get_or_none(NAMESPACES, "", ns_name)
            if ns is not None:
                await self.reconcile(ns)

    async def reconcile(self, ns: dict[str, Any]) -> None:
        name = ns["metadata"]["name"]
        if _active(ns):
            await self._ensure_namespace_defaults(name)
        elif ns["metadata"].get("deletionTimestamp"):
            await self._finalize(name)

    async def _ensure_namespace_defaults(self, namespace: str) -> None:
        ns = await self.registry.get_or_none(NAMESPACES, "", namespace)
        if ns is None or not _active(ns):
            return
        if await self.registry.get_or_none(SERVICEACCOUNTS, namespace, "default") is None:
            try:
                await self.registry.create(SERVICEACCOUNTS, namespace, {"metadata": {"name": "default"}})
            except errors.StatusError as e:
                if not _ignorable(e):
                    raise
        await self._ensure_root_ca(namespace)

    async def _ensure_root_ca(self, namespace: str) -> None:
        def mutate(cm: dict[str, Any]) -> dict[str, Any]:
            cm["data"] = {"ca.crt": self.root_ca_pem}
            cm.get("metadata", {}).setdefault("annotations", {})["kubernetes.io/description"] = ROOT_CA_DESCRIPTION
            return cm

        def fresh() -> dict[str, Any]:
            return {"metadata": {"annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
                    "data": {"ca.crt": self.root_ca_pem}}

        current = await self.registry.get_or_none(CONFIGMAPS, namespace, ROOT_CA_CONFIGMAP)
        if current is not None and (current.get("data") or {}) == {"ca.crt": self.root_ca_pem} and \
                (current["metadata"].get("annotations") or {}).get("kubernetes.io/description"):
            return
        try:
            await self.registry.guaranteed_update(CONFIGMAPS, namespace, ROOT_CA_CONFIGMAP, mutate,
                                                  create_if_missing=fresh)
        except errors.StatusError as e:
            if not _ignorable(e):
                raise

    async def _finalize(self, namespace: str) -> None:
        """Delete everything in a deleted namespace; when nothing is left, release the namespace."""
        self._finalizing.add(namespace)
        remaining = 0
        for info in stored_resources():
            if not info.namespaced:
                continue
            page = await self.registry.list(info, namespace)
            for obj in page.items:
                remaining += 1
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.registry.delete(info, namespace, obj["metadata"]["name"], DeleteOptions())
                except errors.StatusError as e:
                    if e.code != 404:
                        log.warning("namespace %s: deleting %s/%s: %s", namespace, info.plural,
                                    obj["metadata"]["name"], e.message)
        if remaining:
            left = 0
            for info in stored_resources():
                if info.namespaced:
                    left += await self.registry.store.count(info.list_prefix(namespace))
            if left:
                return  # finalizers hold something; a later DELETE event brings us back
        self._finalizing.discard(namespace)

        def release(ns: dict[str, Any]) -> dict[str, Any]:
            spec = ns.setdefault("spec", {})
            spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != "kubernetes"]
            if not spec["finalizers"]:
                spec.pop("finalizers")
            return ns

        try:
            await self.registry.guaranteed_update(NAMESPACES, "", namespace, release, subresource="finalize")
        except errors.StatusError as e:
            if e.code != 404:
                raise
