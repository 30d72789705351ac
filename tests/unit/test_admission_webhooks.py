"""The webhook plugins' pure parts: rule matching, and the dispatcher over an in-memory registry with a stand-in
HTTP client (what the API refuses to store, such as sideEffects Unknown, and answers a real server rarely gives)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from kubesat import errors
from kubesat.auth.user import UserInfo
from kubesat.auth.webhookcall import CallError, Target, WebhookClient, read_answer
from kubesat.auth.webhookrules import RequestResource, rule_matches
from kubesat.auth.webhooks import MUTATING, VALIDATING, Attributes, WebhookAdmission
from kubesat.registry.store import Registry, encode
from kubesat.storage.memory import MemoryStore

PODS = RequestResource("", "v1", "pods", "", "Pod", "default")
POD_STATUS = RequestResource("", "v1", "pods", "status", "Pod", "default")
DEPLOY_SCALE = RequestResource("apps", "v1", "deployments", "scale", "Scale", "default")
NAMESPACE = RequestResource("", "v1", "namespaces", "", "Namespace", "")


def _rule(resources: list[str], scope: str = "*", ops: tuple[str, ...] = ("CREATE",)) -> dict[str, Any]:
    return {"operations": list(ops), "apiGroups": ["*"], "apiVersions": ["*"], "resources": resources,
            "scope": scope}


@pytest.mark.parametrize(("resources", "request_resource", "matches"), [
    (["pods"], PODS, True),
    (["pods"], POD_STATUS, False),
    (["pods/status"], POD_STATUS, True),
    (["pods/status"], PODS, False),
    (["*"], PODS, True),
    (["*"], POD_STATUS, False),
    (["*/*"], POD_STATUS, True),
    (["pods/*"], POD_STATUS, True),
    (["pods/*"], PODS, False),
    (["*/scale"], DEPLOY_SCALE, True),
    (["*/scale"], POD_STATUS, False),
])
def test_resources_and_subresources(resources: list[str], request_resource: RequestResource, matches: bool) -> None:
    assert rule_matches(_rule(resources), "CREATE", request_resource) is matches


def test_operations_groups_versions_and_scope() -> None:
    assert rule_matches(_rule(["pods"], ops=("*",)), "DELETE", PODS)
    assert not rule_matches(_rule(["pods"], ops=("UPDATE",)), "CREATE", PODS)
    assert not rule_matches({**_rule(["pods"]), "apiGroups": ["apps"]}, "CREATE", PODS)
    assert not rule_matches({**_rule(["pods"]), "apiVersions": ["v2"]}, "CREATE", PODS)
    assert rule_matches(_rule(["pods"], "Namespaced"), "CREATE", PODS)
    assert not rule_matches(_rule(["pods"], "Cluster"), "CREATE", PODS)
    assert rule_matches(_rule(["namespaces"], "Cluster"), "CREATE", NAMESPACE)
    assert not rule_matches(_rule(["namespaces"], "Namespaced"), "CREATE", NAMESPACE)


class FakeClient(WebhookClient):
    """Answers every POST with the given function of the review."""

    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    async def post(self, target: Target, review: dict[str, Any], timeout: float) -> tuple[int, bytes]:
        self.calls.append(review)
        return 200, json.dumps(self.answer(review)).encode()


def _allow(review: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": True, **extra}}


def _hook(**over: Any) -> dict[str, Any]:
    hook = {"name": "unit.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail", "timeoutSeconds": 10, "clientConfig": {"url": "https://127.0.0.1:1/x"},
            "rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
                       "scope": "*"}]}
    hook.update(over)
    return hook


def _run(hook: dict[str, Any], answer: Any, operation: str = "CREATE", dry_run: bool = False,
         mutating: bool = False, new: dict[str, Any] | None = None) -> tuple[FakeClient, dict[str, Any] | None]:
    async def go() -> tuple[FakeClient, dict[str, Any] | None]:
        reg = Registry(MemoryStore.open())
        info = MUTATING if mutating else VALIDATING
        cfg = {"apiVersion": info.api_version, "kind": info.kind, "metadata": {"name": "unit"}, "webhooks": [hook]}
        await reg.store.create(info.key("", "unit"), encode(cfg))  # past validation, as an older server stored it
        fake = FakeClient(answer)
        plugin = WebhookAdmission(reg, fake)
        attrs = Attributes(operation, RequestResource("", "v1", "configmaps", "", "ConfigMap", ""), "cm",
                           UserInfo("alice", "u1", ("devs",), {"scopes": ("a",)}), dry_run, None)
        calls = plugin.for_request(attrs)
        assert calls is not None
        obj = new
        if mutating:
            await calls.mutate(None, obj)
        else:
            await calls.validate(None, obj)
        return fake, obj
    return asyncio.run(go())


def test_dry_run_refused_by_a_webhook_with_side_effects() -> None:
    with pytest.raises(errors.StatusError) as ei:
        _run(_hook(sideEffects="Unknown"), _allow, dry_run=True, new={"metadata": {}})
    assert (ei.value.code, ei.value.message) == (400, 'admission webhook "unit.example.com" does not support dry run')
    fake, _ = _run(_hook(sideEffects="NoneOnDryRun"), _allow, dry_run=True, new={"metadata": {}})
    assert fake.calls[0]["request"]["dryRun"] is True
    assert fake.calls[0]["request"]["userInfo"] == {"username": "alice", "uid": "u1", "groups": ["devs"],
                                                    "extra": {"scopes": ["a"]}}


def test_v1beta1_when_v1_is_not_listed() -> None:
    fake, _ = _run(_hook(admissionReviewVersions=["v1beta1"]), _allow, new={"metadata": {}})
    assert fake.calls[0]["apiVersion"] == "admission.k8s.io/v1beta1"


def test_patch_type_other_than_json_patch_is_a_call_failure() -> None:
    patch = base64.b64encode(b"[]").decode()
    with pytest.raises(errors.StatusError) as ei:
        _run(_hook(), lambda r: _allow(r, patch=patch, patchType="MergePatch"), mutating=True, new={"metadata": {}})
    assert ei.value.message == ('Internal error occurred: failed calling webhook "unit.example.com": unsupported '
                                'patch type "MergePatch"')
    _, obj = _run(_hook(failurePolicy="Ignore"), lambda r: _allow(r, patch=patch, patchType="MergePatch"),
                  mutating=True, new={"metadata": {}})
    assert obj == {"metadata": {}}


def test_a_patch_that_does_not_apply_fails_the_request() -> None:
    patch = base64.b64encode(json.dumps([{"op": "replace", "path": "/nope/x", "value": 1}]).encode()).decode()
    with pytest.raises(errors.StatusError) as ei:
        _run(_hook(failurePolicy="Ignore"), lambda r: _allow(r, patch=patch, patchType="JSONPatch"), mutating=True,
             new={"metadata": {}})
    assert ei.value.code == 500 and ei.value.message.startswith("Internal error occurred: ")


def test_a_patch_on_delete_is_refused() -> None:
    patch = base64.b64encode(b'[{"op":"add","path":"/x","value":1}]').decode()
    with pytest.raises(errors.StatusError) as ei:
        _run(_hook(), lambda r: _allow(r, patch=patch, patchType="JSONPatch"), operation="DELETE", mutating=True)
    assert ei.value.message == ('Internal error occurred: admission webhook "unit.example.com" attempted to modify '
                                "the object, which is not supported for this operation")


def test_uid_and_kind_of_the_answer_are_checked() -> None:
    with pytest.raises(CallError, match=r'^received invalid webhook response: expected response.uid="a", got "b"$'):
        read_answer(200, b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"b"}}',
                    "a", "admission.k8s.io/v1", False)
    with pytest.raises(CallError, match="expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, "
                                        "got v1, Kind=Status"):
        read_answer(200, b'{"apiVersion":"v1","kind":"Status","response":{"uid":"a"}}', "a",
                    "admission.k8s.io/v1", False)
    with pytest.raises(CallError, match="webhook response was absent"):
        read_answer(200, b"{}", "a", "admission.k8s.io/v1", False)
    with pytest.raises(CallError, match="status code 500"):
        read_answer(500, b"", "a", "admission.k8s.io/v1", False)


def test_an_update_that_creates_is_a_create() -> None:
    attrs = Attributes("UPDATE", RequestResource("", "v1", "leases", "", "Lease", "ns"), "l", None, True,
                       {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"],
                        "fieldManager": "me"})
    created = attrs.creating()
    assert created.operation == "CREATE"
    assert created.options == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"],
                               "fieldManager": "me"}
