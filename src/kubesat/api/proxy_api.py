"""pods/proxy and services/proxy: an HTTP request relayed to a pod's IP, as kube-apiserver's proxy subresources do;
nodes/proxy: the same relay to the node's kubelet API, with the kubelet client certificate (its WebSockets are
streams.py's).

`/api/v1/namespaces/NS/pods/[scheme:]NAME[:PORT]/proxy/PATH` and `.../services/[scheme:]NAME[:PORT]/proxy/PATH`
take every method Kubernetes' proxies take (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS); the App has already
authorized the verb its method means on the `proxy` subresource. Where to go is decided in api/proxy_targets.py;
this module reads the objects, then relays: the request's path (decoded and escaped again, as Go does) and
query, its headers less the hop-by-hop ones and the caller's credentials (Authorization, Impersonate-*:
kube-apiserver's filters remove them before a proxy runs), with X-Forwarded-For and X-Forwarded-Uri. Both
bodies stream: the request's as it arrives (up to MAX_UPLOAD), the answer's as the backend sends it, each read
bounded by IDLE_TIMEOUT. A backend that cannot be reached is kube-apiserver's 503 `error trying to reach
service: ...`; a Location header on the backend's host is rewritten under the proxy path (HTML bodies are not
rewritten).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from kubesat import errors
from kubesat.api import proxy_targets
from kubesat.api.app import RECEIVE, WEBSOCKET, App, Handler, Request, Response, Stream
from kubesat.api.resources import ResourceHandler
from kubesat.api.proxy_targets import ProxyID, Target
from kubesat.api.streams import Backend, StreamProxy, body_relay, node_backend
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.api.proxy")

PODS = builtin_kind("v1", "Pod")
SERVICES = builtin_kind("v1", "Service")
ENDPOINTS = builtin_kind("v1", "Endpoints")
NODES = builtin_kind("v1", "Node")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Bounds: dialing a backend, waiting on any one read or write, a request body, the proxied path, relays at once.
DIAL_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0
MAX_UPLOAD = 256 << 20
MAX_PATH = 8192
MAX_RELAYS = 256
# Never forwarded either way (RFC 9110's hop-by-hop fields), and request fields that carry the caller's identity.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                         "upgrade", "proxy-authenticate", "proxy-authorization"})
_CREDENTIALS = ("authorization", "impersonate-")
# Fields httpx adds to a request by itself; dropped unless the client sent them.
_HTTPX_DEFAULTS = ("accept", "accept-encoding", "user-agent", "connection")


class UploadTooLarge(Exception):
    """The request body went past MAX_UPLOAD."""


class ClientGone(Exception):
    """The client went away in the middle of its request body."""


def _escape(path: str) -> str:
    """A decoded path escaped as Go's URL.EscapedPath escapes it (kube-apiserver decodes the proxied path, then
    sends it re-escaped: `%2F` reaches the backend as `/`)."""
    return quote(path, safe="/$&+,:;=@")


def _split_path(req: Request) -> tuple[str, str]:
    """(the escaped path up to and including `/proxy`, the escaped rest: "" when there is none)."""
    segments = req.path.split("/")
    info = req.info
    if info.namespace:
        shape = ["", "api", "v1", "namespaces", info.namespace, info.resource, info.name, "proxy"]
    else:
        shape = ["", "api", "v1", info.resource, info.name, "proxy"]
    if segments[:len(shape)] != shape:
        raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
    n = len(shape)
    return _escape("/".join(segments[:n])), (_escape("/" + "/".join(segments[n:])) if len(segments) > n else "")


def _forwarded_headers(req: Request) -> list[tuple[str, str]]:
    """The client's headers as the backend gets them."""
    connection_named = {t.strip().lower() for t in req.headers.get("connection", "").split(",")}
    out: list[tuple[str, str]] = []
    for k, v in req.scope["headers"]:
        name = k.decode("latin-1").lower()
        if name in _HOP_BY_HOP or name in connection_named or name.startswith(_CREDENTIALS):
            continue
        if name in ("x-forwarded-for", "x-forwarded-uri", "expect"):
            continue  # set below; 100-continue is between the client and this server
        out.append((name, v.decode("latin-1")))
    client = req.scope.get("client")
    prior = req.headers.get("x-forwarded-for", "")
    if client:
        out.append(("x-forwarded-for", f"{prior}, {client[0]}" if prior else str(client[0])))
    out.append(("x-forwarded-uri", _escape(req.path)))
    return out


