"""Hits cost no PostgreSQL write; the flush moves them into the rows exactly."""
import json
import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from memory.engine.counters import Counts, flush_counters, hit_counter
from memory.models import DailyStats, ProductMemoryEntry
from memory.engine.memory import ProductMemory

from tests.helpers import wait_for

pytestmark = pytest.mark.django_db

CONTENT = {"title": "Mochila Escolar", "description": "d", "bullet_points": [], "seo_keywords": []}


@pytest.fixture
def entry():
    ProductMemory().save_product_data({"sku": "MOCH-1"}, CONTENT, tokens_prompt=300, tokens_completion=200)
    flush_counters()


def test_a_hit_writes_nothing_to_postgres(entry, redis_client):
    ProductMemory().get_product_data("MOCH-1")  # fills L1 from L2
    with CaptureQueriesContext(connection) as queries:
        ProductMemory().get_product_data("MOCH-1")
    assert len(queries) == 0
    assert ProductMemoryEntry.objects.get().hit_count == 0


@pytest.mark.parametrize("fixture", ["redis_client", "no_redis"])
def test_flush_moves_hits_and_tokens_saved_into_the_row(entry, request, fixture):
    request.getfixturevalue(fixture)
    memory = ProductMemory()
    for _ in range(3):
        memory.get_product_data("MOCH-1")
    memory.get_product_data("UNKNOWN")
    assert flush_counters() == 3
    row = ProductMemoryEntry.objects.get()
    assert row.hit_count == 3
    assert row.tokens_saved == 1500
    assert row.last_hit_at is not None
    day = DailyStats.objects.get()
    assert (day.hits, day.misses, day.generations, day.tokens_spent, day.tokens_saved) == (3, 1, 1, 500, 1500)
    # flushing again adds nothing
    assert flush_counters() == 0
    assert ProductMemoryEntry.objects.get().hit_count == 3


def test_hits_during_a_flush_are_neither_lost_nor_doubled(entry, redis_client):
    memory = ProductMemory()
    stop = threading.Event()
    done = []

    def hitter():
        n = 0
        while not stop.is_set() or n < 50:
            memory.get_product_data("MOCH-1")
            n += 1
        done.append(n)

    threads = [threading.Thread(target=hitter) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(5):
        flush_counters()
    stop.set()
    for t in threads:
        t.join()
    flush_counters()
    assert ProductMemoryEntry.objects.get().hit_count == sum(done)


def test_failed_flush_keeps_the_counts_for_the_next_one(entry, redis_client, monkeypatch):
    ProductMemory().get_product_data("MOCH-1")
    import memory.engine.counters as counters

    def broken(counts):
        raise RuntimeError("database went away")

    monkeypatch.setattr(counters, "apply_counts", broken)
    with pytest.raises(RuntimeError):
        flush_counters()
    monkeypatch.undo()
    assert flush_counters() == 1
    assert ProductMemoryEntry.objects.get().hit_count == 1


def test_counts_of_a_failed_flush_show_in_stats_and_neither_stats_nor_flush_scans_redis(
    entry, redis_client, monkeypatch
):
    """A SCAN walks every key, and Redis holds one key per cached entry: at a million entries
    that was thousands of round trips on every stats call and every flush."""
    import redis

    import memory.engine.counters as counters

    ProductMemory().get_product_data("MOCH-1")
    hit_counter.push()
    monkeypatch.setattr(counters, "apply_counts", lambda counts: (_ for _ in ()).throw(RuntimeError("down")))
    with pytest.raises(RuntimeError):
        flush_counters()  # the counts now sit in a private hash
    monkeypatch.undo()

    def no_scan(self, *args, **kwargs):
        raise AssertionError("SCAN of the whole keyspace")

    monkeypatch.setattr(redis.Redis, "scan_iter", no_scan)
    monkeypatch.setattr(redis.Redis, "scan", no_scan)
    assert ProductMemory().stats()["hits"] == 1
    assert flush_counters() == 1
    assert ProductMemoryEntry.objects.get().hit_count == 1
    assert ProductMemory().stats()["hits"] == 1  # once, from the row: the private hash is gone


def test_pending_counts_show_in_stats_before_the_flush(entry):
    ProductMemory().get_product_data("MOCH-1")
    assert ProductMemory().stats()["hits"] == 1
    assert hit_counter.pending().hits[("MOCH-1", "main_content")] == 1


def test_an_l1_hit_costs_no_redis_round_trip(entry, redis_client, monkeypatch):
    import redis

    ProductMemory().get_product_data("MOCH-1")  # fills L1
    hit_counter.stop_pusher()  # keep the background pusher out of the count (clean_memory restarts it)
    calls = []
    original = redis.Redis.execute_command
    monkeypatch.setattr(redis.Redis, "execute_command", lambda self, *a, **k: calls.append(a[0]) or original(self, *a, **k))
    monkeypatch.setattr(redis.client.Pipeline, "execute", lambda self, *a, **k: calls.append("PIPELINE"))
    assert ProductMemory().get_product_data("MOCH-1").tier == "l1"
    assert calls == []


def test_buffered_hits_reach_redis_within_a_tick(entry, redis_client, settings):
    settings.MEMORY_HIT_BUFFER_SECONDS = 0.05
    ProductMemory().get_product_data("MOCH-1")
    # The pusher empties the buffer before its write reaches Redis: wait for Redis itself.
    in_redis = lambda: hit_counter.redis_store().snapshot().hits[("MOCH-1", "main_content")]  # noqa: E731
    assert wait_for(lambda: in_redis() == 1, timeout=5), "the pusher did not move the counts to Redis"
    assert hit_counter.local.is_empty()
    assert flush_counters() == 1


def test_counts_pushed_in_several_pushes_add_up_exactly(redis_client):
    keys = [(pid, "main_content") for pid in ("MOCH-1", "Ação-2", "emoji-😀", "x" * 300)]
    for tokens in (10**15, 1):  # two pushes, each its own field of the entry hash
        for product_id, kind in keys:
            hit_counter.record_hit(product_id, kind, tokens)
        hit_counter.push()
    pending = hit_counter.redis_store().snapshot()
    assert dict(pending.hits) == {key: 2 for key in keys}
    assert dict(pending.saved) == {key: 10**15 + 1 for key in keys}
    assert set(pending.last_hit) == set(keys)
    assert sorted(pending.daily.values()) == [8, 4 * (10**15 + 1)]


def test_a_hash_with_fields_of_both_forms_adds_them_all():
    """Per-field counts (as a hash written field by field holds them) and pushed batches add up."""
    sep = "\x1f"
    pushed = json.dumps({f"h{sep}main_content{sep}A": 2, f"s{sep}main_content{sep}A": 40,
                         f"t{sep}main_content{sep}A": 1700000100.5})
    counts = Counts.from_fields({
        f"h{sep}main_content{sep}A".encode(): b"1",
        f"s{sep}main_content{sep}A".encode(): b"20",
        f"t{sep}main_content{sep}A".encode(): b"1700000000.25",
        f"p{sep}0123abcd".encode(): pushed.encode(),
    })
    assert counts.hits[("A", "main_content")] == 3
    assert counts.saved[("A", "main_content")] == 60
    assert counts.last_hit[("A", "main_content")] == 1700000100.5
