"""Refresh-ahead ("cache preditivo"): regenerate the hot entries before a user asks for them.

A run (the scheduled job ``memory.refresh_ahead``, every ``MEMORY_REFRESH_AHEAD_INTERVAL``
seconds) takes the main-content entries that are *due*: stale (made by another generator) or
expiring within ``MEMORY_REFRESH_AHEAD_SECONDS`` (expired ones not yet purged included), never
approved ones, and at least ``MEMORY_REFRESH_MIN_HOTNESS`` hot (:mod:`memory.engine.hotness`);
hottest first, it regenerates each through the generation service
(:func:`memory.services.generation.generate_product`, forced, without override: so through the
product's single-flight lock, the provider's rate limit and circuit breaker, and for a variant its
family's path, reusing the family's base while it is fresh), from the entry's stored source data
(the one regeneration rule, :func:`memory.services.entries.regeneration_data`).

It stops:

- before an entry whose estimated cost would take the run past ``MEMORY_REFRESH_TOKEN_BUDGET``
  tokens, or once what it was billed (tokens spent and wasted) reaches it; the estimate is what
  the entry's generation cost last time (for a variant: its family base's generation when the
  base is no longer fresh, nothing when it is derived from a fresh one, its own call in ``ask``
  mode), so a run goes past the budget only by what an estimate missed;
- when the provider takes no more calls (its circuit breaker is open, its quota is spent, the
  rate limit would make a call wait past ``LLM_RATE_MAX_WAIT``): the rest is left for the next run.

An entry that is no longer due when its turn comes (regenerated meanwhile, derived again with its
family, approved) is skipped. One run at a time (an exclusive lock); at most
``MAX_CANDIDATES`` entries considered per run. Each content it wrote is marked for the count of
the misses it avoided (:mod:`memory.engine.hotness`); the tokens it cost are counted in
``DailyStats.tokens_spent_ahead`` (a part of ``tokens_spent``), which ``/metrics`` reads.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from memory.engine import freshness, hotness
from memory.engine.families import FAMILY_KIND
from memory.engine.locks import exclusive_lock
from memory.engine.validators import whole_number
from memory.infra import formatting, metrics
from memory.models import DEFAULT_KIND, ContentOrigin, DailyStats, ProductMemoryEntry
from memory.providers import ContentProvider, get_provider
from memory.services.entries import CannotRegenerate, regeneration_data
from memory.services.generation import FAILED, LOCKED, PRODUCED, PROVIDER_UNAVAILABLE, generate_product

logger = logging.getLogger("memory")

MAX_CANDIDATES = 10_000
LOCK_NAME = "refresh-ahead"

# Why a run stopped before its last candidate (RefreshResult.stopped), besides the provider's message.
BUDGET = "budget"
BUSY = "busy"  # another run holds the lock


@dataclass
class RefreshResult:
    """What one run did; ``as_dict()`` is what the scheduled job returns."""

    candidates: int = 0  # due and hot enough, at the start of the run
    refreshed: int = 0
    tokens_spent: int = 0  # by the contents stored (tokens_spent_ahead)
    tokens_wasted: int = 0  # billed for attempts that stored nothing
    skipped: int = 0  # no longer due at its turn, or no data to generate from
    failed: int = 0  # the provider answered nothing usable for it
    locked: int = 0  # approved meanwhile
    budget: int = 0
    stopped: str | None = None  # BUDGET, BUSY, or why the provider took no more calls
    seconds: float = 0.0

    @property
    def billed(self) -> int:
        return self.tokens_spent + self.tokens_wasted

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    pk: int
    product_id: str
    hotness: float
    estimate: int  # tokens


def due_q(now: datetime, generator: str, ahead_seconds: int) -> Q:
    """The rows refresh-ahead may regenerate: main content, not approved, stale or expiring within
    ``ahead_seconds`` (or expired)."""
    return Q(kind=DEFAULT_KIND, approved=False) & (
        Q(expires_at__lte=now + timedelta(seconds=ahead_seconds)) | ~Q(generator_version=generator)
    )


def hottest_due(now: datetime, generator: str, *, ahead_seconds: int | None = None,
                min_hotness: float | None = None, limit: int = MAX_CANDIDATES) -> list[Candidate]:
    """The due entries at least ``min_hotness`` hot (default: the settings), hottest first, with
    what regenerating each is estimated to cost."""
    ahead = settings.MEMORY_REFRESH_AHEAD_SECONDS if ahead_seconds is None else ahead_seconds
    floor = settings.MEMORY_REFRESH_MIN_HOTNESS if min_hotness is None else min_hotness
    rows = list(
        ProductMemoryEntry.objects.filter(due_q(now, generator, ahead), hotness__gt=0)
        .annotate(heat=hotness.decayed(now)).filter(heat__gte=floor)
        .order_by("-heat", "pk")
        .values_list("pk", "product_id", "heat", "tokens_prompt", "tokens_completion", "family_id")[:limit]
    )
    bases = _family_bases({family_id for *_, family_id in rows if family_id}, now, generator)
    ask = settings.MEMORY_FAMILY_MODE == "ask"
    candidates = []
    for pk, product_id, heat, prompt, completion, family_id in rows:
        own = prompt + completion
        if not family_id:
            estimate = own
        elif family_id not in bases:
            estimate = own  # no base stored: the variant that paid for the last one holds its cost
        else:
            estimate = bases[family_id] + (own if ask else 0)
        candidates.append(Candidate(pk, product_id, heat, estimate))
    return candidates


def _family_bases(family_ids: set[str], now: datetime, generator: str) -> dict[str, int]:
    """``{family id: tokens}`` of the stored bases of these families: what generating the base
    again costs (what it cost last time) when it is no longer fresh, 0 when it is."""
    found: dict[str, int] = {}
    ids = sorted(family_ids)
    for start in range(0, len(ids), 1000):
        rows = (ProductMemoryEntry.objects.filter(kind=FAMILY_KIND, product_id__in=ids[start:start + 1000])
                .values_list("product_id", "tokens_prompt", "tokens_completion", "expires_at",
                             "generator_version", "approved"))
        for family_id, prompt, completion, expires_at, generator_version, approved in rows:
            status = freshness.status(expires_at, now, generator_version, generator, approved=approved)
            found[family_id] = 0 if freshness.served(status, approved) else prompt + completion
    return found


def planned(*, provider: ContentProvider | None = None, limit: Any = 20) -> list[Candidate]:
    """What a run would take first, without generating anything (``manage_memory refresh-ahead --dry-run``)."""
    limit = whole_number("limit", limit, minimum=1, maximum=MAX_CANDIDATES)
    provider = provider or get_provider()
    return hottest_due(timezone.now(), provider.generator_version, limit=limit)


def refresh_ahead(*, budget: Any = None, provider: ContentProvider | None = None) -> RefreshResult:
    """One refresh-ahead run (see the module docstring); ``budget`` in tokens (default
    ``MEMORY_REFRESH_TOKEN_BUDGET``; 0 refreshes nothing)."""
    budget = settings.MEMORY_REFRESH_TOKEN_BUDGET if budget is None else whole_number("budget", budget)
    result = RefreshResult(budget=budget)
    if budget == 0:
        return result
    started = time.perf_counter()
    with exclusive_lock(LOCK_NAME) as mine:
        if not mine:
            logger.info("Outra renovação antecipada está em andamento; ignorando")
            result.stopped = BUSY
            return result
        provider = provider or get_provider()
        _run(result, provider, budget)
    result.seconds = round(time.perf_counter() - started, 3)
    if result.candidates:
        logger.info(
            "Renovação antecipada: %d de %d entradas renovadas, %d tokens gastos (orçamento de %d)",
            result.refreshed, result.candidates, result.billed, budget)
    return result


def _run(result: RefreshResult, provider: ContentProvider, budget: int) -> None:
    generator = provider.generator_version
    ahead = settings.MEMORY_REFRESH_AHEAD_SECONDS
    candidates = hottest_due(timezone.now(), generator)
    result.candidates = len(candidates)
    for candidate in candidates:
        if result.billed >= budget or result.billed + candidate.estimate > budget:
            result.stopped = BUDGET
            logger.info("Renovação antecipada interrompida: orçamento de %d tokens atingido (%d gastos)",
                        budget, result.billed)
            return
        now = timezone.now()
        row = (ProductMemoryEntry.objects.filter(Q(pk=candidate.pk) & due_q(now, generator, ahead))
               .values_list("product_id", "kind", "source_data", "expires_at", "generator_version").first())
        if row is None:  # regenerated, derived again with its family, approved or deleted meanwhile
            result.skipped += 1
            continue
        product_id, kind, source_data, expires_at, generator_version = row
        try:
            data = regeneration_data(product_id, source_data or {})
        except (CannotRegenerate, ValueError) as exc:
            logger.warning("Renovação antecipada: produto %s ignorado: %s", product_id, exc)
            result.skipped += 1
            continue
        # When the content it replaces would have stopped being served: at once when stale or
        # expired, at its expiry otherwise.
        due = now if generator_version != generator or expires_at <= now else expires_at
        try:
            outcome = generate_product(data, force_regenerate=True, provider=provider, regenerate_family=False)
        except ValueError as exc:  # data a generation refuses
            logger.warning("Renovação antecipada: produto %s ignorado: %s", product_id, exc)
            result.skipped += 1
            continue
        result.tokens_wasted += outcome.tokens_wasted
        if outcome.status in PRODUCED:
            result.refreshed += 1
            result.tokens_spent += outcome.tokens_spent
            _mark(product_id, kind, due)
            _count_spent_ahead(outcome.tokens_spent)
            logger.info("Produto %s renovado antecipadamente (popularidade %s, %d tokens)",
                        product_id, formatting.decimal(candidate.hotness), outcome.tokens_spent)
        elif outcome.status == LOCKED:
            result.locked += 1
        else:  # failed or not attempted: a family base stored before the variant's own call failed still cost
            result.tokens_spent += outcome.tokens_spent
            _count_spent_ahead(outcome.tokens_spent)
            if outcome.status == FAILED:
                result.failed += 1
            if outcome.failure == PROVIDER_UNAVAILABLE:  # breaker open, quota spent, rate limit: no more calls now
                result.stopped = outcome.error or outcome.status
                logger.warning("Renovação antecipada interrompida: o provedor não aceita mais chamadas (%s)",
                               result.stopped)
                return


def _mark(product_id: str, kind: str, due: datetime) -> None:
    """Mark the content just generated: a hit on it from ``due`` on is a miss avoided."""
    ProductMemoryEntry.objects.filter(product_id=product_id, kind=kind, origin=ContentOrigin.GENERATED).update(
        refreshed_ahead_version=F("version"), refreshed_ahead_due=due)


def _count_spent_ahead(tokens: int) -> None:
    """Add ``tokens`` to today's ``tokens_spent_ahead`` (``/metrics`` reads it from there, whichever
    process runs the job: ``metrics.RECORDED_TOTALS``)."""
    if tokens <= 0:
        return
    with transaction.atomic():
        stats, _ = DailyStats.objects.select_for_update().get_or_create(date=timezone.localdate())
        DailyStats.objects.filter(pk=stats.pk).update(tokens_spent_ahead=F("tokens_spent_ahead") + tokens)


def _report_refresh_settings() -> None:
    """At each scrape: the budget and the interval, which the alerts compare its spending with."""
    metrics.set_refresh_settings(settings.MEMORY_REFRESH_TOKEN_BUDGET, settings.MEMORY_REFRESH_AHEAD_INTERVAL)


metrics.on_scrape(_report_refresh_settings)
