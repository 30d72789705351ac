"""Sans-IO volume planning: what a pod's volumes need from the API, and the files each volume holds.

`plan(pod)` lists the ConfigMaps, Secrets and TokenRequests to fetch; the agent fetches them and hands them back
in `Fetched`; `payloads(pod, fetched, node)` builds, per volume, the payload the AtomicWriter projects, or the
error the kubelet would report in its `FailedMount` Event. Modelled on pkg/volume/{projected,secret,configmap,
downwardapi,emptydir} and pkg/volume/util (FsUserFrom, SetVolumeOwnership).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from kubesat.agent.atomic import FileProjection, InvalidPathError, validate_path, validate_payload
from kubesat.agent.claims import ClaimVolume, claim_names, volume_claim
from kubesat.agent.fieldpath import FieldPathError, metadata_field, resource_field

PLUGIN_DIRS = {
    "projected": "kubernetes.io~projected",
    "secret": "kubernetes.io~secret",
    "configMap": "kubernetes.io~configmap",
    "downwardAPI": "kubernetes.io~downward-api",
    "emptyDir": "kubernetes.io~empty-dir",
}
DEFAULT_MODE = 0o644  # 420, the API default of defaultMode for all four file volumes
DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600  # the API default of serviceAccountToken.expirationSeconds
TOKEN_MODE_WITH_OWNER = 0o600  # a token file when the pod sets fsGroup or a common runAsUser
READ_ONLY_GROUP_BITS = 0o440  # what SetVolumeOwnership adds for fsGroup on these read-only volumes


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _mode(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


@dataclass(frozen=True)
class TokenRequestSpec:
    """One TokenRequest a serviceAccountToken projection needs, bound to the pod (the server adds the node)."""

    namespace: str
    service_account: str
    audiences: tuple[str, ...]
    expiration_seconds: int
    pod_name: str
    pod_uid: str

    @property
    def key(self) -> str:
        """The kubelet's cache key: service account, namespace, audiences, expirationSeconds, bound pod."""
        auds = ",".join(self.audiences)
        return f"{self.service_account}/{self.namespace}/[{auds}]/{self.expiration_seconds}/{self.pod_uid}"

    def body(self) -> dict[str, Any]:
        """The TokenRequest to POST to `/api/v1/namespaces/<ns>/serviceaccounts/<sa>/token`."""
        spec: dict[str, Any] = {
            "expirationSeconds": self.expiration_seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.pod_name, "uid": self.pod_uid},
        }
        if self.audiences:
            spec["audiences"] = list(self.audiences)  # omitted: the server's API audiences
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


@dataclass
class VolumePlan:
    """What a pod's volumes need from the API server, names sorted and unique."""

    configmaps: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    tokens: list[TokenRequestSpec] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)  # PersistentVolumeClaims (agent/claims.py resolves them)


@dataclass
class Fetched:
    """What the agent got back: an object, or None where the API said NotFound; tokens by `TokenRequestSpec.key`."""

    configmaps: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    claims: dict[str, ClaimVolume] = field(default_factory=dict)


@dataclass
class VolumeResult:
    """One volume: files to write (`kind == "files"`), a directory, a host path, or an unsupported type.

    `error` is the kubelet's cause; `event_message` is the FailedMount Event's message. `uid`/`gid` are for
    `AtomicWriter.write` (gid = the pod's fsGroup). `unsupported` names sources left out (clusterTrustBundle).
    """

    name: str
    kind: str  # "files", "dir" (emptyDir), "hostPath", "unsupported"
    plugin_dir: str = ""
    files: dict[str, FileProjection] = field(default_factory=dict)
    host_path: str | None = None
    on_host: bool = False  # host_path is the host's (hostPath, a hostPath or local PersistentVolume)
    host_type: str = ""  # its hostPath `type`
    medium: str = ""
    uid: int | None = None
    gid: int | None = None
    error: str | None = None
    unsupported: list[str] = field(default_factory=list)

    @property
    def rel_dir(self) -> str:
        """Where it lives under `<root>/pods/<uid>/`: `volumes/<plugin dir>/<volume name>`."""
        return f"volumes/{self.plugin_dir}/{self.name}" if self.plugin_dir else ""

    @property
    def event_message(self) -> str | None:
        if self.error is None:
            return None
        return f'MountVolume.SetUp failed for volume "{self.name}" : {self.error}'


