"""The agent's client certificate, as the kubelet gets and renews its own.

TLS bootstrap (pkg/kubelet/certificate/bootstrap): when `--kubeconfig` is missing, or its certificate has
expired, and a `--bootstrap-kubeconfig` is given, the agent makes an ECDSA P-256 key, asks for a
`kubernetes.io/kube-apiserver-client-kubelet` certificate for `CN=system:node:NAME, O=system:nodes`
with the bootstrap credentials (a CertificateSigningRequest named after a digest of its key, subject
and usages, so that a restarted agent finds its own request again), waits until it is issued, denied or
failed, stores key and certificate in the cert dir and writes `--kubeconfig` pointing at them.

The store (client-go's certificate FileStore): each pair is one PEM file `kubelet-client-<time>.pem`
(certificate, then key; mode 0600) and `kubelet-client-current.pem` is a symlink to the newest, swapped
by rename. Until a request succeeds its key waits in `kubelet-client.key.tmp`, reused after a restart.

Rotation (client-go's certificate manager): once the current certificate has lived a jittered 70-90 %
of its validity, a new key and a CSR are sent with the current credentials (`csr-` generated name);
the issued pair is stored and the API client presents it from then on. A failed attempt is retried
after 2, 4, 8, 16 and then every 32 s, while the old certificate stays in use.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import os
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import NameOID

from kubesat.agent.client import ApiClient, ApiError, Credentials, KubeconfigError, load_kubeconfig
from kubesat.agent.refresh import Backoff

log = logging.getLogger("kubesat.agent.certs")

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"

PAIR_PREFIX = "kubelet-client"
CURRENT = f"{PAIR_PREFIX}-current.pem"
UPDATED = f"{PAIR_PREFIX}-updated.pem"
TMP_KEY = "kubelet-client.key.tmp"

# How long the agent waits for its certificate: the kubelet's bootstrap waits an hour, its certificate
# manager 15 minutes per rotation attempt.
BOOTSTRAP_TIMEOUT = 3600.0
ROTATION_TIMEOUT = 900.0
# A key or certificate file, or an issued certificate, larger than this is refused unread.
MAX_PEM_BYTES = 256 * 1024
# Bootstrap: a CSR that cannot be created because the server is unreachable is retried this often.
RETRY_DELAY = 2.0

# Usages: the bootstrap request asks for key encipherment too (pkg/kubelet/certificate/bootstrap);
# the certificate manager only for an RSA key (DefaultKubeletClientGetUsages).
BOOTSTRAP_USAGES = ("digital signature", "key encipherment", "client auth")
EC_USAGES = ("digital signature", "client auth")

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)
T = TypeVar("T")


class CertificateError(Exception):
    """Why the agent has no usable client certificate, in one line."""


# --------------------------------------------------------------------------------------- PEM pairs
@dataclass(frozen=True)
class Pair:
    """A client certificate (with any chain after it) and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes
    cert: x509.Certificate

    @property
    def not_before(self) -> float:
        return self.cert.not_valid_before_utc.timestamp()

    @property
    def not_after(self) -> float:
        return self.cert.not_valid_after_utc.timestamp()


def _blocks(data: bytes) -> list[tuple[str, bytes]]:
    return [(m.group(1).decode(), m.group(0)) for m in _PEM.finditer(data)]


def _certificates(pem: bytes) -> list[bytes]:
    return [b for kind, b in _blocks(pem) if kind == "CERTIFICATE"]


def make_pair(cert_pem: bytes, key_pem: bytes) -> Pair:
    """The pair, checked: certificates parse, the key parses and is the first certificate's."""
    certs = _certificates(cert_pem)
    keys = [b for kind, b in _blocks(key_pem) if kind.endswith("PRIVATE KEY")]
    if not certs:
        raise CertificateError("no CERTIFICATE PEM block")
    if not keys:
        raise CertificateError("no PRIVATE KEY PEM block")
    try:
        cert = x509.load_pem_x509_certificate(certs[0])
        key = load_key(keys[0])
    except ValueError as e:
        raise CertificateError(f"cannot parse the certificate or key: {e}") from None
    der = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.DER, der) != \
            key.public_key().public_bytes(serialization.Encoding.DER, der):
        raise CertificateError("the certificate does not match the private key")
    return Pair(b"".join(certs), keys[0], cert)


