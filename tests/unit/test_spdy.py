"""SPDY/3 framing (kubesat.spdy): round trips, frames built by hand from the spec as spdystream writes them
(cut into the pieces its framer writes), the bounds; and the agent's tunneled port-forward session
(kubesat.agent.spdyforward) against a local TCP server."""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from typing import Any

import pytest

from kubesat import spdy
from kubesat.agent.runtime import RuntimeFailure
from kubesat.agent.spdyforward import SpdyPortForward, stream_headers


def test_dictionary_is_spdy3s() -> None:
    # The zlib header of a block compressed with it names its Adler-32, which Go's reader checks.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def _block(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """An uncompressed header block, by hand: count, then length-prefixed names and values."""
    out = struct.pack(">I", len(pairs))
    for name, value in pairs:
        out += struct.pack(">I", len(name)) + name + struct.pack(">I", len(value)) + value
    return out


class GoLikeCompressor:
    """A client's header compression as spdystream does it: one zlib stream, level 9, the dictionary, a sync
    flush after each block."""

    def __init__(self) -> None:
        self.z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, spdy.DICTIONARY)

    def block(self, raw: bytes) -> bytes:
        return self.z.compress(raw) + self.z.flush(zlib.Z_SYNC_FLUSH)


def _syn_stream_pieces(z: GoLikeCompressor, sid: int, kind: bytes, port: bytes, request: bytes) -> list[bytes]:
    """SYN_STREAM as spdystream's framer writes it: several small writes (each a WebSocket message when
    tunneled)."""
    # Go's http.Header canonicalizes names; spdystream lowercases them on the wire.
    block = z.block(_block([(b"streamtype", kind), (b"port", port), (b"requestid", request)]))
    return [b"\x80\x03", b"\x00\x01", struct.pack(">I", 10 + len(block)), struct.pack(">I", sid),
            struct.pack(">I", 0), b"\x00", b"\x00", block]


def _data(sid: int, data: bytes, fin: bool = False) -> bytes:
    return struct.pack(">II", sid, (0x01000000 if fin else 0) | len(data)) + data


def test_syn_streams_as_spdystream_writes_them() -> None:
    z = GoLikeCompressor()
    decoder = spdy.Decoder()
    frames: list[spdy.Frame] = []
    for sid, kind in ((1, b"error"), (3, b"data")):
        for piece in _syn_stream_pieces(z, sid, kind, b"8080", b"0"):
            frames += decoder.feed(piece)
    assert frames == [
        spdy.SynStream(1, {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]}),
        spdy.SynStream(3, {"streamtype": ["data"], "port": ["8080"], "requestid": ["0"]}),
    ]
    # DATA with FIN (an error stream's Close: empty), a data frame, RST_STREAM CANCEL, PING, GOAWAY
    raw = (_data(1, b"", fin=True) + _data(3, b"GET / HTTP/1.0\r\n\r\n")
           + b"\x80\x03\x00\x03\x00\x00\x00\x08" + struct.pack(">II", 3, spdy.CANCEL)
           + b"\x80\x03\x00\x06\x00\x00\x00\x04" + struct.pack(">I", 1)
           + b"\x80\x03\x00\x07\x00\x00\x00\x08" + struct.pack(">II", 2, 0))
    got = [f for i in range(len(raw)) for f in decoder.feed(raw[i:i + 1])]  # byte by byte
    assert got == [spdy.DataFrame(1, b"", True), spdy.DataFrame(3, b"GET / HTTP/1.0\r\n\r\n"),
                   spdy.RstStream(3, spdy.CANCEL), spdy.Ping(1), spdy.GoAway(2, spdy.GOAWAY_OK)]


def test_syn_reply_as_go_reads_it() -> None:
    """Our SYN_REPLY: the control header, the stream id, and a block that a fresh inflater with the dictionary
    (Go's zlib.NewReaderDict) reads as zero headers."""
    encoder = spdy.Encoder()
    inflater = zlib.decompressobj(15, zdict=spdy.DICTIONARY)
    for sid in (1, 3):
        frame = encoder.encode(spdy.SynReply(sid))
        assert frame[:4] == b"\x80\x03\x00\x02"
        flags_length = struct.unpack(">I", frame[4:8])[0]
        assert flags_length >> 24 == 0 and flags_length & 0xFFFFFF == len(frame) - 8
        assert struct.unpack(">I", frame[8:12])[0] == sid
        assert inflater.decompress(frame[12:]) == b"\x00\x00\x00\x00"
    assert encoder.encode(spdy.DataFrame(5, b"abc", fin=True)) == b"\x00\x00\x00\x05\x01\x00\x00\x03abc"
    assert encoder.encode(spdy.RstStream(5, spdy.REFUSED_STREAM)) == \
        b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x03"


