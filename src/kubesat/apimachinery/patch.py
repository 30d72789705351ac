"""The three PATCH bodies Kubernetes accepts, as pure functions on dicts.

JSON patch, JSON merge patch and strategic merge patch.
"""

from __future__ import annotations

import copy
import json
from typing import Any, TypeGuard

import jsonpatch
import jsonpointer

from kubesat import limits
from kubesat.apimachinery.codec import replace_lone_surrogates
from kubesat.errors import StatusError, go_json_kind
from kubesat.apimachinery import schema as openapi

# Strategic-merge-patch directive keys.
PATCH_DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"

# The apiserver refuses JSON patches with more operations than this.
MAX_JSON_PATCH_OPERATIONS = 10000

_MISSING: Any = object()

# Go's reflect type names, as they appear in the apiserver's error messages.
_GO_MAP = "map[string]interface {}"
_GO_SLICE = "[]interface {}"


# ---------------------------------------------------------------------------------------------
# Errors, worded as the apiserver words them
# ---------------------------------------------------------------------------------------------

def _bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def _unprocessable() -> StatusError:
    """What the apiserver answers when a JSON patch fails to apply (its detail is not passed on)."""
    return StatusError(422, "Invalid", "the server rejected our request due to an error in our request")


def _server_error(message: str) -> StatusError:
    """A plain (non-Status) error inside the apiserver: 500 with no reason, the raw message."""
    return StatusError(500, "", message)


def _not_an_object(result: Any, type_word: str) -> StatusError:
    """422 for a patch whose result cannot be decoded as an object, shaped like the apiserver's."""
    detail = (
        "couldn't get version/kind; json parse error: json: cannot unmarshal "
        f"{type_word} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; "
        "Kind string \"json:\\\"kind,omitempty\\\"\" }"
    )
    value = json.dumps(result, separators=(",", ":"))
    quoted = json.dumps(value)
    return StatusError(
        422,
        "Invalid",
        f' "" is invalid: patch: Invalid value: {quoted}: {detail}',
        details={"causes": [{
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {quoted}: {detail}",
            "field": "patch",
        }]},
    )


def _go_type(value: Any) -> str | None:
    """The Go type a JSON value decodes to (None for JSON null)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return _GO_MAP
    if isinstance(value, list):
        return _GO_SLICE
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    return "float64"


_json_word = go_json_kind


def _go_float(value: float) -> str:
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _go_fmt(value: Any) -> str:
    """Go's `%v` of a decoded JSON value (maps print with sorted keys)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_fmt(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _go_fmt_s(value: Any) -> str:
    """Go's `%s` of a decoded JSON value: strings print bare, other scalars as `%!s(type=value)`."""
    if isinstance(value, (str, dict, list)):
        return _go_fmt(value)
    if value is None:
        return "%!s(<nil>)"
    return f"%!s({_go_type(value)}={_go_fmt(value)})"


def _err_no_merge_key(item: dict[str, Any], merge_key: str) -> StatusError:
    return _server_error(f"map: {_go_fmt(item)} does not contain declared merge key: {merge_key}")


def _err_bad_arg_type(expected: str, actual: Any) -> StatusError:
    got = _go_type(actual)
    return _server_error(f"expected a {expected}, but received a {got if got else '%!s(<nil>)'}")


def _err_bad_patch_type(directive: Any, item: dict[str, Any]) -> StatusError:
    return _server_error(f"unknown patch type: {_go_fmt_s(directive)} in map: {_go_fmt(item)}")


_ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
_ERR_PRIMITIVE_LIST = "invalid patch format of primitive list"
_ERR_SET_ORDER = "invalid patch format of setElementOrder list"


# ---------------------------------------------------------------------------------------------
# Decoding a body, with Go's encoding/json wording for what it rejects
# ---------------------------------------------------------------------------------------------

class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


def _go_quote_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + json.dumps(ch)[1:-1] + "'"


