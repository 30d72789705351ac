"""Token rotation end to end without waiting an hour: a real server and a real agent whose refresh clock runs
fast (`KUBESAT_AGENT_CLOCK_RATE`). A projected token with `expirationSeconds: 600` is replaced after its
refresh point (80 % of its life, less the jitter) and not before; the old token keeps authenticating until it
expires (the server's clock is then moved past its `exp` plus leeway: `clockshift`), the new one works; and a
reader looping on `open(path).read()` through a hundred and more rotations only ever reads whole tokens the
server signed."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .conftest import Server, start_server, wait_for

CLOCKSHIFT = Path(__file__).resolve().parent / "clockshift"
LEEWAY = 60  # the server accepts a token this long past its exp (go-jose's default leeway)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose wall clock the test can move forward (clockshift, SIGUSR1)."""
    tmp = tmp_path_factory.mktemp("rotation")
    offset = tmp / "clock-offset"
    offset.write_text("0")
    env = dict(os.environ, KUBESAT_TEST_CLOCK_OFFSET_FILE=str(offset),
               PYTHONPATH=os.pathsep.join(p for p in (str(CLOCKSHIFT), os.environ.get("PYTHONPATH")) if p))
    srv = start_server(tmp / "data", env=env)
    yield srv
    srv.stop()


def _shift_server_clock(server: Server, seconds: float) -> None:
    path = server.data_dir.parent / "clock-offset"
    path.write_text(f"{seconds:.3f}")
    server.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)


def _start_agent(server: Server, node: str, tmp: Path, rate: float,
                 offset: float = 0.0) -> tuple[subprocess.Popen[bytes], Path]:
    kubeconfig = tmp / f"{node}.kubeconfig"
    kubeconfig.write_bytes(subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", node,
                                           "--data-dir", str(server.data_dir)], capture_output=True,
                                          check=True).stdout)
    root = tmp / f"{node}-root"
    with open(tmp / f"{node}-agent.log", "ab") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig),
                                 "--node-name", node, "--root", str(root), "--port", "0"],
                                stdout=subprocess.DEVNULL, stderr=logf,
                                env=dict(os.environ, KUBESAT_AGENT_CLOCK_RATE=str(rate),
                                         KUBESAT_AGENT_CLOCK_OFFSET=str(offset)))
    return proc, root


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _token_pod(server: Server, name: str, node: str) -> Path:
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  containers:
  - name: app
    image: busybox
    volumeMounts: [{{name: tok, mountPath: /var/run/tok}}]
  volumes:
  - name: tok
    projected:
      sources:
      - serviceAccountToken: {{path: token, expirationSeconds: 600}}
