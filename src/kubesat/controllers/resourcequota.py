"""The resource quota controller: each ResourceQuota's `status.hard` (its spec's) and `status.used` (what the
namespace's objects take of each tracked resource), recomputed when a quota or a counted object changes.

Admission charges each create to the quotas' status.used before the object is stored (api/quota_api.py); this
controller recounts from the store when objects change, so what was charged but never stored is released.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from kubesat import errors
from kubesat.auth.quotacharges import QuotaCharges
from kubesat.controllers.base import Key, QueuedController, cancel, loads, resource_of_key, split_key
from kubesat.registry.kinds import ResourceInfo, builtin_kind, stored_resources
from kubesat.registry.quota import counted_resource, format_amounts, object_usage, quota_matches
from kubesat.registry.store import Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.resourcequota")

QUOTAS = builtin_kind("v1", "ResourceQuota")
RECHECK = 0.05  # seconds before a recount that a charge in flight held back is tried again
FULL_RESYNC = 300.0  # every quota recounted this often (kube-controller-manager's --resource-quota-sync-period)


def counted_kind(resource: str) -> ResourceInfo | None:
    """The kind whose objects a quota's resource name counts."""
    found = counted_resource(resource)
    if found is None:
        return None
    return next((r for r in stored_resources() if (r.plural, r.group) == found), None)  # custom resources too


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


def _needs_sync(ev: WatchEvent) -> bool:
    """A quota event worth a recount: a new or deleted quota, or a change of its spec or of status.hard; not
    a charge of status.used (ResourceQuota admission's, already counted), as Kubernetes' controller ignores it."""
    new, old = loads(ev.value), loads(ev.prev_value)
    if new is None or old is None:
        return True
    status: dict[str, Any] = new["status"] if isinstance(new.get("status"), dict) else {}
    return (new.get("spec") != old.get("spec") or status.get("hard") != (new.get("spec") or {}).get("hard")
            or "used" not in status)


class ResourceQuotaController(QueuedController):
    """Recomputes every quota of a namespace when a quota, or an object of a kind they count, changes.

    A recount waits while a create charged by admission is in flight in the namespace, and its write is
    guarded by the quota's resourceVersion: a charge made meanwhile is neither lost nor counted twice."""

    name = "resourcequota"

    def __init__(self, registry: Registry, charges: QuotaCharges | None = None,
                 full_resync: float = FULL_RESYNC) -> None:
        super().__init__(registry)
        self._watched: dict[str, set[ResourceInfo]] = {}  # namespace -> kinds its quotas count
        self.charges = charges or QuotaCharges()
        self.charges.on_abandoned = self._mark
        self.full_resync = full_resync
        self._periodic: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._periodic = asyncio.create_task(self._recount_all())

    async def stop(self) -> None:
        await cancel(self._periodic)
        await super().stop()

    async def _recount_all(self) -> None:
        """A status written by hand, or a charge never released, is corrected at the next full recount."""
        while True:
            await asyncio.sleep(self.full_resync)
            try:
                await self._resync()
            except errors.StatusError as e:
                log.warning("resourcequota: full recount: %s", e.message)

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
        if (info is QUOTAS and _needs_sync(ev)) or info in self._watched.get(ns, ()):
            self._mark(ns)

    async def _sync_key(self, key: Key) -> None:
        if not await self.sync(key[0]):
            self.queue.add_after(key, RECHECK)

    async def sync(self, namespace: str) -> bool:
        """Recount the namespace's quotas; False when a charge got in the way (try again shortly)."""
        mark = self.charges.settled(namespace)
        if mark is None:
            return False
        quotas = (await self.registry.list(QUOTAS, namespace)).items
        names = sorted({r for q in quotas for r in ((q.get("spec") or {}).get("hard") or {})})
        self._watched[namespace] = {k for r in names if (k := counted_kind(r)) is not None}
        if not quotas:
            self._watched.pop(namespace, None)
            return True
        used = await quota_usages(self.registry, namespace, quotas)
        if self.charges.settled(namespace) != mark:
            return False
        ok = True
        for quota in quotas:
            hard = dict((quota.get("spec") or {}).get("hard") or {})
            want = {"hard": hard, "used": format_amounts(used[quota["metadata"]["name"]], sorted(hard))}
            if quota.get("status") != want:
                ok = await self._write(quota, want) and ok
        return ok

    async def _write(self, quota: dict[str, Any], want: dict[str, Any]) -> bool:
        """Write a quota's status over the version counted from; False on a conflict."""
        meta = quota["metadata"]
        version = meta.get("resourceVersion")

        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            if obj["metadata"].get("resourceVersion") != version:
                raise errors.conflict("resourcequotas", meta["name"], "the object has been modified")
            obj["status"] = want
            return obj

        try:
            await self.registry.guaranteed_update(QUOTAS, meta["namespace"], meta["name"], mutate,
                                                  subresource="status")
        except errors.StatusError as e:
            if e.code == 409:
                return False
            if e.code != 404:
                log.warning("resourcequota: updating %s/%s: %s", meta["namespace"], meta["name"], e.message)
        return True
