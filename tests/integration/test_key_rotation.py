"""`kubesat keys rotate` during a stream of TokenRequests and legacy token Secrets: no token is lost to it.

The server runs with its wall clock under the test's control (clockshift/sitecustomize.py), so the
retired keys can be driven past their retirement in seconds: keys stay while any valid token needs
them, and go once none can.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from kubesat.tokens.jwt import NO_KEYS
from kubesat.tokens.keyring import LEEWAY, PERSIST_AHEAD, KeyRing

from .conftest import Server, start_server, wait_for

pytestmark = pytest.mark.integration

CLOCKSHIFT = Path(__file__).resolve().parent / "clockshift"
LIFETIMES = (600, 3600, 48 * 3600)
NS = "rot"
BURST = 8  # 48 h TokenRequests (and legacy Secrets) sent right after a rotation
BURST_CONNECTIONS = 4


def claims(token: str) -> tuple[dict, dict]:
    def seg(s: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))

    h, p, _ = token.split(".")
    return seg(h), seg(p)


def kid(token: str) -> str:
    return claims(token)[0]["kid"]


@dataclass
class Stream:
    """A stream of short-lived TokenRequests, and right after each rotation a burst of 48 h tokens and
    (when `legacy`) legacy token Secrets: the server most likely still signs with the key just retired."""

    server: Server
    legacy: bool
    bound: list[tuple[str, int]] = field(default_factory=list)  # (token, expirationSeconds)
    secrets: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def token(self, s: requests.Session, life: int) -> None:
        self.bound.append((issue(self.server, s, life), life))

    def secret(self, s: requests.Session) -> None:
        name = f"legacy-{next(self.numbers)}"
        create(self.server, s, f"/api/v1/namespaces/{NS}/secrets", {
            "metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": "app"}},
            "type": "kubernetes.io/service-account-token"})
        self.secrets.append(name)

    def short_lived(self, first: int) -> None:
        s = admin_session(self.server)
        i = first
        while not self.stop.is_set():
            self.token(s, LIFETIMES[i % 2])
            i += 1
            time.sleep(0.05)

    def burst(self, pool: ThreadPoolExecutor, sessions: list[requests.Session]) -> None:
        jobs = [pool.submit(self.token, sessions[i % len(sessions)], LIFETIMES[2]) for i in range(BURST)]
        if self.legacy:
            jobs += [pool.submit(self.secret, sessions[i % len(sessions)]) for i in range(BURST)]
        for j in jobs:
            j.result()

    def run(self, pauses: list[float]) -> None:
        """Rotate after each pause (0: right after the previous rotation's burst) during the stream."""
        workers = [threading.Thread(target=self.short_lived, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        try:
            with ThreadPoolExecutor(BURST_CONNECTIONS) as pool:
                sessions = [admin_session(self.server) for _ in range(BURST_CONNECTIONS)]
                for pause in pauses:
                    time.sleep(pause)
                    rotate(self.server)
                    self.burst(pool, sessions)
                time.sleep(1.1)  # past the server's reload of the last rotation
                self.burst(pool, sessions)
        finally:
            self.stop.set()
            for w in workers:
                w.join()

    def legacy_tokens(self) -> list[str]:
        s = admin_session(self.server)

        def token(name: str) -> str:
            def filled() -> str:
                r = s.get(f"{self.server.url}/api/v1/namespaces/{NS}/secrets/{name}",
                          verify=str(self.server.ca_file), timeout=30)
                return (r.json().get("data") or {}).get("token", "")

            return base64.b64decode(wait_for(filled, 20, f"secret {name} gets a token")).decode()

        return [token(n) for n in self.secrets]


def admin_session(server: Server) -> requests.Session:
    s = requests.Session()
    s.cert = (str(server.data_dir / "pki" / "admin.crt"), str(server.data_dir / "pki" / "admin.key"))
    return s


def create(server: Server, s: requests.Session, path: str, body: dict) -> dict:
    r = s.post(server.url + path, json=body, verify=str(server.ca_file), timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def issue(server: Server, s: requests.Session, life: int) -> str:
    out = create(server, s, f"/api/v1/namespaces/{NS}/serviceaccounts/app/token", {"spec": {"expirationSeconds": life}})
    return out["status"]["token"]


def rotate(server: Server) -> None:
    """What `kubesat keys rotate` does (its output is tested with the other token tests), minus a process start."""
    KeyRing(server.data_dir).rotate()


def key_status(server: Server, now: float) -> dict[str, str]:
    """kid -> status as `kubesat keys list` shows it at `now`."""
    return {r["kid"]: r["status"] for r in KeyRing(server.data_dir).rows(now)}


def reviews(server: Server, tokens: list[str]) -> list[dict]:
    """TokenReview status of each token, over four keep-alive connections."""
    sessions = threading.local()

    def review(token: str) -> dict:
        if not hasattr(sessions, "s"):
            sessions.s = admin_session(server)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        return create(server, sessions.s, "/apis/authentication.k8s.io/v1/tokenreviews", body)["status"]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(review, tokens))


def published(server: Server) -> set[str]:
    r = admin_session(server).get(server.url + "/openid/v1/jwks", verify=str(server.ca_file), timeout=30)
    assert r.status_code == 200, r.text
    return {k["kid"] for k in r.json()["keys"]}


def shift_clock(server: Server, offset_file: Path, seconds: float) -> None:
    """Move the server's wall clock `seconds` ahead of real time and wait until it has."""
    offset_file.write_text(str(seconds))
    server.proc.send_signal(signal.SIGUSR1)
    s = admin_session(server)

    def moved() -> bool:
        return abs(claims(issue(server, s, 3600))[1]["iat"] - (time.time() + seconds)) < 5

    wait_for(moved, 10, "the server's clock moved")


def unauthenticated(statuses: list[dict]) -> list[dict]:
    return [s for s in statuses if not s.get("authenticated")]


def test_rotations_during_issuance_lose_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offset_file = tmp_path / "clock-offset"
    offset_file.write_text("0")
    monkeypatch.setenv("KUBESAT_TEST_CLOCK_OFFSET_FILE", str(offset_file))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(CLOCKSHIFT), os.environ.get("PYTHONPATH"))
                                                     if p))
    server = start_server(tmp_path / "data")
    try:
        server.kubectl("create", "namespace", NS)
        server.kubectl("create", "serviceaccount", "app", "-n", NS)
        # Phase 1, TokenRequests only: each key retired here can never have signed a legacy token.
        # Back-to-back rotations retire a key the server has only just started signing with.
        first = Stream(server, legacy=False)
        first.run([0.3, 0])
        # The key signing at the end of phase 1 signs on into phase 2; the others were retired in phase 1.
        phase1_retired = {kid(t) for t, _ in first.bound} - {k for k, st in key_status(server, time.time()).items()
                                                             if st == "signing"}
        # Phase 2, TokenRequests and legacy token Secrets.
        second = Stream(server, legacy=True)
        second.run([0.3, 0, 0.3])
        bound = first.bound + second.bound
        legacy = second.legacy_tokens()
        assert phase1_retired and len({kid(t) for t in legacy}) >= 2, "rotations happened mid-stream"

        # Now: every token issued authenticates.
        assert unauthenticated(reviews(server, [t for t, _ in bound] + legacy)) == []

        # The bookkeeping survives a restart.
        server.stop()
        server = start_server(tmp_path / "data")

        # 47 hours on: the 48 h tokens and the legacy tokens still authenticate, the shorter ones not.
        shift_clock(server, offset_file, 47 * 3600)
        long_lived = [t for t, life in bound if life == 48 * 3600]
        short = [t for t, life in bound if life < 48 * 3600]
        assert unauthenticated(reviews(server, long_lived + legacy)) == []
        assert len(unauthenticated(reviews(server, short[::10]))) == len(short[::10])
        assert {kid(t) for t in long_lived + legacy} <= published(server)

        # Past the last 48 h token (and the bound persisted an hour ahead): the keys retired in phase 1
        # are dropped; the keys that signed legacy tokens stay for good, and so do their tokens.
        last_exp = max(claims(t)[1]["exp"] for t in long_lived)
        offset = last_exp + PERSIST_AHEAD + LEEWAY + 60 - time.time()
        shift_clock(server, offset_file, offset)
        status = key_status(server, time.time() + offset)
        assert {status[k] for k in phase1_retired} == {"expired"}
        assert {status[kid(t)] for t in legacy} <= {"signing", "verifying"}
        assert unauthenticated(reviews(server, legacy)) == []
        phase1_tokens = [t for t, _ in bound if kid(t) in phase1_retired]
        assert all(NO_KEYS in s["error"] for s in reviews(server, phase1_tokens)), "dropped, not merely expired"
    finally:
        server.stop()
