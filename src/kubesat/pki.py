"""The data dir's key material: cluster CA, serving and admin certificates, SA signing key, kubeconfig.

Everything is created on the first start and reused afterwards; private keys are written 0600.
TLS keys are ECDSA P-256 (cheap to make, so a first start stays fast); the service-account
signing key is RSA-2048 because RS256 is the algorithm every external verifier accepts.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IPS = ("127.0.0.1", "::1")
NODE_USER_PREFIX = "system:node:"
# kubeadm's apiserver-kubelet-client certificate (1.29 and later: group kubeadm:cluster-admins).
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
KUBELET_CLIENT_GROUP = "kubeadm:cluster-admins"
NODES_GROUP = "system:nodes"
NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
CA_DAYS = 3650
LEAF_DAYS = 365
# The private keys x509.CertificateBuilder.sign accepts (CertificateIssuerPrivateKeyTypes).
_ISSUER_KEY_TYPES = (
    rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey, dsa.DSAPrivateKey,
)


class PKIError(Exception):
    """A key or certificate in the data dir cannot be used; the message names the file and the fix."""


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file 0600 from the start (never world-readable, not even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_key(path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise PKIError(f"{path}: not a usable PEM private key ({e}); remove it to have kubesat make a new one") from e


def _load_issuer_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    key = _load_key(path)
    if not isinstance(key, _ISSUER_KEY_TYPES):
        raise PKIError(f"{path}: a {type(key).__name__} cannot sign certificates; "
                       "remove it to have kubesat make a new one")
    return key


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as e:
        raise PKIError(f"{path}: not a PEM certificate ({e}); remove it to have kubesat make a new one") from e


def _issue(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: x509.Name,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    days: int,
    ca: bool = False,
    server: bool = False,
    client: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> x509.Certificate:
    now = _now()
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    else:
        b = b.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if dns or ips:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass
class ClusterPKI:
    """Paths of the data dir's material; `ensure()` makes what is missing."""

    data_dir: Path

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.pki_dir / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.pki_dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.pki_dir / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.pki_dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.pki_dir / "admin.key"

    @property
    def kubelet_client_cert(self) -> Path:
        """kube-apiserver's --kubelet-client-certificate: who the server is to the kubelet API (exec, logs)."""
        return self.pki_dir / "apiserver-kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.pki_dir / "apiserver-kubelet-client.key"

    @property
    def sa_key(self) -> Path:
        return self.pki_dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.pki_dir / "sa.pub"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    def ensure(self, server_url: str, extra_sans: tuple[str, ...] = (), sa_alg: str = "RS256") -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pki_dir, 0o700)
        ca_key, ca_cert = self._ensure_ca()
        self._ensure_serving(ca_key, ca_cert, extra_sans)
        self._ensure_admin(ca_key, ca_cert)
        self._ensure_kubelet_client(ca_key, ca_cert)
        self._ensure_sa_key(sa_alg)
        self._write_kubeconfig(server_url)

    def _ensure_ca(self) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
        if self.ca_cert.exists() and self.ca_key.exists():
            return _load_issuer_key(self.ca_key), _load_cert(self.ca_cert)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
        cert = _issue(name, key.public_key(), name, key, days=CA_DAYS, ca=True)
        write_private(self.ca_key, _pem_key(key))
        write_public(self.ca_cert, _pem_cert(cert))
        # A new CA invalidates every leaf it did not sign.
        for p in (self.serving_cert, self.admin_cert, self.kubelet_client_cert):
            p.unlink(missing_ok=True)
        return key, cert

    def _ensure_serving(
        self, ca_key: CertificateIssuerPrivateKeyTypes, ca_cert: x509.Certificate, extra_sans: tuple[str, ...]
    ) -> None:
        dns = SERVING_DNS_NAMES + tuple(s for s in extra_sans if not _is_ip(s))
        ips = SERVING_IPS + tuple(s for s in extra_sans if _is_ip(s))
        if self.serving_cert.exists() and self.serving_key.exists():
            cert = _load_cert(self.serving_cert)
            if _covers(cert, dns, ips) and cert.not_valid_after_utc > _now() + datetime.timedelta(days=1):
                return
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
        cert = _issue(subject, key.public_key(), ca_cert.subject, ca_key, days=LEAF_DAYS, server=True, dns=dns, ips=ips)
        write_private(self.serving_key, _pem_key(key))
        write_public(self.serving_cert, _pem_cert(cert))

    def _ensure_admin(self, ca_key: CertificateIssuerPrivateKeyTypes, ca_cert: x509.Certificate) -> None:
        if self.admin_cert.exists() and self.admin_key.exists():
            cert = _load_cert(self.admin_cert)
            if cert.not_valid_after_utc > _now() + datetime.timedelta(days=1):
                return
        key_pem, cert_pem = self.issue_client_cert("kubernetes-admin", ("system:masters",), ca_key, ca_cert)
        write_private(self.admin_key, key_pem)
        write_public(self.admin_cert, cert_pem)

    def _ensure_kubelet_client(self, ca_key: CertificateIssuerPrivateKeyTypes, ca_cert: x509.Certificate) -> None:
        """The client certificate the server presents to kubelets, named as kubeadm names it."""
        if self.kubelet_client_cert.exists() and self.kubelet_client_key.exists():
            cert = _load_cert(self.kubelet_client_cert)
            if cert.not_valid_after_utc > _now() + datetime.timedelta(days=1):
                return
        key_pem, cert_pem = self.issue_client_cert(KUBELET_CLIENT_USER, (KUBELET_CLIENT_GROUP,), ca_key, ca_cert)
        write_private(self.kubelet_client_key, key_pem)
        write_public(self.kubelet_client_cert, cert_pem)

    def load_ca(self) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
        """The cluster CA's key and certificate, what the CertificateSigningRequest signer signs with."""
        return _load_issuer_key(self.ca_key), _load_cert(self.ca_cert)

    def issue_client_cert(
        self,
        user: str,
        groups: tuple[str, ...],
        ca_key: CertificateIssuerPrivateKeyTypes | None = None,
        ca_cert: x509.Certificate | None = None,
    ) -> tuple[bytes, bytes]:
        """A client certificate as Kubernetes reads one: CN = user name, O = groups. Returns PEM (key, cert)."""
        if ca_key is None:
            ca_key = _load_issuer_key(self.ca_key)
        if ca_cert is None:
            ca_cert = _load_cert(self.ca_cert)
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        cert = _issue(x509.Name(attrs), key.public_key(), ca_cert.subject, ca_key, days=LEAF_DAYS, client=True)
        return _pem_key(key), _pem_cert(cert)

    def node_kubeconfig(self, node: str, server_url: str = "") -> bytes:
        """A kubeconfig for node `node`: a client certificate for `system:node:<node>` in group `system:nodes`,
        signed by the cluster CA; the server is the admin kubeconfig's unless given."""
        if not NODE_NAME.fullmatch(node) or len(node) > 253:
            raise PKIError(f"invalid node name {node!r}: a lowercase RFC 1123 subdomain must consist of lower case "
                           "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
        for path in (self.ca_cert, self.ca_key):
            if not path.exists():
                raise PKIError(f"{path} is missing: start `kubesat serve` with this data dir first")
        if not server_url:
            server_url = self._admin_server_url()
        user = f"{NODE_USER_PREFIX}{node}"
        key_pem, cert_pem = self.issue_client_cert(user, (NODES_GROUP,))
        return kubeconfig_yaml(server_url, self.ca_cert.read_bytes(), user, cert_pem, key_pem)

    def _admin_server_url(self) -> str:
        try:
            doc = yaml.safe_load(self.kubeconfig.read_text())
            return str(doc["clusters"][0]["cluster"]["server"])
        except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError) as e:
            raise PKIError(f"{self.kubeconfig}: cannot read the server address ({e}); pass --server") from None

    def _ensure_sa_key(self, alg: str = "RS256") -> None:
        if self.sa_key.exists():
            _load_key(self.sa_key)
            return
        key = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else \
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(self.sa_key, _pem_key(key))
        write_public(
            self.sa_pub,
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        )

    def _write_kubeconfig(self, server_url: str) -> None:
        write_private(self.kubeconfig, kubeconfig_yaml(
            server_url,
            self.ca_cert.read_bytes(),
            "kubernetes-admin",
            self.admin_cert.read_bytes(),
            self.admin_key.read_bytes(),
        ))


def kubeconfig_yaml(server_url: str, ca_pem: bytes, user: str, cert_pem: bytes | None = None,
                    key_pem: bytes | None = None, token: str | None = None) -> bytes:
    """A kubeconfig that kubectl and the official clients read as is."""
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    user_entry: dict[str, str] = {}
    if cert_pem and key_pem:
        user_entry = {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}
    if token:
        user_entry["token"] = token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubesat", "cluster": {"server": server_url, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": f"{user}@kubesat", "context": {"cluster": "kubesat", "user": user}}],
        "current-context": f"{user}@kubesat",
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def _covers(cert: x509.Certificate, dns: tuple[str, ...], ips: tuple[str, ...]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    return set(dns) <= have_dns and {str(ipaddress.ip_address(i)) for i in ips} <= have_ips
