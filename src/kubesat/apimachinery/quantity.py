"""resource.Quantity: the text form Kubernetes writes amounts in (`100m`, `128Mi`, `1e3`), parsed to exact
decimals, and amounts written back the way kubectl and error messages show them."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIX = {
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}
_QTY_RE = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")
_BINARY = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki")
# Amounts are kept between 10^-MAX_EXPONENT and 10^MAX_EXPONENT, so that no text (`1e999999999`) makes the
# arithmetic on it overflow, or a whole number of a billion digits.
MAX_EXPONENT = 40


def parse_quantity(v: Any) -> Decimal | None:
    """The amount a quantity stands for, or None when it is not one (or is out of any countable range)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return Decimal(str(v))
    if not isinstance(v, str):
        return None
    m = _QTY_RE.match(v.strip())
    if not m:
        return None
    try:
        num = Decimal(m.group(1))
    except InvalidOperation:
        return None
    suf = m.group(2)
    exponent = int(suf[1:]) if suf and suf[0] in "eE" else 0
    if not num:
        return Decimal(0)
    if not -MAX_EXPONENT <= num.adjusted() + exponent <= MAX_EXPONENT:
        return None  # far past any amount Kubernetes counts with (an int64 of milli-units): no arithmetic on it
    return num.scaleb(exponent) if exponent else num * _SUFFIX[suf]


def format_quantity(amount: Decimal, binary: bool = False) -> str:
    """An amount in canonical form: whole numbers plainly (or in the largest binary unit that divides them,
    for byte amounts), fractions in milli units (`500m`)."""
    if amount == amount.to_integral_value():
        whole = int(amount)
        if binary and whole:
            for suffix in _BINARY:
                unit = int(_SUFFIX[suffix])
                if whole % unit == 0:
                    return f"{whole // unit}{suffix}"
        return str(whole)
    milli = (amount * 1000).to_integral_value(rounding="ROUND_CEILING")
    return f"{int(milli)}m"
