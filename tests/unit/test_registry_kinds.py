"""Per-kind strategies: defaults, validation (Kubernetes' wording), update rules, tables, field selectors."""

from __future__ import annotations

import base64
import copy
from datetime import datetime, UTC
from pathlib import Path

import pytest
import yaml

from kubesat.registry.kinds import RESOURCES, lookup_kind
from kubesat.registry.meta import validate_object_meta
from kubesat.registry.strategies import STRATEGIES, strategy_for
from kubesat.registry.strategy import Strategy

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"
NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
CREATED = "2025-01-01T11:55:00Z"  # five minutes before NOW


def seed(name: str) -> list[dict]:
    path = SEEDS / name
    if not path.exists():
        pytest.skip(f"seed manifest {path} not available")
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def strat(api_version: str, kind: str) -> Strategy:
    info = lookup_kind(api_version, kind)
    assert info is not None
    return strategy_for(info)


def texts(errs) -> list[str]:
    return [e.text() for e in errs]


def created(obj: dict, ts: str = CREATED) -> dict:
    obj = copy.deepcopy(obj)
    obj.setdefault("metadata", {})["creationTimestamp"] = ts
    return obj


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


# ------------------------------------------------------------------------------ registry

def test_every_stored_kind_has_a_strategy() -> None:
    # A resource stored as another (events.k8s.io Events) has a strategy of its own for its own form.
    stored = {(r.api_version, r.kind) for r in RESOURCES if r.stored or r.stored_as}
    assert set(STRATEGIES) == stored
    for r in RESOURCES:
        s = strategy_for(r)
        assert s.info is r
        assert strategy_for(r) is s
    assert type(strat("v1", "Secret")).__name__ == "SecretStrategy"
    assert strat("v1", "Namespace").name_rule == "label"
    assert strat("rbac.authorization.k8s.io/v1", "ClusterRoleBinding").name_rule == "path_segment"
    assert strat("v1", "Node").has_status


def test_columns_match_cells_in_length() -> None:
    for (_av, kind), s in STRATEGIES.items():
        cols = s.table_columns()
        assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in cols), kind
        if kind == "Pod":
            continue
        cells = s.table_cells(created({"metadata": {"name": "x", "namespace": "ns"}}), NOW)
        assert len(cells) == len(cols), kind


# ----------------------------------------------------------------------------- namespace

def test_namespace_create_defaults() -> None:
    s = strat("v1", "Namespace")
    ns = {"metadata": {"name": "prod"}, "spec": {"finalizers": ["example.com/x"]}, "status": {"phase": "Terminating"}}
    s.prepare_for_create(ns)
    assert ns["status"] == {"phase": "Active"}
    assert ns["spec"]["finalizers"] == ["example.com/x", "kubernetes"]
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "prod"}
    assert s.validate(ns) == []
    bare = {"metadata": {"name": "b", "labels": {"kubernetes.io/metadata.name": "wrong"}}}
    s.prepare_for_create(bare)
    assert bare["spec"] == {"finalizers": ["kubernetes"]}
    assert bare["metadata"]["labels"]["kubernetes.io/metadata.name"] == "b"


