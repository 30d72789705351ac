"""Pods: API defaults, PodSpec validation, the update allow-list, `kubectl get pods` rows, field selectors.

Behaviour follows Kubernetes 1.32 (v1 defaulting, core validation, the pod registry strategy, the
server-side pod printer). Kubesat has no scheduler or kubelet, so pods stay Pending unless a client
writes their status through the status subresource.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from collections.abc import Callable
from typing import Any

from kubesat import errors
from kubesat.errors import FieldError, duplicate, forbidden_field, invalid_value, not_supported, required
from kubesat.registry.meta import GoValue, go_quote
from kubesat.registry.strategy import Strategy, sync_dual_field
from kubesat.apimachinery.quantity import parse_quantity
from kubesat.apimachinery.duration import age, human_duration, parse_time

MAX_INT32 = 2**31 - 1
FILE_MODE_MSG = "must be a number between 0 and 0777 (octal), both inclusive"

# ----------------------------------------------------------------------------------- names

_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)


def dns1123_label_msgs(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _LABEL_RE.match(value):
        out.append(_LABEL_MSG)
    return out


def dns1123_subdomain_msgs(value: str) -> list[str]:
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.match(value):
        out.append(_SUBDOMAIN_MSG)
    return out


def _label(value: str, path: str) -> list[FieldError]:
    return [invalid_value(path, value, m) for m in dns1123_label_msgs(value)]


def _subdomain(value: str, path: str) -> list[FieldError]:
    return [invalid_value(path, value, m) for m in dns1123_subdomain_msgs(value)]


def _port_num_msgs(n: Any) -> list[str]:
    if not isinstance(n, int) or n < 1 or n > 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def _port_name_msgs(name: str) -> list[str]:
    out = []
    if len(name) > 15:
        out.append("must be no more than 15 characters")
    if not re.match(r"^[-a-z0-9]+$", name):
        out.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", name):
        out.append("must contain at least one letter (a-z)")
    if "--" in name:
        out.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        out.append("must not begin or end with a hyphen")
    return out


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


# ----------------------------------------------------------------------------------- images


def image_tag(image: str) -> str:
    """The tag of an image reference ("" when it has none or is pinned by digest only)."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return ""


def default_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image (Docker defaults the tag to latest), else IfNotPresent."""
    tag = image_tag(image or "")
    if tag == "latest" or (not tag and "@" not in (image or "")):
        return "Always"
    return "IfNotPresent"


# ----------------------------------------------------------------------------------- quantities

def pod_qos(spec: dict[str, Any]) -> str:
    """Kubernetes' QoS class: BestEffort, Burstable or Guaranteed, from cpu/memory requests and limits."""
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for c in _l(spec.get("initContainers")) + _l(spec.get("containers")):
        res = _d(_d(c).get("resources"))
        for name, q in _d(res.get("requests")).items():
            val = parse_quantity(q)
            if name in ("cpu", "memory") and val is not None and val > 0:
                requests[name] = requests.get(name, Decimal(0)) + val
        found = set()
        for name, q in _d(res.get("limits")).items():
            val = parse_quantity(q)
            if name in ("cpu", "memory") and val is not None and val > 0:
                found.add(name)
                limits[name] = limits.get(name, Decimal(0)) + val
        if not {"cpu", "memory"} <= found:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed:
        for name, req in requests.items():
            if limits.get(name) != req:
                guaranteed = False
                break
    if guaranteed and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


# ----------------------------------------------------------------------------------- defaults


def _default_container(c: dict[str, Any], limits_to_requests: bool) -> None:
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = default_pull_policy(c.get("image") or "")
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    _default_resources(c, limits_to_requests)
    for p in _l(c.get("ports")):
        if isinstance(p, dict) and not p.get("protocol"):
            p["protocol"] = "TCP"
    for e in _l(c.get("env")):
        fr = _d(_d(_d(e).get("valueFrom")).get("fieldRef"))
        if fr and not fr.get("apiVersion"):
            fr["apiVersion"] = "v1"
    _default_probes_and_hooks(c)


def _default_resources(c: dict[str, Any], limits_to_requests: bool) -> None:
    """resources is always present; requests default to the limits (not for ephemeral containers)."""
    res = c.get("resources")
    if not isinstance(res, dict):
        res = c["resources"] = {}
    if limits_to_requests and isinstance(res.get("limits"), dict) and res["limits"]:
        reqs = res.get("requests")
        if not isinstance(reqs, dict):
            reqs = res["requests"] = {}
        for k, v in res["limits"].items():
            reqs.setdefault(k, v)


def _default_probes_and_hooks(c: dict[str, Any]) -> None:
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(probe)
        if isinstance(pr, dict):
            for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10),
                         ("successThreshold", 1), ("failureThreshold", 3)):
                if not pr.get(k):
                    pr[k] = v
            _default_http_get(pr.get("httpGet"))
    lc = _d(c.get("lifecycle"))
    for hook in ("postStart", "preStop"):
        _default_http_get(_d(lc.get(hook)).get("httpGet"))


def _default_http_get(h: Any) -> None:
    if isinstance(h, dict):
        if not h.get("path"):
            h["path"] = "/"
        if not h.get("scheme"):
            h["scheme"] = "HTTP"


def _default_volume(v: dict[str, Any]) -> None:
    sources = [k for k in v if k != "name" and v.get(k) is not None]
    if not sources:
        v["emptyDir"] = {}
    for kind in ("secret", "configMap", "downwardAPI", "projected"):
        src = v.get(kind)
        if isinstance(src, dict) and src.get("defaultMode") is None:
            src["defaultMode"] = 420
    for item in _l(_d(v.get("downwardAPI")).get("items")):
        fr = _d(_d(item).get("fieldRef"))
        if fr and not fr.get("apiVersion"):
            fr["apiVersion"] = "v1"
    for s in _l(_d(v.get("projected")).get("sources")):
        s = _d(s)
        sat = s.get("serviceAccountToken")
        if isinstance(sat, dict) and sat.get("expirationSeconds") is None:
            sat["expirationSeconds"] = 3600
        for item in _l(_d(s.get("downwardAPI")).get("items")):
            fr = _d(_d(item).get("fieldRef"))
            if fr and not fr.get("apiVersion"):
                fr["apiVersion"] = "v1"
    hp = v.get("hostPath")
    if isinstance(hp, dict) and hp.get("type") is None:
        hp["type"] = ""


