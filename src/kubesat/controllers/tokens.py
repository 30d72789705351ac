"""Tokens controller: fills in Secret-based service-account tokens and cleans up after them (spec §5.1).

What it does, as kube-controller-manager's tokens controller does since 1.24:

* A Secret of type `kubernetes.io/service-account-token` whose ServiceAccount exists (by the
  `kubernetes.io/service-account.name` annotation, and by `.uid` when that is set) gets whatever is
  missing of `data.token` (a legacy JWT, §1.2), `data["ca.crt"]` (the root CA) and `data.namespace`,
  plus both annotations. Only the copy the event showed is updated (resourceVersion precondition);
  a later event brings any newer copy back here.
* Such a Secret whose ServiceAccount does not exist (or has another uid) is deleted, with a uid
  precondition. The lookup is a live read of the store, so a Secret created after its
  ServiceAccount always finds it; one created before it is deleted, as in Kubernetes.
* A deleted token Secret is taken out of its ServiceAccount's `secrets` list.
* A deleted ServiceAccount takes its token Secrets with it (name annotation equal, uid annotation
  empty or equal).

It never creates a token Secret by itself.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Awaitable, Callable

from kubesat import errors
from kubesat.controllers.base import resource_of_key, cancel, watch_in_background, split_key
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.secret import SA_NAME_KEY, SA_UID_KEY, TYPE_SA_TOKEN, decode_value
from kubesat.registry.store import DeleteOptions, Registry, decode
from kubesat.storage.interface import WatchEvent
from kubesat.tokens.claims import legacy_claims

log = logging.getLogger("kubesat.controllers.tokens")

SECRETS = builtin_kind("v1", "Secret")
SERVICEACCOUNTS = builtin_kind("v1", "ServiceAccount")
assert SECRETS and SERVICEACCOUNTS

# Data keys of a service-account token Secret (core/v1 ServiceAccountTokenKey etc.).
TOKEN_KEY = "token"
ROOT_CA_KEY = "ca.crt"
NAMESPACE_KEY = "namespace"

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class _SecretSeen:
    """What the controller remembers of a token Secret, to act on its deletion."""

    uid: str
    sa_name: str
    sa_uid: str


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _is_token_secret(obj: dict[str, Any] | None) -> bool:
    return obj is not None and obj.get("type") == TYPE_SA_TOKEN


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    ann = (obj.get("metadata") or {}).get("annotations")
    return ann if isinstance(ann, dict) else {}


def _data(obj: dict[str, Any]) -> dict[str, Any]:
    data = obj.get("data")
    return data if isinstance(data, dict) else {}


def _seen(secret: dict[str, Any]) -> _SecretSeen:
    ann = _annotations(secret)
    return _SecretSeen(secret["metadata"].get("uid", ""), str(ann.get(SA_NAME_KEY) or ""),
                       str(ann.get(SA_UID_KEY) or ""))


def _ignorable(e: errors.StatusError) -> bool:
    # NotFound: already gone. Conflict: a precondition failed, or someone else wrote first and
    # their write's event brings us back.
    return e.code in (404, 409)


class TokensController:
    def __init__(
        self,
        registry: Registry,
        sign_legacy: Callable[[dict[str, Any]], str],
        root_ca_pem: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.sign_legacy = sign_legacy
        self.root_ca = root_ca_pem.encode() if root_ca_pem else b""
        self.clock = clock  # unused for now: legacy tokens carry no time claims; kept for symmetry
        self._task: asyncio.Task[None] | None = None
        # What the last list or event showed, so that deletions missed while the watch history
        # was lost are still acted on at the next resync (an informer's relist does the same).
        self._secrets: dict[Key, _SecretSeen] = {}
        self._accounts: dict[Key, tuple[str, int]] = {}  # -> (uid, revision last seen at)

    # ------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        rev = await self.resync()
        self._task = watch_in_background(self.registry.store, rev, self.handle_event, self.resync, "tokens-controller")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def resync(self) -> int:
        """Look at every token Secret and ServiceAccount; returns the revision to watch from."""
        rev = await self.registry.revision()
        accounts: dict[Key, tuple[str, int]] = {}
        for sa in (await self.registry.list(SERVICEACCOUNTS, "")).items:
            m = sa["metadata"]
            accounts[(m.get("namespace", ""), m["name"])] = (m.get("uid", ""), int(m.get("resourceVersion") or 0))
        secrets: dict[Key, _SecretSeen] = {}
        listed: list[dict[str, Any]] = []
        for secret in (await self.registry.list(SECRETS, "")).items:
            if _is_token_secret(secret):
                m = secret["metadata"]
                secrets[(m.get("namespace", ""), m["name"])] = _seen(secret)
                listed.append(secret)

        gone_accounts = [(k, v) for k, v in self._accounts.items() if accounts.get(k, ("",))[0] != v[0]]
        gone_secrets = [(k, v) for k, v in self._secrets.items() if k not in secrets or secrets[k].uid != v.uid]
        self._accounts = accounts
        self._secrets = secrets

        for secret in listed:
            await self._guard(self.sync_secret(secret), secret)
        for (ns, name), (uid, seen_rev) in gone_accounts:
            await self.service_account_deleted(ns, name, uid, seen_rev)
        for (ns, name), seen in gone_secrets:
            await self.secret_deleted(ns, name, seen)
        return rev

    async def _guard(self, work: Awaitable[None], obj: dict[str, Any]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad object must not stop a resync
            m = obj.get("metadata", {})
            log.exception("tokens-controller: syncing %s/%s", m.get("namespace"), m.get("name"))

    # --------------------------------------------------------------------------- events
    async def handle_event(self, ev: WatchEvent) -> None:
        info = resource_of_key(ev.key)
        if info is SECRETS:
            ns, name = split_key(info, ev.key)
            if ev.type == "DELETE":
                seen = self._secrets.pop((ns, name), None)
                old = decode(ev.prev_value, ev.revision) if ev.prev_value is not None else None
                if _is_token_secret(old):
                    assert old is not None
                    await self.secret_deleted(ns, name, _seen(old))
                elif seen is not None:
                    await self.secret_deleted(ns, name, seen)
                return
            if ev.value is None:
                return
            secret = decode(ev.value, ev.revision)
            if not _is_token_secret(secret):
                return
            self._secrets[(ns, name)] = _seen(secret)
            await self.sync_secret(secret)
        elif info is SERVICEACCOUNTS:
            ns, name = split_key(info, ev.key)
            if ev.type == "DELETE":
                remembered = self._accounts.pop((ns, name), None)
                old = decode(ev.prev_value, ev.revision) if ev.prev_value is not None else None
                uid = old["metadata"].get("uid", "") if old is not None else (remembered or ("", 0))[0]
                await self.service_account_deleted(ns, name, uid, ev.revision)
                return
            if ev.value is not None:
                sa = decode(ev.value, ev.revision)
                self._accounts[(ns, name)] = (sa["metadata"].get("uid", ""), ev.revision)
            # A ServiceAccount that exists needs nothing: token Secrets are not made for it.

    # ---------------------------------------------------------------------- token Secret
    async def _service_account(self, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        """The live ServiceAccount a token Secret names, or None if absent or of another uid."""
        sa = await self.registry.get_or_none(SERVICEACCOUNTS, namespace, name)
        if sa is None or (uid and sa["metadata"].get("uid") != uid):
            return None
        return sa

    def _needs(self, secret: dict[str, Any]) -> tuple[bool, bool, bool]:
        """(ca.crt, namespace, token): which of them must be written."""
        data = _data(secret)
        needs_ca = bool(self.root_ca) and (decode_value(data.get(ROOT_CA_KEY)) or b"") != self.root_ca
        needs_ns = not (decode_value(data.get(NAMESPACE_KEY)) or b"")
        needs_token = not (decode_value(data.get(TOKEN_KEY)) or b"")
        return needs_ca, needs_ns, needs_token

    async def sync_secret(self, secret: dict[str, Any]) -> None:
        """Populate a token Secret, or delete it when its ServiceAccount is not there.

        `secret` is the copy an event or a list showed (with its resourceVersion).
        """
        if not _is_token_secret(secret):
            return
        meta = secret["metadata"]
        ns, name, uid = meta.get("namespace", ""), meta["name"], meta.get("uid", "")
        seen = _seen(secret)
        if not seen.sa_name:
            # Validation requires the annotation; Kubernetes' lookup of an empty name fails and
            # is retried, never treated as "not found".
            log.warning("tokens-controller: secret %s/%s names no service account", ns, name)
            return
        sa = await self._service_account(ns, seen.sa_name, seen.sa_uid)
        if sa is None:
            log.info("tokens-controller: service account %s/%s does not exist, deleting token secret %s",
                     ns, seen.sa_name, name)
            await self._delete_secret(ns, name, uid)
            return
        if not any(self._needs(secret)):
            return
        cached_rv = meta.get("resourceVersion", "")
        sa_name = sa["metadata"]["name"]
        sa_uid = sa["metadata"].get("uid", "")

        def populate(live: dict[str, Any]) -> dict[str, Any]:
            live_meta = live["metadata"]
            if cached_rv:
                # Only the copy we looked at; a newer one has its own event coming.
                live_meta["resourceVersion"] = cached_rv
            needs_ca, needs_ns, needs_token = self._needs(live)
            if not (needs_ca or needs_ns or needs_token):
                return live
            data = live.get("data")
            if not isinstance(data, dict):
                data = live["data"] = {}
            if needs_ca:
                data[ROOT_CA_KEY] = _b64(self.root_ca)
            if needs_ns:
                data[NAMESPACE_KEY] = _b64(ns.encode())
            if needs_token:
                claims = legacy_claims(namespace=ns, secret_name=name, sa_name=sa_name, sa_uid=sa_uid)
                data[TOKEN_KEY] = _b64(self.sign_legacy(claims).encode())
            ann = live_meta.get("annotations")
            if not isinstance(ann, dict):
                ann = live_meta["annotations"] = {}
            ann[SA_NAME_KEY] = sa_name
            ann[SA_UID_KEY] = sa_uid
            return live

        try:
            await self.registry.guaranteed_update(SECRETS, ns, name, populate)
        except errors.StatusError as e:
            if not _ignorable(e):
                log.warning("tokens-controller: populating token secret %s/%s: %s", ns, name, e.message)

    async def _delete_secret(self, ns: str, name: str, uid: str) -> None:
        try:
            await self.registry.delete(SECRETS, ns, name, DeleteOptions(uid=uid))
        except errors.StatusError as e:
            if not _ignorable(e):
                log.warning("tokens-controller: deleting token secret %s/%s: %s", ns, name, e.message)

    # ------------------------------------------------------------------------ deletions
    async def secret_deleted(self, ns: str, name: str, seen: _SecretSeen) -> None:
        """Take a deleted token Secret out of its ServiceAccount's `secrets` list."""
        if not seen.sa_name:
            return

        def unlist(sa: dict[str, Any]) -> dict[str, Any]:
            if seen.sa_uid and sa["metadata"].get("uid") != seen.sa_uid:
                return sa
            refs = sa.get("secrets")
            if not isinstance(refs, list):
                return sa
            kept = [r for r in refs if not (isinstance(r, dict) and r.get("name") == name)]
            if len(kept) != len(refs):
                sa["secrets"] = kept
            return sa

        current = await self._service_account(ns, seen.sa_name, seen.sa_uid)
        if current is None or not any(isinstance(r, dict) and r.get("name") == name
                                      for r in current.get("secrets") or []):
            return
        try:
            await self.registry.guaranteed_update(SERVICEACCOUNTS, ns, seen.sa_name, unlist)
        except errors.StatusError as e:
            if e.code != 404:
                log.warning("tokens-controller: removing secret %s from service account %s/%s: %s",
                            name, ns, seen.sa_name, e.message)

    async def service_account_deleted(self, ns: str, name: str, uid: str, revision: int) -> None:
        """Delete the token Secrets of a deleted ServiceAccount.

        A Secret with no uid annotation that the store created after `revision` (the deletion,
        or the last time the account was seen) is left to its own sync: it may belong to a new
        ServiceAccount of the same name, and if it does not, that sync deletes it.
        """
        live = await self.registry.get_or_none(SERVICEACCOUNTS, ns, name)
        if live is not None and uid and live["metadata"].get("uid") == uid:
            return  # still there (it is being deleted with finalizers, or the event was stale)
        res = await self.registry.store.list(SECRETS.list_prefix(ns))
        for kv in res.items:
            secret = decode(kv.value, kv.mod_revision)
            if not _is_token_secret(secret):
                continue
            seen = _seen(secret)
            if seen.sa_name != name or (seen.sa_uid and seen.sa_uid != uid):
                continue
            if not seen.sa_uid and kv.create_revision > revision:
                continue
            log.info("tokens-controller: service account %s/%s deleted, deleting token secret %s",
                     ns, name, secret["metadata"]["name"])
            await self._delete_secret(ns, secret["metadata"]["name"], seen.uid)
