"""apps/v1 workloads at the API edge: the warnings Kubernetes returns when a Deployment or ReplicaSet is created
with a name its pods' hostnames cannot carry (the /scale subresource is api/scale_api.py)."""

from __future__ import annotations

from typing import Any

from kubesat.api.app import Request
from kubesat.api.resources import ResourceHandler
from kubesat.registry.apps import name_warnings
from kubesat.registry.kinds import ResourceInfo, builtin_kind

WARNED_ON_CREATE = (builtin_kind("apps/v1", "Deployment"), builtin_kind("apps/v1", "ReplicaSet"))


def install(resources: ResourceHandler) -> None:
    async def warn(req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> None:
        if res in WARNED_ON_CREATE:
            req.warnings.extend(name_warnings(obj))

    resources.admission.append(warn)
