"""Fuzzing one real server: schema-shaped and malformed bodies on every endpoint, odd query parameters, odd paths.

The contract: never a 5xx, every 4xx a Kubernetes Status with a message, and the server stays ready. Endpoints
and schemas come from the server's own discovery and OpenAPI v3 documents, so a new kind is fuzzed as soon as it
is served. Failures are collected and reported grouped by the traceback in the server log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Server
from .fuzzing import (
    NS,
    SERVICE_ACCOUNT,
    TARGET,
    Endpoint,
    Findings,
    LogTail,
    discover,
    kind_schemas,
    ok,
)
from .fuzzshapes import (
    MALFORMED,
    Shapes,
    encode,
    mutate,
    nasty_text,
    protobuf_envelope,
    protobuf_junk,
    wrong_values,
)
from .rawclient import RawClient, Sent

pytestmark = pytest.mark.integration

SCRATCH = "fuzz-scratch"  # deletes happen only here, and the objects are put back
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
BODY_EXAMPLES = 5  # per endpoint and verb (about 100 of them): ~500 requests
QUERY_EXAMPLES = 250
PATH_EXAMPLES = 250
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

QUERY_PARAMS = ["limit", "continue", "resourceVersion", "resourceVersionMatch", "timeoutSeconds", "fieldSelector",
                "labelSelector", "fieldValidation", "dryRun", "gracePeriodSeconds", "propagationPolicy",
                "fieldManager", "force", "watch", "allowWatchBookmarks", "sendInitialEvents", "orphanDependents"]
QUERY_VALUES = ["", "0", "-1", "1", "30", "99999999999999999999", "-99999999999999999999", "1e3", "0x10", "1.5",
                "NaN", "true", "false", "True", "All", "all", "Strict", "Warn", "Ignore", "Orphan", "Foreground",
                "Background", "NotOlderThan", "Exact", "\x00", "a\x00b", "\n", "=", "!", "a=b", "a!=b", "a in (b)",
                "a notin (b,", "!a", "a,b", "metadata.name=x", "metadata.name==x,metadata.namespace!=y",
                "spec.nodeName=", "status.phase!=Running", "x" * 10_000, "日本", "\ud800", "%ff",
                "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6OTk5OTk5OTk5OTk5OTk5OTk5OTl9"]  # a forged continue token
RAW_QUERY_TAILS = ["", "&", "&&=&", "%zz", "limit", "=x", "a=%", "watch=1&watch=0", "%00=%00", "limit=1&limit=x"]
PATH_SEGMENTS = ["%00", "a%00b", "%0a", "a%0Ab", "%0d%0a", "..", ".", "%2e%2e", "%2e", "%2F", "a%2Fb", "%5C", "~",
                 "%20", "+", "x" * 253, "x" * 254, "x" * 5000, "%C3%B1", "%E6%97%A5%E6%9C%AC", "%F0%9F%98%80",
                 "%ff", "%fe%ff", "%C0%AE", "%", "%zz", "%%", "-", "A", "a.b", "*", ":", "@", "%3A", "%3F", "%23",
                 ";", "%7B%7D", "$patch", "%2525"]
PATH_WORDS = ["api", "apis", "v1", "namespaces", NS, "configmaps", "pods", "watch", "status", "token", "finalize",
              "rbac.authorization.k8s.io", "authentication.k8s.io", "tokenreviews", TARGET]
STRATEGIC_KEYS = ["$patch", "$retainKeys", "$setElementOrder/containers", "$setElementOrder/finalizers",
                  "$deleteFromPrimitiveList/finalizers", "$deleteFromPrimitiveList/args", "$setElementOrder/x"]
JSON_POINTERS = ["", "/", "/-", "/~2", "/~", "/metadata/labels/a~1b", "/metadata/labels/" + "x" * 300,
                 "/spec/containers/-", "/spec/containers/99999999999999999999", "/spec/containers/-1",
                 "/spec/containers/01", "/data/a", "/metadata/finalizers/0", "/metadata", "metadata"]


@dataclass
class World:
    """The server as the fuzzer sees it: clients, served endpoints, kind schemas."""

    server: Server
    admin: RawClient
    sa: RawClient
    endpoints: list[Endpoint]
    shapes: Shapes
    by_kind: dict[tuple[str, str], dict[str, Any]]
    pointer_cache: dict[str, list[str]] = field(default_factory=dict)

    def schema(self, e: Endpoint) -> dict[str, Any]:
        return self.by_kind[(e.api_version, e.kind)]

    def pointers(self, e: Endpoint) -> list[str]:
        """JSON pointers into the kind's schema, three levels deep (paths a patch could name)."""
        if e.kind not in self.pointer_cache:
            found: list[str] = []
            walk_pointers(self.shapes, self.schema(e), "", 3, found)
            self.pointer_cache[e.kind] = found
        return self.pointer_cache[e.kind]


