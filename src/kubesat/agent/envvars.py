"""A container's environment as the kubelet builds it, from the pod, the objects it references and the Services.

Pure: the caller fetches the ConfigMaps, Secrets and Services (`references` says which) and the node's
allocatable; `container_env` returns the variables in the order a runtime applies them (`HOSTNAME`, the image's
`PATH`, then the container's own), or raises `EnvError` with the kubelet's message (the container then waits
with `CreateContainerConfigError`). Sources: pkg/kubelet/kubelet_pods.go (makeEnvironmentVariables),
pkg/kubelet/envvars/envvars.go (service variables), third_party/forked/golang/expansion (`$(VAR)`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesat.agent.fieldpath import FieldPathError, pod_field, resource_field

# The PATH an image without its own sets (Docker's and containerd's default); the pod's env may override it.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Bounds: Linux refuses one argument or variable longer than MAX_ARG_STRLEN (32 pages); the whole command line
# plus environment is kept well under ARG_MAX.
MAX_VALUE = 131072 - 1
MAX_TOTAL = 1 << 20
MAX_VARS = 10000


class EnvError(Exception):
    """The container's environment cannot be built; the message is the kubelet's."""


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


@dataclass
class EnvSources:
    """What the environment is made from: objects by name (None: not found) and the Services it may link."""

    configmaps: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)
    secrets: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)  # the pod's namespace's (enableServiceLinks)
    kubernetes: dict[str, Any] | None = None  # default/kubernetes, always linked
    allocatable: dict[str, Any] | None = None  # the node's, for resourceFieldRef limits left unset


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _d(pod.get("spec"))
    return [_d(c) for c in _l(spec.get("initContainers")) + _l(spec.get("containers"))]


def references(pod: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The ConfigMaps and Secrets the pod's containers' `env` and `envFrom` name."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    for c in all_containers(pod):
        for src in _l(c.get("envFrom")):
            src = _d(src)
            if "configMapRef" in src:
                configmaps.add(str(_d(src["configMapRef"]).get("name", "")))
            if "secretRef" in src:
                secrets.add(str(_d(src["secretRef"]).get("name", "")))
        for var in _l(c.get("env")):
            frm = _d(_d(var).get("valueFrom"))
            if "configMapKeyRef" in frm:
                configmaps.add(str(_d(frm["configMapKeyRef"]).get("name", "")))
            if "secretKeyRef" in frm:
                secrets.add(str(_d(frm["secretKeyRef"]).get("name", "")))
    return configmaps, secrets


def links_services(pod: dict[str, Any]) -> bool:
    """enableServiceLinks (default true): whether the namespace's Services become variables too."""
    return _d(pod.get("spec")).get("enableServiceLinks") is not False


# -- service variables --------------------------------------------------------------------------------------

def _prefix(name: str) -> str:
    return name.upper().replace("-", "_")


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """The Docker-link-style variables of one Service (none for a headless one)."""
    spec = _d(service.get("spec"))
    ip = str(spec.get("clusterIP") or "")
    ports = [_d(p) for p in _l(spec.get("ports"))]
    if not ip or ip == "None" or not ports:
        return {}
    p = _prefix(str(_d(service.get("metadata")).get("name", "")))
    out = {f"{p}_SERVICE_HOST": ip, f"{p}_SERVICE_PORT": str(ports[0].get("port", ""))}
    for port in ports:
        if port.get("name"):
            out[f"{p}_SERVICE_PORT_{_prefix(str(port['name']))}"] = str(port.get("port", ""))
    first = ports[0]
    out[f"{p}_PORT"] = f"{str(first.get('protocol') or 'TCP').lower()}://{ip}:{first.get('port', '')}"
    for port in ports:
        proto = str(port.get("protocol") or "TCP")
        base = f"{p}_PORT_{port.get('port', '')}_{proto.upper()}"
        out[base] = f"{proto.lower()}://{ip}:{port.get('port', '')}"
        out[f"{base}_PROTO"] = proto.lower()
        out[f"{base}_PORT"] = str(port.get("port", ""))
        out[f"{base}_ADDR"] = ip
    return out


def services_env(pod: dict[str, Any], sources: EnvSources) -> dict[str, str]:
    """getServiceEnvVarMap: the namespace's Services when enableServiceLinks, and `kubernetes` always."""
    out: dict[str, str] = {}
    ns = _d(pod.get("metadata")).get("namespace", "default")
    linked = sources.services if links_services(pod) else []
    for svc in linked:
        if _d(svc.get("metadata")).get("name") == "kubernetes" and ns == "default":
            continue  # the master service below
        out.update(service_env(svc))
    if sources.kubernetes is not None:
        out.update(service_env(sources.kubernetes))
    return out


# -- $(VAR) expansion ----------------------------------------------------------------------------------------

def expand(value: str, *maps: Mapping[str, str]) -> str:
    """`$(NAME)` replaced by NAME's value from the first map that has it (left as is when none has it), `$$` as
    `$`; any other `$` is kept."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = value.find(")", i + 2)
            if end < 0:
                out.append("$(")
                i += 2
                continue
            name = value[i + 2:end]
            out.append(next((m[name] for m in maps if name in m), f"$({name})"))
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def command_line(container: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """The container's `command` + `args` with `$(VAR)` expanded against its environment (empty: no command)."""
    argv = [expand(str(a), env) for a in _l(container.get("command")) + _l(container.get("args"))]
    total = sum(len(a) + 1 for a in argv)
    if any(len(a) > MAX_VALUE for a in argv) or total > MAX_TOTAL:
        raise EnvError(f"the command line of container {container.get('name', '')} is longer than the "
                       f"{MAX_TOTAL} bytes a process may be started with")
    return argv


