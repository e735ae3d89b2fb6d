"""What the API asks of the memory beyond ``ProductMemory``'s own methods."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kombu.exceptions import OperationalError

from memory.engine.identifiers import extract_product_identifier
from memory.models import DEFAULT_KIND, ProductMemoryEntry
from memory.engine.memory import resolve_product

# What a generation needs beyond an identifier: the product's name, under any
# of the names the providers read it from.
TITLE_KEYS = ("title", "name", "nome", "titulo")


class UnknownProduct(Exception):
    """The product is not in the memory and the request does not say enough to generate it."""

    def __init__(self, product_id: str, message: str):
        super().__init__(message)
        self.product_id = product_id


class QueueUnavailable(Exception):
    """The broker did not take the task."""


@dataclass(frozen=True)
class Regeneration:
    task_id: str
    product_id: str


def has_enough_to_generate(product_data: dict) -> bool:
    return any(isinstance(product_data.get(k), str) and product_data[k].strip() for k in TITLE_KEYS)


def stored_source_data(product_id: str, kind: str = DEFAULT_KIND) -> dict | None:
    """The product data the stored entry was generated from, or None when there is no entry."""
    return (
        ProductMemoryEntry.objects.filter(product_id=product_id, kind=kind)
        .values_list("source_data", flat=True)
        .first()
    )


def enqueue_regeneration(product: Any) -> Regeneration:
    """Queue ``generate_main_content_task(..., force_regenerate=True)`` for a product.

    ``product`` is product data (a dict) or a product_id. The task gets the
    stored source data with what the request sent laid over it, so that
    ``{"sku": "ABC123"}`` regenerates a known product from everything it was
    made from. ``UnknownProduct`` when there is neither a stored entry with
    source data nor a title in the request; ``ValueError`` naming the field
    when the merged data names another product.
    """
    ref = resolve_product(product)
    sent = product if isinstance(product, dict) else {}
    stored = stored_source_data(ref.product_id)
    merged = {**(stored or {}), **sent}
    if not has_enough_to_generate(merged):
        if stored is None:
            message = f"Produto {ref.product_id} não está na memória; envie product_data com title para gerá-lo."
        else:
            message = f"Produto {ref.product_id}: os dados guardados não bastam para gerar conteúdo (falta title)."
        raise UnknownProduct(ref.product_id, message)
    merged_id = extract_product_identifier(merged)
    if merged_id != ref.product_id:
        raise ValueError(
            f"product_data: os dados guardados identificam o produto {merged_id}, não {ref.product_id}"
        )

    from memory.tasks import generate_main_content_task  # Celery app and providers load on first use

    try:
        result = generate_main_content_task.delay(merged, force_regenerate=True)
    except OperationalError as exc:
        raise QueueUnavailable(f"A fila de tarefas não respondeu: {exc}") from None
    return Regeneration(task_id=result.id, product_id=ref.product_id)