def walk_pointers(shapes: Shapes, schema: dict[str, Any], prefix: str, depth: int, out: list[str]) -> None:
    s = shapes.resolve(schema)
    if depth == 0:
        return
    for name, sub in (s.get("properties") or {}).items():
        out.append(f"{prefix}/{name}")
        walk_pointers(shapes, sub, f"{prefix}/{name}", depth - 1, out)
    if s.get("type") == "array" and "items" in s:
        for index in ("0", "-"):
            out.append(f"{prefix}/{index}")
        walk_pointers(shapes, s["items"], f"{prefix}/0", depth - 1, out)


# Kinds whose name is not free (a CRD's is <plural>.<group>), so none can be named TARGET: their creates are
# fuzzed, their updates, patches and deletes meet a 404.
UNNAMEABLE = {"CustomResourceDefinition"}


def seed(admin: RawClient, e: Endpoint, namespace: str) -> None:
    """A valid object of a writable kind, named TARGET, for updates, patches and deletes to aim at."""
    if e.subresource or "create" not in e.verbs or not ({"update", "patch"} & e.verbs):
        return
    if not e.namespaced and namespace != NS:
        return
    if e.kind in UNNAMEABLE:
        return
    a = admin.request("POST", e.collection(namespace), encode(e.seed(namespace=namespace), "json"),
                      "application/json")
    assert a.status in (201, 409), f"seeding {e.name} failed (add what it needs to SEED_EXTRAS): {a.body!r}"


