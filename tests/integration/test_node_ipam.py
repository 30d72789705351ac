"""Node podCIDRs from the server's node IPAM controller (`--allocate-node-cidrs`, `--cluster-cidr`,
`--node-cidr-mask-size`), through kubectl: two Nodes get two distinct subnets of the cluster CIDR, a deleted
Node's subnet is given again, an exhausted range gives the `CIDRNotAvailable` Event, the podCIDR cannot be
changed afterwards, and bad flags stop the server in one line."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server, kubectl_binary, start_server, wait_for

CLUSTER = ipaddress.ip_network("10.250.0.0/23")  # two /24s


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kubectl_binary()
    srv = start_server(tmp_path_factory.mktemp("ipam") / "data",
                       extra=["--cluster-cidr", str(CLUSTER), "--node-cidr-mask-size", "24"])
    yield srv
    srv.stop()


def _create(server: Server, *names: str) -> None:
    server.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in names]}))


def _cidr(server: Server, name: str) -> str:
    return str(server.kubectl("get", "node", name, "-o", "jsonpath={.spec.podCIDR}").stdout).strip()


def _cidrs(server: Server, name: str) -> list[str]:
    return [str(c) for c in json.loads(server.kubectl("get", "node", name, "-o", "jsonpath={.spec.podCIDRs}").stdout
                                       or "[]")]


def test_two_nodes_get_two_subnets_and_a_deleted_ones_is_given_again(server: Server) -> None:
    _create(server, "ipam-a", "ipam-b")
    wait_for(lambda: len(server.kubectl("get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}")
                         .stdout.split()) == 2, 10, "two podCIDRs")
    got = server.kubectl("get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}").stdout.split()
    assert len(set(got)) == 2
    for cidr in got:
        net = ipaddress.ip_network(cidr)
        assert net.prefixlen == 24 and net.subnet_of(CLUSTER)  # type: ignore[arg-type]
    assert _cidrs(server, "ipam-a") == [_cidr(server, "ipam-a")]
    freed = _cidr(server, "ipam-a")
    server.kubectl("delete", "node", "ipam-a")
    _create(server, "ipam-c")
    wait_for(lambda: _cidr(server, "ipam-c"), 10, "ipam-c's podCIDR")
    assert _cidr(server, "ipam-c") == freed


def test_an_exhausted_range_gives_the_event_and_no_cidr(server: Server) -> None:
    if not _cidr(server, "ipam-b"):
        pytest.skip("needs the nodes of the test before")
    _create(server, "ipam-d")

    def event() -> dict[str, Any] | None:
        items = json.loads(server.kubectl("get", "events", "-n", "default", "--field-selector",
                                          "involvedObject.name=ipam-d", "-o", "json").stdout)["items"]
        return next((e for e in items if e["reason"] == "CIDRNotAvailable"), None)
    ev = wait_for(event, 10, "the CIDRNotAvailable event")
    assert ev["message"] == "Node ipam-d status is now: CIDRNotAvailable"
    assert ev["type"] == "Normal" and ev["source"]["component"] == "cidrAllocator"
    assert ev["involvedObject"]["kind"] == "Node"
    assert _cidr(server, "ipam-d") == ""
    # Freeing a subnet gives it to the node that waited.
    freed = _cidr(server, "ipam-b")
    server.kubectl("delete", "node", "ipam-b")
    wait_for(lambda: _cidr(server, "ipam-d") == freed, 10, "ipam-d's podCIDR")


def test_a_podcidr_cannot_change_and_a_given_one_is_kept(server: Server) -> None:
    _create(server, "ipam-e")  # the range is full: it waits
    res = server.kubectl("patch", "node", "ipam-c", "-p", '{"spec":{"podCIDR":"10.250.9.0/24"}}', check=False)
    assert res.returncode != 0
    assert 'node updates may not change podCIDR except from "" to valid' in res.stderr
    server.kubectl("patch", "node", "ipam-e", "-p", '{"spec":{"podCIDR":"192.168.77.0/24"}}')
    assert _cidrs(server, "ipam-e") == ["192.168.77.0/24"]


def test_with_allocate_node_cidrs_false_nodes_get_none(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", extra=["--allocate-node-cidrs=false"])
    try:
        _create(srv, "plain")
        time.sleep(1)  # the allocator, had it run, would have written by now
        assert _cidr(srv, "plain") == ""
        # A node made with one keeps it.
        _create_with(srv, "given", "10.244.5.0/24")
        assert _cidrs(srv, "given") == ["10.244.5.0/24"]
    finally:
        srv.stop()


def _create_with(server: Server, name: str, cidr: str) -> None:
    server.kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"podCIDR": cidr}}))


@pytest.mark.parametrize("flags, words", [
    (["--cluster-cidr", "10.0.0.0/33"], "--cluster-cidr: invalid CIDR address: 10.0.0.0/33"),
    (["--cluster-cidr", "10.0.0.0/16", "--node-cidr-mask-size", "12"], "--node-cidr-mask-size 12: must be between"),
])
def test_bad_flags_stop_the_server_in_one_line(tmp_path: Path, flags: list[str], words: str) -> None:
    res = subprocess.run([sys.executable, "-m", "kubesat.cli", "serve", "--data-dir", str(tmp_path / "d"),
                          "--no-node", *flags], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and words in res.stderr, res.stderr
