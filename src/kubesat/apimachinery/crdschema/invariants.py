"""Structural-schema rules for a CRD schema (Kubernetes' NewStructural and ValidateStructural), in its error words."""

from __future__ import annotations

from typing import Any

from kubesat import errors
from kubesat.errors import FieldError
from kubesat.apimachinery.crdschema import regex
from kubesat.apimachinery.crdschema import nodes
from kubesat.apimachinery.crdschema.bounds import Budget

_UNSUPPORTED = (("id", "id"), ("$schema", "schema"), ("$ref", "$ref"), ("patternProperties", "patternProperties"),
                ("dependencies", "dependencies"), ("additionalItems", "additionalItems"),
                ("definitions", "definitions"))
_ROOT_LEVEL, _ITEM_LEVEL, _FIELD_LEVEL = 0, 1, 2


def _props(s: dict[str, Any]) -> dict[str, Any]:
    p = s.get("properties")
    return {k: v for k, v in p.items() if isinstance(v, dict)} if isinstance(p, dict) else {}


def _type(s: dict[str, Any]) -> str:
    t = s.get("type")
    return t if isinstance(t, str) else ""


def _items(s: dict[str, Any]) -> dict[str, Any] | None:
    i = s.get("items")
    return i if isinstance(i, dict) else None


def _true(s: dict[str, Any], key: str) -> bool:
    return s.get(key) is True


def _has_default(s: dict[str, Any]) -> bool:
    return s.get("default") is not None


def _keys(k: str) -> str:
    return f"[{k}]"


# ------------------------------------------------------------------------------------------ NewStructural

def init_error(s: dict[str, Any], budget: Budget, depth: int) -> str | None:
    """Why the schema cannot become a structural schema at all (Go's NewStructural error), if it cannot."""
    budget.step(depth)
    for key, word in _UNSUPPORTED:
        if s.get(key) not in (None, "", {}, []):
            return f"OpenAPIV3Schema '{word}' is not supported"
    if isinstance(s.get("items"), list):
        return "OpenAPIV3Schema 'items' must be a schema, but is an array"
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        return "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined"
    subs: list[Any] = [s.get("not"), _items(s), s.get("additionalProperties"), *_props(s).values()]
    for junctor in ("allOf", "anyOf", "oneOf"):
        if isinstance(s.get(junctor), list):
            subs.extend(s[junctor])
    for sub in subs:
        if isinstance(sub, dict):
            why = init_error(sub, budget, depth + 1)
            if why:
                return why
    return None


# ------------------------------------------------------------------------------------------ ValidateStructural

