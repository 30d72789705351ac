"""The string formats kube-apiserver enforces on custom resources (kube-openapi's strfmt, without int32 and such)."""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Callable

from kubesat.apimachinery.crdschema import regex

# Kubernetes keeps only these formats (after dropping every "-"); any other format is ignored.
SUPPORTED = frozenset({
    "bsonobjectid", "uri", "email", "hostname", "ipv4", "ipv6", "cidr", "mac", "uuid", "uuid3", "uuid4", "uuid5",
    "isbn", "isbn10", "isbn13", "creditcard", "ssn", "hexcolor", "rgbcolor", "byte", "password", "date",
    "duration", "datetime",
})

_UUID = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\Z")
_UUID3 = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}\Z")
_UUID4 = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}\Z")
_UUID5 = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}\Z")
# kube-openapi's HostnamePattern, in Go's syntax (matched by the RE2 translation of crdschema.regex).
_HOSTNAME = (r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]"
             r"{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$")
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})\Z")
_HEXCOLOR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})\Z")
_BYTE_PART = r"\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*"
_RGB = re.compile(rf"^rgb\({_BYTE_PART},{_BYTE_PART},{_BYTE_PART}\)\Z")
_SSN = re.compile(r"^\d{3}[- ]?\d{2}[- ]?\d{4}\Z")
_CREDIT = re.compile(r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]"
                     r"|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}"
                     r"|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})\Z")
_DATE_TIME_TAIL = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))\Z")
_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+\Z")
_DURATION_UNITS = (("ns", "nano"), ("us", "µs", "micro"), ("ms", "milli"), ("s", "sec"), ("m", "min"),
                   ("h", "hr", "hour"), ("d", "day"), ("w", "wk", "week"))
_MAC = re.compile(r"^([0-9A-Fa-f]{2}([:-]))(?:[0-9A-Fa-f]{2}\2){4}[0-9A-Fa-f]{2}(?:(?:\2[0-9A-Fa-f]{2}){2}"
                  r"|(?:\2[0-9A-Fa-f]{2}){14})?\Z|^[0-9A-Fa-f]{4}(\.[0-9A-Fa-f]{4}){2}((\.[0-9A-Fa-f]{4})|(\.[0-9A-Fa-f]{4}){7})?\Z")
_EMAIL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = rf"({_EMAIL_ATOM}(\.{_EMAIL_ATOM})*|\"([^\"\\\r\n]|\\.)*\")"
_ADDR_SPEC = rf"{_LOCAL}@({_EMAIL_ATOM}(\.{_EMAIL_ATOM})*|\[[^\[\]\\]*\])"
_EMAIL = re.compile(rf"^({_ADDR_SPEC}|[^<>@]*<{_ADDR_SPEC}>)\Z")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def normalize(fmt: str) -> str:
    return fmt.replace("-", "")


def is_supported(fmt: str) -> bool:
    return normalize(fmt) in SUPPORTED


def valid(fmt: str, value: str) -> bool:
    """Whether value has the (supported) format, as kube-openapi's strfmt.Default decides."""
    check = _CHECKS.get(normalize(fmt))
    return True if check is None else check(value)


def _hostname(s: str) -> bool:
    """strfmt.IsHostname: Go's pattern (letters and symbols of any script), at most 255 bytes, labels of 63."""
    if len(s.encode()) > 255:  # checked first here (Go checks it after the pattern): same answer, bounded work
        return False
    return regex.translate(_HOSTNAME).search(s) and all(len(p.encode()) <= 63 for p in s.split("."))


def _ipv4(s: str) -> bool:
    parts = s.split(".")
    # Go's sloppy parser: leading zeros allowed, any number of digits while the value fits a byte
    if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 12 and int(p) <= 255 for p in parts):
        return True
    return "." in s and ":" in s and _ipv6(s)


def _ipv6(s: str) -> bool:
    if ":" not in s or "%" in s:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _cidr(s: str) -> bool:
    ip, sep, prefix = s.partition("/")
    if not sep or not prefix.isascii() or not prefix.isdigit() or len(prefix) > 3:
        return False
    if ":" in ip:
        return _ipv6(ip) and int(prefix) <= 128
    return _ipv4(ip) and int(prefix) <= 32


