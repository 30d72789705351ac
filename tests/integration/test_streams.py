"""Streams through the API server to a real agent's kubelet API: `kubectl exec` (output, exit code, stdin),
`kubectl logs` (--tail, --timestamps, -f, -c, --previous errors), the official Python client's
`stream(connect_get_namespaced_pod_exec)` over v4.channel.k8s.io, nodes/proxy, RBAC on pods/exec, and
Kubernetes' errors when a pod cannot be reached (no pod, no host, no such container)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import socket
import ssl
import struct
import subprocess
import termios
from collections.abc import Iterator
from pathlib import Path

import kr8s
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import stream

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, kubectl_binary, process_agent, wait_for

NODE = "streams-n1"
TOKEN_NS = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason=f"no process runtime: {runtime_available()}")


@pytest.fixture(scope="module")
def agent(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("streams")
    with process_agent(server, tmp, NODE):
        _pod(server, "app", '["sh", "-c", "echo one; echo two >&2; sleep 3600"]')
        yield tmp


def _pod(server: Server, name: str, command: str, policy: str = "Always", node: str = NODE) -> None:
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {node}
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: {command}
""")
    wait_for(lambda: json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)
             .get("status", {}).get("phase") in ("Running", "Succeeded", "Failed"), 30, f"pod {name} started")


def test_exec_reads_the_mounted_namespace(server: Server, agent: Path) -> None:
    out = server.kubectl("exec", "app", "--", "cat", TOKEN_NS)
    assert out.stdout == "default"


def test_exec_exit_code_and_stderr_reach_kubectl(server: Server, agent: Path) -> None:
    out = server.kubectl("exec", "app", "--", "sh", "-c", "echo out; echo err >&2; exit 2", check=False)
    assert out.returncode == 2
    assert out.stdout == "out\n"
    assert out.stderr == "err\ncommand terminated with exit code 2\n"


def test_kubectl_cp_both_ways(server: Server, agent: Path, tmp_path: Path) -> None:
    """kubectl cp runs tar through exec (stdin into the pod, stdout out of it)."""
    src = tmp_path / "in.txt"
    src.write_text("to the pod\n" * 1000)
    server.kubectl("cp", str(src), "app:/tmp/in.txt")
    assert server.kubectl("exec", "app", "--", "cat", "/tmp/in.txt").stdout == src.read_text()
    server.kubectl("exec", "app", "--", "sh", "-c", "seq 1 5000 > /tmp/out.txt")
    dst = tmp_path / "out.txt"
    server.kubectl("cp", "app:/tmp/out.txt", str(dst))
    assert dst.read_text() == "".join(f"{i}\n" for i in range(1, 5001))


