"""Deployments and ReplicaSets against a real server with its local node (runtime none) and the real kubectl:
the seed's deployment runs two pods whose tokens are bound to each, scaling to zero and back, rolling updates
with `kubectl rollout status|history|undo|restart|pause|resume`, a new ServiceAccount rolled out (the old pods'
tokens stop working once they are gone), Recreate, and deletion through the garbage collector."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from .conftest import Server, start_server, wait_for

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
NODE = "deploy-node"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("deployments") / "data"
    server = start_server(data, node=True, extra=["--node-name", NODE, "--node-runtime", "none"])
    yield server
    server.stop()


def _json(server: Server, *args: str) -> Any:
    return json.loads(server.kubectl(*args, "-o", "json").stdout)


def _pods(server: Server, ns: str, selector: str) -> list[dict[str, Any]]:
    """The pods of a selector that are not being deleted."""
    items = _json(server, "get", "pods", "-n", ns, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _running(server: Server, ns: str, selector: str, n: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        pods = _pods(server, ns, selector)
        ok = len(pods) == n and all(p["status"].get("phase") == "Running" for p in pods)
        return pods if ok else None
    return wait_for(check, 30, f"{n} running pods for {selector}")


def _rollout_status(server: Server, ns: str, name: str) -> str:
    return server.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=30s").stdout


def _replica_sets(server: Server, ns: str) -> dict[str, dict[str, Any]]:
    """The namespace's ReplicaSets by revision."""
    items = _json(server, "get", "rs", "-n", ns)["items"]
    return {rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs for rs in items}


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _token(server: Server, pod: dict[str, Any], volume: str) -> str:
    path = (server.data_dir / "node" / "pods" / pod["metadata"]["uid"] / "volumes" / "kubernetes.io~projected"
            / volume / "token")
    return wait_for(lambda: path.is_file() and path.read_text(), 20, f"the token of {pod['metadata']['name']}")


def _review(server: Server, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
    return json.loads(server.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(body)).stdout)["status"]


def _create(server: Server, ns: str, name: str, replicas: int = 2, *extra: str) -> None:
    server.kubectl("create", "namespace", ns)
    server.kubectl("create", "deployment", name, "-n", ns, "--image=img:1", f"--replicas={replicas}", *extra)


