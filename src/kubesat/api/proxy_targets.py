"""Where pods/proxy and services/proxy send a request: the `[scheme:]name[:port]` id read, the pod's IP and port or
a Service's ready endpoint chosen, as kube-apiserver's ResourceLocation does it, with its error messages.

Pure decisions over the objects read from the store (api/proxy_api.py reads them and relays the request).
The address proxied to is always a pod's own IP (`status.podIP`, or an Endpoints address whose target pod has
that IP). Kubernetes refuses any IP that is not global unicast ("address not allowed"); a kubesat pod's IP is a
loopback address (pods run on the host, the node's address is 127.0.0.1), so loopback is allowed here, while the
unspecified, multicast, link-local (cloud metadata), broadcast and reserved ranges stay refused.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubesat import errors

_SCHEMES = ("", "http", "https")
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
MAX_ID = 512  # a longer `[scheme:]name[:port]` can never name a pod or Service (names are at most 253 characters)


@dataclass(frozen=True)
class Target:
    """One backend: scheme, the pod IP, the port."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, raw_path: str, raw_query: str) -> str:
        return f"{self.scheme}://{self.netloc}{raw_path or '/'}" + (f"?{raw_query}" if raw_query else "")


@dataclass(frozen=True)
class ProxyID:
    scheme: str
    name: str
    port: str


def split_id(what: str, text: str) -> ProxyID:
    """`name`, `name:port` or `scheme:name:port` (Go's SplitSchemeNamePort); 400 as kube-apiserver words it."""
    parts = text.split(":") if len(text) <= MAX_ID else []
    if len(parts) == 1:
        found = ProxyID("", parts[0], "")
    elif len(parts) == 2:
        found = ProxyID("", parts[0], parts[1])
    elif len(parts) == 3:
        found = ProxyID(parts[0], parts[1], parts[2])
    else:
        found = ProxyID("", "", "")
    if not found.name or found.scheme not in _SCHEMES:
        raise errors.bad_request(f"invalid {what} request {_quote(text)}")
    return found


def _quote(text: str) -> str:
    clipped = text if len(text) <= 64 else text[:64] + "..."
    return '"' + clipped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def allowed_address(ip: str) -> bool:
    """Whether kubesat proxies to this pod IP: any unicast address, loopback included (a kubesat pod's IP),
    never the unspecified, multicast, link-local, broadcast or reserved ones."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return True  # (Python counts ::1 among the reserved ::/8)
    if addr.is_unspecified or addr.is_multicast or addr.is_link_local or addr.is_reserved:
        return False
    return not (isinstance(addr, ipaddress.IPv4Address) and addr == ipaddress.IPv4Address("255.255.255.255"))


def _port_number(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536:
        return int(text)
    return None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def pod_target(pod: dict[str, Any], pid: ProxyID) -> Target:
    """The pod's IP and the port asked for, else its first declared container port, else the scheme's."""
    name = pod["metadata"]["name"]
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        # Its IP is the node's, which other pods share: what answers there now is not this pod.
        raise errors.bad_request(f"pod {name} is not running (phase {phase})")
    ip = str(status.get("podIP") or "")
    if not allowed_address(ip):
        raise errors.bad_request("address not allowed")
    scheme = pid.scheme or "http"
    if pid.port:
        port = _port_number(pid.port)
        if port is None:
            text = ":".join(p for p in (pid.scheme, pid.name, pid.port) if p)
            raise errors.bad_request(f"invalid pod request {_quote(text)}: the port must be a number from 1 "
                                     "to 65535")
        return Target(scheme, ip, port)
    for c in spec.get("containers") or []:
        for p in (c.get("ports") or []) if isinstance(c, dict) else []:
            number = p.get("containerPort") if isinstance(p, dict) else None
            if isinstance(number, int) and 0 < number < 65536:
                return Target(scheme, ip, number)
    return Target(scheme, ip, _default_port(scheme))


def node_target(host: str, kubelet_port: int, pid: ProxyID) -> Target:
    """The node's kubelet API. kube-apiserver also proxies to a node's other ports (plain HTTP, the proxy transport)
    when the address is not loopback or link-local; a kubesat node's address is often 127.0.0.1, the server's own
    host, so kubesat reaches the kubelet API's port only."""
    if pid.port and pid.port != str(kubelet_port) or pid.scheme == "http":
        text = ":".join(p for p in (pid.scheme, pid.name, pid.port) if p)
        raise errors.bad_request(f"invalid node request {_quote(text)}: kubesat proxies to the kubelet API only "
                                 f"(https, port {kubelet_port})")
    return Target("https", host, kubelet_port)


def service_port_name(service: dict[str, Any], pid: ProxyID) -> str:
    """The Service port's name a request means: a number is looked up among spec.ports (503 when none has it)."""
    number = _port_number(pid.port)
    if number is None:
        return pid.port
    for p in (service.get("spec") or {}).get("ports") or []:
        if isinstance(p, dict) and p.get("port") == number:
            return str(p.get("name") or "")
    raise errors.StatusError(503, "ServiceUnavailable",
                             f'no service port {number} found for service "{pid.name}"', details={})


def check_service_port(pid: ProxyID, text: str) -> None:
    """A port that could never name one (kubesat's 400 where kube-apiserver would look and answer 503): neither a
    number from 1 to 65535 nor a port name (IANA_SVC_NAME: at most 15 lower-case letters, digits and '-')."""
    port = pid.port
    if not port or _port_number(port) is not None:
        return
    if len(port) <= 15 and _PORT_NAME.fullmatch(port) and "--" not in port and any(c.isalpha() for c in port):
        return
    raise errors.bad_request(f"invalid service request {_quote(text)}: the port must be a number from 1 to 65535 "
                             "or a port's name")


def service_candidates(endpoints: dict[str, Any], pid: ProxyID, port_name: str) -> Iterator[tuple[Target, str, str]]:
    """The ready addresses of the Service's Endpoints that serve the named port, in kube-apiserver's random order
    (a random subset first, then a random address of it), each with the (namespace, name) of the pod it targets;
    addresses that target no pod or whose IP is never proxied to are left out. 503 when there are no subsets."""
    subsets = [s for s in endpoints.get("subsets") or [] if isinstance(s, dict)]
    if not subsets:
        raise _no_endpoints(pid.name)
    start = random.randrange(len(subsets))
    for i in range(len(subsets)):
        subset = subsets[(start + i) % len(subsets)]
        addresses = [a for a in subset.get("addresses") or [] if isinstance(a, dict)]
        for port in subset.get("ports") or []:
            if not isinstance(port, dict) or str(port.get("name") or "") != port_name:
                continue
            number = port.get("port")
            if not (isinstance(number, int) and 0 < number < 65536):
                continue
            for address in random.sample(addresses, len(addresses)):
                ip, ref = str(address.get("ip") or ""), address.get("targetRef")
                if allowed_address(ip) and isinstance(ref, dict) and ref.get("kind") == "Pod" and ref.get("name"):
                    yield Target(pid.scheme or "http", ip, number), str(ref.get("namespace") or ""), str(ref["name"])


def no_endpoints(text: str) -> errors.StatusError:
    """When no address will do: kube-apiserver names the whole id here (the Service alone when it has no subsets)."""
    return _no_endpoints(text if len(text) <= 64 else text[:64] + "...")


def pod_ip_list(pod: dict[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    ips = [str(p.get("ip")) for p in status.get("podIPs") or [] if isinstance(p, dict) and p.get("ip")]
    return ips or ([str(status["podIP"])] if status.get("podIP") else [])


def _no_endpoints(name: str) -> errors.StatusError:
    return errors.StatusError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"', details={})
