"""pods/log, pods/exec, pods/attach, pods/portforward and nodes/proxy: proxied to the kubelet API of the pod's node.

As kube-apiserver does it: the pod is looked up and its container chosen (Kubernetes' BadRequest messages
when it cannot be), the node's address is its first InternalIP, ExternalIP or Hostname address
(kubeadm's `--kubelet-preferred-address-types`) and its port `status.daemonEndpoints.kubeletEndpoint.Port`;
the server connects with its kubelet client certificate (`--kubelet-client-certificate`) and checks the
kubelet's serving certificate against the cluster CA and the node's address. Logs are a plain HTTP stream.
Exec and attach are WebSockets relayed message by message to the kubelet's WebSocket; as kube-apiserver's
stream translator does, the client's WebSocket is accepted first and a failure to reach the kubelet is
a Status on the error channel (`Internal error occurred: error dialing backend: ...`). Port-forward's
WebSockets (kubectl's SPDY tunneled in binary messages, `SPDY/3.1+portforward.k8s.io`, and the
`v4.channel.k8s.io` channels) are relayed the same way once the kubelet has accepted, so that a refusal is
the kubelet's Status; the agent's kubelet API speaks the tunneled SPDY itself, as kube-apiserver leaves SPDY
to the kubelet. SPDY proper (`Upgrade: SPDY/3.1`, what kubectl does with WebSockets turned off and clients
before 1.30 do) is served too: the protocol is negotiated from `X-Stream-Protocol-Version` as the kubelet's
`httpstream.Handshake` does (the client's first offer the server supports; its errors), the kubelet's
WebSocket is dialed (its refusal, or a failure to reach it, is the HTTP answer, as kube-apiserver's
upgrade-aware proxy gives it), and only then is the connection switched (101). Exec and attach are then
translated stream by stream to the kubelet's `v5.channel.k8s.io` (`spdyexec`); port-forward's SPDY bytes
are relayed as they are into the kubelet's tunnel, whose agent reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from kubesat import errors, remotecommand
from kubesat.api import spdyexec
from kubesat.api.app import SWITCHED, UPGRADE, WEBSOCKET, Request, Response, Stream, Switch
from kubesat.api.rawconn import RawConnection
from kubesat.pki import ClusterPKI
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.api.streams")

PODS = builtin_kind("v1", "Pod")
NODES = builtin_kind("v1", "Node")
KUBELET_PORT = 10250
ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname")
# Bounds: one WebSocket message, the streams the server relays at once, how long a kubelet may take to answer.
MAX_MESSAGE = 1 << 20
MAX_STREAMS = 1024
DIAL_TIMEOUT = 30.0
# A kubelet's error answer is read up to this much (Go's GenericHttpResponseChecker reads 50,000 bytes).
MAX_ERROR_BODY = 50_000
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            429: "TooManyRequests"}
# SPDY/3.1 proper: the upgrade's name, the header that negotiates the protocol, port-forward's one protocol.
SPDY_UPGRADE = "SPDY/3.1"
PROTOCOL_HEADER = "X-Stream-Protocol-Version"
PORT_FORWARD_SPDY = "portforward.k8s.io"
MAX_OFFERS = 32
TUNNEL_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Backend:
    """A node's kubelet API."""

    host: str
    port: int

    def url(self, path: str, query: str = "", scheme: str = "https") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}" + (f"?{query}" if query else "")

    def dial_error(self, e: BaseException) -> str:
        """How Go words a failed dial, after `dial tcp HOST:PORT: `."""
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"tls: failed to verify certificate: {e.verify_message}"
        text = str(e)
        if isinstance(e, ConnectionRefusedError) or "refused" in text.lower():
            why = "connect: connection refused"
        elif isinstance(e, TimeoutError) or "timed out" in text.lower():
            why = "i/o timeout"
        else:
            why = text or type(e).__name__
        return f"dial tcp {self.host}:{self.port}: {why}"


def node_backend(node: dict[str, Any]) -> Backend:
    status = node.get("status") or {}
    addresses = [a for a in status.get("addresses") or [] if isinstance(a, dict)]
    for kind in ADDRESS_TYPES:
        for a in addresses:
            if a.get("type") == kind and a.get("address"):
                port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
                return Backend(str(a["address"]), port if isinstance(port, int) and 0 < port < 65536
                               else KUBELET_PORT)
    known = ", ".join(f'{{{a.get("type")} {a.get("address")}}}' for a in addresses)
    raise errors.internal(f"no preferred addresses found; known addresses: [{known}]")


