"""PATCH bodies: RFC 6902 JSON patch, RFC 7386 merge patch and Kubernetes' strategic merge patch."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesat.apimachinery import patch as P
from kubesat.errors import StatusError

POD = "io.k8s.api.core.v1.Pod"
DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
SERVICE_ACCOUNT = "io.k8s.api.core.v1.ServiceAccount"
CONFIG_MAP = "io.k8s.api.core.v1.ConfigMap"
SERVICE = "io.k8s.api.core.v1.Service"


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def ctr(name: str, image: str = "nginx", **rest: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **rest}


# ---------------------------------------------------------------------------------------------
# Strategic merge patch
# ---------------------------------------------------------------------------------------------

SMP_CASES: list[tuple[str, str, dict[str, Any], Any, dict[str, Any]]] = [
    (
        # kubernetes.io "Update API Objects in Place Using kubectl patch": a new container is merged
        # in by name and, having no place in the live list, lands first.
        "containers merge by name (docs example)",
        POD,
        pod(containers=[ctr("patch-demo-ctr", "nginx")]),
        {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}},
        pod(containers=[ctr("patch-demo-ctr-2", "redis"), ctr("patch-demo-ctr", "nginx")]),
    ),
    (
        "existing container is merged field by field",
        POD,
        pod(containers=[ctr("a", "nginx", args=["x"]), ctr("b")]),
        {"spec": {"containers": [{"name": "a", "image": "nginx:2"}]}},
        pod(containers=[ctr("a", "nginx:2", args=["x"]), ctr("b")]),
    ),
    (
        "$patch: delete removes a container",
        POD,
        pod(containers=[ctr("a"), ctr("b"), ctr("c")]),
        {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}},
        pod(containers=[ctr("a"), ctr("c")]),
    ),
    (
        "$patch: delete removes every duplicate",
        POD,
        pod(volumes=[{"name": "v"}, {"name": "v"}, {"name": "w"}]),
        {"spec": {"volumes": [{"name": "v", "$patch": "delete"}]}},
        pod(volumes=[{"name": "w"}]),
    ),
    (
        "$patch: replace in a merge list replaces the list",
        POD,
        pod(containers=[ctr("a"), ctr("b")]),
        {"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "busybox", "tty": None}]}},
        pod(containers=[ctr("c", "busybox")]),
    ),
    (
        "$patch: replace on a map replaces it",
        POD,
        pod(containers=[ctr("a")], nodeSelector={"a": "1", "b": "2"}),
        {"spec": {"nodeSelector": {"$patch": "replace", "c": "3"}}},
        pod(containers=[ctr("a")], nodeSelector={"c": "3"}),
    ),
    (
        "$patch: delete on a map empties it",
        POD,
        {"metadata": {"name": "p", "labels": {"a": "1"}}},
        {"metadata": {"labels": {"$patch": "delete"}}},
        {"metadata": {"name": "p", "labels": {}}},
    ),
    (
        "env var replaced by name, others kept",
        POD,
        pod(containers=[ctr("a", env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}])]),
        {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}]}]}},
        pod(containers=[ctr("a", env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}])]),
    ),
    (
        "env var field removed with null",
        POD,
        pod(containers=[ctr("a", env=[{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}])]),
        {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "valueFrom": None, "value": "v"}]}]}},
        pod(containers=[ctr("a", env=[{"name": "X", "value": "v"}])]),
    ),
    (
        "ports merge by containerPort",
        POD,
        pod(containers=[ctr("a", ports=[{"containerPort": 80}, {"containerPort": 443}])]),
        {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 443, "name": "https"}]}]}},
        pod(containers=[ctr("a", ports=[{"containerPort": 80}, {"containerPort": 443, "name": "https"}])]),
    ),
    (
        "volumeMounts merge by mountPath",
        POD,
        pod(containers=[ctr("a", volumeMounts=[{"name": "v", "mountPath": "/a"}])]),
        {"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": "w", "mountPath": "/a"}]}]}},
        pod(containers=[ctr("a", volumeMounts=[{"name": "w", "mountPath": "/a"}])]),
    ),
    (
        "tolerations (no patch strategy) replace (docs example)",
        POD,
        pod(tolerations=[{"key": "a", "effect": "NoSchedule"}]),
        {"spec": {"tolerations": [{"key": "b", "effect": "NoSchedule"}]}},
        pod(tolerations=[{"key": "b", "effect": "NoSchedule"}]),
    ),
    (
        "args (atomic list of scalars) replace",
        POD,
        pod(containers=[ctr("a", args=["1", "2"])]),
        {"spec": {"containers": [{"name": "a", "args": ["3"]}]}},
        pod(containers=[ctr("a", args=["3"])]),
    ),
    (
        "finalizers are a union without duplicates",
        POD,
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["b", "c"]}},
        {"metadata": {"finalizers": ["a", "b", "c"]}},
    ),
    (
        "finalizers: a new one has no live position and goes first",
        POD,
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["c"]}},
        {"metadata": {"finalizers": ["c", "a", "b"]}},
    ),
    (
        "finalizers: patch order wins over live order",
        POD,
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {"metadata": {"finalizers": ["c", "a"]}},
        {"metadata": {"finalizers": ["b", "c", "a"]}},
    ),
    (
        "$deleteFromPrimitiveList removes finalizers",
        POD,
        {"metadata": {"finalizers": ["a", "b", "b", "c"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
        {"metadata": {"finalizers": ["a", "c"]}},
    ),
    (
        "$deleteFromPrimitiveList on a missing list does nothing",
        POD,
        {"metadata": {"name": "p"}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
        {"metadata": {"name": "p"}},
    ),
    (
        "labels merge; null deletes a label",
        POD,
        {"metadata": {"labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"a": None, "c": "3"}}},
        {"metadata": {"labels": {"b": "2", "c": "3"}}},
    ),
    (
        "null deletes a missing key quietly",
        POD,
        {"metadata": {"labels": {"a": "1"}}},
        {"metadata": {"annotations": None}},
        {"metadata": {"labels": {"a": "1"}}},
    ),
    (
        "ownerReferences merge by uid",
        POD,
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "x"}, {"uid": "2", "name": "y"}]}},
        {"metadata": {"ownerReferences": [{"uid": "2", "name": "z"}]}},
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "x"}, {"uid": "2", "name": "z"}]}},
    ),
    (
        "ServiceAccount.secrets merge by name",
        SERVICE_ACCOUNT,
        {"kind": "ServiceAccount", "secrets": [{"name": "a"}]},
        {"secrets": [{"name": "b"}]},
        {"kind": "ServiceAccount", "secrets": [{"name": "b"}, {"name": "a"}]},
    ),
    (
        "ServiceAccount.imagePullSecrets is atomic and replaces",
        SERVICE_ACCOUNT,
        {"imagePullSecrets": [{"name": "a"}]},
        {"imagePullSecrets": [{"name": "b"}]},
        {"imagePullSecrets": [{"name": "b"}]},
    ),
    (
        "Pod imagePullSecrets merge by name",
        POD,
        pod(imagePullSecrets=[{"name": "a"}]),
        {"spec": {"imagePullSecrets": [{"name": "b"}]}},
        pod(imagePullSecrets=[{"name": "b"}, {"name": "a"}]),
    ),
    (
        "ConfigMap data merges like JSON merge patch",
        CONFIG_MAP,
        {"data": {"a": "1", "b": "2"}},
        {"data": {"b": None, "c": "3"}, "immutable": True},
        {"data": {"a": "1", "c": "3"}, "immutable": True},
    ),
    (
        "$retainKeys clears fields not listed (docs Deployment strategy example)",
        DEPLOYMENT,
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        {"spec": {"strategy": {"type": "Recreate"}}},
    ),
    (
        "$retainKeys inside a merge list item (volume source switch)",
        POD,
        pod(volumes=[{"name": "v", "emptyDir": {}}]),
        {"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}},
        pod(volumes=[{"name": "v", "hostPath": {"path": "/x"}}]),
    ),
    (
        "$setElementOrder orders a merged list",
        POD,
        pod(containers=[ctr("a"), ctr("b")]),
        {"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
            "containers": [{"name": "c", "image": "redis"}],
        }},
        pod(containers=[ctr("c", "redis"), ctr("b"), ctr("a")]),
    ),
    (
        "$setElementOrder alone reorders",
        POD,
        {"metadata": {"finalizers": ["a", "b", "c"]}},
        {"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"]}},
        {"metadata": {"finalizers": ["c", "b", "a"]}},
    ),
    (
        # s (live index 1) sits before b (live index 2), so it is emitted first.
        "$setElementOrder interleaves server-only items by live position",
        POD,
        pod(containers=[ctr("a"), ctr("s"), ctr("b")]),
        {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                  "containers": [{"name": "a", "image": "x"}]}},
        pod(containers=[ctr("s"), ctr("b"), ctr("a", "x")]),
    ),
    (
        "$setElementOrder with a list new to the object",
        POD,
        pod(),
        {"spec": {"$setElementOrder/initContainers": [{"name": "i"}], "initContainers": [{"name": "i"}]}},
        pod(initContainers=[{"name": "i"}]),
    ),
    (
        "$setElementOrder listing an item the list lacks",
        POD,
        {"metadata": {"finalizers": ["a", "c"]}},
        {"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"]}},
        {"metadata": {"finalizers": ["c", "a"]}},
    ),
    (
        "directives in a brand-new subtree are resolved, not copied",
        POD,
        {"metadata": {"name": "p"}},
        {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "image": "x", "env": [{"name": "E", "$patch": "delete"}], "tty": None}],
            "securityContext": {"$retainKeys": ["runAsUser"], "runAsUser": 1},
        }},
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x", "env": []}],
                                             "securityContext": {"runAsUser": 1}}},
    ),
    (
        "directive keys inside a replaced (atomic) list are dropped",
        POD,
        pod(tolerations=[{"key": "a"}]),
        {"spec": {"tolerations": [{"key": "b", "$patch": "delete", "value": None}]}},
        pod(tolerations=[{"key": "b", "value": None}]),
    ),
    (
        "a type change replaces the value",
        POD,
        {"metadata": {"labels": "oops"}},
        {"metadata": {"labels": {"a": "1", "b": None}}},
        {"metadata": {"labels": {"a": "1"}}},
    ),
    (
        "unknown fields merge like JSON merge patch (lists replace)",
        POD,
        {"x": {"list": [{"name": "a"}], "keep": 1}},
        {"x": {"list": [{"name": "b"}], "drop": None}},
        {"x": {"list": [{"name": "b"}], "keep": 1}},
    ),
    (
        "unknown definition falls back to JSON merge semantics for lists",
        "io.example.v1.Nothing",
        {"spec": {"containers": [{"name": "a"}]}},
        {"spec": {"containers": [{"name": "b"}]}},
        {"spec": {"containers": [{"name": "b"}]}},
    ),
    (
        "Service ports merge by port",
        SERVICE,
        {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}},
    ),
    (
        "whole-object $patch: replace",
        POD,
        {"metadata": {"name": "p"}, "spec": {}},
        {"$patch": "replace", "metadata": {"name": "q"}},
        {"metadata": {"name": "q"}},
    ),
    (
        "empty patch and null patch change nothing",
        POD,
        pod(containers=[ctr("a")]),
        b"null",
        pod(containers=[ctr("a")]),
    ),
]


@pytest.mark.parametrize("definition,doc,patch,want", [c[1:] for c in SMP_CASES], ids=[c[0] for c in SMP_CASES])
def test_strategic_merge_patch(definition: str, doc: dict[str, Any], patch: Any, want: dict[str, Any]) -> None:
    before = copy.deepcopy(doc)
    patch_before = copy.deepcopy(patch)
    assert P.apply_strategic_merge_patch(doc, patch, definition) == want
    assert doc == before, "the input document must not be mutated"
    assert patch == patch_before, "the patch must not be mutated"


def test_strategic_merge_patch_accepts_bytes() -> None:
    doc = pod(containers=[ctr("a")])
    body = json.dumps({"spec": {"containers": [{"name": "a", "image": "b"}]}}).encode()
    assert P.apply_strategic_merge_patch(doc, body, POD) == pod(containers=[ctr("a", "b")])


def _last_applied(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def test_second_kubectl_apply_removing_a_label_and_an_env_var() -> None:
    """The three-way patch kubectl sends when a re-applied Pod manifest drops a label and an env var."""
    first = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
        "spec": {"containers": [
            {"name": "web", "image": "nginx",
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "side", "image": "busybox"},
        ]},
    }
    second = copy.deepcopy(first)
    del second["metadata"]["labels"]["tier"]
    second["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    live = copy.deepcopy(first)
    live["metadata"].update({
        "uid": "u1", "resourceVersion": "5",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": _last_applied(first)},
    })
    live["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    live["spec"]["containers"][1]["terminationMessagePath"] = "/dev/termination-log"
    live["spec"]["restartPolicy"] = "Always"
    patch = {
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": _last_applied(second)},
            "labels": {"tier": None},
        },
        "spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "A"}],
                "env": [{"$patch": "delete", "name": "B"}],
                "name": "web",
            }],
        },
    }
    got = P.apply_strategic_merge_patch(live, json.dumps(patch).encode(), POD)
    assert got["metadata"]["labels"] == {"app": "web"}
    assert got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == _last_applied(second)
    assert got["metadata"]["uid"] == "u1"
    assert got["spec"]["restartPolicy"] == "Always"
    assert got["spec"]["containers"] == [
        {"name": "web", "image": "nginx", "env": [{"name": "A", "value": "1"}],
         "terminationMessagePath": "/dev/termination-log"},
        {"name": "side", "image": "busybox", "terminationMessagePath": "/dev/termination-log"},
    ]
    assert "$" not in json.dumps(got).replace("$(", "")


SMP_ERRORS: list[tuple[str, str, dict[str, Any], Any, int, str, str]] = [
    ("not JSON", POD, {}, b"{nope", 400, "BadRequest",
     "invalid character 'n' looking for beginning of object key string"),
    ("truncated JSON", POD, {}, b'{"a":', 400, "BadRequest", "unexpected end of JSON input"),
    ("a list body", POD, {}, b"[]", 400, "BadRequest",
     "json: cannot unmarshal array into Go value of type map[string]interface {}"),
    ("a string body", POD, {}, b'"x"', 400, "BadRequest",
     "json: cannot unmarshal string into Go value of type map[string]interface {}"),
    ("$retainKeys not a list", DEPLOYMENT, {"spec": {"strategy": {}}},
     {"spec": {"strategy": {"$retainKeys": "type", "type": "Recreate"}}},
     400, "BadRequest", "invalid patch format of retainKeys"),
    ("patch sets a field $retainKeys omits", DEPLOYMENT, {"spec": {"strategy": {}}},
     {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
     400, "BadRequest", "invalid patch format of retainKeys"),
    ("$setElementOrder without a field", POD, {"metadata": {}},
     {"metadata": {"$setElementOrder": ["a"]}}, 400, "BadRequest", "invalid patch format of setElementOrder list"),
    ("$deleteFromPrimitiveList without a field", POD, {"metadata": {}},
     {"metadata": {"$deleteFromPrimitiveList": ["a"]}}, 400, "BadRequest",
     "invalid patch format of primitive list"),
    ("$deleteFromPrimitiveList not a list", POD, {"metadata": {"finalizers": ["a"]}},
     {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, 400, "BadRequest",
     "invalid patch format of primitive list"),
    ("unknown $patch on a map", POD, {"metadata": {"labels": {}}},
     {"metadata": {"labels": {"$patch": "explode", "a": "1"}}}, 500, "",
     "unknown patch type: explode in map: map[$patch:explode a:1]"),
    ("$patch: merge on a map", POD, {"metadata": {"labels": {}}},
     {"metadata": {"labels": {"$patch": "merge"}}}, 500, "",
     "unknown patch type: merge in map: map[$patch:merge]"),
    ("unknown $patch in a list item", POD, pod(containers=[ctr("a")]),
     {"spec": {"containers": [{"name": "a", "$patch": 5}]}}, 500, "",
     "unknown patch type: %!s(int64=5) in map: map[$patch:5 name:a]"),
    ("$patch: merge in a list item", POD, pod(containers=[ctr("a")]),
     {"spec": {"containers": [{"$patch": "merge"}]}}, 500, "",
     "merging lists cannot yet be specified in the patch"),
    ("merge key missing from a patch item", POD, pod(containers=[ctr("a")]),
     {"spec": {"containers": [{"image": "nginx:2"}]}}, 500, "",
     "map: map[image:nginx:2] does not contain declared merge key: name"),
    ("merge key missing from a $patch: delete item", POD, pod(containers=[ctr("a")]),
     {"spec": {"containers": [{"$patch": "delete"}]}}, 500, "",
     "map: map[$patch:delete] does not contain declared merge key: name"),
    ("merge key missing from a live item", POD, pod(imagePullSecrets=[{}]),
     {"spec": {"imagePullSecrets": [{"name": "x"}]}}, 500, "",
     "map: map[] does not contain declared merge key: name"),
    ("$setElementOrder disagrees with the patch list", POD, {"metadata": {"finalizers": ["a", "b", "c"]}},
     {"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c", "a"]}}, 500, "",
     "The order in patch list:\n[c a]\n doesn't match $setElementOrder list:\n[a b c]\n"),
    ("$setElementOrder not a list", POD, {"metadata": {}},
     {"metadata": {"$setElementOrder/finalizers": "a"}}, 500, "",
     "expected a []interface {}, but received a string"),
    ("mixed element types in a merge list", POD, {"metadata": {"finalizers": ["a"]}},
     {"metadata": {"finalizers": [1]}}, 500, "", "list element types are not identical: [[a] [1]]"),
    ("a list of lists in a merge list", POD, {"metadata": {"finalizers": [["a"]]}},
     {"metadata": {"finalizers": [["b"]]}}, 422, "Invalid",
     "the server rejected our request due to an error in our request"),
]


@pytest.mark.parametrize("definition,doc,patch,code,reason,message", [c[1:] for c in SMP_ERRORS],
                         ids=[c[0] for c in SMP_ERRORS])
def test_strategic_merge_patch_errors(
    definition: str, doc: dict[str, Any], patch: Any, code: int, reason: str, message: str
) -> None:
    with pytest.raises(StatusError) as e:
        P.apply_strategic_merge_patch(doc, patch, definition)
    assert (e.value.code, e.value.reason, e.value.message) == (code, reason, message)


# ---------------------------------------------------------------------------------------------
# create_two_way_merge_patch
# ---------------------------------------------------------------------------------------------

def test_two_way_patch_round_trips_a_pod_edit() -> None:
    original = pod(containers=[ctr("a", env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]),
                               ctr("b")])
    original["metadata"].update({"labels": {"a": "1", "b": "2"}, "finalizers": ["f1", "f2"]})
    modified = pod(containers=[ctr("c", "redis"), ctr("a", env=[{"name": "X", "value": "9"}])])
    modified["metadata"].update({"labels": {"a": "1"}, "finalizers": ["f2", "f3"]})
    patch = P.create_two_way_merge_patch(original, modified, POD)
    assert patch["metadata"]["labels"] == {"b": None}
    assert patch["metadata"]["$deleteFromPrimitiveList/finalizers"] == ["f1"]
    assert patch["spec"]["$setElementOrder/containers"] == [{"name": "c"}, {"name": "a"}]
    assert {"$patch": "delete", "name": "b"} in patch["spec"]["containers"]
    assert P.apply_strategic_merge_patch(original, patch, POD) == modified


def test_two_way_patch_of_equal_objects_is_empty() -> None:
    obj = pod(containers=[ctr("a")])
    assert P.create_two_way_merge_patch(obj, copy.deepcopy(obj), POD) == {}


# ---------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)
# ---------------------------------------------------------------------------------------------

# RFC 7386 appendix A, every example.
RFC7386: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("target,patch,want", RFC7386)
def test_rfc7386_merge_algorithm(target: Any, patch: Any, want: Any) -> None:
    assert P._merge_patch_value(copy.deepcopy(target), patch) == want


@pytest.mark.parametrize("target,patch,want", [c for c in RFC7386 if isinstance(c[0], dict) and isinstance(c[1], dict)])
def test_apply_merge_patch(target: dict[str, Any], patch: dict[str, Any], want: dict[str, Any]) -> None:
    before = copy.deepcopy(target)
    assert P.apply_merge_patch(target, patch) == want
    assert P.apply_merge_patch(target, json.dumps(patch).encode()) == want
    assert target == before


def test_merge_patch_lists_replace_even_merge_lists() -> None:
    doc = pod(containers=[ctr("a"), ctr("b")])
    assert P.apply_merge_patch(doc, {"spec": {"containers": [ctr("c")]}}) == pod(containers=[ctr("c")])


@pytest.mark.parametrize("body,code,reason,message", [
    (b"{nope", 400, "BadRequest", "Invalid JSON Patch"),
    (b"null", 400, "BadRequest", "Invalid JSON Patch"),
    (b'"bar"', 400, "BadRequest", "Invalid JSON Patch"),
    (b"3", 400, "BadRequest", "Invalid JSON Patch"),
])
def test_merge_patch_errors(body: bytes, code: int, reason: str, message: str) -> None:
    with pytest.raises(StatusError) as e:
        P.apply_merge_patch({"a": 1}, body)
    assert (e.value.code, e.value.reason, e.value.message) == (code, reason, message)


def test_merge_patch_with_a_list_is_invalid() -> None:
    with pytest.raises(StatusError) as e:
        P.apply_merge_patch({"a": 1}, b"[1]")
    assert e.value.code == 422 and e.value.reason == "Invalid"
    assert e.value.message.startswith(' "" is invalid: patch: Invalid value: "[1]": ')
    assert e.value.details["causes"][0]["field"] == "patch"


# ---------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)
# ---------------------------------------------------------------------------------------------

# RFC 6902 appendix A (the examples whose documents are objects), plus copy and escapes.
RFC6902: list[tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any]]] = [
    ("A.1 add object member", {"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ("A.2 add array element", {"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ("A.3 remove object member", {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}],
     {"foo": "bar"}),
    ("A.4 remove array element", {"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ("A.5 replace a value", {"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ("A.6 move a value", {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ("A.7 move an array element", {"foo": ["all", "grass", "cows", "eat"]},
     [{"op": "move", "from": "/foo/1", "path": "/foo/3"}], {"foo": ["all", "cows", "eat", "grass"]}),
    ("A.8 test success", {"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ("A.10 add nested member", {"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ("A.11 ignore unrecognized members", {"foo": "bar"},
     [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}], {"foo": "bar", "baz": "qux"}),
    ("A.14 ~ escape ordering", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}],
     {"/": 9, "~1": 10}),
    ("A.16 add array value", {"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    ("copy a value", {"a": {"b": 1}}, [{"op": "copy", "from": "/a", "path": "/c"}], {"a": {"b": 1}, "c": {"b": 1}}),
    ("~1 names a slash", {"metadata": {"annotations": {"a/b": "x"}}},
     [{"op": "replace", "path": "/metadata/annotations/a~1b", "value": "y"}],
     {"metadata": {"annotations": {"a/b": "y"}}}),
    ("~0 names a tilde", {"m": {"a~b": 1}}, [{"op": "remove", "path": "/m/a~0b"}], {"m": {}}),
    ("- appends to a list", {"metadata": {"finalizers": ["a"]}},
     [{"op": "add", "path": "/metadata/finalizers/-", "value": "b"}], {"metadata": {"finalizers": ["a", "b"]}}),
    ("operations apply in order", {"a": 1}, [{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/a"}],
     {"b": 2}),
    ("null body is no operation", {"a": 1}, None, {"a": 1}),  # type: ignore[list-item]
]


@pytest.mark.parametrize("doc,ops,want", [c[1:] for c in RFC6902], ids=[c[0] for c in RFC6902])
def test_json_patch(doc: dict[str, Any], ops: list[dict[str, Any]], want: dict[str, Any]) -> None:
    before = copy.deepcopy(doc)
    assert P.apply_json_patch(doc, ops) == want
    assert P.apply_json_patch(doc, json.dumps(ops).encode()) == want
    assert doc == before


JSON_PATCH_ERRORS: list[tuple[str, dict[str, Any], Any, int, str, str]] = [
    ("A.9 test error", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}],
     422, "Invalid", "the server rejected our request due to an error in our request"),
    ("A.12 add to a nonexistent target", {"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}],
     422, "Invalid", "the server rejected our request due to an error in our request"),
    ("A.15 comparing strings and numbers", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}],
     422, "Invalid", "the server rejected our request due to an error in our request"),
    ("remove a missing path", {"a": 1}, [{"op": "remove", "path": "/b"}],
     422, "Invalid", "the server rejected our request due to an error in our request"),
    ("replace a missing path", {"a": 1}, [{"op": "replace", "path": "/b", "value": 1}],
     422, "Invalid", "the server rejected our request due to an error in our request"),
    ("unknown op", {"a": 1}, [{"op": "frobnicate", "path": "/a"}],
     422, "Invalid", "the server rejected our request due to an error in our request"),
    ("op without a path", {"a": 1}, [{"op": "remove"}],
     422, "Invalid", "the server rejected our request due to an error in our request"),
    ("not JSON", {}, b"[{", 400, "BadRequest", "unexpected end of JSON input"),
    ("garbage", {}, b"nope", 400, "BadRequest", "invalid character 'o' in literal null (expecting 'u')"),
    ("an object body", {}, b'{"op":"add"}', 400, "BadRequest",
     "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    ("a list of strings", {}, b'["add"]', 400, "BadRequest",
     "json: cannot unmarshal string into Go value of type jsonpatch.Operation"),
    ("too many operations", {}, [{"op": "test", "path": "", "value": {}}] * 10001, 413, "RequestEntityTooLarge",
     "The allowed maximum operations in a JSON patch is 10000, got 10001"),
]


@pytest.mark.parametrize("doc,body,code,reason,message", [c[1:] for c in JSON_PATCH_ERRORS],
                         ids=[c[0] for c in JSON_PATCH_ERRORS])
def test_json_patch_errors(doc: dict[str, Any], body: Any, code: int, reason: str, message: str) -> None:
    with pytest.raises(StatusError) as e:
        P.apply_json_patch(doc, body)
    assert (e.value.code, e.value.reason, e.value.message) == (code, reason, message)


def test_json_patch_replacing_the_root_with_a_scalar_is_invalid() -> None:
    with pytest.raises(StatusError) as e:
        P.apply_json_patch({"a": 1}, [{"op": "replace", "path": "", "value": 5}])
    assert e.value.code == 422 and e.value.reason == "Invalid"


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

_keys = st.text(alphabet="abcxyz", min_size=1, max_size=3)
_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(alphabet="ab", max_size=2)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=12,
)
_objects = st.dictionaries(_keys, _values, max_size=4)


@settings(max_examples=200, deadline=None)
@given(_objects)
def test_merge_patch_with_empty_patch_is_identity(doc: dict[str, Any]) -> None:
    before = copy.deepcopy(doc)
    assert P.apply_merge_patch(doc, {}) == doc
    assert P.apply_merge_patch(doc, b"{}") == doc
    assert doc == before


@settings(max_examples=300, deadline=None)
@given(_objects, _objects, st.sampled_from(["io.example.v1.Unknown", CONFIG_MAP]))
def test_strategic_patch_without_directives_or_merge_lists_is_a_merge_patch(
    doc: dict[str, Any], patch: dict[str, Any], definition: str
) -> None:
    # ConfigMap's only merge lists live under metadata, which these generated keys never name.
    assert P.apply_strategic_merge_patch(doc, patch, definition) == P.apply_merge_patch(doc, patch)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["data", "binaryData", "immutable", "x"]), _values, max_size=4),
       st.dictionaries(st.sampled_from(["data", "binaryData", "immutable", "y"]), _values, max_size=4))
def test_configmap_fields_patch_like_a_merge_patch(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    assert P.apply_strategic_merge_patch(doc, patch, CONFIG_MAP) == P.apply_merge_patch(doc, patch)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcdef"), max_size=5, unique=True),
       st.lists(st.sampled_from("abcdefgh"), max_size=5, unique=True))
def test_finalizers_union_has_every_item_once(live: list[str], extra: list[str]) -> None:
    doc = {"metadata": {"finalizers": live}}
    got = P.apply_strategic_merge_patch(doc, {"metadata": {"finalizers": extra}}, POD)["metadata"]["finalizers"]
    assert sorted(got) == sorted(set(live) | set(extra))
    assert [f for f in got if f in extra] == extra  # the patch's own order is kept
