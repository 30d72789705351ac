"""Audit log: Kubernetes' audit.k8s.io/v1 Event shape, file handling, secret scrubbing, the default policy."""

from __future__ import annotations

import json
import math
import os
import random
import stat
from datetime import datetime, UTC
from urllib.parse import parse_qs

import pytest

from kubesat import audit
from kubesat.api.app import TLS_PEER_DER, Request
from kubesat.api.requestinfo import parse
from kubesat.auth.user import UserInfo, with_authenticated_group
from kubesat.registry.store import rfc3339

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpib3QifQ.c2lnbmF0dXJl"
SA_USER = with_authenticated_group(UserInfo(
    "system:serviceaccount:default:bot", "6d9f4c1e-0000-4000-8000-000000000001",
    ("system:serviceaccounts", "system:serviceaccounts:default"),
    {"authentication.kubernetes.io/credential-id": ("JTI=abc-123",)},
))
X509_USER = with_authenticated_group(UserInfo("alice", "", ("dev",),
                                              {"authentication.kubernetes.io/credential-id": ("X509SHA256=ff",)}))

# Field names of audit.k8s.io/v1 Event, ObjectReference, authentication/v1 UserInfo and meta/v1 Status.
EVENT_FIELDS = {"kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user", "impersonatedUser",
                "sourceIPs", "userAgent", "objectRef", "responseStatus", "requestObject", "responseObject",
                "requestReceivedTimestamp", "stageTimestamp", "annotations"}
OBJECT_REF_FIELDS = {"resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion",
                     "subresource"}
USER_FIELDS = {"username", "uid", "groups", "extra"}
STATUS_FIELDS = {"kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"}


def make_request(method: str, target: str, *, user: UserInfo | None = None, headers: dict | None = None,
                 body: bytes = b"", annotations: dict | None = None, client=("10.0.0.7", 51234),
                 scope_extra: dict | None = None) -> Request:
    path, _, qs = target.partition("?")
    query = parse_qs(qs, keep_blank_values=True) if qs else {}
    watch = (query.get("watch") or [""])[0].lower() in ("1", "true")
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": qs.encode(), "client": client, "headers": []}
    scope.update(scope_extra or {})
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    req = Request(scope, method, path, query, hdrs, parse(method, path, watch), body=body, user=user)
    req.audit.update(annotations or {})
    return req


def bearer_request(method: str, target: str, **kw) -> Request:
    kw.setdefault("user", SA_USER)
    headers = {"Authorization": f"Bearer {TOKEN}", "User-Agent": "kubectl/v1.31.0 (linux/amd64)"}
    headers.update(kw.pop("headers", {}))
    annotations = {"authentication.kubernetes.io/credential-id": "JTI=abc-123"}
    annotations.update(kw.pop("annotations", {}))
    return make_request(method, target, headers=headers, annotations=annotations, **kw)


def parse_micro_time(text: str) -> datetime:
    assert text.endswith("Z") and len(text.split(".")[1]) == 7, text  # six digits + Z
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


