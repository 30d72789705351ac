"""A real kubesat server per test module: started as `kubesat serve` on a free port in a temp data dir."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config

READY_TIMEOUT = 30.0
# A local node relays the kubernetes Service on 127.0.0.1:443, which one process on the machine can hold:
# servers started with a local node take this lock for their lifetime, so that tests running in parallel do
# not find the port taken (other tests' agents relay on free ports: --service-relay-port 0).
PORT_443_LOCK = Path(tempfile.gettempdir()) / "kubesat-tests-port-443.lock"
PORT_443_WAIT = 900.0


def wait_for(pred, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll pred until it returns something truthy and return that; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubectl_binary() -> str:
    path = shutil.which("kubectl")
    if not path:
        pytest.fail("kubectl is not installed: the integration tests drive the real kubectl binary "
                    "(install it and put it on PATH)", pytrace=False)
    return path


@dataclass
class Server:
    data_dir: Path
    port: int
    proc: subprocess.Popen
    log_path: Path
    args: list[str] = field(default_factory=list)
    lock: int | None = None  # the PORT_443_LOCK descriptor a server with a local node holds

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, kubeconfig: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=str(kubeconfig or self.kubeconfig))
        env.pop("HTTPS_PROXY", None)
        env.pop("https_proxy", None)
        res = subprocess.run([kubectl_binary(), *args], input=input, capture_output=True, text=True, env=env,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}\n{res.stdout}")
        return res

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    return self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    return self.proc.wait()
            return self.proc.returncode
        finally:
            if self.lock is not None:
                os.close(self.lock)  # closing the descriptor releases the lock
                self.lock = None


def take_port_443_lock() -> int:
    """Wait (bounded) until no other test's local node holds 127.0.0.1:443; returns the lock's descriptor."""
    fd = os.open(PORT_443_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + PORT_443_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise AssertionError(f"another test's local node held {PORT_443_LOCK} for {PORT_443_WAIT:g} s") \
                    from None
            time.sleep(0.2)


def start_server(data_dir: Path, port: int | None = None, extra: list[str] | None = None,
                 timeout: float = READY_TIMEOUT, env: dict[str, str] | None = None, node: bool = False) -> Server:
    """`kubesat serve` on a free port. Without a local node (`--no-node`) unless `node`: most tests want
    their pods left alone, or run agents of their own."""
    port = port or free_port()
    lock = take_port_443_lock() if node else None
    extra = list(extra or [])
    if node and "--node-pod-network" not in extra:
        # Pods on the host's network unless a test asks for a pod network: as root, `auto` would give every
        # server's local node a bridge on the same default podCIDR, and tests on one machine would collide.
        extra += ["--node-pod-network", "host"]
    log_path = data_dir.parent / f"{data_dir.name}-server-{port}.log"
    args = [sys.executable, "-m", "kubesat.cli", "serve", "--data-dir", str(data_dir), "--port", str(port),
            *([] if node else ["--no-node"]), *(extra or [])]
    with open(log_path, "ab") as logf:  # the child writes to its own copy of the descriptor
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=logf, env=env)
    server = Server(data_dir, port, proc, log_path, args)
    server.lock = lock
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            break
        if proc.poll() is not None:
            break
    if b"ready" not in line:
        server.stop(signal.SIGKILL)
        raise AssertionError(f"kubesat did not become ready; stdout {line!r}; log:\n{server.log()}")
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    kubectl_binary()
    data_dir = tmp_path_factory.mktemp("kubesat") / "data"
    srv = start_server(data_dir)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server: Server):
    """The official kubernetes Python client, configured from the admin kubeconfig."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


@contextlib.contextmanager
def process_agent(server: Server, tmp: Path, node: str, *extra: str) -> Iterator[Path]:
    """A `kubesat agent --runtime process` for `node` with a node kubeconfig from the server's CA, its root under
    `tmp` (yielded; its log is tmp/agent.log), the kubelet API and the kubernetes Service relay on free ports and
    the server's data dir hidden from pods; yields once the node is Ready, stops the agent on exit."""
    kubeconfig = tmp / "node.kubeconfig"
    kubeconfig.write_bytes(subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", node,
                                           "--data-dir", str(server.data_dir)], capture_output=True,
                                          check=True).stdout)
    with (tmp / "agent.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig),
                                 "--node-name", node, "--root", str(tmp / "root"), "--runtime", "process",
                                 "--service-relay-port", "0", "--port", "0", "--hide-path", str(server.data_dir),
                                 *([] if "--pod-network" in extra else ["--pod-network", "host"]),  # see start_server
                                 *extra], stderr=log)
        try:
            wait_for(lambda: '"Ready"' in server.kubectl("get", "node", node, "-o", "json", check=False).stdout,
                     20, "the agent's node")
            yield tmp / "root"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
