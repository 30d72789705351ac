"""Where a node's pods reach each Service, as pure decisions: its loopback address, its names in /etc/hosts, the
ready endpoints behind each port, whether a port needs a listener, and which endpoint a connection tries first.

kubesat has no pod network and no kube-proxy rules: pods share the host's network, so a Service's ClusterIP
(10.96.0.0/12) leads nowhere on the machine. Each ClusterIP Service is given a loopback address instead, the low
24 bits of its ClusterIP under 127.0.0.0/8 (10.96.3.7 -> 127.96.3.7): Linux answers every 127/8 address on `lo`
without configuration, the address is the same on every node and across agent restarts, and two Services never
share one (the API server keeps ClusterIPs unique). The service proxy listens there; pods find the address
through /etc/hosts and the `{SVC}_SERVICE_HOST` variables. With the bridge pod network (podnet.py) pods have
their own network, and a Service's address is its ClusterIP itself (`cluster_ips`), added to the node's bridge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CLUSTER_DOMAIN = "cluster.local"
# The `kubernetes` Service in `default` is relayed to the API server on its own (relay.py), under these names.
MASTER_SERVICE = ("default", "kubernetes")


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def loopback_address(cluster_ip: str) -> str | None:
    """The loopback address pods use for the Service with this ClusterIP (None: headless, empty or not IPv4)."""
    try:
        ip = ipaddress.ip_address(cluster_ip)
    except ValueError:
        return None
    if ip.version != 4:
        return None
    low = int(ip) & 0xFFFFFF
    if low >> 16 == 0:
        return None  # 127.0.x.y holds 127.0.0.1 (the server, the API relay): never hand it out
    return str(ipaddress.IPv4Address((127 << 24) | low))


def service_key(service: Mapping[str, Any]) -> tuple[str, str]:
    meta = _d(service.get("metadata"))
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def service_address(service: Mapping[str, Any], cluster_ips: bool = False) -> str | None:
    """The loopback address of a ClusterIP Service (None for headless, ExternalName and the `kubernetes` one);
    `cluster_ips` (the bridge pod network, whose pods reach the ClusterIPs): its IPv4 ClusterIP itself."""
    if service_key(service) == MASTER_SERVICE:
        return None
    spec = _d(service.get("spec"))
    if spec.get("type") == "ExternalName":
        return None
    cluster_ip = str(spec.get("clusterIP") or "")
    if cluster_ips:
        return cluster_ip if loopback_address(cluster_ip) is not None else None
    return loopback_address(cluster_ip)


def with_reachable_address(service: dict[str, Any], cluster_ips: bool = False) -> dict[str, Any]:
    """The Service as its environment variables should name it: `clusterIP` replaced by its loopback address
    (left as it is when it has none)."""
    address = service_address(service, cluster_ips)
    if address is None:
        return service
    return dict(service, spec=dict(_d(service.get("spec")), clusterIP=address))


def host_names(namespace: str, name: str, pod_namespace: str) -> list[str]:
    """The names a pod in `pod_namespace` may use for the Service, as cluster DNS with the pod's search path
    answers them (`NAME` only in the Service's own namespace)."""
    names = [f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"]
    return ([name] if namespace == pod_namespace else []) + names


def hosts_entries(services: Iterable[Mapping[str, Any]], pod_namespace: str,
                  cluster_ips: bool = False) -> dict[str, str]:
    """/etc/hosts entries (name -> address) for every Service with a loopback address (`cluster_ips`: its
    ClusterIP), as a pod sees them."""
    out: dict[str, str] = {}
    for svc in sorted(services, key=service_key):
        address = service_address(svc, cluster_ips)
        if address is None:
            continue
        namespace, name = service_key(svc)
        for host in host_names(namespace, name, pod_namespace):
            out[host] = address
    return out


@dataclass(frozen=True)
class ServicePort:
    """One TCP port of a Service, with the ready endpoints behind it (ip, port) and the targetPort as written."""

    name: str
    port: int
    target_port: int | str
    endpoints: tuple[tuple[str, int], ...]


def _port_number(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536 else 0


def ready_endpoints(endpoints: Mapping[str, Any] | None, port_name: str) -> tuple[tuple[str, int], ...]:
    """The ready addresses of an Endpoints object for the Service port named `port_name` ("" for the one
    unnamed port), each with the port it resolved to; not-ready addresses are left out, as kube-proxy leaves them."""
    out: list[tuple[str, int]] = []
    for subset in _l(_d(endpoints).get("subsets")):
        subset = _d(subset)
        number = next((_port_number(_d(p).get("port")) for p in _l(subset.get("ports"))
                       if str(_d(p).get("name") or "") == port_name
                       and str(_d(p).get("protocol") or "TCP") == "TCP"), 0)
        if not number:
            continue
        for address in _l(subset.get("addresses")):
            ip = str(_d(address).get("ip") or "")
            if ip and (ip, number) not in out:
                out.append((ip, number))
    return tuple(out)


def service_ports(service: Mapping[str, Any], endpoints: Mapping[str, Any] | None) -> list[ServicePort]:
    """The Service's TCP ports with their ready endpoints (UDP and SCTP ports are not relayed)."""
    out = []
    for p in _l(_d(service.get("spec")).get("ports")):
        p = _d(p)
        number = _port_number(p.get("port"))
        if not number or str(p.get("protocol") or "TCP") != "TCP":
            continue
        name = str(p.get("name") or "")
        target = p.get("targetPort")
        target_port: int | str = target if isinstance(target, (int, str)) and not isinstance(target, bool) \
            else number
        out.append(ServicePort(name, number, target_port, ready_endpoints(endpoints, name)))
    return out


def needs_listener(port: ServicePort, node_address: str) -> bool:
    """Whether the proxy must listen on the Service's address at this port.

    Not when there is no ready endpoint (a connection is refused, as kube-proxy rejects it), nor when every
    endpoint is a pod of this node listening on the Service's own port number: pods share the host network, so
    that pod's socket on all addresses already answers at the Service's loopback address, and a listener of ours
    on the same port would take the port from it (Linux refuses a wildcard bind beside a specific one).
    """
    if not port.endpoints:
        return False
    return not all(ip == node_address and number == port.port for ip, number in port.endpoints)


def endpoint_order(endpoints: tuple[tuple[str, int], ...], turn: int) -> list[tuple[str, int]]:
    """The endpoints in the order a connection tries them: round-robin from `turn`, the rest after it, so an
    endpoint that refuses is skipped for the next one."""
    if not endpoints:
        return []
    start = turn % len(endpoints)
    return list(endpoints[start:] + endpoints[:start])
