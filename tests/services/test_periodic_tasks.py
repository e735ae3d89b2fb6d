"""Each scheduled job's effect on real PostgreSQL and Redis, run through its Celery task."""
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from memory.engine.counters import Counts, hit_counter
from memory.models import DailyStats, ProductMemoryEntry
from memory.periodic_tasks import (
    backup_snapshot, flush_hit_counters, purge_expired_entries, roll_up_daily_stats_task,
)
from memory.engine.memory import ProductMemory
from memory.engine.tiers import cache_key

from tests.helpers import step_until_exited

CONTENT = {"title": "Caneca Térmica", "description": "d", "bullet_points": [], "seo_keywords": []}


def save(sku, tokens=(300, 200)):
    ProductMemory().save_product_data({"sku": sku}, CONTENT, tokens_prompt=tokens[0], tokens_completion=tokens[1])


def day_row(day=None):
    row = DailyStats.objects.get(date=day or timezone.localdate())
    return {f: getattr(row, f) for f in ("hits", "misses", "generations", "tokens_spent", "tokens_saved")}


# -- purge expired entries ----------------------------------------------------


@pytest.mark.django_db
def test_purge_job_deletes_only_expired_rows_in_batches_of_the_setting(redis_client):
    for i in range(25):
        save(f"OLD{i:02d}")
    for i in range(5):
        save(f"NEW{i}")
    ProductMemoryEntry.objects.filter(product_id__startswith="OLD").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with override_settings(MEMORY_PURGE_BATCH_SIZE=10), CaptureQueriesContext(connection) as queries:
        result = purge_expired_entries.apply().get()
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 10 + 10 + 5
    assert (result["deleted"], result["batches"]) == (25, 3)
    assert sorted(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == [f"NEW{i}" for i in range(5)]
    l2 = caches["memory_l2"]
    assert l2.get(cache_key(("OLD00", "main_content"))) is None
    assert caches["memory_l1"].get(cache_key(("OLD24", "main_content"))) is None
    assert l2.get(cache_key(("NEW0", "main_content"))) is not None
    assert ProductMemory().get_product_data("OLD00") is None


@pytest.mark.django_db
def test_purge_job_with_nothing_expired_deletes_nothing(redis_client):
    save("FRESH")
    with CaptureQueriesContext(connection) as queries:
        result = purge_expired_entries.apply().get()
    assert result["deleted"] == 0
    assert not [q for q in queries if q["sql"].startswith("DELETE")]
    assert ProductMemoryEntry.objects.count() == 1


# -- flush hit counters ---------------------------------------------------------


@pytest.mark.django_db
def test_flush_job_moves_hits_and_tokens_saved_into_the_rows(redis_client):
    save("CAN-1")
    save("CAN-2", tokens=(100, 100))
    memory = ProductMemory()
    for _ in range(4):
        memory.get_product_data("CAN-1")
    memory.get_product_data("CAN-2")
    assert flush_hit_counters.apply().get() == {"hits": 5}
    rows = {e.product_id: e for e in ProductMemoryEntry.objects.all()}
    assert (rows["CAN-1"].hit_count, rows["CAN-1"].tokens_saved) == (4, 2000)
    assert (rows["CAN-2"].hit_count, rows["CAN-2"].tokens_saved) == (1, 200)
    assert rows["CAN-1"].last_hit_at is not None
    assert flush_hit_counters.apply().get() == {"hits": 0}
    assert ProductMemoryEntry.objects.get(product_id="CAN-1").hit_count == 4


@pytest.mark.django_db
def test_flush_job_leaves_the_daily_counts_to_the_roll_up_and_totals_stay_exact(redis_client):
    save("CAN-1")
    memory = ProductMemory()
    memory.get_product_data("CAN-1")
    memory.get_product_data("UNKNOWN")
    before = memory.stats()
    flush_hit_counters.apply()
    assert not DailyStats.objects.filter(hits__gt=0).exists()
    assert memory.stats() == before  # the day's counts are still pending, and still counted
    assert (before["hits"], before["misses"], before["generations"]) == (1, 1, 1)


@pytest.mark.django_db
def test_flush_job_without_redis_writes_this_process_counts(no_redis):
    save("CAN-1")
    ProductMemory().get_product_data("CAN-1")
    assert flush_hit_counters.apply().get() == {"hits": 1}
    assert ProductMemoryEntry.objects.get().hit_count == 1


HITTER = """
import sys
import django
django.setup()
from memory.engine.memory import ProductMemory
memory = ProductMemory()
for _ in range(int(sys.argv[1])):
    assert memory.get_product_data("CONC-1") is not None
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_flush_under_hits_from_several_processes_adds_up_exactly(redis_client, process_env):
    processes, hits_each = 4, 200
    save("CONC-1", tokens=(70, 30))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", HITTER, str(hits_each)], env=process_env, cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(processes)
    ]
    moved = []  # hits each flush reported moving, while the processes were hitting

    def flush_and_roll_up() -> None:
        moved.append(flush_hit_counters.apply().get()["hits"])
        roll_up_daily_stats_task.apply()

    step_until_exited(workers, flush_and_roll_up, interval=0)
    moved.append(flush_hit_counters.apply().get()["hits"])
    roll_up_daily_stats_task.apply()
    total = processes * hits_each
    row = ProductMemoryEntry.objects.get()
    assert (row.hit_count, row.tokens_saved) == (total, total * 100)
    today = day_row()
    assert (today["hits"], today["tokens_saved"]) == (total, total * 100)
    assert sum(moved) == total
    print(f"{len(moved)} flushes, {sum(1 for n in moved if n)} moved hits: {[n for n in moved if n]}")


# -- roll up daily stats ---------------------------------------------------------


@pytest.mark.django_db
def test_roll_up_job_fills_the_day_the_dashboard_draws(redis_client):
    save("CAN-1", tokens=(300, 200))
    save("CAN-2", tokens=(100, 50))
    memory = ProductMemory()
    for _ in range(3):
        memory.get_product_data("CAN-1")
    memory.get_product_data("NOPE-1")
    memory.get_product_data("NOPE-2")
    assert not DailyStats.objects.exists()
    result = roll_up_daily_stats_task.apply().get()
    today = timezone.localdate()
    expected = {"hits": 3, "misses": 2, "generations": 2, "tokens_spent": 650, "tokens_saved": 1500}
    assert day_row(today) == expected
    assert result["days"] == {today.isoformat(): expected}
    assert ProductMemoryEntry.objects.get(product_id="CAN-1").hit_count == 0  # the flush job's part
    roll_up_daily_stats_task.apply()
    assert day_row(today) == expected


@pytest.mark.django_db
def test_roll_up_puts_counts_from_before_midnight_on_their_own_day(redis_client):
    today = timezone.localdate()
    yesterday = today - timedelta(days=1)
    counts = Counts()
    counts.daily[(yesterday.isoformat(), "misses")] = 7
    counts.daily[(today.isoformat(), "misses")] = 2
    hit_counter.redis_store().add(counts)
    roll_up_daily_stats_task.apply()
    assert day_row(yesterday)["misses"] == 7
    assert day_row(today)["misses"] == 2


@pytest.mark.django_db
def test_roll_up_gives_quiet_days_a_zero_row_from_the_first_recorded_day(redis_client):
    today = timezone.localdate()
    DailyStats.objects.create(date=today - timedelta(days=3), hits=5)
    result = roll_up_daily_stats_task.apply().get()
    assert result["empty_days_filled"] == 3
    assert list(DailyStats.objects.order_by("date").values_list("date", "hits")) == [
        (today - timedelta(days=3), 5), (today - timedelta(days=2), 0), (today - timedelta(days=1), 0), (today, 0),
    ]
    assert roll_up_daily_stats_task.apply().get()["empty_days_filled"] == 0


@pytest.mark.django_db
def test_roll_up_fills_at_most_the_chart_window(redis_client):
    today = timezone.localdate()
    DailyStats.objects.create(date=today - timedelta(days=400), hits=1)
    roll_up_daily_stats_task.apply()
    assert DailyStats.objects.count() == 1 + 30
    assert DailyStats.objects.filter(date__gte=today - timedelta(days=29)).count() == 30


@pytest.mark.django_db
def test_roll_up_with_an_empty_table_starts_with_today(redis_client):
    roll_up_daily_stats_task.apply()
    assert list(DailyStats.objects.values_list("date", flat=True)) == [timezone.localdate()]


@pytest.mark.django_db
def test_failed_roll_up_keeps_the_counts_for_the_next_one(redis_client, monkeypatch):
    import memory.engine.counters as counters

    ProductMemory().get_product_data("NOPE")

    def broken(counts):
        if not counts.is_empty():
            raise RuntimeError("database went away")

    monkeypatch.setattr(counters, "apply_counts", broken)
    with pytest.raises(RuntimeError):
        roll_up_daily_stats_task.apply().get()
    assert not DailyStats.objects.filter(misses__gt=0).exists()
    monkeypatch.undo()
    roll_up_daily_stats_task.apply()
    assert day_row()["misses"] == 1


# -- backup snapshot -----------------------------------------------------------------


@pytest.mark.django_db
def test_backup_job_writes_a_snapshot_of_every_entry_and_keeps_the_newest(redis_client, tmp_path):
    import gzip
    import json

    save("BKP-1")
    save("BKP-2")
    with override_settings(MEMORY_BACKUP_DIR=tmp_path, MEMORY_BACKUP_KEEP=2):
        results = [backup_snapshot.apply().get() for _ in range(3)]
    snapshots = sorted(tmp_path.glob("memory-*.jsonl.gz"))
    assert [str(p) for p in snapshots] == sorted(r["path"] for r in results[1:])
    assert results[2]["removed"] == [results[0]["path"]]
    assert results[2]["entries"] == 2
    with gzip.open(results[2]["path"], "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert sorted(r["product_id"] for r in rows) == ["BKP-1", "BKP-2"]
    assert rows[0]["payload"] == CONTENT
