"""Custom resources: the ResourceInfos a CustomResourceDefinition's served versions become, and the one Strategy all
custom resources share (status and scale subresources, printer columns, selectable fields)."""

from __future__ import annotations

import copy
import functools
from datetime import datetime
from typing import Any

import orjson

from kubesat import errors
from kubesat.apimachinery import apply as ssa
from kubesat.apimachinery import cel, jsonpath, structural
from kubesat.apimachinery.schema import definitions as builtin_definitions
from kubesat.apimachinery.duration import age, human_duration, parse_time
from kubesat.errors import FieldError, invalid_value
from kubesat.registry.apiextensions import storage_version
from kubesat.registry.kinds import CRUD, CUSTOM, CustomDefinition, ResourceInfo, Subresource, version_sort_key
from kubesat.registry.meta import OBJECT_META, as_dict, column, field_doc, name_column
from kubesat.registry.strategy import Strategy

# A terminating CRD's resources may no longer be created; updates go on (finalizers must come off). Discovery lists
# only DISCOVERED_TERMINATING_VERBS, as kube-apiserver's does.
TERMINATING_VERBS = ("delete", "deletecollection", "get", "list", "patch", "update", "watch")
DISCOVERED_TERMINATING_VERBS = ("delete", "deletecollection", "get", "list", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")
MAX_INT32 = 2**31 - 1
RULES_NOT_CHECKED = ("some validation rules were not checked because the object was invalid; correct the existing "
                     "errors to complete validation")


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _version_view(version: dict[str, Any]) -> dict[str, Any]:
    return {key: version.get(key) for key in ("name", "schema", "subresources", "additionalPrinterColumns",
                                              "selectableFields", "deprecated", "deprecationWarning")}


def infos_for(crd: dict[str, Any], terminating: bool = False) -> tuple[ResourceInfo, ...]:
    """The ResourceInfos of a CRD's served versions; one of them (the storage version when it is served) is the
    stored one, the others are read and written through it."""
    spec = as_dict(crd.get("spec"))
    names = as_dict(spec.get("names"))
    group, kind, plural = str(spec.get("group", "")), str(names.get("kind", "")), str(names.get("plural", ""))
    versions = [v for v in _list(spec.get("versions")) if isinstance(v, dict)]
    served = [v for v in versions if v.get("served") is True]
    storage = storage_version(crd)
    primary = storage if any(v.get("name") == storage for v in served) else (served[0]["name"] if served else "")
    all_names = tuple(str(v.get("name", "")) for v in versions)
    out = []
    for v in served:
        name = str(v.get("name", ""))
        custom = CustomDefinition(str(as_dict(crd.get("metadata")).get("name", "")), primary,
                                  _version_view(v), all_names, terminating, as_dict(spec.get("conversion")))
        subs = []
        sub = as_dict(v.get("subresources"))
        if sub.get("scale") is not None:
            subs.append(Subresource("scale", "Scale", SUBRESOURCE_VERBS, "autoscaling", "v1"))
        if sub.get("status") is not None:
            subs.append(Subresource("status", kind, SUBRESOURCE_VERBS))
        selectable = tuple(str(as_dict(f).get("jsonPath", "")).lstrip(".") for f in _list(v.get("selectableFields")))
        out.append(ResourceInfo(
            group, name, kind, plural, str(names.get("singular", "")), spec.get("scope") == "Namespaced",
            verbs=TERMINATING_VERBS if terminating else CRUD,
            short_names=tuple(str(s) for s in _list(names.get("shortNames"))),
            categories=tuple(str(c) for c in _list(names.get("categories"))),
            subresources=tuple(subs), stored=name == primary, list_kind=str(names.get("listKind", "")),
            field_selectors=selectable, stored_as=() if name == primary else (f"{group}/{primary}", kind),
            custom=custom,
        ))
    return tuple(out)


def deprecation_warning(info: ResourceInfo) -> str:
    """The Warning a request to a deprecated version gets: its deprecationWarning, else `<g>/<v> <Kind> is
    deprecated`, naming the highest served version that is not deprecated and ranks above it, if any."""
    if info.custom is None or not info.custom.version.get("deprecated"):
        return ""
    given = info.custom.version.get("deprecationWarning")
    if isinstance(given, str):
        return given
    text = f"{info.api_version} {info.kind} is deprecated"
    rank = version_sort_key(info.version)
    better = sorted((i.version for i in CUSTOM.of(info.custom.crd_name)
                     if i.custom is not None and not i.custom.version.get("deprecated")
                     and version_sort_key(i.version) < rank), key=version_sort_key)
    return f"{text}; use {info.group}/{better[0]} {info.kind}" if better else text


# ------------------------------------------------------------------------------------------ columns

@functools.lru_cache(maxsize=256)
def _steps(path: str) -> list[tuple[str, Any]] | None:
    try:
        return jsonpath.parse(path)
    except jsonpath.PathError:
        return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def _cell(kind: str, values: list[Any], now: datetime) -> Any:
    """One printer column's cell as kube-apiserver's table convertor gives it."""
    if not values:
        return None
    value = values[0]
    if kind == "string":
        return " ".join(_text(v) for v in values)
    if kind == "date":
        ts = parse_time(value) if isinstance(value, str) else None
        return human_duration((now - ts).total_seconds()) if ts is not None else "<invalid>"
    if kind == "integer":
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    return value


# ------------------------------------------------------------------------------------------- scale

def _path_parts(path: str) -> list[str]:
    return [p for p in path.lstrip(".").split(".") if p]


def get_path(obj: dict[str, Any], path: str) -> tuple[Any, bool]:
    node: Any = obj
    for part in _path_parts(path):
        if not isinstance(node, dict) or part not in node:
            return None, False
        node = node[part]
    return node, True


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = _path_parts(path)
    node = obj
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def scale_spec(info: ResourceInfo) -> dict[str, Any]:
    """The version's subresources.scale (specReplicasPath, statusReplicasPath, labelSelectorPath)."""
    return as_dict(as_dict(info.custom.version.get("subresources") if info.custom else None).get("scale"))


def _go_type(value: Any) -> str:
    """The Go type of a decoded JSON value, as unstructured's accessor errors name it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"


def _go_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def replicas_errors(value: Any, path: str) -> list[FieldError]:
    """The scale checks of a replicas field of a custom resource (a path such as .spec.replicas), Kubernetes'."""
    if isinstance(value, bool) or not isinstance(value, int):
        return [invalid_value(path, 0, f"{path} accessor error: {_go_text(value)} is of the type {_go_type(value)}, "
                                       "expected int64")]
    if value < 0:
        return [invalid_value(path, value, "should be a non-negative integer")]
    if value > MAX_INT32:
        return [invalid_value(path, value, f"should be less than or equal to {MAX_INT32}")]
    return []


def selector_errors(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str):
        return []
    return [invalid_value(path, "", f"{path} accessor error: {_go_text(value)} is of the type {_go_type(value)}, "
                                    "expected string")]


# ------------------------------------------------------------------------------------------ schema

def schema_of(info: ResourceInfo) -> dict[str, Any] | None:
    """The version's openAPIV3Schema, if it has one."""
    version = info.custom.version if info.custom else {}
    schema = as_dict(version.get("schema")).get("openAPIV3Schema")
    return schema if isinstance(schema, dict) else None


def prune_unknown(info: ResourceInfo, obj: dict[str, Any]) -> list[str]:
    """Drop the fields the version's schema does not declare (in place); their paths, as kube-apiserver reports
    them under fieldValidation."""
    schema = schema_of(info)
    if schema is None:
        return []
    try:
        return structural.prune(schema, obj)
    except structural.TooMuchWork:
        raise errors.bad_request("the object nests too deeply or is too large for its schema") from None


def _normalize(schema: dict[str, Any] | None, obj: dict[str, Any]) -> None:
    """What decoding does to a custom resource: unknown fields pruned, unwanted nulls dropped, defaults applied."""
    if schema is None:
        return
    try:
        structural.prune(schema, obj)
        structural.drop_nulls(schema, obj)
        structural.apply_defaults(schema, obj)
    except structural.TooMuchWork:
        raise errors.bad_request("the object nests too deeply or is too large for its schema") from None


# ------------------------------------------------------------------------------- published schema

# What the v2 document cannot say of a custom resource's schema (kube-apiserver drops the same from v2).
_NOT_IN_V2 = ("allOf", "anyOf", "oneOf", "not", "nullable")
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
MAX_SCHEMA_DEPTH = 64


def _without_v3_keywords(node: Any, depth: int = 0) -> Any:
    if depth > MAX_SCHEMA_DEPTH:
        return {}
    if isinstance(node, dict):
        return {k: _without_v3_keywords(v, depth + 1) for k, v in node.items() if k not in _NOT_IN_V2}
    if isinstance(node, list):
        return [_without_v3_keywords(v, depth + 1) for v in node]
    return node


def published_schema(info: ResourceInfo, v2: bool) -> dict[str, Any]:
    """A served custom resource version's schema as kube-apiserver publishes it (OpenAPI v3, or v2 without what
    v2 cannot say): its openAPIV3Schema with apiVersion, kind, metadata (an ObjectMeta reference) and the
    group-version-kind extension."""
    out = copy.deepcopy(schema_of(info) or {})
    if v2:
        out = _without_v3_keywords(out)
    props = out.setdefault("properties", {})
    # Described as every kind's are (the Pod's words are the standard ones).
    standard = (builtin_definitions().get("io.k8s.api.core.v1.Pod") or {}).get("properties") or {}
    for key in ("apiVersion", "kind"):
        props[key] = {"description": standard.get(key, {}).get("description", ""), "type": "string"}
    props["metadata"] = {"$ref": f"#/definitions/{_OBJECT_META}"}  # v3 wraps it in allOf with its description
    if standard.get("metadata", {}).get("description"):
        props["metadata"]["description"] = standard["metadata"]["description"]
    out["type"] = "object"
    out["x-kubernetes-group-version-kind"] = [{"group": info.group, "kind": info.kind, "version": info.version}]
    return out


def open_where_preserved(node: Any, depth: int = 0) -> Any:
    """The schema as server-side apply reads it: where x-kubernetes-preserve-unknown-fields is set, fields
    beyond the declared ones are allowed (untyped) rather than `not declared in schema`."""
    if depth > MAX_SCHEMA_DEPTH or not isinstance(node, dict):
        return node
    out = {k: (open_where_preserved(v, depth + 1) if k in ("items", "additionalProperties") else v)
           for k, v in node.items() if k != "properties"}
    if isinstance(node.get("properties"), dict):
        out["properties"] = {k: open_where_preserved(v, depth + 1) for k, v in node["properties"].items()}
    if node.get("x-kubernetes-preserve-unknown-fields") is True and not isinstance(out.get("additionalProperties"),
                                                                                   dict):
        out["additionalProperties"] = {}
    return out


def publish_for_apply(infos: tuple[ResourceInfo, ...] | list[ResourceInfo], served: bool) -> None:
    """Give (or take back from) server-side apply the schemas of a CRD's versions, so that apply and
    managedFields follow their list and map types (x-kubernetes-list-type, -list-map-keys, -map-type)."""
    for info in infos:
        ssa.register_schema(info.definition, open_where_preserved(published_schema(info, False)) if served else None)


# ---------------------------------------------------------------------------------------- strategy

class CustomResourceStrategy(Strategy):
    """Every custom resource kind: what its CRD version says of status, scale, columns and selectable fields."""

    has_generation = True

    def __init__(self, info: ResourceInfo) -> None:
        super().__init__(info)
        version = info.custom.version if info.custom else {}
        sub = as_dict(version.get("subresources"))
        self.has_status = sub.get("status") is not None
        self._scale = as_dict(sub.get("scale"))
        self._columns = [as_dict(c) for c in _list(version.get("additionalPrinterColumns"))]
        self._schema = schema_of(info)

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        _normalize(self._schema, obj)
        if self.has_status:
            obj.pop("status", None)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _normalize(self._schema, new)
        if self.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)

    def spec_changed(self, new: dict[str, Any], old: dict[str, Any]) -> bool:
        """Anything outside metadata is the spec of a custom resource (status too, without the subresource)."""
        keys = (set(new) | set(old)) - {"metadata"}
        return any(new.get(k) != old.get(k) for k in keys)

    def prepare_for_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _normalize(self._schema, new)
        super().prepare_for_status_update(new, old)

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return self._validate(obj, None)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return self._validate(new, old)

    def _validate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
        """The schema, the scale paths, then the x-kubernetes-validations rules (not run past a type error)."""
        errs = self._schema_errors(obj, old)
        if self._schema is None:
            return errs
        if any(e.type in ("FieldValueTypeInvalid", "FieldValueNotSupported") for e in errs):
            return [*errs, FieldError("FieldValueInvalid", "<nil>", RULES_NOT_CHECKED, None, True)]
        return errs + cel.validate_rules(self._schema, obj, old)

    def _schema_errors(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
        errs: list[FieldError] = []
        if self._schema is not None:
            # Updates ratchet: what was already invalid and did not change is let through (Kubernetes 1.32).
            errs += structural.validate(self._schema, obj) if old is None else \
                structural.validate_update(self._schema, obj, old)
        for key in ("specReplicasPath", "statusReplicasPath", "labelSelectorPath"):
            path = str(self._scale.get(key) or "")
            value, found = get_path(obj, path) if path else (None, False)
            if found and value is not None:
                errs += selector_errors(value, path) if key == "labelSelectorPath" else replicas_errors(value, path)
        return errs

    def table_columns(self) -> list[dict[str, Any]]:
        cols = [name_column()]
        if not self._columns:
            return [*cols, column("Age", field_doc(OBJECT_META, "creationTimestamp"), type_="date")]
        for c in self._columns:
            cols.append(column(str(c.get("name", "")), str(c.get("description", "")), type_=str(c.get("type", "")),
                               fmt=str(c.get("format", "")), priority=int(c.get("priority") or 0)))
        return cols

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        cells: list[Any] = [as_dict(obj.get("metadata")).get("name", "")]
        if not self._columns:
            return [*cells, age(obj, now)]
        for c in self._columns:
            steps = _steps(str(c.get("jsonPath", "")))
            cells.append(_cell(str(c.get("type", "")), jsonpath.find(obj, steps) if steps is not None else [], now))
        return cells

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        if field in ("metadata.name", "metadata.namespace") or field not in self.info.field_selectors:
            return super().field_value(obj, field)
        value, found = get_path(obj, field)
        if not found or value is None:
            return ""
        return _text(value) if not isinstance(value, str) else value
