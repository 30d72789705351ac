"""exec and attach over SPDY/3.1 proper on the API server (kubesat.api.spdyexec) against a scripted client and a
scripted kubelet WebSocket: the streams client-go opens, the relay both ways, the Status per protocol version,
and hostile input (malformed frames, too many streams, huge header blocks, a client that never opens its
streams): the connection closed with a GOAWAY and one log line, never a traceback. Also the protocol
negotiation (kubesat.api.streams.spdy_handshake)."""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from typing import Any, cast

import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from kubesat import errors, remotecommand, spdy
from kubesat.api import spdyexec
from kubesat.api.rawconn import RawConnection
from kubesat.api.spdyexec import Channels, SpdyExec
from kubesat.api.streams import spdy_handshake

STDOUT_ONLY = Channels(False, True, False, False)
EXIT_2 = orjson.dumps(remotecommand.exit_code_status(2, ["sh", "-c", "exit 2"]))


class Client:
    """The client's side of the connection: what it sends is read by the session, what the session sends is
    decoded back into frames."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self.encoder = spdy.Encoder()
        self.out = bytearray()

    # RawConnection's interface, as the session uses it
    async def read(self, n: int = 0) -> bytes:
        return await self.incoming.get()

    def send(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        await asyncio.sleep(0)

    # the test's side
    def frame(self, frame: spdy.Frame) -> None:
        self.incoming.put_nowait(self.encoder.encode(frame))

    def raw(self, data: bytes) -> None:
        self.incoming.put_nowait(data)

    def eof(self) -> None:
        self.incoming.put_nowait(b"")

    def frames(self) -> list[spdy.Frame]:
        frames: list[spdy.Frame] = spdy.Decoder().feed(bytes(self.out))
        return frames


class Kubelet:
    """The kubelet's v5 WebSocket: records what is sent, yields what the test queues (None ends it)."""

    def __init__(self) -> None:
        self.sent: list[bytes | str] = []
        self.messages: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def send(self, message: bytes | str) -> None:
        self.sent.append(message)

    def __aiter__(self) -> Kubelet:
        return self

    async def __anext__(self) -> bytes:
        message = await self.messages.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def close(self) -> None:
        self.closed = True


def _session(client: Client, kubelet: Kubelet, channels: Channels, protocol: str = remotecommand.V5) -> SpdyExec:
    return SpdyExec(cast(RawConnection, client), cast(ClientConnection, kubelet), protocol, channels, "ns/p")


def _syn(client: Client, sid: int, kind: str) -> None:
    client.frame(spdy.SynStream(sid, {"streamtype": [kind]}))


def _streams(frames: list[spdy.Frame], sid: int) -> bytes:
    return b"".join(f.data for f in frames if isinstance(f, spdy.DataFrame) and f.stream_id == sid)


def _fins(frames: list[spdy.Frame]) -> set[int]:
    return {f.stream_id for f in frames if isinstance(f, spdy.DataFrame) and f.fin}


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_expected_streams_as_the_kubelet_counts_them() -> None:
    assert Channels(False, True, True, False).expected(remotecommand.V4) == {"error", "stdout", "stderr"}
    assert Channels(True, True, True, True).expected(remotecommand.V5) == {"error", "stdin", "stdout", "resize"}
    assert Channels(True, True, False, True).expected(remotecommand.V2) == {"error", "stdin", "stdout"}


