"""core/v1 ReplicationController registry rules: v1 defaults, validation texts, the scale selector, columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubesat.controllers.replicationcontroller import label_selector
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.replicationcontroller import ReplicationControllerStrategy

RC = ReplicationControllerStrategy(builtin_kind("v1", "ReplicationController"))


def _rc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"template": {"metadata": {"labels": {"app": "a"}},
                                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "r"}, "spec": base}


def _texts(obj: dict[str, Any]) -> list[str]:
    RC.apply_defaults(obj)
    return [e.text() for e in RC.validate(obj)]


def test_defaults_from_the_template() -> None:
    obj = _rc()
    RC.apply_defaults(obj)
    assert obj["spec"]["selector"] == {"app": "a"} and obj["metadata"]["labels"] == {"app": "a"}
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    kept = _rc(selector={"app": "a"})
    kept["metadata"]["labels"] = {"mine": "x"}
    RC.apply_defaults(kept)
    assert kept["metadata"]["labels"] == {"mine": "x"}
    assert _texts(_rc()) == []


def test_validation_messages() -> None:
    no_template = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "r"},
                   "spec": {"selector": {"app": "a"}}}
    assert _texts(no_template) == ["spec.template: Required value"]
    assert _texts({"metadata": {"name": "r"}, "spec": {}}) == ["spec.selector: Required value",
                                                               "spec.template: Required value"]
    mismatch = _texts(_rc(selector={"app": "b"}))
    assert mismatch == ['spec.template.metadata.labels: Invalid value: map[string]string{"app":"a"}: '
                        '`selector` does not match template `labels`']
    deadline = _rc()
    deadline["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 5
    assert _texts(deadline) == ["spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in "
                                "ReplicationController is not Supported"]
    assert _texts(_rc(replicas=-1)) == ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]


def test_selector_columns_and_controller_view() -> None:
    obj = _rc(selector={"b": "2", "a": "1"}, replicas=3)
    RC.apply_defaults(obj)
    obj["status"] = {"replicas": 2, "readyReplicas": 1}
    assert RC.scale_selector(obj) == "a=1,b=2"
    assert RC.scale_selector({"spec": {}}) == ""
    cells = RC.table_cells(obj, datetime.now(UTC))
    assert cells[:4] == ["r", 3, 2, 1] and cells[-1] == "a=1,b=2"
    assert [c["name"] for c in RC.table_columns()][:5] == ["Name", "Desired", "Current", "Ready", "Age"]
    assert label_selector({"a": "1"}) == {"matchLabels": {"a": "1"}} and label_selector({}) == {}
