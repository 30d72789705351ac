"""core/v1 ReplicationControllers against a real server with its local node (runtime none), the real kubectl and
the official client: v1 defaults (selector and labels from the template), pods kept at spec.replicas with
events, `kubectl scale rc`, the scale subresource, kubectl get columns, Kubernetes' validation messages, and
deletion through the garbage collector."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from .conftest import Server, start_server, wait_for

NODE = "rc-node"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("rcs") / "data"
    server = start_server(data, node=True, extra=["--node-name", NODE, "--node-runtime", "none"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def core(srv: Server) -> client.CoreV1Api:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(srv.kubeconfig), client_configuration=cfg)
    return client.CoreV1Api(client.ApiClient(cfg))


def _json(server: Server, *args: str) -> Any:
    return json.loads(server.kubectl(*args, "-o", "json").stdout)


def _manifest(name: str, replicas: int | None = 2, **template_spec: Any) -> str:
    spec: dict[str, Any] = {"template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": [{"name": "c", "image": "img:1"}],
                                                  **template_spec}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return json.dumps({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
                       "spec": spec})


def _running(server: Server, ns: str, name: str) -> list[dict[str, Any]]:
    items = _json(server, "get", "pods", "-n", ns, "-l", f"app={name}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"]


def test_defaults_pods_and_scale(srv: Server) -> None:
    srv.kubectl("create", "namespace", "rc1")
    srv.kubectl("apply", "-n", "rc1", "-f", "-", input=_manifest("web"))
    rc = _json(srv, "get", "rc", "web", "-n", "rc1")
    assert rc["spec"]["selector"] == {"app": "web"} and rc["metadata"]["labels"] == {"app": "web"}
    wait_for(lambda: len(_running(srv, "rc1", "web")) == 2, 30, "two running pods")
    pod = _running(srv, "rc1", "web")[0]
    [ref] = pod["metadata"]["ownerReferences"]
    assert (ref["apiVersion"], ref["kind"], ref["name"], ref["controller"]) == ("v1", "ReplicationController",
                                                                                 "web", True)
    assert pod["metadata"]["generateName"] == "web-"
    wait_for(lambda: _json(srv, "get", "rc", "web", "-n", "rc1")["status"].get("readyReplicas") == 2, 20,
             "two ready")
    status = _json(srv, "get", "rc", "web", "-n", "rc1")["status"]
    assert status["replicas"] == status["fullyLabeledReplicas"] == status["availableReplicas"] == 2
    out = srv.kubectl("get", "rc", "-n", "rc1").stdout.split("\n")
    assert out[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert out[1].split()[:4] == ["web", "2", "2", "2"]
    wide = srv.kubectl("get", "rc", "-n", "rc1", "-o", "wide").stdout.split("\n")
    assert wide[0].split()[-1] == "SELECTOR" and wide[1].split()[-1] == "app=web"
    assert "replicationcontroller/web scaled" in srv.kubectl("scale", "rc", "web", "-n", "rc1",
                                                             "--replicas=3").stdout
    wait_for(lambda: len(_running(srv, "rc1", "web")) == 3, 30, "three running pods")
    srv.kubectl("scale", "rc", "web", "-n", "rc1", "--replicas=1")
    wait_for(lambda: len(_running(srv, "rc1", "web")) == 1, 30, "one pod left")
    events = _json(srv, "get", "events", "-n", "rc1", "--field-selector", "involvedObject.name=web")["items"]
    reasons = {e["reason"] for e in events}
    assert {"SuccessfulCreate", "SuccessfulDelete"} <= reasons
    assert any(e["message"].startswith("Created pod: web-") for e in events)
    assert {e["source"]["component"] for e in events} == {"replication-controller"}


def test_scale_subresource_with_the_official_client(srv: Server, core: client.CoreV1Api) -> None:
    srv.kubectl("create", "namespace", "rc2")
    srv.kubectl("apply", "-n", "rc2", "-f", "-", input=_manifest("api", replicas=None))
    scale = core.read_namespaced_replication_controller_scale("api", "rc2")
    assert scale.spec.replicas == 1
    wait_for(lambda: core.read_namespaced_replication_controller_scale("api", "rc2").status.replicas == 1, 20,
             "one replica")
    assert core.read_namespaced_replication_controller_scale("api", "rc2").status.selector == "app=api"
    core.patch_namespaced_replication_controller_scale("api", "rc2", {"spec": {"replicas": 2}})
    wait_for(lambda: len(_running(srv, "rc2", "api")) == 2, 30, "two pods")


def test_validation_in_kubernetes_words(srv: Server) -> None:
    srv.kubectl("create", "namespace", "rc3")
    bad = json.loads(_manifest("bad", restartPolicy="OnFailure"))
    bad["spec"]["selector"] = {"app": "other"}
    out = srv.kubectl("apply", "-n", "rc3", "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0
    assert 'The ReplicationController "bad" is invalid' in out.stderr
    assert "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"bad\"}: `selector` does not " \
           "match template `labels`" in out.stderr
    assert 'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"' \
        in out.stderr
    out = srv.kubectl("scale", "rc", "missing", "-n", "rc3", "--replicas=2", check=False)
    assert out.returncode != 0 and 'replicationcontrollers "missing" not found' in out.stderr
    srv.kubectl("apply", "-n", "rc3", "-f", "-", input=_manifest("neg"))
    out = srv.kubectl("scale", "rc", "neg", "-n", "rc3", "--replicas=-1", check=False)
    assert out.returncode != 0


def test_delete_removes_the_pods(srv: Server) -> None:
    srv.kubectl("create", "namespace", "rc4")
    srv.kubectl("apply", "-n", "rc4", "-f", "-", input=_manifest("gone"))
    wait_for(lambda: len(_running(srv, "rc4", "gone")) == 2, 30, "two pods")
    srv.kubectl("delete", "rc", "gone", "-n", "rc4")
    wait_for(lambda: not _json(srv, "get", "pods", "-n", "rc4")["items"], 30, "pods gone")
