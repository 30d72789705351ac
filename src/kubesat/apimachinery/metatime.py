"""metav1.Time and metav1.MicroTime as JSON text: read as Go's time.Parse reads RFC 3339 (Kubernetes' layouts,
Go's leniencies and error wording), written in Kubernetes' canonical form (UTC; seconds, or microseconds)."""

from __future__ import annotations

import re

RFC3339 = "2006-01-02T15:04:05Z07:00"  # metav1.Time's layout (time.RFC3339)
RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"  # metav1.MicroTime's

_NS = 1_000_000_000
_DAY = 86400
# Go's zero time (0001-01-01T00:00:00Z), which Kubernetes writes as null.
_ZERO_NS = -62135596800 * _NS
# What RFC 3339 can write: years 0000 to 9999. An offset can carry a parsed time past them (9999-12-31T23:00:00-02:00);
# Go would write a year no parser reads back, so such a time is written as the nearest one it can write, as
# kubesat writes its own timestamps.
FIRST_SECOND = -62167219200  # 0000-01-01T00:00:00Z
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z
_DAYS_IN = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_CACHE_SIZE = 4096
# The shapes clients write (a subset of what Go reads): matched, range-checked and computed at once; anything else
# (and anything out of range) takes the byte-by-byte reading that finds Go's words.
_COMMON = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]+))?"
                     r"(Z|[+-][0-9]{2}:[0-9]{2})")


class TimeParseError(ValueError):
    """A time Go's time.Parse refuses; str() is its message, word for word."""


def _quote(b: bytes) -> str:
    """Go's time.quote: double quotes, every byte outside printable ASCII as \\xNN."""
    if b.isascii() and (text := b.decode("ascii")).isprintable():  # the usual case, in one pass
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    out = ['"']
    for c in b:
        if c >= 0x80 or c < 0x20:
            out.append(f"\\x{c:02x}")
        elif c in (0x22, 0x5C):
            out.append("\\" + chr(c))
        else:
            out.append(chr(c))
    out.append('"')
    return "".join(out)


class _Reader:
    """One parse of `text` against a layout, failing as Go's time.parse fails."""

    def __init__(self, text: str, layout: str) -> None:
        self.whole = text.encode("utf-8", "surrogatepass")
        self.rest = self.whole
        self.layout = layout

    def cannot(self, value: bytes, element: str) -> TimeParseError:
        return TimeParseError(f"parsing time {_quote(self.whole)} as {_quote(self.layout.encode())}: "
                              f"cannot parse {_quote(value)} as {_quote(element.encode())}")

    def problem(self, message: str) -> TimeParseError:
        return TimeParseError(f"parsing time {_quote(self.whole)}{message}")

    def out_of_range(self, what: str) -> TimeParseError:
        return self.problem(f": {what} out of range")

    def literal(self, char: bytes) -> None:
        if not self.rest.startswith(char):
            raise self.cannot(self.rest, char.decode())
        self.rest = self.rest[1:]

    def number(self, element: str, fixed: bool = True) -> int:
        """Go's getnum: two digits (or one, unless fixed)."""
        v = self.rest
        if not _digit(v, 0) or (fixed and not _digit(v, 1)):
            raise self.cannot(v, element)
        width = 2 if _digit(v, 1) else 1
        self.rest = v[width:]
        return int(v[:width])

    def year(self) -> int:
        v = self.rest
        if len(v) < 4 or not all(0x30 <= c <= 0x39 for c in v[:4]):
            raise self.cannot(v, "2006")
        self.rest = v[4:]
        return int(v[:4])

    def fraction(self, micro: bool) -> int:
        """Nanoseconds: any number of digits after the seconds (RFC3339), exactly six (MicroTime)."""
        v = self.rest
        if micro:
            if len(v) < 7 or v[0] not in b".,":
                raise self.cannot(v, ".000000")
            sign, digits = (v[1:2], v[2:7]) if v[1:2] in (b"+", b"-") else (b"", v[1:7])
            if not all(0x30 <= c <= 0x39 for c in digits):
                raise self.cannot(v, ".000000")
            self.rest = v[7:]
            if sign == b"-" and int(digits or b"0"):
                raise self.out_of_range("fractional second")
            return int(digits or b"0") * 1000
        if len(v) < 2 or v[0] not in b".," or not _digit(v, 1):
            return 0
        n = 2
        while _digit(v, n):
            n += 1
        self.rest = v[n:]
        digits = v[1:min(n, 10)]
        scale: int = 10 ** (9 - len(digits))
        return int(digits) * scale

    def offset(self) -> int:
        """Seconds east of UTC: Z, or ±hh:mm (Go allows up to 24 hours and 60 minutes)."""
        v = self.rest
        if v[:1] == b"Z":
            self.rest = v[1:]
            return 0
        if len(v) < 6 or v[3:4] != b":":
            raise self.cannot(v, "Z07:00")
        self.rest = v[6:]
        fits = _digit(v, 1) and _digit(v, 2)
        hours = int(v[1:3]) if fits else 0
        fits = fits and _digit(v, 4) and _digit(v, 5)
        minutes = int(v[4:6]) if fits else 0
        if minutes > 60:
            raise self.out_of_range("time zone offset minute")
        if hours > 24:
            raise self.out_of_range("time zone offset hour")
        if not fits or v[0] not in b"+-":
            raise self.cannot(v, "Z07:00")
        east = hours * 3600 + minutes * 60
        return -east if v[0] == 0x2D else east


