"""A small request never becomes a large object or a large allocation: YAML aliases and merge keys, JSON patch
copies, unknown fields, large and deeply nested bodies, each sent through the real server.

Every attack also checks that /readyz keeps answering within its budget while the attack runs and after it,
and that nothing was written.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from tests.integration.conftest import Server
from tests.integration.probe import READYZ_BUDGET, probe_while
from tests.integration.rawclient import Answer, RawClient

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
BODY_LIMIT = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def admin(server: Server) -> RawClient:
    return RawClient.admin(server.data_dir, server.port)


@pytest.fixture(scope="module")
def pod_identity(server: Server) -> RawClient:
    """What an attacker inside a pod has: the default service account's token, and no rights beyond discovery."""
    token = server.kubectl("create", "token", "default").stdout.strip()
    return RawClient(server.port, server.ca_file, token=token)


def attack(server: Server, what: str, send: Callable[[], Answer], budget: float = READYZ_BUDGET) -> Answer:
    """Send the attack while /readyz is probed from another process; the answer, once /readyz stayed fast
    (an attack is sent again, up to three times in all, only while a probe is over budget: see probe_while)."""
    answer, probe = probe_while(server.port, server.data_dir, send, budget=budget)
    probe.check(what, budget)
    return answer


def alias_bomb(levels: int, indent: str) -> str:
    """YAML whose last anchor expands to 9**levels copies of a 9-item list of strings."""
    lines = [f'{indent}a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"{indent}a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines)


def message(answer: Answer) -> str:
    return str(answer.json().get("message", ""))


def test_yaml_alias_bomb_from_a_pod_token_is_refused_at_the_body_limit(server: Server,
                                                                      pod_identity: RawClient) -> None:
    for levels in (6, 8):
        body = ("apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nspec:\n"
                "  resourceAttributes:\n    verb: get\n  extra:\n" + alias_bomb(levels, "    ") + "\n")
        assert len(body) < 1024
        ans = attack(server, f"a {len(body)}-byte YAML alias bomb ({levels} levels)",
                     lambda body=body: pod_identity.request("POST", SSAR, body.encode(), "application/yaml"))
        assert ans.status == 413, ans.body[:300]
        assert message(ans) == f"Request entity too large: limit is {BODY_LIMIT}"


def test_yaml_alias_bomb_creates_nothing(server: Server, admin: RawClient) -> None:
    body = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: alias-bomb\ndata:\n  k: v\nextra:\n"
            + alias_bomb(6, "  ") + "\n")
    ans = attack(server, "a ConfigMap made of a YAML alias bomb",
                 lambda: admin.request("POST", CM, body.encode(), "application/yaml"))
    assert ans.status == 413, ans.body[:300]
    assert admin.request("GET", f"{CM}/alias-bomb").status == 404


def test_an_alias_used_a_few_times_is_still_fine(admin: RawClient) -> None:
    body = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: alias-ok\n  labels: &l {app: web}\n"
            "  annotations: *l\ndata: {a: x}\n")
    ans = admin.request("POST", CM, body.encode(), "application/yaml")
    assert ans.status == 201, ans.body[:300]
    meta = ans.json()["metadata"]
    assert meta["labels"] == meta["annotations"] == {"app": "web"}


def test_yaml_merge_key_bomb_is_refused(server: Server, admin: RawClient) -> None:
    lines = ["  m0: &m0 {k0: v}"]
    for i in range(1, 40):
        lines.append(f"  m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: v}}")
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: merge-bomb\nextra:\n" + "\n".join(lines) + "\n"
    ans = attack(server, "a YAML merge-key bomb", lambda: admin.request("POST", CM, body.encode(), "application/yaml"))
    assert ans.status in (400, 413), ans.body[:300]
    assert admin.request("GET", f"{CM}/merge-bomb").status == 404


def test_recursive_yaml_alias_is_refused(admin: RawClient) -> None:
    ans = admin.request("POST", CM, b"apiVersion: v1\nkind: ConfigMap\nmetadata: &m\n  name: loop\n  x: *m\n",
                        "application/yaml")
    assert ans.status == 400, ans.body[:300]
    assert "recursive" in message(ans)
    assert admin.request("GET", f"{CM}/loop").status == 404


def test_json_patch_copies_are_bounded_and_write_nothing(server: Server, admin: RawClient) -> None:
    created = admin.request("POST", CM, json.dumps({"metadata": {"name": "copied"},
                                                    "data": {"seed": "z" * 10_000}}).encode(), "application/json")
    assert created.status == 201
    rv = created.json()["metadata"]["resourceVersion"]
    # Each copy doubles the annotations: 18 of them would make 2**18 copies of the 10 KB seed.
    ops = [{"op": "copy", "from": "/data", "path": "/metadata/annotations"}]
    ops += [{"op": "copy", "from": "/metadata/annotations", "path": f"/metadata/annotations/c{i}"}
            for i in range(18)]
    body = json.dumps(ops).encode()
    assert len(body) < 2048
    ans = attack(server, "a JSON patch of 18 copies",
                 lambda: admin.request("PATCH", f"{CM}/copied", body, "application/json-patch+json"))
    assert ans.status == 422, ans.body[:300]
    assert "accumulated size" in ans.body.decode()
    after = admin.request("GET", f"{CM}/copied").json()
    assert after["metadata"]["resourceVersion"] == rv
    assert set(after["data"]) == {"seed"}