def _answer_headers(resp: httpx.Response, target: Target, prefix: str) -> list[tuple[bytes, bytes]]:
    """The backend's answer headers as the client gets them: less hop-by-hop ones, Location under the proxy."""
    connection_named = {t.strip().lower() for t in resp.headers.get("connection", "").split(",")}
    out: list[tuple[bytes, bytes]] = []
    for k, v in resp.headers.raw:
        name = k.decode("latin-1").lower()
        if name in _HOP_BY_HOP or name in connection_named:
            continue
        if name == "location":
            v = _rewrite_location(v.decode("latin-1"), target, prefix).encode("latin-1", "replace")
        out.append((name.encode("latin-1"), v))
    return out


def _rewrite_location(location: str, target: Target, prefix: str) -> str:
    """A redirect to the backend's own host, or to a path on it, stays behind the proxy (Kubernetes'
    rewriteURL); relative and foreign locations pass unchanged."""
    try:
        parts = urlsplit(location)
    except ValueError:
        return location
    if (parts.netloc and parts.netloc != target.netloc) or not parts.path.startswith("/"):
        return location
    return prefix + parts.path + (f"?{parts.query}" if parts.query else "") + \
        (f"#{parts.fragment}" if parts.fragment else "")


async def _upload(receive: Callable[[], Awaitable[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """The request body as it arrives, bounded by MAX_UPLOAD."""
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_UPLOAD:
            raise UploadTooLarge()
        if chunk:
            yield chunk
        if not msg.get("more_body"):
            return


def _root_cause(e: BaseException) -> BaseException:
    """The innermost error behind httpx's (httpcore's, anyio's "All connection attempts failed"), bounded."""
    for _ in range(8):
        inner = e.__cause__ or e.__context__
        if inner is None:
            break
        e = inner
    return e


def _send_failure(e: BaseException, target: Target) -> errors.StatusError | None:
    """The Status of a relay that failed before the answer's headers came, or None to let `e` through."""
    if isinstance(e, UploadTooLarge):
        return errors.too_large(f"Request entity too large: a proxied body is at most {MAX_UPLOAD} bytes")
    if isinstance(e, ClientGone):
        return errors.bad_request("the client closed the connection before its request body ended")
    if isinstance(e, (httpx.HTTPError, OSError)):
        return _unreachable(target, e)
    return None


def _unreachable(target: Target, e: BaseException) -> errors.StatusError:
    why = Backend(target.host, target.port).dial_error(_root_cause(e))
    if isinstance(e, httpx.ReadTimeout):
        why = f"read tcp {target.netloc}: i/o timeout"
    elif isinstance(e, httpx.RemoteProtocolError):
        why = f"malformed HTTP response from {target.netloc}: {str(e)[:200]}"
    return errors.StatusError(503, "ServiceUnavailable", f"error trying to reach service: {why}", details={})


class Proxy:
    """The server's pods/proxy and services/proxy."""

    def __init__(self, registry: Registry, kubelet_tls: Callable[[], ssl.SSLContext],
                 node_websocket: Handler | None = None) -> None:
        self.registry = registry
        self.active = 0
        self.kubelet_tls = kubelet_tls  # trusts the cluster CA, presents the kubelet client certificate
        self.node_websocket = node_websocket  # streams.py's relay of a WebSocket to the kubelet
        self._http: httpx.AsyncClient | None = None
        self._kubelet: httpx.AsyncClient | None = None

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            # https backends are not verified, as kube-apiserver's proxy transport does not verify them.
            self._http = _client(False)
        return self._http

    def kubelet(self) -> httpx.AsyncClient:
        if self._kubelet is None:
            self._kubelet = _client(self.kubelet_tls())
        return self._kubelet

    async def close(self) -> None:
        for c in (self._http, self._kubelet):
            if c is not None:
                await c.aclose()

    async def node(self, req: Request) -> Response | Stream:
        if WEBSOCKET in req.scope and self.node_websocket is not None:
            return await self.node_websocket(req)
        _check_request(req, namespaced=False)
        pid = proxy_targets.split_id("node", req.info.name)
        backend = node_backend(await self.registry.get(NODES, "", pid.name))
        return await self._relay(req, proxy_targets.node_target(backend.host, backend.port, pid), self.kubelet())

    async def pod(self, req: Request) -> Response | Stream:
        _check_request(req, namespaced=True)
        pid = proxy_targets.split_id("pod", req.info.name)
        pod = await self.registry.get(PODS, req.info.namespace, pid.name)
        return await self._relay(req, proxy_targets.pod_target(pod, pid), self.http())

    async def service(self, req: Request) -> Response | Stream:
        _check_request(req, namespaced=True)
        pid = proxy_targets.split_id("service", req.info.name)
        target = await self._service_target(req.info.namespace, pid, req.info.name)
        return await self._relay(req, target, self.http())

    async def _service_target(self, namespace: str, pid: ProxyID, text: str) -> Target:
        proxy_targets.check_service_port(pid, text)
        port_name = pid.port
        if pid.port.isdigit():
            service = await self.registry.get(SERVICES, namespace, pid.name)
            port_name = proxy_targets.service_port_name(service, pid)
        endpoints = await self.registry.get(ENDPOINTS, namespace, pid.name)
        for target, pod_ns, pod_name in proxy_targets.service_candidates(endpoints, pid, port_name):
            pod = await self.registry.get_or_none(PODS, pod_ns or namespace, pod_name)
            if pod is not None and target.host in proxy_targets.pod_ip_list(pod):
                return target
        raise proxy_targets.no_endpoints(text)

    async def _relay(self, req: Request, target: Target, client: httpx.AsyncClient) -> Response | Stream:
        prefix, rest = _split_path(req)
        query = req.scope.get("query_string", b"").decode("latin-1")
        if not rest and req.method in ("GET", "HEAD"):
            # kube-apiserver's redirect of the proxy root to its trailing-slash form (issue 4958).
            location = prefix + "/" + (f"?{query}" if query else "")
            return Response(301, b"", "text/plain", [(b"location", location.encode("latin-1"))])
        if len(rest) > MAX_PATH or len(query) > MAX_PATH:
            raise errors.StatusError(414, "RequestURITooLong",
                                     f"the proxied path and query may be at most {MAX_PATH} bytes each", details={})
        if self.active >= MAX_RELAYS:
            raise errors.StatusError(429, "TooManyRequests",
                                     f"too many proxied requests through this server (at most {MAX_RELAYS})",
                                     details={})
        has_body = req.method in ("POST", "PUT", "PATCH", "DELETE") and RECEIVE in req.scope
        request = client.build_request(req.method, target.url(rest, query), headers=_forwarded_headers(req),
                                       content=_upload(req.scope[RECEIVE]) if has_body else None)
        for name in _HTTPX_DEFAULTS:
            if name not in req.headers:
                request.headers.pop(name, None)
        self.active += 1
        try:
            resp = await client.send(request, stream=True)
        except BaseException as e:
            self.active -= 1
            failure = _send_failure(e, target)
            if failure is None:
                raise
            raise failure from None
        return Stream(resp.status_code, body_relay(resp, self._give_back, f"proxied answer from {target.netloc}"),
                      long_running=False, headers=_answer_headers(resp, target, prefix))

    def _give_back(self) -> None:
        self.active -= 1


def _client(verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=verify, trust_env=False, follow_redirects=False,
                             timeout=httpx.Timeout(IDLE_TIMEOUT, connect=DIAL_TIMEOUT, pool=DIAL_TIMEOUT),
                             limits=httpx.Limits(max_connections=MAX_RELAYS, max_keepalive_connections=32))


def _check_request(req: Request, namespaced: bool) -> None:
    if bool(req.info.namespace) != namespaced:
        raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
    if WEBSOCKET in req.scope:
        raise errors.bad_request("kubesat's proxy subresources relay plain HTTP requests; upgrades (WebSockets) "
                                 "are not relayed")
    if req.method not in METHODS:
        raise errors.method_not_allowed()


def install(app: App, resources: ResourceHandler, registry: Registry, kubelet: StreamProxy) -> Proxy:
    """Route pods/proxy, services/proxy and nodes/proxy to the proxy (after streams.install: the kubelet's
    WebSockets through nodes/proxy stay with it); their bodies stream through it."""
    routes = {("", "pods", "proxy"): "pod", ("", "services", "proxy"): "service", ("", "nodes", "proxy"): "node"}
    proxy = Proxy(registry, kubelet.tls, resources.connect_handlers.get(("", "nodes", "proxy")))
    for key, method in routes.items():
        resources.connect_handlers[key] = getattr(proxy, method)
    app.streamed_bodies.update(routes)
    app.on_shutdown.append(proxy.close)
    return proxy
