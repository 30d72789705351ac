"""PersistentVolumes on a real process-runtime agent: a claim bound to a pre-created `hostPath` or `local`
volume is mounted from that path of the host (under --allow-host-path only), and a provisioned volume's
directory leaves the node with its claim under reclaimPolicy Delete and stays under Retain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, process_agent, wait_for

NODE = "pv-agent"

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason=f"no process runtime: {runtime_available()}")


@pytest.fixture(scope="module")
def agent(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("pvagent")
    allowed = tmp / "disks"
    allowed.mkdir()
    with process_agent(server, tmp, NODE, "--allow-host-path", str(allowed)) as root:
        yield root, allowed


def _json(server: Server, *args: str) -> Any:
    return json.loads(server.kubectl(*args, "-o", "json").stdout)


def _create(server: Server, obj: dict[str, Any]) -> None:
    server.kubectl("create", "-f", "-", input=json.dumps(obj))


def _claim(name: str, cls: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "resources": {"requests": {"storage": "10Mi"}}}}


def _volume(name: str, cls: str, source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     **source, **spec}}


def _pod(name: str, claim: str, script: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox", "command": ["/bin/sh", "-c", script],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}


def _phase(server: Server, *args: str) -> str:
    out = server.kubectl("get", *args, "-o", "jsonpath={.status.phase}", check=False)
    return out.stdout if out.returncode == 0 else "<gone>"


def _bound(server: Server, claim: str) -> str:
    wait_for(lambda: _phase(server, "pvc", claim) == "Bound", 15, f"claim {claim} bound")
    return str(_json(server, "get", "pvc", claim)["spec"]["volumeName"])


def _wrote(server: Server, pod: str) -> None:
    wait_for(lambda: _phase(server, "pod", pod) in ("Succeeded", "Failed"), 30, f"pod {pod} done")
    assert _phase(server, "pod", pod) == "Succeeded", server.kubectl("logs", pod, check=False).stdout


@pytest.mark.parametrize("kind", ["hostPath", "local"])
def test_a_pod_writes_into_a_precreated_volume(server: Server, agent: tuple[Path, Path], kind: str) -> None:
    _, allowed = agent
    disk = allowed / kind
    disk.mkdir()
    disk.chmod(0o777)
    source: dict[str, Any] = {"hostPath": {"path": str(disk), "type": "Directory"}} if kind == "hostPath" else {
        "local": {"path": str(disk)}, "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]}]}}}
    _create(server, _volume(f"disk-{kind.lower()}", f"manual-{kind.lower()}", source))
    _create(server, _claim(f"data-{kind.lower()}", f"manual-{kind.lower()}"))
    assert _bound(server, f"data-{kind.lower()}") == f"disk-{kind.lower()}"
    _create(server, _pod(f"writer-{kind.lower()}", f"data-{kind.lower()}", "echo written > /data/note"))
    _wrote(server, f"writer-{kind.lower()}")
    assert (disk / "note").read_text() == "written\n"


def test_a_volume_outside_the_allowed_paths_is_not_mounted(server: Server, agent: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _create(server, _volume("disk-outside", "manual-outside", {"hostPath": {"path": str(outside)}}))
    _create(server, _claim("data-outside", "manual-outside"))
    _bound(server, "data-outside")
    _create(server, _pod("writer-outside", "data-outside", "echo no > /data/note"))

    def waiting() -> str:
        statuses = (_json(server, "get", "pod", "writer-outside").get("status") or {}).get("containerStatuses")
        return str(((statuses or [{}])[0].get("state") or {}).get("waiting") or "")

    wait_for(lambda: "--allow-host-path" in waiting(), 30, "the pod refused its volume")
    assert "CreateContainerConfigError" in waiting() and not (outside / "note").exists()


def test_a_host_volumes_type_is_checked(server: Server, agent: tuple[Path, Path]) -> None:
    _, allowed = agent
    made = allowed / "made-on-demand"
    (allowed / "plain-file").write_text("x")
    _create(server, _volume("disk-made", "manual-made", {"hostPath": {"path": str(made),
                                                                       "type": "DirectoryOrCreate"}}))
    _create(server, _volume("disk-file", "manual-file", {"hostPath": {"path": str(allowed / "plain-file"),
                                                                       "type": "Directory"}}))
    for name in ("made", "file"):
        _create(server, _claim(f"data-{name}", f"manual-{name}"))
        _bound(server, f"data-{name}")
    _create(server, _pod("writer-made", "data-made", "ls -ld /data"))
    _wrote(server, "writer-made")
    assert made.is_dir() and made.stat().st_mode & 0o777 == 0o755
    _create(server, _pod("writer-file", "data-file", "true"))

    def waiting() -> str:
        statuses = (_json(server, "get", "pod", "writer-file").get("status") or {}).get("containerStatuses")
        return str(((statuses or [{}])[0].get("state") or {}).get("waiting") or "")

    wait_for(lambda: "type check" in waiting(), 30, "the pod refused its volume")
    assert f"hostPath type check failed: {allowed / 'plain-file'} is not a directory" in waiting()


def _provisioned(server: Server, root: Path, cls: str, claim: str) -> tuple[str, Path]:
    _create(server, _claim(claim, cls))
    volume = _bound(server, claim)
    _create(server, _pod(f"{claim}-writer", claim, "echo kept > /data/note"))
    _wrote(server, f"{claim}-writer")
    directory = root / "volumes" / volume
    assert (directory / "note").read_text() == "kept\n"
    server.kubectl("delete", "pod", f"{claim}-writer")
    server.kubectl("delete", "pvc", claim)
    return volume, directory


def test_delete_reclaim_removes_the_directory_from_the_node(server: Server, agent: tuple[Path, Path]) -> None:
    root, _ = agent
    volume, directory = _provisioned(server, root, "standard", "scratch")
    wait_for(lambda: _phase(server, "pv", volume) == "<gone>", 20, "the provisioned volume deleted")
    assert not directory.exists() and (root / "volumes").is_dir()
    node = _json(server, "get", "node", NODE)
    assert not [k for k in node["metadata"].get("annotations") or {} if k.startswith("delete.volumes.kubesat.io/")]


def test_retain_reclaim_keeps_the_volume_and_its_directory(server: Server, agent: tuple[Path, Path]) -> None:
    root, _ = agent
    _create(server, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "keep"},
                     "provisioner": "kubesat.io/local", "reclaimPolicy": "Retain"})
    volume, directory = _provisioned(server, root, "keep", "kept")
    wait_for(lambda: _phase(server, "pv", volume) == "Released", 15, "the retained volume released")
    assert (directory / "note").read_text() == "kept\n"
    assert "delete.volumes.kubesat.io/" not in json.dumps(_json(server, "get", "node", NODE)["metadata"])


def test_the_node_reads_only_the_volumes_of_its_pods_claims(server: Server, agent: tuple[Path, Path]) -> None:
    """The Node authorizer, as Kubernetes': a node gets a claim and its volume through a pod bound to it, and
    lists or watches none."""
    root, _ = agent
    as_node = str(root.parent / "node.kubeconfig")
    _create(server, _volume("disk-unused", "manual-unused", {"hostPath": {"path": "/srv/unused"}}))
    out = server.kubectl("get", "pv", kubeconfig=as_node, check=False)
    assert out.returncode == 1 and "forbidden" in out.stderr
    out = server.kubectl("get", "pv", "disk-unused", kubeconfig=as_node, check=False)
    assert out.returncode == 1 and "no relationship found between node 'pv-agent' and this object" in out.stderr
    _create(server, _claim("data-read", "manual-unused"))
    _bound(server, "data-read")
    _create(server, _pod("reader", "data-read", "true"))
    wait_for(lambda: server.kubectl("get", "pv", "disk-unused", kubeconfig=as_node, check=False).returncode == 0,
             10, "the volume readable through the pod")
    assert server.kubectl("get", "pvc", "data-read", kubeconfig=as_node, check=False).returncode == 0
    out = server.kubectl("get", "pvc", kubeconfig=as_node, check=False)
    assert out.returncode == 1 and "forbidden" in out.stderr