def service_account_client(server: Server, admin: RawClient) -> RawClient:
    """A pod's view: a service-account token allowed TokenReview/SubjectAccessReview (as webhooks often are)."""
    for kind, body in [("serviceaccounts", {"metadata": {"name": SERVICE_ACCOUNT}})]:
        ok(admin.request("POST", f"/api/v1/namespaces/{NS}/{kind}", encode(body, "json"), "application/json"))
    binding = {"metadata": {"name": "fuzz-sa-delegator"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "system:auth-delegator"},
               "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NS}]}
    ok(admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", encode(binding, "json"),
                     "application/json"))
    role = {"metadata": {"name": "fuzz-sa-tokens"},
            "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
                      {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"],
                       "verbs": ["create"]}]}
    ok(admin.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles", encode(role, "json"),
                     "application/json"))
    role_binding = {"metadata": {"name": "fuzz-sa-tokens"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fuzz-sa-tokens"},
                    "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NS}]}
    ok(admin.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings",
                     encode(role_binding, "json"), "application/json"))
    token = ok(admin.request("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/{SERVICE_ACCOUNT}/token",
                             b'{"spec":{"expirationSeconds":3600}}', "application/json")).json()["status"]["token"]
    return RawClient(server.port, server.ca_file, token=token)


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    admin = RawClient.admin(server.data_dir, server.port)
    for namespace in (NS, SCRATCH):
        ok(admin.request("POST", "/api/v1/namespaces", encode({"metadata": {"name": namespace}}, "json"),
                         "application/json"))
    endpoints = discover(admin)
    schemas, by_kind = kind_schemas(admin)
    missing = [e.name for e in endpoints if (e.api_version, e.kind) not in by_kind]
    assert not missing, f"no OpenAPI v3 schema for the kinds of {missing}"
    for namespace in (NS, SCRATCH):
        for e in endpoints:
            seed(admin, e, namespace)
    sa = service_account_client(server, admin)
    return World(server, admin, sa, endpoints, Shapes(schemas), by_kind)


def fuzz(examples: int, build: Callable[[st.DataObject], tuple[RawClient, Sent, bool]], findings: Findings) -> None:
    """Send `examples` requests made by build(data), each checked against the error contract."""

    @settings(FUZZ, max_examples=examples)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        client, req, stream = build(data)
        findings.check(client, req, stream)

    one()


def assert_contract_held(world: World, findings: Findings) -> None:
    assert world.server.proc.poll() is None, "the server died:\n" + world.server.log()[-3000:]
    ready = world.admin.request("GET", "/readyz")
    assert ready.status == 200, ready.body
    assert not findings.groups, findings.report()


# ---- bodies -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyOp:
    endpoint: Endpoint
    verb: str  # "create", "update" or a patch media type
    as_sa: bool = False


def body_ops(world: World, as_sa: bool) -> list[BodyOp]:
    ops = []
    for e in world.endpoints:
        if as_sa:
            ops += [BodyOp(e, "create", True)] if e.create_only else []
            continue
        ops += [BodyOp(e, "create")] if "create" in e.verbs else []
        ops += [BodyOp(e, "update")] if "update" in e.verbs else []
        ops += [BodyOp(e, t) for t in PATCH_TYPES] if "patch" in e.verbs else []
    return ops


def whole_object(world: World, op: BodyOp, data: st.DataObject) -> dict[str, Any]:
    """A schema-shaped object of the endpoint's kind, mostly with the right apiVersion, kind and name."""
    e = op.endpoint
    body = data.draw(world.shapes.value(world.schema(e)), label="shaped body")
    if not isinstance(body, dict):
        return body
    if data.draw(st.integers(0, 9), label="own type meta") > 0:
        body["apiVersion"], body["kind"] = e.api_version, e.kind
    meta = body.setdefault("metadata", {})
    if isinstance(meta, dict):
        meta.pop("resourceVersion", None)
        meta.pop("uid", None)
        if op.verb == "create":
            meta["name"] = data.draw(st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True),
                                               nasty_text()), label="name")
        else:
            meta["name"] = TARGET
        if e.namespaced:
            meta["namespace"] = NS
    return body


def partial_object(world: World, op: BodyOp, data: st.DataObject) -> Any:
    body = data.draw(world.shapes.value(world.schema(op.endpoint)), label="shaped patch")
    if isinstance(body, dict):
        body.pop("apiVersion", None)
        body.pop("kind", None)
        meta = body.get("metadata")
        if isinstance(meta, dict):
            for key in ("name", "namespace", "resourceVersion", "uid"):
                meta.pop(key, None)
    return body


def json_patch(world: World, op: BodyOp, data: st.DataObject) -> Any:
    pointer = st.one_of(st.sampled_from(world.pointers(op.endpoint) + JSON_POINTERS), nasty_text())
    operation = st.fixed_dictionaries(
        {"op": st.one_of(st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]), wrong_values()),
         "path": pointer},
        optional={"from": pointer, "value": st.one_of(st.text(max_size=5), wrong_values())})
    return data.draw(st.one_of(st.lists(operation, max_size=4), wrong_values()), label="json patch")


def strategic_patch(world: World, op: BodyOp, data: st.DataObject) -> Any:
    body = partial_object(world, op, data)
    return mutate(data, body, st.sampled_from(STRATEGIC_KEYS))


