"""The tokens controller (spec §5.1), legacy-token tracking (§5.2), the last-used rule (§1.6) and the
legacy token cleaner (§5.3), over an in-memory store with a fake signer and an injected clock."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, UTC
from typing import Any
from collections.abc import Awaitable, Callable

import pytest

from kubesat import errors
from kubesat.auth import serviceaccount as authsa
from kubesat.controllers import legacytokens as lt
from kubesat.controllers.legacytokens import (
    INVALID_SINCE_LABEL,
    LAST_USED_LABEL,
    TRACKING_CONFIGMAP,
    LegacyTokenCleaner,
    LegacyTokenTracking,
    last_used_label,
    last_used_patch,
    last_used_patch_needed,
    parse_date,
    utc_date,
)
from kubesat.controllers.tokens import TokensController
from kubesat.registry.kinds import lookup_kind
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.memory import MemoryStore
from kubesat.tokens.claims import legacy_claims

NAMESPACES = lookup_kind("v1", "Namespace")
SECRETS = lookup_kind("v1", "Secret")
SERVICEACCOUNTS = lookup_kind("v1", "ServiceAccount")
CONFIGMAPS = lookup_kind("v1", "ConfigMap")
PODS = lookup_kind("v1", "Pod")

SA_TOKEN = "kubernetes.io/service-account-token"
NAME_KEY = "kubernetes.io/service-account.name"
UID_KEY = "kubernetes.io/service-account.uid"
FAKE_TOKEN = "header.payload.signature"
ROOT_CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
DAY = 86400


def ts(day: str) -> float:
    """Unix time of 12:00 UTC on a YYYY-MM-DD day."""
    return datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC).timestamp()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(value: str) -> str:
    return base64.b64decode(value).decode()


class Env:
    def __init__(self, now: float) -> None:
        self.now = now
        self.store = MemoryStore.open()
        self.registry = Registry(self.store, clock=lambda: self.now)
        self.signed: list[dict[str, Any]] = []

    def clock(self) -> float:
        return self.now

    def sign(self, claims: dict[str, Any]) -> str:
        self.signed.append(claims)
        return FAKE_TOKEN

    def controller(self) -> TokensController:
        return TokensController(self.registry, self.sign, ROOT_CA, clock=self.clock)

    async def namespace(self, name: str) -> None:
        await self.registry.create(NAMESPACES, "", {"metadata": {"name": name}})

    async def sa(self, ns: str, name: str, secrets: list[str] | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = {"metadata": {"name": name}}
        if secrets is not None:
            obj["secrets"] = [{"name": s} for s in secrets]
        return await self.registry.create(SERVICEACCOUNTS, ns, obj)

    async def token_secret(self, ns: str, name: str, sa: str, *, uid: str = "", data: dict[str, str] | None = None,
                           labels: dict[str, str] | None = None) -> dict[str, Any]:
        ann = {NAME_KEY: sa}
        if uid:
            ann[UID_KEY] = uid
        meta: dict[str, Any] = {"name": name, "annotations": ann}
        if labels:
            meta["labels"] = labels
        obj: dict[str, Any] = {"metadata": meta, "type": SA_TOKEN}
        if data:
            obj["data"] = data
        return await self.registry.create(SECRETS, ns, obj)

    async def secret(self, ns: str, name: str) -> dict[str, Any] | None:
        return await self.registry.get_or_none(SECRETS, ns, name)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# =============================================================================== tokens controller
def test_populates_missing_token_ca_and_namespace() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("production")
        sa = await env.sa("production", "app-controller")
        await env.token_secret("production", "app-controller-token", "app-controller")
        await env.controller().resync()

        secret = await env.secret("production", "app-controller-token")
        assert secret is not None
        assert unb64(secret["data"]["token"]) == FAKE_TOKEN
        assert unb64(secret["data"]["ca.crt"]) == ROOT_CA
        assert unb64(secret["data"]["namespace"]) == "production"
        ann = secret["metadata"]["annotations"]
        assert ann[NAME_KEY] == "app-controller"
        assert ann[UID_KEY] == sa["metadata"]["uid"]
        assert env.signed == [legacy_claims(namespace="production", secret_name="app-controller-token",
                                            sa_name="app-controller", sa_uid=sa["metadata"]["uid"])]
    run(t)


def test_fills_only_what_is_missing_and_is_idempotent() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        await env.sa("ns", "sa")
        await env.token_secret("ns", "tok", "sa", data={"token": b64("my-own-token"), "extra": b64("x")})
        c = env.controller()
        await c.resync()
        secret = await env.secret("ns", "tok")
        assert secret is not None
        assert unb64(secret["data"]["token"]) == "my-own-token"
        assert unb64(secret["data"]["extra"]) == "x"
        assert unb64(secret["data"]["ca.crt"]) == ROOT_CA
        assert unb64(secret["data"]["namespace"]) == "ns"
        assert env.signed == []
        rv = secret["metadata"]["resourceVersion"]
        await c.resync()  # nothing left to do: no write
        again = await env.secret("ns", "tok")
        assert again is not None and again["metadata"]["resourceVersion"] == rv
    run(t)


def test_wrong_ca_is_replaced() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        await env.sa("ns", "sa")
        await env.token_secret("ns", "tok", "sa", data={"ca.crt": b64("old ca"), "token": b64("t"),
                                                         "namespace": b64("ns")})
        await env.controller().resync()
        secret = await env.secret("ns", "tok")
        assert secret is not None and unb64(secret["data"]["ca.crt"]) == ROOT_CA
    run(t)


def test_stale_copy_is_not_written() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        await env.sa("ns", "sa")
        stale = await env.token_secret("ns", "tok", "sa")

        def relabel(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"]["labels"] = {"a": "b"}
            return obj

        await env.registry.guaranteed_update(SECRETS, "ns", "tok", relabel)
        await env.controller().sync_secret(stale)  # the event for the newer copy will do it
        secret = await env.secret("ns", "tok")
        assert secret is not None and "data" not in secret
    run(t)


def test_missing_service_account_deletes_the_secret() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("production")
        await env.token_secret("production", "app-controller-token", "app-controller")
        await env.controller().resync()
        assert await env.secret("production", "app-controller-token") is None
        assert env.signed == []
    run(t)


def test_wrong_uid_deletes_the_secret() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        await env.sa("ns", "sa")
        await env.token_secret("ns", "tok", "sa", uid="00000000-0000-0000-0000-000000000000")
        await env.controller().resync()
        assert await env.secret("ns", "tok") is None
    run(t)


def test_matching_uid_annotation_populates() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        sa = await env.sa("ns", "sa")
        await env.token_secret("ns", "tok", "sa", uid=sa["metadata"]["uid"])
        await env.controller().resync()
        secret = await env.secret("ns", "tok")
        assert secret is not None and unb64(secret["data"]["token"]) == FAKE_TOKEN
    run(t)


def test_other_secrets_are_ignored_and_no_token_is_ever_created() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        await env.sa("ns", "sa")
        await env.sa("ns", "default")
        await env.registry.create(SECRETS, "ns", {"metadata": {"name": "opaque",
                                                               "annotations": {NAME_KEY: "nobody"}}})
        c = env.controller()
        await c.start()
        try:
            await env.sa("ns", "later")
            await asyncio.sleep(0.1)
        finally:
            await c.stop()
        names = [s["metadata"]["name"] for s in (await env.registry.list(SECRETS, "")).items]
        assert names == ["opaque"]
        opaque = await env.secret("ns", "opaque")
        assert opaque is not None and "data" not in opaque
    run(t)


def test_running_controller_secret_before_and_after_its_service_account() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("production")
        c = env.controller()
        await c.start()
        try:
            # Created a moment before its ServiceAccount: deleted, as Kubernetes does.
            await env.token_secret("production", "app-controller-token", "app-controller")

            async def gone() -> bool:
                return await env.secret("production", "app-controller-token") is None

            await eventually(gone)
            # Created after it: populated, and stays.
            await env.sa("production", "app-controller")
            await env.token_secret("production", "app-controller-token", "app-controller")

            async def populated() -> bool:
                s = await env.secret("production", "app-controller-token")
                return s is not None and bool((s.get("data") or {}).get("token"))

            await eventually(populated)
            await asyncio.sleep(0.1)
            assert await populated()
        finally:
            await c.stop()
    run(t)


def test_secret_created_right_after_its_service_account_is_never_deleted() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        c = env.controller()
        await c.start()
        try:
            for i in range(20):
                await env.sa("ns", f"sa{i}")
                await env.token_secret("ns", f"tok{i}", f"sa{i}")

            async def all_populated() -> bool:
                for i in range(20):
                    s = await env.secret("ns", f"tok{i}")
                    assert s is not None, f"tok{i} was deleted"
                    if not (s.get("data") or {}).get("token"):
                        return False
                return True

            await eventually(all_populated)
        finally:
            await c.stop()
    run(t)


def test_secret_deletion_removes_it_from_service_account_secrets() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        await env.sa("ns", "sa", secrets=["tok", "other"])
        await env.token_secret("ns", "tok", "sa")
        c = env.controller()
        await c.start()
        try:
            async def populated() -> bool:
                s = await env.secret("ns", "tok")
                return s is not None and bool((s.get("data") or {}).get("token"))

            await eventually(populated)
            await env.registry.delete(SECRETS, "ns", "tok")

            async def unlisted() -> bool:
                sa = await env.registry.get(SERVICEACCOUNTS, "ns", "sa")
                return sa.get("secrets") == [{"name": "other"}]

            await eventually(unlisted)
        finally:
            await c.stop()
    run(t)


def test_secret_deleted_while_not_watching_is_unlisted_at_resync() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        await env.sa("ns", "sa", secrets=["tok"])
        await env.token_secret("ns", "tok", "sa")
        c = env.controller()
        await c.resync()
        await env.registry.delete(SECRETS, "ns", "tok")
        await c.resync()
        sa = await env.registry.get(SERVICEACCOUNTS, "ns", "sa")
        assert sa.get("secrets") == []
    run(t)


def test_service_account_deletion_deletes_its_tokens() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        sa = await env.sa("ns", "sa")
        uid = sa["metadata"]["uid"]
        await env.sa("ns", "keeper")
        await env.token_secret("ns", "with-uid", "sa", uid=uid)
        await env.token_secret("ns", "no-uid", "sa")
        await env.token_secret("ns", "other-sa", "keeper")
        await env.registry.create(SECRETS, "ns", {"metadata": {"name": "opaque", "annotations": {NAME_KEY: "sa"}}})
        c = env.controller()
        await c.start()
        try:
            async def populated() -> bool:
                s = await env.secret("ns", "no-uid")
                return s is not None and bool((s.get("data") or {}).get("token"))

            await eventually(populated)
            await env.registry.delete(SERVICEACCOUNTS, "ns", "sa")

            async def cascaded() -> bool:
                return await env.secret("ns", "with-uid") is None and await env.secret("ns", "no-uid") is None

            await eventually(cascaded)
        finally:
            await c.stop()
        assert await env.secret("ns", "other-sa") is not None
        assert await env.secret("ns", "opaque") is not None
    run(t)


def test_service_account_deletion_matches_uid_annotation() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        old = await env.sa("ns", "sa")
        await env.token_secret("ns", "old-unannotated", "sa")
        await env.token_secret("ns", "old", "sa", uid=old["metadata"]["uid"])
        await env.registry.delete(SERVICEACCOUNTS, "ns", "sa")
        rev = await env.registry.revision()
        new = await env.sa("ns", "sa")
        await env.token_secret("ns", "new", "sa", uid=new["metadata"]["uid"])
        await env.token_secret("ns", "new-unannotated", "sa")  # created after the deletion
        c = env.controller()
        await c.service_account_deleted("ns", "sa", old["metadata"]["uid"], rev)
        assert await env.secret("ns", "old") is None
        assert await env.secret("ns", "old-unannotated") is None
        assert await env.secret("ns", "new") is not None
        assert await env.secret("ns", "new-unannotated") is not None
    run(t)


def test_service_account_deleted_while_not_watching_cascades_at_resync() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        await env.sa("ns", "sa")
        await env.token_secret("ns", "tok", "sa")
        c = env.controller()
        await c.resync()
        await env.registry.delete(SERVICEACCOUNTS, "ns", "sa")
        await c.resync()
        assert await env.secret("ns", "tok") is None
    run(t)


def test_immutable_secret_update_failure_is_only_logged() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("ns")
        await env.sa("ns", "sa")
        await env.registry.create(SECRETS, "ns", {"metadata": {"name": "tok", "annotations": {NAME_KEY: "sa"}},
                                                  "type": SA_TOKEN, "immutable": True})
        await env.controller().resync()  # Invalid from the registry: logged, no exception
        assert await env.secret("ns", "tok") is not None
    run(t)


# ============================================================================= last-used helpers
def test_last_used_patch_needed() -> None:
    def secret(value: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": "s", "namespace": "ns", "uid": "u"}
        if value is not None:
            meta["labels"] = {LAST_USED_LABEL: value}
        return {"metadata": meta}

    assert last_used_patch_needed(secret(None), "2024-02-28")
    assert not last_used_patch_needed(secret("2024-02-28"), "2024-02-28")
    assert not last_used_patch_needed(secret("2024-02-29"), "2024-02-28")  # tomorrow: clock skew
    assert not last_used_patch_needed(secret("2024-03-01"), "2024-02-29")
    assert not last_used_patch_needed(secret("2025-01-01"), "2024-12-31")
    assert last_used_patch_needed(secret("2024-02-27"), "2024-02-28")
    assert last_used_patch_needed(secret("2024-03-01"), "2024-02-28")
    assert last_used_patch_needed(secret("garbage"), "2024-02-28")
    assert last_used_patch_needed({"metadata": {}}, "2024-02-28")
    assert last_used_label("2024-02-28") == {"kubernetes.io/legacy-token-last-used": "2024-02-28"}
    assert last_used_patch(secret(None), "2024-02-28") == {
        "kind": "Secret", "apiVersion": "v1",
        "metadata": {"name": "s", "namespace": "ns", "uid": "u",
                     "labels": {"kubernetes.io/legacy-token-last-used": "2024-02-28"}},
    }


def test_dates_parse_as_go_does() -> None:
    assert parse_date("2024-02-29") is not None
    for bad in ("2023-02-29", "2024-1-05", "2024-01-5", "20240105", "2024-01-05T00:00:00Z", "", None, 5,
                " 2024-01-05"):
        assert parse_date(bad) is None, bad
    assert utc_date(ts("2024-05-01")) == "2024-05-01"
    assert utc_date(datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC).timestamp()) == "2024-05-01"


def test_label_names_agree_with_the_authenticator() -> None:
    assert lt.LAST_USED_LABEL == authsa.LAST_USED_LABEL
    assert lt.INVALID_SINCE_LABEL == authsa.INVALID_SINCE_LABEL


# ============================================================================== tracking ConfigMap
async def _tracking(env: Env) -> dict[str, Any] | None:
    return await env.registry.get_or_none(CONFIGMAPS, "kube-system", TRACKING_CONFIGMAP)


def test_tracking_configmap_created_and_kept() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("kube-system")
        tracking = LegacyTokenTracking(env.registry, clock=env.clock)
        await tracking.sync()
        cm = await _tracking(env)
        assert cm is not None and cm["data"] == {"since": "2024-05-01"}
        env.now += 10 * DAY
        await tracking.sync()  # a valid date stays
        cm = await _tracking(env)
        assert cm is not None and cm["data"] == {"since": "2024-05-01"}
        assert await lt.tracked_since(env.registry) == parse_date("2024-05-01")
    run(t)


def test_tracking_rewrites_unparsable_since() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("kube-system")
        await env.registry.create(CONFIGMAPS, "kube-system", {"metadata": {"name": TRACKING_CONFIGMAP},
                                                              "data": {"since": "yesterday", "other": "x"}})
        await LegacyTokenTracking(env.registry, clock=env.clock).sync()
        cm = await _tracking(env)
        assert cm is not None and cm["data"] == {"since": "2024-05-01", "other": "x"}
        await env.registry.guaranteed_update(CONFIGMAPS, "kube-system", TRACKING_CONFIGMAP,
                                             lambda o: {**o, "data": None})
        await LegacyTokenTracking(env.registry, clock=env.clock).sync()
        cm = await _tracking(env)
        assert cm is not None and cm["data"] == {"since": "2024-05-01"}
    run(t)


def test_tracking_recreates_deleted_configmap_when_running() -> None:
    async def t() -> None:
        env = Env(ts("2024-05-01"))
        await env.namespace("kube-system")
        tracking = LegacyTokenTracking(env.registry, clock=env.clock)
        await tracking.start()
        try:
            assert await _tracking(env) is not None
            env.now += DAY
            await env.registry.delete(CONFIGMAPS, "kube-system", TRACKING_CONFIGMAP)

            async def back() -> bool:
                cm = await _tracking(env)
                return cm is not None and cm["data"] == {"since": "2024-05-02"}

            await eventually(back)
        finally:
            await tracking.stop()
    run(t)


# ====================================================================================== cleaner
PERIOD = 30  # days


async def _cleaner_env() -> tuple[Env, dict[str, Any]]:
    """Tracking since 2024-01-01; tokens created that day; the cleaner may first act on 2024-02-01."""
    env = Env(ts("2024-01-01"))
    await env.namespace("kube-system")
    await env.namespace("ns")
    await LegacyTokenTracking(env.registry, clock=env.clock).sync()
    sa = await env.sa("ns", "sa", secrets=["auto", "mounted", "used-recently", "used-long-ago", "bad-label",
                                           "young", "wrong-uid", "deleting"])
    uid = sa["metadata"]["uid"]
    await env.token_secret("ns", "auto", "sa", uid=uid)
    await env.token_secret("ns", "manual", "sa", uid=uid)  # not listed in sa.secrets
    await env.token_secret("ns", "mounted", "sa", uid=uid)
    await env.token_secret("ns", "used-recently", "sa", uid=uid, labels={LAST_USED_LABEL: "2024-01-20"})
    await env.token_secret("ns", "used-long-ago", "sa", uid=uid, labels={LAST_USED_LABEL: "2023-06-01"})
    await env.token_secret("ns", "bad-label", "sa", uid=uid, labels={LAST_USED_LABEL: "last-week"})
    await env.token_secret("ns", "wrong-uid", "sa", uid="00000000-0000-0000-0000-000000000000")
    deleting = await env.registry.create(SECRETS, "ns", {
        "metadata": {"name": "deleting", "annotations": {NAME_KEY: "sa"}, "finalizers": ["example.com/hold"]},
        "type": SA_TOKEN})
    await env.registry.delete(SECRETS, "ns", "deleting", DeleteOptions(uid=deleting["metadata"]["uid"]))
    await env.registry.create(PODS, "ns", {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "v", "secret": {"secretName": "mounted"}}]}})
    env.now = ts("2024-01-25")
    await env.token_secret("ns", "young", "sa", uid=uid)
    return env, sa


def _labels(secret: dict[str, Any] | None) -> dict[str, str]:
    assert secret is not None
    return secret["metadata"].get("labels") or {}


def test_cleaner_waits_a_full_period_of_tracking() -> None:
    async def t() -> None:
        env, _ = await _cleaner_env()
        cleaner = LegacyTokenCleaner(env.registry, period_days=PERIOD, clock=env.clock)
        # Tracking counts from 2024-01-02 00:00 UTC; 30 days later is 2024-02-01 00:00 UTC.
        assert not (await cleaner.run_once(ts("2024-01-31"))).ran
        assert INVALID_SINCE_LABEL not in _labels(await env.secret("ns", "auto"))
        assert (await cleaner.run_once(ts("2024-02-01"))).ran
    run(t)


def test_cleaner_invalidates_then_deletes_one_period_later() -> None:
    async def t() -> None:
        env, _ = await _cleaner_env()
        cleaner = LegacyTokenCleaner(env.registry, period_days=PERIOD, clock=env.clock)
        done = await cleaner.run_once(ts("2024-02-02"))
        assert done.ran
        assert sorted(done.invalidated) == [("ns", "auto"), ("ns", "used-long-ago")]
        assert done.deleted == []
        assert _labels(await env.secret("ns", "auto"))[INVALID_SINCE_LABEL] == "2024-02-02"
        for kept in ("manual", "mounted", "used-recently", "bad-label", "young", "wrong-uid", "deleting"):
            assert INVALID_SINCE_LABEL not in _labels(await env.secret("ns", kept)), kept

        # Same day again, and up to a full period after the invalidation: nothing more.
        assert (await cleaner.run_once(ts("2024-02-02"))).invalidated == []
        done = await cleaner.run_once(ts("2024-03-03"))  # cutoff 2024-02-02: invalid-since not before it
        assert done.deleted == []
        # By now the recent use and the young token are a period old too: their turn to be marked.
        assert sorted(done.invalidated) == [("ns", "used-recently"), ("ns", "young")]

        # "used-long-ago" is used again (the authenticator refreshes its label).
        def used(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"]["labels"][LAST_USED_LABEL] = "2024-03-03"
            return obj

        await env.registry.guaranteed_update(SECRETS, "ns", "used-long-ago", used)

        done = await cleaner.run_once(ts("2024-03-04"))  # cutoff 2024-02-03
        assert done.deleted == [("ns", "auto")]
        assert await env.secret("ns", "auto") is None
        assert await env.secret("ns", "used-long-ago") is not None
        for kept in ("manual", "mounted", "used-recently", "bad-label", "young", "wrong-uid"):
            assert await env.secret("ns", kept) is not None, kept
        for never in ("manual", "mounted", "bad-label", "wrong-uid"):
            assert INVALID_SINCE_LABEL not in _labels(await env.secret("ns", never)), never
    run(t)


def test_cleaner_relabels_an_unparsable_invalid_since() -> None:
    async def t() -> None:
        env, _ = await _cleaner_env()

        def mark(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"].setdefault("labels", {})[INVALID_SINCE_LABEL] = "soon"
            return obj

        await env.registry.guaranteed_update(SECRETS, "ns", "auto", mark)
        cleaner = LegacyTokenCleaner(env.registry, period_days=PERIOD, clock=env.clock)
        done = await cleaner.run_once(ts("2024-06-01"))
        assert ("ns", "auto") in done.invalidated and done.deleted == []
        assert _labels(await env.secret("ns", "auto"))[INVALID_SINCE_LABEL] == "2024-06-01"
    run(t)


def test_cleaner_does_nothing_without_the_tracking_configmap() -> None:
    async def t() -> None:
        env, _ = await _cleaner_env()
        await env.registry.delete(CONFIGMAPS, "kube-system", TRACKING_CONFIGMAP)
        cleaner = LegacyTokenCleaner(env.registry, period_days=PERIOD, clock=env.clock)
        done = await cleaner.run_once(ts("2025-01-01"))
        assert not done.ran and done.invalidated == []
    run(t)


def test_cleaner_runs_on_start_and_every_interval() -> None:
    async def t() -> None:
        env, _ = await _cleaner_env()
        env.now = ts("2024-02-02")
        cleaner = LegacyTokenCleaner(env.registry, period_days=PERIOD, clock=env.clock, interval=0.05)
        await cleaner.start()
        try:
            async def invalidated() -> bool:
                return INVALID_SINCE_LABEL in _labels(await env.secret("ns", "auto"))

            await eventually(invalidated)
            env.now = ts("2024-03-10")

            async def deleted() -> bool:
                return await env.secret("ns", "auto") is None

            await eventually(deleted)
        finally:
            await cleaner.stop()
    run(t)


def test_cleaner_rejects_bad_settings() -> None:
    env = Env(ts("2024-01-01"))
    with pytest.raises(ValueError):
        LegacyTokenCleaner(env.registry, period_days=0, clock=env.clock)
    with pytest.raises(ValueError):
        LegacyTokenCleaner(env.registry, period_days=1, clock=env.clock, interval=0)


def test_status_errors_module_is_the_one_raised() -> None:
    # The controllers ignore NotFound/Conflict by status code; make sure the registry speaks it.
    async def t() -> None:
        env = Env(ts("2024-01-01"))
        with pytest.raises(errors.StatusError) as e:
            await env.registry.delete(SECRETS, "ns", "nothing")
        assert e.value.code == 404
    run(t)
