"""A real agent process gives the pods bound to its node their files: the default token volume holds
`token`, `ca.crt` and `namespace` as the server states them, the token authenticates as the pod's
ServiceAccount bound to the pod and the node; a missing ConfigMap is a FailedMount Event; a deleted
pod's directory goes; a deleted pod is terminated by the agent as by the kubelet (Killing, a terminal status,
the final delete), with the Started and Killing Events `kubectl describe pod` shows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server, wait_for

NODE = "pods-n1"


@pytest.fixture(scope="module")
def root(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("agent")
    kubeconfig = tmp / "node.kubeconfig"
    kubeconfig.write_bytes(subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", NODE,
                                           "--data-dir", str(server.data_dir)], capture_output=True,
                                          check=True).stdout)
    root = tmp / "root"
    proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig),
                             "--node-name", NODE, "--root", str(root), "--port", "0"], stderr=subprocess.PIPE)
    wait_for(lambda: '"Ready"' in server.kubectl("get", "node", NODE, "-o", "json", check=False).stdout, 20,
             "the agent's node")
    yield root
    proc.terminate()
    proc.wait(timeout=20)


def _pod(server: Server, name: str, extra_volumes: str = "") -> dict:
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  containers:
  - name: app
    image: busybox
    command: ["sleep", "3600"]
{extra_volumes}
""")
    return json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)


def _status(server: Server, name: str) -> dict:
    return json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)


