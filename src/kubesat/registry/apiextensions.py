"""apiextensions.k8s.io/v1 CustomResourceDefinition: its v1 defaults, the validation apiextensions-apiserver applies
to a definition (worded as it words it), the update rules of spec and status, and the cleanup finalizer of a delete."""

from __future__ import annotations

import copy
import unicodedata
from datetime import datetime
from typing import Any

import orjson

from kubesat.apimachinery import cel, structural
from kubesat.errors import FieldError, forbidden_field, invalid_value, not_supported, required
from kubesat.registry.admissionregistration import validate_service, validate_url
from kubesat.registry.meta import (
    IMMUTABLE,
    GoValue,
    as_dict,
    created_at_column,
    dns1035_label,
    dns1123_subdomain,
    name_column,
)
from kubesat.registry.strategy import Strategy

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
SCOPES = ["Cluster", "Namespaced"]
CONVERSION_STRATEGIES = ["None", "Webhook"]
COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")
REVIEW_VERSIONS = ("v1", "v1beta1")
MAX_SELECTABLE_FIELDS = 8
MAX_VERSIONS = 64  # far beyond any real CRD; bounds the work a definition can ask for


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _json_value(v: Any) -> GoValue:
    """A bad value as kube-apiserver prints one that is not a string or a number: its JSON."""
    return GoValue(orjson.dumps(v).decode())


# ------------------------------------------------------------------------------------------- defaults

def apply_defaults(crd: dict[str, Any]) -> None:
    """The v1 defaults: singular and listKind from kind, conversion None, a webhook service's port 443, and the
    booleans a Go client always sends."""
    spec = crd.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.setdefault("names", {})
    if isinstance(names, dict):
        kind = _str(names.get("kind"))
        if kind and not names.get("singular"):
            names["singular"] = kind.lower()
        if kind and not names.get("listKind"):
            names["listKind"] = kind + "List"
    conversion = spec.get("conversion")
    if conversion is None:
        spec["conversion"] = {"strategy": "None"}
    elif isinstance(conversion, dict):
        service = as_dict(as_dict(as_dict(conversion.get("webhook")).get("clientConfig")).get("service"))
        if service and service.get("port") is None:
            service["port"] = 443
    for v in _list(spec.get("versions")):
        if isinstance(v, dict):
            v.setdefault("served", False)
            v.setdefault("storage", False)


def storage_version(crd: dict[str, Any]) -> str:
    for v in _list(as_dict(crd.get("spec")).get("versions")):
        if isinstance(v, dict) and v.get("storage") is True:
            return _str(v.get("name"))
    return ""


