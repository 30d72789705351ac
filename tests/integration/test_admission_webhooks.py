"""Dynamic admission webhooks against a real kubesat: the configuration kinds (defaults, Kubernetes' validation
messages), and real HTTPS webhooks in this process called for creates, updates and deletes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.conftest import Server, wait_for
from tests.integration.webhookserver import WebhookServer, json_patch, make_ca, slow

VWC = "validatingwebhookconfigurations"
MWC = "mutatingwebhookconfigurations"


def _hook(name: str = "check.example.com", **over: Any) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "name": name, "sideEffects": "None", "admissionReviewVersions": ["v1"],
        "clientConfig": {"url": "https://127.0.0.1:1/check"},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
    }
    hook.update(over)
    return hook


def _config(kind: str, name: str, hooks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name},
            "webhooks": hooks}


def _audit_events(server: Server, name: str, key_part: str) -> list[dict[str, Any]]:
    """The audit events of writes of `name` with an annotation key containing `key_part` (waited for a moment)."""
    deadline = time.monotonic() + 5
    while True:
        events = [json.loads(line) for line in (server.data_dir / "audit.log").read_text().splitlines()]
        found = [e for e in events if (e.get("objectRef") or {}).get("name") == name
                 and any(key_part in k for k in e.get("annotations") or {})]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _create_raw(api: client.ApiClient, plural: str, body: dict[str, Any]) -> Any:
    return client.CustomObjectsApi(api).create_cluster_custom_object("admissionregistration.k8s.io", "v1", plural, body)


def _refusal(api: client.ApiClient, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as ei:
        _create_raw(api, plural, body)
    assert ei.value.status == 422, ei.value.body
    return json.loads(ei.value.body)


# ------------------------------------------------------------------------------------------ configuration kinds
def test_configuration_defaults_and_kubectl(server: Server, api: client.ApiClient) -> None:
    hook = _hook(clientConfig={"service": {"name": "svc", "namespace": "default", "path": "/v"}})
    server.kubectl("create", "-f", "-", input=json.dumps(_config("MutatingWebhookConfiguration", "defaults", [hook])))
    got = json.loads(server.kubectl("get", "mutatingwebhookconfiguration", "defaults", "-o", "json").stdout)
    wh = got["webhooks"][0]
    assert wh["failurePolicy"] == "Fail" and wh["matchPolicy"] == "Equivalent"
    assert wh["namespaceSelector"] == {} and wh["objectSelector"] == {}
    assert wh["timeoutSeconds"] == 10 and wh["reinvocationPolicy"] == "Never"
    assert wh["rules"][0]["scope"] == "*"
    assert wh["clientConfig"]["service"]["port"] == 443
    assert got["metadata"]["generation"] == 1
    table = server.kubectl("get", "mutatingwebhookconfigurations").stdout
    assert table.split("\n")[0].split() == ["NAME", "WEBHOOKS", "AGE"]
    assert "defaults" in table and " 1 " in table
    # The official client's typed API reads it back.
    typed = client.AdmissionregistrationV1Api(api).read_mutating_webhook_configuration("defaults")
    assert typed.webhooks[0].reinvocation_policy == "Never"
    server.kubectl("delete", "mutatingwebhookconfiguration", "defaults")


def test_configuration_validation_messages(api: client.ApiClient) -> None:
    body = _refusal(api, VWC, _config("ValidatingWebhookConfiguration", "bad", [
        _hook("two.segments", sideEffects=None, admissionReviewVersions=[], timeoutSeconds=31,
              clientConfig={"url": "http://u:p@example.com/x?a=1#f"}),
    ]))
    msg = body["message"]
    assert msg.startswith('ValidatingWebhookConfiguration.admissionregistration.k8s.io "bad" is invalid: [')
    for part in (
        'webhooks[0].name: Invalid value: "two.segments": should be a domain with at least three segments '
        "separated by dots",
        "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
        "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
        'webhooks[0].clientConfig.url: Invalid value: "http": \'https\' is the only allowed URL scheme; '
        "desired format: https://host[/path]",
        'webhooks[0].clientConfig.url: Invalid value: "u:p": user information is not permitted in the URL',
        'webhooks[0].clientConfig.url: Invalid value: "f": fragments are not permitted in the URL',
        'webhooks[0].clientConfig.url: Invalid value: "a=1": query parameters are not permitted in the URL',
        "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
    ):
        assert part in msg, (part, msg)
    assert {"reason": "FieldValueRequired", "field": "webhooks[0].sideEffects",
            "message": "Required value: must specify one of None, NoneOnDryRun"} in body["details"]["causes"]


def test_configuration_rules_client_config_and_duplicates(api: client.ApiClient) -> None:
    rule = {"operations": ["CREATE", "*"], "apiGroups": ["", "*"], "apiVersions": [], "resources": ["*", "pods"],
            "scope": "Everywhere"}
    msg = _refusal(api, MWC, _config("MutatingWebhookConfiguration", "bad", [
        _hook("a.b.c", rules=[rule], sideEffects="Some", reinvocationPolicy="Sometimes", failurePolicy="Maybe",
              clientConfig={"url": "https://x.example.com/", "service": {"name": "s", "namespace": "n"}}),
        _hook("a.b.c", admissionReviewVersions=["v2"]),
    ]))["message"]
    for part in (
        "webhooks[0].rules[0].operations: Invalid value: []admissionregistration.OperationType{\"CREATE\", \"*\"}: "
        "if '*' is present, must not specify other operations",
        'webhooks[0].rules[0].apiGroups: Invalid value: []string{"", "*"}: if \'*\' is present, must not specify '
        "other API groups",
        "webhooks[0].rules[0].apiVersions: Required value",
        'webhooks[0].rules[0].resources: Invalid value: []string{"*", "pods"}: if \'*\' is present, must not '
        "specify other resources without subresources",
        'webhooks[0].rules[0].scope: Unsupported value: "Everywhere": supported values: "*", "Cluster", "Namespaced"',
        'webhooks[0].failurePolicy: Unsupported value: "Maybe": supported values: "Fail", "Ignore"',
        'webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun"',
        'webhooks[0].reinvocationPolicy: Unsupported value: "Sometimes": supported values: "IfNeeded", "Never"',
        "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
        'webhooks[1].name: Duplicate value: "a.b.c"',
        'webhooks[1].admissionReviewVersions: Invalid value: []string{"v2"}: must include at least one of v1, v1beta1',
    ):
        assert part in msg, (part, msg)


# ------------------------------------------------------------------------------------------------- webhook calls
@pytest.fixture(scope="module")
def hooks() -> Iterator[WebhookServer]:
    with WebhookServer() as srv:
        yield srv


@pytest.fixture()
def configs(server: Server) -> Iterator[list[tuple[str, str]]]:
    """(resource, name) of the configurations a test makes, deleted after it."""
    made: list[tuple[str, str]] = []
    yield made
    for plural, name in made:
        server.kubectl("delete", plural, name, "--ignore-not-found")


def _install(server: Server, made: list[tuple[str, str]], kind: str, name: str, hooks: list[dict[str, Any]]) -> None:
    server.kubectl("create", "-f", "-", input=json.dumps(_config(kind, name, hooks)))
    made.append((kind.lower() + "s", name))


def _url_hook(srv: WebhookServer, name: str, path: str, case: str, ops: tuple[str, ...] = ("CREATE",),
              **over: Any) -> dict[str, Any]:
    """A webhook on configmaps reached by objects labelled case=<case> only (so tests never meet each other's)."""
    hook = _hook(name, clientConfig={"url": srv.url(path), "caBundle": srv.ca_bundle},
                 objectSelector={"matchLabels": {"case": case}},
                 rules=[{"operations": list(ops), "apiGroups": [""], "apiVersions": ["v1"],
                         "resources": ["configmaps"]}])
    hook.update(over)
    return hook


def _configmap(name: str, case: str, ns: str = "default", **labels: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": name, "namespace": ns, "labels": {"case": case, **labels}},
                       "data": {"k": "v"}})


