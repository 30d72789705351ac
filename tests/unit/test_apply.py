"""Server-side apply and managedFields tracking (kubesat.apimachinery.apply)."""

from __future__ import annotations

import copy
import json

import pytest

from kubesat.apimachinery.apply import (
    FieldSet,
    fields_of,
    from_fields_v1,
    record_update,
    server_side_apply,
    to_fields_v1,
)
from kubesat.errors import StatusError

POD = "io.k8s.api.core.v1.Pod"
CM = "io.k8s.api.core.v1.ConfigMap"
DEPLOY = "io.k8s.api.apps.v1.Deployment"
T0 = "2024-01-02T03:04:05Z"
T1 = "2024-01-02T03:05:00Z"
T2 = "2024-01-02T03:06:00Z"


def pod(image: str = "nginx", **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": labels or {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": image,
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "A", "value": "1"}],
                }
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
    }


def cm(data: dict | None = None, labels: dict | None = None) -> dict:
    """The ConfigMap of the Kubernetes Server-Side Apply documentation."""
    meta: dict = {"name": "test-cm", "namespace": "default"}
    if labels is not None:
        meta["labels"] = labels
    out: dict = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    if data is not None:
        out["data"] = data
    return out


def entries(obj: dict) -> list[dict]:
    return obj["metadata"].get("managedFields", [])


def entry(obj_or_list: dict | list, manager: str, operation: str | None = None) -> dict:
    items = obj_or_list if isinstance(obj_or_list, list) else entries(obj_or_list)
    found = [e for e in items if e["manager"] == manager and (operation is None or e["operation"] == operation)]
    assert len(found) == 1, items
    return found[0]


def created(obj: dict, manager: str = "kubectl-create", definition: str = POD) -> dict:
    out = copy.deepcopy(obj)
    out["metadata"]["managedFields"] = record_update(None, obj, manager, definition, T0)
    return out


def updated(old: dict, new: dict, manager: str, definition: str = POD, now: str = T1, sub: str = "") -> dict:
    out = copy.deepcopy(new)
    out["metadata"]["managedFields"] = record_update(old, new, manager, definition, now, sub)
    return out


# --------------------------------------------------------------------------- FieldsV1


