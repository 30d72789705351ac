"""Server-side apply and metadata.managedFields bookkeeping as pure functions over JSON-shaped objects."""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TypeGuard

from kubesat import errors, limits
from kubesat.apimachinery import schema as k8s_schema

__all__ = [
    "FieldSet",
    "fields_of",
    "to_fields_v1",
    "from_fields_v1",
    "record_update",
    "server_side_apply",
]

# A path is a tuple of FieldsV1 tokens: "f:name", 'k:{"name":"c"}', 'v:"x"', "i:0".
Path = tuple[str, ...]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"
BEFORE_FIRST_APPLY = "before-first-apply"
_ANNOTATIONS_SIZE_LIMIT = 256 * 1024

# Exact paths nobody ever owns (bookkeeping and identity metadata).
_STRIPPED: frozenset[Path] = frozenset(
    {
        ("f:apiVersion",),
        ("f:kind",),
        ("f:metadata",),
        ("f:metadata", "f:name"),
        ("f:metadata", "f:namespace"),
        ("f:metadata", "f:creationTimestamp"),
        ("f:metadata", "f:selfLink"),
        ("f:metadata", "f:uid"),
        ("f:metadata", "f:clusterName"),
        ("f:metadata", "f:generation"),
        ("f:metadata", "f:managedFields"),
        ("f:metadata", "f:resourceVersion"),
    }
)

# Defaults Kubernetes declares for list-map key fields that clients often omit.
_KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


# Typed Any so that it stands in for an absent value wherever a JSON value is expected.
_MISSING: Any = _Missing()


class _TypedError(Exception):
    """A value does not fit its schema (Kubernetes' "typed" conversion error)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message

    def text(self) -> str:
        where = path_string(self.path)
        return f"{where}: {self.message}" if where else self.message


# --------------------------------------------------------------------------- FieldSet


class FieldSet:
    """An immutable set of field paths, each a tuple of FieldsV1 tokens."""

    __slots__ = ("_paths",)

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        self._paths: frozenset[Path] = frozenset(map(tuple, paths))

    @property
    def paths(self) -> frozenset[Path]:
        return self._paths

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def __iter__(self) -> Iterator[Path]:
        return iter(sorted(self._paths, key=_path_sort_key))

    def __len__(self) -> int:
        return len(self._paths)

    def __bool__(self) -> bool:
        return bool(self._paths)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSet) and other._paths == self._paths

    def __hash__(self) -> int:
        return hash(self._paths)

    def __repr__(self) -> str:
        return "FieldSet(" + ", ".join(path_string(p) or "." for p in self) + ")"

    def union(self, other: FieldSet) -> FieldSet:
        return FieldSet(self._paths | other._paths)

    def difference(self, other: FieldSet) -> FieldSet:
        return FieldSet(self._paths - other._paths)

    def intersection(self, other: FieldSet) -> FieldSet:
        return FieldSet(self._paths & other._paths)

    def without_prefixes(self, prefixes: Iterable[Path]) -> FieldSet:
        """Drop every path equal to or below one of `prefixes`."""
        pre = list(prefixes)
        if not pre:
            return self
        if len(pre) == 1:
            q = pre[0]
            n = len(q)
            return FieldSet(p for p in self._paths if p[:n] != q)
        return FieldSet(p for p in self._paths if not any(p[: len(q)] == q for q in pre))

    def strings(self) -> list[str]:
        """Human-readable paths (`.spec.containers[name="c"].image`), in Kubernetes' iteration order."""
        return [path_string(p) for p in _iteration_order(self._paths)]


# --------------------------------------------------------------------------- tokens and paths


def _go_json(value: Any) -> str:
    """Compact JSON as Go's encoder writes it (sorted keys, HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _value_rank(v: Any) -> tuple[Any, ...]:
    """A total order over JSON values: numbers, strings, booleans, lists, maps, null."""
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, float(v))
    if isinstance(v, str):
        return (1, v.encode("utf-8"))
    if isinstance(v, list):
        return (3, tuple(_value_rank(x) for x in v))
    if isinstance(v, dict):
        return (4, tuple((k.encode("utf-8"), _value_rank(x)) for k, x in sorted(v.items())))
    return (5,)


def _token_sort_key(tok: str) -> tuple[Any, ...]:
    kind, body = tok[:1], tok[2:]
    if kind == "f":
        return (0, body.encode("utf-8"))
    if kind == "k":
        try:
            fields = json.loads(body)
        except ValueError:
            return (1, (), body)
        if not isinstance(fields, dict):
            return (1, (), body)
        return (1, tuple((k.encode("utf-8"), _value_rank(v)) for k, v in sorted(fields.items())), body)
    if kind == "v":
        try:
            return (2, _value_rank(json.loads(body)), body)
        except ValueError:
            return (2, (), body)
    if kind == "i":
        try:
            return (3, int(body))
        except ValueError:
            return (3, 0)
    return (4, tok)


def _path_sort_key(path: Path) -> tuple[Any, ...]:
    return tuple(_token_sort_key(t) for t in path)


def _go_quote(v: Any) -> str:
    """Value as Go's value.ToString prints it inside a path (`"c"`, `80`, `true`)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ",".join(_go_quote(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}={_go_quote(x)}" for k, x in sorted(v.items())) + "}"
    return str(v)


