"""The bridge pod network (`kubesat agent --pod-network bridge`): on a real server and a process-runtime agent, two
pods listen on the same port, each at its own podIP in the podCIDR; a third reaches one by podIP, a Service by
name and the API server at https://kubernetes.default.svc with its token; the agent's readiness probes and the API
server's pods/proxy reach the pods, `kubectl exec` runs in the pod's network; deleting a pod removes its veth;
stopping the agent removes the bridge, and an agent restarted after a kill removes what the killed one left."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.nftables.main import NFTables

from kubesat.agent.netns import create_netns, inside, opened, remove_netns, tag_for, unavailable
from kubesat.agent.runtime.process import runtime_available

from .conftest import Server, kubectl_binary, start_server, wait_for
from .test_port_forward import PortForward, _get

NODE = "podnet-n1"
NS = "podnet"


def _veth_unavailable() -> str | None:
    """Why veth pairs cannot be made here (None: they can)."""
    if runtime_available() is not None or unavailable() is not None:
        return runtime_available() or unavailable()
    name = f"kstp{os.getpid() % 100000}"
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})
            ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
    except (OSError, NetlinkError) as e:
        return f"cannot create a veth pair: {e}"
    return None


pytestmark = pytest.mark.skipif(_veth_unavailable() is not None, reason=f"no bridge pod network: {_veth_unavailable()}")

# Fetches a URL (retrying while the other side starts) and prints what came back, one line per call.
CLIENT = r'''
import os, ssl, sys, time, urllib.request
SA = "/var/run/secrets/kubernetes.io/serviceaccount"
def get(url, **kw):
    for _ in range(100):
        try:
            return urllib.request.urlopen(urllib.request.Request(url, headers=kw.get("headers", {})),
                                          timeout=5, context=kw.get("context")).read().decode()
        except OSError as e:
            print("retrying", url, e, flush=True)
            time.sleep(0.2)
    return "FAILED"
print("POD", "Directory listing" in get(sys.argv[1]), flush=True)
print("SERVICE", "Directory listing" in get("http://web:80/"), flush=True)
api = get("https://kubernetes.default.svc/api", context=ssl.create_default_context(cafile=SA + "/ca.crt"),
          headers={"Authorization": "Bearer " + open(SA + "/token").read()})
print("API", '"APIVersions"' in api, flush=True)
# As the official clients' in-cluster config does: by the address, verified against the server's certificate.
by_ip = get("https://%s:%s/api" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]),
            context=ssl.create_default_context(cafile=SA + "/ca.crt"),
            headers={"Authorization": "Bearer " + open(SA + "/token").read()})
print("BYIP", '"APIVersions"' in by_ip, flush=True)
print("HOSTS", os.environ.get("KUBERNETES_SERVICE_HOST"), flush=True)
'''


@dataclass
class Agent:
    root: Path
    log: Path
    cidr: ipaddress.IPv4Network
    tag: str


def _free_cidr() -> ipaddress.IPv4Network:
    """A /24 of 10.244.0.0/16 that no address on this machine is in (tests on one machine must not collide), nor
    the server's cluster CIDR."""
    with IPRoute() as ipr:
        used = [ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
                for a in ipr.get_addr(family=2)]
    candidates = [ipaddress.IPv4Network(f"10.244.{n}.0/24") for n in range(1, 255)]
    random.shuffle(candidates)
    return next(c for c in candidates if not any(c.overlaps(u) for u in [*used, *CLUSTER]))


# The server's --cluster-cidr: a free /24, cut into /26 podCIDRs (set by the server fixture).
CLUSTER: list[ipaddress.IPv4Network] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kubectl_binary()
    CLUSTER[:] = [_free_cidr()]
    srv = start_server(tmp_path_factory.mktemp("kubesat") / "data",
                       extra=["--cluster-cidr", str(CLUSTER[0]), "--node-cidr-mask-size", "26"])
    yield srv
    srv.stop()


def _links(tag: str) -> list[str]:
    with IPRoute() as ipr:
        return [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()
                if str(link.get_attr("IFLA_IFNAME")).startswith(f"ks{tag}")]


