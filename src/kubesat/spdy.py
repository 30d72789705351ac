"""SPDY/3 framing, as moby/spdystream (the library behind kubectl's port-forward) writes and reads it.

A frame is an 8-byte header and a payload. A data frame's header is the stream id (31 bits, top bit 0), then
flags (8 bits) and the payload length (24 bits); a control frame's is the control bit, the version (3) and
the frame type, then flags and length. The header blocks of SYN_STREAM, SYN_REPLY and HEADERS are a count
and length-prefixed names and values (32-bit big-endian each; names lowercase, several values joined by
NUL), compressed with zlib primed with SPDY/3's dictionary; each direction is one zlib stream for the whole
connection, each block ending with a sync flush.

`Decoder` turns a byte stream (which may be cut anywhere: tunneled in WebSocket messages, spdystream writes a
frame in several pieces) into frames; `Encoder` does the reverse. Everything read is bounded: a frame's
length, a header block's size once inflated and its number of headers. A violation is a `SpdyError`, after
which the connection cannot be trusted (its zlib state may be out of step): close it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

# Control frame types.
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes.
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FRAME_TOO_LARGE = 11

# GOAWAY status codes.
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1

# Bounds on what a peer can make us hold. spdystream writes data frames of at most 32 KiB (io.Copy's buffer);
# the protocol allows 16 MiB.
MAX_FRAME = 1 << 20
MAX_HEADER_BLOCK = 64 * 1024  # inflated
MAX_HEADERS = 128
MAX_STREAM_ID = 0x7FFFFFFF

_HEADER_NAMES = [
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin",
]
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# SPDY/3's zlib dictionary: the words above, each with its 32-bit length, then the tail as is.
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _HEADER_NAMES) + _DICTIONARY_TAIL.encode()

Headers = dict[str, list[str]]


class SpdyError(Exception):
    """The peer broke the protocol or a bound; the connection is to be closed."""


# ------------------------------------------------------------------------------ frames
@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes = b""
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False
    unidirectional: bool = False
    associated_to: int = 0
    priority: int = 0
    slot: int = 0


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = DataFrame | SynStream | SynReply | HeadersFrame | RstStream | Settings | Ping | GoAway | WindowUpdate


# ------------------------------------------------------------------------------ header blocks
def pack_headers(headers: Headers) -> bytes:
    """A header block before compression (names lowercased, values joined by NUL)."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n, v = name.lower().encode(), "\x00".join(values).encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def unpack_headers(block: bytes) -> Headers:
    """An inflated header block; SpdyError when it is cut short, has trailing bytes or too many headers."""
    if len(block) < 4:
        raise SpdyError("header block too short")
    (count,) = struct.unpack_from(">I", block)
    if count > MAX_HEADERS:
        raise SpdyError(f"too many headers ({count}, at most {MAX_HEADERS})")
    headers: Headers = {}
    pos = 4
    for _ in range(count):
        name, pos = _field(block, pos)
        value, pos = _field(block, pos)
        key = name.decode("latin-1").lower()
        headers.setdefault(key, []).extend(value.decode("latin-1").split("\x00"))
    if pos != len(block):
        raise SpdyError("trailing bytes after the header block")
    return headers


