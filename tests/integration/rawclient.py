"""A raw HTTPS client for attack tests: sends exactly the path, headers and body given (no URL normalisation)."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Sent:
    """One request as sent, printable as a reproducer."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def reproducer(self, limit: int = 400) -> str:
        shown = {k: ("Bearer <service-account token>" if k == "Authorization" else v)
                 for k, v in self.headers.items()}
        body = self.body if len(self.body) <= limit else self.body[:limit] + b"...(%d bytes)" % len(self.body)
        path = self.path if len(self.path) <= 2 * limit else f"{self.path[:limit]}...{self.path[-limit:]}"
        return f"{self.method} {path} headers={shown} body={body!r}"


def status_problem(answer: Answer) -> str | None:
    """Why an answer breaks the API's error contract (never a 5xx; a 4xx is a Status with a message), or None."""
    if answer.status >= 500:
        return f"answered {answer.status}"
    if answer.status < 400:
        return None
    if not answer.content_type.startswith("application/json"):
        return f"{answer.status} with content type {answer.content_type!r}, not a Status"
    try:
        status = answer.json()
    except ValueError:
        return f"{answer.status} with a body that is not JSON"
    if not isinstance(status, dict) or status.get("kind") != "Status":
        return f"{answer.status} with a body that is not a Status"
    if not isinstance(status.get("message"), str) or not status["message"].strip():
        return f"{answer.status} Status without a message"
    if status.get("code") != answer.status:
        return f"{answer.status} Status with code {status.get('code')!r}"
    return None


class RawClient:
    """One keep-alive HTTPS connection, as the admin (client certificate) or with a bearer token."""

    def __init__(self, port: int, ca_file: Path, cert: tuple[Path, Path] | None = None,
                 token: str | None = None, timeout: float = 30) -> None:
        self.port = port
        self.token = token
        self.timeout = timeout
        self.ctx = ssl.create_default_context(cafile=str(ca_file))
        if cert is not None:
            self.ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        self.conn: http.client.HTTPSConnection | None = None

    @classmethod
    def admin(cls, data_dir: Path, port: int) -> RawClient:
        pki = data_dir / "pki"
        return cls(port, pki / "ca.crt", cert=(pki / "admin.crt", pki / "admin.key"))

    def sent(self, method: str, path: str, body: bytes = b"", content_type: str | None = None,
             headers: dict[str, str] | None = None) -> Sent:
        hdrs = dict(headers or {})
        if content_type:
            hdrs["Content-Type"] = content_type
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        return Sent(method, path, hdrs, body)

    def send(self, req: Sent, stream: bool = False) -> Answer:
        """The answer; with stream=True only the status line and headers are read (for watches)."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(req.method, req.path, body=req.body or None, headers=req.headers)
                resp = conn.getresponse()
                ctype = resp.getheader("content-type", "")
                if stream and resp.status == 200:
                    self.close()
                    return Answer(resp.status, ctype, b"")
                body = resp.read()
                if resp.will_close:
                    self.close()
                return Answer(resp.status, ctype, body)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # the server closed a keep-alive connection between requests: retry once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: bytes = b"", content_type: str | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        return self.send(self.sent(method, path, body, content_type, headers))

    def _connection(self) -> http.client.HTTPSConnection:
        if self.conn is None:
            self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