class TestEventShape:
    def test_get_by_service_account(self):
        req = bearer_request("GET", "/api/v1/namespaces/default/configmaps/cfg")
        ev = audit.event_for_request(req, 200, 1700000000.123456, 1700000000.223457)
        assert set(ev) <= EVENT_FIELDS
        assert list(ev)[:8] == ["kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user"]
        assert ev["kind"] == "Event" and ev["apiVersion"] == "audit.k8s.io/v1"
        assert ev["level"] == "Metadata" and ev["stage"] == "ResponseComplete"
        assert len(ev["auditID"]) == 36 and ev["auditID"].count("-") == 4
        assert ev["requestURI"] == "/api/v1/namespaces/default/configmaps/cfg"
        assert ev["verb"] == "get"
        assert set(ev["user"]) <= USER_FIELDS
        assert ev["user"]["username"] == "system:serviceaccount:default:bot"
        assert ev["user"]["uid"] == "6d9f4c1e-0000-4000-8000-000000000001"
        assert ev["user"]["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default",
                                        "system:authenticated"]
        assert ev["user"]["extra"] == {"authentication.kubernetes.io/credential-id": ["JTI=abc-123"]}
        assert ev["sourceIPs"] == ["10.0.0.7"]
        assert ev["userAgent"] == "kubectl/v1.31.0 (linux/amd64)"
        assert ev["objectRef"] == {"resource": "configmaps", "namespace": "default", "name": "cfg",
                                   "apiVersion": "v1"}
        assert set(ev["objectRef"]) <= OBJECT_REF_FIELDS
        assert ev["responseStatus"] == {"metadata": {}, "code": 200}
        assert ev["requestReceivedTimestamp"] == "2023-11-14T22:13:20.123456Z"
        assert ev["stageTimestamp"] == "2023-11-14T22:13:20.223457Z"
        parse_micro_time(ev["stageTimestamp"])
        assert ev["annotations"] == {"authentication.kubernetes.io/credential-id": "JTI=abc-123"}
        assert "impersonatedUser" not in ev
        json.dumps(ev)  # plain JSON types only

    def test_token_request_object_ref_and_annotations(self):
        tr = json.dumps({"serviceAccount": "default/bot", "audiences": ["api"], "expirationSeconds": 3600,
                         "expirationTimestamp": "2030-01-01T00:00:00Z", "jti": "j-1", "boundObject": "Pod/p"},
                        separators=(",", ":"))
        req = bearer_request("POST", "/api/v1/namespaces/default/serviceaccounts/bot/token",
                             annotations={"authentication.kubernetes.io/issued-credential-id": "JTI=j-1",
                                          "kubesat.io/token-request": tr})
        ev = audit.event_for_request(req, 201, 1.0, 2.0)
        assert ev["verb"] == "create"
        assert ev["objectRef"] == {"resource": "serviceaccounts", "namespace": "default", "name": "bot",
                                   "apiVersion": "v1", "subresource": "token"}
        assert ev["annotations"]["authentication.kubernetes.io/issued-credential-id"] == "JTI=j-1"
        assert json.loads(ev["annotations"]["kubesat.io/token-request"])["jti"] == "j-1"
        assert ev["responseStatus"] == {"metadata": {}, "code": 201}

    def test_every_annotation_is_copied_as_string(self):
        keys = {
            "authentication.k8s.io/legacy-token": "system:serviceaccount:default:old",
            "authentication.k8s.io/stale-token":
                "subject: system:serviceaccount:a:b, seconds after warning threshold: 7",
            "authentication.k8s.io/legacy-token-autogenerated-secret": "old-token-x",
            "authentication.k8s.io/legacy-token-manual-secret": "manual",
            "authentication.k8s.io/legacy-token-invalidated": "old-token-x/default",
            "kubesat.io/custom": 5,
        }
        req = bearer_request("GET", "/api/v1/namespaces", annotations=keys)
        ev = audit.event_for_request(req, 200, 1.0, 2.0)
        for k, v in keys.items():
            assert ev["annotations"][k] == str(v)

    def test_create_takes_name_from_body_and_cluster_scoped_group(self):
        body = json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                           "metadata": {"name": "reader"}}).encode()
        req = make_request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", user=X509_USER, body=body)
        ev = audit.event_for_request(req, 201, 1.0, 2.0)
        assert ev["objectRef"] == {"resource": "clusterroles", "name": "reader",
                                   "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"}
        assert "annotations" not in ev  # omitempty, as in Kubernetes

    def test_list_and_non_resource(self):
        ev = audit.event_for_request(make_request("GET", "/api/v1/namespaces/ns/pods", user=X509_USER), 200, 1, 2)
        assert ev["verb"] == "list" and ev["objectRef"] == {"resource": "pods", "namespace": "ns", "apiVersion": "v1"}
        ev = audit.event_for_request(make_request("GET", "/healthz", user=X509_USER), 200, 1, 2)
        assert ev["verb"] == "get" and "objectRef" not in ev

    def test_failure_status(self):
        req = bearer_request("DELETE", "/api/v1/namespaces/default/secrets/s")
        ev = audit.event_for_request(req, 403, 1, 2)
        assert ev["responseStatus"] == {"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403}
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": 'secrets "s" is forbidden: nope', "reason": "Forbidden",
                  "details": {"name": "s", "kind": "secrets"}, "code": 403}
        ev = audit.event_for_request(req, 403, 1, 2, status_object=status)
        assert set(ev["responseStatus"]) <= STATUS_FIELDS
        assert ev["responseStatus"] == {"metadata": {}, "status": "Failure",
                                        "message": 'secrets "s" is forbidden: nope', "reason": "Forbidden",
                                        "details": {"name": "s", "kind": "secrets"}, "code": 403}
        req.scope[audit.RESPONSE_STATUS_KEY] = status
        assert audit.event_for_request(req, 403, 1, 2)["responseStatus"]["message"].endswith("nope")

    def test_failed_authentication_like_kubernetes(self):
        req = make_request("GET", "/api/v1/namespaces/default/pods",
                           headers={"Authorization": f"Bearer {TOKEN}"},
                           annotations={"kubesat.io/authentication-failure":
                                        "[invalid bearer token, service account token has expired]"})
        ev = audit.event_for_request(req, 401, 1, 2)
        assert ev["user"] == {}
        assert ev["stage"] == "ResponseStarted"
        assert ev["responseStatus"] == {"metadata": {}, "message": "Authentication failed, attempted: bearer",
                                        "code": 401}
        assert ev["annotations"]["kubesat.io/authentication-failure"].endswith("has expired]")
        req = make_request("GET", "/api", scope_extra={TLS_PEER_DER: b"\x30"})
        assert audit.event_for_request(req, 401, 1, 2)["responseStatus"]["message"] == \
            "Authentication failed, attempted: x509"
        req = make_request("GET", "/api")
        assert audit.event_for_request(req, 401, 1, 2)["responseStatus"]["message"] == \
            "Authentication failed, no credentials provided"

    def test_source_ips_order(self):
        req = make_request("GET", "/api", user=X509_USER, client=("192.168.1.1", 1),
                           headers={"X-Forwarded-For": "1.2.3.4, junk, 5.6.7.8", "X-Real-Ip": "9.9.9.9"})
        assert audit.source_ips(req) == ["1.2.3.4", "5.6.7.8", "9.9.9.9", "192.168.1.1"]
        req = make_request("GET", "/api", user=X509_USER, client=("5.6.7.8", 1),
                           headers={"X-Forwarded-For": "1.2.3.4,5.6.7.8", "X-Real-Ip": "1.2.3.4"})
        assert audit.source_ips(req) == ["1.2.3.4", "5.6.7.8"]

    def test_audit_id_header_and_reuse(self):
        req = make_request("GET", "/api", user=X509_USER, headers={"Audit-ID": "client-chosen-1"})
        assert audit.event_for_request(req, 200, 1, 2)["auditID"] == "client-chosen-1"
        req = make_request("GET", "/api", user=X509_USER, headers={"Audit-ID": "bad id with spaces\n"})
        first = audit.event_for_request(req, 200, 1, 2)["auditID"]
        assert first != "bad id with spaces" and audit.event_for_request(req, 200, 1, 2)["auditID"] == first

    def test_impersonated_user_when_present(self):
        bob = UserInfo("bob", groups=("system:authenticated",))
        # The impersonator kept the original user in the scope: full UserInfo for both.
        req = bearer_request("GET", "/api/v1/namespaces/default/pods/p", user=bob,
                             annotations={"kubesat.io/impersonated-by": SA_USER.name},
                             scope_extra={audit.AUTHENTICATED_USER_KEY: SA_USER})
        ev = audit.event_for_request(req, 200, 1, 2)
        assert ev["user"]["username"] == SA_USER.name and ev["user"]["uid"] == SA_USER.uid
        assert ev["impersonatedUser"] == {"username": "bob", "groups": ["system:authenticated"]}
        assert list(ev).index("impersonatedUser") == list(ev).index("user") + 1
        assert ev["annotations"]["kubesat.io/impersonated-by"] == SA_USER.name
        # Only the annotation: the impersonator's name is still the event's user.
        req = make_request("GET", "/api/v1/namespaces/default/pods/p", user=bob,
                           annotations={"kubesat.io/impersonated-by": "alice"})
        ev = audit.event_for_request(req, 200, 1, 2)
        assert ev["user"] == {"username": "alice"} and ev["impersonatedUser"]["username"] == "bob"
        assert audit.should_audit(req, 200)  # impersonated requests are always logged
        # An explicit attribute on the request also works.
        req = bearer_request("GET", "/api/v1/namespaces/default/pods/p")
        req.impersonated_user = bob  # type: ignore[attr-defined]
        ev = audit.event_for_request(req, 200, 1, 2)
        assert ev["user"]["username"] == SA_USER.name and ev["impersonatedUser"]["username"] == "bob"
        # No impersonation: no field.
        assert "impersonatedUser" not in audit.event_for_request(bearer_request("GET", "/api"), 200, 1, 2)