def _date(s: str) -> bool:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", s):
        return False
    try:
        datetime.date(int(s[:4]), int(s[5:7]), int(s[8:10]))
    except ValueError:
        return False
    return True


def _datetime(s: str) -> bool:
    if len(s) < 4:
        return False
    parts = s.lower().split("t")
    if len(parts) < 2 or not _date(parts[0]):
        return False
    m = _DATE_TIME_TAIL.match(parts[1])
    return m is not None and m.group(1) <= "23" and m.group(2) <= "59" and m.group(3) <= "59"


def _duration(s: str) -> bool:
    if s in ("0", "+0", "-0") or _GO_DURATION.match(s):
        return True
    found = False
    for number, unit in _loose_duration_parts(s):
        if len(number) > 18:
            return False  # Go's Atoi overflows: the whole parse fails
        unit = unit.lower()
        for variants in _DURATION_UNITS:
            if any(unit == v or (i == len(variants) - 1 and unit.startswith(v)) for i, v in enumerate(variants)):
                found = True
    return found


def _loose_duration_parts(s: str) -> list[tuple[str, str]]:
    """strfmt's fallback `(\\d+)\\s*([A-Za-zµ]+)` matches, found in one pass (the regex backtracks on digits)."""
    out = []
    i, n = 0, len(s)
    while i < n:
        if not ("0" <= s[i] <= "9"):
            i += 1
            continue
        j = i
        while j < n and "0" <= s[j] <= "9":
            j += 1
        k = j
        while k < n and s[k] in " \t\n\r\f\v":
            k += 1
        m = k
        while m < n and (s[m].isascii() and s[m].isalpha() or s[m] == "µ"):
            m += 1
        if m > k:
            out.append((s[i:j], s[k:m]))
            i = m
        else:
            i = j
    return out


def _isbn10(s: str) -> bool:
    s = s.replace("-", "").replace(" ", "")
    if not re.fullmatch(r"[0-9]{9}X|[0-9]{10}", s):
        return False
    total = sum((10 - i) * (10 if ch == "X" else int(ch)) for i, ch in enumerate(s))
    return total % 11 == 0


def _isbn13(s: str) -> bool:
    s = s.replace("-", "").replace(" ", "")
    if not re.fullmatch(r"[0-9]{13}", s):
        return False
    total = sum(int(ch) * (1 if i % 2 == 0 else 3) for i, ch in enumerate(s[:12]))
    return (10 - total % 10) % 10 == int(s[12])


def _creditcard(s: str) -> bool:
    digits = re.sub(r"[^0-9]", "", s)
    if not _CREDIT.match(digits):
        return False
    total, double = 0, False
    for ch in reversed(digits):
        d = int(ch) * (2 if double else 1)
        total += d - 9 if d > 9 else d
        double = not double
    return total % 10 == 0


def _uri(s: str) -> bool:
    if not s or any(ord(ch) < 0x20 or ord(ch) == 0x7F or ch == " " for ch in s):
        return False
    if re.search(r"%(?![0-9A-Fa-f]{2})", s.split("#")[0]):
        return False
    return s.startswith("/") or bool(_SCHEME.match(s))


_CHECKS: dict[str, Callable[[str], bool]] = {
    "bsonobjectid": lambda s: bool(re.fullmatch(r"[0-9a-fA-F]{24}", s)),
    "uri": _uri,
    "email": lambda s: bool(_EMAIL.match(s.strip())),
    "hostname": _hostname,
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "cidr": _cidr,
    "mac": lambda s: bool(_MAC.match(s)),
    "uuid": lambda s: bool(_UUID.match(s)),
    "uuid3": lambda s: bool(_UUID3.match(s)),
    "uuid4": lambda s: bool(_UUID4.match(s)),
    "uuid5": lambda s: bool(_UUID5.match(s)),
    "isbn": lambda s: _isbn10(s) or _isbn13(s),
    "isbn10": _isbn10,
    "isbn13": _isbn13,
    "creditcard": _creditcard,
    "ssn": lambda s: len(s) == 11 and bool(_SSN.match(s)),
    "hexcolor": lambda s: bool(_HEXCOLOR.match(s)),
    "rgbcolor": lambda s: bool(_RGB.match(s)),
    "byte": lambda s: bool(_BASE64.match(s)),
    "password": lambda s: True,
    "date": _date,
    "duration": _duration,
    "datetime": _datetime,
}
