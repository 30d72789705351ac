"""PodStrategy (kubesat.registry.pod): defaults, validation, update rules, table rows, field selectors."""

from __future__ import annotations

import copy
from datetime import datetime, UTC
from pathlib import Path

import pytest
import yaml

from kubesat.auth.admission import admit_pod_create
from kubesat.errors import StatusError, invalid
from kubesat.registry.kinds import lookup_kind
from kubesat.registry.pod import PodStrategy, default_pull_policy, pod_qos
from kubesat.registry.strategy import sync_dual_field

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"
NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture()
def strategy() -> PodStrategy:
    return PodStrategy(lookup_kind("v1", "Pod"))


def seed(name: str) -> dict:
    return yaml.safe_load((SEEDS / name).read_text())


def pod(name: str = "p", **spec) -> dict:
    spec.setdefault("containers", [{"name": "c", "image": "busybox:1.36"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def create_errors(strategy: PodStrategy, p: dict) -> list[str]:
    strategy.prepare_for_create(p)
    return [e.text() for e in strategy.validate(p)]


def created(strategy: PodStrategy, p: dict) -> dict:
    assert create_errors(strategy, p) == []
    return p


# ----------------------------------------------------------------------------- seeds


def test_seed_automount_off_only_error_is_containers_required(strategy: PodStrategy) -> None:
    p = seed("000-pod-automount-off.yaml")
    admit_pod_create(p, lambda ns, n: seed("000-serviceaccount-automount-off.yaml"))
    strategy.prepare_for_create(p)
    errs = strategy.validate(p)
    assert [e.text() for e in errs] == ["spec.containers: Required value"]
    want = 'The Pod "foo-pod" is invalid: spec.containers: Required value'[4:]
    assert invalid("Pod", "foo-pod", errs).message == want
    assert errs[0].cause() == {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}


def test_seed_fixed_pod_is_valid(strategy: PodStrategy) -> None:
    p = seed("000-pod-projected-token-fixed.yaml")
    p["metadata"]["namespace"] = "default"
    admit_pod_create(p, lambda ns, n: seed("000-serviceaccount-automount-off.yaml"))
    created(strategy, p)
    vol = p["spec"]["volumes"][0]
    assert vol["projected"]["defaultMode"] == 0o444
    assert vol["projected"]["sources"][0]["serviceAccountToken"] == {"expirationSeconds": 3607, "path": "token"}


def test_admitted_default_pod_is_valid(strategy: PodStrategy) -> None:
    p = pod()
    admit_pod_create(p, lambda ns, n: {"metadata": {"name": "default"}})
    created(strategy, p)


# ----------------------------------------------------------------------------- defaults


def test_create_defaults(strategy: PodStrategy) -> None:
    p = pod(containers=[{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}])
    p["status"] = {"phase": "Running", "podIP": "10.0.0.1"}
    p = created(strategy, p)
    spec = p["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "Always"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["resources"] == {}
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_existing_wildcard_toleration_suppresses_defaults(strategy: PodStrategy) -> None:
    p = created(strategy, pod(tolerations=[{"operator": "Exists"}]))
    assert p["spec"]["tolerations"] == [{"operator": "Exists"}]


@pytest.mark.parametrize(
    ("image", "policy"),
    [("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.27", "IfNotPresent"),
     ("localhost:5000/app", "Always"), ("localhost:5000/app:v1", "IfNotPresent"),
     ("nginx@sha256:" + "a" * 64, "IfNotPresent")],
)
def test_pull_policy(image: str, policy: str) -> None:
    assert default_pull_policy(image) == policy


def test_volume_defaults(strategy: PodStrategy) -> None:
    p = pod(
        serviceAccountName="default",
        volumes=[
            {"name": "a", "secret": {"secretName": "s"}},
            {"name": "b", "configMap": {"name": "cm"}},
            {"name": "c", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"name": "d", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
            {"name": "e"},
        ],
    )
    vols = created(strategy, p)["spec"]["volumes"]
    assert vols[0]["secret"]["defaultMode"] == 420
    assert vols[1]["configMap"]["defaultMode"] == 420
    assert vols[2]["downwardAPI"] == {"defaultMode": 420, "items": [
        {"path": "n", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}]}
    assert vols[3]["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}
    assert vols[4] == {"name": "e", "emptyDir": {}}


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ([{}], "BestEffort"),
        ([{"requests": {"cpu": "100m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}], "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ],
)
def test_qos_class(strategy: PodStrategy, resources: list[dict], qos: str) -> None:
    containers = [{"name": f"c{i}", "image": "x:1", "resources": r} for i, r in enumerate(resources)]
    p = created(strategy, pod(containers=containers))
    assert p["status"]["qosClass"] == qos
    assert pod_qos(p["spec"]) == qos


def test_priority_admission(strategy: PodStrategy) -> None:
    p = created(strategy, pod(priorityClassName="system-node-critical"))
    assert p["spec"]["priority"] == 2000001000
    with pytest.raises(StatusError) as exc:
        strategy.prepare_for_create(pod(priorityClassName="gold"))
    assert exc.value.code == 403
    assert exc.value.message == 'pods "p" is forbidden: no PriorityClass with name gold was found'
    with pytest.raises(StatusError) as exc:
        strategy.prepare_for_create(pod(priority=5))
    assert exc.value.message == ('pods "p" is forbidden: the integer value of priority (5) must not be provided in '
                                 'pod spec; priority admission controller computed 0 from the given PriorityClass name')


# ----------------------------------------------------------------------------- validation


CASES = [
    ("no name", pod(containers=[{"image": "x:1"}]), ["spec.containers[0].name: Required value"]),
    ("no image", pod(containers=[{"name": "c"}]), ["spec.containers[0].image: Required value"]),
    ("bad container name", pod(containers=[{"name": "Web_1", "image": "x:1"}]),
     ['spec.containers[0].name: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of lower case '
      "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
      "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]),
    ("duplicate container", pod(containers=[{"name": "c", "image": "x:1"}, {"name": "c", "image": "x:1"}]),
     ['spec.containers[1].name: Duplicate value: "c"']),
    ("init duplicates container", pod(initContainers=[{"name": "c", "image": "x:1"}]),
     ['spec.initContainers[0].name: Duplicate value: "c"']),
    ("mount of unknown volume",
     pod(containers=[{"name": "c", "image": "x:1", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]),
     ['spec.containers[0].volumeMounts[0].name: Not found: "x"']),
    ("mountPath required and unique",
     pod(volumes=[{"name": "v", "emptyDir": {}}],
         containers=[{"name": "c", "image": "x:1", "volumeMounts": [{"name": "v"}, {"name": "v", "mountPath": "/a"},
                                                                    {"name": "v", "mountPath": "/a"}]}]),
     ["spec.containers[0].volumeMounts[0].mountPath: Required value",
      'spec.containers[0].volumeMounts[2].mountPath: Invalid value: "/a": must be unique']),
    ("duplicate volume", pod(volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]),
     ['spec.volumes[1].name: Duplicate value: "v"']),
    ("two volume types", pod(volumes=[{"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]),
     ["spec.volumes[0].secret: Forbidden: may not specify more than 1 volume type"]),
    ("token too short",
     pod(serviceAccountName="sa", volumes=[{"name": "t", "projected": {"sources": [
         {"serviceAccountToken": {"path": "token", "expirationSeconds": 599}}]}}]),
     ["spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 599: "
      "may not specify a duration less than 10 minutes"]),
    ("token too long",
     pod(serviceAccountName="sa", volumes=[{"name": "t", "projected": {"sources": [
         {"serviceAccountToken": {"path": "token", "expirationSeconds": 2**32 + 1}}]}}]),
     ["spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 4294967297: "
      "may not specify a duration larger than 2^32 seconds"]),
    ("token without path",
     pod(serviceAccountName="sa", volumes=[{"name": "t", "projected": {"sources": [{"serviceAccountToken": {}}]}}]),
     ["spec.volumes[0].projected.path: Required value"]),
    ("token path absolute",
     pod(serviceAccountName="sa",
         volumes=[{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "/t"}}]}}]),
     ['spec.volumes[0].projected.path: Invalid value: "/t": must be a relative path']),
    ("token without service account",
     pod(volumes=[{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]),
     ["spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: must not be specified when "
      "serviceAccountName is not set"]),
    ("two kinds in one source",
     pod(volumes=[{"name": "t", "projected": {"sources": [{"configMap": {"name": "a"}, "secret": {"name": "b"}}]}}]),
     ["spec.volumes[0].projected.sources[0]: Forbidden: may not specify more than 1 volume type per source"]),
    ("duplicate projected paths",
     pod(volumes=[{"name": "t", "projected": {"sources": [
         {"configMap": {"name": "a", "items": [{"key": "k", "path": "p"}]}},
         {"secret": {"name": "b", "items": [{"key": "k", "path": "p"}]}}]}}]),
     ['spec.volumes[0].projected: Invalid value: "b": conflicting duplicate paths']),
    ("configMap item", pod(volumes=[{"name": "v", "configMap": {"name": "cm", "items": [{"path": "../x"}]}}]),
     ["spec.volumes[0].configMap.items[0].key: Required value",
      'spec.volumes[0].configMap.items[0].path: Invalid value: "../x": must not contain \'..\'']),
    ("secret mode", pod(volumes=[{"name": "v", "secret": {"secretName": "s", "defaultMode": 1000}}]),
     ["spec.volumes[0].secret.defaultMode: Invalid value: 1000: "
      "must be a number between 0 and 0777 (octal), both inclusive"]),
    ("downward fieldPath",
     pod(volumes=[{"name": "v",
                   "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}]),
     ['spec.volumes[0].downwardAPI.fieldRef.fieldPath: Unsupported value: "spec.nodeName": supported values: '
      '"metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"']),
    ("service account name", pod(serviceAccountName="Bad_SA"),
     ['spec.serviceAccountName: Invalid value: "Bad_SA": a lowercase RFC 1123 subdomain must consist of lower case '
      "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
      "'example.com', regex used for validation is "
      "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]),
    ("restart policy", pod(restartPolicy="Sometimes"),
     ['spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"']),
    ("dns policy", pod(dnsPolicy="Google"),
     ['spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", '
      '"Default", "None"']),
    ("deadline", pod(activeDeadlineSeconds=0),
     ["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"]),
    ("node name", pod(nodeName="Node_1"), None),
    ("env fieldRef", pod(containers=[{"name": "c", "image": "x:1", "env": [
        {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.schedulerName"}}}]}]),
     ['spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.schedulerName": supported '
      'values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", '
      '"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"']),
    ("port", pod(containers=[{"name": "c", "image": "x:1", "ports": [{"containerPort": 70000}]}]),
     ["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
]


@pytest.mark.parametrize(("name", "p", "expected"), CASES, ids=[c[0] for c in CASES])
def test_validation(strategy: PodStrategy, name: str, p: dict, expected: list[str] | None) -> None:
    errs = create_errors(strategy, copy.deepcopy(p))
    if expected is None:
        assert errs and errs[0].startswith('spec.nodeName: Invalid value: "Node_1": a lowercase RFC 1123 subdomain')
    else:
        assert errs == expected


def test_599_rejected_with_kubernetes_message(strategy: PodStrategy) -> None:
    p = seed("000-pod-projected-token-fixed.yaml")
    p["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] = 599
    strategy.prepare_for_create(p)
    err = invalid("Pod", "foo-pod", strategy.validate(p))
    assert err.code == 422
    # As in Kubernetes, an invalid volume is left out of the known volumes, so its mount is "Not found" too.
    assert err.message == ('Pod "foo-pod" is invalid: [spec.volumes[0].projected.sources[0].serviceAccountToken.'
                           "expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes, "
                           'spec.containers[0].volumeMounts[0].name: Not found: "serviceaccount-token"]')


# ----------------------------------------------------------------------------- update


def live(strategy: PodStrategy) -> dict:
    p = pod(containers=[{"name": "c", "image": "nginx:1.26"}])
    admit_pod_create(p, lambda ns, n: {"metadata": {"name": "default"}}, lambda n: "abcde")
    return created(strategy, p)


def update_errors(strategy: PodStrategy, old: dict, change) -> list[str]:
    new = copy.deepcopy(old)
    change(new)
    strategy.prepare_for_update(new, old)
    return [e.text() for e in strategy.validate_update(new, old)]


def test_image_update_allowed(strategy: PodStrategy) -> None:
    old = live(strategy)
    assert update_errors(strategy, old, lambda p: p["spec"]["containers"][0].update(image="nginx:1.27")) == []


def test_deadline_and_toleration_addition_allowed(strategy: PodStrategy) -> None:
    old = live(strategy)

    def change(p: dict) -> None:
        p["spec"]["activeDeadlineSeconds"] = 60
        p["spec"]["tolerations"].append({"key": "k", "operator": "Exists", "effect": "NoSchedule"})

    assert update_errors(strategy, old, change) == []


def test_immutable_field_rejected(strategy: PodStrategy) -> None:
    old = live(strategy)
    errs = update_errors(strategy, old, lambda p: p["spec"].update(nodeName="node-b"))
    assert len(errs) == 1
    assert errs[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)\n")
    assert "nodeName" in errs[0]


def test_adding_container_rejected(strategy: PodStrategy) -> None:
    old = live(strategy)
    errs = update_errors(strategy, old, lambda p: p["spec"]["containers"].append({"name": "d", "image": "x:1"}))
    assert errs == ["spec.containers: Forbidden: pod updates may not add or remove containers"]


def test_removing_toleration_rejected(strategy: PodStrategy) -> None:
    old = live(strategy)
    errs = update_errors(strategy, old, lambda p: p["spec"].pop("tolerations"))
    assert errs == ["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]


def test_deadline_may_only_shrink(strategy: PodStrategy) -> None:
    old = live(strategy)
    old["spec"]["activeDeadlineSeconds"] = 30
    errs = update_errors(strategy, old, lambda p: p["spec"].update(activeDeadlineSeconds=60))
    assert errs == ["spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"]


def test_defaults_reapplied_on_update_so_stripped_spec_is_equal(strategy: PodStrategy) -> None:
    old = live(strategy)

    def strip(p: dict) -> None:
        for k in ("dnsPolicy", "restartPolicy", "schedulerName", "securityContext", "enableServiceLinks",
                  "terminationGracePeriodSeconds"):
            p["spec"].pop(k)
        p["spec"]["containers"][0].pop("imagePullPolicy")

    assert update_errors(strategy, old, strip) == []


def test_status_kept_on_main_update_and_written_by_status_subresource(strategy: PodStrategy) -> None:
    old = live(strategy)
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Running"}
    strategy.prepare_for_update(new, old)
    assert new["status"] == {"phase": "Pending", "qosClass": "BestEffort"}

    new = copy.deepcopy(old)
    new["spec"]["nodeName"] = "ignored"
    new["status"] = {"phase": "Running", "podIPs": [{"ip": "10.1.2.3"}], "podIP": "10.1.2.3"}
    strategy.prepare_for_status_update(new, old)
    assert "nodeName" not in new["spec"]
    assert new["status"]["qosClass"] == "BestEffort"
    assert strategy.validate_update(new, old) == []
    assert strategy.field_value(new, "status.podIP") == "10.1.2.3"

    bad = copy.deepcopy(new)
    bad["status"]["qosClass"] = "Guaranteed"
    assert [e.text() for e in strategy.validate_update(bad, old)] == [
        'status.qosClass: Invalid value: "Guaranteed": field is immutable']


# ----------------------------------------------------------------------------- table and fields


def test_table_columns(strategy: PodStrategy) -> None:
    cols = strategy.table_columns()
    assert [c["name"] for c in cols] == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node",
                                        "Nominated Node", "Readiness Gates"]
    assert [c["priority"] for c in cols] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert cols[0]["format"] == "name"


def test_table_pending_pod(strategy: PodStrategy) -> None:
    p = live(strategy)
    p["metadata"]["creationTimestamp"] = "2025-01-01T11:55:00Z"
    assert strategy.table_cells(p, NOW) == ["p", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"]


def test_table_running_waiting_and_terminating(strategy: PodStrategy) -> None:
    p = live(strategy)
    p["metadata"]["creationTimestamp"] = "2025-01-01T10:00:00Z"
    p["spec"]["containers"].append({"name": "d", "image": "x:1"})
    p["spec"]["nodeName"] = "node-1"
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/ready"}]
    p["status"] = {
        "phase": "Running",
        "podIPs": [{"ip": "10.0.0.7"}],
        "conditions": [{"type": "example.com/ready", "status": "True"}],
        "containerStatuses": [
            {"name": "c", "ready": True, "restartCount": 0, "state": {"running": {}}},
            {"name": "d", "ready": False, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T11:59:00Z"}}},
        ],
    }
    assert strategy.table_cells(p, NOW) == ["p", "1/2", "CrashLoopBackOff", "3 (60s ago)", "120m", "10.0.0.7",
                                            "node-1", "<none>", "1/1"]
    p["metadata"]["deletionTimestamp"] = "2025-01-01T11:59:59Z"
    assert strategy.table_cells(p, NOW)[2] == "Terminating"


def test_table_init_containers(strategy: PodStrategy) -> None:
    p = live(strategy)
    p["spec"]["initContainers"] = [{"name": "i1", "image": "x:1"}, {"name": "i2", "image": "x:1"}]
    p["status"]["initContainerStatuses"] = [
        {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
        {"name": "i2", "state": {"running": {}}},
    ]
    assert strategy.table_cells(p, NOW)[1:3] == ["0/1", "Init:1/2"]


def test_field_values(strategy: PodStrategy) -> None:
    p = live(strategy)
    assert strategy.field_value(p, "metadata.name") == "p"
    assert strategy.field_value(p, "metadata.namespace") == "default"
    assert strategy.field_value(p, "spec.serviceAccountName") == "default"
    assert strategy.field_value(p, "spec.restartPolicy") == "Always"
    assert strategy.field_value(p, "spec.schedulerName") == "default-scheduler"
    assert strategy.field_value(p, "spec.nodeName") == ""
    assert strategy.field_value(p, "status.phase") == "Pending"
    assert strategy.field_value(p, "status.podIP") == ""
    assert strategy.field_value(p, "status.nominatedNodeName") == ""
    assert strategy.field_value(p, "spec.unknown") is None


def test_singular_and_plural_fields_stay_in_step() -> None:
    cases = [
        ({"podIP": "10.0.0.1"}, {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]}),
        ({"podIPs": [{"ip": "10.0.0.2"}, {"ip": "fd00::2"}]},
         {"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.2"}, {"ip": "fd00::2"}]}),
        # both given and different: the singular wins, as in the v1 conversion
        ({"podIP": "10.0.0.3", "podIPs": [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}]},
         {"podIP": "10.0.0.3", "podIPs": [{"ip": "10.0.0.3"}]}),
        ({}, {}),
    ]
    for given, want in cases:
        part = dict(given)
        sync_dual_field(part, "podIP", "podIPs", "ip")
        assert part == want, given
    spec = {"podCIDRs": ["10.244.0.0/24", "fd00::/64"]}
    sync_dual_field(spec, "podCIDR", "podCIDRs")
    assert spec["podCIDR"] == "10.244.0.0/24"
