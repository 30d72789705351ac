"""The resource quota controller: each ResourceQuota's `status.hard` (its spec's) and `status.used` (what the
namespace's objects take of each tracked resource), recomputed when a quota or a counted object changes.

`quota_usages` is also what the ResourceQuota admission check counts against, so both agree.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from kubesat import errors
from kubesat.controllers.base import Key, QueuedController, resource_of_key, split_key
from kubesat.registry.kinds import RESOURCES, ResourceInfo, builtin_kind
from kubesat.registry.quota import SHORT_COUNTS, format_amounts, object_usage, quota_matches
from kubesat.registry.store import Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.resourcequota")

QUOTAS = builtin_kind("v1", "ResourceQuota")
_POD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def counted_kind(resource: str) -> ResourceInfo | None:
    """The kind whose objects a quota's resource name counts."""
    if resource.startswith("count/"):
        plural, _, group = resource[len("count/"):].partition(".")
        return next((r for r in RESOURCES if r.stored and r.plural == plural and r.group == group), None)
    plural = resource
    if resource in _POD_RESOURCES or resource.startswith(("requests.", "limits.")):
        plural = "persistentvolumeclaims" if resource == "requests.storage" else "pods"
    elif resource.startswith("services."):
        plural = "services"
    elif resource not in SHORT_COUNTS:
        return None
    return next((r for r in RESOURCES if r.stored and r.plural == plural and not r.group), None)


async def quota_usages(registry: Registry, namespace: str,
                       quotas: list[dict[str, Any]]) -> dict[str, dict[str, Decimal]]:
    """Each quota's use now: for every resource its `hard` names, the sum over the namespace's objects the
    quota counts (all of them, or the pods its scopes select)."""
    used = {q["metadata"]["name"]: {r: Decimal(0) for r in (q.get("spec") or {}).get("hard") or {}} for q in quotas}
    kinds = {info for q in quotas for r in (q.get("spec") or {}).get("hard") or {}
             if (info := counted_kind(r)) is not None}
    for info in sorted(kinds, key=lambda i: i.group_resource):
        for obj in (await registry.list(info, namespace)).items:
            usage = object_usage(info.plural, info.group, obj)
            for quota in quotas:
                mine = used[quota["metadata"]["name"]]
                if not set(usage) & set(mine) or not quota_matches(quota, info.plural, info.group, obj):
                    continue
                for name, amount in usage.items():
                    if name in mine:
                        mine[name] += amount
    return used


class ResourceQuotaController(QueuedController):
    """Recomputes every quota of a namespace when a quota, or an object of a kind they count, changes."""

    name = "resourcequota"

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self._watched: dict[str, set[ResourceInfo]] = {}  # namespace -> kinds its quotas count

    async def _resync(self) -> int:
        rev = await self.registry.revision()
        for ns in {q["metadata"]["namespace"] for q in (await self.registry.list(QUOTAS, "")).items}:
            self._mark(ns)
        return rev

    def _mark(self, namespace: str) -> None:
        self.queue.add((namespace, ""))  # one key per namespace: its quotas share one count

    async def _on_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is None or not info.namespaced:
            return
        ns, _ = split_key(info, ev.key)
        if info is QUOTAS or info in self._watched.get(ns, ()):
            self._mark(ns)

    async def _sync_key(self, key: Key) -> None:
        await self.sync(key[0])

    async def sync(self, namespace: str) -> None:
        quotas = (await self.registry.list(QUOTAS, namespace)).items
        names = sorted({r for q in quotas for r in ((q.get("spec") or {}).get("hard") or {})})
        self._watched[namespace] = {k for r in names if (k := counted_kind(r)) is not None}
        if not quotas:
            self._watched.pop(namespace, None)
            return
        used = await quota_usages(self.registry, namespace, quotas)
        for quota in quotas:
            hard = dict((quota.get("spec") or {}).get("hard") or {})
            want = {"hard": hard, "used": format_amounts(used[quota["metadata"]["name"]], sorted(hard))}
            if quota.get("status") == want:
                continue

            def mutate(obj: dict[str, Any], want: dict[str, Any] = want) -> dict[str, Any]:
                obj["status"] = want
                return obj

            try:
                await self.registry.guaranteed_update(QUOTAS, namespace, quota["metadata"]["name"], mutate,
                                                      subresource="status")
            except errors.StatusError as e:
                if e.code != 404:
                    log.warning("resourcequota: updating %s/%s: %s", namespace, quota["metadata"]["name"], e.message)
