"""ControllerRevisions of StatefulSets and DaemonSets: the template snapshot each holds, its `<owner>-<hash>`
name and revision number, finding or creating the one for the current template, and pruning past
revisionHistoryLimit, as Kubernetes' controller history does."""

from __future__ import annotations

import copy
import logging
from typing import Any

from kubesat import errors
from kubesat.controllers.deployment import template_hash
from kubesat.controllers.workload import apps_kind, as_int, d, owned_by, owner_reference
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.controllers.history")

HASH_LABEL = "controller.kubernetes.io/hash"


def revisions_kind() -> Any:
    return apps_kind("ControllerRevision", "controllerrevisions")


def revision_data(template: dict[str, Any]) -> dict[str, Any]:
    """What a revision stores: the patch that puts the template back (getPatch's `$patch: replace`)."""
    snapshot = copy.deepcopy(template)
    snapshot["$patch"] = "replace"
    return {"spec": {"template": snapshot}}


def template_of(revision: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(d(d(d(revision.get("data")).get("spec")).get("template")))
    template.pop("$patch", None)
    return template


def revision_hash(data: dict[str, Any], collision_count: int) -> str:
    return template_hash(data, collision_count or None)


def number(revision: dict[str, Any]) -> int:
    return as_int(revision.get("revision"))


def owned_revisions(owner: dict[str, Any], revisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The owner's revisions, oldest first (by revision number, then name)."""
    uid = str(d(owner.get("metadata")).get("uid", ""))
    mine = [r for r in revisions if owned_by(r, uid)]
    return sorted(mine, key=lambda r: (number(r), str(d(r.get("metadata")).get("name", ""))))


def find_equal(revisions: list[dict[str, Any]], data: dict[str, Any]) -> dict[str, Any] | None:
    """The newest revision holding exactly this data."""
    equal = [r for r in revisions if r.get("data") == data]
    return equal[-1] if equal else None


def to_prune(revisions: list[dict[str, Any]], live: set[str], limit: int) -> list[dict[str, Any]]:
    """The oldest revisions no live pod or status names, beyond the history limit."""
    idle = [r for r in revisions if d(r.get("metadata")).get("name") not in live]
    excess = len(idle) - max(limit, 0)
    return idle[:excess] if excess > 0 else []


def new_revision(owner: dict[str, Any], kind: str, data: dict[str, Any], revision: int, collision_count: int,
                 hash_labels: tuple[str, ...] = ()) -> dict[str, Any]:
    """NewControllerRevision: the template's labels and the hash (under each of `hash_labels` too), the owner as
    controller, named `<owner>-<hash>`."""
    meta = d(owner.get("metadata"))
    labels = dict(d(d(d(d(owner.get("spec")).get("template")).get("metadata")).get("labels")))
    digest = revision_hash(data, collision_count)
    labels[HASH_LABEL] = digest
    labels.update(dict.fromkeys(hash_labels, digest))
    return {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": f"{meta.get('name', '')}-{digest}", "namespace": meta.get("namespace", ""),
                     "labels": labels, "ownerReferences": [owner_reference(owner, "apps/v1", kind)]},
        "data": data, "revision": revision,
    }


async def list_owned(registry: Registry, owner: dict[str, Any]) -> list[dict[str, Any]]:
    ns = str(d(owner.get("metadata")).get("namespace", ""))
    return owned_revisions(owner, (await registry.list(revisions_kind(), ns)).items)


async def ensure_revision(registry: Registry, owner: dict[str, Any], kind: str, revisions: list[dict[str, Any]],
                          hash_labels: tuple[str, ...] = ()) -> tuple[dict[str, Any], int]:
    """The revision of the owner's current template, created (or renumbered as the newest) when needed; with
    the collision count, raised when another object already holds the hashed name."""
    data = revision_data(d(d(owner.get("spec")).get("template")))
    collision = as_int(d(owner.get("status")).get("collisionCount"))
    top = max((number(r) for r in revisions), default=0)
    info = revisions_kind()
    ns = str(d(owner.get("metadata")).get("namespace", ""))
    equal = find_equal(revisions, data)
    if equal is not None:
        if number(equal) < top:
            # Going back to an earlier template makes its revision the newest again, as a rollback does.
            def renumber(current: dict[str, Any]) -> dict[str, Any]:
                current["revision"] = top + 1
                return current

            equal, _ = await registry.guaranteed_update(info, ns, equal["metadata"]["name"], renumber)
        return equal, collision
    for _ in range(16):
        body = new_revision(owner, kind, data, top + 1, collision, hash_labels)
        try:
            return await registry.create(info, ns, body), collision
        except errors.StatusError as e:
            if e.code != 409:
                raise
        existing = await registry.get_or_none(info, ns, body["metadata"]["name"])
        uid = str(d(owner.get("metadata")).get("uid", ""))
        if existing is not None and existing.get("data") == data and owned_by(existing, uid):
            return existing, collision
        collision += 1
    raise errors.conflict(info.plural, str(d(owner.get("metadata")).get("name", "")),
                          "too many revision name collisions", info.group)


async def prune(registry: Registry, revisions: list[dict[str, Any]], live: set[str], limit: int) -> None:
    info = revisions_kind()
    for r in to_prune(revisions, live, limit):
        meta = d(r.get("metadata"))
        try:
            await registry.delete(info, str(meta.get("namespace", "")), str(meta.get("name", "")))
        except errors.StatusError as e:
            if e.code != 404:
                log.info("pruning ControllerRevision %s: %s", meta.get("name"), e.message)
