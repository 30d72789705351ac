"""Service defaults and the ClusterIP allocator, with no server."""

from __future__ import annotations

import ipaddress

import pytest

from kubesat.registry.service import ClusterIPAllocator, apply_service_defaults, validate_service


def test_defaults_as_kubernetes_sets_them() -> None:
    svc = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}], "clusterIP": "10.96.3.4"}}
    apply_service_defaults(svc)
    spec = svc["spec"]
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert spec["clusterIPs"] == ["10.96.3.4"] and spec["ipFamilies"] == ["IPv4"]
    assert (spec["sessionAffinity"], spec["externalTrafficPolicy"], spec["internalTrafficPolicy"]) == \
        ("None", "Cluster", "Cluster")
    assert validate_service(svc) == []


def test_allocator_hands_out_free_addresses_in_range() -> None:
    clock = [0.0]
    alloc = ClusterIPAllocator(ipaddress.IPv4Network("10.96.0.0/29"), clock=lambda: clock[0])
    got = {alloc.allocate(set()) for _ in range(6)}  # .2 to .7: .0 is the network, .1 the API's
    assert len(got) == 6 and "10.96.0.1" not in got
    with pytest.raises(ValueError, match="range is full"):
        alloc.allocate(set())
    clock[0] += ClusterIPAllocator.HOLD + 1  # nothing stored them: they are free again
    assert alloc.allocate({"10.96.0.2", "10.96.0.3", "10.96.0.4", "10.96.0.5", "10.96.0.6"}) == "10.96.0.7"


def test_allocator_checks_a_requested_address() -> None:
    alloc = ClusterIPAllocator()
    assert alloc.allocate(set(), "10.100.0.10") == "10.100.0.10"
    with pytest.raises(ValueError, match="provided IP is already allocated"):
        alloc.allocate(set(), "10.100.0.10")
    with pytest.raises(ValueError, match=r"not in the valid range. The range of valid IPs is 10.96.0.0/12"):
        alloc.allocate(set(), "192.168.1.1")
