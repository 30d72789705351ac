"""Where pods/proxy and services/proxy go (api/proxy_targets.py): ids, pod IPs and ports, endpoint choice, and
the addresses never proxied to; and the connect subresources in discovery and OpenAPI."""

from __future__ import annotations

from typing import Any

import pytest

from kubesat import errors
from kubesat.api import discovery, openapi, proxy_targets
from kubesat.api.proxy_targets import ProxyID, Target


def _pod(ip: str = "127.0.0.1", phase: str = "Running", ports: list[int] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"containerPort": p}
                                                                               for p in ports or []]}]},
            "status": {"phase": phase, "podIP": ip}}


@pytest.mark.parametrize("text, want", [
    ("web", ProxyID("", "web", "")),
    ("web:8080", ProxyID("", "web", "8080")),
    ("https:web:8443", ProxyID("https", "web", "8443")),
    ("web:", ProxyID("", "web", "")),
])
def test_split_id(text: str, want: ProxyID) -> None:
    assert proxy_targets.split_id("pod", text) == want


@pytest.mark.parametrize("text", ["", ":80", "ftp:web:80", "a:b:c:d", "x" * 600])
def test_split_id_refuses(text: str) -> None:
    with pytest.raises(errors.StatusError) as e:
        proxy_targets.split_id("pod", text)
    assert e.value.code == 400 and e.value.message.startswith("invalid pod request ")


@pytest.mark.parametrize("ip, allowed", [
    ("127.0.0.1", True), ("127.96.3.7", True), ("10.0.0.5", True), ("::1", True), ("8.8.8.8", True),
    ("0.0.0.0", False), ("::", False), ("169.254.169.254", False), ("fe80::1", False), ("224.0.0.1", False),
    ("255.255.255.255", False), ("240.0.0.1", False), ("::ffff:169.254.169.254", False), ("", False),
    ("web", False),
])
def test_allowed_address(ip: str, allowed: bool) -> None:
    assert proxy_targets.allowed_address(ip) is allowed


def test_pod_target_port_choice() -> None:
    assert proxy_targets.pod_target(_pod(ports=[8080, 9090]), ProxyID("", "web", "")) == Target("http", "127.0.0.1",
                                                                                                8080)
    assert proxy_targets.pod_target(_pod(), ProxyID("https", "web", "")).port == 443
    assert proxy_targets.pod_target(_pod(), ProxyID("", "web", "81")) == Target("http", "127.0.0.1", 81)
    assert Target("http", "::1", 80).url("/a", "b=1") == "http://[::1]:80/a?b=1"


@pytest.mark.parametrize("pod, port, message", [
    (_pod(ip=""), "80", "address not allowed"),
    (_pod(ip="169.254.169.254"), "80", "address not allowed"),
    (_pod(phase="Succeeded"), "80", "pod web is not running (phase Succeeded)"),
    (_pod(), "http", 'invalid pod request "web:http": the port must be a number from 1 to 65535'),
    (_pod(), "65536", 'invalid pod request "web:65536": the port must be a number from 1 to 65535'),
])
def test_pod_target_refuses(pod: dict[str, Any], port: str, message: str) -> None:
    with pytest.raises(errors.StatusError) as e:
        proxy_targets.pod_target(pod, ProxyID("", "web", port))
    assert (e.value.code, e.value.message) == (400, message)


def test_service_port_names() -> None:
    svc = {"spec": {"ports": [{"name": "http", "port": 80}, {"name": "", "port": 81}]}}
    assert proxy_targets.service_port_name(svc, ProxyID("", "web", "80")) == "http"
    assert proxy_targets.service_port_name(svc, ProxyID("", "web", "81")) == ""
    assert proxy_targets.service_port_name(svc, ProxyID("", "web", "metrics")) == "metrics"
    with pytest.raises(errors.StatusError) as e:
        proxy_targets.service_port_name(svc, ProxyID("", "web", "82"))
    assert (e.value.code, e.value.message) == (503, 'no service port 82 found for service "web"')
    for bad in ("Bad!", "0", "99999", "a--b", "toolongportname16", "123-"):
        with pytest.raises(errors.StatusError):
            proxy_targets.check_service_port(ProxyID("", "web", bad), f"web:{bad}")
    proxy_targets.check_service_port(ProxyID("", "web", "http-alt"), "web:http-alt")


def test_service_candidates_skip_what_is_not_a_pod() -> None:
    pod_ref = {"kind": "Pod", "name": "web-1", "namespace": "default"}
    eps = {"subsets": [{"addresses": [{"ip": "127.0.0.1", "targetRef": pod_ref}, {"ip": "10.0.0.9"},
                                      {"ip": "169.254.169.254", "targetRef": pod_ref}],
                        "notReadyAddresses": [{"ip": "127.0.0.2", "targetRef": pod_ref}],
                        "ports": [{"name": "http", "port": 8080}, {"name": "", "port": 9}]}]}
    found = list(proxy_targets.service_candidates(eps, ProxyID("", "web", "http"), "http"))
    assert found == [(Target("http", "127.0.0.1", 8080), "default", "web-1")]
    assert list(proxy_targets.service_candidates(eps, ProxyID("", "web", "x"), "x")) == []
    with pytest.raises(errors.StatusError) as e:
        list(proxy_targets.service_candidates({"subsets": []}, ProxyID("", "web", "80"), ""))
    assert (e.value.code, e.value.message) == (503, 'no endpoints available for service "web"')


def test_discovery_and_openapi_of_the_connect_subresources() -> None:
    doc = discovery.api_resource_list("", "v1")
    assert doc is not None
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["pods/exec"] == {"name": "pods/exec", "singularName": "", "namespaced": True,
                                    "kind": "PodExecOptions", "verbs": ["create", "get"]}
    assert by_name["nodes/proxy"]["verbs"] == ["create", "delete", "get", "patch", "update"]
    assert "storageVersionHash" not in by_name["services/proxy"]
    paths = openapi._gv_paths("", "v1")
    proxy = paths["/api/v1/namespaces/{namespace}/services/{name}/proxy/{path}"]
    assert sorted(k for k in proxy if k != "parameters") == ["delete", "get", "head", "options", "patch", "post",
                                                              "put"]
    assert proxy["head"]["operationId"] == "connectCoreV1HeadNamespacedServiceProxyWithPath"
    assert paths["/api/v1/nodes/{name}/proxy"]["get"]["operationId"] == "connectCoreV1GetNodeProxy"
    assert paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]["operationId"] == \
        "readCoreV1NamespacedPodLog"
    assert [p["name"] for p in paths["/api/v1/namespaces/{namespace}/pods/{name}/portforward"]["parameters"]] == \
        ["name", "namespace", "ports"]


def test_node_target_is_the_kubelet_api_only() -> None:
    assert proxy_targets.node_target("127.0.0.1", 10250, ProxyID("", "n1", "")) == Target("https", "127.0.0.1", 10250)
    assert proxy_targets.node_target("10.0.0.2", 10250, ProxyID("https", "n1", "10250")).port == 10250
    for pid in (ProxyID("", "n1", "22"), ProxyID("http", "n1", "10250")):
        with pytest.raises(errors.StatusError) as e:
            proxy_targets.node_target("127.0.0.1", 10250, pid)
        assert e.value.code == 400 and e.value.message.startswith("invalid node request ")
