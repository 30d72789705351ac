"""StatefulSets against a real server with its local node (runtime none) and the real kubectl: ordered start
(pod-1 made only once pod-0 is Ready), stable names and identities, scale down from the highest ordinal,
Parallel pod management, a rolling update (highest ordinal first, then the partition) with `kubectl rollout
status`, OnDelete, ControllerRevisions, events, and deletion through the garbage collector."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Server, start_server, wait_for

NODE = "sts-node"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("statefulsets") / "data"
    server = start_server(data, node=True, extra=["--node-name", NODE, "--node-runtime", "none"])
    yield server
    server.stop()


def _json(server: Server, *args: str) -> Any:
    return json.loads(server.kubectl(*args, "-o", "json").stdout)


def _manifest(name: str, replicas: int, image: str = "img:1", **spec: Any) -> str:
    body = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"serviceName": name, "replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}, **spec},
    }
    return json.dumps(body)


def _pods(server: Server, ns: str, name: str) -> dict[str, dict[str, Any]]:
    """The set's pods that are not being deleted, by name."""
    items = _json(server, "get", "pods", "-n", ns, "-l", f"app={name}")["items"]
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}


def _ready_time(pod: dict[str, Any]) -> str:
    return next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready")


def _rollout(server: Server, ns: str, name: str) -> str:
    return server.kubectl("rollout", "status", f"sts/{name}", "-n", ns, "--timeout=60s").stdout


