"""Cached prompt tokens and reasoning tokens: read from the provider's usage, stored on the entry,
carried by every tier, the API and /metrics, and priced (cached tokens at the cached price)."""
import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.test import override_settings
from prometheus_client import REGISTRY

from memory.engine.memory import ProductMemory
from memory.models import ProductMemoryEntry
from memory.providers import OpenAIProvider
from memory.providers.pricing import estimate_cost
from memory.services import stats as stats_module
from memory.services.generation import generate_product
from memory.services.stats import memory_stats
from tests.providers.fake_openai import Reply, completion

pytestmark = pytest.mark.django_db

PRODUCT = {"sku": "USG-1", "title": "Garrafa Térmica", "brand": "Stanley"}
KEY = ("USG-1", "main_content")
DETAILS = {"prompt_tokens_details": {"cached_tokens": 768}, "completion_tokens_details": {"reasoning_tokens": 192}}


def provider(server):
    return OpenAIProvider(base_url=server.url, api_key="sk-test", model="gpt-4o-mini", timeout=5.0, max_attempts=2)


def with_details(**kwargs):
    return Reply(body=completion(prompt_tokens=1000, completion_tokens=400, usage_extra=DETAILS, **kwargs))


def tokens(snapshot):
    return (snapshot.tokens_prompt, snapshot.tokens_completion, snapshot.tokens_cached, snapshot.tokens_reasoning)


def metric(name):
    return REGISTRY.get_sample_value(name) or 0.0


def test_the_usage_details_of_a_generation_are_stored_on_the_entry_and_read_back_from_every_tier(
        fake_openai, redis_client):
    cached_before, reasoning_before = (metric("beecatalog_memory_tokens_cached_total"),
                                       metric("beecatalog_memory_tokens_reasoning_total"))
    fake_openai.script(with_details())
    outcome = generate_product(PRODUCT, provider=provider(fake_openai))
    assert outcome.status == "generated" and outcome.tokens_spent == 1400  # reasoning is inside completion

    row = ProductMemoryEntry.objects.get(product_id="USG-1")
    assert (row.tokens_prompt, row.tokens_completion, row.tokens_cached, row.tokens_reasoning) == (1000, 400, 768, 192)
    memory = ProductMemory(generator_version=provider(fake_openai).generator_version)
    caches["memory_l1"].clear()
    from_l2 = memory.get_product_data(PRODUCT, count_hit=False)
    assert from_l2.tier == "l2" and tokens(from_l2.snapshot) == (1000, 400, 768, 192)
    caches["memory_l1"].clear()
    memory.l2.delete_many([KEY])
    from_l3 = memory.get_product_data(PRODUCT, count_hit=False)
    assert from_l3.tier == "l3" and tokens(from_l3.snapshot) == (1000, 400, 768, 192)
    assert metric("beecatalog_memory_tokens_cached_total") - cached_before == 768
    assert metric("beecatalog_memory_tokens_reasoning_total") - reasoning_before == 192


def test_a_regeneration_replaces_the_details_and_a_provider_without_them_stores_zero(fake_openai):
    fake_openai.script(with_details(), Reply(body=completion(prompt_tokens=900, completion_tokens=300)))
    generate_product(PRODUCT, provider=provider(fake_openai))
    generate_product(PRODUCT, force_regenerate=True, provider=provider(fake_openai))
    row = ProductMemoryEntry.objects.get(product_id="USG-1")
    assert (row.tokens_prompt, row.tokens_completion, row.tokens_cached, row.tokens_reasoning) == (900, 300, 0, 0)


def test_the_get_endpoint_shows_the_details(fake_openai, api, settings):
    settings.LLM_PROVIDER, settings.LLM_MODEL = "openai", "gpt-4o-mini"  # the entry is fresh for the API
    fake_openai.script(with_details())
    generate_product(PRODUCT, provider=provider(fake_openai))
    data = api.post("/api/memory/get/", {"product_id": "USG-1"}, format="json").json()
    assert (data["tokens_prompt"], data["tokens_completion"]) == (1000, 400)
    assert (data["tokens_cached"], data["tokens_reasoning"]) == (768, 192)
    assert data["tokens_saved"] == 1400


