"""What the fuzz tests fuzz: the endpoints and kinds a running server announces, seed objects, and the findings log."""

from __future__ import annotations

import base64
import functools
import http.client
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .rawclient import Answer, RawClient, Sent, status_problem

NS = "fuzz"
TARGET = "fuzz-target"
SERVICE_ACCOUNT = "fuzz-sa"

@functools.cache
def _csr_spec() -> dict[str, Any]:
    """A CertificateSigningRequest's spec: a real, signed PKCS#10 request (validation checks its signature)."""
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")])).sign(key, hashes.SHA256())
    pem = req.public_bytes(serialization.Encoding.PEM)
    return {"spec": {"request": base64.b64encode(pem).decode(), "signerName": "example.com/fuzz",
                     "usages": ["client auth"]}}


_NEVER_RESTARTING_POD = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
_ROLE_REF = {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}}
# What a kind needs beyond apiVersion, kind and name to be created, by namespace (a new kind that needs more
# fails the seeding with a message pointing here).
# A workload that runs nothing (no replicas), so fuzzing its endpoints starts no pods.
_WORKLOAD: dict[str, Any] = {"spec": {
    "replicas": 0, "selector": {"matchLabels": {"fuzz": "yes"}},
    "template": {"metadata": {"labels": {"fuzz": "yes"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
SEED_EXTRAS: dict[str, Callable[[str], dict[str, Any]]] = {
    "Pod": lambda ns: {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    "RoleBinding": lambda ns: _ROLE_REF,
    "ClusterRoleBinding": lambda ns: _ROLE_REF,
    # One body for both Event APIs (each drops the other's field names): core/v1 reads involvedObject and
    # reportingComponent, events.k8s.io/v1 regarding and reportingController, and needs the rest.
    "Event": lambda ns: {"involvedObject": {"kind": "ConfigMap", "name": TARGET, "namespace": ns},
                         "regarding": {"kind": "ConfigMap", "name": TARGET, "namespace": ns},
                         "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal", "reason": "Fuzzed",
                         "action": "Fuzzing", "reportingComponent": "fuzz", "reportingController": "fuzz",
                         "reportingInstance": "fuzz-0"},
    "CertificateSigningRequest": lambda ns: _csr_spec(),
    "Service": lambda ns: {"spec": {"ports": [{"port": 80}]}},
    "EndpointSlice": lambda ns: {"addressType": "IPv4"},
    "Job": lambda ns: {"spec": {"template": _NEVER_RESTARTING_POD}},
    "CronJob": lambda ns: {"spec": {"schedule": "0 0 1 1 *",
                                    "jobTemplate": {"spec": {"template": _NEVER_RESTARTING_POD}}}},
    "Deployment": lambda ns: _WORKLOAD,
    "ReplicaSet": lambda ns: _WORKLOAD,
    "StatefulSet": lambda ns: _WORKLOAD,
    "DaemonSet": lambda ns: {"spec": {k: v for k, v in _WORKLOAD["spec"].items() if k != "replicas"}},
    "ReplicationController": lambda ns: {"spec": {"replicas": 0, "selector": {"fuzz": "yes"},
                                                  "template": _WORKLOAD["spec"]["template"]}},
    "ControllerRevision": lambda ns: {"revision": 1, "data": {}},
    "PersistentVolume": lambda ns: {"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                             "hostPath": {"path": "/fuzz"}}},
    "PersistentVolumeClaim": lambda ns: {"spec": {"accessModes": ["ReadWriteOnce"],
                                                  "resources": {"requests": {"storage": "1Gi"}}}},
    "Ingress": lambda ns: {"spec": {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}}},
    "IngressClass": lambda ns: {"spec": {"controller": "example.com/fuzz"}},
    "StorageClass": lambda ns: {"provisioner": "example.com/fuzz"},
    # A policy (and its binding) on a resource nothing serves, so the fuzzed requests never meet it.
    "ValidatingAdmissionPolicy": lambda ns: {"spec": {
        "matchConstraints": {"resourceRules": [{"apiGroups": ["fuzz.example.com"], "apiVersions": ["v1"],
                                                "operations": ["CREATE"], "resources": ["nothings"]}]},
        "validations": [{"expression": "true"}]}},
    "ValidatingAdmissionPolicyBinding": lambda ns: {"spec": {"policyName": TARGET, "validationActions": ["Deny"]}},
}


@dataclass(frozen=True)
class Endpoint:
    """One resource or subresource from discovery, with the kind its bodies carry."""

    prefix: str  # /api/v1 or /apis/<group>/<version>
    resource: str
    subresource: str
    namespaced: bool
    kind: str
    api_version: str  # of the body's kind (a subresource may name its own group and version)
    verbs: frozenset[str]

    @property
    def name(self) -> str:
        return self.resource + (f"/{self.subresource}" if self.subresource else "")

    @property
    def create_only(self) -> bool:
        return self.verbs == {"create"}

    def collection(self, namespace: str = NS) -> str:
        scope = f"/namespaces/{namespace}" if self.namespaced else ""
        return f"{self.prefix}{scope}/{self.resource}"

    def item(self, name: str = TARGET, namespace: str = NS) -> str:
        return self.collection(namespace) + f"/{name}" + (f"/{self.subresource}" if self.subresource else "")

    def create_path(self, namespace: str = NS) -> str:
        """Where a create goes: the collection, or the parent object for a create-only subresource (token)."""
        if self.subresource:
            return self.item(SERVICE_ACCOUNT if self.resource == "serviceaccounts" else TARGET, namespace)
        return self.collection(namespace)

    def seed(self, name: str = TARGET, namespace: str = NS) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if self.namespaced:
            meta["namespace"] = namespace
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta,
                **SEED_EXTRAS.get(self.kind, lambda ns: {})(namespace)}


def discover(client: RawClient) -> list[Endpoint]:
    """Every resource and subresource the server's discovery documents announce."""
    versions = ["/api/v1"]
    for group in ok(client.request("GET", "/apis")).json()["groups"]:
        versions += [f"/apis/{v['groupVersion']}" for v in group["versions"]]
    found = []
    for prefix in versions:
        doc = ok(client.request("GET", prefix)).json()
        group_version = doc["groupVersion"]
        for r in doc["resources"]:
            if r["kind"].endswith("Options"):
                continue  # a connect subresource (pods/exec, pods/proxy...): no body, no schema; test_proxy.py
            resource, _, sub = r["name"].partition("/")
            api_version = group_version
            if "version" in r:
                api_version = f"{r['group']}/{r['version']}" if r.get("group") else r["version"]
            found.append(Endpoint(prefix, resource, sub, r["namespaced"], r["kind"], api_version,
                                  frozenset(r["verbs"])))
    return found


def kind_schemas(client: RawClient) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """All component schemas of the server's OpenAPI v3 documents, and each kind's schema by (apiVersion, kind)."""
    schemas: dict[str, dict[str, Any]] = {}
    for doc in ok(client.request("GET", "/openapi/v3")).json()["paths"].values():
        schemas.update(ok(client.request("GET", doc["serverRelativeURL"])).json()
                       .get("components", {}).get("schemas", {}))
    by_kind = {}
    for schema in schemas.values():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            by_kind[(api_version, gvk["kind"])] = schema
    return schemas, by_kind


def ok(answer: Answer) -> Answer:
    assert answer.status < 300, (answer.status, answer.body[:500])
    return answer


class LogTail:
    """The server log from where it was last read: the traceback behind each 5xx."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def new(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            text = f.read()
        self.offset += len(text)
        return text.decode("utf-8", "replace")


_FRAME = re.compile(r'File "([^"]*kubesat[^"]*)", line \d+, in (\S+)')
_EXCEPTION = re.compile(r"^\s*([A-Za-z_.]*(?:Error|Exception|Exit|Interrupt)[A-Za-z]*)(?::\s?(.*))?$", re.MULTILINE)


def root_cause(log_text: str) -> str:
    """'ExceptionType in module:function' of the innermost kubesat frame of the last traceback in log_text."""
    tb = log_text[log_text.rfind("Traceback (most recent call last)"):]
    if "Traceback" not in tb:
        return "no traceback in the server log"
    frames = _FRAME.findall(tb)
    where = f"{Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else "?"
    exceptions = _EXCEPTION.findall(tb)
    exc, msg = exceptions[-1] if exceptions else ("?", "")
    return f"{exc} in {where} (first: {msg[:160]})"


class Findings:
    """Requests that broke the error contract, grouped by root cause (the server's traceback) for the report."""

    def __init__(self, log: LogTail) -> None:
        self.log = log
        self.groups: dict[str, list[str]] = defaultdict(list)
        self.first: dict[str, str] = {}
        self.sent = 0

    def check(self, client: RawClient, req: Sent, stream: bool = False) -> Answer:
        self.sent += 1
        try:
            answer = client.send(req, stream=stream)
            problem = status_problem(answer)
        except (OSError, http.client.HTTPException) as e:
            answer, problem = Answer(0, "", b""), f"no answer ({type(e).__name__})"
        if problem is not None:
            cause = root_cause(self.log.new()) if answer.status >= 500 or not answer.status else problem
            key = cause.split(" (first:")[0]
            self.groups[key].append(f"{problem}: {req.reproducer()}")
            self.first.setdefault(key, cause)
        return answer

    def report(self) -> str:
        total = sum(len(v) for v in self.groups.values())
        lines = [f"{total} of {self.sent} requests broke the error contract, {len(self.groups)} root causes:"]
        for key, items in sorted(self.groups.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"- {len(items)}x {self.first.get(key, key)}")
            lines.extend(f"    {example}" for example in items[:3])
        return "\n".join(lines)
