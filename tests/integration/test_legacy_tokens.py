"""Secret-based service-account tokens against a real server: the tokens controller fills the seed's
long-lived token Secret, deletes one whose ServiceAccount does not exist, and the legacy-token
tracking ConfigMap is there (spec §5)."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import pytest
import requests

from .conftest import Server

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"

pytestmark = pytest.mark.integration


def wait_for(check, timeout: float = 10.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def secret_json(server: Server, ns: str, name: str) -> dict | None:
    res = server.kubectl("get", "secret", name, "-n", ns, "-o", "json", check=False)
    if res.returncode != 0:
        assert "NotFound" in res.stderr or "not found" in res.stderr, res.stderr
        return None
    return json.loads(res.stdout)


def b64url_json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_seed_long_lived_token_is_populated(server: Server) -> None:
    server.kubectl("create", "namespace", "production")
    server.kubectl("create", "serviceaccount", "app-controller", "-n", "production")
    out = server.kubectl("apply", "-f", str(SEEDS / "001-long-lived-token.yaml")).stdout
    assert "secret/app-controller-token created" in out

    token_b64 = wait_for(lambda: server.kubectl("get", "secret", "app-controller-token", "-n", "production", "-o",
                                                "jsonpath={.data.token}").stdout.strip())
    secret = secret_json(server, "production", "app-controller-token")
    assert secret is not None
    sa = json.loads(server.kubectl("get", "serviceaccount", "app-controller", "-n", "production", "-o",
                                   "json").stdout)
    data = secret["data"]
    assert base64.b64decode(data["namespace"]).decode() == "production"
    assert base64.b64decode(data["ca.crt"]).decode() == server.ca_file.read_text()
    ann = secret["metadata"]["annotations"]
    assert ann["kubernetes.io/service-account.name"] == "app-controller"
    assert ann["kubernetes.io/service-account.uid"] == sa["metadata"]["uid"]

    token = base64.b64decode(token_b64).decode()
    header, payload, _ = token.split(".")
    assert set(b64url_json(header)) == {"alg", "kid"}
    assert b64url_json(payload) == {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "production",
        "kubernetes.io/serviceaccount/secret.name": "app-controller-token",
        "kubernetes.io/serviceaccount/service-account.name": "app-controller",
        "kubernetes.io/serviceaccount/service-account.uid": sa["metadata"]["uid"],
        "sub": "system:serviceaccount:production:app-controller",
    }
    # `kubectl describe` prints a service-account token in clear and the other keys' sizes.
    described = server.kubectl("describe", "secret", "app-controller-token", "-n", "production").stdout
    assert re.search(r"^token:\s+" + re.escape(token) + "$", described, re.M), described
    assert re.search(r"^ca\.crt:\s+\d+ bytes$", described, re.M), described
    assert re.search(r"^namespace:\s+10 bytes$", described, re.M), described

    # The token authenticates as the ServiceAccount.
    res = requests.post(f"{server.url}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                        headers={"Authorization": f"Bearer {token}"}, verify=str(server.ca_file), timeout=10)
    assert res.status_code == 201, res.text
    user = res.json()["status"]["userInfo"]
    assert user["username"] == "system:serviceaccount:production:app-controller"
    assert user["uid"] == sa["metadata"]["uid"]

    # Still there a moment later: a Secret created after its ServiceAccount is never deleted.
    time.sleep(1)
    assert secret_json(server, "production", "app-controller-token") is not None


def test_secret_before_its_service_account_is_deleted(server: Server) -> None:
    server.kubectl("create", "namespace", "early")
    manifest = """apiVersion: v1
kind: Secret
metadata:
  name: early-token
  namespace: early
  annotations:
    kubernetes.io/service-account.name: not-yet
type: kubernetes.io/service-account-token
"""
    assert "secret/early-token created" in server.kubectl("apply", "-f", "-", input=manifest).stdout
    wait_for(lambda: secret_json(server, "early", "early-token") is None)
    # Once the ServiceAccount exists, the same Secret is populated instead.
    server.kubectl("create", "serviceaccount", "not-yet", "-n", "early")
    server.kubectl("apply", "-f", "-", input=manifest)
    wait_for(lambda: (secret_json(server, "early", "early-token") or {}).get("data", {}).get("token"))


def test_service_account_deletion_takes_its_token(server: Server) -> None:
    server.kubectl("create", "namespace", "cascade")
    server.kubectl("create", "serviceaccount", "doomed", "-n", "cascade")
    manifest = """apiVersion: v1
kind: Secret
metadata:
  name: doomed-token
  namespace: cascade
  annotations:
    kubernetes.io/service-account.name: doomed
type: kubernetes.io/service-account-token
"""
    server.kubectl("apply", "-f", "-", input=manifest)
    wait_for(lambda: (secret_json(server, "cascade", "doomed-token") or {}).get("data", {}).get("token"))
    server.kubectl("delete", "serviceaccount", "doomed", "-n", "cascade")
    wait_for(lambda: secret_json(server, "cascade", "doomed-token") is None)


def test_tracking_configmap_exists(server: Server) -> None:
    since = wait_for(lambda: server.kubectl(
        "get", "configmap", "kube-apiserver-legacy-service-account-token-tracking", "-n", "kube-system",
        "-o", "jsonpath={.data.since}", check=False).stdout.strip())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", since), since
