"""The ServiceAccount admission plugin (kubesat.auth.admission), table-driven from Kubernetes' behaviour."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from kubesat.auth.admission import NAME_ALPHABET, admit_pod_create, random_suffix, token_volume_source
from kubesat.errors import StatusError

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

EXPECTED_VOLUME = {
    "name": "kube-api-access-abcde",
    "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    },
}
EXPECTED_MOUNT = {"name": "kube-api-access-abcde", "readOnly": True, "mountPath": MOUNT}


def seed(name: str) -> dict:
    return yaml.safe_load((SEEDS / name).read_text())


def sa(name: str = "default", **fields) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "default"}, **fields}


def pod(name: str = "p", **spec) -> dict:
    spec.setdefault("containers", [{"name": "c", "image": "busybox:1.36"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def lookup(*accounts: dict):
    calls: list[tuple[str, str]] = []
    by_name = {a["metadata"]["name"]: a for a in accounts}

    def get(ns: str, name: str):
        calls.append((ns, name))
        return by_name.get(name)

    get.calls = calls  # type: ignore[attr-defined]
    return get


def fixed(n: int) -> str:
    return "abcde"[:n]


def admit(p: dict, *accounts: dict) -> dict:
    admit_pod_create(p, lookup(*accounts), fixed)
    return p


def forbidden(p: dict, *accounts: dict) -> StatusError:
    with pytest.raises(StatusError) as exc:
        admit_pod_create(p, lookup(*accounts), fixed)
    assert exc.value.code == 403 and exc.value.reason == "Forbidden"
    return exc.value


# ----------------------------------------------------------------------------- seeds


def test_seed_fixed_pod_gets_no_kube_api_access_volume() -> None:
    p = seed("000-pod-projected-token-fixed.yaml")
    p["metadata"]["namespace"] = "default"
    before = copy.deepcopy(p)
    account = seed("000-serviceaccount-automount-off.yaml")
    admit(p, account)
    assert p == before  # nothing to add: SA automount is off and the path is mounted by hand
    assert [v["name"] for v in p["spec"]["volumes"]] == ["serviceaccount-token"]


def test_seed_fixed_pod_with_automount_unset_sa_keeps_its_own_mount_and_adds_no_volume() -> None:
    # The only container already mounts the path, so no mount is added and no volume is needed.
    p = seed("000-pod-projected-token-fixed.yaml")
    p["metadata"]["namespace"] = "default"
    admit(p, sa("foo-sa"))
    assert [v["name"] for v in p["spec"]["volumes"]] == ["serviceaccount-token"]
    assert len(p["spec"]["containers"][0]["volumeMounts"]) == 1


def test_seed_automount_off_pod_admitted_unchanged_when_sa_exists() -> None:
    p = seed("000-pod-automount-off.yaml")
    p["metadata"]["namespace"] = "default"
    admit(p, seed("000-serviceaccount-automount-off.yaml"))
    assert p["spec"] == {"serviceAccountName": "foo-sa", "automountServiceAccountToken": False}


def test_seed_automount_off_pod_forbidden_when_sa_missing() -> None:
    p = seed("000-pod-automount-off.yaml")
    p["metadata"]["namespace"] = "default"
    err = forbidden(p)
    assert err.message == ('pods "foo-pod" is forbidden: error looking up service account default/foo-sa: '
                           'serviceaccount "foo-sa" not found')
    assert err.details == {"name": "foo-pod", "kind": "pods"}


def test_pod_with_sa_automount_unset_gets_volume() -> None:
    p = seed("000-pod-projected-token-fixed.yaml")
    p["metadata"]["namespace"] = "default"
    p["spec"]["containers"].append({"name": "bar", "image": "busybox:1.36"})
    admit(p, sa("foo-sa"))
    assert p["spec"]["volumes"][-1] == EXPECTED_VOLUME
    assert p["spec"]["containers"][1]["volumeMounts"] == [EXPECTED_MOUNT]
    assert len(p["spec"]["containers"][0]["volumeMounts"]) == 1


# ----------------------------------------------------------------------------- injection


def test_default_service_account_and_exact_volume_shape() -> None:
    p = admit(pod(), sa())
    assert p["spec"]["serviceAccountName"] == "default"
    assert p["spec"]["volumes"] == [EXPECTED_VOLUME]
    assert p["spec"]["containers"][0]["volumeMounts"] == [EXPECTED_MOUNT]
    assert token_volume_source() == EXPECTED_VOLUME["projected"]


def test_lookup_called_once_with_namespace_and_name() -> None:
    get = lookup(sa("builder"))
    p = pod(serviceAccountName="builder")
    admit_pod_create(p, get, fixed)
    assert get.calls == [("default", "builder")]


def test_deprecated_service_account_field_is_honoured() -> None:
    p = admit(pod(serviceAccount="builder"), sa("builder"))
    assert p["spec"]["serviceAccountName"] == "builder"


def test_init_containers_then_containers_get_mounts_ephemeral_do_not() -> None:
    p = pod(
        initContainers=[{"name": "i1", "image": "x"}, {"name": "i2", "image": "x",
                                                       "volumeMounts": [{"name": "v", "mountPath": MOUNT}]}],
        containers=[{"name": "a", "image": "x"},
                    {"name": "b", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/data"}]}],
        ephemeralContainers=[{"name": "e", "image": "x"}],
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    admit(p, sa())
    spec = p["spec"]
    assert spec["initContainers"][0]["volumeMounts"] == [EXPECTED_MOUNT]
    assert spec["initContainers"][1]["volumeMounts"] == [{"name": "v", "mountPath": MOUNT}]
    assert spec["containers"][0]["volumeMounts"] == [EXPECTED_MOUNT]
    assert spec["containers"][1]["volumeMounts"] == [{"name": "v", "mountPath": "/data"}, EXPECTED_MOUNT]
    assert "volumeMounts" not in spec["ephemeralContainers"][0]
    assert [v["name"] for v in spec["volumes"]] == ["v", "kube-api-access-abcde"]


def test_existing_kube_api_access_volume_is_reused() -> None:
    existing = {"name": "kube-api-access-zzzzz", "emptyDir": {}}
    p = admit(pod(volumes=[existing]), sa())
    assert p["spec"]["volumes"] == [existing]
    assert p["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "kube-api-access-zzzzz", "readOnly": True, "mountPath": MOUNT}]


def test_no_volume_when_every_container_already_mounts_the_path() -> None:
    p = pod(containers=[{"name": "a", "image": "x", "volumeMounts": [{"name": "t", "mountPath": MOUNT}]}],
            volumes=[{"name": "t", "emptyDir": {}}])
    admit(p, sa())
    assert [v["name"] for v in p["spec"]["volumes"]] == ["t"]


@pytest.mark.parametrize(
    ("pod_pref", "sa_pref", "mounted"),
    [
        (None, None, True),
        (None, True, True),
        (None, False, False),
        (True, False, True),
        (False, True, False),
        (False, None, False),
    ],
)
def test_automount_precedence(pod_pref, sa_pref, mounted) -> None:
    spec = {} if pod_pref is None else {"automountServiceAccountToken": pod_pref}
    account = sa() if sa_pref is None else sa(automountServiceAccountToken=sa_pref)
    p = admit(pod(**spec), account)
    assert ("volumes" in p["spec"]) is mounted
    assert ("volumeMounts" in p["spec"]["containers"][0]) is mounted


def test_random_volume_name_alphabet() -> None:
    p = pod()
    admit_pod_create(p, lookup(sa()))
    name = p["spec"]["volumes"][0]["name"]
    assert name.startswith("kube-api-access-") and len(name) == len("kube-api-access-") + 5
    assert all(ch in NAME_ALPHABET for ch in name[-5:])
    assert all(ch in NAME_ALPHABET for ch in random_suffix(50))


# ----------------------------------------------------------------------------- image pull secrets


def test_image_pull_secrets_copied_when_pod_has_none() -> None:
    p = admit(pod(), sa(imagePullSecrets=[{"name": "reg"}]))
    assert p["spec"]["imagePullSecrets"] == [{"name": "reg"}]


def test_image_pull_secrets_kept_when_pod_has_some() -> None:
    p = admit(pod(imagePullSecrets=[{"name": "mine"}]), sa(imagePullSecrets=[{"name": "reg"}]))
    assert p["spec"]["imagePullSecrets"] == [{"name": "mine"}]


# ----------------------------------------------------------------------------- errors


def test_missing_default_service_account() -> None:
    err = forbidden(pod(name="plain"))
    assert err.message == ('pods "plain" is forbidden: error looking up service account default/default: '
                           'serviceaccount "default" not found')


def test_generate_name_used_in_message_when_no_name() -> None:
    p = pod()
    p["metadata"] = {"generateName": "web-", "namespace": "default"}
    err = forbidden(p)
    assert err.message.startswith('pods "web-" is forbidden: ')


ENFORCE = {"kubernetes.io/enforce-mountable-secrets": "true"}


ENV_FROM_SECRET_X = {"name": "E", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k"}}}


def enforcing(**fields) -> dict:
    account = sa("locked", **fields)
    account["metadata"]["annotations"] = dict(ENFORCE)
    return account


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]},
         'volume with secret.secretName="x" is not allowed because service account locked '
         'does not reference that secret'),
        ({"containers": [{"name": "c", "image": "i", "env": [ENV_FROM_SECRET_X]}]},
         'container c with envVar E referencing secret.secretName="x" is not allowed because service account locked '
         'does not reference that secret'),
        ({"containers": [{"name": "c", "image": "i", "envFrom": [{"secretRef": {"name": "x"}}]}]},
         'container c with envFrom referencing secret.secretName="x" is not allowed because service account locked '
         'does not reference that secret'),
        ({"initContainers": [{"name": "i", "image": "i", "env": [ENV_FROM_SECRET_X]}]},
         'init container i with envVar E referencing secret.secretName="x" is not allowed because service account '
         'locked does not reference that secret'),
        ({"initContainers": [{"name": "i", "image": "i", "envFrom": [{"secretRef": {"name": "x"}}]}]},
         'init container i with envFrom referencing secret.secretName="x" is not allowed because service account '
         'locked does not reference that secret'),
        ({"imagePullSecrets": [{"name": "x"}]},
         'imagePullSecrets[0].name="x" is not allowed because service account locked '
         'does not reference that imagePullSecret'),
    ],
)
def test_enforce_mountable_secrets(spec: dict, message: str) -> None:
    err = forbidden(pod(serviceAccountName="locked", **spec), enforcing())
    assert err.message == f'pods "p" is forbidden: {message}'


def test_enforce_mountable_secrets_allows_listed_secrets() -> None:
    spec = {"serviceAccountName": "locked", "volumes": [{"name": "s", "secret": {"secretName": "ok"}}],
            "imagePullSecrets": [{"name": "reg"}]}
    admit(pod(**spec), enforcing(secrets=[{"name": "ok"}], imagePullSecrets=[{"name": "reg"}]))


def test_enforce_annotation_false_is_not_enforced() -> None:
    account = sa("loose")
    account["metadata"]["annotations"] = {"kubernetes.io/enforce-mountable-secrets": "no"}
    admit(pod(serviceAccountName="loose", volumes=[{"name": "s", "secret": {"secretName": "x"}}]), account)


MIRROR = {"kubernetes.io/config.mirror": "abc"}


def mirror(**spec) -> dict:
    p = pod(**spec)
    p["metadata"]["annotations"] = dict(MIRROR)
    return p


def test_mirror_pod_not_mutated_and_sa_not_looked_up() -> None:
    p = mirror()
    before = copy.deepcopy(p)
    get = lookup()
    admit_pod_create(p, get, fixed)
    assert p == before and get.calls == []


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"serviceAccountName": "default"}, "a mirror pod may not reference service accounts"),
        ({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}, "a mirror pod may not reference secrets"),
        ({"imagePullSecrets": [{"name": "x"}]}, "a mirror pod may not reference secrets"),
        ({"volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]},
         "a mirror pod may not use ServiceAccountToken volume projections"),
    ],
)
def test_mirror_pod_restrictions(spec: dict, why: str) -> None:
    err = forbidden(mirror(**spec))
    assert err.message == f'pods "p" is forbidden: {why}'