def test_namespace_update_keeps_finalizers_status_and_label() -> None:
    s = strat("v1", "Namespace")
    old = {"metadata": {"name": "prod", "labels": {"kubernetes.io/metadata.name": "prod"}},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    new = {"metadata": {"name": "prod", "labels": {"team": "a"}}, "spec": {}, "status": {"phase": "Terminating"}}
    s.prepare_for_update(new, old)
    assert new["spec"] == {"finalizers": ["kubernetes"]} and new["status"] == {"phase": "Active"}
    assert new["metadata"]["labels"] == {"team": "a", "kubernetes.io/metadata.name": "prod"}
    assert s.validate_update(new, old) == []


def test_namespace_spec_finalizer_names() -> None:
    s = strat("v1", "Namespace")
    errs = s.validate({"metadata": {"name": "x"}, "spec": {"finalizers": ["kubernetes", "nope"]}})
    assert texts(errs) == ['spec.finalizers: Invalid value: "nope": name is neither a standard finalizer name '
                           "nor is it fully qualified"]


def test_namespace_deletion_lifecycle() -> None:
    s = strat("v1", "Namespace")
    ns = {"metadata": {"name": "x"}}
    s.prepare_for_create(ns)
    assert s.graceful_delete(ns)
    s.on_delete_requested(ns)
    assert ns["status"]["phase"] == "Terminating"
    assert not s.finalized(ns)
    ns["spec"].pop("finalizers")
    assert s.finalized(ns)
    ns["metadata"]["deletionTimestamp"] = CREATED
    assert s.validate_update(ns, ns) == []
    ns["status"]["phase"] = "Active"
    assert texts(s.validate_update(ns, ns)) == [
        'status.Phase: Invalid value: "Active": may only be \'Terminating\' if `deletionTimestamp` is not empty']


def test_namespace_table_and_fields() -> None:
    s = strat("v1", "Namespace")
    cols = s.table_columns()
    assert [c["name"] for c in cols] == ["Name", "Status", "Age"]
    assert cols[0]["format"] == "name" and cols[0]["description"].startswith("Name must be unique within a namespace.")
    assert cols[2]["description"].startswith("CreationTimestamp is a timestamp")
    ns = created({"metadata": {"name": "prod"}, "status": {"phase": "Active"}})
    assert s.table_cells(ns, NOW) == ["prod", "Active", "5m"]
    assert s.field_value(ns, "status.phase") == "Active"
    assert s.field_value(ns, "metadata.name") == "prod"
    assert s.field_value(ns, "spec.nope") is None


# ------------------------------------------------------------------------ serviceaccount

def test_serviceaccount_seed_table() -> None:
    s = strat("v1", "ServiceAccount")
    (sa,) = seed("001-service-account.yaml")
    assert validate_object_meta(sa["metadata"], namespaced=True, name_rule=s.name_rule) == []
    assert s.validate(sa) == []
    assert [c["name"] for c in s.table_columns()] == ["Name", "Secrets", "Age"]
    assert s.table_cells(created(sa), NOW) == ["app-controller", 0, "5m"]
    two = created(dict(sa, secrets=[{"name": "a"}, {"name": "b"}]))
    assert s.table_cells(two, NOW)[1] == 2


def test_serviceaccount_secret_references_keep_names_only() -> None:
    s = strat("v1", "ServiceAccount")
    sa = {"metadata": {"name": "x"}, "secrets": [{"name": "t", "namespace": "other", "uid": "u"}]}
    s.prepare_for_create(sa)
    assert sa["secrets"] == [{"name": "t"}]


# -------------------------------------------------------------------------------- secret

def test_secret_seed_sa_token_is_valid() -> None:
    s = strat("v1", "Secret")
    (sec,) = seed("001-long-lived-token.yaml")
    s.prepare_for_create(sec)
    assert sec["type"] == "kubernetes.io/service-account-token"
    assert s.validate(sec) == []


def test_secret_sa_token_requires_name_annotation() -> None:
    s = strat("v1", "Secret")
    (sec,) = seed("001-long-lived-token.yaml")
    del sec["metadata"]["annotations"]
    s.prepare_for_create(sec)
    errs = s.validate(sec)
    assert texts(errs) == ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
    assert errs[0].cause() == {"reason": "FieldValueRequired", "message": "Required value",
                               "field": "metadata.annotations[kubernetes.io/service-account.name]"}
    sec["metadata"]["annotations"] = {"kubernetes.io/service-account.name": ""}
    assert len(s.validate(sec)) == 1


def test_secret_defaults_and_string_data() -> None:
    s = strat("v1", "Secret")
    sec = {"metadata": {"name": "x"}, "data": {"a": b64("old"), "b": b64("keep")}, "stringData": {"a": "new", "c": "ü"}}
    s.prepare_for_create(sec)
    assert sec["type"] == "Opaque"
    assert "stringData" not in sec
    assert sec["data"] == {"a": b64("new"), "b": b64("keep"), "c": b64("ü")}
    upd = {"metadata": {"name": "x"}, "type": "Opaque", "stringData": {"z": "1"}}
    s.prepare_for_update(upd, sec)
    assert upd["data"] == {"z": b64("1")} and "stringData" not in upd


def test_secret_type_is_immutable() -> None:
    s = strat("v1", "Secret")
    old = {"metadata": {"name": "imm"}, "type": "Opaque"}
    new = {"metadata": {"name": "imm"}, "type": "kubernetes.io/basic-auth", "data": {"username": b64("u")}}
    assert texts(s.validate_update(new, old)) == [
        'type: Invalid value: "kubernetes.io/basic-auth": field is immutable']
    # An absent type is Opaque again, so it cannot drop a special type either.
    tok = {"metadata": {"name": "t", "annotations": {"kubernetes.io/service-account.name": "sa"}},
           "type": "kubernetes.io/service-account-token"}
    upd = {"metadata": {"name": "t", "annotations": {"kubernetes.io/service-account.name": "sa"}}}
    s.prepare_for_update(upd, tok)
    assert [e.field for e in s.validate_update(upd, tok)] == ["type"]


def test_secret_immutable_flag() -> None:
    s = strat("v1", "Secret")
    old = {"metadata": {"name": "x"}, "type": "Opaque", "immutable": True, "data": {"a": b64("1")}}
    assert s.validate_update(copy.deepcopy(old), old) == []
    new = dict(copy.deepcopy(old), data={"a": b64("2")}, immutable=False)
    assert texts(s.validate_update(new, old)) == [
        "immutable: Forbidden: field is immutable when `immutable` is set",
        "data: Forbidden: field is immutable when `immutable` is set",
    ]


def test_secret_keys_and_size() -> None:
    s = strat("v1", "Secret")
    errs = s.validate({"metadata": {"name": "x"}, "type": "Opaque", "data": {"foo bar": b64("x"), "..": ""}})
    assert [e.field for e in errs] == ["data[foo bar]", "data[..]"]
    assert errs[0].text().startswith('data[foo bar]: Invalid value: "foo bar": a valid config key must consist')
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    assert texts(s.validate({"metadata": {"name": "x"}, "type": "Opaque", "data": {"k": big}})) == [
        "data: Too long: may not be more than 1048576 bytes"]


@pytest.mark.parametrize("stype,data,expect", [
    ("kubernetes.io/dockercfg", {}, ["data[.dockercfg]: Required value"]),
    ("kubernetes.io/dockercfg", {".dockercfg": b64("{}")}, []),
    ("kubernetes.io/dockerconfigjson", {}, ["data[.dockerconfigjson]: Required value"]),
    ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b64("not json")},
     ['data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": '
      "invalid character 'o' in literal null (expecting 'u')"]),
    ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b64("")},
     ['data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": unexpected end of JSON input']),
    ("kubernetes.io/basic-auth", {}, ["data[username]: Required value", "data[password]: Required value"]),
    ("kubernetes.io/basic-auth", {"password": ""}, []),
    ("kubernetes.io/ssh-auth", {}, ["data[ssh-privatekey]: Required value"]),
    ("kubernetes.io/ssh-auth", {"ssh-privatekey": b64("k")}, []),
    ("kubernetes.io/tls", {"tls.crt": ""}, ["data[tls.key]: Required value"]),
    ("kubernetes.io/tls", {"tls.crt": "", "tls.key": ""}, []),
    ("example.com/custom", {}, []),
])
def test_secret_type_rules(stype: str, data: dict, expect: list[str]) -> None:
    s = strat("v1", "Secret")
    got = texts(s.validate({"metadata": {"name": "x"}, "type": stype, "data": data}))
    if data == {".dockerconfigjson": b64("not json")}:
        # Go's decoder wording for a broken literal is only approximated; the field and value are exact.
        assert len(got) == 1
        assert got[0].startswith('data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": ')
        return
    assert got == expect


