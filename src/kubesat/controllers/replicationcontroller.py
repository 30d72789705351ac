"""The ReplicationController manager: the ReplicaSet controller's logic run for core/v1 ReplicationControllers,
whose selector is a plain label map (kube-controller-manager does the same by converting them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubesat.controllers.replicaset import ManagedKind, ReplicaSetController
from kubesat.controllers.workload import PodCreator
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry

COMPONENT = "replication-controller"


def label_selector(selector: Any) -> dict[str, Any]:
    """A ReplicationController's selector map as the LabelSelector it stands for (empty selects nothing)."""
    return {"matchLabels": dict(selector)} if isinstance(selector, dict) and selector else {}


def replication_controllers() -> ManagedKind:
    return ManagedKind(builtin_kind("v1", "ReplicationController"), COMPONENT, label_selector)


class ReplicationManager(ReplicaSetController):
    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time,
                 create_pod: PodCreator | None = None) -> None:
        super().__init__(registry, clock=clock, kind=replication_controllers(), create_pod=create_pod)