def test_a_patch_whose_result_is_too_large_to_store_is_refused(server: Server, admin: RawClient) -> None:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "grows"},
            "rules": []}
    assert admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", json.dumps(role).encode(),
                         "application/json").status == 201
    rules = [{"apiGroups": [""], "resources": ["r" * 1000], "verbs": ["get"]} for _ in range(1700)]
    body = json.dumps({"rules": rules}).encode()
    assert len(body) < BODY_LIMIT
    ans = attack(server, "a merge patch growing a ClusterRole past 1.5 MiB",
                 lambda: admin.request("PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterroles/grows", body,
                                       "application/merge-patch+json"))
    assert ans.status == 413, ans.body[:300]
    assert "1572864" in message(ans)
    stored = admin.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/grows").json()
    assert not stored.get("rules")


def test_unknown_fields_are_dropped_not_stored(server: Server, admin: RawClient) -> None:
    big = "y" * (2 * 1024 * 1024)
    body = json.dumps({"metadata": {"generateName": "unknown-", "bogus": 1}, "data": {"a": "b"},
                       "junk": big}).encode()
    ans = attack(server, "a ConfigMap with a 2 MiB unknown field",
                 lambda: admin.request("POST", CM, body, "application/json"))
    assert ans.status == 201, ans.body[:300]
    stored = admin.request("GET", f"{CM}/{ans.json()['metadata']['name']}")
    assert len(stored.body) < 4096
    obj = stored.json()
    assert "junk" not in obj and "bogus" not in obj["metadata"] and obj["data"] == {"a": "b"}


def test_unknown_fields_warn_by_default_and_fail_under_strict(server: Server) -> None:
    pki = server.data_dir / "pki"
    s = requests.Session()
    s.cert = (str(pki / "admin.crt"), str(pki / "admin.key"))
    body = {"metadata": {"name": "warned"}, "junk": 1}
    res = s.post(f"{server.url}{CM}", json=body, verify=str(server.ca_file))
    assert res.status_code == 201
    assert 'unknown field \\"junk\\"' in res.headers.get("Warning", "")
    assert "junk" not in res.json()
    res = s.post(f"{server.url}{CM}?fieldValidation=Strict", json={**body, "metadata": {"name": "strict"}},
                 verify=str(server.ca_file))
    assert res.status_code == 400
    assert res.json()["message"] == 'strict decoding error: unknown field "junk"'
    res = s.post(f"{server.url}{CM}?fieldValidation=Ignore", json={**body, "metadata": {"name": "ignored"}},
                 verify=str(server.ca_file))
    assert res.status_code == 201 and "Warning" not in res.headers and "junk" not in res.json()


def test_deeply_nested_bodies_are_400_in_every_encoding(server: Server, admin: RawClient) -> None:
    assert admin.request("POST", CM, b'{"metadata":{"name":"patched-deep"}}', "application/json").status == 201
    deep_json = '{"metadata":{"name":"deep","annotations":' + '{"a":' * 5000 + '"x"' + "}" * 5000 + "}}"
    deep_yaml = "metadata:\n  name: deep\nx: " + "[" * 5000 + "]" * 5000 + "\n"
    for ct, body, method, path in [
        ("application/json", deep_json, "POST", CM),
        ("application/yaml", deep_yaml, "POST", CM),
        ("application/merge-patch+json", deep_json, "PATCH", f"{CM}/patched-deep"),
        ("application/strategic-merge-patch+json", deep_json, "PATCH", f"{CM}/patched-deep"),
        ("application/apply-patch+yaml", deep_yaml, "PATCH", f"{CM}/deep?fieldManager=t"),
    ]:
        ans = attack(server, f"a {ct} body nested 5000 deep",
                     lambda method=method, path=path, body=body, ct=ct: admin.request(method, path, body.encode(), ct))
        assert ans.status == 400, (ct, ans.body[:300])
        assert "nest" in message(ans), (ct, message(ans))
    assert admin.request("GET", f"{CM}/deep").status == 404


def test_a_large_yaml_body_does_not_stall_the_server(server: Server, admin: RawClient) -> None:
    # Just under the body limit, of the shape that costs a YAML parser most: many small flow mappings.
    # The parse is in the helper process; the 900,000 objects it hands back are decoded in one C call
    # that holds the interpreter lock, the known limit of the million-object test below.
    body = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: slow-yaml-\nextra: ["
            + ",".join(["{}"] * 900_000) + "]\n")
    assert len(body) < BODY_LIMIT
    ans = attack(server, "a 2.7 MiB YAML body", lambda: admin.request("POST", CM, body.encode(), "application/yaml"),
                 budget=0.25)
    assert ans.status in (201, 400), ans.body[:300]


def test_a_large_json_body_of_tiny_objects_does_not_stall_the_server(server: Server, admin: RawClient) -> None:
    # Known limit: the work is off the event loop, but decoding (orjson) and freeing a million containers
    # are single C calls that hold the interpreter lock for about 100 ms each: this one shape gets a
    # larger budget, said here and in the README rather than hidden by a smaller body.
    body = ('{"metadata":{"generateName":"many-objects-"},"extra":[' + ",".join(["{}"] * 1_000_000) + "]}").encode()
    assert len(body) < BODY_LIMIT
    ans = attack(server, "a 3 MiB JSON body of a million empty objects",
                 lambda: admin.request("POST", CM, body, "application/json"), budget=0.25)
    assert ans.status == 201, ans.body[:300]
    assert "extra" not in admin.request("GET", f"{CM}/{ans.json()['metadata']['name']}").json()


def test_oversized_bodies_are_413_whatever_the_encoding(server: Server, admin: RawClient) -> None:
    filler = "x" * (BODY_LIMIT + 10)
    for ct in ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf"):
        ans = admin.request("POST", CM, filler.encode(), ct)
        assert ans.status == 413, (ct, ans.status)
