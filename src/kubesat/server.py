"""`kubesat serve`: put the data dir, the store, the API and the controllers together and serve HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn

from kubesat import audit, metrics
from kubesat.api import system, wiring
from kubesat.api.app import App, Request, Response
from kubesat.api.resources import ResourceHandler
from kubesat.api.tls import ClientCertHttpToolsProtocol, event_loop
from kubesat.api.websocket import MAX_MESSAGE as WS_MAX_MESSAGE
from kubesat.api.websocket import ClientCertWebSocketProtocol
from kubesat.auth.authn import RequestAuthenticator
from kubesat.auth.authz import DenyAll
from kubesat.controllers.namespace import NamespaceController
from kubesat.registry.service import KUBERNETES_SERVICE_IP
from kubesat.listener import ListenError, listen_sockets
from kubesat.localnode import LocalNode
from kubesat.pki import ClusterPKI, write_private
from kubesat.registry.store import Registry
from kubesat.storage.interface import StorageError
from kubesat.storage.sqlite import SqliteStore
from kubesat.tokens.issuer import TokenOptions


log = logging.getLogger("kubesat")

OFFLOAD_THREADS = 4
DB_FILE = "kubesat.db"
LOCK_FILE = "kubesat.lock"


class ServeError(Exception):
    """A reason the server cannot start, worded for the person who ran it."""


@dataclass
class ServeOptions:
    data_dir: Path
    bind: str = "127.0.0.1"
    port: int = 6443
    anonymous_auth: bool = True
    log_level: str = "warning"
    extra_sans: tuple[str, ...] = ()
    event_history: int = 10000  # past changes a watch can resume from
    audit_log_path: str | None = None  # None: DATA_DIR/audit.log; "": no audit log
    request_header_timeout: float = 32.0  # kube-apiserver's: TLS handshake, then a request's headers
    idle_connection_timeout: float = 90.0  # kube-apiserver's: a keep-alive connection between requests
    tokens: TokenOptions = field(default_factory=TokenOptions)
    node_monitor_grace_period: float = 50.0  # kube-controller-manager 1.32's --node-monitor-grace-period
    node_startup_grace_period: float = 60.0  # its --node-startup-grace-period
    node_name: str = ""  # the local node's name (an agent process beside the server); "": no local node
    node_runtime: str = "none"  # the local node's container runtime: "process" or "none"
    node_pod_network: str = "auto"  # the local node's pod network: "auto", "host" or "bridge" (kubesat agent's)
    # kube-controller-manager's --allocate-node-cidrs, --cluster-cidr and --node-cidr-mask-size (0: 24 for IPv4,
    # 64 for IPv6): Nodes get podCIDRs (controllers/nodeipam.py). On by default, as in k3s.
    allocate_node_cidrs: bool = True
    cluster_cidr: str = "10.244.0.0/16"  # kubeadm's and flannel's, beside kubeadm's service range 10.96.0.0/12
    node_cidr_mask_size: int = 0
    # Filled in by later layers (tokens, RBAC) through the same object.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def command_line(self) -> list[str]:
        """The server's command with every flag that shapes its tokens spelled out (defaults included), as
        kubeadm's kube-apiserver manifest spells out its flags: what the mirror pod shows."""
        t = self.tokens
        cmd = ["kubesat", "serve", f"--data-dir={self.data_dir}", f"--bind={self.bind}", f"--port={self.port}"]
        cmd += [f"--service-account-issuer={i}" for i in t.issuers]
        cmd += [f"--api-audiences={','.join(t.audiences)}",
                f"--service-account-key-file={self.data_dir / 'pki' / 'sa.pub'}",
                *(f"--service-account-key-file={f}" for f in t.extra_key_files),
                f"--service-account-signing-key-file={self.data_dir / 'pki' / 'sa.key'}",
                f"--service-account-signing-alg={t.signing_alg}",
                f"--service-account-max-token-expiration={t.max_expiration}s",
                f"--service-account-extend-token-expiration={str(t.extend_expiration).lower()}",
                f"--service-account-lookup={str(t.lookup).lower()}",
                f"--anonymous-auth={str(self.anonymous_auth).lower()}",
                f"--client-ca-file={self.data_dir / 'pki' / 'ca.crt'}",
                f"--tls-cert-file={self.data_dir / 'pki' / 'apiserver.crt'}",
                f"--tls-private-key-file={self.data_dir / 'pki' / 'apiserver.key'}",
                "--authorization-mode=Node,RBAC", "--enable-bootstrap-token-auth=true",
                "--service-cluster-ip-range=10.96.0.0/12"]
        if t.jwks_uri:
            cmd.append(f"--service-account-jwks-uri={t.jwks_uri}")
        if self.node_name:
            cmd.append(f"--node-name={self.node_name}")
        return cmd

    @property
    def external_address(self) -> str:
        """host:port clients reach the server at (used for the JWKS URI)."""
        return self.url[len("https://"):]

    @property
    def url(self) -> str:
        host = self.bind
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"


