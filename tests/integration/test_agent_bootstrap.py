"""`kubesat agent` joining with a bootstrap token and rotating its client certificate, as real processes against
a real server: the TLS bootstrap CSR, the cert dir and kubeconfig it writes, a restart that needs no new CSR, a
denied request ending the agent with one line, and a rotation the agent switches to without restarting (seen in
the audit log: the Lease writes carry the new certificate's fingerprint)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import Server, start_server, wait_for

KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("agent-bootstrap")
    srv = start_server(tmp / "data", extra=["--audit-log-path", str(tmp / "audit.log")])
    yield srv
    srv.stop()


def _audit(server: Server) -> list[dict[str, Any]]:
    """The audit log's complete lines: the server may be half-way through writing the last one."""
    path = server.data_dir.parent / "audit.log"
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]


def _agent(tmp: Path, node: str, *args: str, env: dict[str, str] | None = None,
           log: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(tmp / f"{node}.kubeconfig"),
           "--node-name", node, "--root", str(tmp / f"{node}-root"), *args]
    if log is None:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, env=env)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _bootstrap_kubeconfig(server: Server, path: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--bootstrap", "--data-dir",
                          str(server.data_dir)], capture_output=True, check=True).stdout
    path.write_bytes(out)
    token: str = yaml.safe_load(out)["users"][0]["user"]["token"]
    return token.split(".")[0]


def _csrs(server: Server) -> list[dict[str, Any]]:
    """The client certificate requests (an agent also asks for its kubelet API's serving certificate)."""
    items = json.loads(server.kubectl("get", "csr", "-o", "json").stdout)["items"]
    return [c for c in items if c["spec"].get("signerName") != "kubernetes.io/kubelet-serving"]


def _csrs_of(server: Server, user: str) -> list[dict[str, Any]]:
    """The client certificate requests of `user` (a node also asks for a serving certificate)."""
    return [c for c in _csrs(server) if c["spec"].get("username") == user and c["spec"]["signerName"] == KUBELET_SIGNER]


def _node_ready(server: Server, node: str) -> bool:
    res = server.kubectl("get", "node", node, "-o", "json", check=False)
    if res.returncode != 0:
        return False
    conds = json.loads(res.stdout)["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _pem_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _fingerprint(cert: x509.Certificate) -> str:
    return "X509SHA256=" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_an_agent_joins_with_a_bootstrap_token(server: Server, tmp_path: Path) -> None:
    node = "join-n1"
    boot = tmp_path / "bootstrap.kubeconfig"
    token_id = _bootstrap_kubeconfig(server, boot)
    kubeconfig, pki = tmp_path / f"{node}.kubeconfig", tmp_path / f"{node}-root" / "pki"
    proc = _agent(tmp_path, node, "--bootstrap-kubeconfig", str(boot), log=tmp_path / "agent.log")
    try:
        wait_for(lambda: _node_ready(server, node), 30, "the joined node Ready")
        # The kubeconfig the kubelet writes: 0600, the bootstrap kubeconfig's cluster, the store's current pair.
        assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
        doc = yaml.safe_load(kubeconfig.read_text())
        current = pki / "kubelet-client-current.pem"
        assert doc["users"][0]["user"] == {"client-certificate": str(current), "client-key": str(current)}
        assert doc["clusters"][0]["cluster"]["server"] == server.url
        assert current.is_symlink()
        target = Path(os.readlink(current))
        assert re.fullmatch(r"kubelet-client-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.pem", target.name)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert not (pki / "kubelet-client.key.tmp").exists()
        cert = _pem_certificate(current)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"system:node:{node}"
        assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:nodes"]
        key = serialization.load_pem_private_key(current.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
        # The request: named after its key, by the bootstrap user, auto-approved by the kubeadm binding.
        (csr,) = _csrs_of(server, f"system:bootstrap:{token_id}")
        assert csr["metadata"]["name"].startswith("node-csr-")
        assert csr["spec"]["signerName"] == KUBELET_SIGNER
        assert csr["spec"]["usages"] == ["digital signature", "key encipherment", "client auth"]
        approved = next(c for c in csr["status"]["conditions"] if c["type"] == "Approved")
        assert (approved["reason"], approved["message"]) == \
            ("AutoApproved", "Auto approving kubelet client certificate after SubjectAccessReview.")
        assert base64.b64decode(csr["status"]["certificate"]).startswith(
            cert.public_bytes(serialization.Encoding.PEM))
        assert _stop(proc) == 0
        # The token is gone (expired, deleted): the node goes on with its certificate, and asks for nothing new.
        server.kubectl("delete", "secret", "-n", "kube-system", f"bootstrap-token-{token_id}")
        written = kubeconfig.read_bytes()
        proc = _agent(tmp_path, node, "--bootstrap-kubeconfig", str(boot), log=tmp_path / "agent.log")
        time.sleep(3)
        assert proc.poll() is None, (tmp_path / "agent.log").read_text()
        assert kubeconfig.read_bytes() == written
        assert len([c for c in _csrs(server) if c["metadata"]["name"].startswith("node-csr-")
                    and c["spec"]["username"] == f"system:bootstrap:{token_id}"]) == 1
        assert not _csrs_of(server, f"system:node:{node}")
    finally:
        _stop(proc)


def _token_kubeconfig(server: Server, path: Path, token: str) -> None:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {
            "server": server.url,
            "certificate-authority-data": base64.b64encode(server.ca_file.read_bytes()).decode()}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))


