"""Write operations on a selection of entries (the admin's actions and imports).

Each one changes PostgreSQL and then drops the copies that Redis and L1 hold,
so that no tier keeps serving what PostgreSQL no longer has. The eviction runs
when the surrounding transaction commits: evicting earlier would let a
concurrent reader copy the old row back into Redis before the change is visible.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable

from django.db import transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from memory.engine.identifiers import extract_product_identifier
from memory.models import DEFAULT_KIND, ProductMemoryEntry
from memory.engine.memory import ProductMemory, validate_ttl
from memory.engine.tiers import Key
from memory.infra import redis

logger = logging.getLogger("memory")

CHUNK = 1000


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def evict_on_commit(keys: Iterable[Key]) -> None:
    """Drop the Redis and L1 copies of these (product_id, kind) keys once the transaction commits."""
    by_kind: dict[str, list[Key]] = {}
    for product_id, kind in keys:
        by_kind.setdefault(kind, []).append((product_id, kind))
    if not by_kind:
        return

    def evict():
        for kind, kind_keys in by_kind.items():
            memory = ProductMemory(kind)
            for chunk in _chunks(kind_keys):
                memory.evict(chunk)

    transaction.on_commit(evict)


def _selected(queryset: QuerySet) -> list[tuple[int, str, str]]:
    return list(queryset.order_by().values_list("pk", "product_id", "kind"))


def delete_entries(queryset: QuerySet) -> int:
    """Delete the selected entries from every tier; returns how many PostgreSQL rows went."""
    rows = _selected(queryset)
    deleted = 0
    with transaction.atomic():
        for chunk in _chunks(rows):
            count, _ = ProductMemoryEntry.objects.filter(pk__in=[pk for pk, _, _ in chunk]).delete()
            deleted += count
        evict_on_commit((product_id, kind) for _, product_id, kind in rows)
    if deleted:
        logger.info("%d entradas removidas da memória (PostgreSQL, Redis e L1)", deleted)
    return deleted


def extend_expiry(queryset: QuerySet, seconds: int | None = None) -> int:
    """Push ``expires_at`` ``seconds`` (default ``MEMORY_DEFAULT_TTL``) past the later of now and
    the current expiry, so an expired entry comes back for a full period; returns rows changed."""
    ttl = validate_ttl(seconds)
    rows = _selected(queryset)
    now = timezone.now()
    changed = 0
    with transaction.atomic():
        for chunk in _chunks(rows):
            changed += ProductMemoryEntry.objects.filter(pk__in=[pk for pk, _, _ in chunk]).update(
                expires_at=Greatest(F("expires_at"), now) + timedelta(seconds=ttl)
            )
        evict_on_commit((product_id, kind) for _, product_id, kind in rows)
    logger.info("Validade de %d entradas estendida em %d s", changed, ttl)
    return changed


@dataclass(frozen=True)
class RegenerationResult:
    queued: int
    without_source_data: int
    other_kind: int
    not_queued: int = 0  # the broker could not be reached


def _broker_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError as KombuOperationalError

    return (KombuOperationalError, *redis.REDIS_ERRORS)


def _identifies_a_product(source_data) -> bool:
    if not isinstance(source_data, dict) or not source_data:
        return False
    try:
        extract_product_identifier(source_data)
    except ValueError:
        return False
    return True


def enqueue_regeneration(queryset: QuerySet) -> RegenerationResult:
    """Queue a forced regeneration for each selected main-content entry that kept its product data.

    Only ``main_content`` entries have a generation task, and only the stored
    source data can be sent to it: entries lacking either (or whose source
    data names no product) are counted, not queued. When the broker cannot be reached, nothing more is tried and the
    rest is counted as ``not_queued``.
    """
    from memory.tasks import generate_main_content_task  # the task module imports the providers

    queued = without_source = other_kind = not_queued = 0
    broker_down = False
    rows = queryset.order_by().values_list("kind", "source_data")
    for kind, source_data in rows.iterator(chunk_size=CHUNK):
        if kind != DEFAULT_KIND:
            other_kind += 1
        elif not _identifies_a_product(source_data):
            without_source += 1
        elif broker_down:
            not_queued += 1
        else:
            try:
                generate_main_content_task.delay(source_data, force_regenerate=True)
                queued += 1
            except _broker_errors() as exc:
                logger.warning("Fila de tarefas indisponível (%s); regeneração não enviada", exc.__class__.__name__)
                broker_down = True
                not_queued += 1
    if queued:
        logger.info("%d produtos enviados para regeneração forçada", queued)
    return RegenerationResult(queued, without_source, other_kind, not_queued)
