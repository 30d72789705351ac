"""The agent's pod manager against an in-process fake API and fake clocks: the token-only refresh (one
TokenRequest, one swapped file, the rest linked), rotation under a fast test clock at 80 % of each token's own
life, a jitter that survives a restart, and graceful termination (Killing, terminal status, teardown, the final
delete with a UID precondition)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubesat.agent import pods as pods_mod
from kubesat.agent.client import ApiError
from kubesat.agent.pods import UNKNOWN_TERMINATION, PodManager
from kubesat.agent.refresh import jitter_seconds, stable_jitter

T0 = 1_800_000_000.0
UID = "0d9d5c2e-0000-4000-8000-000000000001"
VOLUME = "kube-api-access-abcde"
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeApi:
    """Answers as the server does: TokenRequests issued on the real clock, the root CA ConfigMap, status patches."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, str, Any]] = []
        self.issued = 0
        self.pod: dict[str, Any] = {}

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        self.calls.append(("GET", path))
        if path == "/api/v1/namespaces/default/configmaps/kube-root-ca.crt":
            return {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": CA}}
        raise ApiError(404, "NotFound", path)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("POST", path))
        self.bodies.append(("POST", path, body))
        if not path.endswith("/token"):
            return body
        self.issued += 1
        seconds = body["spec"]["expirationSeconds"]
        iat = int(self.clock())
        claims = {"iat": iat, "exp": iat + seconds, "nbf": iat, "aud": ["https://kubernetes.default.svc"],
                  "sub": "system:serviceaccount:default:default", "jti": str(self.issued),
                  "kubernetes.io": {"namespace": "default", "pod": {"name": "p", "uid": UID}}}
        token = f"{_b64({'alg': 'RS256', 'kid': 'k'})}.{_b64(claims)}.c2ln"
        return {"spec": {"expirationSeconds": seconds},
                "status": {"token": token, "expirationTimestamp": _rfc3339(iat + seconds)}}

    async def patch(self, path: str, body: dict[str, Any], content_type: str = "") -> dict[str, Any]:
        self.calls.append(("PATCH", path))
        self.bodies.append(("PATCH", path, body))
        return dict(self.pod, status=body["status"])

    async def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(("DELETE", path))
        self.bodies.append(("DELETE", path, body))
        return {}

    def count(self, method: str, suffix: str) -> int:
        return sum(1 for m, p in self.calls if m == method and p.endswith(suffix))


def _pod(expiration: int = 600) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": UID, "resourceVersion": "1",
                     "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
        "spec": {"nodeName": "n1", "serviceAccountName": "default",
                 "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
                 "volumes": [{"name": VOLUME, "projected": {"defaultMode": 420, "sources": [
                     {"serviceAccountToken": {"path": "token", "expirationSeconds": expiration}},
                     {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                     {"downwardAPI": {"items": [{"path": "namespace",
                                                 "fieldRef": {"apiVersion": "v1",
                                                              "fieldPath": "metadata.namespace"}}]}}]}}]},
        "status": {"phase": "Pending"},
    }


def _manager(root: Path, api: FakeApi, real: Clock, token_clock: Clock | None = None) -> PodManager:
    pm = PodManager(api, "n1", root, lambda: {}, "127.0.0.1", clock=real,  # type: ignore[arg-type]
                    token_clock=token_clock, rand=lambda: 0.0)
    api.pod = _pod()
    return pm


async def _drain(pm: PodManager) -> None:
    """Run the sync workers' queue, then the status workers' (as the agent's two pools do)."""
    while not pm._queue.empty() or not pm._status_queue.empty():
        if not pm._queue.empty():
            uid = pm._queue.get_nowait()
            pm._queued.discard(uid)
            await pm.work(uid)
        else:
            uid = pm._status_queue.get_nowait()
            pm._status_queued.discard(uid)
            await pm.report(uid)


def _events(pm: PodManager) -> list[dict[str, Any]]:
    out = []
    while not pm.events._queue.empty():
        out.append(pm.events._queue.get_nowait())
    return out


def _vol(root: Path) -> Path:
    return root / "pods" / UID / "volumes" / "kubernetes.io~projected" / VOLUME


