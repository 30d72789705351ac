"""The connect subresources' discovery and the HTTP proxies, against a real server and a real agent running an
HTTP server pod (process runtime): discovery lists pods/exec, pods/proxy, services/proxy... with kube-apiserver's
kinds and verbs; `kubectl auth can-i`; pods/proxy and services/proxy GET, POST, PUT, DELETE through
`kubectl get/create/replace/delete --raw`, `kubectl proxy` and the official Python client, bodies larger than the
API's 3 MiB limit streamed both ways; Kubernetes' errors (no endpoints, no pod IP, a finished pod, a
forbidden user) and hostile ids and paths answered 4xx with a Status, never 500."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, free_port, kubectl_binary, process_agent, wait_for
from .rawclient import Answer, RawClient, status_problem

NODE = "proxy-n1"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
# What kube-apiserver 1.32 lists for the connect subresources (and pods/log) in /api/v1.
KUBERNETES_CONNECT = {
    "pods/attach": ("PodAttachOptions", ["create", "get"]),
    "pods/exec": ("PodExecOptions", ["create", "get"]),
    "pods/log": ("Pod", ["get"]),
    "pods/portforward": ("PodPortForwardOptions", ["create", "get"]),
    "pods/proxy": ("PodProxyOptions", ["create", "delete", "get", "patch", "update"]),
    "nodes/proxy": ("NodeProxyOptions", ["create", "delete", "get", "patch", "update"]),
    "services/proxy": ("ServiceProxyOptions", ["create", "delete", "get", "patch", "update"]),
}

# The pod's HTTP server: /healthz, a redirect, an 8 MiB answer, and for anything else an echo of the request.
ECHO = r"""
import hashlib, http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def answer(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    def any(self):
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
        if self.path == "/healthz":
            return self.answer(200, b"ok", "text/plain")
        if self.path == "/moved":
            return self.answer(302, b"", "text/plain", [("Location", "/healthz")])
        if self.path == "/big":
            return self.answer(200, bytes(range(256)) * 32768, "application/octet-stream")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.answer(200, json.dumps({"method": self.command, "path": self.path, "headers": headers,
                                    "length": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode())
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = any
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason=f"no process runtime: {runtime_available()}")


@pytest.fixture(scope="module")
def agent(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("proxy")
    with process_agent(server, tmp, NODE):
        yield tmp


def _apply(server: Server, *objects: dict) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def _phase(server: Server, name: str) -> str:
    return json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout).get("status", {}).get("phase", "")


def _pod(name: str, command: list[str], port: int | None = None, labels: dict | None = None,
         policy: str = "Always") -> dict:
    container: dict = {"name": "c", "image": "python", "command": command}
    if port:
        container["ports"] = [{"name": "http", "containerPort": port}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"nodeName": NODE, "restartPolicy": policy, "terminationGracePeriodSeconds": 1,
                     "containers": [container]}}


def _service(name: str, selector: dict, ports: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": selector, "ports": ports}}


@pytest.fixture(scope="module")
def web(server: Server, agent: Path) -> int:
    """Pod `web` (the echo server on a free port: pods share the host's network) behind Service `web` (port 80,
    unnamed) and `web2` (ports `http` 80 and `other` 81); the pod's port."""
    port = free_port()
    _apply(server,
           _pod("web", ["python3", "-c", ECHO, str(port)], port, {"app": "web"}),
           _service("web", {"app": "web"}, [{"port": 80, "targetPort": port}]),
           _service("web2", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": port},
                                             {"name": "other", "port": 81, "targetPort": 1}]),
           _service("lonely", {"app": "nobody"}, [{"port": 80}]))
    wait_for(lambda: _phase(server, "web") == "Running", 30, "pod web running")
    wait_for(lambda: server.kubectl("get", "--raw", f"/api/v1/namespaces/default/pods/web:{port}/proxy/healthz",
                                    check=False).stdout == "ok", 20, "the pod's HTTP server through the proxy")
    wait_for(lambda: "subsets" in server.kubectl("get", "endpoints", "web", "-o", "json").stdout, 20,
             "the Service's endpoints")
    return port


def _raw(server: Server) -> RawClient:
    return RawClient.admin(server.data_dir, server.port)


def _status(answer: Answer) -> dict:
    problem = status_problem(answer) if answer.status < 500 else None
    assert problem is None, problem
    return answer.json()


# ------------------------------------------------------------------------------------------ discovery

def test_discovery_lists_the_connect_subresources_as_kubernetes(server: Server) -> None:
    listed = json.loads(server.kubectl("get", "--raw", "/api/v1").stdout)["resources"]
    by_name = {r["name"]: r for r in listed}
    for name, (kind, verbs) in KUBERNETES_CONNECT.items():
        assert by_name[name] == {"name": name, "singularName": "", "namespaced": not name.startswith("nodes/"),
                                 "kind": kind, "verbs": verbs}, name
    answer = _raw(server).request("GET", "/api", headers={"Accept": AGGREGATED})
    core = answer.json()["items"][0]["versions"][0]["resources"]
    subs = {f"{r['resource']}/{s['subresource']}": s for r in core for s in r.get("subresources", [])}
    for name, (kind, verbs) in KUBERNETES_CONNECT.items():
        assert subs[name] == {"subresource": name.split("/")[1],
                              "responseKind": {"group": "", "version": "", "kind": kind}, "verbs": verbs}, name


def test_openapi_documents_connect_operations(server: Server) -> None:
    doc = json.loads(server.kubectl("get", "--raw", "/openapi/v3/api/v1").stdout)
    item = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}"]
    assert item["get"]["operationId"] == "connectCoreV1GetNamespacedPodProxyWithPath"
    assert item["get"]["x-kubernetes-action"] == "connect"
    assert doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"]["operationId"] == \
        "connectCoreV1PostNamespacedPodExec"


