"""Matching in time linear in the text, as RE2 does, for patterns Python's backtracking `re` could blow up on."""

from __future__ import annotations

import bisect
import importlib
from collections.abc import Callable
from typing import Any

# Python's own regex parser: the translated pattern is parsed once more into a tree this module compiles.
_sre: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

_IGNORECASE, _MULTILINE, _DOTALL = 2, 8, 16
_MAX_PROGRAM = 50_000
_CACHE_LIMIT = 20_000

Pred = Callable[[str], bool]


class TooLarge(Exception):
    """The pattern expands to more states than kubesat will simulate."""


def _word(ch: str) -> bool:
    return ch == "_" or ("0" <= ch <= "9") or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def unbounded(tree: Any) -> int:
    """How many unbounded repetitions (*, +, {n,}) the pattern has."""
    count = 0
    for op, av in tree:
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            count += (av[1] == _c.MAXREPEAT) + unbounded(av[2])
        elif op is _c.BRANCH:
            count += sum(unbounded(alt) for alt in av[1])
        elif op is _c.SUBPATTERN:
            count += unbounded(av[3])
    return count


def dangerous(tree: Any) -> bool:
    """Could backtracking blow up: a repetition over something that repeats or branches, or two unbounded ones."""

    def walk(items: Any, under_repeat: bool) -> bool:
        for op, av in items:
            if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
                if under_repeat or walk(av[2], av[1] > 1):
                    return True
            elif op is _c.BRANCH:
                if under_repeat or any(walk(alt, False) for alt in av[1]):
                    return True
            elif op is _c.SUBPATTERN and walk(av[3], under_repeat):
                return True
        return False

    return walk(tree, False) or unbounded(tree) >= 2


