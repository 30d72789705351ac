"""A connection switched away from HTTP/1.1 (`101 Switching Protocols` to SPDY/3.1): the bytes the peer
sends, read through a bounded buffer, and writes that wait while the peer is not reading.

The HTTP protocol (`tls`) makes one when a handler switches protocols and feeds it what arrives from then
on; the buffer holds at most about twice `READ_LIMIT` before reading from the socket pauses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

READ_LIMIT = 64 * 1024


class RawConnection:
    def __init__(self, transport: asyncio.Transport, drain: Callable[[], Awaitable[None]]) -> None:
        self._transport = transport
        self._drain = drain
        self._reader = asyncio.StreamReader(READ_LIMIT)
        self._reader.set_transport(transport)  # pauses reading while the buffer is full

    # ---------------------------------------------------------------- from the protocol
    def feed(self, data: bytes) -> None:
        self._reader.feed_data(data)

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    # ---------------------------------------------------------------- for the session
    async def read(self, n: int = READ_LIMIT) -> bytes:
        """Up to `n` bytes; b"" once the peer has closed."""
        return await self._reader.read(n)

    def send(self, data: bytes) -> None:
        """Queue `data` (frames written in one synchronous step leave in that order);
        ConnectionResetError once the connection is closing."""
        if self._transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self._transport.write(data)

    async def drain(self) -> None:
        """Wait while the peer is not reading what was sent."""
        await self._drain()

    async def write(self, data: bytes) -> None:
        self.send(data)
        await self.drain()

    def close(self) -> None:
        """Close once what was sent has been written."""
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    @property
    def closing(self) -> bool:
        return self._transport.is_closing()
