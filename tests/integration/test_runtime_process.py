"""A real agent with `--runtime process` runs its pods' commands as sandboxed local processes: the token file read
from inside the pod reaches the CRI log; readOnly mounts are read-only; the agent's root and other pods'
volumes are out of sight; exit codes give Succeeded/Failed under restartPolicy Never; a crashing container goes
into CrashLoopBackOff; deleting a pod sends its process SIGTERM within the grace period."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, process_agent, wait_for

NODE = "proc-n1"

pytestmark = pytest.mark.skipif(runtime_available() is not None, reason=f"no process runtime: {runtime_available()}")


@pytest.fixture(scope="module")
def agent(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("procagent")
    shared = tmp / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with process_agent(server, tmp, NODE, "--allow-host-path", str(shared)) as root:
        yield root, shared


def _apply(server: Server, name: str, script: str, extra: str = "", policy: str = "Never",
           volumes: str = "", mounts: str = "") -> dict:
    server.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: busybox
    command: ["/bin/sh", "-c", {json.dumps(script)}]
{mounts}
{extra}
{volumes}
""")
    return _get(server, name)


def _get(server: Server, name: str) -> dict:
    return json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)


def _phase(server: Server, name: str) -> str:
    return str(_get(server, name)["status"].get("phase", ""))


def _log(root: Path, pod: dict, container: str = "app", n: int = 0) -> str:
    path = root / "pods" / pod["metadata"]["uid"] / "logs" / container / f"{n}.log"
    return path.read_text() if path.exists() else ""


