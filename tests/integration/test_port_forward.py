"""`kubectl port-forward` (kubectl 1.32: SPDY tunneled in a WebSocket) through a real server to a real agent's
kubelet API and an HTTP server in a pod: a GET through the local port, two connections at once, Ctrl-C,
the kubelet's error for a port with nothing listening, kubectl's own check of a pod that is not running,
RBAC on pods/portforward, and the official Python client's `portforward` (v4.channel.k8s.io)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import portforward

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, kubectl_binary, process_agent, wait_for

NODE = "pf-n1"

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason=f"no process runtime: {runtime_available()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def agent(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("portforward")
    with process_agent(server, tmp, NODE):
        yield tmp


BIG = bytes(range(256)) * 12288  # 3 MiB, written by the pod


@pytest.fixture(scope="module")
def web(server: Server, agent: Path) -> int:
    """A pod serving HTTP (a directory with a 3 MiB file) on a free port of the host (pods share its network);
    the port."""
    port = _free_port()
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: python
    command: ["sh", "-c", "mkdir -p /tmp/www && python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256))
              * 12288)' > /tmp/www/big.bin && exec python3 -m http.server {port} --bind 127.0.0.1 --directory /tmp/www"]
""")
    wait_for(lambda: json.loads(server.kubectl("get", "pod", "web", "-o", "json").stdout)
             .get("status", {}).get("phase") == "Running", 30, "pod web running")
    wait_for(lambda: _listening(port), 15, "the pod's HTTP server")
    return port


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class PortForward:
    """`kubectl port-forward` running in the background; `local` is the port it listens on."""

    def __init__(self, server: Server, *args: str) -> None:
        env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
        env.pop("HTTPS_PROXY", None)
        env.pop("https_proxy", None)
        self.proc = subprocess.Popen([kubectl_binary(), "port-forward", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._drain, args=(s, into), daemon=True)
                         for s, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()
        self.local = 0

    def _drain(self, stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    def wait_forwarding(self) -> int:
        def ready() -> bool:
            found = [m for line in self.out if (m := re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line))]
            if found:
                self.local = int(found[0].group(1))
            return bool(found) or self.proc.poll() is not None
        wait_for(ready, 20, "kubectl port-forward listening")
        assert self.local, f"kubectl port-forward ended: {''.join(self.err)}"
        return self.local

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=10)
        finally:
            for t in self._threads:
                t.join(timeout=5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _get(port: int, path: str = "/") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return _read_all(s)


def _read_all(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_kubectl_port_forward_get_two_connections_and_ctrl_c(server: Server, web: int) -> None:
    pf = PortForward(server, "pod/web", f":{web}")
    try:
        local = pf.wait_forwarding()
        body = _get(local)
        assert body.startswith(b"HTTP/1.0 200 OK"), body[:200]
        assert b"Directory listing for /" in body
        # two connections open at once, answered in the opposite order of their requests
        a = socket.create_connection(("127.0.0.1", local), timeout=10)
        b = socket.create_connection(("127.0.0.1", local), timeout=10)
        with a, b:
            a.sendall(b"GET / HTTP/1.0\r\n")
            b.sendall(b"GET /nope HTTP/1.0\r\n\r\n")
            second = _read_all(b)
            a.sendall(b"\r\n")
            first = _read_all(a)
        assert second.startswith(b"HTTP/1.0 404"), second[:200]
        assert first.startswith(b"HTTP/1.0 200 OK") and b"Directory listing" in first
        assert b'href="big.bin"' in first
        big = _get(local, "/big.bin")  # many frames, byte for byte
        assert big.startswith(b"HTTP/1.0 200 OK") and big.split(b"\r\n\r\n", 1)[1] == BIG
        assert pf.stop() == 0
        assert sum("Handling connection for" in line for line in pf.out) == 4
        assert not [line for line in pf.err if "error" in line.lower()], pf.err
    finally:
        pf.kill()


def test_kubectl_port_forward_over_spdy(server: Server, web: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl with the WebSocket tunnel off speaks SPDY/3.1 proper (`Upgrade: SPDY/3.1`), as clients before
    1.31 do: the same GETs, byte for byte, and the kubelet's error for a port with nothing listening."""
    monkeypatch.setenv("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
    pf = PortForward(server, "-v=6", "pod/web", f":{web}")
    try:
        local = pf.wait_forwarding()
        body = _get(local)
        assert body.startswith(b"HTTP/1.0 200 OK") and b"Directory listing for /" in body, body[:200]
        big = _get(local, "/big.bin")
        assert big.startswith(b"HTTP/1.0 200 OK") and big.split(b"\r\n\r\n", 1)[1] == BIG
        assert pf.stop() == 0
        assert any(re.search(r"POST https://\S+/portforward 101 Switching Protocols", line) for line in pf.err), pf.err
    finally:
        pf.kill()
    closed = _free_port()
    pf = PortForward(server, "web", f":{closed}")
    try:
        local = pf.wait_forwarding()
        with socket.create_connection(("127.0.0.1", local), timeout=10) as s:
            assert _read_all(s) == b""
        wait_for(lambda: pf.proc.poll() is not None, 15, "kubectl port-forward ends after the error")
        err = "".join(pf.err)
        assert f"an error occurred forwarding {local} -> {closed}: error forwarding port {closed} to pod " in err, err
    finally:
        pf.kill()


def test_port_with_nothing_listening_is_the_kubelets_error(server: Server, web: int) -> None:
    closed = _free_port()
    pf = PortForward(server, "web", f":{closed}")
    try:
        local = pf.wait_forwarding()
        with socket.create_connection(("127.0.0.1", local), timeout=10) as s:
            assert _read_all(s) == b""
        uid = json.loads(server.kubectl("get", "pod", "web", "-o", "json").stdout)["metadata"]["uid"]
        wait_for(lambda: pf.proc.poll() is not None, 15, "kubectl port-forward ends after the error")
        err = "".join(pf.err)
        assert f"an error occurred forwarding {local} -> {closed}: error forwarding port {closed} to pod {uid}, " \
               "uid : " in err, err
        assert "error: lost connection to pod" in err, err
    finally:
        pf.kill()


def test_pod_not_running(server: Server, agent: Path) -> None:
    server.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: default}
spec:
  nodeSelector: {no-such: label}
  containers: [{name: c, image: busybox}]
""")
    out = server.kubectl("port-forward", "pending", "8080", check=False, timeout=20)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: unable to forward port because pod is not running. Current status=Pending"
    missing = server.kubectl("port-forward", "pod/nope", "8080", check=False, timeout=20)
    assert missing.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'


def test_port_forward_needs_pods_portforward(server: Server, web: int) -> None:
    server.kubectl("apply", "-f", "-", input="""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pf-reader, namespace: default}
rules: [{apiGroups: [""], resources: ["pods"], verbs: ["get", "list"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-reads, namespace: default}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: Role, name: pf-reader, apiGroup: rbac.authorization.k8s.io}
""")
    denied = server.kubectl("port-forward", "--as=bob", "web", f":{web}", check=False, timeout=20)
    assert denied.returncode == 1
    assert 'User "bob" cannot create resource "pods/portforward"' in denied.stderr or \
        'User "bob" cannot get resource "pods/portforward"' in denied.stderr, denied.stderr
    server.kubectl("apply", "-f", "-", input="""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pf-reader, namespace: default}
rules:
- {apiGroups: [""], resources: ["pods"], verbs: ["get", "list"]}
- {apiGroups: [""], resources: ["pods/portforward"], verbs: ["get"]}
""")
    time.sleep(0.5)
    pf = PortForward(server, "--as=bob", "web", f":{web}")
    try:
        assert b"Directory listing" in _get(pf.wait_forwarding())
        assert pf.stop() == 0
    finally:
        pf.kill()


def test_official_client_portforward(server: Server, web: int) -> None:
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(str(server.kubeconfig)))
    pf = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports=str(web))
    try:
        s = pf.socket(web)
        s.settimeout(10)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        body = _read_all(s)
        assert body.startswith(b"HTTP/1.0 200 OK") and b"Directory listing" in body
        s.close()
    finally:
        pf.close()


def test_unreachable_kubelet_is_the_answer_not_spdy(server: Server, agent: Path) -> None:
    """The tunnel's upgrade refused, kubectl falls back to SPDY: it still gets the reason (the kubelet cannot
    be dialed), in kube-apiserver's words."""
    closed = _free_port()
    server.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Node
metadata: {name: pf-ghost}
---
apiVersion: v1
kind: Pod
metadata: {name: ghostly, namespace: default}
spec:
  nodeName: pf-ghost
  containers: [{name: c, image: busybox}]
""")
    server.kubectl("patch", "node", "pf-ghost", "--subresource=status", "--type=merge", "-p", json.dumps(
        {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": closed}}}}))
    server.kubectl("patch", "pod", "ghostly", "--subresource=status", "--type=merge", "-p",
                   '{"status": {"phase": "Running"}}')
    out = server.kubectl("port-forward", "ghostly", "8080", check=False, timeout=30)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: error upgrading connection: error dialing backend: dial tcp " \
        f"127.0.0.1:{closed}: connect: connection refused", out.stderr