async def _exec_with_exit_code() -> tuple[Client, Kubelet]:
    client, kubelet = Client(), Kubelet()
    session = asyncio.create_task(_session(client, kubelet, Channels(True, True, True, False)).run())
    for sid, kind in ((1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr")):
        _syn(client, sid, kind)
    client.frame(spdy.Ping(1))
    client.frame(spdy.DataFrame(3, b"hello\n"))
    client.frame(spdy.DataFrame(3, b"", fin=True))
    await asyncio.sleep(0.05)
    for message in (b"\x01out\n", b"\x02err\n", b"\x03" + EXIT_2):
        kubelet.messages.put_nowait(message)
    kubelet.messages.put_nowait(None)
    await session
    return client, kubelet


def test_exec_relays_both_ways_and_ends_with_the_status() -> None:
    client, kubelet = _run(_exec_with_exit_code())
    frames = client.frames()
    assert [f.stream_id for f in frames if isinstance(f, spdy.SynReply)] == [1, 3, 5, 7]
    assert spdy.Ping(1) in frames
    assert kubelet.sent == [b"\x00hello\n", b"\xff\x00"]  # stdin, then the v5 close of stdin
    assert _streams(frames, 5) == b"out\n" and _streams(frames, 7) == b"err\n"
    status = orjson.loads(_streams(frames, 1))
    assert (status["reason"], status["details"]["causes"]) == ("NonZeroExitCode",
                                                               [{"reason": "ExitCode", "message": "2"}])
    assert _fins(frames) == {1, 3, 5, 7}
    assert frames[-1] == spdy.GoAway(7, spdy.GOAWAY_OK)
    assert kubelet.closed


async def _older_protocol(protocol: str, status: bytes) -> bytes:
    client, kubelet = Client(), Kubelet()
    session = asyncio.create_task(_session(client, kubelet, Channels(False, True, False, False), protocol).run())
    _syn(client, 1, "error")
    _syn(client, 3, "stdout")
    await asyncio.sleep(0.05)
    kubelet.messages.put_nowait(b"\x03" + status)
    kubelet.messages.put_nowait(None)
    await session
    return _streams(client.frames(), 1)


def test_protocols_before_v4_carry_the_message_as_text() -> None:
    assert _run(_older_protocol(remotecommand.V3, EXIT_2)) == \
        b"command terminated with non-zero exit code: error executing command [sh -c exit 2], exit code 2"
    assert _run(_older_protocol(remotecommand.V2, orjson.dumps(remotecommand.success_status()))) == b""
    assert orjson.loads(_run(_older_protocol(remotecommand.V4, EXIT_2)))["reason"] == "NonZeroExitCode"


async def _resize_with_tty() -> list[bytes | str]:
    client, kubelet = Client(), Kubelet()
    session = asyncio.create_task(_session(client, kubelet, Channels(True, True, False, True)).run())
    for sid, kind in ((1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")):
        _syn(client, sid, kind)
    client.frame(spdy.DataFrame(7, b'{"Width":80,'))
    client.frame(spdy.DataFrame(7, b'"Height":24}\n{"Width":100,"Height":30}\n'))
    await asyncio.sleep(0.05)
    kubelet.messages.put_nowait(None)
    await session
    return kubelet.sent


def test_resize_lines_become_channel_4() -> None:
    assert _run(_resize_with_tty()) == [b'\x04{"Width":80,"Height":24}', b'\x04{"Width":100,"Height":30}']


# ------------------------------------------------------------------------------------------- hostile input
async def _hostile(feed: Any, channels: Channels = STDOUT_ONLY) -> tuple[Client, Kubelet]:
    client, kubelet = Client(), Kubelet()
    session = asyncio.create_task(_session(client, kubelet, channels).run())
    feed(client)
    await session
    return client, kubelet


def _closed_with_one_line(caplog: pytest.LogCaptureFixture, feed: Any, why: str,
                          channels: Channels = STDOUT_ONLY) -> None:
    with caplog.at_level(logging.INFO, logger="kubesat.api.spdyexec"):
        client, kubelet = _run(_hostile(feed, channels))
    lines = [r for r in caplog.records if r.name == "kubesat.api.spdyexec"]
    assert len(lines) == 1 and why in lines[0].getMessage(), [r.getMessage() for r in lines]
    assert lines[0].exc_info is None
    last = client.frames()[-1]
    assert isinstance(last, spdy.GoAway) and last.status == spdy.GOAWAY_PROTOCOL_ERROR
    assert kubelet.closed
    caplog.clear()


def test_malformed_frames_close_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    _closed_with_one_line(caplog, lambda c: c.raw(b"\x80\x02\x00\x01\x00\x00\x00\x00"),
                          "unsupported SPDY version 2")
    _closed_with_one_line(caplog, lambda c: c.raw(b"\x00\x00\x00\x00\x00\x00\x00\x01x"), "data frame on stream 0")
    garbage = struct.pack(">IIBB", 1, 0, 0, 0) + b"not zlib"
    _closed_with_one_line(caplog, lambda c: c.raw(struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, 18) + garbage),
                          "malformed SPDY: header block does not inflate")
    _closed_with_one_line(caplog, lambda c: c.raw(struct.pack(">II", 1, spdy.MAX_FRAME + 1)), "frame of 1048577 bytes")
    # a stream id that goes backwards, or is even (the server's)
    def backwards(client: Client) -> None:
        _syn(client, 5, "error")
        _syn(client, 3, "stdout")
    _closed_with_one_line(caplog, backwards, "stream id 3")
    _closed_with_one_line(caplog, lambda c: _syn(c, 2, "error"), "stream id 2")


def test_too_many_streams_close_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    def flood(client: Client) -> None:
        for i in range(spdyexec.MAX_STREAMS + 1):
            _syn(client, 2 * i + 1, "bogus")
    _closed_with_one_line(caplog, flood, f"more than {spdyexec.MAX_STREAMS} streams")


def test_huge_header_blocks_close_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, spdy.DICTIONARY)
    value = b"x" * (spdy.MAX_HEADER_BLOCK + 10)  # deflates to a few hundred bytes
    block = struct.pack(">II", 1, 10) + b"streamtype" + struct.pack(">I", len(value)) + value
    body = struct.pack(">IIBB", 1, 0, 0, 0) + z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)
    frame = struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(body)) + body
    _closed_with_one_line(caplog, lambda c: c.raw(frame), "header block larger than 65536 bytes")
    many = spdy.pack_headers({f"h{i}": ["v"] for i in range(spdy.MAX_HEADERS + 1)})
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, spdy.DICTIONARY)  # a new connection's
    body = struct.pack(">IIBB", 1, 0, 0, 0) + z.compress(many) + z.flush(zlib.Z_SYNC_FLUSH)
    _closed_with_one_line(caplog, lambda c: c.raw(struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(body)) + body),
                          "too many headers")


