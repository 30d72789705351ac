"""The ASGI application: one request in, authenticate, authorize, dispatch, one Kubernetes answer out.

Pure ASGI (no framework) so the hot paths (TokenReview, TokenRequest, gets) stay short.
Every error leaves as a `Status` object; an unexpected exception is logged with its
traceback and answered 500 with no internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from kubesat import errors, logs
from kubesat.api import requestinfo
from kubesat.api.rawconn import RawConnection
from kubesat.apimachinery import codec
from kubesat.auth.authn import AuthenticationFailed, RequestAuthenticator
from kubesat.auth.authz import ALLOW, Attributes, Authorizer, forbidden_message
from kubesat.auth.user import UserInfo
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.api")

TLS_PEER_DER = "kubesat.peer_cert_der"
RESPONSE_STATUS = "kubesat.response_status"  # the error Status of a failed request, for the audit log
STREAMING = "kubesat.streaming"  # set on a request's scope while it streams (watch)
# On a WebSocket request's scope: its (receive, send), for the handler that accepts it and runs the session.
WEBSOCKET = "kubesat.websocket"
# What a handler returns once it has run a WebSocket session to its end.
SWITCHED = 101
# On the scope of an HTTP request with an Upgrade that is not WebSocket (SPDY/3.1): the function that writes
# the 101 with the given headers and takes the connection over from HTTP (`tls`). A handler asks for it by
# answering `Switch`.
UPGRADE = "kubesat.upgrade"
# On the scope of a request whose body its handler reads itself, streaming (App.streamed_bodies): ASGI's receive.
RECEIVE = "kubesat.receive"


# The header names clients send on nearly every request, decoded once (ASGI gives them lower-case).
_HEADER_NAMES = {n.encode(): n for n in (
    "host", "user-agent", "accept", "accept-encoding", "authorization", "content-type", "content-length",
    "connection", "kubectl-command", "kubectl-session", "audit-id", "x-forwarded-for", "x-real-ip",
)}

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"", "0", "f", "F", "FALSE", "false", "False"})


@dataclass
class Request:
    scope: dict[str, Any]
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    info: requestinfo.RequestInfo
    body: bytes = b""
    user: UserInfo | None = None
    warnings: list[str] = field(default_factory=list)
    audit: dict[str, str] = field(default_factory=dict)

    def q(self, name: str, default: str = "") -> str:
        v = self.query.get(name)
        return v[0] if v else default

    def flag(self, name: str) -> bool:
        """A boolean query parameter as Go's strconv.ParseBool reads it (absent or empty: false); 400 otherwise."""
        value = self.q(name)
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise errors.bad_request(f'invalid value for query parameter {name}: "{value[:64]}" is not a boolean')


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class Switch(Response):
    """An answer that switches the connection to another protocol: the app writes `101 Switching Protocols`
    with `headers` and runs `session` on the connection until it ends. Answered only to a request whose
    scope has `UPGRADE`; when the connection cannot be taken over after all (the client left), `abandon`
    runs instead, to free what the handler holds for the session."""

    session: Callable[[RawConnection], Awaitable[None]] = field(kw_only=True)
    abandon: Callable[[], Awaitable[None]] = field(kw_only=True)


# A streaming answer (a watch, a large list): the app calls it with `send` after the headers are out.
Streamer = Callable[[Callable[[bytes], Awaitable[None]], "Request"], Awaitable[None]]


@dataclass
class Stream:
    status: int
    streamer: Streamer
    content_type: str = "application/json"
    long_running: bool = True  # a watch (cut at shutdown); a list streams but ends by itself
    # When given, the answer's headers as they are (a proxied answer: its own type and framing), else ours.
    headers: list[tuple[bytes, bytes]] | None = None


Handler = Callable[[Request], Awaitable["Response | Stream"]]