def test_kubectl_api_resources_and_auth_can_i(server: Server) -> None:
    names = [line.split()[0] for line in server.kubectl("api-resources", "--api-group=", "--no-headers").stdout
             .splitlines()]
    assert "pods" in names and not any("/" in n for n in names)
    assert server.kubectl("auth", "can-i", "create", "pods/exec").stdout.strip() == "yes"
    assert server.kubectl("auth", "can-i", "get", "pods", "--subresource=proxy").stdout.strip() == "yes"
    _apply(server, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "execer", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bob-execs", "namespace": "default"},
        "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "Role", "name": "execer", "apiGroup": "rbac.authorization.k8s.io"}})

    def can(*args: str) -> str:
        return server.kubectl("auth", "can-i", "--as=bob", *args, check=False).stdout.strip()

    wait_for(lambda: can("create", "pods", "--subresource=exec") == "yes", 10, "bob may create pods/exec")
    assert can("get", "pods", "--subresource=proxy") == "no"
    # kubectl reads `pods/exec` as TYPE/NAME (the pod named "exec"), on Kubernetes as here.
    assert can("create", "pods/exec") == "no"
    assert can("create", "pods") == "no"


# ---------------------------------------------------------------------------------------------- proxies

def test_pod_proxy_get_through_kubectl_and_the_python_client(server: Server, api: k8s.ApiClient, web: int) -> None:
    assert server.kubectl("get", "--raw", f"/api/v1/namespaces/default/pods/web:{web}/proxy/healthz").stdout == "ok"
    # No port: the pod's first container port; a scheme: http.
    assert server.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/web/proxy/healthz").stdout == "ok"
    assert server.kubectl("get", "--raw", f"/api/v1/namespaces/default/pods/http:web:{web}/proxy/healthz"
                          ).stdout == "ok"
    core = k8s.CoreV1Api(api)
    assert core.connect_get_namespaced_pod_proxy_with_path(f"web:{web}", "default", "healthz") == "ok"
    echoed = json.loads(core.connect_get_namespaced_pod_proxy_with_path(f"web:{web}", "default", "a/b",
                                                                       path2="ignored", _preload_content=False)
                        .data)
    assert echoed["method"] == "GET" and echoed["path"] == "/a/b?path=ignored"


def test_pod_proxy_relays_methods_headers_and_redirects(server: Server, web: int, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"hello": "world"}))
    base = f"/api/v1/namespaces/default/pods/web:{web}/proxy"
    for verb, method in (("create", "POST"), ("replace", "PUT")):
        echoed = json.loads(server.kubectl(verb, "--raw", f"{base}/echo?x=1", "-f", str(body)).stdout)
        assert (echoed["method"], echoed["path"], echoed["length"]) == (method, "/echo?x=1", len(body.read_bytes()))
    assert json.loads(server.kubectl("delete", "--raw", f"{base}/gone").stdout)["method"] == "DELETE"
    raw = _raw(server)
    echoed = raw.request("PATCH", f"{base}/p%20q", b"{}", "application/merge-patch+json",
                         {"X-Custom": "yes"}).json()
    assert echoed["path"] == "/p%20q"
    assert echoed["headers"]["x-custom"] == "yes"
    assert echoed["headers"]["x-forwarded-uri"] == f"{base}/p%20q"
    assert raw.request("OPTIONS", f"{base}/o").json()["method"] == "OPTIONS"
    head = raw.request("HEAD", f"{base}/healthz")
    assert (head.status, head.body) == (200, b"")
    # The proxy root redirects to its trailing-slash form; the backend's redirects stay behind the proxy.
    conn = raw._connection()
    conn.request("GET", base)
    resp = conn.getresponse()
    resp.read()
    assert (resp.status, resp.getheader("location")) == (301, base + "/")
    conn.request("GET", f"{base}/moved")
    resp = conn.getresponse()
    resp.read()
    assert (resp.status, resp.getheader("location")) == (302, f"{base}/healthz")
    raw.close()


