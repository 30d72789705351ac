"""Services, Endpoints and EndpointSlices against a real server: the `kubernetes` Service as a cluster has it,
`kubectl create service` (protobuf bodies), ClusterIP and node port allocation, Kubernetes' refusals."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from tests.integration.conftest import Server

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
