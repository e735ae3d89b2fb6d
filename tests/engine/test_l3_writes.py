"""L3 writes and reads on PostgreSQL: one upsert statement that keeps what an overwrite must keep."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from memory.engine.counters import flush_counters
from memory.models import ProductMemoryEntry
from memory.engine.memory import ProductMemory

pytestmark = pytest.mark.django_db

PRODUCT = {"sku": "UPS-1", "title": "Garrafa Térmica 1 L", "brand": "Stanley"}
FIRST = {"title": "Garrafa Térmica Stanley", "description": "Mantém a bebida quente por 24 horas.",
         "bullet_points": ["Aço inox"], "seo_keywords": ["garrafa térmica"]}
SECOND = {**FIRST, "title": "Garrafa Térmica Stanley 1 L", "description": "Nova descrição, ação e coração."}


def test_overwrite_keeps_created_at_and_hit_counts_and_replaces_the_rest(redis_client):
    memory = ProductMemory()
    first = memory.save_product_data(PRODUCT, FIRST, tokens_prompt=100, tokens_completion=50, ttl=3600)
    caches["memory_l1"].clear()
    assert memory.get_product_data("UPS-1") is not None
    flush_counters()
    before = ProductMemoryEntry.objects.get(product_id="UPS-1")
    assert before.hit_count == 1

    second = memory.save_product_data(PRODUCT, SECOND, tokens_prompt=300, tokens_completion=200, ttl=7200)

    row = ProductMemoryEntry.objects.get(product_id="UPS-1")
    assert ProductMemoryEntry.objects.filter(product_id="UPS-1").count() == 1
    assert row.created_at == before.created_at
    assert second.created_at == first.created_at == before.created_at.timestamp()
    assert row.hit_count == 1 and row.tokens_saved == 150 and row.last_hit_at == before.last_hit_at
    assert row.payload == SECOND and row.title == "Garrafa Térmica Stanley 1 L"
    assert (row.tokens_prompt, row.tokens_completion) == (300, 200)
    assert row.updated_at > before.updated_at
    assert row.expires_at > before.expires_at + timedelta(minutes=59)
    assert second.expires_at == row.expires_at.timestamp()


def test_a_save_is_one_sql_statement_and_a_read_from_l3_is_one(no_redis):
    memory = ProductMemory()
    with CaptureQueriesContext(connection) as queries:
        memory.save_product_data(PRODUCT, FIRST)
    writes = [q["sql"] for q in queries.captured_queries if "memory_productmemoryentry" in q["sql"]]
    # The row and its new version (and the retention's delete) in one statement.
    assert len(writes) == 1 and writes[0].startswith("WITH saved AS ( INSERT INTO")
    assert "memory_contentversion" in writes[0]
    caches["memory_l1"].clear()
    with CaptureQueriesContext(connection) as queries:
        hit = memory.get_product_data("UPS-1")
    reads = [q for q in queries.captured_queries if "memory_productmemoryentry" in q["sql"]]
    assert hit.tier == "l3" and hit.content == FIRST and len(reads) == 1
    assert not any("memory_contentversion" in q["sql"] for q in queries.captured_queries)  # a hit reads no version
    assert hit.created_at.tzinfo is not None
    assert abs(hit.created_at - datetime.now(dt_timezone.utc)) < timedelta(minutes=1)


def test_l3_batch_read_returns_every_stored_product_and_nothing_else(no_redis):
    memory = ProductMemory()
    for n in range(5):
        memory.save_product_data({"sku": f"B-{n}"}, FIRST, tokens_prompt=n)
    caches["memory_l1"].clear()
    found = memory.l3.get_many([(f"B-{n}", "main_content") for n in range(7)])
    assert sorted(pid for pid, _ in found) == [f"B-{n}" for n in range(5)]
    assert found[("B-3", "main_content")].tokens_prompt == 3
    assert found[("B-3", "main_content")].payload == FIRST


def test_the_usage_details_are_written_replaced_and_read_back(no_redis):
    memory = ProductMemory()
    memory.save_product_data(PRODUCT, FIRST, tokens_prompt=1000, tokens_completion=400, tokens_cached=768,
                             tokens_reasoning=192)
    second = memory.save_product_data(PRODUCT, SECOND, tokens_prompt=1000, tokens_completion=300, tokens_cached=512)
    row = ProductMemoryEntry.objects.get(product_id="UPS-1")
    assert (row.tokens_cached, row.tokens_reasoning) == (512, 0)
    assert (second.tokens_cached, second.tokens_reasoning) == (512, 0)
    read = memory.l3.get_many([("UPS-1", "main_content")])[("UPS-1", "main_content")]
    assert read == second


def test_the_orm_path_of_the_other_databases_carries_the_usage_details(no_redis, monkeypatch):
    """SQLite's path (``update_or_create`` and the ORM read), taken here on PostgreSQL."""
    monkeypatch.setattr(connection, "vendor", "sqlite")
    memory = ProductMemory()
    with CaptureQueriesContext(connection) as queries:
        saved = memory.save_product_data(PRODUCT, FIRST, tokens_prompt=1000, tokens_completion=400,
                                         tokens_cached=768, tokens_reasoning=192)
    assert not any("ON CONFLICT" in q["sql"] for q in queries.captured_queries)
    assert (saved.tokens_cached, saved.tokens_reasoning) == (768, 192)
    read = memory.l3.get_many([("UPS-1", "main_content")])[("UPS-1", "main_content")]
    assert read == saved


def test_a_row_written_without_the_usage_details_gets_zero_from_the_database(no_redis):
    """Raw SQL that predates the columns (bench/, other tools) still inserts: they have a database default."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO memory_productmemoryentry (product_id, kind, payload, source_data, input_fingerprint,"
            " generator_version, tokens_prompt, tokens_completion, hit_count, tokens_saved, created_at,"
            " updated_at, expires_at) VALUES ('RAW-1', 'main_content', '{}', '{}', '', 'v', 5, 5, 0, 0, now(),"
            " now(), now() + interval '1 day')"
        )
    row = ProductMemoryEntry.objects.get(product_id="RAW-1")
    assert (row.tokens_cached, row.tokens_reasoning) == (0, 0)