def test_a_denied_request_stops_the_agent_with_one_line(server: Server, tmp_path: Path) -> None:
    """A token whose group may create CSRs but is not auto-approved: the request waits for a human, who
    denies it."""
    group = "system:bootstrappers:deny-test"
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": "bootstrap-token-deny01", "namespace": "kube-system"},
        "stringData": {"token-id": "deny01", "token-secret": "0123456789abcdef",
                       "usage-bootstrap-authentication": "true", "auth-extra-groups": group}}))
    server.kubectl("create", "clusterrolebinding", "deny-test", "--clusterrole=system:node-bootstrapper",
                   f"--group={group}")
    boot = tmp_path / "bootstrap.kubeconfig"
    _token_kubeconfig(server, boot, "deny01.0123456789abcdef")
    node = "deny-n1"
    proc = _agent(tmp_path, node, "--bootstrap-kubeconfig", str(boot), "--log-level", "warning")
    try:
        pending = wait_for(lambda: _csrs_of(server, "system:bootstrap:deny01"), 20, "the pending CSR")
        name = pending[0]["metadata"]["name"]
        time.sleep(1)
        assert not (pending[0].get("status") or {}).get("conditions")  # nobody approved it
        assert proc.poll() is None
        server.kubectl("certificate", "deny", name)
        assert proc.wait(timeout=20) == 1
    finally:
        _stop(proc)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert err.splitlines() == [
        "kubesat: error: could not get a client certificate with the bootstrap kubeconfig: certificate signing "
        "request is denied, reason: KubectlDeny, message: This CSR was denied by kubectl certificate deny."], err
    assert not (tmp_path / f"{node}.kubeconfig").exists()
    # The key waits for the next try, as the kubelet keeps it: a restart asks again under the same name.
    assert (tmp_path / f"{node}-root" / "pki" / "kubelet-client.key.tmp").exists()
    assert server.kubectl("get", "node", node, check=False).returncode != 0


def test_a_refused_or_missing_bootstrap_kubeconfig_is_one_line(server: Server, tmp_path: Path) -> None:
    boot = tmp_path / "bootstrap.kubeconfig"
    _token_kubeconfig(server, boot, "nosuch.0123456789abcdef")
    proc = _agent(tmp_path, "refused-n1", "--bootstrap-kubeconfig", str(boot), "--log-level", "warning")
    assert proc.wait(timeout=20) == 1
    assert proc.stderr is not None
    assert proc.stderr.read().decode().splitlines() == [
        "kubesat: error: could not get a client certificate with the bootstrap kubeconfig: cannot create "
        "certificate signing request: 401 Unauthorized: Unauthorized"]
    proc = _agent(tmp_path, "missing-n1", "--bootstrap-kubeconfig", str(tmp_path / "nope"), "--log-level", "warning")
    assert proc.wait(timeout=20) == 1
    assert proc.stderr is not None
    lines = proc.stderr.read().decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "kubesat: error: could not get a client certificate with the bootstrap kubeconfig: unable to load "
        "bootstrap kubeconfig: "), lines


