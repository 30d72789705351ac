"""The LimitRanger and ResourceQuota admission plugins in the request path: the namespace's LimitRanges read
for each new pod, and each create charged to its namespace's ResourceQuotas (their `status.used` written,
guarded by resourceVersion, before the object is stored), as kube-apiserver's quota admission does it."""

from __future__ import annotations

from typing import Any

from kubesat import errors
from kubesat.api.app import Request
from kubesat.api.resources import ResourceHandler, Settle
from kubesat.auth.quota import admit_pod_limits, charge_quotas
from kubesat.auth.quotacharges import Charge, QuotaCharges
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.store import Registry

PODS = builtin_kind("v1", "Pod")
LIMIT_RANGES = builtin_kind("v1", "LimitRange")
QUOTAS = builtin_kind("v1", "ResourceQuota")
RETRIES = 3  # re-reads after a quota's status changed under a charge, as the plugin's


class _Conflict(Exception):
    def __init__(self, error: errors.StatusError) -> None:
        self.error = error


async def _write_used(registry: Registry, quota: dict[str, Any], used: dict[str, str]) -> None:
    """Write one quota's new status.used, only over the version the charge was computed from."""
    meta = quota["metadata"]
    version = meta.get("resourceVersion")

    def mutate(current: dict[str, Any]) -> dict[str, Any]:
        if current["metadata"].get("resourceVersion") != version:
            raise _Conflict(errors.conflict("resourcequotas", meta["name"], "the object has been modified; please "
                                            "apply your changes to the latest version and try again"))
        status: dict[str, Any] = current["status"] if isinstance(current.get("status"), dict) else {}
        current["status"] = {**status, "used": used}
        return current

    await registry.guaranteed_update(QUOTAS, meta["namespace"], meta["name"], mutate, subresource="status")


async def charge(registry: Registry, plural: str, group: str, ns: str, obj: dict[str, Any],
                 ticket: Charge | None) -> None:
    """Check `obj` against the namespace's quotas and, unless a dry run (`ticket` None), record the charge in
    each quota it counts against; a quota changed meanwhile is read again and checked again."""
    pending: set[str] | None = None  # the quotas still to charge (None: all)
    last: errors.StatusError | None = None
    for _ in range(RETRIES + 1):
        quotas = [q for q in (await registry.list(QUOTAS, ns)).items
                  if pending is None or q["metadata"]["name"] in pending]
        charged = charge_quotas(plural, group, obj, quotas)
        if ticket is None or not charged:
            return
        by_name = {q["metadata"]["name"]: q for q in quotas}
        pending = set()
        for name, used in charged.items():
            try:
                await _write_used(registry, by_name[name], used)
                ticket.written = True
            except _Conflict as e:
                pending.add(name)
                last = e.error
            except errors.StatusError as e:
                if e.code != 404:  # a quota deleted meanwhile no longer limits anything
                    raise
        if not pending:
            return
    assert last is not None
    raise last


def install(resources: ResourceHandler, registry: Registry) -> QuotaCharges:
    """LimitRanger first among the admission steps (it fills in defaults), ResourceQuota last (it counts
    the object as every other step left it). Returns the charges in flight, for the quota controller."""
    charges = QuotaCharges()

    async def limit_ranger(req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> None:
        if res is not PODS or req.info.subresource:
            return
        ranges = (await registry.list(LIMIT_RANGES, ns)).items
        if ranges:
            admit_pod_limits(obj, ranges)

    async def resource_quota(req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> Settle | None:
        if not res.namespaced or not res.stored or req.info.subresource or not ns:
            return None
        if not (await registry.list(QUOTAS, ns)).items:
            return None
        ticket = None if req.query.get("dryRun") else charges.begin(ns)
        try:
            async with charges.lock(ns):
                await charge(registry, res.plural, res.group, ns, obj, ticket)
        except BaseException:
            if ticket is not None:
                ticket.settle(False)
            raise
        return None if ticket is None else ticket.settle

    resources.admission.insert(0, limit_ranger)
    resources.admission.append(resource_quota)
    return charges