# -- the environment ----------------------------------------------------------------------------------------

def _object_data(obj: dict[str, Any], secret: bool) -> dict[str, str]:
    if not secret:
        data = {str(k): str(v) for k, v in _d(obj.get("data")).items()}
        for k, v in _d(obj.get("binaryData")).items():
            data.setdefault(str(k), _decode(v))
        return data
    return {str(k): _decode(v) for k, v in _d(obj.get("data")).items()}


def _decode(v: Any) -> str:
    try:
        return base64.b64decode(str(v), validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return ""


def _valid_name(name: str) -> bool:
    """The relaxed rule (1.32 default): printable ASCII but '=', not empty."""
    return bool(name) and "=" not in name and all(32 <= ord(c) < 127 for c in name)


def _env_from(container: dict[str, Any], sources: EnvSources,
              out: dict[str, str]) -> list[str]:
    """envFrom into `out`; the names skipped as invalid, for the kubelet's Event."""
    skipped: list[str] = []
    for src in _l(container.get("envFrom")):
        src = _d(src)
        secret = "secretRef" in src
        ref = _d(src.get("secretRef") if secret else src.get("configMapRef"))
        name = str(ref.get("name", ""))
        obj = (sources.secrets if secret else sources.configmaps).get(name)
        if obj is None:
            if ref.get("optional") is True:
                continue
            raise EnvError(f'{"secrets" if secret else "configmaps"} "{name}" not found')
        for key, value in _object_data(obj, secret).items():
            var = f"{src.get('prefix') or ''}{key}"
            if not _valid_name(var):
                skipped.append(var)
                continue
            out[var] = value
    return skipped


def _key_ref(ref: dict[str, Any], sources: EnvSources, secret: bool, ns: str) -> str | None:
    name, key = str(ref.get("name", "")), str(ref.get("key", ""))
    optional = ref.get("optional") is True
    obj = (sources.secrets if secret else sources.configmaps).get(name)
    kind = "Secret" if secret else "ConfigMap"
    if obj is None:
        if optional:
            return None
        raise EnvError(f'{"secrets" if secret else "configmaps"} "{name}" not found')
    data = _object_data(obj, secret)
    if key not in data:
        if optional:
            return None
        raise EnvError(f"couldn't find key {key} in {kind} {ns}/{name}")
    return data[key]


def _value_from(pod: dict[str, Any], container: dict[str, Any], frm: dict[str, Any],
                sources: EnvSources) -> str | None:
    ns = str(_d(pod.get("metadata")).get("namespace", "default"))
    try:
        if "fieldRef" in frm:
            return pod_field(pod, str(_d(frm["fieldRef"]).get("fieldPath", "")))
        if "resourceFieldRef" in frm:
            ref = dict(_d(frm["resourceFieldRef"]))
            if not ref.get("containerName"):
                ref["containerName"] = container.get("name", "")
            return resource_field(pod, ref, sources.allocatable)
    except FieldPathError as e:
        raise EnvError(str(e)) from None
    if "configMapKeyRef" in frm:
        return _key_ref(_d(frm["configMapKeyRef"]), sources, False, ns)
    if "secretKeyRef" in frm:
        return _key_ref(_d(frm["secretKeyRef"]), sources, True, ns)
    return ""


def hostname(pod: dict[str, Any]) -> str:
    """The pod's host name: spec.hostname, else its name cut to 63 characters (no trailing '-' or '.')."""
    name = str(_d(pod.get("spec")).get("hostname") or _d(pod.get("metadata")).get("name", ""))
    return name[:63].rstrip("-.") if len(name) > 63 else name


@dataclass
class ContainerEnv:
    env: dict[str, str]  # insertion order = the order a runtime applies them (later wins)
    skipped: list[str]  # envFrom keys that are not valid variable names (for the kubelet's Event)


def container_env(pod: dict[str, Any], container: dict[str, Any], sources: EnvSources) -> ContainerEnv:
    """makeEnvironmentVariables plus what the runtime adds: HOSTNAME and the image's PATH under the pod's own."""
    service = services_env(pod, sources)
    tmp: dict[str, str] = {}
    skipped = _env_from(container, sources, tmp)
    for var in _l(container.get("env")):
        var = _d(var)
        name = str(var.get("name", ""))
        if "valueFrom" in var and var["valueFrom"] is not None:
            value = _value_from(pod, container, _d(var["valueFrom"]), sources)
            if value is None:
                continue  # optional and missing: left out
        else:
            value = expand(str(var.get("value") or ""), tmp, service)
        tmp[name] = value
    for k, v in service.items():
        tmp.setdefault(k, v)
    env = {"HOSTNAME": hostname(pod), "PATH": DEFAULT_PATH}
    env.update(tmp)
    _check_bounds(str(container.get("name", "")), env)
    return ContainerEnv(env, skipped)


def _check_bounds(name: str, env: Mapping[str, str]) -> None:
    if len(env) > MAX_VARS:
        raise EnvError(f"container {name} has {len(env)} environment variables, more than {MAX_VARS}")
    total = 0
    for k, v in env.items():
        size = len(k.encode()) + len(v.encode()) + 2
        if size > MAX_VALUE:
            raise EnvError(f"environment variable {k} of container {name} is longer than {MAX_VALUE} bytes")
        total += size
    if total > MAX_TOTAL:
        raise EnvError(f"the environment of container {name} is larger than {MAX_TOTAL} bytes")
