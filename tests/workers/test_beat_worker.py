"""Real ``celery beat`` and ``celery worker`` processes run the scheduled jobs from the
django-celery-beat rows: an expired entry is purged, pending counts are flushed and rolled up,
and backup snapshots are written with retention."""
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from memory.models import DailyStats, ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.schedules import register_periodic_tasks

from tests.helpers import stop_process, wait_for, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONTENT = {"title": "Luminária", "description": "d", "bullet_points": [], "seo_keywords": []}
DEADLINE_SECONDS = 90


def start(args, env, log_path):
    log = open(log_path, "w")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "beecatalog", *args],
        env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
    ), log


def test_beat_and_worker_run_the_jobs_on_their_schedule(redis_client, process_env, tmp_path):
    memory = ProductMemory()
    memory.save_product_data({"sku": "OLD-1"}, CONTENT, tokens_prompt=10, tokens_completion=10)
    memory.save_product_data({"sku": "LIVE-1"}, CONTENT, tokens_prompt=300, tokens_completion=200)
    ProductMemoryEntry.objects.filter(product_id="OLD-1").update(expires_at=timezone.now() - timedelta(seconds=1))
    for _ in range(3):
        memory.get_product_data("LIVE-1")
    with override_settings(
        MEMORY_PURGE_INTERVAL=1, MEMORY_COUNTER_FLUSH_INTERVAL=1, MEMORY_ROLLUP_INTERVAL=1, MEMORY_BACKUP_INTERVAL=1,
    ):
        register_periodic_tasks()
    backups = tmp_path / "backups"

    env = worker_env(process_env, MEMORY_BACKUP_DIR=str(backups), MEMORY_BACKUP_KEEP="2")
    worker, worker_log = start(
        ["worker", "--pool=solo", "--loglevel=INFO", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--hostname=beat-test@%h"],
        env, tmp_path / "worker.log",
    )
    beat, beat_log = start(
        ["beat", "--loglevel=INFO", "--max-interval=1"],
        env, tmp_path / "beat.log",
    )

    def first_round_done():
        live = ProductMemoryEntry.objects.filter(product_id="LIVE-1").values_list("hit_count", flat=True).first()
        today = DailyStats.objects.filter(date=timezone.localdate()).values_list("hits", flat=True).first()
        return not ProductMemoryEntry.objects.filter(product_id="OLD-1").exists() and live == 3 and today == 3

    def later_hits_flushed():
        return ProductMemoryEntry.objects.get(product_id="LIVE-1").hit_count == 5 and len(snapshots()) == 2

    def snapshots():
        return sorted(backups.glob("memory-*.jsonl.gz"))

    try:
        first_round = wait_for(first_round_done, DEADLINE_SECONDS, interval=0.5)
        if first_round:  # the jobs keep running every second: later hits reach the row too
            memory.get_product_data("LIVE-1")
            memory.get_product_data("LIVE-1")
        second_round = first_round and wait_for(later_hits_flushed, DEADLINE_SECONDS, interval=0.5)
    finally:
        stop_process(beat)
        stop_process(worker)
        beat_log.close()
        worker_log.close()
    beat_text, worker_text = (tmp_path / "beat.log").read_text(), (tmp_path / "worker.log").read_text()
    logs = f"beat:\n{beat_text}\nworker:\n{worker_text}"
    assert first_round and second_round, logs
    for task in ("memory.purge_expired_entries", "memory.flush_hit_counters", "memory.roll_up_daily_stats",
                 "memory.backup_snapshot"):
        assert "Sending due task" in beat_text and f"({task})" in beat_text, logs
        assert f"Task {task}[" in worker_text, logs
    assert worker_text.count("Task memory.flush_hit_counters[") >= 2 * 2  # received + succeeded, twice or more
    live = ProductMemoryEntry.objects.get(product_id="LIVE-1")
    assert (live.hit_count, live.tokens_saved) == (5, 2500)
    assert len(snapshots()) == 2
