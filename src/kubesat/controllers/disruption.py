"""The disruption controller: each PodDisruptionBudget's status (expected, healthy and desired pods, and how
many disruptions are allowed now) from the pods its selector matches, as kube-controller-manager keeps it.

Differences from Kubernetes, said once: the expected pod count is the number of matching pods that are not
finished, where Kubernetes takes a percentage or maxUnavailable against the scale of the pods' controllers.
Pods the eviction endpoint recorded in `disruptedPods` do not count as healthy until they are gone or two
minutes have passed (Kubernetes' DeletionTimeout).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from kubesat import errors
from kubesat.apimachinery.selectors import labels_match, selector_from_label_selector_object
from kubesat.controllers.base import Key, QueuedController, loads, resource_of_key, split_key
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.policy import scaled
from kubesat.registry.store import Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.disruption")

PODS = builtin_kind("v1", "Pod")
BUDGETS = builtin_kind("policy/v1", "PodDisruptionBudget")
# How long an evicted pod may take to go before the budget counts it again.
DELETION_TIMEOUT = timedelta(minutes=2)


def pod_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def budget_matches(pdb: dict[str, Any], pod: dict[str, Any]) -> bool:
    selector = (pdb.get("spec") or {}).get("selector")
    if not selector:  # policy/v1: an empty selector matches every pod in the namespace
        return True
    return labels_match(selector_from_label_selector_object(selector), (pod.get("metadata") or {}).get("labels"))


def budget_status(pdb: dict[str, Any], pods: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The status the budget should have, given every pod in its namespace."""
    spec = pdb.get("spec") or {}
    old = pdb.get("status") or {}
    matching = [p for p in pods if budget_matches(pdb, p)
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    names = {p["metadata"]["name"] for p in matching if not p["metadata"].get("deletionTimestamp")}
    disrupted = {}
    for name, stamp in (old.get("disruptedPods") or {}).items():
        try:
            when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            continue
        if name in names and when + DELETION_TIMEOUT > now:
            disrupted[name] = stamp
    healthy = sum(1 for p in matching if not p["metadata"].get("deletionTimestamp")
                  and p["metadata"]["name"] not in disrupted and pod_ready(p))
    expected = len(matching)
    if spec.get("maxUnavailable") is not None:
        desired = max(0, expected - scaled(spec["maxUnavailable"], expected))
    elif spec.get("minAvailable") is not None:
        desired = scaled(spec["minAvailable"], expected)
    else:
        desired = 0
    allowed = max(0, healthy - desired)
    generation = (pdb.get("metadata") or {}).get("generation", 0)
    condition = {"type": "DisruptionAllowed", "status": "True" if allowed else "False",
                 "reason": "SufficientPods" if allowed else "InsufficientPods", "message": "",
                 "observedGeneration": generation}
    previous = next((c for c in old.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    if previous is not None and previous.get("status") == condition["status"]:
        condition["lastTransitionTime"] = previous.get("lastTransitionTime")
    else:
        condition["lastTransitionTime"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {"observedGeneration": generation, "disruptionsAllowed": allowed,
                              "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
                              "conditions": [condition]}
    if disrupted:
        status["disruptedPods"] = disrupted
    return status


def _disrupted(pdb: dict[str, Any]) -> Any:
    return (pdb.get("status") or {}).get("disruptedPods")


class DisruptionController(QueuedController):
    """Recomputes the budgets of a namespace whenever one of its budgets or pods changes."""

    name = "disruption"

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self._budget_namespaces: set[str] = set()

    async def _resync(self) -> int:
        rev = await self.registry.revision()
        self._budget_namespaces = {b["metadata"]["namespace"] for b in (await self.registry.list(BUDGETS, "")).items}
        for ns in self._budget_namespaces:
            self._mark(ns)
        return rev

    def _mark(self, namespace: str) -> None:
        self.queue.add((namespace, ""))  # one key per namespace: its budgets are computed together

    async def _on_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is BUDGETS:
            ns, _ = split_key(BUDGETS, ev.key)
            new, old = loads(ev.value), loads(ev.prev_value)
            # A status-only write (ours) changes nothing this controller reads.
            if new is not None and old is not None and new.get("spec") == old.get("spec") \
                    and _disrupted(new) == _disrupted(old):
                return
            self._budget_namespaces.add(ns)
            self._mark(ns)
        elif info is PODS:
            ns, _ = split_key(PODS, ev.key)
            if ns in self._budget_namespaces:
                self._mark(ns)

    async def _sync_key(self, key: Key) -> None:
        await self.sync(key[0])

    async def sync(self, namespace: str) -> None:
        budgets = (await self.registry.list(BUDGETS, namespace)).items
        if not budgets:
            self._budget_namespaces.discard(namespace)
            return
        pods = (await self.registry.list(PODS, namespace)).items
        now = datetime.fromtimestamp(self.registry.clock(), UTC)
        for pdb in budgets:
            want = budget_status(pdb, pods, now)
            if want == pdb.get("status"):
                continue

            def mutate(obj: dict[str, Any]) -> dict[str, Any]:
                obj["status"] = budget_status(obj, pods, now)
                return obj

            try:
                await self.registry.guaranteed_update(BUDGETS, namespace, pdb["metadata"]["name"], mutate,
                                                      subresource="status")
            except errors.StatusError as e:
                if e.code != 404:
                    log.warning("disruption: updating %s/%s: %s", namespace, pdb["metadata"]["name"], e.message)
