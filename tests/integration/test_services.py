"""Services, Endpoints and EndpointSlices against a real server: the `kubernetes` Service as a cluster has it,
`kubectl create service` (protobuf bodies), ClusterIP and node port allocation, Kubernetes' refusals, and
endpoints that follow the selected pods' readiness."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from tests.integration.conftest import Server, wait_for

NS = "default"


@pytest.fixture(scope="module")
def core(api) -> client.CoreV1Api:  # type: ignore[no-untyped-def]
    return client.CoreV1Api(api)


def test_the_kubernetes_service_and_its_endpoints(core: client.CoreV1Api, server: Server) -> None:
    svc = core.read_namespaced_service("kubernetes", NS)
    assert svc.spec.cluster_ip == "10.96.0.1" and svc.spec.cluster_ips == ["10.96.0.1"]
    assert svc.spec.type == "ClusterIP"
    assert [(p.name, p.port, p.protocol, p.target_port) for p in svc.spec.ports] == \
        [("https", 443, "TCP", server.port)]
    assert svc.metadata.labels == {"component": "apiserver", "provider": "kubernetes"}
    ep = core.read_namespaced_endpoints("kubernetes", NS)
    assert [a.ip for a in ep.subsets[0].addresses] == ["127.0.0.1"]
    assert [(p.name, p.port) for p in ep.subsets[0].ports] == [("https", server.port)]
    slices = client.DiscoveryV1Api(core.api_client).list_namespaced_endpoint_slice(
        NS, label_selector="kubernetes.io/service-name=kubernetes").items
    assert len(slices) == 1 and slices[0].address_type == "IPv4"
    assert slices[0].endpoints[0].addresses == ["127.0.0.1"] and slices[0].endpoints[0].conditions.ready is True
    table = server.kubectl("get", "svc", "kubernetes").stdout.split("\n")[1].split()
    assert table[:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]


def test_kubectl_create_service_allocates_addresses(server: Server) -> None:
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080")
    server.kubectl("create", "service", "nodeport", "np", "--tcp=80")
    web = json.loads(server.kubectl("get", "svc", "web", "-o", "json").stdout)
    ip = web["spec"]["clusterIP"]
    assert ip.startswith("10.") and web["spec"]["clusterIPs"] == [ip] and ip != "10.96.0.1"
    assert web["spec"]["ports"] == [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert (web["spec"]["sessionAffinity"], web["spec"]["ipFamilies"], web["spec"]["ipFamilyPolicy"]) == \
        ("None", ["IPv4"], "SingleStack")
    np_ = json.loads(server.kubectl("get", "svc", "np", "-o", "json").stdout)
    assert 30000 <= np_["spec"]["ports"][0]["nodePort"] <= 32767
    assert np_["spec"]["externalTrafficPolicy"] == "Cluster"
    # An update that leaves the address out keeps it; changing it is refused.
    web["spec"].pop("clusterIP")
    web["spec"].pop("clusterIPs")
    web["metadata"].pop("resourceVersion")
    server.kubectl("replace", "-f", "-", input=json.dumps(web))
    assert json.loads(server.kubectl("get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"] == ip
    out = server.kubectl("patch", "svc", "web", "-p", '{"spec":{"clusterIP":"10.96.0.99",'
                                                      '"clusterIPs":["10.96.0.99"]}}', check=False)
    assert out.returncode != 0
    assert 'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.99"}: may not change once set' in out.stderr


def test_services_are_refused_in_kubernetes_words(server: Server) -> None:
    out = server.kubectl("create", "service", "clusterip", "Bad", "--tcp=80", check=False)
    assert "metadata.name: Invalid value: \"Bad\": a DNS-1035 label must consist of lower case alphanumeric " \
           "characters or '-', start with an alphabetic character" in out.stderr
    out = server.kubectl("create", "service", "clusterip", "far", "--clusterip=1.2.3.4", "--tcp=80", check=False)
    assert 'spec.clusterIPs: Invalid value: []string{"1.2.3.4"}: failed to allocate IP 1.2.3.4: the provided IP ' \
           "(1.2.3.4) is not in the valid range. The range of valid IPs is 10.96.0.0/12" in out.stderr
    out = server.kubectl("create", "service", "clusterip", "taken", "--clusterip=10.96.0.1", "--tcp=80",
                         check=False)
    assert "failed to allocate IP 10.96.0.1: provided IP is already allocated" in out.stderr
    out = server.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "noports"}, "spec": {"selector": {"a": "b"}}}))
    assert "spec.ports: Required value" in out.stderr
    server.kubectl("create", "service", "clusterip", "headless", "--clusterip=None")
    assert json.loads(server.kubectl("get", "svc", "headless", "-o", "json").stdout)["spec"]["clusterIP"] == "None"


def _set_pod_status(core: client.CoreV1Api, name: str, ip: str, ready: bool) -> None:
    core.patch_namespaced_pod_status(name, "eps", {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})


def _addresses(core: client.CoreV1Api) -> tuple[list[str], list[str]]:
    ep = core.read_namespaced_endpoints("web", "eps")
    subsets = ep.subsets or []
    return (sorted(a.ip for s in subsets for a in s.addresses or []),
            sorted(a.ip for s in subsets for a in s.not_ready_addresses or []))


def test_endpoints_and_slices_follow_the_pods_readiness(core: client.CoreV1Api, server: Server) -> None:
    server.kubectl("create", "namespace", "eps")
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080", "-n", "eps")  # selector app=web
    for name in ("web-a", "web-b"):
        core.create_namespaced_pod("eps", {"metadata": {"name": name, "labels": {"app": "web"}},
                                           "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    core.create_namespaced_pod("eps", {"metadata": {"name": "other", "labels": {"app": "other"}},
                                       "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    # No pod has an address yet: the Endpoints exist, empty, and one placeholder slice.
    wait_for(lambda: _addresses(core) == ([], []), what="empty endpoints")
    _set_pod_status(core, "web-a", "10.244.0.5", ready=True)
    _set_pod_status(core, "web-b", "10.244.0.6", ready=False)
    _set_pod_status(core, "other", "10.244.0.7", ready=True)
    wait_for(lambda: _addresses(core) == (["10.244.0.5"], ["10.244.0.6"]), what="one ready, one not")
    ep = core.read_namespaced_endpoints("web", "eps")
    assert [(p.name, p.port, p.protocol) for p in ep.subsets[0].ports] == [("80-8080", 8080, "TCP")]
    assert {a.target_ref.name for a in ep.subsets[0].addresses} == {"web-a"}

    discovery = client.DiscoveryV1Api(core.api_client)

    def slice_conditions() -> dict[str, bool]:
        slices = discovery.list_namespaced_endpoint_slice("eps", label_selector="kubernetes.io/service-name=web").items
        return {e.target_ref.name: e.conditions.ready for s in slices for e in s.endpoints or []}

    wait_for(lambda: slice_conditions() == {"web-a": True, "web-b": False}, what="slice conditions")
    slices = discovery.list_namespaced_endpoint_slice("eps", label_selector="kubernetes.io/service-name=web").items
    assert len(slices) == 1 and slices[0].metadata.name.startswith("web-")
    assert slices[0].metadata.owner_references[0].kind == "Service"
    assert slices[0].metadata.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert [(p.name, p.port) for p in slices[0].ports] == [("80-8080", 8080)]

    # Readiness flips both ways; a deleted pod leaves.
    _set_pod_status(core, "web-b", "10.244.0.6", ready=True)
    _set_pod_status(core, "web-a", "10.244.0.5", ready=False)
    wait_for(lambda: _addresses(core) == (["10.244.0.6"], ["10.244.0.5"]), what="readiness flipped")
    core.delete_namespaced_pod("web-a", "eps", grace_period_seconds=0)
    wait_for(lambda: _addresses(core) == (["10.244.0.6"], []), what="deleted pod removed")
    wait_for(lambda: slice_conditions() == {"web-b": True}, what="deleted pod out of the slice")
    table = server.kubectl("get", "endpoints", "web", "-n", "eps").stdout.split("\n")[1].split()
    assert table[:2] == ["web", "10.244.0.6:8080"], table

    # The Service's deletion takes its Endpoints (the controller) and its slices (the garbage collector).
    server.kubectl("delete", "service", "web", "-n", "eps")
    wait_for(lambda: not core.list_namespaced_endpoints("eps").items, what="endpoints deleted")
    wait_for(lambda: not discovery.list_namespaced_endpoint_slice("eps").items, timeout=20, what="slices deleted")
