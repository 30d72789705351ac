"""apps/v1 workloads with no server: defaults, validation messages, update rules, generation, Table rows, Scale."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from kubesat.registry import kinds
from kubesat.registry.apps import (
    ControllerRevisionStrategy,
    DaemonSetStrategy,
    DeploymentStrategy,
    ReplicaSetStrategy,
    StatefulSetStrategy,
    name_warnings,
    scale_of,
    validate_scale,
)
from kubesat.registry.podtemplate import selector_matches, selector_string

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEPLOY = DeploymentStrategy(kinds.builtin_kind("apps/v1", "Deployment"))
RS = ReplicaSetStrategy(kinds.builtin_kind("apps/v1", "ReplicaSet"))
STS = StatefulSetStrategy(kinds.builtin_kind("apps/v1", "StatefulSet"))
DS = DaemonSetStrategy(kinds.builtin_kind("apps/v1", "DaemonSet"))
CR = ControllerRevisionStrategy(kinds.builtin_kind("apps/v1", "ControllerRevision"))


def workload(kind: str = "Deployment", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}},
    }
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": "web", "namespace": "default", "generation": 1}, "spec": base}


def texts(errs: list[Any]) -> list[str]:
    return [e.text() for e in errs]


def test_deployment_defaults_as_apps_v1_sets_them() -> None:
    d = workload()
    DEPLOY.prepare_for_create(d)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    assert d["status"] == {}
    # The pod template is defaulted as a pod's spec is.
    pod_spec = spec["template"]["spec"]
    assert (pod_spec["restartPolicy"], pod_spec["dnsPolicy"], pod_spec["terminationGracePeriodSeconds"],
            pod_spec["schedulerName"]) == ("Always", "ClusterFirst", 30, "default-scheduler")
    assert pod_spec["containers"][0]["imagePullPolicy"] == "Always"  # no tag: latest
    assert spec["template"]["metadata"]["creationTimestamp"] is None
    assert DEPLOY.validate(d) == []


def test_recreate_strategy_gets_no_rolling_update() -> None:
    d = workload(strategy={"type": "Recreate"})
    DEPLOY.prepare_for_create(d)
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    assert DEPLOY.validate(d) == []
    d["spec"]["strategy"]["rollingUpdate"] = {}
    assert texts(DEPLOY.validate(d)) == [
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]


def test_the_seed_deployment_without_selector_or_labels_is_refused_as_kubernetes_does() -> None:
    d = workload()
    del d["spec"]["selector"]
    del d["spec"]["template"]["metadata"]["labels"]
    DEPLOY.prepare_for_create(d)
    assert texts(DEPLOY.validate(d)) == [
        "spec.selector: Required value",
        "spec.template.metadata.labels: Invalid value: map[string]string(nil): "
        "`selector` does not match template `labels`",
    ]


def test_selector_must_match_template_labels_and_not_be_empty() -> None:
    d = workload(selector={"matchLabels": {"app": "other"}})
    DEPLOY.prepare_for_create(d)
    assert texts(DEPLOY.validate(d)) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`"]
    d["spec"]["selector"] = {}
    assert texts(DEPLOY.validate(d)) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
    d["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "In"}]}
    assert texts(DEPLOY.validate(d)) == [
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is "
        "'In' or 'NotIn'",
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        'MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"app", Operator:"In", '
        "Values:[]string(nil)}}}: invalid label selector"]


def test_counts_restart_policy_and_rolling_update_rules() -> None:
    d = workload(replicas=-1, minReadySeconds=700,
                 strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}})
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    DEPLOY.prepare_for_create(d)
    assert texts(DEPLOY.validate(d)) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, "
        'StrVal:""}: may not be 0 when `maxSurge` is 0',
        "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds",
    ]
    d = workload(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%", "maxSurge": "x"}})
    DEPLOY.prepare_for_create(d)
    assert texts(DEPLOY.validate(d)) == [
        'spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"x"}: '
        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
        "regex used for validation is '[0-9]+%')",
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, '
        'StrVal:"150%"}: must not be greater than 100%',
    ]


def test_template_pod_spec_is_validated_with_its_path() -> None:
    d = workload()
    d["spec"]["template"]["spec"]["containers"] = []
    DEPLOY.prepare_for_create(d)
    assert texts(DEPLOY.validate(d)) == ["spec.template.spec.containers: Required value"]


def test_generation_status_and_immutable_selector_on_update() -> None:
    old = workload()
    DEPLOY.prepare_for_create(old)
    old["status"] = {"replicas": 1}
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 99}
    DEPLOY.prepare_for_update(new, old)
    assert new["status"] == {"replicas": 1}  # status is not written through the main resource
    assert new["metadata"]["generation"] == 1  # the store bumps spec changes; nothing changed here
    new["metadata"]["annotations"] = {"note": "x"}
    DEPLOY.prepare_for_update(new, old)
    assert new["metadata"]["generation"] == 2  # annotations are copied to ReplicaSets: a new generation
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "x"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    assert texts(DEPLOY.validate_update(new, old)) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "tier":"x"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]


def test_status_writes_keep_spec_and_take_annotations() -> None:
    old = workload()
    DEPLOY.prepare_for_create(old)
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 50
    new["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    new["metadata"]["labels"] = {"changed": "yes"}
    new["status"] = {"replicas": 1, "readyReplicas": 2}
    DEPLOY.prepare_for_status_update(new, old)
    assert new["spec"] == old["spec"] and new["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}
    assert "labels" not in new["metadata"] and "annotations" not in old["metadata"]
    assert texts(DEPLOY.validate_update(new, old)) == [
        "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas"]


def test_deployment_table_row() -> None:
    d = workload(replicas=3)
    DEPLOY.prepare_for_create(d)
    d["metadata"]["creationTimestamp"] = "2025-12-31T23:59:00Z"
    d["status"] = {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}
    assert [c["name"] for c in DEPLOY.table_columns()] == [
        "Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    assert [c["priority"] for c in DEPLOY.table_columns()] == [0, 0, 0, 0, 0, 1, 1, 1]
    assert DEPLOY.table_cells(d, NOW) == ["web", "1/3", 2, 1, "60s", "nginx", "nginx", "app=web"]


def test_replica_set_defaults_validation_row_and_field_selector() -> None:
    rs = workload("ReplicaSet")
    RS.prepare_for_create(rs)
    assert rs["spec"]["replicas"] == 1 and rs["status"] == {"replicas": 0} and RS.validate(rs) == []
    assert RS.field_value(rs, "status.replicas") == "0"
    del rs["spec"]["selector"]
    assert texts(RS.validate(rs))[0] == "spec.selector: Required value"
    rs = workload("ReplicaSet", replicas=2)
    RS.prepare_for_create(rs)
    rs["metadata"]["creationTimestamp"] = "2025-12-31T23:00:00Z"
    assert [c["name"] for c in RS.table_columns()][:5] == ["Name", "Desired", "Current", "Ready", "Age"]
    assert RS.table_cells(rs, NOW)[:5] == ["web", 2, 0, 0, "60m"]


def test_stateful_set_defaults_update_rules_and_row() -> None:
    sts = workload("StatefulSet", serviceName="web")
    STS.prepare_for_create(sts)
    spec = sts["spec"]
    assert (spec["podManagementPolicy"], spec["updateStrategy"], spec["replicas"], spec["revisionHistoryLimit"]) == \
        ("OrderedReady", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}, 1, 10)
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert sts["status"] == {"replicas": 0, "availableReplicas": 0} and STS.validate(sts) == []
    assert STS.name_rule == "label"
    with_claims = workload("StatefulSet", volumeClaimTemplates=[
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                "resources": {"requests": {"storage": "1Gi"}}}}])
    STS.prepare_for_create(with_claims)
    claim = with_claims["spec"]["volumeClaimTemplates"][0]
    assert (claim["apiVersion"], claim["kind"], claim["metadata"], claim["spec"]["volumeMode"], claim["status"]) == \
        ("v1", "PersistentVolumeClaim", {"name": "data", "creationTimestamp": None}, "Filesystem", {"phase": "Pending"})
    new = copy.deepcopy(sts)
    new["spec"]["replicas"] = 5
    assert STS.validate_update(new, sts) == []
    new["spec"]["serviceName"] = "other"
    assert texts(STS.validate_update(new, sts)) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
    sts["metadata"]["creationTimestamp"] = "2025-12-31T23:59:00Z"
    assert [c["name"] for c in STS.table_columns()] == ["Name", "Ready", "Age", "Containers", "Images"]
    assert STS.table_cells(sts, NOW) == ["web", "0/1", "60s", "nginx", "nginx"]


def test_daemon_set_defaults_template_generation_and_row() -> None:
    ds = workload("DaemonSet")
    DS.prepare_for_create(ds)
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["metadata"]["annotations"] == {"deprecated.daemonset.template.generation": "1"}
    assert DS.validate(ds) == []
    new = copy.deepcopy(ds)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    DS.prepare_for_update(new, ds)
    assert new["metadata"]["annotations"] == {"deprecated.daemonset.template.generation": "2"}
    bad = copy.deepcopy(ds)
    bad["spec"]["updateStrategy"]["rollingUpdate"] = {"maxUnavailable": 1, "maxSurge": 1}
    assert texts(DS.validate(bad)) == [
        "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, "
        'StrVal:""}: may not be set when maxUnavailable is non-zero']
    ds["metadata"]["creationTimestamp"] = "2025-12-31T23:59:00Z"
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a", "disk": "ssd"}
    assert [c["name"] for c in DS.table_columns()][:8] == [
        "Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age"]
    assert DS.table_cells(ds, NOW)[:8] == ["web", 0, 0, 0, 0, 0, "disk=ssd,zone=a", "60s"]


def test_controller_revision_rules_and_row() -> None:
    cr = {"metadata": {"name": "web-1", "creationTimestamp": "2025-12-31T23:59:00Z",
                       "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                            "uid": "u", "controller": True}]},
          "revision": 1, "data": {"spec": {}}}
    assert CR.validate(cr) == []
    assert texts(CR.validate({"metadata": {}, "revision": -1})) == [
        "data: Required value: data is mandatory", "revision: Invalid value: -1: must be greater than or equal to 0"]
    changed = copy.deepcopy(cr)
    changed["data"] = {}
    assert texts(CR.validate_update(changed, cr)) == [
        "data: Invalid value: runtime.RawExtension{Raw:[]uint8{0x7b, 0x7d}, Object:runtime.Object(nil)}: "
        "field is immutable"]
    assert CR.table_cells(cr, NOW) == ["web-1", "statefulset.apps/web", 1, "60s"]


def test_selector_strings_and_matching() -> None:
    sel = {"matchLabels": {"b": "2", "a": "1"},
           "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]},
                                {"key": "d", "operator": "DoesNotExist"}]}
    assert selector_string(sel) == "a=1,b=2,c in (x,y),!d"
    assert selector_matches(sel, {"a": "1", "b": "2", "c": "x"})
    assert not selector_matches(sel, {"a": "1", "b": "2", "c": "x", "d": ""})
    assert selector_matches({}, {}) and not selector_matches(None, {"a": "1"})


def test_scale_of_a_deployment() -> None:
    d = workload(replicas=3)
    d["metadata"].update(uid="u1", resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z")
    d["status"] = {"replicas": 2}
    assert scale_of(d, "app=web") == {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "7",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}}
    assert texts(validate_scale({"spec": {"replicas": -2}})) == [
        "spec.replicas: Invalid value: -2: must be greater than or equal to 0"]


def test_replica_set_and_stateful_set_status_rules() -> None:
    rs = workload("ReplicaSet")
    RS.prepare_for_create(rs)
    rs["status"] = {"replicas": 1, "fullyLabeledReplicas": 2, "readyReplicas": 1, "availableReplicas": 1}
    assert texts(RS.validate_update(rs, rs)) == [
        "status.fullyLabeledReplicas: Invalid value: 2: cannot be greater than status.replicas"]
    sts = workload("StatefulSet")
    STS.prepare_for_create(sts)
    sts["status"] = {"replicas": 2, "readyReplicas": 1, "availableReplicas": 2}
    assert texts(STS.validate_update(sts, sts)) == [
        "status.availableReplicas: Invalid value: 2: cannot be greater than status.readyReplicas"]


def test_collision_count_is_never_decremented() -> None:
    old = workload()
    DEPLOY.prepare_for_create(old)
    old["status"] = {"collisionCount": 2}
    new = copy.deepcopy(old)
    new["status"] = {"collisionCount": 1}
    assert texts(DEPLOY.validate_update(new, old)) == [
        "status.collisionCount: Invalid value: 1: cannot be decremented"]
    new["status"] = {}
    assert texts(DEPLOY.validate_update(new, old)) == [
        "status.collisionCount: Invalid value: 0: cannot be decremented"]
    new["status"] = {"collisionCount": 3}
    assert DEPLOY.validate_update(new, old) == []


def test_names_that_are_not_dns_labels_are_warned_about() -> None:
    assert name_warnings({"metadata": {"name": "web"}}) == []
    assert name_warnings({"metadata": {"name": "web.v1"}}) == [
        "metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; "
        "a DNS label is recommended: [must not contain dots]"]
