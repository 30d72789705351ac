"""Go RE2 patterns (the `pattern` keyword): checked with Go's error words, translated to Python's `re` to match."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

from kubesat.apimachinery.crdschema import re2vm
import contextlib

# Go's regexp/syntax error codes, as they print.
_INVALID_PERL_OP = "invalid or unsupported Perl syntax"
_INVALID_ESCAPE = "invalid escape sequence"
_MISSING_PAREN = "missing closing )"
_UNEXPECTED_PAREN = "unexpected )"
_MISSING_BRACKET = "missing closing ]"
_MISSING_REPEAT_ARG = "missing argument to repetition operator"
_INVALID_NESTED_REPEAT = "invalid nested repetition operator"
_INVALID_REPEAT_SIZE = "invalid repeat count"
_INVALID_CHAR_RANGE = "invalid character class range"
_TRAILING_BACKSLASH = "trailing backslash at end of expression"
_INVALID_NAMED_CAPTURE = "invalid named capture"
_INVALID_CHAR_CLASS = "invalid character class"
_INVALID_UTF8 = "invalid UTF-8"

_MAX_REPEAT = 1000
# Texts longer than this are searched by the NFA whenever the pattern has an unbounded repetition.
_LONG_TEXT = 4096
Ranges = tuple[tuple[int, int], ...]
_DIGIT: Ranges = ((0x30, 0x39),)
_UPPER: Ranges = ((0x41, 0x5A),)
_LOWER: Ranges = ((0x61, 0x7A),)
_POSIX: dict[str, Ranges] = {
    "alnum": _DIGIT + _UPPER + _LOWER, "alpha": _UPPER + _LOWER, "ascii": ((0, 0x7F),), "blank": ((9, 9), (32, 32)),
    "cntrl": ((0, 0x1F), (0x7F, 0x7F)), "digit": _DIGIT, "graph": ((0x21, 0x7E),), "lower": _LOWER,
    "print": ((0x20, 0x7E),), "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((9, 13), (32, 32)), "upper": _UPPER, "word": _DIGIT + _UPPER + ((0x5F, 0x5F),) + _LOWER,
    "xdigit": _DIGIT + ((0x41, 0x46), (0x61, 0x66)),
}
# RE2's Perl classes are ASCII-only; \s does not include \v.
_PERL: dict[str, Ranges] = {"d": _DIGIT, "s": ((9, 10), (12, 13), (32, 32)), "w": _POSIX["word"]}
_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_SIMPLE_ESCAPES = {"a": "\\x07", "f": "\\x0c", "t": "\\t", "n": "\\n", "r": "\\r", "v": "\\x0b"}
_CATEGORIES = {"L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Ps",
               "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Co", "Cs"}


class RegexError(Exception):
    """A pattern Go's regexp package refuses; str() is Go's `error parsing regexp: ...` text."""

    def __init__(self, code: str, expr: str) -> None:
        super().__init__(f"error parsing regexp: {code}: `{expr}`")


class Unsupported(Exception):
    """A valid RE2 pattern this module cannot translate (a Unicode script class such as \\p{Greek})."""


def _esc(cp: int) -> str:
    return f"\\x{cp:02x}" if cp < 0x100 else (f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}")


@functools.lru_cache(maxsize=64)
def _category_ranges(name: str) -> Ranges:
    """The code point ranges of a Unicode general category (computed once per category)."""
    out: list[tuple[int, int]] = []
    start = -1
    for cp in range(sys.maxunicode + 2):
        inside = cp <= sys.maxunicode and unicodedata.category(chr(cp)).startswith(name)
        if inside and start < 0:
            start = cp
        elif not inside and start >= 0:
            out.append((start, cp - 1))
            start = -1
    return tuple(out)


def _body(ranges: Ranges) -> str:
    """Ranges as the inside of a Python character class."""
    return "".join(_esc(lo) if lo == hi else f"{_esc(lo)}-{_esc(hi)}" for lo, hi in ranges)


def _complement(ranges: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= sys.maxunicode:
        out.append((nxt, sys.maxunicode))
    return tuple(out)


class _Translator:
    """One pass over an RE2 pattern: raises RegexError as Go would, else builds the Python equivalent."""

    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.i = 0
        self.out: list[str] = []
        # per open group: (flags in force, how many scoped-flag groups were opened inside it)
        self.stack: list[tuple[str, int]] = []
        self.flags = ""  # subset of "imsU" in force
        self.extra = 0  # scoped-flag groups opened in the current group
        self.can_repeat = False  # is there an operand for a repetition operator
        self.last_repeat = False
        self.last_op = ""

    def run(self) -> str:
        while self.i < len(self.s):
            self._step()
        if self.stack:
            raise RegexError(_MISSING_PAREN, self.s)
        return "".join(self.out) + ")" * self.extra

    def _step(self) -> None:
        c = self.s[self.i]
        if c in "*+?{" and self._repeat():
            return
        self.last_repeat = False
        if c == "\\":
            self._escape()
        elif c == "(":
            self._open()
        elif c == ")":
            self._close()
        elif c == "[":
            self.out.append(self._class())
            self.can_repeat = True
        elif c == "|":
            self.i += 1
            self.out.append("|")
            self.can_repeat = False
        elif c == "^":
            self.i += 1
            self.out.append("^" if "m" in self.flags else "\\A")
            self.can_repeat = True
        elif c == "$":
            self.i += 1
            self.out.append("(?m:$)" if "m" in self.flags else "\\Z")
            self.can_repeat = True
        elif c == ".":
            self.i += 1
            self.out.append("(?s:.)" if "s" in self.flags else "[^\\n]")
            self.can_repeat = True
        else:
            self.i += 1
            self.out.append(_esc(ord(c)) if not c.isalnum() else c)
            self.can_repeat = True

    # ------------------------------------------------------------------ repetition

    def _repeat(self) -> bool:
        s, i = self.s, self.i
        c = s[i]
        end = i + 1
        text = c
        if c == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", s[i:])
            if not m:
                return False  # a literal brace, as in RE2
            text = m.group(0)
            end = i + len(text)
            lo = int(m.group(1))
            hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else -1)
            if lo > _MAX_REPEAT or hi > _MAX_REPEAT or (hi >= 0 and hi < lo):
                raise RegexError(_INVALID_REPEAT_SIZE, text)
        lazy = end < len(s) and s[end] == "?"
        full = text + ("?" if lazy else "")
        if self.last_repeat:
            raise RegexError(_INVALID_NESTED_REPEAT, self.last_op + full)
        if not self.can_repeat:
            raise RegexError(_MISSING_REPEAT_ARG, full)
        self.i = end + (1 if lazy else 0)
        greedy = lazy == ("U" in self.flags)
        self.out.append(text + ("" if greedy else "?"))
        self.last_repeat = True
        self.last_op = full
        return True

    # ------------------------------------------------------------------ groups

    def _open(self) -> None:
        s, i = self.s, self.i
        if not s.startswith("(?", i):
            self.i += 1
            self._push("(")
            return
        t = s[i:]
        if (len(t) > 4 and t[2] == "P" and t[3] == "<") or (len(t) > 3 and t[2] == "<"):
            start = 4 if t[2] == "P" else 3
            end = t.find(">")
            if end < 0:
                raise RegexError(_INVALID_NAMED_CAPTURE, t)
            name = t[start:end]
            if not name or not all(ch.isalnum() or ch == "_" for ch in name) or not name.isascii():
                raise RegexError(_INVALID_NAMED_CAPTURE, t[:end + 1])
            self.i += end + 1
            self._push("(")
            return
        self._flags_group(t)

    def _flags_group(self, t: str) -> None:
        on: set[str] = set(self.flags)
        off: set[str] = set()
        sign, saw = 1, False
        j = 2
        while j < len(t):
            c = t[j]
            j += 1
            if c in "imsU":
                (on if sign > 0 else off).add(c)
                if sign < 0:
                    on.discard(c)
                saw = True
            elif c == "-" and sign > 0:
                sign, saw = -1, False
            elif c in ":)":
                if sign < 0 and not saw:
                    break
                self.i += j
                flags = "".join(ch for ch in "imsU" if ch in on)
                if c == ":":
                    self._push("(?:", flags)
                else:
                    self._set_flags(flags)
                return
            else:
                break
        raise RegexError(_INVALID_PERL_OP, t[:j])

    def _scoped(self, flags: str) -> str:
        on = "".join(ch for ch in "ims" if ch in flags)
        off = "".join(ch for ch in "ims" if ch not in flags)
        return f"(?{on}-{off}:" if off else f"(?{on}:"

    def _push(self, opener: str, flags: str | None = None) -> None:
        self.stack.append((self.flags, self.extra))
        self.extra = 0
        if flags is not None:
            self.flags = flags
        self.out.append(opener + self._scoped(self.flags))
        self.extra += 1
        self.can_repeat = False
        self.last_repeat = False

    def _set_flags(self, flags: str) -> None:
        self.flags = flags
        self.out.append(self._scoped(flags))
        self.extra += 1
        self.can_repeat = False

    def _close(self) -> None:
        if not self.stack:
            raise RegexError(_UNEXPECTED_PAREN, self.s)
        self.i += 1
        self.out.append(")" * self.extra + ")")
        self.flags, self.extra = self.stack.pop()
        self.can_repeat = True

    # ------------------------------------------------------------------ escapes

    def _escape(self) -> None:
        s, i = self.s, self.i
        if i + 1 >= len(s):
            raise RegexError(_TRAILING_BACKSLASH, "")
        c = s[i + 1]
        if c in "AbBz":
            self.i += 2
            self.out.append({"A": "\\A", "z": "\\Z", "b": "\\b", "B": "\\B"}[c])
            self.can_repeat = True
            return
        if c == "Q":
            end = s.find("\\E", i + 2)
            lit = s[i + 2:] if end < 0 else s[i + 2:end]
            self.i = len(s) if end < 0 else end + 2
            self.out.append("".join(_esc(ord(ch)) for ch in lit))
            self.can_repeat = bool(lit) or self.can_repeat
            return
        if c in "dDsSwWpP":
            self.out.append(self._class_escape(in_class=False))
        else:
            self.out.append(_esc(self._char_escape()))
        self.can_repeat = True

    def _char_escape(self) -> int:
        """One escaped character (octal, hex, control or punctuation), advancing past it."""
        s, i = self.s, self.i
        c = s[i + 1]
        if c in "1234567" and not (i + 2 < len(s) and s[i + 2] in "01234567"):
            raise RegexError(_INVALID_ESCAPE, s[i:i + 2])
        if c in "01234567":
            m = re.match(r"[0-7]{1,3}", s[i + 1:])
            assert m is not None
            self.i += 1 + len(m.group(0))
            return int(m.group(0), 8)
        if c == "x":
            m = re.match(r"x(\{([0-9A-Fa-f]+)\}|[0-9A-Fa-f]{2})", s[i + 1:])
            if not m or (m.group(2) is not None and int(m.group(2), 16) > sys.maxunicode):
                raise RegexError(_INVALID_ESCAPE, s[i:i + 2 + (len(m.group(0)) - 1 if m else 0)])
            self.i += 1 + len(m.group(0))
            return int(m.group(2) if m.group(2) is not None else m.group(1), 16)
        if c in _SIMPLE_ESCAPES:
            self.i += 2
            return {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}[c]
        if c in _PUNCT:
            self.i += 2
            return ord(c)
        raise RegexError(_INVALID_ESCAPE, s[i:i + 2])

    def _class_escape(self, in_class: bool) -> str:
        """A Perl (\\d) or Unicode (\\pL, \\p{Lu}) class: as a bracketed Python class, or its body inside one."""
        s, i = self.s, self.i
        c = s[i + 1]
        ranges: Ranges
        if c in "dDsSwW":
            self.i += 2
            ranges = _PERL[c.lower()]
            neg = c.isupper()
        else:
            neg = c == "P"
            if i + 2 >= len(s):
                raise RegexError(_INVALID_CHAR_RANGE, s[i:])
            if s[i + 2] == "{":
                end = s.find("}", i + 2)
                if end < 0:
                    raise RegexError(_INVALID_CHAR_RANGE, s[i:])
                name = s[i + 3:end]
                self.i = end + 1
            else:
                name = s[i + 2]
                self.i = i + 3
            if name.startswith("^"):
                name, neg = name[1:], not neg
            if name == "Any":
                ranges = ((0, sys.maxunicode),)
            elif name in _CATEGORIES:
                ranges = _category_ranges(name)
            elif name.isalpha():
                raise Unsupported(f"Unicode class \\p{{{name}}}")
            else:
                raise RegexError(_INVALID_CHAR_RANGE, s[i:self.i])
        if in_class:
            return _body(_complement(ranges) if neg else ranges)
        return ("[^" if neg else "[") + _body(ranges) + "]"

    def _class(self) -> str:
        s = self.s
        start = self.i
        self.i += 1
        neg = self.i < len(s) and s[self.i] == "^"
        if neg:
            self.i += 1
        parts: list[str] = []
        first = True
        while True:
            if self.i >= len(s):
                raise RegexError(_MISSING_BRACKET, s[start:])
            c = s[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and s.startswith("[:", self.i):
                end = s.find(":]", self.i + 2)
                if end >= 0:
                    name = s[self.i + 2:end]
                    negp = name.startswith("^")
                    posix = _POSIX.get(name[1:] if negp else name)
                    if posix is None:
                        raise RegexError(_INVALID_CHAR_RANGE, s[self.i:end + 2])
                    parts.append(_body(_complement(posix) if negp else posix))
                    self.i = end + 2
                    continue
            if c == "\\" and self.i + 1 < len(s) and s[self.i + 1] in "dDsSwWpP":
                parts.append(self._class_escape(in_class=True))
                continue
            range_start = self.i
            lo = self._class_char(start)
            if self.i + 1 < len(s) and s[self.i] == "-" and s[self.i + 1] != "]":
                self.i += 1
                hi = self._class_char(start)
                if hi < lo:
                    raise RegexError(_INVALID_CHAR_RANGE, s[range_start:self.i])
                parts.append(f"{_esc(lo)}-{_esc(hi)}")
            else:
                parts.append(_esc(lo))
        return ("[^" if neg else "[") + "".join(parts) + "]" if parts else "(?!)"

    def _class_char(self, start: int) -> int:
        s = self.s
        if self.i >= len(s):
            raise RegexError(_MISSING_BRACKET, s[start:])
        c = s[self.i]
        if c == "\\":
            if self.i + 1 >= len(s):
                raise RegexError(_TRAILING_BACKSLASH, "")
            if s[self.i + 1] in "bB":
                raise RegexError(_INVALID_ESCAPE, s[self.i:self.i + 2])
            return self._char_escape()
        self.i += 1
        return ord(c)


def check(pattern: str) -> None:
    """Raise RegexError with Go's words if Go's regexp package would refuse the pattern."""
    with contextlib.suppress(Unsupported):
        translate(pattern)


class Matcher:
    """An RE2 pattern ready to search: Python's `re` where that is safe, else a linear-time NFA.

    Backtracking is exponential for a repetition over a repetition or an alternation, and polynomial (an
    unanchored search, or two unbounded repetitions) on long texts; those go to the NFA, as RE2 would run them.
    """

    __slots__ = ("rx", "nfa", "risky", "repeats")

    def __init__(self, rx: re.Pattern[str], risky: bool, repeats: bool) -> None:
        self.rx = rx
        self.nfa: re2vm.Program | None = None
        self.risky = risky
        self.repeats = repeats

    def search(self, text: str) -> bool:
        """Does the pattern match anywhere in text (Go's MatchString)."""
        if self.risky or (self.repeats and len(text) > _LONG_TEXT):
            nfa = self._nfa()
            if nfa is not None:
                return nfa.search(text)
        return self.rx.search(text) is not None

    def _nfa(self) -> re2vm.Program | None:
        if self.nfa is None:
            try:
                self.nfa = re2vm.Program(self.rx.pattern)
            except re2vm.TooLarge:
                self.risky = self.repeats = False  # counted repetitions too large to expand: re handles those
        return self.nfa


@functools.lru_cache(maxsize=256)
def translate(pattern: str) -> Matcher:
    """A matcher for what the RE2 pattern matches (RegexError or Unsupported otherwise)."""
    if any("\ud800" <= ch <= "\udfff" for ch in pattern):
        raise RegexError(_INVALID_UTF8, pattern)
    text = _Translator(pattern).run()
    try:
        rx = re.compile(text)
        tree = re2vm.parse(text)
    except (re.error, RecursionError, OverflowError) as e:
        raise Unsupported(str(e)) from None
    return Matcher(rx, re2vm.dangerous(tree), re2vm.unbounded(tree) > 0)