def parse_pair_file(data: bytes) -> Pair:
    """A store file: certificate(s) and key in one."""
    return make_pair(data, data)


def load_key(pem: bytes) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(pem, password=None)


def new_key_pem() -> bytes:
    """A new ECDSA P-256 key, as `EC PRIVATE KEY` PEM (what the kubelet generates)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def node_subject(node: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_GROUP),
                      x509.NameAttribute(NameOID.COMMON_NAME, NODE_USER_PREFIX + node)])


def is_node_client(cert: x509.Certificate, node: str) -> bool:
    """Whether the certificate is this node's client identity (the certificate manager's template)."""
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return cns == [NODE_USER_PREFIX + node] and orgs == [NODES_GROUP]


def make_csr(key_pem: bytes, node: str) -> bytes:
    key = load_key(key_pem)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(f"unsupported private key type {type(key).__name__}")
    signing_key: CertificateIssuerPrivateKeyTypes = key
    req = x509.CertificateSigningRequestBuilder().subject_name(node_subject(node)).sign(signing_key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM)


def rotation_usages(key_pem: bytes) -> tuple[str, ...]:
    if isinstance(load_key(key_pem), rsa.RSAPrivateKey):
        return BOOTSTRAP_USAGES
    return EC_USAGES


def digested_name(key_pem: bytes, node: str, usages: tuple[str, ...]) -> str:
    """`node-csr-` and a SHA-512/256 digest of the public key, the subject and the usages (each base64url,
    '|'-separated), so the same key asks under the same name."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")  # noqa: E731
    public = load_key(key_pem).public_key().public_bytes(serialization.Encoding.DER,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    h = hashlib.new("sha512_256")
    for part in (public, (NODE_USER_PREFIX + node).encode(), NODES_GROUP.encode(), *(u.encode() for u in usages)):
        h.update(b64(part) + b"|")
    return "node-csr-" + b64(h.digest()).decode()


def rotation_deadline(pair: Pair, jitter: float) -> float:
    """When the certificate is due for rotation: after 70 % plus up to 20 % (jitter in [0, 1)) of its validity."""
    total = pair.not_after - pair.not_before
    return pair.not_before + total * (0.7 + 0.2 * jitter)


# ------------------------------------------------------------------------------------------ store
def _read_bounded(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_PEM_BYTES + 1)
    if len(data) > MAX_PEM_BYTES:
        raise CertificateError(f"{path}: larger than {MAX_PEM_BYTES} bytes")
    return data


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by the agent's user only, replacing any old one by rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FileStore:
    """The kubelet's `kubelet-client` pair store in the cert dir."""

    def __init__(self, cert_dir: Path, now: Callable[[], datetime] = datetime.now) -> None:
        self.cert_dir = cert_dir.absolute()  # the symlink and the kubeconfig name files by absolute path
        self.now = now

    @property
    def current_path(self) -> Path:
        return self.cert_dir / CURRENT

    def current(self) -> Pair | None:
        """The current pair, or None when there is none or it cannot be read (said in the log)."""
        try:
            return parse_pair_file(_read_bounded(self.current_path))
        except FileNotFoundError:
            return None
        except (OSError, CertificateError) as e:
            log.warning("ignoring the client certificate in %s: %s", self.current_path, e)
            return None

    def update(self, cert_pem: bytes, key_pem: bytes) -> Pair:
        """Store a new pair as `kubelet-client-<time>.pem` and make it the current one."""
        pair = make_pair(cert_pem, key_pem)
        self.cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.cert_dir / f"{PAIR_PREFIX}-{self.now().strftime('%Y-%m-%d-%H-%M-%S')}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pair.cert_pem + pair.key_pem)
            f.flush()
            os.fsync(f.fileno())
        updated = self.cert_dir / UPDATED
        updated.unlink(missing_ok=True)
        os.symlink(path, updated)
        os.replace(updated, self.current_path)
        return pair

    def key_for_request(self) -> bytes:
        """The key a bootstrap request uses: the current pair's, else the waiting one, else a new one (kept
        in kubelet-client.key.tmp until a certificate for it is stored)."""
        pair = self.current()
        if pair is not None:
            return pair.key_pem
        tmp = self.cert_dir / TMP_KEY
        try:
            pem = _read_bounded(tmp)
            load_key(pem)
            return pem
        except FileNotFoundError:
            pass
        except (OSError, ValueError, CertificateError) as e:
            log.warning("replacing the unusable key in %s: %s", tmp, e)
        pem = new_key_pem()
        self.cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(tmp, pem)
        return pem

    def forget_request_key(self) -> None:
        (self.cert_dir / TMP_KEY).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ kubeconfigs
def kubeconfig_yaml(creds: Credentials, pem_path: Path) -> bytes:
    """The kubeconfig the kubelet writes after bootstrapping: the bootstrap kubeconfig's cluster, the
    store's current pair as client certificate and key."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": {
            "server": creds.server, "certificate-authority-data": base64.b64encode(creds.ca_pem).decode()}}],
        "users": [{"name": "default-auth", "user": {
            "client-certificate": str(pem_path), "client-key": str(pem_path)}}],
        "contexts": [{"name": "default-context", "context": {
            "cluster": "default-cluster", "user": "default-auth", "namespace": "default"}}],
        "current-context": "default-context",
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def kubeconfig_valid(path: Path, now: float) -> bool:
    """Whether `path` holds a kubeconfig with a client certificate that has not expired (the kubelet's
    isClientConfigStillValid); a missing or unusable one is not valid."""
    if not path.exists():
        return False
    try:
        creds = load_kubeconfig(path)
        if not creds.cert_pem:
            log.warning("%s has no client certificate; bootstrapping", path)
            return False
        certs = [x509.load_pem_x509_certificate(b) for b in _certificates(creds.cert_pem)]
    except (KubeconfigError, ValueError) as e:
        log.warning("unable to read the existing kubeconfig %s (%s); bootstrapping", path, e)
        return False
    if not certs:
        return False
    for cert in certs:
        if now > cert.not_valid_after_utc.timestamp():
            log.warning("part of the existing client certificate in %s is expired: %s", path,
                        cert.not_valid_after_utc.isoformat())
            return False
    return True


def with_pair(creds: Credentials, pair: Pair) -> Credentials:
    return Credentials(creds.server, creds.ca_pem, pair.cert_pem, pair.key_pem)


# --------------------------------------------------------------------------------- CSR requests
def csr_object(csr_pem: bytes, usages: tuple[str, ...], name: str = "",
               expiration_seconds: int | None = None) -> dict[str, Any]:
    meta = {"name": name} if name else {"generateName": "csr-"}
    spec: dict[str, Any] = {"request": base64.b64encode(csr_pem).decode(), "signerName": SIGNER,
                            "usages": list(usages)}
    if expiration_seconds is not None:
        spec["expirationSeconds"] = expiration_seconds
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": meta,
            "spec": spec}


def _request_public_key(csr: dict[str, Any]) -> bytes:
    try:
        pem = base64.b64decode(str((csr.get("spec") or {}).get("request") or ""), validate=True)
        req = x509.load_pem_x509_csr(pem)
    except (binascii.Error, ValueError):
        return b""
    return req.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


async def request_certificate(api: ApiClient, key_pem: bytes, node: str, usages: tuple[str, ...],
                              name: str = "") -> tuple[str, str]:
    """Create the CSR (an existing one of that name is taken if it is for the same key); (name, uid)."""
    csr_pem = make_csr(key_pem, node)
    try:
        created = await api.create(CSR_PATH, csr_object(csr_pem, usages, name))
    except ApiError as e:
        if e.code != 409 or not name:
            raise
        created = await api.get(f"{CSR_PATH}/{name}")
        ours = load_key(key_pem).public_key().public_bytes(serialization.Encoding.DER,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        if _request_public_key(created) != ours or (created.get("spec") or {}).get("signerName") != SIGNER:
            raise CertificateError(f"retrieved csr {name} is not compatible: another key or signer") from None
    meta = created.get("metadata") or {}
    return str(meta.get("name", "")), str(meta.get("uid", ""))


def issued_certificate(csr: dict[str, Any], uid: str) -> bytes | None:
    """The certificate of an issued request; None while it waits; CertificateError when denied or failed."""
    meta = csr.get("metadata") or {}
    if uid and meta.get("uid") != uid:
        raise CertificateError(f"csr {meta.get('name')} changed UIDs")
    status = csr.get("status") or {}
    approved = False
    for c in status.get("conditions") or []:
        if not isinstance(c, dict):
            continue
        if c.get("type") == "Denied":
            raise CertificateError(f"certificate signing request is denied, reason: {c.get('reason', '')}, "
                                   f"message: {c.get('message', '')}")
        if c.get("type") == "Failed":
            raise CertificateError(f"certificate signing request failed, reason: {c.get('reason', '')}, "
                                   f"message: {c.get('message', '')}")
        if c.get("type") == "Approved":
            approved = True
    cert = status.get("certificate")
    if not approved or not isinstance(cert, str) or not cert:
        return None
    if len(cert) > MAX_PEM_BYTES * 4 // 3 + 4:
        raise CertificateError(f"the issued certificate is larger than {MAX_PEM_BYTES} bytes")
    try:
        return base64.b64decode(cert, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError("the issued certificate is not base64") from None


async def wait_for_certificate(api: ApiClient, name: str, uid: str, timeout: float) -> bytes:
    """Watch the CSR until its certificate is issued (or it is denied or failed), at most `timeout` s."""
    try:
        return await asyncio.wait_for(_watch_csr(api, name, uid), timeout)
    except TimeoutError:
        raise CertificateError(f"timed out after {timeout:.0f} s waiting for the certificate signing request "
                               f"{name} to be issued") from None


async def _watch_csr(api: ApiClient, name: str, uid: str) -> bytes:
    while True:
        try:
            csr = await api.get(f"{CSR_PATH}/{name}")
            cert = issued_certificate(csr, uid)
            if cert is not None:
                return cert
            rv = str((csr.get("metadata") or {}).get("resourceVersion", ""))
            params = {"fieldSelector": f"metadata.name={name}", "resourceVersion": rv, "timeoutSeconds": "300"}
            async for kind, obj in api.watch(CSR_PATH, params):
                if kind == "DELETED":
                    raise CertificateError(f"the certificate signing request {name} was deleted")
                if kind in ("ADDED", "MODIFIED"):
                    cert = issued_certificate(obj, uid)
                    if cert is not None:
                        return cert
        except ApiError as e:
            if e.code == 404:
                raise CertificateError(f"the certificate signing request {name} was deleted") from None
            if e.code < 500 and e.code not in (410, 429):
                raise CertificateError(f"cannot read the certificate signing request {name}: {e}") from None
            log.warning("waiting for certificate signing request %s: %s", name, e)
        except httpx.HTTPError as e:
            log.warning("waiting for certificate signing request %s: %s", name, e)
        await asyncio.sleep(RETRY_DELAY)


async def _until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None if the agent is stopped first."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


# ------------------------------------------------------------------------------------- bootstrap
async def bootstrap(kubeconfig: Path, bootstrap_kubeconfig: Path, cert_dir: Path, node: str, now: float,
                    stop: asyncio.Event, *, user_agent: str = "kubesat-agent",
                    timeout: float = BOOTSTRAP_TIMEOUT) -> bool:
    """Make sure `kubeconfig` holds a valid client certificate, getting one with the bootstrap kubeconfig
    if it does not. False if the agent was stopped first; CertificateError if it cannot be had."""
    if kubeconfig_valid(kubeconfig, now):
        log.info("kubeconfig %s exists and is valid, skipping bootstrap", kubeconfig)
        return True
    try:
        creds = load_kubeconfig(bootstrap_kubeconfig)
    except KubeconfigError as e:
        raise CertificateError(f"unable to load bootstrap kubeconfig: {e}") from None
    store = FileStore(cert_dir)
    key_pem = store.key_for_request()
    api = ApiClient(creds, cert_dir, user_agent)
    try:
        log.info("requesting a client certificate for node %s with the bootstrap kubeconfig %s", node,
                 bootstrap_kubeconfig)
        cert_pem = await _until_stopped(asyncio.wait_for(_request_node_certificate(api, key_pem, node, timeout),
                                                         timeout), stop)
    except TimeoutError:
        raise CertificateError(f"timed out after {timeout:.0f} s waiting for a client certificate") from None
    finally:
        await api.close()
    if cert_pem is None:
        return False
    try:
        store.update(cert_pem, key_pem)
    except CertificateError as e:
        raise CertificateError(f"the issued certificate cannot be used: {e}") from None
    store.forget_request_key()
    write_private(kubeconfig, kubeconfig_yaml(creds, store.current_path))
    log.info("client certificate for node %s stored in %s; wrote %s", node, store.current_path, kubeconfig)
    return True


async def _request_node_certificate(api: ApiClient, key_pem: bytes, node: str, timeout: float) -> bytes:
    name = digested_name(key_pem, node, BOOTSTRAP_USAGES)
    while True:
        try:
            name, uid = await request_certificate(api, key_pem, node, BOOTSTRAP_USAGES, name)
            break
        except ApiError as e:
            if e.code < 500 and e.code != 429:
                raise CertificateError(f"cannot create certificate signing request: {e}") from None
            log.warning("cannot create certificate signing request (retrying in %.0f s): %s", RETRY_DELAY, e)
        except httpx.HTTPError as e:
            log.warning("cannot reach the server to request a certificate (retrying in %.0f s): %s", RETRY_DELAY, e)
        await asyncio.sleep(RETRY_DELAY)
    log.info("waiting for certificate signing request %s to be approved and issued", name)
    return await wait_for_certificate(api, name, uid, timeout)


# -------------------------------------------------------------------------------------- rotation
class Rotator:
    """Keeps the agent's client certificate fresh: rotates it once it is due, through `api`, which then
    presents the new one."""

    def __init__(self, api: ApiClient, store: FileStore, node: str, pair: Pair, clock: Callable[[], float],
                 tick: float, *, rand: Callable[[], float] = random.random, timeout: float = ROTATION_TIMEOUT) -> None:
        self.api = api
        self.store = store
        self.node = node
        self.pair = pair
        self.clock = clock
        self.tick = tick
        self.rand = rand
        self.timeout = timeout
        self.rotations = 0

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(initial=2.0, factor=2.0, cap=32.0, jitter=0.1)
        deadline = rotation_deadline(self.pair, self.rand())
        log.info("client certificate expires %s; rotation after %s", self.pair.cert.not_valid_after_utc.isoformat(),
                 datetime.fromtimestamp(deadline).isoformat(timespec="seconds"))
        while not stop.is_set():
            if self.clock() < deadline:
                await _sleep(stop, self.tick)
                continue
            try:
                await self.rotate()
                backoff.reset()
                deadline = rotation_deadline(self.pair, self.rand())
            except (ApiError, httpx.HTTPError, CertificateError, ValueError) as e:
                delay = backoff.next_delay()
                log.warning("could not rotate the client certificate (retrying in %.0f s): %s", delay, e)
                await _sleep(stop, delay)

    async def rotate(self) -> None:
        key_pem = new_key_pem()
        name, uid = await request_certificate(self.api, key_pem, self.node, rotation_usages(key_pem))
        log.info("certificate rotation: waiting for certificate signing request %s", name)
        cert_pem = await wait_for_certificate(self.api, name, uid, self.timeout)
        self.pair = self.store.update(cert_pem, key_pem)
        self.api.use_client_certificate(self.pair.cert_pem, self.pair.key_pem)
        self.rotations += 1
        log.info("certificate rotation: new client certificate from %s, valid until %s; "
                 "closing connections to start using it", name, self.pair.cert.not_valid_after_utc.isoformat())


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def rotator_for(api: ApiClient, creds: Credentials, store: FileStore, node: str, clock: Callable[[], float],
                tick: float) -> Rotator | None:
    """A Rotator when the agent's identity is this node's client certificate (else rotation has nothing to do)."""
    if not creds.cert_pem or not creds.key_pem:
        log.info("certificate rotation: the kubeconfig has no client certificate; nothing to rotate")
        return None
    try:
        pair = make_pair(creds.cert_pem, creds.key_pem)
    except CertificateError as e:
        log.warning("certificate rotation off: %s", e)
        return None
    if not is_node_client(pair.cert, node):
        log.info("certificate rotation: the client certificate is not system:node:%s's; not rotating it", node)
        return None
    return Rotator(api, store, node, pair, clock, tick)


def current_credentials(creds: Credentials, store: FileStore, node: str, now: float) -> Credentials:
    """With rotation on, the store's current pair (this node's, unexpired) wins over the kubeconfig's
    certificate, as the kubelet's certificate manager prefers its store: after a restart the agent goes on
    with the newest certificate it rotated to."""
    pair = store.current()
    if pair is None or not is_node_client(pair.cert, node) or now > pair.not_after:
        return creds
    if _certificates(creds.cert_pem or b"")[:1] != _certificates(pair.cert_pem)[:1]:
        log.info("using the client certificate in %s", store.current_path)
    return with_pair(creds, pair)