def test_seed_deployment_runs_two_pods_each_with_a_token_bound_to_it(srv: Server) -> None:
    srv.kubectl("create", "namespace", "production")
    srv.kubectl("apply", "-f", str(SEEDS / "001-service-account.yaml"))
    out = srv.kubectl("apply", "-f", str(SEEDS / "001-deployment-fixed.yaml")).stdout
    assert "deployment.apps/app-controller created" in out
    assert 'deployment "app-controller" successfully rolled out' in _rollout_status(srv, "production",
                                                                                       "app-controller")
    pods = _running(srv, "production", "app=app-controller", 2)
    (rs,) = _replica_sets(srv, "production").values()
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"app-controller-{h}"
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"app-controller-{h}-")
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert pod["spec"]["serviceAccountName"] == "app-controller"
        token = _token(srv, pod, "sa-token")
        claims = _claims(token)
        assert claims["aud"] == ["https://kubernetes.default.svc"]
        assert claims["kubernetes.io"]["pod"] == {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
        assert claims["sub"] == "system:serviceaccount:production:app-controller"
        review = _review(srv, token, ["https://kubernetes.default.svc"])
        assert review["authenticated"] is True
        assert review["user"]["extra"]["authentication.kubernetes.io/pod-name"] == [pod["metadata"]["name"]]
    deploy = _json(srv, "get", "deployment", "-n", "production", "app-controller")
    assert deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert deploy["metadata"]["generation"] == 1 and deploy["status"]["observedGeneration"] == 1
    assert {k: deploy["status"].get(k) for k in ("replicas", "updatedReplicas", "readyReplicas",
                                                  "availableReplicas")} == dict.fromkeys(
        ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"), 2)
    reasons = {c["type"]: c["reason"] for c in deploy["status"]["conditions"]}
    assert reasons == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
    events = srv.kubectl("get", "events", "-n", "production").stdout
    assert f"Scaled up replica set app-controller-{h} from 0 to 2" in events
    assert f"Created pod: {pods[0]['metadata']['name']}" in events


def test_scale_to_zero_and_back(srv: Server) -> None:
    _create(srv, "scaling", "web")
    _running(srv, "scaling", "app=web", 2)
    srv.kubectl("scale", "deployment/web", "-n", "scaling", "--replicas=0")
    wait_for(lambda: not _pods(srv, "scaling", "app=web"), 30, "no pods")
    _rollout_status(srv, "scaling", "web")
    (rs,) = _replica_sets(srv, "scaling").values()
    assert rs["spec"]["replicas"] == 0
    srv.kubectl("scale", "deployment/web", "-n", "scaling", "--replicas=3")
    _rollout_status(srv, "scaling", "web")
    _running(srv, "scaling", "app=web", 3)
    assert list(_replica_sets(srv, "scaling")) == ["1"]  # scaling makes no new revision
    events = srv.kubectl("get", "events", "-n", "scaling").stdout
    assert f"Scaled down replica set {rs['metadata']['name']} from 2 to 0" in events
    assert f"Scaled up replica set {rs['metadata']['name']} from 0 to 3" in events
    assert "Deleted pod: web-" in events


def test_set_image_rolls_out_and_undo_goes_back(srv: Server) -> None:
    _create(srv, "rolling", "web", 3)
    _rollout_status(srv, "rolling", "web")
    srv.kubectl("set", "image", "deployment/web", "-n", "rolling", "img=img:2")
    assert 'deployment "web" successfully rolled out' in _rollout_status(srv, "rolling", "web")
    rses = _replica_sets(srv, "rolling")
    assert sorted(rses) == ["1", "2"]
    assert rses["2"]["spec"]["replicas"] == 3 and rses["1"]["spec"]["replicas"] == 0
    assert rses["2"]["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"
    pods = _running(srv, "rolling", "app=web", 3)
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in pods} == {
        rses["2"]["metadata"]["labels"]["pod-template-hash"]}
    history = srv.kubectl("rollout", "history", "deployment/web", "-n", "rolling").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]

    srv.kubectl("rollout", "undo", "deployment/web", "-n", "rolling")
    _rollout_status(srv, "rolling", "web")
    rses = _replica_sets(srv, "rolling")
    assert sorted(rses) == ["2", "3"]  # the first template's ReplicaSet is revision 3 now
    assert rses["3"]["metadata"]["name"] == f"web-{rses['3']['metadata']['labels']['pod-template-hash']}"
    assert rses["3"]["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"
    assert rses["3"]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert rses["3"]["spec"]["replicas"] == 3 and rses["2"]["spec"]["replicas"] == 0
    _running(srv, "rolling", "app=web", 3)
    events = srv.kubectl("get", "events", "-n", "rolling").stdout
    assert f"Scaled down replica set {rses['2']['metadata']['name']}" in events


def test_restart_pause_and_resume(srv: Server) -> None:
    _create(srv, "pausing", "web")
    _rollout_status(srv, "pausing", "web")
    srv.kubectl("rollout", "restart", "deployment/web", "-n", "pausing")
    _rollout_status(srv, "pausing", "web")
    rses = _replica_sets(srv, "pausing")
    assert sorted(rses) == ["1", "2"]
    assert "kubectl.kubernetes.io/restartedAt" in rses["2"]["spec"]["template"]["metadata"]["annotations"]

    srv.kubectl("rollout", "pause", "deployment/web", "-n", "pausing")
    srv.kubectl("set", "image", "deployment/web", "-n", "pausing", "img=img:2")

    def paused_condition() -> bool:
        conds = _json(srv, "get", "deployment", "web", "-n", "pausing")["status"].get("conditions") or []
        return any(c["type"] == "Progressing" and c["reason"] == "DeploymentPaused" and c["status"] == "Unknown"
                   and c["message"] == "Deployment is paused" for c in conds)
    wait_for(paused_condition, 20, "the DeploymentPaused condition")
    assert sorted(_replica_sets(srv, "pausing")) == ["1", "2"]  # paused: no rollout
    undo = srv.kubectl("rollout", "undo", "deployment/web", "-n", "pausing", check=False)
    assert undo.returncode != 0 and "you cannot rollback a paused deployment" in undo.stderr
    srv.kubectl("rollout", "resume", "deployment/web", "-n", "pausing")
    assert 'deployment "web" successfully rolled out' in _rollout_status(srv, "pausing", "web")
    rses = _replica_sets(srv, "pausing")
    assert sorted(rses) == ["1", "2", "3"]
    assert rses["3"]["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"
    _running(srv, "pausing", "app=web", 2)


def test_set_serviceaccount_rolls_pods_and_old_tokens_stop_working(srv: Server) -> None:
    _create(srv, "identity", "web")
    srv.kubectl("create", "serviceaccount", "robot", "-n", "identity")
    old_pods = _running(srv, "identity", "app=web", 2)
    old_tokens = []
    for pod in old_pods:
        volume = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
        old_tokens.append(_token(srv, pod, volume))
    assert all(_review(srv, t)["user"]["username"] == "system:serviceaccount:identity:default" for t in old_tokens)

    srv.kubectl("set", "serviceaccount", "deployment/web", "-n", "identity", "robot")
    _rollout_status(srv, "identity", "web")
    new_pods = _running(srv, "identity", "app=web", 2)
    assert {p["spec"]["serviceAccountName"] for p in new_pods} == {"robot"}
    for pod in new_pods:
        volume = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
        review = _review(srv, _token(srv, pod, volume))
        assert review["user"]["username"] == "system:serviceaccount:identity:robot"
    old_names = {p["metadata"]["name"] for p in old_pods}
    wait_for(lambda: not old_names & {p["metadata"]["name"] for p in
                                      _json(srv, "get", "pods", "-n", "identity")["items"]}, 30, "old pods gone")
    assert all(_review(srv, t)["authenticated"] is not True for t in old_tokens)


def test_recreate_replaces_all_pods_at_once(srv: Server) -> None:
    _create(srv, "recreate", "web")
    srv.kubectl("patch", "deployment/web", "-n", "recreate", "--type=merge",
                "-p", '{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}')
    _rollout_status(srv, "recreate", "web")
    old = {p["metadata"]["name"] for p in _running(srv, "recreate", "app=web", 2)}
    srv.kubectl("set", "image", "deployment/web", "-n", "recreate", "img=img:2")
    _rollout_status(srv, "recreate", "web")
    new = _running(srv, "recreate", "app=web", 2)
    assert not old & {p["metadata"]["name"] for p in new}
    events = srv.kubectl("get", "events", "-n", "recreate", "--field-selector",
                         "reason=ScalingReplicaSet", "-o", "json").stdout
    messages = [e["message"] for e in json.loads(events)["items"]]
    # The old set goes to zero before the new one is made.
    down = next(i for i, m in enumerate(messages) if "Scaled down" in m and "from 2 to 0" in m)
    up = next(i for i, m in enumerate(messages) if "Scaled up" in m and "from 0 to 2" in m and i > 0)
    assert down < up


def test_deleting_a_deployment_removes_its_replica_sets_and_pods(srv: Server) -> None:
    _create(srv, "deleting", "web")
    _running(srv, "deleting", "app=web", 2)
    srv.kubectl("delete", "deployment", "web", "-n", "deleting", "--cascade=background")

    def gone() -> bool:
        rs = _json(srv, "get", "rs", "-n", "deleting")["items"]
        pods = _json(srv, "get", "pods", "-n", "deleting")["items"]
        return not rs and not pods
    wait_for(gone, 30, "the ReplicaSet and pods collected")


def test_set_env_rolls_out_a_new_replica_set(srv: Server) -> None:
    _create(srv, "env", "web")
    _rollout_status(srv, "env", "web")
    srv.kubectl("set", "env", "deployment/web", "-n", "env", "MODE=blue")
    _rollout_status(srv, "env", "web")
    rses = _replica_sets(srv, "env")
    assert sorted(rses) == ["1", "2"]
    assert rses["2"]["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "blue"}]
    pods = _running(srv, "env", "app=web", 2)
    assert all(p["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "blue"}] for p in pods)


def test_orphan_deletion_leaves_a_replica_set_that_keeps_working_alone(srv: Server) -> None:
    _create(srv, "orphans", "web")
    pods = {p["metadata"]["name"] for p in _running(srv, "orphans", "app=web", 2)}
    srv.kubectl("delete", "deployment", "web", "-n", "orphans", "--cascade=orphan")
    wait_for(lambda: not srv.kubectl("get", "deployment", "web", "-n", "orphans", check=False).stdout, 20,
             "the deployment gone")
    (rs,) = wait_for(lambda: [r for r in _json(srv, "get", "rs", "-n", "orphans")["items"]
                              if not r["metadata"].get("ownerReferences")], 20, "the ReplicaSet orphaned")
    assert {p["metadata"]["name"] for p in _pods(srv, "orphans", "app=web")} == pods
    srv.kubectl("scale", f"rs/{rs['metadata']['name']}", "-n", "orphans", "--replicas=1")
    _running(srv, "orphans", "app=web", 1)
    events = srv.kubectl("get", "events", "-n", "orphans", "--field-selector", "reason=SuccessfulDelete").stdout
    assert f"Deleted pod: {rs['metadata']['name']}-" in events


def test_foreground_deletion_removes_pods_and_replica_sets_before_the_deployment(srv: Server) -> None:
    _create(srv, "foreground", "web")
    _running(srv, "foreground", "app=web", 2)
    srv.kubectl("delete", "deployment", "web", "-n", "foreground", "--cascade=foreground", "--timeout=30s")
    assert not _json(srv, "get", "rs", "-n", "foreground")["items"]
    assert not _json(srv, "get", "pods", "-n", "foreground")["items"]


def test_official_client_scales_rolls_and_reads_status(srv: Server) -> None:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(srv.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api_client:
        apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="pyclient")))
        labels = {"app": "py"}
        body = client.V1Deployment(
            metadata=client.V1ObjectMeta(name="py"),
            spec=client.V1DeploymentSpec(
                replicas=2, selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="img:1")]))))
        apps.create_namespaced_deployment("pyclient", body)

        def available(n: int) -> bool:
            status = apps.read_namespaced_deployment_status("py", "pyclient").status
            return status.available_replicas == n and status.updated_replicas == n and status.replicas == n
        wait_for(lambda: available(2), 30, "2 available")
        apps.patch_namespaced_deployment_scale("py", "pyclient", {"spec": {"replicas": 0}})
        wait_for(lambda: apps.read_namespaced_deployment_status("py", "pyclient").status.replicas is None, 30,
                 "scaled to zero (replicas left out, as Kubernetes leaves a zero out)")
        apps.patch_namespaced_deployment_scale("py", "pyclient", {"spec": {"replicas": 1}})
        apps.patch_namespaced_deployment("py", "pyclient", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "img:2"}]}}}})
        wait_for(lambda: available(1), 30, "1 available after the rollout")
        rses = apps.list_namespaced_replica_set("pyclient", label_selector="app=py").items
        revisions = {rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs for rs in rses}
        assert sorted(revisions) == ["1", "2"]
        assert revisions["2"].spec.template.spec.containers[0].image == "img:2"
        assert revisions["1"].spec.replicas == 0
        conditions = {c.type: c.reason for c in apps.read_namespaced_deployment("py", "pyclient").status.conditions}
        assert conditions == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}


