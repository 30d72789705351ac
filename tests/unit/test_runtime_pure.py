"""The process runtime's pure parts: the container environment (envvars), CRI log lines and rotation, the
crash-loop back-off, the pod phase, mount planning."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kubesat.agent import envvars
from kubesat.agent.runtime import lifecycle, logs, mounts


def _pod(container: dict, **spec: object) -> dict:
    return {"metadata": {"name": "web-0", "namespace": "prod", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [container], **spec},
            "status": {"podIP": "127.0.0.5", "hostIP": "127.0.0.1"}}


KUBERNETES = {"metadata": {"name": "kubernetes"},
              "spec": {"clusterIP": "127.0.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}


def test_the_kubernetes_service_variables() -> None:
    env = envvars.service_env(KUBERNETES)
    assert env == {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://127.0.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://127.0.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "127.0.0.1"}


def test_the_environment_as_the_kubelet_builds_it() -> None:
    c = {"name": "app", "resources": {"limits": {"memory": "64Mi"}},
         "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "s"}}],
         "env": [{"name": "A", "value": "a"}, {"name": "B", "value": "$(A)-$(NOPE)-$$(A)-$(CFG_mode)"},
                 {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                 {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                 {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                 {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "x", "optional": True}}},
                 {"name": "KUBERNETES_SERVICE_PORT", "value": "8443"}]}
    web = {"metadata": {"name": "my-db"}, "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 5432}]}}
    headless = {"metadata": {"name": "hl"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}
    sources = envvars.EnvSources(
        configmaps={"cfg": {"data": {"mode": "on", "bad=key": "x"}}},
        secrets={"s": {"data": {"PASSWORD": base64.b64encode(b"hunter2").decode()}}, "gone": None},
        services=[web, headless], kubernetes=KUBERNETES)
    built = envvars.container_env(_pod(c), c, sources)
    env = built.env
    assert list(env)[:2] == ["HOSTNAME", "PATH"]
    assert env["HOSTNAME"] == "web-0" and env["PATH"] == envvars.DEFAULT_PATH
    assert env["A"] == "a" and env["B"] == "a-$(NOPE)-$(A)-on"
    assert env["NODE"] == "n1" and env["IP"] == "127.0.0.5" and env["MEM"] == "64"
    assert env["K"] == "on" and env["CFG_mode"] == "on" and env["PASSWORD"] == "hunter2"
    assert "OPT" not in env
    assert built.skipped == ["CFG_bad=key"]
    assert env["KUBERNETES_SERVICE_PORT"] == "8443"  # the container's own wins
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and env["MY_DB_SERVICE_HOST"] == "10.96.0.9"
    assert not any(k.startswith("HL_") for k in env)
    assert envvars.command_line({"command": ["echo", "$(A)"], "args": ["$(NODE)"]}, env) == ["echo", "a", "n1"]


def test_service_links_off_keeps_only_kubernetes_and_a_pod_path_wins() -> None:
    c = {"name": "app", "env": [{"name": "PATH", "value": "/opt/bin"}]}
    web = {"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}}
    env = envvars.container_env(_pod(c, enableServiceLinks=False), c,
                                envvars.EnvSources(services=[web], kubernetes=KUBERNETES)).env
    assert "WEB_SERVICE_HOST" not in env and env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["PATH"] == "/opt/bin"


@pytest.mark.parametrize(("var", "message"), [
    ({"configMapKeyRef": {"name": "cfg", "key": "k"}}, 'configmaps "cfg" not found'),
    ({"secretKeyRef": {"name": "s", "key": "k"}}, "couldn't find key k in Secret prod/s"),
])
def test_a_missing_reference_is_the_kubelets_error(var: dict, message: str) -> None:
    c = {"name": "app", "env": [{"name": "X", "valueFrom": var}]}
    with pytest.raises(envvars.EnvError, match=message):
        envvars.container_env(_pod(c), c, envvars.EnvSources(secrets={"s": {"data": {}}}))


def test_environment_and_command_sizes_are_bounded() -> None:
    c = {"name": "app", "env": [{"name": "BIG", "value": "x" * (envvars.MAX_VALUE + 1)}]}
    with pytest.raises(envvars.EnvError, match="longer than"):
        envvars.container_env(_pod(c), c, envvars.EnvSources())
    with pytest.raises(envvars.EnvError, match="command line"):
        envvars.command_line({"name": "app", "command": ["x" * (envvars.MAX_VALUE + 1)]}, {})


def test_expansion_edge_cases() -> None:
    assert envvars.expand("$(A", {"A": "1"}) == "$(A"
    assert envvars.expand("cost: $5 $", {}) == "cost: $5 $"
    assert envvars.expand("$$$(A)", {"A": "1"}) == "$1"


# -- CRI logs ------------------------------------------------------------------------------------------------

def test_cri_lines_full_and_partial(tmp_path: Path) -> None:
    clock = iter(range(1_700_000_000_000_000_000, 1_800_000_000_000_000_000, 1000))
    log = logs.ContainerLog(tmp_path / "app" / "0.log", clock=lambda: next(clock))
    log.write("stdout", b"hello\nwor")
    log.write("stderr", b"oops\n")
    log.write("stdout", b"ld\n" + b"y" * (logs.MAX_LINE + 10) + b"\nend")
    log.close()
    lines = (tmp_path / "app" / "0.log").read_bytes().splitlines()
    ts, stream, partial, content = logs.parse_line(lines[0])
    assert ts == "2023-11-14T22:13:20.000000000Z" and stream == "stdout" and not partial and content == b"hello"
    assert lines[1].split(b" ", 3)[1:] == [b"stderr", b"F", b"oops"]
    assert lines[2].endswith(b" stdout F world")
    assert lines[3].split(b" ")[2] == b"P" and lines[4].split(b" ")[2] == b"F"
    assert lines[-1].endswith(b" stdout F end")
    whole = [e[2] for e in logs.entries(tmp_path / "app" / "0.log")]
    assert whole == [b"hello", b"oops", b"world", b"y" * (logs.MAX_LINE + 10), b"end"]


def test_rotation_by_size_keeps_max_files(tmp_path: Path) -> None:
    now = [1_700_000_000_000_000_000]

    def clock() -> int:
        now[0] += 1_000_000_000
        return now[0]
    path = tmp_path / "app" / "0.log"
    log = logs.ContainerLog(path, max_size=200, max_files=3, clock=clock)
    for i in range(40):
        log.write("stdout", f"line {i:04d} ".encode() + b"x" * 40 + b"\n")
    log.close()
    rotated = sorted(p.name for p in path.parent.iterdir() if p.name != "0.log")
    assert len(rotated) == 2 and all(n.startswith("0.log.20231114-") for n in rotated)
    assert path.stat().st_size < 200
    assert b"line 0039" in path.read_bytes()


# -- lifecycle -----------------------------------------------------------------------------------------------

def test_crash_backoff_doubles_to_the_cap_and_resets() -> None:
    b = lifecycle.CrashBackoff()
    t = 1000.0
    assert b.wait("c", t, t) == 0  # the first restart is at once
    b.next("c", t, t)
    waits = []
    for _ in range(7):
        t += 1
        waits.append(b.current("c"))
        assert b.wait("c", t, t) == b.current("c")
        t += b.current("c")
        b.next("c", t, t)
    assert waits == [10, 20, 40, 80, 160, 300, 300]
    later = t + 601  # ran ten minutes without failing
    assert b.wait("c", later, later) == 0
    b.next("c", later, later)
    assert b.current("c") == 10


def test_backoff_message_and_go_durations() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}}
    assert lifecycle.backoff_message(80, "app", pod) == "back-off 1m20s restarting failed container=app pod=p_ns(u)"
    assert [lifecycle.go_duration(s) for s in (10, 300, 3600)] == ["10s", "5m0s", "1h0m0s"]


def _term(name: str, code: int) -> dict:
    return {"name": name, "state": {"terminated": {"exitCode": code}}}


@pytest.mark.parametrize(("policy", "codes", "phase"), [
    ("Never", [0, 0], "Succeeded"), ("Never", [0, 1], "Failed"), ("OnFailure", [0, 0], "Succeeded"),
    ("OnFailure", [0, 1], "Running"), ("Always", [0, 0], "Running"),
])
def test_phase_from_exit_codes(policy: str, codes: list[int], phase: str) -> None:
    pod = {"spec": {"restartPolicy": policy, "containers": [{"name": "a"}, {"name": "b"}]}}
    assert lifecycle.phase(pod, [], [_term("a", codes[0]), _term("b", codes[1])]) == phase


def test_phase_with_init_containers() -> None:
    pod = {"spec": {"restartPolicy": "Never", "initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}}
    waiting = {"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}
    assert lifecycle.phase(pod, [{"name": "i", "state": {"running": {}}}], [waiting]) == "Pending"
    assert lifecycle.phase(pod, [_term("i", 1)], [waiting]) == "Failed"
    conds = lifecycle.conditions(pod, "Pending", [{"name": "i", "state": {"running": {}}}], [waiting])
    assert conds["Initialized"] == ("False", "ContainersNotInitialized", "containers with incomplete status: [i]")
    assert conds["Ready"][1] == "ContainersNotReady"


def test_mount_plan_refuses_what_the_node_does_not_allow(tmp_path: Path) -> None:
    c = {"volumeMounts": [{"name": "v", "mountPath": "/data/", "subPath": "a/b", "readOnly": True}]}
    [m] = mounts.plan(c, {"v": "/agent-root/pods/u/volumes/x/v"}, {}, [])
    assert (m.target, m.sub_path, m.read_only) == ("/data", "a/b", True)
    with pytest.raises(mounts.MountError, match="subPath"):
        mounts.plan({"volumeMounts": [{"name": "v", "mountPath": "/d", "subPath": "../x"}]}, {"v": "/v"}, {}, [])
    with pytest.raises(mounts.MountError, match="allow-host-path"):
        mounts.plan({"volumeMounts": [{"name": "h", "mountPath": "/d"}]}, {}, {"h": "/etc"}, [tmp_path])
    [h] = mounts.plan({"volumeMounts": [{"name": "h", "mountPath": "/d"}]}, {}, {"h": str(tmp_path / "s")},
                      [tmp_path])
    assert h.recursive