def _events(server: Server, ns: str, name: str) -> list[tuple[str, str]]:
    items = _json(server, "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["reason"], e["message"]) for e in items]


def test_ordered_start_stable_identity_and_events(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts1")
    srv.kubectl("apply", "-n", "sts1", "-f", "-", input=_manifest("web", 3))
    assert "roll out complete: 3 new pods have been updated" in _rollout(srv, "sts1", "web")
    pods = _pods(srv, "sts1", "web")
    assert sorted(pods) == ["web-0", "web-1", "web-2"]
    # OrderedReady: each pod is created only after the one before it is Running and Ready.
    for prev, nxt in (("web-0", "web-1"), ("web-1", "web-2")):
        assert _ready_time(pods[prev]) <= pods[nxt]["metadata"]["creationTimestamp"]
        assert pods[prev]["metadata"]["creationTimestamp"] <= pods[nxt]["metadata"]["creationTimestamp"]
    pod = pods["web-1"]
    assert pod["spec"]["hostname"] == "web-1" and pod["spec"]["subdomain"] == "web"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1"
    sts = _json(srv, "get", "sts", "web", "-n", "sts1")
    status = sts["status"]
    assert status["replicas"] == status["readyReplicas"] == status["currentReplicas"] == 3
    assert status["updatedReplicas"] == status["availableReplicas"] == 3
    assert status["currentRevision"] == status["updateRevision"] == labels["controller-revision-hash"]
    assert status["observedGeneration"] == sts["metadata"]["generation"]
    revs = _json(srv, "get", "controllerrevisions", "-n", "sts1")["items"]
    assert [r["metadata"]["name"] for r in revs] == [status["updateRevision"]]
    assert revs[0]["revision"] == 1
    created = [m for r, m in _events(srv, "sts1", "web") if r == "SuccessfulCreate"]
    assert "create Pod web-0 in StatefulSet web successful" in created
    assert "READY" in srv.kubectl("get", "sts", "-n", "sts1").stdout


def test_a_deleted_pod_comes_back_under_its_name(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts2")
    srv.kubectl("apply", "-n", "sts2", "-f", "-", input=_manifest("db", 2))
    _rollout(srv, "sts2", "db")
    old_uid = _pods(srv, "sts2", "db")["db-0"]["metadata"]["uid"]
    srv.kubectl("delete", "pod", "db-0", "-n", "sts2")
    _rollout(srv, "sts2", "db")
    pods = wait_for(lambda: (p := _pods(srv, "sts2", "db")) and "db-0" in p and p, 30, "db-0 back")
    assert pods["db-0"]["metadata"]["uid"] != old_uid


def test_scale_down_from_the_highest_ordinal(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts3")
    srv.kubectl("apply", "-n", "sts3", "-f", "-", input=_manifest("web", 3))
    _rollout(srv, "sts3", "web")
    srv.kubectl("scale", "sts", "web", "-n", "sts3", "--replicas=1")
    wait_for(lambda: sorted(_pods(srv, "sts3", "web")) == ["web-0"], 30, "scaled to web-0")
    deleted = [m for r, m in _events(srv, "sts3", "web") if r == "SuccessfulDelete"]
    assert deleted == ["delete Pod web-2 in StatefulSet web successful",
                       "delete Pod web-1 in StatefulSet web successful"]
    srv.kubectl("scale", "sts", "web", "-n", "sts3", "--replicas=2")
    _rollout(srv, "sts3", "web")
    assert sorted(_pods(srv, "sts3", "web")) == ["web-0", "web-1"]


def test_parallel_pod_management(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts4")
    srv.kubectl("apply", "-n", "sts4", "-f", "-", input=_manifest("par", 3, podManagementPolicy="Parallel"))
    _rollout(srv, "sts4", "par")
    assert sorted(_pods(srv, "sts4", "par")) == ["par-0", "par-1", "par-2"]


def test_rolling_update_highest_first_and_partition(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts5")
    srv.kubectl("apply", "-n", "sts5", "-f", "-", input=_manifest("web", 3))
    _rollout(srv, "sts5", "web")
    first = _json(srv, "get", "sts", "web", "-n", "sts5")["status"]["updateRevision"]
    srv.kubectl("set", "image", "sts/web", "c=img:2", "-n", "sts5")
    out = _rollout(srv, "sts5", "web")
    assert "roll out complete: 3 new pods have been updated" in out
    pods = _pods(srv, "sts5", "web")
    assert {p["spec"]["containers"][0]["image"] for p in pods.values()} == {"img:2"}
    # Replaced from the highest ordinal down: web-2 was made first at the new revision, web-0 last.
    assert (pods["web-2"]["metadata"]["creationTimestamp"] <= pods["web-1"]["metadata"]["creationTimestamp"]
            <= pods["web-0"]["metadata"]["creationTimestamp"])
    status = _json(srv, "get", "sts", "web", "-n", "sts5")["status"]
    assert status["currentRevision"] == status["updateRevision"] != first
    assert len(_json(srv, "get", "controllerrevisions", "-n", "sts5")["items"]) == 2
    history = srv.kubectl("rollout", "history", "sts/web", "-n", "sts5").stdout.split("\n")
    assert [line.split()[0] for line in history[2:] if line.strip()] == ["1", "2"]
    srv.kubectl("rollout", "undo", "sts/web", "-n", "sts5")
    _rollout(srv, "sts5", "web")
    wait_for(lambda: {p["spec"]["containers"][0]["image"] for p in _pods(srv, "sts5", "web").values()} == {"img:1"},
             30, "undone to img:1")
    status = _json(srv, "get", "sts", "web", "-n", "sts5")["status"]
    assert status["updateRevision"] == first  # the first revision, renumbered as the newest
    revisions = {r["metadata"]["name"]: r["revision"] for r in
                 _json(srv, "get", "controllerrevisions", "-n", "sts5")["items"]}
    assert revisions[first] == 3
    srv.kubectl("set", "image", "sts/web", "c=img:2", "-n", "sts5")
    _rollout(srv, "sts5", "web")
    # A partition of 2 updates only web-2.
    srv.kubectl("patch", "sts", "web", "-n", "sts5", "-p",
                '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}')
    srv.kubectl("set", "image", "sts/web", "c=img:3", "-n", "sts5")
    assert "partitioned roll out complete: 1 new pods have been updated" in _rollout(srv, "sts5", "web")
    images = {n: p["spec"]["containers"][0]["image"] for n, p in _pods(srv, "sts5", "web").items()}
    assert images == {"web-0": "img:2", "web-1": "img:2", "web-2": "img:3"}


def test_on_delete_updates_only_deleted_pods(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts6")
    srv.kubectl("apply", "-n", "sts6", "-f", "-",
                input=_manifest("od", 2, updateStrategy={"type": "OnDelete"}))
    wait_for(lambda: len(_pods(srv, "sts6", "od")) == 2 and all(
        p["status"].get("phase") == "Running" for p in _pods(srv, "sts6", "od").values()), 30, "2 pods")
    srv.kubectl("set", "image", "sts/od", "c=img:2", "-n", "sts6")
    wait_for(lambda: _json(srv, "get", "sts", "od", "-n", "sts6")["status"].get("observedGeneration") == 2, 10,
             "generation 2 observed")
    assert {p["spec"]["containers"][0]["image"] for p in _pods(srv, "sts6", "od").values()} == {"img:1"}
    srv.kubectl("delete", "pod", "od-1", "-n", "sts6")

    def od1_image() -> str | None:
        pod = _pods(srv, "sts6", "od").get("od-1")
        return pod["spec"]["containers"][0]["image"] if pod else None

    assert wait_for(lambda: od1_image() == "img:2", 30, "od-1 at img:2")
    assert _pods(srv, "sts6", "od")["od-0"]["spec"]["containers"][0]["image"] == "img:1"


def test_delete_removes_the_pods(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts7")
    srv.kubectl("apply", "-n", "sts7", "-f", "-", input=_manifest("gone", 2))
    _rollout(srv, "sts7", "gone")
    srv.kubectl("delete", "sts", "gone", "-n", "sts7")
    wait_for(lambda: not _pods(srv, "sts7", "gone"), 30, "pods gone")
    wait_for(lambda: not _json(srv, "get", "controllerrevisions", "-n", "sts7")["items"], 30, "revisions gone")


def test_claims_from_volume_claim_templates(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts8")
    claim = {"metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}
    srv.kubectl("apply", "-n", "sts8", "-f", "-", input=_manifest("db", 2, volumeClaimTemplates=[claim]))
    _rollout(srv, "sts8", "db")
    claims = {c["metadata"]["name"]: c for c in _json(srv, "get", "pvc", "-n", "sts8")["items"]}
    assert sorted(claims) == ["data-db-0", "data-db-1"]
    assert claims["data-db-0"]["metadata"]["labels"] == {"app": "db"}
    assert "ownerReferences" not in claims["data-db-0"]["metadata"]
    volumes = _pods(srv, "sts8", "db")["db-1"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}} in volumes
    created = [m for r, m in _events(srv, "sts8", "db") if r == "SuccessfulCreate"]
    assert "create Claim data-db-0 Pod db-0 in StatefulSet db success" in created
    # Scaling down keeps the claims (persistentVolumeClaimRetentionPolicy Retain).
    srv.kubectl("scale", "sts", "db", "-n", "sts8", "--replicas=1")
    wait_for(lambda: sorted(_pods(srv, "sts8", "db")) == ["db-0"], 30, "scaled to db-0")
    assert len(_json(srv, "get", "pvc", "-n", "sts8")["items"]) == 2


def test_a_pod_the_api_refuses_is_a_failed_create_event(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts9")
    # A StatefulSet's pod spec is checked only when its pods are created (its volume mounts may name claims).
    body = json.loads(_manifest("bad", 1))
    body["spec"]["template"]["spec"]["containers"][0]["name"] = "Bad_Name"
    srv.kubectl("apply", "-n", "sts9", "-f", "-", input=json.dumps(body))

    def failed() -> list[str]:
        return [m for r, m in _events(srv, "sts9", "bad") if r == "FailedCreate"]

    [message] = wait_for(failed, 20, "a FailedCreate event")
    assert message.startswith('create Pod bad-0 in StatefulSet bad failed error: Pod "bad-0" is invalid: '
                              'spec.containers[0].name: Invalid value: "Bad_Name"')
    assert _pods(srv, "sts9", "bad") == {}
    # Retried with a growing delay, not in a loop: the one event's count stays small.
    items = _json(srv, "get", "events", "-n", "sts9", "--field-selector", "reason=FailedCreate")["items"]
    assert items[0]["count"] < 10


def test_restart_describe_and_foreground_deletion(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts10")
    srv.kubectl("apply", "-n", "sts10", "-f", "-", input=_manifest("rs", 2))
    _rollout(srv, "sts10", "rs")
    before = {n: p["metadata"]["uid"] for n, p in _pods(srv, "sts10", "rs").items()}
    srv.kubectl("rollout", "restart", "sts/rs", "-n", "sts10")
    _rollout(srv, "sts10", "rs")
    wait_for(lambda: (after := {n: p["metadata"]["uid"] for n, p in _pods(srv, "sts10", "rs").items()})
             and sorted(after) == sorted(before) and not set(after.values()) & set(before.values()), 30,
             "both pods replaced")
    described = srv.kubectl("describe", "sts", "rs", "-n", "sts10").stdout
    assert "Pods Status:" in described and "2 Running" in described
    assert "SuccessfulDelete" in described and "delete Pod rs-1 in StatefulSet rs successful" in described
    srv.kubectl("delete", "sts", "rs", "-n", "sts10", "--cascade=foreground")
    wait_for(lambda: srv.kubectl("get", "sts", "rs", "-n", "sts10", check=False).returncode != 0, 30, "set gone")
    assert _pods(srv, "sts10", "rs") == {}


def test_claims_of_a_scale_down_go_when_scaled_delete(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts11")
    claim = {"metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}
    policy = {"whenDeleted": "Retain", "whenScaled": "Delete"}
    srv.kubectl("apply", "-n", "sts11", "-f", "-", input=_manifest(
        "db", 2, volumeClaimTemplates=[claim], persistentVolumeClaimRetentionPolicy=policy))
    _rollout(srv, "sts11", "db")

    def claims() -> list[str]:
        return sorted(c["metadata"]["name"] for c in _json(srv, "get", "pvc", "-n", "sts11")["items"])

    assert claims() == ["data-db-0", "data-db-1"]
    srv.kubectl("scale", "sts", "db", "-n", "sts11", "--replicas=1")
    wait_for(lambda: claims() == ["data-db-0"], 30, "data-db-1 removed with its pod")
    assert sorted(_pods(srv, "sts11", "db")) == ["db-0"]


def test_claims_go_with_the_set_when_deleted_delete(srv: Server) -> None:
    srv.kubectl("create", "namespace", "sts12")
    claim = {"metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}
    policy = {"whenDeleted": "Delete", "whenScaled": "Retain"}
    srv.kubectl("apply", "-n", "sts12", "-f", "-", input=_manifest(
        "db", 2, volumeClaimTemplates=[claim], persistentVolumeClaimRetentionPolicy=policy))
    _rollout(srv, "sts12", "db")

    def claims() -> dict[str, dict]:
        return {c["metadata"]["name"]: c for c in _json(srv, "get", "pvc", "-n", "sts12")["items"]}

    owned = claims()
    assert sorted(owned) == ["data-db-0", "data-db-1"]
    uid = _json(srv, "get", "sts", "db", "-n", "sts12")["metadata"]["uid"]
    for c in owned.values():  # the set owns its claims, so the garbage collector removes them with it
        assert [(r["kind"], r["name"], r["uid"]) for r in c["metadata"]["ownerReferences"]] == [
            ("StatefulSet", "db", uid)]
    srv.kubectl("scale", "sts", "db", "-n", "sts12", "--replicas=1")  # whenScaled Retain: the claim stays
    wait_for(lambda: sorted(_pods(srv, "sts12", "db")) == ["db-0"], 30, "db-1 gone")
    assert sorted(claims()) == ["data-db-0", "data-db-1"]
    srv.kubectl("delete", "sts", "db", "-n", "sts12")
    wait_for(lambda: claims() == {}, 30, "the claims removed with the set")