def _in_array(text: str, pos: int) -> bool:
    """Whether position `pos` of `text` sits directly inside an array (rather than an object)."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return bool(stack) and stack[-1] == "["


def _syntax_message(text: str, err: json.JSONDecodeError) -> str:
    """Go's wording for a JSON syntax error, as near as the Python decoder's report allows."""
    if err.pos >= len(text) or err.msg.startswith("Unterminated string"):
        return "unexpected end of JSON input"
    ch = text[err.pos]
    if err.msg.startswith("Invalid \\escape") and err.pos + 1 < len(text):
        ch = text[err.pos + 1]  # Go names the character after the backslash
    literal = {"t": "true", "f": "false", "n": "null"}.get(ch) if err.msg == "Expecting value" else None
    if literal:
        for i, want in enumerate(literal):
            if err.pos + i >= len(text):
                return "unexpected end of JSON input"
            got = text[err.pos + i]
            if got != want:
                return (
                    f"invalid character {_go_quote_char(got)} in literal {literal} "
                    f"(expecting {_go_quote_char(want)})"
                )
    where = {
        "Expecting value": "looking for beginning of value",
        "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
        "Expecting ':' delimiter": "after object key",
        "Extra data": "after top-level value",
        "Invalid control character at": "in string literal",
        "Invalid \\escape": "in string escape code",
    }.get(err.msg)
    if err.msg == "Expecting ',' delimiter":
        where = "after array element" if _in_array(text, err.pos) else "after object key:value pair"
    return f"invalid character {_go_quote_char(ch)} {where or 'looking for beginning of value'}"


def _parse(raw: bytes | bytearray | str) -> Any:
    """Parse a JSON body; a ValueError carries Go's message for what is wrong with it."""
    if isinstance(raw, (bytes, bytearray)):
        raw = replace_lone_surrogates(bytes(raw))
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, (bytes, bytearray)) else raw
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except _NonFinite as e:
        raise ValueError(f"invalid character {_go_quote_char(str(e)[0])} looking for beginning of value") from None
    except json.JSONDecodeError as e:
        raise ValueError(_syntax_message(text, e)) from None
    except RecursionError:
        raise limits.too_deep() from None
    limits.check_document(doc)
    return doc


def decode_patch(json_patch: bool, merge_patch: bool, raw: bytes) -> Any:
    """A patch body parsed ahead of applying it, failing as applying the raw body would."""
    if json_patch:
        return _decode_json_patch(raw)
    if merge_patch:
        try:
            return _parse(raw)
        except ValueError:
            raise _bad_request("Invalid JSON Patch") from None
    return _decode_strategic_patch(raw)


def _is_raw(patch: object) -> TypeGuard[bytes | bytearray | str]:
    return isinstance(patch, (bytes, bytearray, str))


# ---------------------------------------------------------------------------------------------
# application/json-patch+json (RFC 6902)
# ---------------------------------------------------------------------------------------------

def _decode_json_patch(patch: Any) -> list[Any]:
    if _is_raw(patch):
        try:
            patch = _parse(patch)
        except ValueError as e:
            raise _bad_request(str(e)) from None
    if patch is None:
        return []
    if not isinstance(patch, list):
        raise _bad_request(f"json: cannot unmarshal {_json_word(patch)} into Go value of type jsonpatch.Patch")
    for op in patch:
        if op is not None and not isinstance(op, dict):
            raise _bad_request(
                f"json: cannot unmarshal {_json_word(op)} into Go value of type jsonpatch.Operation"
            )
    return patch