class DataDirLock:
    """An exclusive lock on the data dir, so two servers never share one store."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            other = ""
            with contextlib.suppress(OSError):
                other = os.read(fd, 64).decode().strip()
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                who = f" (pid {other})" if other else ""
                raise ServeError(
                    f"data dir {self.path.parent} is in use by another kubesat server{who}; "
                    "stop it first or pass a different --data-dir"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


def prepare_data_dir(opts: ServeOptions) -> ClusterPKI:
    d = opts.data_dir
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ServeError(f"cannot create data dir {d}: {e.strerror}") from None
    if not d.is_dir():
        raise ServeError(f"data dir {d} exists and is not a directory")
    if not os.access(d, os.W_OK):
        raise ServeError(f"data dir {d} is not writable")
    os.chmod(d, 0o700)
    return ClusterPKI(d)


def build(opts: ServeOptions, pki: ClusterPKI) -> App:
    """The ASGI app with its store, registry, API handlers and controllers wired (not yet started)."""
    holder: dict[str, Any] = {}
    authenticator = RequestAuthenticator(anonymous=opts.anonymous_auth)

    registry = Registry(None)  # type: ignore[arg-type]  # the store is opened at startup
    app = App(registry, authenticator, DenyAll())
    resources = ResourceHandler(registry)
    app.resource_handler = resources
    app.on_startup.append(resources.yaml.start)
    app.on_shutdown.append(resources.yaml.close)
    system.install(app, f"{opts.bind}:{opts.port}")
    wiring.install(app, resources, registry, opts, pki)

    async def startup() -> None:
        # The threads that take large bodies and objects off the event loop, made now so that the first
        # large request does not pay for them; a few suffice, as they share the interpreter lock.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=OFFLOAD_THREADS, thread_name_prefix="kubesat-offload"))
        rbac = app.state["rbac"]
        await rbac.load()
        await rbac.bootstrap()
        ns = NamespaceController(registry, pki.ca_cert.read_text())
        holder["ns"] = ns
        await ns.bootstrap()
        await ns.start()
        for start in wiring.controller_starters(app, registry, opts, pki):
            holder.setdefault("controllers", []).append(await start())

    async def shutdown() -> None:
        for c in holder.get("controllers", []):
            await c.stop()
        if "ns" in holder:
            await holder["ns"].stop()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    _install_observability(app, opts)
    return app


def _install_observability(app: App, opts: ServeOptions) -> None:
    """Request metrics, the audit log and /metrics."""
    path = opts.audit_log_path
    if path is None:
        path = str(opts.data_dir / "audit.log")
    logger = audit.AuditLogger(path or None)

    def observe(req: Request, status: int, seconds: float) -> None:
        metrics.observe_request(req, status, seconds)
        logger.observe(req, status, seconds)

    async def metrics_endpoint(req: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(200, body, content_type)

    app.observe = observe
    app.route("/metrics", metrics_endpoint)
    app.on_shutdown.append(_closer(logger))


def _closer(logger: audit.AuditLogger) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        logger.close()

    return close


def open_store(opts: ServeOptions) -> SqliteStore:
    """The embedded SQLite store; opened on the event loop's thread, which then owns the connection."""
    try:
        return SqliteStore.open(str(opts.data_dir / DB_FILE), history=opts.event_history)
    except StorageError as e:
        raise ServeError(str(e)) from None


