"""RBAC end to end: the seed's Role and RoleBinding, can-i, impersonation, escalation, anonymous."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .conftest import Server, start_server

pytestmark = pytest.mark.integration

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"
SA = "system:serviceaccount:production:app-controller"


@pytest.fixture(scope="module")
def seeded(server: Server) -> str:
    server.kubectl("create", "namespace", "production")
    server.kubectl("apply", "-f", str(SEEDS / "001-service-account.yaml"))
    server.kubectl("apply", "-f", str(SEEDS / "001-role-binding.yaml"))
    server.kubectl("run", "web", "-n", "production", "--image=nginx", "--restart=Never")
    return server.kubectl("create", "token", "app-controller", "-n", "production").stdout.strip()


def call(server: Server, token: str | None, method: str, path: str, headers: dict | None = None,
         **kw) -> requests.Response:
    h = {"Authorization": f"Bearer {token}"} if token else {}
    h.update(headers or {})
    return requests.request(method, server.url + path, headers=h, verify=str(server.ca_file), timeout=30, **kw)


def test_seed_scenario_allowed(server: Server, seeded: str) -> None:
    pods = call(server, seeded, "GET", "/api/v1/namespaces/production/pods")
    assert pods.status_code == 200 and [p["metadata"]["name"] for p in pods.json()["items"]] == ["web"]
    assert call(server, seeded, "GET", "/api/v1/namespaces/production/pods/web").status_code == 200
    services = call(server, seeded, "GET", "/api/v1/namespaces/production/services")
    assert services.status_code == 200 and services.json()["kind"] == "ServiceList"
    deployments = call(server, seeded, "GET", "/apis/apps/v1/namespaces/production/deployments")
    assert deployments.status_code == 200 and deployments.json()["kind"] == "DeploymentList"
    # The Role lets it patch deployments: authorized, then not found, since none exists (never 403).
    missing = call(server, seeded, "PATCH", "/apis/apps/v1/namespaces/production/deployments/app-controller",
                   data="{}", headers={"Content-Type": "application/merge-patch+json"})
    assert missing.status_code == 404 and missing.json()["message"] == 'deployments.apps "app-controller" not found'


def test_seed_scenario_denied(server: Server, seeded: str) -> None:
    r = call(server, seeded, "GET", "/api/v1/namespaces/production/secrets")
    assert r.status_code == 403
    assert r.json()["message"] == ('secrets is forbidden: User "system:serviceaccount:production:app-controller" '
                                   'cannot list resource "secrets" in API group "" in the namespace "production"')
    assert r.json()["reason"] == "Forbidden"
    other = call(server, seeded, "GET", "/api/v1/namespaces/default/pods")
    assert other.status_code == 403 and 'in the namespace "default"' in other.json()["message"]
    d = call(server, seeded, "DELETE", "/api/v1/namespaces/production/pods/web")
    assert d.status_code == 403
    assert d.json()["message"] == ('pods "web" is forbidden: User "system:serviceaccount:production:app-controller" '
                                   'cannot delete resource "pods" in API group "" in the namespace "production"')


def test_bad_token_401_and_no_token_403(server: Server, seeded: str) -> None:
    assert call(server, seeded[:-10] + "AAAAAAAAAA", "GET", "/api/v1/namespaces/production/pods").status_code == 401
    anon = call(server, None, "GET", "/api/v1/namespaces/production/pods")
    assert anon.status_code == 403
    assert 'User "system:anonymous" cannot list resource "pods"' in anon.json()["message"]
    # The public-info-viewer binding lets anyone read health and version.
    assert call(server, None, "GET", "/version").status_code == 200
    assert call(server, None, "GET", "/healthz").status_code == 200


def test_can_i(server: Server, seeded: str) -> None:
    def can(*args: str) -> str:
        res = server.kubectl("auth", "can-i", *args, check=False)
        return res.stdout.strip()

    assert can("list", "pods", "-n", "production", "--as", SA) == "yes"
    assert can("patch", "deployments.apps", "-n", "production", "--as", SA) == "yes"
    assert can("delete", "deployments.apps", "-n", "production", "--as", SA) == "no"
    # The same answer straight from the API, with the binding that allows it.
    sar = server.kubectl("create", "--raw", "/apis/authorization.k8s.io/v1/subjectaccessreviews", "-f", "-",
                         input=json.dumps({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                                           "spec": {"user": SA, "groups": ["system:serviceaccounts"],
                                                    "resourceAttributes": {"namespace": "production", "verb": "patch",
                                                                           "group": "apps",
                                                                           "resource": "deployments"}}}))
    status = json.loads(sar.stdout)["status"]
    assert status["allowed"] is True and "app-controller-binding" in status["reason"]
    assert can("delete", "pods", "-n", "production", "--as", SA) == "no"
    assert can("get", "secrets", "-n", "production", "--as", SA) == "no"
    assert can("list", "pods", "-n", "default", "--as", SA) == "no"
    assert can("create", "serviceaccounts/token", "-n", "production", "--as", SA) == "no"
    assert can("get", "pods", "--as", "jane", "--as-group", "system:masters") == "yes"
    listing = server.kubectl("auth", "can-i", "--list", "-n", "production", "--as", SA).stdout
    assert "deployments.apps" in listing and "pods" in listing and "[get list patch]" in listing
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    as_token = subprocess.run(["kubectl", "auth", "can-i", "list", "pods", "-n", "production", "--token", seeded],
                              capture_output=True, text=True, env=env)
    assert as_token.stdout.strip() == "yes"


def test_python_snippet_from_the_seed(server: Server, seeded: str, tmp_path) -> None:
    """The seed's application code, run as written except for where the token, CA and server live."""
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(seeded)
    (sa_dir / "ca.crt").write_text(server.ca_file.read_text())
    (sa_dir / "namespace").write_text("production")
    src = (SEEDS / "001-app-snippet.py").read_text()
    src = src.replace("/var/run/secrets/kubernetes.io/serviceaccount", str(sa_dir))
    src = src.replace("https://kubernetes.default.svc", server.url)
    res = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"})
    assert res.returncode == 0, res.stderr
    assert "'name': 'web'" in res.stdout


