"""The troubleshooting guide's steps (tests/fixtures/seeds/README.md names the guide), run verbatim through a shell
against pods on the local node of a real `kubesat serve` (process runtime): each command gives the answer the guide
says a healthy pod gives, and the failure modes it names show the symptom it describes.

Needs root (or user namespaces) for the process runtime, and 127.0.0.1:443 for `https://kubernetes.default.svc`
(the local node's relay; the test suite's servers with a local node take turns for it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, kubectl_binary, start_server, wait_for

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
NODE = "seed-node"

pytestmark = pytest.mark.skipif(runtime_available() is not None or not shutil.which("curl") or not shutil.which("jq"),
                                reason=f"needs the process runtime ({runtime_available()}) and curl and jq on PATH")


def sh(server: Server, script: str) -> subprocess.CompletedProcess[str]:
    """A command line from the guide, as a user types it (pipes and all), with kubectl on PATH."""
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig))
    env["PATH"] = f"{Path(kubectl_binary()).parent}:{env.get('PATH', '')}"
    return subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60)


def _running(server: Server, name: str, ns: str = "default") -> bool:
    out = server.kubectl("get", "pod", name, "-n", ns, "-o", "jsonpath={.status.phase}", check=False)
    return out.stdout == "Running"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    srv = start_server(tmp_path_factory.mktemp("seedguide") / "data", node=True,
                       extra=["--node-name", NODE, "--node-runtime", "process"])
    wait_for(lambda: '"Ready"' in srv.kubectl("get", "node", NODE, "-o", "json", check=False).stdout, 30, "node")
    srv.kubectl("create", "namespace", "production")
    srv.kubectl("apply", "-f", str(SEEDS / "001-service-account.yaml"))
    srv.kubectl("apply", "-f", str(SEEDS / "001-role-binding.yaml"))
    srv.kubectl("run", "web", "--image=busybox", "--command", "--", "sh", "-c",
                "while true; do echo serving; sleep 1; done")
    wait_for(lambda: _running(srv, "web"), 30, "web Running")
    yield srv
    srv.stop()


def test_step1_the_token_is_mounted(server: Server) -> None:
    out = sh(server, f"kubectl exec web -- ls -la {SA_DIR}/")
    assert out.returncode == 0, out.stderr
    names = {line.split()[-3] if "->" in line else line.split()[-1] for line in out.stdout.splitlines()[1:]}
    assert {"ca.crt", "namespace", "token", "..data"} <= names
    assert sh(server, "kubectl get pod web -o jsonpath='{.spec.automountServiceAccountToken}'").stdout == ""
    out = sh(server, "kubectl get serviceaccount app-controller -n production "
                     "-o jsonpath='{.automountServiceAccountToken}'")
    assert out.stdout == "false"


def test_step1_automount_off_has_no_token(server: Server) -> None:
    server.kubectl("apply", "-f", str(SEEDS / "000-serviceaccount-automount-off.yaml"))
    server.kubectl("run", "quiet", "--image=busybox", "--overrides",
                   json.dumps({"spec": {"serviceAccountName": "foo-sa"}}), "--command", "--", "sleep", "3600")
    wait_for(lambda: _running(server, "quiet"), 30, "quiet Running")
    out = sh(server, f"kubectl exec quiet -- ls -la {SA_DIR}/")
    assert out.returncode != 0 and "No such file or directory" in out.stderr + out.stdout


def test_step2_the_service_account_exists(server: Server) -> None:
    assert sh(server, "kubectl get pod web -o jsonpath='{.spec.serviceAccountName}'").stdout == "default"
    assert sh(server, "kubectl get serviceaccount default -n default").returncode == 0
    # A pod naming a ServiceAccount that does not exist is refused, as the ServiceAccount admission plugin does.
    out = sh(server, "kubectl run ghost --image=busybox --overrides='{\"spec\":{\"serviceAccountName\":\"gone\"}}'")
    assert out.returncode != 0 and 'serviceaccount "gone" not found' in out.stderr


def test_step3_the_token_decodes(server: Server) -> None:
    token = sh(server, f"kubectl exec web -- cat {SA_DIR}/token").stdout
    assert token.count(".") == 2
    out = sh(server, f"kubectl exec web -- cat {SA_DIR}/token | cut -d'.' -f2 | base64 -d 2>/dev/null | jq .")
    claims = json.loads(out.stdout)
    assert claims["sub"] == "system:serviceaccount:default:default"
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["kubernetes.io"]["pod"]["name"] == "web" and claims["kubernetes.io"]["node"]["name"] == NODE


def test_step4_the_token_authenticates_from_inside(server: Server) -> None:
    script = (f"kubectl exec web -- sh -c '\nTOKEN=$(cat {SA_DIR}/token)\nAPISERVER=https://kubernetes.default.svc\n"
              f"CACERT={SA_DIR}/ca.crt\ncurl -s --cacert $CACERT -H \"Authorization: Bearer $TOKEN\" "
              f"$APISERVER/api/v1/namespaces/$(cat {SA_DIR}/namespace)/pods\n'")
    answer = json.loads(sh(server, script).stdout)
    # The default ServiceAccount may not list pods: 403, "the token is valid but lacks permissions".
    assert answer["code"] == 403 and answer["reason"] == "Forbidden"
    assert 'User "system:serviceaccount:default:default" cannot list resource "pods"' in answer["message"]


def _step4(server: Server, pod: str) -> dict:
    """Step 4's check from inside `pod`, verbatim: the API's answer to the pod's token."""
    script = (f"kubectl exec {pod} -- sh -c '\nTOKEN=$(cat {SA_DIR}/token)\nAPISERVER=https://kubernetes.default.svc\n"
              f"CACERT={SA_DIR}/ca.crt\ncurl -s --cacert $CACERT -H \"Authorization: Bearer $TOKEN\" "
              f"$APISERVER/api/v1/namespaces/$(cat {SA_DIR}/namespace)/pods\n'")
    out = sh(server, script)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_step2_a_deleted_service_account(server: Server) -> None:
    """The failure mode of step 2, for real: the pod's ServiceAccount is deleted, its token stops working (401);
    recreating the ServiceAccount is not enough (the token names the old one's uid) until the pod is restarted,
    after which the token is valid again (403 here: the new ServiceAccount may not list pods)."""
    server.kubectl("create", "serviceaccount", "gone-sa")
    run = ["run", "orphan", "--image=busybox", "--overrides", json.dumps({"spec": {"serviceAccountName": "gone-sa"}}),
           "--command", "--", "sleep", "3600"]
    server.kubectl(*run)
    wait_for(lambda: _running(server, "orphan"), 30, "orphan Running")
    assert _step4(server, "orphan")["code"] == 403
    server.kubectl("delete", "serviceaccount", "gone-sa")
    assert sh(server, "kubectl get pod orphan -o jsonpath='{.spec.serviceAccountName}'").stdout == "gone-sa"
    out = sh(server, "kubectl get serviceaccount gone-sa -n default")
    assert out.returncode == 1 and 'serviceaccounts "gone-sa" not found' in out.stderr
    answer = wait_for(lambda: (a := _step4(server, "orphan")).get("code") == 401 and a, 10, "the token refused")
    assert answer["reason"] == "Unauthorized"
    # The guide's fix: recreate it and restart the pod.
    assert sh(server, "kubectl create serviceaccount gone-sa -n default").returncode == 0
    assert _step4(server, "orphan")["code"] == 401  # still the old ServiceAccount's token
    assert sh(server, "kubectl delete pod orphan").returncode == 0
    server.kubectl(*run)
    wait_for(lambda: _running(server, "orphan"), 30, "orphan Running again")
    answer = _step4(server, "orphan")
    assert answer["code"] == 403 and 'User "system:serviceaccount:default:gone-sa"' in answer["message"]


