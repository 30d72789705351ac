"""An operator end to end, as issue 13 describes it: a small reconciler (tests/integration/operator/
widget_operator.py) on the official client's watch runs in a pod on the local node with its ServiceAccount and
a Role for its custom resource, and serves a mutating and a validating webhook from the same pod, reached by the
API server through a Service. kubectl creates a Widget; the mutating webhook defaults it, the validating one
checks it, the operator writes its status through the status subresource, and `kubectl get` shows the
printer columns."""

from __future__ import annotations

import base64
import datetime
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import kubernetes

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, kubectl_binary, process_agent, start_server, wait_for

NS = "widgets"
NODE = "op-node"
OPERATOR = Path(__file__).parent / "operator" / "widget_operator.py"
# The operator runs this test's Python with the official client. A container has a /tmp of its own, where a clone
# or a virtualenv may live, so the client's packages and the operator's directory are mounted into the pod
# (hostPath, allowed on the agent) and the base interpreter runs it.
SITE_PACKAGES = Path(kubernetes.__file__).resolve().parents[1]
PYTHON = getattr(sys, "_base_executable", "") or sys.executable
IN_POD = "/opt/widget-operator"
SERVICE_DNS = f"widget-webhook.{NS}.svc"

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason=f"no process runtime: {runtime_available()}")


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _webhook_tls() -> tuple[bytes, bytes, bytes]:
    """A CA of the test's own and a serving certificate for the webhook Service's name: (ca, cert, key) PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "widget-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVICE_DNS)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVICE_DNS)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return _pem_cert(ca), _pem_cert(cert), key_pem


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wg"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 0}}},
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string"}, "replicas": {"type": "integer"},
                        "observedGeneration": {"type": "integer"}}}}}}}]}}


def _operator_objects(cert: bytes, key: bytes) -> list[dict]:
    labels = {"app": "widget-operator"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "widget-operator", "namespace": NS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "widget-operator", "namespace": NS},
         "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["example.com"], "resources": ["widgets/status"], "verbs": ["patch", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "widget-operator", "namespace": NS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "widget-operator"},
         "subjects": [{"kind": "ServiceAccount", "name": "widget-operator", "namespace": NS}]},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "widget-webhook-tls", "namespace": NS},
         "type": "kubernetes.io/tls",
         "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "widget-webhook", "namespace": NS},
         "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 8443}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "widget-operator", "namespace": NS, "labels": labels},
         "spec": {"nodeName": NODE, "serviceAccountName": "widget-operator", "terminationGracePeriodSeconds": 1,
                  "volumes": [
                      {"name": "tls", "secret": {"secretName": "widget-webhook-tls"}},
                      {"name": "site", "hostPath": {"path": str(SITE_PACKAGES), "type": "Directory"}},
                      {"name": "code", "hostPath": {"path": str(OPERATOR.parent), "type": "Directory"}}],
                  "securityContext": {"runAsUser": 0},
                  "containers": [{
                      "name": "operator", "image": "widget-operator",
                      "command": [PYTHON, f"{IN_POD}/code/{OPERATOR.name}", "/tls/tls.crt", "/tls/tls.key", "8443"],
                      "env": [{"name": "PYTHONPATH", "value": f"{IN_POD}/site-packages"}],
                      "ports": [{"containerPort": 8443}],
                      "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True},
                                       {"name": "site", "mountPath": f"{IN_POD}/site-packages", "readOnly": True},
                                       {"name": "code", "mountPath": f"{IN_POD}/code", "readOnly": True}],
                      "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1}}]}},
    ]


def _webhooks(ca: bytes) -> list[dict]:
    def hook(name: str, path: str) -> dict:
        return {"name": name, "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
                "clientConfig": {"caBundle": base64.b64encode(ca).decode(),
                                 "service": {"namespace": NS, "name": "widget-webhook", "path": path}},
                "rules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"], "resources": ["widgets"],
                           "operations": ["CREATE", "UPDATE"]}]}
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": "widget-defaults"}, "webhooks": [hook("mwidget.example.com", "/mutate")]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": "widget-checks"}, "webhooks": [hook("vwidget.example.com", "/validate")]},
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server and a process-runtime agent that lets pods run as root: the operator runs this test's own Python,
    whose packages (the official client) sit under /root."""
    kubectl_binary()
    srv = start_server(tmp_path_factory.mktemp("kubesat") / "data")
    try:
        with process_agent(srv, tmp_path_factory.mktemp("agent"), NODE, "--allow-privileged",
                           "--allow-host-path", str(SITE_PACKAGES), "--allow-host-path", str(OPERATOR.parent)):
            yield srv
    finally:
        srv.stop()


def _ready(server: Server) -> bool:
    out = server.kubectl("get", "pod", "-n", NS, "widget-operator", "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conditions = json.loads(out.stdout).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _widget(server: Server, name: str) -> dict:
    return json.loads(server.kubectl("get", "widget", "-n", NS, name, "-o", "json").stdout)


def test_an_operator_with_webhooks_reconciles_a_custom_resource(cluster: Server) -> None:
    server = cluster
    ca, cert, key = _webhook_tls()
    server.kubectl("create", "namespace", NS)
    server.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    server.kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s")
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": _operator_objects(cert, key)}))
    try:
        wait_for(lambda: _ready(server), 60, "the operator pod ready")
    except AssertionError:
        print(server.kubectl("describe", "pod", "-n", NS, "widget-operator", check=False).stdout)
        print(server.kubectl("logs", "-n", NS, "widget-operator", check=False).stdout)
        raise
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": _webhooks(ca)}))

    # Created without a size: the mutating webhook defaults it and labels it; the operator reconciles it.
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": NS},
        "spec": {}}))
    widget = _widget(server, "w1")
    assert widget["spec"] == {"size": 1}
    assert widget["metadata"]["labels"] == {"widgets.example.com/managed": "true"}
    done = wait_for(lambda: _widget(server, "w1").get("status", {}).get("phase") == "Ready" and _widget(server, "w1"),
                    30, "the operator's status")
    assert done["status"] == {"phase": "Ready", "replicas": 1, "observedGeneration": done["metadata"]["generation"]}
    table = server.kubectl("get", "wg", "-n", NS).stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE", "AGE"]
    assert table[1].split()[:3] == ["w1", "1", "Ready"]

    # A size the validating webhook refuses, in Kubernetes' words.
    out = server.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w2", "namespace": NS},
        "spec": {"size": 50}}))
    assert out.returncode != 0
    assert 'admission webhook "vwidget.example.com" denied the request: size 50 is above 10' in out.stderr

    # An update goes through both webhooks, and the operator follows the new generation.
    server.kubectl("patch", "widget", "-n", NS, "w1", "--type=merge", "-p", '{"spec":{"size":3}}')
    wait_for(lambda: _widget(server, "w1").get("status", {}).get("replicas") == 3, 30, "the operator's new status")
    refused = server.kubectl("patch", "widget", "-n", NS, "w1", "--type=merge", "-p", '{"spec":{"size":11}}',
                             check=False)
    assert "size 11 is above 10" in refused.stderr
    logs = server.kubectl("logs", "-n", NS, "widget-operator").stdout
    assert "reconciled widgets/w1" in logs, logs