def pick_container(pod: dict[str, Any], requested: str) -> str:
    """The container a request names, or the pod's only one (Kubernetes' validateContainer)."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    every = [str(c.get("name", "")) for key in ("initContainers", "containers", "ephemeralContainers")
             for c in spec.get(key) or [] if isinstance(c, dict)]
    if not requested:
        containers = spec.get("containers") or []
        if len(containers) == 1:
            return str(containers[0].get("name", ""))
        if not containers:
            raise errors.bad_request(f"a container name must be specified for pod {name}")
        raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                 f"[{' '.join(every)}]")
    if requested not in every:
        raise errors.bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def _int_param(req: Request, name: str) -> int | None:
    value = req.q(name)
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f'invalid value for query parameter {name}: "{value[:64]}" is not an integer') \
            from None


def log_query(req: Request) -> str:
    """The kubelet's containerLogs query of a pods/log request, validated as PodLogOptions."""
    name = req.info.name
    problems = []
    since_seconds, tail, limit = _int_param(req, "sinceSeconds"), _int_param(req, "tailLines"), \
        _int_param(req, "limitBytes")
    if since_seconds is not None and since_seconds < 1:
        problems.append(f"sinceSeconds: Invalid value: {since_seconds}: must be greater than 0")
    if tail is not None and tail < 0:
        problems.append(f"tailLines: Invalid value: {tail}: must be greater than or equal to 0")
    if limit is not None and limit < 1:
        problems.append(f"limitBytes: Invalid value: {limit}: must be greater than 0")
    if since_seconds is not None and req.q("sinceTime"):
        problems.append("sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified")
    if problems:
        raise errors.StatusError(422, "Invalid", f'PodLogOptions "{name}" is invalid: ' + "; ".join(problems),
                                 details={"name": name, "kind": "PodLogOptions"})
    params: list[tuple[str, str]] = []
    for flag in ("follow", "previous", "timestamps"):
        if req.flag(flag):
            params.append((flag, "true"))
    for key, value in (("sinceSeconds", since_seconds), ("tailLines", tail), ("limitBytes", limit)):
        if value is not None:
            params.append((key, str(value)))
    if req.q("sinceTime"):
        params.append(("sinceTime", req.q("sinceTime")[:64]))
    return urlencode(params)


def exec_query(req: Request, attach: bool) -> str:
    """The kubelet's query of a pods/exec or pods/attach request (PodExecOptions / PodAttachOptions)."""
    streams = {key: req.flag(flag) for key, flag in (("input", "stdin"), ("output", "stdout"), ("error", "stderr"),
                                                      ("tty", "tty"))}
    if not (streams["input"] or streams["output"] or streams["error"]):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    params = [] if attach else [("command", c) for c in req.query.get("command") or []]
    if not attach and not params:
        raise errors.bad_request("you must specify at least one command for the container")
    params += [(key, "1") for key, on in streams.items() if on]
    return urlencode(params)


