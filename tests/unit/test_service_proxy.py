"""The service proxy's decisions (loopback addresses, /etc/hosts names, ready endpoints, listener or not, round-robin)
and its listeners on loopback sockets: a refusing endpoint is skipped, endpoints rotate, a Service's listeners follow
its endpoints and go with it, a port that cannot be bound is one warning."""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from pathlib import Path
from typing import Any

import pytest

from kubesat.agent import envvars
from kubesat.agent.client import ApiError
from kubesat.agent.runtime import hosts_file_text, write_hosts_file
from kubesat.agent.serviceproxy import PortListener, ServiceProxy, bind_failure
from kubesat.agent.servicenet import (ServicePort, endpoint_order, hosts_entries, loopback_address, needs_listener,
                                      ready_endpoints, service_address, service_ports, with_reachable_address)


def _svc(name: str, ns: str = "default", ip: str = "10.96.3.7", ports: list[dict[str, Any]] | None = None,
         **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}], **spec}}


def test_the_loopback_address_is_the_cluster_ips_low_24_bits_under_127() -> None:
    assert loopback_address("10.96.3.7") == "127.96.3.7"
    assert loopback_address("10.111.255.254") == "127.111.255.254"
    for ip in ("", "None", "fd00::1", "not-an-ip", "10.0.0.1"):  # 127.0.x.y is never handed out
        assert loopback_address(ip) is None
    ips = {f"10.{random.randint(96, 111)}.{random.randint(0, 255)}.{random.randint(1, 254)}" for _ in range(500)}
    assert len({loopback_address(ip) for ip in ips}) == len(ips)  # one address per Service


def test_headless_external_name_and_the_kubernetes_service_get_no_address() -> None:
    assert service_address(_svc("db", ip="None")) is None
    assert service_address(_svc("ext", ip="", type="ExternalName")) is None
    assert service_address(_svc("kubernetes", ip="10.96.0.1")) is None  # relayed to the API server on its own
    assert service_address(_svc("kubernetes", ns="other", ip="10.96.0.20")) == "127.96.0.20"


def test_service_variables_name_the_loopback_address() -> None:
    env = envvars.service_env(with_reachable_address(_svc("my-db", ip="10.96.0.9")))
    assert env["MY_DB_SERVICE_HOST"] == "127.96.0.9"
    assert env["MY_DB_SERVICE_PORT"] == "80"
    assert env["MY_DB_PORT_80_TCP"] == "tcp://127.96.0.9:80"
    headless = _svc("h", ip="None")
    assert with_reachable_address(headless) is headless


def test_hosts_entries_give_fqdns_everywhere_and_the_short_name_in_the_own_namespace() -> None:
    services = [_svc("web", "shop", "10.96.0.10"), _svc("db", "data", "10.96.0.11"), _svc("h", "shop", "None")]
    entries = hosts_entries(services, "shop")
    assert entries == {"web": "127.96.0.10", "web.shop": "127.96.0.10", "web.shop.svc": "127.96.0.10",
                       "web.shop.svc.cluster.local": "127.96.0.10", "db.data": "127.96.0.11",
                       "db.data.svc": "127.96.0.11", "db.data.svc.cluster.local": "127.96.0.11"}
    text = hosts_file_text(entries)
    assert "127.96.0.10\tweb web.shop web.shop.svc web.shop.svc.cluster.local\n" in text
    assert text.startswith("# Kubernetes-managed hosts file")


def test_the_hosts_file_is_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "etc-hosts"
    write_hosts_file(path, {"web.shop.svc": "127.96.0.10", "a-much-longer-name.shop.svc": "127.96.0.12"})
    inode = path.stat().st_ino
    write_hosts_file(path, {"web.shop.svc": "127.96.0.10"})
    assert path.stat().st_ino == inode  # a bind mount of the old inode sees the new text
    assert path.read_text() == hosts_file_text({"web.shop.svc": "127.96.0.10"})
    assert path.stat().st_mode & 0o777 == 0o644


ENDPOINTS = {"subsets": [
    {"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}], "notReadyAddresses": [{"ip": "10.0.0.9"}],
     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]},
    {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}]}]}


