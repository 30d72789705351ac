"""The streams' pure parts: WebSocket channel framing (v1-v5, base64), the CRI log reader, the kubelet API's
routing and caller check, and how the API server authorizes and validates the connect subresources."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest

from kubesat import errors, remotecommand
from kubesat.agent import crilog, kubeletapi
from kubesat.api import requestinfo, streams
from kubesat.api.app import Request
from kubesat.remotecommand import Framing

# ----------------------------------------------------------------------------------------- framing


def test_subprotocol_choice_follows_the_clients_order() -> None:
    assert remotecommand.choose(["v5.channel.k8s.io", "v4.channel.k8s.io"], remotecommand.EXEC_PROTOCOLS) == \
        "v5.channel.k8s.io"
    assert remotecommand.choose(["SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io"],
                                remotecommand.PORT_FORWARD_PROTOCOLS) == "v4.channel.k8s.io"
    assert remotecommand.choose([], remotecommand.EXEC_PROTOCOLS) == ""  # the original binary protocol
    assert remotecommand.choose(["v9.channel.k8s.io"], remotecommand.EXEC_PROTOCOLS) is None


def test_binary_framing_round_trips() -> None:
    f = Framing(remotecommand.V4)
    assert f.encode(remotecommand.STDOUT, b"hi") == b"\x01hi"
    assert f.decode(b"\x00input") == (0, b"input")
    assert f.decode(b"\x04" + b'{"Width":80,"Height":24}')[0] == remotecommand.RESIZE
    with pytest.raises(remotecommand.FrameError):
        f.decode(b"")
    assert f.status_errors and f.resize and not f.close_signal and f.close(0) is None


def test_base64_framing_uses_text_messages() -> None:
    f = Framing(remotecommand.V4_BASE64)
    assert f.encode(remotecommand.STDERR, b"\xff\x00") == "2" + base64.b64encode(b"\xff\x00").decode()
    assert f.decode("0aGk=") == (0, b"hi")
    for bad in (b"\x00hi", "x", "0***"):
        with pytest.raises(remotecommand.FrameError):
            f.decode(bad)


def test_v5_close_signal_names_the_channel() -> None:
    f = Framing(remotecommand.V5)
    assert f.close(remotecommand.STDIN) == b"\xff\x00"
    assert f.decode(b"\xff\x00") == (remotecommand.CLOSE, b"\x00")


def test_error_channel_status_v4_and_text_before() -> None:
    status = remotecommand.exit_code_status(2, ["sh", "-c", "exit 2"])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]
    v4 = json.loads(remotecommand.error_payload(Framing(remotecommand.V4), status))
    assert v4["status"] == "Failure"
    assert remotecommand.error_payload(Framing(remotecommand.V4), remotecommand.success_status()) == \
        b'{"metadata":{},"status":"Success"}'
    assert remotecommand.error_payload(Framing(remotecommand.V1), remotecommand.success_status()) == b""
    assert remotecommand.error_payload(Framing(remotecommand.V2), status).startswith(b"command terminated")
    internal = remotecommand.internal_status("unable to upgrade connection: container not found (\"c\")")
    assert internal["message"] == 'Internal error occurred: unable to upgrade connection: container not found ("c")'


def test_resize_messages() -> None:
    assert remotecommand.parse_resize(b'{"Width":120,"Height":40}') == (120, 40)
    for bad in (b"", b"[]", b'{"Width":"x","Height":1}', b'{"Width":1,"Height":70000}'):
        assert remotecommand.parse_resize(bad) is None


# ----------------------------------------------------------------------------------------- CRI logs
LINES = [
    b"2026-12-03T10:15:30.123456789Z stdout F first",
    b"2026-12-03T10:15:31.000000000Z stderr P par",
    b"2026-12-03T10:15:31.500000000Z stderr F tial",
    b"2026-12-03T10:15:32Z stdout F third",
    b'{"log":"docker line\\n","stream":"stdout","time":"2026-12-03T10:15:33.5Z"}',
]


def _log(tmp_path: Path, lines: list[bytes] = LINES) -> Path:
    p = tmp_path / "0.log"
    p.write_bytes(b"".join(line + b"\n" for line in lines))
    return p


def _read(path: Path, **kw: object) -> bytes:
    out: list[bytes] = []

    async def write(data: bytes) -> None:
        out.append(data)

    asyncio.run(crilog.read_log(path, crilog.LogOptions(**kw), write))  # type: ignore[arg-type]
    return b"".join(out)


def test_parse_line_and_its_errors() -> None:
    line = crilog.parse_line(LINES[0])
    assert (line.stream, line.partial, line.content) == ("stdout", False, b"first")
    assert crilog.format_time_ns(line.time_ns) == "2026-12-03T10:15:30.123456789Z"
    assert crilog.parse_line(b"2026-12-03T10:15:30+01:00 stdout F:x y").time_ns == \
        crilog.parse_time_ns("2026-12-03T09:15:30Z")
    for bad, why in ((b"nope stdout F x", "timestamp is not found"),
                     (b"2026-12-03T10:15:30Z stdin F x", "stream type is not found"),
                     (b"2026-12-03T10:15:30Z stdout", "log tag is not found"),
                     (b"2026-12-03T10:15:30Z stdout X x", "log tag is not found"),
                     (b"{not json", "unsupported log format")):
        with pytest.raises(crilog.LogFormatError, match=why):
            crilog.parse_line(bad)


def test_whole_log_joins_partial_lines(tmp_path: Path) -> None:
    assert _read(_log(tmp_path)) == b"first\npartial\nthird\ndocker line\n"


def test_tail_counts_file_lines(tmp_path: Path) -> None:
    path = _log(tmp_path)
    assert _read(path, tail_lines=2) == b"third\ndocker line\n"
    assert _read(path, tail_lines=0) == b""
    assert _read(path, tail_lines=100) == _read(path)
    assert crilog.tail_offset(path, 1) == path.stat().st_size - len(LINES[-1]) - 1


def test_since_timestamps_and_limit_bytes(tmp_path: Path) -> None:
    path = _log(tmp_path)
    since = crilog.parse_time_ns("2026-12-03T10:15:32Z")
    assert _read(path, since_ns=since) == b"third\ndocker line\n"
    assert _read(path, since_ns=since, timestamps=True) == \
        b"2026-12-03T10:15:32.000000000Z third\n2026-12-03T10:15:33.500000000Z docker line\n"
    assert _read(path, limit_bytes=8) == b"first\npa"


def test_follow_reads_growth_and_rotation_until_the_container_stops(tmp_path: Path) -> None:
    path = _log(tmp_path, LINES[:1])
    out: list[bytes] = []
    state = {"running": True}

    async def write(data: bytes) -> None:
        out.append(data)

    async def scenario() -> None:
        task = asyncio.create_task(crilog.read_log(path, crilog.LogOptions(follow=True), write,
                                                   lambda: state["running"], poll=0.01))
        await asyncio.sleep(0.05)
        with open(path, "ab") as f:
            f.write(b"2026-12-03T10:16:00Z stdout F grown\n")
        await asyncio.sleep(0.05)
        os.rename(path, tmp_path / "0.log.20261203-101600")  # the runtime rotates: a new file at the path
        path.write_bytes(b"2026-12-03T10:16:01Z stdout F rotated\n")
        await asyncio.sleep(0.05)
        state["running"] = False
        await asyncio.wait_for(task, 2)

    asyncio.run(scenario())
    assert b"".join(out) == b"first\ngrown\nrotated\n"


def test_log_source_in_the_kubelets_words() -> None:
    running = {"name": "c", "state": {"running": {}}, "containerID": "x://1"}
    crashed = {"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"containerID": "x://0", "exitCode": 1}}}
    assert crilog.log_source([running], "c", "p", False) is False
    assert crilog.log_source([crashed], "c", "p", False) is True  # the last run's log while it waits
    assert crilog.log_source([crashed], "c", "p", True) is True
    cases = [
        ([running], True, 'previous terminated container "c" in pod "p" not found'),
        ([{"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}], False,
         'container "c" in pod "p" is waiting to start: ContainerCreating'),
        ([{"name": "c", "state": {"waiting": {"reason": "ErrImagePull"}}}], False,
         "container \"c\" in pod \"p\" is waiting to start: image can't be pulled"),
        ([{"name": "c", "state": {"terminated": {"exitCode": 0}}}], False, 'container "c" in pod "p" is terminated'),
        ([], False, 'container "c" in pod "p" is not available'),
    ]
    for statuses, previous, message in cases:
        with pytest.raises(crilog.LogStatusError) as e:
            crilog.log_source(statuses, "c", "p", previous)
        assert str(e.value) == message


def test_log_query_options() -> None:
    opts, previous = crilog.query_options({"tailLines": ["5"], "timestamps": ["true"], "previous": ["1"],
                                           "sinceSeconds": ["10"], "limitBytes": ["100"], "follow": ["true"]},
                                          100 * 10**9)
    assert opts == crilog.LogOptions(follow=True, tail_lines=5, since_ns=90 * 10**9, timestamps=True,
                                     limit_bytes=100)
    assert previous
    for bad in ({"tailLines": ["x"]}, {"tailLines": ["-1"]}, {"limitBytes": ["0"]}, {"follow": ["maybe"]},
                {"sinceTime": ["yesterday"]}, {"sinceSeconds": ["1"], "sinceTime": ["2026-12-03T10:15:30Z"]}):
        with pytest.raises(ValueError):
            crilog.query_options(bad, 0)


# ----------------------------------------------------------------------------------------- kubelet API
def test_kubelet_routes() -> None:
    assert kubeletapi.route("/containerLogs/ns/p/c") == kubeletapi.Route("logs", "ns", "p", "", "c")
    assert kubeletapi.route("/exec/ns/p/c") == kubeletapi.Route("exec", "ns", "p", "", "c")
    assert kubeletapi.route("/attach/ns/p/uid-1/c") == kubeletapi.Route("attach", "ns", "p", "uid-1", "c")
    assert kubeletapi.route("/portForward/ns/p") == kubeletapi.Route("portforward", "ns", "p")
    assert kubeletapi.route("/healthz") == kubeletapi.Route("healthz")
    assert kubeletapi.route("/exec/ns") is None and kubeletapi.route("/run/ns/p/c") is None


def test_only_the_api_servers_kubelet_client_may_call() -> None:
    allowed = frozenset({kubeletapi.KUBELET_CLIENT_USER})
    assert kubeletapi.authorize(("kube-apiserver-kubelet-client", ("kubeadm:cluster-admins",)), "get", allowed) \
        is None
    none = kubeletapi.authorize(None, "get", allowed)
    assert none is not None and (none.code, none.text) == (401, "Unauthorized")
    other = kubeletapi.authorize(("system:node:n1", ("system:nodes",)), "create", allowed)
    assert other is not None and other.code == 403
    assert other.text == "Forbidden (user=system:node:n1, verb=create, resource=nodes, subresource(s)=[proxy])"
    assert kubeletapi.peer_identity({"subject": ((("organizationName", "g"),), (("commonName", "u"),))}) == \
        ("u", ("g",))


def test_exec_and_port_forward_queries_are_bounded() -> None:
    req = kubeletapi.exec_request("uid", "c", {"command": ["ls", "-l"], "output": ["1"], "tty": ["1"]}, False)
    assert (req.command, req.stdout, req.stderr, req.stdin, req.tty) == (["ls", "-l"], True, False, False, True)
    assert kubeletapi.exec_request("uid", "c", {"input": ["1"]}, True).command == []
    for query, attach in (({"output": ["1"]}, False), ({"command": ["ls"]}, False),
                          ({"command": ["x"] * (kubeletapi.MAX_COMMAND_ARGS + 1), "output": ["1"]}, False)):
        with pytest.raises(kubeletapi._Refusal):
            kubeletapi.exec_request("uid", "c", query, attach)
    assert kubeletapi.forward_ports({"ports": ["80,8080", "443"]}) == [80, 8080, 443]
    for bad in ({}, {"ports": ["http"]}, {"ports": ["70000"]}, {"ports": [",".join(["1"] * 65)]}):
        with pytest.raises(kubeletapi._Refusal):
            kubeletapi.forward_ports(bad)


# ----------------------------------------------------------------------------------------- API server side
def _req(method: str, path: str, query: dict[str, list[str]]) -> Request:
    return Request({}, method, path, query, {}, requestinfo.parse(method, path, False))


def test_connect_subresources_are_authorized_by_method_as_in_132() -> None:
    # 1.32 authorizes a WebSocket exec (a GET) as `get pods/exec`, a SPDY one (a POST) as `create`.
    for method, verb in (("GET", "get"), ("POST", "create")):
        info = requestinfo.parse(method, "/api/v1/namespaces/ns/pods/p/exec", False)
        assert (info.verb, info.resource, info.subresource, info.name, info.namespace) == \
            (verb, "pods", "exec", "p", "ns")
    info = requestinfo.parse("GET", "/api/v1/nodes/n1/proxy/healthz", False)
    assert (info.verb, info.resource, info.subresource, info.name) == ("get", "nodes", "proxy", "n1")
    assert requestinfo.parse("GET", "/api/v1/namespaces/ns/pods/p/log", False).subresource == "log"


def test_container_choice_and_kubelet_queries() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                                "initContainers": [{"name": "i"}]}}
    assert streams.pick_container(pod, "i") == "i"
    with pytest.raises(errors.StatusError, match=r"a container name must be specified for pod p, choose one of: "
                                                 r"\[i a b\]"):
        streams.pick_container(pod, "")
    with pytest.raises(errors.StatusError, match="container z is not valid for pod p"):
        streams.pick_container(pod, "z")
    q = streams.exec_query(_req("GET", "/api/v1/namespaces/ns/pods/p/exec",
                                {"command": ["ls", "-l"], "stdin": ["true"], "stdout": ["True"], "tty": ["1"]}),
                           False)
    assert q == "command=ls&command=-l&input=1&output=1&tty=1"
    with pytest.raises(errors.StatusError, match="at least 1 of stdin, stdout, stderr"):
        streams.exec_query(_req("GET", "/x", {"command": ["ls"]}), False)
    assert streams.log_query(_req("GET", "/api/v1/namespaces/ns/pods/p/log",
                                  {"follow": ["true"], "tailLines": ["3"], "sinceSeconds": ["60"]})) == \
        "follow=true&sinceSeconds=60&tailLines=3"
    with pytest.raises(errors.StatusError) as e:
        streams.log_query(_req("GET", "/api/v1/namespaces/ns/pods/p/log", {"tailLines": ["-2"]}))
    assert e.value.code == 422 and "tailLines: Invalid value: -2" in e.value.message


def test_node_backend_prefers_internal_ip_and_the_reported_port() -> None:
    node = {"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "::1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}}
    backend = streams.node_backend(node)
    assert backend == streams.Backend("::1", 12345)
    assert backend.url("/exec/a/b/c", "command=ls") == "https://[::1]:12345/exec/a/b/c?command=ls"
    assert backend.dial_error(ConnectionRefusedError()) == "dial tcp ::1:12345: connect: connection refused"
    assert streams.node_backend({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}).port == \
        10250
    with pytest.raises(errors.StatusError, match="no preferred addresses found"):
        streams.node_backend({"status": {}})
