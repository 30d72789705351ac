"""Dynamic admission webhooks against a real kubesat: the configuration kinds (defaults, Kubernetes' validation
messages), and real HTTPS webhooks in this process called for creates, updates and deletes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.conftest import Server

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