def _start(server: Server, tmp: Path, node: str, cidr: ipaddress.IPv4Network | None,
           network: str = "bridge") -> subprocess.Popen:
    """A bridge (or `network`) agent for `node` with its root under `tmp` (kept across restarts), its log appended
    to; without --pod-cidr when `cidr` is None."""
    kubeconfig = tmp / "node.kubeconfig"
    if not kubeconfig.exists():
        kubeconfig.write_bytes(subprocess.run([sys.executable, "-m", "kubesat.cli", "kubeconfig", "--node", node,
                                               "--data-dir", str(server.data_dir)], capture_output=True,
                                              check=True).stdout)
    with (tmp / "agent.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(kubeconfig),
                                 "--node-name", node, "--root", str(tmp / "root"), "--runtime", "process",
                                 "--pod-network", network, *(["--pod-cidr", str(cidr)] if cidr else []),
                                 "--service-relay-port", "443",
                                 "--port", "0", "--log-level", "info", "--hide-path", str(server.data_dir)],
                                stderr=log)


def _stop(proc: subprocess.Popen, tag: str) -> None:
    proc.terminate()
    proc.wait(timeout=30)
    assert _links(tag) == [], "the agent left its bridge or veths behind"
    assert not list(Path("/run/netns").glob(f"kubesat-{tag}-*")), "the agent left network namespaces"


def _node_ready(server: Server, node: str) -> None:
    wait_for(lambda: '"Ready"' in server.kubectl("get", "node", node, "-o", "json", check=False).stdout, 20,
             f"node {node} ready")