def _field(block: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(block):
        raise SpdyError("header block cut short")
    (n,) = struct.unpack_from(">I", block, pos)
    end = pos + 4 + n
    if end > len(block):
        raise SpdyError("header block cut short")
    return block[pos + 4:end], end


class HeaderCompressor:
    """One direction's zlib stream (spdystream compresses at level 9)."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(pack_headers(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The other direction's zlib stream: every block is inflated in turn, bounded in size."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, zdict=DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data, MAX_HEADER_BLOCK + 1)
        except zlib.error as e:
            raise SpdyError(f"header block does not inflate: {e}") from None
        if len(block) > MAX_HEADER_BLOCK or self._z.unconsumed_tail:
            raise SpdyError(f"header block larger than {MAX_HEADER_BLOCK} bytes")
        if self._z.eof:
            raise SpdyError("header compression stream ended")
        return unpack_headers(block)


# ------------------------------------------------------------------------------ encoding
def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def _flags(fin: bool, unidirectional: bool = False) -> int:
    return (FLAG_FIN if fin else 0) | (FLAG_UNIDIRECTIONAL if unidirectional else 0)


class Encoder:
    """Frames to bytes; owns this direction's header compression, so frames must be sent in the order they
    were encoded."""

    def __init__(self) -> None:
        self.headers = HeaderCompressor()

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            if len(frame.data) > 0xFFFFFF:
                raise ValueError("a data frame carries at most 16 MiB")
            return struct.pack(">II", frame.stream_id & MAX_STREAM_ID,
                               (_flags(frame.fin) << 24) | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            head = struct.pack(">IIBB", frame.stream_id, frame.associated_to, (frame.priority & 7) << 5, frame.slot)
            return _control(SYN_STREAM, _flags(frame.fin, frame.unidirectional),
                            head + self.headers.compress(frame.headers))
        if isinstance(frame, SynReply):
            return _control(SYN_REPLY, _flags(frame.fin),
                            struct.pack(">I", frame.stream_id) + self.headers.compress(frame.headers))
        if isinstance(frame, HeadersFrame):
            return _control(HEADERS, _flags(frame.fin),
                            struct.pack(">I", frame.stream_id) + self.headers.compress(frame.headers))
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (flags << 24) | key, value) for flags, key, value in frame.entries)
            return _control(SETTINGS, 1 if frame.clear else 0, body)
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))


# ------------------------------------------------------------------------------ decoding
_FIXED = {SYN_STREAM: 10, SYN_REPLY: 4, HEADERS: 4, RST_STREAM: 8, SETTINGS: 4, PING: 4, GOAWAY: 8,
          WINDOW_UPDATE: 8}
_EXACT = {RST_STREAM, PING, GOAWAY, WINDOW_UPDATE}


class Decoder:
    """Bytes to frames, however the stream is cut. Holds at most one frame's bytes."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.headers = HeaderDecompressor()
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by `data` (unknown control frame types are skipped, as SPDY/3 says)."""
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            first, flags_length = struct.unpack_from(">II", self._buf)
            length = flags_length & 0xFFFFFF
            if length > self.max_frame:
                raise SpdyError(f"frame of {length} bytes (at most {self.max_frame})")
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            frame = self._frame(first, flags_length >> 24, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _frame(self, first: int, flags: int, payload: bytes) -> Frame | None:
        if not first & 0x80000000:
            if first == 0:
                raise SpdyError("data frame on stream 0")
            return DataFrame(first, payload, bool(flags & FLAG_FIN))
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        need = _FIXED.get(kind)
        if need is None:
            return None
        if len(payload) < need or (kind in _EXACT and len(payload) != need):
            raise SpdyError(f"control frame of type {kind} with a {len(payload)}-byte payload")
        return self._control(kind, flags, payload)

    def _control(self, kind: int, flags: int, payload: bytes) -> Frame:
        fin = bool(flags & FLAG_FIN)
        if kind == SYN_STREAM:
            sid, assoc, prio, slot = struct.unpack_from(">IIBB", payload)
            return SynStream(_stream_id(sid), self.headers.decompress(payload[10:]), fin,
                             bool(flags & FLAG_UNIDIRECTIONAL), assoc & MAX_STREAM_ID, prio >> 5, slot)
        if kind in (SYN_REPLY, HEADERS):
            (sid,) = struct.unpack_from(">I", payload)
            cls = SynReply if kind == SYN_REPLY else HeadersFrame
            return cls(_stream_id(sid), self.headers.decompress(payload[4:]), fin)
        if kind == SETTINGS:
            (count,) = struct.unpack_from(">I", payload)
            if len(payload) != 4 + 8 * count:
                raise SpdyError(f"SETTINGS frame of {len(payload)} bytes for {count} entries")
            entries = tuple((a >> 24, a & 0xFFFFFF, b) for a, b in struct.iter_unpack(">II", payload[4:]))
            return Settings(entries, bool(flags & 1))
        if kind == PING:
            return Ping(struct.unpack(">I", payload)[0])
        a, b = struct.unpack(">II", payload)
        if kind == RST_STREAM:
            return RstStream(_stream_id(a), b)
        if kind == GOAWAY:
            return GoAway(a & MAX_STREAM_ID, b)
        return WindowUpdate(a & MAX_STREAM_ID, b & 0x7FFFFFFF)


def _stream_id(raw: int) -> int:
    sid = raw & MAX_STREAM_ID
    if sid == 0:
        raise SpdyError("stream id 0")
    return sid
