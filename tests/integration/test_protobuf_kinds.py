"""The protobuf bodies the real kubectl sends for batch/v1 and policy/v1 kinds, decoded with the generated tables."""

from __future__ import annotations

import json

import pytest

from .conftest import Server

pytestmark = pytest.mark.integration

PROTOBUF = "Content-Type: application/vnd.kubernetes.protobuf"


def _get(server: Server, *args: str) -> dict:
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)


def test_kubectl_create_job_sends_protobuf_and_it_decodes(server: Server) -> None:
    res = server.kubectl("create", "job", "pi", "--image=busybox:1.36", "-v=8", "--", "echo", "3.14")
    assert PROTOBUF in res.stderr  # the body really was protobuf, not JSON
    job = _get(server, "job", "pi")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert (container["name"], container["image"], container["command"]) == ("pi", "busybox:1.36", ["echo", "3.14"])
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_kubectl_create_cronjob_keeps_its_schedule_and_template(server: Server) -> None:
    res = server.kubectl("create", "cronjob", "tick", "--image=busybox:1.36", "--schedule=*/5 * * * *",
                         "--restart=OnFailure", "-v=8", "--", "date")
    assert PROTOBUF in res.stderr
    cron = _get(server, "cronjob", "tick")
    assert cron["spec"]["schedule"] == "*/5 * * * *"
    pod_spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "OnFailure"
    assert pod_spec["containers"][0]["command"] == ["date"]


def test_kubectl_create_pdb_keeps_a_zero_min_available(server: Server) -> None:
    # minAvailable is an IntOrString: the int 0 must arrive as 0, not be dropped as an empty value.
    res = server.kubectl("create", "poddisruptionbudget", "web", "--selector=app=web", "--min-available=0", "-v=8")
    assert PROTOBUF in res.stderr
    pdb = _get(server, "pdb", "web")
    assert pdb["spec"]["minAvailable"] == 0
    assert pdb["spec"]["selector"] == {"matchLabels": {"app": "web"}}
