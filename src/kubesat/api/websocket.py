"""The WebSocket connection as kubesat serves it: uvicorn's protocol (the `websockets` library) with the client
certificate in the scope, as the HTTP protocol (`tls`) puts it there, so that a WebSocket request is
authenticated like any other."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from kubesat.api.app import TLS_PEER_DER

# The largest WebSocket message a client may send (a stdin chunk from kubectl is at most 32 KiB).
MAX_MESSAGE = 1 << 20


class ClientCertWebSocketProtocol(WebSocketsSansIOProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        self._peer_der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none when the handshake was refused
        if scope is not None:
            scope[TLS_PEER_DER] = self._peer_der
