"""apps/v1 kinds against a real server with the real kubectl and the official client: the token guide's seed
Deployment refused as Kubernetes refuses it and its repair accepted, `kubectl create deployment`, the get
columns, `kubectl scale` and the scale subresource, `kubectl set image`, discovery and `kubectl auth can-i`
for the seed's Role, and the other workload kinds' defaults and columns. Pods the controllers make are not
looked at here (a controller may run any of these kinds meanwhile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.conftest import Server
from tests.integration.rawclient import RawClient

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


@pytest.fixture(scope="module")
def apps(api) -> client.AppsV1Api:  # type: ignore[no-untyped-def]
    return client.AppsV1Api(api)


@pytest.fixture(scope="module")
def production(server: Server) -> str:
    server.kubectl("create", "namespace", "production")
    return "production"


def _get(server: Server, *args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)


def test_seed_deployment_refused_with_kubernetes_message(server: Server, production: str) -> None:
    out = server.kubectl("apply", "-f", str(SEEDS / "001-deployment.yaml"), check=False)
    assert out.returncode != 0
    assert 'The Deployment "app-controller" is invalid: \n* spec.selector: Required value\n' \
           "* spec.template.metadata.labels: Invalid value: map[string]string(nil): " \
           "`selector` does not match template `labels`" in out.stderr
    assert server.kubectl("get", "deploy", "app-controller", check=False).returncode != 0


def test_fixed_seed_deployment_accepted_with_defaults(server: Server, production: str) -> None:
    # The object as the create answered it (the Deployment controller writes to it right after).
    d = json.loads(server.kubectl("apply", "-f", str(SEEDS / "001-deployment-fixed.yaml"), "-o", "json").stdout)
    assert (d["metadata"]["namespace"], d["metadata"]["generation"], d["status"]) == (production, 1, {})
    assert d["spec"]["strategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (d["spec"]["replicas"], d["spec"]["revisionHistoryLimit"], d["spec"]["progressDeadlineSeconds"]) == \
        (2, 10, 600)
    pod_spec = d["spec"]["template"]["spec"]
    assert (pod_spec["restartPolicy"], pod_spec["serviceAccountName"], pod_spec["serviceAccount"]) == \
        ("Always", "app-controller", "app-controller")
    assert pod_spec["volumes"][0]["projected"]["defaultMode"] == 420


def test_create_deployment_get_columns_and_scale(server: Server) -> None:
    server.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    lines = server.kubectl("get", "deploy", "web").stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert lines[1].split()[:2] == ["web", "0/2"]
    wide = server.kubectl("get", "deployments.apps", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[-3:] == ["nginx", "nginx", "app=web"]
    generation = _get(server, "deploy", "web")["metadata"]["generation"]
    assert "deployment.apps/web scaled" in server.kubectl("scale", "deployment/web", "--replicas=3").stdout
    d = _get(server, "deploy", "web")
    assert d["spec"]["replicas"] == 3 and d["metadata"]["generation"] > generation
    scale = json.loads(server.kubectl("get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale").stdout)
    assert (scale["kind"], scale["apiVersion"], scale["spec"], scale["status"]["selector"]) == \
        ("Scale", "autoscaling/v1", {"replicas": 3}, "app=web")
    lines = server.kubectl("get", "deploy", "web", "--subresource=scale").stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESIRED", "AVAILABLE"] and lines[1].split()[:2] == ["web", "3"]


def test_kubectl_create_sends_protobuf_bodies_that_decode(server: Server) -> None:
    out = server.kubectl("create", "deployment", "pb", "--image=nginx:1.27", "--port=80", "-v=8")
    assert "Content-Type: application/vnd.kubernetes.protobuf" in out.stderr
    d = _get(server, "deploy", "pb")
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["ports"], d["spec"]["selector"]) == \
        ("nginx:1.27", [{"containerPort": 80, "protocol": "TCP"}], {"matchLabels": {"app": "pb"}})


def test_a_dotted_name_is_created_with_kubernetes_warning(server: Server) -> None:
    out = server.kubectl("create", "deployment", "web.v1", "--image=nginx")
    assert "Warning: metadata.name: this is used in Pod names and hostnames, which can result in surprising " \
           "behavior; a DNS label is recommended: [must not contain dots]" in out.stderr
    assert "deployment.apps/web.v1 created" in out.stdout


def test_set_image_changes_the_template_and_bumps_generation(server: Server) -> None:
    server.kubectl("create", "deployment", "img", "--image=nginx")
    before = _get(server, "deploy", "img")["metadata"]["generation"]
    server.kubectl("set", "image", "deployment/img", "nginx=nginx:2")
    d = _get(server, "deploy", "img")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert d["metadata"]["generation"] > before


def test_selector_is_immutable(server: Server) -> None:
    server.kubectl("create", "deployment", "fixed", "--image=nginx")
    out = server.kubectl("patch", "deploy", "fixed", "-p",
                         '{"spec":{"selector":{"matchLabels":{"app":"other"}},'
                         '"template":{"metadata":{"labels":{"app":"other"}}}}}', check=False)
    assert out.returncode != 0 and "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string" \
        '{"app":"other"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable' in out.stderr


def test_discovery_and_auth_can_i_with_the_seed_role(server: Server, production: str) -> None:
    resources = server.kubectl("api-resources", "--api-group=apps", "-o", "name").stdout.split()
    assert resources == ["controllerrevisions.apps", "daemonsets.apps", "deployments.apps", "replicasets.apps",
                         "statefulsets.apps"]
    for seed in ("001-service-account.yaml", "001-role-binding.yaml"):
        server.kubectl("apply", "-f", str(SEEDS / seed))
    who = ["--as=system:serviceaccount:production:app-controller", "-n", production]
    assert server.kubectl("auth", "can-i", "patch", "deployments.apps", *who).stdout.strip() == "yes"
    denied = server.kubectl("auth", "can-i", "delete", "deployments.apps", *who, check=False)
    assert denied.stdout.strip() == "no"
    assert "deploymentspec" in server.kubectl("explain", "deployment.spec").stdout.lower()


def test_official_client_create_read_and_scale(apps: client.AppsV1Api) -> None:
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels={"app": "py"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]))))
    created = apps.create_namespaced_deployment("default", body)
    assert created.metadata.generation == 1 and created.spec.strategy.type == "RollingUpdate"
    assert apps.read_namespaced_deployment("py", "default").spec.template.spec.containers[0].image_pull_policy == \
        "IfNotPresent"
    scale = apps.patch_namespaced_deployment_scale("py", "default", {"spec": {"replicas": 4}})
    assert scale.spec.replicas == 4 and scale.status.selector == "app=py"
    assert apps.read_namespaced_deployment_scale("py", "default").spec.replicas == 4
    assert apps.read_namespaced_deployment("py", "default").spec.replicas == 4
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment_scale("py", "default", {"spec": {"replicas": -1}})
    assert err.value.status == 422
    assert json.loads(err.value.body)["message"] == \
        'Scale.autoscaling "py" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment_scale("missing", "default")
    assert err.value.status == 404 and json.loads(err.value.body)["message"] == \
        'deployments.apps "missing" not found'


def test_status_subresource_keeps_spec(apps: client.AppsV1Api, server: Server) -> None:
    server.kubectl("create", "deployment", "st", "--image=nginx")
    d = apps.read_namespaced_deployment("st", "default")
    patched = apps.patch_namespaced_deployment_status(
        "st", "default", {"spec": {"replicas": 9}, "status": {"collisionCount": 0}})
    assert patched.spec.replicas == d.spec.replicas and patched.status.collision_count == 0
    assert patched.metadata.generation == d.metadata.generation


def test_other_workload_kinds(server: Server) -> None:
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    spec = {"selector": {"matchLabels": {"app": "x"}}, "template": template}
    for kind in ("ReplicaSet", "StatefulSet", "DaemonSet"):
        server.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}))
    rs_lines = server.kubectl("get", "rs", "x").stdout.splitlines()
    assert rs_lines[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert rs_lines[1].split()[:2] == ["x", "1"]
    assert server.kubectl("get", "sts", "x").stdout.splitlines()[0].split() == ["NAME", "READY", "AGE"]
    ds_lines = server.kubectl("get", "ds", "x").stdout.splitlines()
    assert ds_lines[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE",
                                   "SELECTOR", "AGE"]
    assert ds_lines[1].split()[:7] == ["x", "0", "0", "0", "0", "0", "<none>"]
    assert "statefulset.apps/x scaled" in server.kubectl("scale", "sts", "x", "--replicas=2").stdout
    assert "replicaset.apps/x scaled" in server.kubectl("scale", "rs", "x", "--replicas=0").stdout
    every = server.kubectl("get", "all", "-o", "name").stdout.split()
    assert {"statefulset.apps/x", "daemonset.apps/x", "replicaset.apps/x"} <= set(every)
    sts = _get(server, "sts", "x")
    assert sts["spec"]["replicas"] == 2 and _get(server, "rs", "x")["spec"]["replicas"] == 0
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady" and isinstance(sts["status"]["replicas"], int)
    ds = _get(server, "ds", "x")
    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    assert server.kubectl("get", "rs", "--field-selector=status.replicas=0", "-o", "name").returncode == 0
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "x-1"},
        "revision": 1, "data": {"spec": {}}}))
    assert server.kubectl("get", "controllerrevisions", "x-1").stdout.splitlines()[1].split()[:3] == \
        ["x-1", "<none>", "1"]
    bad = server.kubectl("apply", "-f", "-", check=False, input=json.dumps(
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "bad"},
         "spec": {**spec, "template": {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}}}))
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"' in bad.stderr


def test_scale_subresource_refuses_bad_input_with_4xx(server: Server, apps: client.AppsV1Api) -> None:
    server.kubectl("create", "deployment", "sc", "--image=nginx")
    base = "/apis/apps/v1/namespaces/default/deployments/sc/scale"

    raw = RawClient.admin(server.data_dir, server.port)

    def send(method: str, path: str, body: str, content_type: str = "application/json") -> tuple[int, str]:
        answer = raw.request(method, path, body.encode(), content_type)
        return answer.status, answer.json().get("message", "")

    assert send("PUT", base, "not json")[0] == 400
    assert send("PUT", base, json.dumps({"apiVersion": "apps/v1", "kind": "Deployment"})) == (
        400, "the API version in the data (apps/v1) does not match the expected API version (autoscaling/v1)")
    assert send("PUT", base, json.dumps({"apiVersion": "autoscaling/v1", "kind": "Scale",
                                         "metadata": {"name": "sc"}, "spec": {"replicas": "two"}})) == (
        400, 'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal string into Go struct '
             "field ScaleSpec.spec.replicas of type int32")
    stale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "sc", "resourceVersion": "1"},
             "spec": {"replicas": 2}}
    assert send("PUT", base, json.dumps(stale))[0] == 409
    assert send("PATCH", base, '{"spec":{"replicas":2}}', "application/apply-patch+yaml") == (
        400, "PATCH, application/apply-patch+yaml requires fieldManager to be set")
    assert send("PATCH", base, '{"spec":{"replicas":2}}', "text/plain")[0] == 415
    assert send("PATCH", base, "[{bad", "application/json-patch+json")[0] == 400
    assert send("DELETE", base, "")[0] == 405
    assert send("GET", "/apis/apps/v1/namespaces/default/daemonsets/sc/scale", "")[0] == 404
    stale["metadata"].pop("resourceVersion")
    assert send("PUT", base, json.dumps(stale))[0] == 200
    assert apps.read_namespaced_deployment("sc", "default").spec.replicas == 2


def test_server_side_apply_of_a_scale_owns_replicas(server: Server, apps: client.AppsV1Api) -> None:
    server.kubectl("create", "deployment", "ssa", "--image=nginx")
    raw = RawClient.admin(server.data_dir, server.port)
    path = "/apis/apps/v1/namespaces/default/deployments/ssa/scale?fieldManager="
    scale = b"apiVersion: autoscaling/v1\nkind: Scale\nspec:\n  replicas: 4\n"
    # kubectl create set replicas (1), so a first apply of another count conflicts with it, as in Kubernetes.
    first = raw.request("PATCH", path + "autoscaler", scale, "application/apply-patch+yaml")
    assert first.status == 409 and first.json()["message"] == \
        'Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas'
    first = raw.request("PATCH", path + "autoscaler&force=true", scale, "application/apply-patch+yaml")
    assert first.status == 200 and first.json()["spec"]["replicas"] == 4
    # Another manager asking for another count conflicts with the owner of spec.replicas, unless it forces.
    other = raw.request("PATCH", path + "other", scale.replace(b"4", b"5"), "application/apply-patch+yaml")
    assert other.status == 409 and other.json()["message"] == (
        'Apply failed with 1 conflict: conflict with "autoscaler" with subresource "scale": .spec.replicas')
    forced = raw.request("PATCH", path + "other&force=true", scale.replace(b"4", b"5"),
                         "application/apply-patch+yaml")
    assert forced.status == 200
    d = apps.read_namespaced_deployment("ssa", "default")
    owners = [(m.manager, m.operation, m.subresource) for m in d.metadata.managed_fields
              if "f:replicas" in (m.fields_v1 or {}).get("f:spec", {})]
    assert d.spec.replicas == 5 and owners == [("other", "Apply", "scale")]
