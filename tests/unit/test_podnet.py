"""The bridge pod network's decisions that need no netlink: names, addresses, and the agent's refusals at start."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from kubesat.agent import netns
from kubesat.agent.main import AgentError, AgentOptions, _plan_pod_network
from kubesat.agent.netns import PodNetworkError, tag_for
from kubesat.agent.podnet import BridgeNetwork as PodNetwork, overlapping_route


def test_names_differ_per_agent_and_fit_a_link_name() -> None:
    a, b = tag_for("n1", Path("/var/lib/a")), tag_for("n1", Path("/var/lib/b"))
    assert a != b and a == tag_for("n1", Path("/var/lib/a"))
    net = PodNetwork(a, "10.244.1.0/24")
    host_end, pod_end = net._veth_names("3f1c0b5e-0000-4000-8000-000000000001")
    assert len(net.bridge) <= 15 and len(host_end) <= 15 and len(pod_end) <= 15
    assert host_end.startswith(f"{net.bridge}-")


def test_addresses_are_distinct_skip_the_gateway_and_are_kept_per_pod() -> None:
    net = PodNetwork("abcdef", "10.244.7.0/29")
    assert net.gateway == "10.244.7.1"
    got = [net.reserve(f"uid-{i}") for i in range(5)]
    assert got == [f"10.244.7.{n}" for n in range(2, 7)]  # .0 the network, .1 the gateway, .7 broadcast
    assert net.reserve("uid-0") == "10.244.7.2"
    assert all(ipaddress.IPv4Address(a) in net.cidr for a in got)
    with pytest.raises(PodNetworkError, match="no free address"):
        net.reserve("uid-5")


@pytest.mark.parametrize("cidr", ["fd00::/64", "10.244.0.0/30", "nonsense"])
def test_a_cidr_it_cannot_use_is_refused(cidr: str) -> None:
    with pytest.raises(PodNetworkError):
        PodNetwork("abcdef", cidr)


def _opts(**kw: object) -> AgentOptions:
    return AgentOptions(kubeconfig=Path("k"), node_name="n1", root=Path("r"), **kw)  # type: ignore[arg-type]


def test_the_agent_refuses_a_bridge_it_cannot_have(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _plan_pod_network(_opts(pod_network="host")).mode == "host"
    with pytest.raises(AgentError, match="needs --runtime process"):
        _plan_pod_network(_opts(pod_network="bridge"))
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(AgentError, match="^--pod-network bridge: a pod network needs root"):
        _plan_pod_network(_opts(pod_network="bridge", runtime="process"))


def test_auto_is_a_bridge_where_the_machine_allows_it(monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    assert _opts().pod_network == "auto"  # the default
    monkeypatch.setattr(netns, "unavailable", lambda: None)
    plan = _plan_pod_network(_opts(runtime="process"))
    assert (plan.mode, plan.auto) == ("bridge", True)
    assert _plan_pod_network(_opts()).mode == "host"  # runtime none: no processes, no network
    monkeypatch.setattr(netns, "unavailable", lambda: "a pod network needs root (why)")
    plan = _plan_pod_network(_opts(runtime="process"))
    assert (plan.mode, plan.host_why) == ("host", "a pod network needs root (why)")
    assert "pods share the host's network (a pod network needs root (why))" in caplog.text
    with pytest.raises(AgentError, match="unknown pod network 'mesh'"):
        _plan_pod_network(_opts(pod_network="mesh"))


def test_a_pod_cidr_another_route_covers_is_found() -> None:
    cidr = ipaddress.IPv4Network("10.244.1.0/24")
    routes = [("0.0.0.0/0", "eth0"), ("10.0.0.0/16", "eth0"), ("10.244.0.0/24", "ksabc"), ("fd00::/64", "x")]
    assert overlapping_route(cidr, routes) is None
    assert overlapping_route(cidr, [*routes, ("10.244.0.0/16", "cni0")]) == "10.244.0.0/16 on cni0"
    assert overlapping_route(cidr, [("10.244.1.128/25", "wg0")]) == "10.244.1.128/25 on wg0"


def test_an_agent_on_the_hosts_network_does_not_load_netlink() -> None:
    """pyroute2 (8 MB, 0.14 s) is imported by the bridge pod network alone."""
    code = "import sys, kubesat.agent.main, kubesat.cli.node; print('pyroute2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