def test_step5_expiry_node_health_and_projection(server: Server) -> None:
    out = sh(server, 'kubectl get pod web -o yaml | grep -A20 "projected:"')
    assert "serviceAccountToken:" in out.stdout and "expirationSeconds: 3607" in out.stdout
    out = sh(server, f"kubectl exec web -- cat {SA_DIR}/token | cut -d'.' -f2 | base64 -d 2>/dev/null "
                     "| jq '.exp | todate'")
    assert out.stdout.strip().startswith('"20')
    ready = json.loads(sh(server, f"kubectl get node {NODE} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")]}}'")
                       .stdout)
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")


def test_step6_legacy_and_requested_tokens(server: Server) -> None:
    assert sh(server, "kubectl get secrets -n production | grep app-controller").returncode == 1  # none since 1.24
    out = sh(server, "kubectl apply -f - <<EOF\napiVersion: v1\nkind: Secret\nmetadata:\n  name: app-controller-token\n"
                     "  namespace: production\n  annotations:\n    kubernetes.io/service-account.name: app-controller\n"
                     "type: kubernetes.io/service-account-token\nEOF")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: "app-controller-token" in sh(server, "kubectl get secrets -n production | grep app-controller")
             .stdout, 10, "the legacy token Secret")
    token = sh(server, "kubectl create token app-controller -n production --duration=24h").stdout.strip()
    assert token.count(".") == 2


