"""Token prices and cost estimates: pure functions over the prices in settings.

A model's prices are USD per 1M tokens: prompt, cached prompt (prompt tokens the
provider served from its cache) and completion. A model the table does not name
has no cost: every estimate for it is ``None`` (shown as unknown), never a
default price.

The cost of a generation (an entry's, :func:`estimate_cost`) is

    (prompt - cached) × prompt price + cached × cached-prompt price + completion × completion price

Cached tokens are part of the prompt tokens; reasoning tokens are part of the completion tokens
(OpenAI's ``usage.completion_tokens`` includes ``completion_tokens_details.reasoning_tokens``) and
billed at the completion price, so they appear in no term of their own: adding them would count
them twice.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple


class Prices(NamedTuple):
    prompt: Decimal
    cached_prompt: Decimal
    completion: Decimal


def price_per_million(model: str, prices: dict) -> Prices | None:
    """The model's (prompt, cached prompt, completion) prices from a table like
    ``settings.LLM_PRICES``, or None when the table does not have them."""
    values = prices.get(model)
    if values is None:
        return None
    return Prices(*(Decimal(str(v)) for v in values))


def estimate_cost(tokens_prompt: int, tokens_completion: int, model: str, prices: dict, *,
                  tokens_cached: int = 0, factor: float | Decimal = 1) -> Decimal | None:
    """USD cost of a generation, rounded to the cent's hundredth; None for a model without prices.

    ``tokens_cached`` are the part of ``tokens_prompt`` billed at the cached-prompt price.
    ``factor`` scales every price: a Batch API run is billed at ``LLM_BATCH_DISCOUNT`` (0.5) of
    them. The tokens stay what they are; only the money changes.
    """
    price = price_per_million(model, prices)
    if price is None:
        return None
    cached = min(max(tokens_cached, 0), tokens_prompt)
    cost = (Decimal(tokens_prompt - cached) * price.prompt + Decimal(cached) * price.cached_prompt
            + Decimal(tokens_completion) * price.completion) * Decimal(str(factor)) / Decimal(1_000_000)
    return cost.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def estimate_saved_cost(tokens_saved: int, prompt_share: float, model: str, prices: dict, *,
                        cached_share: float = 0.0) -> Decimal | None:
    """USD value of ``tokens_saved``, split into prompt and completion by ``prompt_share`` and,
    of the prompt, into cached by ``cached_share`` (both shares of the whole); None for a model
    without prices.

    Hits are counted as a token total; the split is the one observed over the
    stored entries, so the estimate follows what generations really cost.
    """
    prompt_tokens = round(tokens_saved * prompt_share)
    cached_tokens = min(round(tokens_saved * cached_share), prompt_tokens)
    return estimate_cost(prompt_tokens, tokens_saved - prompt_tokens, model, prices, tokens_cached=cached_tokens)