def test_escalation_prevention(server: Server) -> None:
    server.kubectl("create", "namespace", "esc")
    server.kubectl("create", "serviceaccount", "builder", "-n", "esc")
    server.kubectl("create", "role", "role-maker", "-n", "esc", "--verb=create,get,list",
                   "--resource=roles,rolebindings", "--verb=get", "--resource=pods")
    server.kubectl("create", "rolebinding", "builder-makes-roles", "-n", "esc", "--role=role-maker",
                   "--serviceaccount=esc:builder")
    as_builder = ["--as", "system:serviceaccount:esc:builder", "-n", "esc"]
    ok = server.kubectl("create", "role", "pod-getter", "--verb=get", "--resource=pods", *as_builder)
    assert "role.rbac.authorization.k8s.io/pod-getter created" in ok.stdout
    bad = server.kubectl("create", "role", "pod-deleter", "--verb=delete", "--resource=pods", *as_builder, check=False)
    assert bad.returncode != 0
    assert ('roles.rbac.authorization.k8s.io "pod-deleter" is forbidden: user "system:serviceaccount:esc:builder" '
            '(groups=["system:serviceaccounts" "system:serviceaccounts:esc" "system:authenticated"]) is attempting '
            'to grant RBAC permissions not currently held:') in bad.stderr
    assert '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}' in bad.stderr
    admin = server.kubectl("create", "rolebinding", "grab-admin", "--clusterrole=cluster-admin",
                           "--serviceaccount=esc:builder", *as_builder, check=False)
    assert admin.returncode != 0 and "is attempting to grant RBAC permissions not currently held" in admin.stderr
    mine = server.kubectl("create", "rolebinding", "bind-getter", "--role=pod-getter",
                          "--serviceaccount=esc:builder", *as_builder)
    assert "created" in mine.stdout