class TestScrubbing:
    def test_token_never_written(self, tmp_path):
        path = tmp_path / "audit.log"
        logger = audit.AuditLogger(str(path))
        targets = [
            f"/api/v1/namespaces/default/pods?watch=true&token={TOKEN}&limit=5",
            f"/api/v1/namespaces/default/pods?access_token={TOKEN}",
            f"/apis/authentication.k8s.io/v1/tokenreviews?id_token={TOKEN}",
        ]
        for target in targets:
            req = bearer_request("GET" if "pods" in target else "POST", target,
                                 body=json.dumps({"spec": {"token": TOKEN}}).encode(),
                                 headers={"User-Agent": f"evil/{TOKEN}"},
                                 annotations={"kubesat.io/authentication-failure": f"bad token {TOKEN}"})
            logger.observe(req, 200, 0.01)
        # A failed authentication too: the presented token is in the header only.
        logger.observe(make_request("GET", f"/api?token={TOKEN}", headers={"Authorization": f"Bearer {TOKEN}"}),
                       401, 0.001)
        logger.close()
        text = path.read_text()
        assert text.count("\n") == 4
        assert TOKEN not in text
        assert TOKEN[:40] not in text and TOKEN[-20:] not in text
        first = json.loads(text.splitlines()[0])
        assert first["requestURI"] == "/api/v1/namespaces/default/pods?watch=true&token=REDACTED&limit=5"
        assert first["userAgent"] == "evil/REDACTED"
        assert "requestObject" not in first and "Authorization" not in text and "authorization" not in text

    def test_scrub_query_keeps_other_parameters_byte_for_byte(self):
        assert audit._scrub_query("a=1&b=%2Fx") == "a=1&b=%2Fx"
        assert audit._scrub_query("Token=abc&x=y") == "Token=REDACTED&x=y"
        assert audit._scrub_query("x=1&my%5Ftoken=s&token") == "x=1&my%5Ftoken=REDACTED&token"


