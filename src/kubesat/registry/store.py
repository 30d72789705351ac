"""The generic registry: object semantics over the store (what Kubernetes' generic registry Store does).

It owns uid, resourceVersion, generation and timestamps, optimistic concurrency, generateName,
finalizers and deletionTimestamp, dry runs, list paging and watch filtering; each kind's own
rules come from its Strategy.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import copy
import enum
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, TypeVarTuple
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson

from kubesat import errors, ids, limits
from kubesat.registry import meta as meta_validation
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.apimachinery.selectors import (
    FieldSelector,
    LabelSelector,
    fields_match,
    labels_match,
)
from kubesat.registry.strategies import strategy_for
from kubesat.registry.strategy import Strategy
from kubesat.storage.interface import (
    Compacted,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListSnapshot,
    RevisionConflict,
    Store,
)

NAMESPACES = builtin_kind("v1", "Namespace")
assert NAMESPACES is not None

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
MODIFIED_MSG = "the object has been modified; please apply your changes to the latest version and try again"

# (old object or None, new object) -> None; called just before a write, e.g. to record managedFields.
WriteHook = Callable[[dict[str, Any] | None, dict[str, Any]], None]


class WriteAdmission(Protocol):
    """Admission that must wait on I/O (webhooks): `mutate` sees the object before defaults and validation and may
    change it in place, `validate` sees it after, just before the write; either raises a StatusError to refuse.
    old is None on create, new None on delete."""

    async def mutate(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None: ...

    async def validate(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None: ...

    def creating(self) -> WriteAdmission:
        """The same admission for the create an update turns into when the object does not exist."""
        ...


_rfc3339_last: tuple[int, str] = (-1, "")


# The last second RFC 3339 can write (9999-12-31T23:59:59Z): a deadline past it (a delete's grace period of
# 2^63-1 seconds, say) is written as it.
_LAST_RFC3339_SECOND = 253402300799


def rfc3339(ts: float) -> str:
    """metav1.Time's JSON form (whole seconds, UTC, between 1970 and 9999); the last second formatted is
    remembered."""
    global _rfc3339_last
    sec = min(max(int(ts), 0), _LAST_RFC3339_SECOND)
    last = _rfc3339_last
    if last[0] != sec:
        last = _rfc3339_last = (sec, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec)))
    return last[1]


_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


async def _cpu(offload: bool, fn: Callable[[*_Ts], _T], *args: *_Ts) -> _T:
    """fn(*args), on a worker thread when the object is large, so the event loop keeps serving meanwhile."""
    if offload:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


def _mutated(mutate: Callable[[dict[str, Any]], dict[str, Any]], kv: KeyValue) -> dict[str, Any]:
    """What mutate makes of a fresh copy of the stored object."""
    return mutate(decode(kv.value, kv.mod_revision))


def encode(obj: dict[str, Any]) -> bytes:
    """Stored form: the object without resourceVersion (the store's mod revision is the truth)."""
    meta = obj.get("metadata") or {}
    rv = meta.pop("resourceVersion", None)
    try:
        data = orjson.dumps(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv
    limits.check_stored(data)
    return data


def decode(value: bytes, revision: int) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


@dataclass
class ListPage:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str
    remaining: int | None


# Stored objects a list reads (and decodes) at a time: the most a list or a watch's initial events
# hold at once, and the largest page answered from memory in one piece.
LIST_CHUNK = 100


class ListStream:
    """A list at one revision: `items` when it fits in a chunk, else `objects()` reads it in chunks from a snapshot."""

    __slots__ = ("snapshot", "revision", "items", "last_key", "more", "resource_version", "continue_token",
                 "_strategy", "_labels", "_fields", "_selecting", "_start_after", "_limit", "_count")

    def __init__(self, strategy: Strategy, labels: LabelSelector, fields: FieldSelector, start_after: str,
                 limit: int) -> None:
        self.snapshot: ListSnapshot | None = None  # open while the list is larger than a chunk
        self.revision = 0
        self.items: list[dict[str, Any]] | None = []  # None: too many to hold, read them with objects()
        self.last_key = ""  # the page's last key (with a limit)
        self.more = False  # a limited page was cut short
        self.resource_version = ""
        self.continue_token = ""
        self._strategy = strategy
        self._labels = labels
        self._fields = fields
        self._selecting = bool(labels or fields)
        self._start_after = start_after
        self._limit = limit
        self._count = 0

    def close(self) -> None:
        if self.snapshot is not None:
            self.snapshot.close()

    def _selected(self, kv: KeyValue) -> dict[str, Any] | None:
        obj = decode(kv.value, kv.mod_revision)
        return obj if _selected(self._strategy, obj, self._labels, self._fields) else None

    def _take(self, chunk: list[KeyValue], more_follow: bool) -> bool:
        """Count the page's objects in `chunk`, keeping them while they fit; True once the answer's
        shape is known (the list ended, the page is full, or the whole list streams)."""
        limit = self._limit
        for kv in chunk:
            if limit and self._count == limit:
                self.more = True  # a stored object follows the full page, as etcd's `more` says
                return True
            obj: dict[str, Any] | None = None
            if self.items is not None or self._selecting:
                obj = self._selected(kv)
                if obj is None:
                    continue
            self._count += 1
            self.last_key = kv.key
            if self.items is not None and obj is not None:
                self.items.append(obj)
                if len(self.items) > LIST_CHUNK:
                    self.items = None
                    if not limit:
                        return True
        if limit and self._count == limit and more_follow:
            self.more = True
            return True
        return not more_follow

    async def _measure(self, start_after: str) -> None:
        assert self.snapshot is not None
        while True:
            res = await self.snapshot.read(start_after, LIST_CHUNK)
            if self._take(res.items, res.more):
                return
            start_after = res.items[-1].key

    async def objects(self) -> AsyncIterator[dict[str, Any]]:
        """The list's objects in key order, decoded one at a time from chunks of stored ones."""
        if self.items is not None:
            for obj in self.items:
                yield obj
            return
        assert self.snapshot is not None
        after = self._start_after
        while True:
            res = await self.snapshot.read(after, LIST_CHUNK)
            for kv in res.items:
                if self._limit and kv.key > self.last_key:
                    return
                selected = self._selected(kv)
                if selected is not None:
                    yield selected
            if not res.more or not res.items:
                return
            after = res.items[-1].key


@dataclass
class DeleteOptions:
    propagation: str = ""  # "", "Background", "Foreground", "Orphan"
    uid: str = ""
    resource_version: str = ""
    dry_run: bool = False
    grace_period: int | None = None
    orphan_dependents: bool | None = None  # the request's (deprecated) orphanDependents, when it set one


class Registry:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        # Called after an object is deleted for real (e.g. to drop cached tokens); set by the server.
        self.on_delete: list[Callable[[ResourceInfo, dict[str, Any]], Awaitable[None] | None]] = []
        # Called synchronously after every committed create or update (e.g. to keep the RBAC index
        # current before the answer leaves, so a new binding works on the very next request).
        self.on_write: list[Callable[[ResourceInfo, dict[str, Any]], None]] = []

    def strategy(self, info: ResourceInfo) -> Strategy:
        return strategy_for(info)

    def now(self) -> str:
        return rfc3339(self.clock())

    # ----------------------------------------------------------------------------- reads
    async def get_or_none(self, info: ResourceInfo, namespace: str, name: str) -> dict[str, Any] | None:
        kv = await self.store.get(info.key(namespace, name))
        return None if kv is None else decode(kv.value, kv.mod_revision)

    async def get(self, info: ResourceInfo, namespace: str, name: str) -> dict[str, Any]:
        obj = await self.get_or_none(info, namespace, name)
        if obj is None:
            raise errors.not_found(info.plural, name, info.group)
        return obj

    async def open_list(
        self,
        info: ResourceInfo,
        namespace: str,
        *,
        labels: LabelSelector = (),
        fields: FieldSelector = (),
        limit: int = 0,
        continue_token: str = "",
    ) -> ListStream:
        """A list (or, with `limit`, a page of one) at one revision; close() it when done.

        A page of up to LIST_CHUNK objects is read whole; a larger one is only measured here (where it
        ends, whether more follow) and then read again in chunks by `objects()`, so that no answer ever
        holds more than a chunk of decoded objects.
        """
        prefix = info.list_prefix(namespace)
        start_after, list_rv = "", 0
        if continue_token:
            list_rv, start_after = _parse_continue(continue_token, prefix)
            if list_rv < self.store.oldest_revision():
                raise errors.gone(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter."
                )
        stream = await self._open_list(prefix, self.strategy(info), labels, fields, limit, start_after)
        stream.resource_version = str(list_rv or stream.revision)
        if stream.more and stream.last_key:
            stream.continue_token = _make_continue(list_rv or stream.revision, stream.last_key, prefix)
        return stream

    async def _open_list(self, prefix: str, strategy: Strategy, labels: LabelSelector, fields: FieldSelector,
                         limit: int, start_after: str) -> ListStream:
        stream = ListStream(strategy, labels, fields, start_after, limit)
        # The first chunk is read as it is now: a small list needs no snapshot.
        first = await self.store.list(prefix, start_after=start_after, limit=LIST_CHUNK)
        stream.revision = first.revision
        if stream._take(first.items, first.more):
            return stream  # whole in `items`: a chunk never holds more than a page of LIST_CHUNK
        snap = self.store.snapshot(prefix)
        if snap.revision != first.revision:  # a write came in between: measure again, all at the snapshot
            stream = ListStream(strategy, labels, fields, start_after, limit)
            after = start_after
        else:
            after = first.items[-1].key
        stream.snapshot, stream.revision = snap, snap.revision
        try:
            await stream._measure(after)
        except BaseException:
            stream.close()
            raise
        if stream.items is not None:
            stream.close()  # with selectors, a long list can still make a small page
        return stream

    async def list(
        self,
        info: ResourceInfo,
        namespace: str,
        *,
        labels: LabelSelector = (),
        fields: FieldSelector = (),
        limit: int = 0,
        continue_token: str = "",
    ) -> ListPage:
        """The whole list (or page) in memory, for callers that need every object at once."""
        stream = await self.open_list(info, namespace, labels=labels, fields=fields, limit=limit,
                                      continue_token=continue_token)
        try:
            items = stream.items if stream.items is not None else [obj async for obj in stream.objects()]
        finally:
            stream.close()
        return ListPage(items, stream.resource_version, stream.continue_token, None)

    async def watch(
        self,
        info: ResourceInfo,
        namespace: str,
        *,
        after_revision: int,
        labels: LabelSelector = (),
        fields: FieldSelector = (),
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) pairs: ADDED, MODIFIED, DELETED as an object enters, changes in or leaves the selection."""
        strategy = self.strategy(info)
        prefix = info.list_prefix(namespace)
        try:
            async for ev in self.store.watch(prefix, after_revision):
                new = decode(ev.value, ev.revision) if ev.value is not None else None
                old = decode(ev.prev_value, ev.revision) if ev.prev_value is not None else None
                new_in = new is not None and _selected(strategy, new, labels, fields)
                old_in = old is not None and _selected(strategy, old, labels, fields)
                if ev.type == "DELETE":
                    if old_in and old is not None:
                        old["metadata"]["resourceVersion"] = str(ev.revision)
                        yield "DELETED", old
                    continue
                if new_in and new is not None:
                    yield ("ADDED" if (ev.created or not old_in) else "MODIFIED"), new
                elif old_in and new is not None:
                    # Left the selection: watchers see it go.
                    yield "DELETED", new
        except Compacted as e:
            raise errors.gone(f"too old resource version: {e.requested} ({e.oldest})") from None

    async def revision(self) -> int:
        return await self.store.revision()

    # ---------------------------------------------------------------------------- create
    async def create(
        self,
        info: ResourceInfo,
        namespace: str,
        obj: dict[str, Any],
        *,
        dry_run: bool = False,
        hook: WriteHook | None = None,
        offload: bool = False,
        admit: WriteAdmission | None = None,
    ) -> dict[str, Any]:
        """offload: the object is large, so its validation and hook run off the event loop."""
        strategy = self.strategy(info)
        if admit is not None:
            _identify(info, namespace, obj)
            await admit.mutate(None, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind
        if info.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            gen = str(meta["generateName"])
            meta["name"] = gen[: 63 - 5] + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
        for k in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(k, None)
        meta["creationTimestamp"] = self.now()
        meta["uid"] = ids.uuid4()
        if strategy.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        strategy.prepare_for_create(obj)
        errs = meta_validation.validate_object_meta(meta, namespaced=info.namespaced, name_rule=strategy.name_rule)
        errs += await _cpu(offload, strategy.validate, obj)
        if errs:
            raise errors.invalid(info.kind, meta.get("name", ""), errs, info.group)
        if info.namespaced:
            await self._check_namespace(info, namespace, meta.get("name", ""))
        if hook:
            await _cpu(offload, hook, None, obj)
        if admit is not None:
            await admit.validate(None, obj)
        if dry_run:
            return obj
        try:
            rev = await self.store.create(info.key(namespace, meta["name"]), encode(obj))
        except KeyExists:
            raise errors.already_exists(info.plural, meta["name"], info.group) from None
        meta["resourceVersion"] = str(rev)
        self._written(info, obj)
        return obj

    async def _check_namespace(self, info: ResourceInfo, namespace: str, name: str) -> None:
        ns = await self.get_or_none(NAMESPACES, "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if ns.get("metadata", {}).get("deletionTimestamp") or ns.get("status", {}).get("phase") == "Terminating":
            raise errors.forbidden(
                info.plural, name,
                f"unable to create new content in namespace {namespace} because it is being terminated",
                info.group,
            )

    # ---------------------------------------------------------------------------- update
    async def update(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        obj: dict[str, Any],
        *,
        dry_run: bool = False,
        subresource: str = "",
        hook: WriteHook | None = None,
        offload: bool = False,
        admit: WriteAdmission | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """PUT: replace the object. Returns (object, created)."""
        strategy = self.strategy(info)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if info.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request")
        meta["name"] = name
        kv = await self.store.get(info.key(namespace, name))
        if kv is None:
            if getattr(strategy, "allow_create_on_update", False) and not subresource:
                return await self.create(info, namespace, obj, dry_run=dry_run, hook=hook, offload=offload,
                                         admit=admit.creating() if admit is not None else None), True
            raise errors.not_found(info.plural, name, info.group)
        current = decode(kv.value, kv.mod_revision)
        want_rv = meta.get("resourceVersion")
        if want_rv and want_rv != str(kv.mod_revision):
            raise errors.conflict(info.plural, name, MODIFIED_MSG, info.group)
        if admit is not None:
            await admit.mutate(current, obj)
        return await self._write_update(
            info, strategy, namespace, name, current, kv.mod_revision, obj,
            dry_run=dry_run, subresource=subresource, hook=hook,
            offload=offload or len(kv.value) > limits.OFFLOAD_BYTES, admit=admit,
        ), False

    async def guaranteed_update(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        mutate: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        dry_run: bool = False,
        subresource: str = "",
        hook: WriteHook | None = None,
        create_if_missing: Callable[[], dict[str, Any]] | None = None,
        offload: bool = False,
        admit: WriteAdmission | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """PATCH and controllers: read, mutate, write with CAS, retried on a conflict.

        offload: the change is large (so is a large stored object): mutate, validation and hook run
        off the event loop.
        """
        strategy = self.strategy(info)
        for _ in range(16):
            kv = await self.store.get(info.key(namespace, name))
            if kv is None:
                if create_if_missing is not None:
                    created = create_if_missing()
                    created.setdefault("metadata", {})["name"] = name
                    try:
                        return await self.create(info, namespace, created, dry_run=dry_run, hook=hook, offload=offload,
                                                 admit=admit.creating() if admit is not None else None), True
                    except errors.StatusError as e:
                        if e.reason == "AlreadyExists":
                            continue
                        raise
                raise errors.not_found(info.plural, name, info.group)
            current = decode(kv.value, kv.mod_revision)
            big = offload or len(kv.value) > limits.OFFLOAD_BYTES
            new = await _cpu(big, _mutated, mutate, kv)
            new_meta = new.get("metadata")
            if not isinstance(new_meta, dict):
                raise errors.bad_request("metadata must be an object")
            if new_meta.get("name", name) != name:
                raise errors.bad_request(
                    f"the name of the object ({new_meta.get('name')}) does not match the name on the URL ({name})"
                )
            want_rv = new_meta.get("resourceVersion")
            if want_rv and want_rv != str(kv.mod_revision):
                raise errors.conflict(info.plural, name, MODIFIED_MSG, info.group)
            if admit is not None:
                await admit.mutate(current, new)
            try:
                return await self._write_update(
                    info, strategy, namespace, name, current, kv.mod_revision, new,
                    dry_run=dry_run, subresource=subresource, hook=hook, offload=big, admit=admit,
                ), False
            except _Retry:
                continue
        raise errors.conflict(info.plural, name, MODIFIED_MSG, info.group)

    async def _write_update(
        self,
        info: ResourceInfo,
        strategy: Strategy,
        namespace: str,
        name: str,
        current: dict[str, Any],
        current_rev: int,
        obj: dict[str, Any],
        *,
        dry_run: bool,
        subresource: str,
        hook: WriteHook | None,
        offload: bool = False,
        admit: WriteAdmission | None = None,
    ) -> dict[str, Any]:
        changed = await _cpu(offload, self._prepare_update, info, strategy, name, namespace, current, obj,
                             subresource, hook)
        if admit is not None:
            await admit.validate(current, obj)
        if not changed:
            return current
        meta = obj["metadata"]
        old_meta = current["metadata"]
        if dry_run:
            meta["resourceVersion"] = str(current_rev)
            return obj
        key = info.key(namespace, name)
        try:
            # The last finalizer gone from a deleting object with no grace period left removes it; one whose
            # grace is still running (a pod its kubelet has not finished) stays until that deleter's call.
            if (old_meta.get("deletionTimestamp") and not old_meta.get("deletionGracePeriodSeconds")
                    and strategy.finalized(obj)):
                _, rev = await self.store.delete(key, current_rev)
                meta["resourceVersion"] = str(rev)
                await self._deleted(info, obj)
                return obj
            rev = await self.store.update(key, encode(obj), current_rev)
        except RevisionConflict:
            raise _Retry() from None
        except KeyNotFound:
            raise errors.not_found(info.plural, name, info.group) from None
        meta["resourceVersion"] = str(rev)
        self._written(info, obj)
        return obj

    def _prepare_update(self, info: ResourceInfo, strategy: Strategy, name: str, namespace: str,
                        current: dict[str, Any], obj: dict[str, Any], subresource: str,
                        hook: WriteHook | None) -> bool:
        """Server-owned fields, validation and the hook for an update; False when nothing changes."""
        meta = obj.setdefault("metadata", {})
        old_meta = current["metadata"]
        if meta.get("uid") and meta["uid"] != old_meta.get("uid"):
            raise errors.conflict(
                info.plural, name,
                f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {old_meta.get('uid')}",
                info.group,
            )
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind
        if info.namespaced:
            meta["namespace"] = namespace
        # Fields the server owns.
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        meta.pop("selfLink", None)
        if subresource == "status":
            strategy.prepare_for_status_update(obj, current)
            meta = obj["metadata"]
        elif subresource == "finalize":
            # Only spec.finalizers may change through /finalize.
            fin = (obj.get("spec") or {}).get("finalizers")
            obj.clear()
            obj.update(copy.deepcopy(current))
            meta = obj["metadata"]
            if fin:
                obj.setdefault("spec", {})["finalizers"] = fin
            else:
                obj.get("spec", {}).pop("finalizers", None)
        else:
            if subresource:
                strategy.prepare_for_subresource_update(subresource, obj, current)
            else:
                strategy.prepare_for_update(obj, current)
            if strategy.has_generation and strategy.spec_changed(obj, current):
                meta["generation"] = int(old_meta.get("generation", 1)) + 1
        # A deleting object may only lose finalizers, never gain new ones.
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                detail = ("no new finalizers can be added if the object is being deleted, "
                          f"found new finalizers {sorted(added)!r}".replace("'", '"'))
                raise errors.invalid(info.kind, name, [errors.forbidden_field("metadata.finalizers", detail)],
                                     info.group)
        errs = meta_validation.validate_object_meta_update(meta, old_meta)
        errs += strategy.validate_update(obj, current)
        if errs:
            raise errors.invalid(info.kind, name, errs, info.group)
        if hook:
            hook(current, obj)
        return not _same(obj, current)

    # ---------------------------------------------------------------------------- delete
    async def delete(
        self, info: ResourceInfo, namespace: str, name: str, opts: DeleteOptions | None = None,
        admit: WriteAdmission | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Returns (object, gone): gone is False when finalizers keep it around with a deletionTimestamp.
        admit: mutating admission sees no object (as kube-apiserver's), validating the stored one."""
        opts = opts or DeleteOptions()
        strategy = self.strategy(info)
        if admit is not None:
            await admit.mutate(None, None)
        for _ in range(16):
            kv = await self.store.get(info.key(namespace, name))
            if kv is None:
                raise errors.not_found(info.plural, name, info.group)
            obj = decode(kv.value, kv.mod_revision)
            meta = obj["metadata"]
            if opts.uid and opts.uid != meta.get("uid"):
                raise errors.conflict(
                    info.plural, name,
                    f"Precondition failed: UID in precondition: {opts.uid}, UID in object meta: {meta.get('uid')}",
                    info.group,
                )
            if opts.resource_version and opts.resource_version != meta.get("resourceVersion"):
                raise errors.conflict(
                    info.plural, name,
                    f"Precondition failed: ResourceVersion in precondition: {opts.resource_version}, "
                    f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                    info.group,
                )
            if admit is not None:
                await admit.validate(obj, None)
            plan = _plan_delete(strategy, obj, opts, self.clock())
            if plan is _DeletePlan.PENDING or (opts.dry_run and plan is _DeletePlan.KEEP):
                return obj, False
            if opts.dry_run:
                return obj, True
            rev = kv.mod_revision
            if plan is not _DeletePlan.DELETE:
                try:
                    rev = await self.store.update(info.key(namespace, name), encode(obj), rev)
                except RevisionConflict:
                    continue
                meta["resourceVersion"] = str(rev)
                self._written(info, obj)
                if plan is _DeletePlan.KEEP:
                    return obj, False
            try:
                _, rev = await self.store.delete(info.key(namespace, name), rev)
            except RevisionConflict:
                continue
            except KeyNotFound:
                if plan is _DeletePlan.DELETE:
                    raise errors.not_found(info.plural, name, info.group) from None
                return obj, True  # another deleter won the race after our update: gone all the same
            meta["resourceVersion"] = str(rev)
            await self._deleted(info, obj)
            return obj, True
        raise errors.conflict(info.plural, name, MODIFIED_MSG, info.group)

    def written(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        """Tell the write observers (the RBAC index, the node graph) of a write made past the strategy."""
        self._written(info, obj)

    def _written(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        for cb in self.on_write:
            cb(info, obj)

    async def _deleted(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        for cb in self.on_delete:
            r = cb(info, obj)
            if r is not None:
                await r


def _identify(info: ResourceInfo, namespace: str, obj: dict[str, Any]) -> None:
    """What a new object's admission sees of where it goes: its kind and its namespace."""
    obj["apiVersion"], obj["kind"] = info.api_version, info.kind
    meta = obj.get("metadata")
    if isinstance(meta, dict) and info.namespaced:
        meta["namespace"] = namespace


class _Retry(Exception):
    """The store moved under a read-modify-write; read again."""


class _DeletePlan(enum.Enum):
    """What one delete request does to a stored object (decided by `_plan_delete`)."""

    PENDING = "a graceful deletion is already under way with no longer grace: nothing to write"
    KEEP = "write the object marked as deleting and keep it (finalizers, or a grace period to run out)"
    WRITE_THEN_DELETE = "write the deletion marks, then remove the object (a graceful kind with no grace left)"
    DELETE = "remove the object now"


def _plan_delete(strategy: Strategy, obj: dict[str, Any], opts: DeleteOptions, now: float) -> _DeletePlan:
    """Decide a delete and set its marks (deletionTimestamp, deletionGracePeriodSeconds, finalizers) on `obj`,
    as the generic registry's BeforeDelete and graceful-deletion update do."""
    meta = obj["metadata"]
    requested = opts.grace_period
    if requested is not None and requested < 0:
        requested = 1  # a negative grace period counts as one second
    period = _grace_marks(strategy, obj, requested, now)
    if period is _PENDING:
        return _DeletePlan.PENDING
    old_finalizers = list(meta.get("finalizers") or [])
    finalizers = list(old_finalizers)
    propagation = opts.propagation or ("" if opts.orphan_dependents is False else strategy.default_propagation)
    if propagation == "Orphan" and "orphan" not in finalizers:
        finalizers.append("orphan")
    elif propagation == "Foreground" and "foregroundDeletion" not in finalizers:
        finalizers.append("foregroundDeletion")
    if finalizers:
        meta["finalizers"] = finalizers
    if isinstance(period, int):
        return _DeletePlan.KEEP if finalizers or period > 0 else _DeletePlan.WRITE_THEN_DELETE
    if not (finalizers or strategy.graceful_delete(obj)):
        return _DeletePlan.DELETE
    if meta.get("deletionTimestamp") and finalizers == old_finalizers:
        return _DeletePlan.PENDING
    meta.setdefault("deletionTimestamp", rfc3339(now))
    meta["deletionGracePeriodSeconds"] = 0
    strategy.on_delete_requested(obj)
    return _DeletePlan.KEEP


_PENDING = object()


def _grace_marks(strategy: Strategy, obj: dict[str, Any], requested: int | None, now: float) -> int | object | None:
    """For a kind deleted gracefully: set the deletion marks and return the grace period this delete gives
    (a second delete may only shorten it; _PENDING when it does not). None: not a graceful deletion."""
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        current = meta.get("deletionGracePeriodSeconds")
        if strategy.deletion_grace(obj, requested) is None or not isinstance(current, int) or current <= 0:
            return None  # not graceful, or a deletion with no grace left: finish it
        if requested is None or requested >= current:
            return _PENDING
        due = _parse_time(meta["deletionTimestamp"], now) - current + requested
        period = requested
        if due < now:
            due = now
            period = 1 if period else 0  # the grace ran out: as short as a graceful deletion gets
        meta["deletionTimestamp"] = rfc3339(due)
        meta["deletionGracePeriodSeconds"] = period
        return period
    grace = strategy.deletion_grace(obj, requested)
    if grace is None:
        return None
    meta["deletionTimestamp"] = rfc3339(now + grace)
    meta["deletionGracePeriodSeconds"] = grace
    if isinstance(meta.get("generation"), int) and meta["generation"] > 0:
        meta["generation"] += 1
    return grace


def _parse_time(value: Any, default: float) -> float:
    try:
        return float(calendar.timegm(time.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return default


def _selected(strategy: Strategy, obj: dict[str, Any], labels: LabelSelector, fields: FieldSelector) -> bool:
    if labels and not labels_match(labels, obj.get("metadata", {}).get("labels")):
        return False
    return not fields or fields_match(fields, lambda f: strategy.field_value(obj, f))


_VOLATILE_META = ("resourceVersion", "managedFields")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for resourceVersion and managedFields timestamps: such an update writes nothing."""
    if a.keys() != b.keys():
        return False
    for k in a:
        if k == "metadata":
            ma, mb = a[k], b[k]
            if {x for x in ma if x not in _VOLATILE_META} != {x for x in mb if x not in _VOLATILE_META}:
                return False
            if any(ma[x] != mb[x] for x in ma if x not in _VOLATILE_META):
                return False
            if _strip_times(ma.get("managedFields")) != _strip_times(mb.get("managedFields")):
                return False
        elif a[k] != b[k]:
            return False
    return True


def _strip_times(mf: Any) -> Any:
    if not isinstance(mf, list):
        return mf
    return [{k: v for k, v in e.items() if k != "time"} if isinstance(e, dict) else e for e in mf]


def _make_continue(rv: int, last_key: str, prefix: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": last_key[len(prefix):]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = orjson.loads(raw)
        rv = int(d["rv"])
        start = str(d["start"])
    except Exception:
        raise errors.bad_request("continue key is not valid: the continue token could not be decoded") from None
    if ".." in start.split("/") or start.startswith("/"):
        raise errors.bad_request("continue key is not valid: the continue token names a key outside the list")
    return rv, prefix + start

