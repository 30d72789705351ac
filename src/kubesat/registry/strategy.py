"""Per-kind behaviour the generic registry calls: defaults, validation, update rules, table, fields.

Each served kind has one Strategy (registry/<kind>.py); the generic store (registry/store.py)
owns storage, metadata bookkeeping (uid, resourceVersion, generation, timestamps) and
concurrency, and calls these hooks at fixed points. Hooks are pure: they get dicts in the
Kubernetes JSON form and either mutate the object in place (prepare_*) or return FieldErrors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubesat.errors import FieldError
from kubesat.registry.kinds import ResourceInfo
from kubesat.apimachinery.duration import age


class Strategy:
    """Defaults suit a plain namespaced or cluster-scoped object with no spec/status split."""

    info: ResourceInfo
    # True for kinds whose spec changes bump metadata.generation (objects with spec and status).
    has_generation: bool = False
    # True when the main resource ignores writes to `status` and the status subresource owns it.
    has_status: bool = False
    # How metadata.name is validated: "subdomain" (DNS-1123 subdomain, most kinds), "label"
    # (DNS-1123 label, e.g. Namespace) or "path_segment" (RBAC kinds: anything but "/", "%", "." and "..").
    name_rule: str = "subdomain"
    # The propagation a delete that names none gets ("" is background: dependents go after the owner).
    # "Orphan" for the kinds Kubernetes keeps the old default for (batch/v1 Jobs, v1 ReplicationControllers).
    default_propagation: str = ""

    def __init__(self, info: ResourceInfo) -> None:
        self.info = info

    # --- create -------------------------------------------------------------------------
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        """Apply API defaults and clear what a client may not set on create (e.g. status)."""

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        """Validate a whole object (metadata included) for create."""
        return []

    # --- update -------------------------------------------------------------------------
    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """Apply defaults to `new`; keep what an update may not change (e.g. status from `old`)."""

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        """Validate `new` and its transition from `old` (immutable fields)."""
        return self.validate(new)

    def spec_changed(self, new: dict[str, Any], old: dict[str, Any]) -> bool:
        """Whether an update changes what metadata.generation counts (for kinds with has_generation)."""
        return new.get("spec") != old.get("spec")

    def prepare_for_subresource_update(self, subresource: str, new: dict[str, Any], old: dict[str, Any]) -> None:
        """On a subresource other than status and finalize (e.g. a CSR's approval): as a main update unless
        the kind says otherwise."""
        self.prepare_for_update(new, old)

    def prepare_for_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """On the status subresource: keep everything of `old` but status."""
        status = new.get("status")
        new.clear()
        new.update({k: v for k, v in old.items() if k != "status"})
        if status is not None:
            new["status"] = status

    # --- delete -------------------------------------------------------------------------
    def graceful_delete(self, obj: dict[str, Any]) -> bool:
        """True to keep the object (with a deletionTimestamp) even though no finalizer holds it."""
        return False

    def deletion_grace(self, obj: dict[str, Any], requested: int | None) -> int | None:
        """For kinds deleted gracefully (pods): the grace period in seconds a delete gives the object,
        from the one the client asked for (None: not given). None: the kind has no graceful deletion."""
        return None

    def on_delete_requested(self, obj: dict[str, Any]) -> None:
        """Mark an object whose deletion was asked for but must wait (e.g. a Namespace turns Terminating)."""

    def finalized(self, obj: dict[str, Any]) -> bool:
        """True once nothing holds a deleting object any more, so the store may remove it."""
        return not obj.get("metadata", {}).get("finalizers")

    # --- reads --------------------------------------------------------------------------
    def table_columns(self) -> list[dict[str, Any]]:
        """Table columnDefinitions as `kubectl get` shows them for this kind."""
        return [
            {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0},
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        """One Table row's cells, matching table_columns()."""
        return [obj.get("metadata", {}).get("name", ""), age(obj, now)]

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        """Value of a supported field selector, as a string; None if the field is not supported."""
        meta = obj.get("metadata", {})
        value: str | None = None  # names are strings once an object is stored
        if field == "metadata.name":
            value = meta.get("name", "")
        elif field == "metadata.namespace":
            value = meta.get("namespace", "")
        return value


def sync_dual_field(part: dict[str, Any], single: str, plural: str, key: str | None = None) -> None:
    """Keep a singular field and its plural in step as the v1 conversion does (podIP/podIPs, hostIP/hostIPs,
    podCIDR/podCIDRs): a singular that is set and differs from the plural's first entry wins (the plural
    becomes just it); a plural given alone fills the singular. `key`: the plural's items are objects
    holding the value under it (`{"ip": ...}`)."""
    one = part.get(single)
    found = part.get(plural)
    many: list[Any] = found if isinstance(found, list) else []

    def first() -> Any:
        item = many[0]
        return item.get(key) if key is not None and isinstance(item, dict) else item

    if one and (not many or first() != one):
        many = [{key: one} if key is not None else one]
        part[plural] = many
    if many:
        part[single] = first()