def serve(opts: ServeOptions, on_ready: Callable[[str], None] | None = None) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    pki = prepare_data_dir(opts)
    lock = DataDirLock(opts.data_dir)
    lock.acquire()
    sockets: list[socket.socket] = []
    try:
        sockets = _listen(opts)
        # The kubernetes Service's ClusterIP, as kube-apiserver's certificate names it: in-cluster clients (the
        # official ones' in-cluster config) dial https://KUBERNETES_SERVICE_HOST, the relay on a pod network.
        pki.ensure(opts.url, (*opts.extra_sans, KUBERNETES_SERVICE_IP), opts.tokens.signing_alg)
        try:
            app = build(opts, pki)
        except ValueError as e:  # a key file that cannot be used, named in the message
            raise ServeError(str(e)) from None
        config = uvicorn.Config(
            app,
            host=opts.bind,
            port=opts.port,
            # uvicorn annotates a Protocol class but only calls it, so a partial of one does
            http=functools.partial(  # type: ignore[arg-type]
                ClientCertHttpToolsProtocol, header_timeout=opts.request_header_timeout),
            loop="none",  # serve() runs the loop (event_loop: it bounds the TLS handshake)
            ws=ClientCertWebSocketProtocol,  # exec, attach, port-forward: the websockets library, declared
            ws_max_size=WS_MAX_MESSAGE,
            ws_per_message_deflate=False,
            lifespan="on",
            ssl_certfile=str(pki.serving_cert),
            ssl_keyfile=str(pki.serving_key),
            ssl_ca_certs=str(pki.ca_cert),
            ssl_cert_reqs=ssl.CERT_OPTIONAL,
            log_level=opts.log_level,
            log_config=None,  # uvicorn's records propagate to the one escaping handler (kubesat.logs)
            access_log=False,
            # uvicorn annotates int, but only hands the value to loop.call_later, which takes float seconds
            timeout_keep_alive=opts.idle_connection_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=10,
            server_header=False,
            date_header=True,
        )
        node = _local_node(opts, pki)
        server = _Server(config)
        if node is not None:
            server.before_exit = node.stop

        async def main() -> None:
            store = open_store(opts)
            app.registry.store = store
            task = asyncio.create_task(server.serve(sockets=sockets))
            while not server.started:
                if task.done():
                    await task
                    return
                await asyncio.sleep(0.005)
            if on_ready:
                on_ready(str(pki.kubeconfig))
            if node is not None:
                node.start()
            try:
                await task
            finally:
                if node is not None:
                    await node.stop()
                await store.close()

        with asyncio.Runner(loop_factory=lambda: event_loop(opts.request_header_timeout)) as runner:
            runner.run(main())
        if not server.started:
            return 1
        return 0
    finally:
        for sock in sockets:
            sock.close()
        lock.release()


def _listen(opts: ServeOptions) -> list[socket.socket]:
    """The bound sockets, before anything else starts: a busy port is one line, not a failed start-up."""
    try:
        return listen_sockets(opts.bind, opts.port)
    except ListenError as e:
        raise ServeError(str(e)) from None


def _local_node(opts: ServeOptions, pki: ClusterPKI) -> LocalNode | None:
    if not opts.node_name:
        return None

    def write_kubeconfig(path: Path) -> None:
        write_private(path, pki.node_kubeconfig(opts.node_name, opts.url))

    return LocalNode(opts.data_dir, opts.node_name, write_kubeconfig, log_level=opts.log_level,
                     runtime=opts.node_runtime, pod_network=opts.node_pod_network)


class _Server(uvicorn.Server):
    # Awaited on the first SIGTERM/SIGINT before the server stops serving (the local node's agent still
    # needs the API to report its node not ready); a second signal stops the server at once.
    before_exit: Callable[[], Awaitable[None]] | None = None
    _draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.before_exit is not None and not self._draining and not self.should_exit:
            try:
                loop = asyncio.get_running_loop()  # the handler runs on the loop's (main) thread
            except RuntimeError:
                loop = None
            if loop is not None:
                self._draining = True
                loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain(sig, frame)))
                return
        self._exit(sig, frame)

    async def _drain(self, sig: int, frame: FrameType | None) -> None:
        try:
            if self.before_exit is not None:
                await self.before_exit()
        finally:
            self._exit(sig, frame)

    def _exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises a caught SIGTERM/SIGINT after shutting down; for kubesat a signal
        # is the normal way to stop, so the process exits 0 after a clean shutdown instead.
        self._captured_signals.clear()