class TestLogger:
    def test_file_is_0600_json_lines(self, tmp_path):
        path = tmp_path / "sub" / "audit.log"
        logger = audit.AuditLogger(str(path), clock=lambda: 1700000000.5)
        assert logger.enabled
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        logger.observe(bearer_request("GET", "/api/v1/namespaces/default/pods/p"), 200, 0.25)
        logger.observe(make_request("GET", "/api/v1/namespaces/default/pods/p", user=X509_USER), 200, 0.1)  # skipped
        logger.log({"kind": "Event", "x": 1})
        logger.close()
        lines = path.read_text().splitlines()
        assert len(lines) == 2
        ev = json.loads(lines[0])
        assert ev["stageTimestamp"] == "2023-11-14T22:13:20.500000Z"
        assert ev["requestReceivedTimestamp"] == "2023-11-14T22:13:20.250000Z"

    def test_existing_file_tightened_and_appended(self, tmp_path):
        path = tmp_path / "audit.log"
        path.write_text("old\n")
        os.chmod(path, 0o644)
        logger = audit.AuditLogger(str(path))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        logger.log({"a": 1})
        logger.close()
        assert path.read_text() == 'old\n{"a":1}\n'

    def test_disabled_logger(self, tmp_path):
        logger = audit.AuditLogger(None)
        assert not logger.enabled
        logger.log({"a": 1})
        logger.observe(bearer_request("DELETE", "/api/v1/namespaces/x"), 200, 0.1)
        logger.close()
        assert list(tmp_path.iterdir()) == []

    def test_write_failure_logged_once_and_never_raises(self, tmp_path, caplog):
        logger = audit.AuditLogger(str(tmp_path / "audit.log"))
        os.close(logger._fd)  # simulate a broken file descriptor
        r, w = os.pipe()
        os.close(w)
        logger._fd = r  # a read-only descriptor: writes fail with EBADF
        with caplog.at_level("ERROR", logger="kubesat.audit"):
            for _ in range(3):
                logger.observe(bearer_request("DELETE", "/api/v1/namespaces/x"), 200, 0.1)
        assert len([r for r in caplog.records if "audit log" in r.getMessage()]) == 1
        os.close(r)
        logger._fd = None

    def test_observe_swallows_errors(self, tmp_path):
        logger = audit.AuditLogger(str(tmp_path / "audit.log"))
        logger.observe(object(), 200, 0.1)  # not a Request at all
        logger.close()


