"""Services reach pods: on a real server and a process-runtime agent, a caller pod sends its projected token (audience
`callee`) to `http://callee.NS.svc:PORT/`; the agent's service proxy relays it to the callee pod, which reviews the
token with a TokenReview through the `kubernetes` Service and answers with the reviewed username. Also: the Service
variables and /etc/hosts name the Service's loopback address, a port equal to its targetPort reaches the pod
directly, and a Service created after a pod started is added to that pod's /etc/hosts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubesat.agent.runtime.process import runtime_available
from kubesat.agent.servicenet import loopback_address

from .conftest import Server, free_port, process_agent, wait_for

NODE = "svc-n1"
NS = "svc-calls"

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason=f"no process runtime: {runtime_available()}")

# The callee: an HTTP server that reviews the caller's bearer token (audience "callee") with its own token.
CALLEE = r'''
import http.server, json, os, ssl, sys, urllib.request
SA = "/var/run/secrets/kubernetes.io/serviceaccount"
API = "https://kubernetes.default.svc:" + os.environ["KUBERNETES_SERVICE_PORT"]
CTX = ssl.create_default_context(cafile=SA + "/ca.crt")

class Reviewer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token, "audiences": ["callee"]}}
        req = urllib.request.Request(API + "/apis/authentication.k8s.io/v1/tokenreviews",
                                     data=json.dumps(review).encode(), method="POST",
                                     headers={"Authorization": "Bearer " + open(SA + "/token").read(),
                                              "Content-Type": "application/json"})
        status = json.load(urllib.request.urlopen(req, context=CTX, timeout=10))["status"]
        ok = bool(status.get("authenticated"))
        body = (status["user"]["username"] if ok else "denied").encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("", int(sys.argv[1])), Reviewer).serve_forever()
'''

# The caller: its callee-audience token, then its API token (the wrong audience), to the Service; each answer logged.
CALLER = r'''
import os, sys, time, urllib.error, urllib.request
def call(url, token_file):
    token = open(token_file).read()
    for _ in range(150):
        try:
            req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
            return urllib.request.urlopen(req, timeout=10).read().decode()
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code}"
        except OSError as e:
            print("retrying:", e, flush=True)
            time.sleep(0.2)
    sys.exit("the Service never answered")
print("ANSWER", call(sys.argv[1], "/var/run/secrets/tokens/callee"), flush=True)
print("WRONG-AUDIENCE", call(sys.argv[1], "/var/run/secrets/kubernetes.io/serviceaccount/token"), flush=True)
print("DIRECT", call(sys.argv[2], "/var/run/secrets/tokens/callee"), flush=True)
print("ENV", os.environ.get("CALLEE_SERVICE_HOST"), os.environ.get("CALLEE_SERVICE_PORT"), flush=True)
'''


@pytest.fixture(scope="module")
def agent(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("svcagent")
    with process_agent(server, tmp, NODE, "--log-level", "info"):
        server.kubectl("create", "namespace", NS)
        yield tmp / "agent.log"


def _pod(server: Server, name: str) -> dict:
    out = server.kubectl("get", "pod", "-n", NS, name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _cluster_ip(server: Server, name: str) -> str:
    return str(json.loads(server.kubectl("get", "service", "-n", NS, name, "-o", "json").stdout)["spec"]["clusterIP"])


def _ready(server: Server, name: str) -> bool:
    conditions = _pod(server, name).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_a_pod_calls_another_through_its_service_with_its_token(server: Server, agent: Path) -> None:
    service_port, target_port = free_port(), free_port()
    server.kubectl("create", "serviceaccount", "-n", NS, "callee-sa")
    server.kubectl("create", "serviceaccount", "-n", NS, "caller-sa")
    server.kubectl("create", "clusterrolebinding", "callee-sa-reviews", "--clusterrole=system:auth-delegator",
                   f"--serviceaccount={NS}:callee-sa")
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "callee", "namespace": NS},
         "spec": {"selector": {"app": "callee"}, "ports": [
             {"name": "http", "port": service_port, "targetPort": "http"},
             {"name": "direct", "port": target_port, "targetPort": target_port}]}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "callee", "namespace": NS, "labels": {"app": "callee"}},
         "spec": {"nodeName": NODE, "serviceAccountName": "callee-sa", "terminationGracePeriodSeconds": 1,
                  "containers": [{"name": "app", "image": "python",
                                  "command": ["python3", "-c", CALLEE, str(target_port)],
                                  "ports": [{"name": "http", "containerPort": target_port}],
                                  "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}}]}}]}))
    wait_for(lambda: _ready(server, "callee"), 30, "the callee Ready")
    address = loopback_address(_cluster_ip(server, "callee"))
    assert address and address.startswith("127.")
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "caller", "namespace": NS},
        "spec": {"nodeName": NODE, "serviceAccountName": "caller-sa", "restartPolicy": "Never",
                 "containers": [{"name": "app", "image": "python",
                                 "command": ["python3", "-c", CALLER, f"http://callee.{NS}.svc:{service_port}/",
                                             f"http://callee:{target_port}/"],
                                 "volumeMounts": [{"name": "callee-token", "mountPath": "/var/run/secrets/tokens"}]}],
                 "volumes": [{"name": "callee-token", "projected": {"sources": [{"serviceAccountToken": {
                     "path": "callee", "audience": "callee", "expirationSeconds": 3600}}]}}]}}))
    wait_for(lambda: _pod(server, "caller").get("status", {}).get("phase") in ("Succeeded", "Failed"), 60,
             "the caller done")
    logs = server.kubectl("logs", "-n", NS, "caller").stdout
    assert _pod(server, "caller")["status"]["phase"] == "Succeeded", logs
    lines = dict(line.split(" ", 1) for line in logs.splitlines() if not line.startswith("retrying"))
    assert lines["ANSWER"] == f"system:serviceaccount:{NS}:caller-sa", logs
    assert lines["WRONG-AUDIENCE"] == "HTTP 401", logs  # the API audience is not the callee's
    assert lines["DIRECT"] == f"system:serviceaccount:{NS}:caller-sa", logs  # port == targetPort: the pod itself
    assert lines["ENV"] == f"{address} {service_port}", logs
    assert f"Service {NS}/callee port {service_port} relayed on {address}:{service_port}" in agent.read_text()


def test_a_service_created_later_reaches_a_running_pods_etc_hosts(server: Server, agent: Path) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "idle", "namespace": NS},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}]}}))
    wait_for(lambda: _pod(server, "idle").get("status", {}).get("phase") == "Running", 30, "idle Running")
    server.kubectl("create", "service", "clusterip", "-n", NS, "later", "--tcp=8080:8080")
    cluster_ip = _cluster_ip(server, "later")

    def hosts() -> str:
        return server.kubectl("exec", "-n", NS, "idle", "--", "cat", "/etc/hosts", check=False).stdout
    seen = wait_for(lambda: (h := hosts()) and f"later.{NS}.svc" in h and h, 15, "the new Service in /etc/hosts")
    line = next(x for x in seen.splitlines() if f"later.{NS}.svc" in x).split()
    assert line[0] == loopback_address(cluster_ip)
    assert line[1:] == ["later", f"later.{NS}", f"later.{NS}.svc", f"later.{NS}.svc.cluster.local"]
    assert any(x.split()[1:2] == ["kubernetes"] for x in seen.splitlines()), seen  # the API relay's names stay
    server.kubectl("delete", "service", "-n", NS, "later")
    wait_for(lambda: (h := hosts()) and f"later.{NS}.svc" not in h, 15, "the deleted Service gone from /etc/hosts")
