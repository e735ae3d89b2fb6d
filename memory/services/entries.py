"""Write operations on a selection of entries (the admin's actions and imports), and the one
regeneration rule (the admin's action and the API's force-regenerate).

Each one changes PostgreSQL and then drops the copies that Redis and L1 hold,
so that no tier keeps serving what PostgreSQL no longer has. The eviction runs
when the surrounding transaction commits: evicting earlier would let a
concurrent reader copy the old row back into Redis before the change is visible.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable

from celery import current_app
from celery.result import EagerResult
from django.db import transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from memory.engine.identifiers import extract_product_identifier
from memory.engine.memory import ProductMemory, resolve_product, validate_ttl
from memory.engine.tiers import Key
from memory.engine.versions import ApprovedContent
from memory.infra import redis
from memory.models import DEFAULT_KIND, ProductMemoryEntry
from memory.providers.content import check_fields
from memory.providers.template import FIELD_ALIASES
from memory.services.generation import (
    LOCKED, PROVIDER_UNAVAILABLE, UNFINISHED, InvalidProductData, validate_product_data,
)

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


# -- regeneration ----------------------------------------------------------------------------
#
# The one regeneration rule, for the admin's action and for POST /api/memory/force-regenerate/:
# a product is regenerated from the source data stored with its entry, with what the request sent
# laid over it, and only when that data identifies the same product, names it (a title, under
# any of the names the providers read) and is data a generation accepts (validate_product_data).
# An identifier alone would give the writer nothing to write about; only main content has a
# generation task. Data is checked before the task is queued, so a refusal is the caller's
# answer in both modes and nothing is queued for it.
#
# An approved entry is not regenerated (ApprovedContent, nothing queued) unless the caller
# overrides the approval; the caller checks that whoever asked may (the override permission).
# The task refuses too (status "locked") when the approval came after the check.
#
# With a broker the task is queued and the caller only learns that. Without one (eager mode,
# CELERY_TASK_ALWAYS_EAGER) it has already run when apply_async returns: its result, saved or
# failed, is the caller's answer.

TITLE_KEYS = FIELD_ALIASES["title"]
GENERATE_TASK = "memory.generate_main_content_task"  # the name memory.tasks registers it under


class CannotRegenerate(Exception):
    """The data at hand would not make this product's content."""

    def __init__(self, product_id: str, message: str):
        super().__init__(message)
        self.product_id = product_id


class QueueUnavailable(Exception):
    """The broker or the result store did not take the task; nothing was queued."""


class GenerationFailed(Exception):
    """Eager mode: the generation ran in this process and the provider failed; nothing was saved.

    ``unavailable``: the provider could not answer now (out of quota, rate limited, timed out,
    down), so trying later may work; otherwise it answered with nothing usable. ``reason`` is the
    provider's message, the exception's own a sentence for the person who asked.
    """

    def __init__(self, product_id: str, reason: str, *, unavailable: bool):
        if unavailable:
            message = (f"Produto {product_id} não foi regenerado: o provedor de conteúdo está indisponível "
                       f"({reason}). Nada foi salvo; tente novamente mais tarde.")
        else:
            message = f"Produto {product_id} não foi regenerado: o provedor de conteúdo falhou ({reason}). Nada foi salvo."
        super().__init__(message)
        self.product_id = product_id
        self.reason = reason
        self.unavailable = unavailable


# What publishing raises when the queue cannot be reached: the broker's connection errors (kombu
# wraps the transport's), Redis's own, and the RuntimeError the Redis result store raises, with
# its connection error as the cause, once it gives up reconnecting.
QUEUE_ERRORS: tuple[type[BaseException], ...] = (KombuOperationalError, *redis.REDIS_ERRORS)


def _means_queue_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, QUEUE_ERRORS):
        return True
    return isinstance(exc, RuntimeError) and isinstance(exc.__cause__ or exc.__context__, QUEUE_ERRORS)


def _queue_generation(data: dict, override_approval: bool = False, fields: tuple[str, ...] | None = None):
    """``generate_main_content_task.apply_async((data,), {"force_regenerate": True})``, published
    at most once; ``QueueUnavailable`` when the queue cannot be reached. ``override_approval``
    and ``fields`` go in the kwargs only when set, so a worker still on the task without them
    runs the rest.

    The task is found by its registered name: services sit below the task module, which imports
    them. ``retry=False``: a publish retried after a lost reply could queue the task twice, and
    the caller would wait through the retries; the result store's own retries are bounded by
    ``CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS``.
    """
    task = current_app.tasks[GENERATE_TASK]
    kwargs = {"force_regenerate": True, **({"override_approval": True} if override_approval else {}),
              **({"fields": list(fields)} if fields else {})}
    try:
        return task.apply_async((data,), kwargs, retry=False)
    except Exception as exc:
        if _means_queue_unavailable(exc):
            raise QueueUnavailable(f"A fila de tarefas não respondeu: {_reason(exc)}") from exc
        raise


