"""Purge of expired entries, and the health check."""
import re
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import OperationalError, connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from memory.infra.health import check_health
from memory.services import purge
from memory.services.purge import purge_expired
from memory.models import ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.engine.tiers import cache_key
from tests.helpers import make_entries

pytestmark = pytest.mark.django_db

CONTENT = {"title": "Garrafa", "description": "d", "bullet_points": [], "seo_keywords": []}


def test_purge_removes_only_expired_rows_in_batches_and_their_cached_copies(redis_client):
    memory = ProductMemory()
    for i in range(7):
        memory.save_product_data({"sku": f"OLD{i}"}, CONTENT)
    for i in range(3):
        memory.save_product_data({"sku": f"NEW{i}"}, CONTENT)
    ProductMemoryEntry.objects.filter(product_id__startswith="OLD").update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    with CaptureQueriesContext(connection) as queries:
        result = purge_expired(batch_size=3)
    assert (result.deleted, result.batches) == (7, 3)
    deletes = [q for q in queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3
    assert sorted(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == ["NEW0", "NEW1", "NEW2"]
    assert caches["memory_l2"].get(cache_key(("OLD0", "main_content"))) is None
    assert caches["memory_l1"].get(cache_key(("OLD0", "main_content"))) is None
    assert caches["memory_l2"].get(cache_key(("NEW0", "main_content"))) is not None


def test_purge_rejects_a_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        purge_expired(batch_size=0)


def test_health_is_ok_with_everything_up(redis_client, tmp_path):
    with override_settings(MEMORY_BACKUP_DIR=tmp_path):
        health = check_health()
    assert health["status"] == "ok"
    assert health["checks"]["database"]["ok"] and health["checks"]["redis"]["ok"]


def test_health_is_degraded_when_redis_is_down(dead_redis, tmp_path):
    with override_settings(MEMORY_BACKUP_DIR=tmp_path):
        health = check_health()
    assert health["status"] == "degraded"
    assert health["checks"]["redis"]["ok"] is False
    assert "Redis" in health["checks"]["redis"]["error"]


def test_purge_batches_with_equal_expiry_times_all_go(redis_client):
    memory = ProductMemory()
    for i in range(7):
        memory.save_product_data({"sku": f"SAME{i}"}, CONTENT)
    ProductMemoryEntry.objects.update(expires_at=timezone.now() - timedelta(hours=1))  # one instant for all
    result = purge_expired(batch_size=2)
    assert result.deleted == 7
    assert not ProductMemoryEntry.objects.exists()


def _past_the_statement_timeout(execute, context):
    """In place of a statement: one the server cancels at its statement timeout (a real QueryCanceled)."""
    execute("SET LOCAL statement_timeout = '50ms'", None, False, context)
    return execute("SELECT pg_sleep(5)", None, False, context)


def test_a_purge_batch_past_the_statement_timeout_is_rolled_back_and_the_purge_goes_on_with_smaller_ones(caplog):
    """At 10M rows a batch's DELETE (its versions cascading, the disk busy with checkpoints) outlasted
    DB_STATEMENT_TIMEOUT and the whole purge failed. Here the first DELETE is made to time out on the
    server (a real statement timeout); its batch is rolled back and the rest goes in halves."""
    memory = ProductMemory()
    for i in range(6):
        memory.save_product_data({"sku": f"OLD{i}"}, CONTENT)
    ProductMemoryEntry.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    timed_out = []

    def first_delete_times_out(execute, sql, params, many, context):
        if sql.startswith("DELETE") and not timed_out:
            timed_out.append(sql)
            return _past_the_statement_timeout(execute, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(first_delete_times_out):
        result = purge_expired(batch_size=200)
    assert (result.deleted, result.batches_timed_out) == (6, 1)
    assert ProductMemoryEntry.objects.count() == 0
    assert "seguindo com lotes de 100" in caplog.text


def test_a_purge_gives_up_when_even_its_smallest_batch_times_out():
    ProductMemory().save_product_data({"sku": "OLD0"}, CONTENT)
    ProductMemoryEntry.objects.update(expires_at=timezone.now() - timedelta(minutes=1))

    def every_delete_times_out(execute, sql, params, many, context):
        if sql.startswith("DELETE"):
            return _past_the_statement_timeout(execute, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(every_delete_times_out), pytest.raises(OperationalError):
        purge_expired(batch_size=150)
    assert ProductMemoryEntry.objects.count() == 1  # rolled back, nothing half-deleted


def test_a_slow_purge_batch_makes_the_next_ones_smaller_and_fast_ones_bring_them_back():
    """The first DELETE is slowed on the server (its batch takes twice the target): the next batch is
    cut in proportion, and the fast ones after it grow again, never past the size asked for."""
    make_entries(700, prefix="OLD", expires_at=timezone.now() - timedelta(minutes=1))
    limits, slowed = [], []

    def first_delete_is_slow(execute, sql, params, many, context):
        if sql.startswith("SELECT") and "LIMIT" in sql:
            limits.append(int(re.search(r"LIMIT (\d+)", sql).group(1)))
        if sql.startswith("DELETE") and not slowed:
            slowed.append(sql)
            execute("SELECT pg_sleep(%s)", [2 * purge.BATCH_TARGET_SECONDS], False, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(first_delete_is_slow):
        result = purge_expired(batch_size=300)
    assert result.deleted == 700 and not ProductMemoryEntry.objects.exists()
    assert limits[0] == 300
    assert purge.MIN_PURGE_BATCH <= limits[1] <= 150  # cut by at least half: the batch took twice the target
    assert limits[2] > limits[1] and max(limits) == 300


def test_the_batch_size_stays_within_its_bounds():
    sizes = purge.BatchSize(5000)
    sizes.took(100.0)
    assert sizes.size == purge.MIN_PURGE_BATCH
    assert not sizes.timed_out()  # the smallest already: the purge gives up
    for _ in range(20):
        sizes.took(0.0)
    assert sizes.size == 5000
    sizes.took(purge.BATCH_TARGET_SECONDS * 0.75)  # near the target: kept
    assert sizes.size == 5000
    assert sizes.timed_out() and sizes.size == 2500
    small = purge.BatchSize(3)  # asked for fewer than the smallest: never more than asked
    small.took(100.0)
    assert small.size == 3
