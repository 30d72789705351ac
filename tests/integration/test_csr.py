"""CertificateSigningRequests end to end with kubectl: create, approve, deny, the built-in signers, the node
client auto-approver, the signer permission on approval, and Kubernetes' validation messages."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from .conftest import Server, wait_for


def _request(cn: str, orgs: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """(key PEM, CSR PEM) for an EC P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def _manifest(name: str, request: bytes, signer: str, usages: list[str], **spec: Any) -> str:
    return json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(request).decode(), "signerName": signer, "usages": usages, **spec},
    })


def _csr(server: Server, name: str, kubeconfig: str | None = None) -> dict[str, Any]:
    out = server.kubectl("get", "csr", name, "-o", "json", kubeconfig=kubeconfig).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _certificate(server: Server, name: str, kubeconfig: str | None = None) -> x509.Certificate:
    def issued() -> str:
        return str(_csr(server, name, kubeconfig).get("status", {}).get("certificate") or "")

    wait_for(issued, what=f"a certificate for CSR {name}")
    return x509.load_pem_x509_certificate(base64.b64decode(issued()))


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == type_), None)


def _kubeconfig(server: Server, path: Path, user: str, cert: x509.Certificate, key_pem: bytes) -> str:
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {
            "server": server.url,
            "certificate-authority-data": base64.b64encode(server.ca_file.read_bytes()).decode()}}],
        "users": [{"name": user, "user": {"client-certificate-data": base64.b64encode(cert_pem).decode(),
                                          "client-key-data": base64.b64encode(key_pem).decode()}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": user}}],
    }))
    return str(path)


def _whoami(server: Server, kubeconfig: str) -> dict[str, Any]:
    out = server.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout
    return json.loads(out)["status"]["userInfo"]  # type: ignore[no-any-return]


def _node_kubeconfig(server: Server, node: str, tmp_path: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", node, "--data-dir",
                          str(server.data_dir)], capture_output=True, check=True).stdout
    path = tmp_path / f"{node}.kubeconfig"
    path.write_bytes(out)
    return str(path)


def test_csr_is_discovered_with_its_short_name(server: Server) -> None:
    out = server.kubectl("api-resources", "--api-group", "certificates.k8s.io").stdout
    assert "certificatesigningrequests   csr          certificates.k8s.io/v1" in out


def test_user_certificate_approved_with_kubectl_authenticates(server: Server, tmp_path: Path) -> None:
    key_pem, req = _request("alice", ("devs",))
    # The requester fields in the body are ignored: the server records who asked.
    server.kubectl("create", "-f", "-", input=_manifest(
        "alice", req, "kubernetes.io/kube-apiserver-client", ["client auth"], expirationSeconds=3600,
        username="mallory", groups=["system:masters"]))
    obj = _csr(server, "alice")
    assert obj["spec"]["username"] == "kubernetes-admin"
    assert obj["spec"]["groups"] == ["system:masters", "system:authenticated"]
    table = server.kubectl("get", "csr", "alice").stdout.splitlines()
    assert table[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    assert table[1].split()[2:] == ["kubernetes.io/kube-apiserver-client", "kubernetes-admin", "60m", "Pending"]

    out = server.kubectl("certificate", "approve", "alice").stdout
    assert out.strip() == "certificatesigningrequest.certificates.k8s.io/alice approved"
    cert = _certificate(server, "alice")
    approved = _condition(_csr(server, "alice"), "Approved")
    assert approved and approved["reason"] == "KubectlApprove"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == datetime.timedelta(hours=1, minutes=5)  # expirationSeconds, backdated 5 minutes
    assert server.kubectl("get", "csr", "alice").stdout.splitlines()[1].split()[-1] == "Approved,Issued"

    who = _whoami(server, _kubeconfig(server, tmp_path / "alice.kubeconfig", "alice", cert, key_pem))
    assert who["username"] == "alice"
    assert who["groups"] == ["devs", "system:authenticated"]


def test_deny(server: Server) -> None:
    _, req = _request("bob")
    server.kubectl("create", "-f", "-", input=_manifest("bob", req, "kubernetes.io/kube-apiserver-client",
                                                         ["client auth"]))
    out = server.kubectl("certificate", "deny", "bob").stdout
    assert out.strip() == "certificatesigningrequest.certificates.k8s.io/bob denied"
    denied = _condition(_csr(server, "bob"), "Denied")
    assert denied and denied["reason"] == "KubectlDeny"
    assert denied["message"] == "This CSR was denied by kubectl certificate deny."
    res = server.kubectl("certificate", "approve", "bob", check=False)
    assert res.returncode != 0 and 'certificate signing request "bob" is already Denied' in res.stderr
    time.sleep(0.5)
    obj = _csr(server, "bob")
    assert "certificate" not in obj["status"] and server.kubectl("get", "csr", "bob").stdout.split()[-1] == "Denied"


def test_node_renews_its_own_client_certificate(server: Server, tmp_path: Path) -> None:
    node = _node_kubeconfig(server, "n1", tmp_path)
    key_pem, req = _request("system:node:n1", ("system:nodes",))
    server.kubectl("create", "-f", "-", kubeconfig=node, input=_manifest(
        "node-n1-renewal", req, "kubernetes.io/kube-apiserver-client-kubelet", ["digital signature", "client auth"]))
    cert = _certificate(server, "node-n1-renewal", kubeconfig=node)
    approved = _condition(_csr(server, "node-n1-renewal"), "Approved")
    assert approved and approved["reason"] == "AutoApproved"
    assert approved["message"] == "Auto approving self kubelet client certificate after SubjectAccessReview."
    # No expirationSeconds: kube-controller-manager's --cluster-signing-duration, one year.
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=365, minutes=5)
    who = _whoami(server, _kubeconfig(server, tmp_path / "renewed.kubeconfig", "n1", cert, key_pem))
    assert who["username"] == "system:node:n1"
    assert who["groups"] == ["system:nodes", "system:authenticated"]