class TestPolicy:
    @pytest.mark.parametrize("req,status,expected", [
        # bearer-authenticated reads are logged
        (lambda: bearer_request("GET", "/api/v1/namespaces/default/pods"), 200, True),
        # a bound token without jti: no credential-id annotation, still a bearer request
        (lambda: make_request("GET", "/api/v1/pods", user=SA_USER, headers={"Authorization": f"Bearer {TOKEN}"}),
         200, True),
        # legacy token annotation alone
        (lambda: make_request("GET", "/api/v1/pods", user=SA_USER,
                              annotations={"authentication.k8s.io/legacy-token": "system:serviceaccount:a:b"}),
         200, True),
        # every 401
        (lambda: make_request("GET", "/api/v1/pods"), 401, True),
        (lambda: make_request("GET", "/healthz"), 401, True),
        # x509 reads are not logged
        (lambda: make_request("GET", "/api/v1/namespaces/default/pods/p", user=X509_USER), 200, False),
        (lambda: make_request("GET", "/api/v1/pods?watch=1", user=X509_USER), 200, False),
        (lambda: make_request("GET", "/openid/v1/jwks", user=X509_USER), 200, False),
        (lambda: make_request("GET", "/healthz", user=UserInfo("system:anonymous")), 200, False),
        (lambda: make_request("GET", "/api/v1/namespaces/default/pods/p", user=X509_USER), 403, False),
        # writes by anyone
        (lambda: make_request("POST", "/api/v1/namespaces/default/configmaps", user=X509_USER), 201, True),
        (lambda: make_request("PUT", "/api/v1/namespaces/default/configmaps/c", user=X509_USER), 200, True),
        (lambda: make_request("PATCH", "/api/v1/namespaces/default/configmaps/c", user=X509_USER), 200, True),
        (lambda: make_request("DELETE", "/api/v1/namespaces/default/configmaps/c", user=X509_USER), 200, True),
        (lambda: make_request("DELETE", "/api/v1/namespaces/default/configmaps", user=X509_USER), 200, True),
        (lambda: make_request("POST", "/api/v1/namespaces/default/configmaps", user=X509_USER), 403, True),
        # TokenRequest and TokenReview always
        (lambda: make_request("POST", "/api/v1/namespaces/default/serviceaccounts/bot/token", user=X509_USER),
         201, True),
        (lambda: make_request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", user=X509_USER), 201, True),
    ])
    def test_should_audit(self, req, status, expected):
        assert audit.should_audit(req(), status) is expected


def test_micro_time():
    assert audit.micro_time(0) == "1970-01-01T00:00:00.000000Z"
    assert audit.micro_time(1700000000.000001) == "2023-11-14T22:13:20.000001Z"


def test_micro_time_matches_datetime_rounding():
    rng = random.Random(7)
    stamps = [rng.uniform(0, 4e9) for _ in range(20000)]
    stamps += [math.floor(t) + 0.9999996 for t in stamps[:500]] + [1.0000005, 2.9999995, 1700000000.5]
    for t in stamps:
        want = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert audit.micro_time(t) == want, t


def test_rfc3339_matches_datetime_and_survives_its_cache():
    rng = random.Random(11)
    stamps = [0, 0.999, 1.0, 1700000000.99, 1700000000.0, 1699999999.5]
    stamps += [rng.uniform(0, 4e9) for _ in range(5000)]
    for t in stamps + stamps[::-1]:  # repeated seconds hit the cache, changes refresh it
        assert rfc3339(t) == datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), t


