"""Endpoints and EndpointSlices from Services' selectors and their pods' readiness, as kube-controller-manager's
endpoint and endpointslice controllers keep them.

A Service with a selector gets an Endpoints object of its own name and one or more EndpointSlices (named from
`<service>-`, owned by the Service, at most 100 endpoints each) listing the matching pods that have an IP and
are not finished. In Endpoints a ready pod is an address and any other a notReadyAddress; a terminating pod is
left out (unless the Service publishes not-ready addresses). EndpointSlices keep terminating pods, with their
`ready`, `serving` and `terminating` conditions. Ports are the Service's ports with each targetPort resolved
against the pod (a named targetPort must name a container port of the pod, or the pod is left out of that
port). A Service without a selector is left alone: its Endpoints are the user's (as `default/kubernetes`'s are
the API server's).

The decisions (`endpoints_subsets`, `slice_endpoints`) are pure; the controller reacts to Service and Pod
changes by recomputing the Services concerned, and writes only what differs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from kubesat import errors
from kubesat.apimachinery.selectors import parse_label_selector
from kubesat.controllers.base import Key, QueuedController, loads, resource_of_key, split_key
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.endpoints")

SERVICES = builtin_kind("v1", "Service")
PODS = builtin_kind("v1", "Pod")
ENDPOINTS = builtin_kind("v1", "Endpoints")
SLICES = builtin_kind("discovery.k8s.io/v1", "EndpointSlice")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
# The endpointslice controller's --max-endpoints-per-slice default.
MAX_ENDPOINTS_PER_SLICE = 100

Port = tuple[str, int, str, str]  # (name, port, protocol, appProtocol) of one resolved service port
PortSet = tuple[Port, ...]


@dataclass
class PodEndpoint:
    """What the two controllers need of one pod that backs a Service."""

    ip: str
    name: str
    namespace: str
    uid: str
    node_name: str
    ready: bool
    terminating: bool
    hostname: str
    ports: tuple[Port, ...] = field(default=())


def _pod_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _pod_ip(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    ip = status.get("podIP") or ""
    if not ip:
        ips = status.get("podIPs") or []
        ip = (ips[0] or {}).get("ip", "") if ips else ""
    return str(ip)


def _resolve_port(service_port: dict[str, Any], pod: dict[str, Any]) -> int | None:
    """The pod's port for one Service port: a number as it is, a name looked up in the pod's containers."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for p in container.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == protocol:
                return int(p.get("containerPort") or 0) or None
    return None


def pod_endpoint(service: dict[str, Any], pod: dict[str, Any], include_terminating: bool) -> PodEndpoint | None:
    """The pod as an endpoint of `service`, or None when it may not be one (no IP, finished, terminating)."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    ip = _pod_ip(pod)
    meta = pod.get("metadata") or {}
    terminating = bool(meta.get("deletionTimestamp"))
    if not ip or (terminating and not include_terminating):
        return None
    spec = pod.get("spec") or {}
    svc_meta = service.get("metadata") or {}
    hostname = ""
    if spec.get("hostname") and spec.get("subdomain") == svc_meta.get("name"):
        hostname = str(spec["hostname"])
    ports: list[Port] = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = _resolve_port(sp, pod)
        if number is not None:
            ports.append((str(sp.get("name") or ""), number, str(sp.get("protocol") or "TCP"),
                          str(sp.get("appProtocol") or "")))
    return PodEndpoint(ip=ip, name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
                       uid=str(meta.get("uid", "")), node_name=str(spec.get("nodeName") or ""),
                       ready=_pod_ready(pod), terminating=terminating, hostname=hostname, ports=tuple(ports))


def _port_json(port: Port) -> dict[str, Any]:
    name, number, protocol, app = port
    out: dict[str, Any] = {"port": number, "protocol": protocol}
    if name:
        out["name"] = name
    if app:
        out["appProtocol"] = app
    return out


def _target_ref(ep: PodEndpoint) -> dict[str, Any]:
    return {"kind": "Pod", "namespace": ep.namespace, "name": ep.name, "uid": ep.uid}


def _has_ports(service: dict[str, Any]) -> bool:
    return bool((service.get("spec") or {}).get("ports"))


def endpoints_subsets(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Endpoints' subsets: pods grouped by the ports they resolve to, addresses sorted by IP."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[tuple[Port, ...], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for pod in pods:
        ep = pod_endpoint(service, pod, include_terminating=publish)
        if ep is None or (not ep.ports and _has_ports(service)):
            continue
        address: dict[str, Any] = {"ip": ep.ip}
        if ep.hostname:
            address["hostname"] = ep.hostname
        if ep.node_name:
            address["nodeName"] = ep.node_name
        address["targetRef"] = _target_ref(ep)
        ready, not_ready = groups.setdefault(tuple(sorted(ep.ports)), ([], []))
        (ready if ep.ready or publish else not_ready).append(address)
    subsets = []
    for ports in sorted(groups):
        ready, not_ready = groups[ports]
        subset: dict[str, Any] = {}
        if ready:
            subset["addresses"] = sorted(ready, key=lambda a: (_ip_key(a["ip"]), a["targetRef"]["uid"]))
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: (_ip_key(a["ip"]), a["targetRef"]["uid"]))
        if ports:
            subset["ports"] = [_port_json(p) for p in ports]
        subsets.append(subset)
    return subsets


def _ip_key(ip: str) -> tuple[int, int]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0)
    return (addr.version, int(addr))


def slice_endpoints(service: dict[str, Any], pods: list[dict[str, Any]]) -> dict[PortSet, list[dict[str, Any]]]:
    """The slices' endpoints grouped by port set (each group becomes one or more slices), sorted by IP."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[tuple[Port, ...], list[tuple[tuple[int, int], dict[str, Any]]]] = {}
    for pod in pods:
        ep = pod_endpoint(service, pod, include_terminating=True)
        if ep is None or (not ep.ports and _has_ports(service)):
            continue
        serving = ep.ready or publish
        endpoint: dict[str, Any] = {
            "addresses": [ep.ip],
            "conditions": {"ready": serving and not ep.terminating, "serving": serving,
                           "terminating": ep.terminating},
        }
        if ep.hostname:
            endpoint["hostname"] = ep.hostname
        endpoint["targetRef"] = _target_ref(ep)
        if ep.node_name:
            endpoint["nodeName"] = ep.node_name
        groups.setdefault(tuple(sorted(ep.ports)), []).append((_ip_key(ep.ip), endpoint))
    return {ports: [e for _, e in sorted(items, key=lambda t: (t[0], t[1]["targetRef"]["uid"]))]
            for ports, items in groups.items()}