def _digit(b: bytes, i: int) -> bool:
    return i < len(b) and 0x30 <= b[i] <= 0x39


def _days_in(month: int, year: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN[month]


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def parse(text: str, micro: bool = False) -> int:
    """Nanoseconds since 1970 of a time as Go's time.Parse reads it with Kubernetes' layout; TimeParseError if it
    refuses it (with its message)."""
    m = _COMMON.fullmatch(text)
    if m is not None:
        ns = _common(m, micro)
        if ns is not None:
            return ns
    return _parse_slowly(text, micro)


def _common(m: re.Match[str], micro: bool) -> int | None:
    """A time of the common shape, or None when some part is out of range or (MicroTime) the fraction is not
    six digits: the slow reading words why."""
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    fraction, zone = m.group(7), m.group(8)
    if micro and (fraction is None or len(fraction) != 6):
        return None
    if not (1 <= month <= 12 and 1 <= day <= _days_in(month, year) and hour < 24 and minute < 60 and second < 60):
        return None
    east = 0
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 24 or minutes > 60:
            return None
        east = (hours * 3600 + minutes * 60) * (-1 if zone[0] == "-" else 1)
    nanos = 0
    if fraction:
        digits = fraction[:9]
        nanos = int(digits) * 10 ** (9 - len(digits))
    seconds = _days_from_civil(year, month, day) * _DAY + hour * 3600 + minute * 60 + second - east
    return seconds * _NS + nanos


def _parse_slowly(text: str, micro: bool) -> int:
    r = _Reader(text, RFC3339_MICRO if micro else RFC3339)
    year = r.year()
    r.literal(b"-")
    month = r.number("01")
    if not 1 <= month <= 12:
        raise r.out_of_range("month")
    r.literal(b"-")
    day = r.number("02")
    r.literal(b"T")
    hour = r.number("15", fixed=False)
    if hour >= 24:
        raise r.out_of_range("hour")
    r.literal(b":")
    minute = r.number("04")
    if minute >= 60:
        raise r.out_of_range("minute")
    r.literal(b":")
    second = r.number("05")
    if second >= 60:
        raise r.out_of_range("second")
    nanos = r.fraction(micro)
    east = r.offset()
    if r.rest:
        raise r.problem(f": extra text: {_quote(r.rest)}")
    if not 1 <= day <= _days_in(month, year):
        raise r.problem(": day out of range")
    seconds = _days_from_civil(year, month, day) * _DAY + hour * 3600 + minute * 60 + second - east
    return seconds * _NS + nanos


def format_ns(ns: int, micro: bool = False) -> str:
    """The canonical text of a time (UTC, whole seconds or microseconds, both truncated), within years 0000-9999."""
    seconds, nanos = divmod(ns, _NS)
    if seconds < FIRST_SECOND:
        seconds, nanos = FIRST_SECOND, 0
    elif seconds > LAST_SECOND:
        seconds, nanos = LAST_SECOND, _NS - 1
    days, rest = divmod(seconds, _DAY)
    y, m, d = _civil_from_days(days)
    hh, rest = divmod(rest, 3600)
    mm, ss = divmod(rest, 60)
    text = f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}"
    return f"{text}.{nanos // 1000:06d}Z" if micro else f"{text}Z"


def format_parts(seconds: int, nanos: int, micro: bool) -> str | None:
    """A protobuf Timestamp's canonical text (None for Go's zero time): a Time keeps only its seconds, as
    Kubernetes' protobuf decoding does."""
    ns = seconds * _NS + (nanos if micro else 0)
    return None if ns == _ZERO_NS else format_ns(ns, micro)


# Texts already read, per layout: text -> canonical form. Times repeat (one per second at most), so most writes
# look every time up here.
_seen: tuple[dict[str, str | None], dict[str, str | None]] = ({}, {})


def canonical(text: str, micro: bool = False) -> str | None:
    """What Kubernetes stores for a time's JSON text: its canonical form, or None for Go's zero time (written as
    null). TimeParseError when Go's time.Parse refuses it."""
    seen = _seen[micro]
    try:
        return seen[text]
    except KeyError:
        pass
    ns = parse(text, micro)
    out = None if ns == _ZERO_NS else format_ns(ns, micro)
    if len(seen) >= _CACHE_SIZE:
        seen.clear()
    seen[text] = out
    return out


def is_canonical(value: object, micro: bool = False) -> bool:
    """Whether value is a time's text exactly as Kubernetes would write it (the common case: nothing to do)."""
    if type(value) is not str:
        return False
    if _seen[micro].get(value) == value:
        return True
    try:
        return canonical(value, micro) == value
    except TimeParseError:
        return False
