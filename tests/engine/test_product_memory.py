"""The three tiers: fall-through, fill, expiry, staleness, delete and clear."""
import dataclasses
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.test import override_settings
from django.utils import timezone

from memory.models import ProductMemoryEntry
from memory.engine.memory import ProductMemory, forget_cached_stats
from memory.engine.tiers import cache_key

pytestmark = pytest.mark.django_db

PRODUCT = {"sku": "ABC123", "title": "Tênis de Corrida Leve", "brand": "Olympikus"}
CONTENT = {
    "title": "Tênis de Corrida Leve Olympikus",
    "description": "Amortecimento e leveza para o dia a dia.",
    "bullet_points": ["Leve", "Respirável", "Amortecido"],
    "seo_keywords": ["tênis", "corrida"],
}


def l2_value(redis_client, product_id="ABC123", kind="main_content"):
    return caches["memory_l2"].get(cache_key((product_id, kind)))


def l1_value(product_id="ABC123", kind="main_content"):
    snap = caches["memory_l1"].get(cache_key((product_id, kind)))
    return snap and snap.to_dict()


def save(memory=None, product=PRODUCT, **kwargs):
    memory = memory or ProductMemory()
    kwargs.setdefault("tokens_prompt", 1000)
    kwargs.setdefault("tokens_completion", 500)
    return memory.save_product_data(product, CONTENT, **kwargs)


def test_save_writes_every_tier(redis_client):
    save()
    row = ProductMemoryEntry.objects.get(product_id="ABC123")
    assert row.payload == CONTENT
    assert row.source_data == PRODUCT
    assert row.title == CONTENT["title"]
    assert row.tokens_spent == 1500
    assert l2_value(redis_client)["payload"] == CONTENT
    assert l1_value()["payload"] == CONTENT


def test_redis_ttl_is_time_left_to_expiry(redis_client):
    save(ttl=3600)
    key = caches["memory_l2"].client.make_key(cache_key(("ABC123", "main_content")))
    assert 3590_000 < redis_client.pttl(key) <= 3600_000


def test_a_read_after_a_save_is_an_l1_hit_with_its_savings():
    save()
    hit = ProductMemory().get_product_data(PRODUCT)
    assert hit.tier == "l1"
    assert hit.content == CONTENT
    assert hit.tokens_saved == 1500


def test_a_caller_changing_the_content_it_got_changes_nothing_stored():
    save()
    memory = ProductMemory()
    first = memory.get_product_data("ABC123")
    first.content["title"] = "alterado pelo chamador"
    first.content["bullet_points"].append("extra")
    again = memory.get_product_data("ABC123")
    assert again.tier == first.tier
    assert again.content == CONTENT


def test_l2_hit_fills_l1(redis_client):
    save()
    caches["memory_l1"].clear()
    hit = ProductMemory().get_product_data("ABC123")
    assert hit.tier == "l2"
    assert l1_value()["payload"] == CONTENT
    assert ProductMemory().get_product_data("ABC123").tier == "l1"


def test_l3_hit_fills_l2_and_l1(redis_client):
    save()
    caches["memory_l1"].clear()
    redis_client.flushdb()
    hit = ProductMemory().get_product_data(PRODUCT)
    assert hit.tier == "l3"
    assert hit.content == CONTENT
    assert l2_value(redis_client)["payload"] == CONTENT
    assert l1_value()["payload"] == CONTENT


def test_product_id_string_and_product_data_find_the_same_entry():
    save()
    assert ProductMemory().get_product_data("ABC123").content == CONTENT
    assert ProductMemory().exists({"sku": " ABC123 ", "title": "Tênis de Corrida Leve", "brand": "Olympikus"})


def test_unknown_product_is_a_miss():
    assert ProductMemory().get_product_data({"sku": "NOPE"}) is None
    assert ProductMemory().exists("NOPE") is False


def test_expired_entry_is_never_served_from_any_tier(redis_client):
    save()
    ProductMemoryEntry.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    # The cached copies still say "valid for 90 days": make them expired too.
    key = cache_key(("ABC123", "main_content"))
    past = timezone.now().timestamp() - 1
    caches["memory_l1"].set(key, dataclasses.replace(caches["memory_l1"].get(key), expires_at=past), timeout=60)
    caches["memory_l2"].set(key, {**caches["memory_l2"].get(key), "expires_at": past}, timeout=60)
    lookup = ProductMemory().lookup(PRODUCT)
    assert lookup.hit is None
    assert lookup.status == "expired"


def test_changed_product_attribute_makes_entry_stale():
    save()
    changed = {**PRODUCT, "title": "Tênis de Corrida Leve 2"}
    lookup = ProductMemory().lookup(changed)
    assert lookup.hit is None
    assert lookup.status == "stale"
    # asking by product_id alone does not know the data, so it still serves it
    assert ProductMemory().get_product_data("ABC123") is not None


def test_other_generator_version_makes_entry_stale(redis_client):
    save(generator_version="openai:gpt-4o-mini:p0")
    assert ProductMemory().get_product_data(PRODUCT) is None
    assert ProductMemory(generator_version="openai:gpt-4o-mini:p0").get_product_data(PRODUCT) is not None


def test_regenerated_content_replaces_cached_copies(redis_client):
    save()
    new_content = {**CONTENT, "title": "Novo título"}
    ProductMemory().save_product_data(PRODUCT, new_content)
    assert ProductMemoryEntry.objects.count() == 1
    assert ProductMemory().get_product_data(PRODUCT).content["title"] == "Novo título"
    assert l2_value(redis_client)["payload"]["title"] == "Novo título"