POD_FIELDS = {
    "f:metadata": {"f:labels": {"f:app": {}}},
    "f:spec": {
        "f:containers": {
            'k:{"name":"c"}': {
                ".": {},
                "f:env": {'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}}},
                "f:image": {},
                "f:name": {},
                "f:ports": {
                    'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:protocol": {}}
                },
            }
        },
        "f:volumes": {'k:{"name":"v"}': {".": {}, "f:emptyDir": {}, "f:name": {}}},
    },
}


def test_fields_of_pod_keys_lists_the_kubernetes_way():
    fs = fields_of(pod(), POD)
    paths = fs.paths
    assert ("f:spec", "f:containers", 'k:{"name":"c"}') in paths
    assert ("f:spec", "f:containers", 'k:{"name":"c"}', "f:image") in paths
    assert ("f:spec", "f:containers") not in paths  # a struct field with children is not a member
    assert ("f:metadata", "f:labels", "f:app") in paths
    assert ("f:metadata", "f:labels") not in paths
    assert ("f:spec", "f:volumes", 'k:{"name":"v"}', "f:emptyDir") in paths  # empty struct is a leaf
    assert ("f:metadata", "f:name") in paths  # fields_of itself does not strip bookkeeping fields


def test_fields_v1_round_trip_for_pod():
    fs = fields_of(pod(), POD)
    fv = to_fields_v1(fs)
    expected = {"f:apiVersion": {}, "f:kind": {}, **POD_FIELDS}
    expected["f:metadata"] = {"f:labels": {"f:app": {}}, "f:name": {}, "f:namespace": {}}
    assert fv == expected
    assert from_fields_v1(fv) == fs
    assert from_fields_v1(json.loads(json.dumps(fv))) == fs


def test_fields_v1_order_puts_dot_first_then_sorted_tokens():
    fs = FieldSet(
        [
            ("f:spec", "f:containers", 'k:{"name":"b"}'),
            ("f:spec", "f:containers", 'k:{"name":"b"}', "f:image"),
            ("f:spec", "f:containers", 'k:{"name":"a"}', "f:name"),
            ("f:metadata", "f:finalizers", 'v:"x"'),
        ]
    )
    text = json.dumps(to_fields_v1(fs), separators=(",", ":"))
    assert text == (
        '{"f:metadata":{"f:finalizers":{"v:\\"x\\"":{}}},'
        '"f:spec":{"f:containers":{"k:{\\"name\\":\\"a\\"}":{"f:name":{}},'
        '"k:{\\"name\\":\\"b\\"}":{".":{},"f:image":{}}}}}'
    )


def test_port_key_defaults_protocol_tcp():
    p = pod()
    del p["spec"]["containers"][0]["ports"][0]["protocol"]
    fv = to_fields_v1(fields_of(p, POD))
    ports = fv["f:spec"]["f:containers"]['k:{"name":"c"}']["f:ports"]
    assert list(ports) == ['k:{"containerPort":80,"protocol":"TCP"}']


# --------------------------------------------------------------------------- record_update


def test_record_update_create_owns_everything_set_with_dots_for_new_maps_and_lists():
    mf = record_update(None, pod(), "kubectl-create", POD, T0)
    assert len(mf) == 1
    e = mf[0]
    assert {k: e[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": "v1",
        "time": T0,
        "fieldsType": "FieldsV1",
    }
    assert "subresource" not in e
    fv = e["fieldsV1"]
    # bookkeeping metadata is never owned
    assert set(fv) == {"f:metadata", "f:spec"}
    assert fv["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    spec = fv["f:spec"]
    assert "." not in spec["f:containers"]  # required list: present on every Pod
    assert spec["f:volumes"]["."] == {}  # optional list: added by this write
    container = spec["f:containers"]['k:{"name":"c"}']
    assert container["f:env"]["."] == {} and container["f:ports"]["."] == {}


def test_record_update_transfers_changed_fields_and_keeps_the_rest():
    live = created(pod("nginx:1"))
    new = pod("nginx:2")
    new["metadata"]["managedFields"] = live["metadata"]["managedFields"]
    out = updated(live, new, "kubectl-edit")
    create = entry(out, "kubectl-create")
    edit = entry(out, "kubectl-edit")
    assert edit["fieldsV1"] == {"f:spec": {"f:containers": {'k:{"name":"c"}': {"f:image": {}}}}}
    assert edit["time"] == T1 and create["time"] == T0
    assert "f:image" not in create["fieldsV1"]["f:spec"]["f:containers"]['k:{"name":"c"}']
    assert "f:name" in create["fieldsV1"]["f:spec"]["f:containers"]['k:{"name":"c"}']
    # ordered by operation, then time
    assert [e["manager"] for e in entries(out)] == ["kubectl-create", "kubectl-edit"]


def test_record_update_drops_empty_entries_and_removed_fields():
    live = created(cm({"a": "1"}), "one", CM)
    new = cm({"a": "2"})
    out = updated(live, new, "two", CM)
    assert [e["manager"] for e in entries(out)] == ["one", "two"]
    assert entry(out, "two")["fieldsV1"] == {"f:data": {"f:a": {}}}
    assert entry(out, "one")["fieldsV1"] == {"f:data": {}}  # the creator still owns the map itself
    # removing the map removes every owner's claim; empty entries disappear
    out2 = updated(out, cm(), "three", CM, T2)
    assert entries(out2) == []


def test_record_update_uses_live_managed_fields_when_request_omits_them():
    live = created(pod())
    new = pod(app="web", tier="fe")  # the client sent no managedFields
    out = updated(live, new, "kubectl-label")
    assert entry(out, "kubectl-create")
    assert entry(out, "kubectl-label")["fieldsV1"] == {"f:metadata": {"f:labels": {"f:tier": {}}}}


def test_record_update_reset_with_empty_entry():
    live = created(pod())
    new = pod()
    new["metadata"]["managedFields"] = [{}]
    assert record_update(live, new, "x", POD, T1) == []


def test_record_update_no_change_keeps_time():
    live = created(pod())
    new = copy.deepcopy(live)
    mf = record_update(live, new, "kubectl-create", POD, T2)
    assert mf == live["metadata"]["managedFields"]


def test_record_update_status_subresource_and_main_resource_ignore_each_other():
    live = created(pod())
    with_status = copy.deepcopy(live)
    with_status["status"] = {"phase": "Running"}
    out = updated(live, with_status, "kubelet", sub="status")
    kubelet = entry(out, "kubelet")
    assert kubelet["subresource"] == "status"
    assert kubelet["fieldsV1"] == {"f:status": {"f:phase": {}}}
    # a main-resource write never takes status
    changed = copy.deepcopy(out)
    changed["status"]["phase"] = "Failed"
    changed["metadata"]["labels"]["x"] = "y"
    out2 = updated(out, changed, "kubectl-edit", now=T2)
    assert entry(out2, "kubectl-edit")["fieldsV1"] == {"f:metadata": {"f:labels": {"f:x": {}}}}
    assert entry(out2, "kubelet")["fieldsV1"] == {"f:status": {"f:phase": {}}}


def test_record_update_caps_update_managers_into_ancient_changes():
    obj = created(cm({"k0": "v"}), "m00", CM)
    for i in range(1, 12):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        obj = updated(obj, new, f"m{i:02d}", CM, now=f"2024-01-02T04:{i:02d}:00Z")
    managers = [e["manager"] for e in entries(obj)]
    assert len(managers) == 10
    assert "ancient-changes" in managers and "m00" not in managers and "m01" not in managers
    ancient = entry(obj, "ancient-changes")
    assert ancient["fieldsV1"] == {"f:data": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}}
    assert ancient["time"] == "2024-01-02T04:02:00Z"


# --------------------------------------------------------------------------- apply


def test_apply_create_records_apply_entry():
    out = server_side_apply(None, cm({"key": "some value"}, {"test-label": "test"}), "kubectl", False, CM, T0)
    assert out["data"] == {"key": "some value"}
    assert out["metadata"]["labels"] == {"test-label": "test"}
    assert entries(out) == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}},
        }
    ]


