"""exec and attach over SPDY/3.1 proper, on the API server: the client's SPDY streams, read as the kubelet's
remotecommand server reads them, translated to the kubelet API's `v5.channel.k8s.io` WebSocket.

After the 101 the client opens one stream per channel, each a SYN_STREAM with the header `streamType`:
error, then stdin, stdout, stderr (not with a TTY) and resize (with a TTY, v3 and later), as the request's
query asks; each is answered with a SYN_REPLY (a type not asked for too, then ignored, as the kubelet does).
Once all have come (within 30 s, the kubelet's stream creation timeout) the kubelet's output is relayed:
stdout and stderr as DATA frames on their streams, the error channel's Status on the error stream (JSON for
v4 and v5, which client-go reads the exit code from; its message as text for v1-v3, nothing on success).
When the kubelet's WebSocket ends, every stream is finished (FIN), a GOAWAY is sent and the connection
closed. The client's stdin DATA becomes channel 0 and its FIN on stdin the v5 close signal (so `kubectl cp`
into a pod ends); each JSON line on the resize stream becomes channel 4. The client's PINGs (client-go
sends one every 5 s) are answered. Bounds: a frame's size and a header block's (`kubesat.spdy`),
MAX_STREAMS streams per connection, a resize line of MAX_RESIZE bytes; a malformed frame or a bound passed
closes the connection with a GOAWAY and one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from kubesat import remotecommand, spdy
from kubesat.api.rawconn import RawConnection
from kubesat.remotecommand import Framing

log = logging.getLogger("kubesat.api.spdyexec")

# What kubectl 1.32 offers over SPDY, best first (v5 is v4 on SPDY: the close signal is SPDY's FIN).
PROTOCOLS = (remotecommand.V5, remotecommand.V4, remotecommand.V3, remotecommand.V2, remotecommand.V1)
STREAM_TIMEOUT = 30.0  # the kubelet's stream creation timeout
MAX_STREAMS = 16  # SYN_STREAMs on one connection (a client opens at most five)
MAX_RESIZE = 4096  # one resize message, `{"Width":80,"Height":24}`
READ_CHUNK = 64 * 1024
ORDER = ("stdout", "stderr", "error", "stdin", "resize")  # how the streams are finished
UPSTREAM = Framing(remotecommand.V5)


class _Closed(Exception):
    """The client broke the protocol or a bound: the connection is closed."""


@dataclass(frozen=True)
class Channels:
    """The streams a request asks for (its stdin, stdout, stderr and tty query parameters)."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def expected(self, protocol: str) -> frozenset[str]:
        """The stream types the client opens, as the kubelet counts them (no stderr with a TTY)."""
        kinds = {"error"}
        for kind, on in (("stdin", self.stdin), ("stdout", self.stdout), ("stderr", self.stderr and not self.tty),
                         ("resize", self.tty and Framing(protocol).resize)):
            if on:
                kinds.add(kind)
        return frozenset(kinds)


