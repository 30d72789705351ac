"""The agent's inputs from outside: a kubeconfig file (size, aliases, encoding) and a watch stream (line length,
JSON) are refused with one clear error, never read without bound."""

from __future__ import annotations

import asyncio
from pathlib import Path

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


def _watch(body: bytes) -> list[tuple[str, dict]]:
    async def main() -> list[tuple[str, dict]]:
        transport = httpx.MockTransport(lambda _req: httpx.Response(200, content=body))
        api = client.ApiClient.__new__(client.ApiClient)
        api._http = httpx.AsyncClient(transport=transport, base_url="https://test")
        api._retiring = set()
        try:
            return [e async for e in api.watch("/api/v1/pods", {})]
        finally:
            await api.close()
    return asyncio.run(main())


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
