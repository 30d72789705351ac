"""Bootstrap tokens against a real server: the authenticator's rules (good token, wrong secret, expired, wrong
usage, extra groups, wrong type or namespace), TokenReview, what a joining node's token may do, the
tokencleaner controller, and `kubesat kubeconfig --bootstrap`."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import Server, wait_for

DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def _rfc3339(seconds_from_now: float) -> str:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds_from_now)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _secret(server: Server, token_id: str, token_secret: str, *, namespace: str = "kube-system",
            type_: str = "bootstrap.kubernetes.io/token", name: str = "", **data: str) -> None:
    string_data = {"token-id": token_id, "token-secret": token_secret, "usage-bootstrap-authentication": "true",
                   **{k.replace("_", "-"): v for k, v in data.items()}}
    string_data = {k: v for k, v in string_data.items() if v is not None and v != "<none>"}
    manifest = {"apiVersion": "v1", "kind": "Secret", "type": type_,
                "metadata": {"name": name or f"bootstrap-token-{token_id}", "namespace": namespace},
                "stringData": string_data}
    server.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _whoami(server: Server, token: str) -> tuple[int, dict[str, Any]]:
    """(status code, userInfo) of a SelfSubjectReview made with `token`."""
    with httpx.Client(verify=ssl.create_default_context(cafile=str(server.ca_file)), timeout=10) as http:
        r = http.post(f"{server.url}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      headers={"Authorization": f"Bearer {token}"},
                      json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    body = r.json()
    return r.status_code, body["status"]["userInfo"] if r.status_code == 201 else body


def test_a_valid_token_authenticates_as_system_bootstrap_id(server: Server) -> None:
    _secret(server, "abc123", "0123456789abcdef", auth_extra_groups=DEFAULT_GROUP, expiration=_rfc3339(3600))
    code, user = _whoami(server, "abc123.0123456789abcdef")
    assert code == 201
    assert user == {"username": "system:bootstrap:abc123",
                    "groups": ["system:bootstrappers", DEFAULT_GROUP, "system:authenticated"]}


def test_extra_groups_are_sorted_and_deduplicated(server: Server) -> None:
    _secret(server, "grp001", "0123456789abcdef",
            auth_extra_groups="system:bootstrappers:z,system:bootstrappers:a-1,system:bootstrappers:z")
    code, user = _whoami(server, "grp001.0123456789abcdef")
    assert code == 201
    assert user["groups"] == ["system:bootstrappers", "system:bootstrappers:a-1", "system:bootstrappers:z",
                              "system:authenticated"]


@pytest.mark.parametrize(("token_id", "token", "data"), [
    ("bad001", "bad001.ffffffffffffffff", {}),  # wrong secret
    ("bad002", "bad002.0123456789abcdef", {"expiration": "2020-01-01T00:00:00Z"}),  # expired
    ("bad003", "bad003.0123456789abcdef", {"expiration": "tomorrow"}),  # unparseable: counts as expired
    ("bad004", "bad004.0123456789abcdef", {"usage_bootstrap_authentication": "false"}),  # wrong usage
    ("bad005", "bad005.0123456789abcdef", {"usage_bootstrap_authentication": "<none>",
                                           "usage_bootstrap_signing": "true"}),  # no authentication usage
    ("bad006", "bad006.0123456789abcdef", {"auth_extra_groups": "system:masters"}),  # not a bootstrap group
    ("bad007", "bad007.0123456789abcdef", {"auth_extra_groups": "system:bootstrappers:ok,system:bootstrappers:"}),
    ("bad008", "bad008.0123456789abcdef", {"token-id": "other1"}),  # token-id does not match the name
], ids=["wrong-secret", "expired", "unparseable-expiration", "usage-false", "usage-missing", "group-not-bootstrap",
        "group-empty-suffix", "token-id-mismatch"])
def test_refused_tokens_are_401(server: Server, token_id: str, token: str, data: dict[str, str]) -> None:
    _secret(server, token_id, "0123456789abcdef", **{k.replace("-", "_"): v for k, v in data.items()
                                                     if k != "token-id"})
    if "token-id" in data:
        _secret(server, data["token-id"], "0123456789abcdef", name=f"bootstrap-token-{token_id}")
    code, body = _whoami(server, token)
    assert code == 401, body
    assert body["message"] == "Unauthorized"
    assert "invalid bearer token" in server.log()


def test_a_secret_of_another_type_or_namespace_does_not_count(server: Server) -> None:
    _secret(server, "typ001", "0123456789abcdef", type_="Opaque")
    _secret(server, "nsp001", "0123456789abcdef", namespace="default")
    assert _whoami(server, "typ001.0123456789abcdef")[0] == 401
    assert _whoami(server, "nsp001.0123456789abcdef")[0] == 401
    assert _whoami(server, "nosuch.0123456789abcdef")[0] == 401  # no Secret at all


def test_token_shape_is_checked_before_any_lookup(server: Server) -> None:
    _secret(server, "shp001", "0123456789abcdef")
    for token in ("SHP001.0123456789abcdef", "shp001.0123456789ABCDEF", "shp001-0123456789abcdef",
                  "shp001.0123456789abcdef0", "shp001.0123456789abcde", "x" * 10000):
        assert _whoami(server, token)[0] == 401, token
    assert _whoami(server, "shp001.0123456789abcdef")[0] == 201


def test_a_deleted_secret_revokes_the_token_at_once(server: Server) -> None:
    _secret(server, "del001", "0123456789abcdef")
    assert _whoami(server, "del001.0123456789abcdef")[0] == 201
    server.kubectl("delete", "secret", "-n", "kube-system", "bootstrap-token-del001")
    assert _whoami(server, "del001.0123456789abcdef")[0] == 401


def test_token_review_answers_for_the_api_audiences(server: Server) -> None:
    _secret(server, "rev001", "0123456789abcdef", auth_extra_groups=DEFAULT_GROUP)

    def review(**spec: Any) -> dict[str, Any]:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": "rev001.0123456789abcdef", **spec}}
        out = server.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(body)).stdout
        return json.loads(out)["status"]  # type: ignore[no-any-return]

    status = review()
    assert status["authenticated"] is True
    assert status["user"]["username"] == "system:bootstrap:rev001"
    assert status["user"]["groups"] == ["system:bootstrappers", DEFAULT_GROUP, "system:authenticated"]
    assert review(audiences=["some-other-audience"]).get("authenticated") in (None, False)


def test_the_default_node_token_may_request_node_certificates_and_nothing_else(server: Server,
                                                                               tmp_path: Path) -> None:
    _secret(server, "can001", "0123456789abcdef", auth_extra_groups=DEFAULT_GROUP)
    _secret(server, "can002", "0123456789abcdef")  # no extra group: kubeadm's bindings do not apply

    def can_i(token: str, *args: str) -> str:
        res = server.kubectl("auth", "can-i", *args, check=False, kubeconfig=_token_kubeconfig(server, tmp_path, token))
        return res.stdout.strip()

    assert can_i("can001.0123456789abcdef", "create", "certificatesigningrequests.certificates.k8s.io") == "yes"
    assert can_i("can001.0123456789abcdef", "create",
                 "certificatesigningrequests.certificates.k8s.io", "--subresource", "nodeclient") == "yes"
    assert can_i("can001.0123456789abcdef", "list", "secrets", "-n", "kube-system") == "no"
    assert can_i("can002.0123456789abcdef", "create", "certificatesigningrequests.certificates.k8s.io") == "no"
    bindings = json.loads(server.kubectl("get", "clusterrolebindings", "-o", "json").stdout)["items"]
    by_name = {b["metadata"]["name"]: b for b in bindings}
    for name, role in (("kubeadm:kubelet-bootstrap", "system:node-bootstrapper"),
                       ("kubeadm:node-autoapprove-bootstrap",
                        "system:certificates.k8s.io:certificatesigningrequests:nodeclient")):
        assert by_name[name]["roleRef"]["name"] == role
        assert by_name[name]["subjects"] == [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                                              "name": DEFAULT_GROUP}]


def _token_kubeconfig(server: Server, tmp_path: Path, token: str) -> str:
    """A kubeconfig with the token as the only credential (kubectl's --token would keep the admin certificate,
    which the server would take first)."""
    path = tmp_path / f"{token.split('.')[0]}.kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {
            "server": server.url,
            "certificate-authority-data": base64.b64encode(server.ca_file.read_bytes()).decode()}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    return str(path)


def _exists(server: Server, name: str, namespace: str = "kube-system") -> bool:
    return server.kubectl("get", "secret", "-n", namespace, name, check=False).returncode == 0


def test_the_token_cleaner_deletes_expired_bootstrap_secrets(server: Server) -> None:
    _secret(server, "cln001", "0123456789abcdef", expiration="2020-01-01T00:00:00Z")
    _secret(server, "cln002", "0123456789abcdef", expiration="not-a-time")
    _secret(server, "cln003", "0123456789abcdef", expiration=_rfc3339(10))
    _secret(server, "cln004", "0123456789abcdef", expiration=_rfc3339(3600))
    _secret(server, "cln005", "0123456789abcdef")  # no expiration: kept for ever
    _secret(server, "cln006", "0123456789abcdef", type_="Opaque", expiration="2020-01-01T00:00:00Z")
    _secret(server, "cln007", "0123456789abcdef", namespace="default", expiration="2020-01-01T00:00:00Z")
    wait_for(lambda: not _exists(server, "bootstrap-token-cln001"), 10, "the expired Secret deleted")
    wait_for(lambda: not _exists(server, "bootstrap-token-cln002"), 10, "the unparseable Secret deleted")
    assert _exists(server, "bootstrap-token-cln003")
    assert _whoami(server, "cln003.0123456789abcdef")[0] == 201
    wait_for(lambda: not _exists(server, "bootstrap-token-cln003"), 25, "the Secret deleted once it expired")
    for name, ns in (("bootstrap-token-cln004", "kube-system"), ("bootstrap-token-cln005", "kube-system"),
                     ("bootstrap-token-cln006", "kube-system"), ("bootstrap-token-cln007", "default")):
        assert _exists(server, name, ns), name


def test_an_expiration_moved_forward_is_honoured(server: Server) -> None:
    _secret(server, "cln010", "0123456789abcdef", expiration=_rfc3339(3))
    _secret(server, "cln010", "0123456789abcdef", expiration=_rfc3339(3600))  # extended before it expired
    time.sleep(5)
    assert _exists(server, "bootstrap-token-cln010")
    assert _whoami(server, "cln010.0123456789abcdef")[0] == 201


def _bootstrap_kubeconfig(server: Server, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--bootstrap", "--data-dir",
                          str(server.data_dir), *args], capture_output=True, check=True, text=True).stdout
    return yaml.safe_load(out)  # type: ignore[no-any-return]


def test_kubesat_kubeconfig_bootstrap_creates_a_kubeadm_token(server: Server, tmp_path: Path) -> None:
    doc = _bootstrap_kubeconfig(server)
    token = doc["users"][0]["user"]["token"]
    assert doc["clusters"][0]["cluster"]["server"] == server.url
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == \
        server.ca_file.read_bytes()
    token_id, token_secret = token.split(".")
    assert len(token_id) == 6 and len(token_secret) == 16
    secret = json.loads(server.kubectl("get", "secret", "-n", "kube-system", f"bootstrap-token-{token_id}",
                                       "-o", "json").stdout)
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    expires = datetime.datetime.fromisoformat(data.pop("expiration"))
    left = (expires - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 24 * 3600 - 60 < left <= 24 * 3600
    assert data == {"token-id": token_id, "token-secret": token_secret, "usage-bootstrap-authentication": "true",
                    "usage-bootstrap-signing": "true", "auth-extra-groups": DEFAULT_GROUP}
    path = tmp_path / "bootstrap.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    who = json.loads(server.kubectl("auth", "whoami", "-o", "json", kubeconfig=str(path)).stdout)
    assert who["status"]["userInfo"]["username"] == f"system:bootstrap:{token_id}"

    forever = _bootstrap_kubeconfig(server, "--ttl", "0")["users"][0]["user"]["token"]
    secret = json.loads(server.kubectl("get", "secret", "-n", "kube-system",
                                       f"bootstrap-token-{forever.split('.')[0]}", "-o", "json").stdout)
    assert "expiration" not in secret["data"]
    short = _bootstrap_kubeconfig(server, "--ttl", "90m")["users"][0]["user"]["token"]
    secret = json.loads(server.kubectl("get", "secret", "-n", "kube-system",
                                       f"bootstrap-token-{short.split('.')[0]}", "-o", "json").stdout)
    expires = datetime.datetime.fromisoformat(base64.b64decode(secret["data"]["expiration"]).decode())
    assert abs((expires - datetime.datetime.now(datetime.UTC)).total_seconds() - 5400) < 60


def test_kubesat_kubeconfig_needs_node_or_bootstrap(server: Server) -> None:
    for args in ([], ["--node", "n1", "--bootstrap"]):
        res = subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--data-dir", str(server.data_dir),
                              *args], capture_output=True, text=True)
        assert res.returncode == 1
        assert res.stderr.strip() == "kubesat: error: give either --node NAME or --bootstrap"