def condition(crd: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in _list(as_dict(crd.get("status")).get("conditions")):
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return None


def is_true(crd: dict[str, Any], kind: str) -> bool:
    c = condition(crd, kind)
    return c is not None and c.get("status") == "True"


# ------------------------------------------------------------------------------------- the internal form

def _shared(versions: list[dict[str, Any]], key: str) -> Any:
    """The value every version sets identically for `key` (Kubernetes' internal form keeps it once, at the top of
    spec, and its errors name it there), or None."""
    if not versions:
        return None
    first = versions[0].get(key)
    if not first:
        return None
    return first if all(v.get(key) == first for v in versions) else None


class _Internal:
    """The parts of a v1 CRD as apiextensions' internal version holds them: what all versions share is hoisted."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.versions = [v for v in _list(spec.get("versions")) if isinstance(v, dict)][:MAX_VERSIONS]
        self.schema = _shared(self.versions, "schema")
        self.subresources = _shared(self.versions, "subresources")
        self.columns = _shared(self.versions, "additionalPrinterColumns")
        self.selectable = _shared(self.versions, "selectableFields")

    def version_value(self) -> GoValue:
        out = []
        for v in self.versions:
            out.append({
                "name": v.get("name", ""), "served": bool(v.get("served")), "storage": bool(v.get("storage")),
                "deprecated": bool(v.get("deprecated")), "deprecationWarning": v.get("deprecationWarning"),
                "schema": None if self.schema is not None else v.get("schema"),
                "subresources": None if self.subresources is not None else v.get("subresources"),
                "additionalPrinterColumns": None if self.columns is not None else v.get("additionalPrinterColumns"),
                "selectableFields": None if self.selectable is not None else v.get("selectableFields"),
            })
        return _json_value(out)


# ------------------------------------------------------------------------------------------ validation

def validate_names(names: dict[str, Any], path: str) -> list[FieldError]:
    """ValidateCustomResourceDefinitionNames: spec.names and status.acceptedNames alike."""
    errs: list[FieldError] = []
    for key in ("plural", "singular"):
        value = _str(names.get(key))
        msgs = dns1035_label(value) if value else []
        if msgs:
            errs.append(invalid_value(f"{path}.{key}", value, ",".join(msgs)))
    for key in ("kind", "listKind"):
        value = _str(names.get(key))
        msgs = dns1035_label(value.lower()) if value else []
        if msgs:
            errs.append(invalid_value(f"{path}.{key}", value,
                                      "may have mixed case, but should otherwise match: " + ",".join(msgs)))
    for i, short in enumerate(_list(names.get("shortNames"))):
        msgs = dns1035_label(_str(short))
        if msgs:
            errs.append(invalid_value(f"{path}.shortNames[{i}]", short, ",".join(msgs)))
    kind = _str(names.get("kind"))
    if kind and kind == names.get("listKind"):
        errs.append(invalid_value(f"{path}.listKind", kind, "kind and listKind may not be the same"))
    for i, category in enumerate(_list(names.get("categories"))):
        msgs = dns1035_label(_str(category))
        if msgs:
            errs.append(invalid_value(f"{path}.categories[{i}]", category, ",".join(msgs)))
    return errs


def _simple_json_path(value: str, path: str) -> list[FieldError]:
    if not value:
        return [invalid_value(path, value, "must not be empty")]
    if not value.startswith("."):
        return [invalid_value(path, value, "must be a simple json path starting with .")]
    return []


def validate_subresources(sub: Any, path: str) -> list[FieldError]:
    scale = as_dict(sub).get("scale") if isinstance(sub, dict) else None
    if not isinstance(scale, dict):
        return []
    errs: list[FieldError] = []
    for key, prefix in (("specReplicasPath", ".spec."), ("statusReplicasPath", ".status.")):
        value = _str(scale.get(key))
        if not value:
            errs.append(required(f"{path}.scale.{key}"))
            continue
        bad = _simple_json_path(value, f"{path}.scale.{key}")
        if not bad and not value.startswith(prefix):
            bad = [invalid_value(f"{path}.scale.{key}", value, f"should be a json path under {prefix[:-1]}")]
        errs += bad
    selector = _str(scale.get("labelSelectorPath"))
    if selector:
        bad = _simple_json_path(selector, f"{path}.scale.labelSelectorPath")
        if not bad and not selector.startswith((".spec.", ".status.")):
            bad = [invalid_value(f"{path}.scale.labelSelectorPath", selector,
                                 "should be a json path under either .spec or .status")]
        errs += bad
    return errs


def validate_column(col: Any, path: str) -> list[FieldError]:
    col = as_dict(col)
    errs: list[FieldError] = []
    if not col.get("name"):
        errs.append(required(f"{path}.name"))
    kind = _str(col.get("type"))
    if not kind:
        errs.append(required(f"{path}.type", "must be one of " + ",".join(COLUMN_TYPES)))
    elif kind not in COLUMN_TYPES:
        errs.append(invalid_value(f"{path}.type", kind, "must be one of " + ",".join(COLUMN_TYPES)))
    fmt = _str(col.get("format"))
    if fmt and fmt not in COLUMN_FORMATS:
        errs.append(invalid_value(f"{path}.format", fmt, "must be one of " + ",".join(COLUMN_FORMATS)))
    json_path = _str(col.get("jsonPath"))
    if not json_path:
        errs.append(required(f"{path}.JSONPath"))
    else:
        errs += _simple_json_path(json_path, f"{path}.JSONPath")
    return errs


def _schema_at(schema: Any, json_path: str) -> dict[str, Any] | None:
    """The schema of a dotted field path (no array notation), or None when the schema has no such field."""
    node = as_dict(as_dict(schema).get("openAPIV3Schema"))
    for part in json_path.lstrip(".").split("."):
        props = as_dict(node.get("properties"))
        if part not in props:
            return None
        node = as_dict(props[part])
    return node


def validate_selectable_fields(fields: Any, schema: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, f in enumerate(_list(fields)[:64]):
        where = f"{path}[{i}].jsonPath"
        json_path = _str(as_dict(f).get("jsonPath"))
        if not json_path:
            errs.append(required(where))
            continue
        if "[" in json_path or not json_path.startswith("."):
            errs.append(invalid_value(where, json_path, "is an invalid path: must be a simple field path"))
            continue
        found = _schema_at(schema, json_path)
        if found is None:
            errs.append(invalid_value(where, json_path, "is an invalid path: does not refer to a valid field"))
            continue
        if json_path.lstrip(".").split(".")[0] == "metadata":
            errs.append(invalid_value(where, json_path, "must not point to fields in metadata"))
        if found.get("type") not in ("string", "boolean", "integer"):
            errs.append(invalid_value(where, json_path, "must point to a field of type string, boolean or integer. "
                                                        "Enum string fields and strings with formats are allowed."))
        if json_path in seen:
            errs.append(FieldError("FieldValueDuplicate", where, "", json_path, True))
        seen.add(json_path)
    if len(seen) > MAX_SELECTABLE_FIELDS:
        errs.append(FieldError("FieldValueTooMany", path,
                               f"must have at most {MAX_SELECTABLE_FIELDS} items", len(seen), True))
    return errs


def _deprecation_warning(version: dict[str, Any], path: str) -> list[FieldError]:
    if "deprecationWarning" not in version or version["deprecationWarning"] is None:
        return []
    text = _str(version["deprecationWarning"])
    where = f"{path}.deprecationWarning"
    if not version.get("deprecated"):
        return [invalid_value(where, text, "can only be set for deprecated versions")]
    errs: list[FieldError] = []
    if len(text.encode()) > 256:
        errs.append(invalid_value(where, text, "must be <= 256 characters long"))
    if not text:
        errs.append(invalid_value(where, text, "must not be an empty string"))
    for i, ch in enumerate(text):
        if not ch.isprintable() and unicodedata.category(ch) != "Zs":
            errs.append(invalid_value(where, text, "must only contain printable UTF-8 characters; non-printable "
                                                   f"character found at index {len(text[:i].encode())}"))
            break
    return errs


def _validate_schema(schema: Any, status_enabled: bool, path: str, old_schemas: list[Any] | None) -> list[FieldError]:
    """A version's schema as Kubernetes checks it on a CRD (structural, its keywords, defaults, the root rules);
    on update, what the old CRD's schemas already broke is not enforced."""
    root = as_dict(schema).get("openAPIV3Schema")
    if not isinstance(root, dict):
        return []  # reported as required by _validate_versions
    errs = structural.definition_errors(root, f"{path}.openAPIV3Schema", status_enabled=status_enabled,
                                        old_schemas=old_schemas)
    if not errs:  # the rules are compiled only against a valid structural schema
        errs = cel.rule_errors(root, f"{path}.openAPIV3Schema")
    return errs


def _has_status(sub: Any) -> bool:
    return isinstance(sub, dict) and sub.get("status") is not None


def _validate_version(v: dict[str, Any], i: int, internal: _Internal,
                      old_schemas: list[Any] | None) -> list[FieldError]:
    path = f"spec.versions[{i}]"
    errs: list[FieldError] = []
    name = _str(v.get("name"))
    msgs = dns1035_label(name)
    if msgs:
        errs.append(invalid_value(f"{path}.name", name, ",".join(msgs)))
    errs += _deprecation_warning(v, path)
    own_sub = None if internal.subresources is not None else v.get("subresources")
    sub = internal.subresources if internal.subresources is not None else own_sub
    if internal.schema is None and v.get("schema") is not None:
        errs += _validate_schema(v.get("schema"), _has_status(sub), f"{path}.schema", old_schemas)
    errs += validate_subresources(own_sub, f"{path}.subresources")
    if internal.columns is None:
        for j, col in enumerate(_list(v.get("additionalPrinterColumns"))[:64]):
            errs += validate_column(col, f"{path}.additionalPrinterColumns[{j}]")
    if internal.selectable is None and v.get("selectableFields"):
        errs += validate_selectable_fields(v.get("selectableFields"), v.get("schema") or internal.schema,
                                           f"{path}.selectableFields")
    return errs


def _validate_group(group: str) -> list[FieldError]:
    if not group:
        return [required("spec.group")]
    msgs = dns1123_subdomain(group)
    if msgs:
        return [invalid_value("spec.group", group, ",".join(msgs))]
    if "." not in group:
        return [invalid_value("spec.group", group, "should be a domain with at least one dot")]
    return []


def _validate_versions(internal: _Internal, old_schemas: list[Any] | None) -> list[FieldError]:
    errs: list[FieldError] = []
    if internal.schema is None:
        for i, v in enumerate(internal.versions):
            if not as_dict(v.get("schema")).get("openAPIV3Schema"):
                errs.append(required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
    names = [_str(v.get("name")) for v in internal.versions]
    for i, v in enumerate(internal.versions):
        errs += _validate_version(v, i, internal, old_schemas)
    if len(set(names)) != len(names):
        errs.append(invalid_value("spec.versions", internal.version_value(), "must contain unique version names"))
    if sum(1 for v in internal.versions if v.get("storage") is True) != 1:
        errs.append(invalid_value("spec.versions", internal.version_value(),
                                  "must have exactly one version marked as storage version"))
    return errs


def _validate_conversion(conversion: Any) -> list[FieldError]:
    if not isinstance(conversion, dict):
        return []
    path = "spec.conversion"
    strategy = _str(conversion.get("strategy"))
    if not strategy:
        return [required(f"{path}.strategy")]
    if strategy not in CONVERSION_STRATEGIES:
        return [not_supported(f"{path}.strategy", strategy, CONVERSION_STRATEGIES)]
    webhook = as_dict(conversion.get("webhook"))
    client = webhook.get("clientConfig")
    reviews = _list(webhook.get("conversionReviewVersions"))
    errs: list[FieldError] = []
    if strategy != "Webhook":
        if client is not None:
            errs.append(forbidden_field(f"{path}.webhookClientConfig", "should not be set when strategy is not set "
                                                                       "to Webhook"))
        if reviews:
            errs.append(forbidden_field(f"{path}.conversionReviewVersions", "should not be set when strategy is "
                                                                            "not set to Webhook"))
        return errs
    if not isinstance(client, dict):
        errs.append(required(f"{path}.webhookClientConfig", "required when strategy is set to Webhook"))
    elif (client.get("url") is None) == (client.get("service") is None):
        errs.append(required(f"{path}.webhookClientConfig", "exactly one of url or service is required"))
    elif client.get("url") is not None:
        errs += validate_url(f"{path}.webhookClientConfig.url", _str(client.get("url")))
    else:
        errs += validate_service(f"{path}.webhookClientConfig.service", as_dict(client.get("service")))
    if not reviews:
        errs.append(required(f"{path}.conversionReviewVersions"))
        return errs
    seen: set[str] = set()
    for i, v in enumerate(reviews[:64]):
        if v in seen:
            errs.append(invalid_value(f"{path}.conversionReviewVersions[{i}]", v, "duplicate version"))
            continue
        seen.add(_str(v))
        for msg in dns1035_label(_str(v)):
            errs.append(invalid_value(f"{path}.conversionReviewVersions[{i}]", v, msg))
    if not seen & set(REVIEW_VERSIONS):
        errs.append(invalid_value(f"{path}.conversionReviewVersions", _json_value(reviews),
                                  "must include at least one of " + ", ".join(REVIEW_VERSIONS)))
    return errs


def old_schemas_of(spec: dict[str, Any]) -> list[Any]:
    """Every version's openAPIV3Schema of a stored CRD (what an update is compared with)."""
    return [as_dict(as_dict(v).get("schema")).get("openAPIV3Schema") for v in _list(spec.get("versions"))]


def validate_spec(spec: dict[str, Any], old_schemas: list[Any] | None = None) -> list[FieldError]:
    internal = _Internal(spec)
    errs = _validate_group(_str(spec.get("group")))
    scope = _str(spec.get("scope"))
    if not scope:
        errs.append(required("spec.scope"))
    elif scope not in SCOPES:
        errs.append(not_supported("spec.scope", scope, SCOPES))
    errs += _validate_versions(internal, old_schemas)
    names = as_dict(spec.get("names"))
    for key in ("plural", "singular", "kind", "listKind"):
        if not names.get(key):
            errs.append(required(f"spec.names.{key}"))
    errs += validate_names(names, "spec.names")
    if internal.schema is not None:
        errs += _validate_schema(internal.schema, _has_status(internal.subresources), "spec.validation", old_schemas)
    errs += validate_subresources(internal.subresources, "spec.subresources")
    for j, col in enumerate(_list(internal.columns)[:64]):
        errs += validate_column(col, f"spec.additionalPrinterColumns[{j}]")
    if internal.selectable is not None:
        errs += validate_selectable_fields(internal.selectable, internal.schema, "spec.selectableFields")
    conversion = as_dict(spec.get("conversion"))
    if spec.get("preserveUnknownFields") is True and conversion.get("strategy") not in (None, "None"):
        errs.append(invalid_value("spec.conversion.strategy", conversion.get("strategy"),
                                  "must be None if spec.preserveUnknownFields is true"))
    errs += _validate_conversion(spec.get("conversion"))
    return errs


def validate_stored_versions(crd: dict[str, Any]) -> list[FieldError]:
    stored = _list(as_dict(crd.get("status")).get("storedVersions"))
    path = "status.storedVersions"
    if not stored:
        return [invalid_value(path, _json_value(stored or None), "must have at least one stored version")]
    remaining = {v: i for i, v in enumerate(stored)}
    errs: list[FieldError] = []
    for v in _list(as_dict(crd.get("spec")).get("versions")):
        name = as_dict(v).get("name")
        if as_dict(v).get("storage") is True and name not in remaining:
            errs.append(invalid_value(path, _json_value(stored), f"must have the storage version {name}"))
        remaining.pop(name, None)
    for v, i in remaining.items():
        errs.append(invalid_value(f"{path}[{i}]", v, f"missing from spec.versions; {v} was previously a storage "
                                                    f"version, and must remain in spec.versions until a storage "
                                                    f"migration ensures no data remains persisted in {v} and "
                                                    f"removes {v} from status.storedVersions"))
    return errs


def _protected_group(group: str) -> bool:
    return group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))


