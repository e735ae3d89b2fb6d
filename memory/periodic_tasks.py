"""The Celery tasks behind the scheduled jobs (rows in django-celery-beat, see ``memory.schedules``).

Each task calls one service function and returns its summary as JSON, which
the worker logs and the result backend keeps. Imported by
``MemoryConfig.ready()``, so every process that loads Django registers them.
"""
from __future__ import annotations

from celery import shared_task
from django.conf import settings

from memory.services.backup import create_backup
from memory.services.batch_api import advance_open_runs
from memory.engine.counters import flush_entry_counters
from memory.services.purge import purge_expired
from memory.services.refresh import refresh_ahead
from memory.services.rollup import roll_up_daily_stats

PURGE_TASK = "memory.purge_expired_entries"
FLUSH_TASK = "memory.flush_hit_counters"
ROLLUP_TASK = "memory.roll_up_daily_stats"
BACKUP_TASK = "memory.backup_snapshot"
BATCH_TASK = "memory.ingest_batch_runs"
REFRESH_AHEAD_TASK = "memory.refresh_ahead"


@shared_task(name=PURGE_TASK)
def purge_expired_entries() -> dict:
    """Delete expired entries in batches of ``MEMORY_PURGE_BATCH_SIZE``, from every tier."""
    return purge_expired(batch_size=settings.MEMORY_PURGE_BATCH_SIZE).as_dict()


@shared_task(name=FLUSH_TASK)
def flush_hit_counters() -> dict:
    """Move the per-entry hit and tokens-saved counts into the rows."""
    return {"hits": flush_entry_counters()}


@shared_task(name=ROLLUP_TASK)
def roll_up_daily_stats_task() -> dict:
    """Write the pending per-day counts into ``DailyStats``."""
    return roll_up_daily_stats().as_dict()


@shared_task(name=BACKUP_TASK)
def backup_snapshot() -> dict:
    """Write a backup snapshot (as ``manage_memory backup``), keeping the newest ``MEMORY_BACKUP_KEEP``."""
    return create_backup(keep=settings.MEMORY_BACKUP_KEEP).as_dict()


@shared_task(name=BATCH_TASK)
def ingest_batch_runs() -> dict:
    """Advance every unfinished Batch API run: submit one a crash left unsent, ingest the finished."""
    return advance_open_runs()


@shared_task(name=REFRESH_AHEAD_TASK)
def refresh_ahead_task() -> dict:
    """Regenerate the hottest entries about to expire or stale, within ``MEMORY_REFRESH_TOKEN_BUDGET``."""
    return refresh_ahead().as_dict()
