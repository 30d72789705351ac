"""Large lists and a watch's initial events stream at one revision through the real server: consistent while
writes land mid-stream, the same documents as before (List, Table, YAML, pages), and a bounded memory cost."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest
import requests
import yaml

from tests.integration.conftest import Server, wait_for
from tests.integration.rawclient import RawClient

pytestmark = pytest.mark.integration

NS = "big"
COUNT = 1000
CM = f"/api/v1/namespaces/{NS}/configmaps"
# Peak RSS growth allowed while the first full list of the COUNT ConfigMaps (about 5 MB of JSON) is
# answered. Built whole (decoded objects, then the body) it rose 21 MB here; streamed, under 1 MB.
LIST_RSS_BOUND_MB = 8


def name(i: int) -> str:
    return f"cm-{i:04}"


def configmap(i: int) -> dict[str, Any]:
    return {"metadata": {"name": name(i), "labels": {"third": str(i % 3)}}, "data": {"blob": f"{i}-" + "x" * 5000}}


@pytest.fixture(scope="module")
def created(server: Server) -> dict[str, dict[str, Any]]:
    """COUNT ConfigMaps in namespace `big`, by name, as the server answered their creation."""
    admin = RawClient.admin(server.data_dir, server.port)
    assert admin.request("POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": NS}}).encode(),
                         "application/json").status == 201
    out: dict[str, dict[str, Any]] = {}

    def seed(part: int) -> None:
        client = RawClient.admin(server.data_dir, server.port)
        for i in range(part, COUNT, 2):
            ans = client.request("POST", CM, json.dumps(configmap(i)).encode(), "application/json")
            assert ans.status == 201, ans.body[:300]
            out[name(i)] = ans.json()

    threads = [threading.Thread(target=seed, args=(p,)) for p in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == COUNT
    # The root CA publisher adds its ConfigMap to every namespace; it belongs to the list too.
    root_ca = wait_for(lambda: (a := admin.request("GET", f"{CM}/kube-root-ca.crt")).status == 200 and a,
                       what="kube-root-ca.crt published")
    out["kube-root-ca.crt"] = root_ca.json()
    return dict(sorted(out.items()))


@pytest.fixture(scope="module")
def session(server: Server) -> requests.Session:
    s = requests.Session()
    pki = server.data_dir / "pki"
    s.cert = (str(pki / "admin.crt"), str(pki / "admin.key"))
    s.verify = str(server.ca_file)
    return s


def get(session: requests.Session, server: Server, path: str, **kw: Any) -> requests.Response:
    kw.setdefault("timeout", 60)
    kw.setdefault("verify", session.verify)
    return session.get(server.url + path, **kw)


def write(session: requests.Session, server: Server, method: str, path: str, body: Any = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    r = session.request(method, server.url + path, data=json.dumps(body) if body is not None else None,
                        headers=headers, timeout=30, verify=session.verify)
    assert r.status_code in (200, 201), r.text
    return r.json()


class SlowReader:
    """A GET read a little at a time through a small socket buffer, so the server is still mid-answer."""

    def __init__(self, server: Server, path: str) -> None:
        pki = server.data_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(server.ca_file))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # before connect: no autotuning
        raw.settimeout(60)
        raw.connect(("127.0.0.1", server.port))
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        self.resp = http.client.HTTPResponse(self.sock, method="GET")  # type: ignore[arg-type]
        self.resp.begin()

    def read(self, n: int) -> bytes:
        return self.resp.read(n)

    def rest(self) -> bytes:
        try:
            return self.resp.read()
        finally:
            self.sock.close()


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            got[key] = int(value.split()[0]) / 1024
    return got["VmRSS"], got["VmHWM"]


def test_a_full_list_costs_a_chunk_of_memory(server: Server, created: dict[str, dict[str, Any]],
                                             session: requests.Session) -> None:
    pid = server.proc.pid
    before, _ = rss_mb(pid)  # the first full list (memory a list once took stayed with the allocator)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
    r = get(session, server, CM)
    _, peak = rss_mb(pid)
    assert r.status_code == 200 and len(r.json()["items"]) == len(created)
    assert len(r.content) > 5_000_000
    assert peak - before < LIST_RSS_BOUND_MB, f"RSS rose from {before:.1f} MB to a peak of {peak:.1f} MB"


def test_a_list_streamed_while_writes_land_is_the_state_at_its_revision(
        server: Server, created: dict[str, dict[str, Any]], session: requests.Session) -> None:
    reader = SlowReader(server, CM)
    assert reader.resp.status == 200
    assert reader.resp.getheader("transfer-encoding") == "chunked"  # streamed, not built whole
    head = reader.read(200)
    list_rv = int(json.loads(head.split(b',"items":', 1)[0] + b"}")["metadata"]["resourceVersion"])
    # Writes land while the body is read: at the end of the list (not yet read by the server), at its
    # start (already sent), and new keys in between.
    changed = [
        write(session, server, "PUT", f"{CM}/{name(COUNT - 10)}", {**created[name(COUNT - 10)], "data": {"b": "new"}}),
        write(session, server, "DELETE", f"{CM}/{name(COUNT - 5)}"),
        write(session, server, "POST", CM, {"metadata": {"name": name(COUNT - 3) + "x"}}),
        write(session, server, "PATCH", f"{CM}/{name(3)}", {"data": {"b": "new"}}),
    ]
    body = json.loads(head + reader.rest())
    assert [o["metadata"]["name"] for o in body["items"]] == list(created)
    assert body["items"] == list(created.values())  # every object exactly as it was at the list's revision
    assert body["metadata"] == {"resourceVersion": str(list_rv)}
    assert list(body) == ["kind", "apiVersion", "metadata", "items"] and body["kind"] == "ConfigMapList"
    # The writes did happen, after the list's revision; restore the two that later tests read.
    assert all(int(c["metadata"]["resourceVersion"]) > list_rv for c in changed)
    write(session, server, "DELETE", f"{CM}/{name(COUNT - 3)}x")
    for i in (COUNT - 10, 3):
        write(session, server, "DELETE", f"{CM}/{name(i)}")
    for i in (COUNT - 10, COUNT - 5, 3):
        created[name(i)] = write(session, server, "POST", CM, configmap(i))


def test_tables_yaml_and_pages_of_a_large_list(server: Server, created: dict[str, dict[str, Any]],
                                               session: requests.Session) -> None:
    names = list(created)
    table = get(session, server, CM, headers={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"}).json()
    assert table["kind"] == "Table" and [c["name"] for c in table["columnDefinitions"]][:1] == ["Name"]
    assert [row["cells"][0] for row in table["rows"]] == names
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"

    # A page larger than a chunk (streamed) in YAML, which is slow to make: a part of the list is enough.
    as_yaml = get(session, server, f"{CM}?limit=150", headers={"Accept": "application/yaml"})
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    page = yaml.safe_load(as_yaml.content)
    assert list(page) == ["kind", "apiVersion", "metadata", "items"] and page["metadata"]["continue"]
    assert page["items"] == list(created.values())[:150]

    # kubectl pages with limit=500 and asks for Tables.
    out = server.kubectl("get", "configmaps", "-n", NS, "--no-headers", "-o", "custom-columns=N:.metadata.name")
    assert out.stdout.split() == names

    third = [n for n, o in created.items() if o["metadata"].get("labels", {}).get("third") == "1"]
    for limit in (50, 250):
        got: list[str] = []
        token, rvs = "", set()
        while True:
            page = get(session, server, f"{CM}?labelSelector=third%3D1&limit={limit}"
                                        + (f"&continue={token}" if token else "")).json()
            assert len(page["items"]) <= limit
            got += [o["metadata"]["name"] for o in page["items"]]
            rvs.add(page["metadata"]["resourceVersion"])
            token = page["metadata"].get("continue", "")
            if not token:
                break
        assert got == third and len(rvs) == 1


def watch_lines(server: Server, path: str) -> Iterator[dict[str, Any]]:
    reader = SlowReader(server, path)
    assert reader.resp.status == 200
    try:
        while line := reader.resp.readline():
            yield json.loads(line)
    finally:
        reader.sock.close()


def test_a_watch_starts_with_the_list_and_continues_without_gaps(
        server: Server, created: dict[str, dict[str, Any]], session: requests.Session) -> None:
    events = watch_lines(server, f"{CM}?watch=1&timeoutSeconds=30")
    first = next(events)
    # Writes while the initial events stream: each must come once, after them, as its own event.
    writes = [
        ("MODIFIED", write(session, server, "PATCH", f"{CM}/{name(COUNT - 7)}", {"data": {"b": "w"}})),
        ("DELETED", write(session, server, "DELETE", f"{CM}/{name(COUNT - 2)}")),
        ("ADDED", write(session, server, "POST", CM, {"metadata": {"name": "zz-new"}})),
        ("MODIFIED", write(session, server, "PATCH", f"{CM}/{name(1)}", {"data": {"b": "w"}})),
    ]
    initial = [first] + [next(events) for _ in range(len(created) - 1)]
    assert [e["type"] for e in initial] == ["ADDED"] * len(created)
    assert [e["object"] for e in initial] == list(created.values())
    after = [next(events) for _ in writes]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in after] == \
        [(t, o["metadata"]["name"]) for t, o in writes]
    assert [e["object"]["metadata"]["resourceVersion"] for e in after] == \
        [o["metadata"]["resourceVersion"] for _, o in writes]
    events.close()
