"""Honest accounting: what failed or discarded attempts cost reaches tokens_wasted, everywhere it is shown."""
import pytest
from django.test import override_settings

from memory.engine.counters import flush_counters
from memory.models import ProductMemoryEntry
from memory.providers import OpenAIProvider
from memory.services.generation import generate_batch, generate_product
from memory.services import stats as stats_module
from memory.services.stats import memory_stats
from tests.providers.fake_openai import Reply, completion, error

PRODUCT = {"sku": "W-1", "title": "Garrafa Térmica", "brand": "Stanley"}
FAST = {"retry-after-ms": "5"}


def provider(server, **kwargs):
    return OpenAIProvider(base_url=server.url, api_key="sk-test", model="gpt-4o-mini", timeout=5.0,
                          max_attempts=kwargs.pop("max_attempts", 3), **kwargs)


def malformed(prompt=100, answer=50):
    return Reply(body=completion("{não é json", prompt_tokens=prompt, completion_tokens=answer))


@pytest.mark.django_db
def test_a_failed_generation_records_every_attempt_it_paid_for(fake_openai):
    fake_openai.script(then=malformed())
    outcome = generate_product(PRODUCT, provider=provider(fake_openai))
    assert outcome.status == "failed" and fake_openai.calls == 3
    assert outcome.tokens_wasted == 3 * 150 and outcome.tokens_spent == 0
    assert not ProductMemoryEntry.objects.exists()
    stats = memory_stats()
    assert stats["tokens_wasted"] == 450 and stats["tokens_spent"] == 0


@pytest.mark.django_db
def test_a_discarded_answer_before_a_good_one_is_wasted_not_spent(fake_openai):
    fake_openai.script(malformed(), Reply(body=completion(prompt_tokens=800, completion_tokens=400)))
    outcome = generate_product(PRODUCT, provider=provider(fake_openai))
    assert outcome.status == "generated"
    assert (outcome.tokens_spent, outcome.tokens_wasted) == (1200, 150)
    stats = memory_stats()
    assert (stats["tokens_spent"], stats["tokens_wasted"]) == (1200, 150)


@pytest.mark.django_db
def test_a_truncated_answer_is_wasted_and_asked_once(fake_openai):
    fake_openai.script(then=Reply(body=completion('{"title": "Garr', finish_reason="length",
                                                  prompt_tokens=700, completion_tokens=2048)))
    outcome = generate_product(PRODUCT, provider=provider(fake_openai))
    assert outcome.status == "failed" and "LLM_MAX_TOKENS" in outcome.error
    assert fake_openai.calls == 1 and outcome.tokens_wasted == 2748
    assert memory_stats()["tokens_wasted"] == 2748


@pytest.mark.django_db
def test_errors_without_usage_waste_nothing(fake_openai):
    fake_openai.script(then=error(503, headers=FAST))
    outcome = generate_product(PRODUCT, provider=provider(fake_openai))
    assert outcome.status == "failed" and outcome.tokens_wasted == 0
    assert memory_stats()["tokens_wasted"] == 0


@pytest.mark.django_db
def test_wasted_tokens_survive_the_counter_flush_and_add_up_in_a_batch(fake_openai):
    fake_openai.script(then=malformed(10, 5))
    result = generate_batch([{"sku": "W-1"}, {"sku": "W-2"}], provider=provider(fake_openai, max_attempts=1))
    assert result.summary()["tokens_wasted"] == 30
    flush_counters()
    assert memory_stats()["tokens_wasted"] == 30


def test_cached_and_reasoning_tokens_are_read_from_the_usage_details(fake_openai):
    fake_openai.script(Reply(body=completion(usage_extra={
        "prompt_tokens_details": {"cached_tokens": 512},
        "completion_tokens_details": {"reasoning_tokens": 64},
    })))
    result = provider(fake_openai).generate(PRODUCT)
    assert (result.tokens_cached, result.tokens_reasoning) == (512, 64)
    fake_openai.script(Reply(body=completion()))
    assert (provider(fake_openai).generate(PRODUCT).tokens_cached,) == (0,)


@pytest.mark.django_db
def test_tokens_wasted_reach_the_stats_endpoint_the_dashboard_and_metrics(fake_openai, api, admin_client):
    fake_openai.script(then=malformed(1000, 234))
    generate_product(PRODUCT, provider=provider(fake_openai, max_attempts=1))
    assert api.get("/api/memory/stats/").json()["tokens_wasted"] == 1234
    page = admin_client.get("/memory/dashboard/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert 'data-card="tokens_wasted"' in page and "Tokens desperdiçados" in page
    with override_settings(METRICS_ALLOW="anonymous"):
        metrics = admin_client.get("/metrics").content.decode()
    assert "beecatalog_memory_tokens_wasted_total" in metrics


@pytest.mark.django_db
def test_a_model_without_prices_shows_its_cost_as_unknown_with_a_warning(api, admin_client, caplog):
    stats_module._unpriced_models_warned.clear()
    with override_settings(LLM_PROVIDER="openai", LLM_MODEL="modelo-sem-preco"):
        with caplog.at_level("WARNING", logger="memory"):
            assert memory_stats()["estimated_cost_saved"] is None
            assert api.get("/api/memory/stats/").json()["estimated_cost_saved"] is None
        page = admin_client.get("/memory/dashboard/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "modelo-sem-preco sem preço em LLM_PRICES" in caplog.text
    assert caplog.text.count("sem preço em LLM_PRICES") == 1  # once per model and process
    assert "desconhecido" in page and "US$" not in page


@pytest.mark.django_db
def test_llm_prices_prices_a_model_the_defaults_lack(settings):
    settings.LLM_PROVIDER, settings.LLM_MODEL = "openai", "meu-modelo"
    settings.LLM_PRICES = {**settings.LLM_PRICES, "meu-modelo": (1.0, 0.5, 2.0)}
    assert memory_stats()["estimated_cost_saved"] == 0.0
