"""Validating a custom resource against its structural schema, as kube-apiserver's kube-openapi validator words it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from kubesat.errors import FieldError
from kubesat import errors
from kubesat.apimachinery.crdschema import formats, regex
from kubesat.apimachinery.crdschema import nodes
from kubesat.apimachinery.crdschema.bounds import Budget
from kubesat.apimachinery.crdschema.gofmt import field_value, go_float, go_json, go_quote, go_v

# (metadata object, its field path) -> errors; the caller's ObjectMeta validation for embedded resources.
MetaValidator = Callable[[dict[str, Any], str], list[FieldError]]

_IN = "body"
# No old value to compare with (a create, or a value with nothing to correlate it to on update).
NO_OLD: Any = object()


class _Err:
    """A kube-openapi validation error: a code, the dotted name, the bad value and the message."""

    __slots__ = ("code", "name", "value", "valid", "message")

    def __init__(self, code: str, name: str, message: str, value: Any = None, valid: Any = None) -> None:
        self.code = code
        self.name = name
        self.message = message
        self.value = value
        self.valid = valid


class _Result:
    """kube-openapi's Result: errors de-duplicated by text, and the match count anyOf/oneOf rank failures by."""

    __slots__ = ("errors", "texts", "matches")

    def __init__(self) -> None:
        self.errors: list[_Err] = []
        self.texts: set[str] = set()
        self.matches = 0

    def add(self, err: _Err) -> None:
        if err.message not in self.texts:
            self.texts.add(err.message)
            self.errors.append(err)

    def merge(self, other: _Result | None) -> None:
        if other is not None:
            for e in other.errors:
                self.add(e)
            self.matches += other.matches

    def ok(self) -> bool:
        return not self.errors


def _only(err: _Err) -> _Result:
    r = _Result()
    r.add(err)
    return r


# ------------------------------------------------------------------------------------------ values

def _kind(data: Any) -> str:
    if isinstance(data, bool):
        return "boolean"
    if isinstance(data, str):
        return "string"
    if isinstance(data, int):
        return "integer"
    if isinstance(data, float):
        return "number"
    if isinstance(data, list):
        return "array"
    if isinstance(data, dict):
        return "object"
    return ""