def _token_string(tok: str) -> str:
    kind, body = tok[:1], tok[2:]
    if kind == "f":
        return "." + body
    if kind == "k":
        try:
            fields = json.loads(body)
            return "[" + ",".join(f"{k}={_go_quote(v)}" for k, v in sorted(fields.items())) + "]"
        except (ValueError, AttributeError):
            return "[" + body + "]"
    if kind == "v":
        try:
            return "[=" + _go_quote(json.loads(body)) + "]"
        except ValueError:
            return "[=" + body + "]"
    if kind == "i":
        return "[" + body + "]"
    return tok


def path_string(path: Path) -> str:
    """`.spec.containers[name="c"].image`, as Kubernetes prints a field path."""
    return "".join(_token_string(t) for t in path)


def _canonical_token(tok: str) -> str:
    """Re-encode a token read from FieldsV1 so it compares equal to tokens built from objects."""
    kind = tok[:2]
    if kind in ("k:", "v:"):
        try:
            return kind + _go_json(json.loads(tok[2:]))
        except ValueError:
            return tok
    return tok


def _iteration_order(paths: Iterable[Path]) -> list[Path]:
    """Members of a level before the deeper paths below it, each group in token order."""
    nested = _nest(paths)
    out: list[Path] = []

    def walk(node: dict[str, Any], prefix: Path) -> None:
        for tok in sorted(node["m"], key=_token_sort_key):
            out.append(prefix + (tok,))
        for tok in sorted(node["c"], key=_token_sort_key):
            walk(node["c"][tok], prefix + (tok,))

    walk(nested, ())
    if () in set(paths):
        out.insert(0, ())
    return out