def test_apply_validation_errors():
    with pytest.raises(StatusError) as e:
        server_side_apply(None, {"apiVersion": "v1", "metadata": {"name": "x"}}, "kubectl", False, CM, T0)
    assert e.value.code == 400 and e.value.message == "invalid object type: /v1, Kind="
    with pytest.raises(StatusError) as e:
        wrong = {"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
        server_side_apply(None, wrong, "m", False, CM, T0)
    assert e.value.message == "invalid object type: apps/v1, Kind=ConfigMap"
    bad = cm({"a": "b"})
    bad["metadata"]["managedFields"] = []
    with pytest.raises(StatusError) as e:
        server_side_apply(None, bad, "kubectl", False, CM, T0)
    assert (e.value.code, e.value.message) == (400, "metadata.managedFields must be nil")
    noname = cm({"a": "b"})
    del noname["metadata"]["name"]
    with pytest.raises(StatusError) as e:
        server_side_apply(None, noname, "kubectl", False, CM, T0)
    assert e.value.code == 422 and "metadata.name: Required value" in e.value.message
    with pytest.raises(StatusError) as e:
        server_side_apply(cm({}), {**cm({}), "metadata": {"name": "other"}}, "kubectl", False, CM, T0)
    assert e.value.message == "the name of the object (other) does not match the name on the URL (test-cm)"


def test_apply_rejects_undeclared_fields_and_missing_keys():
    p = pod()
    p["spec"]["bogus"] = 1
    with pytest.raises(StatusError) as e:
        server_side_apply(None, p, "kubectl", False, POD, T0)
    assert e.value.code == 500
    assert e.value.message == (
        "failed to create typed patch object (default/p; /v1, Kind=Pod): .spec.bogus: field not declared in schema"
    )
    p = pod()
    del p["spec"]["containers"][0]["name"]
    with pytest.raises(StatusError) as e:
        server_side_apply(None, p, "kubectl", False, POD, T0)
    assert e.value.message.endswith(
        '.spec.containers: element 0: associative list with keys has an element that omits key field "name" '
        "(and doesn't have default value)"
    )


def test_reapply_without_label_removes_it():
    first = server_side_apply(None, cm({"key": "v"}, {"a": "1", "b": "2"}), "kubectl", False, CM, T0)
    second = server_side_apply(first, cm({"key": "v"}, {"a": "1"}), "kubectl", False, CM, T1)
    assert second["metadata"]["labels"] == {"a": "1"}
    assert entry(second, "kubectl")["fieldsV1"] == {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}
    third = server_side_apply(second, cm({"key": "v"}), "kubectl", False, CM, T2)
    assert "labels" not in third["metadata"]
    assert third["data"] == {"key": "v"}


def test_reapply_keeps_fields_it_never_owned():
    live = created(cm({"other": "x"}, {"keep": "me"}), "kubectl-create", CM)
    first = server_side_apply(live, cm({"key": "v"}), "kubectl", False, CM, T1)
    second = server_side_apply(first, cm(), "kubectl", False, CM, T2)
    assert second["data"] == {"other": "x"}
    assert second["metadata"]["labels"] == {"keep": "me"}
    assert [e["manager"] for e in entries(second)] == ["kubectl-create"]


def test_same_value_is_shared_and_survives_one_owner_leaving():
    first = server_side_apply(None, cm({"key": "v"}), "kubectl", False, CM, T0)
    shared = server_side_apply(first, cm({"key": "v"}), "other", False, CM, T1)
    assert entry(shared, "kubectl")["fieldsV1"] == {"f:data": {"f:key": {}}}
    assert entry(shared, "other")["fieldsV1"] == {"f:data": {"f:key": {}}}
    left = server_side_apply(shared, cm(), "kubectl", False, CM, T2)
    assert left["data"] == {"key": "v"}  # still owned by "other"
    assert [e["manager"] for e in entries(left)] == ["other"]


def test_conflict_between_appliers_and_force():
    first = server_side_apply(None, cm({"key": "v"}), "kubectl", False, CM, T0)
    with pytest.raises(StatusError) as e:
        server_side_apply(first, cm({"key": "w"}), "other", False, CM, T1)
    err = e.value
    assert (err.code, err.reason) == (409, "Conflict")
    assert err.message == 'Apply failed with 1 conflict: conflict with "kubectl": .data.key'
    assert err.details == {
        "causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": ".data.key"}]
    }
    status = err.status()
    assert status["status"] == "Failure" and status["code"] == 409

    forced = server_side_apply(first, cm({"key": "w"}), "other", True, CM, T1)
    assert forced["data"] == {"key": "w"}
    assert [e["manager"] for e in entries(forced)] == ["other"]
    assert entry(forced, "other")["fieldsV1"] == {"f:data": {"f:key": {}}}


