"""Services, Endpoints and EndpointSlices: v1 defaults, the validation a client meets first, ClusterIP
bookkeeping and the `kubectl get` rows, as Kubernetes 1.32 has them.

A Service's ClusterIP comes from the service range (kubeadm's 10.96.0.0/12; its first address is the
`kubernetes` Service's). The address is chosen by `ClusterIPAllocator` before the create (the API layer
calls it, since choosing needs the store), and kept on update when the client leaves it out, as the
service REST storage does. Kubesat routes no Service traffic but the `kubernetes` one (the node agent
relays it); the objects are served so that clients and controllers see what a cluster shows them.
"""

from __future__ import annotations

import ipaddress
import random
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from kubesat.errors import FieldError, duplicate, invalid_value, not_supported, required
from kubesat.registry.meta import (
    GoValue,
    age_column,
    as_dict,
    column,
    field_doc,
    go_quote,
    label_value,
    name_column,
    qualified_name,
)
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import age

SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")
KUBERNETES_SERVICE_IP = str(SERVICE_CIDR.network_address + 1)
NODE_PORT_RANGE = (30000, 32767)
_SERVICE_DEF = "io.k8s.api.core.v1.ServiceSpec"
_IANA_SVC_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# ----------------------------------------------------------------------------------- Service


def apply_service_defaults(svc: dict[str, Any]) -> None:
    """SetDefaults_Service (v1), the parts that do not need the allocator."""
    spec = svc.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    kind = spec["type"]
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    for port in _l(spec.get("ports")):
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if port.get("targetPort") in (None, 0, ""):
                port["targetPort"] = port.get("port")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if kind != "ExternalName":
        ips = [ip for ip in _l(spec.get("clusterIPs")) if isinstance(ip, str)]
        if ips and ips[0] != "None":
            spec.setdefault("ipFamilies", ["IPv6" if ":" in ip else "IPv4" for ip in ips])
        elif not ips or ips[0] == "None":
            spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")


