"""CustomResourceDefinition controller: accepts a CRD's names (NamesAccepted), establishes it (Established), serves its
versions' custom resources, and on deletion removes them before letting the CRD go (the cleanup finalizer), as
apiextensions-apiserver's naming, establishing and finalizer controllers do together."""

from __future__ import annotations

import base64
import copy
import logging
from typing import Any

import orjson
from cryptography import x509

from kubesat import errors
from kubesat.controllers.base import Key, QueuedController
from kubesat.registry import apiextensions
from kubesat.registry.apiextensions import CLEANUP_FINALIZER, set_condition
from kubesat.registry.customresource import infos_for, publish_for_apply
from kubesat.registry.kinds import CUSTOM, ResourceInfo, builtin_kind, custom_resource_of_key
from kubesat.registry.meta import as_dict
from kubesat.registry.store import DeleteOptions, Registry
from kubesat.storage.interface import WatchEvent

log = logging.getLogger("kubesat.controllers.crd")

CRDS = builtin_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
PREFIX = CRDS.storage_prefix()
RECHECK_SECONDS = 1.0  # while custom resources held by finalizers keep a deleting CRD


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _used_names(crd: dict[str, Any], others: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The resource names and the kinds other CRDs of the group have been given."""
    group = as_dict(crd.get("spec")).get("group")
    name = crd["metadata"]["name"]
    resources: set[str] = set()
    kinds: set[str] = set()
    for other in others:
        if other["metadata"]["name"] == name or as_dict(other.get("spec")).get("group") != group:
            continue
        accepted = as_dict(as_dict(other.get("status")).get("acceptedNames"))
        resources |= {str(accepted.get("plural") or ""), str(accepted.get("singular") or "")}
        resources |= {str(s) for s in _list(accepted.get("shortNames"))}
        kinds |= {str(accepted.get("kind") or ""), str(accepted.get("listKind") or "")}
    resources.discard("")
    kinds.discard("")
    return resources, kinds


def _fresh(requested: Any, accepted: Any, used: set[str]) -> str:
    """'' when `requested` may be accepted, else why not."""
    if requested == accepted or requested not in used:
        return ""
    return f'"{requested}" is already in use'


def accepted_names(crd: dict[str, Any], others: list[dict[str, Any]]) -> tuple[dict[str, Any], tuple[str, str, str]]:
    """The names a CRD may be served under and its NamesAccepted condition (status, reason, message)."""
    resources, kinds = _used_names(crd, others)
    requested = as_dict(as_dict(crd.get("spec")).get("names"))
    accepted = as_dict(as_dict(crd.get("status")).get("acceptedNames"))
    new = dict(accepted)
    verdict = ("True", "NoConflicts", "no conflicts found")
    for key, used, reason in (("plural", resources, "PluralConflict"), ("singular", resources, "SingularConflict")):
        why = _fresh(requested.get(key), accepted.get(key), used)
        if why:
            verdict = ("False", reason, why)
        elif requested.get(key):
            new[key] = requested[key]
    shorts = _list(requested.get("shortNames"))
    if shorts != _list(accepted.get("shortNames")):
        taken = [f'"{s}" is already in use' for s in shorts if s not in _list(accepted.get("shortNames"))
                 and s in resources]
        if taken:
            verdict = ("False", "ShortNamesConflict", taken[0] if len(taken) == 1 else "[" + ", ".join(taken) + "]")
        elif shorts:
            new["shortNames"] = shorts
        else:
            new.pop("shortNames", None)
    for key, reason in (("kind", "KindConflict"), ("listKind", "ListKindConflict")):
        why = _fresh(requested.get(key), accepted.get(key), kinds)
        if why:
            verdict = ("False", reason, why)
        elif requested.get(key):
            new[key] = requested[key]
    if requested.get("categories"):
        new["categories"] = requested["categories"]
    else:
        new.pop("categories", None)
    return new, verdict


def ca_bundle_valid(crd: dict[str, Any]) -> bool:
    """Whether the conversion webhook's caBundle, if any, holds PEM certificates (an invalid one keeps the CRD
    from being established)."""
    conversion = as_dict(as_dict(crd.get("spec")).get("conversion"))
    bundle = as_dict(as_dict(conversion.get("webhook")).get("clientConfig")).get("caBundle")
    if conversion.get("strategy") != "Webhook" or not bundle:
        return True
    try:
        x509.load_pem_x509_certificates(base64.b64decode(str(bundle), validate=True))
    except ValueError:
        return False
    return True


class CRDController(QueuedController):
    name = "crd"

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self._served: dict[str, bytes] = {}  # CRD name -> what its served infos were built from
        self._terminating: set[str] = set()
        # Served (or no longer) as each write commits, before its answer leaves: a client that saw Established can
        # use the resource at once, and one that saw the CRD gone finds it gone.
        registry.on_write.append(self._written)
        registry.on_delete.insert(0, self._deleted)  # before any hook that awaits

    def _written(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info is CRDS:
            self._serve(obj["metadata"]["name"], obj)

    def _deleted(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info is CRDS:
            self._serve(obj["metadata"]["name"], None)

    async def _resync(self) -> int:
        rev = await self.registry.revision()
        for crd in (await self.registry.list(CRDS, "")).items:
            self.queue.add(("", crd["metadata"]["name"]))
        return rev

    async def _on_event(self, ev: WatchEvent) -> None:
        if ev.key.startswith(PREFIX):
            self.queue.add(("", ev.key[len(PREFIX):]))
        elif ev.type == "DELETE" and self._terminating:
            info = custom_resource_of_key(ev.key)
            if info is not None and info.custom is not None and info.custom.crd_name in self._terminating:
                self.queue.add(("", info.custom.crd_name))

    async def _sync_key(self, key: Key) -> None:
        name = key[1]
        crd = await self.registry.get_or_none(CRDS, "", name)
        if crd is None:
            self._serve(name, None)
            self._terminating.discard(name)
            return
        self._serve(name, crd)
        if crd["metadata"].get("deletionTimestamp"):
            await self._finalize(crd)
            return
        await self._accept_names(crd)

    def _serve(self, name: str, crd: dict[str, Any] | None) -> None:
        """Serve the CRD's versions once it is Established (as they are now), or stop serving them."""
        terminating = crd is not None and bool(crd["metadata"].get("deletionTimestamp"))
        if crd is None or not apiextensions.is_true(crd, "Established"):
            self._served.pop(name, None)
            publish_for_apply(CUSTOM.of(name), False)
            CUSTOM.set(name, ())
            return
        basis = orjson.dumps([crd.get("spec"), as_dict(crd.get("status")).get("acceptedNames"), terminating])
        if self._served.get(name) == basis:
            return
        self._served[name] = basis
        infos = infos_for(crd, terminating)
        publish_for_apply(CUSTOM.of(name), False)
        publish_for_apply(infos, True)
        CUSTOM.set(name, infos)

    async def _accept_names(self, crd: dict[str, Any]) -> dict[str, Any]:
        others = (await self.registry.list(CRDS, "")).items
        names, (status, reason, message) = accepted_names(crd, others)
        now = self.registry.now()

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            new = copy.deepcopy(current)
            st = new.setdefault("status", {})
            st["acceptedNames"] = names
            set_condition(new, "NamesAccepted", status, reason, message, now)
            if not ca_bundle_valid(new):
                set_condition(new, "Established", "False", "InvalidCABundle", "The conversion webhook CABundle is "
                              "invalid", now)
            elif not apiextensions.is_true(new, "Established"):
                if status == "True":
                    set_condition(new, "Established", "True", "InitialNamesAccepted",
                                  "the initial names have been accepted", now)
                else:
                    set_condition(new, "Established", "False", "NotAccepted", "not all names are accepted", now)
            return new

        wanted = mutate(crd)
        if wanted == crd:
            return crd
        # Served before Established is written: a client that sees the condition finds the resource there, as
        # kube-apiserver's establishing controller waits for its handler.
        self._serve(crd["metadata"]["name"], wanted)
        try:
            updated, _ = await self.registry.guaranteed_update(CRDS, "", crd["metadata"]["name"], mutate,
                                                               subresource="status")
        except errors.StatusError as e:
            if e.code == 404:
                return crd
            raise
        return updated

    async def _set_terminating(self, crd: dict[str, Any], status: str, reason: str, message: str) -> None:
        now = self.registry.now()

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            new = copy.deepcopy(current)
            set_condition(new, "Terminating", status, reason, message, now)
            return new

        if mutate(crd) != crd:
            await self.registry.guaranteed_update(CRDS, "", crd["metadata"]["name"], mutate, subresource="status")

    async def _finalize(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        self._terminating.add(name)
        if CLEANUP_FINALIZER not in (crd["metadata"].get("finalizers") or []):
            return
        if apiextensions.is_true(crd, "Established"):
            await self._set_terminating(crd, "True", "InstanceDeletionInProgress",
                                        "CustomResource deletion is in progress")
            if await self._delete_instances(crd):
                self.queue.add_after(("", name), RECHECK_SECONDS)
                return
            await self._set_terminating(crd, "False", "InstanceDeletionCompleted", "removed all instances")
        else:
            await self._set_terminating(crd, "False", "NeverEstablished", "resource was never established")
        await self._release(name)

    async def _delete_instances(self, crd: dict[str, Any]) -> int:
        """Delete every custom resource of the CRD; the number still stored afterwards."""
        infos = [i for i in CUSTOM.of(crd["metadata"]["name"]) if i.stored]
        if not infos:
            return 0
        info = infos[0]
        for obj in (await self.registry.list(info, "")).items:
            meta = obj["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            try:
                await self.registry.delete(info, meta.get("namespace", ""), meta["name"], DeleteOptions())
            except errors.StatusError as e:
                if e.code != 404:
                    log.warning("crd %s: deleting %s: %s", crd["metadata"]["name"], meta["name"], e.message)
        return await self.registry.store.count(info.storage_prefix())

    async def _release(self, name: str) -> None:
        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            new = copy.deepcopy(current)
            new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or []
                                             if f != CLEANUP_FINALIZER]
            return new

        try:
            await self.registry.guaranteed_update(CRDS, "", name, mutate)
        except errors.StatusError as e:
            if e.code != 404:
                raise