@pytest.mark.parametrize("frame", [
    spdy.DataFrame(7, b"x" * 40000, fin=True),
    spdy.SynStream(9, {"streamtype": ["data"], "port": ["1"], "a": ["b", "c"]}, fin=True, unidirectional=True,
                   associated_to=3, priority=7, slot=2),
    spdy.SynReply(9, {"x": ["y"]}, fin=True),
    spdy.HeadersFrame(9, {"k": ["v"]}),
    spdy.RstStream(9, spdy.INTERNAL_ERROR),
    spdy.Settings(((1, 4, 100), (0, 7, 65536)), clear=True),
    spdy.Ping(2),
    spdy.GoAway(11, spdy.GOAWAY_PROTOCOL_ERROR),
    spdy.WindowUpdate(9, 1000),
])
def test_round_trip(frame: spdy.Frame) -> None:
    encoder, decoder = spdy.Encoder(), spdy.Decoder()
    # twice: the second header block depends on the first's zlib state
    assert decoder.feed(encoder.encode(frame) + encoder.encode(frame)) == [frame, frame]


def test_unknown_control_frames_are_skipped() -> None:
    raw = b"\x80\x03\x00\x0a\x00\x00\x00\x02zz" + _data(1, b"ok")
    assert spdy.Decoder().feed(raw) == [spdy.DataFrame(1, b"ok")]


