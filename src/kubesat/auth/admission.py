"""The ServiceAccount admission plugin for pods, as pure functions over pod dicts.

On pod CREATE (no subresource) it: leaves mirror pods alone (but refuses service accounts, secrets and
projected tokens in them), defaults `spec.serviceAccountName` to "default", requires the ServiceAccount
to exist, mounts a projected `kube-api-access-*` token volume unless automounting is turned off, copies
the ServiceAccount's imagePullSecrets, and, when the ServiceAccount asks for it with the
`kubernetes.io/enforce-mountable-secrets` annotation, refuses secrets the ServiceAccount does not list.
Errors are 403 Forbidden StatusErrors worded as Kubernetes words them.
"""

from __future__ import annotations

import secrets
from typing import Any
from collections.abc import Callable

from kubesat import errors

DEFAULT_SERVICE_ACCOUNT = "default"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
ENFORCE_MOUNTABLE_SECRETS_ANNOTATION = "kubernetes.io/enforce-mountable-secrets"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
TOKEN_EXPIRATION_SECONDS = 3607  # an hour plus a little, so kubelets refresh before the hour mark
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_GENERATED_NAME_PREFIX = 63 - 5

__all__ = [
    "admit_pod_create",
    "validate_pod_create",
    "token_volume_source",
    "should_automount",
    "random_suffix",
]


def random_suffix(n: int) -> str:
    """n characters from Kubernetes' name-generator alphabet (no vowels, no look-alikes)."""
    return "".join(secrets.choice(NAME_ALPHABET) for _ in range(n))


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _parse_bool(value: Any) -> bool:
    """Go's strconv.ParseBool; anything it rejects counts as false."""
    return str(value) in ("1", "t", "T", "TRUE", "true", "True")


def _subject(pod: dict[str, Any]) -> str:
    meta = _d(pod.get("metadata"))
    return meta.get("name") or meta.get("generateName") or "Unknown"


def _forbidden(pod: dict[str, Any], why: str) -> errors.StatusError:
    return errors.forbidden("pods", _subject(pod), why)


def token_volume_source() -> dict[str, Any]:
    """The projected source of the injected kube-api-access volume, exactly as Kubernetes builds it."""
    return {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [
                {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
            ]}},
        ],
    }


def should_automount(sa: dict[str, Any], pod: dict[str, Any]) -> bool:
    """The pod's automountServiceAccountToken wins, then the ServiceAccount's, else true."""
    pod_pref = _d(pod.get("spec")).get("automountServiceAccountToken")
    if pod_pref is not None:
        return bool(pod_pref)
    sa_pref = sa.get("automountServiceAccountToken")
    if sa_pref is not None:
        return bool(sa_pref)
    return True


def container_env_refs(spec: dict[str, Any], env_from_key: str, value_from_key: str) -> list[str]:
    """Names every container of a pod spec (init and ephemeral too) refers to through `envFrom` and
    `env[].valueFrom`, e.g. ("secretRef", "secretKeyRef") for Secrets."""
    out: list[str] = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _l(spec.get(key)):
            c = _d(c)
            for ef in _l(c.get("envFrom")):
                ref = _d(ef).get(env_from_key)
                if isinstance(ref, dict):
                    out.append(ref.get("name") or "")
            for ev in _l(c.get("env")):
                ref = _d(_d(ev).get("valueFrom")).get(value_from_key)
                if isinstance(ref, dict):
                    out.append(ref.get("name") or "")
    return out