def test_updating_a_role_beyond_ones_rules_is_refused_even_if_its_rules_stay(server: Server) -> None:
    # kube-apiserver checks every rule on any update but a GC-only one (ownerReferences, finalizers).
    server.kubectl("create", "namespace", "esc-upd")
    server.kubectl("create", "serviceaccount", "editor", "-n", "esc-upd")
    server.kubectl("create", "role", "role-editor", "-n", "esc-upd", "--verb=get,update,patch", "--resource=roles")
    server.kubectl("create", "rolebinding", "editor-edits-roles", "-n", "esc-upd", "--role=role-editor",
                   "--serviceaccount=esc-upd:editor")
    server.kubectl("create", "role", "pod-deleter", "-n", "esc-upd", "--verb=delete", "--resource=pods")
    as_editor = ["--as", "system:serviceaccount:esc-upd:editor", "-n", "esc-upd"]
    label = server.kubectl("label", "role", "pod-deleter", "team=x", *as_editor, check=False)
    assert label.returncode != 0
    assert 'roles.rbac.authorization.k8s.io "pod-deleter" is forbidden' in label.stderr
    assert '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}' in label.stderr
    gc_only = server.kubectl("patch", "role", "pod-deleter", "--type=merge", "-p",
                             '{"metadata":{"finalizers":["example.com/hold"]}}', *as_editor)
    assert "patched" in gc_only.stdout
    server.kubectl("patch", "role", "pod-deleter", "-n", "esc-upd", "--type=merge", "-p",
                   '{"metadata":{"finalizers":null}}')
    # The role it can hold is its to relabel.
    server.kubectl("label", "role", "role-editor", "team=x", *as_editor)


def test_impersonation_needs_the_verb(server: Server, seeded: str) -> None:
    r = call(server, seeded, "GET", "/api/v1/namespaces/production/pods",
             headers={"Impersonate-User": "admin"})
    assert r.status_code == 403
    assert 'cannot impersonate resource "users"' in r.json()["message"]


def test_create_clusterrole_and_binding_flags(server: Server) -> None:
    out = server.kubectl("create", "clusterrole", "node-reader", "--verb=get,list,watch", "--resource=nodes").stdout
    assert "clusterrole.rbac.authorization.k8s.io/node-reader created" in out
    out = server.kubectl("create", "clusterrolebinding", "nr", "--clusterrole=node-reader", "--user=jane",
                         "--group=ops").stdout
    assert "clusterrolebinding.rbac.authorization.k8s.io/nr created" in out
    assert server.kubectl("auth", "can-i", "list", "nodes", "--as", "jane").stdout.strip() == "yes"
    assert server.kubectl("auth", "can-i", "delete", "nodes", "--as", "jane", check=False).stdout.strip() == "no"
    view = json.loads(server.kubectl("get", "clusterrole", "view", "-o", "json").stdout)
    assert view["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"


def test_anonymous_auth_false_gives_401(tmp_path) -> None:
    srv = start_server(tmp_path / "data", extra=["--anonymous-auth", "false"])
    try:
        r = requests.get(srv.url + "/api/v1/namespaces", verify=str(srv.ca_file), timeout=10)
        assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
        srv.kubectl("get", "ns")
    finally:
        srv.stop()


def test_aggregated_roles_carry_their_rules(server: Server) -> None:
    view = json.loads(server.kubectl("get", "clusterrole", "view", "-o", "json").stdout)
    resources = {r for rule in view["rules"] for r in rule.get("resources", [])}
    assert "pods" in resources and "secrets" not in resources
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "widgets-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}]}))
    # The authorizer sees it at once; the stored view role catches up right after.
    assert server.kubectl("auth", "can-i", "list", "widgets.example.com", "--as", "v",
                          "--as-group", "viewers", check=False).stdout.strip() == "no"
    server.kubectl("create", "clusterrolebinding", "viewers-view", "--clusterrole=view", "--group=viewers")
    sar = server.kubectl("create", "--raw", "/apis/authorization.k8s.io/v1/subjectaccessreviews", "-f", "-",
                         input=json.dumps({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                                           "spec": {"user": "v", "groups": ["viewers"], "resourceAttributes": {
                                               "verb": "list", "group": "example.com", "resource": "widgets"}}}))
    assert json.loads(sar.stdout)["status"]["allowed"] is True
    deadline = time.time() + 5
    while time.time() < deadline:
        view = json.loads(server.kubectl("get", "clusterrole", "view", "-o", "json").stdout)
        if any("widgets" in rule.get("resources", []) for rule in view["rules"]):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the view ClusterRole never got the aggregated widgets rule")
    edit = json.loads(server.kubectl("get", "clusterrole", "edit", "-o", "json").stdout)
    assert any("widgets" in rule.get("resources", []) for rule in edit["rules"])
