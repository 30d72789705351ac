"""`kubesat serve` runs a local node by default: its agent registers the host's node, runs the pods scheduled to
it (token volume written, Running), finishes their graceful deletion, and is stopped with the server after it
reported its node not ready. A pod on a node whose agent is gone stays Terminating until the agent is back,
or until `kubectl delete --force --grace-period=0`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import Server, start_server, wait_for

NODE = "local-1"


def _node_ready(server: Server, name: str) -> str:
    out = server.kubectl("get", "node", name, "-o", "json", check=False)
    if out.returncode:
        return ""
    conds = json.loads(out.stdout)["status"].get("conditions") or []
    return next((c["status"] for c in conds if c["type"] == "Ready"), "")


def _pod(server: Server, name: str) -> dict:
    out = server.kubectl("get", "pod", name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _pod_in(server: Server, namespace: str, name: str) -> dict:
    out = server.kubectl("get", "pod", "-n", namespace, name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _agents(name: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"kubesat.cli agent .*--node-name {name} "], capture_output=True,
                         text=True)
    return out.stdout.split()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("local") / "data"
    srv = start_server(data, node=True, extra=["--node-name", NODE])
    yield srv
    srv.stop()


def test_the_local_node_registers_and_runs_pods(local: Server) -> None:
    assert wait_for(lambda: _node_ready(local, NODE) == "True", 30, "the local node Ready")
    assert (local.data_dir / "node.kubeconfig").stat().st_mode & 0o777 == 0o600
    local.kubectl("run", "web", "--image=nginx")
    pod = wait_for(lambda: (p := _pod(local, "web")) and p["status"].get("phase") == "Running" and p, 30, "Running")
    assert pod["spec"]["nodeName"] == NODE
    uid = pod["metadata"]["uid"]
    volume = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    token = local.data_dir / "node" / "pods" / uid / "volumes" / "kubernetes.io~projected" / volume / "token"
    review = json.loads(local.kubectl("create", "-o", "json", "-f", "-", input=json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token.read_text()}})).stdout)["status"]
    assert review["authenticated"] is True
    assert review["user"]["extra"]["authentication.kubernetes.io/node-name"] == [NODE]


def test_deleting_a_pod_waits_for_the_agent(local: Server) -> None:
    pod = _pod(local, "web")
    uid = pod["metadata"]["uid"]
    started = time.monotonic()
    local.kubectl("delete", "pod", "web", "--wait=false")
    # Graceful: the pod is still there with its deletion marks until the agent has torn it down.
    seen = _pod(local, "web")
    if seen:
        assert seen["metadata"]["deletionGracePeriodSeconds"] == 30
    wait_for(lambda: not _pod(local, "web"), 20, "the agent finishing the deletion")
    assert time.monotonic() - started < 20  # the agent's teardown, not the 30 s grace period
    assert not (local.data_dir / "node" / "pods" / uid).exists()


def test_the_server_shows_as_a_mirror_pod_on_its_node(local: Server) -> None:
    name = f"kube-apiserver-{NODE}"
    pod = wait_for(lambda: _pod_in(local, "kube-system", name), 20, "the mirror pod")
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["kubesat", "serve"]
    assert "--service-account-issuer=https://kubernetes.default.svc.cluster.local" in command
    assert f"--port={local.port}" in command
    annotations = pod["metadata"]["annotations"]
    assert annotations["kubernetes.io/config.source"] == "file" and annotations["kubernetes.io/config.mirror"]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Node"
    assert pod["status"]["phase"] == "Running"
    # What the runbook runs to find the issuer:
    yaml_text = local.kubectl("get", "pod", "-n", "kube-system", name, "-o", "yaml").stdout
    assert [line.strip() for line in yaml_text.splitlines() if "service-account-issuer" in line] == \
        ["- --service-account-issuer=https://kubernetes.default.svc.cluster.local"]


def test_a_bad_node_name_is_one_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "kubesat.cli", "serve", "--data-dir", str(tmp_path / "d"),
                          "--node-name", "Not_A_Name"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "--node-name 'Not_A_Name': must be a lowercase RFC 1123 subdomain" in res.stderr
    assert "Traceback" not in res.stderr


def test_stopping_the_server_stops_its_agent_after_not_ready(local: Server) -> None:
    assert _agents(NODE)
    assert local.stop(signal.SIGTERM) == 0
    wait_for(lambda: not _agents(NODE), 10, "the agent gone with the server")
    again = start_server(local.data_dir)  # --no-node: look at what the agent left
    try:
        ready = json.loads(again.kubectl("get", "node", NODE, "-o", "json").stdout)["status"]["conditions"]
        cond = next(c for c in ready if c["type"] == "Ready")
        assert (cond["status"], cond["message"]) == ("False", "node is shutting down")
    finally:
        again.stop()


def test_a_pod_on_a_stopped_node_stays_terminating_until_forced(server: Server, tmp_path: Path) -> None:
    name = "stopped-n1"
    kubeconfig = tmp_path / "node.kubeconfig"
    kubeconfig.write_bytes(subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", name,
                                           "--data-dir", str(server.data_dir)], capture_output=True,
                                          check=True).stdout)
    agent = [sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig), "--node-name", name,
             "--root", str(tmp_path / "root")]
    proc = subprocess.Popen(agent, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _node_ready(server, name) == "True", 30, "the node Ready")
        for pod in ("held", "forced"):
            server.kubectl("run", pod, "--image=busybox", "--overrides",
                           json.dumps({"spec": {"nodeName": name}}))
            wait_for(lambda p=pod: _pod(server, p).get("status", {}).get("phase") == "Running", 30, "Running")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert _node_ready(server, name) == "False"
    for pod in ("held", "forced"):
        server.kubectl("delete", "pod", pod, "--wait=false")
    time.sleep(2)
    held = _pod(server, "held")
    assert held["metadata"]["deletionTimestamp"]
    table = server.kubectl("get", "pod", "held", "--no-headers").stdout
    assert "Terminating" in table
    server.kubectl("delete", "pod", "forced", "--force", "--grace-period=0")
    assert not _pod(server, "forced")
    proc = subprocess.Popen(agent, stderr=subprocess.DEVNULL)  # the node is back: its agent finishes the pod
    try:
        wait_for(lambda: not _pod(server, "held"), 30, "the returning agent finishing the deletion")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
