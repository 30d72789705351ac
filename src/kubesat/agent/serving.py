"""The kubelet API's serving certificate, as the kubelet gets one with `serverTLSBootstrap: true`.

A `kubernetes.io/kubelet-serving` CertificateSigningRequest for `CN=system:node:NAME, O=system:nodes` with the
node's name and addresses as subjectAltNames, signed by the cluster CA once approved (kubesat's approver
approves a node's request for its own name and addresses; elsewhere an admin would). The pair is kept as
`kubelet-server-current.pem` in the cert dir and reused while it is valid for those names. So the API server
checks the kubelet's certificate against the cluster CA, as with `--kubelet-certificate-authority`.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kubesat.agent import certs
from kubesat.agent.client import ApiClient

log = logging.getLogger("kubesat.agent.serving")

SIGNER = "kubernetes.io/kubelet-serving"
USAGES = ("digital signature", "server auth")  # an ECDSA key: no key encipherment
CURRENT = "kubelet-server-current.pem"
# How long the agent waits for the request to be approved and signed (the certificate manager's 15 minutes).
WAIT_SECONDS = 900.0
# A certificate closer than this to its end is renewed at start.
MIN_LEFT = 86400.0


def names_for(node: str, address: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the certificate must name."""
    try:
        ipaddress.ip_address(address)
        return [node], [address]
    except ValueError:
        return sorted({node, address}), []


def make_request(key_pem: bytes, node: str, dns: list[str], ips: list[str]) -> bytes:
    key = certs.load_key(key_pem)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    req = (x509.CertificateSigningRequestBuilder().subject_name(certs.node_subject(node))
           .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(key, hashes.SHA256()))
    return req.public_bytes(serialization.Encoding.PEM)


def covers(pair: certs.Pair, dns: list[str], ips: list[str], now: float) -> bool:
    """Whether a stored pair still serves: valid for a day more and naming every name and address."""
    if pair.not_after - now < MIN_LEFT:
        return False
    try:
        san = pair.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = set(san.get_values_for_type(x509.DNSName)) | {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    return set(dns) | {str(ipaddress.ip_address(i)) for i in ips} <= have


async def serving_pair(api: ApiClient, cert_dir: Path, node: str, address: str, now: float,
                       wait: float = WAIT_SECONDS) -> certs.Pair:
    """The stored serving pair when it still serves, else a new one through a CSR (CertificateError when the
    request is denied, fails or is not answered in time)."""
    dns, ips = names_for(node, address)
    path = cert_dir / CURRENT
    try:
        pair = certs.parse_pair_file(path.read_bytes()) if path.exists() and \
            path.stat().st_size <= certs.MAX_PEM_BYTES else None
    except (certs.CertificateError, ValueError, OSError):
        pair = None
    if pair is not None and covers(pair, dns, ips, now):
        return pair
    key_pem = certs.new_key_pem()
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "csr-"},
            "spec": {"request": base64.b64encode(make_request(key_pem, node, dns, ips)).decode(),
                     "signerName": SIGNER, "usages": list(USAGES)}}
    created = await api.create(certs.CSR_PATH, body)
    meta = created.get("metadata") or {}
    log.info("requested a kubelet serving certificate for %s (%s)", ", ".join(dns + ips), meta.get("name"))
    cert_pem = await certs.wait_for_certificate(api, str(meta.get("name", "")), str(meta.get("uid", "")), wait)
    pair = certs.make_pair(cert_pem, key_pem)
    cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    certs.write_private(path, cert_pem + key_pem)
    return pair


def write_files(pair: certs.Pair, directory: Path) -> tuple[str, str]:
    """The pair as the two files the ssl module loads (readable by the agent alone)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_file, key_file = directory / "kubelet-server.crt", directory / "kubelet-server.key"
    for file, data in ((cert_file, pair.cert_pem), (key_file, pair.key_pem)):
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return str(cert_file), str(key_file)


def context(pair: certs.Pair, directory: Path, client_ca_pem: bytes) -> ssl.SSLContext:
    cert_file, key_file = write_files(pair, directory)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cadata=client_ca_pem.decode())
    ctx.verify_mode = ssl.CERT_OPTIONAL  # none: the kubelet API's 401
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
