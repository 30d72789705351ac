"""Bootstrap token rules (k8s.io/cluster-bootstrap) and the agent's certificate helpers, without a server."""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubesat.agent import certs
from kubesat.agent.client import Credentials
from kubesat.auth import bootstrap
from kubesat.auth.bootstrap import BootstrapTokenAuthenticator

NOW = 1_800_000_000.0


def _secret(**data: str) -> dict[str, Any]:
    values = {"token-id": "abcdef", "token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true",
              **{k.replace("_", "-"): v for k, v in data.items()}}
    return {"metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system", "uid": "u1"},
            "type": bootstrap.SECRET_TYPE,
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}


@pytest.mark.parametrize("token", ["abcdef.0123456789abcdef", "000000.zzzzzzzzzzzzzzzz"])
def test_parse_token_accepts_the_shape(token: str) -> None:
    assert bootstrap.parse_token(token) == tuple(token.split("."))


@pytest.mark.parametrize("token", [
    "", "abcdef.0123456789abcde", "abcdef.0123456789abcdef0", "ABCDEF.0123456789abcdef", "abcdef:0123456789abcdef",
    "abcde.f0123456789abcdef", "abcdef.0123456789abcde\n", "abcdéf.0123456789abcdef", "a" * 100_000,
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
])
def test_parse_token_refuses_everything_else(token: str) -> None:
    assert bootstrap.parse_token(token) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("2027-01-15T08:00:00Z", datetime.datetime(2027, 1, 15, 8, tzinfo=datetime.UTC)),
    ("2027-01-15T10:30:00+02:30", datetime.datetime(2027, 1, 15, 8, tzinfo=datetime.UTC)),
    ("2027-01-15T03:00:00-05:00", datetime.datetime(2027, 1, 15, 8, tzinfo=datetime.UTC)),
    ("2027-01-15T08:00:00.5Z", datetime.datetime(2027, 1, 15, 8, 0, 0, 500000, tzinfo=datetime.UTC)),
])
def test_rfc3339_as_go_parses_it(text: str, expected: datetime.datetime) -> None:
    assert bootstrap.parse_rfc3339(text) == expected.timestamp()


@pytest.mark.parametrize("text", [
    "2027-01-15 08:00:00Z", "2027-01-15t08:00:00Z", "2027-01-15T08:00:00", "2027-01-15T08:00:00z",
    "2027-01-15T24:00:00Z", "2027-02-30T08:00:00Z", "2027-01-15T08:00:00+24:00", "2027-1-15T08:00:00Z",
    "tomorrow", "", "2027-01-15T08:00:00Z" + " " * 100,
])
def test_rfc3339_refuses_other_forms(text: str) -> None:
    with pytest.raises(ValueError):
        bootstrap.parse_rfc3339(text)


