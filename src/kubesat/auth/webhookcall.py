"""One admission webhook call over HTTPS: the caBundle as the only trust root, the `?timeout=` query, a bounded
answer, and the AdmissionReview response checked as kube-apiserver checks it; failures worded as Go's net/http."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from kubesat import limits

V1 = "admission.k8s.io/v1"
V1BETA1 = "admission.k8s.io/v1beta1"
_MAX_CLIENTS = 64  # one per distinct caBundle (and server name); more are dropped and rebuilt


class CallError(Exception):
    """The webhook could not be called or answered nonsense: its failurePolicy decides."""


@dataclass(frozen=True)
class Target:
    """Where a webhook is: the URL errors name, the URL dialled (a Service's endpoint), and the TLS server name."""

    url: str
    dial_url: str
    server_name: str = ""
    ca_bundle: bytes = b""


@dataclass
class Answer:
    """What a webhook said."""

    allowed: bool
    status: dict[str, Any]
    patch: bytes = b""
    patch_type: str = ""
    warnings: list[str] = field(default_factory=list)
    audit_annotations: dict[str, str] = field(default_factory=dict)


def ca_pem(ca_bundle: Any) -> bytes:
    """A clientConfig's caBundle (base64 of PEM in JSON) as PEM; b"" when unset or unreadable."""
    if not isinstance(ca_bundle, str) or not ca_bundle:
        return b""
    try:
        return base64.b64decode(ca_bundle, validate=True)
    except ValueError:
        return b""


def _ssl_context(ca: bytes) -> ssl.SSLContext:
    """The system roots without a caBundle; with one, it alone (hostnames checked either way)."""
    if not ca:
        return ssl.create_default_context()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # A bundle holding no certificate trusts nothing: every call fails verification.
    with contextlib.suppress(ssl.SSLError):
        ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
    return ctx


def go_json_error(body: bytes) -> str:
    """encoding/json's words for a body that is not JSON (the first character's, as Go reports it)."""
    text = body.lstrip()
    if not text:
        return "unexpected end of JSON input"
    ch = chr(text[0]) if text[0] < 128 else "\\ufffd"
    return f"invalid character '{ch}' looking for beginning of value"


def _tls_reason(err: ssl.SSLCertVerificationError) -> str:
    if err.verify_code in (18, 19, 20, 21):  # self-signed, unknown issuer, unverifiable leaf
        return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    if err.verify_code == 62:
        return "tls: failed to verify certificate: x509: certificate is not valid for the requested name"
    if err.verify_code == 10:
        return "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
    return f"tls: failed to verify certificate: {err.verify_message}"


def _transport_reason(e: BaseException, target: Target) -> str:
    """Go's words for a failed POST."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return _tls_reason(cause)
        if isinstance(cause, ConnectionRefusedError):
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(e, httpx.ConnectError) and "refused" in str(e).lower() or isinstance(cause, ConnectionRefusedError):
        u = httpx.URL(target.dial_url)
        return f"dial tcp {u.host}:{u.port or 443}: connect: connection refused"
    if isinstance(e, ssl.SSLError) or "ssl" in type(e).__name__.lower():
        return f"remote error: tls: {e}"
    return str(e) or type(e).__name__


class WebhookClient:
    """HTTPS clients for webhooks, one per trust root and server name, kept for connection reuse."""

    def __init__(self) -> None:
        self._clients: dict[tuple[bytes, str], httpx.AsyncClient] = {}

    def _client(self, target: Target) -> httpx.AsyncClient:
        key = (target.ca_bundle, target.server_name)
        c = self._clients.get(key)
        if c is None:
            if len(self._clients) >= _MAX_CLIENTS:
                self._clients.clear()  # the old ones close when collected
            c = self._clients[key] = httpx.AsyncClient(
                verify=_ssl_context(target.ca_bundle), http2=False, trust_env=False, follow_redirects=False,
                headers={"User-Agent": "kube-apiserver-admission", "Accept": "application/json"},
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        return c

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            await c.aclose()

    async def post(self, target: Target, review: dict[str, Any], timeout: float) -> tuple[int, bytes]:
        """POST the review; the status and at most MAX_WEBHOOK_RESPONSE_BYTES of the body. CallError on failure,
        worded `Post "URL": reason`."""
        body = orjson.dumps(review)
        headers = {"Content-Type": "application/json"}
        extensions: dict[str, Any] = {}
        if target.server_name:
            extensions["sni_hostname"] = target.server_name
            headers["Host"] = httpx.URL(target.url).netloc.decode("ascii")
        try:
            async with asyncio.timeout(timeout):
                req = self._client(target).build_request("POST", target.dial_url, content=body, headers=headers,
                                                         extensions=extensions, timeout=timeout)
                resp = await self._client(target).send(req, stream=True)
                try:
                    data = bytearray()
                    async for chunk in resp.aiter_bytes():
                        data += chunk
                        if len(data) > limits.MAX_WEBHOOK_RESPONSE_BYTES:
                            raise CallError(f'Post "{target.url}": the response is larger than '
                                            f"{limits.MAX_WEBHOOK_RESPONSE_BYTES} bytes")
                    return resp.status_code, bytes(data)
                finally:
                    await resp.aclose()
        except CallError:
            raise
        except (TimeoutError, httpx.TimeoutException):
            raise CallError(f'Post "{target.url}": context deadline exceeded') from None
        except (httpx.HTTPError, OSError, ssl.SSLError) as e:
            raise CallError(f'Post "{target.url}": {_transport_reason(e, target)}') from None


def read_answer(status: int, body: bytes, uid: str, version: str, mutating: bool) -> Answer:
    """The checked response of an AdmissionReview; CallError (`failed to call webhook: ...` or `received invalid
    webhook response: ...`) when it cannot be one."""
    if status != 200:
        raise CallError(f"failed to call webhook: the server responded with the status code {status} "
                        "but did not return more information")
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CallError(f"failed to call webhook: couldn't get version/kind; json parse error: "
                        f"{go_json_error(body)}") from None
    if not isinstance(review, dict):
        raise CallError("failed to call webhook: couldn't get version/kind; json parse error: json: cannot "
                        "unmarshal non-object into Go value of type struct")
    resp = review.get("response")
    if not isinstance(resp, dict):
        raise CallError("received invalid webhook response: webhook response was absent")
    if version == V1:
        return _read_v1(review, resp, uid, mutating)
    patch = _patch_bytes(resp.get("patch")) if mutating else b""
    return _answer(resp, patch, "JSONPatch" if patch else "")


def _read_v1(review: dict[str, Any], resp: dict[str, Any], uid: str, mutating: bool) -> Answer:
    got_uid = resp.get("uid") if isinstance(resp.get("uid"), str) else ""
    if got_uid != uid:
        raise CallError(f'received invalid webhook response: expected response.uid="{uid}", got "{got_uid}"')
    gv, kind = str(review.get("apiVersion") or ""), str(review.get("kind") or "")
    if gv != V1 or kind != "AdmissionReview":
        raise CallError("received invalid webhook response: expected webhook response of admission.k8s.io/v1, "
                        f"Kind=AdmissionReview, got {gv}, Kind={kind}")
    if not mutating:
        return _answer(resp, b"", "")
    patch, patch_type = _patch_bytes(resp.get("patch")), resp.get("patchType")
    if patch and patch_type is None:
        raise CallError("received invalid webhook response: webhook returned response.patch but not "
                        "response.patchType")
    if not patch and patch_type is not None:
        raise CallError("received invalid webhook response: webhook returned response.patchType but not "
                        "response.patch")
    if patch_type is not None and not patch_type:
        raise CallError('received invalid webhook response: webhook returned invalid response.patchType of ""')
    return _answer(resp, patch, str(patch_type or ""))


def _patch_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise CallError("failed to call webhook: illegal base64 data in response.patch") from None


def _answer(resp: dict[str, Any], patch: bytes, patch_type: str) -> Answer:
    status, audit, warnings = resp.get("status"), resp.get("auditAnnotations"), resp.get("warnings")
    status = status if isinstance(status, dict) else {}
    audit = audit if isinstance(audit, dict) else {}
    warnings = [w for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []
    return Answer(resp.get("allowed") is True, status, patch, patch_type, warnings[:limits.MAX_DEPTH * 8],
                  {str(k): str(v) for k, v in audit.items()})
