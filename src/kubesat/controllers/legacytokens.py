"""Legacy (Secret-based) token housekeeping: the tracking ConfigMap (spec §5.2), the last-used label
rule (§1.6) and the cleaner of unused auto-generated tokens (§5.3).

Dates are UTC `YYYY-MM-DD` strings and, once known to parse, are compared as strings, as Kubernetes
does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, UTC
from typing import Any
from collections.abc import Callable

from kubesat import errors
from kubesat.auth.admission import pod_secret_names
from kubesat.controllers.base import cancel, watch_in_background
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.meta import as_dict
from kubesat.registry.secret import SA_NAME_KEY, SA_UID_KEY, TYPE_SA_TOKEN
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.legacytokens")

SECRETS = builtin_kind("v1", "Secret")
SERVICEACCOUNTS = builtin_kind("v1", "ServiceAccount")
CONFIGMAPS = builtin_kind("v1", "ConfigMap")
PODS = builtin_kind("v1", "Pod")
assert SECRETS and SERVICEACCOUNTS and CONFIGMAPS and PODS

TRACKING_NAMESPACE = "kube-system"
TRACKING_CONFIGMAP = "kube-apiserver-legacy-service-account-token-tracking"
TRACKING_SINCE_KEY = "since"

LAST_USED_LABEL = "kubernetes.io/legacy-token-last-used"
INVALID_SINCE_LABEL = "kubernetes.io/legacy-token-invalid-since"

DEFAULT_CLEANER_SYNC_INTERVAL = 24 * 3600  # seconds (DefaultCleanerSyncInterval)
DEFAULT_CLEAN_UP_PERIOD_DAYS = 365  # --legacy-service-account-token-clean-up-period in Kubernetes

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


# ----------------------------------------------------------------------------- dates
def utc_date(ts: float) -> str:
    """The UTC calendar date of a Unix time, as `YYYY-MM-DD`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def parse_date(value: Any) -> date | None:
    """A `YYYY-MM-DD` date as Go's time.Parse("2006-01-02") takes it (zero-padded, a real day); else None."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _next_day(today: str) -> str:
    d = parse_date(today)
    if d is None:
        raise ValueError(f"not a YYYY-MM-DD date: {today!r}")
    return (d + timedelta(days=1)).isoformat()


# -------------------------------------------------------------------- last-used label
def last_used_patch_needed(secret: dict[str, Any], today: str) -> bool:
    """True when the secret's last-used label is neither `today` nor the day after (clock skew).

    So a token in use costs at most one write a day.
    """
    labels = (secret.get("metadata") or {}).get("labels")
    current = labels.get(LAST_USED_LABEL) if isinstance(labels, dict) else None
    return current not in (today, _next_day(today))


def last_used_label(today: str) -> dict[str, str]:
    """The labels to merge into the secret: {kubernetes.io/legacy-token-last-used: today}."""
    return {LAST_USED_LABEL: today}


def last_used_patch(secret: dict[str, Any], today: str) -> dict[str, Any]:
    """The JSON merge patch Kubernetes sends: an apply configuration with name, namespace, uid and the label."""
    meta = secret.get("metadata") or {}
    return {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "labels": last_used_label(today),
        },
    }


# ---------------------------------------------------------------- tracking ConfigMap
async def tracked_since(registry: Registry) -> date | None:
    """The tracking ConfigMap's `since` date, or None if the ConfigMap or a valid date is missing."""
    cm = await registry.get_or_none(CONFIGMAPS, TRACKING_NAMESPACE, TRACKING_CONFIGMAP)
    if cm is None:
        return None
    data = cm.get("data")
    return parse_date(data.get(TRACKING_SINCE_KEY) if isinstance(data, dict) else None)


