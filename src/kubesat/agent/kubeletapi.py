"""The kubelet's API on HTTPS (port 10250): container logs, exec, attach and port-forward for the API server.

Only the API server may call it: a client certificate that chains to the cluster CA and names the API
server's kubelet client (`kube-apiserver-kubelet-client`, as kubeadm issues it) is required; no
certificate is 401 and another identity 403, in the kubelet's words. The paths and query parameters are
the kubelet's: `GET /containerLogs/{ns}/{pod}/{container}`, `/exec/...` and `/attach/{ns}/{pod}[/{uid}]/
{container}` and `/portForward/{ns}/{pod}[/{uid}]` over WebSocket channel protocols (`remotecommand`),
plus `/healthz` and `/pods`. Port-forward also speaks SPDY tunneled in a WebSocket (`spdyforward`), which
the API server relays from kubectl as is; SPDY proper (`Upgrade: SPDY/3.1`) is not served here: the API
server serves it to clients and comes here over these WebSockets (`kubesat.api.spdyexec`). Every stream goes
through the runtime's seam (`runtime.Runtime`), whichever runtime the agent runs. An attach is the kubelet's
GetAttach: the container must be running (`container c not found in pod p_ns`), its TTY is the one its spec
allocates whatever the request asks, and the session ends with Success (the exit code is the pod's status's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from kubesat import remotecommand
from kubesat.agent import certs, crilog, serving
from kubesat.agent.client import ApiClient, ApiError
from kubesat.agent.spdyforward import SpdyPortForward
from kubesat.remotecommand import Framing
from kubesat.agent.runtime import ExecRequest, ExecSession, Runtime, RuntimeFailure

log = logging.getLogger("kubesat.agent.kubeletapi")

DEFAULT_PORT = 10250
# The user kube-apiserver presents to kubelets (kubeadm's apiserver-kubelet-client certificate).
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
PEER = "kubesat.kubelet.peer"  # scope key: (user, groups) of the verified client certificate, or None

# Bounds on what a caller can make the agent hold.
MAX_STREAMS = 256  # exec, attach, port-forward and followed logs at once
MAX_MESSAGE = 1 << 20  # one WebSocket message
MAX_QUERY = 64 * 1024
MAX_COMMAND_ARGS = 1024
MAX_PORTS = 64
# After a command exits, how long its output may still drain (a child holding the pipe open).
DRAIN_SECONDS = 5.0
# A serving certificate request that failed (server unreachable, denied) is made again after this.
CERT_RETRY = 10.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class KubeletApiError(Exception):
    """Why the kubelet API cannot be served, in one line."""


class _Refusal(Exception):
    """An answer before any stream starts: an HTTP status and the kubelet's plain-text message."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


# ------------------------------------------------------------------------- who is calling
def peer_identity(peercert: Any) -> tuple[str, tuple[str, ...]] | None:
    """(common name, organizations) of a verified peer certificate in the ssl module's dict form."""
    if not peercert or not isinstance(peercert, dict):
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    return cn, tuple(orgs)


class _Http(HttpToolsProtocol):
    """uvicorn's HTTP protocol with the verified client certificate's identity in every request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer = peer_identity(transport.get_extra_info("peercert"))
        no_delay(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[PEER] = self._peer  # type: ignore[literal-required]


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on a connection, as Go does on every TCP connection. asyncio does so itself only
    on sockets made with IPPROTO_TCP, which `socket.create_server`'s (proto 0, and so the connections accepted on
    it) are not: the last small write of an answer (a response's body after its head, a WebSocket's close after
    the exec's Status) then waited for the peer's delayed ACK, 40 ms on Linux."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _WebSocket(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with the same identity in the scope."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._peer = peer_identity(transport.get_extra_info("peercert"))

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope[PEER] = self._peer


def authorize(peer: tuple[str, tuple[str, ...]] | None, verb: str, allowed: frozenset[str]) -> _Refusal | None:
    """None when the caller may proceed; else the kubelet's 401 or 403."""
    if peer is None:
        return _Refusal(401, "Unauthorized")
    if peer[0] not in allowed:
        return _Refusal(403, f"Forbidden (user={peer[0]}, verb={verb}, resource=nodes, subresource(s)=[proxy])")
    return None


