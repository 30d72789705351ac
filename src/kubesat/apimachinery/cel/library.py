"""Kubernetes' CEL function libraries (strings, lists, regex, URLs, IPs and CIDRs, quantities, sets), as declarations
for the checker and Python implementations for the runtime."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cel_expr_python import cel

from kubesat.apimachinery.quantity import parse_quantity

T = cel.Type
# The argument types a function that takes "any scalar" is declared for (Python implementations get no dyn).
SCALARS = [T.INT, T.UINT, T.DOUBLE, T.STRING, T.BOOL, T.BYTES, T.DURATION, T.TIMESTAMP]
_SCALAR_IDS = ["int", "uint", "double", "string", "bool", "bytes", "duration", "timestamp"]
OPAQUE_KINDS = ("URL", "IP", "CIDR", "Quantity")
_KEY = "@kubesat"  # marks a runtime map standing for one of the opaque kinds


class CelError(Exception):
    """An evaluation error, with the words Kubernetes' runtime gives."""


def opaque(kind: str, value: str) -> dict[str, str]:
    return {_KEY: kind, "v": value}


def opaque_text(o: Any) -> str:
    """`string(ip)` and `string(cidr)`: the canonical text of an IP or CIDR value."""
    if not isinstance(o, dict) or o.get(_KEY) not in ("IP", "CIDR"):
        raise CelError("no such overload")
    return str(o["v"])


def _val(o: Any, kind: str) -> str:
    if not isinstance(o, dict) or o.get(_KEY) != kind:
        raise CelError("no such overload")
    return str(o["v"])


# --- strings -----------------------------------------------------------------------------------------------------


def _char_at(s: str, i: int) -> str:
    if i < 0 or i > len(s):
        raise CelError(f"index out of range: {i}")
    return s[i:i + 1]


def _index_of(s: str, sub: str, start: int = 0) -> int:
    if start < 0 or start > len(s):
        raise CelError(f"index out of range: {start}")
    return s.find(sub, start)


def _last_index_of(s: str, sub: str, end: int | None = None) -> int:
    if end is None:
        return s.rfind(sub)
    if end < 0 or end >= len(s) + (1 if not s else 0):
        raise CelError(f"index out of range: {end}")
    return s.rfind(sub, 0, end + len(sub))


def _ascii(s: str, upper: bool) -> str:
    table = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ") if upper else \
        str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    return s.translate(table)


def _replace(s: str, old: str, new: str, n: int = -1) -> str:
    return s.replace(old, new, n if n >= 0 else -1)


def _split(s: str, sep: str, n: int = -1) -> list[str]:
    if n == 0:
        return []
    if sep == "":
        chars = list(s)
        return chars if n < 0 or n >= len(chars) else [*chars[:n - 1], "".join(chars[n - 1:])]
    return s.split(sep, n - 1 if n > 0 else -1)


def _substring(s: str, start: int, end: int | None = None) -> str:
    end = len(s) if end is None else end
    if start < 0 or start > len(s):
        raise CelError(f"index out of range: {start}")
    if end < 0 or end > len(s):
        raise CelError(f"index out of range: {end}")
    if start > end:
        raise CelError(f"invalid substring range. start: {start}, end: {end}")
    return s[start:end]


def _join(parts: list[Any], sep: str = "") -> str:
    if not all(isinstance(p, str) for p in parts):
        raise CelError("no such overload")
    return sep.join(parts)


