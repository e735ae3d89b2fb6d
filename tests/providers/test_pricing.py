"""Token prices: a table of cases, and no default price for a model the table does not name."""
from decimal import Decimal

import pytest

from memory.providers.pricing import Prices, estimate_cost, estimate_saved_cost, price_per_million

PRICES = {"m": (0.15, 0.075, 0.60)}


@pytest.mark.parametrize(
    "prompt, completion, cached, expected",
    [
        (1_000_000, 0, 0, Decimal("0.1500")),
        (0, 1_000_000, 0, Decimal("0.6000")),
        (1_000_000, 1_000_000, 1_000_000, Decimal("0.6750")),  # every prompt token from the cache
        (1_000_000, 0, 400_000, Decimal("0.1200")),  # 600k at 0.15 + 400k at 0.075
        (1_000, 0, 5_000, Decimal("0.0001")),  # cached never above the prompt
        (0, 0, 0, Decimal("0.0000")),
    ],
)
def test_cost_prices_cached_prompt_tokens_apart(prompt, completion, cached, expected):
    assert estimate_cost(prompt, completion, "m", PRICES, tokens_cached=cached) == expected


def test_a_model_without_prices_has_no_cost_not_a_default_one():
    assert price_per_million("outro", PRICES) is None
    assert estimate_cost(1000, 1000, "outro", PRICES) is None
    assert estimate_saved_cost(1000, 0.5, "outro", PRICES) is None


def test_prices_are_read_as_decimals():
    assert price_per_million("m", PRICES) == Prices(Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))


def test_saved_cost_splits_by_the_prompt_share():
    assert estimate_saved_cost(2_000_000, 0.5, "m", PRICES) == Decimal("0.7500")


@pytest.mark.parametrize("factor, expected", [(1, Decimal("0.7500")), (0.5, Decimal("0.3750")), (0, Decimal("0.0000"))])
def test_the_batch_discount_scales_the_money_not_the_tokens(factor, expected):
    # 1M prompt tokens at 0.15 and 1M completion tokens at 0.60: 0.75 at the direct price
    assert estimate_cost(1_000_000, 1_000_000, "m", PRICES, tokens_cached=0, factor=factor) == expected
    assert estimate_cost(1, 1, "outro", PRICES, factor=factor) is None


def test_saved_cost_prices_the_cached_share_at_the_cached_price():
    # 2M saved: 1M prompt (400k of it cached) and 1M completion
    assert estimate_saved_cost(2_000_000, 0.5, "m", PRICES, cached_share=0.2) == Decimal("0.7200")
    assert estimate_saved_cost(2_000_000, 0.5, "m", PRICES, cached_share=0.9) == Decimal("0.6750")  # at most the prompt
