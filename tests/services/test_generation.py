"""Generation in front of the memory: reuse, staleness, failures, batches, single flight, tasks."""
import threading
import time

import pytest
from django.core.cache import caches

from memory.engine.counters import flush_counters
from memory.services.generation import (
    InvalidProductData, generate_batch, generate_product, validate_product_data,
)
from memory.engine.locks import product_lock
from memory.models import DailyStats, ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.providers import GenerationError, ProviderUnavailable, TemplateProvider
from memory.tasks import batch_generate_main_content_task, generate_main_content_task
from tests.helpers import generations_at_once
from tests.providers.fake_openai import Reply

PRODUCT = {"sku": "ABC123", "title": "Fone Bluetooth", "brand": "JBL"}


class CountingProvider(TemplateProvider):
    """The template writer, counting its calls, optionally slow or failing."""

    def __init__(self, delay=0.0, fail=False, model="template", error=GenerationError):
        self.calls = 0
        self.error = error
        self.delay = delay
        self.fail = fail
        self.model = model
        self._lock = threading.Lock()

    def generate(self, product_data):
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise self.error("provedor fora do ar")
        return super().generate(product_data)


@pytest.mark.django_db
def test_second_request_is_served_from_memory_with_savings():
    provider = CountingProvider()
    first = generate_product(PRODUCT, provider=provider)
    second = generate_product(PRODUCT, provider=provider)
    assert (first.status, first.from_cache) == ("generated", False)
    assert (second.status, second.from_cache) == ("reused", True)
    assert second.tokens_saved == first.tokens_spent > 0
    assert provider.calls == 1


@pytest.mark.django_db
def test_prompt_version_change_regenerates(monkeypatch):
    provider = CountingProvider()
    generate_product(PRODUCT, provider=provider)
    monkeypatch.setattr("memory.providers.prompts.PROMPT_VERSION", "p-next")
    outcome = generate_product(PRODUCT, provider=provider)
    assert outcome.status == "regenerated"
    assert provider.calls == 2
    assert ProductMemoryEntry.objects.get().generator_version.endswith(":p-next")


@pytest.mark.django_db
def test_model_change_regenerates():
    generate_product(PRODUCT, provider=CountingProvider(model="modelo-a"))
    provider_b = CountingProvider(model="modelo-b")
    assert generate_product(PRODUCT, provider=provider_b).status == "regenerated"
    assert provider_b.calls == 1


@pytest.mark.django_db
def test_changed_product_attribute_regenerates():
    provider = CountingProvider()
    generate_product(PRODUCT, provider=provider)
    outcome = generate_product({**PRODUCT, "color": "Preto"}, provider=provider)
    assert outcome.status == "regenerated"
    assert provider.calls == 2
    assert ProductMemoryEntry.objects.get().source_data["color"] == "Preto"


@pytest.mark.django_db
def test_force_regenerate_calls_the_provider_again():
    provider = CountingProvider()
    generate_product(PRODUCT, provider=provider)
    assert generate_product(PRODUCT, force_regenerate=True, provider=provider).status == "forced"
    assert provider.calls == 2