_APPROVAL = "api-approved.kubernetes.io"


def _validate_approval(new: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    if not _protected_group(_str(as_dict(new.get("spec")).get("group"))):
        return []
    value = as_dict(as_dict(new.get("metadata")).get("annotations")).get(_APPROVAL)
    if old is not None and as_dict(as_dict(old.get("metadata")).get("annotations")).get(_APPROVAL) == value:
        return []
    path = f"metadata.annotations[{_APPROVAL}]"
    if value is None:
        return [required(path, f'protected groups must have approval annotation "{_APPROVAL}", see '
                               "https://github.com/kubernetes/enhancements/pull/1111")]
    text = _str(value)
    if text.startswith("unapproved") or text.startswith(("http://", "https://")):
        return []
    return [invalid_value(path, text, f'protected groups must have approval annotation "{_APPROVAL}" with either a '
                                      'URL or a reason starting with "unapproved", see '
                                      "https://github.com/kubernetes/enhancements/pull/1111")]


def _validate_preserve_unknown(new: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    if old is not None and as_dict(old.get("spec")).get("preserveUnknownFields") is True:
        return []
    if as_dict(new.get("spec")).get("preserveUnknownFields") is True:
        return [invalid_value("spec.preserveUnknownFields", True, "cannot set to true, set "
                              "x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead")]
    return []


def validate_crd(crd: dict[str, Any]) -> list[FieldError]:
    """ValidateCustomResourceDefinition (the metadata checks run in the generic store)."""
    spec = as_dict(crd.get("spec"))
    errs: list[FieldError] = []
    name = _str(as_dict(crd.get("metadata")).get("name"))
    wanted = f"{_str(as_dict(spec.get('names')).get('plural'))}.{_str(spec.get('group'))}"
    if name and name != wanted:
        errs.append(invalid_value("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    errs += validate_spec(spec)
    errs += validate_names(as_dict(as_dict(crd.get("status")).get("acceptedNames")), "status.acceptedNames")
    errs += validate_stored_versions(crd)
    errs += _validate_approval(crd, None)
    errs += _validate_preserve_unknown(crd, None)
    return errs


def validate_crd_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    errs = validate_spec(spec, old_schemas_of(old_spec))
    if is_true(old, "Established"):
        if spec.get("scope") != old_spec.get("scope"):
            errs.append(invalid_value("spec.scope", spec.get("scope"), IMMUTABLE))
        kind, old_kind = as_dict(spec.get("names")).get("kind"), as_dict(old_spec.get("names")).get("kind")
        if kind != old_kind:
            errs.append(invalid_value("spec.names.kind", kind, IMMUTABLE))
    if spec.get("group") != old_spec.get("group"):
        errs.append(invalid_value("spec.group", spec.get("group"), IMMUTABLE))
    plural, old_plural = as_dict(spec.get("names")).get("plural"), as_dict(old_spec.get("names")).get("plural")
    if plural != old_plural:
        errs.append(invalid_value("spec.names.plural", plural, IMMUTABLE))
    errs += validate_names(as_dict(as_dict(new.get("status")).get("acceptedNames")), "status.acceptedNames")
    errs += validate_stored_versions(new)
    errs += _validate_approval(new, old)
    errs += _validate_preserve_unknown(new, old)
    return errs


# ------------------------------------------------------------------------------------------- strategy

class CustomResourceDefinitionStrategy(Strategy):
    has_generation = True
    has_status = True

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        apply_defaults(obj)
        version = storage_version(obj)
        obj["status"] = {"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": [version] if version else []}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        apply_defaults(new)
        status = copy.deepcopy(old.get("status") or {})
        version = storage_version(new)
        stored = status.setdefault("storedVersions", [])
        if version and version not in stored:
            stored.append(version)
        new["status"] = status

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        return validate_crd(obj)

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return validate_crd_update(new, old)

    def graceful_delete(self, obj: dict[str, Any]) -> bool:
        return True  # held by the cleanup finalizer until its custom resources are gone

    def on_delete_requested(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)
        meta["finalizers"] = finalizers
        set_condition(obj, "Terminating", "True", "InstanceDeletionPending",
                      "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
                      _str(meta.get("deletionTimestamp")))

    def table_columns(self) -> list[dict[str, Any]]:
        return [name_column(), created_at_column()]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        return [as_dict(obj.get("metadata")).get("name", ""),
                as_dict(obj.get("metadata")).get("creationTimestamp")]


def set_condition(crd: dict[str, Any], kind: str, status: str, reason: str, message: str, now: str) -> bool:
    """Set one condition (lastTransitionTime moves only when its status does); True if anything changed."""
    conditions = as_dict(crd.setdefault("status", {})).setdefault("conditions", [])
    current = next((c for c in conditions if isinstance(c, dict) and c.get("type") == kind), None)
    wanted = {"type": kind, "status": status, "lastTransitionTime": now, "reason": reason, "message": message}
    if current is None:
        conditions.append(wanted)
        return True
    if current.get("status") == status:
        wanted["lastTransitionTime"] = current.get("lastTransitionTime", now)
    if current == wanted:
        return False
    current.clear()
    current.update(wanted)
    return True