def _connection_error(exc: BaseException) -> BaseException:
    """The connection error itself, not the result store's RuntimeError (and its restart advice)."""
    if isinstance(exc, RuntimeError):
        return exc.__cause__ or exc.__context__ or exc
    return exc


def _reason(exc: BaseException) -> str:
    """Why the queue did not answer, in one line."""
    error = _connection_error(exc)
    return " ".join(str(error).split()) or error.__class__.__name__


def names_the_product(data: dict) -> bool:
    return any(isinstance(data.get(k), str) and data[k].strip() for k in TITLE_KEYS)


def regeneration_data(product_id: str, stored: dict | None, sent: dict | None = None) -> dict:
    """What a forced regeneration of ``product_id`` sends to the task: ``stored`` (the entry's
    source data; None when there is no entry) with ``sent`` laid over it.

    ``CannotRegenerate`` when the data names no product (no title); ``ValueError`` naming
    ``product_data`` when it identifies another product than ``product_id``;
    ``InvalidProductData`` (a ``ValueError`` naming ``product_data`` and the field) when a
    generation would refuse it.
    """
    merged = {**(stored if isinstance(stored, dict) else {}), **(sent or {})}
    if not names_the_product(merged):
        if stored is None:
            message = f"Produto {product_id} não está na memória; envie product_data com title para gerá-lo."
        else:
            message = f"Produto {product_id}: os dados guardados não bastam para gerar conteúdo (falta title)."
        raise CannotRegenerate(product_id, message)
    merged_id = extract_product_identifier(merged)
    if merged_id != product_id:
        raise ValueError(f"product_data: os dados guardados identificam o produto {merged_id}, não {product_id}")
    return validate_product_data(merged)


def stored_source_data(product_id: str, kind: str = DEFAULT_KIND) -> dict | None:
    """The product data the stored entry was generated from, or None when there is no entry."""
    return _stored(product_id, kind)[0]


def _stored(product_id: str, kind: str = DEFAULT_KIND) -> tuple[dict | None, bool]:
    """The stored entry's source data (None: no entry) and whether it is approved."""
    found = (
        ProductMemoryEntry.objects.filter(product_id=product_id, kind=kind)
        .values_list("source_data", "approved")
        .first()
    )
    return found if found is not None else (None, False)


QUEUED = "queued"  # a worker will run it
CREATED = "created"  # eager mode: generated and saved, where there was no entry
REPLACED = "replaced"  # eager mode: generated and saved over the entry there was


@dataclass(frozen=True)
class Regeneration:
    task_id: str
    product_id: str
    outcome: str = QUEUED
    tokens_spent: int = 0
    content: dict | None = None  # what was saved (eager mode)


def _regenerate(product_id: str, data: dict, *, existed: bool, override_approval: bool = False,
                fields: tuple[str, ...] | None = None) -> Regeneration:
    """Hand ``data`` to the generation task; in eager mode, its outcome.

    ``QueueUnavailable`` as :func:`_queue_generation`; in eager mode ``GenerationFailed`` when the
    provider failed, ``ApprovedContent`` when the entry was approved meanwhile, and whatever else
    the task raised.
    """
    result = _queue_generation(data, override_approval, fields)
    if not isinstance(result, EagerResult):
        return Regeneration(task_id=result.id, product_id=product_id)
    summary = result.get(propagate=True)  # the task's own exception when it raised
    if summary["status"] == LOCKED:
        raise ApprovedContent(product_id, DEFAULT_KIND)
    if summary["status"] in UNFINISHED:  # failed, or not attempted (the provider took no call)
        raise GenerationFailed(product_id, summary.get("error") or "",
                               unavailable=summary.get("failure") == PROVIDER_UNAVAILABLE)
    return Regeneration(task_id=result.id, product_id=product_id, outcome=REPLACED if existed else CREATED,
                        tokens_spent=summary["tokens_spent"], content=summary["content"])


