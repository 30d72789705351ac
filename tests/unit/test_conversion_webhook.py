"""CRD conversion webhooks' answers checked as apiextensions-apiserver checks them (auth/conversionwebhook.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kubesat import errors
from kubesat.auth import conversionwebhook as cw
from kubesat.auth.webhookcall import CallError, Target

V1, V2 = "stable.example.com/v1", "stable.example.com/v2"


def obj(name: str = "a", api_version: str = V1, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "CronTab",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "7",
                         "generation": 1, **meta},
            "spec": {"hostPort": "h:1"}}


def review(objects: list[Any] | None = None, uid: str = "u1", status: str = "Success", message: str = "",
           api_version: str = "apiextensions.k8s.io/v1") -> bytes:
    result: dict[str, Any] = {"status": status}
    if message:
        result["message"] = message
    response: dict[str, Any] = {"uid": uid, "result": result}
    if objects is not None:
        response["convertedObjects"] = objects
    return json.dumps({"apiVersion": api_version, "kind": "ConversionReview", "response": response}).encode()


def failed(fn: Any, *args: Any) -> str:
    with pytest.raises(cw.ConversionFailed) as e:
        fn(*args)
    return str(e.value)


def test_review_version_is_the_first_known_one() -> None:
    assert cw.review_version({"webhook": {"conversionReviewVersions": ["v2", "v1beta1", "v1"]}}) == "v1beta1"
    assert cw.review_version({"webhook": {"conversionReviewVersions": ["v1", "v1beta1"]}}) == "v1"
    assert failed(cw.review_version, {"webhook": {"conversionReviewVersions": ["v9"]}}) == \
        "no supported conversion review versions"


def test_go_printing_of_group_versions() -> None:
    assert cw.gvk_text(V1, "CronTab") == "stable.example.com/v1, Kind=CronTab"
    assert cw.gvk_text("v1", "Pod") == "/v1, Kind=Pod"
    assert cw.gvk_text(None, None) == "/, Kind="
    assert cw.gv_text("v1") == "v1" and cw.gv_text("a/b/c") == ""


def test_the_review_itself() -> None:
    assert cw.converted_objects(review([obj()]), "v1", "u1") == [obj()]
    assert failed(cw.converted_objects, b"garbage", "v1", "u1") == \
        "failed: couldn't get version/kind; json parse error: invalid character 'g' looking for beginning of value"
    assert failed(cw.converted_objects, review([], uid="other"), "v1", "u1") == \
        'failed: expected response.uid="u1", got "other"'
    assert failed(cw.converted_objects, review([], api_version="apiextensions.k8s.io/v1beta1"), "v1", "u1") == \
        "failed: expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got " \
        "apiextensions.k8s.io/v1beta1, Kind=ConversionReview"
    assert failed(cw.converted_objects, b'{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview"}',
                  "v1", "u1") == "failed: no response provided"
    assert failed(cw.converted_objects, review(status="Failure", message="no way"), "v1", "u1") == "failed: no way"
    assert failed(cw.converted_objects, review(status="Failure"), "v1", "u1") == \
        "failed: response.result.status was 'Failure', not 'Success'"


def test_a_v1beta1_review_is_read_without_its_kind_or_uid_checked() -> None:
    body = review([obj()], uid="whatever", api_version="apiextensions.k8s.io/v1beta1")
    assert cw.converted_objects(body, "v1beta1", "u1") == [obj()]


def test_one_object_checked_in_the_single_object_words() -> None:
    original = obj()
    good = obj(api_version=V2, resourceVersion="999", labels={"a": "b"})
    out = cw.checked([original], [good], V2)[0]
    # metadata is the original's but for labels and annotations
    assert out["metadata"] == {**original["metadata"], "labels": {"a": "b"}} and out["apiVersion"] == V2
    assert failed(cw.checked, [original], [], V2) == "returned 0 objects, expected 1"
    assert failed(cw.checked, [original], [obj(api_version=V1)], V2) == \
        "returned invalid object at index 0: invalid groupVersion (expected stable.example.com/v2, " \
        "received stable.example.com/v1)"
    assert failed(cw.checked, [original], [{**good, "kind": "Other"}], V2) == \
        "returned invalid object at index 0: invalid kind (expected CronTab, received Other)"
    assert failed(cw.checked, [original], [obj("b", api_version=V2, uid="uid-a")], V2) == \
        "returned invalid object: must have the same name: a != b"
    assert failed(cw.checked, [original], [obj(api_version=V2, namespace="x")], V2) == \
        "returned invalid object: must have the same namespace: default != x"
    assert failed(cw.checked, [original], [obj(api_version=V2, uid="z")], V2) == \
        "returned invalid object: must have the same UID: uid-a != z"
    assert failed(cw.checked, [original], ["text"], V2) == \
        "returned invalid object at index 0: json: cannot unmarshal string into Go value of type " \
        "map[string]interface {}"


def test_metadata_restored_and_checked_as_restore_object_meta() -> None:
    original = obj(labels={"keep": "me"}, annotations={"x": "y"})
    converted = obj(api_version=V2)  # the webhook dropped labels and annotations: so do we
    converted["metadata"].pop("namespace")
    converted["metadata"]["namespace"] = "default"
    out = cw.checked([original], [converted], V2)[0]["metadata"]
    assert "labels" not in out and "annotations" not in out and out["resourceVersion"] == "7"
    no_meta = {"apiVersion": V2, "kind": "CronTab"}
    # a missing metadata has no name: the name check speaks first, as in Kubernetes
    assert failed(cw.checked, [original], [no_meta], V2) == "returned invalid object: must have the same name: a != "
    same = obj(api_version=V2)
    assert failed(cw.checked, [original], [{**same, "metadata": {**same["metadata"], "labels": "x"}}], V2) == \
        "returned invalid metadata: invalid metadata.labels of type string in converted object"
    assert failed(cw.checked, [original], [{**same, "metadata": {**same["metadata"], "labels": {"k": 1}}}], V2) == \
        "returned invalid metadata: metadata.labels[k] must be a string, but is int64 in converted object"
    bad = {**same, "metadata": {**same["metadata"], "labels": {"k": "not ok!"}}}
    assert failed(cw.checked, [original], [bad], V2).startswith(
        'returned invalid metadata: metadata.labels: Invalid value: "not ok!": a valid label must be')


def test_several_objects_checked_in_the_list_words() -> None:
    originals = [obj("a"), obj("b")]
    answers = [obj("a", api_version=V2), obj("c", api_version=V2, uid="uid-b")]
    assert failed(cw.checked, originals, answers, V2) == \
        "returned invalid converted object at index 2: must have the same name: b != c"
    assert failed(cw.checked, originals, answers[:1], V2) == "returned 1 objects, expected 2"
    answers = [obj("a", api_version=V2), {**obj("b", api_version=V2), "metadata": []}]
    assert failed(cw.checked, originals, answers, V2).startswith("returned invalid converted object at index 2: ")


class FakeClient:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.posted: list[dict[str, Any]] = []

    async def post(self, target: Target, body: dict[str, Any], timeout: float) -> tuple[int, bytes]:
        self.posted.append(body)
        assert timeout == 30 and target.url.endswith("?timeout=30s")
        if isinstance(self.answer, Exception):
            raise self.answer
        return 200, self.answer(body["request"]) if callable(self.answer) else self.answer


class FakePlugin:
    def __init__(self, client: FakeClient) -> None:
        self.client = client

    async def target(self, hook: dict[str, Any], timeout: int) -> Target:
        url = hook["clientConfig"]["url"] + f"?timeout={timeout}s"
        return Target(url, url)


CONVERSION = {"strategy": "Webhook", "webhook": {"clientConfig": {"url": "https://hook/convert"},
                                                 "conversionReviewVersions": ["v1"]}}


def run(answer: Any, objects: list[dict[str, Any]], desired: str = V2) -> tuple[Any, FakeClient]:
    client = FakeClient(answer)
    hooks = cw.ConversionWebhooks(FakePlugin(client))  # type: ignore[arg-type]
    return asyncio.run(hooks.convert(CONVERSION, objects, desired)), client


def to_v2(request: dict[str, Any]) -> bytes:
    return review([{**o, "apiVersion": request["desiredAPIVersion"]} for o in request["objects"]],
                  uid=request["uid"])


def test_only_objects_not_yet_in_the_version_wanted_are_sent_in_one_review() -> None:
    out, client = run(to_v2, [obj("a"), obj("b", api_version=V2), obj("c")])
    assert [o["apiVersion"] for o in out] == [V2, V2, V2] and [o["metadata"]["name"] for o in out] == ["a", "b", "c"]
    assert len(client.posted) == 1
    sent = client.posted[0]
    assert sent["apiVersion"] == "apiextensions.k8s.io/v1" and sent["kind"] == "ConversionReview"
    assert sent["request"]["desiredAPIVersion"] == V2 and [o["metadata"]["name"] for o in
                                                            sent["request"]["objects"]] == ["a", "c"]
    _, client = run(to_v2, [obj("b", api_version=V2)])
    assert client.posted == []  # nothing to convert: no call


def test_failures_are_500_with_the_converters_words() -> None:
    with pytest.raises(errors.StatusError) as e:
        run(lambda r: review(status="Failure", message="nope", uid=r["uid"]), [obj()])
    assert e.value.code == 500 and e.value.reason == ""
    assert e.value.message == "conversion webhook for stable.example.com/v1, Kind=CronTab failed: nope"
    with pytest.raises(errors.StatusError) as e:
        run(CallError('Post "https://hook/convert?timeout=30s": dial tcp 127.0.0.1:1: connect: connection refused'),
            [obj()])
    assert e.value.message == ('conversion webhook for stable.example.com/v1, Kind=CronTab failed: Post '
                               '"https://hook/convert?timeout=30s": dial tcp 127.0.0.1:1: connect: connection refused')
    assert "status" in e.value.status() and "reason" not in e.value.status()