def _quote(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return f'"{out}"'


_FORMAT = re.compile(r"%(?:\.(\d+))?([sdfeExXobS%])")


def _format(template: str, args: list[Any]) -> str:
    out: list[str] = []
    pos = 0
    n = 0
    for m in _FORMAT.finditer(template):
        out.append(template[pos:m.start()])
        pos = m.end()
        verb = m.group(2)
        if verb == "%":
            out.append("%")
            continue
        if n >= len(args):
            raise CelError(f"index {n} out of range")
        out.append(_format_one(verb, m.group(1), args[n]))
        n += 1
    out.append(template[pos:])
    return "".join(out)


def _format_one(verb: str, precision: str | None, arg: Any) -> str:
    if verb == "s":
        return _to_string(arg)
    if verb == "d":
        if isinstance(arg, bool) or not isinstance(arg, int):
            raise CelError("error during formatting: decimal clause can only be used on integers")
        return str(arg)
    if verb in "fe":
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            raise CelError("error during formatting: fixed-point clause can only be used on doubles")
        return f"{float(arg):.{int(precision) if precision else 6}{verb}}"
    if verb in "xXob":
        if isinstance(arg, str):
            data = arg.encode()
            return data.hex() if verb == "x" else data.hex().upper()
        if isinstance(arg, bytes):
            return arg.hex() if verb == "x" else arg.hex().upper()
        if isinstance(arg, bool) or not isinstance(arg, int):
            raise CelError("error during formatting: only integers, byte buffers, and strings can be formatted as hex")
        return format(arg, {"x": "x", "X": "X", "o": "o", "b": "b"}[verb])
    return _to_string(arg)


def _to_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return "[" + ", ".join(_to_string(x) for x in v) + "]"
    if isinstance(v, dict):
        if _KEY in v:
            return str(v["v"])
        return "{" + ", ".join(f"{_to_string(k)}: {_to_string(x)}" for k, x in v.items()) + "}"
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, timedelta):
        return f"{v.total_seconds():g}s"
    return str(v)


# --- lists -------------------------------------------------------------------------------------------------------


def _comparable(items: list[Any]) -> None:
    kinds = {type(x) for x in items}
    if len(kinds) > 1 and not kinds <= {int, float}:
        raise CelError("no such overload")
    if kinds & {dict, list, type(None)}:
        raise CelError("no such overload")


def _is_sorted(items: list[Any]) -> bool:
    _comparable(items)
    return all(items[i] <= items[i + 1] for i in range(len(items) - 1))


def _sum(items: list[Any]) -> Any:
    _comparable(items)
    if not items:
        return 0
    total = items[0]
    for x in items[1:]:
        total = total + x
    return total


def _min(items: list[Any]) -> Any:
    if not items:
        raise CelError("min called on empty list")
    _comparable(items)
    return min(items)


def _max(items: list[Any]) -> Any:
    if not items:
        raise CelError("max called on empty list")
    _comparable(items)
    return max(items)


def _list_index_of(items: list[Any], x: Any) -> int:
    for i, v in enumerate(items):
        if type(v) is type(x) and v == x:
            return i
    return -1


def _list_last_index_of(items: list[Any], x: Any) -> int:
    for i in range(len(items) - 1, -1, -1):
        if type(items[i]) is type(x) and items[i] == x:
            return i
    return -1


def _index_of_any(target: Any, x: Any, *rest: Any) -> int:
    if isinstance(target, str):
        return _index_of(target, x, *rest)
    return _list_index_of(target, x)


def _last_index_of_any(target: Any, x: Any, *rest: Any) -> int:
    if isinstance(target, str):
        return _last_index_of(target, x, *rest)
    return _list_last_index_of(target, x)


# --- regex -------------------------------------------------------------------------------------------------------


def _compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise CelError(f"error parsing regexp: {e}") from None


def _find(s: str, pattern: str) -> str:
    m = _compile_regex(pattern).search(s)
    return m.group(0) if m else ""


def _find_all(s: str, pattern: str, n: int = -1) -> list[str]:
    if n == 0:
        return []
    found = [m.group(0) for m in _compile_regex(pattern).finditer(s)]
    return found if n < 0 else found[:n]


# --- URLs --------------------------------------------------------------------------------------------------------


def _parse_url(s: str) -> Any:
    try:
        u = urlsplit(s)
        u.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return None
    if not u.scheme and not s.startswith("/"):
        return None
    if u.scheme and not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*", u.scheme):
        return None
    if any(c in s for c in " \t\n"):
        return None
    return u


def _url(s: str) -> dict[str, str]:
    if _parse_url(s) is None:
        raise CelError(f"URL parse error during conversion from string: parse \"{s}\": invalid URI for request")
    return opaque("URL", s)


def _url_part(part: str) -> Callable[[Any], str]:
    def get(o: Any) -> str:
        u = urlsplit(_val(o, "URL"))
        if part == "scheme":
            return u.scheme
        if part == "host":
            return u.netloc.rsplit("@", 1)[-1]
        if part == "hostname":
            host = u.netloc.rsplit("@", 1)[-1]
            if host.startswith("["):
                return host[1:host.find("]")]
            return host.rsplit(":", 1)[0] if ":" in host else host
        if part == "port":
            host = u.netloc.rsplit("@", 1)[-1]
            tail = host[host.find("]") + 1:] if host.startswith("[") else host
            return tail.rsplit(":", 1)[1] if ":" in tail else ""
        return u.path
    return get