def test_step7_audience_and_the_issuer(server: Server) -> None:
    out = sh(server, f"kubectl exec web -- cat {SA_DIR}/token | cut -d'.' -f2 | base64 -d 2>/dev/null | jq '.aud'")
    assert json.loads(out.stdout) == ["https://kubernetes.default.svc.cluster.local"]
    out = sh(server, f"kubectl get pod -n kube-system kube-apiserver-{NODE} -o yaml | grep service-account-issuer")
    assert out.stdout.strip() == "- --service-account-issuer=https://kubernetes.default.svc.cluster.local"
    token = sh(server, "kubectl create token app-controller -n production --audience=my-service").stdout.strip()
    assert token.count(".") == 2


def test_step7_the_seed_deployments_audience_is_refused(server: Server) -> None:
    """The seed's Deployment asks for audience https://kubernetes.default.svc, which is not the API's: 401."""
    manifest = (SEEDS / "001-deployment-fixed.yaml").read_text()
    template = manifest.split("  template:\n", 1)[1]
    pod_yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: controller\n  namespace: production\n" + "\n".join(
        line[4:] for line in template.splitlines() if line.startswith("    ") and not line.startswith("    metadata")
        and "labels" not in line and "app: app-controller" not in line)
    pod_yaml = pod_yaml.replace("image: myapp:1.0.0", "image: myapp:1.0.0\n    command: [\"sleep\", \"3600\"]")
    server.kubectl("apply", "-f", "-", input=pod_yaml)
    wait_for(lambda: _running(server, "controller", "production"), 30, "controller Running")
    script = (f"kubectl exec -n production controller -- sh -c 'curl -s --cacert {SA_DIR}/ca.crt "
              f"-H \"Authorization: Bearer $(cat {SA_DIR}/token)\" "
              f"https://kubernetes.default.svc/api/v1/namespaces/production/pods'")
    answer = json.loads(sh(server, script).stdout)
    assert (answer["code"], answer["reason"]) == (401, "Unauthorized")


def test_step8_and_10_stat_curl_and_logs(server: Server) -> None:
    out = sh(server, f"kubectl exec web -- stat {SA_DIR}/token")
    assert out.returncode == 0 and "symbolic link" in out.stdout
    # With the seed's RoleBinding, the app-controller ServiceAccount lists pods from inside its pod.
    server.kubectl("run", "ctl", "-n", "production", "--image=busybox", "--overrides",
                   json.dumps({"spec": {"serviceAccountName": "app-controller", "automountServiceAccountToken": True}}),
                   "--command", "--", "sleep", "3600")
    wait_for(lambda: _running(server, "ctl", "production"), 30, "ctl Running")
    script = (f"kubectl exec -n production ctl -- sh -c '\ncurl -s --cacert {SA_DIR}/ca.crt \\\n"
              f"-H \"Authorization: Bearer $(cat {SA_DIR}/token)\" \\\n"
              f"https://kubernetes.default.svc/api/v1/namespaces/$(cat {SA_DIR}/namespace)/pods | head -5\n'")
    out = sh(server, script)
    assert '"kind": "PodList"' in out.stdout or '"kind":"PodList"' in out.stdout, out.stdout + out.stderr
    logs = sh(server, "kubectl logs web --tail=20").stdout.splitlines()
    assert logs and set(logs) == {"serving"} and len(logs) <= 20
