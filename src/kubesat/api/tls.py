"""Hand the verified TLS client certificate to the ASGI app, which no released ASGI server does yet.

uvicorn lets us name the HTTP protocol class; this subclass reads the peer certificate once per
connection (the TLS layer has already verified it against the cluster CA) and puts it in every
request's scope: the DER bytes under a kubesat key, and the ASGI TLS extension's shape under
`scope["extensions"]["tls"]`. It touches one private method of uvicorn, so uvicorn is pinned to a
range and tests/integration fail if certificates stop arriving.
"""

from __future__ import annotations

import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kubesat.api.app import STREAMING, TLS_PEER_DER


class ClientCertHttpToolsProtocol(HttpToolsProtocol):
    _peer_der: bytes | None = None
    _tls_ext: dict[str, Any] | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_obj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = None
        if ssl_obj is not None:
            try:
                der = ssl_obj.getpeercert(binary_form=True)
            except ValueError:
                der = None
        self._peer_der = der or None
        self._tls_ext = {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": None,
            "cipher_suite": None,
        }

    def shutdown(self) -> None:
        # An idle keep-alive connection or a watch stream is cut at once: a TLS close would wait
        # (up to 30 s) for a close_notify from a client that is not reading, and a watch never ends
        # by itself. Requests in flight still finish, as uvicorn does it.
        idle = self.cycle is None or self.cycle.response_complete
        streaming = self.scope is not None and self.scope.get(STREAMING)
        if idle or streaming:
            self.transport.abort()
        else:
            super().shutdown()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[TLS_PEER_DER] = self._peer_der  # type: ignore[literal-required]
        self.scope["extensions"] = {"tls": self._tls_ext}  # type: ignore[typeddict-item]


def server_context(cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    """TLS 1.2+ server context; a client certificate is verified against the CA if one is presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(client_ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