def test_conflict_message_with_several_managers_and_fields():
    live = server_side_apply(None, cm({"a": "1", "b": "1"}), "zeta", False, CM, T0)
    live = server_side_apply(live, cm({"c": "1"}, {"l": "1"}), "alpha", False, CM, T1)
    with pytest.raises(StatusError) as e:
        server_side_apply(live, cm({"a": "2", "b": "2", "c": "2"}, {"l": "2"}), "kubectl", False, CM, T2)
    assert e.value.message == (
        "Apply failed with 4 conflicts: "
        'conflicts with "alpha":\n- .data.c\n- .metadata.labels.l\n'
        'conflicts with "zeta":\n- .data.a\n- .data.b'
    )
    assert [c["field"] for c in e.value.details["causes"]] == [".data.c", ".metadata.labels.l", ".data.a", ".data.b"]


def test_create_then_server_side_apply_conflicts_with_updater():
    live = created(pod("nginx:1"))
    applied = pod("nginx:2")
    with pytest.raises(StatusError) as e:
        server_side_apply(live, applied, "kubectl", False, POD, T1)
    assert e.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .spec.containers[name="c"].image'
    )
    assert e.value.details["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-create" using v1',
            "field": '.spec.containers[name="c"].image',
        }
    ]
    out = server_side_apply(live, applied, "kubectl", True, POD, T1)
    assert out["spec"]["containers"][0]["image"] == "nginx:2"
    assert [e["operation"] for e in entries(out)] == ["Apply", "Update"]  # Apply entries sort first
    ssa = entry(out, "kubectl", "Apply")["fieldsV1"]
    assert "f:image" in ssa["f:spec"]["f:containers"]['k:{"name":"c"}']
    upd = entry(out, "kubectl-create")["fieldsV1"]
    assert "f:image" not in upd["f:spec"]["f:containers"]['k:{"name":"c"}']