def _kubelet_status(code: int, body: bytes) -> errors.StatusError:
    """A kubelet's error answer as the Status kube-apiserver makes of it (its text becomes the message)."""
    text = body[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
    reason = _REASONS.get(code, "InternalError")
    return errors.StatusError(code if code in _REASONS else 500, reason, text or f"status code {code}", details={})


class StreamProxy:
    """The server's half of the streams."""

    def __init__(self, registry: Registry, pki: ClusterPKI) -> None:
        self.registry = registry
        self.pki = pki
        self.active = 0
        self._ssl: ssl.SSLContext | None = None
        self._http: httpx.AsyncClient | None = None

    def tls(self) -> ssl.SSLContext:
        """Trusts the cluster CA (kubelet serving certificates are issued by it) and presents the kubelet
        client certificate."""
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
            ctx.load_cert_chain(str(self.pki.kubelet_client_cert), str(self.pki.kubelet_client_key))
            self._ssl = ctx
        return self._ssl

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(verify=self.tls(), timeout=httpx.Timeout(DIAL_TIMEOUT, read=None),
                                           trust_env=False)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _backend(self, pod: dict[str, Any]) -> Backend:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
        node = await self.registry.get(NODES, "", str(node_name))
        return node_backend(node)

    # ----------------------------------------------------------------------------- logs
    async def log(self, req: Request) -> Response | Stream:
        if req.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        pod = await self.registry.get(PODS, req.info.namespace, req.info.name)
        container = pick_container(pod, req.q("container"))
        query = log_query(req)
        if not (pod.get("spec") or {}).get("nodeName"):
            return Response(200, b"", "text/plain")  # no host yet: no logs (kube-apiserver's empty location)
        backend = await self._backend(pod)
        path = "/containerLogs/" + "/".join(quote(p, safe="") for p in (req.info.namespace, req.info.name,
                                                                         container))
        return await self._get(backend, path, query, "text/plain")

    async def _get(self, backend: Backend, path: str, query: str, content_type: str) -> Response | Stream:
        """A GET to the kubelet, its body streamed back; an error answer becomes a Status."""
        url = backend.url(path, query)
        client = self.http()
        try:
            resp = await client.send(client.build_request("GET", url), stream=True)
        except (httpx.HTTPError, OSError) as e:
            raise errors.StatusError(500, "", f'Get "{url}": {backend.dial_error(e.__cause__ or e)}',
                                     details={}) from None
        if resp.status_code >= 300:
            body = b""
            with contextlib.suppress(httpx.HTTPError):
                async for chunk in resp.aiter_raw():
                    body += chunk
                    if len(body) >= MAX_ERROR_BODY:
                        break
            await resp.aclose()
            raise _kubelet_status(resp.status_code, body)
        self._take()
        return Stream(resp.status_code, body_relay(resp, self._give_back, f"kubelet stream from {backend.host}"),
                      resp.headers.get("content-type", content_type))

    def _give_back(self) -> None:
        self.active -= 1

    def _take(self) -> None:
        if self.active >= MAX_STREAMS:
            raise errors.StatusError(429, "TooManyRequests",
                                     f"too many streams through this server (at most {MAX_STREAMS})", details={})
        self.active += 1

    # ------------------------------------------------------------------------ exec, attach, portforward
    async def connect(self, req: Request) -> Response:
        sub = req.info.subresource
        if req.method not in ("GET", "POST"):
            raise errors.method_not_allowed()
        pod = await self.registry.get(PODS, req.info.namespace, req.info.name)
        ns_name = (req.info.namespace, req.info.name)
        if sub == "portforward":
            path = "/portForward/" + "/".join(quote(p, safe="") for p in ns_name)
            query = urlencode([("ports", p) for p in req.query.get("ports") or []])
            supported: tuple[str, ...] = (remotecommand.PORT_FORWARD_TUNNEL, *remotecommand.PORT_FORWARD_PROTOCOLS)
            channel_errors: tuple[str, ...] | None = None
        else:
            container = pick_container(pod, req.q("container"))
            query = exec_query(req, sub == "attach")
            path = f"/{sub}/" + "/".join(quote(p, safe="") for p in (*ns_name, container))
            supported = channel_errors = remotecommand.EXEC_PROTOCOLS
        backend = await self._backend(pod)
        if WEBSOCKET not in req.scope:
            if not req.headers.get("upgrade"):
                raise errors.bad_request("Upgrade request required")
            return await self._spdy(req, backend, path, query, "/".join(ns_name))
        return await self._websocket(req, backend, path, query, supported, channel_errors, "/".join(ns_name))

    async def _spdy(self, req: Request, backend: Backend, path: str, query: str, name: str) -> Switch:
        """SPDY/3.1 proper: negotiated, the kubelet dialed (its refusal is the answer), then switched."""
        if SPDY_UPGRADE.lower() not in req.headers.get("upgrade", "").lower() or UPGRADE not in req.scope:
            raise errors.bad_request(f"unable to upgrade: missing upgrade headers in request: Connection: Upgrade "
                                     f"and Upgrade: {SPDY_UPGRADE} are required")
        forward = req.info.subresource == "portforward"
        chosen = spdy_handshake(req.scope["headers"], (PORT_FORWARD_SPDY,) if forward else spdyexec.PROTOCOLS)
        channels = None if forward else spdyexec.Channels(req.flag("stdin"), req.flag("stdout"),
                                                          req.flag("stderr"), req.flag("tty"))
        self._take()
        try:
            upstream = await self._dial_or_refuse(
                backend, path, query, remotecommand.PORT_FORWARD_TUNNEL_HOP if forward else remotecommand.V5)
        except BaseException:
            self.active -= 1
            raise
        log.debug("relaying SPDY %s of %s to %s", req.info.subresource, name, backend.host)

        async def session(conn: RawConnection) -> None:
            try:
                if channels is None:
                    await tunnel(conn, upstream)
                else:
                    await spdyexec.SpdyExec(conn, upstream, chosen, channels, name).run()
            finally:
                await abandon()

        async def abandon() -> None:
            self.active -= 1
            await upstream.close()

        headers = [(b"connection", b"Upgrade"), (b"upgrade", SPDY_UPGRADE.encode()),
                   (PROTOCOL_HEADER.lower().encode(), chosen.encode())]
        return Switch(SWITCHED, b"", headers=headers, session=session, abandon=abandon)

    async def _websocket(self, req: Request, backend: Backend, path: str, query: str,
                         supported: tuple[str, ...], channel_errors: tuple[str, ...] | None, name: str) -> Response:
        """Relay the client's WebSocket to the kubelet's. With `channel_errors` (exec, attach) the client is
        accepted first and a failure to reach the kubelet goes on the error channel; otherwise it is the
        refusal's Status."""
        receive, send = req.scope[WEBSOCKET]
        offered = [str(p) for p in req.scope.get("subprotocols") or []][:32]
        chosen = remotecommand.choose(offered, supported)
        if chosen is None:
            raise errors.bad_request(f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                     f"server supports {list(supported)}")
        self._take()
        try:
            if channel_errors is not None:
                await send({"type": "websocket.accept", "subprotocol": chosen or None})
                upstream = await self._dial(backend, path, query, chosen, remotecommand.Framing(chosen), send)
            else:
                hop = remotecommand.PORT_FORWARD_TUNNEL_HOP if chosen == remotecommand.PORT_FORWARD_TUNNEL else chosen
                upstream = await self._dial_or_refuse(backend, path, query, hop)
                await send({"type": "websocket.accept", "subprotocol": chosen if upstream.subprotocol else None})
            if upstream is not None:
                log.debug("relaying %s of %s to %s", path.split("/")[1], name, backend.host)
                await relay(upstream, receive, send)
        finally:
            self.active -= 1
        return Response(SWITCHED, b"")

    async def _open(self, backend: Backend, path: str, query: str, protocol: str) -> ClientConnection:
        return await connect(backend.url(path, query, "wss"), ssl=self.tls(),
                             subprotocols=[Subprotocol(protocol)] if protocol else None, max_size=MAX_MESSAGE,
                             open_timeout=DIAL_TIMEOUT, ping_interval=None, compression=None,
                             user_agent_header="kubesat-apiserver")

    async def _dial(self, backend: Backend, path: str, query: str, protocol: str, framing: remotecommand.Framing,
                    send: Callable[[dict[str, Any]], Awaitable[None]]) -> ClientConnection | None:
        """The kubelet's WebSocket, or None after writing why not on the client's error channel."""
        try:
            return await self._open(backend, path, query, protocol)
        except InvalidStatus as e:
            body = bytes(e.response.body or b"")[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
            message = f"unable to upgrade connection: {body or e.response.reason_phrase}"
        except (OSError, TimeoutError, InvalidHandshake) as e:
            message = f"error dialing backend: {backend.dial_error(e)}"
        status = remotecommand.internal_status(message)
        with contextlib.suppress(Exception):
            await send({"type": "websocket.send", **_frame(framing.encode(remotecommand.ERROR,
                                                                          remotecommand.error_payload(framing,
                                                                                                      status)))})
            await send({"type": "websocket.close", "code": 1000})
        return None

    async def _dial_or_refuse(self, backend: Backend, path: str, query: str, protocol: str) -> ClientConnection:
        try:
            return await self._open(backend, path, query, protocol)
        except InvalidStatus as e:
            raise _kubelet_status(e.response.status_code, bytes(e.response.body or b"")) from None
        except (OSError, TimeoutError, InvalidHandshake) as e:
            raise errors.StatusError(500, "", f"error dialing backend: {backend.dial_error(e)}", details={}) from None

    # ----------------------------------------------------------------------------- nodes/proxy
    async def node_proxy(self, req: Request) -> Response | Stream:
        """nodes/NAME/proxy/PATH as a WebSocket, relayed as is to the kubelet's PATH (plain HTTP requests to
        nodes/proxy are relayed by proxy_api, which hands WebSockets here)."""
        if WEBSOCKET not in req.scope:
            raise errors.method_not_allowed()
        node = await self.registry.get(NODES, "", req.info.name)
        backend = node_backend(node)
        prefix = f"/api/v1/nodes/{req.info.name}/proxy"
        path = req.path[len(prefix):] if req.path.startswith(prefix) else ""
        path = path if path.startswith("/") else "/" + path
        query = req.scope.get("query_string", b"").decode("latin-1")
        offered = [str(p) for p in req.scope.get("subprotocols") or []]
        chosen = offered[0] if offered else ""
        supported = (chosen,) if chosen in remotecommand.EXEC_PROTOCOLS else remotecommand.EXEC_PROTOCOLS
        return await self._websocket(req, backend, path, query, supported, None, req.info.name)


def body_relay(resp: httpx.Response, release: Callable[[], None],
               what: str) -> Callable[[Callable[[bytes], Awaitable[None]], Request], Awaitable[None]]:
    """A Stream body that writes a backend's answer as it comes; `release` and the answer's close run at its end,
    however it ends (an early end of the backend is one log line)."""
    async def relay(write: Callable[[bytes], Awaitable[None]], _req: Request) -> None:
        try:
            async for chunk in resp.aiter_raw():
                await write(chunk)
        except httpx.HTTPError as e:
            log.info("%s ended early: %s", what, e)
        finally:
            release()
            await resp.aclose()

    return relay


def spdy_handshake(headers: list[tuple[bytes, bytes]], supported: tuple[str, ...]) -> str:
    """The protocol to speak: the first the client offers in X-Stream-Protocol-Version (one header or several,
    comma-separated) that the server supports; the kubelet's `httpstream.Handshake` errors otherwise."""
    name = PROTOCOL_HEADER.lower().encode()
    values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
    if not values:
        raise errors.bad_request(f"unable to upgrade: header {PROTOCOL_HEADER} does not exist in request with "
                                 f"{len({k.lower() for k, _ in headers})} headers")
    offered = [p.strip() for v in values for p in v.split(",") if p.strip()][:MAX_OFFERS]
    if not offered:
        raise errors.bad_request(f"unable to upgrade: header {PROTOCOL_HEADER} contains "
                                 f"{_go_list(values[:MAX_OFFERS])}, but no valid protocols")
    for p in offered:
        if p in supported:
            return p
    raise errors.StatusError(403, "Forbidden", f"unable to upgrade: unable to negotiate protocol: client supports "
                                               f"{_go_list(offered)}, server accepts {_go_list(list(supported))}",
                             details={})


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(x[:64] for x in items) + "]"


async def tunnel(conn: RawConnection, upstream: ClientConnection) -> None:
    """SPDY port-forward: the client's bytes, as they come, in binary messages to the kubelet's tunnel, and its
    messages back as bytes, until either side ends (the agent reads the SPDY, as the kubelet does behind
    kube-apiserver's proxy)."""
    async def up() -> None:
        with contextlib.suppress(ConnectionClosed):
            while data := await conn.read(TUNNEL_CHUNK):
                await upstream.send(data)

    async def down() -> None:
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            async for message in upstream:
                if isinstance(message, bytes):
                    await conn.write(message)

    await _until_one_ends(up(), down())


async def _until_one_ends(*coros: Awaitable[None]) -> None:
    """Run the directions of a relay until the first ends; then stop the others."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _frame(data: bytes | str) -> dict[str, Any]:
    return {"text": data} if isinstance(data, str) else {"bytes": data}


async def relay(upstream: ClientConnection, receive: Callable[[], Awaitable[dict[str, Any]]],
                send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Messages both ways until either side closes; then the other side is closed too."""
    async def down() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                await send({"type": "websocket.send", **_frame(message)})

    async def up() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes")
            data = data if data is not None else msg.get("text")
            if data is not None:
                await upstream.send(data)

    try:
        await _until_one_ends(down(), up())
    finally:
        await upstream.close()
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})


def install(registry: Registry, pki: ClusterPKI, connect_handlers: dict[tuple[str, str, str], Any],
            on_shutdown: list[Callable[[], Awaitable[None]]]) -> StreamProxy:
    """Route the connect subresources to the proxy."""
    proxy = StreamProxy(registry, pki)
    connect_handlers[("", "pods", "log")] = proxy.log
    for sub in ("exec", "attach", "portforward"):
        connect_handlers[("", "pods", sub)] = proxy.connect
    connect_handlers[("", "nodes", "proxy")] = proxy.node_proxy
    on_shutdown.append(proxy.close)
    return proxy