def _add_label(key: str, value: str) -> Any:
    def behaviour(request: dict[str, Any]) -> dict[str, Any]:
        if not request["object"]["metadata"].get("labels"):
            return json_patch([{"op": "add", "path": "/metadata/labels", "value": {key: value}}])
        key_path = "/metadata/labels/" + key.replace("~", "~0").replace("/", "~1")
        return json_patch([{"op": "add", "path": key_path, "value": value}])
    return behaviour


def test_mutating_webhook_patch_is_stored(server: Server, api: client.ApiClient, hooks: WebhookServer,
                                          configs: list[tuple[str, str]]) -> None:
    hooks.paths["mutate"] = _add_label("webhooked", "yes")
    _install(server, configs, "MutatingWebhookConfiguration", "label-adder",
             [_url_hook(hooks, "label.example.com", "mutate", "mutate")])
    server.kubectl("create", "-f", "-", input=_configmap("mutated", "mutate"))
    stored = client.CoreV1Api(api).read_namespaced_config_map("mutated", "default")
    assert stored.metadata.labels == {"case": "mutate", "webhooked": "yes"}
    review = hooks.got("mutate")[-1]
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert review["_query"] == "timeout=10s"
    req = review["request"]
    assert req["operation"] == "CREATE" and req["name"] == "mutated" and req["namespace"] == "default"
    assert req["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert req["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert req["requestKind"] == req["kind"] and req["requestResource"] == req["resource"]
    assert req["userInfo"]["username"] == "kubernetes-admin"
    assert "system:masters" in req["userInfo"]["groups"]
    assert req["object"]["data"] == {"k": "v"} and req["oldObject"] is None
    assert req["dryRun"] is False
    assert req["options"]["kind"] == "CreateOptions" and req["options"]["apiVersion"] == "meta.k8s.io/v1"
    # A label the object does not carry: the webhook is not called.
    before = len(hooks.got("mutate"))
    server.kubectl("create", "configmap", "unmutated")
    assert len(hooks.got("mutate")) == before
    assert "webhooked" not in (client.CoreV1Api(api).read_namespaced_config_map("unmutated", "default")
                               .metadata.labels or {})


def test_validating_webhook_denies_with_its_message(server: Server, api: client.ApiClient, hooks: WebhookServer,
                                                    configs: list[tuple[str, str]]) -> None:
    hooks.paths["deny"] = lambda r: {"allowed": False, "status": {"message": f"{r['name']} is not welcome"}}
    _install(server, configs, "ValidatingWebhookConfiguration", "denier",
             [_url_hook(hooks, "deny.example.com", "deny", "deny")])
    res = server.kubectl("create", "-f", "-", input=_configmap("refused", "deny"), check=False)
    assert res.returncode != 0
    assert res.stderr.strip() == ('Error from server (Forbidden): error when creating "STDIN": configmaps "refused" is '
                                  'forbidden: admission webhook "deny.example.com" denied the request: refused is '
                                  "not welcome")
    with pytest.raises(ApiException) as ei:
        client.CoreV1Api(api).create_namespaced_config_map("default", json.loads(_configmap("refused2", "deny")))
    assert ei.value.status == 403
    status = json.loads(ei.value.body)
    assert status["reason"] == "Forbidden"
    assert status["message"] == ('configmaps "refused2" is forbidden: admission webhook "deny.example.com" denied '
                                 "the request: refused2 is not welcome")
    assert status["details"] == {"name": "refused2", "kind": "configmaps"}
    # A code and reason of the webhook's own, and a denial without a message.
    hooks.paths["deny"] = lambda r: {"allowed": False, "status": {"code": 409, "reason": "Conflict"}}
    res = server.kubectl("create", "-f", "-", input=_configmap("refused3", "deny"), check=False)
    assert res.stderr.strip() == ('Error from server (Conflict): error when creating "STDIN": configmaps "refused3" '
                                  'is forbidden: admission webhook "deny.example.com" denied the request: Conflict')
    hooks.paths["deny"] = lambda r: {"allowed": False}
    res = server.kubectl("create", "-f", "-", input=_configmap("refused4", "deny"), check=False)
    assert res.stderr.strip().endswith('admission webhook "deny.example.com" denied the request without explanation')
    assert server.kubectl("get", "configmap", "refused", check=False).returncode != 0


def test_warnings_reach_kubectl(server: Server, hooks: WebhookServer, configs: list[tuple[str, str]]) -> None:
    hooks.paths["warn"] = lambda r: {"warnings": ["configmaps are so last year", "second thoughts"],
                                     "auditAnnotations": {"verdict": "grudging"}}
    _install(server, configs, "ValidatingWebhookConfiguration", "warner",
             [_url_hook(hooks, "warn.example.com", "warn", "warn")])
    res = server.kubectl("create", "-f", "-", input=_configmap("warned", "warn"))
    assert "Warning: configmaps are so last year" in res.stderr
    assert "Warning: second thoughts" in res.stderr
    assert "configmap/warned created" in res.stdout
    (event,) = _audit_events(server, "warned", "warn.example.com/")
    assert event["annotations"]["warn.example.com/verdict"] == "grudging"


def test_namespace_and_object_selectors_skip(server: Server, hooks: WebhookServer,
                                             configs: list[tuple[str, str]]) -> None:
    hooks.paths["deny-ns"] = lambda r: {"allowed": False, "status": {"message": "guarded namespace"}}
    hook = _url_hook(hooks, "ns.example.com", "deny-ns", "nssel",
                     namespaceSelector={"matchLabels": {"guarded": "yes"}})
    _install(server, configs, "ValidatingWebhookConfiguration", "ns-guard", [hook])
    server.kubectl("create", "namespace", "open-ns")
    server.kubectl("create", "namespace", "guarded-ns")
    server.kubectl("label", "namespace", "guarded-ns", "guarded=yes")
    server.kubectl("create", "-f", "-", input=_configmap("free", "nssel", "open-ns"))
    res = server.kubectl("create", "-f", "-", input=_configmap("caught", "nssel", "guarded-ns"), check=False)
    assert "denied the request: guarded namespace" in res.stderr
    # objectSelector: the same namespace, an object without the label is never sent.
    calls = len(hooks.got("deny-ns"))
    server.kubectl("create", "configmap", "unlabelled", "-n", "guarded-ns")
    assert len(hooks.got("deny-ns")) == calls


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_failure_policy_on_timeout(server: Server, hooks: WebhookServer, configs: list[tuple[str, str]],
                                   policy: str) -> None:
    hooks.paths["slow"] = slow(3)
    _install(server, configs, "ValidatingWebhookConfiguration", f"slow-{policy.lower()}",
             [_url_hook(hooks, "slow.example.com", "slow", f"slow-{policy}", failurePolicy=policy, timeoutSeconds=1)])
    start = time.monotonic()
    res = server.kubectl("create", "-f", "-", input=_configmap(f"slow-{policy.lower()}", f"slow-{policy}"),
                         check=False)
    took = time.monotonic() - start
    assert took < 2.9, took  # the webhook's 1 s, not its 3 s
    if policy == "Ignore":
        assert res.returncode == 0, res.stderr
        return
    assert res.stderr.strip() == (
        'Error from server (InternalError): error when creating "STDIN": Internal error occurred: failed calling '
        f'webhook "slow.example.com": failed to call webhook: Post "{hooks.url("slow")}?timeout=1s": context '
        "deadline exceeded")


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_failure_policy_on_garbage(server: Server, hooks: WebhookServer, configs: list[tuple[str, str]],
                                   policy: str) -> None:
    hooks.paths["garbage"] = lambda r: b"not json at all"
    _install(server, configs, "MutatingWebhookConfiguration", f"garbage-{policy.lower()}",
             [_url_hook(hooks, "garbage.example.com", "garbage", f"garbage-{policy}", failurePolicy=policy)])
    res = server.kubectl("create", "-f", "-", input=_configmap(f"garbage-{policy.lower()}", f"garbage-{policy}"),
                         check=False)
    if policy == "Ignore":
        assert res.returncode == 0, res.stderr
        (event,) = _audit_events(server, "garbage-ignore", "failed-open")
        assert event["annotations"]["failed-open.mutation.webhook.admission.k8s.io/round_0_index_0"] == \
            "garbage.example.com"
        return
    assert res.stderr.strip() == (
        'Error from server (InternalError): error when creating "STDIN": Internal error occurred: failed calling '
        'webhook "garbage.example.com": failed to call webhook: couldn\'t get version/kind; json parse error: '
        "invalid character 'n' looking for beginning of value")


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_failure_policy_on_a_certificate_not_from_the_ca_bundle(server: Server, hooks: WebhookServer,
                                                                configs: list[tuple[str, str]], policy: str) -> None:
    with WebhookServer(make_ca("another-ca")) as other:
        hook = _url_hook(other, "cert.example.com", "x", f"cert-{policy}", failurePolicy=policy)
        hook["clientConfig"]["caBundle"] = hooks.ca_bundle  # trusts our CA, not the one that signed `other`
        _install(server, configs, "ValidatingWebhookConfiguration", f"cert-{policy.lower()}", [hook])
        res = server.kubectl("create", "-f", "-", input=_configmap(f"cert-{policy.lower()}", f"cert-{policy}"),
                             check=False)
        assert other.got("x") == []
    if policy == "Ignore":
        assert res.returncode == 0, res.stderr
        return
    assert res.stderr.strip() == (
        'Error from server (InternalError): error when creating "STDIN": Internal error occurred: failed calling '
        f'webhook "cert.example.com": failed to call webhook: Post "{other.url("x")}?timeout=10s": tls: failed to '
        "verify certificate: x509: certificate signed by unknown authority")


def test_dry_run_reaches_side_effect_free_webhooks(server: Server, hooks: WebhookServer,
                                                   configs: list[tuple[str, str]]) -> None:
    _install(server, configs, "ValidatingWebhookConfiguration", "dry",
             [_url_hook(hooks, "dry.example.com", "dry", "dry", sideEffects="NoneOnDryRun")])
    server.kubectl("create", "-f", "-", "--dry-run=server", input=_configmap("dry", "dry"))
    req = hooks.got("dry")[-1]["request"]
    assert req["dryRun"] is True and req["options"]["dryRun"] == ["All"]
    assert server.kubectl("get", "configmap", "dry", check=False).returncode != 0


def test_review_of_update_and_delete(server: Server, api: client.ApiClient, hooks: WebhookServer,
                                     configs: list[tuple[str, str]]) -> None:
    _install(server, configs, "ValidatingWebhookConfiguration", "recorder",
             [_url_hook(hooks, "record.example.com", "record", "record", ops=("*",))])
    server.kubectl("create", "-f", "-", input=_configmap("recorded", "record"))
    server.kubectl("patch", "configmap", "recorded", "-p", '{"data":{"k":"v2"}}')
    server.kubectl("delete", "configmap", "recorded")
    ops = [r["request"]["operation"] for r in hooks.got("record")]
    assert ops == ["CREATE", "UPDATE", "DELETE"], ops
    update = hooks.got("record")[1]["request"]
    assert update["oldObject"]["data"] == {"k": "v"} and update["object"]["data"] == {"k": "v2"}
    assert update["options"]["kind"] == "UpdateOptions" and update["name"] == "recorded"
    delete = hooks.got("record")[2]["request"]
    assert delete["object"] is None and delete["oldObject"]["data"] == {"k": "v2"}
    assert delete["options"]["kind"] == "DeleteOptions"
    uids = {r["request"]["uid"] for r in hooks.got("record")}
    assert len(uids) == 3


def test_reinvocation_if_needed(server: Server, api: client.ApiClient, hooks: WebhookServer,
                                configs: list[tuple[str, str]]) -> None:
    hooks.paths["first"] = _add_label("first", "seen")
    hooks.paths["second"] = _add_label("second", "seen")
    _install(server, configs, "MutatingWebhookConfiguration", "a-first",
             [_url_hook(hooks, "first.example.com", "first", "reinvoke", reinvocationPolicy="IfNeeded")])
    _install(server, configs, "MutatingWebhookConfiguration", "b-second",
             [_url_hook(hooks, "second.example.com", "second", "reinvoke")])
    server.kubectl("create", "-f", "-", input=_configmap("reinvoked", "reinvoke"))
    assert len(hooks.got("first")) == 2 and len(hooks.got("second")) == 1
    # The second call of the first webhook sees what the second one added.
    assert hooks.got("first")[1]["request"]["object"]["metadata"]["labels"]["second"] == "seen"
    labels = client.CoreV1Api(api).read_namespaced_config_map("reinvoked", "default").metadata.labels
    assert labels == {"case": "reinvoke", "first": "seen", "second": "seen"}
    (event,) = _audit_events(server, "reinvoked", "mutation.webhook")
    notes = {k: json.loads(v) for k, v in event["annotations"].items() if k.startswith("mutation.webhook")}
    assert notes == {
        "mutation.webhook.admission.k8s.io/round_0_index_0":
            {"configuration": "a-first", "webhook": "first.example.com", "mutated": True},
        "mutation.webhook.admission.k8s.io/round_0_index_1":
            {"configuration": "b-second", "webhook": "second.example.com", "mutated": True},
        "mutation.webhook.admission.k8s.io/round_1_index_0":
            {"configuration": "a-first", "webhook": "first.example.com", "mutated": False},
    }


def test_configurations_themselves_are_exempt(server: Server, hooks: WebhookServer,
                                              configs: list[tuple[str, str]]) -> None:
    hooks.paths["deny-all"] = lambda r: {"allowed": False}
    hook = _hook("everything.example.com", clientConfig={"url": hooks.url("deny-all"), "caBundle": hooks.ca_bundle},
                 rules=[{"operations": ["*"], "apiGroups": ["admissionregistration.k8s.io"], "apiVersions": ["*"],
                         "resources": ["*"]}])
    _install(server, configs, "ValidatingWebhookConfiguration", "deny-all", [hook])
    server.kubectl("delete", "validatingwebhookconfiguration", "deny-all")
    assert hooks.got("deny-all") == []


def test_match_conditions(server: Server, hooks: WebhookServer, configs: list[tuple[str, str]]) -> None:
    hooks.paths["cond"] = lambda r: {"allowed": False, "status": {"message": "condition held"}}
    hook = _url_hook(hooks, "cond.example.com", "cond", "cond", matchConditions=[
        {"name": "wants-check", "expression": "has(object.data) && 'check' in object.data"},
        {"name": "not-admin-ns", "expression": "namespaceObject.metadata.name != 'kube-system'"},
        {"name": "creating", "expression": "request.operation == 'CREATE'"},
    ])
    _install(server, configs, "ValidatingWebhookConfiguration", "conditional", [hook])
    server.kubectl("create", "-f", "-", input=_configmap("no-check", "cond"))  # a false condition: not called
    assert hooks.got("cond") == []
    cm = json.loads(_configmap("with-check", "cond"))
    cm["data"] = {"check": "1"}
    res = server.kubectl("create", "-f", "-", input=json.dumps(cm), check=False)
    assert "denied the request: condition held" in res.stderr
    # A condition that fails to evaluate: 403 under failurePolicy Fail.
    hooks.paths["cond-err"] = lambda r: {}
    bad = _url_hook(hooks, "conderr.example.com", "cond-err", "cond-err",
                    matchConditions=[{"name": "missing", "expression": "object.data.missing == 'x'"}])
    _install(server, configs, "ValidatingWebhookConfiguration", "conditional-error", [bad])
    res = server.kubectl("create", "-f", "-", input=_configmap("cond-err", "cond-err"), check=False)
    assert res.stderr.strip() == ('Error from server (Forbidden): error when creating "STDIN": configmaps "cond-err" '
                                  "is forbidden: expression 'object.data.missing == 'x'' resulted in error: no such "
                                  "key: missing")
    assert hooks.got("cond-err") == []



def test_match_conditions_ask_the_authorizer(server: Server, hooks: WebhookServer,
                                             configs: list[tuple[str, str]]) -> None:
    """Kubernetes' break-glass pattern: the webhook is skipped for whoever may `breakglass` configmaps (the admin,
    in system:masters) and called for a ServiceAccount that may only create them."""
    hooks.paths["glass"] = lambda r: {"allowed": False, "status": {"message": "no break-glass"}}
    hook = _url_hook(hooks, "glass.example.com", "glass", "glass", matchConditions=[
        {"name": "not-breakglass",
         "expression": "!authorizer.group('').resource('configmaps').namespace(request.namespace).check('breakglass')"
                       ".allowed()"},
        {"name": "own-resource", "expression": "authorizer.requestResource.check('create').allowed()"},
    ])
    _install(server, configs, "ValidatingWebhookConfiguration", "breakglass", [hook])
    server.kubectl("create", "-f", "-", input=_configmap("as-admin", "glass"))  # may break glass: not called
    assert hooks.got("glass") == []
    server.kubectl("create", "serviceaccount", "glass-user")
    server.kubectl("create", "role", "cm-create", "--verb=create", "--resource=configmaps")
    server.kubectl("create", "rolebinding", "cm-create", "--role=cm-create", "--serviceaccount=default:glass-user")
    res = server.kubectl("create", "-f", "-", "--as=system:serviceaccount:default:glass-user",
                         input=_configmap("as-user", "glass"), check=False)
    assert 'admission webhook "glass.example.com" denied the request: no break-glass' in res.stderr, res.stderr
    assert [r["request"]["userInfo"]["username"] for r in hooks.got("glass")] == \
        ["system:serviceaccount:default:glass-user"]


def test_a_match_condition_over_the_cost_limit_fails_per_failure_policy(server: Server, hooks: WebhookServer,
                                                                        configs: list[tuple[str, str]]) -> None:
    """A condition priced (for the values at hand) over the per-call limit is not run: under Fail the request is
    refused in Kubernetes' words, under Ignore the webhook is skipped."""
    expression = "object.data.v.split('').all(c, c == 'a')"
    hooks.paths["costly"] = lambda r: {"allowed": False, "status": {"message": "called"}}
    for policy in ("Fail", "Ignore"):
        _install(server, configs, "ValidatingWebhookConfiguration", f"costly-{policy.lower()}", [_url_hook(
            hooks, f"costly-{policy.lower()}.example.com", "costly", f"costly-{policy.lower()}", failurePolicy=policy,
            matchConditions=[{"name": "every-char", "expression": expression}])])
    big = json.loads(_configmap("big", "costly-fail"))
    big["data"] = {"v": "a" * 500_000}
    res = server.kubectl("create", "-f", "-", input=json.dumps(big), check=False)
    assert (f"configmaps \"big\" is forbidden: expression '{expression}' resulted in error: operation cancelled: "
            "actual cost limit exceeded") in res.stderr, res.stderr
    big["metadata"]["labels"]["case"] = "costly-ignore"
    server.kubectl("create", "-f", "-", input=json.dumps(big))
    assert hooks.got("costly") == []

def test_match_condition_refused_when_it_does_not_compile(api: client.ApiClient) -> None:
    msg = _refusal(api, VWC, _config("ValidatingWebhookConfiguration", "bad-cond", [
        _hook(matchConditions=[{"name": "sum", "expression": "1 + 1"}, {"name": "sum", "expression": " "}]),
    ]))["message"]
    assert 'webhooks[0].matchConditions[0].expression: Invalid value: "1 + 1": cel expression must evaluate to a ' \
        "bool" in msg
    assert "webhooks[0].matchConditions[1].expression: Required value" in msg
    assert 'webhooks[0].matchConditions[1].name: Duplicate value: "sum"' in msg


def test_service_reference_reaches_an_endpoint(server: Server, api: client.ApiClient,
                                               configs: list[tuple[str, str]]) -> None:
    with WebhookServer(names=("hooksvc.default.svc", "slicesvc.default.svc")) as srv:
        srv.paths["svc"] = _add_label("via", "service")
        server.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "hooksvc", "namespace": "default"},
            "spec": {"ports": [{"port": 8443, "targetPort": srv.port}]}}))
        server.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "hooksvc", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": srv.port}]}]}))
        hook = _url_hook(srv, "svc.example.com", "svc", "svc")
        hook["clientConfig"] = {"service": {"name": "hooksvc", "namespace": "default", "path": "/svc", "port": 8443},
                                "caBundle": srv.ca_bundle}
        _install(server, configs, "MutatingWebhookConfiguration", "by-service", [hook])
        server.kubectl("create", "-f", "-", input=_configmap("via-service", "svc"))
        labels = client.CoreV1Api(api).read_namespaced_config_map("via-service", "default").metadata.labels
        assert labels["via"] == "service"
        assert srv.got("svc")[-1]["_query"] == "timeout=10s"
        # A Service whose endpoints are only in an EndpointSlice.
        server.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "slicesvc", "namespace": "default"},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": srv.port}]}}))
        server.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "slicesvc-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "slicesvc"}},
            "addressType": "IPv4", "ports": [{"name": "https", "port": srv.port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}))
        srv.paths["slice"] = _add_label("via", "slice")
        slice_hook = _url_hook(srv, "slice.example.com", "slice", "slice")
        slice_hook["clientConfig"] = {"service": {"name": "slicesvc", "namespace": "default", "path": "/slice"},
                                      "caBundle": srv.ca_bundle}
        _install(server, configs, "MutatingWebhookConfiguration", "by-slice", [slice_hook])
        server.kubectl("create", "-f", "-", input=_configmap("via-slice", "slice"))
        assert client.CoreV1Api(api).read_namespaced_config_map("via-slice", "default").metadata.labels["via"] == \
            "slice"
        assert server.kubectl("get", "endpoints", "slicesvc", check=False).returncode != 0  # the slice was the way
        # No such port on the Service: the call fails, worded with the Service's name.
        hook["clientConfig"]["service"]["port"] = 9999
        server.kubectl("replace", "-f", "-", input=json.dumps(_config("MutatingWebhookConfiguration", "by-service",
                                                                       [hook])))
        res = server.kubectl("create", "-f", "-", input=_configmap("no-port", "svc"), check=False)
        assert 'failed calling webhook "svc.example.com": failed to call webhook: Post ' \
            '"https://hooksvc.default.svc:9999/svc?timeout=10s"' in res.stderr


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.hooks.example.com"},
    "spec": {"group": "hooks.example.com", "scope": "Namespaced",
             "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields":
                                                          True}}}]},
}


