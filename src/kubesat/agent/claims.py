"""A pod's persistentVolumeClaim (and generic ephemeral) volumes: the claim and its bound volume read through
the API (the Node authorizer lets a node get the claims its pods use and the volumes bound to them), resolved
to a directory.

A volume the kubesat local provisioner made has a relative `hostPath` naming a directory under this agent's
root (`<root>/volumes/<pv-name>`), created on first use and writable by any of the pod's users, as an emptyDir
is. A `hostPath` or `local` volume with an absolute path is that path of the host, mounted only where
`--allow-host-path` allows (as a pod's own hostPath volume). A volume of any other kind (nfs, csi...) is refused
with a reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCAL_PROVISIONER = "kubesat.io/local"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
VOLUMES_DIR = "volumes"

Getter = Callable[[str], Awaitable[dict[str, Any] | None]]


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


MAX_PATH = 4096
_PV_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class ClaimVolume:
    """Where a claim's volume lives on this node (`on_host`: a path of the host rather than under the agent's
    root), or why it cannot be mounted (yet)."""

    path: str = ""
    error: str = ""
    on_host: bool = False
    host_type: str = ""  # a hostPath volume's `type`


def safe_volume_name(name: str) -> bool:
    """Whether a volume's name can name a directory under `<root>/volumes` (one component, no dots alone)."""
    return bool(_PV_NAME.match(name)) and ".." not in name


def host_path(path: Any) -> str | None:
    """An absolute path without `..`, normalized (None when it is not one)."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH or "\x00" in path:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return None if ".." in parts else "/" + "/".join(parts)


def volume_claim(pod: dict[str, Any], volume: dict[str, Any]) -> str:
    """The claim a volume uses: a persistentVolumeClaim's, or a generic ephemeral volume's `<pod>-<volume>`."""
    if "ephemeral" in volume:
        return f"{_d(pod.get('metadata')).get('name') or ''}-{volume.get('name') or ''}"
    return str(_d(volume.get("persistentVolumeClaim")).get("claimName") or "")


def claim_names(pod: dict[str, Any]) -> list[str]:
    """The claims a pod's persistentVolumeClaim and ephemeral volumes use, sorted and unique."""
    names = {volume_claim(pod, _d(v)) for v in _d(pod.get("spec")).get("volumes") or []}
    return sorted(names - {""})


def _ephemeral_names(pod: dict[str, Any]) -> set[str]:
    return {volume_claim(pod, _d(v)) for v in _d(pod.get("spec")).get("volumes") or [] if "ephemeral" in _d(v)}


def not_owner(pod: dict[str, Any], name: str, pvc: dict[str, Any]) -> str:
    """An ephemeral volume's claim must be the pod's own (a same-named claim of someone else is refused)."""
    meta = _d(pod.get("metadata"))
    ns = meta.get("namespace") or ""
    for ref in _d(pvc.get("metadata")).get("ownerReferences") or []:
        if _d(ref).get("uid") == meta.get("uid") and _d(ref).get("controller"):
            return ""
    return f"PVC {ns}/{name} was not created for pod {ns}/{meta.get('name') or ''} (pod is not owner)"


def claim_problem(namespace: str, name: str, pvc: dict[str, Any] | None) -> str:
    """Why a claim cannot be used now ("" when it is bound), in the kubelet's words."""
    if pvc is None:
        return f'persistentvolumeclaim "{name}" not found'
    if _d(pvc.get("metadata")).get("deletionTimestamp"):
        return f'error processing PVC {namespace}/{name}: PVC is being deleted'
    phase = _d(pvc.get("status")).get("phase") or ""
    volume = _d(pvc.get("spec")).get("volumeName") or ""
    if phase != "Bound" or not volume:
        return (f'error processing PVC {namespace}/{name}: PVC {namespace}/{name} has non-bound phase ("{phase}") '
                f'or empty pvc.Spec.VolumeName ("{volume}")')
    return ""


def volume_dir(pv: dict[str, Any], root: Path) -> ClaimVolume:
    """The directory of a bound volume on this node: the local provisioner's under the agent's root, or the
    host path of a `hostPath` or `local` volume."""
    meta, spec = _d(pv.get("metadata")), _d(pv.get("spec"))
    name = str(meta.get("name") or "")
    host = _d(spec.get("hostPath"))
    path = str(host.get("path") or "")
    if _d(meta.get("annotations")).get(PROVISIONED_BY) == LOCAL_PROVISIONER and host and not path.startswith("/"):
        if ".." in path.split("/") or not safe_volume_name(name):
            return ClaimVolume(error=f'persistentvolume "{name}": a {LOCAL_PROVISIONER} volume\'s name and path must '
                                     "name one directory under the node's volumes")
        return ClaimVolume(path=str(root / VOLUMES_DIR / name))
    source = host or _d(spec.get("local"))
    if source:
        kind = "hostPath" if host else "local"
        found = host_path(source.get("path"))
        if found is None:
            return ClaimVolume(error=f'persistentvolume "{name}": {kind} path {str(source.get("path"))[:MAX_PATH]!r} '
                                     "must be an absolute path without '..'")
        return ClaimVolume(path=found, on_host=True, host_type=str(host.get("type") or ""))
    return ClaimVolume(error=f'persistentvolume "{name}" is not a volume this node provides: kubesat mounts '
                             f"hostPath and local volumes and those provisioned by {LOCAL_PROVISIONER}")


async def resolve(get: Getter, pod: dict[str, Any], name: str, root: Path) -> ClaimVolume:
    """Read the claim and its volume and find (and make) the volume's directory."""
    namespace = str(_d(pod.get("metadata")).get("namespace") or "default")
    pvc = await get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")
    problem = claim_problem(namespace, name, pvc)
    if not problem and pvc is not None and name in _ephemeral_names(pod):
        problem = not_owner(pod, name, pvc)
    if problem or pvc is None:
        return ClaimVolume(error=problem)
    volume = str(_d(pvc.get("spec")).get("volumeName"))
    pv = await get(f"/api/v1/persistentvolumes/{volume}")
    if pv is None:
        return ClaimVolume(error=f'persistentvolume "{volume}" not found')
    found = volume_dir(pv, root)
    if found.path and not found.on_host:
        return _make_dir(found, root / VOLUMES_DIR)
    return found


def _make_dir(found: ClaimVolume, base: Path) -> ClaimVolume:
    """Make a provisioned volume's directory; one that is not a directory of its own (a symlink) is refused."""
    path = Path(found.path)
    base.mkdir(parents=True, exist_ok=True)
    if base.is_symlink() or path.is_symlink() or (path.exists() and not path.is_dir()):
        return ClaimVolume(error=f"{path} is not a directory of this node's volumes")
    if not path.is_dir():
        path.mkdir(exist_ok=True)
        # Any of the pod's users may write, as in an emptyDir (the umask would narrow mkdir's mode).
        os.chmod(path, 0o777)
    return found


async def resolve_all(get: Getter, pod: dict[str, Any], names: list[str], root: Path) -> dict[str, ClaimVolume]:
    return {n: await resolve(get, pod, n, root) for n in names}
