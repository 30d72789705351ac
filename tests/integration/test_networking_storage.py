"""Ingress, IngressClass, NetworkPolicy and StorageClass through kubectl: stored with Kubernetes' defaults,
printed with kubectl's columns, and refused in Kubernetes' words."""

from __future__ import annotations

import json

import pytest

from .conftest import Server

pytestmark = pytest.mark.integration

MANIFESTS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  tls: [{hosts: [a.example]}]
  rules:
  - host: a.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-only}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local, annotations: {storageclass.kubernetes.io/is-default-class: "true"}}
provisioner: example.com/local
"""


def _rows(server: Server, *args: str) -> list[list[str]]:
    return [line.split() for line in server.kubectl("get", *args).stdout.splitlines()]


def test_kinds_are_stored_with_defaults_and_printed(server: Server) -> None:
    server.kubectl("apply", "-f", "-", input=MANIFESTS)
    assert _rows(server, "ingress", "web")[1][:5] == ["web", "nginx", "a.example", "80,", "443"]
    assert _rows(server, "ingressclass", "nginx")[1][:3] == ["nginx", "k8s.io/ingress-nginx", "<none>"]
    assert _rows(server, "netpol", "web-only")[1][:2] == ["web-only", "app=web"]
    assert _rows(server, "sc")[1][:6] == ["local", "(default)", "example.com/local", "Delete", "Immediate", "false"]
    policy = json.loads(server.kubectl("get", "netpol", "web-only", "-o", "json").stdout)["spec"]
    assert policy["policyTypes"] == ["Ingress"] and policy["ingress"][0]["ports"][0]["protocol"] == "TCP"
    names = server.kubectl("api-resources", "--api-group=networking.k8s.io", "-o", "name").stdout.split()
    assert sorted(names) == ["ingressclasses.networking.k8s.io", "ingresses.networking.k8s.io",
                             "networkpolicies.networking.k8s.io"]


def _refused(server: Server, manifest: dict) -> str:
    out = server.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert out.returncode != 0, out.stdout
    return out.stderr


def test_bad_objects_are_refused_in_kubernetes_words(server: Server) -> None:
    err = _refused(server, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bad"},
                            "spec": {"rules": [{"http": {"paths": [{"path": "relative", "backend": {
                                "service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    assert "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified" in err
    err = _refused(server, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bad"},
                            "spec": {"rules": [{"http": {"paths": [{"path": "relative", "pathType": "Prefix",
                                                                    "backend": {"service": {"name": "web"}}}]}}]}})
    assert 'spec.rules[0].http.paths[0].path: Invalid value: "relative": must be an absolute path' in err
    assert "spec.rules[0].http.paths[0].backend.service.port: Invalid value" in err
    assert "port name or number is required" in err
    err = _refused(server, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "empty"},
                            "spec": {}})
    assert "either `defaultBackend` or `rules` must be specified" in err
    err = _refused(server, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "x"}})
    assert "provisioner: Required value" in err
    err = _refused(server, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "y"},
                            "provisioner": "example.com/p", "reclaimPolicy": "Recycle"})
    assert 'reclaimPolicy: Unsupported value: "Recycle": supported values: "Delete", "Retain"' in err
    server.kubectl("apply", "-f", "-", input=MANIFESTS)
    out = server.kubectl("patch", "sc", "local", "-p", '{"reclaimPolicy":"Retain"}', check=False)
    assert "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden." in out.stderr
    out = server.kubectl("patch", "ingressclass", "nginx", "-p", '{"spec":{"controller":"example.com/other"}}',
                         check=False)
    assert 'spec.controller: Invalid value: "example.com/other": field is immutable' in out.stderr
    err = _refused(server, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n"},
                            "spec": {"podSelector": {}, "policyTypes": ["Sideways"],
                                     "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                                        "except": ["192.168.0.0/16"]}}]}]}})
    assert 'spec.policyTypes[0]: Unsupported value: "Sideways": supported values: "Egress", "Ingress"' in err
    assert 'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "192.168.0.0/16": must be a strict subset ' \
           "of `cidr`" in err
