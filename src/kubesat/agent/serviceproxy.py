"""The node's service proxy: what kube-proxy does for ClusterIP Services, as TCP relays on loopback addresses,
so that a pod calls another through `http://NAME.NAMESPACE.svc:PORT`.

Each ClusterIP Service gets a loopback address (servicenet.loopback_address); for each of its TCP ports the
proxy listens there and copies every connection to one of the Service's ready endpoints, round-robin, skipping
one that refuses or does not answer within CONNECT_TIMEOUT. Pods share the host network, so an endpoint's IP
(the pod's podIP, the node's address) is reachable from the agent as it is.

Identity: the agent's own node credentials. Kubernetes lets a node get, list and watch Services and get
Endpoints (the `system:node` rules); listing and watching EndpointSlices belongs to kube-proxy's identity
(`system:node-proxier`, bound to the user `system:kube-proxy`), a credential a node does not have. So the proxy
lists and watches Services, and reads each ClusterIP Service's Endpoints with a `get` when the Service changes
and every ENDPOINTS_POLL seconds after (a pod that turns ready is reachable within that time).

With the bridge pod network (podnet.py) a Service is served at its ClusterIP instead, added to the node's bridge,
on sockets bound to that bridge.

Bounds: MAX_CONNECTIONS relayed connections at once over all Services and MAX_PER_PORT per Service port (past
either, a new connection is closed at once), CONNECT_TIMEOUT per endpoint tried, and bytes copied a chunk at a
time (relay.splice). A Service port gets no listener while it has no ready endpoint (a connection is refused,
as kube-proxy rejects it), nor when its endpoints are this node's pods on the very same port (see
servicenet.needs_listener); a listener is closed, with its connections, when its Service or port goes away. A
port that cannot be bound (below 1024 without root, or taken) is one warning naming the Service, the port and
the fix, and is tried again at each poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable
from typing import Any

import httpx

from kubesat.agent import refresh
from kubesat.agent.netns import PodNetwork
from kubesat.agent.client import ApiClient, ApiError
from kubesat.agent.relay import splice
from kubesat.agent.servicenet import (ServicePort, endpoint_order, hosts_entries, needs_listener, service_address,
                                      service_key, service_ports)

log = logging.getLogger("kubesat.agent.serviceproxy")

# How often every ClusterIP Service's Endpoints are read again.
ENDPOINTS_POLL = 2.0
# A Service watch is re-opened this often (the server ends it then).
WATCH_SECONDS = 300
# How long one endpoint may take to accept a connection before the next one is tried.
CONNECT_TIMEOUT = 3.0
MAX_CONNECTIONS = 1024
MAX_PER_PORT = 256

ServiceKey = tuple[str, str]


def _trim(service: dict[str, Any]) -> dict[str, Any]:
    """What the proxy keeps of a Service: its name and the spec fields that decide its address and ports."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    return {"metadata": {"namespace": meta.get("namespace"), "name": meta.get("name")},
            "spec": {k: spec[k] for k in ("clusterIP", "type", "ports") if k in spec}}


def bind_failure(service: str, address: str, port: int, error: OSError) -> str:
    """The one warning line for a Service port the proxy cannot listen on: what, why, and what to do."""
    where = f"Service {service} port {port}: cannot listen on {address}:{port}"
    if error.errno == errno.EACCES:
        return (f"{where}: ports below 1024 need root (or CAP_NET_BIND_SERVICE), so pods cannot reach this port "
                f"through the Service; run the agent as root or give the Service a port of 1024 or more")
    if error.errno == errno.EADDRINUSE:
        return (f"{where}: port {port} is in use on this host (pods share the host network: something listens "
                f"on it on all addresses), so pods cannot reach this port through the Service; free the port or "
                f"give the Service another one")
    return f"{where}: {error}"


