"""Go's printing of decoded JSON values (`%v`, `%#v`, strconv's shortest `g`) for texts worded as Kubernetes'."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from kubesat.errors import GoValue


def go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), which is also Go's `%v` and `%#v` of a float64: the shortest digits,
    in exponent form when the exponent is below -4 or at least 6 (`1e+06`, `1.5`, `1e-05`)."""
    if f != f:
        return "NaN"
    if f in (math.inf, -math.inf):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    tup = Decimal(repr(abs(f))).normalize().as_tuple()
    digits = "".join(str(d) for d in tup.digits)
    exp = len(digits) + int(tup.exponent) - 1
    if exp < -4 or exp >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp >= len(digits) - 1:
        return sign + digits + "0" * (exp - len(digits) + 1)
    if exp >= 0:
        return sign + digits[:exp + 1] + "." + digits[exp + 1:]
    return sign + "0." + "0" * (-exp - 1) + digits


def go_v(value: Any) -> str:
    """Go's `%v` of a decoded JSON value (maps print with sorted keys)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_v(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_v(v) for v in value) + "]"
    return str(value)


def go_quote(s: str) -> str:
    """Go's `%q` of a string (printable runes kept, the rest escaped)."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x80 else f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_sharp_v(value: Any, in_interface: bool = True) -> str:
    """Go's `%#v` of a decoded JSON value held in an interface{} (`map[string]interface {}{"a":1}`)."""
    if value is None:
        return "interface {}(nil)" if in_interface else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{go_quote(k)}:{go_sharp_v(value[k])}" for k in sorted(value))
        return "map[string]interface {}{" + inner + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_sharp_v(v) for v in value) + "}"
    return str(value)


def field_value(value: Any) -> Any:
    """What to hand a FieldError so that it prints the value as field.Error does (`%v` scalars, `%#v` the rest)."""
    if isinstance(value, float):
        return GoValue(go_float(value))
    if isinstance(value, (dict, list)):
        return GoValue(go_sharp_v(value, in_interface=False))
    return value


def go_json(value: Any) -> str:
    """encoding/json's Marshal of a decoded JSON value (map keys sorted, floats as Go writes them)."""
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{go_json(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _json_float(f: float) -> str:
    if not math.isfinite(f):
        return "null"
    a = abs(f)
    if a == 0 or 1e-6 <= a < 1e21:
        text = format(Decimal(repr(f)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    mant, _, exp = repr(f).partition("e")
    return f"{mant}e{exp[0]}{exp[1:].lstrip('0') or '0'}"
