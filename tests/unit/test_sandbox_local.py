"""The sandbox helper's `local` mode (what `kubesat run` uses): the caller's own process enters a mount namespace
with a pod's volumes bound, keeps its uid and the environment it is given, and becomes the command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from kubesat.agent.runtime.process import HELPER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local sandbox is tested as root (and as nobody)")


def _run(tmp: Path, spec: dict, user: list[str] | None = None) -> tuple[int, str, str]:  # type: ignore[type-arg]
    spec_dir = tmp / "spec"
    spec_dir.mkdir(exist_ok=True)
    os.chown(spec_dir, spec["uid"], spec["gid"])  # the helper removes the spec once read
    spec_file = spec_dir / "spec.json"
    spec_file.write_text(json.dumps(spec))
    r, w = os.pipe()
    proc = subprocess.run([*(user or []), *HELPER, "local", str(spec_file), str(w)], pass_fds=(w,),
                          capture_output=True, text=True, timeout=30, check=False)
    os.close(w)
    failure = os.read(r, 4096).decode()
    os.close(r)
    return proc.returncode, proc.stdout, failure or proc.stderr[-2000:].strip()


def _spec(tmp: Path, argv: list[str], **extra: object) -> dict:  # type: ignore[type-arg]
    vol = tmp / "vol"
    vol.mkdir(exist_ok=True)
    (vol / "token").write_text("secret-token")
    scratch = tmp / "scratch"
    scratch.mkdir(exist_ok=True)
    spec = {"mounts": [{"source": str(vol), "subPath": "", "target": str(tmp / "missing" / "sa"), "readOnly": True}],
            "masks": [], "private": [], "proc": False, "scratch": str(scratch), "argv": argv,
            "env": {"PATH": os.environ["PATH"], "MINE": "kept"}, "uid": os.getuid(), "gid": os.getgid(),
            "groups": [], "userns": False, "cwd": "", "hostname": "my-pod"}
    spec.update(extra)
    return spec


def test_local_mode_binds_the_volume_keeps_the_user_and_exits_with_the_command(tmp_path: Path) -> None:
    script = (f'cat {tmp_path}/missing/sa/token; echo " $MINE $(id -u) $(hostname)"; '
              f'(echo x > {tmp_path}/missing/sa/new) 2>/dev/null || echo read-only; exit 3')
    code, out, failure = _run(tmp_path, _spec(tmp_path, ["sh", "-c", script]))
    assert failure == ""
    assert code == 3
    assert out.splitlines() == ["secret-token kept 0 my-pod", "read-only"]
    assert not (tmp_path / "missing").exists()  # the target was made in an overlay, not on the host


def test_local_mode_reports_a_missing_command(tmp_path: Path) -> None:
    code, _out, failure = _run(tmp_path, _spec(tmp_path, ["no-such-command-here"]))
    assert code == 127
    assert failure == 'exec: "no-such-command-here": executable file not found in $PATH'


def test_local_mode_in_a_user_namespace_runs_as_the_caller() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    tmp_path = Path(tempfile.mkdtemp(prefix="kubesat-sandbox-"))  # pytest's own is out of nobody's reach
    tmp_path.chmod(0o755)
    try:
        _as_nobody(tmp_path, setpriv)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _as_nobody(tmp_path: Path, setpriv: str) -> None:
    spec = _spec(tmp_path, ["sh", "-c", f'cat {tmp_path}/missing/sa/token; echo " $(id -u)"'], userns=True,
                 uid=65534, gid=65534)
    for p in (tmp_path / "vol", tmp_path / "scratch"):
        os.chown(p, 65534, 65534)
    code, out, failure = _run(tmp_path, spec, [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"])
    if "unshare" in failure:
        pytest.skip(f"no unprivileged user namespaces here: {failure}")
    assert (code, failure) == (0, "")
    assert out.strip() == "secret-token 65534"