def test_ready_endpoints_by_port_name_without_not_ready_or_udp_ones() -> None:
    assert ready_endpoints(ENDPOINTS, "http") == (("10.0.0.2", 8080), ("10.0.0.1", 8080), ("10.0.0.3", 9090))
    assert ready_endpoints(ENDPOINTS, "dns") == ()
    assert ready_endpoints(None, "http") == ()
    unnamed = {"subsets": [{"addresses": [{"ip": "10.0.0.4"}], "ports": [{"port": 7000}]}]}
    assert ready_endpoints(unnamed, "") == (("10.0.0.4", 7000),)


def test_service_ports_are_the_tcp_ones() -> None:
    svc = _svc("web", ports=[{"name": "http", "port": 80, "targetPort": "http"},
                             {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "x", "port": 99999}])
    assert service_ports(svc, ENDPOINTS) == [
        ServicePort("http", 80, "http", (("10.0.0.2", 8080), ("10.0.0.1", 8080), ("10.0.0.3", 9090)))]


def test_a_listener_only_where_one_is_needed() -> None:
    assert not needs_listener(ServicePort("", 80, 8080, ()), "127.0.0.1")  # no endpoint: refused
    assert not needs_listener(ServicePort("", 8080, 8080, (("127.0.0.1", 8080),)), "127.0.0.1")  # the pod itself
    assert needs_listener(ServicePort("", 80, 8080, (("127.0.0.1", 8080),)), "127.0.0.1")
    assert needs_listener(ServicePort("", 8080, 8080, (("127.0.0.2", 8080),)), "127.0.0.1")  # another node


def test_endpoints_are_tried_round_robin_with_the_rest_after() -> None:
    eps = (("a", 1), ("b", 1), ("c", 1))
    assert endpoint_order(eps, 0) == [("a", 1), ("b", 1), ("c", 1)]
    assert endpoint_order(eps, 4) == [("b", 1), ("c", 1), ("a", 1)]
    assert endpoint_order((), 3) == []


def test_a_port_that_cannot_be_bound_says_why_and_what_to_do() -> None:
    denied = bind_failure("shop/web", "127.96.0.10", 80, OSError(errno.EACCES, "Permission denied"))
    assert denied.startswith("Service shop/web port 80: cannot listen on 127.96.0.10:80: ports below 1024 need root")
    assert "run the agent as root or give the Service a port of 1024 or more" in denied
    taken = bind_failure("shop/web", "127.96.0.10", 8080, OSError(errno.EADDRINUSE, "Address already in use"))
    assert "port 8080 is in use on this host" in taken and "free the port" in taken


# -- listeners on real loopback sockets ----------------------------------------------------------------------

async def _named_server(name: bytes) -> tuple[asyncio.base_events.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(name + b":" + data)
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _call(address: str, port: int, data: bytes = b"hi") -> bytes:
    """What a connection gets back (b"" when it is closed without an answer, reset included)."""
    reader, writer = await asyncio.open_connection(address, port)
    try:
        writer.write(data)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def _address() -> str:
    return f"127.{random.randint(96, 111)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def test_a_refusing_endpoint_is_skipped_and_endpoints_rotate() -> None:
    async def go() -> None:
        a, port_a = await _named_server(b"a")
        b, port_b = await _named_server(b"b")
        dead = _free_port()  # nothing listens there
        port = ServicePort("", _free_port(), 0, (("127.0.0.1", dead), ("127.0.0.1", port_a), ("127.0.0.1", port_b)))
        listener = PortListener("shop/web", _address(), port, asyncio.Semaphore(10))
        await listener.start()
        got = [await _call(listener.address, port.port) for _ in range(3)]
        assert got == [b"a:hi", b"a:hi", b"b:hi"]  # dead first: skipped for a; then a; then b
        await listener.stop()
        a.close()
        b.close()
    asyncio.run(go())


class FakeApi:
    """The API as the proxy reads it: a Service list and Endpoints by name."""

    def __init__(self) -> None:
        self.endpoints: dict[str, dict[str, Any]] = {}

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        name = path.rsplit("/", 1)[1]
        if name not in self.endpoints:
            raise ApiError(404, "NotFound", f'endpoints "{name}" not found')
        return self.endpoints[name]


def test_listeners_follow_the_endpoints_and_go_with_the_service() -> None:
    async def go() -> None:
        upstream, target = await _named_server(b"web")
        api = FakeApi()
        changes: list[int] = []
        proxy = ServiceProxy(api, "127.0.0.1", on_change=lambda: changes.append(1))  # type: ignore[arg-type]
        ip = f"10.{random.randint(96, 111)}.{random.randint(1, 255)}.{random.randint(1, 254)}"
        address, port = loopback_address(ip), _free_port()
        assert address is not None
        svc = _svc("web", "shop", ip, ports=[{"name": "http", "port": port, "targetPort": target},
                                             {"name": "same", "port": target, "targetPort": target}])
        await proxy._on_event("ADDED", svc)
        assert changes == [1] and proxy.hosts_entries("shop")["web"] == address
        assert proxy.listeners == {}  # no endpoints yet: nothing to relay to
        api.endpoints["web"] = {"subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                                             "ports": [{"name": "http", "port": target},
                                                       {"name": "same", "port": target}]}]}
        await proxy._sync(("shop", "web"))
        assert list(proxy.listeners) == [("shop", "web", port)]  # `same` reaches the pod's own socket
        assert await _call(address, port) == b"web:hi"
        api.endpoints["web"] = {}
        await proxy._sync(("shop", "web"))
        assert await _call(address, port) == b""  # kept, but no endpoint: closed at once
        await proxy._on_event("DELETED", svc)
        assert proxy.listeners == {} and changes == [1, 1] and proxy.hosts_entries("shop") == {}
        with pytest.raises(OSError):
            await _call(address, port)
        upstream.close()
    asyncio.run(go())


