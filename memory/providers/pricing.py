"""Token prices and cost estimates: pure functions over the prices in settings."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def price_per_million(model: str, prices: dict, default: tuple) -> tuple[Decimal, Decimal]:
    """(prompt, completion) USD per 1M tokens for a model, or the default."""
    prompt, completion = prices.get(model, default)
    return Decimal(str(prompt)), Decimal(str(completion))


def estimate_cost(tokens_prompt: int, tokens_completion: int, model: str, prices: dict, default: tuple) -> Decimal:
    """USD cost of a generation, rounded to the cent's hundredth."""
    prompt, completion = price_per_million(model, prices, default)
    cost = (Decimal(tokens_prompt) * prompt + Decimal(tokens_completion) * completion) / Decimal(1_000_000)
    return cost.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def estimate_saved_cost(tokens_saved: int, prompt_share: float, model: str, prices: dict, default: tuple) -> Decimal:
    """USD value of ``tokens_saved``, split into prompt and completion by ``prompt_share``.

    Hits are counted as a token total; the split is the one observed over the
    stored entries, so the estimate follows what generations really cost.
    """
    prompt_tokens = round(tokens_saved * prompt_share)
    return estimate_cost(prompt_tokens, tokens_saved - prompt_tokens, model, prices, default)