# -- planning ----------------------------------------------------------------------------------------------------

def _sources(volume: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, source) pairs of a volume: a projected volume's sources, or the volume's own source."""
    if "projected" in volume:
        out: list[tuple[str, dict[str, Any]]] = []
        for src in _l(_d(volume.get("projected")).get("sources")):
            for kind in ("serviceAccountToken", "configMap", "secret", "downwardAPI", "clusterTrustBundle"):
                if kind in _d(src):
                    out.append((kind, _d(_d(src)[kind])))
        return out
    for kind in ("configMap", "secret"):
        if kind in volume:
            return [(kind, _d(volume[kind]))]
    return []


def _secret_name(kind: str, src: dict[str, Any], projected: bool) -> str:
    return str(src.get("name") if projected or kind == "configMap" else src.get("secretName")) or ""


def token_request(pod: dict[str, Any], src: dict[str, Any]) -> TokenRequestSpec:
    meta, spec = _d(pod.get("metadata")), _d(pod.get("spec"))
    aud = src.get("audience")
    exp = src.get("expirationSeconds")
    return TokenRequestSpec(
        namespace=str(meta.get("namespace") or "default"),
        service_account=str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"),
        audiences=(str(aud),) if aud else (),
        expiration_seconds=exp if isinstance(exp, int) and not isinstance(exp, bool)
        else DEFAULT_TOKEN_EXPIRATION_SECONDS,
        pod_name=str(meta.get("name") or ""),
        pod_uid=str(meta.get("uid") or ""),
    )


def plan(pod: dict[str, Any]) -> VolumePlan:
    """The ConfigMaps, Secrets and TokenRequests the pod's volumes need (kube-root-ca.crt for kube-api-access)."""
    cms: set[str] = set()
    secrets: set[str] = set()
    tokens: dict[str, TokenRequestSpec] = {}
    for vol in _l(_d(pod.get("spec")).get("volumes")):
        vol = _d(vol)
        projected = "projected" in vol
        for kind, src in _sources(vol):
            if kind == "configMap":
                cms.add(_secret_name(kind, src, projected))
            elif kind == "secret":
                secrets.add(_secret_name(kind, src, projected))
            elif kind == "serviceAccountToken":
                tr = token_request(pod, src)
                tokens.setdefault(tr.key, tr)
    return VolumePlan(sorted(cms - {""}), sorted(secrets - {""}), list(tokens.values()), claim_names(pod))


@dataclass(frozen=True)
class TokenFile:
    """Where a serviceAccountToken projection puts its token: the file `payloads` builds for it, found without
    building the rest of the volume (the token-only refresh)."""

    volume: str
    rel_dir: str
    path: str
    key: str
    mode: int
    uid: int | None
    gid: int | None


def token_files(pod: dict[str, Any]) -> list[TokenFile]:
    """Every serviceAccountToken file of the pod's projected volumes, with the mode and owner `payloads` gives it.

    A projection whose path the kubelet refuses is left out (the full sync reports it).
    """
    user, group = fs_user(pod), fs_group(pod)
    out: list[TokenFile] = []
    for vol in _l(_d(pod.get("spec")).get("volumes")):
        vol = _d(vol)
        if "projected" not in vol:
            continue
        default_mode = _mode(_d(vol.get("projected")).get("defaultMode"), DEFAULT_MODE)
        mode = TOKEN_MODE_WITH_OWNER if user is not None or group is not None else default_mode
        if group is not None:
            mode |= READ_ONLY_GROUP_BITS
        name = str(vol.get("name", ""))
        for kind, src in _sources(vol):
            if kind != "serviceAccountToken":
                continue
            try:
                path = validate_path(str(src.get("path", "")))
            except InvalidPathError:
                continue
            out.append(TokenFile(name, f"volumes/{PLUGIN_DIRS['projected']}/{name}", path,
                                 token_request(pod, src).key, mode, user, group))
    return out


