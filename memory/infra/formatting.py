"""How a number reads to a person: counts, decimals, percentages, sizes, money and durations.

The one home of these rules, for the commands (always pt-BR: decimal comma, ``.`` between
thousands) and the stats dashboard (the separators of the page's language, pt-BR by
default). Machine output (``--json``, the API, metrics) keeps plain numbers and never comes
here. The project's costs are in US dollars; money reads as ``US$ 0,0235`` (four decimals under
a dollar, where the savings of a catalog run usually are) or ``US$ 1.234,50``. Pure: no Django.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

EMPTY = "—"


@dataclass(frozen=True)
class Separators:
    decimal: str
    thousands: str


PT_BR = Separators(decimal=",", thousands=".")

_SIZE_UNITS = ("B", "KB", "MB", "GB", "TB")


def decimal(value, places: int = 1, *, sep: Separators = PT_BR) -> str:
    """``value`` rounded to ``places`` decimals, thousands grouped: ``1.234,5``; ``—`` for None."""
    if value is None:
        return EMPTY
    text = f"{Decimal(str(value)):,.{places}f}"
    return text.replace(",", "\0").replace(".", sep.decimal).replace("\0", sep.thousands)


def integer(value, *, sep: Separators = PT_BR) -> str:
    """A count: ``1.234.567``; ``—`` for None."""
    return decimal(value, 0, sep=sep)


def percent(ratio, places: int = 1, *, sep: Separators = PT_BR) -> str:
    """A ratio of 0..1 as a percentage: ``0.425`` → ``42,5%``; ``—`` for None."""
    if ratio is None:
        return EMPTY
    return f"{decimal(float(ratio) * 100, places, sep=sep)}%"


def size(nbytes, *, sep: Separators = PT_BR) -> str:
    """Bytes in the largest unit (of 1024) that keeps the figure under 1000: ``1.040.384`` →
    ``1,0 MB``, ``512`` → ``512 B``; ``—`` for None."""
    if nbytes is None:
        return EMPTY
    value = float(nbytes)
    unit = 0
    while abs(value) >= 1000 and unit < len(_SIZE_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{integer(int(value), sep=sep)} B"
    return f"{decimal(value, 1, sep=sep)} {_SIZE_UNITS[unit]}"


def money(usd, *, sep: Separators = PT_BR) -> str:
    """US dollars: ``US$ 0,0235`` under a dollar, ``US$ 1.234,50`` from one up; ``—`` for None."""
    if usd is None:
        return EMPTY
    amount = Decimal(str(usd))
    return f"US$ {decimal(amount, 4 if abs(amount) < 1 else 2, sep=sep)}"


# A cost the prices cannot give: the model has none in LLM_PRICES (no default price is assumed).
UNKNOWN_COST = "desconhecido (modelo sem preço em LLM_PRICES)"


def cost(usd, *, sep: Separators = PT_BR) -> str:
    """An estimated cost as :func:`money`; :data:`UNKNOWN_COST` for None (a model without prices)."""
    return UNKNOWN_COST if usd is None else money(usd, sep=sep)


def milliseconds(ms, *, sep: Separators = PT_BR) -> str:
    """A short duration: ``9,2 ms``; ``—`` for None."""
    if ms is None:
        return EMPTY
    return f"{decimal(float(ms), 1, sep=sep)} ms"


def seconds(value, *, sep: Separators = PT_BR) -> str:
    """A longer duration: ``1,25 s``; ``—`` for None."""
    if value is None:
        return EMPTY
    return f"{decimal(float(value), 2, sep=sep)} s"
