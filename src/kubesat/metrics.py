"""Prometheus metrics with Kubernetes' names, types, labels and buckets.

Everything lives in `REGISTRY`, a private `CollectorRegistry` (never the process-global default).
The text exposition is rendered here rather than by `generate_latest` so that it looks like
kube-apiserver's: no `_created` series, and counters whose Kubernetes name has no `_total`
suffix (`authentication_attempts`, `authenticated_user_requests`) keep their exact name.

Other modules increment the service-account counters by attribute name
(`metrics.serviceaccount_legacy_tokens_total.inc()`); `observe_request` is the `App.observe` hook
for the request, authentication and TokenRequest metrics.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from decimal import Decimal
from typing import Any
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

log = logging.getLogger("kubesat.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry(auto_describe=False)

# apiserver_request_duration_seconds buckets (staging/.../endpoints/metrics/metrics.go, ≈1.23+).
REQUEST_DURATION_BUCKETS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60)
# ExponentialBuckets(0.001, 2, 15), used by the root-CA publisher's sync latency.
_EXP_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))

REQUEST_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")
APISERVER_COMPONENT = "apiserver"


class _PlainCounterVec(Collector):
    """A labelled counter exposed under its exact name (Kubernetes has a few without `_total`)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry):
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._values: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def inc(self, *labelvalues: str, amount: float = 1.0) -> None:
        with self._lock:
            cell = self._values.get(labelvalues)
            if cell is None:
                if len(labelvalues) != len(self.labelnames):
                    raise ValueError(f"{self.name}: expected {len(self.labelnames)} label values")
                cell = self._values[labelvalues] = [0.0]
            cell[0] += amount

    def value(self, *labelvalues: str) -> float:
        cell = self._values.get(labelvalues)
        return cell[0] if cell else 0.0

    def collect(self) -> Iterable[Metric]:
        m = Metric(self.name, self.documentation, "counter")
        with self._lock:
            items = [(k, v[0]) for k, v in self._values.items()]
        for labelvalues, v in sorted(items):
            m.add_sample(self.name, dict(zip(self.labelnames, labelvalues, strict=True)), v)
        yield m


# --- service-account token authentication (pkg/serviceaccount/metrics.go, legacy.go) -----------------
serviceaccount_legacy_tokens_total = Counter(
    "serviceaccount_legacy_tokens_total",
    "[ALPHA] How many times a token without an audience (a legacy Secret-based token) was used.",
    registry=REGISTRY)
serviceaccount_stale_tokens_total = Counter(
    "serviceaccount_stale_tokens_total",
    "[ALPHA] How many times an extended projected token was used after its warn-after time.",
    registry=REGISTRY)
serviceaccount_valid_tokens_total = Counter(
    "serviceaccount_valid_tokens_total",
    "[ALPHA] How many times an extended projected token was used before its warn-after time.",
    registry=REGISTRY)
serviceaccount_legacy_auto_token_uses_total = Counter(
    "serviceaccount_legacy_auto_token_uses_total",
    "[ALPHA] Uses of legacy tokens from Secrets the tokens controller generated.",
    registry=REGISTRY)
serviceaccount_legacy_manual_token_uses_total = Counter(
    "serviceaccount_legacy_manual_token_uses_total",
    "[ALPHA] Uses of legacy tokens from Secrets a user created by hand.",
    registry=REGISTRY)
serviceaccount_invalid_legacy_auto_token_uses_total = Counter(
    "serviceaccount_invalid_legacy_auto_token_uses_total",
    "[ALPHA] Attempts to use generated legacy tokens whose Secret is labelled invalid.",
    registry=REGISTRY)
# Kubernetes has no dedicated TokenRequest counter (its KEP points at apiserver_request_total with
# subresource="token"); this one is kubesat's own.
serviceaccount_token_requests_total = Counter(
    "serviceaccount_token_requests_total",
    "[ALPHA] kubesat: TokenRequest (serviceaccounts/token create) calls, by HTTP response code.",
    ("code",), registry=REGISTRY)
kubesat_token_signatures_total = Counter(
    "kubesat_token_signatures_total",
    "[ALPHA] kubesat: RSA TokenRequest signatures, by where they were made (helper process or server).",
    ("signer",), registry=REGISTRY)

