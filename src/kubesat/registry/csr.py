"""certificates.k8s.io/v1 CertificateSigningRequest: validation, defaults, the approval and status update rules,
the table kubectl prints, and the PKCS#10 checks the built-in signers and the auto-approver share."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from kubesat.errors import (
    FieldError,
    duplicate,
    forbidden_field,
    invalid_value,
    not_supported,
    required,
    too_long,
)
from kubesat.registry.meta import age_column, as_dict, column, dns1123_label, dns1123_subdomain, field_doc, name_column
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import age, human_duration

GROUP = "certificates.k8s.io"
APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"

KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN = "kubernetes.io/legacy-unknown"

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"

# Every KeyUsage the API accepts (k8s.io/api/certificates/v1), in Go's sorted order for messages.
VALID_USAGES = sorted((
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
    "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
    "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
))
_APPROVAL_TYPES = (APPROVED, DENIED)
_TRUE_ONLY = (APPROVED, DENIED, FAILED)  # condition types whose status may only be True
_EXCLUSIVE = "Approved and Denied conditions are mutually exclusive"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([^-\r\n]*)-----\r?\n(.*?)-----END \1-----", re.S)
_MAX_DOMAIN, _MAX_PATH = 253, 253 + 63 + 1


class CSRError(ValueError):
    """A PKCS#10 request that cannot be used, worded as Go's x509 / Kubernetes' helpers word it."""


class GoBytes(bytes):
    """A []byte value rendered in a field error as Go's %#v renders it: []byte{0x2d, 0x2d, ...}."""

    def __str__(self) -> str:
        return "[]byte{" + ", ".join(f"0x{b:x}" for b in self) + "}"


def request_bytes(csr: dict[str, Any]) -> bytes:
    """spec.request decoded from its base64 JSON form (b'' when absent or not base64)."""
    raw = as_dict(csr.get("spec")).get("request")
    if not isinstance(raw, str):
        return b""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return b""


def parse_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """The first PEM block as a CERTIFICATE REQUEST (certificates.ParseCSR)."""
    m = _PEM_BLOCK.search(pem)
    if m is None or m.group(1) != b"CERTIFICATE REQUEST":
        raise CSRError("PEM block type must be CERTIFICATE REQUEST")
    try:
        body = base64.b64decode(b"".join(m.group(2).split()), validate=True)
        return x509.load_der_x509_csr(body)
    except (binascii.Error, ValueError) as e:
        raise CSRError(f"asn1: structure error: {e}") from None


def check_signature(req: x509.CertificateSigningRequest) -> None:
    if req.is_signature_valid:
        return
    key = req.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        raise CSRError("crypto/rsa: verification error")
    if isinstance(key, ec.EllipticCurvePublicKey):
        raise CSRError("x509: ECDSA verification failure")
    if isinstance(key, ed25519.Ed25519PublicKey):
        raise CSRError("x509: Ed25519 verification failure")
    raise CSRError("x509: signature verification failure")


# ------------------------------------------------------------------- the built-in signers' rules
@dataclass(frozen=True)
class Subject:
    """What the signer rules read of a request: subject and subjectAltNames."""

    common_name: str
    organizations: tuple[str, ...]
    dns: tuple[str, ...]
    ips: tuple[str, ...]
    emails: tuple[str, ...]
    uris: tuple[str, ...]