def _nest(paths: Iterable[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {"m": set(), "c": {}}
    for p in paths:
        if not p:
            continue
        node = root
        for tok in p[:-1]:
            node = node["c"].setdefault(tok, {"m": set(), "c": {}})
        node["m"].add(p[-1])
    return root


# --------------------------------------------------------------------------- FieldsV1


def _ordered(tokens: set[str]) -> list[str]:
    """Tokens in Kubernetes' order; field names alone sort as their UTF-8 bytes do, which is code point order."""
    if all(t[:2] == "f:" for t in tokens):
        return sorted(tokens)
    return sorted(tokens, key=_token_sort_key)


def to_fields_v1(fs: FieldSet) -> dict[str, Any]:
    """The FieldsV1 JSON form of a field set (`{"f:metadata":{"f:labels":{"f:app":{}}}}`)."""

    def emit(node: dict[str, Any], include_self: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if include_self and (node["m"] or node["c"]):
            out["."] = {}
        for tok in _ordered(set(node["m"]) | set(node["c"])):
            child = node["c"].get(tok)
            if child is None:
                out[tok] = {}
            else:
                out[tok] = emit(child, tok in node["m"])
        return out

    return emit(_nest(fs.paths), False)


def from_fields_v1(d: dict[str, Any]) -> FieldSet:
    """Parse FieldsV1 JSON back into a field set; `.` marks the enclosing path as a member."""
    paths: set[Path] = set()

    def walk(node: Any, prefix: Path) -> None:
        if not isinstance(node, dict):
            return
        for key, sub in node.items():
            if key == ".":
                if prefix:
                    paths.add(prefix)
                continue
            p = prefix + (_canonical_token(key),)
            if not sub:
                paths.add(p)
            else:
                walk(sub, p)

    walk(d or {}, ())
    return FieldSet(paths)


# --------------------------------------------------------------------------- schema helpers


def _with_ext(s: Any) -> dict[str, Any] | None:
    """Resolve a `$ref`, keeping any x-kubernetes-* extension written next to it (the merged node is made once
    per `$ref` node, so that what is remembered of it by identity stays valid)."""
    if not isinstance(s, dict) or not s:
        return None
    if "$ref" not in s:
        return s
    hit = _merged.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1]
    target: dict[str, Any] | None = k8s_schema.resolve(s) or None
    extra = {k: v for k, v in s.items() if k.startswith("x-kubernetes-")}
    if target and extra:
        target = {**target, **extra}
    _remember(_merged, s, target)
    return target


class _Members:
    """What a map's members need of its schema node, read once: each declared field's schema and whether a Go
    object always carries it, and the schema of the other keys."""

    __slots__ = ("fields", "other")

    def __init__(self, s: dict[str, Any]) -> None:
        props = s.get("properties")
        self.fields: dict[str, tuple[dict[str, Any] | None, bool, bool]] = {}
        if isinstance(props, dict):
            for key, sub in props.items():
                cs = _with_ext(sub)
                self.fields[key] = (cs, True, _always_present(s, key, cs))
        extra = s.get("additionalProperties")
        self.other: tuple[dict[str, Any] | None, bool, bool] = (
            _with_ext(extra) if isinstance(extra, dict) else None, False, False)


_cache_lock = threading.Lock()
# Schema nodes by identity (each entry keeps its node, so the identity is not reused while remembered).
_merged: OrderedDict[int, tuple[dict[str, Any], dict[str, Any] | None]] = OrderedDict()
_members: OrderedDict[int, tuple[dict[str, Any], _Members]] = OrderedDict()


def _remember(cache: OrderedDict[int, Any], node: dict[str, Any], value: Any) -> None:
    with _cache_lock:
        cache[id(node)] = (node, value)
        while len(cache) > limits.APPLY_SCHEMA_NODE_CACHE:
            cache.popitem(last=False)


def _members_of(s: dict[str, Any]) -> _Members:
    hit = _members.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1]
    m = _Members(s)
    _remember(_members, s, m)
    return m


# Root schemas of kinds not in Kubernetes' definitions (custom resources), by definition name.
_REGISTERED: dict[str, dict[str, Any]] = {}


def register_schema(definition: str, schema: dict[str, Any] | None) -> None:
    """Make apply and managedFields read `schema` for `definition` (None: forget it)."""
    if schema is None:
        _REGISTERED.pop(definition, None)
    else:
        _REGISTERED[definition] = schema


def _root_schema(definition: str) -> dict[str, Any] | None:
    return _with_ext(k8s_schema.get(definition) or _REGISTERED.get(definition) or {})


def _is_struct(s: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    return s is not None and isinstance(s.get("properties"), dict) and bool(s["properties"])


def _child(s: dict[str, Any] | None, key: str) -> tuple[dict[str, Any] | None, bool]:
    """(schema of member `key`, whether it is a declared struct field)."""
    if not s:
        return None, False
    props = s.get("properties")
    if isinstance(props, dict) and key in props:
        return _with_ext(props[key]), True
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        return _with_ext(extra), False
    return None, False


def _undeclared(s: dict[str, Any] | None, key: str) -> bool:
    """True when `s` is a closed struct without a field `key`."""
    if not _is_struct(s):
        return False
    return key not in s["properties"] and not isinstance(s.get("additionalProperties"), dict)


def _items(s: dict[str, Any] | None) -> dict[str, Any] | None:
    if not s:
        return None
    return _with_ext(s.get("items"))


def _kind(s: dict[str, Any] | None, v: Any) -> str:
    """scalar | atomic | map | set | listmap, from the schema, else from the value's shape."""
    if s:
        t = s.get("type")
        if t == "object" or "properties" in s or "additionalProperties" in s:
            return "atomic" if s.get("x-kubernetes-map-type") == "atomic" else "map"
        if t == "array" or "items" in s:
            lt = s.get("x-kubernetes-list-type")
            if lt == "map":
                return "listmap"
            if lt == "set":
                return "set"
            if lt is None and s.get("x-kubernetes-patch-merge-key") and "merge" in str(
                s.get("x-kubernetes-patch-strategy", "")
            ):
                return "listmap"
            return "atomic"
        if t in ("string", "integer", "number", "boolean"):
            return "scalar"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, list):
        return "atomic"
    return "scalar"


def _map_keys(s: dict[str, Any] | None) -> list[str]:
    if not s:
        return []
    keys = s.get("x-kubernetes-list-map-keys")
    if keys:
        return list(keys)
    key = s.get("x-kubernetes-patch-merge-key")
    return [key] if key else []


def _item_token(kind: str, list_s: dict[str, Any] | None, item: Any, index: int, path: Path) -> str:
    if kind == "set":
        if isinstance(item, (dict, list)):
            raise _TypedError(path, f"element {index}: associative list without keys has an element that's a map type")
        return "v:" + _go_json(item)
    if not isinstance(item, dict):
        raise _TypedError(path, f"element {index}: associative list with keys has an element that's not a map type")
    item_s = _items(list_s)
    props = (item_s or {}).get("properties") or {}
    fields: dict[str, Any] = {}
    for key in _map_keys(list_s):
        if key in item:
            fields[key] = item[key]
            continue
        declared = _with_ext(props.get(key)) or {}
        if "default" in declared:
            fields[key] = declared["default"]
        elif key in _KEY_DEFAULTS:
            fields[key] = _KEY_DEFAULTS[key]
        else:
            raise _TypedError(
                path,
                f'element {index}: associative list with keys has an element that omits key field "{key}" '
                "(and doesn't have default value)",
            )
    return "k:" + _go_json(fields)


def _index_list(
    kind: str, list_s: dict[str, Any] | None, items: list[Any], path: Path, strict: bool
) -> list[tuple[str, Any]]:
    """(token, item) pairs, first occurrence of each token; duplicates rejected when strict."""
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        tok = _item_token(kind, list_s, item, i, path)
        if tok in seen:
            if strict:
                raise _TypedError(path, f"duplicate entries for key {_token_string(tok)}")
            continue
        seen.add(tok)
        out.append((tok, item))
    return out


# --------------------------------------------------------------------------- field sets of objects


def _collect(v: Any, s: dict[str, Any] | None, path: Path, out: set[Path], strict: bool) -> None:
    kind = _kind(s, v)
    if v is None or kind in ("scalar", "atomic"):
        out.add(path)
        return
    if kind == "map":
        if not isinstance(v, dict):
            out.add(path)
            return
        for key, cv in v.items():
            if strict and _undeclared(s, key):
                raise _TypedError(path + ("f:" + key,), "field not declared in schema")
            cs, declared = _child(s, key)
            p = path + ("f:" + key,)
            _collect(cv, cs, p, out, strict)
            if cv is None or (isinstance(cv, dict) and not cv) or not declared:
                out.add(p)
        return
    if not isinstance(v, list):
        out.add(path)
        return
    item_s = _items(s)
    for tok, item in _index_list(kind, s, v, path, strict):
        p = path + (tok,)
        _collect(item, item_s, p, out, strict)
        out.add(p)


def _fields(obj: dict[str, Any], root: dict[str, Any] | None, strict: bool = False) -> set[Path]:
    out: set[Path] = set()
    _collect(obj, root, (), out, strict)
    out.discard(())
    return out


def fields_of(obj: dict[str, Any], definition: str) -> FieldSet:
    """Every leaf and keyed node set in `obj`, as Kubernetes' ToFieldSet sees it (bookkeeping metadata included)."""
    root = _root_schema(definition)
    try:
        return FieldSet(_fields(obj, root))
    except _TypedError:
        return FieldSet(_fields(obj, None))


def _ensure_named(paths: Iterable[Path], root: dict[str, Any] | None) -> set[Path]:
    """Add every declared struct field that has owned descendants as a member itself."""
    out = set(paths)
    for p in list(out):
        s = root
        for i, tok in enumerate(p[:-1]):
            if tok.startswith("f:"):
                name = tok[2:]
                child, declared = _child(s, name)
                if declared:
                    out.add(p[: i + 1])
                s = child
            else:
                s = _items(s)
    return out


# --------------------------------------------------------------------------- compare


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


class _Diff:
    __slots__ = ("added", "modified", "removed")

    def __init__(self) -> None:
        self.added: set[Path] = set()
        self.modified: set[Path] = set()
        self.removed: set[Path] = set()

    def exclude(self, prefixes: list[Path]) -> _Diff:
        if prefixes:
            for name in ("added", "modified", "removed"):
                kept = FieldSet(getattr(self, name)).without_prefixes(prefixes).paths
                setattr(self, name, set(kept))
        return self


def _empty(v: Any) -> bool:
    return v is _MISSING or v is None or (isinstance(v, (dict, list)) and not v)


def _leaf(old: Any, new: Any, path: Path, d: _Diff) -> None:
    if old is _MISSING:
        d.added.add(path)
    elif new is _MISSING:
        d.removed.add(path)
    elif not _equal(old, new):
        d.modified.add(path)


def _always_present(parent_s: dict[str, Any] | None, key: str, cs: dict[str, Any] | None) -> bool:
    """Fields a typed (Go) object always carries once its parent exists: nested structs and required fields."""
    if _is_struct(cs) and cs.get("x-kubernetes-map-type") != "atomic":
        return True
    return parent_s is not None and key in (parent_s.get("required") or [])


def _missing_or(v: Any, container: type) -> bool:
    return v is _MISSING or isinstance(v, container)


def _compare(old: Any, new: Any, s: dict[str, Any] | None, path: Path, d: _Diff) -> None:
    """Record in `d` how the value at `path` changed from `old` to `new` (either may be _MISSING)."""
    here = new if new is not _MISSING else old
    kind = _kind(s, here)
    if kind in ("scalar", "atomic") or old is None or new is None:
        _leaf(old, new, path, d)
        return
    container = dict if kind == "map" else list
    if not (_missing_or(old, container) and _missing_or(new, container)) or (_empty(old) and _empty(new)):
        # Not the shape the schema says (or nothing on either side): compared as a whole.
        _leaf(old, new, path, d)
        return
    if kind == "map":
        _compare_maps(old, new, s, path, d)
    else:
        _compare_lists(kind, old, new, s, path, d)
    if path:
        if old is _MISSING:
            d.added.add(path)
        elif new is _MISSING:
            d.removed.add(path)


def _compare_maps(old: Any, new: Any, s: dict[str, Any] | None, path: Path, d: _Diff) -> None:
    """Compare two maps (either may be _MISSING) member by member, old's keys first."""
    old_m = old if isinstance(old, dict) else {}
    new_m = new if isinstance(new, dict) else {}
    members = _members_of(s) if s else None
    for key in list(old_m) + [k for k in new_m if k not in old_m]:
        cs, _, always = (members.fields.get(key) or members.other) if members is not None else (None, False, False)
        ov, nv = old_m.get(key, _MISSING), new_m.get(key, _MISSING)
        if always:
            ov, nv = _zero_for_missing(ov, nv, old, new)
        _compare(ov, nv, cs, path + ("f:" + key,), d)


def _zero_for_missing(ov: Any, nv: Any, old: Any, new: Any) -> tuple[Any, Any]:
    """A Go object carries an always-present field as a zero value: not an added/removed node.

    `ov` and `nv` are the field's values in the maps `old` and `new`; a side where the field is missing
    but its map exists gets the empty value of the other side's container.
    """
    if ov is _MISSING and old is not _MISSING and isinstance(nv, (dict, list)) and nv:
        ov = {} if isinstance(nv, dict) else []
    if nv is _MISSING and new is not _MISSING and isinstance(ov, (dict, list)) and ov:
        nv = {} if isinstance(ov, dict) else []
    return ov, nv


def _compare_lists(kind: str, old: Any, new: Any, s: dict[str, Any] | None, path: Path, d: _Diff) -> None:
    """Compare two associative lists (either may be _MISSING) item by item, matched by their tokens."""
    item_s = _items(s)
    old_items = dict(_index_list(kind, s, old if isinstance(old, list) else [], path, False))
    new_items = dict(_index_list(kind, s, new if isinstance(new, list) else [], path, False))
    for tok in list(old_items) + [t for t in new_items if t not in old_items]:
        _compare(old_items.get(tok, _MISSING), new_items.get(tok, _MISSING), item_s, path + (tok,), d)


def _diff(old: dict[str, Any], new: dict[str, Any], root: dict[str, Any] | None) -> _Diff:
    d = _Diff()
    try:
        _compare(old, new, root, (), d)
    except _TypedError:
        d = _Diff()
        _compare(old, new, None, (), d)
    return d


# --------------------------------------------------------------------------- merge and removal


def _merge_lists(kind: str, s: dict[str, Any] | None, live: list[Any], applied: list[Any], path: Path) -> list[Any]:
    """Merge two associative lists: applied order for shared items, live-only items kept in place."""
    item_s = _items(s)
    lpairs = _index_list(kind, s, live, path, False)
    rpairs = _index_list(kind, s, applied, path, False)
    lmap, rmap = dict(lpairs), dict(rpairs)
    shared = [tok for tok, _ in rpairs if tok in lmap]
    out: list[Any] = []
    done: set[str] = set()
    li = ri = 0
    while li < len(lpairs) or ri < len(rpairs):
        ltok = lpairs[li][0] if li < len(lpairs) else None
        rtok = rpairs[ri][0] if ri < len(rpairs) else None
        if ltok is not None and ltok in done:
            li += 1
            continue
        if ltok is not None and ltok == rtok:
            out.append(_merge(lmap[ltok], rmap[rtok], item_s, path + (ltok,)))
            done.add(ltok)
            shared = shared[1:] if shared and shared[0] == ltok else [t for t in shared if t != ltok]
            li += 1
            ri += 1
            continue
        if ltok is not None and ltok not in rmap:
            out.append(lmap[ltok])
            li += 1
            continue
        if ltok is not None and rtok is not None and shared and shared[0] != ltok:
            # A shared item the applied list places later: its turn comes with the applied order.
            li += 1
            continue
        if rtok is not None:
            out.append(_merge(lmap.get(rtok, _MISSING), rmap[rtok], item_s, path + (rtok,)))
            done.add(rtok)
            if shared and shared[0] == rtok:
                shared = shared[1:]
            ri += 1
            continue
        li += 1
    return out


def _merge(live: Any, applied: Any, s: dict[str, Any] | None, path: Path) -> Any:
    if applied is _MISSING:
        return live
    if live is _MISSING:
        return copy.deepcopy(applied)
    kind = _kind(s, applied if applied is not None else live)
    if kind == "map" and isinstance(live, dict):
        if applied is None:
            return live
        if isinstance(applied, dict):
            return _merge_maps(live, applied, s, path)
    if kind in ("set", "listmap") and isinstance(live, list):
        if applied is None:
            return live
        if isinstance(applied, list):
            return _merge_lists(kind, s, live, applied, path)
    return copy.deepcopy(applied)


def _merge_maps(live: dict[str, Any], applied: dict[str, Any], s: dict[str, Any] | None, path: Path) -> dict[str, Any]:
    """`live` with each member of `applied` merged into it."""
    out = dict(live)
    for key, av in applied.items():
        cs, _ = _child(s, key)
        out[key] = _merge(live.get(key, _MISSING), av, cs, path + ("f:" + key,))
    return out


def _remove(v: Any, s: dict[str, Any] | None, path: Path, rm: set[Path], pre: set[Path]) -> tuple[Any, bool]:
    """Drop the map keys and list items at paths in `rm`; (value, emptied by the removal).

    `pre` holds every proper prefix of a path in `rm`: only there is there anything to look into.
    """
    kind = _kind(s, v)
    if kind == "map" and isinstance(v, dict):
        return _remove_from_map(v, s, path, rm, pre)
    if kind in ("set", "listmap") and isinstance(v, list):
        item_s = _items(s)
        kept: list[Any] = []
        for i, item in enumerate(v):
            tok = _item_token(kind, s, item, i, path)
            p = path + (tok,)
            if p in rm:
                continue
            if p in pre:
                item, _ = _remove(item, item_s, p, rm, pre)
            kept.append(item)
        return kept, bool(v) and not kept
    return v, False


def _remove_from_map(
    v: dict[str, Any], s: dict[str, Any] | None, path: Path, rm: set[Path], pre: set[Path]
) -> tuple[dict[str, Any], bool]:
    out: dict[str, Any] = {}
    for key, cv in v.items():
        p = path + ("f:" + key,)
        if p in rm:
            continue
        if p in pre:
            cs, _ = _child(s, key)
            cv, emptied = _remove(cv, cs, p, rm, pre)
            if emptied and not _is_struct(cs):
                continue
        out[key] = cv
    return out, bool(v) and not out


def _remove_items(obj: dict[str, Any], root: dict[str, Any] | None, paths: set[Path]) -> dict[str, Any]:
    paths = {p for p in paths if p}
    if not paths or _kind(root, obj) != "map":  # an object the schema makes atomic keeps all of itself
        return obj
    pre = {p[:i] for p in paths for i in range(1, len(p))}
    out, _ = _remove_from_map(obj, root, (), paths, pre)
    return out


# --------------------------------------------------------------------------- managers


class _Entry:
    __slots__ = ("manager", "operation", "api_version", "subresource", "time", "fields")

    def __init__(
        self,
        manager: str,
        operation: str,
        api_version: str,
        subresource: str,
        time: str | None,
        fields: set[Path],
    ) -> None:
        self.manager = manager
        self.operation = operation
        self.api_version = api_version
        self.subresource = subresource
        self.time = time
        self.fields = fields

    def ident(self) -> str:
        return _identifier(self.manager, self.operation, self.api_version, self.subresource)

    def printed(self) -> str:
        """How a conflict message names this manager."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += " with subresource " + json.dumps(self.subresource, ensure_ascii=False)
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = to_fields_v1(FieldSet(self.fields))
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _identifier(manager: str, operation: str, api_version: str, subresource: str) -> str:
    """A manager's identity: name, operation, subresource, and the API version for updaters only."""
    ident: dict[str, Any] = {}
    if manager:
        ident["manager"] = manager
    if operation:
        ident["operation"] = operation
    if api_version and operation != "Apply":
        ident["apiVersion"] = api_version
    if subresource:
        ident["subresource"] = subresource
    return json.dumps(ident, separators=(",", ":"), ensure_ascii=False)


class _DecodeError(Exception):
    pass


def _decode(entries: Any) -> dict[str, _Entry]:
    out: dict[str, _Entry] = {}
    if not entries:
        return out
    if not isinstance(entries, list):
        raise _DecodeError("managedFields must be a list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise _DecodeError(f"managed fields entry {i} is not an object")
        op = e.get("operation")
        if op not in ("Apply", "Update"):
            raise _DecodeError("operation must be `Apply` or `Update`")
        api_version = e.get("apiVersion") or ""
        if not api_version:
            raise _DecodeError("apiVersion must not be empty")
        ftype = e.get("fieldsType") or ""
        if ftype != "FieldsV1":
            raise _DecodeError(
                f"missing fieldsType in managed fields entry {i}"
                if not ftype
                else f'invalid fieldsType "{ftype}" in managed fields entry {i}'
            )
        fields = from_fields_v1(e.get("fieldsV1") or {}).paths
        entry = _Entry(e.get("manager") or "", op, api_version, e.get("subresource") or "", e.get("time"), set(fields))
        out[entry.ident()] = entry
    return out


def _is_reset(entries: Any) -> bool:
    """`managedFields: [{}]` asks the server to drop all tracking."""
    return isinstance(entries, list) and len(entries) == 1 and entries[0] == {}


def _epoch(t: str | None) -> int:
    if not t:
        return 0
    try:
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _cap_updaters(managers: dict[str, _Entry]) -> None:
    """Fold the oldest Update entries into per-version `ancient-changes` entries, keeping at most ten updaters."""
    updaters = [k for k, e in managers.items() if e.operation == "Update"]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda k: (_epoch(managers[k].time), k))
    count = len(updaters)
    first_of_version: dict[str, str] = {}
    for ident in updaters:
        if count <= MAX_UPDATE_MANAGERS:
            break
        entry = managers[ident]
        version = entry.api_version
        bucket = _identifier(ANCIENT_CHANGES, "Update", version, "")
        if version not in first_of_version:
            first_of_version[version] = ident
            continue
        if bucket not in managers:
            first = managers.pop(first_of_version[version])
            managers[bucket] = _Entry(ANCIENT_CHANGES, "Update", version, "", first.time, set(first.fields))
        merged = managers[bucket]
        merged.fields |= entry.fields
        merged.time = entry.time
        if ident != bucket:
            managers.pop(ident, None)
        count -= 1


def _encode(managers: dict[str, _Entry]) -> list[dict[str, Any]]:
    entries = [e for e in managers.values() if e.fields]
    entries.sort(key=lambda e: (e.operation, _epoch(e.time), e.manager, e.api_version, e.subresource))
    return [e.encode() for e in entries]


def _gvk(definition: str) -> tuple[str, str, str] | None:
    d = k8s_schema.get(definition) or {}
    gvks = d.get("x-kubernetes-group-version-kind") or []
    if gvks and isinstance(gvks[0], dict):
        g = gvks[0]
        return g.get("group", ""), g.get("version", ""), g.get("kind", "")
    return None


def _api_version(definition: str, obj: dict[str, Any] | None) -> str:
    gvk = _gvk(definition)
    if gvk and gvk[1]:
        group, version, _ = gvk
        return f"{group}/{version}" if group else version
    return str((obj or {}).get("apiVersion") or "v1")


def _reset_prefixes(subresource: str) -> list[Path]:
    """Fields a write through this endpoint never owns: status on the main resource, spec on /status."""
    if subresource == "status":
        return [("f:spec",)]
    if subresource:
        return []
    return [("f:status",)]


def _without_managed(obj: dict[str, Any] | None) -> dict[str, Any]:
    if not obj:
        return {}
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        meta = dict(meta)
        meta.pop("managedFields", None)
        out["metadata"] = meta
    return out


def _owned(paths: set[Path], ignored: list[Path]) -> set[Path]:
    return set(FieldSet(paths - _STRIPPED).without_prefixes(ignored).paths)


def _take_update(
    managers: dict[str, _Entry],
    old: dict[str, Any],
    new: dict[str, Any],
    root: dict[str, Any] | None,
    manager: str,
    api_version: str,
    subresource: str,
    ignored: list[Path],
    now: str,
) -> None:
    """Record a non-apply write by `manager` into `managers` (in place)."""
    d = _diff(old, new, root).exclude(ignored)
    changed = d.added | d.modified
    for entry in managers.values():
        entry.fields -= changed
        entry.fields -= d.removed
    taken = _owned(changed, ignored)
    ident = _identifier(manager, "Update", api_version, subresource)
    if taken:
        mine = managers.get(ident)
        if mine is None:
            managers[ident] = _Entry(manager, "Update", api_version, subresource, now, taken)
        else:
            mine.fields |= taken
            mine.time = now
    for key in [k for k, e in managers.items() if not e.fields]:
        del managers[key]


# --------------------------------------------------------------------------- public operations


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    definition: str,
    now: str,
    subresource: str = "",
) -> list[dict[str, Any]]:
    """New metadata.managedFields after a create/update/patch by `manager` (operation Update)."""
    old_meta = (old or {}).get("metadata") or {}
    new_meta = new.get("metadata") or {}
    old_entries = old_meta.get("managedFields") if isinstance(old_meta, dict) else None
    new_entries = new_meta.get("managedFields") if isinstance(new_meta, dict) else None
    managers: dict[str, _Entry] = {}
    if subresource:
        managers = _decode_or_empty(old_entries)
    elif _is_reset(new_entries):
        managers = {}
    else:
        try:
            managers = _decode(new_entries)
        except _DecodeError:
            managers = {}
        if not managers:
            managers = _decode_or_empty(old_entries)
    root = _root_schema(definition)
    api_version = _api_version(definition, new)
    _take_update(
        managers,
        _without_managed(old),
        _without_managed(new),
        root,
        manager,
        api_version,
        subresource,
        _reset_prefixes(subresource),
        now,
    )
    _cap_updaters(managers)
    return _encode(managers)