@pytest.fixture(scope="module")
def agent(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    tmp = tmp_path_factory.mktemp("netagent")
    cidr = _free_cidr()
    proc = _start(server, tmp, NODE, cidr)
    tag = tag_for(NODE, tmp / "root")
    try:
        _node_ready(server, NODE)
        server.kubectl("create", "namespace", NS)
        yield Agent(tmp / "root", tmp / "agent.log", cidr, tag)
    finally:
        _stop(proc, tag)


def _web(name: str, app: str) -> dict:
    """A pod serving its /tmp on port 8080, ready once the agent's probe reaches it at its podIP."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [{
                "name": "web", "image": "python", "workingDir": "/tmp",
                "command": ["python3", "-m", "http.server", "8080"],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}]}}


def _pod(server: Server, name: str) -> dict:
    out = server.kubectl("get", "pod", "-n", NS, name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _ready(server: Server, name: str) -> dict | None:
    pod = _pod(server, name)
    conditions = pod.get("status", {}).get("conditions") or []
    return pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None


@pytest.fixture(scope="module")
def webs(server: Server, agent: Agent) -> tuple[dict, dict]:
    server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        _web("web-a", "web"), _web("web-b", "other"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}]}))
    try:
        a = wait_for(lambda: _ready(server, "web-a"), 30, "web-a ready")
        b = wait_for(lambda: _ready(server, "web-b"), 30, "web-b ready")
    except AssertionError:
        print(server.kubectl("describe", "pods", "-n", NS, check=False).stdout)
        raise
    return a, b


def test_two_pods_listen_on_one_port_each_at_its_own_pod_ip(server: Server, agent: Agent,
                                                            webs: tuple[dict, dict]) -> None:
    ips = [w["status"]["podIP"] for w in webs]
    assert ips[0] != ips[1]
    for w, ip in zip(webs, ips, strict=True):
        assert ipaddress.IPv4Address(ip) in agent.cidr
        assert ip != str(next(agent.cidr.hosts()))  # the gateway, the bridge's own
        assert w["status"]["podIPs"] == [{"ip": ip}]
        assert w["status"]["hostIP"] != ip
    node = json.loads(server.kubectl("get", "node", NODE, "-o", "json").stdout)
    assert node["spec"]["podCIDR"] == str(agent.cidr)
    events = server.kubectl("get", "events", "-n", NS, "-o", "json").stdout
    assert "SharedHostNetwork" not in events
    # The API server's pods/proxy reaches the pod at its podIP.
    listing = server.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/web-b:8080/proxy/").stdout
    assert "Directory listing" in listing


def test_a_pod_reaches_a_pod_ip_a_service_by_name_and_the_api(server: Server, agent: Agent,
                                                              webs: tuple[dict, dict]) -> None:
    target = f"http://{webs[1]['status']['podIP']}:8080/"
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": NS},
        "spec": {"nodeName": NODE, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": "python",
                                 "command": ["python3", "-c", CLIENT, target]}]}}))
    wait_for(lambda: _pod(server, "client").get("status", {}).get("phase") in ("Succeeded", "Failed"), 60,
             "the client pod's end")
    out = server.kubectl("logs", "-n", NS, "client").stdout
    assert "POD True" in out, out
    assert "SERVICE True" in out, out
    assert "API True" in out, out
    assert "HOSTS 10.96.0.1" in out, out  # the kubernetes Service's ClusterIP, relayed on the bridge
    assert "BYIP True" in out, out


def test_deleting_a_pod_removes_its_veth(server: Server, agent: Agent, webs: tuple[dict, dict]) -> None:
    before = _links(agent.tag)
    assert f"ks{agent.tag}" in before and len(before) >= 3  # the bridge and the web pods' veths
    server.kubectl("delete", "pod", "-n", NS, "web-a", "--wait=true", timeout=60)
    wait_for(lambda: len(_links(agent.tag)) == len(before) - 1, 20, "the veth of web-a removed")
    uid = webs[0]["metadata"]["uid"]
    assert not Path(f"/run/netns/kubesat-{agent.tag}-{uid}").exists()


def test_exec_runs_in_the_pods_network(server: Server, agent: Agent, webs: tuple[dict, dict]) -> None:
    probe = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('10.96.0.1', 9)); " \
            "print(s.getsockname()[0])"
    out = server.kubectl("exec", "-n", NS, "web-b", "--", "python3", "-c", probe).stdout
    assert out.strip() == webs[1]["status"]["podIP"]


def test_port_forward_reaches_the_pod_at_its_ip(server: Server, agent: Agent, webs: tuple[dict, dict]) -> None:
    pf = PortForward(server, "-n", NS, "pod/web-b", ":8080")
    try:
        assert b"Directory listing" in _get(pf.wait_forwarding())
    finally:
        pf.kill()


def _veth_index(tag: str, uid: str) -> int | None:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=f"ks{tag}-{hashlib.sha256(uid.encode()).hexdigest()[:6]}")
    return int(found[0]) if found else None


def test_a_restarted_agent_removes_what_a_killed_one_left(server: Server, agent: Agent,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    node, tmp, cidr = "podnet-n2", tmp_path_factory.mktemp("netagent2"), _free_cidr()
    tag = tag_for(node, tmp / "root")
    proc = _start(server, tmp, node, cidr)
    try:
        _node_ready(server, node)
        pod = _web("web-n2", "n2")
        pod["spec"]["nodeName"] = node
        server.kubectl("apply", "-f", "-", input=json.dumps(pod))
        uid = wait_for(lambda: _ready(server, "web-n2"), 30, "web-n2 ready")["metadata"]["uid"]
        before = _veth_index(tag, uid)
        assert before is not None
        proc.kill()  # no cleanup: the bridge, the veth and the namespace stay
        proc.wait(timeout=10)
        assert f"ks{tag}" in _links(tag) and _veth_index(tag, uid) == before
        proc = _start(server, tmp, node, cidr)  # removes them, makes the bridge again, runs the pod again
        wait_for(lambda: _veth_index(tag, uid) not in (None, before), 30, "the pod's new veth")
        wait_for(lambda: _ready(server, "web-n2"), 30, "web-n2 ready again")
        server.kubectl("delete", "pod", "-n", NS, "web-n2", "--wait=true", timeout=60)
    finally:
        _stop(proc, tag)


def test_an_agent_without_pod_cidr_takes_the_one_the_server_gives(server: Server,
                                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    node, tmp = "podnet-n3", tmp_path_factory.mktemp("netagent3")
    tag = tag_for(node, tmp / "root")
    proc = _start(server, tmp, node, None)
    try:
        _node_ready(server, node)
        cidr = ipaddress.IPv4Network(server.kubectl("get", "node", node, "-o", "jsonpath={.spec.podCIDR}").stdout)
        assert cidr.prefixlen == 26 and cidr.subnet_of(CLUSTER[0])
        gateway = str(next(cidr.hosts()))

        def bridge_addresses() -> list[str]:
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=f"ks{tag}")
                return [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=found[0])] if found else []
        wait_for(lambda: gateway in bridge_addresses(), 20, "the bridge with the podCIDR's gateway")
        assert f"podCIDR {cidr}" in (tmp / "agent.log").read_text()
    finally:
        _stop(proc, tag)


# Run in a pod: connects to ADDRESS:PORT and prints what the far end says it saw as the caller's address.
WHO_AM_I = r'''
import socket, sys, time
for _ in range(50):
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
            print("SEEN", s.recv(100).decode(), flush=True)
            break
    except OSError as e:
        print("retrying", e, flush=True)
        time.sleep(0.2)
'''


@pytest.fixture
def outside() -> Iterator[tuple[str, str, socket.socket]]:
    """A machine beyond the node: a network namespace on a veth from the host (a /30 of 198.18.0.0/15), with a
    TCP server on its side; yields (the host's address on the link, the far address, the listening socket)."""
    net = ipaddress.IPv4Network(f"198.18.{random.randrange(256)}.{4 * random.randrange(64)}/30")
    host_ip, far_ip = (str(a) for a in net.hosts())
    path, name = f"/run/netns/kstest-out-{os.getpid()}", f"kstout{os.getpid() % 100000}"
    create_netns(path)
    try:
        with IPRoute() as ipr, opened(path) as fd:
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})
            index = ipr.link_lookup(ifname=name)[0]
            ipr.addr("add", index=index, address=host_ip, prefixlen=30)
            ipr.link("set", index=index, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=name + "p")[0], net_ns_fd=fd)
        sockets: list[socket.socket] = []

        def far_side() -> None:
            with inside(path), IPRoute() as ipr:
                far = ipr.link_lookup(ifname=name + "p")[0]
                ipr.addr("add", index=far, address=far_ip, prefixlen=30)
                ipr.link("set", index=far, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                sockets.append(socket.create_server((far_ip, 0)))  # the socket stays in the namespace
        thread = threading.Thread(target=far_side)
        thread.start()
        thread.join()
        assert sockets, "could not set up the outside namespace"
        yield host_ip, far_ip, sockets[0]
    finally:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)
        remove_netns(path)