def test_an_event_is_one_line_for_every_line_reader(tmp_path):
    # orjson escapes C0 itself; U+0085, U+2028 and U+2029 end a line for str.splitlines too.
    value = "/x\nFORGED\rFORGED\x1b\x85FORGED\u2028FORGED\u2029FORGED\x7f\x9b"
    event = {"requestURI": value, "annotations": {value: value}}
    logger = audit.AuditLogger(str(tmp_path / "audit.log"))
    logger.log(event)
    logger.log(event)
    logger.close()
    text = (tmp_path / "audit.log").read_text()
    lines = text.splitlines()
    assert len(lines) == 2 and text.count("\n") == 2, lines
    assert [json.loads(line) for line in lines] == [event, event]


def test_logger_lines_are_event_for_request_byte_for_byte(tmp_path):
    # AuditLogger serialises each user once and embeds that JSON; the lines must be what
    # json_line(event_for_request(...)) writes, for every shape of event.
    bob = UserInfo("bob", groups=("system:authenticated",), extra={"k": ("v\u2028",)})
    cases = [
        (bearer_request("GET", "/api/v1/namespaces/default/pods/p"), 200),
        (bearer_request("GET", "/api/v1/namespaces/default/pods/p"), 200),  # the same user again
        (bearer_request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                        body=json.dumps({"spec": {"token": TOKEN}}).encode()), 201),
        (bearer_request("GET", "/api/v1/namespaces/default/pods/p", user=bob,
                        annotations={"kubesat.io/impersonated-by": SA_USER.name},
                        scope_extra={audit.AUTHENTICATED_USER_KEY: SA_USER}), 200),
        (bearer_request("GET", "/api/v1/pods", user=bob, annotations={"kubesat.io/impersonated-by": "x"}), 200),
        (make_request("GET", f"/api?token={TOKEN}", headers={"Authorization": f"Bearer {TOKEN}"}), 401),
        (make_request("POST", "/api/v1/namespaces/default/configmaps", user=X509_USER,
                      body=b'{"metadata":{"name":"c\\u00e9"}}'), 201),
    ]
    clock = iter(range(1700000000, 1700000100))
    path = tmp_path / "audit.log"
    logger = audit.AuditLogger(str(path), clock=lambda: float(next(clock)) + 0.5)
    want = []
    for req, status in cases:
        logger.observe(req, status, 0.25)
        done = 1700000000.5 + len(want)
        want.append(audit.json_line(audit.event_for_request(req, status, done - 0.25, done)))
    logger.close()
    assert path.read_bytes() == b"".join(want)


def test_created_name_from_escaped_keys_and_without_metadata():
    def name(body: bytes) -> str:
        req = make_request("POST", "/api/v1/namespaces/default/configmaps", user=X509_USER, body=body)
        return audit.event_for_request(req, 201, 1, 2)["objectRef"].get("name", "")

    assert name(b'{"metadata":{"name":"a"}}') == "a"
    assert name(b'  {"m\\u0065tadata":{"name":"b"}}') == "b"  # a JSON escape spells the key
    assert name(b'{"metadata":{"n\\u0061me":"c"}}') == "c"
    assert name(b'{"kind":"ConfigMap","data":{"x":"y"}}') == ""
    assert name(b'[{"metadata":{"name":"d"}}]') == ""
    assert name(b"not json at all") == ""


def test_micro_time_across_seconds_and_back():
    stamps = [1700000000.25, 1700000000.75, 1700000001.0, 1699999999.9999999, 1700000000.5, 5.0000001]
    for t in stamps + stamps[::-1]:
        assert audit.micro_time(t) == datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), t