class LegacyTokenTracking:
    """Keeps kube-system/kube-apiserver-legacy-service-account-token-tracking with `since: <date>`.

    The ConfigMap records since when this cluster has been labelling legacy tokens with their
    last use; the cleaner counts from the day after. Missing: created with today. An unparsable
    `since`: rewritten with today. Any other value is left alone.

    Kubernetes limits the creation to once per 30 minutes (burst 1) so that apiservers of mixed
    versions in an HA cluster do not fight over it. kubesat is a single server, so it recreates
    a deleted ConfigMap at once instead.
    """

    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._key = CONFIGMAPS.key(TRACKING_NAMESPACE, TRACKING_CONFIGMAP)

    async def start(self) -> None:
        rev = await self.resync()
        self._task = watch_in_background(self.registry.store, rev, self._on_event, self.resync, "legacy-token-tracking")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def resync(self) -> int:
        rev = await self.registry.revision()
        await self.sync()
        return rev

    async def _on_event(self, ev: WatchEvent) -> None:
        if ev.key == self._key:
            await self.sync()

    async def sync(self) -> None:
        today = utc_date(self.clock())
        cm = await self.registry.get_or_none(CONFIGMAPS, TRACKING_NAMESPACE, TRACKING_CONFIGMAP)
        if cm is None:
            try:
                await self.registry.create(CONFIGMAPS, TRACKING_NAMESPACE, {
                    "metadata": {"name": TRACKING_CONFIGMAP, "namespace": TRACKING_NAMESPACE},
                    "data": {TRACKING_SINCE_KEY: today},
                })
            except errors.StatusError as e:
                if e.reason != "AlreadyExists":
                    log.warning("legacy-token-tracking: creating %s/%s: %s", TRACKING_NAMESPACE,
                                TRACKING_CONFIGMAP, e.message)
            return
        data = cm.get("data")
        if parse_date(data.get(TRACKING_SINCE_KEY) if isinstance(data, dict) else None) is not None:
            return

        def rewrite(obj: dict[str, Any]) -> dict[str, Any]:
            d = obj.get("data")
            if not isinstance(d, dict):
                d = obj["data"] = {}
            if parse_date(d.get(TRACKING_SINCE_KEY)) is None:
                d[TRACKING_SINCE_KEY] = today
            return obj

        try:
            await self.registry.guaranteed_update(CONFIGMAPS, TRACKING_NAMESPACE, TRACKING_CONFIGMAP, rewrite)
        except errors.StatusError as e:
            if e.code not in (404, 409):
                log.warning("legacy-token-tracking: updating %s/%s: %s", TRACKING_NAMESPACE,
                            TRACKING_CONFIGMAP, e.message)


# --------------------------------------------------------------------------- cleaner
@dataclass
class CleanerPass:
    """What one pass of the cleaner did (for logs and tests)."""

    ran: bool = False  # False: tracking has not run a full period yet (or its ConfigMap is unusable)
    invalidated: list[tuple[str, str]] = field(default_factory=list)  # (namespace, name) newly labelled
    deleted: list[tuple[str, str]] = field(default_factory=list)