# --- request metrics (staging/src/k8s.io/apiserver/pkg/endpoints/metrics/metrics.go) --------------
class _CellVec(Collector):
    """Labelled series kept as plain lists of floats (a cell per series), made on first use."""

    name: str
    labelnames: tuple[str, ...]
    width: int  # floats per cell

    def __init__(self) -> None:
        self._cells: dict[tuple[str, ...], list[float]] = {}

    def cell(self, *labelvalues: str) -> list[float]:
        """The series' cell (created at zeros)."""
        cell = self._cells.get(labelvalues)
        if cell is None:
            if len(labelvalues) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected {len(self.labelnames)} label values")
            cell = self._cells[labelvalues] = [0.0] * self.width
        return cell


class _RequestCounterVec(_CellVec):
    """A labelled counter exposed as prometheus_client's Counter exposes one (family `name` without
    `_total`, series `name_total`), counted in a plain cell per series: every request bumps two of
    these, from the event loop's thread, and prometheus_client's lock and checks per increment cost
    more than the rest of the bookkeeping."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry):
        super().__init__()
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = labelnames
        self.width = 1  # `cell[0] += 1` counts
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        m = Metric(self.name, self.documentation, "counter")
        for labelvalues, cell in list(self._cells.items()):
            m.add_sample(self.name + "_total", dict(zip(self.labelnames, labelvalues, strict=True)), cell[0])
        yield m


class _RequestHistogramVec(_CellVec):
    """A labelled histogram exposed as prometheus_client's Histogram exposes one (cumulative `_bucket`
    series with `le`, then `_count`, `_sum`), kept as per-bucket counts and a sum in a plain cell per
    series, for the same reason as _RequestCounterVec."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], buckets: tuple[float, ...],
                 registry: CollectorRegistry):
        super().__init__()
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = tuple(float(b) for b in buckets) + (_INF,)
        self._le = tuple(floatToGoString(b) for b in self.bounds)
        self.width = len(self.bounds) + 1  # a count per bucket (not cumulative), then the sum; see observe()
        registry.register(self)

    def observe(self, cell: list[float], amount: float) -> None:
        cell[bisect_left(self.bounds, amount)] += 1  # the first bucket whose bound is >= amount
        cell[-1] += amount

    def collect(self) -> Iterable[Metric]:
        m = Metric(self.name, self.documentation, "histogram")
        for labelvalues, cell in list(self._cells.items()):
            labels = dict(zip(self.labelnames, labelvalues, strict=True))
            total = 0.0
            for le, n in zip(self._le, cell, strict=False):
                total += n
                m.add_sample(self.name + "_bucket", {**labels, "le": le}, total)
            m.add_sample(self.name + "_count", labels, total)
            m.add_sample(self.name + "_sum", labels, cell[-1])
        yield m


_INF = float("inf")
apiserver_request_total = _RequestCounterVec(
    "apiserver_request_total",
    "[STABLE] Requests served, by verb, dry-run value, group, version, resource, subresource, scope, "
    "component and HTTP response code.",
    REQUEST_LABELS + ("code",), REGISTRY)
apiserver_request_duration_seconds = _RequestHistogramVec(
    "apiserver_request_duration_seconds",
    "[STABLE] Time taken to serve requests in seconds, by verb, dry-run value, group, version, resource, "
    "subresource, scope and component.",
    REQUEST_LABELS, REQUEST_DURATION_BUCKETS, REGISTRY)

# --- authentication (staging/src/k8s.io/apiserver/pkg/endpoints/filters/metrics.go) ----------------
authenticated_user_requests = _PlainCounterVec(
    "authenticated_user_requests",
    "[ALPHA] Authenticated requests, by a coarse user category.",
    ("username",), REGISTRY)
authentication_attempts = _PlainCounterVec(
    "authentication_attempts",
    "[ALPHA] Authentication attempts, by result (success, failure, error).",
    ("result",), REGISTRY)

# --- audit backend (staging/src/k8s.io/apiserver/pkg/audit/metrics.go) -----------------------------
apiserver_audit_event_total = Counter(
    "apiserver_audit_event_total",
    "[ALPHA] Audit events written to the audit backend.",
    registry=REGISTRY)
apiserver_audit_error_total = Counter(
    "apiserver_audit_error_total",
    "[ALPHA] Audit events that could not be written, by backend plugin.",
    ("plugin",), registry=REGISTRY)