def test_the_callers_credentials_never_reach_the_pod(server: Server, web: int) -> None:
    server.kubectl("create", "serviceaccount", "prox")
    server.kubectl("create", "clusterrolebinding", "prox-admin", "--clusterrole=cluster-admin",
                   "--serviceaccount=default:prox")
    token = server.kubectl("create", "token", "prox").stdout.strip()
    raw = RawClient(server.port, server.ca_file, token=token)
    echoed = wait_for(lambda: _ok_json(raw.request("GET", f"/api/v1/namespaces/default/pods/web:{web}/proxy/e")),
                      10, "the token's binding")
    assert "authorization" not in echoed["headers"]
    assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"
    raw.close()


def _ok_json(answer: Answer) -> dict | None:
    return answer.json() if answer.status == 200 else None


def test_bodies_larger_than_the_api_limit_stream_both_ways(server: Server, web: int) -> None:
    raw = _raw(server)
    payload = os.urandom(8 << 20)  # the API's own bodies stop at 3 MiB
    echoed = raw.request("POST", "/api/v1/namespaces/default/services/web:80/proxy/upload", payload,
                         "application/octet-stream").json()
    assert (echoed["length"], echoed["sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())
    big = raw.request("GET", f"/api/v1/namespaces/default/pods/web:{web}/proxy/big")
    assert big.status == 200 and big.body == bytes(range(256)) * 32768
    raw.close()


def test_service_proxy_chooses_a_ready_endpoint(server: Server, api: k8s.ApiClient, web: int,
                                                tmp_path: Path) -> None:
    for svc in ("web", "web:80", "http:web:80", "web2:http", "web2:80"):
        assert server.kubectl("get", "--raw", f"/api/v1/namespaces/default/services/{svc}/proxy/healthz"
                              ).stdout == "ok", svc
    body = tmp_path / "b.json"
    body.write_text("{}")
    echoed = json.loads(server.kubectl("create", "--raw", "/api/v1/namespaces/default/services/web/proxy/x",
                                       "-f", str(body)).stdout)
    assert (echoed["method"], echoed["path"]) == ("POST", "/x")
    core = k8s.CoreV1Api(api)
    assert core.connect_get_namespaced_service_proxy_with_path("web2:http", "default", "healthz") == "ok"
    answer = json.loads(core.connect_delete_namespaced_service_proxy_with_path("web", "default", "d",
                                                                               _preload_content=False).data)
    assert answer["method"] == "DELETE"


def test_kubectl_proxy_reaches_services_and_pods(server: Server, web: int) -> None:
    port = free_port()
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    proc = subprocess.Popen([kubectl_binary(), "proxy", f"--port={port}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port), 15, "kubectl proxy listening")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"http://localhost:{port}/api/v1/namespaces/default/services/web:80/proxy/"
        if shutil.which("curl"):
            echoed = json.loads(subprocess.run(["curl", "-sS", "--noproxy", "*", url], capture_output=True,
                                               check=True, timeout=30).stdout)
        else:
            with opener.open(url) as resp:
                echoed = json.loads(resp.read())
        assert (echoed["method"], echoed["path"]) == ("GET", "/")
        with opener.open(f"http://127.0.0.1:{port}/api/v1/namespaces/default/pods/web:{web}/proxy/healthz") as resp:
            assert resp.read() == b"ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_nodes_proxy_relays_to_the_kubelet_api(server: Server, agent: Path) -> None:
    assert server.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/healthz").stdout == "ok"
    node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    assert server.kubectl("get", "--raw", f"/api/v1/nodes/https:{NODE}:{port}/proxy/healthz").stdout == "ok"
    raw = _raw(server)
    other = raw.request("GET", f"/api/v1/nodes/{NODE}:22/proxy/")
    assert other.status == 400
    assert _status(other)["message"] == (f'invalid node request "{NODE}:22": kubesat proxies to the kubelet API '
                                         f"only (https, port {port})")
    posted = raw.request("POST", f"/api/v1/nodes/{NODE}/proxy/healthz", b"{}", "application/json")
    assert 400 <= posted.status < 500  # the kubelet's own answer to a POST, relayed
    assert raw.request("GET", "/api/v1/nodes/nope/proxy/healthz").json()["message"] == 'nodes "nope" not found'
    raw.close()


# ----------------------------------------------------------------------------------------------- errors

def test_errors_as_kubernetes_gives_them(server: Server, web: int) -> None:
    raw = _raw(server)
    ns = "/api/v1/namespaces/default"
    lonely = raw.request("GET", f"{ns}/services/lonely/proxy/")
    assert (lonely.status, lonely.json()["reason"], lonely.json()["message"]) == \
        (503, "ServiceUnavailable", 'no endpoints available for service "lonely"')
    no_port = raw.request("GET", f"{ns}/services/web:81/proxy/")
    assert (no_port.status, no_port.json()["message"]) == (503, 'no service port 81 found for service "web"')
    unnamed = raw.request("GET", f"{ns}/services/web2/proxy/")
    assert (unnamed.status, unnamed.json()["message"]) == (503, 'no endpoints available for service "web2"')
    assert raw.request("GET", f"{ns}/services/nope/proxy/").json()["message"] == 'endpoints "nope" not found'
    assert raw.request("GET", f"{ns}/pods/nope/proxy/").json()["message"] == 'pods "nope" not found'
    refused = raw.request("GET", f"{ns}/pods/web:{free_port()}/proxy/")
    assert refused.status == 503
    assert refused.json()["message"].startswith("error trying to reach service: dial tcp 127.0.0.1:")
    assert refused.json()["message"].endswith("connect: connection refused")
    _apply(server, _pod("done", ["true"], policy="Never"),
           {**_pod("nowhere", ["true"]), "spec": {"nodeSelector": {"no-such": "label"},
                                                  "containers": [{"name": "c", "image": "python"}]}})
    wait_for(lambda: _phase(server, "done") == "Succeeded", 30, "pod done finished")
    pending = raw.request("GET", f"{ns}/pods/nowhere:80/proxy/")
    assert (pending.status, pending.json()["message"]) == (400, "address not allowed")
    done = raw.request("GET", f"{ns}/pods/done:80/proxy/")
    assert (done.status, done.json()["message"]) == (400, "pod done is not running (phase Succeeded)")
    raw.close()


def test_a_user_without_the_proxy_subresource_is_forbidden(server: Server, web: int) -> None:
    _apply(server, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-getter", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get"]},
                  {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get"]}]}, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "carol-gets", "namespace": "default"},
        "subjects": [{"kind": "User", "name": "carol", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "Role", "name": "pod-getter", "apiGroup": "rbac.authorization.k8s.io"}})
    path = f"/api/v1/namespaces/default/pods/web:{web}/proxy/healthz"
    wait_for(lambda: server.kubectl("get", "--raw", "/api/v1/namespaces/default/services/web/proxy/healthz",
                                    "--as=carol", check=False).stdout == "ok", 10, "carol may get services/proxy")
    denied = server.kubectl("get", "--raw", path, "--as=carol", check=False)
    assert denied.stderr.strip() == (f'Error from server (Forbidden): pods "web:{web}" is forbidden: User "carol" '
                                     'cannot get resource "pods/proxy" in API group "" in the namespace "default"')
    body = RawClient.admin(server.data_dir, server.port)
    posted = body.request("POST", "/api/v1/namespaces/default/services/web/proxy/x", b"{}", "application/json",
                          {"Impersonate-User": "carol"})
    assert posted.status == 403
    assert posted.json()["message"] == ('services "web" is forbidden: User "carol" cannot create resource '
                                        '"services/proxy" in API group "" in the namespace "default"')
    body.close()


@pytest.mark.parametrize("name", ["web:abc", "web:0", "web:99999", "web:-1", "web:1e3", "ftp:web:80",
                                  "a:b:c:d", ":80", "https::80", "x" * 600])
def test_hostile_pod_ids_are_400(server: Server, web: int, name: str) -> None:
    answer = _raw(server).request("GET", f"/api/v1/namespaces/default/pods/{name}/proxy/")
    assert answer.status == 400, (answer.status, answer.body[:200])
    assert _status(answer)["reason"] == "BadRequest"


@pytest.mark.parametrize("name", ["web:Bad!", "web:99999", "web:0", "gopher:web:80", "web:a--b",
                                  "web:toolongportname16"])
def test_hostile_service_ids_are_400(server: Server, web: int, name: str) -> None:
    answer = _raw(server).request("GET", f"/api/v1/namespaces/default/services/{name}/proxy/")
    assert answer.status == 400, (answer.status, answer.body[:200])
    _status(answer)


def test_hostile_paths_and_methods_are_4xx(server: Server, web: int) -> None:
    raw = _raw(server)
    base = f"/api/v1/namespaces/default/pods/web:{web}/proxy"
    long_path = raw.request("GET", f"{base}/{'a' * 10000}")
    assert long_path.status == 414
    _status(long_path)
    long_query = raw.request("GET", f"{base}/q?{'b=1&' * 3000}")
    assert long_query.status == 414
    trace = raw.request("TRACE", f"{base}/t")
    assert trace.status == 405
    _status(trace)
    # Way past any sane request line: the HTTP server refuses it, never a 5xx.
    try:
        huge = raw.request("GET", f"{base}/{'c' * 200_000}")
        assert huge.status < 500
    except (ConnectionError, OSError):
        pass
    raw.close()
    assert server.kubectl("get", "--raw", f"{base}/healthz").stdout == "ok"


def test_the_python_client_sees_errors_as_api_exceptions(api: k8s.ApiClient, web: int) -> None:
    core = k8s.CoreV1Api(api)
    with pytest.raises(ApiException) as e:
        core.connect_get_namespaced_service_proxy_with_path("lonely", "default", "x")
    assert e.value.status == 503
    assert json.loads(e.value.body)["message"] == 'no endpoints available for service "lonely"'