class Program:
    """A Thompson NFA: ("char", pred, next), ("split", a, b), ("assert", kind, next), ("match",)."""

    def __init__(self, pattern: str) -> None:
        self.code: list[Any] = []
        self.has_asserts = False
        tree = _sre.parse(pattern)
        start = self._seq(list(tree), 0, self._emit(("match",)))
        self.start = start
        self.closures: dict[tuple[frozenset[int], Any], frozenset[int]] = {}
        self.steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def _emit(self, ins: Any) -> int:
        if len(self.code) >= _MAX_PROGRAM:
            raise TooLarge()
        self.code.append(ins)
        return len(self.code) - 1

    # Compilation goes right to left: each node is compiled knowing the state that follows it.
    def _seq(self, items: list[Any], flags: int, nxt: int) -> int:
        for op, av in reversed(items):
            nxt = self._node(op, av, flags, nxt)
        return nxt

    def _node(self, op: Any, av: Any, flags: int, nxt: int) -> int:
        if op is _c.SUBPATTERN:
            _group, add, drop, sub = av
            return self._seq(list(sub), (flags | add) & ~drop, nxt)
        if op is _c.BRANCH:
            alts = [self._seq(list(alt), flags, nxt) for alt in av[1]]
            head = alts[-1]
            for alt in reversed(alts[:-1]):
                head = self._emit(("split", alt, head))
            return head
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            return self._repeat(av, flags, nxt)
        if op is _c.AT:
            self.has_asserts = True
            return self._emit(("assert", (av, flags & _MULTILINE), nxt))
        return self._emit(("char", self._pred(op, av, flags), nxt))

    def _repeat(self, av: Any, flags: int, nxt: int) -> int:
        lo, hi, sub = av
        sub = list(sub)
        if hi == _c.MAXREPEAT:
            loop = self._emit(("split", -1, nxt))
            body = self._seq(sub, flags, loop)
            self.code[loop] = ("split", body, nxt)
            tail = loop
        else:
            tail = nxt
            for _ in range(hi - lo):  # x{0,2} is (x(x)?)?: every skip leads straight on
                tail = self._emit(("split", self._seq(sub, flags, tail), nxt))
        for _ in range(lo):
            tail = self._seq(sub, flags, tail)
        return tail

    def _pred(self, op: Any, av: Any, flags: int) -> Pred:
        fold = bool(flags & _IGNORECASE)
        if op is _c.LITERAL:
            want = chr(av)
            return (lambda ch: ch.lower() == want.lower() or ch.upper() == want.upper()) if fold else want.__eq__
        if op is _c.NOT_LITERAL:
            other = chr(av)
            return (lambda ch: ch.lower() != other.lower()) if fold else other.__ne__
        if op is _c.ANY:
            return (lambda ch: True) if flags & _DOTALL else "\n".__ne__
        if op is _c.IN:
            return _class_pred(av, fold)
        raise TooLarge()  # an opcode the translator never produces

    # ------------------------------------------------------------------ simulation

    def _holds(self, kind: Any, text: str, pos: int) -> bool:
        at, multiline = kind
        prev = text[pos - 1] if pos > 0 else ""
        cur = text[pos] if pos < len(text) else ""
        if at is _c.AT_BEGINNING_STRING:
            return pos == 0
        if at is _c.AT_END_STRING:
            return pos == len(text)
        if at is _c.AT_BEGINNING:
            return pos == 0 or (bool(multiline) and prev == "\n")
        if at is _c.AT_END:
            return pos == len(text) or (bool(multiline) and cur == "\n")
        boundary = _word(prev) != _word(cur) if prev or cur else False
        return boundary if at is _c.AT_BOUNDARY else not boundary

    def _closure(self, states: frozenset[int], text: str, pos: int) -> frozenset[int]:
        ctx: Any = None
        if self.has_asserts:
            ctx = (pos == 0, pos == len(text), text[pos - 1] if pos else "", text[pos] if pos < len(text) else "")
            ctx = (ctx[0], ctx[1], _word(ctx[2]), _word(ctx[3]), ctx[2] == "\n", ctx[3] == "\n")
        key = (states, ctx)
        hit = self.closures.get(key)
        if hit is not None:
            return hit
        out: set[int] = set()
        stack = list(states)
        while stack:
            pc = stack.pop()
            if pc in out:
                continue
            out.add(pc)
            ins = self.code[pc]
            if ins[0] == "split":
                stack.extend((ins[1], ins[2]))
            elif ins[0] == "assert" and self._holds(ins[1], text, pos):
                stack.append(ins[2])
        result = frozenset(out)
        if len(self.closures) > _CACHE_LIMIT:
            self.closures.clear()
        self.closures[key] = result
        return result

    def search(self, text: str) -> bool:
        match = 0  # the first instruction emitted is the match state
        start = frozenset({self.start})
        current = self._closure(start, text, 0)
        for i, ch in enumerate(text):
            if match in current:
                return True
            key = (current, ch)
            nxt = self.steps.get(key)
            if nxt is None:
                moved = {ins[2] for pc in current if (ins := self.code[pc])[0] == "char" and ins[1](ch)}
                nxt = frozenset(moved | {self.start})
                if len(self.steps) > _CACHE_LIMIT:
                    self.steps.clear()
                self.steps[key] = nxt
            current = self._closure(nxt, text, i + 1)
        return match in current


def _class_pred(items: Any, fold: bool) -> Pred:
    negate = False
    spans: list[tuple[int, int]] = []
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            spans.append((av, av))
        elif op is _c.RANGE:
            spans.append(av)
        else:
            raise TooLarge()
    merged = _merge(spans)
    starts = [lo for lo, _ in merged]

    def has(cp: int) -> bool:
        i = bisect.bisect_right(starts, cp) - 1
        return i >= 0 and cp <= merged[i][1]

    def inside(ch: str) -> bool:
        if has(ord(ch)):
            return True
        return fold and any(len(alt) == 1 and has(ord(alt)) for alt in (ch.lower(), ch.upper()))

    return (lambda ch: not inside(ch)) if negate else inside


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint spans covering the same code points."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def parse(pattern: str) -> Any:
    return _sre.parse(pattern)