def test_expiration_rules() -> None:
    assert bootstrap.expiration(_secret(), NOW) == (0.0, False)  # none: never expires
    ahead = datetime.datetime.fromtimestamp(NOW + 90, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert bootstrap.expiration(_secret(expiration=ahead), NOW) == (90.0, False)
    assert bootstrap.expiration(_secret(expiration=ahead), NOW + 90) == (0.0, True)  # at the instant: expired
    assert bootstrap.expiration(_secret(expiration="soon"), NOW) == (0.0, True)  # unparseable: expired
    s = _secret()
    s["data"]["expiration"] = "!!not base64!!"
    assert bootstrap.expiration(s, NOW) == (0.0, True)


def test_groups_rules() -> None:
    assert bootstrap.groups(_secret()) == ["system:bootstrappers"]
    assert bootstrap.groups(_secret(auth_extra_groups="system:bootstrappers:b,system:bootstrappers:a,"
                                                      "system:bootstrappers:b")) == \
        ["system:bootstrappers", "system:bootstrappers:a", "system:bootstrappers:b"]
    for bad in ("system:masters", "system:bootstrappers:", "system:bootstrappers:x-", "system:bootstrappers:A",
                "system:bootstrappers:ok,", "system:bootstrappers:" + "a" * 257):
        with pytest.raises(ValueError, match="is invalid"):
            bootstrap.groups(_secret(auth_extra_groups=bad))
    assert bootstrap.groups(_secret(auth_extra_groups="system:bootstrappers:" + "a" * 256))[1].endswith("a")
    huge = ",".join(f"system:bootstrappers:g{i}" for i in range(2000))
    with pytest.raises(ValueError, match="longer than"):
        bootstrap.groups(_secret(auth_extra_groups=huge))


def test_check_secret_reasons() -> None:
    ok = bootstrap.check_secret(_secret(), "abcdef", "0123456789abcdef", NOW)
    assert ok == ["system:bootstrappers"]
    assert bootstrap.check_secret(_secret(), "abcdef", "ffffffffffffffff", NOW) == \
        "has invalid value for key token-secret."
    assert bootstrap.check_secret(_secret(token_id="zzzzzz"), "abcdef", "0123456789abcdef", NOW) == \
        "has invalid value for key token-id."
    assert bootstrap.check_secret(_secret(usage_bootstrap_authentication="True"), "abcdef", "0123456789abcdef",
                                  NOW) == "not marked usage-bootstrap-authentication=true."
    assert bootstrap.check_secret(_secret(expiration="2001-01-01T00:00:00Z"), "abcdef", "0123456789abcdef",
                                  NOW) == "has expired."
    opaque = dict(_secret(), type="Opaque")
    assert bootstrap.check_secret(opaque, "abcdef", "0123456789abcdef", NOW) == \
        "has invalid type, expected bootstrap.kubernetes.io/token."
    deleted = _secret()
    deleted["metadata"]["deletionTimestamp"] = "2027-01-01T00:00:00Z"
    assert bootstrap.check_secret(deleted, "abcdef", "0123456789abcdef", NOW) == "is deleted and awaiting removal"
    long_secret = _secret(token_secret="0123456789abcdef" * 1000)  # over the read bound: no match, no big compare
    assert bootstrap.check_secret(long_secret, "abcdef", "0123456789abcdef", NOW) == \
        "has invalid value for key token-secret."


class _Registry:
    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.reads = 0

    async def get_or_none(self, info: Any, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.objects.get((namespace, name))


def test_the_authenticator_reads_only_bootstrap_shaped_tokens_and_honours_audiences() -> None:
    reg = _Registry({("kube-system", "bootstrap-token-abcdef"): _secret(auth_extra_groups="system:bootstrappers:x")})
    auth = BootstrapTokenAuthenticator(reg, ("https://kubernetes.default.svc",), clock=lambda: NOW)  # type: ignore[arg-type]

    async def go(token: str, audiences: tuple[str, ...] | None = None) -> Any:
        return await auth.authenticate_token(token, audiences)

    res = asyncio.run(go("abcdef.0123456789abcdef"))
    assert res.user.name == "system:bootstrap:abcdef"
    assert res.user.groups == ("system:bootstrappers", "system:bootstrappers:x")
    assert res.audiences == ("https://kubernetes.default.svc",)
    assert asyncio.run(go("abcdef.0123456789abcdef", ("other",))) is None
    assert asyncio.run(go("abcdef.0123456789abcdef", ("other", "https://kubernetes.default.svc"))).audiences == \
        ("https://kubernetes.default.svc",)
    reads = reg.reads
    assert asyncio.run(go("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")) is None
    assert asyncio.run(go("abcdef.0123456789abcdeF")) is None
    assert reg.reads == reads  # no lookup for a token of the wrong shape
    assert asyncio.run(go("abcdef.ffffffffffffffff")) is None
    assert asyncio.run(go("zzzzzz.0123456789abcdef")) is None


def test_token_secret_as_kubeadm_writes_it() -> None:
    token = bootstrap.generate_token()
    assert bootstrap.parse_token(token) is not None
    secret = bootstrap.token_secret(token, 3600, NOW)
    assert secret["metadata"] == {"name": f"bootstrap-token-{token[:6]}", "namespace": "kube-system"}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"token-id": token[:6], "token-secret": token[7:], "usage-bootstrap-authentication": "true",
                    "usage-bootstrap-signing": "true",
                    "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
                    "expiration": datetime.datetime.fromtimestamp(NOW + 3600, datetime.UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ")}
    assert bootstrap.check_secret(secret, token[:6], token[7:], NOW)
    assert "expiration" not in bootstrap.token_secret(token, 0, NOW)["data"]
    assert len({bootstrap.generate_token() for _ in range(50)}) == 50


# ------------------------------------------------------------------------------------- agent certs
def _issue(key_pem: bytes, node: str, days: float = 365, not_before: datetime.datetime | None = None) -> bytes:
    """A certificate for the key, signed by a throwaway CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    key = serialization.load_pem_private_key(key_pem, None)
    cert = (x509.CertificateBuilder().subject_name(certs.node_subject(node))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_csr_subject_and_usages_are_the_kubelets() -> None:
    key = certs.new_key_pem()
    assert key.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    req = x509.load_pem_x509_csr(certs.make_csr(key, "n1"))
    assert req.is_signature_valid
    assert req.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert certs.rotation_usages(key) == ("digital signature", "client auth")
    assert certs.BOOTSTRAP_USAGES == ("digital signature", "key encipherment", "client auth")
    obj = certs.csr_object(certs.make_csr(key, "n1"), certs.EC_USAGES)
    assert obj["metadata"] == {"generateName": "csr-"} and obj["spec"]["signerName"] == certs.SIGNER
    assert "expirationSeconds" not in obj["spec"]


def test_digested_name_is_stable_per_key_subject_and_usages() -> None:
    k1, k2 = certs.new_key_pem(), certs.new_key_pem()
    name = certs.digested_name(k1, "n1", certs.BOOTSTRAP_USAGES)
    assert name == certs.digested_name(k1, "n1", certs.BOOTSTRAP_USAGES)
    assert name.startswith("node-csr-") and len(name) == len("node-csr-") + 43
    assert name != certs.digested_name(k2, "n1", certs.BOOTSTRAP_USAGES)
    assert name != certs.digested_name(k1, "n2", certs.BOOTSTRAP_USAGES)
    assert name != certs.digested_name(k1, "n1", certs.EC_USAGES)


def test_rotation_deadline_is_70_to_90_percent_of_the_validity() -> None:
    key = certs.new_key_pem()
    pair = certs.make_pair(_issue(key, "n1", days=10), key)
    life = pair.not_after - pair.not_before
    assert certs.rotation_deadline(pair, 0.0) == pytest.approx(pair.not_before + 0.7 * life)
    assert certs.rotation_deadline(pair, 0.999999) == pytest.approx(pair.not_before + 0.9 * life, rel=1e-6)


def test_make_pair_checks_the_key_belongs_to_the_certificate() -> None:
    key, other = certs.new_key_pem(), certs.new_key_pem()
    with pytest.raises(certs.CertificateError, match="does not match"):
        certs.make_pair(_issue(key, "n1"), other)
    with pytest.raises(certs.CertificateError, match="no CERTIFICATE"):
        certs.make_pair(b"", key)


def test_the_file_store_keeps_pairs_as_the_kubelet_does(tmp_path: Path) -> None:
    clock = iter([datetime.datetime(2027, 1, 2, 3, 4, 5), datetime.datetime(2027, 1, 2, 3, 4, 6)])
    store = certs.FileStore(tmp_path / "pki", now=lambda: next(clock))
    assert store.current() is None
    key = store.key_for_request()
    assert store.key_for_request() == key  # kept in kubelet-client.key.tmp until used
    assert stat.S_IMODE((tmp_path / "pki" / certs.TMP_KEY).stat().st_mode) == 0o600
    store.update(_issue(key, "n1"), key)
    store.forget_request_key()
    assert os.readlink(store.current_path) == str(tmp_path / "pki" / "kubelet-client-2027-01-02-03-04-05.pem")
    assert stat.S_IMODE(store.current_path.stat().st_mode) == 0o600
    current = store.current()
    assert current is not None and current.key_pem == key
    assert store.key_for_request() == key  # the current pair's key is reused
    key2 = certs.new_key_pem()
    store.update(_issue(key2, "n1"), key2)
    assert os.readlink(store.current_path).endswith("kubelet-client-2027-01-02-03-04-06.pem")
    assert (tmp_path / "pki" / "kubelet-client-2027-01-02-03-04-05.pem").exists()
    assert store.current().key_pem == key2  # type: ignore[union-attr]
    assert sorted(p.name for p in (tmp_path / "pki").iterdir()) == [
        "kubelet-client-2027-01-02-03-04-05.pem", "kubelet-client-2027-01-02-03-04-06.pem",
        "kubelet-client-current.pem"]


def test_kubeconfig_validity_and_the_written_kubeconfig(tmp_path: Path) -> None:
    assert not certs.kubeconfig_valid(tmp_path / "missing", NOW)
    store = certs.FileStore(tmp_path / "pki")
    key = certs.new_key_pem()
    store.update(_issue(key, "n1", days=1), key)
    creds = Credentials("https://127.0.0.1:6443", b"CA", None, None, "abcdef.0123456789abcdef")
    path = tmp_path / "kubelet.kubeconfig"
    certs.write_private(path, certs.kubeconfig_yaml(creds, store.current_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    now = datetime.datetime.now(datetime.UTC).timestamp()
    assert certs.kubeconfig_valid(path, now)
    assert not certs.kubeconfig_valid(path, now + 2 * 86400)  # its certificate has expired by then
    token_only = tmp_path / "token.kubeconfig"
    token_only.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: "
                          "{server: 'https://x'}}]\nusers: [{name: u, user: {token: t}}]\n"
                          "contexts: [{name: c, context: {cluster: k, user: u}}]\n")
    assert not certs.kubeconfig_valid(token_only, now)
    (tmp_path / "junk.kubeconfig").write_text("[")
    assert not certs.kubeconfig_valid(tmp_path / "junk.kubeconfig", now)


def _csr(*conditions: dict[str, str], certificate: str = "", uid: str = "u1") -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conditions)}
    if certificate:
        status["certificate"] = certificate
    return {"metadata": {"name": "c1", "uid": uid}, "status": status}


def test_issued_certificate_reads_the_csr_as_client_go_waits_for_it() -> None:
    assert certs.issued_certificate(_csr(), "u1") is None
    assert certs.issued_certificate(_csr({"type": "Approved"}), "u1") is None  # approved, not yet issued
    assert certs.issued_certificate(_csr({"type": "Approved"}, certificate="Y2VydA=="), "u1") == b"cert"
    with pytest.raises(certs.CertificateError, match=r"^certificate signing request is denied, reason: R, message: M$"):
        certs.issued_certificate(_csr({"type": "Denied", "reason": "R", "message": "M"}), "u1")
    with pytest.raises(certs.CertificateError, match=r"^certificate signing request failed, reason: S, message: T$"):
        certs.issued_certificate(_csr({"type": "Approved"}, {"type": "Failed", "reason": "S", "message": "T"}), "u1")
    with pytest.raises(certs.CertificateError, match="changed UIDs"):
        certs.issued_certificate(_csr(uid="u2"), "u1")
    with pytest.raises(certs.CertificateError, match="larger than"):
        certs.issued_certificate(_csr({"type": "Approved"}, certificate="A" * (certs.MAX_PEM_BYTES * 2)), "u1")


def test_rotation_manages_only_this_nodes_client_certificate(tmp_path: Path) -> None:
    store = certs.FileStore(tmp_path / "pki")
    key = certs.new_key_pem()
    mine = Credentials("https://x", b"", _issue(key, "n1"), key)
    other = Credentials("https://x", b"", _issue(key, "n2"), key)
    token = Credentials("https://x", b"", None, None, "t")
    api: Any = object()
    assert certs.rotator_for(api, mine, store, "n1", lambda: NOW, 1.0) is not None
    assert certs.rotator_for(api, other, store, "n1", lambda: NOW, 1.0) is None
    assert certs.rotator_for(api, token, store, "n1", lambda: NOW, 1.0) is None
    # The store's current pair (this node's, unexpired) wins over the kubeconfig's certificate.
    assert certs.current_credentials(mine, store, "n1", NOW) is mine
    key2 = certs.new_key_pem()
    store.update(_issue(key2, "n1"), key2)
    now = datetime.datetime.now(datetime.UTC).timestamp()
    assert certs.current_credentials(mine, store, "n1", now).key_pem == key2
    assert certs.current_credentials(mine, store, "n2", now) is mine
    assert certs.current_credentials(mine, store, "n1", now + 400 * 86400) is mine  # expired: not used
