"""`kubesat serve` as a process: first start, restart, health endpoints, lock, signals, kill -9 durability."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml
from cryptography import x509
from kubernetes import client, config

from .conftest import Server, free_port, start_server, wait_for

pytestmark = pytest.mark.integration


def test_health_and_version_endpoints(server: Server) -> None:
    for path in ("/readyz", "/livez", "/healthz"):
        r = requests.get(server.url + path, verify=server.ca_file, timeout=10)
        assert r.status_code == 200, path
        assert r.text == "ok"
    v = requests.get(server.url + "/version", verify=server.ca_file, timeout=10).json()
    assert v["major"] == "1" and v["minor"].isdigit() and v["gitVersion"].startswith("v1.")


def test_serving_certificate_names(server: Server) -> None:
    cert = x509.load_pem_x509_certificate((server.data_dir / "pki" / "apiserver.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    assert {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local"} <= names
    # 10.96.0.1: the kubernetes Service's ClusterIP, where in-cluster clients on a pod network dial the API.
    assert {"127.0.0.1", "10.96.0.1"} <= {str(i) for i in san.get_values_for_type(x509.IPAddress)}


def test_private_keys_are_0600(server: Server) -> None:
    pki = server.data_dir / "pki"
    keys = [p for p in pki.iterdir() if p.name.endswith(".key")]
    assert {p.name for p in keys} >= {"ca.key", "apiserver.key", "admin.key", "sa.key"}
    for p in keys + [server.kubeconfig]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_builtin_namespaces_with_kubectl(server: Server) -> None:
    out = server.kubectl("get", "ns", "-o", "json").stdout
    names = {i["metadata"]["name"] for i in json.loads(out)["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_admin_is_system_masters(server: Server) -> None:
    out = server.kubectl("auth", "whoami", "-o", "json").stdout
    info = json.loads(out)["status"]["userInfo"]
    assert info["username"] == "kubernetes-admin"
    assert "system:masters" in info["groups"] and "system:authenticated" in info["groups"]


def test_client_certificate_reaches_the_app(server: Server, tmp_path) -> None:
    """Fails if the TLS shim stops handing the verified client certificate to the application."""
    user = yaml.safe_load(server.kubeconfig.read_text())["users"][0]["user"]
    cert, key = tmp_path / "admin.crt", tmp_path / "admin.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    url = server.url + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    r = requests.post(url, json=body, cert=(str(cert), str(key)), verify=server.ca_file, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["status"]["userInfo"]["username"] == "kubernetes-admin"
    anon = requests.post(url, json=body, verify=server.ca_file, timeout=10)
    assert anon.status_code == 403, anon.text
    assert anon.json()["reason"] == "Forbidden"


def test_second_server_on_same_data_dir_fails_clearly(server: Server) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "kubesat.cli", "serve", "--data-dir", str(server.data_dir), "--port", str(free_port())],
        capture_output=True, text=True, timeout=30,
    )
    assert res.returncode != 0
    assert "in use by another kubesat server" in res.stderr
    assert "Traceback" not in res.stderr
    # The running server is unharmed.
    server.kubectl("get", "ns", "default")


def test_restart_reuses_keys_and_sigterm_exits_cleanly(tmp_path) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    ca = (data / "pki" / "ca.crt").read_bytes()
    sa = (data / "pki" / "sa.key").read_bytes()
    first.kubectl("create", "namespace", "persisted")
    assert first.stop(signal.SIGTERM) == 0
    second = start_server(data)
    try:
        assert (data / "pki" / "ca.crt").read_bytes() == ca
        assert (data / "pki" / "sa.key").read_bytes() == sa
        second.kubectl("get", "namespace", "persisted")
    finally:
        assert second.stop(signal.SIGINT) == 0


def test_kill_9_keeps_every_acknowledged_write(tmp_path) -> None:
    data = tmp_path / "data"
    srv = start_server(data)
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(srv.kubeconfig), client_configuration=cfg)
    core = client.CoreV1Api(client.ApiClient(cfg))
    n = 200
    for i in range(n):
        core.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"cm-{i}"), data={"i": str(i)}))
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait()
    again = start_server(data)
    try:
        cfg2 = client.Configuration()
        config.load_kube_config(config_file=str(again.kubeconfig), client_configuration=cfg2)
        core2 = client.CoreV1Api(client.ApiClient(cfg2))
        items = core2.list_namespaced_config_map("default").items
        got = {c.metadata.name: c.data["i"] for c in items if c.metadata.name.startswith("cm-")}
        assert got == {f"cm-{i}": str(i) for i in range(n)}
    finally:
        again.stop()


def _children(pid: int) -> list[int]:
    """Live child processes of pid (from /proc), zombies excluded."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def _signer_children(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"kubesat.tokens.signer" in f.read():
                    found.append(child)
        except OSError:
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_signer_processes_serve_tokens_and_end_with_the_server(tmp_path, how: int) -> None:
    srv = start_server(tmp_path / "data", extra=["--token-signing-processes", "2"])
    try:
        srv.kubectl("create", "token", "default")  # the first TokenRequest starts the signers
        signers = wait_for(lambda: len(_signer_children(srv.proc.pid)) == 2 and _signer_children(srv.proc.pid),
                           what="two signer processes beside the server")
        # Concurrent TokenRequests are handed to the children (one at a time, an idle server signs
        # in place); every token, wherever it was signed, authenticates.
        user = yaml.safe_load(srv.kubeconfig.read_text())["users"][0]["user"]
        cert, key = tmp_path / "admin.crt", tmp_path / "admin.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        session = requests.Session()
        session.cert = (str(cert), str(key))
        ca = str(srv.ca_file)  # per request: an environment CA bundle would beat Session.verify
        url = srv.url + "/api/v1/namespaces/default/serviceaccounts/default/token"

        def token_request(_: int) -> str:
            r = session.post(url, json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                        "spec": {}}, verify=ca, timeout=30)
            assert r.status_code == 201, r.text
            return r.json()["status"]["token"]

        with ThreadPoolExecutor(8) as pool:
            tokens = list(pool.map(token_request, range(64)))
        for token in set(tokens):
            r = session.post(srv.url + "/apis/authentication.k8s.io/v1/tokenreviews", verify=ca, timeout=30, json={
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
            assert r.json()["status"]["authenticated"] is True
        metrics = session.get(srv.url + "/metrics", verify=ca, timeout=30).text
        by_signer = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("kubesat_token_signatures_total{")}
        assert by_signer.get("helper", 0) > 0, by_signer
        assert sum(by_signer.values()) >= 65
    finally:
        if how == signal.SIGKILL:
            os.kill(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait()
        else:
            assert srv.stop(how) == 0

    def gone() -> bool:
        return not any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
                       != "Z" for p in signers)

    wait_for(gone, what="the signer processes exiting with the server")


def test_token_signing_in_process(tmp_path) -> None:
    srv = start_server(tmp_path / "data", extra=["--token-signing-processes", "0"])
    try:
        token = srv.kubectl("create", "token", "default").stdout.strip()
        assert token.count(".") == 2
        assert _signer_children(srv.proc.pid) == []
        metrics = srv.kubectl("get", "--raw", "/metrics").stdout
        assert 'kubesat_token_signatures_total{signer="server"} 1\n' in metrics
        assert 'signer="helper"' not in metrics
    finally:
        srv.stop()