def enqueue_product_regeneration(product: Any, *, override_approval: bool = False,
                                 fields: Any = None) -> Regeneration:
    """Run ``generate_main_content_task(..., force_regenerate=True)`` for one product: queued
    with a broker (``outcome`` ``QUEUED``), run here in eager mode (``CREATED`` or ``REPLACED``).

    ``product`` is product data (a dict) or a product_id; the task gets
    :func:`regeneration_data`, so that ``{"sku": "ABC123"}`` regenerates a known product from
    everything it was made from. Raises what :func:`regeneration_data` raises, and
    ``ApprovedContent`` for an approved entry unless ``override_approval``, before anything is
    queued; ``QueueUnavailable`` when the broker or the result store does not take the task;
    in eager mode ``GenerationFailed`` when the provider failed (nothing saved). ``fields``:
    regenerate those content fields alone (``ValueError`` naming an unknown one;
    ``CannotRegenerate`` when the product has no entry to keep the other fields of).
    """
    fields = check_fields(fields)
    ref = resolve_product(product)
    stored, approved = _stored(ref.product_id)
    if approved and not override_approval:
        raise ApprovedContent(ref.product_id, DEFAULT_KIND)
    if fields is not None and stored is None:
        raise CannotRegenerate(ref.product_id, f"Produto {ref.product_id} não está na memória; gere o conteúdo "
                                               "inteiro antes de regenerar campos.")
    data = regeneration_data(ref.product_id, stored, product if isinstance(product, dict) else None)
    return _regenerate(ref.product_id, data, existed=stored is not None, override_approval=override_approval,
                       fields=fields)


@dataclass(frozen=True)
class RegenerationResult:
    queued: int
    lacking_data: int  # their source data does not identify and name their product
    other_kind: int
    not_queued: int = 0  # the broker could not be reached
    regenerated: int = 0  # eager mode: generated and saved
    refused: tuple[tuple[str, str], ...] = ()  # (product_id, why): data a generation refuses
    failed: tuple[tuple[str, str], ...] = ()  # eager mode: (product_id, why) the provider failed
    not_tried: int = 0  # eager mode: left alone once the provider was unavailable
    locked: int = 0  # approved, and no override
    # Variants of a family another selected variant regenerates: its new base derives them again.
    with_family: int = 0


def enqueue_regeneration(queryset: QuerySet, *, override_approval: bool = False,
                         fields: Any = None) -> RegenerationResult:
    """Regenerate (forced; only ``fields`` when given) each selected main-content entry the one
    rule allows (:func:`regeneration_data` of its stored source data, and no approval unless
    ``override_approval``): queued with a broker, run here in eager mode. The others are
    counted, not queued.

    When the broker cannot be reached, nothing more is tried and the rest is counted as
    ``not_queued``; in eager mode, once the provider is unavailable, the rest is ``not_tried``.
    Of several variants of one family, one is regenerated (and its family's base with it, once);
    the others are derived again from that base (``with_family``), without a call of their own.
    """
    fields = check_fields(fields)
    queued = lacking = other_kind = not_queued = regenerated = not_tried = locked = with_family = 0
    families: set[str] = set()
    refused: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    broker_down = provider_down = False
    rows = queryset.order_by().values_list("product_id", "kind", "source_data", "approved", "family_id")
    for product_id, kind, source_data, approved, family_id in rows.iterator(chunk_size=CHUNK):
        if kind != DEFAULT_KIND:
            other_kind += 1
            continue
        if approved and not override_approval:
            locked += 1
            continue
        if family_id and family_id in families:
            with_family += 1
            continue
        try:
            data = regeneration_data(product_id, source_data or {})
        except InvalidProductData as exc:
            refused.append((product_id, str(exc).removeprefix("product_data: ")))
            continue
        except (CannotRegenerate, ValueError):
            lacking += 1
            continue
        if broker_down:
            not_queued += 1
            continue
        if provider_down:
            not_tried += 1
            continue
        try:
            done = _regenerate(product_id, data, existed=True, override_approval=override_approval, fields=fields)
        except ApprovedContent:  # approved meanwhile
            locked += 1
        except QueueUnavailable as exc:
            logger.warning("Fila de tarefas indisponível (%s); regeneração não enviada",
                           _connection_error(exc.__cause__).__class__.__name__)
            broker_down = True
            not_queued += 1
        except GenerationFailed as exc:
            failed.append((product_id, exc.reason))
            provider_down = exc.unavailable
        else:
            if family_id:
                families.add(family_id)
            if done.outcome == QUEUED:
                queued += 1
            else:
                regenerated += 1
    if queued:
        logger.info("%d produtos enviados para regeneração forçada", queued)
    if regenerated:
        logger.info("%d produtos regenerados", regenerated)
    return RegenerationResult(queued, lacking, other_kind, not_queued, regenerated,
                              tuple(refused), tuple(failed), not_tried, locked, with_family)
