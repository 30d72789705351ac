"""The node's relay for the `kubernetes` Service: what kube-proxy does for the one Service in-cluster clients
need, so that `https://kubernetes.default.svc` (port 443) and `KUBERNETES_SERVICE_HOST:PORT` reach the API
server from a pod.

It listens on a loopback address (127.0.0.1:443 by default; with the bridge pod network, on the Service's own
ClusterIP on the bridge) and copies bytes both ways to the API server the agent itself talks to; TLS passes
through untouched, so a pod sees the server's own certificate, which names `kubernetes.default.svc`, 127.0.0.1
and the Service's ClusterIP, and verifies with the pod's mounted `ca.crt`. Where port 443
cannot be bound (taken, or no privilege), it listens on a free port instead and says so in one line; the
pods' environment then carries that port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket

log = logging.getLogger("kubesat.agent.relay")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 443
MAX_CONNECTIONS = 512
CHUNK = 64 * 1024
CONNECT_TIMEOUT = 10.0


class Relay:
    def __init__(self, upstream_host: str, upstream_port: int, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, max_connections: int = MAX_CONNECTIONS) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.wanted_port = port
        self.port = port
        self._slots = asyncio.Semaphore(max_connections)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def address(self) -> tuple[str, int]:
        """Where pods reach the API: this relay's host and (bound) port."""
        return self.host, self.port

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on host:port (a free port, with one line, when that one is taken), or on `sock`, already
        bound and listening (the bridge pod network's socket at the Service's ClusterIP)."""
        if sock is not None:
            self._server = await asyncio.start_server(self._serve, sock=sock)
            self.port = sock.getsockname()[1]
            return
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.wanted_port)
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EACCES) or self.wanted_port == 0:
                raise
            self._server = await asyncio.start_server(self._serve, self.host, 0)
            why = "in use" if e.errno == errno.EADDRINUSE else "not allowed for this user"
            self.port = self._server.sockets[0].getsockname()[1]
            log.warning("port %d on %s is %s: the kubernetes Service is relayed on %s:%d instead; pods get "
                        "KUBERNETES_SERVICE_PORT=%d, and https://kubernetes.default.svc (port 443) does not reach "
                        "the API from them (free the port, or run the agent as root)",
                        self.wanted_port, self.host, why, self.host, self.port, self.port)
            return
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()  # after the connections: from 3.12 on it waits for them

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self._slots.locked():
                return  # too many at once: the client sees the connection closed
            async with self._slots:
                await self._relay(reader, writer)
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            log.info("relay: cannot reach the API server at %s:%d: %s", *self.upstream, e)
            return
        try:
            await splice(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()


async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
    """Copy bytes both ways, CHUNK at a time and waiting for each write to drain (so nothing piles up), until
    both directions have ended; the service proxy relays its connections the same way."""
    await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        dst.close()
