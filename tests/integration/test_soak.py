"""A bounded soak: attacks (malformed, deep, alias bombs, oversized, amplifying patches, bad query parameters) run
alongside normal kubectl traffic; every normal request must succeed and /readyz must answer within 100 ms."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import pytest

from .conftest import Server
from .fuzzing import Findings, LogTail
from .fuzzshapes import MALFORMED
from .probe import ReadyzProbe, probe_while
from .rawclient import RawClient, Sent

pytestmark = pytest.mark.integration

NS = "soak"
SOAK_SECONDS = 20.0
READY_WITHIN = 0.1  # seconds, the bound for /readyz during an attack
ROUND_WITHIN = 10.0  # seconds for one round of normal kubectl traffic (about 1 s on an idle server)
PROBE_EVERY = 0.05


def alias_bomb(levels: int, width: int = 9) -> bytes:
    """YAML anchors where each level repeats the one below `width` times: a few hundred bytes, width**levels leaves."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return ("\n".join(lines) + "\n").encode()


def with_bomb(header: str, levels: int) -> bytes:
    """A kind's YAML body whose one field holds an alias bomb of `levels` levels."""
    bomb = alias_bomb(levels).decode().replace("\n", "\n  ")
    return f"{header}\nbomb:\n  {bomb}\n".encode()


@dataclass
class Attack:
    sent: Sent
    by_pod: bool = False  # sent with the pod's service-account token instead of the admin certificate
    must_fail: bool = True  # False for odd but possibly valid input (only the error contract applies)


def attacks(admin: RawClient, pod: RawClient) -> list[Attack]:
    """Every attack, built up front so the soak spends its time on the wire."""
    cms = f"/api/v1/namespaces/{NS}/configmaps"
    ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    out = [Attack(admin.sent("POST", cms, raw, ctype), must_fail=False)
           for raw in MALFORMED for ctype in ("application/json", "application/yaml")]
    out += [
        Attack(admin.sent("POST", cms, b'{"metadata":{"name":"attack-deep"},"data":' + deep + b"}",
                          "application/json")),
        Attack(admin.sent("PATCH", f"{cms}/normal-base", b'{"data":' + deep + b"}",
                          "application/merge-patch+json")),
        Attack(admin.sent("PATCH", f"{cms}/normal-base", b'{"data":' + deep + b"}",
                          "application/strategic-merge-patch+json")),
        Attack(admin.sent("POST", cms, b"[" * 5000 + b"]" * 5000, "application/yaml")),
        Attack(admin.sent("POST", cms, with_bomb("metadata: {name: attack-bomb}", 8), "application/yaml")),
        Attack(admin.sent("PATCH", f"{cms}/attack-apply?fieldManager=soak",
                          with_bomb("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: attack-apply}", 7),
                          "application/apply-patch+yaml")),
        Attack(pod.sent("POST", ssar, with_bomb("apiVersion: authorization.k8s.io/v1\nkind: "
                                                "SelfSubjectAccessReview\nspec: {resourceAttributes: {verb: get}}",
                                                6), "application/yaml"), by_pod=True),
        Attack(admin.sent("POST", cms, b'{"metadata":{"name":"attack-big"},"data":{"a":"' + b"x" * (4 << 20)
                          + b'"}}', "application/json")),
        Attack(admin.sent("PATCH", f"{cms}/normal-base", copy_bomb(), "application/json-patch+json")),
    ]
    # Each of these is a 400 or 422 in Kubernetes (int64 parsing, selector parsing, continue token, ListOptions).
    for query in ("limit=99999999999999999999", "timeoutSeconds=1e99", "labelSelector=a%20in%20(",
                  "fieldSelector=%3D%3D%3D", "continue=%ff%fe", "resourceVersionMatch=x"):
        out.append(Attack(admin.sent("GET", f"{cms}?{query}")))
    return out


def copy_bomb(copies: int = 20) -> bytes:
    """A 1 KB JSON patch whose copies double the object each step (100 MB unbounded; the issue's stored 272 MB)."""
    ops = [{"op": "add", "path": "/data/a", "value": "x" * 100}]
    ops += [{"op": "copy", "from": "/data", "path": f"/data/d{i}"} for i in range(copies)]
    return json.dumps(ops).encode()


@dataclass
class Record:
    findings: Findings
    latencies: list[float] = field(default_factory=list)
    ready_failures: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    # (wall-clock start, attack) of every attack sent, to find what a slow /readyz coincided with.
    timeline: list[tuple[float, Attack]] = field(default_factory=list)

    def during(self, when: float) -> Attack | None:
        """The attack in flight at `when` (the last one sent before it)."""
        before = [a for t, a in self.timeline if t <= when]
        return before[-1] if before else None