def test_the_token_read_inside_the_pod_reaches_the_cri_log(server: Server, agent: tuple[Path, Path]) -> None:
    root, _ = agent
    pod = _apply(server, "reads-token", "cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; "
                 "echo HOST=$KUBERNETES_SERVICE_HOST PORT=$KUBERNETES_SERVICE_PORT NAME=$HOSTNAME; id -u; "
                 "getent hosts kubernetes.default.svc; echo partial-line-end >&2; printf tail")
    wait_for(lambda: _phase(server, "reads-token") == "Succeeded", 20, "Succeeded")
    uid = pod["metadata"]["uid"]
    volume = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    lines = _log(root, pod).splitlines()
    stdout = [line.split(" ", 3) for line in lines if " stdout " in line]
    assert all(p[2] in ("F", "P") and p[0].endswith("Z") and len(p[0]) == 30 for p in stdout), lines
    token = stdout[0][3]
    assert token.count(".") == 2
    review = json.loads(server.kubectl("create", "-o", "json", "-f", "-", input=json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})).stdout)["status"]
    assert review["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [uid]
    assert "NAME=reads-token" in stdout[1][3] and "HOST=" in stdout[1][3] and "PORT=" in stdout[1][3]
    assert stdout[2][3] == "65534"
    assert "kubernetes.default.svc" in stdout[3][3]
    assert any(" stderr F partial-line-end" in line for line in lines)
    assert lines[-1].endswith(" stdout F tail")
    assert volume  # the pod's own token volume was the one mounted
    status = _get(server, "reads-token")["status"]
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed" and term["containerID"].startswith("kubesat://")
    assert term["startedAt"] and term["finishedAt"]


def test_mounts_are_read_only_and_the_agent_root_and_other_pods_are_hidden(server: Server,
                                                                          agent: tuple[Path, Path]) -> None:
    root, _ = agent
    other = _apply(server, "victim", "sleep 1", policy="Never")
    wait_for(lambda: _phase(server, "victim") == "Succeeded", 20, "the other pod ran")
    victim_dir = root / "pods" / other["metadata"]["uid"]
    pod = _apply(server, "snoop", f"""
touch /var/run/secrets/kubernetes.io/serviceaccount/x 2>/dev/null && echo WROTE-RO || echo RO-OK
echo data > /mnt/work-dir/f && cat /mnt/work-dir/f
ls -A {root} | wc -l
cat {victim_dir}/volumes/*/*/token 2>/dev/null && echo SAW-VICTIM || echo VICTIM-HIDDEN
ls -A {server.data_dir} | wc -l
ls /proc | grep -c '^[0-9]' """, volumes="""  volumes:
  - name: work
    emptyDir: {}""", mounts="""    volumeMounts:
    - {name: work, mountPath: /mnt/work-dir}""")
    wait_for(lambda: _phase(server, "snoop") in ("Succeeded", "Failed"), 20, "done")
    out = [line.split(" ", 3)[3] for line in _log(root, pod).splitlines() if " stdout " in line]
    assert out[0] == "RO-OK"
    assert out[1] == "data"
    assert out[2] == "0"  # the agent's root: an empty tmpfs
    assert out[3] == "VICTIM-HIDDEN"
    assert out[4] == "0"  # the server's data dir (--hide-path)
    assert int(out[5]) < 5  # its own PID namespace: only its own processes
    assert _phase(server, "snoop") == "Succeeded"


def test_exit_codes_and_restart_policy_never(server: Server, agent: tuple[Path, Path]) -> None:
    _apply(server, "fails", "exit 3")
    wait_for(lambda: _phase(server, "fails") == "Failed", 20, "Failed")
    st = _get(server, "fails")["status"]
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert st["containerStatuses"][0]["restartCount"] == 0
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
    # No pod network: the pod says so in an Event (kubectl describe shows it).
    events = wait_for(lambda: server.kubectl("get", "events", "--field-selector",
                                             "involvedObject.name=fails,reason=SharedHostNetwork").stdout, 20,
                      "the shared-network Event")
    assert "kubesat runs this pod in the node's network" in events


def test_a_crashing_container_goes_into_crash_loop_back_off(server: Server, agent: tuple[Path, Path]) -> None:
    root, _ = agent
    pod = _apply(server, "crashes", "echo run; exit 1", policy="Always")

    def backing_off() -> dict | None:
        cs = _get(server, "crashes")["status"].get("containerStatuses") or [{}]
        waiting = (cs[0].get("state") or {}).get("waiting") or {}
        return cs[0] if waiting.get("reason") == "CrashLoopBackOff" else None
    cs = wait_for(backing_off, 20, "CrashLoopBackOff")
    uid = pod["metadata"]["uid"]
    assert cs["state"]["waiting"]["message"] == \
        f"back-off 10s restarting failed container=app pod=crashes_default({uid})"
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert _get(server, "crashes")["status"]["phase"] == "Running"
    assert "run" in _log(root, pod, n=0) and "run" in _log(root, pod, n=1)
    events = server.kubectl("get", "events", "--field-selector", "involvedObject.name=crashes").stdout
    assert "BackOff" in events
    server.kubectl("delete", "pod", "crashes", "--wait=false")


def test_deletion_sends_sigterm_to_the_process(server: Server, agent: tuple[Path, Path]) -> None:
    root, shared = agent
    marker = shared / "terminated"
    _apply(server, "graceful", "trap 'echo got-TERM > /mnt/out/terminated; exit 0' TERM; echo up > /mnt/out/up; "
           "while :; do sleep 0.2; done", policy="Always", volumes=f"""  volumes:
  - name: out
    hostPath: {{path: {shared}}}""", mounts="""    volumeMounts:
    - {name: out, mountPath: /mnt/out}""")
    wait_for(lambda: (shared / "up").exists(), 20, "the process started")
    pod_dir = root / "pods" / _get(server, "graceful")["metadata"]["uid"]
    server.kubectl("delete", "pod", "graceful", "--wait=false")
    wait_for(lambda: marker.exists(), 10, "SIGTERM reached the process")
    assert marker.read_text() == "got-TERM\n"
    wait_for(lambda: server.kubectl("get", "pod", "graceful", check=False).returncode != 0, 15, "the pod gone")
    wait_for(lambda: not pod_dir.exists(), 10, "its directory removed")
    assert not os.path.exists("/mnt/out")  # the host's filesystem was not touched by the mount target


def test_a_host_path_outside_the_allowed_dirs_is_refused(server: Server, agent: tuple[Path, Path]) -> None:
    _apply(server, "hostpath-denied", "true", volumes="""  volumes:
  - name: etc
    hostPath: {path: /etc}""", mounts="""    volumeMounts:
    - {name: etc, mountPath: /host-etc}""")

    def refused() -> bool:
        cs = _get(server, "hostpath-denied")["status"].get("containerStatuses") or [{}]
        return ((cs[0].get("state") or {}).get("waiting") or {}).get("reason") == "CreateContainerConfigError"
    wait_for(refused, 20, "CreateContainerConfigError")
    events = server.kubectl("get", "events", "--field-selector", "involvedObject.name=hostpath-denied").stdout
    assert "--allow-host-path" in events


def _condition(server: Server, name: str, type_: str) -> str:
    return str({c["type"]: c for c in _get(server, name)["status"].get("conditions") or []}.get(type_, {})
               .get("status", ""))


def test_init_containers_run_in_order_before_the_app(server: Server, agent: tuple[Path, Path]) -> None:
    root, shared = agent
    order = shared / "init-order"
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "inits", "namespace": "default"},
        "spec": {"nodeName": NODE, "restartPolicy": "Never",
                 "volumes": [{"name": "out", "hostPath": {"path": str(shared)}}],
                 "initContainers": [
                     {"name": f"init-{i}", "image": "busybox",
                      "command": ["sh", "-c", f"sleep 0.3; echo init-{i} >> /mnt/out/init-order"],
                      "volumeMounts": [{"name": "out", "mountPath": "/mnt/out"}]} for i in (1, 2)],
                 "containers": [{"name": "app", "image": "busybox",
                                 "command": ["sh", "-c", "echo app >> /mnt/out/init-order"],
                                 "volumeMounts": [{"name": "out", "mountPath": "/mnt/out"}]}]}}))
    wait_for(lambda: _phase(server, "inits") == "Succeeded", 30, "Succeeded")
    assert order.read_text().split() == ["init-1", "init-2", "app"]
    st = _get(server, "inits")["status"]
    inits = {s["name"]: s["state"]["terminated"] for s in st["initContainerStatuses"]}
    assert {n: (t["exitCode"], t["reason"]) for n, t in inits.items()} == {
        "init-1": (0, "Completed"), "init-2": (0, "Completed")}
    assert inits["init-1"]["finishedAt"] <= inits["init-2"]["startedAt"]
    assert _condition(server, "inits", "Initialized") == "True"


