"""Downward API values as the kubelet renders them: field paths, label/annotation maps, resource fields, quantities.

Sources: apimachinery/pkg/api/... fieldpath (ExtractFieldPathAsString, FormatMap), pkg/kubelet/kubelet_pods.go
(podFieldSelectorRuntimeValue, for env vars) and pkg/api/v1/resource/helpers.go (resource fields).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any


class FieldPathError(ValueError):
    """A field path or resource field the kubelet cannot resolve; the message is the kubelet's."""


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               "\\": "\\\\", '"': '\\"'}


def go_quote(s: str) -> str:
    """Go's strconv.Quote (`%q`): printable runes kept, the rest escaped as \\n, \\x1b, \\u00a0, \\U0001f600."""
    out = ['"']
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch == " " or ch.isprintable():
            # Go's IsPrint and Python's isprintable agree: letters, marks, numbers, punctuation, symbols, ASCII space.
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def format_map(m: dict[str, Any]) -> str:
    """The kubelet's FormatMap: `key="value"` lines sorted by key, joined by newlines, no trailing newline."""
    return "\n".join(f"{k}={go_quote(str(m[k]))}" for k in sorted(m))


def split_subscript(field_path: str) -> tuple[str, str] | None:
    """`metadata.labels['app']` -> (`metadata.labels`, `app`); None when there is no subscript."""
    if not field_path.endswith("']"):
        return None
    parts = field_path[:-2].split("['", 1)
    if len(parts) < 2 or not parts[0]:
        return None
    return parts[0], parts[1]


_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _qualified_name_errors(value: str) -> list[str]:
    prefix, _, name = value.rpartition("/")
    errs: list[str] = []
    if "/" in value and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.match(prefix)):
        errs.append("prefix part must be a lowercase RFC 1123 subdomain of at most 253 characters")
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                    "with an alphanumeric character, at most 63 characters")
    return errs


def metadata_field(obj: dict[str, Any], field_path: str) -> str:
    """ExtractFieldPathAsString: the metadata fields a downwardAPI volume may project."""
    meta = _d(obj.get("metadata"))
    sub = split_subscript(field_path)
    if sub is not None:
        path, key = sub
        if path not in ("metadata.annotations", "metadata.labels"):
            raise FieldPathError(f'fieldPath "{field_path}" does not support subscript')
        errs = _qualified_name_errors(key.lower() if path == "metadata.annotations" else key)
        if errs:
            raise FieldPathError(f"invalid key subscript in {field_path}: {';'.join(errs)}")
        return str(_d(meta.get(path.split(".")[1])).get(key, ""))
    if field_path == "metadata.annotations":
        return format_map(_d(meta.get("annotations")))
    if field_path == "metadata.labels":
        return format_map(_d(meta.get("labels")))
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(field_path.split(".")[1]) or "")
    raise FieldPathError(f"unsupported fieldPath: {field_path}")


def pod_field(pod: dict[str, Any], field_path: str) -> str:
    """podFieldSelectorRuntimeValue: what an env var's fieldRef resolves to (a superset of the volume's fields)."""
    spec, status = _d(pod.get("spec")), _d(pod.get("status"))
    if field_path == "spec.nodeName":
        return str(spec.get("nodeName") or "")
    if field_path == "spec.serviceAccountName":
        return str(spec.get("serviceAccountName") or "")
    if field_path in ("status.hostIP", "status.podIP"):
        return str(status.get(field_path.split(".")[1]) or "")
    if field_path in ("status.hostIPs", "status.podIPs"):
        return ",".join(str(_d(i).get("ip", "")) for i in _l(status.get(field_path.split(".")[1])))
    return metadata_field(pod, field_path)


# -- quantities and resource fields ------------------------------------------------------------------------------

_SUFFIX = {
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}
_QTY_RE = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity (`250m`, `1Gi`, `1e3`) as an exact Decimal; raises FieldPathError."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    m = _QTY_RE.match(str(value).strip())
    if not m:
        raise FieldPathError(f"quantities must match the regular expression '{_QTY_RE.pattern}'")
    try:
        num = Decimal(m.group(1))
    except InvalidOperation as exc:
        raise FieldPathError(f"invalid quantity {value!r}") from exc
    suffix = m.group(2)
    if suffix[:1] in ("e", "E"):
        return num * (Decimal(10) ** int(suffix[1:]))
    return num * _SUFFIX[suffix]


def _ceil(d: Decimal) -> int:
    return math.ceil(d)


_NODE_DEFAULTED = ("cpu", "memory", "ephemeral-storage")


def _find_container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = _d(pod.get("spec"))
    for c in _l(spec.get("containers")) + _l(spec.get("initContainers")):
        if _d(c).get("name") == name:
            return _d(c)
    raise FieldPathError(f"container {name} not found")


def resource_field(pod: dict[str, Any], ref: dict[str, Any], allocatable: dict[str, Any] | None) -> str:
    """ExtractResourceValueByContainerNameAndNodeAllocatable: a container's request or limit over the divisor.

    Limits the container does not set fall back to the node's allocatable (cpu, memory, ephemeral-storage);
    values are rounded up, cpu in millicores against the divisor's millicores.
    """
    container = _find_container(pod, str(ref.get("containerName") or ""))
    resource = str(ref.get("resource") or "")
    divisor = parse_quantity(ref.get("divisor") or "0")
    if divisor == 0:
        divisor = Decimal(1)
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not (name in _NODE_DEFAULTED or name.startswith("hugepages-")):
        raise FieldPathError(f"unsupported container resource : {resource}")
    values = dict(_d(_d(container.get("resources")).get(kind)))
    if kind == "limits":
        for res in _NODE_DEFAULTED:
            if parse_quantity(values.get(res, 0)) == 0 and res in _d(allocatable):
                values[res] = _d(allocatable)[res]
    qty = parse_quantity(values.get(name, 0))
    if name == "cpu":
        return str(_ceil(_ceil(qty * 1000) / Decimal(_ceil(divisor * 1000))))
    return str(_ceil(_ceil(qty) / Decimal(_ceil(divisor))))