def test_update_after_apply_then_apply_again_conflicts_with_the_editor():
    live = server_side_apply(None, cm({"key": "v"}), "kubectl", False, CM, T0)
    edited = copy.deepcopy(live)
    edited["data"]["key"] = "edited"
    live = updated(live, edited, "kubectl-edit", CM)
    with pytest.raises(StatusError) as e:
        server_side_apply(live, cm({"key": "v"}), "kubectl", False, CM, T2)
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.key'


def test_status_subresource_conflict_names_the_subresource():
    live = created(pod())
    with_status = copy.deepcopy(live)
    with_status["status"] = {"phase": "Running"}
    live = updated(live, with_status, "kubelet", sub="status")
    applied = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Failed"}}
    with pytest.raises(StatusError) as e:
        server_side_apply(live, applied, "ctl", False, POD, T2, subresource="status")
    assert e.value.message == (
        'Apply failed with 1 conflict: conflict with "kubelet" with subresource "status" using v1: .status.phase'
    )


def test_list_map_merge_of_containers_by_name_from_two_appliers():
    def deploy(*containers: tuple[str, str]) -> dict:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": n, "image": i} for n, i in containers]},
                },
            },
        }

    live = server_side_apply(None, deploy(("a", "img-a")), "first", False, DEPLOY, T0)
    assert entry(live, "first")["apiVersion"] == "apps/v1"
    live = server_side_apply(live, deploy(("b", "img-b")), "second", False, DEPLOY, T1)
    # the atomic selector and the label are shared (same values); containers merged by name
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == ["a", "b"]
    second = entry(live, "second")["fieldsV1"]
    assert list(second["f:spec"]["f:template"]["f:spec"]["f:containers"]) == ['k:{"name":"b"}']
    assert second["f:spec"]["f:selector"] == {}
    # the first applier drops its container: it goes, the other applier's stays
    live = server_side_apply(
        live,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 2}},
        "first",
        False,
        DEPLOY,
        T2,
    )
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == ["b"]
    assert live["spec"]["selector"] == {"matchLabels": {"app": "d"}}  # still owned by "second"
    assert live["spec"]["replicas"] == 2


def test_fields_v1_orders_field_names_by_their_utf8_bytes():
    names = ["z", "Z", "\u00e9", "\uffff", "\U0001f600", "a-b", "a_b", "a0", ""]
    fs = FieldSet([("f:data", "f:" + n) for n in names])
    got = list(to_fields_v1(fs)["f:data"])
    assert got == ["f:" + n for n in sorted(names, key=lambda n: n.encode("utf-8"))]
    assert got[-2:] == ["f:\uffff", "f:\U0001f600"]


def test_list_map_order_follows_applied_order_for_shared_items():
    def p(*names: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": n, "image": "i"} for n in names]},
        }

    live = created(p("a", "b", "c"))
    out = server_side_apply(live, p("c", "a"), "kubectl", False, POD, T1)
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "c", "a"]


def test_set_lists_merge_by_value():
    def fin(*values: str) -> dict:
        obj = cm()
        obj["metadata"]["finalizers"] = list(values)
        return obj

    live = server_side_apply(None, fin("example.com/a"), "one", False, CM, T0)
    assert entry(live, "one")["fieldsV1"] == {"f:metadata": {"f:finalizers": {'v:"example.com/a"': {}}}}
    live = server_side_apply(live, fin("example.com/b"), "two", False, CM, T1)
    assert live["metadata"]["finalizers"] == ["example.com/a", "example.com/b"]
    live = server_side_apply(live, fin(), "one", False, CM, T2)
    assert live["metadata"]["finalizers"] == ["example.com/b"]