def test_a_default_pod_gets_its_token_volume(server: Server, root: Path) -> None:
    pod = _pod(server, "default-pod")
    uid = pod["metadata"]["uid"]
    volume = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    vol_dir = root / "pods" / uid / "volumes" / "kubernetes.io~projected" / volume
    wait_for(lambda: (vol_dir / "token").exists(), 20, "the token file")
    assert sorted(p.name for p in vol_dir.iterdir() if not p.name.startswith("..")) == \
        ["ca.crt", "namespace", "token"]
    assert (vol_dir / "token").is_symlink() and (vol_dir / "..data").is_symlink()
    assert (vol_dir / "namespace").read_text() == "default"
    root_ca = json.loads(server.kubectl("get", "configmap", "kube-root-ca.crt", "-o", "json").stdout)
    assert (vol_dir / "ca.crt").read_text() == root_ca["data"]["ca.crt"]
    review = json.loads(server.kubectl("create", "-o", "json", "-f", "-", input=json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": (vol_dir / "token").read_text()}})).stdout)["status"]
    assert review["authenticated"] is True
    assert review["user"]["username"] == "system:serviceaccount:default:default"
    assert review["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["default-pod"]
    assert review["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [uid]
    assert review["user"]["extra"]["authentication.kubernetes.io/node-name"] == [NODE]
    wait_for(lambda: _status(server, "default-pod")["status"].get("phase") == "Running", 20, "Running")
    status = _status(server, "default-pod")["status"]
    assert status["podIP"] == status["podIPs"][0]["ip"] and status["hostIP"] == status["hostIPs"][0]["ip"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodScheduled": "True", "PodReadyToStartContainers": "True", "Initialized": "True",
        "Ready": "True", "ContainersReady": "True"}
    assert status["containerStatuses"][0]["state"]["running"]["startedAt"]


def test_a_missing_configmap_is_a_failed_mount(server: Server, root: Path) -> None:
    _pod(server, "needs-cm", """  volumes:
  - name: settings
    configMap: {name: not-there}""")
    wait_for(lambda: "FailedMount" in server.kubectl("get", "events", "--field-selector",
                                                     "involvedObject.name=needs-cm").stdout, 20, "FailedMount")
    events = server.kubectl("get", "events", "--field-selector", "involvedObject.name=needs-cm").stdout
    assert 'MountVolume.SetUp failed for volume "settings" : configmap "not-there" not found' in events
    assert _status(server, "needs-cm")["status"].get("phase") == "Pending"
    server.kubectl("create", "configmap", "not-there", "--from-literal=mode=on")
    wait_for(lambda: _status(server, "needs-cm")["status"].get("phase") == "Running", 30, "Running once it exists")
    uid = _status(server, "needs-cm")["metadata"]["uid"]
    assert (root / "pods" / uid / "volumes" / "kubernetes.io~configmap" / "settings" / "mode").read_text() == "on"


def test_a_deleted_pods_directory_goes(server: Server, root: Path) -> None:
    pod = _pod(server, "short-lived")
    pod_dir = root / "pods" / pod["metadata"]["uid"]
    wait_for(lambda: pod_dir.exists(), 20, "the pod's directory")
    server.kubectl("delete", "pod", "short-lived", "--wait=false")
    wait_for(lambda: not pod_dir.exists(), 20, "the directory removed")


def _events_of(server: Server, name: str) -> list[tuple[str, str, str, str]]:
    events = json.loads(server.kubectl("get", "events", "-o", "json", "--field-selector",
                                       f"involvedObject.name={name}").stdout)["items"]
    return [(e["type"], e["reason"], e["message"], e["involvedObject"].get("fieldPath", "")) for e in events]


def test_a_deleted_pod_is_terminated_by_the_agent(server: Server, root: Path) -> None:
    """The server keeps a deleted pod bound to a node (deletionTimestamp set) until its kubelet deletes it; the
    agent stops its containers (Killing), writes the terminal status, tears the volumes down and deletes it.
    A finalizer keeps the pod after that final delete, so the status the agent wrote can be read."""
    pod = _pod(server, "graceful")
    uid = pod["metadata"]["uid"]
    wait_for(lambda: _status(server, "graceful")["status"].get("phase") == "Running", 20, "Running")
    assert ("Normal", "Started", "Started container app", "spec.containers{app}") in _events_of(server, "graceful")
    server.kubectl("patch", "pod", "graceful", "--type=merge", "-p",
                   '{"metadata":{"finalizers":["example.com/hold"]}}')
    server.kubectl("delete", "pod", "graceful", "--wait=false")
    assert _status(server, "graceful")["metadata"]["deletionTimestamp"]
    wait_for(lambda: _status(server, "graceful")["status"].get("phase") == "Failed", 20, "the terminal status")
    # The agent's final delete (grace 0, the pod's UID as precondition) was taken: only the finalizer holds it.
    wait_for(lambda: _status(server, "graceful")["metadata"].get("deletionGracePeriodSeconds") == 0, 20,
             "the final delete")
    wait_for(lambda: not (root / "pods" / uid).exists(), 20, "the volumes torn down")
    status = _status(server, "graceful")["status"]
    (container,) = status["containerStatuses"]
    assert container["state"] == {"terminated": {
        "exitCode": 137, "reason": "ContainerStatusUnknown",
        "message": "The container could not be located when the pod was terminated"}}
    assert container["ready"] is False
    conditions = {c["type"]: (c["status"], c.get("reason")) for c in status["conditions"]}
    assert conditions["Ready"] == conditions["ContainersReady"] == ("False", "PodFailed")
    assert conditions["PodReadyToStartContainers"] == ("False", None)
    assert ("Normal", "Killing", "Stopping container app", "spec.containers{app}") in _events_of(server, "graceful")
    described = server.kubectl("describe", "pod", "graceful").stdout
    assert "Stopping container app" in described and "Started container app" in described
    # Without the finalizer the pod goes.
    server.kubectl("patch", "pod", "graceful", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_for(lambda: server.kubectl("get", "pod", "graceful", check=False).returncode != 0, 20, "the pod gone")


def test_a_deleted_pod_goes_well_before_its_grace_period(server: Server, root: Path) -> None:
    _pod(server, "quick-exit")
    wait_for(lambda: _status(server, "quick-exit")["status"].get("phase") == "Running", 20, "Running")
    server.kubectl("delete", "pod", "quick-exit", "--wait=false")
    # No process to stop: the agent finishes at once, not when the 30 s grace period runs out.
    wait_for(lambda: server.kubectl("get", "pod", "quick-exit", check=False).returncode != 0, 15, "the pod gone")
