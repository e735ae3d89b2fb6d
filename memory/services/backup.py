"""Disaster recovery beside PostgreSQL: gzipped JSONL snapshots, restore, and Redis warm-up.

- :func:`create_backup` writes every entry (the :mod:`memory.io.export` ``jsonl``
  format, gzipped) to ``MEMORY_BACKUP_DIR/memory-YYYYMMDDTHHMMSSZ.jsonl.gz``,
  through a temporary file renamed when complete, so a backup on disk is never
  half written; then it keeps only the newest ``keep`` snapshots.
- :func:`restore_backup` loads one through :func:`memory.io.importer.import_entries`:
  validated first, all or nothing, upserting on ``(product_id, kind)``; entries
  that are not in the snapshot are left as they are (``clear`` first for an exact copy).
- :func:`warm_redis` refills Redis from PostgreSQL (after a restart or FLUSHDB),
  what a lookup serves only (active entries of the current generator, approved ones), the
  hottest first, in pipelined batches.
"""
from __future__ import annotations

import gzip
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from memory.engine import freshness, hotness
from memory.engine.tiers import DatabaseTier, Key, RedisTier, shared_redis_tier
from memory.engine.validators import whole_number
from memory.infra import redis
from memory.infra import formatting
from memory.io.export import export_count, iter_export_batches
from memory.io.formats import Progress
from memory.io.importer import ImportReport, import_entries
from memory.io.schema import ImportFileError
from memory.models import ProductMemoryEntry
from memory.providers.prompts import current_generator_version

logger = logging.getLogger("memory")

DEFAULT_KEEP = 7
BACKUP_NAME = re.compile(r"^memory-(\d{8}T\d{6}Z)(?:-(\d+))?\.jsonl\.gz$")
WARM_BATCH = 1000


@dataclass
class BackupResult:
    path: Path
    entries: int
    bytes: int
    seconds: float
    removed: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        data["removed"] = [str(p) for p in self.removed]
        return data


@dataclass
class WarmResult:
    entries: int = 0
    batches: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class RedisUnavailable(RuntimeError):
    """Redis is not configured, or does not answer."""


def backup_dir() -> Path:
    return Path(settings.MEMORY_BACKUP_DIR)


def _sort_key(path: Path) -> tuple[str, int]:
    match = BACKUP_NAME.match(path.name)
    return (match.group(1), int(match.group(2) or 1))


def list_backups() -> list[Path]:
    """The snapshots in ``MEMORY_BACKUP_DIR``, oldest first (other files there are ignored)."""
    directory = backup_dir()
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if BACKUP_NAME.match(p.name) and p.is_file()), key=_sort_key)


def latest_backup() -> Path | None:
    backups = list_backups()
    return backups[-1] if backups else None


def _check_keep(keep) -> int:
    if keep is None:
        keep = getattr(settings, "MEMORY_BACKUP_KEEP", DEFAULT_KEEP)
    return whole_number("keep", keep, minimum=1)