def test_secret_table_and_fields() -> None:
    s = strat("v1", "Secret")
    assert [c["name"] for c in s.table_columns()] == ["Name", "Type", "Data", "Age"]
    (sec,) = seed("001-long-lived-token.yaml")
    s.prepare_for_create(sec)
    sec = created(sec)
    assert s.table_cells(sec, NOW) == ["app-controller-token", "kubernetes.io/service-account-token", 0, "5m"]
    sec["data"] = {"token": b64("t"), "ca.crt": b64("c"), "namespace": b64("production")}
    assert s.table_cells(sec, NOW)[2] == 3
    assert s.field_value(sec, "type") == "kubernetes.io/service-account-token"


# ----------------------------------------------------------------------------- configmap

def test_configmap_rules() -> None:
    s = strat("v1", "ConfigMap")
    assert s.validate({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": b64("x")}}) == []
    errs = s.validate({"metadata": {"name": "c"}, "data": {"a": "1", "bad key": ""}, "binaryData": {"a": b64("x")}})
    assert [e.field for e in errs] == ["data[a]", "data[bad key]"]
    assert errs[0].text() == 'data[a]: Invalid value: "a": duplicate of key present in binaryData'
    errs = s.validate({"metadata": {"name": "c"}, "data": {"a": "x" * (1024 * 1024 + 1)}})
    assert texts(errs) == [": Too long: may not be more than 1048576 bytes"]
    old = {"metadata": {"name": "c"}, "immutable": True, "data": {"a": "1"}}
    new = dict(old, data={"a": "2"}, binaryData={"b": b64("x")})
    assert [e.field for e in s.validate_update(new, old)] == ["data", "binaryData"]
    cm = created({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "pem"}, "binaryData": {"b": ""}})
    assert [c["name"] for c in s.table_columns()] == ["Name", "Data", "Age"]
    assert s.table_cells(cm, NOW) == ["kube-root-ca.crt", 2, "5m"]


# ---------------------------------------------------------------------------------- node

def _node(**kw) -> dict:
    node = {"metadata": {"name": "n1", "labels": {}}, "spec": {}, "status": {
        "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
        "nodeInfo": {"kubeletVersion": "v1.32.4", "osImage": "Debian", "kernelVersion": "6.1",
                     "containerRuntimeVersion": "containerd://1.7"},
        "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}]}}
    for k, v in kw.items():
        node[k] = v
    return created(node)


def test_node_table() -> None:
    s = strat("v1", "Node")
    cols = s.table_columns()
    assert [c["name"] for c in cols] == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP",
                                         "OS-Image", "Kernel-Version", "Container-Runtime"]
    assert [c["priority"] for c in cols] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert s.table_cells(_node(), NOW) == ["n1", "Ready", "<none>", "5m", "v1.32.4", "10.0.0.5", "<none>",
                                           "Debian", "6.1", "containerd://1.7"]
    node = _node()
    node["metadata"]["labels"] = {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "",
                                  "kubernetes.io/role": "worker", "node-role.kubernetes.io/": ""}
    node["spec"]["unschedulable"] = True
    node["status"]["conditions"][1]["status"] = "Unknown"
    cells = s.table_cells(node, NOW)
    assert cells[1:3] == ["NotReady,SchedulingDisabled", "control-plane,etcd,worker"]
    bare = created({"metadata": {"name": "n2"}})
    assert s.table_cells(bare, NOW)[1] == "Unknown"
    assert s.table_cells(bare, NOW)[7:] == ["<unknown>", "<unknown>", "<unknown>"]
    assert s.field_value(node, "spec.unschedulable") == "true"
    assert s.field_value(bare, "spec.unschedulable") == "false"


def test_node_status_belongs_to_subresource() -> None:
    s = strat("v1", "Node")
    old = _node()
    new = copy.deepcopy(old)
    new["status"] = {"conditions": []}
    s.prepare_for_update(new, old)
    assert new["status"] == old["status"]


def test_node_validation() -> None:
    s = strat("v1", "Node")
    spec = {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"},
                       {"key": "b", "effect": "Sometimes"}, {"key": "c"}],
            "podCIDRs": ["10.0.0.0/24", "bogus"]}
    errs = s.validate({"metadata": {"name": "n"}, "spec": spec})
    assert texts(errs) == [
        'metadata.taints[1]: Duplicate value: core.Taint{Key:"a", Value:"", Effect:"NoSchedule", TimeAdded:<nil>}: '
        "taints must be unique by key and effect pair",
        'metadata.taints[2].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", '
        '"PreferNoSchedule", "NoExecute"',
        "metadata.taints[3].effect: Required value",
        'spec.podCIDRs[1]: Invalid value: "bogus": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)',
        'spec.podCIDRs: Invalid value: []string{"10.0.0.0/24", "bogus"}: '
        'may specify no more than one CIDR for each IP family',
    ]
    old = {"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.0.0/24"], "providerID": "p://1"}}
    new = {"metadata": {"name": "n"},
           "spec": {"podCIDRs": ["10.0.1.0/24"], "providerID": "p://2", "unschedulable": True}}
    assert [e.field for e in s.validate_update(new, old)] == ["spec.podCIDRs", "spec.providerID"]