def test_a_failing_init_container_keeps_the_app_from_starting(server: Server, agent: tuple[Path, Path]) -> None:
    _, shared = agent
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "init-fails", "namespace": "default"},
        "spec": {"nodeName": NODE, "restartPolicy": "Never",
                 "volumes": [{"name": "out", "hostPath": {"path": str(shared)}}],
                 "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "exit 7"]}],
                 "containers": [{"name": "app", "image": "busybox", "command": ["sh", "-c", "touch /mnt/out/app-ran"],
                                 "volumeMounts": [{"name": "out", "mountPath": "/mnt/out"}]}]}}))
    wait_for(lambda: _phase(server, "init-fails") == "Failed", 30, "Failed")
    st = _get(server, "init-fails")["status"]
    assert st["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 7
    assert not (shared / "app-ran").exists()
    assert _condition(server, "init-fails", "Initialized") == "False"


def test_a_readiness_probe_flips_ready_and_a_liveness_probe_restarts(server: Server, agent: tuple[Path, Path]) -> None:
    _, shared = agent
    flag = shared / "ready-flag"
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed", "namespace": "default"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2,  # sh as pid 1 ignores SIGTERM
                 "volumes": [{"name": "out", "hostPath": {"path": str(shared)}}],
                 "containers": [{
                     "name": "app", "image": "busybox", "command": ["sh", "-c", "while :; do sleep 0.2; done"],
                     "volumeMounts": [{"name": "out", "mountPath": "/mnt/out"}],
                     "readinessProbe": {"exec": {"command": ["test", "-f", "/mnt/out/ready-flag"]},
                                        "periodSeconds": 1, "failureThreshold": 1},
                     "livenessProbe": {"exec": {"command": ["test", "!", "-f", "/mnt/out/kill-flag"]},
                                       "periodSeconds": 1, "failureThreshold": 1}}]}}))
    wait_for(lambda: _phase(server, "probed") == "Running", 20, "Running")
    time.sleep(2)
    assert _condition(server, "probed", "Ready") == "False"
    flag.write_text("ok")
    wait_for(lambda: _condition(server, "probed", "Ready") == "True", 10, "Ready once the probe passes")
    flag.unlink()
    wait_for(lambda: _condition(server, "probed", "Ready") == "False", 10, "not Ready once it fails")
    (shared / "kill-flag").write_text("x")
    try:
        cs = wait_for(lambda: (s := _get(server, "probed")["status"]["containerStatuses"][0])["restartCount"] >= 1
                      and s, 20, "a restart by the liveness probe")
    finally:
        (shared / "kill-flag").unlink()
    assert "lastState" in cs and "terminated" in cs["lastState"]
    events = server.kubectl("get", "events", "--field-selector", "involvedObject.name=probed").stdout
    assert "Unhealthy" in events and "Liveness probe failed" in events and "Readiness probe failed" in events
    server.kubectl("delete", "pod", "probed", "--wait=false")


def test_a_pre_stop_hook_runs_before_sigterm(server: Server, agent: tuple[Path, Path]) -> None:
    _, shared = agent
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hooked", "namespace": "default"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 10,
                 "volumes": [{"name": "out", "hostPath": {"path": str(shared)}}],
                 "containers": [{
                     "name": "app", "image": "busybox",
                     "command": ["sh", "-c", "trap 'echo term >> /mnt/out/stop-order; exit 0' TERM; "
                                 "while :; do sleep 0.2; done"],
                     "volumeMounts": [{"name": "out", "mountPath": "/mnt/out"}],
                     "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c",
                                                                    "echo pre-stop >> /mnt/out/stop-order"]}}}}]}}))
    wait_for(lambda: _phase(server, "hooked") == "Running", 20, "Running")
    time.sleep(0.5)
    server.kubectl("delete", "pod", "hooked", "--wait=false")
    wait_for(lambda: server.kubectl("get", "pod", "hooked", check=False).returncode != 0, 20, "the pod gone")
    assert (shared / "stop-order").read_text().split() == ["pre-stop", "term"]


def test_logs_previous_after_a_crash(server: Server, agent: tuple[Path, Path]) -> None:
    _apply(server, "relapse", "echo attempt-$(date +%s%N); sleep 0.5; exit 1", policy="Always")
    wait_for(lambda: (_get(server, "relapse")["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0)
             >= 1, 30, "a restart")
    previous = server.kubectl("logs", "relapse", "--previous").stdout.split()
    assert len(previous) == 1 and previous[0].startswith("attempt-")
    # Until the next attempt starts (after the back-off) the current log is still the crashed one's, as the
    # kubelet's: wait for the next attempt's line.
    current = wait_for(lambda: [line for line in server.kubectl("logs", "relapse", check=False).stdout.split()
                                if line not in previous], 30, "the next attempt's log")
    assert current[0].startswith("attempt-")
    server.kubectl("delete", "pod", "relapse", "--wait=false")