# ------------------------------------------------------------------------------ routing
@dataclass(frozen=True)
class Route:
    kind: str  # healthz, pods, logs, exec, attach, portforward
    namespace: str = ""
    pod: str = ""
    uid: str = ""
    container: str = ""


def route(path: str) -> Route | None:
    """The kubelet endpoint a path names (None: 404)."""
    segs = path.strip("/").split("/")
    head, args = segs[0], segs[1:]
    if head in ("healthz", "pods") and not args:
        return Route(head)
    if head == "containerLogs" and len(args) == 3:
        return Route("logs", args[0], args[1], container=args[2])
    if head in ("exec", "attach") and len(args) in (3, 4):
        uid = args[2] if len(args) == 4 else ""
        return Route(head, args[0], args[1], uid, args[-1])
    if head == "portForward" and len(args) in (2, 3):
        return Route("portforward", args[0], args[1], args[2] if len(args) == 3 else "")
    return None


def _verb(method: str) -> str:
    return {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete"}.get(method, method.lower())


def _containers(pod: dict[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    return [str(c.get("name", "")) for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or [] if isinstance(c, dict)]


def _container_spec(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
    spec = pod.get("spec") or {}
    return next((c for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or []
                 if isinstance(c, dict) and c.get("name") == name), None)


def exec_request(uid: str, container: str, query: dict[str, list[str]], attach: bool) -> ExecRequest:
    """The ExecRequest of an exec or attach query (`command` repeated; `input`, `output`, `error`, `tty` = 1)."""
    command = [] if attach else list(query.get("command") or [])
    if len(command) > MAX_COMMAND_ARGS:
        raise _Refusal(400, f"too many command arguments (at most {MAX_COMMAND_ARGS})")
    if not attach and not command:
        raise _Refusal(400, "you must specify at least one command for the container")

    def on(name: str) -> bool:
        return (query.get(name) or [""])[0] in ("1", "true", "True")

    req = ExecRequest(uid, container, command, stdin=on("input"), stdout=on("output"), stderr=on("error"),
                      tty=on("tty"))
    if not (req.stdin or req.stdout or req.stderr):
        raise _Refusal(400, "you must specify at least 1 of stdin, stdout, stderr")
    return req


def forward_ports(query: dict[str, list[str]]) -> list[int]:
    """The `ports` of a port-forward query (repeated or comma-separated)."""
    raw = [p.strip() for value in query.get("ports") or [] for p in value.split(",") if p.strip()]
    if not raw:
        raise _Refusal(400, 'query parameter "ports" is required')
    if len(raw) > MAX_PORTS:
        raise _Refusal(400, f"too many ports (at most {MAX_PORTS})")
    ports = []
    for p in raw:
        if not p.isdigit() or not 0 < int(p) <= 0xFFFF:
            raise _Refusal(400, f'unable to parse "{p[:16]}" as a port: invalid syntax')
        ports.append(int(p))
    return ports


# ------------------------------------------------------------------------------ the app
class KubeletApi:
    """The ASGI application behind the kubelet port."""

    def __init__(self, pods: Callable[[], Iterable[dict[str, Any]]], runtime: Callable[[], Runtime | None],
                 allowed_users: frozenset[str] = frozenset({KUBELET_CLIENT_USER}),
                 clock: Callable[[], float] = time.time) -> None:
        self.pods = pods
        self.runtime = runtime
        self.allowed_users = allowed_users
        self.clock = clock
        self.streams = 0

    def find_pod(self, namespace: str, name: str, uid: str = "") -> dict[str, Any] | None:
        for pod in self.pods():
            meta = pod.get("metadata") or {}
            if meta.get("namespace") == namespace and meta.get("name") == name and (not uid or meta.get("uid") == uid):
                return pod
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            return
        websocket = kind == "websocket"
        if websocket:
            await receive()  # websocket.connect
        try:
            handler = self._handler(scope)
            if self.streams >= MAX_STREAMS:
                raise _Refusal(429, f"too many streams (at most {MAX_STREAMS} at once)")
            self.streams += 1
            try:
                await handler(scope, receive, send)
            finally:
                self.streams -= 1
        except _Refusal as r:
            await (_reject_websocket(send, r) if websocket else _text(send, r.code, r.text))

    def _handler(self, scope: Scope) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        method = scope.get("method", "GET")
        refusal = authorize(scope.get(PEER), _verb(method), self.allowed_users)
        if refusal is not None:
            raise refusal
        if len(scope.get("query_string", b"")) > MAX_QUERY:
            raise _Refusal(414, "request URI too long")
        where = route(scope["path"])
        if where is None:
            raise _Refusal(404, "404 page not found")
        websocket = scope["type"] == "websocket"
        if where.kind in ("exec", "attach", "portforward") and not websocket:
            raise _Refusal(400, "Upgrade request required: this kubelet serves exec, attach and portForward over "
                                "WebSockets only")
        if where.kind in ("healthz", "pods", "logs") and (websocket or method not in ("GET", "HEAD")):
            raise _Refusal(405, "Method Not Allowed")

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            if where.kind == "healthz":
                await _text(send, 200, "ok")
            elif where.kind == "pods":
                items = list(self.pods())
                await _send(send, 200, orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                                     "items": items}), b"application/json")
            elif where.kind == "logs":
                await self._logs(where, query, send)
            elif where.kind == "portforward":
                await self._port_forward(where, query, negotiate(scope, remotecommand.PORT_FORWARD_PROTOCOLS
                                                                 + (remotecommand.PORT_FORWARD_TUNNEL_HOP,)),
                                         receive, send)
            else:
                await self._exec(where, query, negotiate(scope, remotecommand.EXEC_PROTOCOLS), receive, send)
        return handle

    # -------------------------------------------------------------------------- logs
    def _statuses(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        uid = str(pod["metadata"].get("uid", ""))
        runtime = self.runtime()
        held = runtime.container_statuses(uid) if runtime is not None else None
        if held is not None:
            return held
        status = pod.get("status") or {}
        return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]

    def _running(self, pod: dict[str, Any], container: str) -> Callable[[], bool]:
        def running() -> bool:
            for s in self._statuses(pod):
                if isinstance(s, dict) and s.get("name") == container:
                    return bool((s.get("state") or {}).get("running"))
            return False
        return running

    async def _logs(self, where: Route, query: dict[str, list[str]], send: Send) -> None:
        pod = self.find_pod(where.namespace, where.pod)
        if pod is None:
            raise _Refusal(404, f'pod "{where.pod}" does not exist')
        if where.container not in _containers(pod):
            raise _Refusal(404, f'container "{where.container}" not found in pod "{where.pod}"')
        try:
            opts, previous = crilog.query_options(query, int(self.clock() * 1e9))
            from_previous = crilog.log_source(self._statuses(pod), where.container, where.pod, previous)
        except (ValueError, crilog.LogStatusError) as e:
            raise _Refusal(400, str(e)) from None
        uid = str(pod["metadata"].get("uid", ""))
        runtime = self.runtime()
        path = runtime.log_path(uid, where.container, from_previous) if runtime is not None else None
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"cache-control", b"no-cache, private")]})

        async def write(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        if path is not None and path.exists():
            running = self._running(pod, where.container) if not from_previous else (lambda: False)
            with contextlib.suppress(OSError):
                await crilog.read_log(path, opts, write, running)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -------------------------------------------------------------------------- exec, attach
    def _runtime(self) -> Runtime:
        runtime = self.runtime()
        if runtime is None:
            raise _Refusal(500, 'container runtime "none" runs no processes: exec, attach and port-forward need '
                                "`kubesat agent --runtime process`")
        return runtime

    async def _exec(self, where: Route, query: dict[str, list[str]], framing: Framing, receive: Receive,
                    send: Send) -> None:
        pod = self.find_pod(where.namespace, where.pod, where.uid)
        if pod is None:
            raise _Refusal(404, "pod does not exist")
        request = exec_request(str(pod["metadata"].get("uid", "")), where.container, query, where.kind == "attach")
        runtime = self._runtime()
        try:
            if where.kind == "attach":
                request.tty = self._attach_tty(pod, where.container)
                session = await runtime.attach(request)
            else:
                session = await runtime.exec(request)
        except RuntimeFailure as e:
            raise _Refusal(500, str(e)) from None
        await send({"type": "websocket.accept", "subprotocol": framing.protocol or None})
        await run_session(framing, session, request, receive, send)

    def _attach_tty(self, pod: dict[str, Any], container: str) -> bool:
        """The kubelet's GetAttach: the container must be running, and the session has a TTY when the container's
        spec allocates one, whatever the request says (a process's terminal cannot change once it runs)."""
        meta = pod.get("metadata") or {}
        full_name = f"{meta.get('name', '')}_{meta.get('namespace', '')}"
        spec = _container_spec(pod, container)
        if spec is None or not self._running(pod, container)():
            raise RuntimeFailure(f"container {container} not found in pod {full_name}")
        return spec.get("tty") is True

    # -------------------------------------------------------------------------- port-forward
    async def _port_forward(self, where: Route, query: dict[str, list[str]], framing: Framing, receive: Receive,
                            send: Send) -> None:
        pod = self.find_pod(where.namespace, where.pod, where.uid)
        if pod is None:
            raise _Refusal(404, "pod does not exist")
        uid = str(pod["metadata"].get("uid", ""))
        if framing.protocol == remotecommand.PORT_FORWARD_TUNNEL_HOP:  # ports come with each stream
            runtime = self._runtime()
            await send({"type": "websocket.accept", "subprotocol": framing.protocol})
            await SpdyPortForward(lambda port: runtime.open_port(uid, port), uid, send).run(receive)
            return
        ports = forward_ports(query)
        runtime = self._runtime()
        await send({"type": "websocket.accept", "subprotocol": framing.protocol or None})
        await forward(framing, ports, lambda port: runtime.open_port(uid, port), uid, receive, send)


def negotiate(scope: Scope, supported: tuple[str, ...]) -> Framing:
    """The framing of the subprotocol to accept ("" when the client offered none: the original binary one)."""
    offered = [str(p) for p in scope.get("subprotocols") or []][:32]
    chosen = remotecommand.choose(offered, supported)
    if chosen is None:
        raise _Refusal(400, f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                            f"server supports {list(supported)}")
    return Framing(chosen)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(send: Send, code: int, body: bytes, ctype: bytes) -> None:
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def _text(send: Send, code: int, text: str) -> None:
    await _send(send, code, text.encode() + b"\n" if code >= 400 else text.encode(), b"text/plain; charset=utf-8")


async def _reject_websocket(send: Send, r: _Refusal) -> None:
    """Refuse an upgrade with an HTTP answer (the ASGI websocket.http.response extension)."""
    body = r.text.encode()
    await send({"type": "websocket.http.response.start", "status": r.code,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "websocket.http.response.body", "body": body})


def _message(data: bytes | str) -> dict[str, Any]:
    if isinstance(data, str):
        return {"type": "websocket.send", "text": data}
    return {"type": "websocket.send", "bytes": data}


def _payload(msg: dict[str, Any]) -> bytes | str | None:
    data = msg.get("bytes")
    return data if data is not None else msg.get("text")


# ------------------------------------------------------------------------------ one exec session
async def run_session(framing: Framing, session: ExecSession, request: ExecRequest, receive: Receive,
                      send: Send) -> None:
    """Relay a started command's streams over the WebSocket until it exits (then its Status on the error
    channel) or the caller goes away (then the command is killed). An attach session the same way: it ends
    with Success, as the kubelet's ServeAttach (the container's exit code is in the pod's status), or with
    `error attaching to container: ...`; the caller going away detaches it."""
    async def pump(channel: int, read: Callable[[], Awaitable[bytes]]) -> None:
        while data := await read():
            await send(_message(framing.encode(channel, data)))

    pumps = []
    if request.stdout or request.tty:
        pumps.append(asyncio.create_task(pump(remotecommand.STDOUT, session.read_stdout)))
    if request.stderr and not request.tty:
        pumps.append(asyncio.create_task(pump(remotecommand.STDERR, session.read_stderr)))
    inbound = asyncio.create_task(_inbound(framing, session, request, receive))
    waiter = asyncio.create_task(session.wait())
    try:
        await asyncio.wait({waiter, inbound}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():  # the caller left: the command goes too
            await session.kill()
            return
        if pumps:
            await asyncio.wait(pumps, timeout=DRAIN_SECONDS)
        status = _end_status(waiter, request)
        with contextlib.suppress(Exception):  # the caller may be gone already
            await send(_message(framing.encode(remotecommand.ERROR, remotecommand.error_payload(framing, status))))
            await send({"type": "websocket.close", "code": 1000})
    finally:
        for task in (*pumps, inbound, waiter):
            task.cancel()
        await asyncio.gather(*pumps, inbound, waiter, return_exceptions=True)


def _end_status(waiter: asyncio.Task[int], request: ExecRequest) -> dict[str, Any]:
    """The Status a finished session leaves on the error channel."""
    try:
        code = waiter.result()
    except RuntimeFailure as e:
        return remotecommand.internal_status(f"error attaching to container: {e}")
    if code == 0:
        return remotecommand.success_status()
    return remotecommand.exit_code_status(code, request.command)


async def _frames(framing: Framing, receive: Receive) -> AsyncIterator[tuple[int, bytes]]:
    """The caller's messages as (channel, payload), until it disconnects; what is not a frame is skipped."""
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        data = _payload(msg)
        if data is None:
            continue
        try:
            frame = framing.decode(data)
        except remotecommand.FrameError:
            continue
        yield frame


async def _inbound(framing: Framing, session: ExecSession, request: ExecRequest, receive: Receive) -> None:
    """The caller's messages: stdin, resize and (v5) the close of stdin, until it disconnects."""
    async for channel, payload in _frames(framing, receive):
        if channel == remotecommand.STDIN and request.stdin and payload:
            await session.write_stdin(payload)
        elif channel == remotecommand.RESIZE and framing.resize:
            size = remotecommand.parse_resize(payload)
            if size is not None:
                session.resize(*size)
        elif channel == remotecommand.CLOSE and payload[:1] == bytes((remotecommand.STDIN,)) and request.stdin:
            await session.close_stdin()


# ------------------------------------------------------------------------------ port-forward
async def forward(framing: Framing, ports: list[int],
                  dial: Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
                  pod_id: str, receive: Receive, send: Send) -> None:
    """The kubelet's WebSocket port-forward: port i on data channel 2i and error channel 2i+1, each channel's
    first message the port (uint16, little-endian); a connection per port, opened at once. As the kubelet
    does, the WebSocket is closed once every port's connection has ended (a port that could not be reached
    has its error on its error channel)."""
    writers: dict[int, asyncio.StreamWriter] = {}
    tasks = []
    for i, port in enumerate(ports):
        prefix = struct.pack("<H", port)
        await send(_message(framing.encode(2 * i, prefix)))
        await send(_message(framing.encode(2 * i + 1, prefix)))
        try:
            reader, writer = await dial(port)
        except (OSError, RuntimeFailure) as e:
            text = f"error forwarding port {port} to pod {pod_id}, uid : {e}"
            await send(_message(framing.encode(2 * i + 1, text.encode())))
            continue
        writers[2 * i] = writer
        tasks.append(asyncio.create_task(_port_out(framing, 2 * i, reader, send)))
    inbound = asyncio.create_task(_port_in(framing, writers, receive))
    try:
        pending = set(tasks)
        while pending and not inbound.done():
            done, _ = await asyncio.wait({*pending, inbound}, return_when=asyncio.FIRST_COMPLETED)
            pending -= done
    finally:
        for task in (*tasks, inbound):
            task.cancel()
        for writer in writers.values():
            writer.close()
        await asyncio.gather(*tasks, inbound, return_exceptions=True)
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})