def _short_lived_node_kubeconfig(server: Server, node: str, path: Path) -> x509.Certificate:
    """A kubeconfig with a node client certificate valid for 600 s (the least a CSR may ask for)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    name = f"short-{node}"
    server.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": KUBELET_SIGNER, "usages": ["digital signature", "client auth"],
                 "expirationSeconds": 600}}))

    def issued() -> str:
        csr = json.loads(server.kubectl("get", "csr", name, "-o", "json").stdout)
        return str((csr.get("status") or {}).get("certificate") or "")

    pem = base64.b64decode(wait_for(issued, 20, "the short-lived certificate"))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {
            "server": server.url,
            "certificate-authority-data": base64.b64encode(server.ca_file.read_bytes()).decode()}}],
        "users": [{"name": "u", "user": {"client-certificate-data": base64.b64encode(pem).decode(),
                                         "client-key-data": base64.b64encode(key_pem).decode()}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    return x509.load_pem_x509_certificate(pem)


def _lease_writers(server: Server, node: str) -> list[str]:
    """The credential ids of the Lease writes of `node`, oldest first."""
    out = []
    for ev in _audit(server):
        ref = ev.get("objectRef") or {}
        if ref.get("resource") == "leases" and ref.get("name") == node and ev.get("stage") == "ResponseComplete":
            out += (ev.get("user", {}).get("extra") or {}).get("authentication.kubernetes.io/credential-id", [])
    return out


def test_the_client_certificate_is_rotated_without_a_restart(server: Server, tmp_path: Path) -> None:
    """The agent's clock is 520 s ahead: a certificate for 600 s (backdated 5 minutes, so 900 s of validity)
    is past its 70-90 % point at once. The new one is for a year, so it is rotated exactly once."""
    node = "rot-n1"
    old = _short_lived_node_kubeconfig(server, node, tmp_path / f"{node}.kubeconfig")
    log = tmp_path / "agent.log"
    proc = _agent(tmp_path, node, env=dict(os.environ, KUBESAT_AGENT_CLOCK_OFFSET="520"), log=log)
    current = tmp_path / f"{node}-root" / "pki" / "kubelet-client-current.pem"
    try:
        rotated = wait_for(lambda: [c for c in _csrs_of(server, f"system:node:{node}")
                                    if (c.get("status") or {}).get("certificate")], 30, "the rotation CSR")
        (csr,) = rotated
        assert csr["metadata"]["name"].startswith("csr-")
        assert csr["spec"]["usages"] == ["digital signature", "client auth"]
        approved = next(c for c in csr["status"]["conditions"] if c["type"] == "Approved")
        assert approved["message"] == "Auto approving self kubelet client certificate after SubjectAccessReview."
        wait_for(current.exists, 10, "the rotated pair stored")
        new = _pem_certificate(current)
        assert new.serial_number != old.serial_number
        assert new.not_valid_after_utc.timestamp() - time.time() > 300 * 86400
        assert stat.S_IMODE(Path(os.readlink(current)).stat().st_mode) == 0o600
        # Still one process, now writing its Lease with the new certificate only.
        wait_for(lambda: _fingerprint(new) in _lease_writers(server, node), 25, "a Lease write with the new cert")
        writers = _lease_writers(server, node)
        assert _fingerprint(old) in writers
        first_new = writers.index(_fingerprint(new))
        assert set(writers[first_new:]) == {_fingerprint(new)}
        assert proc.poll() is None
        assert len(_csrs_of(server, f"system:node:{node}")) == 1
        assert _stop(proc) == 0
        # A restart goes on with the rotated certificate from the cert dir (the kubeconfig still holds the old
        # one), and does not rotate again.
        seen = len(writers)
        proc = _agent(tmp_path, node, log=log)
        wait_for(lambda: len(_lease_writers(server, node)) > seen + 1, 30, "Lease writes after the restart")
        assert set(_lease_writers(server, node)[seen:]) == {_fingerprint(new)}
        assert len(_csrs_of(server, f"system:node:{node}")) == 1
    finally:
        _stop(proc)
    assert "Traceback" not in log.read_text()