def subject_of(req: x509.CertificateSigningRequest) -> Subject:
    cn = [str(a.value) for a in req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = tuple(str(a.value) for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    try:
        san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(i) for i in san.get_values_for_type(x509.IPAddress))
        emails = tuple(san.get_values_for_type(x509.RFC822Name))
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        pass
    return Subject(cn[0] if cn else "", orgs, dns, ips, emails, uris)


_KUBELET_CLIENT_USAGES = ({"digital signature", "key encipherment", "client auth"},
                          {"digital signature", "client auth"})
_KUBELET_SERVING_USAGES = ({"digital signature", "key encipherment", "server auth"},
                           {"digital signature", "server auth"})


def _go_set(usages: set[str]) -> str:
    return "[" + " ".join(sorted(usages)) + "]"


def kubelet_client_error(s: Subject, usages: list[str]) -> str:
    """ValidateKubeletClientCSR: '' when the request is a node client certificate request."""
    if s.organizations != (NODES_GROUP,):
        return "subject organization is not system:nodes"
    for values, what in ((s.dns, "DNS"), (s.emails, "Email"), (s.ips, "IP"), (s.uris, "URI")):
        if values:
            return f"{what} subjectAltNames are not allowed"
    if not s.common_name.startswith(NODE_USER_PREFIX):
        return "subject common name does not begin with system:node:"
    if set(usages) not in _KUBELET_CLIENT_USAGES:
        return f"usages did not match {_go_set(_KUBELET_CLIENT_USAGES[0])}"
    return ""


def kubelet_serving_error(s: Subject, usages: list[str]) -> str:
    """ValidateKubeletServingCSR: '' when the request is a kubelet serving certificate request."""
    if s.organizations != (NODES_GROUP,):
        return "subject organization is not system:nodes"
    if not s.dns and not s.ips:
        return "DNS or IP subjectAltName is required"
    if s.emails:
        return "Email subjectAltNames are not allowed"
    if s.uris:
        return "URI subjectAltNames are not allowed"
    if set(usages) not in _KUBELET_SERVING_USAGES:
        return f"usages did not match {_go_set(_KUBELET_SERVING_USAGES[0])}"
    if not s.common_name.startswith(NODE_USER_PREFIX):
        return "subject common name does not begin with system:node:"
    return ""


def apiserver_client_error(s: Subject, usages: list[str]) -> str:
    """validAPIServerClientUsages: client auth required, digital signature and key encipherment optional."""
    has_client_auth = False
    for u in usages:
        if u == "client auth":
            has_client_auth = True
        elif u not in ("digital signature", "key encipherment"):
            return f"invalid usage for client certificate: {u}"
    if not has_client_auth:
        return "missing required usage for client certificate: client auth"
    return ""


SIGNER_RULES = {
    KUBE_APISERVER_CLIENT: apiserver_client_error,
    KUBE_APISERVER_CLIENT_KUBELET: kubelet_client_error,
    KUBELET_SERVING: kubelet_serving_error,
}


# ----------------------------------------------------------------------------- conditions
def conditions(csr: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in as_dict(csr.get("status")).get("conditions") or [] if isinstance(c, dict)]


def has_condition(csr: dict[str, Any], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status", "True") == "True" for c in conditions(csr))


def condition_text(csr: dict[str, Any]) -> str:
    """The CONDITION column: Denied/Approved/Pending, then ,Failed and ,Issued."""
    types = {c.get("type") for c in conditions(csr)}
    text = DENIED if DENIED in types else APPROVED if APPROVED in types else "Pending"
    if FAILED in types:
        text += ",Failed"
    if as_dict(csr.get("status")).get("certificate"):
        text += ",Issued"
    return text


def _default_conditions(csr: dict[str, Any], old: dict[str, Any] | None, now: str) -> None:
    """v1 defaults (status True) and populateConditionTimestamps."""
    old_by_type = {c.get("type"): c for c in conditions(old or {})}
    for c in conditions(csr):
        c.setdefault("status", "True")
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            prev = old_by_type.get(c.get("type"))
            if prev is not None and prev.get("status") == c.get("status") and prev.get("lastTransitionTime"):
                c["lastTransitionTime"] = prev["lastTransitionTime"]
            else:
                c["lastTransitionTime"] = now


# ------------------------------------------------------------------------------ validation
def validate_signer_name(path: str, name: Any) -> list[FieldError]:
    if not isinstance(name, str) or not name:
        return [required(path)]
    segments = name.split("/")
    if len(segments) != 2:
        return [invalid_value(path, name, "must be a fully qualified domain and path of the form "
                                          "'example.com/signer-name'")]
    errs: list[FieldError] = []
    domain, rest = segments
    if len(domain) > _MAX_DOMAIN:
        errs.append(too_long(path, _MAX_DOMAIN))
    labels = domain.split(".")
    for lbl in labels:
        msgs = dns1123_label(lbl)
        if msgs:
            errs += [invalid_value(path, domain, f'validating label "{lbl}": {m}') for m in msgs]
            break
    if len(labels) < 2:
        errs.append(invalid_value(path, domain, "should be a domain with at least two segments separated by dots"))
    for lbl in rest.split("."):
        msgs = dns1123_subdomain(lbl)
        if msgs:
            errs += [invalid_value(path, rest, f'validating label "{lbl}": {m}') for m in msgs]
            break
    if len(name) > _MAX_DOMAIN + _MAX_PATH + 1:
        errs.append(too_long(path, _MAX_DOMAIN + _MAX_PATH + 1))
    return errs


def _validate_certificate(pem: bytes) -> str:
    if not pem:
        return ""
    blocks = 0
    for m in _PEM_BLOCK.finditer(pem):
        if m.group(1) != b"CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{m.group(1).decode(errors="replace")}"'
        body = m.group(2)
        if b":" in body.split(b"\n", 1)[0]:
            return "no PEM block headers are permitted"
        try:
            x509.load_der_x509_certificate(base64.b64decode(b"".join(body.split()), validate=True))
        except (binascii.Error, ValueError) as e:
            return f"x509: malformed certificate: {e}"
        blocks += 1
    return "" if blocks else "must contain at least one CERTIFICATE PEM block"


def _validate_conditions(csr: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    approved = denied = False
    for i, c in enumerate(conditions(csr)):
        path = f"status.conditions[{i}]"
        type_ = str(c.get("type") or "")
        if not type_:
            errs.append(required(f"{path}.type"))
        status = c.get("status") or ""
        allowed = ["True"] if type_ in _TRUE_ONLY else ["False", "True", "Unknown"]
        if not status:
            errs.append(required(f"{path}.status"))
        elif status not in allowed:
            errs.append(not_supported(f"{path}.status", status, allowed))
        if type_ == APPROVED:
            approved = True
            if denied:
                errs.append(invalid_value(f"{path}.type", type_, _EXCLUSIVE))
        elif type_ == DENIED:
            denied = True
            if approved:
                errs.append(invalid_value(f"{path}.type", type_, _EXCLUSIVE))
        if type_ in seen:
            errs.append(duplicate(f"{path}.type", type_))
        seen.add(type_)
    return errs


def validate_csr(csr: dict[str, Any]) -> list[FieldError]:
    """validateCertificateSigningRequest (v1, create options)."""
    spec = as_dict(csr.get("spec"))
    errs: list[FieldError] = []
    pem = request_bytes(csr)
    try:
        check_signature(parse_csr(pem))
    except CSRError as e:
        errs.append(invalid_value("spec.request", GoBytes(pem), str(e)))
    usages = spec.get("usages") or []
    if not usages:
        errs.append(required("spec.usages"))
    for i, u in enumerate(usages):
        if u not in VALID_USAGES:
            errs.append(not_supported(f"spec.usages[{i}]", u, VALID_USAGES))
    for i, u in enumerate(usages):
        if u in usages[:i]:
            errs.append(duplicate(f"spec.usages[{i}]", u))
    signer = spec.get("signerName")
    if signer == LEGACY_UNKNOWN:
        errs.append(invalid_value("spec.signerName", signer,
                                  "the legacy signerName is not allowed via this API version"))
    else:
        errs += validate_signer_name("spec.signerName", signer)
    exp = spec.get("expirationSeconds")
    if isinstance(exp, int) and not isinstance(exp, bool) and exp < 600:
        errs.append(invalid_value("spec.expirationSeconds", exp,
                                  "may not specify a duration less than 600 seconds (10 minutes)"))
    errs += _validate_conditions(csr)
    cert_error = _validate_certificate(certificate_bytes(csr))
    if cert_error:
        errs.append(invalid_value("status.certificate", "<certificate data>", cert_error))
    return errs


def certificate_bytes(csr: dict[str, Any]) -> bytes:
    raw = as_dict(csr.get("status")).get("certificate")
    if not isinstance(raw, str):
        return b""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw.encode()


def set_requester(csr: dict[str, Any], username: str, uid: str, groups: tuple[str, ...],
                  extra: dict[str, tuple[str, ...]]) -> None:
    """spec.username/uid/groups/extra come from the authenticated requester, never from the body."""
    spec = csr.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    for k in ("username", "uid", "groups", "extra"):
        spec.pop(k, None)
    if username:
        spec["username"] = username
    if uid:
        spec["uid"] = uid
    if groups:
        spec["groups"] = list(groups)
    if extra:
        spec["extra"] = {k: list(v) for k, v in extra.items()}


class CertificateSigningRequestStrategy(Strategy):
    has_status = True
    name_rule = "path_segment"  # "We don't care what you call your certificate requests."

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        # Users cannot create pre-approved (or pre-issued) requests.
        obj["status"] = {}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        # The main resource changes metadata only: spec is immutable, status has its subresources.
        _keep(new, old, "spec")
        _keep(new, old, "status")

    def prepare_for_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_for_status_update(new, old)
        # /status may set the certificate and Failed; Approved and Denied belong to /approval.
        status = new.setdefault("status", {})
        if not isinstance(status, dict):
            new["status"] = status = {}
        kept = [c for c in conditions(new) if c.get("type") not in _APPROVAL_TYPES]
        kept += [c for c in conditions(old) if c.get("type") in _APPROVAL_TYPES]
        _set_conditions(new, kept)
        _default_conditions(new, old, _utc_now())

    def prepare_for_subresource_update(self, subresource: str, new: dict[str, Any], old: dict[str, Any]) -> None:
        if subresource != "approval":
            super().prepare_for_subresource_update(subresource, new, old)
            return
        # /approval changes the conditions only.
        conds = conditions(new)
        status = {k: v for k, v in as_dict(old.get("status")).items() if k != "conditions"}
        _keep(new, old, "spec")
        new["status"] = status
        _set_conditions(new, conds)
        _default_conditions(new, old, _utc_now())

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_csr(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs = validate_csr(new)
        for t in (APPROVED, DENIED, FAILED):
            if len([c for c in conditions(new) if c.get("type") == t]) < len(
                    [c for c in conditions(old) if c.get("type") == t]):
                errs.append(forbidden_field("status.conditions", f'updates may not remove a condition of type "{t}"'))
        old_cert = certificate_bytes(old)
        if old_cert and certificate_bytes(new) != old_cert:
            errs.append(forbidden_field("status.certificate", "updates may not modify existing certificate content"))
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        spec_def = "io.k8s.api.certificates.v1.CertificateSigningRequestSpec"
        status_def = "io.k8s.api.certificates.v1.CertificateSigningRequestStatus"
        return [
            name_column(),
            age_column(),
            column("SignerName", field_doc(spec_def, "signerName")),
            column("Requestor", field_doc(spec_def, "request")),
            column("RequestedDuration", field_doc(spec_def, "expirationSeconds")),
            column("Condition", field_doc(status_def, "conditions")),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        spec = as_dict(obj.get("spec"))
        exp = spec.get("expirationSeconds")
        duration = human_duration(exp) if isinstance(exp, int) and not isinstance(exp, bool) else "<none>"
        return [as_dict(obj.get("metadata")).get("name", ""), age(obj, now), spec.get("signerName") or "<none>",
                spec.get("username") or "", duration, condition_text(obj)]

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        if field == "spec.signerName":
            return str(as_dict(obj.get("spec")).get("signerName") or "")
        return super().field_value(obj, field)


def _keep(new: dict[str, Any], old: dict[str, Any], key: str) -> None:
    if key in old:
        new[key] = old[key]
    else:
        new.pop(key, None)


def _set_conditions(obj: dict[str, Any], conds: list[dict[str, Any]]) -> None:
    status = obj.setdefault("status", {})
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
