"""Hypothesis strategies for attack bodies: values shaped by a kind's OpenAPI v3 schema, wrong values, raw encodings."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import yaml
from hypothesis import strategies as st

MAX_SCHEMA_DEPTH = 5  # deep enough for pod containers' fields; recursive schemas stop here


@dataclass(frozen=True)
class Raw:
    """Text spliced into a body as is: JSON (also valid flow YAML), or YAML-only syntax with a JSON stand-in."""

    json: str
    yaml: str = ""

    def text(self, as_yaml: bool) -> str:
        return self.yaml if as_yaml and self.yaml else self.json


def deep(depth: int, opener: str = "[", closer: str = "]") -> Raw:
    return Raw(opener * depth + "1" + closer * depth) if opener == "[" else Raw('{"a":' * depth + "1" + "}" * depth)


# Values YAML can say and JSON cannot: dates, binary, sets, pairs, non-string keys, recursion, unknown tags.
YAML_SPECIALS = [Raw(json.dumps(y), y) for y in (
    "2001-12-14", "2001-12-14t21:59:43.10-05:00", "!!binary aGVsbG8=", "!!set {a, b}", "!!omap [a: 1, b: 2]",
    "!!pairs [a: 1]", ".inf", "-.inf", ".nan", "0x1F", "0o17", "017", "1_000", "0b101", "190:20:30", "yes", "off",
    "~", "!!float 1", "{1: a}", "{null: a}", "{true: b}", "{1.5: c}", "{[1]: x}", "&r [*r]", "&m {a: *m}",
    "*undefined", "!!python/object/apply:os.system ['true']", "!custom x", "!!int 'x'",
)]

NASTY_STRINGS = ["", "\x00", "a\x00b", "\n", "a\r\nb", "\x1b[31m", "\u202e", "\ufeff", "\ud800", "\U0001f600",
                 "%00", "../..", "a" * 254, "x" * 100_000, "$patch", "{{}}", "0", "-1", "true", "null"]

HUGE_INTS = [2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30), -1, 0]


def nasty_text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY_STRINGS), st.text(max_size=12))


def wrong_values() -> st.SearchStrategy[Any]:
    """Values of the wrong type, size or depth for wherever they land."""
    scalar = st.one_of(st.integers(), st.sampled_from(HUGE_INTS), st.floats(allow_nan=False, allow_infinity=False),
                       st.booleans(), st.none(), nasty_text())
    return st.one_of(
        scalar,
        st.lists(scalar, max_size=3),
        st.lists(st.lists(scalar, max_size=2), max_size=2),
        st.dictionaries(nasty_text(), scalar, max_size=2),
        st.sampled_from([deep(100), deep(1000), deep(10_000), deep(100_000), deep(10_000, "{", "}"),
                         Raw("1e999"), Raw("-0"), Raw("1" + "0" * 400), Raw("NaN"), Raw('"\\ud800"')]),
        st.sampled_from(YAML_SPECIALS),
    )


class Shapes:
    """Right-typed values for a schema (nasty but well typed: control characters, huge numbers, long strings)."""

    def __init__(self, schemas: dict[str, dict[str, Any]]) -> None:
        self.schemas = schemas
        self.cache: dict[tuple[int, int], st.SearchStrategy[Any]] = {}

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while True:
            if "$ref" in schema:
                schema = self.schemas[schema["$ref"].rsplit("/", 1)[1]]
            elif "allOf" in schema and len(schema["allOf"]) == 1 and "properties" not in schema:
                schema = schema["allOf"][0]
            else:
                return schema

    def value(self, schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
        key = (id(schema), depth)
        if key not in self.cache:
            self.cache[key] = st.deferred(lambda: self._build(self.resolve(schema), depth))
        return self.cache[key]

    def _build(self, s: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
        kind = s.get("type")
        if s.get("enum"):
            return st.one_of(st.sampled_from(s["enum"]), nasty_text())
        if kind == "object" or "properties" in s:
            return self._object(s, depth)
        if kind == "array":
            if depth >= MAX_SCHEMA_DEPTH:
                return st.just([])
            return st.lists(self.value(s.get("items", {}), depth + 1), max_size=3)
        if kind == "string":
            return self._string(s.get("format", ""))
        if kind == "integer":
            return st.one_of(st.integers(-(2**31), 2**31), st.sampled_from(HUGE_INTS))
        if kind == "number":
            return st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers())
        if kind == "boolean":
            return st.booleans()
        return st.one_of(st.none(), st.integers(), nasty_text(), st.dictionaries(nasty_text(), st.integers(),
                                                                                 max_size=2))

    def _object(self, s: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
        if depth >= MAX_SCHEMA_DEPTH:
            return st.just({})
        props = s.get("properties") or {}
        required = [k for k in s.get("required", []) if k in props]
        fixed = st.fixed_dictionaries({k: self.value(props[k], depth + 1) for k in required},
                                      optional={k: self.value(v, depth + 1) for k, v in props.items()
                                                if k not in required})
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            more = st.dictionaries(nasty_text(), self.value(extra, depth + 1), max_size=3)
            return st.builds(lambda a, b: {**b, **a}, fixed, more)
        return fixed

    @staticmethod
    def _string(fmt: str) -> st.SearchStrategy[Any]:
        if fmt == "date-time":
            return st.one_of(st.just("2024-02-30T25:61:00Z"), st.datetimes().map(lambda d: d.isoformat() + "Z"),
                             nasty_text())
        if fmt == "byte":
            return st.one_of(st.binary(max_size=16).map(lambda b: base64.b64encode(b).decode()), nasty_text())
        if fmt == "int-or-string":
            return st.one_of(st.integers(), st.sampled_from(HUGE_INTS), nasty_text())
        return nasty_text()


def containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths (key/index tuples) of every dict or list inside value, the root first."""
    if isinstance(value, dict):
        found = [path]
        for k, v in value.items():
            found.extend(containers(v, path + (k,)))
        return found
    if isinstance(value, list):
        found = [path]
        for i, v in enumerate(value):
            found.extend(containers(v, path + (i,)))
        return found
    return []