def _url_query(o: Any) -> dict[str, list[str]]:
    return {k: v for k, v in parse_qs(urlsplit(_val(o, "URL")).query, keep_blank_values=True).items()}


# --- IPs and CIDRs -----------------------------------------------------------------------------------------------


def _parse_ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in s:
        return None
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return None
    return ip


def _ip(s: str) -> dict[str, str]:
    ip = _parse_ip(s)
    if ip is None:
        raise CelError(_ip_parse_error(s))
    return opaque("IP", str(ip))


def _ip_parse_error(s: str) -> str:
    return f"IP Address {_go_quote(s)} parse error during conversion from string: ParseAddr({_go_quote(s)}): " \
        "unable to parse IP"


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ip_is_canonical(s: str) -> bool:
    ip = _parse_ip(s)
    if ip is None:
        raise CelError(_ip_parse_error(s))
    return str(ip) == s


def _ip_attr(attr: str) -> Callable[[Any], Any]:
    def get(o: Any) -> Any:
        ip = ipaddress.ip_address(_val(o, "IP"))
        if attr == "family":
            return ip.version
        if attr == "isGlobalUnicast":
            return not (ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local
                        or ip == ipaddress.ip_address("255.255.255.255"))
        if attr == "isLinkLocalMulticast":
            net = "224.0.0.0/24" if ip.version == 4 else "ff02::/16"
            return ip in ipaddress.ip_network(net)
        return bool(getattr(ip, {"isUnspecified": "is_unspecified", "isLoopback": "is_loopback",
                                 "isLinkLocalUnicast": "is_link_local"}[attr]))
    return get