def test_exec_with_stdin(server: Server, agent: Path) -> None:
    out = server.kubectl("exec", "-i", "app", "--", "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert out.stdout == "HELLO\n"


def test_logs_tail_and_timestamps(server: Server, agent: Path) -> None:
    wait_for(lambda: server.kubectl("logs", "app").stdout == "one\ntwo\n", 10, "both lines in the log")
    assert server.kubectl("logs", "app", "--tail=1").stdout == "two\n"
    stamped = server.kubectl("logs", "app", "--timestamps", "-c", "c").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two"]
    assert stamped[0][:30].endswith("Z") and len(stamped[0].split(" ", 1)[0]) == 30  # nine fraction digits
    assert server.kubectl("logs", "app", "--since=1h").stdout == "one\ntwo\n"
    prev = server.kubectl("logs", "app", "--previous", check=False)
    assert prev.returncode == 1
    assert prev.stderr.strip() == \
        'Error from server (BadRequest): previous terminated container "c" in pod "app" not found'


def test_logs_follow_ends_with_the_container(server: Server, agent: Path) -> None:
    _pod(server, "follow", '["sh", "-c", "echo a; sleep 1; echo b"]', policy="Never")
    out = server.kubectl("logs", "-f", "follow", timeout=30)
    assert out.stdout == "a\nb\n"


def test_official_client_stream_over_v4(server: Server, agent: Path) -> None:
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(str(server.kubeconfig)))
    out = stream(api.connect_get_namespaced_pod_exec, "app", "default", command=["cat", TOKEN_NS],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "default"
    resp = stream(api.connect_get_namespaced_pod_exec, "app", "default", command=["sh", "-c", "exit 7"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=10)
    assert resp.returncode == 7


def test_nodes_proxy_reaches_the_kubelet(server: Server, agent: Path) -> None:
    assert server.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/healthz").stdout == "ok"
    pods = json.loads(server.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/pods").stdout)
    assert "app" in [p["metadata"]["name"] for p in pods["items"]]


def test_errors_as_kubernetes_gives_them(server: Server, agent: Path) -> None:
    missing = server.kubectl("exec", "nope", "--", "true", check=False)
    assert missing.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'
    wrong = server.kubectl("exec", "app", "-c", "zz", "--", "true", check=False)
    assert wrong.stderr.strip() == "Error from server (BadRequest): container zz is not valid for pod app"
    server.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: nowhere, namespace: default}
spec:
  nodeSelector: {no-such: label}
  containers: [{name: c, image: busybox}]
""")
    unbound = server.kubectl("exec", "nowhere", "--", "true", check=False)
    assert unbound.stderr.strip() == "Error from server (BadRequest): pod nowhere does not have a host assigned"
    assert server.kubectl("logs", "nowhere").stdout == ""


def test_exec_needs_pods_exec(server: Server, agent: Path) -> None:
    server.kubectl("apply", "-f", "-", input="""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: default}
rules: [{apiGroups: [""], resources: ["pods"], verbs: ["get", "list"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads, namespace: default}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: Role, name: pod-reader, apiGroup: rbac.authorization.k8s.io}
""")
    denied = server.kubectl("exec", "--as=alice", "app", "--", "true", check=False)
    assert denied.returncode == 1
    assert 'User "alice" cannot create resource "pods/exec"' in denied.stderr or \
        'User "alice" cannot get resource "pods/exec"' in denied.stderr
    server.kubectl("apply", "-f", "-", input="""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: default}
rules:
- {apiGroups: [""], resources: ["pods"], verbs: ["get", "list"]}
- {apiGroups: [""], resources: ["pods/exec"], verbs: ["get"]}
""")
    wait_for(lambda: server.kubectl("exec", "--as=alice", "app", "--", "echo", "hi", check=False).stdout == "hi\n",
             10, "get pods/exec lets a WebSocket exec through (1.32)")


# ------------------------------------------------------------------------- SPDY/3.1 proper (WebSockets off)
@pytest.fixture
def spdy(monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl as clients before 1.30 talk: exec, attach and cp over SPDY/3.1 (`Upgrade: SPDY/3.1`)."""
    monkeypatch.setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")


def test_spdy_exec_exit_code_and_stderr(server: Server, agent: Path, spdy: None) -> None:
    out = server.kubectl("exec", "-v=6", "app", "--", "sh", "-c", "echo out; echo err >&2; exit 2", check=False)
    assert out.returncode == 2, out.stderr
    assert out.stdout == "out\n"
    lines = [line for line in out.stderr.splitlines() if "] " not in line]  # -v=6's log lines aside
    assert lines == ["err", "command terminated with exit code 2"], out.stderr
    assert re.search(r"POST https://\S+/exec\?\S* 101 Switching Protocols", out.stderr), out.stderr
    assert server.kubectl("exec", "app", "--", "cat", TOKEN_NS).stdout == "default"


def test_spdy_exec_with_stdin_and_cp_both_ways(server: Server, agent: Path, spdy: None, tmp_path: Path) -> None:
    out = server.kubectl("exec", "-i", "app", "--", "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert out.stdout == "HELLO\n"
    src = tmp_path / "in.txt"
    src.write_text("over spdy\n" * 5000)
    server.kubectl("cp", str(src), "app:/tmp/spdy-in.txt")
    assert server.kubectl("exec", "app", "--", "md5sum", "/tmp/spdy-in.txt").stdout.split()[0] == \
        hashlib.md5(src.read_bytes()).hexdigest()
    dst = tmp_path / "out.txt"
    server.kubectl("cp", "app:/tmp/spdy-in.txt", str(dst))
    assert dst.read_bytes() == src.read_bytes()


def test_spdy_exec_needs_create_on_pods_exec(server: Server, agent: Path, spdy: None) -> None:
    """A SPDY exec is a POST: 1.32 authorizes it as `create pods/exec`, where a WebSocket one needs `get`."""
    server.kubectl("apply", "-f", "-", input="""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: exec-getter, namespace: default}
rules:
- {apiGroups: [""], resources: ["pods"], verbs: ["get"]}
- {apiGroups: [""], resources: ["pods/exec"], verbs: ["get"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-gets, namespace: default}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: Role, name: exec-getter, apiGroup: rbac.authorization.k8s.io}
""")
    denied = server.kubectl("exec", "--as=bob", "app", "--", "true", check=False)
    assert denied.returncode == 1
    assert 'User "bob" cannot create resource "pods/exec"' in denied.stderr, denied.stderr


def _spdy_upgrade(server: Server, protocols: str) -> tuple[ssl.SSLSocket, bytes]:
    """A SPDY exec upgrade by hand, as client-go writes it; the socket and the answer's head."""
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    ctx.load_cert_chain(str(server.data_dir / "pki" / "admin.crt"), str(server.data_dir / "pki" / "admin.key"))
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                           server_hostname="127.0.0.1")
    sock.sendall(b"POST /api/v1/namespaces/default/pods/app/exec?command=cat&stdin=true&stdout=true HTTP/1.1\r\n"
                 b"Host: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
                 b"X-Stream-Protocol-Version: " + protocols.encode() + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def test_spdy_hostile_frames_close_the_connection_with_one_log_line(server: Server, agent: Path) -> None:
    sock, head = _spdy_upgrade(server, "v4.channel.k8s.io")
    with sock:
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head
        assert b"x-stream-protocol-version: v4.channel.k8s.io\r\n" in head.lower()
        sock.sendall(b"\x80\x02\x00\x01\x00\x00\x00\x00")  # a control frame of SPDY version 2
        rest = b""
        while chunk := sock.recv(4096):
            rest += chunk
        assert rest == b"\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01"  # GOAWAY, PROTOCOL_ERROR
    wait_for(lambda: "SPDY stream of default/app closed: malformed SPDY: unsupported SPDY version 2" in server.log(),
             5, "the log line")
    assert "Traceback" not in server.log()
    # the answer to an upgrade that cannot be negotiated closes the connection after it
    sock, head = _spdy_upgrade(server, "v9.channel.k8s.io")
    with sock:
        assert head.startswith(b"HTTP/1.1 403 "), head
        assert b"connection: close" in head.lower()
        body = head.split(b"\r\n\r\n", 1)[1]
        while chunk := sock.recv(4096):
            body += chunk
        assert json.loads(body)["message"] == "unable to upgrade: unable to negotiate protocol: client supports " \
            "[v9.channel.k8s.io], server accepts [v5.channel.k8s.io v4.channel.k8s.io v3.channel.k8s.io " \
            "v2.channel.k8s.io channel.k8s.io]"


def test_spdy_exec_with_a_tty(server: Server, agent: Path, spdy: None) -> None:
    """`kubectl exec -it` on a terminal: the resize stream carries its size to the command's terminal, the exit
    code comes back."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    env.pop("HTTPS_PROXY", None)
    env.pop("https_proxy", None)
    script = 'for i in $(seq 50); do s=$(stty size); [ "$s" != "0 0" ] && break; sleep 0.1; done; echo "size $s"; ' \
             '[ -t 0 ] && echo "on a tty"; exit 3'
    proc = subprocess.Popen([kubectl_binary(), "exec", "-it", "app", "--", "sh", "-c", script], stdin=slave,
                            stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    out = b""
    try:
        while select.select([master], [], [], 20)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: kubectl has closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=20) == 3, out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    assert "command terminated with exit code 3" in proc.stderr.read().decode()
    assert b"size 30 100\r\n" in out and b"on a tty\r\n" in out, out


def test_spdy_attach_with_stdin(server: Server, agent: Path, spdy: None) -> None:
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: spdycat, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers: [{{name: c, image: busybox, command: [cat], stdin: true}}]
""")
    wait_for(lambda: json.loads(server.kubectl("get", "pod", "spdycat", "-o", "json").stdout)
             .get("status", {}).get("phase") == "Running", 30, "pod spdycat running")
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    proc = subprocess.Popen([kubectl_binary(), "attach", "-i", "spdycat"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"over spdy\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"over spdy\n"
        proc.stdin.close()  # the session ends with the caller's stdin
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert server.kubectl("logs", "spdycat").stdout == "over spdy\n"


def test_kr8s_pod_exec(server: Server, agent: Path) -> None:
    """kr8s's Pod.exec (its own WebSocket client) against the same pod: output, stderr and the exit code."""
    api = kr8s.api(kubeconfig=str(server.kubeconfig))
    pod = kr8s.objects.Pod.get("app", namespace="default", api=api)
    done = pod.exec(["sh", "-c", f"cat {TOKEN_NS}; echo oops >&2; exit 3"], check=False)
    assert (done.stdout, done.stderr, done.returncode) == (b"default", b"oops\n", 3)
