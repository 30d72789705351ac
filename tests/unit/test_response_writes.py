"""A response's head and body leave in one write; a head alone (a stream's) still leaves on the next loop turn."""

from __future__ import annotations

import asyncio

from kubesat.api.tls import _HeadWithBody


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


class _Protocol:
    _header_bytes = 0  # the request has been read whole: heads pass unchanged


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def test_head_and_body_are_one_write() -> None:
    async def main() -> list[bytes]:
        t = _Transport()
        w = _HeadWithBody(t, asyncio.get_running_loop(), _Protocol())  # type: ignore[arg-type]
        w.write(HEAD)
        assert t.writes == []
        w.write(b"{}")
        await asyncio.sleep(0)
        return t.writes

    assert asyncio.run(main()) == [HEAD + b"{}"]


def test_a_head_alone_leaves_on_the_next_turn_and_order_is_kept() -> None:
    async def main() -> list[bytes]:
        t = _Transport()
        w = _HeadWithBody(t, asyncio.get_running_loop(), _Protocol())  # type: ignore[arg-type]
        w.write(HEAD.replace(b"content-length: 2", b"transfer-encoding: chunked"))
        await asyncio.sleep(0)
        assert len(t.writes) == 1  # a watch's client sees its headers without waiting for an event
        w.write(b"5\r\nhello\r\n")
        w.write(b"0\r\n\r\n")  # the last chunk ends as a head does: held, then flushed in order
        w.close()
        return t.writes

    writes = asyncio.run(main())
    assert writes[1:] == [b"5\r\nhello\r\n", b"0\r\n\r\n"]


def test_everything_else_is_the_transports() -> None:
    async def main() -> None:
        t = _Transport()
        w = _HeadWithBody(t, asyncio.get_running_loop(), _Protocol())  # type: ignore[arg-type]
        assert w.get_extra_info("peername") == "info:peername"
        w.write(HEAD)
        w.close()
        assert t.writes == [HEAD] and t.closed and w.is_closing()

    asyncio.run(main())
