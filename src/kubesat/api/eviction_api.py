"""POST pods/NAME/eviction: a pod deleted only if its PodDisruptionBudget allows it, as kube-apiserver's
eviction subresource decides (what `kubectl drain` calls for every pod of a node)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubesat import errors
from kubesat.api.app import Request, Response, json_response
from kubesat.api.resources import ResourceHandler, status_success
from kubesat.controllers.disruption import budget_matches, pod_ready
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.store import DeleteOptions, Registry

PODS = builtin_kind("v1", "Pod")
BUDGETS = builtin_kind("policy/v1", "PodDisruptionBudget")
TOO_MANY = "Cannot evict pod as it would violate the pod's disruption budget."
# Kubernetes refuses to track more evicted-but-not-yet-gone pods than this in one budget.
MAX_DISRUPTED_PODS = 2000


def _too_many(cause: str) -> errors.StatusError:
    return errors.StatusError(429, "TooManyRequests", TOO_MANY,
                              details={"causes": [{"reason": "DisruptionBudget", "message": cause}]})


def _delete_options(body: dict[str, Any], dry_run: bool) -> DeleteOptions:
    raw = body.get("deleteOptions")
    raw = raw if isinstance(raw, dict) else {}
    grace = raw.get("gracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
        raise errors.bad_request("deleteOptions.gracePeriodSeconds must be an integer")
    found = raw.get("preconditions")
    pre: dict[str, Any] = found if isinstance(found, dict) else {}
    prop = raw.get("propagationPolicy") or ""
    if prop not in ("", "Orphan", "Background", "Foreground"):
        raise errors.invalid("Eviction", "", [errors.not_supported(
            "deleteOptions.propagationPolicy", prop, ["Foreground", "Background", "Orphan", "nil"])])
    return DeleteOptions(grace_period=grace, uid=str(pre.get("uid") or ""), propagation=prop,
                         resource_version=str(pre.get("resourceVersion") or ""),
                         dry_run=dry_run or raw.get("dryRun") == ["All"])


def _can_ignore_budget(pod: dict[str, Any]) -> bool:
    """Finished, never started or already going: no budget counts this pod as available."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


class Evictions:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def evict(self, req: Request, res: ResourceInfo, body: dict[str, Any]) -> Response:
        ns, name = req.info.namespace, req.info.name
        meta = body.get("metadata")
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if meta.get("name", "") != name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        dry_run = bool(req.query.get("dryRun"))
        opts = _delete_options(body, dry_run)
        pod = await self.registry.get(PODS, ns, name)
        if not _can_ignore_budget(pod):
            await self._check_budget(ns, pod, dry_run)
        await self.registry.delete(PODS, ns, name, opts)
        status = status_success()
        status["code"] = 201
        return json_response(201, status, req)

    async def _check_budget(self, ns: str, pod: dict[str, Any], dry_run: bool) -> None:
        budgets = [b for b in (await self.registry.list(BUDGETS, ns)).items if budget_matches(b, pod)]
        if not budgets:
            return
        if len(budgets) > 1:
            raise errors.StatusError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which "
                                                           "the eviction subresource does not support.")
        pdb = budgets[0]
        pdb_name = pdb["metadata"]["name"]
        status = pdb.get("status") or {}
        if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 0):
            raise _too_many(f"The disruption budget {pdb_name} is still being processed by the server.")
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
        if not pod_ready(pod):
            healthy_enough = int(status.get("currentHealthy") or 0) >= int(status.get("desiredHealthy") or 0) > 0
            if policy == "AlwaysAllow" or healthy_enough:
                return
        if dry_run:
            self._check_allowed(pdb_name, status)
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pod_name = pod["metadata"]["name"]

        def take_one(obj: dict[str, Any]) -> dict[str, Any]:
            current = obj.setdefault("status", {})
            self._check_allowed(pdb_name, current)
            current["disruptionsAllowed"] = int(current.get("disruptionsAllowed") or 0) - 1
            current.setdefault("disruptedPods", {})[pod_name] = now
            return obj

        await self.registry.guaranteed_update(BUDGETS, ns, pdb_name, take_one, subresource="status")

    @staticmethod
    def _check_allowed(pdb_name: str, status: dict[str, Any]) -> None:
        allowed = int(status.get("disruptionsAllowed") or 0)
        if allowed < 0:
            raise errors.forbidden("poddisruptionbudgets", pdb_name, "pdb disruptions allowed is negative", "policy")
        if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
            raise errors.forbidden("poddisruptionbudgets", pdb_name, "DisruptedPods map too big - too many evictions "
                                   "not confirmed by PDB controller", "policy")
        if allowed == 0:
            raise _too_many(f"The disruption budget {pdb_name} needs {int(status.get('desiredHealthy') or 0)} "
                            f"healthy pods and has {int(status.get('currentHealthy') or 0)} currently")


def install(resources: ResourceHandler, registry: Registry) -> None:
    resources.create_handlers[("", "pods", "eviction")] = Evictions(registry).evict
