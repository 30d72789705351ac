"""A running server keeps serving every kind of request after its package files are replaced or removed
(as a reinstall does): everything it needs was imported at start-up."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .conftest import start_server
from .rawclient import RawClient

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[2] / "src" / "kubesat"
CM = "/api/v1/namespaces/default/configmaps"


def test_requests_after_the_package_is_gone(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(SRC, site / "kubesat", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    server = start_server(tmp_path / "data", env=env)
    try:
        admin = RawClient.admin(server.data_dir, server.port)
        assert admin.request("POST", CM, b'{"metadata":{"name":"before"},"data":{"a":"b"}}',
                             "application/json").status == 201
        shutil.rmtree(site / "kubesat")  # what pip does between uninstalling and installing
        token = server.kubectl("create", "token", "default").stdout.strip()
        requests = [
            ("PATCH", f"{CM}/before", b'{"data":{"m":"1"}}', "application/merge-patch+json"),
            ("PATCH", f"{CM}/before", b'[{"op":"add","path":"/data/j","value":"2"}]', "application/json-patch+json"),
            ("PATCH", f"{CM}/before", b'{"data":{"s":"3"}}', "application/strategic-merge-patch+json"),
            ("PATCH", f"{CM}/applied?fieldManager=t",
             b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: b\n",
             "application/apply-patch+yaml"),
            ("POST", CM, b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n", "application/yaml"),
            ("GET", "/openapi/v2", b"", None),
            ("GET", "/openapi/v3/api/v1", b"", None),
            ("GET", "/apis", b"", None),
            ("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
             json.dumps({"spec": {"token": token}}).encode(), "application/json"),
            ("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", b"{}", "application/json"),
            ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
             b'{"spec":{"user":"x","resourceAttributes":{"verb":"get","resource":"pods"}}}', "application/json"),
            ("GET", "/metrics", b"", None),
            ("DELETE", f"{CM}/before", b"", None),
        ]
        for method, path, body, ct in requests:
            answer = admin.request(method, path, body, ct)
            assert answer.status < 300, (method, path, answer.status, answer.body[:300])
        assert server.kubectl("get", "configmaps", "-o", "name").stdout.split() == [
            "configmap/applied", "configmap/from-yaml", "configmap/kube-root-ca.crt"]
        log = server.log()
        assert "ImportError" not in log and "ModuleNotFoundError" not in log, log[-2000:]
    finally:
        server.stop()
