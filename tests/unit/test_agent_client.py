"""The agent's inputs from outside: a kubeconfig file (size, aliases, encoding) and a watch stream (line length,
JSON) are refused with one clear error, never read without bound."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubesat.agent import client
from kubesat.agent.client import ApiError, KubeconfigError, load_kubeconfig


def test_a_large_kubeconfig_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"#" * (client.MAX_KUBECONFIG_BYTES + 1))
    with pytest.raises(KubeconfigError, match="larger than"):
        load_kubeconfig(path)


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "alias"
    path.write_text("a: &a [x, x, x]\nb: [*a, *a, *a]\n")
    with pytest.raises(KubeconfigError, match="aliases are not allowed in a kubeconfig \\(line 2"):
        load_kubeconfig(path)


@pytest.mark.parametrize("data,message", [
    (b"\xff\xfe", "codec can't decode"),
    (b"[1, 2]", "not a kubeconfig"),
    (b"current-context: x\ncontexts: []\n", "no context named 'x'"),
    (b"a: [\n", "line 2"),
])
def test_bad_kubeconfigs_are_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(data)
    with pytest.raises(KubeconfigError, match=message) as e:
        load_kubeconfig(path)
    assert "\n" not in str(e.value)


class FakeServer:
    """A plain-HTTP server on the loopback that answers each request with `handler(method, path, body)`:
    (status, body, chunked, close)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[str, str, bytes]] = []

    async def __aenter__(self) -> client.ApiClient:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.api = client.ApiClient(client.Credentials(server=f"http://127.0.0.1:{port}", ca_pem=b"", token="t"),
                                    Path("/nonexistent"), "test")
        return self.api

    async def __aexit__(self, *exc: object) -> None:
        await self.api.close()
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ")
                length = next((int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length")), 0)
                body = await reader.readexactly(length)
                self.requests.append((method, path, body))
                status, out, chunked, close = self.handler(method, path, body)
                if chunked:
                    parts = [out[i:i + 7] for i in range(0, len(out), 7)]
                    data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in parts) + b"0\r\n\r\n"
                    writer.write(b"HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n\r\n%s" % (status, data))
                else:
                    writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(out), out))
                await writer.drain()
                if close:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def _watch(body: bytes) -> list[tuple[str, dict]]:
    async def main() -> list[tuple[str, dict]]:
        async with FakeServer(lambda *_: (200, body, True, True)) as api:
            return [e async for e in api.watch("/api/v1/pods", {})]
    return asyncio.run(main())


def test_requests_share_a_kept_alive_connection() -> None:
    async def main() -> None:
        fake = FakeServer(lambda m, p, b: (200, b'{"method":"%s","body":%s}' % (m.encode(), b or b"null"), False,
                                           False))
        async with fake as api:
            assert await api.get("/a", {"x": "1 2"}) == {"method": "GET", "body": None}
            assert await api.create("/b", {"k": 1}) == {"method": "POST", "body": {"k": 1}}
            assert await api.patch("/c", {"k": 2}) == {"method": "PATCH", "body": {"k": 2}}
        assert fake.connections == 1
        assert [(m, p) for m, p, _ in fake.requests] == [("GET", "/a?x=1+2"), ("POST", "/b"), ("PATCH", "/c")]
    asyncio.run(main())


def test_a_connection_the_server_closed_is_replaced() -> None:
    async def main() -> None:
        fake = FakeServer(lambda *_: (200, b"{}", False, True))  # the server closes after each answer
        async with fake as api:
            for _ in range(3):
                assert await api.get("/a") == {}
        assert fake.connections == 3
    asyncio.run(main())


def test_an_error_answer_is_an_api_error() -> None:
    async def main() -> None:
        body = b'{"kind":"Status","reason":"NotFound","message":"pods \\"x\\" not found","code":404}'
        async with FakeServer(lambda *_: (404, body, False, False)) as api:
            with pytest.raises(ApiError) as e:
                await api.get("/api/v1/namespaces/default/pods/x")
        assert (e.value.code, e.value.reason, e.value.message) == (404, "NotFound", 'pods "x" not found')
    asyncio.run(main())


def test_an_unreachable_server_is_an_httpx_error() -> None:
    async def main() -> None:
        async with FakeServer(lambda *_: (200, b"{}", False, False)) as api:
            pass
        with pytest.raises(httpx.HTTPError):
            await api.get("/a")  # closed
        port = api._http.port
        other = client.ApiClient(client.Credentials(server=f"http://127.0.0.1:{port}", ca_pem=b""), Path("/x"), "t")
        with pytest.raises(httpx.ConnectError):
            await other.get("/a")
        await other.close()
    asyncio.run(main())


def test_an_answer_past_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "MAX_RESPONSE_BYTES", 1000)

    async def main() -> None:
        async with FakeServer(lambda *_: (200, b'"' + b"x" * 2000 + b'"', False, False)) as api:
            with pytest.raises(httpx.RemoteProtocolError, match="longer than 1000"):
                await api.get("/a")
    asyncio.run(main())


def test_watch_events_are_read_line_by_line() -> None:
    body = b'{"type":"ADDED","object":{"a":1}}\n\n{"type":"DELETED","object":{"b":2}}'
    assert _watch(body) == [("ADDED", {"a": 1}), ("DELETED", {"b": 2})]


def test_an_endless_watch_line_is_refused() -> None:
    with pytest.raises(ApiError, match="longer than"):
        _watch(b"x" * (client.MAX_EVENT_BYTES + 10))


@pytest.mark.parametrize("line", [b"not json", b"[1]", b'{"type":"ADDED","object":3}'])
def test_a_malformed_watch_event_is_an_api_error(line: bytes) -> None:
    with pytest.raises(ApiError):
        _watch(line + b"\n")
