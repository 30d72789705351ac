"""The checks kube-apiserver makes on a CRD version's openAPIV3Schema when the CRD is created (apiextensions v1)."""

from __future__ import annotations

import copy
from typing import Any

from kubesat import errors
from kubesat.errors import FieldError, GoValue
from kubesat.apimachinery.crdschema import nodes
from kubesat.apimachinery.crdschema.bounds import Budget
from kubesat.apimachinery.crdschema.gofmt import field_value
from kubesat.apimachinery.crdschema.invariants import init_error, structural_errors
from kubesat.apimachinery.crdschema.prune import prune_embedded
from kubesat.apimachinery.crdschema.validate import deep_equal, schema_errors

_TYPES = ["array", "boolean", "integer", "number", "object", "string"]
_META = ("metadata", "kind", "apiVersion")
_ROOT_WITH_STATUS = frozenset({
    "description", "type", "format", "title", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf", "required", "items",
    "properties", "externalDocs", "example", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations"})
_ROOT_WITH_STATUS_GO = ("[Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength "
                        "MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties "
                        "ExternalDocs Example XPreserveUnknownFields XValidations]")
_BOOLS = frozenset({"nullable", "uniqueItems", "exclusiveMaximum", "exclusiveMinimum", "x-kubernetes-embedded-resource",
                    "x-kubernetes-int-or-string"})
_REASONS = ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"]


class Leniency:
    """The rules an update does not enforce because the old CRD already broke them (Kubernetes' validationOptions)."""

    __slots__ = ("valid_types", "pruned_defaults", "atomic_sets", "map_list_keys")

    def __init__(self, old_schemas: list[Any] | None, budget: Budget) -> None:
        old = [s for s in old_schemas or [] if isinstance(s, dict)]
        self.valid_types = not any(_has(s, _invalid_type, budget) for s in old)
        self.atomic_sets = not any(_has(s, _non_atomic_set, budget) for s in old)
        self.map_list_keys = not any(_has(s, _bad_map_list_keys, budget) for s in old)
        self.pruned_defaults = not any(_has_unpruned_defaults(s, budget) for s in old)


def _has(s: dict[str, Any], pred: Any, budget: Budget, depth: int = 0) -> bool:
    """Does any node of the schema (junctors, items, properties, additionalProperties too) satisfy pred."""
    budget.step(depth)
    if pred(s):
        return True
    subs: list[Any] = [s.get("not"), s.get("items"), s.get("additionalProperties"), *_props(s).values()]
    for key in ("allOf", "anyOf", "oneOf"):
        subs.extend(nodes.seq(s.get(key)))
    return any(isinstance(x, dict) and _has(x, pred, budget, depth + 1) for x in subs)


def _invalid_type(s: dict[str, Any]) -> bool:
    return bool(_type(s)) and _type(s) not in _TYPES


def _non_atomic_set(s: dict[str, Any]) -> bool:
    items = s.get("items")
    if s.get("x-kubernetes-list-type") != "set" or not isinstance(items, dict):
        return False
    if _type(items) == "array":
        return items.get("x-kubernetes-list-type") not in (None, "atomic")
    return _type(items) == "object" and items.get("x-kubernetes-map-type") != "atomic"


def _bad_map_list_keys(s: dict[str, Any]) -> bool:
    checks = _OpenAPI(Budget())
    checks._map_list_keys(s, nodes.seq(s.get("x-kubernetes-list-map-keys")), "")
    return bool(checks.errs)


def _has_unpruned_defaults(s: dict[str, Any], budget: Budget) -> bool:
    if init_error(s, budget, 0) is not None or structural_errors(s, "", budget):
        return False
    return _has(s, lambda node: _default_changes_when_pruned(node, budget), budget)


def _default_changes_when_pruned(s: dict[str, Any], budget: Budget) -> bool:
    value = s.get("default")
    if value is None:
        return False
    pruned = copy.deepcopy(value)
    prune_embedded(s, pruned, s.get("x-kubernetes-embedded-resource") is True, budget)
    return not deep_equal(pruned, value)


class _Ctx:
    """What a schema node inherits: may it carry a default (and why not), and is it inside resource metadata."""

    __slots__ = ("defaults_reason", "inside_meta")

    def __init__(self, defaults_reason: str | None = None, inside_meta: bool = False) -> None:
        self.defaults_reason = defaults_reason  # None: defaults allowed
        self.inside_meta = inside_meta


def _props(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    p = s.get("properties")
    return {k: v for k, v in p.items() if isinstance(v, dict)} if isinstance(p, dict) else {}


def _type(s: dict[str, Any]) -> str:
    t = s.get("type")
    return t if isinstance(t, str) else ""


def _set(s: dict[str, Any], key: str) -> bool:
    """Is the keyword set as Go sees it: id non-empty, the maps non-empty, the pointers present."""
    value = s.get(key)
    if key in ("id", "patternProperties", "definitions"):
        return bool(value)
    return value is not None


def _go_strings(values: list[Any]) -> GoValue:
    return GoValue("[]string{" + ", ".join(f'"{v}"' for v in values) + "}")


class _OpenAPI:
    """ValidateCustomResourceDefinitionOpenAPISchema: the keyword rules, node by node, top-down."""

    def __init__(self, budget: Budget, lenient: Leniency | None = None) -> None:
        self.budget = budget
        self.lenient = lenient or Leniency(None, budget)
        self.errs: list[FieldError] = []

    def node(self, s: dict[str, Any], path: str, ctx: _Ctx, is_root: bool, depth: int) -> None:
        self.budget.step(depth)
        self.standard(s, path, ctx)
        if s.get("uniqueItems") is True:
            self.errs.append(errors.forbidden_field(
                f"{path}.uniqueItems",
                        "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
        self.children(s, path, ctx, is_root, depth)
        self.extensions(s, path)

    def standard(self, s: dict[str, Any], path: str, ctx: _Ctx) -> None:
        add = self.errs.append
        typ = _type(s)
        if typ and typ not in _TYPES and self.lenient.valid_types:
            add(errors.not_supported(f"{path}.type", typ, _TYPES))
        if s.get("default") is not None and ctx.defaults_reason is not None:
            add(errors.forbidden_field(f"{path}.default", ("must not be set " + ctx.defaults_reason).rstrip()))
        for key in ("id", "additionalItems", "patternProperties", "definitions", "dependencies", "$ref"):
            if _set(s, key):
                add(errors.forbidden_field(f"{path}.{key}", f"{key} is not supported"))
        if typ == "null":
            add(errors.forbidden_field(f"{path}.type", "type cannot be set to null, use nullable as an alternative"))
        if isinstance(s.get("items"), list) and s["items"]:
            add(errors.forbidden_field(f"{path}.items", "items must be a schema object and not an array"))
        if ctx.inside_meta and s.get("x-kubernetes-embedded-resource") is True:
            add(errors.forbidden_field(f"{path}.x-kubernetes-embedded-resource",
                    "must not be used inside of resource meta"))

    def children(self, s: dict[str, Any], path: str, ctx: _Ctx, is_root: bool, depth: int) -> None:
        extra = s.get("additionalProperties")
        props = _props(s)
        if extra is not None:
            if props and (extra is False or isinstance(extra, dict)):
                self.errs.append(errors.forbidden_field(f"{path}.additionalProperties",
                                                        "additionalProperties and properties are mutual exclusive"))
            if isinstance(extra, dict):
                sub = _Ctx("inside additionalProperties applying to object metadata", True) if ctx.inside_meta else ctx
                self.node(extra, f"{path}.additionalProperties", sub, False, depth + 1)
        embedded = s.get("x-kubernetes-embedded-resource") is True
        for name in sorted(props):
            sub = ctx
            if (is_root or embedded) and name in _META:
                sub = _Ctx(f"in top-level {name}" if is_root else ctx.defaults_reason, True)
            self.node(props[name], f"{path}.properties[{name}]", sub, False, depth + 1)
        if isinstance(s.get("not"), dict):
            self.node(s["not"], f"{path}.not", ctx, False, depth + 1)
        for junctor in ("allOf", "oneOf", "anyOf"):
            subs = s.get(junctor)
            for i, sub_schema in enumerate(subs if isinstance(subs, list) else []):
                if isinstance(sub_schema, dict):
                    self.node(sub_schema, f"{path}.{junctor}[{i}]", ctx, False, depth + 1)
        items = s.get("items")
        if isinstance(items, dict):
            self.node(items, f"{path}.items", ctx, False, depth + 1)
        elif isinstance(items, list):
            for i, sub_schema in enumerate(items):
                if isinstance(sub_schema, dict):
                    self.node(sub_schema, f"{path}.items[{i}]", ctx, False, depth + 1)

    def extensions(self, s: dict[str, Any], path: str) -> None:
        add = self.errs.append
        typ = _type(s)
        if s.get("x-kubernetes-preserve-unknown-fields") is False:
            add(errors.invalid_value(f"{path}.x-kubernetes-preserve-unknown-fields", False,
                    "must be true or undefined"))
        map_type, list_type = s.get("x-kubernetes-map-type"), s.get("x-kubernetes-list-type")
        if map_type is not None and typ != "object":
            self._wrong_type(path, typ, "must be object if x-kubernetes-map-type is specified")
        if map_type is not None and map_type not in ("atomic", "granular"):
            add(errors.not_supported(f"{path}.x-kubernetes-map-type", map_type, ["atomic", "granular"]))
        if list_type is not None and typ != "array":
            self._wrong_type(path, typ, "must be array if x-kubernetes-list-type is specified")
        elif list_type == "set" and isinstance(s.get("items"), dict) and self.lenient.atomic_sets:
            self._set_items(s["items"], path)
        if list_type is not None and list_type not in ("atomic", "set", "map"):
            add(errors.not_supported(f"{path}.x-kubernetes-list-type", list_type, ["atomic", "set", "map"]))
        keys = s.get("x-kubernetes-list-map-keys")
        keys = keys if isinstance(keys, list) else []
        if keys and list_type is None:
            add(errors.required(f"{path}.x-kubernetes-list-type",
                    "must be map if x-kubernetes-list-map-keys is non-empty"))
        elif keys and list_type != "map":
            add(errors.invalid_value(f"{path}.x-kubernetes-list-type", list_type,
                                     "must be map if x-kubernetes-list-map-keys is non-empty"))
        if list_type == "map":
            self._map_list(s, keys, path)
        if self.lenient.map_list_keys:
            self._map_list_keys(s, keys, path)
        self._validations(s, path)

    def _wrong_type(self, path: str, typ: str, detail: str) -> None:
        if not typ:
            self.errs.append(errors.required(f"{path}.type", detail))
        else:
            self.errs.append(errors.invalid_value(f"{path}.type", typ, detail))

    def _set_items(self, items: dict[str, Any], path: str) -> None:
        typ = _type(items)
        if typ == "array" and items.get("x-kubernetes-list-type") not in (None, "atomic"):
            self.errs.append(errors.invalid_value(f"{path}.items.x-kubernetes-list-type",
                                                  items["x-kubernetes-list-type"],
                                                  "must be atomic as item of a list with x-kubernetes-list-type=set"))
        if typ == "object" and items.get("x-kubernetes-map-type") != "atomic":
            self.errs.append(errors.invalid_value(f"{path}.items.x-kubernetes-map-type",
                                                  items.get("x-kubernetes-list-type"),
                                                  "must be atomic as item of a list with x-kubernetes-list-type=set"))

    def _map_list(self, s: dict[str, Any], keys: list[Any], path: str) -> None:
        add = self.errs.append
        items = s.get("items")
        if not keys:
            add(errors.required(f"{path}.x-kubernetes-list-map-keys",
                    "must not be empty if x-kubernetes-list-type is map"))
        if items is None:
            add(errors.required(f"{path}.items", "must have a schema if x-kubernetes-list-type is map"))
        if isinstance(items, list):
            add(errors.invalid_value(f"{path}.items", field_value(items),
                                     "must only have a single schema if x-kubernetes-list-type is map"))
        if not isinstance(items, dict):
            return
        if _type(items) != "object":
            add(errors.invalid_value(f"{path}.items.type", _type(items),
                                     "must be object if parent array's x-kubernetes-list-type is map"))
            return
        seen: set[str] = set()
        props = _props(items)
        for k in keys:
            if k in props:
                if _type(props[k]) in ("array", "object"):
                    add(errors.invalid_value(f"{path}.items.properties[{k}].type", _type(items),
                                             "must be a scalar type if parent array's x-kubernetes-list-type is map"))
            else:
                add(errors.invalid_value(f"{path}.x-kubernetes-list-map-keys", _go_strings(keys),
                                         "entries must all be names of item properties"))
            if k in seen:
                add(errors.invalid_value(f"{path}.x-kubernetes-list-map-keys", _go_strings(keys),
                                         "must not contain duplicate entries"))
            seen.add(k) if isinstance(k, str) else None

    def _map_list_keys(self, s: dict[str, Any], keys: list[Any], path: str) -> None:
        items, list_type = s.get("items"), s.get("x-kubernetes-list-type")
        if not isinstance(items, dict) or list_type not in ("set", "map"):
            return
        if items.get("nullable") is True:
            self.errs.append(errors.forbidden_field(f"{path}.items.nullable",
                    f"cannot be nullable when x-kubernetes-list-type is {list_type}"))
        if list_type != "map":
            return
        required = nodes.seq(items.get("required"))
        props = _props(items)
        for k in keys:
            if k not in props:
                continue
            if k not in required and props[k].get("default") is None:
                self.errs.append(errors.required(
                    f"{path}.items.properties[{k}].default",
                    "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required "
                    "property"))
            if props[k].get("nullable") is True:
                self.errs.append(errors.forbidden_field(f"{path}.items.properties[{k}].nullable",
                    "this property is in x-kubernetes-list-map-keys, so it cannot be nullable"))

    def _validations(self, s: dict[str, Any], path: str) -> None:
        rules = s.get("x-kubernetes-validations")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                self._rule(rule, f"{path}.x-kubernetes-validations[{i}]")

    def _rule(self, rule: dict[str, Any], path: str) -> None:
        add = self.errs.append
        rule_text = nodes.text(rule.get("rule"))
        msg = nodes.text(rule.get("message"))
        if not rule_text.strip():
            add(errors.required(f"{path}.rule", "rule is not specified"))
        elif msg and not msg.strip():
            add(errors.invalid_value(f"{path}.message", msg, "message must be non-empty if specified"))
        elif "\n" in msg.strip() or "\r" in msg.strip():
            add(errors.invalid_value(f"{path}.message", msg, "message must not contain line breaks"))
        elif ("\n" in rule_text.strip() or "\r" in rule_text.strip()) and not msg.strip():
            add(errors.required(f"{path}.message", "message must be specified if rule contains line breaks"))
        expr = rule.get("messageExpression")
        if isinstance(expr, str) and expr and not expr.strip():
            add(errors.required(f"{path}.messageExpression", "messageExpression must be non-empty if specified"))
        reason = rule.get("reason")
        if reason is not None and reason not in _REASONS:
            add(errors.not_supported(f"{path}.reason", reason, _REASONS))
        fp = rule.get("fieldPath")
        if isinstance(fp, str) and fp and not fp.strip():
            add(errors.invalid_value(f"{path}.fieldPath", fp, "fieldPath must be non-empty if specified"))
        if isinstance(fp, str) and ("\n" in fp or "\r" in fp):
            add(errors.invalid_value(f"{path}.fieldPath", fp, "fieldPath must not contain line breaks"))


# ------------------------------------------------------------------------------------------ defaults

def _default_errors(s: dict[str, Any], path: str, inside_meta: bool, budget: Budget, depth: int,
                    require_pruned: bool = True) -> list[FieldError]:
    """ValidateDefaults: each default must be pruned already and valid against its own schema."""
    budget.step(depth)
    out: list[FieldError] = []
    embedded = s.get("x-kubernetes-embedded-resource") is True
    if embedded:
        inside_meta = False
    value = s.get("default")
    if value is not None and not inside_meta:
        pruned = copy.deepcopy(value)
        prune_embedded(s, pruned, embedded, budget)
        if require_pruned and not deep_equal(pruned, value):
            out.append(errors.invalid_value(f"{path}.default", field_value(value), "must not have unknown fields"))
        out.extend(schema_errors(s, value, f"{path}.default", budget))
    elif value is not None:
        out.extend(schema_errors(s, value, f"{path}.default", budget))
    items = s.get("items")
    if isinstance(items, dict):
        out.extend(_default_errors(items, f"{path}.items", inside_meta, budget, depth + 1, require_pruned))
    for k, sub in sorted(_props(s).items()):
        sub_meta = inside_meta or (embedded and k in _META)
        out.extend(_default_errors(sub, f"{path}.properties[{k}]", sub_meta, budget, depth + 1, require_pruned))
    return out


# ------------------------------------------------------------------------------------------ all together

def _status_root(schema: dict[str, Any], path: str) -> list[FieldError]:
    for key, value in schema.items():
        if value is None or (value is False and key in _BOOLS) or (value in ("", [], {}) and key != "default"):
            continue  # Go's zero values; pointers (additionalProperties: false, default) count as set
        if key == "type":
            if value != "object":
                return [errors.invalid_value(f"{path}.type", value, 'only "object" is allowed as the type at the root '
                "of the schema if the status subresource is enabled")]
            continue
        if key not in _ROOT_WITH_STATUS:
            return [errors.invalid_value(path, GoValue("apiextensions.JSONSchemaProps{...}"),
                                         f"only {_ROOT_WITH_STATUS_GO} fields are allowed at the root of the schema "
                                         "if the status subresource is enabled")]
    return []


def schema_definition_errors(schema: dict[str, Any], path: str, status_enabled: bool, budget: Budget,
                             old_schemas: list[Any] | None = None) -> list[FieldError]:
    lenient = Leniency(old_schemas, budget)
    errs: list[FieldError] = []
    if status_enabled:
        errs.extend(_status_root(schema, path))
    if schema.get("nullable") is True:
        errs.append(errors.forbidden_field(f"{path}.nullable", "nullable cannot be true at the root"))
    not_structural = init_error(schema, budget, 0)
    if not_structural is None:
        structural = structural_errors(schema, path, budget)
        root = {**schema, "x-kubernetes-embedded-resource": True}
        errs.extend(structural or _default_errors(root, path, False, budget, 0, lenient.pruned_defaults))
    checks = _OpenAPI(budget, lenient)
    checks.node(schema, path, _Ctx(), True, 0)
    errs.extend(checks.errs)
    if not errs and not_structural is not None:
        errs.append(errors.invalid_value(path, "", not_structural))
    return errs
