"""Small hardening against the real server: no forged log lines, private store files, and the
Authorization header read exactly as Kubernetes reads it (token form, first of several headers)."""

from __future__ import annotations

import http.client
import json
import ssl
import stat
from pathlib import Path

import pytest
import requests

from .conftest import Server, start_server, wait_for

pytestmark = pytest.mark.integration

REVIEW_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
SA_USER = "system:serviceaccount:hyg:app"


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    server.kubectl("create", "namespace", "hyg")
    server.kubectl("create", "serviceaccount", "app", "-n", "hyg")
    return server.kubectl("create", "token", "app", "-n", "hyg").stdout.strip()


def admin_cert(server: Server) -> tuple[str, str]:
    pki = server.data_dir / "pki"
    return str(pki / "admin.crt"), str(pki / "admin.key")


def who(server: Server, authorization: str, cert: tuple[str, str] | None = None) -> tuple[int, str]:
    """POST a SelfSubjectReview: (status, the user it names, or the message of a refusal)."""
    r = requests.post(server.url + REVIEW_PATH, json=REVIEW, headers={"Authorization": authorization},
                      cert=cert, verify=str(server.ca_file), timeout=10)
    body = r.json()
    if r.status_code == 201:
        return 201, body["status"]["userInfo"]["username"]
    return r.status_code, body.get("message", "")


def test_control_characters_in_a_path_forge_no_log_line(server: Server) -> None:
    marker = "2024-01-01 00:00:00,000 WARNING kubesat: FORGED"
    quoted = marker.replace(" ", "%20")
    path = f"/api/v1/namespaces/x%0a{quoted}-LF%0d{quoted}-CR%e2%80%a8{quoted}-LS%1b[2J%c2%85{quoted}-NEL/pods"
    r = requests.get(server.url + path, headers={"Authorization": "Bearer not-a-token"},
                     verify=str(server.ca_file), timeout=10)
    assert r.status_code == 401
    # The 401's reason is logged with the request's path: as one line, with the controls escaped.
    line = wait_for(lambda: next((ln for ln in server.log().split("\n") if f"{marker}-LF" in ln), None),
                    what="the authentication failure in the server log")
    assert "/api/v1/namespaces/x\\n" + marker + "-LF\\r" + marker + "-CR\\u2028" + marker + "-LS\\x1b[2J\\x85" in line
    log = server.log()
    assert not [ln for ln in log.splitlines() if ln.startswith(marker)]  # splitlines: \r, \x85, U+2028 too
    assert not set("\r\x1b\x85\u2028\u2029") & set(log)


def test_store_files_are_0600(server: Server, token: str) -> None:
    files = sorted(p for p in server.data_dir.iterdir() if p.name.startswith("kubesat.db"))
    assert {p.name for p in files} >= {"kubesat.db", "kubesat.db-wal"}  # the WAL is there while it serves
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_bearer_header_forms_as_in_kubernetes(server: Server, token: str) -> None:
    assert who(server, f"Bearer {token}") == (201, SA_USER)
    assert who(server, f"Bearer {token} ") == (201, SA_USER)  # trimmed
    assert who(server, f"bearer {token} ignored-field") == (201, SA_USER)  # the second field is the token
    # Two spaces: the token field is empty, so no bearer credential: anonymous, or the client certificate.
    status, message = who(server, f"Bearer  {token}")
    assert status == 403 and 'User "system:anonymous"' in message, message
    assert who(server, f"Bearer  {token}", cert=admin_cert(server)) == (201, "kubernetes-admin")
    assert who(server, "Bearer not-a-token")[0] == 401


def raw_review(server: Server, authorizations: list[str]) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    try:
        body = json.dumps(REVIEW).encode()
        conn.putrequest("POST", REVIEW_PATH)
        for value in authorizations:
            conn.putheader("Authorization", value)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        res = conn.getresponse()
        return res.status, json.loads(res.read())
    finally:
        conn.close()


def test_the_first_of_two_authorization_headers_counts(server: Server, token: str) -> None:
    status, body = raw_review(server, [f"Bearer {token}", "Bearer not-a-token"])
    assert status == 201 and body["status"]["userInfo"]["username"] == SA_USER, body
    status, body = raw_review(server, ["Bearer not-a-token", f"Bearer {token}"])
    assert status == 401, body
    status, body = raw_review(server, [f"Bearer  {token}", f"Bearer {token}"])  # the first holds no token
    assert status == 403 and 'User "system:anonymous"' in body["message"], body


def test_no_bearer_token_without_anonymous_is_401(tmp_path: Path, server: Server, token: str) -> None:
    # The token is the module server's: a second server has other keys, so only the header's form matters here.
    other = start_server(tmp_path / "data", extra=["--anonymous-auth", "false"])
    try:
        for authorization in (f"Bearer  {token}", "Bearer", "Basic YTpi"):
            assert who(other, authorization)[0] == 401, authorization
        assert who(other, f"Bearer  {token}", cert=admin_cert(other)) == (201, "kubernetes-admin")
    finally:
        other.stop()
