"""The agent's connection to the API server: a kubeconfig read as kubectl reads it, and JSON over HTTPS.

The agent is a client of the server exactly as the kubelet is: everything it knows comes through
the API, with the identity its kubeconfig names (a node's client certificate, or any other).

Requests go over a small HTTP/1.1 client of its own (`HttpPool`: keep-alive connections on asyncio streams,
responses read with httptools, the parser the server's stack uses): an httpx request cost the agent about 1 ms
of CPU, this one about a tenth of that, and the agent makes two or three per pod and one per token refresh.
Transport failures are raised as httpx's exception types (`httpx.ConnectError`, `httpx.ReadError`,
`httpx.ReadTimeout`, `httpx.RemoteProtocolError`), so callers catch `httpx.HTTPError` as before.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httptools
import httpx
import orjson
import yaml

# How long one API call may take before the agent treats the server as unreachable.
REQUEST_TIMEOUT = 30.0
# A kubeconfig larger than this is refused unread (real ones are a few KiB).
MAX_KUBECONFIG_BYTES = 1 << 20
# The longest watch event line the agent reads: the server stores objects of at most 1.5 MiB.
MAX_EVENT_BYTES = 4 << 20
# After a new client certificate, how long the connections made with the old one are kept for requests under way.
RETIRE_GRACE = 5.0
# Connections to the server at once (requests beyond wait for one); idle ones are kept for the next request.
MAX_CONNECTIONS = 32
# The largest answer the agent reads (a list of every pod on a node of thousands is tens of MiB).
MAX_RESPONSE_BYTES = 256 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a kubeconfig never needs them, and they can expand without bound."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed in a kubeconfig",
                                              event.start_mark)
        return super().compose_node(parent, index)


class KubeconfigError(Exception):
    """A kubeconfig the agent cannot use; the message names the file and what is wrong."""


class ApiError(Exception):
    """A non-2xx answer: its code, the Status reason and message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Credentials:
    """What a kubeconfig's current context says: where the server is, how to trust it, who we are."""

    server: str
    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None