def test_atomic_lists_are_owned_whole():
    def p(*command: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "command": list(command)}]},
        }

    live = server_side_apply(None, p("sleep", "1"), "one", False, POD, T0)
    c = entry(live, "one")["fieldsV1"]["f:spec"]["f:containers"]['k:{"name":"c"}']
    assert c["f:command"] == {}
    with pytest.raises(StatusError) as e:
        server_side_apply(live, p("sleep", "2"), "two", False, POD, T1)
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "one": .spec.containers[name="c"].command'
    live = server_side_apply(live, p("sleep", "2"), "two", True, POD, T1)
    assert live["spec"]["containers"][0]["command"] == ["sleep", "2"]  # replaced, not merged
    one = entry(live, "one")["fieldsV1"]["f:spec"]["f:containers"]['k:{"name":"c"}']
    assert "f:command" not in one


def test_atomic_maps_are_owned_whole():
    p = pod()
    p["spec"]["nodeSelector"] = {"disk": "ssd", "zone": "a"}
    live = server_side_apply(None, p, "one", False, POD, T0)
    assert entry(live, "one")["fieldsV1"]["f:spec"]["f:nodeSelector"] == {}
    q = copy.deepcopy(pod())
    q["spec"]["nodeSelector"] = {"zone": "b"}
    out = server_side_apply(live, q, "two", True, POD, T1)
    assert out["spec"]["nodeSelector"] == {"zone": "b"}


def test_noop_reapply_keeps_time():
    first = server_side_apply(None, cm({"key": "v"}), "kubectl", False, CM, T0)
    again = server_side_apply(first, cm({"key": "v"}), "kubectl", False, CM, T2)
    assert again == first


def test_before_first_apply_owns_untracked_fields():
    live = cm({"old": "x"})
    out = server_side_apply(live, cm({"key": "v"}), "kubectl", False, CM, T1)
    assert out["data"] == {"old": "x", "key": "v"}
    assert entry(out, "before-first-apply", "Update")["fieldsV1"] == {"f:data": {".": {}, "f:old": {}}}


def test_client_side_apply_upgrade_to_server_side_apply():
    last = cm({"key": "v"})
    live = cm({"key": "v"})
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(last, separators=(",", ":")) + "\n"
    }
    live = created(live, "kubectl-client-side-apply", CM)
    # kubectl may take over fields whose live value still matches the last-applied annotation
    applied = cm({"key": "new"})
    out = server_side_apply(live, applied, "kubectl", False, CM, T1)
    assert out["data"] == {"key": "new"}
    annotation = out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(annotation) == applied and annotation.endswith("\n")
    # another manager name gets the ordinary conflict
    with pytest.raises(StatusError) as e:
        server_side_apply(live, applied, "helm", False, CM, T1)
    assert e.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.key'
    )
    # and so does kubectl once someone else changed the field behind the annotation's back
    drifted = copy.deepcopy(live)
    drifted["data"]["key"] = "drift"
    drifted = updated(live, drifted, "kubectl-edit", CM)
    with pytest.raises(StatusError) as e:
        server_side_apply(drifted, applied, "kubectl", False, CM, T2)
    assert "kubectl-edit" in e.value.message


def test_create_then_apply_same_values_shares_without_conflict_and_keeps_defaults():
    live = created(pod())
    # the server defaulted some fields after the create; nobody applied them
    live["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    live["spec"]["restartPolicy"] = "Always"
    out = server_side_apply(live, pod(), "kubectl", False, POD, T1)
    assert out["spec"]["restartPolicy"] == "Always"
    assert out["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert [e["manager"] for e in entries(out)] == ["kubectl", "kubectl-create"]
    ssa = entry(out, "kubectl", "Apply")["fieldsV1"]
    assert ssa["f:spec"]["f:containers"]['k:{"name":"c"}']["f:image"] == {}
    create = entry(out, "kubectl-create")["fieldsV1"]
    assert create["f:spec"]["f:containers"]['k:{"name":"c"}']["f:image"] == {}
    again = server_side_apply(out, pod(), "kubectl", False, POD, T2)
    assert again == out


def test_functions_do_not_mutate_their_inputs():
    live = created(pod("nginx:1"))
    applied = pod("nginx:2", app="web", extra="x")
    before = copy.deepcopy((live, applied))
    server_side_apply(live, applied, "kubectl", True, POD, T1)
    new = pod("nginx:3")
    record_update(live, new, "kubectl-edit", POD, T1)
    assert (live, applied) == before
    assert new == pod("nginx:3")
