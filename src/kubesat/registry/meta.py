"""Object metadata rules shared by every kind: name formats, labels, annotations, owners, finalizers.

The checks and the detail messages follow Kubernetes (apimachinery's util/validation and
api/validation/objectmeta, as served by kube-apiserver v1.32); the messages are reproduced
word for word because clients and users match on them.

The second half holds small helpers the per-kind strategies share: Go-style rendering of
non-string bad values, Table column definitions with Kubernetes' descriptions, and the
finalizer-name rule core/v1 kinds add on top of the generic one.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from collections.abc import Callable

from kubesat.errors import FieldError, GoValue, forbidden_field, invalid_value, required, too_long
from kubesat.apimachinery.schema import definitions

# --------------------------------------------------------------------------------------------
# Detail-message building blocks (same wording as Kubernetes)


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    # Kubernetes joins the examples as "'a', " + " or " + "'b', " ...; the double space is theirs.
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


EMPTY_ERROR = "must be non-empty"
IMMUTABLE = "field is immutable"
IS_NEGATIVE = "must be greater than or equal to 0"

# --------------------------------------------------------------------------------------------
# DNS names

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_MAX = 253

_LABEL_RE = re.compile(f"^{DNS1123_LABEL_FMT}$")
_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")


def _full(rx: re.Pattern[str], value: str) -> bool:
    # `$` in Python also matches before a trailing newline; Go's does not.
    return "\n" not in value and rx.match(value) is not None


def dns1123_label(value: str) -> list[str]:
    """IsDNS1123Label: e.g. a namespace name."""
    errs: list[str] = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(max_len_error(DNS1123_LABEL_MAX))
    if not _full(_LABEL_RE, value):
        if _full(_SUBDOMAIN_RE, value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character"
)
_DNS1035_RE = re.compile(f"^{DNS1035_LABEL_FMT}$")


def dns1035_label(value: str) -> list[str]:
    """IsDNS1035Label: e.g. a Service name."""
    errs: list[str] = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(max_len_error(DNS1123_LABEL_MAX))
    if not _full(_DNS1035_RE, value):
        errs.append(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    """IsDNS1123Subdomain: the name rule of most kinds."""
    errs: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _full(_SUBDOMAIN_RE, value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def path_segment_name(value: str, prefix: bool = False) -> list[str]:
    """IsValidPathSegmentName (or, with prefix, IsValidPathSegmentPrefix): anything usable as one URL path segment."""
    if not prefix and value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in value]


# --------------------------------------------------------------------------------------------
# Qualified names (label and annotation keys, finalizers) and label values

QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
QUALIFIED_NAME_MAX = 63
_QNAME_RE = re.compile(f"^{QUALIFIED_NAME_FMT}$")

LABEL_VALUE_FMT = f"({QUALIFIED_NAME_FMT})?"
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
LABEL_VALUE_MAX = 63
_LABEL_VALUE_RE = re.compile(f"^{LABEL_VALUE_FMT}$")


def qualified_name(value: str) -> list[str]:
    """IsQualifiedName: `[prefix/]name`, prefix a DNS subdomain, name up to 63 characters."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        pfx, name = parts
        if not pfx:
            errs.append("prefix part " + EMPTY_ERROR)
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(pfx))
    else:
        return [
            "a qualified name "
            + regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + EMPTY_ERROR)
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX))
    if not _full(_QNAME_RE, name):
        errs.append("name part " + regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value(value: str) -> list[str]:
    """IsValidLabelValue."""
    errs: list[str] = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(max_len_error(LABEL_VALUE_MAX))
    if not _full(_LABEL_VALUE_RE, value):
        errs.append(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# ConfigMap and Secret keys
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_CONFIG_KEY_RE = re.compile(f"^{CONFIG_KEY_FMT}$")


def config_map_key(value: str) -> list[str]:
    """IsConfigMapKey: data keys of ConfigMaps and Secrets."""
    errs: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _full(_CONFIG_KEY_RE, value):
        errs.append(regex_error(CONFIG_KEY_MSG, CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


# --------------------------------------------------------------------------------------------
# Name rules: (name, prefix) -> messages. `prefix` is True when checking a generateName.


def _mask_trailing_dash(name: str) -> str:
    # A generateName may end in '-' since random characters follow it.
    if name.endswith("-"):
        return name[:-2] + "a"
    return name


def name_is_subdomain(name: str, prefix: bool = False) -> list[str]:
    return dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_label(name: str, prefix: bool = False) -> list[str]:
    return dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035(name: str, prefix: bool = False) -> list[str]:
    return dns1035_label(_mask_trailing_dash(name) if prefix else name)


def name_is_path_segment(name: str, prefix: bool = False) -> list[str]:
    # RBAC's "minimal name requirements" apply the full rule to generateName as well.
    return path_segment_name(name)


NameRule = Callable[[str, bool], list[str]]
NAME_RULES: dict[str, NameRule] = {
    "subdomain": name_is_subdomain,
    "label": name_is_label,
    "path_segment": name_is_path_segment,
    "dns1035": name_is_dns1035,
}

# --------------------------------------------------------------------------------------------
# Go-style rendering of bad values that are not plain strings or numbers


def go_quote(s: Any) -> str:
    text = "" if s is None else str(s)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def go_strings(values: Any) -> GoValue:
    """[]string{"a", "b"} (or []string(nil) for nothing)."""
    if not values:
        return GoValue("[]string(nil)" if values is None else "[]string{}")
    return GoValue("[]string{" + ", ".join(go_quote(v) for v in values) + "}")


def go_struct(type_name: str, fields: list[tuple[str, Any]]) -> GoValue:
    """type{Field:"v", Other:1} with string fields quoted."""
    parts = []
    for k, v in fields:
        if isinstance(v, GoValue):
            parts.append(f"{k}:{v.text}")
        elif isinstance(v, bool):
            parts.append(f"{k}:{'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            parts.append(f"{k}:{v}")
        else:
            parts.append(f"{k}:{go_quote(v)}")
    return GoValue(type_name + "{" + ", ".join(parts) + "}")


# --------------------------------------------------------------------------------------------
# ObjectMeta validation

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)  # 256 KiB
FINALIZER_ORPHAN = "orphan"
FINALIZER_FOREGROUND = "foregroundDeletion"
FINALIZER_KUBERNETES = "kubernetes"
STANDARD_FINALIZERS = frozenset({FINALIZER_KUBERNETES, FINALIZER_ORPHAN, FINALIZER_FOREGROUND})
# Kinds that may not own other objects.
BANNED_OWNERS = frozenset({("", "v1", "Event")})


def as_dict(v: Any) -> dict[str, Any]:
    """A JSON value as an object: itself when it is one, else an empty one."""
    return v if isinstance(v, dict) else {}


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else str(v))


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for k, v in as_dict(labels).items():
        k = _str(k)
        for msg in qualified_name(k):
            errs.append(invalid_value(path, k, msg))
        v = _str(v)
        for msg in label_value(v):
            errs.append(invalid_value(path, v, msg))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    for k, v in as_dict(annotations).items():
        k, v = _str(k), _str(v)
        # Annotation keys are qualified names, but letter case does not matter.
        for msg in qualified_name(k.lower()):
            errs.append(invalid_value(path, k, msg))
        total += len(k.encode()) + len(v.encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _parse_group_version(api_version: str) -> tuple[str, str] | None:
    if not api_version:
        return "", ""
    if api_version.count("/") == 0:
        return "", api_version
    if api_version.count("/") == 1:
        group, version = api_version.split("/")
        return group, version
    return None


def _owner_go_value(ref: dict[str, Any]) -> GoValue:
    controller = ref.get("controller")
    block = ref.get("blockOwnerDeletion")
    return go_struct("v1.OwnerReference", [
        ("APIVersion", _str(ref.get("apiVersion"))),
        ("Kind", _str(ref.get("kind"))),
        ("Name", _str(ref.get("name"))),
        ("UID", _str(ref.get("uid"))),
        ("Controller", _go_bool_pointer(controller)),
        ("BlockOwnerDeletion", _go_bool_pointer(block)),
    ])


def _go_bool_pointer(value: Any) -> GoValue:
    """A *bool as Go's %#v prints it: (*bool)(nil), or the value it points at."""
    return GoValue("(*bool)(nil)" if value is None else f"(*bool)({'true' if value else 'false'})")


def validate_owner_references(refs: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(refs, list):
        return errs
    first_controller = ""
    for raw in refs:
        ref = as_dict(raw)
        api_version, kind = _str(ref.get("apiVersion")), _str(ref.get("kind"))
        gv = _parse_group_version(api_version)
        group, version = gv if gv is not None else ("", "")
        if not version:
            errs.append(invalid_value(f"{path}.apiVersion", api_version, "version must not be empty"))
        if not kind:
            errs.append(invalid_value(f"{path}.kind", kind, "must not be empty"))
        if not _str(ref.get("name")):
            errs.append(invalid_value(f"{path}.name", _str(ref.get("name")), "must not be empty"))
        if not _str(ref.get("uid")):
            errs.append(invalid_value(f"{path}.uid", _str(ref.get("uid")), "must not be empty"))
        if (group, version, kind) in BANNED_OWNERS:
            errs.append(invalid_value(path, _owner_go_value(ref),
                                      f"{group}/{version}, Kind={kind} is disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{kind}/{_str(ref.get('name'))}"
            if first_controller:
                listed = ", ".join(_owner_go_value(as_dict(r)).text for r in refs)
                shown = GoValue("[]v1.OwnerReference{" + listed + "}")
                errs.append(invalid_value(
                    path, shown,
                    f'Only one reference can have Controller set to true. Found "true" in references for '
                    f"{first_controller} and {current}",
                ))
            else:
                first_controller = current
    return errs


def validate_finalizers(finalizers: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(finalizers, list):
        return errs
    for f in finalizers:
        f = _str(f)
        for msg in qualified_name(f):
            errs.append(invalid_value(path, f, msg))
    if FINALIZER_ORPHAN in finalizers and FINALIZER_FOREGROUND in finalizers:
        errs.append(invalid_value(
            path, go_strings(finalizers),
            f"finalizer {FINALIZER_ORPHAN} and {FINALIZER_FOREGROUND} cannot be both set",
        ))
    return errs


def validate_kube_finalizers(meta: dict[str, Any], path: str = "metadata") -> list[FieldError]:
    """The extra rule of core/v1 kinds: a finalizer without a '/' must be a standard one."""
    errs: list[FieldError] = []
    fins = meta.get("finalizers")
    if not isinstance(fins, list):
        return errs
    for i, f in enumerate(fins):
        errs.extend(kube_finalizer_name(_str(f), f"{path}.finalizers[{i}]"))
    return errs


def kube_finalizer_name(value: str, path: str) -> list[FieldError]:
    if "/" not in value and value not in STANDARD_FINALIZERS:
        return [invalid_value(path, value, "name is neither a standard finalizer name nor is it fully qualified")]
    return []


def _common(meta: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    errs += validate_labels(meta.get("labels"), f"{path}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    errs += validate_owner_references(meta.get("ownerReferences"), f"{path}.ownerReferences")
    errs += validate_finalizers(meta.get("finalizers"), f"{path}.finalizers")
    return errs


def _identity(meta: dict[str, Any], namespaced: bool, name_rule: str, path: str) -> list[FieldError]:
    rule = NAME_RULES[name_rule]
    errs: list[FieldError] = []
    gen = _str(meta.get("generateName"))
    if gen:
        for msg in rule(gen, True):
            errs.append(invalid_value(f"{path}.generateName", gen, msg))
    name = _str(meta.get("name"))
    if not name:
        errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        for msg in rule(name, False):
            errs.append(invalid_value(f"{path}.name", name, msg))
    namespace = _str(meta.get("namespace"))
    if namespaced:
        if not namespace:
            errs.append(required(f"{path}.namespace"))
        else:
            for msg in name_is_label(namespace, False):
                errs.append(invalid_value(f"{path}.namespace", namespace, msg))
    elif namespace:
        errs.append(forbidden_field(f"{path}.namespace", "not allowed on this type"))
    generation = meta.get("generation")
    if isinstance(generation, int) and not isinstance(generation, bool) and generation < 0:
        errs.append(invalid_value(f"{path}.generation", generation, IS_NEGATIVE))
    return errs


def validate_object_meta(
    meta: dict[str, Any], *, namespaced: bool, name_rule: str, path: str = "metadata"
) -> list[FieldError]:
    """Metadata of an object being created (after any generateName was turned into a name)."""
    meta = as_dict(meta)
    return _identity(meta, namespaced, name_rule, path) + _common(meta, path)


def _immutable(new: Any, old: Any, path: str, shown: Any = None) -> list[FieldError]:
    if new != old:
        return [invalid_value(path, new if shown is None else shown, IMMUTABLE)]
    return []


def validate_object_meta_update(
    new: dict[str, Any],
    old: dict[str, Any],
    path: str = "metadata",
    *,
    namespaced: bool | None = None,
    name_rule: str | None = None,
) -> list[FieldError]:
    """Metadata of an update: identity fields may not change, and the rest must still be valid.

    With `namespaced` and `name_rule` given, the name and namespace are also checked as on create.
    """
    new, old = as_dict(new), as_dict(old)
    errs: list[FieldError] = []
    new_gen, old_gen = new.get("generation"), old.get("generation")
    if isinstance(new_gen, int) and isinstance(old_gen, int) and new_gen < old_gen:
        errs.append(invalid_value(f"{path}.generation", new_gen, "must not be decremented"))
    errs += _immutable(_str(new.get("name")), _str(old.get("name")), f"{path}.name")
    errs += _immutable(_str(new.get("namespace")), _str(old.get("namespace")), f"{path}.namespace")
    errs += _immutable(_str(new.get("uid")), _str(old.get("uid")), f"{path}.uid")
    new_ts, old_ts = new.get("creationTimestamp"), old.get("creationTimestamp")
    errs += _immutable(new_ts, old_ts, f"{path}.creationTimestamp", GoValue(_go_time(new_ts)))
    new_del, old_del = new.get("deletionTimestamp"), old.get("deletionTimestamp")
    errs += _immutable(new_del, old_del, f"{path}.deletionTimestamp",
                       GoValue("null" if new_del is None else _go_time(new_del)))
    new_grace, old_grace = new.get("deletionGracePeriodSeconds"), old.get("deletionGracePeriodSeconds")
    errs += _immutable(new_grace, old_grace, f"{path}.deletionGracePeriodSeconds",
                       GoValue("null" if new_grace is None else str(new_grace)))
    if namespaced is not None and name_rule is not None:
        # The create-time rules on the (unchanged) identity, as Kubernetes' XUpdate validators run them.
        errs += _identity(new, namespaced, name_rule, path)
    errs += _common(new, path)
    return errs


def _go_time(ts: Any) -> str:
    """metav1.Time's String(): `2006-01-02 15:04:05 +0000 UTC`."""
    if not isinstance(ts, str) or not ts:
        return "0001-01-01 00:00:00 +0000 UTC"
    s = ts.rstrip("Z").replace("T", " ")
    return f"{s} +0000 UTC"


# --------------------------------------------------------------------------------------------
# Table columns, described as kube-apiserver describes them (the OpenAPI field docs)


@functools.cache
def field_doc(definition: str, field: str) -> str:
    """The description of `field` in OpenAPI definition `definition` (e.g. io.k8s.api.core.v1.Secret)."""
    try:
        props = definitions().get(definition, {}).get("properties", {})
        return str(props.get(field, {}).get("description", ""))
    except Exception:  # the schema package is missing or unreadable: columns still work
        return ""


OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def column(name: str, description: str, *, type_: str = "string", fmt: str = "", priority: int = 0) -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


def name_column(priority: int = 0) -> dict[str, Any]:
    return column("Name", field_doc(OBJECT_META, "name"), fmt="name", priority=priority)


def age_column() -> dict[str, Any]:
    return column("Age", field_doc(OBJECT_META, "creationTimestamp"))


def created_at_column() -> dict[str, Any]:
    """The default table's second column (kinds without a printer of their own, e.g. Role)."""
    return column("Created At", field_doc(OBJECT_META, "creationTimestamp"), type_="date")