""")
    return Path(json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)["metadata"]["uid"])


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(_b64(token.split(".")[1]))
    return claims


def _review(server: Server, token: str) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(server.kubectl("create", "-o", "json", "-f", "-", input=json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})).stdout)["status"]
    return status


class Verifier:
    """Checks that a string is one whole JWS the server signed (RS256, a key of its JWKS)."""

    def __init__(self, server: Server) -> None:
        jwks = json.loads(server.kubectl("get", "--raw", "/openid/v1/jwks").stdout)
        self.keys = {k["kid"]: rsa.RSAPublicNumbers(int.from_bytes(_b64(k["e"])), int.from_bytes(_b64(k["n"])))
                     .public_key() for k in jwks["keys"] if k.get("kty") == "RSA"}

    def problem(self, token: str) -> str | None:
        parts = token.split(".")
        if len(parts) != 3:
            return f"{len(parts)} parts"
        try:
            header = json.loads(_b64(parts[0]))
            json.loads(_b64(parts[1]))
            key = self.keys[header["kid"]]
            key.verify(_b64(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, KeyError, InvalidSignature) as e:
            return f"{type(e).__name__}: {e}"
        return None


def test_a_reader_never_sees_a_partial_or_mixed_token(server: Server, tmp_path: Path) -> None:
    proc, root = _start_agent(server, "rot-reader", tmp_path, rate=100_000)  # every token due at each tick
    try:
        uid = _token_pod(server, "reader", "rot-reader")
        path = root / "pods" / str(uid) / "volumes" / "kubernetes.io~projected" / "tok" / "token"
        wait_for(lambda: path.exists(), 30, "the token file")
        verifier = Verifier(server)
        seen: dict[str, int] = {}
        problems: list[str] = []
        reads = 0
        stop = threading.Event()

        def reader() -> None:
            nonlocal reads
            while not stop.is_set():
                try:
                    with open(path) as f:
                        value = f.read()
                except OSError as e:
                    problems.append(f"read failed: {e}")
                    continue
                reads += 1
                if value not in seen:
                    seen[value] = reads
                    bad = verifier.problem(value)
                    if bad:
                        problems.append(f"read {reads}: {bad}: {value[:40]}...")

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        deadline = time.monotonic() + 35
        while len(seen) < 130 and time.monotonic() < deadline and not problems:
            time.sleep(0.2)
        stop.set()
        thread.join(timeout=10)
        assert not problems, problems[:5]
        assert len(seen) >= 100, f"only {len(seen)} tokens in {reads} reads"
        tokens = list(seen)
        for token in (tokens[0], tokens[len(tokens) // 2], tokens[-1]):
            review = _review(server, token)
            assert review.get("authenticated") is True, review
            assert review["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [str(uid)]
    finally:
        _stop(proc)


def test_a_token_is_replaced_after_its_refresh_point_and_the_old_one_lives_until_exp(
        server: Server, tmp_path: Path) -> None:
    rate = 60.0  # 480 s (80 % of 600 s) of token life pass in 8 s
    proc, root = _start_agent(server, "rot-sched", tmp_path, rate=rate)
    try:
        uid = _token_pod(server, "sched", "rot-sched")
        path = root / "pods" / str(uid) / "volumes" / "kubernetes.io~projected" / "tok" / "token"
        old = str(wait_for(lambda: path.exists() and path.read_text(), 30, "the token file"))
        iat, exp = _claims(old)["iat"], _claims(old)["exp"]
        assert exp - iat == 600
        # The agent started before the token was issued, so its clock says at most (t - iat) * rate + 1 s of
        # age at real time t: the refresh (past 480 s less at most 9 s of jitter) cannot come before this.
        earliest = iat + (480 - 9 - 1 - 1) / rate
        unchanged_until = time.time()
        while True:
            current = path.read_text()
            if current != old:
                break
            unchanged_until = time.time()
            assert unchanged_until < iat + 30, "no refresh within 30 s"
            time.sleep(0.02)
        assert unchanged_until >= earliest - 0.5, "replaced before the refresh point"
        assert _claims(current)["iat"] >= iat
        # Both work now: the old one has most of its life left.
        assert _review(server, old)["authenticated"] is True
        assert _review(server, current)["authenticated"] is True
        _stop(proc)
        newest = path.read_text()
        assert _review(server, newest)["authenticated"] is True
        # The node's log says so, as `journalctl -u kubelet | grep -i token` would show it (never the token).
        lines = [ln for ln in (tmp_path / "rot-sched-agent.log").read_text().splitlines() if "Token refreshed" in ln]
        assert len(lines) >= 2, lines
        assert 'pod="default/sched" serviceAccount="default" audiences=[\'(API audiences)\'] expirationSeconds=600' \
            in lines[-1]
        assert not any(old in ln or newest in ln for ln in lines)
        # Move the server past the old token's exp (and leeway): the old token is refused, the newest works.
        # The newest was issued later than the old one by more than the margin this leaves it.
        newest_exp = _claims(newest)["exp"]
        assert newest_exp > exp, "the newest token is the old one"
        server_now = exp + LEEWAY + 1
        _shift_server_clock(server, server_now - time.time())
        assert newest_exp + LEEWAY > server_now + 1
        assert _review(server, newest)["authenticated"] is True
        review = _review(server, old)
        assert review.get("authenticated") is not True, review
    finally:
        if proc.poll() is None:
            _stop(proc)
        _shift_server_clock(server, 0)


def _ready(server: Server, node: str) -> dict[str, Any]:
    """The troubleshooting guide's step 5: `kubectl get node NODE -o jsonpath='{...Ready}'`."""
    out = server.kubectl("get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")]}").stdout
    ready: dict[str, Any] = json.loads(out)
    return ready


def test_a_stopped_agent_lets_the_token_expire_and_its_restart_renews_it(server: Server, tmp_path: Path) -> None:
    """The guide's "token expired" failure mode, for real: the node's agent is stopped, the pod's token passes
    its expiry (the server's clock moved on), the app's token is refused and step 5 finds the node not Ready;
    the fix (the kubelet healthy again) puts a new, working token in the same file."""
    proc, root = _start_agent(server, "exp-stop", tmp_path, rate=1.0)
    try:
        uid = _token_pod(server, "expiring", "exp-stop")
        path = root / "pods" / str(uid) / "volumes" / "kubernetes.io~projected" / "tok" / "token"
        old = str(wait_for(lambda: path.exists() and path.read_text(), 30, "the token file"))
        wait_for(lambda: _ready(server, "exp-stop")["status"] == "True", 30, "the node Ready")
        _stop(proc)
        ready = _ready(server, "exp-stop")
        assert (ready["status"], ready["reason"], ready["message"]) == (
            "False", "KubeletNotReady", "node is shutting down")
        ahead = _claims(old)["exp"] + LEEWAY + 1 - time.time()
        _shift_server_clock(server, ahead)
        assert path.read_text() == old  # nobody renewed it
        review = _review(server, old)
        assert review.get("authenticated") is not True and "expired" in review.get("error", ""), review
        # The kubelet back (its refresh clock where the server's is): the expired token is replaced at once.
        proc, root = _start_agent(server, "exp-stop", tmp_path, rate=1.0, offset=ahead)
        new = str(wait_for(lambda: (t := path.read_text()) != old and t, 30, "a new token in the same file"))
        assert _review(server, new)["authenticated"] is True
        assert _claims(new)["exp"] > _claims(old)["exp"] + LEEWAY
        wait_for(lambda: _ready(server, "exp-stop")["status"] == "True", 30, "the node Ready again")
    finally:
        if proc.poll() is None:
            _stop(proc)
        _shift_server_clock(server, 0)
