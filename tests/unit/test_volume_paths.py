"""Where a claim's volume is on the node, and the removal of a deleted volume's directory: only paths that
are what they say (absolute without `..` on the host, one safe name under the agent's root), and no symlink
followed out of the agent's root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kubesat.agent.claims import ClaimVolume, host_path, safe_volume_name, volume_dir
from kubesat.agent.runtime.hostpath import check_type
from kubesat.agent.runtime.mounts import MountError, allowed_host_path, plan
from kubesat.agent.volumereclaim import remove_volume_dir, requested

ROOT = Path("/var/lib/kubesat-agent")
PROVISIONED = {"pv.kubernetes.io/provisioned-by": "kubesat.io/local"}


def _pv(name: str, annotations: dict[str, str] | None = None, **source: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": annotations or {}}, "spec": source}


def test_provisioned_volumes_live_under_the_root() -> None:
    pv = _pv("pvc-1", PROVISIONED, hostPath={"path": "volumes/pvc-1"})
    assert volume_dir(pv, ROOT) == ClaimVolume(path=str(ROOT / "volumes" / "pvc-1"))
    for bad in (_pv("pvc-1", PROVISIONED, hostPath={"path": "volumes/../../etc"}),
                _pv("..", PROVISIONED, hostPath={"path": "volumes/x"}),
                _pv("a/b", PROVISIONED, hostPath={"path": "volumes/x"})):
        found = volume_dir(bad, ROOT)
        assert found.error and not found.path


def test_host_and_local_volumes_are_the_hosts_paths() -> None:
    assert volume_dir(_pv("d", hostPath={"path": "/srv/disks/./d1/"}), ROOT) == \
        ClaimVolume(path="/srv/disks/d1", on_host=True)
    assert volume_dir(_pv("d", local={"path": "/mnt/ssd"}), ROOT) == ClaimVolume(path="/mnt/ssd", on_host=True)
    # A hostPath provisioned-by annotation does not make an absolute path the agent's own.
    assert volume_dir(_pv("d", PROVISIONED, hostPath={"path": "/etc"}), ROOT).on_host


@pytest.mark.parametrize("path", ["/srv/../etc", "relative/dir", "", "/srv/\x00x", "/" + "a" * 5000, None, 7])
def test_bad_host_paths_are_refused(path: Any) -> None:
    assert host_path(path) is None
    found = volume_dir(_pv("d", hostPath={"path": path}), ROOT)
    assert found.error and not found.path and "must be an absolute path without '..'" in found.error


def test_other_volume_kinds_are_refused() -> None:
    found = volume_dir(_pv("n", nfs={"server": "x", "path": "/"}), ROOT)
    assert 'persistentvolume "n" is not a volume this node provides' in found.error


@pytest.mark.parametrize(("name", "ok"), [("pvc-1b2c", True), ("a.b", True), ("..", False), ("a..b", False),
                                          (".hidden", False), ("a/b", False), ("", False), ("A", False)])
def test_safe_volume_names(name: str, ok: bool) -> None:
    assert safe_volume_name(name) is ok


def test_a_symlink_out_of_an_allowed_directory_is_refused(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "escape").symlink_to(outside)
    (allowed / "inner").mkdir()
    assert allowed_host_path(str(allowed / "escape"), [allowed]) is None
    assert allowed_host_path(str(allowed / "inner"), [allowed]) == str(allowed / "inner")
    container = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    with pytest.raises(MountError):
        plan(container, {}, {"data": str(allowed / "escape")}, [allowed])
    # What is mounted is the path checked, its symlinks resolved.
    (allowed / "link").symlink_to(allowed / "inner")
    assert plan(container, {}, {"data": str(allowed / "link")}, [allowed])[0].source == str(allowed / "inner")


def test_removing_a_volume_directory_follows_no_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "volumes" / "pvc-a" / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "precious").write_text("x")
    (root / "volumes" / "pvc-a" / "sub" / "f").write_text("y")
    (root / "volumes" / "pvc-a" / "out").symlink_to(outside)
    assert remove_volume_dir(root, "pvc-a") is True
    assert not (root / "volumes" / "pvc-a").exists() and (outside / "precious").exists()
    # A symlink in the volume's place is removed itself, not what it points to.
    (root / "volumes" / "pvc-b").symlink_to(outside)
    assert remove_volume_dir(root, "pvc-b") is True
    assert not os.path.lexists(root / "volumes" / "pvc-b") and (outside / "precious").exists()
    assert remove_volume_dir(root, "pvc-gone") is False
    for bad in ("..", "../outside", "pvc-a/../..", ""):
        with pytest.raises(ValueError):
            remove_volume_dir(root, bad)
    assert (outside / "precious").exists()


def test_a_volumes_directory_that_is_a_symlink_is_not_entered(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "pvc-a").mkdir(parents=True)
    (root / "volumes").symlink_to(outside)
    with pytest.raises(OSError):
        remove_volume_dir(root, "pvc-a")
    assert (outside / "pvc-a").is_dir()
    assert remove_volume_dir(tmp_path / "no-root", "pvc-a") is False


def test_delete_requests_are_read_from_the_nodes_annotations() -> None:
    node = {"metadata": {"annotations": {"delete.volumes.kubesat.io/pvc-1": "true", "other": "x",
                                         "delete.volumes.kubesat.io/pvc-0": "true"}}}
    assert requested(node) == ["delete.volumes.kubesat.io/pvc-0", "delete.volumes.kubesat.io/pvc-1"]
    assert requested({"metadata": {"annotations": "junk"}}) == [] and requested({}) == []


def test_host_path_types_are_checked_as_the_kubelet_checks_them(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    check_type(str(tmp_path / "anything"), "")  # no type: no check
    check_type(str(tmp_path), "Directory")
    check_type(str(tmp_path / "file"), "File")
    check_type(str(tmp_path / "new" / "dir"), "DirectoryOrCreate")
    assert (tmp_path / "new" / "dir").is_dir() and (tmp_path / "new" / "dir").stat().st_mode & 0o777 == 0o755
    check_type(str(tmp_path / "new-file"), "FileOrCreate")
    assert (tmp_path / "new-file").is_file()
    for path, kind, what in ((tmp_path / "file", "Directory", "a directory"),
                             (tmp_path / "file", "DirectoryOrCreate", "a directory"),
                             (tmp_path, "File", "a file"), (tmp_path / "missing", "File", "a file"),
                             (tmp_path, "Socket", "a socket file"), (tmp_path, "CharDevice", "a character device"),
                             (tmp_path, "BlockDevice", "a block device")):
        with pytest.raises(MountError) as e:
            check_type(str(path), kind)
        assert str(e.value) == f"hostPath type check failed: {path} is not {what}"
    with pytest.raises(MountError, match="Sometimes is an invalid volume type"):
        check_type(str(tmp_path), "Sometimes")
    # A dangling symlink in the path's place is not replaced by FileOrCreate.
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(MountError):
        check_type(str(tmp_path / "dangling"), "FileOrCreate")
    assert not (tmp_path / "nowhere").exists()


def test_the_type_check_sees_the_allowed_path_only(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    container = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    plan(container, {}, {"data": str(tmp_path / "d")}, [tmp_path], lambda n, p: seen.append((n, p)))
    assert seen == [("data", str(tmp_path / "d"))]
    with pytest.raises(MountError):
        plan(container, {}, {"data": "/etc"}, [tmp_path], lambda n, p: seen.append((n, p)))
    assert len(seen) == 1