class _Structural:
    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.errs: list[FieldError] = []

    def invariants(self, s: dict[str, Any], lvl: int, path: str, depth: int) -> None:
        self.budget.step(depth)
        typ = _type(s)
        items = _items(s)
        if typ == "array" and items is None:
            self.errs.append(errors.required(f"{path}.items", "must be specified"))
        if items is not None:
            self.invariants(items, _ITEM_LEVEL, f"{path}.items", depth + 1)
        for k, v in _props(s).items():
            self.invariants(v, _FIELD_LEVEL, f"{path}.properties{_keys(k)}", depth + 1)
        extra = s.get("additionalProperties")
        if extra is not None:
            if lvl == _ROOT_LEVEL:
                self.errs.append(errors.forbidden_field(f"{path}.additionalProperties", "must not be used at the root"))
            if isinstance(extra, dict):
                self.invariants(extra, _FIELD_LEVEL, f"{path}.additionalProperties", depth + 1)
        self.extensions(s, path)
        self.value_validation(s, path, depth, nested=False)
        self.type_rules(s, lvl, path)
        self.meta_rules(s, lvl, path)

    def extensions(self, s: dict[str, Any], path: str) -> None:
        if _true(s, "x-kubernetes-int-or-string") and _true(s, "x-kubernetes-preserve-unknown-fields"):
            self.errs.append(errors.invalid_value(f"{path}.x-kubernetes-preserve-unknown-fields", True,
                                                  "must be false if x-kubernetes-int-or-string is true"))
        if _true(s, "x-kubernetes-int-or-string") and _true(s, "x-kubernetes-embedded-resource"):
            self.errs.append(errors.invalid_value(f"{path}.x-kubernetes-embedded-resource", True,
                                                  "must be false if x-kubernetes-int-or-string is true"))

    def type_rules(self, s: dict[str, Any], lvl: int, path: str) -> None:
        typ = _type(s)
        embedded = _true(s, "x-kubernetes-embedded-resource")
        if embedded and typ != "object":
            if not typ:
                self.errs.append(errors.required(f"{path}.type",
                        "must be object if x-kubernetes-embedded-resource is true"))
            else:
                self.errs.append(errors.invalid_value(f"{path}.type", typ,
                                                      "must be object if x-kubernetes-embedded-resource is true"))
        elif not typ and not _true(s, "x-kubernetes-int-or-string") and not _true(s,
                "x-kubernetes-preserve-unknown-fields"):
            where = {_ROOT_LEVEL: "at the root", _ITEM_LEVEL: "for specified array items",
                     _FIELD_LEVEL: "for specified object fields"}[lvl]
            self.errs.append(errors.required(f"{path}.type", f"must not be empty {where}"))
        if embedded and s.get("additionalProperties") is not None:
            self.errs.append(errors.forbidden_field(f"{path}.additionalProperties",
                                                    "must not be used if x-kubernetes-embedded-resource is set"))
        if lvl == _ROOT_LEVEL and typ and typ != "object":
            self.errs.append(errors.invalid_value(f"{path}.type", typ, "must be object at the root"))
        if embedded and not _true(s, "x-kubernetes-preserve-unknown-fields") and not _props(s):
            self.errs.append(errors.required(f"{path}.properties",
                    "must not be empty if x-kubernetes-embedded-resource "
                "is true without x-kubernetes-preserve-unknown-fields"))

    def meta_rules(self, s: dict[str, Any], lvl: int, path: str) -> None:
        check = lvl == _ROOT_LEVEL or _true(s, "x-kubernetes-embedded-resource")
        props = _props(s)
        for name in ("kind", "apiVersion"):
            if name in props and check and _type(props[name]) != "string":
                self.errs.append(errors.invalid_value(f"{path}.properties[{name}].type", _type(props[name]),
                                                      "must be string"))
        meta = props.get("metadata")
        if meta is None:
            return
        mpath = f"{path}.properties[metadata]"
        if check and _type(meta) != "object":
            self.errs.append(errors.invalid_value(f"{mpath}.type", _type(meta), "must be object"))
        if lvl == _ROOT_LEVEL and not _root_metadata_ok(meta):
            self.errs.append(errors.forbidden_field(mpath, "must not specify anything other than name and "
                                                           "generateName, but metadata is implicitly specified"))

    def value_validation(self, s: dict[str, Any], path: str, depth: int, nested: bool) -> None:
        skip_any_of = _int_or_string_any_of(s.get("anyOf"))
        all_of = nodes.seq(s.get("allOf"))
        skip_first = bool(all_of) and isinstance(all_of[0], dict) and _int_or_string_any_of(all_of[0].get("anyOf"))
        if not skip_any_of:
            for i, sub in enumerate(_list(s.get("anyOf"))):
                self.nested(sub, f"{path}.anyOf[{i}]", depth + 1, skip_any_of=False)
        for i, sub in enumerate(all_of):
            if isinstance(sub, dict):
                self.nested(sub, f"{path}.allOf[{i}]", depth + 1, skip_any_of=skip_first and i == 0)
        for i, sub in enumerate(_list(s.get("oneOf"))):
            self.nested(sub, f"{path}.oneOf[{i}]", depth + 1, skip_any_of=False)
        if isinstance(s.get("not"), dict):
            self.nested(s["not"], f"{path}.not", depth + 1, skip_any_of=False)
        pattern = s.get("pattern")
        if isinstance(pattern, str) and pattern:
            try:
                regex.check(pattern)
            except regex.RegexError as e:
                self.errs.append(errors.invalid_value(f"{path}.pattern", pattern,
                                                      f"must be a valid regular expression, but isn't: {e}"))

    def nested(self, v: dict[str, Any], path: str, depth: int, skip_any_of: bool) -> None:
        """A schema inside allOf/anyOf/oneOf/not: value validations only."""
        self.budget.step(depth)
        if skip_any_of:
            trimmed = dict(v)
            trimmed.pop("anyOf", None)
            self.value_validation(trimmed, path, depth, nested=True)
        else:
            self.value_validation(v, path, depth, nested=True)
        if _items(v) is not None:
            self.nested(_items(v) or {}, f"{path}.items", depth + 1, skip_any_of=False)
        for k, sub in _props(v).items():
            self.nested(sub, f"{path}.properties[{k}]", depth + 1, skip_any_of=False)
        self.forbidden_in_nested(v, path, depth)

    def forbidden_in_nested(self, v: dict[str, Any], path: str, depth: int) -> None:
        add = self.errs.append
        if _type(v):
            add(errors.forbidden_field(f"{path}.type", "must be empty to be structural"))
        extra = v.get("additionalProperties")
        if extra is not None and extra is not False:
            add(errors.forbidden_field(f"{path}.additionalProperties", "must be undefined to be structural"))
        if _has_default(v):
            add(errors.forbidden_field(f"{path}.default", "must be undefined to be structural"))
        for key in ("title", "description"):
            if isinstance(v.get(key), str) and v[key]:
                add(errors.forbidden_field(f"{path}.{key}", "must be empty to be structural"))
        for key in ("nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
                    "x-kubernetes-int-or-string"):
            if _true(v, key):
                add(errors.forbidden_field(f"{path}.{key}", "must be false to be structural"))
        if v.get("x-kubernetes-list-map-keys"):
            add(errors.forbidden_field(f"{path}.x-kubernetes-list-map-keys", "must be empty to be structural"))
        for key in ("x-kubernetes-list-type", "x-kubernetes-map-type"):
            if v.get(key) is not None:
                add(errors.forbidden_field(f"{path}.{key}", "must be undefined to be structural"))
        if v.get("x-kubernetes-validations"):
            add(errors.forbidden_field(f"{path}.x-kubernetes-validations", "must be empty to be structural"))
        if "metadata" in _props(v):
            add(errors.forbidden_field(f"{path}.properties[metadata]", "must not be specified in a nested context"))

    def completeness(self, v: dict[str, Any], s: dict[str, Any] | None, spath: str, vpath: str, depth: int) -> None:
        """Everything a junctor names must exist in the structural part (`because it is defined in ...`)."""
        self.budget.step(depth)
        for key in ("not",):
            if isinstance(v.get(key), dict):
                self.nested_complete(v[key], s, spath, f"{vpath}.{key}", depth + 1)
        for junctor in ("allOf", "anyOf", "oneOf"):
            for i, sub in enumerate(_list(v.get(junctor))):
                self.nested_complete(sub, s, spath, f"{vpath}.{junctor}[{i}]", depth + 1)

    def nested_complete(self, v: dict[str, Any], s: dict[str, Any] | None, spath: str, vpath: str, depth: int) -> None:
        if s is None:
            self.errs.append(errors.required(spath, f"because it is defined in {vpath}"))
            return
        self.completeness(v, s, spath, vpath, depth)
        if _items(v) is not None:
            self.nested_complete(_items(v) or {}, _items(s), f"{spath}.items", f"{vpath}.items", depth + 1)
        sprops = _props(s)
        for k, sub in _props(v).items():
            if k not in sprops:
                self.errs.append(errors.required(f"{spath}.properties[{k}]",
                                                 f"because it is defined in {vpath}.properties[{k}]"))
            else:
                self.nested_complete(sub, sprops[k], f"{spath}.properties[{k}]", f"{vpath}.properties[{k}]", depth + 1)

    def walk_complete(self, s: dict[str, Any], path: str, depth: int) -> None:
        self.completeness(s, s, path, path, depth)


def _list(v: Any) -> list[dict[str, Any]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _int_or_string_any_of(any_of: Any) -> bool:
    """anyOf: [{type: integer}, {type: string}] exactly, the one junctor shape int-or-string may use."""
    return (isinstance(any_of, list) and len(any_of) == 2
            and any_of[0] == {"type": "integer"} and any_of[1] == {"type": "string"})


def _root_metadata_ok(meta: dict[str, Any]) -> bool:
    """Root metadata may name only name and/or generateName (whose schemas are then free) and nothing else."""
    rest = {k: v for k, v in meta.items() if k not in ("type", "default")}
    props = rest.pop("properties", None)
    if props is not None and (not isinstance(props, dict) or not props or not set(props) <= {"name", "generateName"}):
        return False
    return all(v in (None, False, "", [], {}) for v in rest.values())


def structural_errors(schema: dict[str, Any], path: str, budget: Budget) -> list[FieldError]:
    """ValidateStructural: the structural invariants and completeness, sorted by their text as Kubernetes sorts."""
    st = _Structural(budget)
    st.invariants(schema, _ROOT_LEVEL, path, 0)
    st.walk_complete(schema, path, 0)
    return sorted(st.errs, key=lambda e: e.text())