def attack(admin: RawClient, pod: RawClient, plan: list[Attack], stop: threading.Event, record: Record) -> None:
    while not stop.is_set():
        for a in plan:
            if stop.is_set():
                return
            client = pod if a.by_pod else admin
            record.timeline.append((time.time(), a))
            answer = record.findings.check(client, a.sent)
            if not answer.status:
                client.close()
            elif answer.status < 300 and a.must_fail:
                record.accepted.append(f"accepted with {answer.status}: {a.sent.reproducer(200)}")


def stalls(server: Server, admin: RawClient, pod: RawClient, suspects: list[Attack]) -> list[str]:
    """The attacks that held /readyz over its budget, each confirmed by sending it again alone (a slow
    probe with no attack in flight is the normal traffic or the machine, not an attack's doing).

    On a busy machine a probe is sometimes slow whatever the server does; a stall an attack causes
    shows again every time it is sent (probe_while tries three times), noise does not.
    """
    out = []
    for a in suspects:
        client = pod if a.by_pod else admin
        _, probe = probe_while(server.port, server.data_dir, lambda client=client, a=a: client.send(a.sent),
                               budget=READY_WITHIN)
        if probe.slowest >= READY_WITHIN:
            out.append(f"/readyz took {probe.slowest * 1000:.0f} ms or more each time during {a.sent.reproducer(120)}")
    return out


def normal_traffic(server: Server, i: int) -> None:
    """What an operator and a pod do all day, through the real kubectl; each call must succeed."""
    name = f"normal-{i}"
    server.kubectl("create", "configmap", name, "-n", NS, "--from-literal=k=v")
    got = json.loads(server.kubectl("get", "configmap", name, "-n", NS, "-o", "json").stdout)
    assert got["data"] == {"k": "v"}
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
                           "data": {"k": "w"}})
    server.kubectl("apply", "--server-side", "--field-manager=soak", "--force-conflicts", "-f", "-", input=manifest)
    assert server.kubectl("get", "configmap", name, "-n", NS, "-o", "jsonpath={.data.k}").stdout == "w"
    token = server.kubectl("create", "token", "app", "-n", NS).stdout.strip()
    assert token.count(".") == 2
    server.kubectl("delete", "configmap", name, "-n", NS)


@pytest.fixture(scope="module")
def clients(server: Server) -> tuple[RawClient, RawClient]:
    server.kubectl("create", "namespace", NS)
    server.kubectl("create", "serviceaccount", "app", "-n", NS)
    server.kubectl("create", "configmap", "normal-base", "-n", NS, "--from-literal=k=v")
    token = server.kubectl("create", "token", "app", "-n", NS, "--duration=1h").stdout.strip()
    return RawClient.admin(server.data_dir, server.port), RawClient(server.port, server.ca_file, token=token)


def test_soak_attacks_alongside_kubectl(server: Server, clients: tuple[RawClient, RawClient]) -> None:
    admin, pod = clients
    plan = attacks(admin, pod)
    record = Record(Findings(LogTail(server.log_path)))
    stop = threading.Event()
    worker = threading.Thread(target=attack, args=(admin, pod, plan, stop, record))
    deadline = time.monotonic() + SOAK_SECONDS
    rounds = 0
    slow_rounds = []
    with ReadyzProbe(server.port, server.data_dir, every=PROBE_EVERY) as probe:
        worker.start()
        try:
            while time.monotonic() < deadline:
                started = time.monotonic()
                normal_traffic(server, rounds)
                if time.monotonic() - started > ROUND_WITHIN:
                    slow_rounds.append(f"kubectl round {rounds} took {time.monotonic() - started:.1f} s")
                rounds += 1
        finally:
            stop.set()
            worker.join(timeout=60)
    record.latencies = [s for _, s in probe.latencies]
    record.ready_failures = probe.failures
    suspects = {id(a): a for a in (record.during(t) for t, _ in probe.slow(READY_WITHIN)) if a is not None}
    slow = stalls(server, admin, pod, list(suspects.values()))
    slowest = sorted(record.latencies)[-5:]
    summary = (f"{rounds} rounds of kubectl, {record.findings.sent} attacks, {len(record.latencies)} /readyz "
               f"probes, slowest {[round(s * 1000) for s in slowest]} ms")
    assert server.proc.poll() is None, "the server died: " + summary
    assert rounds >= 3 and record.findings.sent >= len(plan), summary
    problems = ([record.findings.report()] if record.findings.groups else []) + sorted(set(record.accepted)) + \
        record.ready_failures[:10] + slow[:10] + slow_rounds
    assert not problems, summary + "\n" + "\n".join(problems)
    left = server.kubectl("get", "configmaps", "-n", NS, "-o", "name").stdout
    assert "attack-" not in left, left  # no attack wrote anything
    base = json.loads(server.kubectl("get", "configmap", "normal-base", "-n", NS, "-o", "json").stdout)
    assert base["data"] == {"k": "v"} and "annotations" not in base["metadata"]