def _answer_with_peer(sock: socket.socket) -> None:
    sock.settimeout(60)
    conn, peer = sock.accept()
    with conn:
        conn.sendall(peer[0].encode())


def test_a_pod_reaches_beyond_the_node_masqueraded_as_the_node(server: Server, agent: Agent,
                                                                outside: tuple[str, str, socket.socket]) -> None:
    host_ip, far_ip, sock = outside
    answer = threading.Thread(target=_answer_with_peer, args=(sock,), daemon=True)
    answer.start()
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "far-client", "namespace": NS},
        "spec": {"nodeName": NODE, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": "python",
                                 "command": ["python3", "-c", WHO_AM_I, far_ip, str(sock.getsockname()[1])]}]}}))
    wait_for(lambda: _pod(server, "far-client").get("status", {}).get("phase") in ("Succeeded", "Failed"), 60,
             "the far client's end")
    out = server.kubectl("logs", "-n", NS, "far-client").stdout
    # The far side has no route to the podCIDR: it can answer only because the node masqueraded the pod.
    assert f"SEEN {host_ip}" in out, out
    with NFTables(nfgen_family=2) as nft:
        assert f"kubesat-{agent.tag}" in [t.get_attr("NFTA_TABLE_NAME") for t in nft.get_tables()]


def _web_ready_on(server: Server, node: str, name: str) -> dict:
    """A web pod on `node` (once the node is ready), once it is ready."""
    _node_ready(server, node)
    pod = _web(name, name)
    pod["spec"]["nodeName"] = node
    server.kubectl("apply", "-f", "-", input=json.dumps(pod))
    return wait_for(lambda: _ready(server, name), 30, f"{name} ready")