def test_custom_resources_and_status_subresource(server: Server, api: client.ApiClient, hooks: WebhookServer,
                                                 configs: list[tuple[str, str]]) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    server.kubectl("wait", "--for=condition=Established", "crd/gadgets.hooks.example.com", "--timeout=20s")
    wait_for(lambda: server.kubectl("get", "gadgets", check=False).returncode == 0, 20, "gadgets served")
    hooks.paths["gadget"] = _add_label("gadget", "patched")
    hooks.paths["gadget-status"] = lambda r: {}
    rules = [{"operations": ["CREATE"], "apiGroups": ["hooks.example.com"], "apiVersions": ["*"],
              "resources": ["gadgets"], "scope": "Namespaced"}]
    status_rules = [{"operations": ["UPDATE"], "apiGroups": ["hooks.example.com"], "apiVersions": ["v1"],
                     "resources": ["gadgets/status"]}]
    _install(server, configs, "MutatingWebhookConfiguration", "gadgets", [
        _hook("gadget.example.com", rules=rules,
              clientConfig={"url": hooks.url("gadget"), "caBundle": hooks.ca_bundle})])
    _install(server, configs, "ValidatingWebhookConfiguration", "gadget-status", [
        _hook("gadgetstatus.example.com", rules=status_rules,
              clientConfig={"url": hooks.url("gadget-status"), "caBundle": hooks.ca_bundle})])
    co = client.CustomObjectsApi(api)
    co.create_namespaced_custom_object("hooks.example.com", "v1", "default", "gadgets", {
        "apiVersion": "hooks.example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 1}})
    got = co.get_namespaced_custom_object("hooks.example.com", "v1", "default", "gadgets", "g1")
    assert got["metadata"]["labels"] == {"gadget": "patched"}
    req = hooks.got("gadget")[-1]["request"]
    assert req["kind"] == {"group": "hooks.example.com", "version": "v1", "kind": "Gadget"}
    assert req["resource"] == {"group": "hooks.example.com", "version": "v1", "resource": "gadgets"}
    server.kubectl("patch", "gadget", "g1", "--subresource=status", "--type=merge", "-p", '{"status":{"ok":true}}')
    sreq = hooks.got("gadget-status")[-1]["request"]
    assert sreq["subResource"] == "status" and sreq["operation"] == "UPDATE"
    assert sreq["object"]["status"] == {"ok": True} and "status" not in sreq["oldObject"]
    server.kubectl("delete", "crd", "gadgets.hooks.example.com", "--wait=false")


def test_connect_and_subresource_creates(server: Server, api: client.ApiClient, hooks: WebhookServer,
                                         configs: list[tuple[str, str]]) -> None:
    hooks.paths["connect"] = lambda r: {"allowed": False, "status": {"message": "no shells here"}}
    hooks.paths["evict"] = lambda r: {"allowed": False, "status": {"message": "stay"}}
    rules = [{"operations": ["CONNECT"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/exec"]}]
    evict_rules = [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/eviction"]}]
    _install(server, configs, "ValidatingWebhookConfiguration", "no-exec", [
        _hook("connect.example.com", rules=rules,
              clientConfig={"url": hooks.url("connect"), "caBundle": hooks.ca_bundle}),
        _hook("evict.example.com", rules=evict_rules,
              clientConfig={"url": hooks.url("evict"), "caBundle": hooks.ca_bundle})])
    server.kubectl("run", "shell-target", "--image=busybox", "--restart=Never")
    res = server.kubectl("exec", "shell-target", "--", "sh", "-c", "echo hi", check=False, timeout=30)
    assert res.returncode != 0
    assert 'admission webhook "connect.example.com" denied the request: no shells here' in res.stderr
    req = hooks.got("connect")[-1]["request"]
    assert req["operation"] == "CONNECT" and req["subResource"] == "exec" and req["name"] == "shell-target"
    assert req["kind"] == {"group": "", "version": "v1", "kind": "PodExecOptions"}
    assert req["object"]["command"] == ["sh", "-c", "echo hi"] and req["object"]["kind"] == "PodExecOptions"
    with pytest.raises(ApiException) as ei:
        client.CoreV1Api(api).create_namespaced_pod_eviction("shell-target", "default", {
            "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "shell-target"}})
    assert ei.value.status == 403 and "denied the request: stay" in ei.value.body
    ereq = hooks.got("evict")[-1]["request"]
    assert ereq["kind"] == {"group": "policy", "version": "v1", "kind": "Eviction"}
    assert ereq["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert ereq["subResource"] == "eviction"
    server.kubectl("delete", "pod", "shell-target", "--grace-period=0", "--force", check=False)


def test_scale_subresource_is_admitted_as_a_scale(server: Server, api: client.ApiClient, hooks: WebhookServer,
                                                  configs: list[tuple[str, str]]) -> None:
    def at_most_three(request: dict[str, Any]) -> dict[str, Any]:
        if request["object"]["spec"]["replicas"] > 3:
            return {"allowed": False, "status": {"message": "at most 3 replicas"}}
        return {}

    hooks.paths["scale-check"] = at_most_three
    hooks.paths["scale-cap"] = lambda r: json_patch([{"op": "replace", "path": "/spec/replicas", "value": 2}]) \
        if r["object"]["spec"]["replicas"] == 3 else {}
    rules = [{"operations": ["UPDATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
              "resources": ["deployments/scale"]}]
    _install(server, configs, "ValidatingWebhookConfiguration", "scale-check", [
        _hook("scale.example.com", rules=rules,
              clientConfig={"url": hooks.url("scale-check"), "caBundle": hooks.ca_bundle})])
    _install(server, configs, "MutatingWebhookConfiguration", "scale-cap", [
        _hook("scalecap.example.com", rules=rules,
              clientConfig={"url": hooks.url("scale-cap"), "caBundle": hooks.ca_bundle})])
    server.kubectl("create", "deployment", "scaled", "--image=busybox")
    res = server.kubectl("scale", "deployment", "scaled", "--replicas=5", check=False)
    assert 'deployments.apps "scaled" is forbidden: admission webhook "scale.example.com" denied the request: at ' \
        "most 3 replicas" in res.stderr
    req = hooks.got("scale-check")[-1]["request"]
    assert req["kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert req["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    assert req["subResource"] == "scale" and req["object"]["kind"] == "Scale"
    assert (req["oldObject"]["spec"]["replicas"], req["object"]["spec"]["replicas"]) == (1, 5)
    server.kubectl("scale", "deployment", "scaled", "--replicas=3")  # the mutating webhook makes it 2
    assert client.AppsV1Api(api).read_namespaced_deployment("scaled", "default").spec.replicas == 2
    assert hooks.got("scale-check")[-1]["request"]["object"]["spec"]["replicas"] == 2
    server.kubectl("delete", "deployment", "scaled")


def test_match_policy_equivalent_reaches_another_version(server: Server, api: client.ApiClient,
                                                         hooks: WebhookServer, configs: list[tuple[str, str]]) -> None:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "doohickeys.hooks.example.com"},
           "spec": {"group": "hooks.example.com", "scope": "Namespaced",
                    "names": {"plural": "doohickeys", "singular": "doohickey", "kind": "Doohickey"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": schema},
                                 {"name": "v2", "served": True, "storage": False, "schema": schema}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps(crd))
    server.kubectl("wait", "--for=condition=Established", "crd/doohickeys.hooks.example.com", "--timeout=20s")
    wait_for(lambda: server.kubectl("get", "doohickeys.v2.hooks.example.com", check=False).returncode == 0, 20,
             "doohickeys v2 served")
    rules = [{"operations": ["CREATE"], "apiGroups": ["hooks.example.com"], "apiVersions": ["v1"],
              "resources": ["doohickeys"]}]
    hooks.paths["equivalent"] = lambda r: {}
    hooks.paths["exact"] = lambda r: {}
    _install(server, configs, "ValidatingWebhookConfiguration", "versions", [
        _hook("equivalent.example.com", rules=rules, matchPolicy="Equivalent",
              clientConfig={"url": hooks.url("equivalent"), "caBundle": hooks.ca_bundle}),
        _hook("exact.example.com", rules=rules, matchPolicy="Exact",
              clientConfig={"url": hooks.url("exact"), "caBundle": hooks.ca_bundle})])
    client.CustomObjectsApi(api).create_namespaced_custom_object("hooks.example.com", "v2", "default", "doohickeys", {
        "apiVersion": "hooks.example.com/v2", "kind": "Doohickey", "metadata": {"name": "d2"}})
    assert hooks.got("exact") == []
    req = hooks.got("equivalent")[-1]["request"]
    assert req["kind"] == {"group": "hooks.example.com", "version": "v1", "kind": "Doohickey"}
    assert req["requestKind"] == {"group": "hooks.example.com", "version": "v2", "kind": "Doohickey"}
    assert req["resource"]["version"] == "v1" and req["requestResource"]["version"] == "v2"
    assert req["object"]["apiVersion"] == "hooks.example.com/v1"
    server.kubectl("delete", "crd", "doohickeys.hooks.example.com", "--wait=false")


def test_an_oversized_answer_is_a_call_failure(server: Server, hooks: WebhookServer,
                                               configs: list[tuple[str, str]]) -> None:
    hooks.paths["big"] = lambda r: b'{"padding": "' + b"x" * (7 * 1024 * 1024) + b'"}'
    _install(server, configs, "ValidatingWebhookConfiguration", "big",
             [_url_hook(hooks, "big.example.com", "big", "big")])
    res = server.kubectl("create", "-f", "-", input=_configmap("big", "big"), check=False)
    assert res.stderr.strip() == (
        'Error from server (InternalError): error when creating "STDIN": Internal error occurred: failed calling '
        f'webhook "big.example.com": failed to call webhook: Post "{hooks.url("big")}?timeout=10s": the response is '
        "larger than 6291456 bytes")
