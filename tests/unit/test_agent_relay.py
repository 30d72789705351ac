"""The kubernetes Service relay: bytes both ways, half-close passed on, a taken port falls back with a warning."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from kubesat.agent.relay import Relay


async def _echo_server() -> tuple[asyncio.base_events.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's EOF
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_bytes_go_both_ways_and_eof_passes() -> None:
    async def go() -> None:
        upstream, port = await _echo_server()
        relay = Relay("127.0.0.1", port, port=0)
        await relay.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"hello " * 50_000)
        writer.write_eof()
        got = await asyncio.wait_for(reader.read(), 5)
        assert got == b"HELLO " * 50_000
        writer.close()
        await relay.stop()
        upstream.close()
    asyncio.run(go())


def test_a_taken_port_falls_back_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        upstream, port = await _echo_server()
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        relay = Relay("127.0.0.1", port, port=busy)
        with caplog.at_level(logging.WARNING, logger="kubesat.agent.relay"):
            await relay.start()
        assert relay.port != busy
        assert [r.getMessage() for r in caplog.records] == [
            f"port {busy} on 127.0.0.1 is in use: the kubernetes Service is relayed on 127.0.0.1:{relay.port} "
            f"instead; pods get KUBERNETES_SERVICE_PORT={relay.port}, and https://kubernetes.default.svc (port 443) "
            "does not reach the API from them (free the port, or run the agent as root)"]
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"x")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"X"
        writer.close()
        await relay.stop()
        taken.close()
        upstream.close()
    asyncio.run(go())


def test_an_unreachable_server_closes_the_client() -> None:
    async def go() -> None:
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()  # nothing listens there
        relay = Relay("127.0.0.1", port, port=0)
        await relay.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await relay.stop()
    asyncio.run(go())