def test_a_resize_line_without_end_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    def feed(client: Client) -> None:
        for sid, kind in ((1, "error"), (3, "stdout"), (5, "resize")):
            _syn(client, sid, kind)
        client.frame(spdy.DataFrame(5, b"{" * (spdyexec.MAX_RESIZE + 1)))
    _closed_with_one_line(caplog, feed, "a resize message longer than 4096 bytes", Channels(False, True, False, True))


def test_streams_not_opened_in_time(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spdyexec, "STREAM_TIMEOUT", 0.1)
    _closed_with_one_line(caplog, lambda c: _syn(c, 1, "error"), "timed out waiting for the client to create streams")


async def _client_leaves() -> tuple[Client, Kubelet]:
    client, kubelet = Client(), Kubelet()
    session = asyncio.create_task(_session(client, kubelet, Channels(False, True, False, False)).run())
    _syn(client, 1, "error")
    _syn(client, 3, "stdout")
    client.eof()
    await session
    return client, kubelet


def test_a_client_that_leaves_ends_the_kubelets_websocket() -> None:
    client, kubelet = _run(_client_leaves())
    assert kubelet.closed
    assert not [f for f in client.frames() if isinstance(f, spdy.GoAway)]


# ------------------------------------------------------------------------------------------- negotiation
def _headers(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"x"), *((b"x-stream-protocol-version", v.encode()) for v in values)]


def test_protocol_negotiation_as_the_kubelets_handshake() -> None:
    offers = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
    assert spdy_handshake(_headers(*offers), spdyexec.PROTOCOLS) == "v5.channel.k8s.io"
    assert spdy_handshake(_headers("v9.x, v4.channel.k8s.io"), spdyexec.PROTOCOLS) == "v4.channel.k8s.io"
    assert spdy_handshake(_headers("portforward.k8s.io"), ("portforward.k8s.io",)) == "portforward.k8s.io"
    with pytest.raises(errors.StatusError, match="header X-Stream-Protocol-Version does not exist in request "
                                                 "with 1 headers") as e:
        spdy_handshake(_headers(), spdyexec.PROTOCOLS)
    assert e.value.code == 400
    with pytest.raises(errors.StatusError, match=r"contains \[ , \], but no valid protocols"):
        spdy_handshake(_headers(" , "), spdyexec.PROTOCOLS)
    with pytest.raises(errors.StatusError, match=r"unable to negotiate protocol: client supports \[v9\], server "
                                                 r"accepts \[portforward.k8s.io\]") as e:
        spdy_handshake(_headers("v9"), ("portforward.k8s.io",))
    assert e.value.code == 403