class PortListener:
    """One Service port on its loopback address, relaying each connection to a ready endpoint."""

    def __init__(self, service: str, address: str, port: ServicePort, slots: asyncio.Semaphore,
                 network: PodNetwork | None = None) -> None:
        self.service = service  # "namespace/name", for log lines
        self.address = address
        self.network = network  # the bridge pod network: listen on its bridge only
        self.port = port  # replaced by the proxy when the endpoints change
        self._slots = slots
        self._own_slots = asyncio.Semaphore(MAX_PER_PORT)
        self._turn = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (OSError when the address and port cannot be bound)."""
        if self.network is not None:
            sock = await asyncio.to_thread(self.network.listen_socket, self.address, self.port.port)
            self._server = await asyncio.start_server(self._serve, sock=sock)
            return
        self._server = await asyncio.start_server(self._serve, self.address, self.port.port)

    async def stop(self) -> None:
        """Stop listening and end the connections under way."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()  # after the connections: from 3.12 on it waits for them

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self._slots.locked() or self._own_slots.locked():
                log.info("Service %s port %d: too many connections at once; one closed", self.service,
                         self.port.port)
                return
            async with self._slots, self._own_slots:
                upstream = await self._connect()
                if upstream is None:
                    return
                up_reader, up_writer = upstream
                try:
                    await splice(reader, writer, up_reader, up_writer)
                finally:
                    up_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the first endpoint that takes one, in round-robin order; None when none does."""
        order = endpoint_order(self.port.endpoints, self._turn)
        self._turn += 1
        for ip, number in order:
            try:
                return await asyncio.wait_for(asyncio.open_connection(ip, number), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                log.debug("Service %s port %d: endpoint %s:%d refused: %s", self.service, self.port.port, ip,
                          number, e)
        log.info("Service %s port %d: no ready endpoint accepted the connection (%d tried)", self.service,
                 self.port.port, len(order))
        return None


class ServiceProxy:
    """See the module's docstring. `hosts_entries` answers the /etc/hosts names of the Services it knows;
    `on_change` is called when that answer may have changed (a Service added, removed or readdressed)."""

    def __init__(self, api: ApiClient, node_address: str, on_change: Callable[[], None] | None = None,
                 poll: float = ENDPOINTS_POLL, network: PodNetwork | None = None) -> None:
        self.api = api
        self.network = network  # the bridge pod network: Services at their ClusterIPs, on its bridge
        self.node_address = node_address
        self.on_change = on_change
        self.poll = poll
        self.services: dict[ServiceKey, dict[str, Any]] = {}
        self.listeners: dict[tuple[str, str, int], PortListener] = {}
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._refused: set[tuple[str, str, int, str]] = set()  # bind failures already logged
        self._forbidden_logged = False
        self._lock = asyncio.Lock()
        self._rv = ""

    def hosts_entries(self, namespace: str) -> dict[str, str]:
        """/etc/hosts names -> loopback addresses of every ClusterIP Service, for a pod in `namespace`."""
        return hosts_entries(self.services.values(), namespace, self.network is not None)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the Services (list, then watch; retried with backoff) and poll their Endpoints until stopped."""
        poller = asyncio.create_task(self._poll(stop))
        backoff = refresh.Backoff(initial=1.0, factor=2.0, cap=30.0)
        try:
            while not stop.is_set():
                try:
                    await self._list_and_watch(stop)
                    backoff.reset()
                except (ApiError, httpx.HTTPError) as e:
                    delay = backoff.next_delay()
                    log.warning("Service watch failed (retrying in %.0f s): %s", delay, e)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        """Stop every listener."""
        for key in list(self.listeners):
            await self.listeners.pop(key).stop()

    # ------------------------------------------------------------------ following the Services
    async def _list_and_watch(self, stop: asyncio.Event) -> None:
        if not self._rv:
            listed = await self.api.get("/api/v1/services")
            before = self._addresses()
            fresh = {service_key(s): _trim(s) for s in listed.get("items") or []}
            gone = set(self.services) - set(fresh)
            self.services = fresh
            self._changed(before)
            for key in [*gone, *fresh]:
                await self._sync_or_later(key)
            self._rv = str((listed.get("metadata") or {}).get("resourceVersion", ""))
        params = {"resourceVersion": self._rv, "timeoutSeconds": str(WATCH_SECONDS), "allowWatchBookmarks": "true"}
        try:
            async for kind, svc in self.api.watch("/api/v1/services", params):
                if stop.is_set():
                    return
                await self._on_event(kind, svc)
                rv = str((svc.get("metadata") or {}).get("resourceVersion", ""))
                if rv:
                    self._rv = rv
        except ApiError as e:
            if e.code == 410:  # too old: list again
                self._rv = ""
                return
            raise

    async def _on_event(self, kind: str, svc: dict[str, Any]) -> None:
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return  # a BOOKMARK only moves the resourceVersion
        key = service_key(svc)
        before = self._addresses()
        if kind == "DELETED":
            self.services.pop(key, None)
        else:
            self.services[key] = _trim(svc)
        self._changed(before)
        await self._sync_or_later(key)

    def _addresses(self) -> frozenset[tuple[ServiceKey, str | None]]:
        return frozenset((key, service_address(svc, self.network is not None)) for key, svc in self.services.items())

    def _changed(self, before: frozenset[tuple[ServiceKey, str | None]]) -> None:
        if self.on_change is not None and self._addresses() != before:
            self.on_change()

    async def _poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll)
            for key in list(self.services):
                if stop.is_set():
                    return
                await self._sync_or_later(key)

    async def _sync_or_later(self, key: ServiceKey) -> None:
        """Sync the Service; when its Endpoints cannot be read now, the next poll tries again."""
        try:
            await self._sync(key)
        except (ApiError, httpx.HTTPError) as e:
            log.debug("could not read the Endpoints of Service %s/%s: %s", *key, e)

    # ------------------------------------------------------------------ one Service
    async def _sync(self, key: ServiceKey) -> None:
        """Bring the Service's listeners in line with its spec and its ready endpoints (none once it is gone).
        One at a time: the watch and the poll must not both bind the same port."""
        async with self._lock:
            await self._sync_now(key)

    async def _sync_now(self, key: ServiceKey) -> None:
        svc = self.services.get(key)
        address = service_address(svc, self.network is not None) if svc is not None else None
        if svc is None or address is None:
            await self._forget(key)
            return
        ports = {p.port: p for p in service_ports(svc, await self._endpoints(key))}
        for lkey in [k for k in self.listeners if k[:2] == key]:
            listener = self.listeners[lkey]
            port = ports.get(lkey[2])
            # Kept while the port exists and needs it; with no endpoint left it stays and closes connections.
            if port is None or listener.address != address or (port.endpoints and
                                                               not needs_listener(port, self.node_address)):
                await self.listeners.pop(lkey).stop()
            else:
                listener.port = port
        for number, port in ports.items():
            if (*key, number) not in self.listeners and needs_listener(port, self.node_address):
                await self._listen(key, address, port)

    async def _endpoints(self, key: ServiceKey) -> dict[str, Any] | None:
        try:
            return await self.api.get(f"/api/v1/namespaces/{key[0]}/endpoints/{key[1]}")
        except ApiError as e:
            if e.code == 403 and not self._forbidden_logged:
                self._forbidden_logged = True
                log.warning("the agent may not read Endpoints (%s): Services are not relayed; its credentials must "
                            "be a node's (system:node:NAME in system:nodes) or be granted get on endpoints", e)
            if e.code in (403, 404):
                return None
            raise

    async def _listen(self, key: ServiceKey, address: str, port: ServicePort) -> None:
        service = f"{key[0]}/{key[1]}"
        listener = PortListener(service, address, port, self._slots, self.network)
        tag = (*key, port.port, address)
        try:
            await listener.start()
        except OSError as e:
            if tag not in self._refused:
                self._refused.add(tag)
                log.warning("%s", bind_failure(service, address, port.port, e))
            return
        self._refused.discard(tag)
        self.listeners[(*key, port.port)] = listener
        log.info("Service %s port %d relayed on %s:%d to %d endpoint(s)", service, port.port, address, port.port,
                 len(port.endpoints))

    async def _forget(self, key: ServiceKey) -> None:
        for lkey in [k for k in self.listeners if k[:2] == key]:
            await self.listeners.pop(lkey).stop()
        self._refused = {t for t in self._refused if t[:2] != key}