class SpdyExec:
    """One SPDY exec or attach connection and the kubelet WebSocket it is relayed to."""

    def __init__(self, conn: RawConnection, upstream: ClientConnection, protocol: str, channels: Channels,
                 name: str) -> None:
        self.conn = conn
        self.upstream = upstream
        self.framing = Framing(protocol)
        self.expected = channels.expected(protocol)
        self.name = name
        self.decoder = spdy.Decoder()
        self.encoder = spdy.Encoder()
        self.ids: dict[str, int] = {}  # stream type -> the client's stream id
        self.types: dict[int, str] = {}
        self.done: set[int] = set()  # streams finished by us or reset by the client: written to no more
        self.last_id = 0
        self.opened = 0
        self.resize = bytearray()
        self.ready = asyncio.Event()  # every expected stream is open

    # ---------------------------------------------------------------------------- the session
    async def run(self) -> None:
        """Until the kubelet's WebSocket ends (then the streams are finished) or the client leaves or breaks
        the protocol; the kubelet's WebSocket is closed either way."""
        client = asyncio.create_task(self._from_client())
        kubelet: asyncio.Task[None] | None = None
        try:
            ready = asyncio.create_task(self.ready.wait())
            await asyncio.wait({client, ready}, timeout=STREAM_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if not self.ready.is_set():
                if not client.done():
                    self._close("timed out waiting for the client to create streams")
                return
            kubelet = asyncio.create_task(self._from_kubelet())
            await asyncio.wait({client, kubelet}, return_when=asyncio.FIRST_COMPLETED)
            if kubelet.done():
                await kubelet  # its own failures are handled inside; a bug surfaces here
                with contextlib.suppress(ConnectionError):
                    await self._finish()
        finally:
            tasks = [t for t in (client, kubelet) if t is not None]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.upstream.close()

    def _close(self, why: str) -> None:
        log.warning("SPDY stream of %s closed: %s", self.name, why)
        with contextlib.suppress(ConnectionError):
            self._send(spdy.GoAway(self.last_id, spdy.GOAWAY_PROTOCOL_ERROR))

    def _send(self, frame: spdy.Frame) -> None:
        self.conn.send(self.encoder.encode(frame))  # encoded and queued in one step: frames stay in order

    async def _write(self, frame: spdy.Frame) -> None:
        self._send(frame)
        await self.conn.drain()

    async def _finish(self) -> None:
        for kind in ORDER:
            sid = self.ids.get(kind)
            if sid is not None and sid not in self.done:
                self.done.add(sid)
                self._send(spdy.DataFrame(sid, b"", fin=True))
        self._send(spdy.GoAway(self.last_id, spdy.GOAWAY_OK))
        await self.conn.drain()

    # ---------------------------------------------------------------------------- client -> kubelet
    async def _from_client(self) -> None:
        try:
            while data := await self.conn.read(READ_CHUNK):
                for frame in self.decoder.feed(data):
                    if not await self._handle(frame):
                        return
        except spdy.SpdyError as e:
            self._close(f"malformed SPDY: {e}")
        except _Closed as e:
            self._close(str(e))
        except (ConnectionError, ConnectionClosed):
            return

    async def _handle(self, frame: spdy.Frame) -> bool:
        """Act on one frame; False when the client is going away."""
        if isinstance(frame, spdy.SynStream):
            await self._syn_stream(frame)
        elif isinstance(frame, spdy.DataFrame):
            await self._data(frame.stream_id, frame.data, frame.fin)
        elif isinstance(frame, spdy.RstStream):
            self.done.add(frame.stream_id)
        elif isinstance(frame, spdy.Ping):
            if frame.id & 1:  # the client's (ours would be even)
                await self._write(frame)
        elif isinstance(frame, spdy.GoAway):
            return False
        return True  # SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: nothing to do (spdystream has no flow control)

    async def _syn_stream(self, frame: spdy.SynStream) -> None:
        sid = frame.stream_id
        self.opened += 1
        if self.opened > MAX_STREAMS:
            raise _Closed(f"more than {MAX_STREAMS} streams")
        if sid & 1 == 0 or sid <= self.last_id:
            raise _Closed(f"stream id {sid} is not a new client stream")
        self.last_id = sid
        kind = (frame.headers.get("streamtype") or [""])[0]
        await self._write(spdy.SynReply(sid))
        if kind not in self.expected or kind in self.ids:
            log.debug("SPDY stream of %s: stream %d of type %r ignored", self.name, sid, kind[:32])
            return
        self.ids[kind] = sid
        self.types[sid] = kind
        if frame.fin:
            await self._data(sid, b"", True)
        if self.expected <= self.ids.keys():
            self.ready.set()

    async def _data(self, sid: int, data: bytes, fin: bool) -> None:
        kind = self.types.get(sid)
        if kind == "stdin":
            if data:
                await self.upstream.send(UPSTREAM.encode(remotecommand.STDIN, data))
            if fin:
                await self.upstream.send(UPSTREAM.encode(remotecommand.CLOSE, bytes((remotecommand.STDIN,))))
        elif kind == "resize":
            await self._resize(data)
        # DATA on any other stream is not read by the kubelet either

    async def _resize(self, data: bytes) -> None:
        """Resize messages are JSON values one a line (Go's json.Encoder); each goes as one channel 4 message."""
        self.resize += data
        while (end := self.resize.find(b"\n")) >= 0:
            line = bytes(self.resize[:end]).strip()
            del self.resize[:end + 1]
            if line:
                await self.upstream.send(UPSTREAM.encode(remotecommand.RESIZE, line))
        if len(self.resize) > MAX_RESIZE:
            raise _Closed(f"a resize message longer than {MAX_RESIZE} bytes")

    # ---------------------------------------------------------------------------- kubelet -> client
    async def _from_kubelet(self) -> None:
        """The kubelet's messages until its WebSocket ends."""
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            async for message in self.upstream:
                data = message.encode() if isinstance(message, str) else message
                if data:
                    await self._relay(data[0], data[1:])

    async def _relay(self, channel: int, data: bytes) -> None:
        if channel in (remotecommand.STDOUT, remotecommand.STDERR):
            sid = self.ids.get("stdout" if channel == remotecommand.STDOUT else "stderr")
            if sid is not None and sid not in self.done and data:
                await self._write(spdy.DataFrame(sid, data))
        elif channel == remotecommand.ERROR:
            sid = self.ids.get("error")
            payload = self._error_payload(data)
            if sid is not None and sid not in self.done and payload:
                await self._write(spdy.DataFrame(sid, payload))
        elif channel == remotecommand.CLOSE and data[:1] in (bytes((remotecommand.STDOUT,)),
                                                             bytes((remotecommand.STDERR,))):
            sid = self.ids.get("stdout" if data[0] == remotecommand.STDOUT else "stderr")
            if sid is not None and sid not in self.done:
                self.done.add(sid)
                await self._write(spdy.DataFrame(sid, b"", fin=True))

    def _error_payload(self, data: bytes) -> bytes:
        """The kubelet's Status (v5: JSON) as this protocol's error stream carries it."""
        if self.framing.status_errors:
            return data
        try:
            status = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
        return remotecommand.error_payload(self.framing, status) if isinstance(status, dict) else data