def load_kubeconfig(path: Path) -> Credentials:
    """The current context of a kubeconfig file (inline `-data` fields or paths relative to the file)."""
    try:
        if path.stat().st_size > MAX_KUBECONFIG_BYTES:
            raise KubeconfigError(f"{path}: larger than {MAX_KUBECONFIG_BYTES} bytes; not a kubeconfig")
        doc = yaml.load(path.read_text(), Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader without aliases
    except yaml.MarkedYAMLError as e:
        where = f" (line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1})" if e.problem_mark else ""
        raise KubeconfigError(f"{path}: {e.problem or e.context}{where}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise KubeconfigError(f"{path}: {e}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path}: not a kubeconfig")
    context_name = doc.get("current-context") or ""
    context = _named(doc, "contexts", context_name, path).get("context") or {}
    cluster = _named(doc, "clusters", context.get("cluster", ""), path).get("cluster") or {}
    user = _named(doc, "users", context.get("user", ""), path).get("user") or {}
    server = cluster.get("server") or ""
    if not server.startswith("https://"):
        raise KubeconfigError(f"{path}: the cluster's server must be an https:// URL, not {server!r}")
    return Credentials(
        server=server.rstrip("/"),
        ca_pem=_data(cluster, "certificate-authority", path) or b"",
        cert_pem=_data(user, "client-certificate", path),
        key_pem=_data(user, "client-key", path),
        token=user.get("token"),
    )


def _named(doc: dict[str, Any], section: str, name: str, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise KubeconfigError(f"{path}: no {section[:-1]} named {name!r} (from current-context)")


def _data(entry: dict[str, Any], field: str, path: Path) -> bytes | None:
    if entry.get(f"{field}-data"):
        try:
            return base64.b64decode(str(entry[f"{field}-data"]), validate=True)
        except ValueError:
            raise KubeconfigError(f"{path}: {field}-data is not base64") from None
    if entry.get(field):
        file: Path = path.parent / str(entry[field])
        try:
            return file.read_bytes()
        except OSError as e:
            raise KubeconfigError(f"{path}: {field}: {e}") from None
    return None


def tls_context(creds: Credentials, key_dir: Path) -> ssl.SSLContext:
    """A TLS context that trusts the kubeconfig's CA and presents its client certificate, if any.

    The ssl module loads a certificate and key only from files: they are written under `key_dir`,
    readable by the agent's user alone, as the kubelet keeps its own under its root.
    """
    ctx = ssl.create_default_context(cadata=creds.ca_pem.decode() if creds.ca_pem else None)
    if creds.cert_pem and creds.key_pem:
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_file, key_file = key_dir / "client.crt", key_dir / "client.key"
        for file, data in ((cert_file, creds.cert_pem), (key_file, creds.key_pem)):
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class HttpError(Exception):
    """An answer that is not HTTP/1.1 as the agent reads it."""


class _Parsed:
    """httptools callbacks: the body so far, whether the headers and the answer are complete, whether the
    connection may be kept (known only while the last callback runs)."""

    __slots__ = ("body", "complete", "headers_done", "size", "limit", "parser", "keep_alive")

    def __init__(self, limit: int) -> None:
        self.body: list[bytes] = []
        self.complete = False
        self.headers_done = False
        self.keep_alive = False
        self.size = 0
        self.limit = limit
        self.parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        self.parser.feed_data(data)
        if self.size > self.limit:
            raise HttpError(f"an answer longer than {self.limit} bytes")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= self.limit:
            self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()


class _Conn:
    __slots__ = ("reader", "writer", "answered")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.answered = False  # any byte of the current answer read

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


class HttpPool:
    """HTTP/1.1 requests to one server over keep-alive connections (at most MAX_CONNECTIONS at once)."""

    def __init__(self, base_url: str, tls: ssl.SSLContext | None, headers: dict[str, str],
                 max_connections: int = MAX_CONNECTIONS, timeout: float = REQUEST_TIMEOUT) -> None:
        url = urlsplit(base_url)
        self.host = url.hostname or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self.tls = tls if url.scheme == "https" else None
        self.timeout = timeout
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in {"Host": url.netloc, **headers}.items())
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def _open(self) -> _Conn:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {self.host}:{self.port} timed out") from None
        except (OSError, ssl.SSLError) as e:
            raise httpx.ConnectError(f"connecting to {self.host}:{self.port}: {e}") from None
        return _Conn(reader, writer)

    def _head(self, method: str, path: str, params: dict[str, str] | None, body: bytes | None,
              content_type: str | None) -> bytes:
        target = self.prefix + path + ("?" + urlencode(params) if params else "")
        extra = ""
        if body is not None:
            extra = f"Content-Type: {content_type or 'application/json'}\r\nContent-Length: {len(body)}\r\n"
        return f"{method} {target} HTTP/1.1\r\n{self._fixed}{extra}\r\n".encode()

    async def request(self, method: str, path: str, params: dict[str, str] | None = None,
                      body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes]:
        """(status code, body). A kept-alive connection the server closed meanwhile is replaced once."""
        if self._closed:
            raise httpx.ConnectError("the API client is closed")
        data = self._head(method, path, params, body, content_type) + (body or b"")
        async with self._slots:
            for attempt in range(2):
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._open()
                try:
                    async with asyncio.timeout(self.timeout):
                        conn.writer.write(data)
                        parsed = await self._read(conn, MAX_RESPONSE_BYTES, until_complete=True)
                except TimeoutError:
                    conn.close()
                    raise httpx.ReadTimeout(f"{method} {path}: no answer in {self.timeout:.0f} s") from None
                except (OSError, ssl.SSLError, EOFError) as e:
                    conn.close()
                    if reused and not conn.answered and attempt == 0:
                        continue  # an idle connection the server had closed: once more on a new one
                    raise httpx.ReadError(f"{method} {path}: {e or 'connection closed'}") from None
                except (HttpError, httptools.HttpParserError) as e:
                    conn.close()
                    raise httpx.RemoteProtocolError(f"{method} {path}: {e}") from None
                if parsed.keep_alive and not self._closed:
                    self._idle.append(conn)
                else:
                    conn.close()
                return parsed.parser.get_status_code(), b"".join(parsed.body)
        raise AssertionError("unreachable")

    @staticmethod
    async def _read(conn: _Conn, limit: int, until_complete: bool) -> _Parsed:
        """Read until the answer is complete (or, for a stream, until its headers are in)."""
        parsed = _Parsed(limit)
        conn.answered = False
        while not (parsed.complete if until_complete else parsed.headers_done):
            chunk = await conn.reader.read(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            conn.answered = True
            parsed.feed(chunk)
        return parsed

    @contextlib.asynccontextmanager
    async def stream(self, path: str, params: dict[str, str]) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        """A GET whose body is read as it comes (a watch): (status, its chunks). The connection is its own."""
        if self._closed:
            raise httpx.ConnectError("the API client is closed")
        conn = await self._open()
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    conn.writer.write(self._head("GET", path, params, None, None))
                    parsed = await self._read(conn, MAX_RESPONSE_BYTES, until_complete=False)
            except TimeoutError:
                raise httpx.ReadTimeout(f"GET {path}: no answer in {self.timeout:.0f} s") from None
            except (OSError, ssl.SSLError, EOFError) as e:
                raise httpx.ReadError(f"GET {path}: {e}") from None
            except (HttpError, httptools.HttpParserError) as e:
                raise httpx.RemoteProtocolError(f"GET {path}: {e}") from None

            async def chunks() -> AsyncIterator[bytes]:
                while True:
                    while parsed.body:
                        data = parsed.body.pop(0)
                        parsed.size -= len(data)  # the limit is on what is buffered, not the stream's length
                        yield data
                    if parsed.complete:
                        return
                    try:
                        chunk = await conn.reader.read(65536)
                        if not chunk:
                            raise httpx.ReadError(f"GET {path}: the server closed the connection")
                        parsed.feed(chunk)
                    except (OSError, ssl.SSLError) as e:
                        raise httpx.ReadError(f"GET {path}: {e}") from None
                    except (HttpError, httptools.HttpParserError) as e:
                        raise httpx.RemoteProtocolError(f"GET {path}: {e}") from None
            yield parsed.parser.get_status_code(), chunks()
        finally:
            conn.close()

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


class ApiClient:
    """JSON requests to the API server, each answer a dict or an ApiError."""

    # Connection pools of an earlier client certificate, closing (see use_client_certificate).
    _retiring: set[asyncio.Task[None]] | None = None

    def __init__(self, creds: Credentials, key_dir: Path, user_agent: str) -> None:
        self._creds = creds
        self._key_dir = key_dir
        self._user_agent = user_agent
        self._http = self._connect()

    def _connect(self) -> HttpPool:
        creds = self._creds
        headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        if creds.token and not creds.cert_pem:
            headers["Authorization"] = f"Bearer {creds.token}"
        tls = tls_context(creds, self._key_dir) if creds.server.startswith("https://") else None
        return HttpPool(creds.server, tls, headers)

    def use_client_certificate(self, cert_pem: bytes, key_pem: bytes, grace: float = RETIRE_GRACE) -> None:
        """Present this client certificate from now on, as the kubelet does after rotating its own: new
        requests go through new connections; the old ones are closed after `grace` seconds, so requests
        under way finish and a watch on them ends (its caller resumes it with the new certificate)."""
        self._creds = replace(self._creds, cert_pem=cert_pem, key_pem=key_pem)
        old, self._http = self._http, self._connect()
        task = asyncio.get_running_loop().create_task(_close_after(old, grace))
        if self._retiring is None:
            self._retiring = set()
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        retiring = list(self._retiring or ())
        for task in retiring:
            task.cancel()
        await asyncio.gather(*retiring, return_exceptions=True)
        await self._http.aclose()

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self._call("GET", path, params=params)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, body)

    async def update(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PUT", path, body)

    async def patch(self, path: str, body: dict[str, Any],
                    content_type: str = "application/strategic-merge-patch+json") -> dict[str, Any]:
        return await self._call("PATCH", path, body, content_type)

    async def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._call("DELETE", path, body)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    content_type: str = "application/json", params: dict[str, str] | None = None) -> dict[str, Any]:
        content = orjson.dumps(body) if body is not None else None
        code, data = await self._http.request(method, path, params, content, content_type)
        return _answer(code, data)

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The events of a watch, one (type, object) at a time, until the server ends it."""
        query = dict(params, watch="true")
        async with self._http.stream(path, query) as (code, chunks):
            if code >= 300:
                _answer(code, b"".join([c async for c in _bounded(chunks, 1 << 20)]))
            async for line in _lines(chunks):
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise ApiError(500, "InternalError", f"a watch event that is not JSON: {e}") from None
                if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                    raise ApiError(500, "InternalError", "a watch event without an object")
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(int(status.get("code") or 500), status.get("reason", ""), status.get("message", ""))
                yield event["type"], event["object"]


async def _bounded(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return
        yield chunk


async def _close_after(client: HttpPool, seconds: float) -> None:
    try:
        await asyncio.sleep(seconds)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The non-empty lines of a streamed answer, none longer than MAX_EVENT_BYTES (an ApiError past that)."""
    buf = bytearray()
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            buf += chunk[start:end]
            start = end + 1
            line, buf = bytes(buf), bytearray()
            if line.strip():
                yield line
        buf += chunk[start:]
        if len(buf) > MAX_EVENT_BYTES:
            raise ApiError(500, "InternalError", f"a watch event longer than {MAX_EVENT_BYTES} bytes")
    if bytes(buf).strip():
        yield bytes(buf)


def _answer(code: int, content: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:
        doc = {"message": content[:200].decode("utf-8", "replace")}
    if not isinstance(doc, dict):
        doc = {}
    if code >= 300:
        raise ApiError(code, str(doc.get("reason", "")), str(doc.get("message", "")))
    return doc
