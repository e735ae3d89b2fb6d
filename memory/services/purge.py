"""Purging expired entries: in short batches, from every tier."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from psycopg.errors import QueryCanceled
from django.utils import timezone

from memory.engine import freshness, partitions
from memory.engine.memory import ProductMemory
from memory.engine.validators import whole_number
from memory.infra import formatting, metrics
from memory.models import ProductMemoryEntry

logger = logging.getLogger("memory")

DEFAULT_PURGE_BATCH = 5000
MIN_PURGE_BATCH = 100  # a batch timed out is halved down to this, then the purge gives up
BATCH_TARGET_SECONDS = 0.2


class BatchSize:
    """The purge's batch size, kept where a batch's statements take about
    :data:`BATCH_TARGET_SECONDS`: cut in proportion after a slower batch (down to
    :data:`MIN_PURGE_BATCH`), grown by a quarter after one under half the target (up to the size
    asked for). The same batch takes several times as long while checkpoints keep the disk busy (a
    ``DELETE`` of 5,000 entries: 382 ms median, 1.4 s at worst at 2M rows; growing by half, the
    partitioned purge's batches overshot to 1.07 s: docs/benchmarks.md): a fifth of a second keeps
    those under a second without a plan of the machine's speed."""

    def __init__(self, largest: int):
        self.largest = self.size = largest
        self.smallest = min(MIN_PURGE_BATCH, largest)

    def took(self, seconds: float) -> None:
        if seconds > BATCH_TARGET_SECONDS:
            self.size = max(self.smallest, int(self.size * BATCH_TARGET_SECONDS / seconds))
        elif seconds < BATCH_TARGET_SECONDS / 2:
            self.size = min(self.largest, self.size + self.size // 4 + 1)

    def timed_out(self) -> bool:
        """Halved after a batch past ``DB_STATEMENT_TIMEOUT``; False when it was the smallest already."""
        if self.size <= self.smallest:
            return False
        self.size = max(self.smallest, self.size // 2)
        return True


@dataclass
class PurgeResult:
    deleted: int = 0
    batches: int = 0
    longest_batch_ms: float = 0.0
    seconds: float = 0.0
    # Partitioned by expiry (memory.engine.partitions): whole expired months dropped, months created ahead.
    partitions_dropped: int = 0
    partitions_created: int = 0
    # Batches rolled back past DB_STATEMENT_TIMEOUT and tried again half as big.
    batches_timed_out: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def purge_expired(batch_size: int = DEFAULT_PURGE_BATCH, max_batches: int | None = None) -> PurgeResult:
    """Delete rows whose ``expires_at`` has passed, at most ``batch_size`` at a time (fewer while
    batches take longer than :data:`BATCH_TARGET_SECONDS`: :class:`BatchSize`), and their cached copies.

    Each batch is its own short transaction, so no statement holds locks on
    many rows for long, and a row refreshed meanwhile (a new ``expires_at``)
    is never deleted. Each batch starts where the previous one ended in the
    ``expires_at`` index: starting over from the oldest entry would walk the
    index entries of every row already deleted in the run, which makes the
    statements of a big purge slower and slower (docs/benchmarks.md).
    """
    sizes = BatchSize(whole_number("batch_size", batch_size, minimum=1))
    now = timezone.now()
    memory = ProductMemory()
    result = PurgeResult()
    started = time.perf_counter()
    if partitions.enabled():
        _purge_partitions(now, sizes, memory, result)
    last_expires_at = None
    while max_batches is None or result.batches < max_batches:
        batch_started = time.perf_counter()
        expired = ProductMemoryEntry.objects.filter(freshness.expired_q(now))
        if last_expires_at is not None:
            expired = expired.filter(expires_at__gte=last_expires_at)
        rows = list(
            expired.order_by("expires_at").values_list("id", "product_id", "kind", "expires_at")[:sizes.size]
        )
        if not rows:
            break
        try:
            with transaction.atomic():
                deleted, _ = ProductMemoryEntry.objects.filter(
                    freshness.expired_q(now), id__in=[r[0] for r in rows]
                ).delete()
        except OperationalError as exc:
            # A batch past DB_STATEMENT_TIMEOUT (a disk busy with checkpoints, at 10M rows:
            # docs/benchmarks.md) is rolled back; the purge goes on with batches half as big.
            if not isinstance(exc.__cause__, QueryCanceled) or not sizes.timed_out():
                raise
            result.batches_timed_out += 1
            logger.warning("Limpeza de expirados: um lote passou do tempo limite do banco (DB_STATEMENT_TIMEOUT); "
                           "seguindo com lotes de %d", sizes.size)
            continue
        last_expires_at = rows[-1][3]
        _batch_done(time.perf_counter() - batch_started, sizes, result, deleted)
        memory.evict([(product_id, kind) for _, product_id, kind, _ in rows])
    result.seconds = round(time.perf_counter() - started, 3)
    result.longest_batch_ms = round(result.longest_batch_ms, 2)
    logger.info(
        "Limpeza de expirados: %d entradas removidas em %d lotes (%s)",
        result.deleted, result.batches, formatting.seconds(result.seconds),
    )
    return result


def _batch_done(seconds: float, sizes: BatchSize, result: PurgeResult, deleted: int) -> None:
    """A batch's statements took ``seconds`` and deleted ``deleted`` rows: the next batch's size
    follows, and the result counts it."""
    sizes.took(seconds)
    result.deleted += deleted
    result.batches += 1
    result.longest_batch_ms = max(result.longest_batch_ms, seconds * 1000)


def _purge_partitions(now, sizes: BatchSize, memory: ProductMemory, result: PurgeResult) -> None:
    """On a table partitioned by expiry: the months ahead created, and the months wholly expired
    detached, drained (their versions deleted, their cached copies evicted, a batch at a time) and
    dropped: no statement touches more than a batch, whatever a month holds. The rows left (an
    approved entry's month, the current month) go through the batched delete."""
    if connection.vendor != "postgresql":
        return  # the setting is PostgreSQL's alone (the system check says so)
    if not partitions.is_partitioned():
        logger.warning("MEMORY_PARTITION_BY_EXPIRY=monthly, mas a tabela de entradas não está particionada: "
                       "execute manage_memory partition (a limpeza segue linha a linha)")
        return
    result.partitions_created = len(partitions.create_ahead(now))
    for table in partitions.detach_expired(now):
        batch_started = time.perf_counter()
        for rows in partitions.drain_detached(table, lambda: sizes.size):
            _batch_done(time.perf_counter() - batch_started, sizes, result, len(rows))
            memory.evict([(product_id, kind) for _, product_id, kind in rows])
            batch_started = time.perf_counter()
        partitions.drop_detached(table)
        result.partitions_dropped += 1


def purge_backlog(now=None) -> tuple[int, float]:
    """The expired entries still stored (counted up to ``metrics.PURGE_BACKLOG_LIMIT``) and the
    seconds since the oldest of them expired (0.0 when none): two reads of the ``expires_at`` index."""
    now = now or timezone.now()
    expired = ProductMemoryEntry.objects.filter(freshness.expired_q(now))
    oldest = expired.order_by("expires_at").values_list("expires_at", flat=True).first()
    if oldest is None:
        return 0, 0.0
    # Bounded: a purge far behind must not make every scrape count millions of rows (1M rows, 200k
    # expired: ~10 ms at 10,000, ~60 ms at 100,000); the lag says how far behind it is.
    backlog = expired.order_by()[:metrics.PURGE_BACKLOG_LIMIT].count()
    return backlog, max(0.0, (now - oldest).total_seconds())


def _report_purge_backlog() -> None:
    """At each scrape: the purge's backlog as PostgreSQL holds it now, whichever process purges.
    Unknown (NaN) while the database does not answer: /metrics still renders the rest."""
    try:
        backlog, lag = purge_backlog()
    except DatabaseError:
        backlog = lag = float("nan")
    metrics.set_purge_backlog(backlog, lag, settings.MEMORY_PURGE_INTERVAL)


metrics.on_scrape(_report_purge_backlog)