# -- payloads ----------------------------------------------------------------------------------------------------

def fs_user(pod: dict[str, Any]) -> int | None:
    """FsUserFrom: the runAsUser every container (init, regular, ephemeral) runs as, if they all set the same."""
    spec = _d(pod.get("spec"))
    pod_uid = _d(spec.get("securityContext")).get("runAsUser")
    user: int | None = None
    containers = _l(spec.get("initContainers")) + _l(spec.get("containers")) + _l(spec.get("ephemeralContainers"))
    for c in containers:
        run_as = _d(_d(c).get("securityContext")).get("runAsUser", pod_uid)
        if not isinstance(run_as, int) or (user is not None and run_as != user):
            return None
        user = run_as
    return user


def fs_group(pod: dict[str, Any]) -> int | None:
    g = _d(_d(pod.get("spec")).get("securityContext")).get("fsGroup")
    return g if isinstance(g, int) and not isinstance(g, bool) else None


def _b64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return str(value).encode()


def _configmap_payload(cm: dict[str, Any], items: list[Any], default_mode: int, optional: bool,
                       ) -> dict[str, FileProjection]:
    data, binary = _d(cm.get("data")), _d(cm.get("binaryData"))
    if not items:
        out = {k: FileProjection(str(v).encode(), default_mode) for k, v in data.items()}
        out.update({k: FileProjection(_b64(v), default_mode) for k, v in binary.items()})
        return out
    out = {}
    for item in items:
        item = _d(item)
        key = str(item.get("key", ""))
        if key in data:
            content = str(data[key]).encode()
        elif key in binary:
            content = _b64(binary[key])
        elif optional:
            continue
        else:
            raise _SourceError(f"configmap references non-existent config key: {key}")
        out[str(item.get("path", ""))] = FileProjection(content, _mode(item.get("mode"), default_mode))
    return out


def _secret_payload(secret: dict[str, Any], items: list[Any], default_mode: int, optional: bool,
                    ) -> dict[str, FileProjection]:
    data = _d(secret.get("data"))
    if not items:
        return {k: FileProjection(_b64(v), default_mode) for k, v in data.items()}
    out = {}
    for item in items:
        item = _d(item)
        key = str(item.get("key", ""))
        if key not in data:
            if optional:
                continue
            raise _SourceError(f"references non-existent secret key: {key}")
        out[str(item.get("path", ""))] = FileProjection(_b64(data[key]), _mode(item.get("mode"), default_mode))
    return out


def _downward_payload(pod: dict[str, Any], items: list[Any], default_mode: int, node: dict[str, Any] | None,
                      ) -> tuple[dict[str, FileProjection], list[str]]:
    out: dict[str, FileProjection] = {}
    errors: list[str] = []
    allocatable = _d(_d(_d(node).get("status")).get("allocatable"))
    for item in items:
        item = _d(item)
        value = ""
        try:
            if "fieldRef" in item:
                value = metadata_field(pod, str(_d(item["fieldRef"]).get("fieldPath", "")))
            elif "resourceFieldRef" in item:
                value = resource_field(pod, _d(item["resourceFieldRef"]), allocatable)
        except FieldPathError as exc:
            errors.append(str(exc))
        # The kubelet keeps the file (empty) even when its value failed, and reports the error.
        out[str(item.get("path", ""))] = FileProjection(value.encode(), _mode(item.get("mode"), default_mode))
    return out, errors


class _SourceError(Exception):
    pass


def _object_source(kind: str, src: dict[str, Any], projected: bool, fetched: Fetched, default_mode: int,
                   ) -> dict[str, FileProjection]:
    name = _secret_name(kind, src, projected)
    optional = src.get("optional") is True
    pool = fetched.configmaps if kind == "configMap" else fetched.secrets
    obj = pool.get(name)
    if obj is None:
        if not optional:
            raise _SourceError(f'{kind.lower()} "{name}" not found')
        obj = {}
    items = _l(src.get("items"))
    if kind == "configMap":
        return _configmap_payload(obj, items, default_mode, optional)
    return _secret_payload(obj, items, default_mode, optional)