# --- root CA publisher (pkg/controller/certificates/rootcacertpublisher/metrics.go) ----------------
root_ca_cert_publisher_sync_total = Counter(
    "root_ca_cert_publisher_sync_total",
    "[ALPHA] Namespace syncs done by the root CA publisher, by result code.",
    ("code",), registry=REGISTRY)
root_ca_cert_publisher_sync_duration_seconds = Histogram(
    "root_ca_cert_publisher_sync_duration_seconds",
    "[ALPHA] How long root CA publisher namespace syncs took, by result code.",
    ("code",), buckets=_EXP_BUCKETS, registry=REGISTRY)


def record_root_ca_sync(seconds: float, code: int | str = 200) -> None:
    """One root-CA publisher namespace sync: code 200 on success, else the API status code (500 if none)."""
    c = str(code)
    root_ca_cert_publisher_sync_total.labels(c).inc()
    root_ca_cert_publisher_sync_duration_seconds.labels(c).observe(seconds)


# --- observe_request -------------------------------------------------------------------------------

_VALID_VERBS = frozenset({"APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET", "LIST", "PATCH",
                          "POST", "PROXY", "PUT", "UPDATE", "WATCH", "WATCHLIST"})
_KNOWN_USERS = frozenset({"admin", "client", "kube_proxy", "kubelet", "system:serviceaccount:kube-system:default"})
_ANONYMOUS_DISABLED = "no credentials"  # prefix of kubesat's reason when nothing was presented

# Children are cached per label tuple; the cache is capped so odd paths cannot grow memory forever.
MAX_SERIES = 5000
_children: dict[tuple[object, ...], tuple[list[float], list[float]]] = {}
_observe_duration = apiserver_request_duration_seconds.observe
_token_children: dict[int, Any] = {}
_overflow_warned = False


def _scope(info: Any) -> str:
    """metrics.CleanScope."""
    if info.name or info.verb == "create":
        return "resource"
    if info.namespace:
        return "namespace"
    if info.resource_request:
        return "cluster"
    return ""


def _verb(method: str, info: Any, scope: str, content_type: str | None) -> str:
    """CanonicalVerb + cleanVerb: GET/HEAD become LIST on collections, WATCH for watches, APPLY for apply."""
    if info.verb == "watch":
        return "WATCH"
    if method == "GET" or method == "HEAD":
        return "LIST" if scope and scope != "resource" else "GET"
    if method == "PATCH" and content_type and content_type.startswith("application/apply-patch"):
        return "APPLY"
    return method if method in _VALID_VERBS else "other"


def _dry_run(query: dict[str, list[str]]) -> str:
    values = query.get("dryRun")
    if not values:
        return ""
    if any(v != "All" for v in values):
        return "invalid"
    return "All"


def _compress_username(name: str) -> str:
    if name in _KNOWN_USERS:
        return name
    if "@" in name:
        return "email_id"
    return "other"


def observe_request(req: Any, status: int, seconds: float) -> None:
    """`App.observe` hook: request count and latency, authentication attempts, TokenRequest count."""
    global _overflow_warned
    info = req.info
    method = req.method
    scope = _scope(info)
    verb = _verb(method, info, scope, req.headers.get("content-type") if method == "PATCH" else None)
    dry_run = _dry_run(req.query) if req.query else ""
    key: tuple[object, ...] | None
    if info.resource_request:
        key = (verb, dry_run, info.api_group, info.api_version, info.resource, info.subresource, scope,
               APISERVER_COMPONENT, status)
    else:
        # Kubernetes instruments non-resource endpoints (healthz & co.) with the path as subresource
        # and an empty component. Unknown paths (404) and unauthenticated probes (401) never reach an
        # instrumented handler there, and would only let clients mint new series here.
        key = (verb, dry_run, "", "", "", info.path, "", "", status) if status not in (401, 404) else None
    if key is not None:
        pair = _children.get(key)
        if pair is None and len(_children) < MAX_SERIES:
            labels = [str(v) for v in key[:8]]  # all strings already; once per series
            pair = (apiserver_request_total.cell(*labels, str(status)),
                    apiserver_request_duration_seconds.cell(*labels))
            _children[key] = pair
        if pair is not None:
            pair[0][0] += 1
            _observe_duration(pair[1], seconds)
        elif not _overflow_warned:
            _overflow_warned = True
            log.warning("more than %d request metric series; new label combinations are not recorded", MAX_SERIES)

    user = req.user
    if user is not None:
        authentication_attempts.inc("success")
        # Counted for the authenticated user, not an impersonation target.
        actor = req.audit.get("kubesat.io/impersonated-by") if req.audit else None
        authenticated_user_requests.inc(_compress_username(actor or user.name))
    else:
        reason = req.audit.get("kubesat.io/authentication-failure") if req.audit else None
        if reason is not None:
            authentication_attempts.inc("failure" if reason.startswith(_ANONYMOUS_DISABLED) else "error")

    if info.subresource == "token" and info.verb == "create" and info.resource == "serviceaccounts" \
            and info.resource_request and not info.api_group:
        child = _token_children.get(status)
        if child is None:
            child = _token_children[status] = serviceaccount_token_requests_total.labels(str(status))
        child.inc()