@pytest.mark.django_db
def test_failed_generation_saves_nothing_and_counts_no_savings():
    outcome = generate_product(PRODUCT, provider=CountingProvider(fail=True))
    assert outcome.status == "failed"
    assert "provedor fora do ar" in outcome.error
    assert not ProductMemoryEntry.objects.exists()
    flush_counters()
    assert DailyStats.objects.filter(generations__gt=0).count() == 0
    assert ProductMemory().stats()["tokens_saved"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("error, failure", [
    (ProviderUnavailable, "provider_unavailable"), (GenerationError, "provider_error"),
])
def test_a_failed_outcome_says_whether_the_provider_was_unavailable(error, failure):
    outcome = generate_product(PRODUCT, provider=CountingProvider(fail=True, error=error))
    assert outcome.summary() == {"product_id": "ABC123", "from_cache": False, "status": "failed", "tokens_spent": 0,
                                 "tokens_saved": 0, "tokens_wasted": 0, "error": "provedor fora do ar",
                                 "failure": failure}


@pytest.mark.parametrize("product, message", [
    ({"sku": "A", "title": "t" * 501}, "product_data: title: no máximo 500 caracteres"),
    ({"sku": "A", "nome": "t" * 501}, "product_data: nome: no máximo 500 caracteres"),
    ({"sku": "A", "title": "t", "marca": "m" * 201}, "product_data: marca: no máximo 200 caracteres"),
    ({"sku": "A", "title": "t", "description": "d" * 5001}, "product_data: description: no máximo 5000 caracteres"),
    ({"sku": "A", "title": "t", "price": 10 ** 300}, "product_data: price: no máximo 200 caracteres"),
    ({"sku": "A", "title": "t\x00"}, "product_data: contém o caractere nulo"),
    ({"sku": "A", "title": "t", "peso": float("nan")}, "product_data: contém NaN ou Infinity"),
])
def test_validate_product_data_refuses_what_no_generation_starts_from(product, message):
    with pytest.raises(InvalidProductData) as excinfo:
        validate_product_data(product)
    assert str(excinfo.value).startswith(message)


def test_validate_product_data_accepts_fields_at_their_limits_and_changes_nothing():
    product = {"sku": "A", "title": "t" * 500, "brand": "b" * 200, "description": "d" * 5000, "price": 19.9,
               "attributes": {"voltagem": "v" * 1000}, "size": 42}
    assert validate_product_data(product) is product


@pytest.mark.django_db
def test_generation_refuses_product_data_before_calling_the_provider():
    provider = CountingProvider()
    with pytest.raises(InvalidProductData, match="title: no máximo 500 caracteres"):
        generate_product({"sku": "LONG", "title": "t" * 6000}, force_regenerate=True, provider=provider)
    assert provider.calls == 0 and not ProductMemoryEntry.objects.exists()


@pytest.mark.django_db
def test_batch_fails_only_the_product_whose_data_is_refused():
    provider = CountingProvider()
    result = generate_batch([{"sku": "LONG", "title": "t" * 6000}, PRODUCT], provider=provider)
    assert [(o.product_id, o.status) for o in result.outcomes] == [("LONG", "failed"), ("ABC123", "generated")]
    assert result.outcomes[0].error == "product_data: title: no máximo 500 caracteres"
    assert provider.calls == 1


@pytest.mark.django_db
def test_batch_checks_once_generates_only_misses_and_logs(caplog):
    provider = CountingProvider()
    products = [{"sku": f"B{i}", "title": f"Produto {i}"} for i in range(10)]
    for product in products[:8]:
        generate_product(product, provider=provider)
    provider.calls = 0
    with caplog.at_level("INFO", logger="memory"):
        result = generate_batch(products + [{"nada": 1}], batch_size=3, provider=provider)
    summary = result.summary()
    assert (summary["total"], summary["reused"], summary["generated"], summary["failed"]) == (11, 8, 2, 1)
    assert provider.calls == 2
    assert "Processamento em lote: 8/11 produtos reutilizados da memória" in caplog.text
    assert summary["products"][10]["error"].startswith("product_data")


@pytest.mark.django_db
def test_batch_with_a_product_listed_twice_generates_it_once():
    provider = CountingProvider()
    result = generate_batch([PRODUCT, dict(PRODUCT)], provider=provider)
    assert [o.status for o in result.outcomes] == ["generated", "reused"]
    assert provider.calls == 1


@pytest.mark.django_db
def test_tasks_run_eagerly_and_return_json_summaries():
    single = generate_main_content_task.delay(PRODUCT).get()
    assert single["product_id"] == "ABC123" and single["from_cache"] is False
    assert single["content"]["title"]
    batch = batch_generate_main_content_task.delay([PRODUCT, {"sku": "XYZ789", "title": "Caneca"}], batch_size=10).get()
    assert [p["from_cache"] for p in batch["products"]] == [True, False]
    assert batch["tokens_saved"] == single["tokens_spent"]
    forced = generate_main_content_task.delay(PRODUCT, force_regenerate=True).get()
    assert forced["from_cache"] is False


@pytest.mark.django_db
def test_batch_task_refuses_bad_arguments():
    with pytest.raises(ValueError, match="products_list"):
        batch_generate_main_content_task.delay({"sku": "A"}).get()
    with pytest.raises(ValueError, match="batch_size"):
        batch_generate_main_content_task.delay([PRODUCT], batch_size=0).get()


def _concurrent_callers(n, provider):
    barrier = threading.Barrier(n)
    outcomes = []

    def call():
        from django.db import connection

        try:
            barrier.wait()
            outcomes.append(generate_product(PRODUCT, provider=provider))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("redis_state", ["redis_client", "dead_redis"])
def test_twenty_concurrent_callers_cause_one_generation(redis_state, request):
    request.getfixturevalue(redis_state)
    provider = CountingProvider(delay=0.3)
    outcomes = _concurrent_callers(20, provider)
    assert provider.calls == 1
    assert sorted(o.status for o in outcomes) == ["generated"] + ["reused"] * 19
    assert ProductMemoryEntry.objects.count() == 1


@pytest.mark.django_db
def test_a_crashed_lock_holder_blocks_no_longer_than_the_lock_timeout(redis_client):
    # A holder that died without releasing: its Redis key is left behind with its TTL.
    lock = redis_client.lock(
        caches["memory_l2"].client.make_key("lock:generate:main_content:" + _lock_suffix("ABC123")), timeout=0.5
    )
    assert lock.acquire(blocking=False)
    started = time.monotonic()
    with product_lock("ABC123", "main_content", timeout=5) as acquired:
        waited = time.monotonic() - started
    assert acquired
    assert 0.3 < waited < 3


def _lock_suffix(product_id):
    import hashlib

    return hashlib.sha256(product_id.encode()).hexdigest()[:32]




@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_processes_asking_during_a_generation_longer_than_the_lock_timeout_make_one_call(
    fake_openai, process_env, redis_client
):
    # 3 s per answer, a 1 s lock TTL: without renewal the lock would expire under the first
    # generation and the second process would generate the product again.
    fake_openai.script(then=Reply(delay=3.0))
    env = {**process_env, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake_openai.url, "OPENAI_API_KEY": "sk-test",
           "LLM_MODEL": "gpt-4o-mini", "LLM_MAX_ATTEMPTS": "1", "LLM_TIMEOUT": "20",
           "MEMORY_GENERATION_LOCK_TIMEOUT": "1"}
    outcomes = generations_at_once([PRODUCT, PRODUCT], env)  # both miss, one generates, the other waits
    assert fake_openai.calls == 1
    assert sorted(o["status"] for o in outcomes) == ["generated", "reused"]
    assert ProductMemoryEntry.objects.count() == 1
