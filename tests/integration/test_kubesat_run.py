"""`kubesat run` against a real server with its local node (process runtime): a local command in a pod's sandbox,
with the pod's token where in-cluster clients look, its exit code, stdin and the caller's environment, the pod
deleted afterwards, and one-line errors."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, kubectl_binary, start_server, wait_for

SEED_SNIPPET = Path(__file__).resolve().parent.parent / "fixtures" / "seeds" / "001-app-snippet.py"
LIST_PODS = """
from kubernetes import client, config
config.load_incluster_config()
ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
print(ns, sorted(p.metadata.name for p in client.CoreV1Api().list_namespaced_pod(ns).items))
"""

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason="no namespaces for the process runtime here")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    kubectl_binary()
    srv = start_server(tmp_path_factory.mktemp("run") / "data", node=True, extra=["--node-name", "runner"])
    srv.kubectl("create", "namespace", "apps")
    srv.kubectl("create", "serviceaccount", "x", "-n", "apps")
    yield srv
    srv.stop()


def _run(srv: Server, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    for proxy in ("HTTPS_PROXY", "https_proxy"):
        full_env.pop(proxy, None)
    return subprocess.run([sys.executable, "-m", "kubesat.cli", "run", "--data-dir", str(srv.data_dir), *args],
                          input=stdin, capture_output=True, text=True, env=full_env, timeout=timeout, check=False)


def _run_pods(srv: Server) -> list[str]:
    out = srv.kubectl("get", "pods", "-A", "-l", "app.kubernetes.io/managed-by=kubesat-run", "-o", "json").stdout
    return [p["metadata"]["name"] for p in json.loads(out)["items"]]


def test_in_cluster_client_lists_pods_once_bound_and_the_pod_is_deleted(local: Server) -> None:
    denied = _run(local, "-n", "apps", "--serviceaccount", "x", "--", sys.executable, "-c", LIST_PODS)
    assert denied.returncode == 1
    assert "Forbidden" in denied.stderr and "system:serviceaccount:apps:x" in denied.stderr
    local.kubectl("create", "rolebinding", "x-view", "-n", "apps", "--clusterrole=view", "--serviceaccount=apps:x")
    res = _run(local, "-n", "apps", "--serviceaccount", "x", "--", sys.executable, "-c", LIST_PODS)
    assert res.returncode == 0, res.stderr
    ns, names = res.stdout.split(" ", 1)
    assert ns == "apps" and names.startswith("['kubesat-run-x-")
    assert wait_for(lambda: _run_pods(local) == [], 30, "the pods kubesat run made deleted")


def test_exit_code_stdin_and_the_callers_environment(local: Server) -> None:
    res = _run(local, "--", "sh", "-c", 'cat; echo "$MINE $(id -u) $KUBERNETES_SERVICE_HOST $HOSTNAME"; '
               'test -s /var/run/secrets/kubernetes.io/serviceaccount/token; exit 3',
               stdin="hi\n", env={"MINE": "mine"})
    assert res.returncode == 3, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "hi"
    mine, uid, host, pod = lines[1].split()
    assert (mine, uid, host) == ("mine", str(os.getuid()), "127.0.0.1")
    assert pod.startswith("kubesat-run-default-")


def test_kubectl_without_a_kubeconfig_is_the_service_account(local: Server) -> None:
    res = _run(local, "-n", "apps", "--serviceaccount", "x", "--", kubectl_binary(), "auth", "whoami",
               env={"KUBECONFIG": str(local.kubeconfig)})  # the caller's KUBECONFIG does not reach the command
    assert res.returncode == 0, res.stderr
    assert "system:serviceaccount:apps:x" in res.stdout


def test_audience_file_and_existing_pod(local: Server) -> None:
    res = _run(local, "-n", "apps", "--serviceaccount", "x", "--audience", "vault", "--",
               "sh", "-c", "cut -d. -f2 /var/run/secrets/tokens/vault")
    assert res.returncode == 0, res.stderr
    local.kubectl("run", "keep", "-n", "apps", "--image=app", "--overrides",
                  json.dumps({"spec": {"serviceAccountName": "x", "nodeName": "runner"}}))
    res2 = _run(local, "-n", "apps", "--pod", "keep", "--", "sh", "-c", "echo $HOSTNAME")
    assert (res2.returncode, res2.stdout) == (0, "keep\n"), res2.stderr
    assert local.kubectl("get", "pod", "keep", "-n", "apps").returncode == 0  # left alone


def test_the_seed_snippet_where_the_relay_holds_443(local: Server) -> None:
    port = _run(local, "--", "sh", "-c", "echo $KUBERNETES_SERVICE_PORT")
    if port.stdout.strip() != "443":
        pytest.skip("the relay could not bind 127.0.0.1:443 here; the snippet hard-codes that port")
    local.kubectl("create", "rolebinding", "x-view", "-n", "default", "--clusterrole=view",
                  "--serviceaccount=default:default")
    res = _run(local, "--", sys.executable, str(SEED_SNIPPET))
    assert res.returncode == 0, res.stderr
    assert "'kind': 'Pod'" in res.stdout and "kubesat-run-default-" in res.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus", "--", "true"], "kubesat: error: No such option '--bogus'. (kubesat run -h)\n"),
    (["--serviceaccount", "nope", "--", "true"],
     'kubesat: error: serviceaccount "nope" not found in namespace "default"\n'),
    (["--pod", "p", "--serviceaccount", "x", "--", "true"],
     "kubesat: error: give at most one of --serviceaccount, --pod and -f\n"),
    (["--", "no-such-command-here"],
     'kubesat: error: exec: "no-such-command-here": executable file not found in $PATH\n'),
])
def test_errors_are_one_line(local: Server, args: list[str], message: str) -> None:
    res = _run(local, *args)
    assert res.stderr == message
    assert res.returncode == (127 if "executable" in message else 1)


KR8S_LIST = """
import kr8s
api = kr8s.api(serviceaccount="/var/run/secrets/kubernetes.io/serviceaccount")
print("kr8s", sorted(p.name for p in kr8s.get("pods", namespace="apps", api=api)))
"""
LIGHTKUBE_LIST = """
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Pod
client = Client(KubeConfig.from_service_account())
print("lightkube", sorted(p.metadata.name for p in client.list(Pod, namespace="apps")))
"""


@pytest.mark.parametrize("script", [KR8S_LIST, LIGHTKUBE_LIST], ids=["kr8s", "lightkube"])
def test_other_in_cluster_clients_run_unchanged(local: Server, script: str) -> None:
    """kr8s and lightkube find the pod's service account where in-cluster code looks, and list pods with it."""
    if local.kubectl("get", "serviceaccount", "libs", "-n", "apps", check=False).returncode != 0:
        local.kubectl("create", "serviceaccount", "libs", "-n", "apps")
        local.kubectl("create", "rolebinding", "libs-view", "-n", "apps", "--clusterrole=view",
                      "--serviceaccount=apps:libs")
    res = _run(local, "-n", "apps", "--serviceaccount", "libs", "--", sys.executable, "-c", script)
    assert res.returncode == 0, res.stderr
    lib, names = res.stdout.strip().split(" ", 1)
    assert lib in script and any(n.startswith("kubesat-run-libs-") for n in ast.literal_eval(names)), res.stdout
