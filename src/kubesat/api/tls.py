"""The HTTP/1.1 connection as kubesat serves it: the client certificate, and bounds on what a connection may hold.

uvicorn lets us name the HTTP protocol class; this subclass reads the peer certificate once per
connection (the TLS layer has already verified it against the cluster CA) and puts it in every
request's scope: the DER bytes under a kubesat key, and the ASGI TLS extension's shape under
`scope["extensions"]["tls"]`. It also bounds a connection as Go's server does for kube-apiserver:
request line and headers at most 1 MiB and 1,000 fields (431 past that), headers read within the
header timeout, the TLS handshake within the same timeout (`event_loop`). A request with an Upgrade that
uvicorn does not serve itself (anything but WebSocket: SPDY/3.1 for exec, attach and port-forward) goes to
the app with a way to switch protocols in its scope (`UPGRADE`): the handler that accepts writes the 101
through it and the connection's bytes go to a `RawConnection` from then on; a request answered without
switching closes the connection, since what follows it is not HTTP. It touches private parts of
uvicorn, so uvicorn is pinned to a range and tests/integration fail if any of this stops working.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import orjson
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kubesat import errors
from kubesat.api.app import STREAMING, TLS_PEER_DER, UPGRADE
from kubesat.api.rawconn import RawConnection

# Go's http.Server default (kube-apiserver keeps it): the request line and headers together.
MAX_HEADER_BYTES = 1 << 20
# Real clients send tens of fields (kubectl about 10); the byte cap alone would let 260,000 tiny
# fields through, each a Python tuple of two objects.
MAX_HEADER_FIELDS = 1000
# kube-apiserver's ReadHeaderTimeout, in seconds.
DEFAULT_HEADER_TIMEOUT = 32.0
# Go waits this long after a refusal before closing, so the client can read the answer first.
REFUSAL_GRACE = 0.5
# Answered before its body ended, a request with at most this much body left keeps its connection (the
# rest is read and dropped); with more, or an unknown amount, the answer says `Connection: close`.
# Go's maxPostHandlerReadBytes.
MAX_DISCARDED_BODY = 256 << 10

# The longest URL httptools' parser reads (its offsets are 16 bits).
_MAX_URL = 65535
_REASONS = {400: b"Bad Request", 414: b"URI Too Long"}
_TOO_LARGE_TEXT = b"431 Request Header Fields Too Large"
_TOO_LARGE = b"".join([
    b"HTTP/1.1 ", _TOO_LARGE_TEXT, b"\r\n",
    b"content-type: text/plain; charset=utf-8\r\n",
    b"content-length: ", str(len(_TOO_LARGE_TEXT)).encode(), b"\r\n",
    b"connection: close\r\n\r\n",
    _TOO_LARGE_TEXT,
])


_on_header = HttpToolsProtocol.on_header


def _tls_extension(der: bytes | None) -> dict[object, object]:
    """The ASGI TLS extension (`scope["extensions"]["tls"]`) for a connection whose client sent `der`."""
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }


class _HeadWithBody:
    """The transport as a response sees it: a response's head is held until its body is written, and
    both go out in one write, so a short answer costs one TLS record and one send instead of two.

    A head whose body does not follow at once (a watch waiting for its first event) goes out on the
    loop's next turn.
    """

    __slots__ = ("_transport", "_loop", "_held", "_protocol")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 protocol: ClientCertHttpToolsProtocol) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        if self._held is None and b"\r\n\r\n" in data[-4:]:  # a head (or a 100 Continue) comes first
            if self._protocol._header_bytes is None:  # answered while the request's body is still arriving
                data = self._protocol._head_before_body_end(data)
            self._held = data
            self._loop.call_soon(self.flush)
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    # Anything else a response asks of its transport (peer address, flow control) is the transport's.
    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ClientCertHttpToolsProtocol(HttpToolsProtocol):
    _peer_der: bytes | None = None

    # Any: uvicorn's constructor arguments, passed through unchanged.
    def __init__(self, *args: Any, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The ASGI TLS extension every request of this connection carries; connection_made fills it in.
        self._tls_ext = _tls_extension(None)
        self._header_timeout = header_timeout
        # Bytes of the current request line and headers seen so far; None once they are complete.
        self._header_bytes: int | None = 0
        self._header_fields = 0
        self._unparsed = bytearray()  # the start of a header line whose end has not arrived
        self._refused = False
        self._body_seen = 0  # bytes of the current request's body received so far
        # When the current request's headers are due (loop time); None when no headers are awaited.
        self._deadline: float | None = None
        # A pending check of the deadline, or the close after a refusal. One check serves many
        # requests (it re-arms only if a deadline is still set), so a request costs no timer.
        self._timer: asyncio.TimerHandle | None = None
        # The parser stopped at an Upgrade that uvicorn does not serve: what follows the request is not HTTP.
        self._switching = False
        self._raw: RawConnection | None = None  # the connection once the app has switched protocols

    # uvicorn narrows BaseProtocol's BaseTransport to Transport; this override matches uvicorn's.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_obj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = None
        if ssl_obj is not None:
            try:
                der = ssl_obj.getpeercert(binary_form=True)
            except ValueError:
                der = None
        self._peer_der = der or None
        self._tls_ext = _tls_extension(der)
        self._writer = _HeadWithBody(transport, self.loop, self)
        # As in Go, the first request's headers are due within the timeout of the handshake's end.
        self._start_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if self._raw is not None:
            self._raw.feed_eof()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if self._raw is not None:
            self._raw.feed_eof()

    def data_received(self, data: bytes) -> None:
        if self._raw is not None:
            self._raw.feed(data)
            return
        if self._switching:
            return  # sent before the 101 (no SPDY client does): not HTTP, and no session to take it yet
        if self.transport.is_closing():
            return  # refused or timed out: nothing more is parsed
        if self._header_bytes is None:  # a body: its own limits apply in the app
            super().data_received(data)
            return
        if self._deadline is None:  # the first bytes of a keep-alive connection's next request
            self._start_header_clock()
        room = MAX_HEADER_BYTES - self._header_bytes
        if len(data) <= room and not self._unparsed and b"\r\n\r\n" in data:
            super().data_received(data)  # the usual read: a whole header block, maybe a body after it
            return
        head = data[:room]
        self._header_bytes += len(head)
        self._parse_lines(head)
        if self.transport.is_closing():
            return
        if self._header_bytes is not None and self._header_bytes >= MAX_HEADER_BYTES:
            self._refuse()
        elif len(data) > room:  # the headers ended within the cap: a body or a pipelined request follows
            self.data_received(data[room:])

    def _parse_lines(self, head: bytes) -> None:
        """Give the parser whole lines only, holding back the unfinished last one.

        The parser joins the pieces of a line it is given in parts by copying, so a header trickled
        in many small reads would cost time quadratic in its length.
        """
        end = head.rfind(b"\n") + 1
        if not end:
            self._unparsed += head
            return
        if self._unparsed:
            lines = bytes(self._unparsed) + head[:end]
            self._unparsed.clear()
        else:
            lines = head[:end]
        self._unparsed += head[end:]
        super().data_received(lines)
        if self._header_bytes is None and self._unparsed and not self.transport.is_closing():
            tail = bytes(self._unparsed)  # after the headers: body bytes, parsed at once
            self._unparsed.clear()
            super().data_received(tail)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_fields = 0
        self._body_seen = 0
        # ASGI lets a server add its own scope keys; uvicorn's HTTPScope TypedDict does not declare ours.
        self.scope[TLS_PEER_DER] = self._peer_der  # type: ignore[literal-required]
        self.scope["extensions"] = {"tls": self._tls_ext}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields += 1
        if self._header_fields <= MAX_HEADER_FIELDS:
            _on_header(self, name, value)  # not super(): this runs for every header of every request
        elif not self._refused:
            self._refuse()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._header_bytes = None
        self._deadline = None
        super().on_headers_complete()
        if self.cycle is not None:  # none when uvicorn refused the request (503 over its concurrency limit)
            self.cycle.transport = self._writer  # type: ignore[assignment]  # writes what a transport writes

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            self._body_seen += len(body)
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._header_bytes = 0  # what follows is the next request's headers

    def _unsupported_upgrade_warning(self) -> None:
        """uvicorn's hook for an Upgrade it does not serve (it would log a warning): the request goes to the
        app, which may switch protocols through `UPGRADE`. Reading pauses until it does; answered otherwise,
        the connection closes."""
        self._switching = True
        self.transport.pause_reading()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and not cycle.response_started:
            cycle.keep_alive = False
            self.scope[UPGRADE] = self._switch  # type: ignore[literal-required]  # our own scope key

    def _switch(self, headers: list[tuple[bytes, bytes]]) -> RawConnection:
        """Answer `101 Switching Protocols` with `headers` and hand the connection over: what arrives from
        now on is the returned connection's. uvicorn's cycle counts as gone, so it writes nothing more."""
        cycle = self.cycle
        if self._raw is not None or cycle is None or cycle.response_started or self.transport.is_closing():
            raise ConnectionResetError("this connection cannot switch protocols now")
        cycle.disconnected = True
        self._writer.flush()
        head = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        head += [b"%s: %s\r\n" % (name, value) for name, value in headers
                 if b"\r" not in name + value and b"\n" not in name + value]
        self.transport.write(b"".join([*head, b"\r\n"]))
        self._raw = RawConnection(self.transport, self.flow.drain)
        self.transport.resume_reading()
        return self._raw

    def _head_before_body_end(self, head: bytes) -> bytes:
        """The head of an answer given before the request's body has all arrived, as Go decides it.

        With little body left (a known length, at most MAX_DISCARDED_BODY more bytes) the connection
        stays open and the rest is read and dropped (uvicorn drops body bytes after the answer). With more,
        an unknown amount, or a `100 Continue` never sent, it is closed after this answer, and the head
        says so, so the client does not send its next request on it.
        """
        cycle = self.cycle
        if cycle is None or not cycle.response_started or not cycle.keep_alive or head.startswith(b"HTTP/1.1 100 "):
            return head  # not this request's answer (one pipelined before it), a 100, or closing anyway
        left: int | None = None
        for name, value in self.scope["headers"]:
            if name == b"content-length":
                left = int(value) - self._body_seen if value.isdigit() else None
        if not cycle.waiting_for_100_continue and left is not None and left <= MAX_DISCARDED_BODY:
            return head
        cycle.keep_alive = False  # uvicorn closes the connection once this answer is written
        return head[:-2] + b"connection: close\r\n\r\n"

    def shutdown(self) -> None:
        # An idle keep-alive connection or a watch stream is cut at once: a TLS close would wait
        # (up to 30 s) for a close_notify from a client that is not reading, and a watch never ends
        # by itself. Requests in flight still finish, as uvicorn does it.
        idle = self.cycle is None or self.cycle.response_complete
        streaming = self.scope is not None and self.scope.get(STREAMING)
        if idle or streaming or self._raw is not None:
            self.transport.abort()
        else:
            super().shutdown()

    def _start_header_clock(self) -> None:
        self._deadline = self.loop.time() + self._header_timeout
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_deadline(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # Bytes of a next request arrived while this one is still answered (a watch, say): Go
            # reads the next request only after the answer, so its clock starts then.
            self._start_header_clock()
        elif self.loop.time() < self._deadline:  # a later request's deadline
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
        else:
            # No answer is owed; abort rather than close, which would wait for the client's close_notify.
            self.transport.abort()

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser cannot read: a Kubernetes Status, and the connection closed.

        httptools cannot parse a URL longer than 65,535 bytes (Go reads up to the 1 MiB header cap):
        that one is 414 and says so.
        """
        if len(getattr(self, "url", b"")) > _MAX_URL:
            status = errors.StatusError(414, "RequestURITooLong",
                                        f"the request URL is longer than {_MAX_URL} bytes, the most kubesat reads")
        else:
            status = errors.bad_request("the request could not be parsed as HTTP/1.1")
        body = orjson.dumps(status.status())
        self._writer.flush()  # an answer to an earlier pipelined request goes first
        self.transport.write(b"".join([
            b"HTTP/1.1 %d %s\r\n" % (status.code, _REASONS[status.code]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n", body,
        ]))
        self.transport.close()

    def _refuse(self) -> None:
        """431 and close, as Go answers headers over the cap; the parser ignores the rest."""
        self._refused = True
        self._deadline = None
        self._stop_timer()
        self._writer.flush()
        self.transport.write(_TOO_LARGE)
        self.transport.close()
        self._timer = self.loop.call_later(REFUSAL_GRACE, self.transport.abort)


class HandshakeTimeoutLoop(uvloop.Loop):
    """An event loop whose TLS servers drop a client that has not finished the handshake in time.

    uvicorn creates the listening server itself and has no setting for this timeout (the loop's
    default is 60 s); its `create_server` call goes through here. Go bounds the handshake by the
    header timeout, and so does kubesat.
    """

    ssl_handshake_timeout: float = DEFAULT_HEADER_TIMEOUT

    # Any: asyncio's create_server arguments and result, passed through unchanged (asyncio's stubs
    # say the result is a Server, uvloop's an AbstractServer; uvicorn takes either).
    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.ssl_handshake_timeout)
        return await super().create_server(*args, **kwargs)


def event_loop(handshake_timeout: float) -> asyncio.AbstractEventLoop:
    """A new event loop that times out TLS handshakes after `handshake_timeout` seconds."""
    loop = HandshakeTimeoutLoop()
    loop.ssl_handshake_timeout = handshake_timeout
    return loop


def server_context(cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    """TLS 1.2+ server context; a client certificate is verified against the CA if one is presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(client_ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
