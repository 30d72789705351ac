"""`kubesat run`'s pure parts: argument checks, the pods it creates, the command's environment and mounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubesat.agent import run
from kubesat.agent.run import RunError, RunOptions


def _opts(**kw: object) -> RunOptions:
    base: dict[str, object] = {"command": ("true",), "kubeconfig": Path("/k"), "node": "n1", "root": Path("/r")}
    base.update(kw)
    return RunOptions(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "message"), [
    ({"service_account": "a", "pod": "p"}, "at most one of"),
    ({"command": ()}, "no command"),
    ({"command": ("x",) * 1025}, "at most 1024 arguments"),
    ({"command": ("a\x00b",)}, "at most 1024 arguments"),
    ({"pod": "p", "audiences": ("vault",)}, "--audience needs a pod kubesat run creates"),
    ({"audiences": ("a",) * 9}, "at most 8 --audience"),
    ({"audiences": ("",)}, "--audience must be"),
    ({"audiences": ("a/b", "a:b")}, "same file name"),
    ({"namespace": "Bad_NS"}, "namespace 'Bad_NS' is not a valid name"),
    ({"service_account": "x" * 254}, "is not a valid name"),
    ({"container": "a.b"}, "container 'a.b' is not a valid name"),
    ({"timeout": 0.0}, "--timeout"),
])
def test_arguments_that_cannot_work_are_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(RunError, match=message):
        run.check_options(_opts(**kw))


def test_good_arguments_pass() -> None:
    run.check_options(_opts(namespace="apps", service_account="my.sa", audiences=("https://vault.example.com",)))


def test_audience_file_names() -> None:
    assert run.audience_file("vault") == "vault"
    assert run.audience_file("https://vault.example.com") == "https___vault.example.com"
    assert run.audience_file("..") == "_."
    assert len(run.audience_file("a" * 1000)) == 253


def test_the_pod_for_a_service_account() -> None:
    pod = run.service_account_pod("apps", "my.sa", "n1", ("vault",))
    assert pod["metadata"]["generateName"] == "kubesat-run-my-sa-"
    assert pod["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "kubesat-run"}
    spec = pod["spec"]
    assert (spec["serviceAccountName"], spec["nodeName"], spec["restartPolicy"]) == ("my.sa", "n1", "Never")
    (c,) = spec["containers"]
    assert "command" not in c and c["name"] == "run"
    assert c["volumeMounts"] == [{"name": "kubesat-run-tokens", "mountPath": "/var/run/secrets/tokens",
                                  "readOnly": True}]
    assert spec["volumes"][0]["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "vault"}}]


def _manifest(**meta: object) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", **meta},
            "status": {"phase": "Running"},
            "spec": {"containers": [{"name": "app", "image": "i", "command": ["serve"], "args": ["--x"],
                                     "livenessProbe": {}, "env": [{"name": "A", "value": "1"}]},
                                    {"name": "side", "image": "s", "command": ["side"]}]}}


def test_a_pod_from_a_file_loses_commands_and_probes_and_is_bound_here() -> None:
    pod, container = run.file_pod(_manifest(uid="u", resourceVersion="9"), None, "n1", None, ("aud",))
    assert container == "app"
    assert pod["metadata"] == {"name": "app", "namespace": "default",
                               "labels": {"app.kubernetes.io/managed-by": "kubesat-run"}}
    assert "status" not in pod and pod["spec"]["nodeName"] == "n1"
    app, side = pod["spec"]["containers"]
    assert app == {"name": "app", "image": "i", "env": [{"name": "A", "value": "1"}],
                   "volumeMounts": [{"name": "kubesat-run-tokens", "mountPath": "/var/run/secrets/tokens",
                                     "readOnly": True}]}
    assert side == {"name": "side", "image": "s"}
    assert run.file_pod(_manifest(), "apps", "n1", "side")[1] == "side"


@pytest.mark.parametrize(("doc", "ns", "container", "message"), [
    ({"kind": "Deployment", "apiVersion": "apps/v1"}, None, None, "one Pod manifest"),
    (_manifest(namespace="a"), "b", None, 'namespace from the provided object "a"'),
    ({**_manifest(), "spec": {"nodeName": "other", "containers": [{"name": "c"}]}}, None, None, "bound to node other"),
    ({**_manifest(), "spec": {"containers": []}}, None, None, "no containers"),
    (_manifest(), None, "nope", "no container named nope"),
])
def test_pod_files_that_cannot_run_here(doc: dict, ns: str | None, container: str | None,  # type: ignore[type-arg]
                                        message: str) -> None:
    with pytest.raises(RunError, match=message):
        run.file_pod(doc, ns, "n1", container)


def test_read_pod_file_is_bounded_and_single(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("a: &x 1\nb: *x\n")
    with pytest.raises(RunError, match="aliases"):
        run.read_pod_file(f)
    f.write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(RunError, match="found 2 documents"):
        run.read_pod_file(f)
    f.write_bytes(b"#" * (run.MAX_POD_FILE + 1))
    with pytest.raises(RunError, match="larger than"):
        run.read_pod_file(f)
    with pytest.raises(RunError, match="No such file"):
        run.read_pod_file(tmp_path / "missing")


def test_the_commands_environment() -> None:
    caller = {"PATH": "/venv/bin:/usr/bin", "HOME": "/home/dev", "KUBECONFIG": "/admin", "HOSTNAME": "host"}
    pod_env = {"PATH": "/usr/local/sbin:/usr/bin", "HOSTNAME": "pod", "KUBERNETES_SERVICE_HOST": "127.0.0.1"}
    env = run.merge_env(caller, pod_env, {"name": "c"})
    assert env == {"PATH": "/venv/bin:/usr/bin", "HOME": "/home/dev", "HOSTNAME": "pod",
                   "KUBERNETES_SERVICE_HOST": "127.0.0.1"}
    own_path = run.merge_env(caller, pod_env, {"env": [{"name": "PATH", "value": "/usr/local/sbin:/usr/bin"}]})
    assert own_path["PATH"] == "/usr/local/sbin:/usr/bin"
    assert run.parse_env(b"A=1\0B=x=y\0\0junk\0C=\xff\0") == {"A": "1", "B": "x=y", "C": "\udcff"}


def test_the_sandbox_spec_binds_the_containers_volumes_and_hides_credentials(tmp_path: Path) -> None:
    pod = {"metadata": {"name": "p", "uid": "u1"},
           "spec": {"volumes": [{"name": "tok", "projected": {"sources": []}}, {"name": "d", "emptyDir": {}},
                                {"name": "h", "hostPath": {"path": "/srv"}}],
                    "containers": [{"name": "c", "volumeMounts": [
                        {"name": "tok", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True},
                        {"name": "d", "mountPath": "/data"}, {"name": "h", "mountPath": "/h", "subPath": "x"}]}]}}
    (tmp_path / "pods" / "u1").mkdir(parents=True)
    (tmp_path / "pods" / "u1" / "etc-hosts").write_text("")
    o = _opts(root=tmp_path, command=("sh",), hide=(Path("/data-dir"),))
    spec = run.sandbox_spec(o, pod, "c", {"A": "1"}, tmp_path / "s", Path("/home/me"))
    vol = str(tmp_path / "pods" / "u1" / "volumes")
    assert [(m["source"], m["subPath"], m["target"], m["readOnly"]) for m in spec["mounts"]] == [
        (f"{vol}/kubernetes.io~projected/tok", "", "/var/run/secrets/kubernetes.io/serviceaccount", True),
        (f"{vol}/kubernetes.io~empty-dir/d", "", "/data", False), ("/srv", "x", "/h", False),
        (str(tmp_path / "pods" / "u1" / "etc-hosts"), "", "/etc/hosts", True)]
    assert spec["masks"] == [str(tmp_path), "/data-dir", "/k", "/home/me/.kube/config"]
    assert (spec["argv"], spec["env"], spec["proc"], spec["private"], spec["hostname"]) == (["sh"], {"A": "1"},
                                                                                           False, [], "p")
    bad = {**pod, "spec": {**pod["spec"], "containers": [{"name": "c", "volumeMounts": [{"name": "zz",
                                                                                        "mountPath": "/z"}]}]}}
    with pytest.raises(RunError, match="container c: volumeMount \"zz\" names no volume"):
        run.sandbox_spec(o, bad, "c", {}, tmp_path / "s")


def test_exit_codes_as_a_shell_reports_them() -> None:
    assert [run.exit_code(c) for c in (0, 3, -15, -9)] == [0, 3, 143, 137]
