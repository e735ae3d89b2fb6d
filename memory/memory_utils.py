"""The functions existing BeeCatalog code calls (names from the original design)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from memory.providers.content import GeneratedContent
from memory.services.generation import LOCKED, UNFINISHED, generate_product
from memory.engine.versions import ApprovedContent
from memory.engine.identifiers import extract_product_identifier
from memory.models import DEFAULT_KIND
from memory.engine.memory import ProductMemory
from memory.providers.prompts import current_generator_version
from memory.providers import ContentProvider
from memory.engine.tiers import Snapshot

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
    tokens_cached: int = 0,
    tokens_reasoning: int = 0,
    ttl: int | None = None,
    kind: str = DEFAULT_KIND,
    generator_version: str | None = None,
    override_approval: bool = False,
) -> Snapshot:
    """Store content generated from ``product_data`` in every tier (PostgreSQL first), as the
    entry's new version; ``ApprovedContent`` when the entry is approved, unless ``override_approval``.

    ``tokens_cached`` and ``tokens_reasoning`` are the parts of the prompt and completion counts
    the provider reports as cached prompt and reasoning tokens."""
    return ProductMemory(kind).save_product_data(
        product_data,
        content,
        tokens_prompt=tokens_prompt,
        tokens_completion=tokens_completion,
        tokens_cached=tokens_cached,
        tokens_reasoning=tokens_reasoning,
        ttl=ttl,
        generator_version=generator_version,
        override_approval=override_approval,
    )


class _CallerProvider(ContentProvider):
    """A caller's ``generate(product_data)`` seen as a provider, so that this function shares
    the tasks' single flight; it keeps what the caller raised, to raise it unchanged."""

    name = "caller"
    # The caller's function writes one product's content from that product's data, in its own shape.
    serves_families = False

    def __init__(self, generate: Callable[[dict], GeneratedContent | dict]):
        self._generate = generate
        self.error: BaseException | None = None

    @property
    def generator_version(self) -> str:
        return current_generator_version()

    def generate(self, product_data: dict) -> GeneratedContent:
        try:
            return GeneratedContent.coerce(self._generate(product_data))
        except Exception as exc:
            self.error = exc
            raise


def get_cached_content_or_generate(
    product_data: dict,
    generate: Callable[[dict], GeneratedContent | dict],
    force_regenerate: bool = False,
    *,
    kind: str = DEFAULT_KIND,
    override_approval: bool = False,
) -> tuple[dict, bool]:
    """Return ``(content, from_cache)``: the stored content, or ``generate``'s, saved first.

    Concurrent callers for one uncached product run ``generate`` once (single flight). Approved
    content is returned as it is; ``force_regenerate`` on it raises ``ApprovedContent`` (nothing
    generated) unless ``override_approval``.
    """
    provider = _CallerProvider(generate)
    outcome = generate_product(product_data, force_regenerate, provider=provider, kind=kind,
                               override_approval=override_approval)
    if outcome.status in UNFINISHED:
        raise provider.error
    if outcome.status == LOCKED:
        raise ApprovedContent(outcome.product_id, kind)
    return outcome.content, outcome.from_cache


def batch_check_products_in_memory(products: Iterable[Any], kind: str = DEFAULT_KIND) -> dict[str, bool]:
    """``{product_id: fresh entry exists}`` in a constant number of round trips."""
    return ProductMemory(kind).exists_many(products)
