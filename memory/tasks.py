"""Celery tasks the original design calls; each parses its input and calls one service."""
from __future__ import annotations

from celery import shared_task

from memory.services.entries import GENERATE_TASK
from memory.services.generation import generate_batch, generate_product


@shared_task(name=GENERATE_TASK)
def generate_main_content_task(product_data, force_regenerate=False, override_approval=False, fields=None):
    """Content for one product, from memory when fresh; returns a JSON summary with the content.
    Approved content is not regenerated (status ``locked``) unless ``override_approval``: the
    caller checked that whoever asked holds the permission to override an approval. ``fields``
    (forced only): regenerate those content fields alone, keeping the others."""
    return generate_product(product_data, force_regenerate=bool(force_regenerate),
                            override_approval=bool(override_approval), fields=fields).summary(with_content=True)


@shared_task(name="memory.batch_generate_main_content_task")
def batch_generate_main_content_task(products_list, batch_size=10, force_regenerate=False, override_approval=False):
    """Content for many products: one batch check, generation of the misses only; the JSON summary
    counts what was reused, generated, failed, not attempted (the provider took no more calls) and
    locked (approved, not regenerated)."""
    if not isinstance(products_list, list):
        raise ValueError("products_list: deve ser uma lista de produtos")
    return generate_batch(products_list, batch_size=batch_size, force_regenerate=bool(force_regenerate),
                          override_approval=bool(override_approval)).summary()