def test_a_port_that_is_taken_is_one_warning_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        ip = f"10.{random.randint(96, 111)}.{random.randint(1, 255)}.{random.randint(1, 254)}"
        address, port = loopback_address(ip), _free_port()
        assert address is not None
        taken = socket.socket()
        taken.bind((address, port))
        taken.listen()
        api = FakeApi()
        api.endpoints["web"] = {"subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 1}]}]}
        proxy = ServiceProxy(api, "127.0.0.1")  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="kubesat.agent.serviceproxy"):
            await proxy._on_event("ADDED", _svc("web", "shop", ip, ports=[{"port": port, "targetPort": 1}]))
            await proxy._sync(("shop", "web"))
        assert [r.getMessage() for r in caplog.records] == [
            f"Service shop/web port {port}: cannot listen on {address}:{port}: port {port} is in use on this host "
            "(pods share the host network: something listens on it on all addresses), so pods cannot reach this "
            "port through the Service; free the port or give the Service another one"]
        taken.close()
        await proxy._sync(("shop", "web"))
        assert list(proxy.listeners) == [("shop", "web", port)]
        await proxy.close()
    asyncio.run(go())


def test_connections_past_the_cap_are_closed_and_stop_ends_the_open_ones() -> None:
    async def go() -> None:
        held = asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.set()
            await reader.read()  # until the relay goes
            writer.close()
        upstream = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = ServicePort("", _free_port(), 0, (("127.0.0.1", upstream.sockets[0].getsockname()[1]),))
        listener = PortListener("shop/web", _address(), port, asyncio.Semaphore(1))
        await listener.start()
        reader, writer = await asyncio.open_connection(listener.address, port.port)
        await asyncio.wait_for(held.wait(), 5)
        assert await _call(listener.address, port.port) == b""  # the one slot is taken: closed at once
        await listener.stop()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the open connection ended with its listener
        writer.close()
        upstream.close()
    asyncio.run(go())


def test_endpoints_that_cannot_be_read_leave_the_names_updated_and_wait_for_the_next_poll() -> None:
    class Failing(FakeApi):
        async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
            raise ApiError(500, "InternalError", "etcd is sad")

    async def go() -> None:
        changes: list[int] = []
        proxy = ServiceProxy(Failing(), "127.0.0.1", on_change=lambda: changes.append(1))  # type: ignore[arg-type]
        await proxy._on_event("ADDED", _svc("web", "shop", "10.96.0.30"))
        assert changes == [1] and proxy.hosts_entries("other")["web.shop.svc"] == "127.96.0.30"
        assert proxy.listeners == {}
    asyncio.run(go())