def schema_shaped(world: World, op: BodyOp, data: st.DataObject) -> tuple[bytes, str]:
    """A body and its content type: shaped by the kind's schema, then a few wrong values put in."""
    if op.verb in ("create", "update"):
        style = data.draw(st.sampled_from(["json", "yaml", "flow"]), label="encoding")
        body = mutate(data, whole_object(world, op, data))
        return encode(body, style), "application/json" if style == "json" else "application/yaml"
    if op.verb == APPLY_PATCH:
        style = data.draw(st.sampled_from(["yaml", "flow", "json"]), label="encoding")
        return encode(mutate(data, whole_object(world, op, data)), style), op.verb
    if op.verb == JSON_PATCH:
        return encode(json_patch(world, op, data), "json"), op.verb
    if op.verb == STRATEGIC_PATCH:
        return encode(strategic_patch(world, op, data), "json"), op.verb
    return encode(mutate(data, partial_object(world, op, data)), "json"), op.verb


def malformed(op: BodyOp, data: st.DataObject) -> tuple[bytes, str]:
    """A body no schema describes, sent as the verb's media types (and protobuf where objects are accepted)."""
    e = op.endpoint
    types = ["application/json", "application/yaml"] if op.verb in ("create", "update") else [op.verb]
    raw = data.draw(st.one_of(
        st.sampled_from(MALFORMED),
        st.binary(max_size=64),
        protobuf_junk().map(lambda b: protobuf_envelope(e.api_version, e.kind, b)),
    ), label="malformed body")
    if op.verb in ("create", "update"):
        types.append("application/vnd.kubernetes.protobuf")
    return raw, data.draw(st.sampled_from(types), label="content type")


def body_request(world: World, op: BodyOp, data: st.DataObject) -> tuple[RawClient, Sent, bool]:
    e = op.endpoint
    if data.draw(st.integers(0, 4), label="malformed?") == 0:
        body, ctype = malformed(op, data)
    else:
        body, ctype = schema_shaped(world, op, data)
    query = ""
    if op.verb == APPLY_PATCH:
        query = "?fieldManager=fuzz" + data.draw(st.sampled_from(["", "&force=true"]), label="force")
    method, path = {"create": ("POST", e.create_path()), "update": ("PUT", e.item())}.get(op.verb,
                                                                                         ("PATCH", e.item()))
    client = world.sa if op.as_sa else world.admin
    return client, client.sent(method, path + query, body, ctype), False


def run_body_fuzz(world: World, as_sa: bool) -> Findings:
    findings = Findings(LogTail(world.server.log_path))
    for op in body_ops(world, as_sa):
        fuzz(BODY_EXAMPLES, lambda data, op=op: body_request(world, op, data), findings)  # type: ignore[misc]
    return findings


def test_fuzzed_bodies_on_every_endpoint(world: World) -> None:
    findings = run_body_fuzz(world, as_sa=False)
    assert len(body_ops(world, False)) >= 90  # every resource, subresource and patch type was reached
    assert_contract_held(world, findings)


def test_fuzzed_bodies_from_a_service_account(world: World) -> None:
    """What an attacker in a pod can send: reviews and TokenRequests with the pod's own token."""
    findings = run_body_fuzz(world, as_sa=True)
    assert {op.endpoint.name for op in body_ops(world, True)} >= {
        "serviceaccounts/token", "tokenreviews", "selfsubjectreviews", "subjectaccessreviews",
        "selfsubjectaccessreviews", "localsubjectaccessreviews", "selfsubjectrulesreviews"}
    assert_contract_held(world, findings)


# ---- query parameters ---------------------------------------------------------------------------------------------


def query_string(data: st.DataObject) -> str:
    name = st.one_of(st.sampled_from(QUERY_PARAMS), nasty_text())
    value = st.one_of(st.sampled_from(QUERY_VALUES), nasty_text(), st.integers().map(str))
    pairs = data.draw(st.lists(st.tuples(name, value), min_size=1, max_size=4), label="query")
    tail = data.draw(st.sampled_from(RAW_QUERY_TAILS), label="raw tail")
    encoded = urlencode(pairs, quote_via=quote, errors="surrogatepass")
    return "?" + "&".join(p for p in (encoded, tail) if p)