def _parse_cidr(s: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if "/" not in s or _parse_ip(s.split("/", 1)[0]) is None:
        return None
    try:
        return ipaddress.ip_network(s, strict=False)
    except ValueError:
        return None


def _cidr(s: str) -> dict[str, str]:
    if _parse_cidr(s) is None:
        raise CelError(f"network address {_go_quote(s)} parse error during conversion from string: "
                       f"netip.ParsePrefix({_go_quote(s)}): bad prefix")
    addr, _, bits = s.partition("/")
    return opaque("CIDR", f"{ipaddress.ip_address(addr)}/{int(bits)}")


def _cidr_net(o: Any) -> tuple[Any, Any]:
    text = _val(o, "CIDR")
    addr, _, _bits = text.partition("/")
    return ipaddress.ip_address(addr), ipaddress.ip_network(text, strict=False)


def _contains_ip(o: Any, other: Any) -> bool:
    _, net = _cidr_net(o)
    ip = ipaddress.ip_address(_val(other, "IP")) if isinstance(other, dict) else _parse_ip(other)
    if ip is None:
        raise CelError(f"IP Address {_go_quote(str(other))} parse error during conversion from string")
    return ip.version == net.version and ip in net


def _contains_cidr(o: Any, other: Any) -> bool:
    _, net = _cidr_net(o)
    text = _val(other, "CIDR") if isinstance(other, dict) else other
    sub = _parse_cidr(text)
    if sub is None:
        raise CelError(f"network address {_go_quote(text)} parse error during conversion from string")
    return bool(sub.version == net.version and sub.subnet_of(net))


def _cidr_ip(o: Any) -> dict[str, str]:
    return opaque("IP", str(_cidr_net(o)[0]))


def _cidr_masked(o: Any) -> dict[str, str]:
    return opaque("CIDR", str(_cidr_net(o)[1]))


def _cidr_prefix(o: Any) -> int:
    return int(_cidr_net(o)[1].prefixlen)


# --- quantities --------------------------------------------------------------------------------------------------


def _quantity(s: str) -> dict[str, str]:
    amount = parse_quantity(s) if isinstance(s, str) else None
    if amount is None:
        raise CelError("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    return opaque("Quantity", _canonical(amount))


def _canonical(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text


def _amount(o: Any) -> Decimal:
    if isinstance(o, int) and not isinstance(o, bool):
        return Decimal(o)
    return Decimal(_val(o, "Quantity"))


def _q_as_integer(o: Any) -> int:
    d = _amount(o)
    if d != d.to_integral_value() or not -(2**63) <= d < 2**63:
        raise CelError("cannot convert value to integer")
    return int(d)


def _q_compare(a: Any, b: Any) -> int:
    x, y = _amount(a), _amount(b)
    return (x > y) - (x < y)


def _q_sign(o: Any) -> int:
    d = _amount(o)
    return (d > 0) - (d < 0)


def _q_is_integer(o: Any) -> bool:
    d = _amount(o)
    return d == d.to_integral_value() and -(2**63) <= d < 2**63


# --- sets --------------------------------------------------------------------------------------------------------


def _sets_contains(a: list[Any], b: list[Any]) -> bool:
    return all(any(_eq(x, y) for y in a) for x in b)


def _sets_equivalent(a: list[Any], b: list[Any]) -> bool:
    return _sets_contains(a, b) and _sets_contains(b, a)


def _sets_intersects(a: list[Any], b: list[Any]) -> bool:
    return any(any(_eq(x, y) for y in a) for x in b)


def _eq(x: Any, y: Any) -> bool:
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    return bool(x == y)


# --- declarations ------------------------------------------------------------------------------------------------


def guarded_overload(oid: str, result: Any, params: Sequence[Any], impl: Callable[..., Any],
                     member: bool = False) -> Any:
    """An overload whose Python implementation's failures become CEL errors."""
    return cel.Overload(oid, result, list(params), is_member=member, impl=_guard(impl))


_ov = guarded_overload


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except CelError:
            raise
        except (ValueError, TypeError, ArithmeticError, KeyError, IndexError) as e:
            raise CelError(str(e)) from None
    return call


def declarations(opaque_type: Callable[[str], Any]) -> list[Any]:
    """Every Kubernetes library function, with `opaque_type(kind)` giving the declared type of URL, IP, CIDR and
    Quantity (an abstract type for the checker, a map for the runtime)."""
    url, ip, cidr, qty = (opaque_type(k) for k in OPAQUE_KINDS)
    s, i, b, d = T.STRING, T.INT, T.BOOL, T.DOUBLE
    ls, ld = T.List(T.STRING), T.List(T.DYN)
    decls: list[Any] = []

    def fn(name: str, *overloads: Any) -> None:
        decls.append(cel.FunctionDecl(name, list(overloads)))

    fn("charAt", _ov("string_char_at_int", s, [s, i], _char_at, True))
    fn("indexOf",
       _ov("string_index_of_string", i, [s, s], _index_of_any, True),
       _ov("string_index_of_string_int", i, [s, s, i], _index_of_any, True),
       *[_ov(f"list_index_of_{n}", i, [ld, t], _list_index_of, True)
         for n, t in zip(_SCALAR_IDS, SCALARS, strict=True)])
    fn("lastIndexOf",
       _ov("string_last_index_of_string", i, [s, s], _last_index_of_any, True),
       _ov("string_last_index_of_string_int", i, [s, s, i], _last_index_of_any, True),
       *[_ov(f"list_last_index_of_{n}", i, [ld, t], _list_last_index_of, True)
         for n, t in zip(_SCALAR_IDS, SCALARS, strict=True)])
    fn("lowerAscii", _ov("string_lower_ascii", s, [s], lambda x: _ascii(x, False), True))
    fn("upperAscii", _ov("string_upper_ascii", s, [s], lambda x: _ascii(x, True), True))
    fn("replace", _ov("string_replace_string_string", s, [s, s, s], _replace, True),
       _ov("string_replace_string_string_int", s, [s, s, s, i], _replace, True))
    fn("split", _ov("string_split_string", ls, [s, s], _split, True),
       _ov("string_split_string_int", ls, [s, s, i], _split, True))
    fn("substring", _ov("string_substring_int", s, [s, i], _substring, True),
       _ov("string_substring_int_int", s, [s, i, i], _substring, True))
    fn("trim", _ov("string_trim", s, [s], lambda x: x.strip(), True))
    fn("join", _ov("list_join", s, [ld], _join, True), _ov("list_join_string", s, [ld, s], _join, True))
    fn("reverse", _ov("string_reverse", s, [s], lambda x: x[::-1], True))
    fn("strings.quote", _ov("strings_quote", s, [s], _quote))
    fn("format", _ov("string_format", s, [s, ld], _format, True))
    fn("isSorted", _ov("list_is_sorted", b, [ld], _is_sorted, True))
    fn("sum", _ov("list_sum", T.DYN, [ld], _sum, True))
    fn("min", _ov("list_min", T.DYN, [ld], _min, True))
    fn("max", _ov("list_max", T.DYN, [ld], _max, True))
    fn("find", _ov("string_find_string", s, [s, s], _find, True))
    fn("findAll", _ov("string_find_all_string", ls, [s, s], _find_all, True),
       _ov("string_find_all_string_int", ls, [s, s, i], _find_all, True))
    fn("url", _ov("string_to_url", url, [s], _url))
    fn("isURL", _ov("is_url_string", b, [s], lambda x: _parse_url(x) is not None))
    for name in ("getScheme", "getHost", "getHostname", "getPort", "getEscapedPath"):
        part = name[3:].lower().replace("escapedpath", "path")
        fn(name, _ov(f"url_{name}", s, [url], _url_part(part), True))
    fn("getQuery", _ov("url_get_query", T.Map(T.STRING, ls), [url], _url_query, True))
    fn("ip", _ov("string_to_ip", ip, [s], _ip), _ov("cidr_ip", ip, [cidr], _cidr_ip, True))
    fn("isIP", _ov("is_ip", b, [s], lambda x: _parse_ip(x) is not None))
    fn("ip.isCanonical", _ov("ip_is_canonical", b, [s], _ip_is_canonical))
    fn("family", _ov("ip_family", i, [ip], _ip_attr("family"), True))
    for name in ("isUnspecified", "isLoopback", "isLinkLocalMulticast", "isLinkLocalUnicast", "isGlobalUnicast"):
        fn(name, _ov(f"ip_{name}", b, [ip], _ip_attr(name), True))
    fn("cidr", _ov("string_to_cidr", cidr, [s], _cidr))
    fn("isCIDR", _ov("is_cidr", b, [s], lambda x: _parse_cidr(x) is not None))
    fn("containsIP", _ov("cidr_contains_ip_string", b, [cidr, s], _contains_ip, True),
       _ov("cidr_contains_ip_ip", b, [cidr, ip], _contains_ip, True))
    fn("containsCIDR", _ov("cidr_contains_cidr_string", b, [cidr, s], _contains_cidr, True),
       _ov("cidr_contains_cidr", b, [cidr, cidr], _contains_cidr, True))
    fn("masked", _ov("cidr_masked", cidr, [cidr], _cidr_masked, True))
    fn("prefixLength", _ov("cidr_prefix_length", i, [cidr], _cidr_prefix, True))
    fn("quantity", _ov("string_to_quantity", qty, [s], _quantity))
    fn("isQuantity", _ov("is_quantity", b, [s], lambda x: parse_quantity(x) is not None))
    fn("sign", _ov("quantity_sign", i, [qty], _q_sign, True))
    fn("isInteger", _ov("quantity_is_integer", b, [qty], _q_is_integer, True))
    fn("asInteger", _ov("quantity_as_integer", i, [qty], _q_as_integer, True))
    fn("asApproximateFloat", _ov("quantity_as_float", d, [qty], lambda o: float(_amount(o)), True))
    fn("add", _ov("quantity_add", qty, [qty, qty], lambda a, c: opaque("Quantity", _canonical(_amount(a) + _amount(c))),
                  True),
       _ov("quantity_add_int", qty, [qty, i], lambda a, c: opaque("Quantity", _canonical(_amount(a) + c)), True))
    fn("sub", _ov("quantity_sub", qty, [qty, qty], lambda a, c: opaque("Quantity", _canonical(_amount(a) - _amount(c))),
                  True),
       _ov("quantity_sub_int", qty, [qty, i], lambda a, c: opaque("Quantity", _canonical(_amount(a) - c)), True))
    fn("isLessThan", _ov("quantity_less", b, [qty, qty], lambda a, c: _q_compare(a, c) < 0, True))
    fn("isGreaterThan", _ov("quantity_greater", b, [qty, qty], lambda a, c: _q_compare(a, c) > 0, True))
    fn("compareTo", _ov("quantity_compare", i, [qty, qty], _q_compare, True))
    fn("sets.contains", _ov("list_sets_contains_list", b, [ld, ld], _sets_contains))
    fn("sets.equivalent", _ov("list_sets_equivalent_list", b, [ld, ld], _sets_equivalent))
    fn("sets.intersects", _ov("list_sets_intersects_list", b, [ld, ld], _sets_intersects))
    return decls