def apply_pod_defaults(pod: dict[str, Any]) -> None:
    """The v1 API defaults (what decoding a Pod applies), for create and update alike."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        spec = pod["spec"] = {}
    _mirror_service_account(spec)
    _default_spec_fields(spec)
    for key in ("containers", "initContainers"):
        for c in _l(spec.get(key)):
            if isinstance(c, dict):
                _default_container(c, limits_to_requests=True)
    for c in _l(spec.get("ephemeralContainers")):
        if isinstance(c, dict):
            _default_container(c, limits_to_requests=False)
    if spec.get("hostNetwork"):
        _default_host_ports(spec)
    for v in _l(spec.get("volumes")):
        if isinstance(v, dict):
            _default_volume(v)


def _mirror_service_account(spec: dict[str, Any]) -> None:
    # The deprecated `serviceAccount` mirrors serviceAccountName both ways (v1 conversion).
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    else:
        spec.pop("serviceAccount", None)


def _default_spec_fields(spec: dict[str, Any]) -> None:
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True


def _default_host_ports(spec: dict[str, Any]) -> None:
    """On the host network a container port is also the host port."""
    for key in ("containers", "initContainers"):
        for c in _l(spec.get(key)):
            for p in _l(_d(c).get("ports")):
                if isinstance(p, dict) and not p.get("hostPort") and p.get("containerPort"):
                    p["hostPort"] = p["containerPort"]


NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300

SYSTEM_PRIORITY_CLASSES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}


def add_default_tolerations(spec: dict[str, Any]) -> None:
    """The DefaultTolerationSeconds admission plugin: tolerate not-ready/unreachable NoExecute for 300s."""
    tols = _l(spec.get("tolerations"))
    not_ready = unreachable = False
    for t in tols:
        t = _d(t)
        key, effect = t.get("key") or "", t.get("effect") or ""
        if effect in ("", "NoExecute"):
            if key in ("", NOT_READY_TAINT):
                not_ready = True
            if key in ("", UNREACHABLE_TAINT):
                unreachable = True
    added = list(tols)
    for key, present in ((NOT_READY_TAINT, not_ready), (UNREACHABLE_TAINT, unreachable)):
        if not present:
            added.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                          "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    if added:
        spec["tolerations"] = added


def admit_priority(pod: dict[str, Any]) -> None:
    """The Priority admission plugin on create, for a cluster with no PriorityClass besides the system ones.

    Raises a 403 StatusError as Kubernetes does for an unknown class or a conflicting explicit priority.
    """
    spec = pod.setdefault("spec", {})
    name = _pod_name(pod)
    pc = spec.get("priorityClassName") or ""
    if not pc:
        priority = 0
    elif pc in SYSTEM_PRIORITY_CLASSES:
        priority = SYSTEM_PRIORITY_CLASSES[pc]
    else:
        raise errors.forbidden("pods", name, f"no PriorityClass with name {pc} was found")
    policy = "PreemptLowerPriority"
    given = spec.get("priority")
    if given is not None and given != priority:
        raise errors.forbidden(
            "pods", name,
            f"the integer value of priority ({given}) must not be provided in pod spec; priority admission "
            f"controller computed {priority} from the given PriorityClass name",
        )
    spec["priority"] = priority
    given_policy = spec.get("preemptionPolicy")
    if given_policy and given_policy != policy:
        raise errors.forbidden(
            "pods", name,
            f"the string value of PreemptionPolicy ({given_policy}) must not be provided in pod spec; priority "
            f"admission controller computed {policy} from the given PriorityClass name",
        )
    spec["preemptionPolicy"] = policy


def _pod_name(pod: dict[str, Any]) -> str:
    meta = _d(pod.get("metadata"))
    return meta.get("name") or meta.get("generateName") or "Unknown"


# ----------------------------------------------------------------------------------- validation

_ENV_FIELD_PATHS = [
    "metadata.name", "metadata.namespace", "metadata.uid",
    "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
]
_VOLUME_FIELD_PATHS = ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"]
_RESOURCE_FIELD_PATHS = [
    "limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", "requests.ephemeral-storage",
    "requests.memory",
]


def _local_path(p: str, path: str) -> list[FieldError]:
    """ValidateLocalNonReservedPath: relative, no `..` element, not starting with `..`."""
    errs = []
    if p.startswith("/"):
        errs.append(invalid_value(path, p, "must be a relative path"))
    if ".." in p.replace("\\", "/").split("/"):
        errs.append(invalid_value(path, p, "must not contain '..'"))
    if p.startswith("..") and not p.startswith("../"):
        errs.append(invalid_value(path, p, "must not start with '..'"))
    return errs


def _mode(v: Any, path: str) -> list[FieldError]:
    if v is not None and isinstance(v, int) and (v > 0o777 or v < 0):
        return [invalid_value(path, v, FILE_MODE_MSG)]
    return []


def _key_to_path(kp: dict[str, Any], path: str) -> list[FieldError]:
    errs = []
    if not kp.get("key"):
        errs.append(required(f"{path}.key"))
    if not kp.get("path"):
        errs.append(required(f"{path}.path"))
    errs += _local_path(kp.get("path") or "", f"{path}.path")
    errs += _mode(kp.get("mode"), f"{path}.mode")
    return errs


def _field_selector(fs: dict[str, Any], allowed: list[str], path: str) -> list[FieldError]:
    if not fs.get("apiVersion"):
        return [required(f"{path}.apiVersion")]
    fp = fs.get("fieldPath") or ""
    if not fp:
        return [required(f"{path}.fieldPath")]
    if fs["apiVersion"] != "v1":
        return [invalid_value(f"{path}.fieldPath", fp,
                              f"error converting fieldPath: unsupported pod version: {fs['apiVersion']}")]
    m = re.match(r"^([^\[]+)\['(.*)'\]$", fp)
    if m:
        base = m.group(1)
        if base not in ("metadata.annotations", "metadata.labels"):
            return [invalid_value(path, base, "does not support subscript")]
        return []
    if fp not in allowed:
        return [not_supported(f"{path}.fieldPath", fp, allowed)]
    return []


def _resource_field_selector(rf: dict[str, Any], path: str, volume: bool) -> list[FieldError]:
    errs = []
    if volume and not rf.get("containerName"):
        errs.append(required(f"{path}.containerName"))
    res = rf.get("resource") or ""
    if not res:
        errs.append(required(f"{path}.resource"))
    elif res not in _RESOURCE_FIELD_PATHS and not res.startswith(("requests.hugepages-", "limits.hugepages-")):
        errs.append(not_supported(f"{path}.resource", res, _RESOURCE_FIELD_PATHS))
    return errs


def _downward_file(f: dict[str, Any], path: str) -> list[FieldError]:
    errs = []
    if not f.get("path"):
        errs.append(required(f"{path}.path"))
    errs += _local_path(f.get("path") or "", f"{path}.path")
    if isinstance(f.get("fieldRef"), dict):
        errs += _field_selector(f["fieldRef"], _VOLUME_FIELD_PATHS, f"{path}.fieldRef")
        if f.get("resourceFieldRef") is not None:
            errs.append(invalid_value(path, "resource",
                                      "fieldRef and resourceFieldRef can not be specified simultaneously"))
    elif isinstance(f.get("resourceFieldRef"), dict):
        errs += _resource_field_selector(f["resourceFieldRef"], f"{path}.resourceFieldRef", True)
    else:
        errs.append(required(path, "one of fieldRef and resourceFieldRef is required"))
    errs += _mode(f.get("mode"), f"{path}.mode")
    return errs


def _projected(proj: dict[str, Any], path: str) -> list[FieldError]:
    errs = _mode(proj.get("defaultMode"), f"{path}.defaultMode")
    seen: set[str] = set()  # file paths already used in this volume
    for i, src in enumerate(_l(proj.get("sources"))):
        src = _d(src)
        sp = f"{path}.sources[{i}]"
        n = 0
        for kind in ("secret", "configMap"):
            s = src.get(kind)
            if isinstance(s, dict):
                n += 1
                errs += _projected_object(s, kind, sp, path, seen)
        dapi = src.get("downwardAPI")
        if isinstance(dapi, dict):
            n += 1
            errs += _projected_downward_api(dapi, sp, path, seen)
        sat = src.get("serviceAccountToken")
        if isinstance(sat, dict):
            n += 1
            errs += _projected_token(sat, sp, path)
        ctb = src.get("clusterTrustBundle")
        if isinstance(ctb, dict):
            n += 1
            errs += _projected_trust_bundle(ctb, sp, path, seen)
        if n > 1:
            errs.append(forbidden_field(sp, "may not specify more than 1 volume type per source"))
    return errs


def _duplicate_path(file_path: str, seen: set[str], path: str, shown: Any) -> list[FieldError]:
    """A file path used twice in one projected volume is an error (at the volume's path); records it as used."""
    duplicate = file_path in seen
    seen.add(file_path)
    return [invalid_value(path, shown, "conflicting duplicate paths")] if duplicate else []


def _projected_object(s: dict[str, Any], kind: str, sp: str, path: str, seen: set[str]) -> list[FieldError]:
    """A secret or configMap projection."""
    errs: list[FieldError] = []
    if not s.get("name"):
        errs.append(required(f"{sp}.{kind}.name"))
    for j, kp in enumerate(_l(s.get("items"))):
        kp = _d(kp)
        errs += _key_to_path(kp, f"{sp}.{kind}.items[{j}]")
        if kp.get("path"):
            errs += _duplicate_path(kp["path"], seen, path, s.get("name", ""))
    return errs


def _projected_downward_api(dapi: dict[str, Any], sp: str, path: str, seen: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in _l(dapi.get("items")):
        f = _d(f)
        errs += _downward_file(f, f"{sp}.downwardAPI")
        if f.get("path"):
            errs += _duplicate_path(f["path"], seen, path, f["path"])
    return errs


def _projected_token(sat: dict[str, Any], sp: str, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    exp = sat.get("expirationSeconds")
    exp = exp if isinstance(exp, int) else 0
    if exp < 600:
        errs.append(invalid_value(f"{sp}.serviceAccountToken.expirationSeconds", exp,
                                  "may not specify a duration less than 10 minutes"))
    if exp > 1 << 32:
        errs.append(invalid_value(f"{sp}.serviceAccountToken.expirationSeconds", exp,
                                  "may not specify a duration larger than 2^32 seconds"))
    # Kubernetes reports these two at the projected volume's own path (`...projected.path`).
    if not sat.get("path"):
        errs.append(required(f"{path}.path"))
    else:
        errs += _local_path(sat["path"], f"{path}.path")
    return errs


def _projected_trust_bundle(ctb: dict[str, Any], sp: str, path: str, seen: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    cp = f"{sp}.clusterTrustBundle"
    if ctb.get("name") is None and ctb.get("signerName") is None:
        errs.append(required(cp, "either name or signerName must be specified"))
    if not ctb.get("path"):
        errs.append(required(f"{cp}.path"))
    errs += _local_path(ctb.get("path") or "", f"{cp}.path")
    if ctb.get("path"):
        errs += _duplicate_path(ctb["path"], seen, path, ctb["path"])
    return errs


# volume source keys in the order Kubernetes checks them, with the path segment it reports
_VOLUME_SOURCES = [
    ("emptyDir", "emptyDir"), ("hostPath", "hostPath"), ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"), ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"), ("nfs", "nfs"), ("iscsi", "iscsi"), ("glusterfs", "glusterfs"), ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"), ("rbd", "rbd"), ("cinder", "cinder"), ("cephfs", "cephFS"),
    ("quobyte", "quobyte"), ("downwardAPI", "downwarAPI"), ("fc", "fc"), ("flexVolume", "flexVolume"),
    ("configMap", "configMap"), ("azureFile", "azureFile"), ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"), ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"), ("storageos", "storageos"), ("projected", "projected"), ("scaleIO", "scaleIO"),
    ("csi", "csi"), ("ephemeral", "ephemeral"), ("image", "image"),
]


def _volume_source(v: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    n = 0
    for key, shown in _VOLUME_SOURCES:
        src = v.get(key)
        if src is None:
            continue
        if n > 0:
            errs.append(forbidden_field(f"{path}.{shown}", "may not specify more than 1 volume type"))
            continue
        n += 1
        check = _SOURCE_CHECKS.get(key)
        if check is not None:
            errs += check(_d(src), f"{path}.{key}")
    if n == 0:
        errs.append(required(path, "must specify a volume type"))
    return errs


def _secret_source(src: dict[str, Any], p: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not src.get("secretName"):
        errs.append(required(f"{p}.secretName"))
    errs += _mode(src.get("defaultMode"), f"{p}.defaultMode")
    for j, kp in enumerate(_l(src.get("items"))):
        errs += _key_to_path(_d(kp), f"{p}.items[{j}]")
    return errs


def _config_map_source(src: dict[str, Any], p: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not src.get("name"):
        errs.append(required(f"{p}.name"))
    errs += _mode(src.get("defaultMode"), f"{p}.defaultMode")
    for j, kp in enumerate(_l(src.get("items"))):
        errs += _key_to_path(_d(kp), f"{p}.items[{j}]")
    return errs


def _downward_api_source(src: dict[str, Any], p: str) -> list[FieldError]:
    errs = _mode(src.get("defaultMode"), f"{p}.defaultMode")
    for f in _l(src.get("items")):
        errs += _downward_file(_d(f), p)
    return errs


_HOST_PATH_TYPES = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"]


def _host_path_source(src: dict[str, Any], p: str) -> list[FieldError]:
    errs: list[FieldError] = []
    hp = src.get("path") or ""
    if not hp:
        errs.append(required(f"{p}.path"))
        return errs
    if ".." in hp.split("/"):
        errs.append(invalid_value(f"{p}.path", hp, "must not contain '..'"))
    if src.get("type") is not None and src.get("type") not in _HOST_PATH_TYPES:
        errs.append(not_supported(f"{p}.type", src.get("type"), _HOST_PATH_TYPES))
    return errs


def _pvc_source(src: dict[str, Any], p: str) -> list[FieldError]:
    return [] if src.get("claimName") else [required(f"{p}.claimName")]


def _nfs_source(src: dict[str, Any], p: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not src.get("server"):
        errs.append(required(f"{p}.server"))
    if not src.get("path"):
        errs.append(required(f"{p}.path"))
    if not str(src.get("path") or "").startswith("/"):
        errs.append(invalid_value(f"{p}.path", src.get("path") or "", "must be an absolute path"))
    return errs


def _csi_source(src: dict[str, Any], p: str) -> list[FieldError]:
    return [] if src.get("driver") else [required(f"{p}.driver")]


# The checks of the volume sources kubesat validates beyond their presence.
_SOURCE_CHECKS: dict[str, Callable[[dict[str, Any], str], list[FieldError]]] = {
    "secret": _secret_source,
    "configMap": _config_map_source,
    "downwardAPI": _downward_api_source,
    "projected": _projected,
    "hostPath": _host_path_source,
    "persistentVolumeClaim": _pvc_source,
    "nfs": _nfs_source,
    "csi": _csi_source,
}


def _validate_volumes(volumes: list[Any], path: str) -> tuple[set[str], list[FieldError]]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, v in enumerate(volumes):
        v = _d(v)
        vp = f"{path}[{i}]"
        el = _volume_source(v, vp)
        name = v.get("name") or ""
        if not name:
            el.append(required(f"{vp}.name"))
        else:
            el += _label(name, f"{vp}.name")
        if name in names:
            el.append(duplicate(f"{vp}.name", name))
        if not el:
            names.add(name)
        else:
            errs += el
    return names, errs


def _env(env: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ev in enumerate(env):
        ev = _d(ev)
        ip = f"{path}[{i}]"
        name = ev.get("name") or ""
        if not name:
            errs.append(required(f"{ip}.name"))
        elif not all(32 <= ord(ch) <= 126 for ch in name) or "=" in name:
            # RelaxedEnvironmentVariableValidation is on by default in 1.32.
            errs.append(invalid_value(f"{ip}.name", name, "a valid environment variable name must consist only of "
                                      "printable ASCII characters other than '='"))
        vf = ev.get("valueFrom")
        if vf is None:
            continue
        vf = _d(vf)
        fp = f"{ip}.valueFrom"
        n = 0
        if isinstance(vf.get("fieldRef"), dict):
            n += 1
            errs += _field_selector(vf["fieldRef"], _ENV_FIELD_PATHS, f"{fp}.fieldRef")
        if isinstance(vf.get("resourceFieldRef"), dict):
            n += 1
            errs += _resource_field_selector(vf["resourceFieldRef"], f"{fp}.resourceFieldRef", False)
        for kind in ("configMapKeyRef", "secretKeyRef"):
            ref = vf.get(kind)
            if isinstance(ref, dict):
                n += 1
                if not ref.get("name"):
                    errs.append(required(f"{fp}.{kind}.name"))
                else:
                    errs += _subdomain(ref["name"], f"{fp}.{kind}.name")
                key = ref.get("key") or ""
                if not key:
                    errs.append(required(f"{fp}.{kind}.key"))
                elif not _CONFIG_KEY_RE.match(key) or len(key) > 253:
                    errs.append(invalid_value(f"{fp}.{kind}.key", key, _CONFIG_KEY_MSG))
        if n == 0:
            errs.append(invalid_value(
                fp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
        elif ev.get("value"):
            errs.append(invalid_value(fp, "", "may not be specified when `value` is not empty"))
        elif n > 1:
            errs.append(invalid_value(fp, "", "may not have more than one field specified at a time"))
    return errs


def _env_from(env_from: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ef in enumerate(env_from):
        ef = _d(ef)
        ip = f"{path}[{i}]"
        n = 0
        for kind in ("configMapRef", "secretRef"):
            ref = ef.get(kind)
            if isinstance(ref, dict):
                n += 1
                if not ref.get("name"):
                    errs.append(required(f"{ip}.{kind}.name"))
                else:
                    errs += _subdomain(ref["name"], f"{ip}.{kind}.name")
        if n == 0:
            errs.append(invalid_value(ip, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif n > 1:
            errs.append(forbidden_field(ip, "may not have more than one field specified at a time"))
    return errs


def _volume_mounts(mounts: list[Any], volumes: set[str], container: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    points: set[str] = set()
    devices = {(_d(d).get("name") or ""): (_d(d).get("devicePath") or "") for d in _l(container.get("volumeDevices"))}
    for i, m in enumerate(mounts):
        m = _d(m)
        ip = f"{path}[{i}]"
        name = m.get("name") or ""
        mp = m.get("mountPath") or ""
        if not name:
            errs.append(required(f"{ip}.name"))
        if name not in volumes:
            errs.append(FieldError("FieldValueNotFound", f"{ip}.name", "", name, True))
        if not mp:
            errs.append(required(f"{ip}.mountPath"))
        if mp in points:
            errs.append(invalid_value(f"{ip}.mountPath", mp, "must be unique"))
        points.add(mp)
        if name in devices:
            errs.append(invalid_value(f"{ip}.name", name, "must not already exist in volumeDevices"))
        if mp in devices.values():
            errs.append(invalid_value(f"{ip}.mountPath", mp, "must not already exist as a path in volumeDevices"))
        sub = m.get("subPath") or ""
        if sub:
            if sub.startswith("/"):
                errs.append(invalid_value(f"{path}.subPath", sub, "must be a relative path"))
            if ".." in sub.split("/"):
                errs.append(invalid_value(f"{path}.subPath", sub, "must not contain '..'"))
        expr = m.get("subPathExpr") or ""
        if expr and sub:
            errs.append(invalid_value(f"{ip}.subPathExpr", expr, "subPathExpr and subPath are mutually exclusive"))
        prop = m.get("mountPropagation")
        if prop is not None:
            choices = ["Bidirectional", "HostToContainer", "None"]
            if prop not in choices:
                errs.append(not_supported(f"{path}.mountPropagation", prop, choices))
            elif prop == "Bidirectional" and not _d(container.get("securityContext")).get("privileged"):
                errs.append(forbidden_field(f"{path}.mountPropagation",
                                            "Bidirectional mount propagation is available only to "
                                            "privileged containers"))
    return errs


def _ports(ports: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, p in enumerate(ports):
        p = _d(p)
        ip = f"{path}[{i}]"
        name = p.get("name") or ""
        if name:
            msgs = _port_name_msgs(name)
            if msgs:
                errs += [invalid_value(f"{ip}.name", name, m) for m in msgs]
            elif name in names:
                errs.append(duplicate(f"{ip}.name", name))
            else:
                names.add(name)
        cp = p.get("containerPort") or 0
        if not cp:
            errs.append(required(f"{ip}.containerPort"))
        else:
            errs += [invalid_value(f"{ip}.containerPort", cp, m) for m in _port_num_msgs(cp)]
        hp = p.get("hostPort") or 0
        if hp:
            errs += [invalid_value(f"{ip}.hostPort", hp, m) for m in _port_num_msgs(hp)]
        proto = p.get("protocol") or ""
        if not proto:
            errs.append(required(f"{ip}.protocol"))
        elif proto not in ("SCTP", "TCP", "UDP"):
            errs.append(not_supported(f"{ip}.protocol", proto, ["SCTP", "TCP", "UDP"]))
    return errs


def _container_common(c: dict[str, Any], volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = c.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs += _label(name, f"{path}.name")
    if not c.get("image"):
        errs.append(required(f"{path}.image"))
    tmp = c.get("terminationMessagePolicy") or ""
    if not tmp:
        errs.append(required(f"{path}.terminationMessagePolicy"))
    elif tmp not in ("File", "FallbackToLogsOnError"):
        errs.append(not_supported(f"{path}.terminationMessagePolicy", tmp, ["File", "FallbackToLogsOnError"]))
    errs += _ports(_l(c.get("ports")), f"{path}.ports")
    errs += _env(_l(c.get("env")), f"{path}.env")
    errs += _env_from(_l(c.get("envFrom")), f"{path}.envFrom")
    errs += _volume_mounts(_l(c.get("volumeMounts")), volumes, c, f"{path}.volumeMounts")
    policy = c.get("imagePullPolicy") or ""
    if not policy:
        errs.append(required(f"{path}.imagePullPolicy"))
    elif policy not in ("Always", "IfNotPresent", "Never"):
        errs.append(not_supported(f"{path}.imagePullPolicy", policy, ["Always", "IfNotPresent", "Never"]))
    return errs


def _host_port_conflicts(containers: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for ci, c in enumerate(containers):
        for pi, p in enumerate(_l(_d(c).get("ports"))):
            p = _d(p)
            hp = p.get("hostPort") or 0
            if not hp:
                continue
            key = f"{p.get('protocol', '')}/{p.get('hostIP', '')}/{hp}"
            if key in seen:
                errs.append(duplicate(f"{path}[{ci}].ports[{pi}].hostPort", key))
            seen.add(key)
    return errs


def _tolerations(tols: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, t in enumerate(tols):
        t = _d(t)
        ip = f"{path}[{i}]"
        op = t.get("operator") or ""
        if not t.get("key") and op != "Exists":
            errs.append(invalid_value(f"{ip}.operator", op, "operator must be Exists when `key` is empty, "
                                      'which means "match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            errs.append(invalid_value(f"{ip}.effect", t.get("effect") or "",
                                      "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if op == "Exists":
            if t.get("value"):
                errs.append(FieldError("FieldValueInvalid", f"{ip}.operator",
                                       "value must be empty when `operator` is 'Exists'",
                                       json.dumps(t, sort_keys=True), True))
        elif op not in ("", "Equal"):
            errs.append(not_supported(f"{ip}.operator", op, ["Equal", "Exists"]))
        eff = t.get("effect") or ""
        if eff and eff not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.append(not_supported(f"{ip}.effect", eff, ["NoSchedule", "PreferNoSchedule", "NoExecute"]))
    return errs


def validate_pod_spec(spec: dict[str, Any], path: str = "spec") -> list[FieldError]:
    """ValidatePodSpec, in Kubernetes' order, for the rules kubesat enforces."""
    errs: list[FieldError] = []
    if spec.get("terminationGracePeriodSeconds") is None:
        errs.append(required(f"{path}.terminationGracePeriodSeconds"))
    volumes, verrs = _validate_volumes(_l(spec.get("volumes")), f"{path}.volumes")
    errs += verrs
    containers = _l(spec.get("containers"))
    errs += _validate_containers(containers, volumes, f"{path}.containers")
    errs += _validate_init_containers(_l(spec.get("initContainers")), containers, volumes, f"{path}.initContainers")
    errs += _validate_policies(spec, path)
    errs += _validate_scheduling(spec, path)
    return errs


def _validate_containers(containers: list[Any], volumes: set[str], cpath: str) -> list[FieldError]:
    if not containers:
        return [required(cpath)]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, c in enumerate(containers):
        c = _d(c)
        ip = f"{cpath}[{i}]"
        errs += _container_common(c, volumes, ip)
        if (c.get("name") or "") in names:
            errs.append(duplicate(f"{ip}.name", c.get("name") or ""))
        else:
            names.add(c.get("name") or "")
        if c.get("restartPolicy") is not None:
            errs.append(forbidden_field(f"{ip}.restartPolicy", "may not be set for non-init containers"))
    errs += _host_port_conflicts(containers, cpath)
    return errs


def _validate_init_containers(
    init: list[Any], containers: list[Any], volumes: set[str], ipath: str
) -> list[FieldError]:
    errs: list[FieldError] = []
    all_names = {_d(c).get("name") or "" for c in containers}
    for i, c in enumerate(init):
        c = _d(c)
        ip = f"{ipath}[{i}]"
        errs += _container_common(c, volumes, ip)
        rp = c.get("restartPolicy")
        if rp is not None and rp != "Always":
            errs.append(not_supported(f"{ip}.restartPolicy", rp, ["Always"]))
        name = c.get("name") or ""
        if name in all_names:
            errs.append(duplicate(f"{ip}.name", name))
        elif name:
            all_names.add(name)
        errs += _host_port_conflicts([c], ipath)
        if rp != "Always":
            for f in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(f) is not None:
                    errs.append(forbidden_field(f"{ip}.{f}",
                                                "may not be set for init containers without restartPolicy=Always"))
    return errs


def _validate_policies(spec: dict[str, Any], path: str) -> list[FieldError]:
    """restartPolicy, dnsPolicy (and the dnsConfig None needs), imagePullSecrets."""
    errs: list[FieldError] = []
    rp = spec.get("restartPolicy") or ""
    if not rp:
        errs.append(required(f"{path}.restartPolicy"))
    elif rp not in ("Always", "OnFailure", "Never"):
        errs.append(not_supported(f"{path}.restartPolicy", rp, ["Always", "OnFailure", "Never"]))
    dp = spec.get("dnsPolicy") or ""
    dns_choices = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    if not dp:
        errs.append(required(f"{path}.dnsPolicy"))
    elif dp not in dns_choices:
        errs.append(not_supported(f"{path}.dnsPolicy", dp, dns_choices))
    for i, ref in enumerate(_l(spec.get("imagePullSecrets"))):
        ref = _d(ref)
        if set(ref) - {"name"}:
            errs.append(invalid_value(f"{path}.imagePullSecrets[{i}]", json.dumps(ref, sort_keys=True),
                                      "only name may be set"))
    if dp == "None" and not spec.get("dnsConfig"):
        errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    return errs


def _validate_scheduling(spec: dict[str, Any], path: str) -> list[FieldError]:
    """The names and settings that place and run the pod: accounts, node, host names, tolerations, priority."""
    errs: list[FieldError] = []
    if spec.get("serviceAccountName"):
        errs += _subdomain(spec["serviceAccountName"], f"{path}.serviceAccountName")
    if spec.get("nodeName"):
        errs += _subdomain(spec["nodeName"], f"{path}.nodeName")
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not isinstance(ads, int) or ads < 1 or ads > MAX_INT32):
        errs.append(invalid_value(f"{path}.activeDeadlineSeconds", ads,
                                  f"must be between 1 and {MAX_INT32}, inclusive"))
    if spec.get("hostname"):
        errs += _label(spec["hostname"], f"{path}.hostname")
    if spec.get("subdomain"):
        errs += _label(spec["subdomain"], f"{path}.subdomain")
    if spec.get("tolerations"):
        errs += _tolerations(_l(spec.get("tolerations")), f"{path}.tolerations")
    if spec.get("priorityClassName"):
        errs += _subdomain(spec["priorityClassName"], f"{path}.priorityClassName")
    if spec.get("runtimeClassName") is not None:
        errs += _subdomain(spec["runtimeClassName"], f"{path}.runtimeClassName")
    pp = spec.get("preemptionPolicy")
    if pp is not None:
        if not pp:
            errs.append(required(f"{path}.preemptionPolicy"))
        elif pp not in ("PreemptLowerPriority", "Never"):
            errs.append(not_supported(f"{path}.preemptionPolicy", pp, ["PreemptLowerPriority", "Never"]))
    return errs


def validate_pod(pod: dict[str, Any]) -> list[FieldError]:
    """The spec part of ValidatePodCreate (metadata is validated by the generic store)."""
    spec = _d(pod.get("spec"))
    errs = validate_pod_spec(spec)
    if not spec.get("serviceAccountName"):
        for vi, vol in enumerate(_l(spec.get("volumes"))):
            for si, src in enumerate(_l(_d(_d(vol).get("projected")).get("sources"))):
                if _d(src).get("serviceAccountToken") is not None:
                    errs.append(forbidden_field(f"spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken",
                                                "must not be specified when serviceAccountName is not set"))
    for key in ("containers", "initContainers"):
        for i, c in enumerate(_l(spec.get(key))):
            img = _d(c).get("image") or ""
            if img != img.strip():
                errs.append(invalid_value(f"spec.{key}[{i}].image", img,
                                          "must not have leading or trailing whitespace"))
    if spec.get("ephemeralContainers"):
        errs.append(forbidden_field("spec.ephemeralContainers", "cannot be set on create"))
    return errs


UPDATABLE_POD_SPEC_FIELDS = [
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
]


def _spec_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A short description of what changed, in the spirit of the diff Kubernetes appends."""
    lines = ["  core.PodSpec{"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key in old:
                lines.append(f"- \t{key}: {json.dumps(old[key], sort_keys=True)},")
            if key in new:
                lines.append(f"+ \t{key}: {json.dumps(new[key], sort_keys=True)},")
    lines.append("  }")
    return "\n".join(lines) + "\n"


def validate_pod_spec_update(new_spec: dict[str, Any], old_spec: dict[str, Any]) -> list[FieldError]:
    """The spec rules of ValidatePodUpdate: only images, activeDeadlineSeconds, tolerations (additions) ..."""
    errs, final = _image_updates(new_spec, old_spec)
    if final:
        return errs
    final_err = _active_deadline_update(new_spec, old_spec)
    if final_err is not None:
        return errs + [final_err]
    if new_spec.get("activeDeadlineSeconds") is None and old_spec.get("activeDeadlineSeconds") is not None:
        errs.append(invalid_value("spec.activeDeadlineSeconds", None,
                                  "must not update from a positive integer to nil value"))
    if not _tolerations_kept(_l(new_spec.get("tolerations")), _l(old_spec.get("tolerations"))):
        errs.append(forbidden_field("spec.tolerations",
                                    "existing toleration can not be modified except its tolerationSeconds"))
    old_gates = {(_d(g).get("name") or "") for g in _l(old_spec.get("schedulingGates"))}
    for i, g in enumerate(_l(new_spec.get("schedulingGates"))):
        name = _d(g).get("name") or ""
        if name not in old_gates:
            errs.append(forbidden_field(f"spec.schedulingGates[{i}]",
                                        f"only deletion is allowed, but found new scheduling gate '{name}'"))
    if new_spec != old_spec:
        errs += _other_spec_changes(new_spec, old_spec)
    return errs


def _image_updates(new_spec: dict[str, Any], old_spec: dict[str, Any]) -> tuple[list[FieldError], bool]:
    """The images' errors; True with them when containers were added or removed (nothing else is checked then)."""
    errs: list[FieldError] = []
    for key in ("containers", "initContainers"):
        new_c, old_c = _l(new_spec.get(key)), _l(old_spec.get(key))
        if len(new_c) != len(old_c):
            return errs + [forbidden_field(f"spec.{key}", "pod updates may not add or remove containers")], True
        for i, c in enumerate(new_c):
            img = _d(c).get("image") or ""
            if not img:
                errs.append(required(f"spec.{key}[{i}].image"))
            if img != img.strip():
                errs.append(invalid_value(f"spec.{key}[{i}].image", img,
                                          "must not have leading or trailing whitespace"))
    return errs, False


def _active_deadline_update(new_spec: dict[str, Any], old_spec: dict[str, Any]) -> FieldError | None:
    """The error that ends the update's validation when activeDeadlineSeconds is invalid or grows."""
    new_ads, old_ads = new_spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if new_ads is None:
        return None
    if not isinstance(new_ads, int) or new_ads < 0 or new_ads > MAX_INT32:
        return invalid_value("spec.activeDeadlineSeconds", new_ads, f"must be between 0 and {MAX_INT32}, inclusive")
    if old_ads is not None and old_ads < new_ads:
        return invalid_value("spec.activeDeadlineSeconds", new_ads, "must be less than or equal to previous value")
    return None


def _tolerations_kept(new_tols: list[Any], old_tols: list[Any]) -> bool:
    """Every old toleration is still there, but for its tolerationSeconds."""
    for old in old_tols:
        found = False
        for nt in new_tols:
            clone = dict(_d(old))
            clone.pop("tolerationSeconds", None)
            if _d(nt).get("tolerationSeconds") is not None:
                clone["tolerationSeconds"] = _d(nt)["tolerationSeconds"]
            if clone == nt:
                found = True
                break
        if not found:
            return False
    return True


def _other_spec_changes(new_spec: dict[str, Any], old_spec: dict[str, Any]) -> list[FieldError]:
    """The error for a change to anything but the updatable fields (the new spec with those put back as they were)."""
    munged = copy.deepcopy(new_spec)
    for key in ("containers", "initContainers"):
        # _image_updates has checked that both lists have the same length.
        for c, oc in zip(_l(munged.get(key)), _l(old_spec.get(key)), strict=True):
            if isinstance(c, dict):
                if "image" in _d(oc):
                    c["image"] = _d(oc)["image"]
                else:
                    c.pop("image", None)
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        if key in old_spec:
            munged[key] = copy.deepcopy(old_spec[key])
        else:
            munged.pop(key, None)
    old_tgps = old_spec.get("terminationGracePeriodSeconds")
    if isinstance(old_tgps, int) and old_tgps < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_tgps
    if munged == old_spec:
        return []
    return [forbidden_field(
        "spec",
        "pod updates may not change fields other than " + ",".join(UPDATABLE_POD_SPEC_FIELDS) + "\n"
        + _spec_diff(old_spec, munged),
    )]


def _valid_ip(s: Any) -> bool:
    try:
        ipaddress.ip_address(str(s))
        return True
    except ValueError:
        return False


def validate_pod_status_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """A subset of ValidatePodStatusUpdate: nominatedNodeName, IPs, the immutable qosClass."""
    errs: list[FieldError] = []
    st, ost = _d(new.get("status")), _d(old.get("status"))
    nn = st.get("nominatedNodeName")
    if nn:
        errs += _subdomain(nn, "status.nominatedNodeName")
    for key in ("podIPs", "hostIPs"):
        ips = [str(_d(ip).get("ip", "")) for ip in _l(st.get(key))]
        bad = False
        for i, val in enumerate(ips):
            if not _valid_ip(val):
                bad = True
                errs.append(invalid_value(f"status.{key}[{i}]", val,
                                          "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
        if len(ips) > 1 and not bad and (len(ips) > 2 or len({":" in ip for ip in ips}) != 2):
            kind = "core.PodIP" if key == "podIPs" else "core.HostIP"
            shown = GoValue("[]" + kind + "{" + ", ".join(f"{kind}{{IP:{go_quote(ip)}}}" for ip in ips) + "}")
            errs.append(invalid_value(f"status.{key}", shown, "may specify no more than one IP for each IP family"))
    if (st.get("qosClass") or "") != (ost.get("qosClass") or ""):
        errs.append(invalid_value("status.qosClass", st.get("qosClass") or "", "field is immutable"))
    phase = st.get("phase")
    if phase and phase not in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
        errs.append(not_supported("status.phase", phase, ["Failed", "Pending", "Running", "Succeeded", "Unknown"]))
    return errs


# ----------------------------------------------------------------------------------- table

_COLUMNS = [
    {"name": "Name", "type": "string", "format": "name", "priority": 0,
     "description": "Name must be unique within a namespace. Is required when creating resources, although some "
                    "resources may allow a client to request the generation of a name automatically. Name is "
                    "primarily intended for creation idempotence and configuration definition. Cannot be updated. "
                    "More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"},
    {"name": "Ready", "type": "string", "format": "", "priority": 0,
     "description": "The aggregate readiness state of this pod for accepting traffic."},
    {"name": "Status", "type": "string", "format": "", "priority": 0,
     "description": "The aggregate status of the containers in this pod."},
    {"name": "Restarts", "type": "string", "format": "", "priority": 0,
     "description": "The number of times the containers in this pod have been restarted and when the last "
                    "container in this pod has restarted."},
    {"name": "Age", "type": "string", "format": "", "priority": 0,
     "description": "CreationTimestamp is a timestamp representing the server time when this object was created. "
                    "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
                    "not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the "
                    "system. Read-only. Null for lists. More info: "
                    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"},
    {"name": "IP", "type": "string", "format": "", "priority": 1,
     "description": "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet "
                    "allocated."},
    {"name": "Node", "type": "string", "format": "", "priority": 1,
     "description": "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for "
                    "scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for "
                    "this node becomes responsible for the lifecycle of this pod. This field should not be used to "
                    "express a desire for the pod to be scheduled on a specific node. "
                    "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"},
    {"name": "Nominated Node", "type": "string", "format": "", "priority": 1,
     "description": "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be "
                    "scheduled right away as preemption victims receive their graceful termination periods. This "
                    "field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to "
                    "place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to "
                    "give the resources on this node to a higher priority pod that is created after preemption. As a "
                    "result, this field may be different than PodSpec.nodeName when the pod is scheduled."},
    {"name": "Readiness Gates", "type": "string", "format": "", "priority": 1,
     "description": "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all "
                    "its containers are ready AND all conditions specified in the readiness gates have status equal "
                    "to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"},
]


def _restartable(c: dict[str, Any] | None) -> bool:
    return c is not None and c.get("restartPolicy") == "Always"


def _finished_at(cs: dict[str, Any]) -> datetime | None:
    term = _d(_d(cs.get("lastState")).get("terminated"))
    return parse_time(term.get("finishedAt")) if term else None


def pod_row(pod: dict[str, Any], now: datetime) -> list[Any]:
    """kubectl's pod printer: NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES."""
    meta, spec, status = _d(pod.get("metadata")), _d(pod.get("spec")), _d(pod.get("status"))
    containers = _l(spec.get("containers"))
    init_specs = {(_d(c).get("name") or ""): _d(c) for c in _l(spec.get("initContainers"))}
    total = len(containers) + sum(1 for c in init_specs.values() if _restartable(c))
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in _l(status.get("conditions")):
        if _d(cond).get("type") == "PodScheduled" and _d(cond).get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    reason, initializing, ready, restarts, sidecar_restarts = _init_containers_state(status, init_specs, reason)
    initialized = any(_d(c).get("type") == "Initialized" and _d(c).get("status") == "True"
                      for c in _l(status.get("conditions")))
    if not initializing or initialized:
        restarts = sidecar_restarts
        reason, running_ready = _containers_state(status, reason, restarts)
        ready += running_ready

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_str = str(restarts.count)
    if restarts.count and restarts.last is not None:
        restarts_str = f"{restarts.count} ({human_duration((now - restarts.last).total_seconds())} ago)"

    ips = _l(status.get("podIPs"))
    pod_ip = (_d(ips[0]).get("ip") if ips else "") or "<none>"
    node = spec.get("nodeName") or "<none>"
    nominated = status.get("nominatedNodeName") or "<none>"
    return [meta.get("name", ""), f"{ready}/{total}", reason, restarts_str, age(pod, now),
            pod_ip, node, nominated, _readiness_gates(spec, status)]


@dataclass
class _Restarts:
    """Restarts as kubectl's pod printer adds them up: the count, and the latest finish of a terminated run."""

    count: int = 0
    last: datetime | None = None

    def add(self, cs: dict[str, Any]) -> None:
        self.count += int(cs.get("restartCount") or 0)
        fin = _finished_at(cs)
        if fin and (self.last is None or fin > self.last):
            self.last = fin


def _init_containers_state(
    status: dict[str, Any], init_specs: dict[str, dict[str, Any]], reason: str
) -> tuple[str, bool, int, _Restarts, _Restarts]:
    """(reason, still initializing, ready sidecars, restarts of all init containers, of the sidecars)."""
    everything, sidecars = _Restarts(), _Restarts()
    ready = 0
    n_init = len(init_specs)
    for i, cs in enumerate(_l(status.get("initContainerStatuses"))):
        cs = _d(cs)
        everything.add(cs)
        sidecar = _restartable(init_specs.get(cs.get("name") or ""))
        if sidecar:
            sidecars.add(cs)
        state = _d(cs.get("state"))
        term, wait = state.get("terminated"), state.get("waiting")
        if isinstance(term, dict) and (term.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        return _init_reason(term, wait, i, n_init), True, ready, everything, sidecars
    return reason, False, ready, everything, sidecars


def _init_reason(term: Any, wait: Any, i: int, n_init: int) -> str:
    """The STATUS of a pod whose init container i is not done (terminated and waiting are its states)."""
    status: str
    if isinstance(term, dict):
        if term.get("reason"):
            status = "Init:" + term["reason"]
        elif term.get("signal"):
            status = f"Init:Signal:{term['signal']}"
        else:
            status = f"Init:ExitCode:{term.get('exitCode') or 0}"
    elif isinstance(wait, dict) and wait.get("reason") and wait.get("reason") != "PodInitializing":
        status = "Init:" + wait["reason"]
    else:
        status = f"Init:{i}/{n_init}"
    return status


def _containers_state(status: dict[str, Any], reason: str, restarts: _Restarts) -> tuple[str, int]:
    """(reason, ready containers) from the container statuses; their restarts are added to `restarts`."""
    ready = 0
    has_running = False
    for cs in reversed(_l(status.get("containerStatuses"))):
        cs = _d(cs)
        restarts.add(cs)
        state = _d(cs.get("state"))
        term, wait = state.get("terminated"), state.get("waiting")
        if isinstance(wait, dict) and wait.get("reason"):
            reason = wait["reason"]
        elif isinstance(term, dict) and term.get("reason"):
            reason = term["reason"]
        elif isinstance(term, dict):
            reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode') or 0}"
        elif cs.get("ready") and state.get("running") is not None:
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        ready_cond = any(_d(c).get("type") == "Ready" and _d(c).get("status") == "True"
                         for c in _l(status.get("conditions")))
        reason = "Running" if ready_cond else "NotReady"
    return reason, ready


def _readiness_gates(spec: dict[str, Any], status: dict[str, Any]) -> str:
    """READINESS GATES: how many of the gates' conditions are True, of how many."""
    gates = _l(spec.get("readinessGates"))
    if not gates:
        return "<none>"
    true = 0
    for g in gates:
        ctype = _d(g).get("conditionType")
        for c in _l(status.get("conditions")):
            if _d(c).get("type") == ctype:
                if _d(c).get("status") == "True":
                    true += 1
                break
    return f"{true}/{len(gates)}"


# ----------------------------------------------------------------------------------- strategy


class PodStrategy(Strategy):
    has_status = True
    has_generation = False

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        apply_pod_defaults(obj)
        spec = obj["spec"]
        # Admission plugins that run on every pod create in a default cluster and only add fields:
        # DefaultTolerationSeconds (not-ready/unreachable NoExecute tolerations, 300s) and Priority
        # (priority 0 / PreemptLowerPriority when no PriorityClass applies). Kubesat has no admission
        # chain for them, so they live here, after the ServiceAccount plugin and before validation.
        add_default_tolerations(spec)
        admit_priority(obj)
        obj["status"] = {"phase": "Pending", "qosClass": pod_qos(spec)}

    @staticmethod
    def _sync_ips(obj: dict[str, Any]) -> None:
        status = obj.get("status")
        if isinstance(status, dict):
            sync_dual_field(status, "podIP", "podIPs", "ip")
            sync_dual_field(status, "hostIP", "hostIPs", "ip")

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_pod(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        apply_pod_defaults(new)
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs = validate_pod(new)
        # ephemeralContainers are only written through their own subresource; unchanged is fine here.
        errs = [e for e in errs if e.field != "spec.ephemeralContainers"]
        errs += validate_pod_spec_update(_d(new.get("spec")), _d(old.get("spec")))
        if new.get("status") != old.get("status"):
            errs += validate_pod_status_update(new, old)
        return errs

    def prepare_for_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_for_status_update(new, old)
        status = new.get("status")
        if not isinstance(status, dict):
            status = new["status"] = {}
        # qosClass is set at creation and immutable; backfill it when a client leaves it out.
        if not status.get("qosClass") and _d(old.get("status")).get("qosClass"):
            status["qosClass"] = old["status"]["qosClass"]
        self._sync_ips(new)

    def deletion_grace(self, obj: dict[str, Any], requested: int | None) -> int | None:
        """The pod strategy's grace period (CheckGracefulDelete): the client's, else the pod's
        terminationGracePeriodSeconds; none for a pod no node runs or one already finished."""
        spec, status = _d(obj.get("spec")), _d(obj.get("status"))
        period = requested
        if period is None:
            own = spec.get("terminationGracePeriodSeconds")
            period = own if isinstance(own, int) and not isinstance(own, bool) else 0
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            period = 0
        return 1 if period < 0 else period

    def table_columns(self) -> list[dict[str, Any]]:
        return copy.deepcopy(_COLUMNS)

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        return pod_row(obj, now)

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        spec, status = _d(obj.get("spec")), _d(obj.get("status"))
        if field in ("spec.nodeName", "spec.serviceAccountName", "spec.restartPolicy", "spec.schedulerName"):
            return str(spec.get(field.split(".", 1)[1]) or "")
        if field == "spec.hostNetwork":
            return "true" if spec.get("hostNetwork") else "false"
        if field in ("status.phase", "status.nominatedNodeName"):
            return str(status.get(field.split(".", 1)[1]) or "")
        if field == "status.podIP":
            ips = _l(status.get("podIPs"))
            return str(_d(ips[0]).get("ip") or "") if ips else str(status.get("podIP") or "")
        return super().field_value(obj, field)
