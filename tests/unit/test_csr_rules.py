"""CertificateSigningRequest rules without a server: validation, the signers' checks, durations, the
subresources' update rules, the table and the auto-approver's decision."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubesat.auth.authz import ALLOW, DENY, Attributes
from kubesat.controllers.csrapprover import CSRApprovingController
from kubesat.controllers.csrsigner import needs_signing, sign, signer_error, signing_duration
from kubesat.registry import csr as csrs
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.strategies import strategy_for

CSRS = builtin_kind("certificates.k8s.io/v1", "CertificateSigningRequest")
STRATEGY = strategy_for(CSRS)


def _pem(cn: str, orgs: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _csr(pem: bytes, signer: str, usages: list[str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "c"}, "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer,
                                                "usages": usages, **spec}}


def _texts(obj: dict[str, Any]) -> list[str]:
    return [e.text() for e in STRATEGY.validate(obj)]


def test_a_good_request_is_valid() -> None:
    assert _texts(_csr(_pem("a"), csrs.KUBE_APISERVER_CLIENT, ["client auth"], expirationSeconds=600)) == []


def test_validation_messages() -> None:
    obj = _csr(b"nope", "a.b/c/d", ["client auth", "bogus"], expirationSeconds=10)
    assert _texts(obj) == [
        "spec.request: Invalid value: []byte{0x6e, 0x6f, 0x70, 0x65}: PEM block type must be CERTIFICATE REQUEST",
        'spec.usages[1]: Unsupported value: "bogus": supported values: ' + ", ".join(
            f'"{u}"' for u in csrs.VALID_USAGES),
        "spec.signerName: Invalid value: \"a.b/c/d\": must be a fully qualified domain and path of the form "
        "'example.com/signer-name'",
        "spec.expirationSeconds: Invalid value: 10: may not specify a duration less than 600 seconds (10 minutes)",
    ]
    assert _texts(_csr(_pem("a"), "nodots/x", ["client auth"])) == [
        'spec.signerName: Invalid value: "nodots": should be a domain with at least two segments separated by dots']
    assert _texts(_csr(_pem("a"), csrs.LEGACY_UNKNOWN, ["client auth"])) == [
        'spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": the legacy signerName is not allowed '
        "via this API version"]


def test_create_clears_status_and_requester_comes_from_the_request() -> None:
    obj = _csr(_pem("a"), csrs.KUBE_APISERVER_CLIENT, ["client auth"], username="mallory")
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    csrs.set_requester(obj, "alice", "u1", ("g",), {"k": ("v",)})
    STRATEGY.prepare_for_create(obj)
    assert obj["status"] == {}
    assert {k: obj["spec"][k] for k in ("username", "uid", "groups", "extra")} == {
        "username": "alice", "uid": "u1", "groups": ["g"], "extra": {"k": ["v"]}}


def test_status_keeps_approval_and_approval_keeps_certificate() -> None:
    old = _csr(_pem("a"), csrs.KUBE_APISERVER_CLIENT, ["client auth"])
    old["status"] = {}
    new = {**old, "status": {"conditions": [{"type": "Approved"}], "certificate": "Zm9v"},
           "spec": {"signerName": "changed"}}
    STRATEGY.prepare_for_status_update(new, old)
    assert new["status"] == {"certificate": "Zm9v"} and new["spec"] == old["spec"]
    new = {**old, "status": {"conditions": [{"type": "Approved", "reason": "R"}], "certificate": "Zm9v"}}
    STRATEGY.prepare_for_subresource_update("approval", new, old)
    cond = new["status"]["conditions"][0]
    assert "certificate" not in new["status"] and cond["status"] == "True" and cond["lastTransitionTime"]
    main = {**new, "status": {}, "spec": {"signerName": "x"}}
    STRATEGY.prepare_for_update(main, new)
    assert main["status"] == new["status"] and main["spec"] == new["spec"]


def test_update_may_not_remove_conditions_or_replace_a_certificate() -> None:
    old = _csr(_pem("a"), csrs.KUBE_APISERVER_CLIENT, ["client auth"])
    old["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    new = {**old, "status": {}}
    assert [e.text() for e in STRATEGY.validate_update(new, old)] == [
        'status.conditions: Forbidden: updates may not remove a condition of type "Approved"']


def test_kubelet_client_rules() -> None:
    def err(cn: str, orgs: tuple[str, ...], usages: list[str], dns: tuple[str, ...] = ()) -> str:
        return signer_error(_csr(_pem(cn, orgs, dns), csrs.KUBE_APISERVER_CLIENT_KUBELET, usages))

    ok = ["digital signature", "client auth"]
    assert err("system:node:n1", ("system:nodes",), ok) == ""
    assert err("system:node:n1", ("system:nodes",), ok + ["key encipherment"]) == ""
    assert err("system:node:n1", ("other",), ok) == "subject organization is not system:nodes"
    assert err("n1", ("system:nodes",), ok) == "subject common name does not begin with system:node:"
    assert err("system:node:n1", ("system:nodes",), ok, ("n1",)) == "DNS subjectAltNames are not allowed"
    assert err("system:node:n1", ("system:nodes",), ["client auth"]) == (
        "usages did not match [client auth digital signature key encipherment]")


def test_kubelet_serving_and_apiserver_client_rules() -> None:
    serving = ["digital signature", "server auth"]
    assert signer_error(_csr(_pem("system:node:n1", ("system:nodes",), ("n1.local",)), csrs.KUBELET_SERVING,
                             serving)) == ""
    assert signer_error(_csr(_pem("system:node:n1", ("system:nodes",)), csrs.KUBELET_SERVING, serving)) == (
        "DNS or IP subjectAltName is required")
    assert signer_error(_csr(_pem("x"), csrs.KUBE_APISERVER_CLIENT, ["server auth"])) == (
        "invalid usage for client certificate: server auth")
    assert signer_error(_csr(_pem("x"), csrs.KUBE_APISERVER_CLIENT, ["digital signature"])) == (
        "missing required usage for client certificate: client auth")


def test_durations_and_what_is_signed() -> None:
    year = 365 * 24 * 3600.0
    assert signing_duration(None, year) == year
    assert signing_duration(3600, year) == 3600
    assert signing_duration(10 * year, year) == year
    obj = _csr(_pem("x"), csrs.KUBE_APISERVER_CLIENT, ["client auth"])
    assert not needs_signing(obj)
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    assert needs_signing(obj)
    obj["spec"]["signerName"] = "example.com/x"
    assert not needs_signing(obj)


def test_sign_copies_subject_names_and_usages() -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
          .sign(ca_key, hashes.SHA256()))
    req = csrs.parse_csr(_pem("system:node:n1", ("system:nodes",), ("n1.local",)))
    cert = x509.load_pem_x509_certificate(sign(req, ["digital signature", "server auth"], ca_key, ca, 3600, now))
    assert cert.subject == req.subject and cert.issuer == ca.subject
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(minutes=65)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["n1.local"]


def test_table_row() -> None:
    obj = _csr(_pem("x"), csrs.KUBE_APISERVER_CLIENT, ["client auth"], username="u", expirationSeconds=86400)
    obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    obj["status"] = {"conditions": [{"type": "Approved"}, {"type": "Failed"}]}
    now = datetime.datetime(2026, 1, 1, 0, 0, 30, tzinfo=datetime.UTC)
    assert STRATEGY.table_cells(obj, now) == ["c", "30s", csrs.KUBE_APISERVER_CLIENT, "u", "24h",
                                              "Approved,Failed"]
    assert [c["name"] for c in STRATEGY.table_columns()] == [
        "Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]


def test_auto_approver_asks_for_selfnodeclient_then_nodeclient() -> None:
    asked: list[str] = []

    def authorize(attrs: Attributes) -> tuple[str, str]:
        asked.append(attrs.subresource)
        return (ALLOW, "") if attrs.subresource == "nodeclient" else (DENY, "")

    approver = CSRApprovingController(None, authorize)  # type: ignore[arg-type]
    usages = ["digital signature", "client auth"]
    own = _csr(_pem("system:node:n1", ("system:nodes",)), csrs.KUBE_APISERVER_CLIENT_KUBELET, usages,
               username="system:node:n1")
    assert approver.approval_message(own) == "Auto approving kubelet client certificate after SubjectAccessReview."
    assert asked == ["selfnodeclient", "nodeclient"]
    asked.clear()
    other = _csr(_pem("system:node:n2", ("system:nodes",)), csrs.KUBE_APISERVER_CLIENT_KUBELET, usages,
                 username="system:node:n1")
    assert approver.approval_message(other) == "Auto approving kubelet client certificate after SubjectAccessReview."
    assert asked == ["nodeclient"]
    client = _csr(_pem("x"), csrs.KUBE_APISERVER_CLIENT, ["client auth"], username="x")
    assert approver.approval_message(client) == "" and asked == ["nodeclient"]
