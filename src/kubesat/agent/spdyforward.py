"""The kubelet's SPDY port-forward, tunneled in a WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+).

The WebSocket's binary messages carry a SPDY/3 byte stream (`kubesat.spdy`). For each local connection the
client opens an error stream and then a data stream, both with headers `streamtype` (error, data), `port`
and `requestid`; the pair, once complete, becomes a TCP connection to the port in the pod. Bytes go both
ways as DATA frames; the client's FIN on the data stream half-closes the pod side; when the pod side ends,
the data stream is finished, then the error stream, which carries the failure's text when there is one
(`error forwarding port 8080 to pod ..., uid : ...`, as the kubelet writes it). A stream the kubelet would
reject (no or bad `port`, unknown `streamtype`, a second stream of one type for a request) is reset; a
pair not completed in time gets `timed out waiting for streams` on its error stream. A malformed frame
closes the connection with one log line. Bounds: open streams, pairs waiting for their second stream,
buffered client data per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kubesat import spdy
from kubesat.agent.runtime import RuntimeFailure

log = logging.getLogger("kubesat.agent.portforward")

MAX_STREAMS = 256  # open streams on one connection (two per forwarded connection)
MAX_PENDING = 64  # pairs waiting for their second stream
PAIR_TIMEOUT = 30.0  # the kubelet's stream creation timeout
INBOUND_FRAMES = 16  # DATA frames queued for one pod connection before the client is made to wait
READ_CHUNK = 32 * 1024

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Dial = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class _Rejected(Exception):
    """A stream the kubelet refuses (reset)."""


@dataclass
class _Pair:
    request_id: str
    port: int
    error_id: int = 0
    data_id: int = 0
    inbound: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(INBOUND_FRAMES))
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    reset: bool = False  # the client reset the data stream: nothing more is written to it


def stream_headers(headers: spdy.Headers) -> tuple[str, int, str]:
    """(streamtype, port, requestid) of a SYN_STREAM, or _Rejected in the kubelet's words."""
    def one(name: str) -> str:
        return (headers.get(name) or [""])[0]

    kind, port_text, request_id = one("streamtype"), one("port"), one("requestid")
    if kind not in ("error", "data"):
        raise _Rejected(f'invalid stream type "{kind[:32]}"')
    if not port_text:
        raise _Rejected('"port" header is required')
    if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 0xFFFF:
        raise _Rejected(f'unable to parse "{port_text[:16]}" as a port: invalid syntax')
    if int(port_text) < 1:
        raise _Rejected(f'port "{port_text}" must be > 0')
    return kind, int(port_text), request_id[:64]


