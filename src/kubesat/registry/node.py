"""Node: cluster-scoped; status belongs to the /status subresource; taints and pod CIDRs checked."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from kubesat.errors import FieldError, forbidden_field, invalid_value, not_supported, required
from kubesat.registry.meta import (
    GoValue,
    age_column,
    as_dict,
    column,
    field_doc,
    go_quote,
    go_strings,
    label_value,
    name_column,
    qualified_name,
    validate_kube_finalizers,
)
from kubesat.registry.strategy import Strategy, sync_dual_field
from kubesat.apimachinery.duration import age

ROLE_LABEL_PREFIX = "node-role.kubernetes.io/"
ROLE_LABEL = "kubernetes.io/role"
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]

_SYSINFO = "io.k8s.api.core.v1.NodeSystemInfo"
_STATUS = "io.k8s.api.core.v1.NodeStatus"


def node_status(obj: dict[str, Any]) -> str:
    """`Ready`, `NotReady` or `Unknown` from the Ready condition, plus `,SchedulingDisabled` when cordoned."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = None
    for c in conditions:
        if isinstance(c, dict) and c.get("type") == "Ready":
            ready = c  # the last one wins, as in a map keyed by type
    parts = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if (obj.get("spec") or {}).get("unschedulable"):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(obj: dict[str, Any]) -> list[str]:
    roles: set[str] = set()
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for k, v in labels.items():
        if k.startswith(ROLE_LABEL_PREFIX):
            role = k[len(ROLE_LABEL_PREFIX):]
            if role:
                roles.add(role)
        elif k == ROLE_LABEL and v:
            roles.add(v)
    return sorted(roles)


def _address(obj: dict[str, Any], kind: str) -> str:
    for a in (obj.get("status") or {}).get("addresses") or []:
        if isinstance(a, dict) and a.get("type") == kind:
            return str(a.get("address", ""))
    return "<none>"


def _taint_go(t: dict[str, Any]) -> GoValue:
    added = t.get("timeAdded")
    return GoValue(
        f'core.Taint{{Key:{go_quote(t.get("key", ""))}, Value:{go_quote(t.get("value", ""))}, '
        f'Effect:{go_quote(t.get("effect", ""))}, TimeAdded:{"<nil>" if added is None else added}}}'
    )


def validate_taints(taints: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(taints, list):
        return errs
    seen: dict[str, set[str]] = {}
    for i, raw in enumerate(taints):
        t = raw if isinstance(raw, dict) else {}
        idx = f"{path}[{i}]"
        key, value, effect = str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or "")
        for msg in qualified_name(key):
            errs.append(invalid_value(f"{idx}.key", key, msg))
        msgs = label_value(value)
        if msgs:
            errs.append(invalid_value(f"{idx}.value", value, ";".join(msgs)))
        if not effect:
            errs.append(required(f"{idx}.effect"))
        elif effect not in TAINT_EFFECTS:
            errs.append(not_supported(f"{idx}.effect", effect, TAINT_EFFECTS))
        if key in seen.get(effect, set()):
            errs.append(FieldError("FieldValueDuplicate", idx, "taints must be unique by key and effect pair",
                                   _taint_go(t), True))
            continue
        seen.setdefault(effect, set()).add(key)
    return errs


def _validate_pod_cidrs(cidrs: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(cidrs, list) or not cidrs:
        return errs
    path = "spec.podCIDRs"
    nets = []
    for i, c in enumerate(cidrs):
        try:
            nets.append(ipaddress.ip_network(str(c), strict=False))
        except ValueError:
            errs.append(invalid_value(f"{path}[{i}]", str(c),
                                      "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
    if len(cidrs) > 1:
        families = {n.version for n in nets}
        if len(cidrs) > 2 or len(families) != 2:
            errs.append(invalid_value(path, go_strings(cidrs), "may specify no more than one CIDR for each IP family"))
        seen: set[str] = set()
        for i, c in enumerate(cidrs):
            if c in seen:
                errs.append(FieldError("FieldValueDuplicate", f"{path}[{i}]", "", c, True))
            seen.add(c)
    return errs


class NodeStrategy(Strategy):
    has_status = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        self._sync_cidrs(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        # The main resource cannot change status; /status owns it.
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
        self._sync_cidrs(new)

    @staticmethod
    def _sync_cidrs(obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            sync_dual_field(spec, "podCIDR", "podCIDRs")

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        errs = validate_kube_finalizers(obj.get("metadata") or {})
        spec = as_dict(obj.get("spec"))
        # Kubernetes reports taint problems under metadata.taints (sic).
        errs += validate_taints(spec.get("taints"), "metadata.taints")
        errs += _validate_pod_cidrs(spec.get("podCIDRs"))
        return errs

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs = validate_kube_finalizers(new.get("metadata") or {})
        spec = as_dict(new.get("spec"))
        old_spec = as_dict(old.get("spec"))
        seen: list[Any] = []
        for i, a in enumerate((new.get("status") or {}).get("addresses") or []):
            if a in seen:
                shown = a
                if isinstance(a, dict):
                    shown = GoValue(f'core.NodeAddress{{Type:{go_quote(a.get("type", ""))}, '
                                    f'Address:{go_quote(a.get("address", ""))}}}')
                errs.append(FieldError("FieldValueDuplicate", f"status.addresses[{i}]", "", shown, True))
            seen.append(a)
        old_cidrs = old_spec.get("podCIDRs") or []
        if old_cidrs and list(old_cidrs) != list(spec.get("podCIDRs") or []):
            errs.append(forbidden_field("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))
        old_provider = old_spec.get("providerID") or ""
        if old_provider and old_provider != (spec.get("providerID") or ""):
            errs.append(forbidden_field("spec.providerID",
                                        'node updates may not change providerID except from "" to valid'))
        if (spec.get("externalID") or "") != (old_spec.get("externalID") or ""):
            errs.append(forbidden_field("spec.externalID", "may not be updated"))
        errs += validate_taints(spec.get("taints"), "metadata.taints")
        return errs

    # --- reads --------------------------------------------------------------------------
    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Status", "The status of the node"),
            column("Roles", "The roles of the node"),
            age_column(),
            column("Version", field_doc(_SYSINFO, "kubeletVersion")),
            column("Internal-IP", field_doc(_STATUS, "addresses"), priority=1),
            column("External-IP", field_doc(_STATUS, "addresses"), priority=1),
            column("OS-Image", field_doc(_SYSINFO, "osImage"), priority=1),
            column("Kernel-Version", field_doc(_SYSINFO, "kernelVersion"), priority=1),
            column("Container-Runtime", field_doc(_SYSINFO, "containerRuntimeVersion"), priority=1),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        info = (obj.get("status") or {}).get("nodeInfo") or {}
        roles = ",".join(node_roles(obj)) or "<none>"
        return [
            (obj.get("metadata") or {}).get("name", ""),
            node_status(obj),
            roles,
            age(obj, now),
            info.get("kubeletVersion", ""),
            _address(obj, "InternalIP"),
            _address(obj, "ExternalIP"),
            info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>",
        ]

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        if field == "spec.unschedulable":
            return "true" if (obj.get("spec") or {}).get("unschedulable") else "false"
        return super().field_value(obj, field)
