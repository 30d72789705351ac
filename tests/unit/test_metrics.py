"""Metrics: Kubernetes' names, labels and buckets, the request-metric label rules, the exposition format."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs

import pytest
from prometheus_client import REGISTRY as DEFAULT, CollectorRegistry, Counter, Histogram

from kubesat import metrics
from kubesat.api.app import Request
from kubesat.api.requestinfo import parse
from kubesat.auth.user import UserInfo

USER = UserInfo("system:serviceaccount:default:bot", "u", ("system:authenticated",))


def make_request(method: str, target: str, *, headers: dict | None = None, user: UserInfo | None = USER,
                 annotations: dict | None = None) -> Request:
    path, _, qs = target.partition("?")
    query = parse_qs(qs, keep_blank_values=True) if qs else {}
    watch = (query.get("watch") or [""])[0].lower() in ("1", "true")
    scope = {"type": "http", "method": method, "path": path, "query_string": qs.encode(), "headers": []}
    req = Request(scope, method, path, query, {k.lower(): v for k, v in (headers or {}).items()},
                  parse(method, path, watch), user=user)
    req.audit.update(annotations or {})
    return req


def text() -> str:
    body, content_type = metrics.exposition()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return body.decode()


def sample(name: str, **labels: str) -> float:
    """The value of one series in the exposition (0 if absent); labels must match exactly."""
    for line in text().splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        assert m, line
        if m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if got == labels:
            return float(m.group(3))
    return 0.0


REQ_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")


def request_labels(verb, group, version, resource, subresource, scope, component="apiserver", dry_run=""):
    return dict(verb=verb, dry_run=dry_run, group=group, version=version, resource=resource,
                subresource=subresource, scope=scope, component=component)


class TestServiceAccountCounters:
    @pytest.mark.parametrize("name", [
        "serviceaccount_legacy_tokens_total",
        "serviceaccount_stale_tokens_total",
        "serviceaccount_valid_tokens_total",
        "serviceaccount_legacy_auto_token_uses_total",
        "serviceaccount_legacy_manual_token_uses_total",
        "serviceaccount_invalid_legacy_auto_token_uses_total",
    ])
    def test_counter_increments_under_exact_name(self, name):
        before = sample(name)
        getattr(metrics, name).inc()
        t = text()
        assert f"# TYPE {name} counter\n" in t
        assert f"# HELP {name} [ALPHA] " in t
        assert sample(name) == before + 1
        assert f"{name.removesuffix('_total')}_created" not in t

    def test_root_ca_publisher(self):
        before = sample("root_ca_cert_publisher_sync_total", code="200")
        metrics.record_root_ca_sync(0.003)
        metrics.record_root_ca_sync(0.5, 409)
        assert sample("root_ca_cert_publisher_sync_total", code="200") == before + 1
        assert sample("root_ca_cert_publisher_sync_total", code="409") >= 1
        assert sample("root_ca_cert_publisher_sync_duration_seconds_bucket", code="409", le="0.512") >= 1
        assert 'root_ca_cert_publisher_sync_duration_seconds_bucket{code="409",le="16.384"}' in text()

    def test_token_request_counter_by_code(self):
        before = sample("serviceaccount_token_requests_total", code="201")
        metrics.observe_request(make_request("POST", "/api/v1/namespaces/default/serviceaccounts/bot/token"),
                                201, 0.002)
        metrics.observe_request(make_request("POST", "/api/v1/namespaces/default/serviceaccounts/nope/token"),
                                404, 0.002)
        metrics.observe_request(make_request("GET", "/api/v1/namespaces/default/serviceaccounts/bot"), 200, 0.002)
        assert sample("serviceaccount_token_requests_total", code="201") == before + 1
        assert sample("serviceaccount_token_requests_total", code="404") >= 1


class TestRequestMetrics:
    @pytest.mark.parametrize("method,target,headers,labels", [
        ("GET", "/api/v1/namespaces/default/pods", None,
         request_labels("LIST", "", "v1", "pods", "", "namespace")),
        ("GET", "/api/v1/pods", None, request_labels("LIST", "", "v1", "pods", "", "cluster")),
        ("GET", "/api/v1/namespaces/default/pods?watch=true", None,
         request_labels("WATCH", "", "v1", "pods", "", "namespace")),
        ("GET", "/api/v1/watch/namespaces/default/secrets", None,
         request_labels("WATCH", "", "v1", "secrets", "", "namespace")),
        ("GET", "/api/v1/namespaces/default/serviceaccounts/bot", None,
         request_labels("GET", "", "v1", "serviceaccounts", "", "resource")),
        ("HEAD", "/api/v1/namespaces/default/serviceaccounts/bot", None,
         request_labels("GET", "", "v1", "serviceaccounts", "", "resource")),
        ("GET", "/api/v1/namespaces/kube-system", None,
         request_labels("GET", "", "v1", "namespaces", "", "resource")),
        ("POST", "/api/v1/namespaces/default/serviceaccounts/bot/token", None,
         request_labels("POST", "", "v1", "serviceaccounts", "token", "resource")),
        # create on a collection is scope "resource" (CleanScope checks verb == create)
        ("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", None,
         request_labels("POST", "rbac.authorization.k8s.io", "v1", "roles", "", "resource")),
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews", None,
         request_labels("POST", "authentication.k8s.io", "v1", "tokenreviews", "", "resource")),
        ("PUT", "/api/v1/namespaces/default/configmaps/c?dryRun=All", None,
         request_labels("PUT", "", "v1", "configmaps", "", "resource", dry_run="All")),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c", {"Content-Type": "application/merge-patch+json"},
         request_labels("PATCH", "", "v1", "configmaps", "", "resource")),
        ("PATCH", "/api/v1/namespaces/default/configmaps/c?dryRun=Bogus",
         {"Content-Type": "application/apply-patch+yaml"},
         request_labels("APPLY", "", "v1", "configmaps", "", "resource", dry_run="invalid")),
        ("DELETE", "/api/v1/namespaces/default/secrets", None,
         request_labels("DELETE", "", "v1", "secrets", "", "namespace")),
        ("PUT", "/api/v1/namespaces/default/status", None,
         request_labels("PUT", "", "v1", "namespaces", "status", "resource")),
        # non-resource: path as subresource, empty scope and component
        ("GET", "/healthz", None, request_labels("GET", "", "", "", "/healthz", "", component="")),
        ("GET", "/openid/v1/jwks", None, request_labels("GET", "", "", "", "/openid/v1/jwks", "", component="")),
        ("OPTIONS", "/api/v1/pods", None, request_labels("other", "", "v1", "pods", "", "cluster")),
    ])
    def test_labels(self, method, target, headers, labels):
        before = sample("apiserver_request_total", **labels, code="200")
        before_count = sample("apiserver_request_duration_seconds_count", **labels)
        metrics.observe_request(make_request(method, target, headers=headers), 200, 0.07)
        assert sample("apiserver_request_total", **labels, code="200") == before + 1
        assert sample("apiserver_request_duration_seconds_count", **labels) == before_count + 1
        assert sample("apiserver_request_duration_seconds_bucket", **labels, le="0.1") >= 1

    def test_unknown_non_resource_path_not_recorded(self):
        metrics.observe_request(make_request("GET", "/no/such/path/xyz"), 404, 0.001)
        assert "/no/such/path/xyz" not in text()

    def test_histogram_buckets_are_kubernetes(self):
        labels = request_labels("GET", "", "v1", "configmaps", "", "resource")
        metrics.observe_request(make_request("GET", "/api/v1/namespaces/b/configmaps/c"), 200, 0.3)
        les = re.findall(r'apiserver_request_duration_seconds_bucket\{(?:[^}]*?)component="apiserver",'
                         r'dry_run="",group="",resource="configmaps",scope="resource",subresource="",'
                         r'verb="GET",version="v1",le="([^"]+)"\}', text())
        assert les == ["0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1", "1.25", "1.5", "2", "3", "4", "5", "6",
                       "8", "10", "15", "20", "30", "45", "60", "+Inf"]
        assert sample("apiserver_request_duration_seconds_bucket", **labels, le="0.2") < \
            sample("apiserver_request_duration_seconds_bucket", **labels, le="0.4")
        t = text()
        assert "# TYPE apiserver_request_duration_seconds histogram\n" in t
        assert "# TYPE apiserver_request_total counter\n" in t
        assert "_created" not in t
        # sum comes before count, as client_golang writes it
        i_sum = t.index('apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",'
                        'resource="configmaps",scope="resource"')
        i_count = t.index('apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",'
                          'resource="configmaps",scope="resource"')
        assert i_sum < i_count

    def test_label_names_exact(self):
        metrics.observe_request(make_request("GET", "/api/v1/namespaces/a/pods"), 200, 0.01)
        line = next(ln for ln in text().splitlines() if ln.startswith("apiserver_request_total{"))
        names = re.findall(r'(\w+)="', line)
        assert names == sorted(REQ_LABELS + ("code",))
        line = next(ln for ln in text().splitlines() if ln.startswith("apiserver_request_duration_seconds_bucket{"))
        assert re.findall(r'(\w+)="', line) == sorted(REQ_LABELS) + ["le"]


class TestAuthenticationMetrics:
    def test_attempts_and_users(self):
        s0 = sample("authentication_attempts", result="success")
        e0 = sample("authentication_attempts", result="error")
        f0 = sample("authentication_attempts", result="failure")
        o0 = sample("authenticated_user_requests", username="other")
        k0 = sample("authenticated_user_requests", username="kubelet")
        m0 = sample("authenticated_user_requests", username="email_id")
        metrics.observe_request(make_request("GET", "/api"), 200, 0.001)
        metrics.observe_request(make_request("GET", "/api", user=UserInfo("kubelet")), 200, 0.001)
        metrics.observe_request(make_request("GET", "/api", user=UserInfo("a@example.com")), 200, 0.001)
        # impersonation: the authenticated user (kubelet) is counted, not the target
        metrics.observe_request(make_request("GET", "/api", user=UserInfo("someone"),
                                             annotations={"kubesat.io/impersonated-by": "kubelet"}), 200, 0.001)
        metrics.observe_request(make_request("GET", "/api", user=None, annotations={
            "kubesat.io/authentication-failure": "[invalid bearer token, service account token has expired]"}),
            401, 0.001)
        metrics.observe_request(make_request("GET", "/api", user=None, annotations={
            "kubesat.io/authentication-failure": "no credentials and anonymous authentication is disabled"}),
            401, 0.001)
        assert sample("authentication_attempts", result="success") == s0 + 4
        assert sample("authentication_attempts", result="error") == e0 + 1
        assert sample("authentication_attempts", result="failure") == f0 + 1
        assert sample("authenticated_user_requests", username="other") == o0 + 1
        assert sample("authenticated_user_requests", username="kubelet") == k0 + 2
        assert sample("authenticated_user_requests", username="email_id") == m0 + 1
        t = text()
        # Kubernetes' names for these two counters have no _total suffix
        assert "# TYPE authentication_attempts counter\n" in t
        assert "authentication_attempts_total" not in t
        assert "# TYPE authenticated_user_requests counter\n" in t


def test_go_float():
    assert [metrics.go_float(v) for v in (0.0, 1.0, 3, 0.05, 1e6, 123456.0, 1e-5, 16.384, float("inf"))] == \
        ["0", "1", "3", "0.05", "1e+06", "123456", "1e-05", "16.384", "+Inf"]


def test_private_registry():
    assert metrics.REGISTRY is not DEFAULT
    assert DEFAULT.get_sample_value("serviceaccount_legacy_tokens_total") is None


def test_observe_request_is_cheap():
    reqs = [
        make_request("GET", "/api/v1/namespaces/default/pods"),
        make_request("POST", "/api/v1/namespaces/default/serviceaccounts/bot/token"),
        make_request("GET", "/healthz"),
        make_request("PATCH", "/api/v1/namespaces/default/configmaps/c",
                     headers={"Content-Type": "application/apply-patch+yaml"}),
    ]
    for r in reqs:
        metrics.observe_request(r, 200, 0.01)  # warm the child caches
    n = 20000
    start = time.perf_counter()
    for i in range(n):
        metrics.observe_request(reqs[i & 3], 200, 0.01)
    per_call = (time.perf_counter() - start) / n
    print(f"\nobserve_request: {per_call * 1e6:.2f} µs per call")


def test_request_collectors_expose_what_prometheus_client_would() -> None:
    def samples(collector: object) -> list[tuple[str, str, dict, float]]:
        return [(m.name, m.type, s.name, s.labels, s.value) for m in collector.collect()  # type: ignore[attr-defined]
                for s in m.samples if not s.name.endswith("_created")]

    ours_c = metrics._RequestCounterVec("x_total", "doc", ("a", "b"), CollectorRegistry())
    ours_h = metrics._RequestHistogramVec("x_seconds", "doc", ("a",), metrics.REQUEST_DURATION_BUCKETS,
                                          CollectorRegistry())
    theirs_c = Counter("x_total", "doc", ("a", "b"), registry=CollectorRegistry())
    theirs_h = Histogram("x_seconds", "doc", ("a",), buckets=metrics.REQUEST_DURATION_BUCKETS,
                         registry=CollectorRegistry())
    values = [0.0, 0.001, 0.05, 0.0500001, 0.1, 0.99, 1.0, 1.25, 59.9, 60.0, 60.5, 1e9]
    for i, v in enumerate(values):
        a, b = f"a{i % 3}", f"b{i % 2}"
        ours_c.cell(a, b)[0] += 1
        theirs_c.labels(a, b).inc()
        ours_h.observe(ours_h.cell(a), v)
        theirs_h.labels(a).observe(v)
    assert samples(ours_c) == samples(theirs_c)
    assert samples(ours_h) == samples(theirs_h)