def _parse_rfc3339(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None


def _unused_since(secret: dict[str, Any], cutoff: datetime, preserve_used_on_or_after: str) -> bool:
    """A service-account token Secret, older than `cutoff`, not being deleted, and not used since then."""
    if secret.get("type") != TYPE_SA_TOKEN:
        return False
    meta = secret["metadata"]
    created = _parse_rfc3339(meta.get("creationTimestamp"))
    if created is None or not created < cutoff:
        return False
    if meta.get("deletionTimestamp"):
        return False
    labels = as_dict(meta.get("labels"))
    if LAST_USED_LABEL in labels:
        last_used = labels[LAST_USED_LABEL]
        if parse_date(last_used) is None:
            log.warning("legacy-token-cleaner: secret %s/%s: unparsable %s %r", meta.get("namespace", ""),
                        meta["name"], LAST_USED_LABEL, last_used)
            return False
        if last_used >= preserve_used_on_or_after:
            return False
    return True


class LegacyTokenCleaner:
    """Invalidates, then deletes, auto-generated token Secrets unused for a whole period (spec §5.3).

    A token is a candidate when it is older than the period, not being deleted, not used within
    the period (its last-used label; none counts as never), listed in its ServiceAccount's
    `secrets` (manual tokens are never touched) and mounted by no pod of its namespace. A
    candidate first gets the label `kubernetes.io/legacy-token-invalid-since: <today>`; once that
    date is a full period old it is deleted (resourceVersion precondition). Using the token
    again refreshes last-used, which takes it out of the candidates.

    Kubernetes runs this in kube-controller-manager by default (period 365 days); kubesat runs it
    only when a period is configured.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        period_days: float = DEFAULT_CLEAN_UP_PERIOD_DAYS,
        clock: Callable[[], float] = time.time,
        interval: float = DEFAULT_CLEANER_SYNC_INTERVAL,
    ) -> None:
        if not period_days > 0:
            raise ValueError(f"invalid clean-up period: {period_days} days")
        if not interval > 0:
            raise ValueError(f"invalid sync interval: {interval}s")
        self.registry = registry
        self.period = timedelta(days=period_days)
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _loop(self) -> None:
        # As wait.Until: a pass at once, then one every interval.
        while True:
            try:
                done = await self.run_once()
                if done.invalidated or done.deleted:
                    log.info("legacy-token-cleaner: invalidated %d, deleted %d token secrets",
                             len(done.invalidated), len(done.deleted))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - try again next interval
                log.exception("legacy-token-cleaner: pass failed")
            await asyncio.sleep(self.interval)

    async def run_once(self, now: float | None = None) -> CleanerPass:
        out = CleanerPass()
        now_dt = datetime.fromtimestamp(self.clock() if now is None else now, UTC)
        since = await tracked_since(self.registry)
        if since is None:
            log.warning("legacy-token-cleaner: no usable %s/%s ConfigMap; skipping this pass",
                        TRACKING_NAMESPACE, TRACKING_CONFIGMAP)
            return out
        # From 00:00 UTC on the day after tracking began (allows for clock skew).
        tracking_start = datetime(since.year, since.month, since.day, tzinfo=UTC) + timedelta(days=1)
        if now_dt < tracking_start + self.period:
            return out  # not tracked for a full period yet
        out.ran = True
        cutoff = now_dt - self.period
        preserve_used_on_or_after = cutoff.strftime("%Y-%m-%d")
        today = now_dt.strftime("%Y-%m-%d")
        mounted: dict[str, set[str]] = {}

        for secret in (await self.registry.list(SECRETS, "")).items:
            if not _unused_since(secret, cutoff, preserve_used_on_or_after):
                continue
            if not await self._auto_generated(secret):
                continue
            meta = secret["metadata"]
            ns, name = meta.get("namespace", ""), meta["name"]
            if ns not in mounted:
                mounted[ns] = await self._mounted_secret_names(ns)
            if name in mounted[ns]:
                continue
            await self._invalidate_or_delete(secret, today, preserve_used_on_or_after, out)
        return out

    async def _invalidate_or_delete(self, secret: dict[str, Any], today: str, preserve_used_on_or_after: str,
                                    out: CleanerPass) -> None:
        """An unused token Secret is first labelled invalid, and deleted once it has been invalid for a period."""
        meta = secret["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        labels = as_dict(meta.get("labels"))
        invalid_since = labels.get(INVALID_SINCE_LABEL, "")
        if parse_date(invalid_since) is None:
            if await self._invalidate(secret, today):
                out.invalidated.append((ns, name))
            return
        if invalid_since >= preserve_used_on_or_after:
            return
        log.info("legacy-token-cleaner: deleting unused auto-generated token secret %s/%s "
                 "(last used %s, invalid since %s)", ns, name, labels.get(LAST_USED_LABEL, "never"),
                 invalid_since)
        try:
            await self.registry.delete(SECRETS, ns, name,
                                       DeleteOptions(resource_version=meta.get("resourceVersion", "")))
            out.deleted.append((ns, name))
        except errors.StatusError as e:
            if e.code not in (404, 409):
                log.warning("legacy-token-cleaner: deleting %s/%s: %s", ns, name, e.message)

    async def _auto_generated(self, secret: dict[str, Any]) -> bool:
        """Its ServiceAccount exists (uid matching, if annotated) and lists it in `secrets`."""
        meta = secret["metadata"]
        ann = as_dict(meta.get("annotations"))
        sa_name = ann.get(SA_NAME_KEY) or ""
        if not sa_name:
            return False
        sa = await self.registry.get_or_none(SERVICEACCOUNTS, meta.get("namespace", ""), sa_name)
        if sa is None:
            return False
        sa_uid = ann.get(SA_UID_KEY) or ""
        if sa_uid and sa["metadata"].get("uid") != sa_uid:
            return False
        return any(isinstance(r, dict) and r.get("name") == meta["name"] for r in sa.get("secrets") or [])

    async def _mounted_secret_names(self, namespace: str) -> set[str]:
        names: set[str] = set()
        for pod in (await self.registry.list(PODS, namespace)).items:
            names.update(n for n in pod_secret_names(pod) if n)
        return names

    async def _invalidate(self, secret: dict[str, Any], today: str) -> bool:
        meta = secret["metadata"]
        uid = meta.get("uid", "")

        def label(obj: dict[str, Any]) -> dict[str, Any]:
            m = obj["metadata"]
            m["uid"] = uid  # the patch carries the uid: a recreated secret of that name is left alone
            labels = m.get("labels")
            if not isinstance(labels, dict):
                labels = m["labels"] = {}
            labels[INVALID_SINCE_LABEL] = today
            return obj

        log.info("legacy-token-cleaner: marking auto-generated token secret %s/%s invalid since %s",
                 meta.get("namespace"), meta["name"], today)
        try:
            await self.registry.guaranteed_update(SECRETS, meta.get("namespace", ""), meta["name"], label)
            return True
        except errors.StatusError as e:
            log.warning("legacy-token-cleaner: labelling %s/%s invalid: %s", meta.get("namespace"),
                        meta["name"], e.message)
            return False