def test_node_asking_for_another_nodes_certificate_is_not_approved(server: Server, tmp_path: Path) -> None:
    node = _node_kubeconfig(server, "n1", tmp_path)
    _, req = _request("system:node:n2", ("system:nodes",))
    server.kubectl("create", "-f", "-", kubeconfig=node, input=_manifest(
        "n1-for-n2", req, "kubernetes.io/kube-apiserver-client-kubelet", ["digital signature", "client auth"]))
    # Its own renewal right after is approved: the approver has seen (and passed over) n1-for-n2 by then.
    _, own = _request("system:node:n1", ("system:nodes",))
    server.kubectl("create", "-f", "-", kubeconfig=node, input=_manifest(
        "n1-own", own, "kubernetes.io/kube-apiserver-client-kubelet", ["digital signature", "client auth"]))
    _certificate(server, "n1-own")
    obj = _csr(server, "n1-for-n2")
    assert obj["spec"]["username"] == "system:node:n1"
    assert not obj["status"].get("conditions") and not obj["status"].get("certificate")


def test_signer_refuses_a_request_outside_its_rules(server: Server) -> None:
    _, req = _request("system:node:n3", ("devs",))
    server.kubectl("create", "-f", "-", input=_manifest(
        "wrong-org", req, "kubernetes.io/kube-apiserver-client-kubelet", ["digital signature", "client auth"]))
    server.kubectl("certificate", "approve", "wrong-org")

    def failed() -> dict[str, Any] | None:
        return _condition(_csr(server, "wrong-org"), "Failed")

    wait_for(failed, what="a Failed condition")
    cond = failed()
    assert cond and cond["reason"] == "SignerValidationFailure"
    assert cond["message"] == "subject organization is not system:nodes"
    assert not _csr(server, "wrong-org")["status"].get("certificate")
    assert server.kubectl("get", "csr", "wrong-org").stdout.split()[-1] == "Approved,Failed"


def test_approval_needs_approve_on_the_signer(server: Server) -> None:
    _, req = _request("carol")
    server.kubectl("create", "-f", "-", input=_manifest("carol", req, "example.com/custom", ["client auth"]))
    server.kubectl("create", "clusterrole", "csr-approval", "--verb=get,list,update",
                   "--resource=certificatesigningrequests,certificatesigningrequests/approval")
    server.kubectl("create", "clusterrolebinding", "csr-approval-dave", "--clusterrole=csr-approval", "--user=dave")
    res = server.kubectl("--as", "dave", "certificate", "approve", "carol", check=False)
    assert res.returncode != 0
    assert ('Error from server (Forbidden): certificatesigningrequests.certificates.k8s.io "carol" is forbidden: '
            'user not permitted to approve requests with signerName "example.com/custom"') in res.stderr
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "example-signers"},
        "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve"],
                   "resourceNames": ["example.com/*"]}]}))
    server.kubectl("create", "clusterrolebinding", "example-signers-dave", "--clusterrole=example-signers",
                   "--user=dave")
    server.kubectl("--as", "dave", "certificate", "approve", "carol")
    assert _condition(_csr(server, "carol"), "Approved")
    # Nobody signs example.com/custom: approved, never issued.
    assert server.kubectl("get", "csr", "carol").stdout.split()[-1] == "Approved"