class SpdyPortForward:
    """One tunneled SPDY connection from the API server."""

    def __init__(self, dial: Dial, pod_id: str, send: Send) -> None:
        self.dial = dial
        self.pod_id = pod_id
        self._send = send
        self.decoder = spdy.Decoder()
        self.encoder = spdy.Encoder()
        self.lock = asyncio.Lock()  # frames leave in the order they were encoded (one zlib stream)
        self.streams: dict[int, _Pair] = {}
        self.pairs: dict[str, _Pair] = {}
        self.last_id = 0
        self.going_away = False

    async def write(self, frame: spdy.Frame) -> None:
        async with self.lock:
            await self._send({"type": "websocket.send", "bytes": self.encoder.encode(frame)})

    async def run(self, receive: Receive) -> None:
        """Until the WebSocket closes or the client breaks the protocol; every pod connection is closed then."""
        try:
            while True:
                msg = await receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data = msg.get("bytes")
                if data is None:
                    if msg.get("text") is not None:
                        log.info("port-forward to pod %s closed: a text message in a SPDY tunnel", self.pod_id)
                        return
                    continue
                try:
                    frames = self.decoder.feed(data)
                except spdy.SpdyError as e:
                    log.info("port-forward to pod %s closed: malformed SPDY: %s", self.pod_id, e)
                    with contextlib.suppress(Exception):
                        await self.write(spdy.GoAway(self.last_id, spdy.GOAWAY_PROTOCOL_ERROR))
                    return
                for frame in frames:
                    await self.handle(frame)
        finally:
            await self.close()

    async def close(self) -> None:
        tasks = []
        every = {id(p): p for p in (*self.streams.values(), *self.pairs.values())}
        for pair in every.values():
            if pair.timer is not None:
                pair.timer.cancel()
            if pair.task is not None:
                pair.task.cancel()
                tasks.append(pair.task)
        self.streams.clear()
        self.pairs.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": 1000})

    async def handle(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.SynStream):
            await self._syn_stream(frame)
        elif isinstance(frame, spdy.DataFrame):
            await self._data(frame)
        elif isinstance(frame, spdy.RstStream):
            self._reset(frame.stream_id)
        elif isinstance(frame, spdy.Ping):
            if frame.id & 1:  # the client's ping: echoed (ours would be even)
                await self.write(frame)
        elif isinstance(frame, spdy.GoAway):
            self.going_away = True
        # SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: nothing to do (spdystream does no flow control)

    # -------------------------------------------------------------------------- streams
    async def _syn_stream(self, frame: spdy.SynStream) -> None:
        sid = frame.stream_id
        if sid & 1 == 0 or sid <= self.last_id:
            await self.write(spdy.RstStream(sid, spdy.PROTOCOL_ERROR))
            return
        self.last_id = sid
        if self.going_away or len(self.streams) >= MAX_STREAMS:
            await self.write(spdy.RstStream(sid, spdy.REFUSED_STREAM))
            return
        try:
            kind, port, request_id = stream_headers(frame.headers)
            pair = self._pair(request_id or str(sid if kind == "error" else sid - 2), port)
            if (pair.error_id if kind == "error" else pair.data_id) or pair.port != port:
                raise _Rejected(f"{kind} stream already assigned")
        except _Rejected as e:
            log.info("port-forward to pod %s: stream %d rejected: %s", self.pod_id, sid, e)
            await self.write(spdy.RstStream(sid, spdy.CANCEL))
            return
        if kind == "error":
            pair.error_id = sid
        else:
            pair.data_id = sid
        self.streams[sid] = pair
        await self.write(spdy.SynReply(sid))
        if pair.error_id and pair.data_id:
            self.pairs.pop(pair.request_id, None)
            if pair.timer is not None:
                pair.timer.cancel()
            pair.task = asyncio.create_task(self._forward(pair))

    def _pair(self, request_id: str, port: int) -> _Pair:
        pair = self.pairs.get(request_id)
        if pair is not None:
            return pair
        if len(self.pairs) >= MAX_PENDING:
            raise _Rejected(f"too many port-forward requests waiting for their streams (at most {MAX_PENDING})")
        pair = _Pair(request_id, port)
        self.pairs[request_id] = pair
        pair.timer = asyncio.get_running_loop().call_later(PAIR_TIMEOUT, self._timed_out, pair)
        return pair

    def _timed_out(self, pair: _Pair) -> None:
        if self.pairs.get(pair.request_id) is not pair:
            return
        del self.pairs[pair.request_id]
        text = f"(request={pair.request_id}) timed out waiting for streams"
        pair.task = asyncio.create_task(self._finish(pair, text))

    async def _data(self, frame: spdy.DataFrame) -> None:
        pair = self.streams.get(frame.stream_id)
        if pair is None or frame.stream_id != pair.data_id or pair.reset:
            return  # a stream gone away (spdystream ignores these too); the error stream is not written to
        if frame.data:
            await pair.inbound.put(frame.data)
        if frame.fin:
            await pair.inbound.put(None)

    def _reset(self, sid: int) -> None:
        pair = self.streams.pop(sid, None)
        if pair is None:
            return
        if sid == pair.data_id:
            pair.reset = True
            if pair.task is not None:
                pair.task.cancel()

    # -------------------------------------------------------------------------- one forwarded connection
    async def _forward(self, pair: _Pair) -> None:
        failure = ""
        try:
            try:
                reader, writer = await self.dial(pair.port)
            except (OSError, RuntimeFailure) as e:
                failure = f"error forwarding port {pair.port} to pod {self.pod_id}, uid : {e}"
                log.info("%s", failure)
                return
            to_pod = asyncio.create_task(self._to_pod(pair, writer))
            try:
                while data := await reader.read(READ_CHUNK):
                    if pair.reset:
                        break
                    await self.write(spdy.DataFrame(pair.data_id, data))
            except OSError as e:
                failure = f"error forwarding port {pair.port} to pod {self.pod_id}, uid : {e}"
            finally:
                to_pod.cancel()
                await asyncio.gather(to_pod, return_exceptions=True)
                writer.close()
        finally:
            await self._finish(pair, failure)

    async def _to_pod(self, pair: _Pair, writer: asyncio.StreamWriter) -> None:
        while (data := await pair.inbound.get()) is not None:
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def _finish(self, pair: _Pair, failure: str) -> None:
        """End the data stream (unless reset), write the failure on the error stream and end it."""
        with contextlib.suppress(Exception):
            if pair.data_id and not pair.reset:
                await self.write(spdy.DataFrame(pair.data_id, b"", fin=True))
            if pair.error_id:
                if failure:
                    await self.write(spdy.DataFrame(pair.error_id, failure.encode()[:spdy.MAX_FRAME]))
                await self.write(spdy.DataFrame(pair.error_id, b"", fin=True))
        for sid in (pair.data_id, pair.error_id):
            if self.streams.get(sid) is pair:
                del self.streams[sid]
        while not pair.inbound.empty():  # a receive loop waiting to queue more for this pair goes on
            pair.inbound.get_nowait()
