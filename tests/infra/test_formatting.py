"""The human number formats: pt-BR by default, the separators of another language on request."""
from decimal import Decimal

import pytest

from memory.infra.formatting import (
    Separators, decimal, integer, milliseconds, money, percent, seconds, size,
)

EN = Separators(decimal=".", thousands=",")


@pytest.mark.parametrize("function, value, expected", [
    (integer, 0, "0"),
    (integer, 1234567, "1.234.567"),
    (integer, None, "—"),
    (decimal, 1234.56, "1.234,6"),
    (decimal, 0.5, "0,5"),
    (percent, 0.425, "42,5%"),
    (percent, 1, "100,0%"),
    (percent, 0, "0,0%"),
    (size, 0, "0 B"),
    (size, 512, "512 B"),
    (size, 999, "999 B"),
    (size, 1000, "1,0 KB"),
    (size, 1016 * 1024, "1,0 MB"),  # not "1016.0 KB"
    (size, 5 * 1024 ** 3 + 1024 ** 3 // 2, "5,5 GB"),
    (size, None, "—"),
    (money, 0.0235, "US$ 0,0235"),
    (money, 0.0008, "US$ 0,0008"),
    (money, Decimal("0.00004"), "US$ 0,0000"),
    (money, 1234.5, "US$ 1.234,50"),
    (money, 0, "US$ 0,0000"),
    (money, None, "—"),
    (milliseconds, 9.2, "9,2 ms"),
    (milliseconds, 1234, "1.234,0 ms"),
    (seconds, 1.254, "1,25 s"),
])
def test_pt_br_formats(function, value, expected):
    assert function(value) == expected


def test_decimal_places():
    assert decimal(0.02345, 4) == "0,0234"  # half to even, as Decimal rounds
    assert decimal(2, 2) == "2,00"


def test_another_languages_separators():
    assert integer(1234567, sep=EN) == "1,234,567"
    assert percent(0.75, sep=EN) == "75.0%"
    assert money(1234.5, sep=EN) == "US$ 1,234.50"
    assert size(1016 * 1024, sep=EN) == "1.0 MB"
