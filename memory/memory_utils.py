"""The functions existing BeeCatalog code calls (names from the original design)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from .content import GeneratedContent
from .identifiers import extract_product_identifier
from .models import DEFAULT_KIND
from .product_memory import ProductMemory
from .tiers import Snapshot

__all__ = [
    "extract_product_identifier",
    "check_product_in_memory",
    "save_generated_content_to_memory",
    "get_cached_content_or_generate",
    "batch_check_products_in_memory",
]


def check_product_in_memory(product_data: Any, kind: str = DEFAULT_KIND) -> bool:
    """True when a fresh (not expired, not stale) entry exists for the product."""
    return ProductMemory(kind).exists(product_data)


def save_generated_content_to_memory(
    product_data: dict,
    content: dict,
    *,
    tokens_prompt: int = 0,
    tokens_completion: int = 0,
    ttl: int | None = None,
    kind: str = DEFAULT_KIND,
    generator_version: str | None = None,
) -> Snapshot:
    """Store content generated from ``product_data`` in every tier (PostgreSQL first)."""
    return ProductMemory(kind).save_product_data(
        product_data,
        content,
        tokens_prompt=tokens_prompt,
        tokens_completion=tokens_completion,
        ttl=ttl,
        generator_version=generator_version,
    )


def get_cached_content_or_generate(
    product_data: dict,
    generate: Callable[[dict], GeneratedContent | dict],
    force_regenerate: bool = False,
    *,
    kind: str = DEFAULT_KIND,
) -> tuple[dict, bool]:
    """Return ``(content, from_cache)``: the stored content, or ``generate``'s, saved first."""
    memory = ProductMemory(kind)
    if not force_regenerate:
        hit = memory.get_product_data(product_data)
        if hit is not None:
            return hit.content, True
    generated = GeneratedContent.coerce(generate(product_data))
    memory.save_product_data(
        product_data,
        generated.content,
        tokens_prompt=generated.tokens_prompt,
        tokens_completion=generated.tokens_completion,
        generator_version=generated.generator_version,
    )
    return generated.content, False


def batch_check_products_in_memory(products: Iterable[Any], kind: str = DEFAULT_KIND) -> dict[str, bool]:
    """``{product_id: fresh entry exists}`` in a constant number of round trips."""
    return ProductMemory(kind).exists_many(products)
