"""networking.k8s.io/v1 Ingress, IngressClass and NetworkPolicy: stored with Kubernetes' defaults, validation
and columns. kubesat runs no ingress controller and enforces no network policy; the objects are there for the
controllers and charts that read and write them."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from kubesat.apimachinery.duration import age
from kubesat.errors import FieldError, invalid_value, not_supported, required
from kubesat.registry.meta import GoValue, age_column, as_dict, column, go_quote, name_column, qualified_name
from kubesat.registry.strategy import Strategy

PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
POLICY_TYPES = ["Egress", "Ingress"]  # sorted, as Kubernetes lists them
MAX_CONTROLLER_LEN = 250


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _selector_text(sel: Any) -> str:
    """A LabelSelector as kubectl prints it (`a=b,c in (d)`), `<none>` when it selects everything."""
    sel = as_dict(sel)
    parts = [f"{k}={v}" for k, v in sorted(as_dict(sel.get("matchLabels")).items())]
    for e in _list(sel.get("matchExpressions")):
        e = as_dict(e)
        op, key, values = e.get("operator"), e.get("key", ""), ",".join(str(x) for x in _list(e.get("values")))
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                      "DoesNotExist": f"!{key}"}.get(str(op), key))
    return ",".join(parts) or "<none>"


# --- Ingress ----------------------------------------------------------------------------------------------

def _validate_backend(backend: dict[str, Any], path: str) -> list[FieldError]:
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [invalid_value(path, GoValue("networking.IngressBackend{...}"),
                              "cannot set both resource and service backends")]
    if service is None and resource is None:
        return [invalid_value(path, GoValue("networking.IngressBackend{...}"),
                              "resource or service backend is required")]
    if resource is not None:
        errs = []
        for key in ("kind", "name"):
            if not as_dict(resource).get(key):
                errs.append(required(f"{path}.resource.{key}"))
        return errs
    svc = as_dict(service)
    errs = [] if svc.get("name") else [required(f"{path}.service.name")]
    port = as_dict(svc.get("port"))
    if port.get("name") and port.get("number"):
        errs.append(invalid_value(f"{path}.service.port", GoValue("networking.ServiceBackendPort{...}"),
                                  "cannot set both port name & port number"))
    elif not port.get("name") and not port.get("number"):
        errs.append(invalid_value(f"{path}.service.port", GoValue("networking.ServiceBackendPort{...}"),
                                  "port name or number is required"))
    elif isinstance(port.get("number"), int) and not 0 < port["number"] < 65536:
        errs.append(invalid_value(f"{path}.service.port.number", port["number"],
                                  "must be between 1 and 65535, inclusive"))
    return errs


def _validate_rule_paths(http: dict[str, Any], path: str) -> list[FieldError]:
    paths = _list(http.get("paths"))
    if not paths:
        return [required(f"{path}.paths")]
    errs: list[FieldError] = []
    for i, p in enumerate(paths):
        p, where = as_dict(p), f"{path}.paths[{i}]"
        kind = p.get("pathType")
        if kind is None:
            errs.append(required(f"{where}.pathType", "pathType must be specified"))
        elif kind not in PATH_TYPES:
            errs.append(not_supported(f"{where}.pathType", kind, PATH_TYPES))
        elif kind in ("Exact", "Prefix") and not str(p.get("path") or "").startswith("/"):
            errs.append(invalid_value(f"{where}.path", p.get("path", ""), "must be an absolute path"))
        errs += _validate_backend(as_dict(p.get("backend")), f"{where}.backend")
    return errs


def validate_ingress(obj: dict[str, Any]) -> list[FieldError]:
    spec = as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    if spec.get("defaultBackend") is None and not _list(spec.get("rules")):
        errs.append(invalid_value("spec", GoValue("[]networking.IngressRule(nil)"),
                                  "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errs += _validate_backend(as_dict(spec["defaultBackend"]), "spec.defaultBackend")
    for i, rule in enumerate(_list(spec.get("rules"))):
        rule = as_dict(rule)
        if rule.get("http") is not None:
            errs += _validate_rule_paths(as_dict(rule["http"]), f"spec.rules[{i}].http")
    return errs


class IngressStrategy(Strategy):
    has_status = True
    has_generation = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        obj["status"] = {"loadBalancer": {}}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        new["status"] = old.get("status") or {"loadBalancer": {}}

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_ingress(obj)

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Class", "The name of the IngressClass resource."),
                column("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
                column("Address", "Address is a list containing ingress points for the load-balancer"),
                column("Ports", "Ports of TLS configurations that open"), age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec = as_dict(obj.get("spec"))
        hosts = [str(as_dict(r).get("host")) for r in _list(spec.get("rules")) if as_dict(r).get("host")]
        ingress = _list(as_dict(as_dict(obj.get("status")).get("loadBalancer")).get("ingress"))
        address = ",".join(str(as_dict(i).get("ip") or as_dict(i).get("hostname") or "") for i in ingress)
        return [as_dict(obj.get("metadata")).get("name", ""), spec.get("ingressClassName") or "<none>",
                ",".join(hosts) or "*", address, "80, 443" if _list(spec.get("tls")) else "80", age(obj, now)]


# --- IngressClass -----------------------------------------------------------------------------------------

def validate_ingress_class(obj: dict[str, Any]) -> list[FieldError]:
    controller = as_dict(obj.get("spec")).get("controller")
    if not controller:
        return [required("spec.controller")]
    text = str(controller)
    if len(text) > MAX_CONTROLLER_LEN:
        return [invalid_value("spec.controller", text, f"must be no more than {MAX_CONTROLLER_LEN} characters")]
    domain = text.split("/", 1)[0]
    if "/" not in text or not domain or qualified_name(domain):
        return [invalid_value("spec.controller", text, "must be a domain-prefixed path (such as \"acme.io/foo\")")]
    return []


class IngressClassStrategy(Strategy):
    has_generation = True

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_ingress_class(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs = validate_ingress_class(new)
        before, after = as_dict(old.get("spec")).get("controller"), as_dict(new.get("spec")).get("controller")
        if before != after:
            errs.append(invalid_value("spec.controller", after, "field is immutable"))
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Controller", "Controller that is responsible for handling this class"),
                column("Parameters", "A reference to a resource with additional parameters"), age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec = as_dict(obj.get("spec"))
        params = as_dict(spec.get("parameters"))
        shown = "<none>"
        if params:
            kind = params.get("kind", "")
            group = params.get("apiGroup")
            shown = f"{kind}.{group}/{params.get('name', '')}" if group else f"{kind}/{params.get('name', '')}"
        return [as_dict(obj.get("metadata")).get("name", ""), spec.get("controller", ""), shown, age(obj, now)]


# --- NetworkPolicy ----------------------------------------------------------------------------------------

def apply_network_policy_defaults(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    for direction in ("ingress", "egress"):
        for rule in _list(spec.get(direction)):
            for port in _list(as_dict(rule).get("ports")):
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def _validate_peer(peer: dict[str, Any], path: str) -> list[FieldError]:
    block = peer.get("ipBlock")
    if block is None:
        return []
    block = as_dict(block)
    cidr = str(block.get("cidr") or "")
    if not cidr:
        return [required(f"{path}.ipBlock.cidr")]
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return [invalid_value(f"{path}.ipBlock.cidr", cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or "
                                                               "2001:db8::/64)")]
    errs: list[FieldError] = []
    for i, ex in enumerate(_list(block.get("except"))):
        try:
            inner = ipaddress.ip_network(str(ex), strict=False)
        except ValueError:
            errs.append(invalid_value(f"{path}.ipBlock.except[{i}]", ex, "must be a valid CIDR value"))
            continue
        if inner.version != net.version or not inner.subnet_of(net):  # type: ignore[arg-type]
            errs.append(invalid_value(f"{path}.ipBlock.except[{i}]", ex, "must be a strict subset of `cidr`"))
    return errs


def validate_network_policy(obj: dict[str, Any]) -> list[FieldError]:
    spec = as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    types = _list(spec.get("policyTypes"))
    for i, t in enumerate(types):
        if t not in POLICY_TYPES:
            errs.append(not_supported(f"spec.policyTypes[{i}]", t, POLICY_TYPES))
    if len(types) > 2:
        shown = GoValue("[]networking.PolicyType{" + ", ".join(go_quote(str(t)) for t in types) + "}")
        errs.append(invalid_value("spec.policyTypes", shown, "may not specify more than two policyTypes"))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_list(spec.get(direction))):
            for j, peer in enumerate(_list(as_dict(rule).get(peers))):
                errs += _validate_peer(as_dict(peer), f"spec.{direction}[{i}].{peers}[{j}]")
    return errs


class NetworkPolicyStrategy(Strategy):
    has_generation = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        apply_network_policy_defaults(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        apply_network_policy_defaults(new)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_network_policy(obj)

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), column("Pod-Selector", "Selects the pods to which this NetworkPolicy object "
                                                      "applies."), age_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        return [as_dict(obj.get("metadata")).get("name", ""),
                _selector_text(as_dict(obj.get("spec")).get("podSelector")), age(obj, now)]
