"""Read-only views of the memory for the API, the command line and the dashboard."""
from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.db.models import Sum

from memory.models import DailyStats, ProductMemoryEntry
from memory.providers.pricing import estimate_saved_cost
from memory.engine import partitions
from memory.engine.memory import cached_for_stats, memory_figures
from memory.providers.prompts import current_generator_version, current_model_name
from memory.infra import metrics, redis, replicas

logger = logging.getLogger("memory")


def table_bytes() -> int:
    """On-disk size of the entries table with its indexes (the whole file on SQLite)."""
    table = ProductMemoryEntry._meta.db_table
    if connection.vendor == "postgresql":
        def size(alias: str) -> int:
            with connections[alias].cursor() as cursor:
                return partitions.total_bytes(cursor, table)

        return replicas.reading(size)
    name = settings.DATABASES["default"]["NAME"]
    try:
        return Path(name).stat().st_size
    except (OSError, TypeError):
        return 0


def directory_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def token_shares() -> tuple[float, float]:
    """The shares of prompt tokens, and of cached prompt tokens (a part of them), in what the
    stored entries cost: (0.5, 0.0) when nothing is stored."""
    sums = cached_for_stats(
        "token-parts",
        lambda: ProductMemoryEntry.objects.aggregate(
            p=Sum("tokens_prompt"), k=Sum("tokens_cached"), c=Sum("tokens_completion")),
        ("p", "k", "c"),
    )
    prompt, cached, completion = sums["p"] or 0, sums["k"] or 0, sums["c"] or 0
    total = prompt + completion
    return (prompt / total, cached / total) if total else (0.5, 0.0)


_unpriced_models_warned: set[str] = set()


def saved_cost(tokens_saved: int) -> Decimal | None:
    """USD that ``tokens_saved`` would have cost the current model, split into prompt (cached or
    not) and completion tokens as the stored entries' generations were
    (:mod:`memory.providers.pricing`); None (and a warning, once per model and process) when
    ``LLM_PRICES`` has no prices for the model."""
    model = current_model_name()
    prompt_share, cached_share = token_shares()
    cost = estimate_saved_cost(tokens_saved, prompt_share, model, settings.LLM_PRICES, cached_share=cached_share)
    if cost is None and model not in _unpriced_models_warned:
        _unpriced_models_warned.add(model)
        logger.warning("Modelo %s sem preço em LLM_PRICES: custo estimado desconhecido", model)
    return cost


def memory_stats(kind: str | None = None) -> dict:
    """Everything ``GET /api/memory/stats/``, ``manage_memory stats`` and the dashboard show:
    the entries of every kind (or of ``kind``), hits, tokens, the cost saved, Redis and disk."""
    stats = memory_figures(kind, current_generator_version())
    cost = saved_cost(stats["tokens_saved"])
    stats["estimated_cost_saved"] = None if cost is None else float(cost)
    stats["currency"] = "USD"
    stats["redis"] = redis.info()
    stats["database"] = {"vendor": connection.vendor, "table_bytes": table_bytes()}
    stats["backup_dir"] = {"path": str(settings.MEMORY_BACKUP_DIR), "bytes": directory_bytes(settings.MEMORY_BACKUP_DIR)}
    return stats


def recorded_totals() -> dict[str, int]:
    """The daily statistics summed over every day, of the fields ``/metrics`` reads from them
    (``metrics.RECORDED_TOTALS``): one aggregate over a table of one row a day."""
    sums = DailyStats.objects.aggregate(**{field: Sum(field) for field in metrics.RECORDED_TOTALS})
    return {field: value or 0 for field, value in sums.items()}


def _report_recorded_totals() -> None:
    """At each scrape: what every process recorded (the worker's generations and refresh-ahead
    runs, the commands'), as PostgreSQL holds it now. Left out of /metrics while the database
    does not answer: the rest still renders."""
    try:
        totals = recorded_totals()
    except DatabaseError:
        totals = None
    metrics.set_recorded_totals(totals)


metrics.on_scrape(_report_recorded_totals)