def _aggregate(errors: list[str]) -> str | None:
    # utilerrors.NewAggregate: one error as itself, several as "[a, b]".
    if not errors:
        return None
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def _file_volume(pod: dict[str, Any], vol: dict[str, Any], kind: str, fetched: Fetched,
                 node: dict[str, Any] | None) -> VolumeResult:
    src = _d(vol.get(kind))
    default_mode = _mode(src.get("defaultMode"), DEFAULT_MODE)
    res = VolumeResult(name=str(vol.get("name", "")), kind="files", plugin_dir=PLUGIN_DIRS[kind])
    user, group = fs_user(pod), fs_group(pod)
    errors: list[str] = []
    payload: dict[str, FileProjection] = {}
    if kind == "downwardAPI":
        payload, errors = _downward_payload(pod, _l(src.get("items")), default_mode, node)
    for skind, s in _sources(vol):
        try:
            if skind in ("configMap", "secret"):
                payload.update(_object_source(skind, s, kind == "projected", fetched, default_mode))
            elif skind == "downwardAPI":
                files, errs = _downward_payload(pod, _l(s.get("items")), default_mode, node)
                payload.update(files)
                errors += errs
            elif skind == "serviceAccountToken":
                tr = token_request(pod, s)
                token = fetched.tokens.get(tr.key)
                if token is None:
                    raise _SourceError(f"failed to fetch token: no token for {tr.key}")
                mode = TOKEN_MODE_WITH_OWNER if user is not None or group is not None else default_mode
                payload[str(s.get("path", ""))] = FileProjection(token.encode(), mode, user)
            elif skind == "clusterTrustBundle":
                res.unsupported.append("clusterTrustBundle")
        except _SourceError as exc:
            errors.append(str(exc))
    if group is not None:
        res.gid = group
        payload = {p: FileProjection(f.data, f.mode | READ_ONLY_GROUP_BITS, f.uid) for p, f in payload.items()}
    try:
        res.files = validate_payload(payload)
    except InvalidPathError as exc:
        errors.append(str(exc))
    res.error = _aggregate(errors)
    return res


def _claim_volume(name: str, claim: str, fetched: Fetched) -> VolumeResult:
    """A claim's volume is mounted from the directory its bound volume has on this node."""
    found = fetched.claims.get(claim) or ClaimVolume(error=f'persistentvolumeclaim "{claim}" not found')
    if found.error:
        return VolumeResult(name=name, kind="hostPath", error=found.error)
    return VolumeResult(name=name, kind="hostPath", host_path=found.path, on_host=found.on_host,
                        host_type=found.host_type)


def payloads(pod: dict[str, Any], fetched: Fetched, node: dict[str, Any] | None = None) -> dict[str, VolumeResult]:
    """Each of the pod's volumes by name: its files (or directory, or host path), or the kubelet's error."""
    out: dict[str, VolumeResult] = {}
    for vol in _l(_d(pod.get("spec")).get("volumes")):
        vol = _d(vol)
        name = str(vol.get("name", ""))
        if "emptyDir" in vol:
            medium = str(_d(vol.get("emptyDir")).get("medium") or "")
            out[name] = VolumeResult(name=name, kind="dir", plugin_dir=PLUGIN_DIRS["emptyDir"], medium=medium)
        elif "hostPath" in vol:
            host = _d(vol["hostPath"])
            out[name] = VolumeResult(name=name, kind="hostPath", host_path=str(host.get("path", "")), on_host=True,
                                     host_type=str(host.get("type") or ""))
        elif "persistentVolumeClaim" in vol or "ephemeral" in vol:
            out[name] = _claim_volume(name, volume_claim(pod, vol), fetched)
        else:
            kind = next((k for k in ("projected", "secret", "configMap", "downwardAPI") if k in vol), None)
            if kind is None:
                other = next((k for k in vol if k != "name"), "unknown")
                out[name] = VolumeResult(name=name, kind="unsupported", unsupported=[other])
            else:
                out[name] = _file_volume(pod, vol, kind, fetched, node)
    return out
