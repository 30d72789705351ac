"""The WebSocket connection as kubesat serves it: uvicorn's protocol (the `websockets` library) with the client
certificate in the scope, as the HTTP protocol (`tls`) puts it there, so that a WebSocket request is
authenticated like any other."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from kubesat.api.app import TLS_PEER_DER

# The largest WebSocket message a client may send (a stdin chunk from kubectl is at most 32 KiB).
MAX_MESSAGE = 1 << 20


class _ServerProtocol(ServerProtocol):
    """websockets' handshake without its own reading of Sec-WebSocket-Protocol, which holds each offer to RFC
    6455's token syntax and so refuses kubectl port-forward's `SPDY/3.1+portforward.k8s.io` (a '/'); uvicorn
    reads the offers itself (split at commas) and answers the one the application accepts."""

    def process_subprotocol(self, headers: Headers) -> Subprotocol | None:
        return None


class ClientCertWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        conn = self.conn
        self.conn = _ServerProtocol(extensions=conn.available_extensions, max_size=self.config.ws_max_size,
                                    logger=conn.logger)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        self._peer_der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none when the handshake was refused
        if scope is not None:
            scope[TLS_PEER_DER] = self._peer_der