def desired_slices(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every slice the Service should have, without names: a placeholder with no endpoints if none."""
    meta = service.get("metadata") or {}
    family = "IPv6" if any(":" in str(ip) for ip in (service.get("spec") or {}).get("clusterIPs") or []) else "IPv4"
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
    labels.update({SERVICE_NAME_LABEL: meta["name"], MANAGED_BY_LABEL: MANAGED_BY})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    owner = {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta.get("uid", ""),
             "controller": True, "blockOwnerDeletion": True}
    out = []
    groups = slice_endpoints(service, pods) or {(): []}
    for ports in sorted(groups):
        endpoints = groups[ports]
        for start in range(0, max(1, len(endpoints)), MAX_ENDPOINTS_PER_SLICE):
            out.append({
                "metadata": {"generateName": f"{meta['name']}-", "labels": dict(labels), "ownerReferences": [owner]},
                "addressType": family,
                "endpoints": endpoints[start:start + MAX_ENDPOINTS_PER_SLICE],
                "ports": [_port_json(p) for p in ports],
            })
    return out


def desired_endpoints(service: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    meta = service.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    out: dict[str, Any] = {"metadata": {"name": meta["name"]}}
    if labels:
        out["metadata"]["labels"] = labels
    subsets = endpoints_subsets(service, pods)
    if subsets:
        out["subsets"] = subsets
    return out


def _selector(service: dict[str, Any]) -> dict[str, str]:
    sel = (service.get("spec") or {}).get("selector")
    return {str(k): str(v) for k, v in sel.items()} if isinstance(sel, dict) else {}


def _matches(selector: dict[str, str], pod: dict[str, Any] | None) -> bool:
    if pod is None or not selector:
        return False
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


class EndpointsController(QueuedController):
    """Keeps every selector Service's Endpoints and EndpointSlices in step with its pods."""

    name = "endpoints"

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        # namespace -> service name -> selector, of the Services that have one
        self._selectors: dict[str, dict[str, dict[str, str]]] = {}

    async def _resync(self) -> int:
        rev = await self.registry.revision()
        self._selectors.clear()
        services = (await self.registry.list(SERVICES, "")).items
        for svc in services:
            self._note_service(svc)
            self._mark(svc["metadata"]["namespace"], svc["metadata"]["name"])
        # Endpoints left over from Services deleted while the server was down (the controller's start check).
        known = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in services}
        for ep in (await self.registry.list(ENDPOINTS, "")).items:
            key = (ep["metadata"]["namespace"], ep["metadata"]["name"])
            if key not in known:
                self._mark(*key)
        return rev

    def _note_service(self, svc: dict[str, Any]) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        selector = _selector(svc)
        if selector:
            self._selectors.setdefault(ns, {})[name] = selector
        else:
            self._selectors.get(ns, {}).pop(name, None)

    def _mark(self, namespace: str, name: str) -> None:
        self.queue.add((namespace, name))

    async def _on_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is SERVICES:
            ns, name = split_key(SERVICES, ev.key)
            if ev.value is None:
                self._selectors.get(ns, {}).pop(name, None)
            else:
                svc = loads(ev.value)
                if svc is not None:
                    self._note_service(svc)
            self._mark(ns, name)
        elif info is PODS:
            ns, _ = split_key(PODS, ev.key)
            new, old = loads(ev.value), loads(ev.prev_value)
            for name, selector in self._selectors.get(ns, {}).items():
                if _matches(selector, new) or _matches(selector, old):
                    self._mark(ns, name)

    async def _sync_key(self, key: Key) -> None:
        await self.sync(*key)

    async def sync(self, namespace: str, name: str) -> None:
        """Bring one Service's Endpoints and EndpointSlices to what its pods say now."""
        svc = await self.registry.get_or_none(SERVICES, namespace, name)
        if svc is None:
            # Its slices go with it (they are owned by it); its Endpoints are removed here, as Kubernetes does.
            with contextlib.suppress(errors.StatusError):
                await self.registry.delete(ENDPOINTS, namespace, name, DeleteOptions())
            return
        selector = _selector(svc)
        if not selector:
            return
        sel = parse_label_selector(",".join(f"{k}={v}" for k, v in sorted(selector.items())))
        pods = (await self.registry.list(PODS, namespace, labels=sel)).items
        await self._write_endpoints(namespace, desired_endpoints(svc, pods))
        await self._write_slices(namespace, name, desired_slices(svc, pods))

    async def _write_endpoints(self, namespace: str, want: dict[str, Any]) -> None:
        name = want["metadata"]["name"]
        current = await self.registry.get_or_none(ENDPOINTS, namespace, name)
        if current is None:
            with contextlib.suppress(errors.StatusError):  # created meanwhile, or the namespace is going
                await self.registry.create(ENDPOINTS, namespace, want)
            return
        if _same_endpoints(current, want):
            return

        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"]["labels"] = want["metadata"].get("labels") or {}
            obj.pop("subsets", None)
            if "subsets" in want:
                obj["subsets"] = want["subsets"]
            return obj

        await self.registry.guaranteed_update(ENDPOINTS, namespace, name, mutate)

    async def _write_slices(self, namespace: str, service: str, want: list[dict[str, Any]]) -> None:
        sel = parse_label_selector(f"{SERVICE_NAME_LABEL}={service},{MANAGED_BY_LABEL}={MANAGED_BY}")
        existing = sorted((await self.registry.list(SLICES, namespace, labels=sel)).items,
                          key=lambda s: s["metadata"]["name"])
        for current, desired in zip(existing, want, strict=False):
            if _same_slice(current, desired):
                continue

            def mutate(obj: dict[str, Any], desired: dict[str, Any] = desired) -> dict[str, Any]:
                obj["metadata"]["labels"] = desired["metadata"]["labels"]
                obj["metadata"]["ownerReferences"] = desired["metadata"]["ownerReferences"]
                for key in ("addressType", "endpoints", "ports"):
                    obj[key] = desired[key]
                return obj

            await self.registry.guaranteed_update(SLICES, namespace, current["metadata"]["name"], mutate)
        for desired in want[len(existing):]:
            await self.registry.create(SLICES, namespace, desired)
        for extra in existing[len(want):]:
            with contextlib.suppress(errors.StatusError):
                await self.registry.delete(SLICES, namespace, extra["metadata"]["name"], DeleteOptions())


def _same_endpoints(current: dict[str, Any], want: dict[str, Any]) -> bool:
    return ((current["metadata"].get("labels") or {}) == (want["metadata"].get("labels") or {})
            and (current.get("subsets") or []) == (want.get("subsets") or []))


def _same_slice(current: dict[str, Any], want: dict[str, Any]) -> bool:
    meta = current["metadata"]
    return ((meta.get("labels") or {}) == want["metadata"]["labels"]
            and (meta.get("ownerReferences") or []) == want["metadata"]["ownerReferences"]
            and all((current.get(k) or []) == (want.get(k) or []) for k in ("endpoints", "ports"))
            and current.get("addressType") == want["addressType"])
