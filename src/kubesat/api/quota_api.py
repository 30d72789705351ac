"""The LimitRanger and ResourceQuota admission plugins in the request path: the namespace's LimitRanges and
ResourceQuotas read from the store for each create they may concern (auth/quota.py decides)."""

from __future__ import annotations

from typing import Any

from kubesat.api.app import Request
from kubesat.api.resources import ResourceHandler
from kubesat.auth.quota import admit_pod_limits, admit_quota
from kubesat.controllers.resourcequota import quota_usages
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.quota import object_usage, quota_matches
from kubesat.registry.store import Registry

PODS = builtin_kind("v1", "Pod")
LIMIT_RANGES = builtin_kind("v1", "LimitRange")
QUOTAS = builtin_kind("v1", "ResourceQuota")


def install(resources: ResourceHandler, registry: Registry) -> None:
    """LimitRanger first among the admission steps (it fills in defaults), ResourceQuota last (it counts
    the object as every other step left it)."""

    async def limit_ranger(req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> None:
        if res is not PODS or req.info.subresource:
            return
        ranges = (await registry.list(LIMIT_RANGES, ns)).items
        if ranges:
            admit_pod_limits(obj, ranges)

    async def resource_quota(req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> None:
        if not res.namespaced or not res.stored or req.info.subresource or not ns:
            return
        quotas = (await registry.list(QUOTAS, ns)).items
        if not quotas:
            return
        requested = object_usage(res.plural, res.group, obj)
        relevant = [q for q in quotas if (set((q.get("spec") or {}).get("hard") or {}) & set(requested)
                                          or (res is PODS and (q.get("spec") or {}).get("hard")))
                    and quota_matches(q, res.plural, res.group, obj)]
        if not relevant:
            return
        admit_quota(res.plural, res.group, obj, relevant, await quota_usages(registry, ns, relevant))

    resources.admission.insert(0, limit_ranger)
    resources.admission.append(resource_quota)