def prune_backups(keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` snapshots; returns the deleted paths."""
    keep = _check_keep(keep)
    old = list_backups()[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def _new_backup_path(now: datetime) -> Path:
    stamp = now.astimezone(dt_timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    directory = backup_dir()
    path = directory / f"memory-{stamp}.jsonl.gz"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"memory-{stamp}-{n}.jsonl.gz"
    return path


def create_backup(keep: int | None = None, *, on_progress: Progress | None = None) -> BackupResult:
    """Snapshot every entry into ``MEMORY_BACKUP_DIR`` and keep the newest ``keep``.

    ``keep`` defaults to ``MEMORY_BACKUP_KEEP`` (7). Streams: memory stays bounded
    whatever the number of entries. ``OSError`` when the folder is not writable.
    """
    keep = _check_keep(keep)
    started = time.perf_counter()
    directory = backup_dir()
    directory.mkdir(parents=True, exist_ok=True)
    total = export_count() if on_progress else None
    fd, tmp = tempfile.mkstemp(prefix=".memory-", suffix=".jsonl.gz.part", dir=directory)
    entries = 0
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as zipped:
                for text, n in iter_export_batches("jsonl"):
                    zipped.write(text.encode("utf-8"))
                    entries += n
                    if on_progress:
                        on_progress("export", entries, total)
            raw.flush()
            os.fsync(raw.fileno())
        path = _new_backup_path(datetime.now(dt_timezone.utc))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    removed = prune_backups(keep)
    result = BackupResult(
        path=path, entries=entries, bytes=path.stat().st_size,
        seconds=round(time.perf_counter() - started, 3), removed=removed,
    )
    logger.info("Backup da memória: %d entradas em %s (%s); %d backups antigos removidos",
                entries, path.name, formatting.size(result.bytes), len(removed))
    return result


def resolve_backup(path: str | os.PathLike | None) -> Path:
    """A snapshot to restore: the given path, a file name inside ``MEMORY_BACKUP_DIR``, or the newest."""
    if path is None:
        latest = latest_backup()
        if latest is None:
            raise ImportFileError(f"input_file: nenhum backup em {backup_dir()}")
        return latest
    candidate = Path(path)
    if not candidate.exists() and not candidate.is_absolute() and (backup_dir() / candidate).exists():
        return backup_dir() / candidate
    return candidate


def restore_backup(path: str | os.PathLike | None = None, *, dry_run: bool = False,
                   on_progress: Progress | None = None) -> ImportReport:
    """Load a snapshot (default: the newest) through the validated, all-or-nothing import."""
    source = resolve_backup(path)
    report = import_entries(source, "jsonl", dry_run=dry_run, on_progress=on_progress)
    if report.ok and not dry_run:
        logger.info("Backup %s restaurado: %d entradas", source.name, report.rows)
    return report


def _redis_tier() -> RedisTier:
    if not redis.configured():
        raise RedisUnavailable("Redis não configurado (REDIS_URL vazio): não há o que aquecer")
    tier = shared_redis_tier()
    try:
        redis.ping()  # when Redis answers, this ends any outage (replaying the deletes it missed)
    except ConnectionError as exc:
        raise RedisUnavailable(str(exc)) from None
    redis.guard.reset()  # and stops waiting out the retry delay, or the writes below would be skipped
    return tier


def warm_redis(batch_size: int = WARM_BATCH, *, on_progress: Progress | None = None) -> WarmResult:
    """Copy every active entry of the current generator, and every approved one, from PostgreSQL
    into Redis, the hottest first (:func:`memory.engine.hotness.decayed`).

    Entries go in pipelined batches of ``batch_size`` with their remaining TTL, as the fills of
    a read do: each batch is claimed before its rows are read, so an entry saved or deleted
    meanwhile is not copied (nor a copy Redis already holds replaced).
    Raises :class:`RedisUnavailable` when Redis is not configured, does not
    answer, or goes away during the warm-up.
    """
    batch_size = whole_number("batch_size", batch_size, minimum=1)
    tier = _redis_tier()
    l3 = DatabaseTier()
    started = time.perf_counter()
    generator = current_generator_version()
    now = timezone.now()
    # The hottest first: what lookups ask for most is back in Redis soonest.
    qs = (
        ProductMemoryEntry.objects.filter(freshness.served_q(generator, now))
        .order_by(hotness.decayed(now).desc(), "id")
        .values_list("product_id", "kind")
    )
    total = qs.count() if on_progress else None
    result = WarmResult()
    batch: list[Key] = []

    def flush() -> None:
        claims = tier.claim_fills(batch)
        now = time.time()
        active = [s for s in l3.get_many(batch).values() if s.serves(None, generator, now)]
        tier.fill_many(active, claims)
        if redis.guard.in_outage:
            raise RedisUnavailable(f"Redis parou de responder durante o aquecimento, após {result.entries} entradas")
        result.entries += len(active)
        result.batches += 1
        batch.clear()
        if on_progress:
            on_progress("warm", result.entries, total)

    for key in qs.iterator(chunk_size=batch_size):
        batch.append(key)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    result.seconds = round(time.perf_counter() - started, 3)
    logger.info("Redis aquecido: %d entradas em %d lotes (%s)",
                result.entries, result.batches, formatting.seconds(result.seconds))
    return result
