"""The `default/kubernetes` Service and its endpoints, kept as kube-apiserver keeps them: a ClusterIP Service
on port 443 (the service range's first address), and an Endpoints object and an EndpointSlice that point at
the API server's own address and port. Re-checked every 10 s (the apiserver's endpoint reconciler interval),
so an object someone deleted or changed is put back."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Any

from kubesat import errors
from kubesat.controllers.base import cancel
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.service import KUBERNETES_SERVICE_IP
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.controllers.kubernetesservice")

SERVICES = builtin_kind("v1", "Service")
ENDPOINTS = builtin_kind("v1", "Endpoints")
SLICES = builtin_kind("discovery.k8s.io/v1", "EndpointSlice")
NAMESPACE = "default"
NAME = "kubernetes"
INTERVAL = 10.0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class KubernetesServiceController:
    def __init__(self, registry: Registry, external_address: str, interval: float = INTERVAL) -> None:
        self.registry = registry
        self.host, self.port = _split(external_address)
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.reconcile()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await cancel(self._task)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - try again next round
                log.exception("kubernetes service: reconcile failed")

    def desired(self) -> list[tuple[Any, dict[str, Any]]]:
        family = "IPv6" if ipaddress.ip_address(self.host).version == 6 else "IPv4"
        port = {"name": "https", "port": self.port, "protocol": "TCP"}
        service = {
            "metadata": {"name": NAME, "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP, "clusterIPs": [KUBERNETES_SERVICE_IP],
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.port}],
                     "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     "internalTrafficPolicy": "Cluster"},
        }
        endpoints = {
            "metadata": {"name": NAME, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": self.host}], "ports": [port]}],
        }
        endpoint_slice = {
            "metadata": {"name": NAME, "labels": {"kubernetes.io/service-name": NAME}},
            "addressType": family,
            "endpoints": [{"addresses": [self.host], "conditions": {"ready": True}}],
            "ports": [port],
        }
        return [(SERVICES, service), (ENDPOINTS, endpoints), (SLICES, endpoint_slice)]

    async def reconcile(self) -> None:
        for info, want in self.desired():
            current = await self.registry.get_or_none(info, NAMESPACE, NAME)
            if current is None:
                with contextlib.suppress(errors.StatusError):  # created meanwhile, or default is terminating
                    await self.registry.create(info, NAMESPACE, want)
                continue
            if _matches(current, want):
                continue

            def mutate(obj: dict[str, Any], want: dict[str, Any] = want) -> dict[str, Any]:
                obj["metadata"].setdefault("labels", {}).update(want["metadata"]["labels"])
                for key, value in want.items():
                    if key != "metadata":
                        obj[key] = value
                return obj

            try:
                await self.registry.guaranteed_update(info, NAMESPACE, NAME, mutate)
            except errors.StatusError as e:
                log.warning("kubernetes service: updating %s: %s", info.plural, e.message)


def _matches(current: dict[str, Any], want: dict[str, Any]) -> bool:
    labels = current.get("metadata", {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in want["metadata"]["labels"].items()):
        return False
    for key, value in want.items():
        if key == "metadata":
            continue
        if key == "spec":
            spec = current.get("spec") or {}
            if any(spec.get(k) != v for k, v in value.items()):
                return False
        elif current.get(key) != value:
            return False
    return True