def _decode_or_empty(entries: Any) -> dict[str, _Entry]:
    try:
        return _decode(entries)
    except _DecodeError:
        return {}


def _gvk_string(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _conflict_error(conflicts: list[tuple[_Entry, Path]]) -> errors.StatusError:
    conflicts = sorted(conflicts, key=lambda c: c[0].ident())  # stable: paths keep iteration order
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {entry.printed()}",
            "field": path_string(path),
        }
        for entry, path in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.printed()}: {path_string(path)}"
    else:
        lines: list[str] = []
        current = None
        for entry, path in conflicts:
            if entry.ident() != current:
                current = entry.ident()
                lines.append(f"conflicts with {entry.printed()}:")
            lines.append(f"- {path_string(path)}")
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return errors.StatusError(409, "Conflict", message, details={"causes": causes})


def _conflicts(
    managers: dict[str, _Entry], applier: str, d: _Diff
) -> list[tuple[_Entry, Path]]:
    changed = d.added | d.modified
    out: list[tuple[_Entry, Path]] = []
    for ident, entry in managers.items():
        if ident == applier:
            continue
        for p in _iteration_order(entry.fields & changed):
            out.append((entry, p))
    return out


def _allowed_from_last_applied(live: dict[str, Any], root: dict[str, Any] | None, api_version: str) -> set[Path] | None:
    """Fields kubectl's client-side last-applied annotation still describes truthfully (upgrade path to SSA)."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    if not raw:
        return None
    try:
        last = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return None
    try:
        owned = _fields(last, root)
    except _TypedError:
        return None
    d = _diff(last, _without_managed(live), root)
    return owned - d.modified - d.added - d.removed


def _prune(
    merged: dict[str, Any],
    root: dict[str, Any] | None,
    managers: dict[str, _Entry],
    last: set[Path],
) -> dict[str, Any]:
    """Remove what the applier owned last time and dropped now, unless someone (including itself) still owns it."""
    if not last:
        return merged
    last_e = _ensure_named(last, root)
    pruned = _remove_items(merged, root, last_e)
    merged_e = _ensure_named(_fields(merged, root), root)
    pruned_e = _ensure_named(_fields(pruned, root), root)
    managed: set[Path] = set()
    for entry in managers.values():
        managed |= entry.fields
    managed_e = _ensure_named(managed, root)
    pruned = _remove_items(merged, root, merged_e - (pruned_e | managed_e))
    pruned_e = _ensure_named(_fields(pruned, root), root)
    return _remove_items(merged, root, (merged_e - pruned_e) & last_e)


def _build_last_applied(applied: dict[str, Any]) -> str:
    cfg = copy.deepcopy(applied)
    annotations = (cfg.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
    return _go_json(cfg) + "\n"


def _set_last_applied(obj: dict[str, Any], value: str) -> None:
    meta = obj.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations[LAST_APPLIED] = value
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > _ANNOTATIONS_SIZE_LIMIT:
        annotations.pop(LAST_APPLIED, None)
    meta["annotations"] = annotations


def _typed_patch_error(applied: dict[str, Any], err: _TypedError) -> errors.StatusError:
    raw_meta = applied.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    gvk = _gvk_string(str(applied.get("apiVersion") or ""), str(applied.get("kind") or ""))
    where = f'{meta.get("namespace") or ""}/{meta.get("name") or ""}; {gvk}'
    return errors.StatusError(500, "", f"failed to create typed patch object ({where}): {err.text()}")


def _validate_applied(live: dict[str, Any] | None, applied: Any, definition: str) -> None:
    if not isinstance(applied, dict):
        raise errors.bad_request("error decoding YAML: the apply patch must be an object")
    api_version = applied.get("apiVersion")
    kind = applied.get("kind")
    gvk = _gvk(definition)
    if not api_version or not kind:
        raise errors.bad_request(f"invalid object type: {_gvk_string(str(api_version or ''), str(kind or ''))}")
    if gvk is not None:
        group, version, want_kind = gvk
        want_api = f"{group}/{version}" if group else version
        if (api_version, kind) != (want_api, want_kind):
            raise errors.bad_request(f"invalid object type: {_gvk_string(str(api_version), str(kind))}")
    raw_meta = applied.get("metadata")
    if raw_meta is not None and not isinstance(raw_meta, dict):
        raise errors.bad_request("metadata must be an object")
    meta: dict[str, Any] = raw_meta or {}
    if meta.get("managedFields") is not None:
        raise errors.bad_request("metadata.managedFields must be nil")
    name = meta.get("name")
    if live is not None:
        live_name = (live.get("metadata") or {}).get("name") or ""
        if name != live_name:
            raise errors.bad_request(
                f"the name of the object ({name or ''}) does not match the name on the URL ({live_name})"
            )
    elif not name:
        required = errors.required("metadata.name", "name or generateName is required")
        raise errors.invalid(str(kind), "", [required], group=gvk[0] if gvk else "")


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    force: bool,
    definition: str,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """Merge `applied` (the manager's whole intent) into `live`; the new object with managedFields, or 409 Conflict."""
    _validate_applied(live, applied, definition)
    root = _root_schema(definition)
    api_version = _api_version(definition, applied)
    ignored = _reset_prefixes(subresource)

    if live is None:
        managers: dict[str, _Entry] = {}
        base: dict[str, Any] = {}
    else:
        try:
            managers = _decode((live.get("metadata") or {}).get("managedFields"))
        except _DecodeError as e:
            raise errors.internal(f"failed to decode managed fields: {e}") from None
        base = _without_managed(live)
        if not managers:
            # An object nobody tracked yet: its existing fields belong to a placeholder updater.
            _take_update(managers, {}, base, root, BEFORE_FIRST_APPLY, api_version, "", ignored, now)

    try:
        config_fields = _owned(_fields(applied, root, strict=True), ignored)
        merged = _merge(base, applied, root, ())
    except _TypedError as e:
        raise _typed_patch_error(applied, e) from None
    try:
        return _apply_merged(
            live, base, applied, merged, managers, manager, config_fields, force, root, api_version, subresource, now
        )
    except _TypedError as e:
        raise errors.StatusError(500, "", f"failed to create typed live object: {e.text()}") from None


def _apply_merged(
    live: dict[str, Any] | None,
    base: dict[str, Any],
    applied: dict[str, Any],
    merged: dict[str, Any],
    managers: dict[str, _Entry],
    manager: str,
    config_fields: set[Path],
    force: bool,
    root: dict[str, Any] | None,
    api_version: str,
    subresource: str,
    now: str,
) -> dict[str, Any]:
    applier = _identifier(manager, "Apply", api_version, subresource)
    ignored = _reset_prefixes(subresource)

    previous = managers.get(applier)
    last = set(previous.fields) if previous else set()
    proposed = {
        k: _Entry(e.manager, e.operation, e.api_version, e.subresource, e.time, set(e.fields))
        for k, e in managers.items()
    }
    proposed[applier] = _Entry(manager, "Apply", api_version, subresource, now, config_fields)

    result = _prune(merged, root, proposed, last)
    d = _diff(base, result, root).exclude(ignored)
    conflicts = _conflicts(proposed, applier, d)
    if conflicts and not force:
        if manager == "kubectl" and live is not None:
            allowed = _allowed_from_last_applied(live, root, api_version)
            if allowed is not None:
                conflicts = [(e, p) for e, p in conflicts if p not in allowed]
        if conflicts:
            raise _conflict_error(conflicts)
    changed = d.added | d.modified
    for ident, entry in proposed.items():
        if ident != applier:
            entry.fields -= changed
        entry.fields -= d.removed
    proposed[applier].fields = config_fields

    if previous is not None and previous.fields == config_fields and _equal(base, result):
        proposed[applier].time = previous.time
    for key in [k for k, e in proposed.items() if not e.fields]:
        del proposed[key]
    _cap_updaters(proposed)

    out = copy.deepcopy(result)
    meta = out.setdefault("metadata", {})
    if manager == "kubectl":
        annotations = meta.get("annotations") or {}
        if isinstance(annotations, dict) and annotations.get(LAST_APPLIED):
            _set_last_applied(out, _build_last_applied(applied))
            meta = out["metadata"]
    encoded = _encode(proposed)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    return out
