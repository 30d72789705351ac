"""Label and field selectors: parsing the query strings Kubernetes accepts and matching objects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from kubesat.errors import StatusError, bad_request

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_KEY_RE = re.compile(f"^{_KEY}$")
_VALUE_RE = re.compile(f"^{_VALUE}$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op == "=":
            return has and labels[self.key] == self.values[0]
        if self.op == "!=":
            return not has or labels[self.key] != self.values[0]
        if self.op == "in":
            return has and labels[self.key] in self.values
        if self.op == "notin":
            return not has or labels[self.key] not in self.values
        return False


LabelSelector = tuple[Requirement, ...]


def _split_top(s: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


_SET_RE = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_label_selector(s: str | None) -> LabelSelector:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h`; 400 BadRequest on a malformed selector."""
    if not s or not s.strip():
        return ()
    reqs: list[Requirement] = []
    for part in _split_top(s):
        p = part.strip()
        if not p:
            raise _bad_label(s, "empty requirement")
        m = _SET_RE.match(p)
        if m:
            key, op, vals = m.group(1), m.group(2), m.group(3)
            values = tuple(v.strip() for v in vals.split(",")) if vals.strip() else ()
            _check_key(s, key)
            for v in values:
                _check_value(s, v)
            reqs.append(Requirement(key, op, values))
            continue
        if p.startswith("!"):
            key = p[1:].strip()
            _check_key(s, key)
            reqs.append(Requirement(key, "!"))
            continue
        for op in ("!=", "==", "="):
            if op in p:
                key, _, value = p.partition(op)
                key, value = key.strip(), value.strip()
                _check_key(s, key)
                _check_value(s, value)
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
                break
        else:
            if " " in p or "(" in p:
                raise _bad_label(s, f"unable to parse requirement: {p!r}")
            _check_key(s, p)
            reqs.append(Requirement(p, "exists"))
    return tuple(reqs)


def _check_key(sel: str, key: str) -> None:
    name = key.rsplit("/", 1)[-1]
    if not key or len(name) > 63 or not _KEY_RE.match(key):
        raise _bad_label(sel, f"invalid label key {key!r}: name part must consist of alphanumeric characters, "
                              "'-', '_' or '.', and must start and end with an alphanumeric character")


def _check_value(sel: str, value: str) -> None:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise _bad_label(sel, f"invalid label value: {value!r}: a valid label must be an empty string or consist "
                              "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                              "alphanumeric character")


def _bad_label(sel: str, why: str) -> StatusError:
    return bad_request(f"unable to parse requirement: {why}" if "unable" not in why else why)


def labels_match(selector: LabelSelector, labels: dict[str, str] | None) -> bool:
    if not selector:
        return True
    labels = labels or {}
    return all(r.matches(labels) for r in selector)


FieldSelector = tuple[tuple[str, str, str], ...]  # (field, op "=" | "!=", value)


def parse_field_selector(s: str | None, supported: Callable[[str], bool], kind: str, version: str) -> FieldSelector:
    """Parse `metadata.name=x,spec.nodeName!=y`; an unsupported field is 400, worded as Kubernetes."""
    if not s or not s.strip():
        return ()
    out = []
    for part in s.split(","):
        p = part.strip()
        if not p:
            continue
        for op in ("!=", "==", "="):
            if op in p:
                field, _, value = p.partition(op)
                field = field.strip()
                if not supported(field):
                    raise bad_request(f'field label not supported: {field}')
                out.append((field, "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            raise bad_request(f"invalid selector: '{s}'; can't understand '{p}'")
    return tuple(out)


def fields_match(selector: FieldSelector, value_of: Callable[[str], str | None]) -> bool:
    for field, op, want in selector:
        have = value_of(field) or ""
        if (have == want) != (op == "="):
            return False
    return True


def selector_from_label_selector_object(sel: dict[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector object (matchLabels, matchExpressions) as requirements."""
    if not sel:
        return ()
    reqs = [Requirement(k, "=", (v,)) for k, v in (sel.get("matchLabels") or {}).items()]
    op_map = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for e in sel.get("matchExpressions") or []:
        op = op_map.get(e.get("operator", ""), "in")
        reqs.append(Requirement(e.get("key", ""), op, tuple(e.get("values") or ())))
    return tuple(reqs)
