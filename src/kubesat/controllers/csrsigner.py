"""The csrsigning controller: approved CertificateSigningRequests for the built-in signers get a certificate from
the cluster CA when they meet their signer's rules, else a Failed condition, as kube-controller-manager signs."""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from kubesat import errors
from kubesat.controllers.base import cancel, loads, watch_in_background
from kubesat.registry import csr as csrs
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.csr")

CSRS = builtin_kind("certificates.k8s.io/v1", "CertificateSigningRequest")
# kube-controller-manager's --cluster-signing-duration default (8760h).
DEFAULT_SIGNING_DURATION = 365 * 24 * 3600.0
_MIN_DURATION = 600.0  # twice the signer's 5 minute backdate
_BACKDATE = datetime.timedelta(minutes=5)

_KEY_USAGES = {
    "signing": "digital_signature", "digital signature": "digital_signature",
    "content commitment": "content_commitment", "key encipherment": "key_encipherment",
    "key agreement": "key_agreement", "data encipherment": "data_encipherment", "cert sign": "key_cert_sign",
    "crl sign": "crl_sign", "encipher only": "encipher_only", "decipher only": "decipher_only",
}
_EXT_KEY_USAGES = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE, "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION, "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"), "ipsec tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"), "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING, "microsoft sgc": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": ObjectIdentifier("2.16.840.1.113730.4.1"),
}


def signing_duration(expiration_seconds: Any, max_duration: float) -> float:
    """The signer's duration(): the requested one, capped by the signer's maximum, at least 10 minutes."""
    if not isinstance(expiration_seconds, int) or isinstance(expiration_seconds, bool):
        return max_duration
    return max(_MIN_DURATION, min(float(expiration_seconds), max_duration))


def needs_signing(csr: dict[str, Any]) -> bool:
    """Approved, not failed, not yet issued, for a signer this controller runs."""
    spec = csrs.as_dict(csr.get("spec"))
    return (csrs.has_condition(csr, csrs.APPROVED) and not csrs.has_condition(csr, csrs.FAILED)
            and not csrs.as_dict(csr.get("status")).get("certificate")
            and spec.get("signerName") in csrs.SIGNER_RULES)


def signer_error(csr: dict[str, Any]) -> str:
    """Why the request's signer refuses it ('' when it may be signed)."""
    spec = csrs.as_dict(csr.get("spec"))
    rule = csrs.SIGNER_RULES[str(spec.get("signerName"))]
    req = csrs.parse_csr(csrs.request_bytes(csr))
    return rule(csrs.subject_of(req), [str(u) for u in spec.get("usages") or []])


def sign(req: x509.CertificateSigningRequest, usages: list[str], ca_key: CertificateIssuerPrivateKeyTypes,
         ca_cert: x509.Certificate, duration: float, now: datetime.datetime) -> bytes:
    """A certificate for the request's subject, names and key with the requested usages, PEM-encoded."""
    not_after = min(now + datetime.timedelta(seconds=duration), ca_cert.not_valid_after_utc)
    b = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(ca_cert.subject)
         .public_key(req.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - _BACKDATE).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    flags = {v: False for v in _KEY_USAGES.values()}
    for u in usages:
        if u in _KEY_USAGES:
            flags[_KEY_USAGES[u]] = True
    if any(flags.values()):
        if not flags["key_agreement"]:
            flags["encipher_only"] = flags["decipher_only"] = False
        b = b.add_extension(x509.KeyUsage(**flags), critical=True)
    ext = list(dict.fromkeys(_EXT_KEY_USAGES[u] for u in usages if u in _EXT_KEY_USAGES))
    if ext:
        b = b.add_extension(x509.ExtendedKeyUsage(ext), critical=False)
    try:
        san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        b = b.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                        critical=False)
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    return b.sign(ca_key, algorithm).public_bytes(serialization.Encoding.PEM)


class CSRWatcher:
    """Calls `handle` for every CertificateSigningRequest as it is now and whenever it changes."""

    name = "csr"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rev = await self.resync()
        self._task = watch_in_background(self.registry.store, rev, self._on_event, self.resync, self.name)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def resync(self) -> int:
        page = await self.registry.list(CSRS, "")
        for obj in page.items:
            await self._safe(obj)
        return int(page.resource_version)

    async def _on_event(self, ev: WatchEvent) -> None:
        if ev.type != "PUT" or not ev.key.startswith(CSRS.storage_prefix()):
            return
        obj = loads(ev.value)
        if obj is not None:
            await self._safe(obj)

    async def _safe(self, obj: dict[str, Any]) -> None:
        try:
            await self.handle(obj)
        except errors.StatusError as e:
            if e.code not in (404, 409):  # gone, or changed since: the next event brings it back
                log.warning("%s: %s: %s", self.name, obj["metadata"].get("name"), e.message)

    async def handle(self, csr: dict[str, Any]) -> None:
        raise NotImplementedError

    async def write(self, csr: dict[str, Any], subresource: str) -> None:
        await self.registry.update(CSRS, "", csr["metadata"]["name"], csr, subresource=subresource)


class CSRSigningController(CSRWatcher):
    name = "csrsigning"

    def __init__(self, registry: Registry, load_ca: Callable[[], tuple[CertificateIssuerPrivateKeyTypes,
                                                                       x509.Certificate]],
                 *, max_duration: float = DEFAULT_SIGNING_DURATION, clock: Callable[[], float] = time.time) -> None:
        super().__init__(registry)
        self.load_ca = load_ca
        self.max_duration = max_duration
        self.clock = clock

    async def handle(self, csr: dict[str, Any]) -> None:
        if not needs_signing(csr):
            return
        spec = csrs.as_dict(csr.get("spec"))
        try:
            why = signer_error(csr)
        except csrs.CSRError as e:
            log.warning("csrsigning: unable to parse csr %q: %s", csr["metadata"].get("name"), e)
            return
        status = csr.setdefault("status", {})
        if why:
            now = rfc3339(self.clock())
            status.setdefault("conditions", []).append({
                "type": csrs.FAILED, "status": "True", "reason": "SignerValidationFailure", "message": why,
                "lastUpdateTime": now, "lastTransitionTime": now,
            })
        else:
            req = csrs.parse_csr(csrs.request_bytes(csr))
            ca_key, ca_cert = self.load_ca()
            duration = signing_duration(spec.get("expirationSeconds"), self.max_duration)
            now_dt = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
            pem = await asyncio.to_thread(sign, req, [str(u) for u in spec.get("usages") or []], ca_key, ca_cert,
                                          duration, now_dt)
            status["certificate"] = base64.b64encode(pem).decode()
        await self.write(csr, "status")


def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

