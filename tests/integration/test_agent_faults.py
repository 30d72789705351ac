"""Faults, with a real server and a real agent process: the agent killed with SIGKILL and restarted adopts
the volumes it wrote (a fresh token is neither requested again nor rewritten) and removes those of pods
deleted meanwhile; a server restart under a running agent is ridden out (reconnect with backoff, the watch
resumes, nothing rewritten); a server down for longer than a refresh interval leaves the files as they are,
the old token valid, and the refresh happens once it is back."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server, start_server, wait_for


def _node_kubeconfig(server: Server, node: str, tmp: Path) -> Path:
    out = subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", node,
                          "--data-dir", str(server.data_dir)], capture_output=True, check=True)
    path = tmp / f"{node}.kubeconfig"
    path.write_bytes(out.stdout)
    return path


class Agent:
    """One `kubesat agent` process; restartable on the same root."""

    def __init__(self, server: Server, node: str, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.node, self.root, self.env = node, tmp / f"{node}-root", env or {}
        self.kubeconfig = _node_kubeconfig(server, node, tmp)
        self.log = tmp / f"{node}-agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig",
                                          str(self.kubeconfig), "--node-name", self.node, "--root", str(self.root),
                                          "--port", "0"],
                                         stdout=subprocess.DEVNULL, stderr=logf, env=dict(os.environ, **self.env))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server this test may stop and start again (same data dir, same port)."""
    srv = start_server(tmp_path / "data")
    yield srv
    srv.stop()


def _restart(server: Server) -> Server:
    server.stop()
    return start_server(server.data_dir, port=server.port)


def _pod(server: Server, name: str, node: str, expiration: int | None = None) -> dict:
    volumes = "" if expiration is None else f"""
    volumeMounts: [{{name: tok, mountPath: /var/run/tok}}]
  volumes:
  - name: tok
    projected:
      sources:
      - serviceAccountToken: {{path: token, expirationSeconds: {expiration}}}"""
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {node}
  containers:
  - name: app
    image: busybox{volumes}
""")
    return json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)


def _token_dir(agent: Agent, pod: dict, volume: str | None = None) -> Path:
    name = volume or next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    return agent.root / "pods" / pod["metadata"]["uid"] / "volumes" / "kubernetes.io~projected" / name


def _wait_token(vol: Path, timeout: float = 30) -> str:
    return str(wait_for(lambda: (vol / "token").exists() and (vol / "token").read_text(), timeout, f"{vol}/token"))


def _authenticates(server: Server, token: str) -> bool:
    review = json.loads(server.kubectl("create", "-o", "json", "-f", "-", input=json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})).stdout)
    return bool(review["status"].get("authenticated"))


def _data_link(vol: Path) -> tuple[int, int, str]:
    st = os.lstat(vol / "..data")
    return st.st_ino, st.st_mtime_ns, os.readlink(vol / "..data")


def test_kill_9_and_restart_adopts_the_volumes(server: Server, tmp_path: Path) -> None:
    agent = Agent(server, "faults-kill", tmp_path)
    agent.start()
    try:
        kept = _pod(server, "kill-kept", agent.node)
        short = _pod(server, "kill-short", agent.node, expiration=600)
        kept_vol, short_vol = _token_dir(agent, kept), _token_dir(agent, short, "tok")
        token, short_token = _wait_token(kept_vol), _wait_token(short_vol)
        gone = _pod(server, "kill-gone", agent.node)
        gone_dir = agent.root / "pods" / gone["metadata"]["uid"]
        wait_for(lambda: (_token_dir(agent, gone) / "token").exists(), 30, "the doomed pod's token")
        before, short_before = _data_link(kept_vol), _data_link(short_vol)

        agent.kill()
        server.kubectl("delete", "pod", "kill-gone", "--force", "--grace-period=0")
        stray = agent.root / "pods" / "00000000-0000-0000-0000-000000000000"
        (stray / "volumes").mkdir(parents=True)
        time.sleep(1.1)  # a rewrite would now show in the mtime even on coarse clocks
        agent.start()

        # A pod created after the restart gets its files: the agent has listed (adopting) and is watching.
        late = _pod(server, "kill-late", agent.node)
        _wait_token(_token_dir(agent, late))
        wait_for(lambda: not gone_dir.exists() and not stray.exists(), 20, "the deleted pod's directory removed")
        assert (kept_vol / "token").read_text() == token
        assert (short_vol / "token").read_text() == short_token
        assert _data_link(kept_vol) == before, "a fresh token was rewritten after the restart"
        assert _data_link(short_vol) == short_before
        assert _authenticates(server, token) and _authenticates(server, short_token)
        assert "adopted the token of pod default/kill-kept" in agent.log.read_text()
    finally:
        agent.stop()


def test_a_server_restart_under_a_running_agent(own_server: Server, tmp_path: Path) -> None:
    server = own_server
    agent = Agent(server, "faults-restart", tmp_path)
    agent.start()
    try:
        pod = _pod(server, "restart-kept", agent.node)
        vol = _token_dir(agent, pod)
        token = _wait_token(vol)
        before = _data_link(vol)
        server = _restart(server)
        # The watch resumes: a pod created after the restart gets its files, from the same agent process.
        late = _pod(server, "restart-late", agent.node)
        _wait_token(_token_dir(agent, late), 40)
        assert agent.proc is not None and agent.proc.poll() is None
        assert (vol / "token").read_text() == token and _data_link(vol) == before, "rewritten after the restart"
        assert _authenticates(server, token)
        wait_for(lambda: '"Ready"' in server.kubectl("get", "node", agent.node, "-o", "json").stdout, 20, "Ready")
    finally:
        agent.stop()
        server.stop()


def test_the_server_down_for_longer_than_a_refresh_interval(own_server: Server, tmp_path: Path) -> None:
    server = own_server
    rate = 60.0  # a 600 s token is due for refresh after about 8 s
    agent = Agent(server, "faults-down", tmp_path, env={"KUBESAT_AGENT_CLOCK_RATE": str(rate)})
    agent.start()
    try:
        pod = _pod(server, "down-pod", agent.node, expiration=600)
        vol = _token_dir(agent, pod, "tok")
        token = _wait_token(vol)
        before = _data_link(vol)
        iat = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["iat"]
        server.stop()
        time.sleep(max(0.0, iat + 480 / rate + 5 - time.time()))  # well past the refresh point
        assert (vol / "token").read_text() == token and _data_link(vol) == before
        assert "failed (retrying in" in agent.log.read_text()
        server = start_server(server.data_dir, port=server.port)
        assert _authenticates(server, token), "the old token is still within its life"
        fresh = str(wait_for(lambda: (vol / "token").read_text() != token and (vol / "token").read_text(), 40,
                             "the refresh once the server is back"))
        assert _authenticates(server, fresh)
        assert _authenticates(server, token)
    finally:
        agent.stop()
        server.stop()