def json_response(status: int, obj: Any, req: Request | None = None) -> Response:
    if req is not None and codec.wants_yaml(req.headers.get("accept")):
        return Response(status, codec.dump_yaml(obj), "application/yaml")
    return Response(status, codec.dump_json(obj))


def status_response(e: errors.StatusError) -> Response:
    return Response(e.code, codec.dump_json(e.status()))


class App:
    """Routes: non-resource paths by exact match or prefix; resource paths to the resource handler."""

    def __init__(
        self,
        registry: Registry,
        authenticator: RequestAuthenticator,
        authorizer: Authorizer,
    ) -> None:
        self.registry = registry
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.paths: dict[str, Handler] = {}
        self.prefixes: list[tuple[str, Handler]] = []
        self.resource_handler: Handler | None = None
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self.ready = False
        self.observe: Callable[[Request, int, float], None] | None = None
        # Shared services later parts look up (e.g. the token issuer for the token controller).
        self.state: dict[str, Any] = {}
        # Turns Impersonate-* headers into the impersonated user (raises a StatusError when not allowed).
        self.impersonator: Callable[[Request], None] | None = None
        # Requests whose handler is running now (streams such as watches count only until they start).
        self.handling = 0
        # How many "authentication failed" lines reach the server log (a burst, then a rate).
        self.failure_log = logs.RateLimit()
        # (group, resource, subresource) of requests whose body the handler streams itself (the proxies): it
        # finds ASGI's receive on the scope (RECEIVE); the body is neither read first nor bounded here.
        self.streamed_bodies: set[tuple[str, str, str]] = set()

    def route(self, path: str, handler: Handler) -> None:
        self.paths[path] = handler

    def route_prefix(self, prefix: str, handler: Handler) -> None:
        self.prefixes.append((prefix, handler))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A WebSocket request (exec, attach, port-forward): authenticated and authorized as a GET, then its
        handler accepts it and runs the session; a refusal is an HTTP answer with the Status, as Go's upgrade
        handlers give it."""
        started = time.perf_counter()
        await receive()  # websocket.connect
        raw_qs = scope.get("query_string", b"")
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        query = parse_qs(raw_qs.decode("latin-1"), keep_blank_values=True) if raw_qs else {}
        scope[WEBSOCKET] = (receive, send)
        req = Request(scope, "GET", scope["path"], query, headers, requestinfo.parse("GET", scope["path"], False))
        try:
            result = await self._handle(req, receive)
        except errors.StatusError as e:
            req.scope[RESPONSE_STATUS] = e.status()
            result = status_response(e)
        except Exception:  # noqa: BLE001 - as in _http
            log.exception("unhandled error serving WebSocket %s", req.path)
            result = status_response(errors.internal("an unexpected error occurred; see the server log"))
        if isinstance(result, Stream | Switch):
            result = status_response(errors.bad_request("this request is not served over a WebSocket"))
        if result.status != SWITCHED:
            with contextlib.suppress(Exception):  # the client may be gone
                await send({"type": "websocket.http.response.start", "status": result.status,
                            "headers": [(b"content-type", result.content_type.encode())]})
                await send({"type": "websocket.http.response.body", "body": result.body})
        if self.observe is not None:
            self.observe(req, result.status, time.perf_counter() - started)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    for fn in self.on_startup:
                        await fn()
                except Exception as e:  # noqa: BLE001 - reported to the server, which exits
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self.ready = False
                for fn in self.on_shutdown:
                    try:
                        await fn()
                    except Exception:  # noqa: BLE001
                        log.exception("shutdown hook failed")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        raw_qs = scope.get("query_string", b"")
        query = parse_qs(raw_qs.decode("latin-1"), keep_blank_values=True) if raw_qs else {}
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = _HEADER_NAMES.get(k) or k.decode("latin-1").lower()
            val = v.decode("latin-1")
            if name not in headers:
                headers[name] = val
            elif name != "authorization":  # Go's Header.Get, which Kubernetes uses, reads the first one
                headers[name] = f"{headers[name]},{val}"
        watch = (query.get("watch") or [""])[0] in _TRUE
        info = requestinfo.parse(method, path, watch)
        req = Request(scope, method, path, query, headers, info)
        self.handling += 1
        try:
            result = await self._handle(req, receive)
        except errors.StatusError as e:
            req.scope[RESPONSE_STATUS] = e.status()
            result = status_response(e)
        except Exception:  # noqa: BLE001 - the one place that turns surprises into a clean 500
            log.exception("unhandled error serving %s %s", method, path)
            result = status_response(errors.internal("an unexpected error occurred; see the server log"))
        finally:
            self.handling -= 1
        if isinstance(result, Stream):
            await self._stream(req, result, receive, send)
        elif isinstance(result, Switch):
            await self._switch(req, result, send)
        else:
            await self._send(req, result, send)
        if self.observe is not None:
            status = result.status
            self.observe(req, status, time.perf_counter() - started)

    async def _send(self, req: Request, res: Response, send: Any) -> None:
        ctype = res.content_type
        hdrs = [
            (b"content-type", b"application/json" if ctype == "application/json" else ctype.encode()),
            (b"content-length", b"%d" % len(res.body)),
        ]
        extra = res.headers
        if not extra:
            hdrs.append((b"cache-control", b"no-cache, private"))
        else:
            if not any(k == b"cache-control" for k, _ in extra):
                hdrs.append((b"cache-control", b"no-cache, private"))
            hdrs.extend(extra)
        if req.warnings:
            hdrs.extend(warning_headers(req.warnings))
        await send({"type": "http.response.start", "status": res.status, "headers": hdrs})
        await send({"type": "http.response.body", "body": res.body if req.method != "HEAD" else b""})

    async def _stream(self, req: Request, res: Stream, receive: Any, send: Any) -> None:
        if res.long_running:
            req.scope[STREAMING] = True
        if res.headers is not None:
            hdrs = list(res.headers)  # the server frames it (Content-Length when given, else chunks)
        else:
            hdrs = [(b"content-type", res.content_type.encode()), (b"cache-control", b"no-cache, private"),
                    (b"transfer-encoding", b"chunked")]
        hdrs.extend(warning_headers(req.warnings))
        await send({"type": "http.response.start", "status": res.status, "headers": hdrs})

        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def wait_disconnect() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return

        producer = asyncio.ensure_future(res.streamer(write, req))
        watcher = asyncio.ensure_future(wait_disconnect())
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (producer, watcher):
                if not t.done():
                    t.cancel()
            for t in (producer, watcher):
                with contextlib.suppress(asyncio.CancelledError, Exception):  # the stream is over either way
                    await t
        with contextlib.suppress(Exception):  # the client is already gone
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _switch(self, req: Request, res: Switch, send: Any) -> None:
        """Take the connection over and run the session on it; the connection is closed when it ends."""
        take: Callable[[list[tuple[bytes, bytes]]], RawConnection] | None = req.scope.get(UPGRADE)
        try:
            conn = take(res.headers) if take is not None else None
        except ConnectionResetError:
            conn = None
        if conn is None:
            await res.abandon()
            if take is None:
                await self._send(req, status_response(errors.bad_request("this connection cannot be upgraded")),
                                 send)
            return
        req.scope[STREAMING] = True
        try:
            await res.session(conn)
        finally:
            conn.close()

    async def _read_body(self, req: Request, receive: Any) -> None:
        length = req.headers.get("content-length")
        if length and length.isdigit() and int(length) > codec.MAX_BODY:
            raise errors.too_large()
        chunks = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            body = msg.get("body", b"")
            size += len(body)
            if size > codec.MAX_BODY:
                raise errors.too_large()
            chunks.append(body)
            if not msg.get("more_body"):
                break
        req.body = b"".join(chunks)

    async def _take_body(self, req: Request, receive: Any) -> None:
        """Read the body of a write, or hand ASGI's receive to a handler that streams it."""
        info = req.info
        if info.resource_request and (info.api_group, info.resource, info.subresource) in self.streamed_bodies:
            req.scope[RECEIVE] = receive
        elif req.method in ("POST", "PUT", "PATCH", "DELETE"):
            await self._read_body(req, receive)

    async def _handle(self, req: Request, receive: Any) -> Response | Stream:
        try:
            cert = req.scope.get(TLS_PEER_DER)
            auth = await self.authenticator.authenticate(cert, req.headers.get("authorization"))
        except AuthenticationFailed as e:
            # The reason goes to the log and the audit log, never to the caller. The log takes a
            # bounded rate of these lines (a client can send bad tokens as fast as it likes); the
            # audit log and the authentication_attempts metric still count every one.
            dropped = self.failure_log.allow()
            if dropped == 0:
                log.warning("authentication failed for %s %s: %s", req.method, req.path, e.reason)
            elif dropped is not None:
                log.warning("authentication failed for %s %s: %s (%d earlier failures not logged: "
                            "more than %g a second)", req.method, req.path, e.reason, dropped,
                            self.failure_log.per_second)
            req.audit["kubesat.io/authentication-failure"] = e.reason
            raise errors.unauthorized() from None
        req.user = auth.user
        if auth.token is not None:
            req.audit.update(auth.token.annotations)
            req.warnings.extend(auth.token.warnings)
        if self.impersonator is not None:
            self.impersonator(req)
        await self._take_body(req, receive)
        info = req.info
        attrs = Attributes(
            user=req.user,
            verb=info.verb,
            resource_request=info.resource_request,
            namespace=info.namespace,
            api_group=info.api_group,
            api_version=info.api_version,
            resource=info.resource,
            subresource=info.subresource,
            name=info.name,
            path=req.path,
            field_selector=req.q("fieldSelector") if info.verb in ("list", "watch") else "",
        )
        decision, reason = self.authorizer.authorize(attrs)
        if decision != ALLOW:
            why = forbidden_message(attrs)
            if reason:
                why += f": {reason}"
            if info.resource_request:
                # Kubernetes names the resource alone here; the subresource is in `why`.
                raise errors.forbidden(info.resource, info.name, why, info.api_group)
            raise errors.StatusError(403, "Forbidden", f"forbidden: {why}", details={})
        handler = self.paths.get(req.path)
        if handler is None and info.resource_request and self.resource_handler is not None:
            handler = self.resource_handler
        if handler is None:
            for prefix, h in self.prefixes:
                if req.path.startswith(prefix):
                    handler = h
                    break
        if handler is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource",
                                     details={})
        return await handler(req)


# kube-apiserver's bounds on Warning headers: past this many characters in all, each warning is cut to
# WARNING_ITEM_RUNES and warnings that come after the cut ones no longer fit are dropped.
WARNING_TOTAL_RUNES = 4 * 1024
WARNING_ITEM_RUNES = 256


def warning_headers(warnings: list[str]) -> list[tuple[bytes, bytes]]:
    """The Warning headers of an answer: duplicates once, and bounded as kube-apiserver bounds them."""
    texts = list(dict.fromkeys(w for w in warnings if w))
    total = sum(len(t) for t in texts)
    if total > WARNING_TOTAL_RUNES:
        cut, written = [], 0
        for t in texts:
            if written >= WARNING_TOTAL_RUNES:
                break
            t = t[:WARNING_ITEM_RUNES]
            cut.append(t)
            written += len(t)
        texts = cut
    return [(b"warning", f'299 - "{_escape_warning(t)}"'.encode("utf-8", "backslashreplace")) for t in texts]


def _escape_warning(text: str) -> str:
    """A warning's text as a quoted-string that any HTTP stack sends: control characters become \\xNN escapes."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    if not text.isprintable():
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
                       for c in text)
    return text