def test_delete_removes_every_tier(redis_client):
    save()
    assert ProductMemory().delete_product("ABC123") is True
    assert not ProductMemoryEntry.objects.exists()
    assert l2_value(redis_client) is None
    assert l1_value() is None
    assert ProductMemory().get_product_data(PRODUCT) is None
    assert ProductMemory().delete_product("ABC123") is False


def test_clear_removes_every_tier_and_every_kind(redis_client):
    save()
    save(product={"sku": "XYZ789", "title": "Caneca"})
    save(memory=ProductMemory(kind="seo_only"))
    assert ProductMemory().clear() == 3
    assert not ProductMemoryEntry.objects.exists()
    assert not [k for k in redis_client.keys("*") if b"entry:" in k]
    assert l1_value() is None
    assert l1_value("XYZ789") is None


def test_kinds_are_separate_entries():
    save()
    assert ProductMemory(kind="seo_only").get_product_data("ABC123") is None


def test_list_products_searches_product_id_and_title():
    save()
    save(product={"sku": "XYZ789", "title": "Caneca"}, ttl=10)
    ProductMemory().save_product_data({"sku": "MUG-2"}, {**CONTENT, "title": "Caneca Térmica Inox"})
    page = ProductMemory().list_products(limit=50)
    assert page["count"] == 3
    assert page["results"][0]["product_id"] == "MUG-2"
    found = ProductMemory().list_products(search="térmica")
    assert [r["product_id"] for r in found["results"]] == ["MUG-2"]
    assert ProductMemory().list_products(search="xyz7")["results"][0]["status"] == "active"
    assert len(ProductMemory().list_products(limit=1, offset=1)["results"]) == 1


def test_stats_counts_entries_hits_misses_and_tokens():
    save()
    save(product={"sku": "OLD"}, generator_version="template:template:p0")
    save(product={"sku": "GONE"})
    ProductMemoryEntry.objects.filter(product_id="GONE").update(expires_at=timezone.now() - timedelta(days=1))
    memory = ProductMemory()
    memory.get_product_data(PRODUCT)
    memory.get_product_data(PRODUCT)
    memory.get_product_data({"sku": "MISSING"})
    stats = memory.stats()
    assert stats["total_entries"] == 3
    assert stats["active_entries"] == 1
    assert stats["stale_entries"] == 1
    assert stats["expired_entries"] == 1
    assert stats["hits"] == 2
    assert stats["misses"] == 1
    assert stats["hit_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert stats["tokens_spent"] == 4500
    assert stats["tokens_saved"] == 3000


def test_hit_and_save_log_in_portuguese(caplog):
    with caplog.at_level("INFO", logger="memory"):
        save()
        ProductMemory().get_product_data(PRODUCT)
    assert "Salvando produto ABC123 na memória para reutilização futura" in caplog.text
    assert "Produto ABC123 encontrado na memória - economia de 1500 tokens" in caplog.text


def add_row_behind_the_memory(product_id="XYZ789"):
    """A row the memory's writes know nothing of: only a new count can see it."""
    ProductMemoryEntry.objects.create(
        product_id=product_id, payload=CONTENT, input_fingerprint="f" * 64,
        generator_version=ProductMemory().generator_version, expires_at=timezone.now() + timedelta(days=1),
    )


@pytest.mark.parametrize("fixture", ["redis_client", "no_redis"])
def test_entry_counts_in_stats_are_reused_for_the_configured_seconds(request, fixture):
    request.getfixturevalue(fixture)
    # Inside the test, not pytest-django's ``settings``: that one would be restored after the
    # fixture's own override of CACHES, and put the fixture's CACHES back for later tests.
    with override_settings(MEMORY_STATS_CACHE_SECONDS=60):
        forget_cached_stats()
        save()
        assert ProductMemory().stats()["total_entries"] == 1
        add_row_behind_the_memory()
        ProductMemory().get_product_data(PRODUCT)
        stats = ProductMemory().stats()
        assert stats["total_entries"] == 1  # the table scan is not repeated within the window
        assert stats["hits"] == 1  # counters are always current
        save(product={"sku": "QWE456", "title": "Mouse"})  # a write through the memory: counted again
        assert ProductMemory().stats()["total_entries"] == 3


def test_with_redis_down_every_stats_call_counts(dead_redis):
    """A process cannot hear the others' writes while Redis is away: it keeps no figures."""
    with override_settings(MEMORY_STATS_CACHE_SECONDS=60):
        save()
        assert ProductMemory().stats()["total_entries"] == 1
        add_row_behind_the_memory()
        assert ProductMemory().stats()["total_entries"] == 2


def test_with_redis_one_scan_serves_every_process(settings, redis_client):
    """Another process has an empty process cache: it finds the figures in Redis."""
    settings.MEMORY_STATS_CACHE_SECONDS = 60
    forget_cached_stats()
    save()
    assert ProductMemory().stats()["total_entries"] == 1
    add_row_behind_the_memory()
    caches["default"].clear()  # what another process starts with
    assert ProductMemory().stats()["total_entries"] == 1


def test_clear_deletes_redis_copies_in_batches(redis_client, monkeypatch):
    from memory.engine.tiers import RedisTier

    monkeypatch.setattr(RedisTier, "DELETE_BATCH", 2)
    for i in range(5):
        save(product={"sku": f"BATCH{i}"})
    redis_client.set("not-an-entry", "kept")  # other keys in the database are left alone
    assert ProductMemory().clear() == 5
    assert not [k for k in redis_client.keys("*") if b"entry:" in k]
    assert redis_client.get("not-an-entry") == b"kept"