def at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def mutate(data: st.DataObject, body: Any, extra_keys: st.SearchStrategy[str] | None = None) -> Any:
    """Put a few wrong values (or unknown fields) at random places of a well-typed body."""
    for _ in range(data.draw(st.integers(0, 3), label="mutations")):
        spots = containers(body)
        if not spots:
            return body
        node = at(body, data.draw(st.sampled_from(spots), label="where"))
        wrong = data.draw(wrong_values(), label="wrong value")
        if isinstance(node, dict):
            keys = list(node) + ["unknownField"]
            odd_keys = extra_keys if extra_keys is not None else nasty_text()
            key = data.draw(st.one_of(st.sampled_from(keys), odd_keys), label="key")
            node[key] = wrong
        elif node:
            node[data.draw(st.integers(0, len(node) - 1))] = wrong
        else:
            node.append(wrong)
    return body


def to_text(value: Any, as_yaml: bool = False) -> str:
    """JSON (or flow YAML) text of value; Raw pieces go in verbatim, so bodies can be deeper than json.dumps allows."""
    if isinstance(value, Raw):
        return value.text(as_yaml)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_text(v, as_yaml)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_text(v, as_yaml) for v in value) + "]"
    return json.dumps(value)


def has_raw(value: Any) -> bool:
    if isinstance(value, Raw):
        return True
    if isinstance(value, dict):
        return any(has_raw(v) for v in value.values())
    if isinstance(value, list):
        return any(has_raw(v) for v in value)
    return False


def encode(value: Any, style: str) -> bytes:
    """style: json, yaml (block YAML when it can say the value, else flow YAML), or flow (flow YAML)."""
    if style == "yaml" and not has_raw(value):
        try:
            return yaml.safe_dump(value, sort_keys=False).encode("utf-8", "surrogatepass")
        except yaml.YAMLError:
            pass
    return to_text(value, as_yaml=style != "json").encode("utf-8", "surrogatepass")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def protobuf_envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """Kubernetes' protobuf envelope (magic, runtime.Unknown{typeMeta, raw}) around arbitrary bytes."""
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return b"k8s\x00" + _field(1, type_meta) + _field(2, raw)


def protobuf_junk() -> st.SearchStrategy[bytes]:
    """Bytes that look like protobuf messages: random fields, lengths that lie, nested messages."""
    field = st.one_of(
        st.tuples(st.integers(1, 20), st.binary(max_size=12)).map(lambda t: _field(*t)),
        st.tuples(st.integers(1, 20), st.integers(0, 2**64 - 1)).map(lambda t: _varint(t[0] << 3) + _varint(t[1])),
        st.tuples(st.integers(1, 20), st.integers(0, 2**35)).map(lambda t: _varint(t[0] << 3 | 2) + _varint(t[1])),
        st.binary(max_size=8),
    )
    return st.recursive(st.lists(field, max_size=4).map(b"".join),
                        lambda inner: st.tuples(st.integers(1, 20), inner).map(lambda t: _field(*t)), max_leaves=6)


# Bodies no schema describes: broken or odd JSON and YAML, wrong top-level types, and encodings that lie.
MALFORMED = [
    b"", b" ", b"null", b"[]", b"1", b'"x"', b"true", b"{", b'{"a":', b'{"metadata":{"name":"\xff"}}', b"\xff\xfe",
    b"\xef\xbb\xbf{}", b"NaN", b'{"a":NaN}', b'{"a":1e999}', b'{"a":' + b"9" * 5000 + b"}", b'{"kind":"A","kind":"B"}',
    b'{"a":"\\ud800"}', b'{"a":"\\u0000"}', b"{}" * 3, b"{}\n{}", b"---\n...\n---\n", b"a: 1\n---\nb: 2\n",
    b"\ta: 1", b"? [a]\n: b\n", b"a: &a [*a]\n", b"!!python/object:os.system {}", b"%YAML 9.9\n---\n{}",
    b"a: !!binary aGVsbG8=\n", b"metadata: {name: 2001-12-14}\n", b"metadata: {labels: {1: a}}\n",
    b"spec: &s {a: *s}\n", b"a: [" * 2000, b"[" * 100_000 + b"]" * 100_000, b"x" * 1_000_000,
]