def apply_json_patch(doc: dict[str, Any], patch: bytes | list[Any]) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch to a copy of `doc`.

    400 BadRequest when the body is not a JSON list of operation objects, 413 past 10000
    operations, 422 Invalid (with the apiserver's fixed message) when an operation fails.
    """
    ops = _decode_json_patch(patch)
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise StatusError(
            413,
            "RequestEntityTooLarge",
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}",
        )
    result = copy.deepcopy(doc)
    copied = 0
    for op in copy.deepcopy(ops):
        try:
            copied += _copied_bytes(result, op, limits.MAX_REQUEST_BYTES - copied)
            result = jsonpatch.JsonPatch([op]).apply(result, in_place=True)
        except StatusError:
            raise
        except Exception:  # every failure to apply is the same 422 in Kubernetes
            raise _unprocessable() from None
    if not isinstance(result, dict):
        raise _not_an_object(result, _json_word(result) if result is not None else "null")
    return result


def _copied_bytes(doc: Any, op: Any, budget: int) -> int:
    """What a `copy` operation adds to the document; 422 once all copies of a patch pass the budget.

    Copies are what let a small patch double a document again and again; like kube-apiserver, the
    accumulated size of what a patch copies may not pass the request size limit.
    """
    if not isinstance(op, dict) or op.get("op") != "copy" or not isinstance(op.get("from"), str):
        return 0
    try:
        value = jsonpointer.resolve_pointer(doc, op["from"])
    except jsonpointer.JsonPointerException:
        return 0  # the operation itself reports the bad pointer
    try:
        return limits.check_document(value, max(budget, 0))
    except StatusError as e:
        if e.code != 413:
            raise
        raise StatusError(422, "Invalid", "the server rejected our request due to an error in our request",
                          details={"causes": [{"reason": "UnexpectedServerResponse", "message": (
                              "Unable to complete the copy, the accumulated size increase of copy "
                              f"exceeds the limit {limits.MAX_REQUEST_BYTES}")}]}) from None


# ---------------------------------------------------------------------------------------------
# application/merge-patch+json (RFC 7386)
# ---------------------------------------------------------------------------------------------

def _merge_patch_value(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(Target, Patch), building new containers rather than mutating."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    return _merge_patch_map(target, patch)


def _merge_patch_map(target: Any, patch: dict[str, Any]) -> dict[str, Any]:
    """MergePatch for an object patch: the target's members (if it is an object) with `patch` merged in."""
    out: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch_value(out.get(key), value)
    return out


def apply_merge_patch(doc: dict[str, Any], patch: bytes | dict[str, Any]) -> dict[str, Any]:
    """Apply an RFC 7386 JSON merge patch to a copy of `doc`.

    400 `Invalid JSON Patch` when the body is not JSON, is null or is a scalar; a list
    replaces the whole document, which is then not an object: 422 Invalid.
    """
    body: object = patch
    if _is_raw(body):
        try:
            body = _parse(body)
        except ValueError:
            raise _bad_request("Invalid JSON Patch") from None
    if isinstance(body, list):
        raise _not_an_object(body, "array")
    if not isinstance(body, dict):
        raise _bad_request("Invalid JSON Patch")
    return _merge_patch_map(copy.deepcopy(doc), body)


# ---------------------------------------------------------------------------------------------
# application/strategic-merge-patch+json: schema look-ups
# ---------------------------------------------------------------------------------------------

Schema = dict[str, Any] | None  # a resolved OpenAPI schema; None when nothing is known


def _field(schema: Schema, key: str) -> tuple[dict[str, Any] | None, Schema]:
    """(property schema as declared, resolved schema) of field `key`, or (None, None) if unknown."""
    if not schema:
        return None, None
    props = schema.get("properties")
    if isinstance(props, dict) and key in props:
        declared = props[key]
        return declared, openapi.resolve(declared) or None
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return extra, openapi.resolve(extra) or None
    return None, None


def _strategy(declared: dict[str, Any] | None) -> tuple[str, str]:
    """(patch strategy without retainKeys, merge key) of a declared field schema."""
    if not declared:
        return "", ""
    strategy, merge_key, _ = openapi.list_merge_info(declared)
    parts = [p.strip() for p in (strategy or "").split(",") if p.strip() and p.strip() != "retainKeys"]
    return (parts[0] if parts else ""), (merge_key or "")


def _items(declared: dict[str, Any] | None) -> Schema:
    if not declared or not isinstance(declared.get("items"), dict):
        return None
    return openapi.resolve(declared["items"]) or None


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: maps
# ---------------------------------------------------------------------------------------------

def _directive_field(key: str, prefix: str, message: str) -> str:
    """The field a `$prefix/field` key names; 400 with `message` if it is malformed."""
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise _bad_request(message)
    return rest


def _merge_map(original: dict[str, Any] | None, patch: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """Merge `patch` into `original` (both owned, mutated) following the schema's patch metadata."""
    if PATCH_DIRECTIVE in patch:
        return _map_directive(patch, schema)
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, schema)
    for key, value in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            field = _directive_field(key, DELETE_FROM_PRIMITIVE_LIST, _ERR_PRIMITIVE_LIST)
            _delete_from_primitive_list(original, field, value)
            continue
        if value is None:
            original.pop(key, None)
            continue
        declared, sub = _field(schema, key)
        current = original.get(key, _MISSING)
        if current is _MISSING or _go_kind(current) != _go_kind(value):
            original[key] = _fresh(value, declared, sub)
        elif isinstance(value, dict):
            strategy, _ = _strategy(declared)
            original[key] = _fresh(value, declared, sub) if strategy == "replace" else _merge_map(current, value, sub)
        elif isinstance(value, list):
            strategy, merge_key = _strategy(declared)
            if strategy == "merge":
                original[key] = _merge_list(current, value, _items(declared), merge_key)
            else:
                original[key] = _fresh(value, declared, sub)
        else:
            original[key] = value
    return original


def _go_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    return "null" if value is None else "scalar"


def _fresh(value: Any, declared: dict[str, Any] | None, sub: Schema) -> Any:
    """A patch value taken whole (no counterpart in the original): its directives resolved, its nulls dropped."""
    if isinstance(value, dict):
        return _merge_map({}, value, sub)
    if isinstance(value, list):
        strategy, _ = _strategy(declared)
        if strategy != "merge":
            return _strip_directives(value)
        # A new merge list: directive items have nothing to act on.
        items = _items(declared)
        kept = [v for v in value if not (isinstance(v, dict) and PATCH_DIRECTIVE in v)]
        return [_merge_map({}, v, items) if isinstance(v, dict) else v for v in kept]
    return value


def _is_directive(key: str) -> bool:
    return key in (PATCH_DIRECTIVE, RETAIN_KEYS) or key.startswith(
        (SET_ELEMENT_ORDER + "/", DELETE_FROM_PRIMITIVE_LIST + "/")
    )


def _strip_directives(value: Any) -> Any:
    """A copy of a value that replaces wholesale, without directive keys (which mean nothing there)."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not _is_directive(k)}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _map_directive(patch: dict[str, Any], schema: Schema) -> dict[str, Any]:
    directive = patch[PATCH_DIRECTIVE]
    if directive == "replace":
        rest = {k: v for k, v in patch.items() if k != PATCH_DIRECTIVE}
        return _merge_map({}, rest, schema)
    if directive == "delete":
        return {}
    raise _err_bad_patch_type(directive, patch)


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """`$retainKeys`: drop original fields not listed; every field the patch sets must be listed."""
    if RETAIN_KEYS not in patch:
        return
    keep = patch.pop(RETAIN_KEYS)
    if not isinstance(keep, list):
        raise _bad_request(_ERR_RETAIN_KEYS)
    allowed = {k for k in keep if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith(DELETE_FROM_PRIMITIVE_LIST) or key.startswith(SET_ELEMENT_ORDER):
            continue
        if key not in allowed:
            raise _bad_request(_ERR_RETAIN_KEYS)
    for key in [k for k in original if k not in allowed]:
        del original[key]


def _delete_from_primitive_list(original: dict[str, Any], field: str, value: Any) -> None:
    """`$deleteFromPrimitiveList/field`: remove every occurrence of the listed scalars."""
    if value is None:
        original.pop(field, None)
        return
    if not isinstance(value, list):
        raise _bad_request(_ERR_PRIMITIVE_LIST)
    current = original.get(field)
    if not isinstance(current, list):
        return
    original[field] = [v for v in current if not any(_same(v, d) for d in value)]


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: lists
# ---------------------------------------------------------------------------------------------

def _same(a: Any, b: Any) -> bool:
    """Go's interface equality for decoded JSON scalars (int64 1 is not float64 1; maps never match)."""
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return _go_type(a) == _go_type(b) and a == b


def _element_kind(*lists: list[Any]) -> str:
    """'map' or 'scalar' for the elements of the lists; errors as the apiserver raises them."""
    first: Any = _MISSING
    for lst in lists:
        for v in lst:
            t = _go_type(v)
            if first is _MISSING:
                first = t
                if t == _GO_SLICE:
                    raise _unprocessable()  # lists of lists are not supported: 422
            elif t != first:
                raise _server_error("list element types are not identical: " + _go_fmt(list(lists)))
    if first is _MISSING:
        raise _server_error("no elements in any of the given slices")
    return "map" if first == _GO_MAP else "scalar"


def _merge_key_of(item: Any, merge_key: str) -> Any:
    if not isinstance(item, dict):
        raise _err_bad_arg_type(_GO_MAP, item)
    if merge_key not in item:
        raise _err_no_merge_key(item, merge_key)
    return item[merge_key]


def _merge_list(original: list[Any], patch: list[Any], item_schema: Schema, merge_key: str) -> list[Any]:
    """Merge a patch list into a list with patch strategy `merge`."""
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind == "scalar":
        merged = _dedupe(original + patch)
    else:
        if not merge_key:
            raise _server_error("cannot merge lists without merge key for type struct")
        original, patch, replaced = _split_special_items(original, patch, merge_key)
        if replaced:
            original = [_merge_map({}, item, item_schema) for item in original]
        merged = _merge_items(original, patch, merge_key, item_schema)
    in_patch, server_only = _partition(merged, patch, merge_key if kind == "map" else "")
    return _normalize_order(in_patch, server_only, patch, original, merge_key if kind == "map" else "")


def _dedupe(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(_same(v, seen) or (v is None and seen is None) for seen in out):
            out.append(v)
    return out


def _split_special_items(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any], bool]:
    """Apply `$patch` items of a merge list: delete removes by merge key, replace drops the original."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if PATCH_DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[PATCH_DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _err_no_merge_key(item, merge_key)
            target = item[merge_key]
            original = [o for o in original if not (merge_key in o and _same(o[merge_key], target))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _server_error("merging lists cannot yet be specified in the patch")
        else:
            raise _err_bad_patch_type(directive, item)
    if replace:
        return plain, [], True
    return original, plain, False


def _find(items: list[Any], merge_key: str, value: Any) -> int:
    for i, item in enumerate(items):
        if isinstance(item, dict) and merge_key in item and _same(item[merge_key], value):
            return i
    return -1


def _merge_items(original: list[Any], patch: list[Any], merge_key: str, item_schema: Schema) -> list[Any]:
    merged = list(original)
    for item in patch:
        at = _find(merged, merge_key, _merge_key_of(item, merge_key))
        if at >= 0:
            merged[at] = _merge_map(merged[at], item, item_schema)
        else:
            merged.append(_merge_map({}, item, item_schema))
    return merged


def _order_key(item: Any, merge_key: str) -> Any:
    return item.get(merge_key) if merge_key and isinstance(item, dict) else item


def _identity(value: Any) -> tuple[str | None, Any] | None:
    """A hashable stand-in for a scalar under Go's interface equality (None for maps and lists)."""
    if isinstance(value, (dict, list)):
        return None
    return (_go_type(value), value)


class _Positions:
    """First position of each item of an order list, looked up by merge-key value (or by the item itself)."""

    def __init__(self, order: list[Any], merge_key: str) -> None:
        self.merge_key = merge_key
        self.first: dict[tuple[str | None, Any], int] = {}
        for i, item in enumerate(order):
            ident = _identity(_order_key(item, merge_key))
            if ident is not None:
                self.first.setdefault(ident, i)

    def of(self, item: Any) -> int:
        ident = _identity(_order_key(item, self.merge_key))
        return -1 if ident is None else self.first.get(ident, -1)


def _partition(merged: list[Any], order: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """Split merged items into those present in `order` and the rest (server-only)."""
    positions = _Positions(order, merge_key)
    present: list[Any] = []
    rest: list[Any] = []
    for item in merged:
        if merge_key:
            _merge_key_of(item, merge_key)
        (present if positions.of(item) >= 0 else rest).append(item)
    return present, rest


def _sort_by(items: list[Any], order: list[Any], merge_key: str) -> list[Any]:
    """Stable sort of `items` by position in `order`; items it lacks keep their relative order at the end."""
    if merge_key:
        for item in list(items) + list(order):
            _merge_key_of(item, merge_key)
    positions = _Positions(order, merge_key)
    end = len(order)
    return sorted(items, key=lambda item: p if (p := positions.of(item)) >= 0 else end)


def _normalize_order(
    in_patch: list[Any], server_only: list[Any], patch_order: list[Any], server_order: list[Any], merge_key: str
) -> list[Any]:
    """Patch items in patch order, server-only items in live order, interleaved by live position."""
    right = _sort_by(in_patch, patch_order, merge_key)
    left = _sort_by(server_only, server_order, merge_key)
    live = _Positions(server_order, merge_key)
    out: list[Any] = []
    i = j = 0
    while i < len(left) and j < len(right):
        li, ri = live.of(left[i]), live.of(right[j])
        if li >= 0 and ri >= 0 and li < ri:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out + left[i:] + right[j:]


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: $setElementOrder
# ---------------------------------------------------------------------------------------------

def _apply_set_element_order(original: dict[str, Any], patch: dict[str, Any], schema: Schema) -> None:
    """Merge each list named by a `$setElementOrder/field` directive and put it in that order."""
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _err_bad_arg_type(_GO_SLICE, order)
        field = _directive_field(key, SET_ELEMENT_ORDER, _ERR_SET_ORDER)
        current = original.get(field, _MISSING)
        incoming = patch.get(field, _MISSING)
        if current is not _MISSING and not isinstance(current, list):
            raise _err_bad_arg_type(_GO_SLICE, current)
        if incoming is not _MISSING and not isinstance(incoming, list):
            raise _err_bad_arg_type(_GO_SLICE, incoming)
        declared, sub = _field(schema, field)
        strategy, merge_key = _strategy(declared)
        _check_order(incoming if incoming is not _MISSING else [], order, merge_key)
        if incoming is _MISSING:
            if current is _MISSING:
                continue
            merged = current
        elif current is _MISSING:
            merged = _fresh(incoming, declared, sub)
        elif strategy == "merge":
            merged = _merge_list(current, incoming, _items(declared), merge_key)
        else:
            merged = _fresh(incoming, declared, sub)
        patch.pop(field, None)
        original[field] = _ordered(merged, order, current if current is not _MISSING else [],
                                   incoming if incoming is not _MISSING else [], merge_key)


def _ordered(merged: list[Any], order: list[Any], current: list[Any], incoming: list[Any], merge_key: str) -> list[Any]:
    if not current and not incoming:
        return merged
    kind = _element_kind(current, incoming)
    key = merge_key if kind == "map" else ""
    if kind == "map" and not merge_key:
        return merged  # no way to identify the elements: keep the merged order
    in_order, server_only = _partition(merged, order, key)
    return _normalize_order(in_order, server_only, order, current, key)


def _check_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """The patch list's items must appear in `$setElementOrder` in the same relative order."""
    if not order or not patch_list:
        return
    if merge_key:
        for item in patch_list:
            if not isinstance(item, dict):
                raise _err_bad_arg_type(_GO_MAP, item)
        items = [i for i in patch_list if i.get(PATCH_DIRECTIVE) != "delete"]
    else:
        items = patch_list
    p = o = 0
    while p < len(items) and o < len(order):
        if isinstance(items[p], dict) and PATCH_DIRECTIVE in items[p]:
            p += 1
            continue
        if merge_key:
            equal = _same(_merge_key_of(items[p], merge_key), _merge_key_of(order[o], merge_key))
        else:
            equal = _same(items[p], order[o])
        if equal:
            p += 1
        o += 1
    if p < len(items) and o >= len(order):
        raise _server_error(
            f"The order in patch list:\n{_go_fmt(patch_list)}\n doesn't match "
            f"{SET_ELEMENT_ORDER} list:\n{_go_fmt(order)}\n"
        )


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: entry point
# ---------------------------------------------------------------------------------------------

def _decode_strategic_patch(patch: Any) -> dict[str, Any]:
    if _is_raw(patch):
        try:
            patch = _parse(patch)
        except ValueError as e:
            raise _bad_request(str(e)) from None
    if patch is None:
        return {}
    if not isinstance(patch, dict):
        raise _bad_request(f"json: cannot unmarshal {_json_word(patch)} into Go value of type {_GO_MAP}")
    return patch


def apply_strategic_merge_patch(doc: dict[str, Any], patch: bytes | dict[str, Any], definition: str) -> dict[str, Any]:
    """Apply a Kubernetes strategic merge patch to a copy of `doc`, whose type is OpenAPI `definition`.

    Lists declared `x-kubernetes-patch-strategy: merge` merge by their merge key (lists of scalars
    unite); other lists replace; maps merge; null deletes; the `$patch`, `$retainKeys`,
    `$setElementOrder/...` and `$deleteFromPrimitiveList/...` directives are honoured and never
    appear in the result. Fields the schema does not know merge like a JSON merge patch.
    """
    body = copy.deepcopy(_decode_strategic_patch(patch))
    schema = openapi.get(definition) or None
    return _merge_map(copy.deepcopy(doc), body, schema)


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: computing one (what `kubectl` does on the client side)
# ---------------------------------------------------------------------------------------------

def create_two_way_merge_patch(original: dict[str, Any], modified: dict[str, Any], definition: str) -> dict[str, Any]:
    """The strategic merge patch that turns `original` into `modified` (with `$setElementOrder` lists)."""
    return _diff_maps(original, modified, openapi.get(definition) or None)


def _diff_maps(original: dict[str, Any], modified: dict[str, Any], schema: Schema) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, new in modified.items():
        if key not in original:
            patch[key] = copy.deepcopy(new)
            continue
        old = original[key]
        declared, sub = _field(schema, key)
        if isinstance(old, dict) and isinstance(new, dict):
            strategy, _ = _strategy(declared)
            if strategy == "replace":
                if old != new:
                    patch[key] = copy.deepcopy(new)
            else:
                nested = _diff_maps(old, new, sub)
                if nested:
                    patch[key] = nested
        elif isinstance(old, list) and isinstance(new, list):
            _diff_lists(key, old, new, declared, patch)
        elif _go_type(old) != _go_type(new) or old != new:
            patch[key] = copy.deepcopy(new)
    for key in original:
        if key not in modified:
            patch[key] = None
    return patch


def _diff_lists(
    key: str, old: list[Any], new: list[Any], declared: dict[str, Any] | None, patch: dict[str, Any]
) -> None:
    strategy, merge_key = _strategy(declared)
    if strategy != "merge" or not (old or new):
        if old != new:
            patch[key] = copy.deepcopy(new)
        return
    if not old:
        patch[key] = copy.deepcopy(new)
        return
    kind = _element_kind(old, new)
    if kind == "scalar":
        added = [v for v in new if not any(_same(v, o) for o in old)]
        removed = sorted(_dedupe([v for v in old if not any(_same(v, n) for n in new)]), key=_go_fmt)
        if added:
            patch[key] = added
        if removed:
            patch[f"{DELETE_FROM_PRIMITIVE_LIST}/{key}"] = removed
        if removed or old != new:
            patch[f"{SET_ELEMENT_ORDER}/{key}"] = copy.deepcopy(new)
        return
    items = _items(declared)
    changes: list[Any] = []
    for item in new:
        value = _merge_key_of(item, merge_key)
        at = _find(old, merge_key, value)
        if at < 0:
            changes.append(copy.deepcopy(item))
            continue
        nested = _diff_maps(old[at], item, items)
        if nested:
            nested[merge_key] = value
            changes.append(nested)
    gone = [_merge_key_of(i, merge_key) for i in old if _find(new, merge_key, _merge_key_of(i, merge_key)) < 0]
    changes.extend({PATCH_DIRECTIVE: "delete", merge_key: v} for v in sorted(gone, key=_go_fmt))
    same_order = len(old) == len(new) and all(
        _same(_merge_key_of(a, merge_key), _merge_key_of(b, merge_key)) for a, b in zip(old, new, strict=True)
    )
    if changes:
        patch[key] = changes
    if changes or not same_order:
        patch[f"{SET_ELEMENT_ORDER}/{key}"] = [{merge_key: _merge_key_of(i, merge_key)} for i in new]