def _validate_ports(spec: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    ports = _l(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if not ports and spec.get("type") != "ExternalName" and not headless:
        errs.append(required("spec.ports", ""))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, p in enumerate(ports):
        path = f"spec.ports[{i}]"
        p = as_dict(p)
        name = p.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(required(f"{path}.name", ""))
        elif name:
            if not _IANA_SVC_RE.match(name) or len(name) > 15:
                errs.append(invalid_value(f"{path}.name", name, "must be a valid IANA service name"))
            if name in names:
                errs.append(duplicate(f"{path}.name", name))
            names.add(name)
        number = _int(p.get("port"))
        if number is None or not 1 <= number <= 65535:
            errs.append(invalid_value(f"{path}.port", p.get("port"), "must be between 1 and 65535, inclusive"))
        protocol = p.get("protocol")
        if protocol not in _PROTOCOLS:
            errs.append(not_supported(f"{path}.protocol", protocol, _PROTOCOLS))
        if (number, protocol) in seen:
            errs.append(duplicate(f"{path}", GoValue(f"core.ServicePort{{Name:{go_quote(name)}, "
                                                      f"Protocol:{go_quote(str(protocol))}, Port:{number}}}")))
        seen.add((number, protocol))
        target = p.get("targetPort")
        if isinstance(target, int) and not isinstance(target, bool) and not 1 <= target <= 65535:
            errs.append(invalid_value(f"{path}.targetPort", target, "must be between 1 and 65535, inclusive"))
    return errs


def _validate_cluster_ips(spec: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ip in enumerate(_l(spec.get("clusterIPs"))):
        if ip == "None" and i == 0:
            continue
        try:
            addr = ipaddress.ip_address(str(ip))
        except ValueError:
            errs.append(invalid_value(f"spec.clusterIPs[{i}]", ip, "must be a valid IP address, (e.g. 10.9.8.7 or "
                                                                   "2001:db8::ffff)"))
            continue
        if addr.is_loopback or addr.is_link_local or addr.is_unspecified:
            errs.append(invalid_value(f"spec.clusterIPs[{i}]", ip, "may not be in the loopback range (127.0.0.0/8, "
                                                                   "::1/128)" if addr.is_loopback else
                                      "may not be an unspecified or link-local address"))
    return errs


def validate_service(svc: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = as_dict(svc.get("spec"))
    kind = spec.get("type")
    if kind not in _TYPES:
        errs.append(not_supported("spec.type", kind, _TYPES))
    if kind == "ExternalName" and not spec.get("externalName"):
        errs.append(required("spec.externalName", ""))
    if spec.get("sessionAffinity") not in ("ClientIP", "None"):
        errs.append(not_supported("spec.sessionAffinity", spec.get("sessionAffinity"), ["ClientIP", "None"]))
    errs += _validate_ports(spec)
    errs += _validate_cluster_ips(spec)
    for key, value in as_dict(spec.get("selector")).items():
        errs += [invalid_value("spec.selector", key, m) for m in qualified_name(str(key))]
        errs += [invalid_value("spec.selector", value, m) for m in label_value(str(value))]
    return errs


def _keep_allocated(new: dict[str, Any], old: dict[str, Any]) -> None:
    """An update that leaves out the allocated addresses and ports keeps them (patchAllocatedValues)."""
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    if not isinstance(new.get("spec"), dict) or spec.get("type") == "ExternalName":
        return
    if not spec.get("clusterIP") and old_spec.get("clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]
    if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
        spec["clusterIPs"] = list(old_spec["clusterIPs"])
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p for p in _l(old_spec.get("ports")) if isinstance(p, dict)}
    for p in _l(spec.get("ports")):
        if isinstance(p, dict) and not p.get("nodePort"):
            before = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
            if before and before.get("nodePort") and spec.get("type") in ("NodePort", "LoadBalancer"):
                p["nodePort"] = before["nodePort"]


class ServiceStrategy(Strategy):
    has_status = True
    has_generation = False
    name_rule = "dns1035"

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        apply_service_defaults(obj)
        obj["status"] = {"loadBalancer": {}}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        new["status"] = old.get("status") or {"loadBalancer": {}}
        _keep_allocated(new, old)
        apply_service_defaults(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_service(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs = validate_service(new)
        spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
        if old_spec.get("clusterIP") and spec.get("type") != "ExternalName" and \
                spec.get("clusterIP") != old_spec.get("clusterIP"):
            errs.append(invalid_value("spec.clusterIPs[0]", GoValue(
                "[]string{" + ", ".join(go_quote(str(x)) for x in _l(spec.get("clusterIPs"))) + "}"),
                "may not change once set"))
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Type", field_doc(_SERVICE_DEF, "type")),
            column("Cluster-IP", field_doc(_SERVICE_DEF, "clusterIP")),
            column("External-IP", field_doc(_SERVICE_DEF, "externalIPs")),
            column("Port(s)", "The ports that this service is serving on."),
            age_column(),
            column("Selector", field_doc(_SERVICE_DEF, "selector"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec = as_dict(obj.get("spec"))
        kind = spec.get("type") or "ClusterIP"
        external = ",".join(str(x) for x in _l(spec.get("externalIPs")))
        if kind == "ExternalName":
            external = str(spec.get("externalName") or "")
        elif kind == "LoadBalancer":
            ingress = _l(as_dict(as_dict(obj.get("status")).get("loadBalancer")).get("ingress"))
            lb = ",".join(str(as_dict(i).get("ip") or as_dict(i).get("hostname") or "") for i in ingress)
            external = ",".join(x for x in (lb, external) if x) or "<pending>"
        ports = []
        for p in _l(spec.get("ports")):
            p = as_dict(p)
            text = f"{p.get('port')}/{p.get('protocol', 'TCP')}"
            if p.get("nodePort"):
                text = f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}"
            ports.append(text)
        selector = ",".join(f"{k}={v}" for k, v in sorted(as_dict(spec.get("selector")).items()))
        return [as_dict(obj.get("metadata")).get("name", ""), kind, spec.get("clusterIP") or "<none>",
                external or "<none>", ",".join(ports) or "<none>", age(obj, now), selector or "<none>"]


class ClusterIPAllocator:
    """Chooses a free ClusterIP for a new Service from the service range. Free means: not held by a stored
    Service (the caller passes those) and not handed out in the last minute to a create that may still be on
    its way to the store."""

    HOLD = 60.0

    def __init__(self, cidr: ipaddress.IPv4Network = SERVICE_CIDR,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cidr = cidr
        self.clock = clock
        self._recent: dict[str, float] = {}

    def _held(self) -> set[str]:
        now = self.clock()
        self._recent = {ip: t for ip, t in self._recent.items() if now - t < self.HOLD}
        return set(self._recent)

    def allocate(self, used: set[str], wanted: str = "") -> str:
        """`wanted` (the client's own clusterIP) if it is in range and free, else a random free address.
        Raises ValueError with Kubernetes' words when that cannot be."""
        taken = used | self._held()
        if wanted:
            addr = ipaddress.ip_address(wanted)
            if addr not in self.cidr:
                raise ValueError(f"failed to allocate IP {wanted}: the provided IP ({wanted}) is not in the "
                                 f"valid range. The range of valid IPs is {self.cidr}")
            if wanted in taken:
                raise ValueError(f"failed to allocate IP {wanted}: provided IP is already allocated")
            self._recent[wanted] = self.clock()
            return wanted
        size = self.cidr.num_addresses - 2  # from .2: .0 is the network, .1 the kubernetes Service's
        start = random.randrange(size)
        if len(taken) >= size // 2:  # a crowded range: walk it once from a random point
            offsets: Iterable[int] = ((start + i) % size for i in range(size))
        else:
            offsets = (random.randrange(size) for _ in range(64))
        for offset in offsets:
            candidate = str(self.cidr.network_address + 2 + offset)
            if candidate not in taken:
                self._recent[candidate] = self.clock()
                return candidate
        raise ValueError("failed to allocate a serviceIP: range is full")


# ----------------------------------------------------------------------------------- Endpoints


class EndpointsStrategy(Strategy):
    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs: list[FieldError] = []
        for i, subset in enumerate(_l(obj.get("subsets"))):
            subset = as_dict(subset)
            for key in ("addresses", "notReadyAddresses"):
                for j, a in enumerate(_l(subset.get(key))):
                    ip = str(as_dict(a).get("ip") or "")
                    try:
                        ipaddress.ip_address(ip)
                    except ValueError:
                        errs.append(invalid_value(f"subsets[{i}].{key}[{j}].ip", ip,
                                                  "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
            for j, p in enumerate(_l(subset.get("ports"))):
                number = _int(as_dict(p).get("port"))
                if number is None or not 1 <= number <= 65535:
                    errs.append(invalid_value(f"subsets[{i}].ports[{j}].port", as_dict(p).get("port"),
                                              "must be between 1 and 65535, inclusive"))
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Endpoints", "Endpoints of the resource"), age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        shown = []
        for subset in _l(obj.get("subsets")):
            subset = as_dict(subset)
            ports = [as_dict(p).get("port") for p in _l(subset.get("ports"))] or [None]
            for a in _l(subset.get("addresses")):
                for port in ports:
                    ip = as_dict(a).get("ip", "")
                    shown.append(f"{ip}:{port}" if port is not None else str(ip))
        text = ",".join(shown[:3]) + (f" + {len(shown) - 3} more..." if len(shown) > 3 else "")
        return [as_dict(obj.get("metadata")).get("name", ""), text or "<none>", age(obj, now)]


class EndpointSliceStrategy(Strategy):
    _ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs: list[FieldError] = []
        kind = obj.get("addressType")
        if not kind:
            errs.append(required("addressType", ""))
        elif kind not in self._ADDRESS_TYPES:
            errs.append(not_supported("addressType", kind, self._ADDRESS_TYPES))
        for i, ep in enumerate(_l(obj.get("endpoints"))):
            addresses = _l(as_dict(ep).get("addresses"))
            if not addresses:
                errs.append(required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
            for j, a in enumerate(addresses):
                if kind in ("IPv4", "IPv6"):
                    try:
                        ok = (ipaddress.ip_address(str(a)).version == 4) == (kind == "IPv4")
                    except ValueError:
                        ok = False
                    if not ok:
                        errs.append(invalid_value(f"endpoints[{i}].addresses[{j}]", a,
                                                  f"must be a valid {kind} address"))
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("AddressType", "Type of address carried by this EndpointSlice"),
                column("Ports", "Ports provided by this EndpointSlice"),
                column("Endpoints", "Endpoints in this EndpointSlice"), age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        ports = ",".join(str(as_dict(p).get("port")) for p in _l(obj.get("ports"))) or "<unset>"
        addrs = [str(a) for ep in _l(obj.get("endpoints")) for a in _l(as_dict(ep).get("addresses"))]
        text = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
        return [as_dict(obj.get("metadata")).get("name", ""), obj.get("addressType", ""), ports,
                text or "<unset>", age(obj, now)]