# --------------------------------------------------------------------------------- event

def _event(**kw) -> dict:
    ev = {"metadata": {"name": "app.1", "namespace": "production"},
          "involvedObject": {"kind": "Pod", "namespace": "production", "name": "app",
                             "fieldPath": "spec.containers{c}"},
          "reason": "Pulled", "message": " Pulled image \n", "type": "Normal",
          "source": {"component": "kubelet", "host": "n1"},
          "firstTimestamp": "2025-01-01T11:00:00Z", "lastTimestamp": "2025-01-01T11:58:00Z", "count": 3}
    ev.update(kw)
    return created(ev)


def test_event_table() -> None:
    s = strat("v1", "Event")
    cols = s.table_columns()
    assert [c["name"] for c in cols] == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message",
                                         "First Seen", "Count", "Name"]
    assert [c["priority"] for c in cols] == [0, 0, 0, 0, 1, 1, 0, 1, 1, 1]
    assert cols[-1]["format"] == "name"
    assert s.table_cells(_event(), NOW) == ["2m", "Normal", "Pulled", "pod/app", "spec.containers{c}",
                                            "kubelet, n1", "Pulled image", "60m", 3, "app.1"]
    newer = _event(firstTimestamp=None, lastTimestamp=None, count=None, source={},
                   eventTime="2025-01-01T11:59:30.123456Z", reportingComponent="ctrl", reportingInstance="",
                   involvedObject={"kind": "Node"})
    cells = s.table_cells(newer, NOW)
    # 29.876s ago: Kubernetes truncates to whole seconds.
    assert cells[0] == "29s" and cells[7] == "29s" and cells[8] == 1
    assert cells[3] == "node" and cells[5] == "ctrl"
    series = _event(series={"count": 7, "lastObservedTime": "2025-01-01T11:59:50.000000Z"})
    assert s.table_cells(series, NOW)[0] == "10s" and s.table_cells(series, NOW)[8] == 7