async def _port_in(framing: Framing, writers: dict[int, asyncio.StreamWriter], receive: Receive) -> None:
    """The caller's messages to the pod's connections, until it disconnects."""
    async for channel, payload in _frames(framing, receive):
        target = writers.get(channel)
        if target is not None and payload:
            target.write(payload)
            await target.drain()


async def _port_out(framing: Framing, channel: int, reader: asyncio.StreamReader, send: Send) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(32 * 1024):
            await send(_message(framing.encode(channel, data)))


# ------------------------------------------------------------------------------ the server
class _Server(uvicorn.Server):
    """uvicorn's server, leaving the agent's own signal handling alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class KubeletServer:
    """The HTTPS listener: bound at once (so that the Node's status can report the port), serving once the
    serving certificate is in hand."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            self.sock = socket.create_server((address, port), family=family)
        except OSError as e:
            if port != DEFAULT_PORT:
                raise KubeletApiError(f"cannot listen on {address}:{port} for the kubelet API (--port): "
                                      f"{e.strerror or e}") from None
            # Several agents on one machine (tests, a local node beside another): the default port may be
            # another's; the Node's status names the port actually used.
            self.sock = socket.create_server((address, 0), family=family)
            log.warning("kubelet API port %d on %s is taken (%s); using %d instead", port, address,
                        e.strerror or e, self.sock.getsockname()[1])
        self.port = int(self.sock.getsockname()[1])
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, app: KubeletApi, context: ssl.SSLContext) -> None:
        config = uvicorn.Config(
            app, http=_Http, ws=_WebSocket, loop="none", lifespan="off", log_config=None, access_log=False,
            log_level="warning",  # uvicorn's start and per-connection lines: the agent logs its own
            ssl_context_factory=lambda _config, _default: context, ws_max_size=MAX_MESSAGE,
            ws_per_message_deflate=False, server_header=False, timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            await self._task
        log.info("kubelet API serving on https://%s:%d", self.address, self.port)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
        self.sock.close()

    async def serve(self, api: ApiClient, node: str, cert_dir: Path, client_ca_pem: bytes,
                    pods: Callable[[], Iterable[dict[str, Any]]], runtime: Callable[[], Runtime | None]) -> None:
        """Get the serving certificate (a kubelet-serving CSR), then serve until cancelled."""
        try:
            while True:
                try:
                    pair = await serving.serving_pair(api, cert_dir, node, self.address, time.time())
                    break
                except (certs.CertificateError, ApiError, httpx.HTTPError) as e:
                    log.warning("no kubelet serving certificate yet (retrying in %.0f s): %s", CERT_RETRY, e)
                    await asyncio.sleep(CERT_RETRY)
            context = serving.context(pair, cert_dir, client_ca_pem)
            await self.start(KubeletApi(pods, runtime), context)
            await asyncio.Event().wait()
        finally:
            await self.stop()