def test_a_save_refuses_detail_counts_larger_than_the_counts_they_are_part_of():
    memory = ProductMemory()
    content = {"title": "T", "description": "D"}
    with pytest.raises(ValueError, match="^tokens_cached: parte de tokens_prompt, não pode passar de 10"):
        memory.save_product_data({"sku": "X-1"}, content, tokens_prompt=10, tokens_cached=11)
    with pytest.raises(ValueError, match="^tokens_reasoning: parte de tokens_completion"):
        memory.save_product_data({"sku": "X-1"}, content, tokens_completion=5, tokens_reasoning=6)
    with pytest.raises(ValueError, match="^tokens_cached: não pode ser negativo"):
        memory.save_product_data({"sku": "X-1"}, content, tokens_cached=-1)
    assert not ProductMemoryEntry.objects.exists()


PRICES = {"priced-model": (1.0, 0.25, 2.0)}  # USD per 1M tokens: prompt, cached prompt, completion


def test_the_cost_saved_prices_cached_prompt_tokens_at_the_cached_price(settings, redis_client):
    settings.LLM_PROVIDER, settings.LLM_MODEL = "openai", "priced-model"
    settings.LLM_PRICES = PRICES
    memory = ProductMemory()
    memory.save_product_data(PRODUCT, {"title": "T", "description": "D"}, tokens_prompt=1000, tokens_cached=800,
                             tokens_completion=500, tokens_reasoning=200)
    memory.get_product_data(PRODUCT)
    memory.get_product_data(PRODUCT)
    stats = memory_stats()
    assert stats["tokens_saved"] == 3000
    # 3,000 tokens split as the entry's: 2,000 prompt (1,600 of them cached) and 1,000 completion
    # (its reasoning tokens inside): 400 × 1.0 + 1,600 × 0.25 + 1,000 × 2.0 per million.
    assert stats["estimated_cost_saved"] == 0.0028
    assert estimate_cost(2000, 1000, "priced-model", PRICES, tokens_cached=1600) == Decimal("0.0028")
    # the same tokens without a cache would have cost 2,000 × 1.0 + 1,000 × 2.0 per million
    assert estimate_cost(2000, 1000, "priced-model", PRICES) == Decimal("0.0040")


def test_manage_memory_stats_shows_an_unpriced_models_cost_as_unknown_with_a_warning(settings, caplog):
    stats_module._unpriced_models_warned.clear()
    settings.LLM_PROVIDER, settings.LLM_MODEL = "openai", "modelo-sem-preco"
    out = StringIO()
    with caplog.at_level("WARNING", logger="memory"):
        call_command("manage_memory", "stats", stdout=out)
    assert "desconhecido (modelo sem preço em LLM_PRICES)" in out.getvalue() and "US$" not in out.getvalue()
    assert "Modelo modelo-sem-preco sem preço em LLM_PRICES: custo estimado desconhecido" in caplog.text


def test_generate_content_shows_an_unpriced_models_cost_as_unknown_with_a_warning(fake_openai, settings, tmp_path,
                                                                                   caplog):
    stats_module._unpriced_models_warned.clear()
    settings.LLM_PROVIDER, settings.LLM_MODEL = "openai", "modelo-sem-preco"
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = fake_openai.url, "sk-test"
    settings.LLM_MAX_CONCURRENCY = 1  # generated in this thread, inside the test's transaction
    catalog = tmp_path / "c.jsonl"
    catalog.write_text('{"sku": "A1", "title": "Caneca"}\n', encoding="utf-8")
    out = StringIO()
    with caplog.at_level("WARNING", logger="memory"):
        call_command("generate_content", str(catalog), stdout=out, stderr=StringIO())
        with override_settings(LLM_PRICES={"modelo-sem-preco": (1.0, 0.5, 2.0)}):
            call_command("generate_content", str(catalog), "--json", stdout=(priced := StringIO()), stderr=StringIO())
    assert "desconhecido" in out.getvalue() and "US$" not in out.getvalue()
    assert caplog.text.count("Modelo modelo-sem-preco sem preço em LLM_PRICES") == 1
    # priced, the reused product's 812 prompt and 455 completion tokens cost 812 × 1.0 + 455 × 2.0 per million
    assert json.loads(priced.getvalue())["estimated_cost_saved_usd"] == 0.0017