def test_auto_gives_pods_a_bridge_as_root(server: Server, agent: Agent,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    node, tmp, cidr = "podnet-auto", tmp_path_factory.mktemp("netauto"), _free_cidr()
    tag = tag_for(node, tmp / "root")
    proc = _start(server, tmp, node, cidr, network="auto")
    try:
        ip = _web_ready_on(server, node, "web-auto")["status"]["podIP"]
        assert ipaddress.IPv4Address(ip) in cidr
        assert f"ks{tag}" in _links(tag)
        server.kubectl("delete", "pod", "-n", NS, "web-auto", "--wait=true", timeout=60)
    finally:
        _stop(proc, tag)
    with NFTables(nfgen_family=2) as nft:
        assert f"kubesat-{tag}" not in [t.get_attr("NFTA_TABLE_NAME") for t in nft.get_tables()]


def test_auto_falls_back_to_the_host_network_when_the_pod_cidr_is_taken(
        server: Server, agent: Agent, tmp_path_factory: pytest.TempPathFactory) -> None:
    node, tmp, cidr = "podnet-taken", tmp_path_factory.mktemp("nettaken"), _free_cidr()
    dummy = f"kstdum{os.getpid() % 100000}"
    with IPRoute() as ipr:  # someone else's route over the podCIDR
        ipr.link("add", ifname=dummy, kind="veth", peer={"ifname": dummy + "p"})
        index = ipr.link_lookup(ifname=dummy)[0]
        ipr.addr("add", index=index, address=str(cidr[1]), prefixlen=cidr.prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=ipr.link_lookup(ifname=dummy + "p")[0], state="up")
    tag = tag_for(node, tmp / "root")
    try:
        proc = _start(server, tmp, node, cidr, network="auto")
        try:
            ready = _web_ready_on(server, node, "web-taken")
            assert ready["status"]["podIP"] == ready["status"]["hostIP"]
            assert _links(tag) == []
            log = (tmp / "agent.log").read_text()
            assert f"pods share the host's network (cannot set up the bridge: podCIDR {cidr} overlaps the route " \
                   f"to {cidr} on {dummy}" in log, log
            events = json.loads(server.kubectl("get", "events", "-n", NS, "--field-selector",
                                               "involvedObject.name=web-taken", "-o", "json").stdout)["items"]
            shared = [e["message"] for e in events if e["reason"] == "SharedHostNetwork"]
            assert shared and f"overlaps the route to {cidr} on {dummy}" in shared[0], shared
            server.kubectl("delete", "pod", "-n", NS, "web-taken", "--wait=true", timeout=60)
        finally:
            _stop(proc, tag)
        # Asked for by name, the same bridge stops the agent with one line.
        proc = _start(server, tmp, node, cidr)
        assert proc.wait(timeout=30) != 0
        assert f"--pod-network bridge: cannot set up the bridge: podCIDR {cidr} overlaps" in \
            (tmp / "agent.log").read_text()
    finally:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=dummy):
                ipr.link("del", index=index)


# Run in a hostNetwork pod: the API at KUBERNETES_SERVICE_HOST:PORT, verified, with the pod's token.
API_BY_ENV = r'''
import os, ssl, urllib.request
SA = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
request = urllib.request.Request(f"https://{host}:{port}/api",
                                 headers={"Authorization": "Bearer " + open(SA + "/token").read()})
body = urllib.request.urlopen(request, timeout=10, context=ssl.create_default_context(cafile=SA + "/ca.crt")).read()
print("HOST", host, "API", b'"APIVersions"' in body, flush=True)
'''


def test_a_host_network_pod_of_a_bridge_agent_reaches_the_api(server: Server, agent: Agent) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "host-client", "namespace": NS},
        "spec": {"nodeName": NODE, "hostNetwork": True, "restartPolicy": "Never",
                 "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": "python", "command": ["python3", "-c", API_BY_ENV]}]}}))
    wait_for(lambda: _pod(server, "host-client").get("status", {}).get("phase") in ("Succeeded", "Failed"), 60,
             "the host-network client's end")
    out = server.kubectl("logs", "-n", NS, "host-client").stdout
    assert "HOST 127.0.0.1 API True" in out, out  # the loopback relay: the bridge's ClusterIP is not its network