def test_a_due_token_is_refreshed_alone_and_only_its_file_is_swapped(tmp_path: Path) -> None:
    async def main() -> None:
        real, tok = Clock(T0), Clock(T0)  # only the refresh clock moves: no periodic re-sync meanwhile
        api = FakeApi(real)
        pm = _manager(tmp_path, api, real, tok)
        pm.offer(_pod())
        await _drain(pm)
        vol = _vol(tmp_path)
        first = (vol / "token").read_text()
        assert (vol / "ca.crt").read_text() == CA and (vol / "namespace").read_text() == "default"
        assert api.count("POST", "/token") == 1 and api.count("GET", "/kube-root-ca.crt") == 1
        assert api.count("PATCH", "/status") == 1
        ca_inode, data_before = os.stat(vol / "ca.crt").st_ino, os.readlink(vol / "..data")
        state = pm.pods[UID]
        assert "managedFields" not in state.obj["metadata"]  # the pod is kept trimmed
        assert "command" not in state.obj["spec"]["containers"][0]

        # Our own status write comes back through the watch: nothing is fetched or written again.
        pm.offer(dict(api.pod, status={"phase": "Running", "containerStatuses": [
            {"name": "app", "state": {"running": {"startedAt": _rfc3339(T0)}}}]}))
        await _drain(pm)
        assert len(api.calls) == 3 and os.readlink(vol / "..data") == data_before

        # Not due before its refresh point (80 % of 600 s, less at most 9 s of jitter) ...
        tok.now = T0 + 470
        pm.check(real(), tok(), 1e9)
        await _drain(pm)
        assert api.count("POST", "/token") == 1
        # ... due after it: one TokenRequest, no ConfigMap read, no status write, only the token file new.
        tok.now = T0 + 481
        pm.check(real(), tok(), 1e9)
        await _drain(pm)
        assert api.count("POST", "/token") == 2
        assert api.count("GET", "/kube-root-ca.crt") == 1 and api.count("PATCH", "/status") == 1
        assert (vol / "token").read_text() != first
        assert os.readlink(vol / "..data") != data_before
        assert os.stat(vol / "ca.crt").st_ino == ca_inode, "the unchanged file is linked, not rewritten"
        assert (vol / "ca.crt").read_text() == CA and (vol / "namespace").read_text() == "default"
        assert oct(os.stat(vol / "token").st_mode & 0o777) == oct(0o644)
        # The replaced generation goes once its grace (1 s) is over.
        time.sleep(1.05)
        pm.check(real(), tok(), 2e9)
        assert sorted(p.name for p in vol.iterdir() if p.name.startswith("..2")) == \
            [os.readlink(vol / "..data")]
    asyncio.run(main())


def test_a_fast_clock_rotates_at_80_percent_of_each_tokens_own_life(tmp_path: Path) -> None:
    """The server stamps tokens with the real clock; the agent's refresh clock runs 60x. Each token must live
    480 s (less jitter) of refresh-clock time, 8 s of real time, however far the fast clock has run ahead."""
    async def main() -> None:
        rate = 60.0
        real = Clock(T0)
        fast = Clock(T0)
        api = FakeApi(real)
        pm = _manager(tmp_path, api, real, fast)
        pm.offer(_pod())
        await _drain(pm)
        step = 0.05
        for _ in range(int(80 / step)):
            real.now += step
            fast.now = T0 + (real.now - T0) * rate
            pm.check(real(), fast(), 1e9)
            await _drain(pm)
        # 80 s real: one token at start, then one each 480 s less jitter of fast time (7.85-8 s real).
        assert 10 <= api.issued <= 11, api.issued
    asyncio.run(main())


def test_an_adopted_token_keeps_its_refresh_point(tmp_path: Path) -> None:
    async def main() -> None:
        real = Clock(T0)
        api = FakeApi(real)
        pm = _manager(tmp_path, api, real)
        pm.offer(_pod())
        await _drain(pm)
        (held,) = pm.pods[UID].tokens.values()
        # A restart 100 s later: a new manager on the same root adopts the token without asking for a new one,
        # with the same jitter and refresh point (the jitter comes from the token, not a new draw).
        real.now = T0 + 100
        api2 = FakeApi(real)
        pm2 = _manager(tmp_path, api2, real)
        pm2.offer(dict(_pod(), status={"phase": "Running"}))
        await _drain(pm2)
        (adopted,) = pm2.pods[UID].tokens.values()
        assert api2.count("POST", "/token") == 0
        assert adopted.value == held.value
        assert (adopted.jitter, adopted.due) == (held.jitter, held.due)
    asyncio.run(main())


def test_stable_jitter_is_per_token() -> None:
    draws = [stable_jitter(f"token-{i}") for i in range(1000)]
    assert draws[0] == stable_jitter("token-0")
    assert all(0.0 <= d < 1.0 for d in draws)
    assert len({jitter_seconds(d) for d in draws}) == 10  # spread over the kubelet's 0..9 s


def test_started_events_once_running(tmp_path: Path) -> None:
    async def main() -> None:
        real = Clock(T0)
        api = FakeApi(real)
        pm = _manager(tmp_path, api, real)
        pm.offer(_pod())
        await _drain(pm)
        (event,) = _events(pm)
        assert (event["type"], event["reason"], event["message"]) == ("Normal", "Started", "Started container app")
        assert event["involvedObject"]["fieldPath"] == "spec.containers{app}"
        assert event["source"] == {"component": "kubelet", "host": "n1"}
    asyncio.run(main())