def test_bad_requests_are_invalid_as_kubernetes_words_it(server: Server) -> None:
    res = server.kubectl("create", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "bad"},
        "spec": {"request": base64.b64encode(b"hi\n").decode(), "signerName": "bad",
                 "usages": ["client auth", "nope", "client auth"], "expirationSeconds": 599}}))
    assert res.returncode != 0
    for line in (
        '* spec.request: Invalid value: []byte{0x68, 0x69, 0xa}: PEM block type must be CERTIFICATE REQUEST',
        '* spec.usages[1]: Unsupported value: "nope": supported values: "any", "cert sign", "client auth"',
        '* spec.usages[2]: Duplicate value: "client auth"',
        "* spec.signerName: Invalid value: \"bad\": must be a fully qualified domain and path of the form "
        "'example.com/signer-name'",
        "* spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)",
    ):
        assert line in res.stderr, res.stderr
    _, req = _request("x")
    res = server.kubectl("create", "-f", "-", check=False, input=_manifest("bad2", req, "", []))
    assert "* spec.usages: Required value" in res.stderr and "* spec.signerName: Required value" in res.stderr
    # A request signed by another key than the one it carries.
    other = ec.generate_private_key(ec.SECP256R1())
    good = x509.load_pem_x509_csr(req)
    forged = x509.CertificateSigningRequestBuilder().subject_name(good.subject).sign(other, hashes.SHA256())
    der = bytearray(forged.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # the signature no longer matches
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)) + \
        b"-----END CERTIFICATE REQUEST-----\n"
    res = server.kubectl("create", "-f", "-", check=False,
                         input=_manifest("bad3", pem, "example.com/x", ["client auth"]))
    assert res.returncode != 0
    assert "x509: ECDSA verification failure" in res.stderr or "asn1" in res.stderr, res.stderr


def test_status_and_approval_subresources_keep_to_their_fields(server: Server) -> None:
    _, req = _request("erin")
    server.kubectl("create", "-f", "-", input=_manifest("erin", req, "example.com/other", ["client auth"]))
    approved = {"type": "Approved", "status": "True", "reason": "ByHand", "message": "m"}
    # Approved through /status is dropped (only /approval sets it); the certificate through /approval is dropped.
    server.kubectl("patch", "csr", "erin", "--subresource=status", "--type=merge", "-p",
                   json.dumps({"status": {"conditions": [approved]}}))
    assert not _condition(_csr(server, "erin"), "Approved")
    server.kubectl("patch", "csr", "erin", "--subresource=approval", "--type=merge", "-p",
                   json.dumps({"status": {"conditions": [approved], "certificate": "Zm9v"}}))
    obj = _csr(server, "erin")
    assert _condition(obj, "Approved") and "certificate" not in obj["status"]
    # An approved request cannot also be Denied, nor lose its approval (kubectl refuses both client-side).
    denied = {"type": "Denied", "status": "True", "reason": "ByHand"}
    res = server.kubectl("patch", "csr", "erin", "--subresource=approval", "--type=json", "-p",
                         json.dumps([{"op": "add", "path": "/status/conditions/-", "value": denied}]), check=False)
    assert res.returncode != 0
    assert ('status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions are mutually '
            'exclusive') in res.stderr, res.stderr
    res = server.kubectl("patch", "csr", "erin", "--subresource=approval", "--type=merge", "-p",
                         json.dumps({"status": {"conditions": []}}), check=False)
    assert res.returncode != 0
    assert 'status.conditions: Forbidden: updates may not remove a condition of type "Approved"' in res.stderr


def test_official_client_reads_and_approves(server: Server, api: Any) -> None:
    certs = client.CertificatesV1Api(api)
    _, req = _request("frank")
    body = client.V1CertificateSigningRequest(
        metadata=client.V1ObjectMeta(name="frank"),
        spec=client.V1CertificateSigningRequestSpec(
            request=base64.b64encode(req).decode(), signer_name="kubernetes.io/kube-apiserver-client",
            usages=["client auth"], expiration_seconds=7200))
    created = certs.create_certificate_signing_request(body)
    assert created.spec.username == "kubernetes-admin" and created.spec.expiration_seconds == 7200
    assert created.status is not None
    created.status.conditions = [client.V1CertificateSigningRequestCondition(
        type="Approved", status="True", reason="PythonApprove", message="approved from Python")]
    certs.replace_certificate_signing_request_approval("frank", created)
    cert = _certificate(server, "frank")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "frank"
    listed = certs.list_certificate_signing_request(
        field_selector="spec.signerName=kubernetes.io/kube-apiserver-client")
    names = [c.metadata.name for c in listed.items if c.metadata]
    assert "frank" in names and "carol" not in names