def test_a_stuck_rollout_exceeds_its_progress_deadline(srv: Server) -> None:
    _create(srv, "stuck", "web")
    _rollout_status(srv, "stuck", "web")
    # Pods no node accepts stay Pending, so the new ReplicaSet never becomes available.
    srv.kubectl("patch", "deployment/web", "-n", "stuck", "--type=merge", "-p", json.dumps({"spec": {
        "progressDeadlineSeconds": 2, "template": {"spec": {"nodeSelector": {"nowhere": "true"}}}}}))
    out = srv.kubectl("rollout", "status", "deployment/web", "-n", "stuck", "--timeout=30s", check=False)
    assert out.returncode != 0
    assert 'deployment "web" exceeded its progress deadline' in out.stderr
    conds = {c["type"]: c for c in _json(srv, "get", "deployment", "web", "-n", "stuck")["status"]["conditions"]}
    new = max(_replica_sets(srv, "stuck").items(), key=lambda kv: int(kv[0]))[1]["metadata"]["name"]
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"], conds["Progressing"]["message"]) == (
        "False", "ProgressDeadlineExceeded", f'ReplicaSet "{new}" has timed out progressing.')
    assert conds["Available"]["status"] == "True"  # the old pods still serve
    # maxSurge 25% of 2 rounds up to 1 new pod, maxUnavailable down to 0: both old pods stay.
    assert sorted(p["status"]["phase"] for p in _pods(srv, "stuck", "app=web")) == ["Pending", "Running", "Running"]
