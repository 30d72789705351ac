"""The public face of the structural-schema engine for custom resources (kubesat.apimachinery.crdschema).

Pure functions on JSON values (dicts, lists, scalars): no I/O. Each walk is bounded by limits.MAX_DEPTH and
limits.MAX_SCHEMA_STEPS; a schema or object beyond them gives one error instead of unbounded work.
"""

from __future__ import annotations

from typing import Any

from kubesat import errors
from kubesat.errors import FieldError
from kubesat.apimachinery.crdschema import defaults as _defaults
from kubesat.apimachinery.crdschema import prune as _prune
from kubesat.apimachinery.crdschema import quickcheck
from kubesat.apimachinery.crdschema.bounds import Budget, TooMuchWork
from kubesat.apimachinery.crdschema.definition import schema_definition_errors
from kubesat.apimachinery.crdschema.embedded import embedded_errors
from kubesat.apimachinery.crdschema.lists import list_errors
from kubesat.apimachinery.crdschema.validate import MetaValidator, schema_errors

__all__ = ["MetaValidator", "TooMuchWork", "apply_defaults", "definition_errors", "drop_nulls", "prune",
           "unknown_field_warnings", "strict_unknown_fields_message", "validate", "validate_update"]

_TOO_MUCH = "the schema or object nests too deeply or is too large to check"


def definition_errors(schema: dict[str, Any], path: str, *, status_enabled: bool = False,
                      old_schemas: list[Any] | None = None) -> list[FieldError]:
    """The errors kube-apiserver gives for one version's openAPIV3Schema (at field path `path`) on CRD create.

    status_enabled: the version has the status subresource (the root then allows fewer keywords).
    old_schemas: on update, the old CRD's openAPIV3Schemas (all versions); a rule one of them already broke is
    not enforced (invalid types, unpruned defaults, non-atomic set items, map-list keys without default).
    """
    if not isinstance(schema, dict):
        return [errors.required(path, "schemas are required")]
    try:
        return schema_definition_errors(schema, path, status_enabled, Budget(), old_schemas)
    except TooMuchWork:
        return [errors.forbidden_field(path, _TOO_MUCH)]


def validate(schema: dict[str, Any], obj: Any, path: str = "", *,
             embedded_meta: MetaValidator | None = None) -> list[FieldError]:
    """A custom resource's (or a part's) errors against its structural schema, in kube-apiserver's order: the
    OpenAPI checks, then embedded resources (apiVersion, kind; their metadata through embedded_meta, if given),
    then list-type set/map duplicates. The root's own metadata, apiVersion and kind are the caller's."""
    try:
        errs = [] if quickcheck.passes(schema, obj) else schema_errors(schema, obj, path, Budget())
        if quickcheck.has_embedded(schema):
            errs.extend(embedded_errors(schema, obj, path, embedded_meta, Budget()))
        if quickcheck.has_list_types(schema):
            errs.extend(list_errors(schema, obj, path, Budget()))
        return errs
    except TooMuchWork:
        return [errors.forbidden_field(path or "<nil>", _TOO_MUCH)]


def validate_update(schema: dict[str, Any], new: Any, old: Any, path: str = "", *,
                    embedded_meta: MetaValidator | None = None) -> list[FieldError]:
    """validate() for an update with CRDValidationRatcheting (beta, on in 1.32): OpenAPI errors on values equal
    to their old counterparts (properties by name, map-list items by key) are dropped, and list-type duplicates
    count only when the old object had none."""
    try:
        errs = [] if quickcheck.passes(schema, new) else schema_errors(schema, new, path, Budget(), old=old)
        if quickcheck.has_embedded(schema):
            errs.extend(embedded_errors(schema, new, path, embedded_meta, Budget()))
        if quickcheck.has_list_types(schema) and not list_errors(schema, old, path, Budget()):
            errs.extend(list_errors(schema, new, path, Budget()))
        return errs
    except TooMuchWork:
        return [errors.forbidden_field(path or "<nil>", _TOO_MUCH)]


def prune(schema: dict[str, Any], obj: Any) -> list[str]:
    """Remove in place what the schema does not specify (obj is a resource root: apiVersion, kind and metadata
    stay) and return the removed paths, sorted (`spec.foo`, `spec.items[0].bar`). Embedded resources keep their
    apiVersion and kind, and their metadata keeps only ObjectMeta's fields (`spec.template.metadata.foo` goes).

    Raises TooMuchWork (the caller answers 400/422) for an object or schema beyond the bounds.
    """
    return _prune.prune_paths(schema, obj, Budget())


def drop_nulls(schema: dict[str, Any], obj: Any) -> None:
    """Remove in place null values whose schema is neither nullable nor defaulted (done after pruning, before
    defaulting)."""
    _prune.drop_nulls(obj, schema, Budget())


def apply_defaults(schema: dict[str, Any], obj: Any) -> None:
    """Default in place, top-down: absent properties, and nulls under non-nullable schemas, get their default.

    Raises TooMuchWork when the copies would exceed the step bound (many nulls under a large default); a schema
    without any default leaves the object as it is, unwalked.
    """
    if quickcheck.has_defaults(schema):
        _defaults.default(obj, schema, Budget())


def unknown_field_warnings(paths: list[str]) -> list[str]:
    """The Warning headers of fieldValidation=Warn: `unknown field "spec.foo"`, one per pruned path."""
    return [f'unknown field "{p}"' for p in paths]


def strict_unknown_fields_message(kind: str, version: str, paths: list[str]) -> str:
    """The 400 text of fieldValidation=Strict for pruned paths."""
    fields = ", ".join(unknown_field_warnings(paths))
    return f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {fields}'