def query_request(world: World, data: st.DataObject) -> tuple[RawClient, Sent, bool]:
    e = data.draw(st.sampled_from(world.endpoints), label="endpoint")
    actions = [a for a, verb in [("list", "list"), ("watch", "watch"), ("get", "get"), ("create", "create"),
                                 ("update", "update"), ("patch", "patch"), ("apply", "patch")] if verb in e.verbs]
    if e.namespaced and "delete" in e.verbs:
        actions += ["delete", "deletecollection"]
    action = data.draw(st.sampled_from(actions), label="action")
    qs = query_string(data)
    name = data.draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12), label="name")
    everywhere = data.draw(st.booleans(), label="all namespaces")
    if action.startswith("delete"):
        seed(world.admin, e, SCRATCH)  # put back what an earlier delete took
    a = world.admin
    body = encode(e.seed(TARGET if action == "update" else name), "json")
    request = {
        "list": lambda: a.sent("GET", (e.collection() if e.namespaced and not everywhere else
                                       f"{e.prefix}/{e.resource}") + qs),
        "watch": lambda: a.sent("GET", e.collection() + qs + "&watch=true"),
        "get": lambda: a.sent("GET", e.item() + qs),
        "create": lambda: a.sent("POST", e.create_path() + qs, body, "application/json"),
        "update": lambda: a.sent("PUT", e.item() + qs, body, "application/json"),
        "patch": lambda: a.sent("PATCH", e.item() + qs, b'{"metadata":{"labels":{"fuzz":"q"}}}', MERGE_PATCH),
        "apply": lambda: a.sent("PATCH", e.item() + qs, encode(e.seed(), "yaml"), APPLY_PATCH),
        "delete": lambda: a.sent("DELETE", e.item(namespace=SCRATCH) + qs),
        "deletecollection": lambda: a.sent("DELETE", e.collection(SCRATCH) + qs),
    }[action]()
    return a, request, request.method == "GET"


def test_fuzzed_query_parameters(world: World) -> None:
    findings = Findings(LogTail(world.server.log_path))
    fuzz(QUERY_EXAMPLES, lambda data: query_request(world, data), findings)
    assert_contract_held(world, findings)


# ---- path segments ------------------------------------------------------------------------------------------------


def segment() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(PATH_SEGMENTS), st.text(min_size=1, max_size=20).map(
        lambda t: quote(t, safe="", errors="surrogatepass")))


def path_request(world: World, data: st.DataObject) -> tuple[RawClient, Sent, bool]:
    a = world.admin
    method = data.draw(st.sampled_from(["GET", "PUT", "PATCH", "POST", "DELETE"]), label="method")
    if method != "DELETE" and data.draw(st.integers(0, 4), label="free-form?") == 0:
        words = data.draw(st.lists(st.one_of(st.sampled_from(PATH_WORDS), segment()), min_size=1, max_size=7))
        return a, a.sent(method, "/" + "/".join(words), b"{}", "application/json"), method == "GET"
    e = data.draw(st.sampled_from(world.endpoints), label="endpoint")
    odd = segment()
    if method == "DELETE":  # a name that decodes to "/" would make the request a collection delete
        odd = odd.filter(lambda s: "/" not in unquote(s))
    which = data.draw(st.sampled_from(["name", "namespace", "both"] if e.namespaced else ["name"]), label="odd")
    name = data.draw(odd) if which != "namespace" else TARGET
    namespace = data.draw(odd) if which != "name" else (SCRATCH if method == "DELETE" else NS)
    path = e.collection(namespace) if method == "POST" and not e.subresource else e.item(name, namespace)
    body = encode(e.seed(unquote(name, errors="replace")), "json")
    ctype = MERGE_PATCH if method == "PATCH" else "application/json"
    return a, a.sent(method, path, b"" if method in ("GET", "DELETE") else body, ctype), method == "GET"


def test_fuzzed_path_segments(world: World) -> None:
    findings = Findings(LogTail(world.server.log_path))
    fuzz(PATH_EXAMPLES, lambda data: path_request(world, data), findings)
    assert_contract_held(world, findings)