def test_event_fields() -> None:
    s = strat("v1", "Event")
    ev = _event(reportingComponent="rc")
    assert s.field_value(ev, "involvedObject.kind") == "Pod"
    assert s.field_value(ev, "involvedObject.name") == "app"
    assert s.field_value(ev, "involvedObject.uid") == ""
    assert s.field_value(ev, "reason") == "Pulled"
    assert s.field_value(ev, "type") == "Normal"
    assert s.field_value(ev, "source") == "kubelet"
    assert s.field_value(ev, "reportingComponent") == "rc"
    assert s.field_value(_event(source={}, reportingComponent="rc"), "source") == "rc"
    assert s.field_value(ev, "involvedObject.bogus") is None


def test_event_validation() -> None:
    s = strat("v1", "Event")
    assert s.validate(_event()) == []
    wrong_ns = _event(involvedObject={"kind": "Pod", "namespace": "other", "name": "x"})
    assert texts(s.validate(wrong_ns)) == [
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace']
    cluster_obj = _event(involvedObject={"kind": "Node", "name": "n1"})
    assert [e.field for e in s.validate(cluster_obj)] == ["involvedObject.namespace"]
    cluster_obj["metadata"]["namespace"] = "default"
    assert s.validate(cluster_obj) == []
    new_style = _event(eventTime="2025-01-01T11:59:30.000000Z", reason="", action="")
    assert [e.text() for e in s.validate(new_style)] == [
        "reportingController: Required value",
        'reportingController: Invalid value: "": name part must be non-empty',
        "reportingController: Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
        "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        "reportingInstance: Required value",
        "action: Required value",
        "reason: Required value",
    ]


# --------------------------------------------------------------------------------- lease

def test_lease() -> None:
    s = strat("coordination.k8s.io/v1", "Lease")
    lease = created({"metadata": {"name": "kube-controller-manager", "namespace": "kube-system"},
                     "spec": {"holderIdentity": "node1_abc", "leaseDurationSeconds": 15, "leaseTransitions": 0,
                              "strategy": "OldestEmulationVersion"}})
    s.prepare_for_create(lease)
    assert "strategy" not in lease["spec"]
    assert s.validate(lease) == []
    bad = {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}
    assert texts(s.validate(bad)) == ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                                      "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"]
    assert [c["name"] for c in s.table_columns()] == ["Name", "Holder", "Age"]
    assert s.table_cells(lease, NOW) == ["kube-controller-manager", "node1_abc", "5m"]
    assert s.table_cells(created({"metadata": {"name": "x"}}), NOW) == ["x", "", "5m"]