def pod_secret_names(pod: dict[str, Any]) -> list[str]:
    """Every Secret a pod refers to (Kubernetes' VisitPodSecretNames, all container kinds)."""
    spec = _d(pod.get("spec"))
    out: list[str] = [_d(r).get("name") or "" for r in _l(spec.get("imagePullSecrets"))]
    out += container_env_refs(spec, "secretRef", "secretKeyRef")
    for v in _l(spec.get("volumes")):
        v = _d(v)
        if isinstance(v.get("secret"), dict):
            out.append(v["secret"].get("secretName") or "")
        if isinstance(v.get("azureFile"), dict):
            out.append(v["azureFile"].get("secretName") or "")
        for key in ("cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "iscsi", "storageos"):
            ref = _d(v.get(key)).get("secretRef")
            if isinstance(ref, dict):
                out.append(ref.get("name") or "")
        ref = _d(v.get("csi")).get("nodePublishSecretRef")
        if isinstance(ref, dict):
            out.append(ref.get("name") or "")
        for src in _l(_d(v.get("projected")).get("sources")):
            sec = _d(src).get("secret")
            if isinstance(sec, dict):
                out.append(sec.get("name") or "")
    return out


def _validate_mirror_pod(pod: dict[str, Any]) -> None:
    spec = _d(pod.get("spec"))
    if spec.get("serviceAccountName"):
        raise _forbidden(pod, "a mirror pod may not reference service accounts")
    if pod_secret_names(pod):
        raise _forbidden(pod, "a mirror pod may not reference secrets")
    for v in _l(spec.get("volumes")):
        for src in _l(_d(_d(v).get("projected")).get("sources")):
            if _d(src).get("serviceAccountToken") is not None:
                raise _forbidden(pod, "a mirror pod may not use ServiceAccountToken volume projections")


def _limit_secret_references(sa: dict[str, Any], pod: dict[str, Any]) -> str | None:
    """Why the pod may not be admitted under an enforce-mountable-secrets ServiceAccount, or None."""
    spec = _d(pod.get("spec"))
    sa_name = _d(sa.get("metadata")).get("name", "")
    mountable = {_d(s).get("name") for s in _l(sa.get("secrets"))}
    tail = f"is not allowed because service account {sa_name} does not reference that secret"
    for v in _l(spec.get("volumes")):
        sec = _d(v).get("secret")
        if not isinstance(sec, dict):
            continue
        name = sec.get("secretName") or ""
        if name not in mountable:
            return f'volume with secret.secretName="{name}" {tail}'
    for key, label in (("initContainers", "init container"), ("containers", "container")):
        for c in _l(spec.get(key)):
            c = _d(c)
            for ev in _l(c.get("env")):
                ref = _d(_d(ev).get("valueFrom")).get("secretKeyRef")
                if isinstance(ref, dict) and (ref.get("name") or "") not in mountable:
                    return (f'{label} {c.get("name", "")} with envVar {_d(ev).get("name", "")} referencing '
                            f'secret.secretName="{ref.get("name") or ""}" {tail}')
            for ef in _l(c.get("envFrom")):
                ref = _d(ef).get("secretRef")
                if isinstance(ref, dict) and (ref.get("name") or "") not in mountable:
                    return (f'{label} {c.get("name", "")} with envFrom referencing '
                            f'secret.secretName="{ref.get("name") or ""}" {tail}')
    pull = {_d(s).get("name") for s in _l(sa.get("imagePullSecrets"))}
    for i, ref in enumerate(_l(spec.get("imagePullSecrets"))):
        name = _d(ref).get("name") or ""
        if name not in pull:
            return (f'imagePullSecrets[{i}].name="{name}" is not allowed because service account {sa_name} '
                    f"does not reference that imagePullSecret")
    return None


def _mount_service_account_token(pod: dict[str, Any], rand: Callable[[int], str]) -> None:
    spec = pod.setdefault("spec", {})
    volumes = _l(spec.get("volumes"))
    volume_name = ""
    has_volume = False
    for v in volumes:
        name = _d(v).get("name") or ""
        if name.startswith(VOLUME_PREFIX):
            volume_name, has_volume = name, True
            break
    if not volume_name:
        volume_name = VOLUME_PREFIX[:MAX_GENERATED_NAME_PREFIX] + rand(5)

    needs_volume = False
    for key in ("initContainers", "containers"):  # not ephemeral containers
        for c in _l(spec.get(key)):
            if not isinstance(c, dict):
                continue
            mounts = c.get("volumeMounts")
            if not isinstance(mounts, list):
                mounts = []
            if any(_d(m).get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                continue
            c["volumeMounts"] = mounts + [{"name": volume_name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}]
            needs_volume = True

    if not has_volume and needs_volume:
        spec["volumes"] = volumes + [{"name": volume_name, "projected": token_volume_source()}]


def validate_pod_create(pod: dict[str, Any], sa: dict[str, Any] | None, namespace: str) -> None:
    """The plugin's validating half on create; raises a 403 StatusError when the pod is refused."""
    meta = _d(pod.get("metadata"))
    if MIRROR_POD_ANNOTATION in _d(meta.get("annotations")):
        _validate_mirror_pod(pod)
        return
    spec = _d(pod.get("spec"))
    sa_name = spec.get("serviceAccountName") or ""
    if not sa_name:
        raise _forbidden(pod, f"no service account specified for pod {namespace}/{meta.get('name', '')}")
    if sa is None:
        raise _forbidden(pod, f'error looking up service account {namespace}/{sa_name}: '
                              f'serviceaccount "{sa_name}" not found')
    if _parse_bool(_d(_d(sa.get("metadata")).get("annotations")).get(ENFORCE_MOUNTABLE_SECRETS_ANNOTATION, "")):
        why = _limit_secret_references(sa, pod)
        if why:
            raise _forbidden(pod, why)


def admit_pod_create(
    pod: dict[str, Any],
    get_service_account: Callable[[str, str], dict[str, Any] | None],
    rand: Callable[[int], str] | None = None,
) -> None:
    """Run the ServiceAccount plugin on a pod being created; mutates `pod` or raises a 403 StatusError.

    `get_service_account(namespace, name)` returns the ServiceAccount dict or None; it is called once
    (retrying the "default" ServiceAccount while its controller creates it is the caller's business).
    `rand(n)` gives n characters for the generated volume name (default: random from NAME_ALPHABET).
    """
    rand = rand or random_suffix
    meta = pod.setdefault("metadata", {})
    namespace = meta.get("namespace") or ""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        spec = pod["spec"] = {}

    # Mirror pods (static pods reflected by a kubelet) are never changed, only checked.
    if MIRROR_POD_ANNOTATION in _d(meta.get("annotations")):
        validate_pod_create(pod, None, namespace)
        return

    # The v1 API still accepts the deprecated `serviceAccount` spelling.
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = DEFAULT_SERVICE_ACCOUNT
    sa_name = spec["serviceAccountName"]

    sa = get_service_account(namespace, sa_name)
    if sa is None:
        raise _forbidden(pod, f'error looking up service account {namespace}/{sa_name}: '
                              f'serviceaccount "{sa_name}" not found')

    if should_automount(sa, pod):
        _mount_service_account_token(pod, rand)

    if not spec.get("imagePullSecrets"):
        pulls = [{"name": _d(r).get("name") or ""} for r in _l(sa.get("imagePullSecrets"))]
        if pulls:
            spec["imagePullSecrets"] = pulls
        else:
            spec.pop("imagePullSecrets", None)

    validate_pod_create(pod, sa, namespace)
