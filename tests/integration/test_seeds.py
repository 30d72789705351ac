"""The seed documents' commands and manifests, run as written with the real kubectl against kubesat.

Each expectation is what Kubernetes 1.32 answers (tests/fixtures/seeds/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .conftest import Server

pytestmark = pytest.mark.integration

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"


def seed(name: str) -> str:
    return str(SEEDS / name)


def test_create_and_get_serviceaccount(server: Server) -> None:
    out = server.kubectl("create", "serviceaccount", "my-service-account").stdout
    assert out.strip() == "serviceaccount/my-service-account created"
    got = server.kubectl("get", "serviceaccount", "my-service-account", "-n", "default").stdout
    lines = got.strip().splitlines()
    assert lines[0].split() == ["NAME", "SECRETS", "AGE"]
    assert lines[1].split()[:2] == ["my-service-account", "0"]
    # Unset automount prints nothing, as in Kubernetes.
    assert server.kubectl("get", "serviceaccount", "my-service-account", "-n", "default", "-o",
                          "jsonpath={.automountServiceAccountToken}").stdout == ""


def test_seed_000_manifests_in_order(server: Server) -> None:
    out = server.kubectl("apply", "-f", seed("000-serviceaccount-automount-off.yaml")).stdout
    assert "serviceaccount/foo-sa created" in out
    assert server.kubectl("get", "serviceaccount", "foo-sa", "-n", "default", "-o",
                          "jsonpath={.automountServiceAccountToken}").stdout == "false"

    bad = server.kubectl("apply", "-f", seed("000-pod-automount-off.yaml"), check=False)
    assert bad.returncode != 0
    assert 'The Pod "foo-pod" is invalid: spec.containers: Required value' in bad.stderr

    broken = server.kubectl("apply", "-f", seed("000-pod-projected-token.yaml"), check=False)
    assert broken.returncode != 0
    assert "error converting YAML to JSON" in broken.stderr

    strict = server.kubectl("apply", "-f", seed("000-pod-projected-token-indented.yaml"), check=False)
    assert strict.returncode != 0
    items = "spec.volumes[0].projected.sources[2].downwardAPI.items[0]"
    assert (f'strict decoding error: unknown field "{items}.apiVersion", '
            f'unknown field "{items}.fieldPath"') in strict.stderr

    ok = server.kubectl("apply", "-f", seed("000-pod-projected-token-fixed.yaml")).stdout
    assert "pod/foo-pod created" in ok
    pod = json.loads(server.kubectl("get", "pod", "foo-pod", "-o", "json").stdout)
    vols = [v["name"] for v in pod["spec"]["volumes"]]
    assert not any(v.startswith("kube-api-access-") for v in vols), vols
    assert server.kubectl("get", "pod", "foo-pod", "-o", "jsonpath={.spec.serviceAccountName}").stdout == "foo-sa"
    as_yaml = yaml.safe_load(server.kubectl("get", "pod", "foo-pod", "-o", "yaml").stdout)
    assert as_yaml["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3607
    out = server.kubectl("delete", "pod", "foo-pod").stdout
    assert out.strip() == 'pod "foo-pod" deleted'
    assert server.kubectl("get", "pod", "foo-pod", check=False).returncode != 0


def test_pod_with_missing_serviceaccount_is_forbidden(server: Server) -> None:
    manifest = yaml.safe_load(Path(seed("000-pod-projected-token-fixed.yaml")).read_text())
    manifest["metadata"]["name"] = "orphan-pod"
    manifest["spec"]["serviceAccountName"] = "nobody"
    res = server.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert res.returncode != 0
    assert ('pods "orphan-pod" is forbidden: error looking up service account default/nobody: '
            'serviceaccount "nobody" not found') in res.stderr


def test_default_pod_gets_kube_api_access_volume(server: Server) -> None:
    server.kubectl("run", "plain", "--image=busybox:1.36", "--restart=Never")
    pod = json.loads(server.kubectl("get", "pod", "plain", "-o", "json").stdout)
    assert pod["spec"]["serviceAccountName"] == "default"
    vol = [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(vol) == 1
    assert vol[0]["projected"]["sources"][0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {"name": vol[0]["name"], "readOnly": True,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"} in mounts


def test_seed_001_manifests(server: Server) -> None:
    missing = server.kubectl("apply", "-f", seed("001-service-account.yaml"), check=False)
    assert missing.returncode != 0
    assert 'namespaces "production" not found' in missing.stderr
    server.kubectl("create", "namespace", "production")
    assert "serviceaccount/app-controller created" in server.kubectl(
        "apply", "-f", seed("001-service-account.yaml")).stdout
    out = server.kubectl("apply", "-f", seed("001-role-binding.yaml")).stdout
    assert "role.rbac.authorization.k8s.io/app-controller-role created" in out
    assert "rolebinding.rbac.authorization.k8s.io/app-controller-binding created" in out
    # Applying again changes nothing.
    again = server.kubectl("apply", "-f", seed("001-role-binding.yaml")).stdout
    assert "role.rbac.authorization.k8s.io/app-controller-role unchanged" in again
    out = server.kubectl("apply", "-f", seed("001-long-lived-token.yaml")).stdout
    assert "secret/app-controller-token created" in out
    listing = server.kubectl("get", "secrets", "-n", "production").stdout.splitlines()
    assert listing[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    row = [line.split() for line in listing[1:] if line.startswith("app-controller-token")][0]
    assert row[1] == "kubernetes.io/service-account-token"


def test_heredoc_apply(server: Server) -> None:
    server.kubectl("create", "namespace", "heredoc")
    server.kubectl("create", "serviceaccount", "hd-sa", "-n", "heredoc")
    manifest = """apiVersion: v1
kind: Secret
metadata:
  name: hd-sa-token
  namespace: heredoc
  annotations:
    kubernetes.io/service-account.name: hd-sa
type: kubernetes.io/service-account-token
"""
    out = server.kubectl("apply", "-f", "-", input=manifest).stdout
    assert "secret/hd-sa-token created" in out
    secret = json.loads(server.kubectl("get", "secret", "hd-sa-token", "-n", "heredoc", "-o", "json").stdout)
    assert secret["type"] == "kubernetes.io/service-account-token"


def test_secret_without_sa_annotation_is_invalid(server: Server) -> None:
    manifest = """apiVersion: v1
kind: Secret
metadata:
  name: no-annotation
type: kubernetes.io/service-account-token
"""
    res = server.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert res.returncode != 0
    assert "metadata.annotations[kubernetes.io/service-account.name]: Required value" in res.stderr