def deep_equal(a: Any, b: Any) -> bool:
    """Go's reflect.DeepEqual on decoded JSON: an int64 never equals a float64, nor a bool a number."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(deep_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _converted_equal(data: Any, enum_value: Any) -> bool:
    """reflect's Convert then DeepEqual, as kube-openapi's enum check does (numbers convert both ways)."""
    if deep_equal(data, enum_value):
        return True
    if isinstance(data, bool) or isinstance(enum_value, bool):
        return False
    if isinstance(enum_value, float) and isinstance(data, int):
        return float(data) == enum_value
    if isinstance(enum_value, int) and isinstance(data, float):
        return math.isfinite(data) and int(data) == enum_value
    if isinstance(enum_value, str) and isinstance(data, int):
        return (chr(data) if 0 <= data <= 0x10FFFF and not 0xD800 <= data <= 0xDFFF else "\ufffd") == enum_value
    return False


def _types(s: dict[str, Any]) -> list[str]:
    if s.get("x-kubernetes-int-or-string") is True:
        return ["integer", "string"]
    t = s.get("type")
    return [t] if isinstance(t, str) and t else []


def _format(s: dict[str, Any]) -> str:
    f = s.get("format")
    return f if isinstance(f, str) and formats.is_supported(f) else ""


def _number(v: Any) -> float | int | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _count(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _json_integer(f: float) -> bool:
    """swag.IsFloat64AJSONInteger."""
    if not math.isfinite(f) or abs(f) > 2**53 - 1:
        return False
    g = float(math.trunc(f))
    if f == g:
        return True
    diff = abs(f - g)
    return diff / min(abs(f) + abs(g), 1.7976931348623157e308) < 1e-9


def _num_text(v: Any) -> str:
    return go_float(v) if isinstance(v, float) else str(v)


# ------------------------------------------------------------------------------------------ the validator

class _Validator:
    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def schema(self, s: dict[str, Any], data: Any, path: str, depth: int, old: Any = NO_OLD,
               ratchet: bool = True) -> _Result:
        """kube-openapi's SchemaValidator; with an old value (an update), errors on an unchanged value are dropped
        (CRDValidationRatcheting), for this node when ratchet is set (not for the branches of a junctor)."""
        result = self._schema(s, data, path, depth, old)
        if ratchet and old is not NO_OLD and result.errors and deep_equal(data, old):
            result.errors, result.texts = [], set()
        return result

    def _schema(self, s: dict[str, Any], data: Any, path: str, depth: int, old: Any) -> _Result:
        self.budget.step(depth)
        result = _Result()
        if data is None:
            result.merge(self.type_check(s, data, path))
            result.merge(self.enum_check(s, data, path))
            return result
        kind = _kind(data)
        if _types(s) or _format(s):
            result.merge(self.type_check(s, data, path))
            result.matches += 1
        result.merge(self.junctors(s, data, path, depth, old))
        result.matches += 1
        if kind == "string":
            result.merge(self.string_check(s, data, path))
            result.matches += 1
            if _format(s):
                result.merge(self.format_check(s, data, path))
                result.matches += 1
        if kind in ("integer", "number"):
            result.merge(self.number_check(s, data, path))
            result.matches += 1
        if kind == "array":
            result.merge(self.slice_check(s, data, path, depth, old))
            result.matches += 1
        result.merge(self.enum_check(s, data, path))
        result.matches += 1
        if kind == "object":
            result.merge(self.object_check(s, data, path, depth, old))
            result.matches += 1
        result.matches += 1
        return result

    def type_check(self, s: dict[str, Any], data: Any, path: str) -> _Result:
        types, fmt = _types(s), _format(s)
        ok = _Result()
        ok.matches = 1
        if data is None:
            if types and "null" not in types and s.get("nullable") is not True:
                return _only(_invalid_type(path, ",".join(types), "null"))
            return ok
        kind = _kind(data)
        own_format = {"integer": "int64", "number": "float64"}.get(kind, "")
        float_int = kind == "number" and _json_integer(data) and "integer" in types
        int_float = kind == "integer" and "number" in types
        if kind not in ("string",
                "array") and fmt and not (kind in types or own_format == fmt or float_int or int_float):
            return _only(_invalid_type(path, fmt, own_format))
        if "number" not in types and "integer" not in types and fmt and kind in ("string", "array"):
            return ok
        if not (kind in types or float_int or int_float):
            return _only(_invalid_type(path, ",".join(types), kind))
        return ok

    def enum_check(self, s: dict[str, Any], data: Any, path: str) -> _Result | None:
        enum = s.get("enum")
        if not isinstance(enum, list) or not enum:
            return None
        if data is not None and any(v is not None and _converted_equal(data, v) for v in enum):
            return None
        return _only(_Err("enum", path, f"{path} in {_IN} should be one of {go_v(enum)}", data, enum))

    def string_check(self, s: dict[str, Any], data: str, path: str) -> _Result | None:
        n = len(data)
        max_len, min_len = _count(s.get("maxLength")), _count(s.get("minLength"))
        if max_len is not None and n > max_len:
            return _only(_Err("tooLong", path,
                    f"{path} in {_IN} should be at most {max_len} chars long", data, max_len))
        if min_len is not None and n < min_len:
            return _only(_Err("tooShort", path, f"{path} in {_IN} should be at least {min_len} chars long", data))
        pattern = s.get("pattern")
        if isinstance(pattern, str) and pattern:
            try:
                rx = regex.translate(pattern)
            except regex.RegexError as e:
                return _only(_Err("pattern", path, f"{path} in {_IN} should match '{pattern}, but pattern is invalid: "
                                  f"{e}'", data))
            except regex.Unsupported:
                return None
            if not rx.search(data):
                return _only(_Err("pattern", path, f"{path} in {_IN} should match '{pattern}'", data))
        return None

    def format_check(self, s: dict[str, Any], data: str, path: str) -> _Result | None:
        fmt = _format(s)
        if formats.valid(fmt, data):
            return None
        return _only(_invalid_type(path, fmt, data))

    def number_check(self, s: dict[str, Any], data: int | float, path: str) -> _Result:
        res = _Result()
        multiple, minimum, maximum = _number(s.get("multipleOf")), _number(s.get("minimum")), _number(s.get("maximum"))
        if multiple is not None:
            res.merge(_multiple_of(path, data, multiple))
        if minimum is not None:
            res.merge(_bound(path, data, minimum, s.get("exclusiveMinimum") is True, low=True))
        if maximum is not None:
            res.merge(_bound(path, data, maximum, s.get("exclusiveMaximum") is True, low=False))
        res.matches += 1
        return res

    def slice_check(self, s: dict[str, Any], data: list[Any], path: str, depth: int, old: Any) -> _Result:
        result = _Result()
        items = s.get("items")
        if isinstance(items, dict):
            olds = _correlated_items(s, data, old)
            for i, v in enumerate(data):
                result.merge(self.schema(items, v, f"{path}[{i}]", depth + 1, olds[i]))
        size = len(data)
        min_items, max_items = _count(s.get("minItems")), _count(s.get("maxItems"))
        if min_items is not None and size < min_items:
            result.add(_Err("minItems", path, f"{path} in {_IN} should have at least {min_items} items", size))
        if max_items is not None and size > max_items:
            result.add(_Err("maxItems", path,
                    f"{path} in {_IN} should have at most {max_items} items", size, max_items))
        if s.get("uniqueItems") is True and any(deep_equal(a, b) for i, a in enumerate(data) for b in data[:i]):
            result.add(_Err("unique", path, f"{path} in {_IN} shouldn't contain duplicates"))
        result.matches += 1
        return result

    def object_check(self, s: dict[str, Any], data: dict[str, Any], path: str, depth: int, old: Any) -> _Result:
        res = _Result()
        n = len(data)
        min_p, max_p = _count(s.get("minProperties")), _count(s.get("maxProperties"))
        if min_p is not None and n < min_p:
            res.add(_Err("minProperties", path, f"{path} in {_IN} should have at least {min_p} properties", n, min_p))
        if max_p is not None and n > max_p:
            res.add(_Err("maxProperties", path, f"{path} in {_IN} should have at most {max_p} properties", n, max_p))
        props = nodes.obj(s.get("properties"))
        extra = s.get("additionalProperties")
        if extra is False:
            for k in data:
                if k not in props:
                    res.add(_Err("forbiddenProperty", path, f"{path}.{k} in {_IN} is a forbidden property", k))
        elif isinstance(extra, dict):
            for k, v in data.items():
                if k not in props:
                    res.merge(self.schema(extra, v, f"{path}.{k}", depth + 1, _old_key(old, k, path)))
        for name, sub in props.items():
            if name in data and isinstance(sub, dict):
                child = f"{path}.{name}" if path else name
                res.merge(self.schema(sub, data[name], child, depth + 1, _old_key(old, name, path)))
        for k in nodes.seq(s.get("required")):
            if isinstance(k, str) and k not in data:
                res.add(_Err("required", f"{path}.{k}", f"{path}.{k} in {_IN} is required"))
        return res

    def junctors(self, s: dict[str, Any], data: Any, path: str, depth: int, old: Any) -> _Result:
        main = _Result()
        main.matches = 1
        if "anyOf" not in s and "oneOf" not in s and "allOf" not in s and "not" not in s:
            return main
        any_of, one_of, all_of, not_ = s.get("anyOf"), s.get("oneOf"), s.get("allOf"), s.get("not")
        if isinstance(any_of, list) and any_of:
            self._any_of(any_of, data, path, depth, main, old)
        if isinstance(one_of, list) and one_of:
            self._one_of(one_of, data, path, depth, main, old)
        if isinstance(all_of, list) and all_of:
            valid = 0
            for sub in all_of:
                r = self.schema(sub if isinstance(sub, dict) else {}, data, path, depth + 1, old, ratchet=False)
                valid += r.ok()
                main.merge(r)
            if valid != len(all_of):
                tail = ". None validated" if valid == 0 else ""
                main.add(_Err("composite", path, f"{go_quote(path)} must validate all the schemas (allOf){tail}"))
        if isinstance(not_, dict) and self.schema(not_, data, path, depth + 1, old, ratchet=False).ok():
            main.add(_Err("composite", path, f"{go_quote(path)} must not validate the schema (not)"))
        return main

    def _any_of(self, subs: list[Any], data: Any, path: str, depth: int, main: _Result, old: Any) -> None:
        best: _Result | None = None
        first_ok: _Result | None = None
        for sub in subs:
            r = self.schema(sub if isinstance(sub, dict) else {}, data, path, depth + 1, old, ratchet=False)
            if r.ok():
                best, first_ok = None, r
                break
            if best is None or r.matches > best.matches:
                best = r
        if first_ok is None:
            main.add(_Err("composite", path, f"{go_quote(path)} must validate at least one schema (anyOf)"))
        main.merge(best if best is not None else first_ok)

    def _one_of(self, subs: list[Any], data: Any, path: str, depth: int, main: _Result, old: Any) -> None:
        best: _Result | None = None
        first_ok: _Result | None = None
        valid = 0
        for sub in subs:
            r = self.schema(sub if isinstance(sub, dict) else {}, data, path, depth + 1, old, ratchet=False)
            if r.ok():
                valid += 1
                best = None
                first_ok = first_ok or r
                continue
            if valid == 0 and (best is None or r.matches > best.matches):
                best = r
        if valid != 1:
            more = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            main.add(_Err("composite", path,
                    f"{go_quote(path)} must validate one and only one schema (oneOf). {more}"))
            main.merge(best)
        else:
            main.merge(first_ok)


def _old_key(old: Any, key: str, path: str) -> Any:
    """The old value a property correlates with (the root's apiVersion and kind never ratchet)."""
    if not isinstance(old, dict) or key not in old or (not path and key in ("apiVersion", "kind")):
        return NO_OLD
    return old[key]


def _correlated_items(s: dict[str, Any], data: list[Any], old: Any) -> list[Any]:
    """Old items by new index: only map lists correlate (by their keys); set and atomic lists do not."""
    keys = [k for k in nodes.seq(s.get("x-kubernetes-list-map-keys")) if isinstance(k, str)]
    if s.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(old, list):
        return [NO_OLD] * len(data)
    by_key: dict[str, Any] = {}
    for item in old:
        if isinstance(item, dict):
            by_key.setdefault(_map_key(item, keys), item)
    return [by_key.get(_map_key(item, keys), NO_OLD) if isinstance(item, dict) else NO_OLD for item in data]


def _map_key(item: dict[str, Any], keys: list[str]) -> str:
    return json.dumps([[k, item.get(k)] for k in keys], sort_keys=True)


def _invalid_type(path: str, type_name: str, value: Any) -> _Err:
    if isinstance(value, str):
        text = f"{path} in {_IN} must be of type {type_name}: {go_quote(value)}"
    else:
        text = f"{path} in {_IN} must be of type {type_name}"
    return _Err("type", path, text, value)


def _multiple_of(path: str, data: int | float, factor: int | float) -> _Result | None:
    if isinstance(data, int):
        f = int(factor)
        if f <= 0:
            return _only(_Err("multipleOfPositive", path,
                    f"factor MultipleOf declared for {path} must be positive: {f}"))
        if data % f != 0 and not (data < 0 and (-data) % f == 0):
            return _only(_Err("multipleOf", path, f"{path} in {_IN} should be a multiple of {f}", data))
        return None
    ff = float(factor)
    if ff <= 0:
        return _only(_Err("multipleOfPositive", path,
                          f"factor MultipleOf declared for {path} must be positive: {go_float(ff)}"))
    mult = 1 / ff * data if ff < 1 else data / ff
    if not _json_integer(mult):
        return _only(_Err("multipleOf", path, f"{path} in {_IN} should be a multiple of {go_float(ff)}", data))
    return None


def _bound(path: str, data: int | float, limit: int | float, exclusive: bool, low: bool) -> _Result | None:
    shown = int(limit) if isinstance(data, int) else float(limit)
    if low:
        bad = data <= shown if exclusive else data < shown
        words = "greater than" if exclusive else "greater than or equal to"
    else:
        bad = data >= shown if exclusive else data > shown
        words = "less than" if exclusive else "less than or equal to"
    if not bad:
        return None
    return _only(_Err("min" if low else "max", path, f"{path} in {_IN} should be {words} {_num_text(shown)}", data))


# ------------------------------------------------------------------------------------------ to FieldErrors

def _join(prefix: str, name: str) -> str:
    name = name[1:] if name.startswith(".") else name
    if not name:
        return prefix or "<nil>"
    return f"{prefix}.{name}" if prefix else name


def _value(v: Any) -> Any:
    return "" if v is None else field_value(v)


def _to_field_error(e: _Err, prefix: str) -> FieldError:
    if e.code == "composite":
        return errors.invalid_value(prefix or "<nil>", "", e.message)
    where = _join(prefix, e.name)
    if e.code == "required":
        return errors.required(where)
    if e.code == "enum":
        allowed = [v if isinstance(v, str) else go_json(v) for v in e.valid]
        detail = "supported values: " + ", ".join(go_quote(a) for a in allowed)
        return FieldError("FieldValueNotSupported", where, detail, field_value(e.value), True)
    if e.code == "tooLong":
        return errors.too_long(where, e.valid)
    if e.code in ("maxItems", "maxProperties"):
        return errors.too_many(where, e.value, e.valid)
    if e.code == "type":
        return errors.type_invalid(where, _value(e.value), e.message)
    return errors.invalid_value(where, _value(e.value), e.message)


def schema_errors(schema: dict[str, Any], obj: Any, path: str, budget: Budget, old: Any = NO_OLD) -> list[FieldError]:
    """The OpenAPI part of validation (kube-openapi's validator and its conversion to field errors); with old,
    an update's, where errors on values that did not change are dropped."""
    result = _Validator(budget).schema(schema, obj, "", 0, old)
    return [_to_field_error(e, path) for e in result.errors]