# --- exposition ------------------------------------------------------------------------------------

_PLAIN_NAMES = frozenset({authenticated_user_requests.name, authentication_attempts.name})
_INF = float("inf")


def go_float(v: float) -> str:
    """A float the way Go's strconv.FormatFloat(v, 'g', -1, 64) writes it (what client_golang emits)."""
    if v != v:
        return "NaN"
    if v == _INF:
        return "+Inf"
    if v == -_INF:
        return "-Inf"
    iv = int(v)
    if iv == v and -1e6 < v < 1e6:
        return str(iv)
    sign, digit_tuple, exp = Decimal(repr(v)).as_tuple()
    assert isinstance(exp, int)  # v is finite: NaN and the infinities were written above
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    exp += len(digit_tuple) - len(digits)
    nd = len(digits)
    dp = nd + exp  # position of the decimal point relative to the digit string
    e = dp - 1
    if e < -4 or e >= 6:
        mant = digits[0] + ("." + digits[1:] if nd > 1 else "")
        out = f"{mant}e{'+' if e >= 0 else '-'}{abs(e):02d}"
    elif dp <= 0:
        out = "0." + "0" * (-dp) + digits
    elif dp >= nd:
        out = digits + "0" * (dp - nd)
    else:
        out = digits[:dp] + "." + digits[dp:]
    return ("-" if sign else "") + out


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    """Label pairs sorted by name with `le` last, as Go's client writes them."""
    if not labels:
        return ""
    pairs = sorted((k, v) for k, v in labels.items() if k != "le")
    if "le" in labels:
        pairs.append(("le", go_float(float(labels["le"]))))
    return "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in pairs) + "}"


def _sum_before_count(name: str, samples: list[Any]) -> list[Any]:
    """Go writes each histogram as buckets, `_sum`, `_count`; the Python client yields `_count` first."""
    count_name, sum_name = name + "_count", name + "_sum"
    out = list(samples)
    for i in range(len(out) - 1):
        if out[i].name == count_name and out[i + 1].name == sum_name:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def exposition() -> tuple[bytes, str]:
    """The Prometheus text format (0.0.4) for everything in REGISTRY, and its content type.

    Like kube-apiserver: no `_created` series, labelled families without any series are left out,
    numbers are written as Go writes them (`1`, `0.05`, `1e+06`).
    """
    out: list[str] = []
    for metric in REGISTRY.collect():
        created = metric.name + "_created"
        samples = [s for s in metric.samples if s.name != created]
        if not samples:
            continue
        exposed = metric.name
        if metric.type == "counter" and metric.name not in _PLAIN_NAMES:
            exposed = metric.name + "_total"
        mtype = "untyped" if metric.type == "unknown" else metric.type
        out.append(f"# HELP {exposed} {_escape_help(metric.documentation)}\n")
        out.append(f"# TYPE {exposed} {mtype}\n")
        if metric.type == "histogram":
            samples = _sum_before_count(metric.name, samples)
        for s in samples:
            out.append(f"{s.name}{_labels(s.labels)} {go_float(s.value)}\n")
    return "".join(out).encode("utf-8"), CONTENT_TYPE


def reset_for_tests() -> None:
    """Forget the label-child caches (the metric values themselves are cumulative, as in Prometheus)."""
    global _overflow_warned
    _children.clear()
    _token_children.clear()
    _overflow_warned = False
