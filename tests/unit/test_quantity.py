"""Resource quantities: parsed exactly, written back canonically, and bounded whatever the text."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kubesat.apimachinery.quantity import format_quantity, parse_quantity


@pytest.mark.parametrize(("text", "amount"), [
    ("100m", Decimal("0.1")), ("1Gi", Decimal(2**30)), ("1e3", Decimal(1000)), ("0e99999999", Decimal(0)),
    ("1.5", Decimal("1.5")), ("+5Ki", Decimal(5 * 1024)), ("x", None), ("1.2.3", None),
])
def test_quantities_parse_exactly(text: str, amount: Decimal | None) -> None:
    assert parse_quantity(text) == amount


@pytest.mark.parametrize("text", ["1e999999999", "1e-999999999", "9" * 5000, "1E41"])
def test_an_amount_beyond_any_countable_range_is_not_a_number_to_work_with(text: str) -> None:
    assert parse_quantity(text) is None  # not an Overflow, nor an integer of a billion digits later


def test_amounts_are_written_back_canonically() -> None:
    assert format_quantity(Decimal("0.5")) == "500m"
    assert format_quantity(Decimal(2**30), binary=True) == "1Gi"
    assert format_quantity(Decimal(3)) == "3"