# ---------------------------------------------------------------------------------- rbac

RBAC = "rbac.authorization.k8s.io/v1"


def test_rbac_seed_objects() -> None:
    role, binding = seed("001-role-binding.yaml")
    rs, bs = strat(RBAC, "Role"), strat(RBAC, "RoleBinding")
    assert rs.validate(role) == []
    bs.prepare_for_create(binding)
    assert bs.validate(binding) == []
    assert [c["name"] for c in rs.table_columns()] == ["Name", "Created At"]
    assert rs.table_columns()[1]["type"] == "date"
    assert rs.table_cells(created(role), NOW) == ["app-controller-role", CREATED]
    cols = bs.table_columns()
    assert [c["name"] for c in cols] == ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    assert [c["priority"] for c in cols] == [0, 0, 0, 1, 1, 1]
    assert cols[3]["description"] == "Users in the roleBinding"
    assert "immutable" not in cols[1]["description"]
    assert bs.table_cells(created(binding), NOW) == ["app-controller-binding", "Role/app-controller-role", "5m",
                                                     "", "", "production/app-controller"]


def test_cluster_role_binding_table() -> None:
    s = strat(RBAC, "ClusterRoleBinding")
    crb = created({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                                {"kind": "User", "name": "bob"},
                                {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]})
    s.prepare_for_create(crb)
    assert crb["roleRef"]["apiGroup"] == RBAC.split("/")[0]
    assert crb["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
    assert "apiGroup" not in crb["subjects"][3]
    assert s.validate(crb) == []
    assert s.table_cells(crb, NOW) == ["b", "ClusterRole/view", "5m", "alice, bob", "devs", "ns/sa"]
    assert s.table_columns()[5]["description"] == "ServiceAccounts in the clusterRoleBinding"


@pytest.mark.parametrize("rule,namespaced,expect", [
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, True, []),
    ({"apiGroups": [""], "resources": ["pods"]}, True,
     ["rules[0].verbs: Required value: verbs must contain at least one value"]),
    ({"verbs": ["get"], "resources": ["pods"]}, True,
     ["rules[0].apiGroups: Required value: resource rules must supply at least one api group"]),
    ({"verbs": ["get"], "apiGroups": [""]}, True,
     ["rules[0].resources: Required value: resource rules must supply at least one resource"]),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["pods", "secrets"], "resourceNames": ["x"]}, True,
     ["rules[0].resourceNames: Required value: resource names cannot apply to multiple resources"]),
    ({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}, True,
     ['rules[0].nonResourceURLs: Invalid value: []string{"/healthz"}: '
      'namespaced rules cannot apply to non-resource URLs']),
    ({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}, False, []),
    ({"verbs": ["get"], "nonResourceURLs": ["/healthz"], "resources": ["pods"]}, False,
     ['rules[0].nonResourceURLs: Invalid value: []string{"/healthz"}: rules cannot apply to both regular resources '
      "and non-resource URLs"]),
    ({}, False, ["rules[0].verbs: Required value: verbs must contain at least one value",
                 "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                 "rules[0].resources: Required value: resource rules must supply at least one resource"]),
])
def test_rbac_rules(rule: dict, namespaced: bool, expect: list[str]) -> None:
    s = strat(RBAC, "Role" if namespaced else "ClusterRole")
    assert texts(s.validate({"metadata": {"name": "r"}, "rules": [rule]})) == expect


