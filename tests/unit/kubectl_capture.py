"""Run the real kubectl against a throwaway loopback HTTP server and record the requests it sends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubesat.apimachinery import protobuf

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

# group/version -> [(resource, kind, namespaced, verbs)]; just enough discovery for the commands we run.
_ALL = ["create", "delete", "get", "list", "patch", "update", "watch"]
RESOURCES: dict[str, list[tuple[str, str, bool, list[str]]]] = {
    "v1": [
        ("namespaces", "Namespace", False, _ALL),
        ("serviceaccounts", "ServiceAccount", True, _ALL),
        ("serviceaccounts/token", "TokenRequest", True, ["create"]),
        ("secrets", "Secret", True, _ALL),
        ("configmaps", "ConfigMap", True, _ALL),
        ("pods", "Pod", True, _ALL),
        ("nodes", "Node", False, _ALL),
        ("events", "Event", True, _ALL),
    ],
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True, _ALL),
        ("rolebindings", "RoleBinding", True, _ALL),
        ("clusterroles", "ClusterRole", False, _ALL),
        ("clusterrolebindings", "ClusterRoleBinding", False, _ALL),
    ],
    "authentication.k8s.io/v1": [
        ("tokenreviews", "TokenReview", False, ["create"]),
        ("selfsubjectreviews", "SelfSubjectReview", False, ["create"]),
    ],
    "authorization.k8s.io/v1": [
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, ["create"]),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False, ["create"]),
        ("subjectaccessreviews", "SubjectAccessReview", False, ["create"]),
        ("localsubjectaccessreviews", "LocalSubjectAccessReview", True, ["create"]),
    ],
    "coordination.k8s.io/v1": [("leases", "Lease", True, _ALL)],
}


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def accept(self) -> str:
        return self.headers.get("accept", "")


@dataclass
class Capture:
    requests: list[Request] = field(default_factory=list)
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]


def _discovery(path: str, port: int) -> Any:
    if path == "/version":
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.4", "platform": "linux/amd64"}
    if path == "/api":
        addr = [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{port}"}]
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": addr}
    if path == "/apis":
        groups = []
        for gv in RESOURCES:
            if "/" in gv:
                group, version = gv.split("/")
                ref = {"groupVersion": gv, "version": version}
                groups.append({"name": group, "versions": [ref], "preferredVersion": ref})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    gv = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
    if gv in RESOURCES:
        resources = []
        for name, kind, namespaced, verbs in RESOURCES[gv]:
            resources.append(
                {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs}
            )
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
    return None


def _answer(req: Request) -> dict:
    """A plausible JSON answer to a write: the object sent back, with the status a real server would add."""
    obj: dict = {}
    if "protobuf" in req.content_type:
        try:
            obj = protobuf.decode(req.body)
        except Exception:
            obj = {}
    elif req.body:
        try:
            obj = json.loads(req.body)
        except ValueError:
            obj = {}
    kind = obj.get("kind", "")
    meta = obj.setdefault("metadata", {})
    meta.setdefault("name", "captured")
    meta.setdefault("uid", "00000000-0000-0000-0000-000000000000")
    meta.setdefault("resourceVersion", "1")
    meta["creationTimestamp"] = "2024-01-02T03:04:05Z"
    if kind == "TokenRequest":
        obj["status"] = {"token": "captured.token.value", "expirationTimestamp": "2024-01-03T03:04:05Z"}
    elif kind == "SelfSubjectAccessReview":
        obj["status"] = {"allowed": True}
    elif kind == "SelfSubjectRulesReview":
        rules = [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
        obj["status"] = {"resourceRules": rules, "nonResourceRules": [], "incomplete": False}
    elif kind == "SelfSubjectReview":
        obj["status"] = {"userInfo": {"username": "captured-user", "groups": ["system:authenticated"]}}
    return obj


def capture(
    args: list[str], *, files: dict[str, bytes] | None = None, missing: tuple[str, ...] = (), timeout: float = 60.0
) -> Capture:
    """Run `kubectl ARGS` (in a scratch directory holding FILES) against a fresh loopback server; record requests.

    Writes to the paths in MISSING are answered 404, as a server without that API version would.
    """
    result = Capture()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> Request:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            req = Request(self.command, url.path, url.query, headers, body)
            with lock:
                result.requests.append(req)
            return req

        def _not_found(self) -> None:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            self._send(404, status)

        def do_GET(self) -> None:
            req = self._record()
            obj = _discovery(req.path, self.server.server_address[1])
            if obj is None:
                self._not_found()
            else:
                self._send(200, obj)

        def do_POST(self) -> None:
            req = self._record()
            if req.path in missing:
                self._not_found()
            else:
                self._send(201, _answer(req))

        def do_PUT(self) -> None:
            self._send(200, _answer(self._record()))

        do_PATCH = do_PUT

        def do_DELETE(self) -> None:
            self._record()
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in (files or {}).items():
                (Path(tmp) / name).write_bytes(data)
            kubeconfig = Path(tmp) / "config"
            kubeconfig.write_text(
                json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                        "users": [{"name": "u", "user": {}}],
                        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                        "current-context": "x",
                    }
                )
            )
            env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": tmp, "KUBECACHEDIR": str(Path(tmp) / "cache")}
            env.pop("HTTPS_PROXY", None)
            env.pop("HTTP_PROXY", None)
            env.pop("https_proxy", None)
            env.pop("http_proxy", None)
            proc = subprocess.run(
                [KUBECTL, f"--cache-dir={Path(tmp) / 'cache'}", *args],
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            result.returncode, result.stdout, result.stderr = proc.returncode, proc.stdout, proc.stderr
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    return result


FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"
BLOB = bytes([0xFF, 0x00, 0xFE, 0x80])  # not UTF-8, so kubectl puts it in ConfigMap.binaryData

# name -> kubectl arguments; each command sends exactly one write request (the last one recorded).
COMMANDS: dict[str, list[str]] = {
    "serviceaccount": ["create", "serviceaccount", "app", "-n", "production"],
    "role": [
        "create", "role", "pod-reader", "-n", "production",
        "--verb=get,list,watch", "--resource=pods,pods/log", "--resource-name=web-0",
    ],
    "clusterrole": ["create", "clusterrole", "reader", "--verb=get", "--resource=secrets",
                    "--non-resource-url=/logs/*"],
    "clusterrole_aggregated": [
        "create", "clusterrole", "monitoring", "--aggregation-rule=rbac.example.com/aggregate-to-monitoring=true",
    ],
    "rolebinding": [
        "create", "rolebinding", "app-read", "-n", "production", "--role=pod-reader",
        "--serviceaccount=production:app", "--user=alice", "--group=devs",
    ],
    "clusterrolebinding": [
        "create", "clusterrolebinding", "app-admin", "--clusterrole=reader", "--serviceaccount=production:app",
    ],
    "namespace": ["create", "namespace", "staging"],
    "secret": [
        "create", "secret", "generic", "creds", "-n", "production",
        "--from-literal=username=admin", "--from-literal=password=s3cr=t",
    ],
    "configmap": [
        "create", "configmap", "settings", "-n", "production",
        "--from-literal=mode=fast", "--from-literal=level=3", "--from-file=blob=blob.bin",
    ],
    "token": [
        "create", "token", "app", "-n", "production", "--duration", "24h", "--audience", "a", "--audience", "b",
        "--bound-object-kind", "Pod", "--bound-object-name", "web-0",
        "--bound-object-uid", "0a1b2c3d-0000-4000-8000-00000000abcd",
    ],
    "can_i": ["auth", "can-i", "list", "pods", "-n", "production"],
    "can_i_subresource": ["auth", "can-i", "get", "pods", "--subresource=log", "-n", "production"],
    "can_i_nonresource": ["auth", "can-i", "get", "/logs"],
    "can_i_list": ["auth", "can-i", "--list", "-n", "production"],
    "whoami": ["auth", "whoami"],
    "whoami_v1beta1": ["auth", "whoami"],
    "whoami_v1alpha1": ["auth", "whoami"],
    "run": [
        "run", "web", "--image=nginx:1.27", "-n", "production", "--port=80", "--env=MODE=fast",
        "--labels=app=web", "--restart=Never",
    ],
}

_SSR = "/apis/authentication.k8s.io/{}/selfsubjectreviews"
# name -> write paths answered 404, to see kubectl fall back to older API versions.
MISSING: dict[str, tuple[str, ...]] = {
    "whoami_v1beta1": (_SSR.format("v1"),),
    "whoami_v1alpha1": (_SSR.format("v1"), _SSR.format("v1beta1")),
}


def write_request(name: str, args: list[str]) -> Request:
    """Run one of COMMANDS and return its (last) write request."""
    cap = capture(args, files={"blob.bin": BLOB}, missing=MISSING.get(name, ()))
    if cap.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {cap.stderr}")
    writes = cap.posts()
    if not writes:
        raise RuntimeError(f"kubectl {' '.join(args)} sent no write request")
    return writes[-1]


def save_fixtures() -> None:
    """Re-capture every command: <name>.bin (protobuf) or <name>.body.json (JSON) plus <name>.request.json."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, args in COMMANDS.items():
        req = write_request(name, args)
        suffix = ".bin" if "protobuf" in req.content_type else ".body.json"
        (FIXTURES / f"{name}{suffix}").write_bytes(req.body)
        meta = {
            "kubectl": args,
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "content-type": req.content_type,
            "accept": req.accept,
        }
        (FIXTURES / f"{name}.request.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(name, req.method, req.path, req.content_type, len(req.body))


if __name__ == "__main__":  # python tests/unit/kubectl_capture.py [--save | kubectl args...]
    import sys

    if sys.argv[1:] == ["--save"]:
        save_fixtures()
        sys.exit(0)
    cap = capture(sys.argv[1:])
    for r in cap.requests:
        print(r.method, r.path, r.query, r.content_type, "|", r.accept, len(r.body))
    print(cap.returncode, cap.stdout, cap.stderr)
