"""`kubectl attach` and `kubectl run -i` on the process runtime, through a real server and agent with the real
kubectl: output from the moment of attaching, stdin into a `stdin: true` container, `kubectl run -i --rm` (stdin
given, the pod deleted, a non-zero exit reported from the pod's terminated state), `-i` on a container without
stdin (the input goes nowhere, as with containerd), Kubernetes' errors for a container that no longer runs; the
official Python client's `stream(connect_get_namespaced_pod_attach)`, with and without a TTY (and the CRI's
refusal of stderr with one); `kubectl run -it --rm` under a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import stream

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, kubectl_binary, process_agent, wait_for

NODE = "attach-n1"
TICKER = 'i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.2; done'

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason=f"no process runtime: {runtime_available()}")


@pytest.fixture(scope="module")
def agent(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("attach")
    with process_agent(server, tmp, NODE):
        _pod(server, "ticker", ["sh", "-c", TICKER])
        yield tmp


def _pod(server: Server, name: str, command: list[str], extra: str = "", policy: str = "Always",
         phase: tuple[str, ...] = ("Running",)) -> None:
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: {json.dumps(command)}
{extra}
""")
    wait_for(lambda: _get(server, name).get("status", {}).get("phase") in phase, 30, f"pod {name} {phase}")


def _get(server: Server, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)
    return pod


def _kubectl(server: Server, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    return subprocess.Popen([kubectl_binary(), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def _read_until(proc: subprocess.Popen[bytes], pattern: bytes, timeout: float = 15) -> bytes:
    """kubectl's stdout until `pattern` appears in it (AssertionError after `timeout` s)."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    while pattern not in out:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise AssertionError(f"{pattern!r} not seen within {timeout:g} s; got {out!r}")
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            raise AssertionError(f"kubectl ended before {pattern!r}; got {out!r}; stderr {_stderr(proc)!r}")
        out += chunk
    return out


def _stderr(proc: subprocess.Popen[bytes]) -> bytes:
    proc.kill()
    proc.wait()
    return proc.stderr.read() if proc.stderr else b""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


def _numbers(out: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"line (\d+)\n", out)]


def test_attach_shows_new_lines_only(server: Server, agent: Path) -> None:
    wait_for(lambda: len(server.kubectl("logs", "ticker").stdout.splitlines()) >= 5, 15, "five lines logged")
    proc = _kubectl(server, "attach", "ticker")
    try:
        out = b""
        while len(_numbers(out)) < 4:
            out += _read_until(proc, b"\n", 15)
        numbers = _numbers(out)
        assert numbers[0] >= 5, "output from before the attach was replayed"
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    finally:
        _stop(proc)
    assert _get(server, "ticker")["status"]["phase"] == "Running"  # detaching leaves the process alone
    assert _get(server, "ticker")["status"]["containerStatuses"][0]["restartCount"] == 0


def test_attach_stdin_reaches_cat(server: Server, agent: Path) -> None:
    _pod(server, "cat", ["cat"], extra="    stdin: true")
    for word in (b"hello", b"again"):
        proc = _kubectl(server, "attach", "-i", "cat")
        try:
            assert proc.stdin is not None
            proc.stdin.write(word + b"\n")
            proc.stdin.flush()
            assert _read_until(proc, word + b"\n").endswith(word + b"\n")
            proc.stdin.close()  # the session ends with the caller's stdin; the container's stays open
            assert proc.wait(timeout=15) == 0
        finally:
            _stop(proc)
    assert server.kubectl("logs", "cat").stdout == "hello\nagain\n"
    assert _get(server, "cat")["status"]["phase"] == "Running"


def test_kubectl_run_i_rm(server: Server, agent: Path) -> None:
    out = server.kubectl("run", "asker", "-i", "--rm", "--restart=Never", "--image=busybox", "--",
                         "sh", "-c", "read a; echo got $a", input="hello\n", timeout=90)
    assert "got hello\n" in out.stdout
    assert 'pod "asker" deleted' in out.stdout
    wait_for(lambda: server.kubectl("get", "pod", "asker", check=False).returncode != 0, 30, "pod asker gone")
    failed = server.kubectl("run", "failer", "-i", "--rm", "--restart=Never", "--image=busybox", "--",
                            "sh", "-c", "read a; echo bad $a; exit 3", input="news\n", check=False, timeout=90)
    assert failed.returncode == 3
    assert "bad news\n" in failed.stdout
    assert "pod default/failer terminated (Error)" in failed.stderr


def test_attach_i_without_stdin_drops_the_input(server: Server, agent: Path) -> None:
    """containerd copies a session's stdin only into a container that has one: the session goes on, the input
    goes nowhere, and the container's stdin is /dev/null."""
    proc = _kubectl(server, "attach", "-i", "ticker")
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"ignored\n")
        proc.stdin.close()
        _read_until(proc, b"line")
        time.sleep(1.0)
        assert proc.poll() is None, "the session ended with its stdin"
        assert len(_numbers(_read_until(proc, b"\n"))) >= 1
    finally:
        _stop(proc)
    assert server.kubectl("exec", "ticker", "--", "readlink", "/proc/1/fd/0").stdout == "/dev/null\n"


def test_attach_to_a_container_that_is_not_running(server: Server, agent: Path) -> None:
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: half, namespace: default}}
spec:
  nodeName: {NODE}
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: done, image: busybox, command: ["true"]}}
  - {{name: live, image: busybox, command: ["sleep", "3600"]}}