@pytest.mark.parametrize(("raw", "why"), [
    (b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01", "unsupported SPDY version 2"),
    (b"\x00\x00\x00\x00\x00\x00\x00\x00", "data frame on stream 0"),
    (b"\x80\x03\x00\x06\x00\x00\x00\x05\x00\x00\x00\x01\x00", "type 6 with a 5-byte payload"),
    (b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x05", "stream id 0"),
    (b"\x80\x03\x00\x04\x00\x00\x00\x0c\x00\x00\x00\x02" + b"\x00" * 8, "SETTINGS frame of 12 bytes for 2"),
    (b"\x80\x03\x00\x02\x00\x00\x00\x08\x00\x00\x00\x01junk", "does not inflate"),
])
def test_malformed_frames(raw: bytes, why: str) -> None:
    with pytest.raises(spdy.SpdyError, match=why):
        spdy.Decoder().feed(raw)


def test_frame_length_is_bounded_before_buffering() -> None:
    decoder = spdy.Decoder()
    with pytest.raises(spdy.SpdyError, match="frame of 16777215 bytes"):
        decoder.feed(b"\x00\x00\x00\x01\x00\xff\xff\xff")


def _reply_with(raw_block: bytes) -> bytes:
    block = GoLikeCompressor().block(raw_block)
    return b"\x80\x03\x00\x02" + struct.pack(">I", 4 + len(block)) + struct.pack(">I", 1) + block


def test_header_blocks_are_bounded() -> None:
    with pytest.raises(spdy.SpdyError, match="too many headers"):
        spdy.Decoder().feed(_reply_with(_block([(b"h%d" % i, b"v") for i in range(spdy.MAX_HEADERS + 1)])))
    # a small compressed block that inflates past the bound
    with pytest.raises(spdy.SpdyError, match="header block larger than"):
        spdy.Decoder().feed(_reply_with(_block([(b"x", b"a" * (spdy.MAX_HEADER_BLOCK + 10))])))
    with pytest.raises(spdy.SpdyError, match="cut short"):
        spdy.Decoder().feed(_reply_with(struct.pack(">II", 1, 50) + b"abc"))
    with pytest.raises(spdy.SpdyError, match="trailing bytes"):
        spdy.Decoder().feed(_reply_with(_block([]) + b"extra"))


# ------------------------------------------------------------------------------ the agent's session
class Tunnel:
    """The WebSocket side of a session: messages in, frames out (decoded)."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.decoder = spdy.Decoder()
        self.frames: list[spdy.Frame] = []
        self.closed = False
        self.z = GoLikeCompressor()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "websocket.close":
            self.closed = True
        else:
            self.frames += self.decoder.feed(msg["bytes"])

    def put(self, data: bytes) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "bytes": data})

    def open_pair(self, first: int, port: int, request: bytes = b"0") -> None:
        for sid, kind in ((first, b"error"), (first + 2, b"data")):
            self.put(b"".join(_syn_stream_pieces(self.z, sid, kind, str(port).encode(), request)))

    async def until(self, pred: Any, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while not pred():
                await asyncio.sleep(0.01)
        await asyncio.wait_for(wait(), timeout)


def _stream_bytes(frames: list[spdy.Frame], sid: int) -> tuple[bytes, bool]:
    data = [f for f in frames if isinstance(f, spdy.DataFrame) and f.stream_id == sid]
    return b"".join(f.data for f in data), any(f.fin for f in data)


async def _upper_server() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's FIN
        writer.write(data.upper())
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        raise RuntimeFailure(f"failed to connect to localhost:{port} inside namespace of pod: {e}") from None


def test_session_forwards_a_pair_with_half_close() -> None:
    asyncio.run(_session_forwards_a_pair_with_half_close())


async def _session_forwards_a_pair_with_half_close() -> None:
    server, port = await _upper_server()
    tunnel = Tunnel()
    session = SpdyPortForward(_dial, "uid-1", tunnel.send)
    task = asyncio.create_task(session.run(tunnel.receive))
    tunnel.open_pair(1, port)
    tunnel.put(_data(1, b"", fin=True))  # kubectl closes its side of the error stream at once
    tunnel.put(_data(3, b"hello "))
    tunnel.put(_data(3, b"world", fin=True))
    await tunnel.until(lambda: _stream_bytes(tunnel.frames, 1)[1])
    assert [f for f in tunnel.frames if isinstance(f, spdy.SynReply)] == [spdy.SynReply(1), spdy.SynReply(3)]
    assert _stream_bytes(tunnel.frames, 3) == (b"HELLO WORLD", True)
    assert _stream_bytes(tunnel.frames, 1) == (b"", True)
    tunnel.put(b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x05")  # the client's ping: echoed
    await tunnel.until(lambda: spdy.Ping(5) in tunnel.frames)
    tunnel.inbox.put_nowait({"type": "websocket.disconnect"})
    await task
    assert tunnel.closed and not session.streams
    server.close()


def test_nothing_listening_is_the_kubelets_error() -> None:
    asyncio.run(_nothing_listening_is_the_kubelets_error())


async def _nothing_listening_is_the_kubelets_error() -> None:
    server, port = await _upper_server()
    server.close()
    await server.wait_closed()
    tunnel = Tunnel()
    task = asyncio.create_task(SpdyPortForward(_dial, "uid-1", tunnel.send).run(tunnel.receive))
    tunnel.open_pair(1, port)
    await tunnel.until(lambda: _stream_bytes(tunnel.frames, 1)[1])
    text, _ = _stream_bytes(tunnel.frames, 1)
    assert text.decode().startswith(f"error forwarding port {port} to pod uid-1, uid : failed to connect to "
                                    f"localhost:{port} inside namespace of pod")
    assert _stream_bytes(tunnel.frames, 3) == (b"", True)
    tunnel.inbox.put_nowait({"type": "websocket.disconnect"})
    await task


def test_reset_data_stream_ends_the_pair() -> None:
    asyncio.run(_reset_data_stream_ends_the_pair())


async def _reset_data_stream_ends_the_pair() -> None:
    server, port = await _upper_server()
    tunnel = Tunnel()
    session = SpdyPortForward(_dial, "uid-1", tunnel.send)
    task = asyncio.create_task(session.run(tunnel.receive))
    tunnel.open_pair(1, port, b"7")
    await tunnel.until(lambda: len(tunnel.frames) == 2)
    tunnel.put(b"\x80\x03\x00\x03\x00\x00\x00\x08" + struct.pack(">II", 3, spdy.CANCEL))
    await tunnel.until(lambda: _stream_bytes(tunnel.frames, 1)[1])
    assert not [f for f in tunnel.frames if isinstance(f, spdy.DataFrame) and f.stream_id == 3]
    tunnel.inbox.put_nowait({"type": "websocket.disconnect"})
    await task
    assert not session.streams
    server.close()


def test_rejected_streams_are_reset() -> None:
    asyncio.run(_rejected_streams_are_reset())


async def _rejected_streams_are_reset() -> None:
    tunnel = Tunnel()
    task = asyncio.create_task(SpdyPortForward(_dial, "uid-1", tunnel.send).run(tunnel.receive))
    tunnel.put(b"".join(_syn_stream_pieces(tunnel.z, 1, b"bogus", b"80", b"0")))
    tunnel.put(b"".join(_syn_stream_pieces(tunnel.z, 3, b"data", b"0", b"1")))
    tunnel.put(b"".join(_syn_stream_pieces(tunnel.z, 5, b"data", b"99999", b"2")))
    tunnel.put(b"".join(_syn_stream_pieces(tunnel.z, 2, b"data", b"80", b"3")))  # even: not the client's
    await tunnel.until(lambda: len(tunnel.frames) == 4)
    assert tunnel.frames == [spdy.RstStream(1, spdy.CANCEL), spdy.RstStream(3, spdy.CANCEL),
                             spdy.RstStream(5, spdy.CANCEL), spdy.RstStream(2, spdy.PROTOCOL_ERROR)]
    tunnel.inbox.put_nowait({"type": "websocket.disconnect"})
    await task


def test_stream_headers_in_the_kubelets_words() -> None:
    assert stream_headers({"streamtype": ["data"], "port": ["80"], "requestid": ["3"]}) == ("data", 80, "3")
    for headers, why in (({"streamtype": ["x"], "port": ["80"]}, 'invalid stream type "x"'),
                         ({"streamtype": ["data"]}, '"port" header is required'),
                         ({"streamtype": ["data"], "port": ["http"]}, 'unable to parse "http" as a port'),
                         ({"streamtype": ["data"], "port": ["0"]}, 'port "0" must be > 0')):
        with pytest.raises(Exception, match=why):
            stream_headers(headers)


def test_malformed_frame_closes_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    asyncio.run(_malformed_frame_closes_with_one_log_line(caplog))


async def _malformed_frame_closes_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    tunnel = Tunnel()
    caplog.set_level(logging.INFO, "kubesat.agent.portforward")
    task = asyncio.create_task(SpdyPortForward(_dial, "uid-1", tunnel.send).run(tunnel.receive))
    tunnel.put(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")
    await asyncio.wait_for(task, 5)
    assert tunnel.closed
    assert tunnel.frames == [spdy.GoAway(0, spdy.GOAWAY_PROTOCOL_ERROR)]
    lines = [r for r in caplog.records if r.name == "kubesat.agent.portforward"]
    assert len(lines) == 1 and "malformed SPDY: unsupported SPDY version 2" in lines[0].getMessage()
    assert lines[0].exc_info is None


def test_a_pair_that_fails_while_the_client_writes_does_not_stall_the_connection() -> None:
    asyncio.run(_a_pair_that_fails_while_the_client_writes())


async def _a_pair_that_fails_while_the_client_writes() -> None:
    gate = asyncio.Event()

    async def slow_refusal(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await gate.wait()
        raise RuntimeFailure("connection refused")

    tunnel = Tunnel()
    task = asyncio.create_task(SpdyPortForward(slow_refusal, "uid-1", tunnel.send).run(tunnel.receive))
    tunnel.open_pair(1, 8080)
    for _ in range(40):  # more than the pair queues before its dial ends
        tunnel.put(_data(3, b"x" * 1000))
    tunnel.put(b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x09")
    await asyncio.sleep(0.1)
    gate.set()
    await tunnel.until(lambda: spdy.Ping(9) in tunnel.frames)
    assert _stream_bytes(tunnel.frames, 1) == (b"error forwarding port 8080 to pod uid-1, uid : connection refused",
                                               True)
    tunnel.inbox.put_nowait({"type": "websocket.disconnect"})
    await asyncio.wait_for(task, 5)