def test_cluster_role_aggregation() -> None:
    s = strat(RBAC, "ClusterRole")
    ok = {"metadata": {"name": "admin"}, "aggregationRule": {"clusterRoleSelectors": [
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]}}
    assert s.validate(ok) == []
    empty = {"metadata": {"name": "x"}, "aggregationRule": {}}
    assert texts(s.validate(empty)) == ["aggregationRule.clusterRoleSelectors: Required value: at least one "
                                        "clusterRoleSelector required if aggregationRule is non-nil"]
    bad = {"metadata": {"name": "x"}, "aggregationRule": {"clusterRoleSelectors": [
        {"matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Near", "values": ["x"]}]}]}}
    assert texts(s.validate(bad)) == [
        "aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values: Required value: must be specified when "
        "`operator` is 'In' or 'NotIn'",
        'aggregationRule.clusterRoleSelectors[0].matchExpressions[1].operator: Invalid value: "Near": '
        "not a valid selector operator",
    ]


def test_binding_role_ref_rules() -> None:
    rb, crb = strat(RBAC, "RoleBinding"), strat(RBAC, "ClusterRoleBinding")
    obj = {"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}}
    assert rb.validate(obj) == []
    assert texts(crb.validate(obj)) == ['roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"']
    bad = {"metadata": {"name": "b"}, "roleRef": {"apiGroup": "example.com", "kind": "Thing", "name": ""}}
    assert texts(rb.validate(bad)) == [
        'roleRef.apiGroup: Unsupported value: "example.com": supported values: "rbac.authorization.k8s.io"',
        'roleRef.kind: Unsupported value: "Thing": supported values: "Role", "ClusterRole"',
        "roleRef.name: Required value",
    ]
    slash = {"metadata": {"name": "b"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a/b"}}
    assert texts(rb.validate(slash)) == ["roleRef.name: Invalid value: \"a/b\": may not contain '/'"]


def test_binding_role_ref_is_immutable() -> None:
    s = strat(RBAC, "RoleBinding")
    _, binding = seed("001-role-binding.yaml")
    s.prepare_for_create(binding)
    same = copy.deepcopy(binding)
    same["subjects"].append({"kind": "User", "name": "carol"})
    s.prepare_for_update(same, binding)
    assert s.validate_update(same, binding) == []
    changed = copy.deepcopy(binding)
    changed["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
    assert texts(s.validate_update(changed, binding)) == [
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", '
        'Name:"view"}: cannot change roleRef']
    # An omitted apiGroup defaults back to the RBAC group, so it is not a change.
    defaulted = copy.deepcopy(binding)
    defaulted["roleRef"].pop("apiGroup")
    s.prepare_for_update(defaulted, binding)
    assert s.validate_update(defaulted, binding) == []


@pytest.mark.parametrize("subject,namespaced,expect", [
    ({"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}, False, []),
    ({"kind": "ServiceAccount", "name": "sa"}, True, []),
    ({"kind": "ServiceAccount", "name": "sa"}, False, ["subjects[0].namespace: Required value"]),
    ({"kind": "ServiceAccount", "name": "Bad_SA", "namespace": "ns", "apiGroup": "x"}, False, [
        'subjects[0].name: Invalid value: "Bad_SA": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'subjects[0].apiGroup: Unsupported value: "x": supported values: ""',
    ]),
    ({"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}, True, []),
    ({"kind": "User", "name": "", "apiGroup": "rbac.authorization.k8s.io"}, True, [
        "subjects[0].name: Required value", 'subjects[0].name: Invalid value: "": user name cannot be empty']),
    ({"kind": "Group", "name": "g", "apiGroup": "other"}, True, [
        'subjects[0].apiGroup: Unsupported value: "other": supported values: "rbac.authorization.k8s.io"']),
    ({"kind": "Robot", "name": "r"}, True, [
        'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"']),
])
def test_binding_subjects(subject: dict, namespaced: bool, expect: list[str]) -> None:
    s = strat(RBAC, "RoleBinding" if namespaced else "ClusterRoleBinding")
    kind = "Role" if namespaced else "ClusterRole"
    obj = {"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "r"},
           "subjects": [subject]}
    assert texts(s.validate(obj)) == expect


# --------------------------------------------------------------------------- pod fallback

def test_pod_gets_a_strategy() -> None:
    s = strat("v1", "Pod")
    assert isinstance(s, Strategy)
    assert s.info.kind == "Pod"