class StoppingRuntime:
    """The part of a runtime termination uses: its processes exit 0 on SIGTERM; it records its own Killing."""

    name = "fake"

    def __init__(self) -> None:
        self.stops: list[tuple[str, float]] = []
        self.forgotten: list[str] = []

    async def stop_pod(self, pod_uid: str, grace_seconds: float) -> None:
        self.stops.append((pod_uid, grace_seconds))

    def container_statuses(self, pod_uid: str) -> list[dict[str, Any]] | None:
        return [{"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]

    def forget_pod(self, pod_uid: str) -> None:
        self.forgotten.append(pod_uid)


@pytest.mark.parametrize("with_runtime", [False, True])
def test_a_deleted_pod_is_terminated_as_the_kubelet_does(tmp_path: Path, with_runtime: bool) -> None:
    async def main() -> None:
        real = Clock(T0)
        api = FakeApi(real)
        pm = _manager(tmp_path, api, real)
        runtime = StoppingRuntime()
        pm.offer(_pod())
        await _drain(pm)
        _events(pm)
        if with_runtime:
            pm.runtime = runtime  # type: ignore[assignment]
        running = dict(api.pod, status=api.bodies[-1][2]["status"])
        deleting = json.loads(json.dumps(running))
        deleting["metadata"].update(deletionTimestamp=_rfc3339(T0 + 30), deletionGracePeriodSeconds=30)
        api.calls.clear()
        api.bodies.clear()
        pm.offer(deleting)
        await _drain(pm)
        if with_runtime:
            assert not _events(pm)  # a runtime records its own Killing
        else:
            (killing,) = _events(pm)
            assert (killing["reason"], killing["message"]) == ("Killing", "Stopping container app")
            assert killing["involvedObject"]["fieldPath"] == "spec.containers{app}"
        assert [c[0] for c in api.calls] == ["PATCH", "DELETE"]
        status = api.bodies[0][2]["status"]
        (cs,) = status["containerStatuses"]
        assert list(cs["state"]) == ["terminated"] and cs["ready"] is False and cs["image"] == "busybox"
        conditions = {c["type"]: (c["status"], c.get("reason")) for c in status["conditions"]}
        if with_runtime:
            assert runtime.stops == [(UID, 30.0)] and runtime.forgotten == [UID]
            assert cs["state"]["terminated"] == {"exitCode": 0, "reason": "Completed"}
            assert status["phase"] == "Succeeded" and conditions["Ready"] == ("False", "PodCompleted")
        else:
            assert cs["state"]["terminated"] == UNKNOWN_TERMINATION
            assert status["phase"] == "Failed" and conditions["Ready"] == ("False", "PodFailed")
        assert conditions["ContainersReady"] == conditions["Ready"]
        assert conditions["PodReadyToStartContainers"] == ("False", None)
        assert api.bodies[1][2] == {"gracePeriodSeconds": 0, "preconditions": {"uid": UID}}
        assert not (tmp_path / "pods" / UID).exists()
        # The server's echo of our status write changes nothing; nor does the next tick.
        pm.offer(deleting)
        await _drain(pm)
        pm.check(real() + 100, real() + 100, 1e9)
        await _drain(pm)
        assert len(api.calls) == 2 and not _events(pm)
    asyncio.run(main())


def test_a_failed_final_delete_is_retried_without_killing_again(tmp_path: Path) -> None:
    async def main() -> None:
        real = Clock(T0)
        api = FakeApi(real)
        pm = _manager(tmp_path, api, real)
        pm.offer(_pod())
        await _drain(pm)
        _events(pm)
        deleting = dict(api.pod, status=api.bodies[-1][2]["status"])
        deleting["metadata"] = dict(deleting["metadata"], deletionTimestamp=_rfc3339(T0 + 30),
                                    deletionGracePeriodSeconds=30)
        real_delete = api.delete

        async def unreachable(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
            raise ApiError(503, "ServiceUnavailable", "down")
        api.delete = unreachable  # type: ignore[method-assign]
        pm.offer(deleting)
        await _drain(pm)
        assert len(_events(pm)) == 1
        api.delete = real_delete  # type: ignore[method-assign]
        pm.check(real(), real(), 1e9)
        assert UID in pm._queued  # retried once its backoff is over
        pm.pods[UID].retry_at = 0.0
        await _drain(pm)
        assert api.count("DELETE", "/pods/p") == 1 and not _events(pm)
    asyncio.run(main())


def test_the_object_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pods_mod, "MAX_CACHED_OBJECTS", 3)

    async def main() -> None:
        real = Clock(T0)
        api = FakeApi(real)
        pm = _manager(tmp_path, api, real)

        async def get(path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
            return {"data": {"k": path}}
        api.get = get  # type: ignore[method-assign]
        for i in range(10):
            await pm._object("configmaps", "default", f"cm{i}")
            assert len(pm._objects) <= 3
    asyncio.run(main())
