"""Redis is never a single point of failure: reads and writes go on through PostgreSQL."""
import logging

import pytest
from django.core.cache import caches

from memory.engine.counters import flush_counters
from memory.models import ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.engine.tiers import cache_key

from tests.helpers import wait_for

pytestmark = pytest.mark.django_db

CONTENT = {"title": "Caneca Térmica", "description": "d", "bullet_points": [], "seo_keywords": []}


def test_no_redis_configured_runs_on_l1_and_l3(no_redis):
    memory = ProductMemory()
    assert memory.l2 is None
    memory.save_product_data({"sku": "A1"}, CONTENT, tokens_prompt=10)
    assert memory.get_product_data("A1").tier == "l1"
    caches["memory_l1"].clear()
    assert memory.get_product_data("A1").tier == "l3"
    assert memory.delete_product("A1") is True


def test_redis_down_from_the_start_save_and_read_reach_postgres(dead_redis, caplog):
    memory = ProductMemory()
    with caplog.at_level(logging.WARNING, logger="memory"):
        memory.save_product_data({"sku": "A1"}, CONTENT, tokens_prompt=10)
        caches["memory_l1"].clear()
        for _ in range(5):
            assert memory.get_product_data("A1").content == CONTENT
        memory.get_product_data("A1")
    assert ProductMemoryEntry.objects.filter(product_id="A1").exists()
    warnings = [r for r in caplog.records if "Redis indisponível" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not per call


def test_redis_dying_mid_run_loses_nothing_and_recovers(flaky_redis):
    memory = ProductMemory()
    memory.save_product_data({"sku": "BEFORE"}, CONTENT, tokens_prompt=7)
    flaky_redis.connected = False
    memory.save_product_data({"sku": "DURING"}, CONTENT, tokens_prompt=7)
    caches["memory_l1"].clear()
    assert memory.get_product_data("BEFORE").tier == "l3"
    assert memory.get_product_data("DURING").tier == "l3"
    assert memory.delete_product("BEFORE") is True
    flaky_redis.connected = True
    # Within a tick of Redis coming back, the delete it missed is replayed, even
    # with no request touching Redis (this one is served from L1).
    assert memory.get_product_data("DURING") is not None
    assert wait_for(lambda: caches["memory_l2"].get(cache_key(("BEFORE", "main_content"))) is None, timeout=5), \
        "the missed delete was not replayed"
    caches["memory_l1"].clear()
    assert memory.get_product_data("BEFORE") is None
    assert set(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == {"DURING"}
    # Hits counted in process during the outage are flushed like the others.
    flush_counters()
    assert ProductMemoryEntry.objects.get(product_id="DURING").hit_count == 2


def test_cleared_during_outage_redis_copies_go_when_it_returns(flaky_redis):
    memory = ProductMemory()
    memory.save_product_data({"sku": "A1"}, CONTENT)
    flaky_redis.connected = False
    assert memory.clear() == 1
    flaky_redis.connected = True
    memory.exists("anything")  # first call after the outage
    caches["memory_l1"].clear()
    assert caches["memory_l2"].get(cache_key(("A1", "main_content"))) is None
    assert memory.get_product_data("A1") is None


def test_regenerated_during_outage_never_serves_the_old_redis_copy(flaky_redis):
    memory = ProductMemory()
    memory.save_product_data({"sku": "A1"}, CONTENT)
    flaky_redis.connected = False
    memory.save_product_data({"sku": "A1"}, {**CONTENT, "title": "Nova"})
    flaky_redis.connected = True
    caches["memory_l1"].clear()
    assert memory.get_product_data("A1").content["title"] == "Nova"
