"""Service creates: the ClusterIP (and node ports) a new Service gets, chosen before it reaches the registry,
as the service REST storage's allocators do."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from kubesat import errors
from kubesat.api.app import Request
from kubesat.api.resources import ResourceHandler
from kubesat.errors import invalid_value
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.meta import GoValue, go_quote
from kubesat.registry.service import NODE_PORT_RANGE, ClusterIPAllocator
from kubesat.registry.store import Registry

SERVICES = builtin_kind("v1", "Service")


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def install(resources: ResourceHandler, registry: Registry) -> ClusterIPAllocator:
    allocator = ClusterIPAllocator()

    async def allocate(req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> None:
        if res is not SERVICES:
            return
        spec = obj.get("spec")
        if not isinstance(spec, dict) or spec.get("type") == "ExternalName":
            return
        existing = (await registry.list(SERVICES, "")).items
        _cluster_ip(allocator, obj, spec, existing)
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            _node_ports(obj, spec, existing)

    resources.admission.append(allocate)
    return allocator


def _cluster_ip(allocator: ClusterIPAllocator, obj: dict[str, Any], spec: dict[str, Any],
                existing: list[dict[str, Any]]) -> None:
    wanted = str(spec.get("clusterIP") or (_l(spec.get("clusterIPs")) or [""])[0] or "")
    if wanted == "None":
        return
    if wanted:
        try:
            ipaddress.ip_address(wanted)
        except ValueError:
            return  # not an address at all: validation says so
    used = {str(ip) for s in existing for ip in _l((s.get("spec") or {}).get("clusterIPs"))}
    try:
        ip = allocator.allocate(used, wanted)
    except ValueError as e:
        shown = GoValue("[]string{" + go_quote(wanted) + "}" if wanted else "[]string(nil)")
        name = str((obj.get("metadata") or {}).get("name") or "")
        raise errors.invalid("Service", name, [invalid_value("spec.clusterIPs", shown, str(e))]) from None
    spec["clusterIP"] = ip
    spec["clusterIPs"] = [ip]


def _node_ports(obj: dict[str, Any], spec: dict[str, Any], existing: list[dict[str, Any]]) -> None:
    used = {p.get("nodePort") for s in existing for p in _l((s.get("spec") or {}).get("ports")) if isinstance(p, dict)}
    low, high = NODE_PORT_RANGE
    for i, port in enumerate(_l(spec.get("ports"))):
        if not isinstance(port, dict):
            continue
        wanted = port.get("nodePort")
        if wanted:
            if not isinstance(wanted, int) or not low <= wanted <= high or wanted in used:
                why = (f"provided port is not in the valid range. The range of valid ports is {low}-{high}"
                       if not isinstance(wanted, int) or not low <= wanted <= high else
                       "provided port is already allocated")
                name = str((obj.get("metadata") or {}).get("name") or "")
                raise errors.invalid("Service", name, [invalid_value(f"spec.ports[{i}].nodePort", wanted, why)])
            used.add(wanted)
            continue
        free = [p for p in random.sample(range(low, high + 1), 64) if p not in used]
        if free:
            port["nodePort"] = free[0]
            used.add(free[0])
