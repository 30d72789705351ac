"""The endpoint and endpointslice controllers' decisions: which pods back a Service, ready or not, on which ports."""

from __future__ import annotations

from typing import Any

from kubesat.controllers.endpoints import (
    MANAGED_BY,
    MAX_ENDPOINTS_PER_SLICE,
    desired_endpoints,
    desired_slices,
    endpoints_subsets,
)


def _service(ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP",
                                                                "targetPort": 8080}], **spec}}


def _pod(name: str, ip: str, ready: bool = True, phase: str = "Running", deleting: bool = False,
         ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta,
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports or []}]},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_ready_pods_are_addresses_and_unready_ones_not_ready_addresses() -> None:
    subsets = endpoints_subsets(_service(), [_pod("b", "10.0.0.2"), _pod("a", "10.0.0.10"),
                                             _pod("c", "10.0.0.3", ready=False)])
    assert len(subsets) == 1
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.0.0.2", "10.0.0.10"]  # sorted as addresses
    assert [a["ip"] for a in subsets[0]["notReadyAddresses"]] == ["10.0.0.3"]
    assert subsets[0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert subsets[0]["addresses"][0]["targetRef"] == {"kind": "Pod", "namespace": "ns", "name": "b",
                                                       "uid": "uid-b"}
    assert subsets[0]["addresses"][0]["nodeName"] == "n1"


def test_pods_without_ip_finished_or_terminating_are_left_out() -> None:
    pods = [_pod("noip", ""), _pod("done", "10.0.0.4", phase="Succeeded"), _pod("failed", "10.0.0.5", phase="Failed"),
            _pod("going", "10.0.0.6", deleting=True)]
    assert endpoints_subsets(_service(), pods) == []
    assert "subsets" not in desired_endpoints(_service(), pods)


def test_publish_not_ready_addresses_makes_every_pod_an_address_and_keeps_terminating_ones() -> None:
    svc = _service(publishNotReadyAddresses=True)
    subsets = endpoints_subsets(svc, [_pod("a", "10.0.0.2", ready=False), _pod("b", "10.0.0.3", deleting=True)])
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.0.0.2", "10.0.0.3"]
    assert "notReadyAddresses" not in subsets[0]


def test_named_target_port_resolves_per_pod_and_groups_subsets() -> None:
    svc = _service([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}])
    pods = [_pod("a", "10.0.0.2", ports=[{"name": "web", "containerPort": 8080}]),
            _pod("b", "10.0.0.3", ports=[{"name": "web", "containerPort": 9090}]),
            _pod("c", "10.0.0.4", ports=[{"name": "other", "containerPort": 7070}])]  # no such port: left out
    subsets = endpoints_subsets(svc, pods)
    assert sorted((s["ports"][0]["port"], [a["ip"] for a in s["addresses"]]) for s in subsets) == \
        [(8080, ["10.0.0.2"]), (9090, ["10.0.0.3"])]


def test_slices_carry_conditions_owner_and_labels() -> None:
    slices = desired_slices(_service(), [_pod("a", "10.0.0.2"), _pod("b", "10.0.0.3", ready=False),
                                         _pod("c", "10.0.0.4", deleting=True)])
    assert len(slices) == 1
    s = slices[0]
    assert s["metadata"]["generateName"] == "web-"
    assert s["metadata"]["labels"] == {"app": "web", "kubernetes.io/service-name": "web",
                                       "endpointslice.kubernetes.io/managed-by": MANAGED_BY}
    assert s["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
    assert s["metadata"]["ownerReferences"][0]["controller"] is True
    assert s["addressType"] == "IPv4" and s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    conds = {e["targetRef"]["name"]: e["conditions"] for e in s["endpoints"]}
    assert conds == {"a": {"ready": True, "serving": True, "terminating": False},
                     "b": {"ready": False, "serving": False, "terminating": False},
                     "c": {"ready": False, "serving": True, "terminating": True}}


def test_no_pods_leave_one_placeholder_slice_and_many_pods_split_at_the_cap() -> None:
    assert [s["endpoints"] for s in desired_slices(_service(), [])] == [[]]
    pods = [_pod(f"p{i}", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(MAX_ENDPOINTS_PER_SLICE + 1)]
    sizes = [len(s["endpoints"]) for s in desired_slices(_service(), pods)]
    assert sizes == [MAX_ENDPOINTS_PER_SLICE, 1]


def test_headless_service_is_labelled() -> None:
    svc = _service(clusterIP="None", clusterIPs=["None"])
    assert desired_endpoints(svc, [])["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert desired_slices(svc, [])[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