""")
    wait_for(lambda: "terminated" in json.dumps(_get(server, "half").get("status", {}).get("containerStatuses")),
             30, "container done terminated")
    res = server.kubectl("attach", "half", "-c", "done", check=False, timeout=30)
    assert res.returncode == 1
    assert "container done not found in pod half_default" in res.stderr
    _pod(server, "finished", ["true"], policy="Never", phase=("Succeeded",))
    res = server.kubectl("attach", "finished", check=False, timeout=30)
    assert res.returncode == 1
    assert res.stderr.strip() == "error: cannot attach a container in a completed pod; current phase is Succeeded"


def test_official_client_attach(server: Server, agent: Path) -> None:
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(str(server.kubeconfig)))
    resp = stream(api.connect_get_namespaced_pod_attach, "ticker", "default", stdout=True, stderr=True,
                  stdin=False, tty=False, _preload_content=False)
    try:
        out = ""
        deadline = time.monotonic() + 10
        while out.count("\n") < 3 and time.monotonic() < deadline:
            resp.update(timeout=1)
            out += resp.read_stdout(timeout=0) or ""
        assert re.fullmatch(r"(line \d+\n){3,}", out), out
    finally:
        resp.close()
    _pod(server, "term", ["sh", "-c", 'while read l; do echo "got $l"; done'],
         extra="    stdin: true\n    tty: true")
    resp = stream(api.connect_get_namespaced_pod_attach, "term", "default", stdout=True, stderr=False,
                  stdin=True, tty=True, _preload_content=False)
    try:
        resp.write_stdin("hi\n")
        out = ""
        deadline = time.monotonic() + 10
        while "got hi" not in out and time.monotonic() < deadline:
            resp.update(timeout=1)
            out += resp.read_stdout(timeout=0) or ""
        assert "hi\r\ngot hi\r\n" in out  # the terminal echoes, and turns \n into \r\n
    finally:
        resp.close()
    # The session's TTY is the container's (the kubelet's GetAttach); with stderr too the CRI refuses it.
    resp = stream(api.connect_get_namespaced_pod_attach, "term", "default", stdout=True, stderr=True,
                  stdin=False, tty=False, _preload_content=False)
    resp.run_forever(timeout=10)
    error = json.loads(resp.read_channel(3))
    assert error["status"] == "Failure"
    assert error["message"] == ("Internal error occurred: unable to upgrade connection: rpc error: "
                                "code = InvalidArgument desc = tty and stderr cannot both be true")


def test_kubectl_run_it_on_a_terminal(server: Server, agent: Path) -> None:
    """`kubectl run -it --rm` under a pseudo-terminal: a shell on the container's terminal, its exit code."""
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(kubectl_binary(), ["kubectl", "run", "shell", "-it", "--rm", "--restart=Never",
                                      "--image=busybox", "--", "sh"], env)
    out = b""
    try:
        out = _read_pty(fd, out, b"try pressing enter")
        os.write(fd, b"echo hi-$((40+2))\r")
        out = _read_pty(fd, out, b"hi-42")
        os.write(fd, b"exit 5\r")
        out = _read_pty(fd, out, b"terminated (Error)")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 5, out
    assert b'pod "shell" deleted' in out


def _read_pty(fd: int, out: bytes, pattern: bytes, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while pattern not in out:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"{pattern!r} not seen within {timeout:g} s; got {out!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: kubectl is gone
            chunk = b""
        if not chunk:
            raise AssertionError(f"kubectl ended before {pattern!r}; got {out!r}")
        out += chunk
    return out
