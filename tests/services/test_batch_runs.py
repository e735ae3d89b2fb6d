"""Batch runs: generations kept in flight continuously, and a run that stops calling a provider
that takes no more calls (circuit breaker open, quota spent), reporting the rest not attempted."""
import threading
import time

import pytest

from memory.models import ProductMemoryEntry
from memory.providers import CircuitOpen, ProviderUnavailable, QuotaExhausted, TemplateProvider
from memory.services.generation import generate_batch, generate_product, in_flight_limit
from memory.tasks import batch_generate_main_content_task, generate_main_content_task

BREAKER_OPEN = "Circuito do provedor aberto: nenhuma chamada até 30 s após a última falha"


def products(n, prefix="P"):
    return [{"sku": f"{prefix}{i}", "title": f"Produto {i}"} for i in range(n)]


class Provider(TemplateProvider):
    """The template writer driven as a remote provider (``name`` other than ``template``: in
    flight concurrently) or not, counting its calls and how many run at once; ``behave(product,
    call_number)`` may wait or raise before the content is written."""

    def __init__(self, name="fake-llm", behave=None):
        self.name = name
        self.model = "template"
        self.behave = behave
        self.calls = 0
        self.running = 0
        self.most_running = 0
        self.ended: list[str] = []  # skus, in the order their generations ended
        self.lock = threading.Lock()

    def generate(self, product_data):
        with self.lock:
            self.calls += 1
            call = self.calls
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if self.behave:
                self.behave(product_data, call)
            return super().generate(product_data)
        finally:
            with self.lock:
                self.running -= 1
                self.ended.append(product_data["sku"])


def raises_after(calls, error=CircuitOpen, message=BREAKER_OPEN):
    def behave(product, call):
        if call > calls:
            raise error(message)

    return behave


def statuses(result):
    return [o.status for o in result.outcomes]


# --- stopping early ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_once_the_circuit_opens_the_rest_of_the_batch_is_not_attempted_without_a_call(caplog):
    provider = Provider(name="template", behave=raises_after(3))  # sequential
    with caplog.at_level("INFO", logger="memory"):
        result = generate_batch(products(10), provider=provider)
    assert statuses(result) == ["generated"] * 3 + ["not_attempted"] * 7
    assert provider.calls == 4  # the fourth met the open circuit (no request made); the six after it never ran
    summary = result.summary()
    assert (summary["generated"], summary["failed"], summary["not_attempted"], summary["reused"]) == (3, 0, 7, 0)
    assert summary["tokens_wasted"] == 0
    assert summary["products"][3] == {
        "product_id": "P3", "from_cache": False, "status": "not_attempted", "tokens_spent": 0, "tokens_saved": 0,
        "tokens_wasted": 0, "error": BREAKER_OPEN, "failure": "provider_unavailable", "index": 3,
    }
    assert summary["products"][9]["error"] == f"não tentado: {BREAKER_OPEN}"
    assert result.halted == BREAKER_OPEN
    assert ProductMemoryEntry.objects.count() == 3
    assert "Processamento em lote: 0/10 produtos reutilizados da memória" in caplog.text
    assert f"Lote interrompido: {BREAKER_OPEN}; 7 produtos não tentados" in caplog.text


@pytest.mark.django_db
def test_running_the_batch_again_reuses_what_was_generated_and_finishes_the_rest(caplog):
    generate_batch(products(10), provider=Provider(name="template", behave=raises_after(3)))
    provider = Provider(name="template")
    with caplog.at_level("INFO", logger="memory"):
        summary = generate_batch(products(10), provider=provider).summary()
    assert (summary["reused"], summary["generated"], summary["not_attempted"], summary["failed"]) == (3, 7, 0, 0)
    assert provider.calls == 7
    assert "Processamento em lote: 3/10 produtos reutilizados da memória" in caplog.text


@pytest.mark.django_db
def test_a_spent_quota_fails_the_product_that_met_it_and_stops_the_batch():
    provider = Provider(name="template", behave=raises_after(2, QuotaExhausted, "cota do provedor esgotada (HTTP 429)"))
    result = generate_batch(products(10), provider=provider)
    assert statuses(result) == ["generated"] * 2 + ["failed"] + ["not_attempted"] * 7
    assert provider.calls == 3
    assert result.outcomes[2].failure == "provider_unavailable"
    assert result.outcomes[3].error == "não tentado: cota do provedor esgotada (HTTP 429)"


@pytest.mark.django_db
def test_a_provider_unavailable_for_one_product_does_not_stop_the_batch():
    def behave(product, call):
        if call == 2:
            raise ProviderUnavailable("Geração falhou após 3 tentativas: HTTP 503")

    provider = Provider(name="template", behave=behave)
    result = generate_batch(products(5), provider=provider)
    assert statuses(result) == ["generated", "failed", "generated", "generated", "generated"]
    assert result.halted is None and provider.calls == 5


@pytest.mark.django_db(transaction=True)
def test_with_generations_in_flight_the_circuit_opening_stops_new_ones(settings):
    settings.LLM_MAX_CONCURRENCY = 3
    provider = Provider(behave=raises_after(3))
    result = generate_batch(products(20), provider=provider)
    summary = result.summary()
    assert (summary["generated"], summary["not_attempted"], summary["failed"]) == (3, 17, 0)
    # After the first open-circuit answer, only those already in flight still asked.
    assert provider.calls <= 3 + 3
    assert ProductMemoryEntry.objects.count() == 3


@pytest.mark.django_db
def test_a_batch_told_an_earlier_one_halted_serves_the_memory_and_generates_nothing():
    generate_batch(products(2), provider=Provider(name="template"))
    provider = Provider(name="template")
    result = generate_batch(products(5), provider=provider, halted=BREAKER_OPEN)
    assert statuses(result) == ["reused", "reused", "not_attempted", "not_attempted", "not_attempted"]
    assert provider.calls == 0 and result.halted == BREAKER_OPEN


@pytest.mark.django_db
def test_a_single_product_meeting_the_open_circuit_is_not_attempted_and_saves_nothing(monkeypatch):
    outcome = generate_product({"sku": "ONE", "title": "Caneca"}, provider=Provider(behave=raises_after(0)))
    assert (outcome.status, outcome.error, outcome.failure) == ("not_attempted", BREAKER_OPEN, "provider_unavailable")
    monkeypatch.setattr("memory.services.generation.get_provider", lambda: Provider(behave=raises_after(0)))
    single = generate_main_content_task.delay({"sku": "ONE", "title": "Caneca"}).get()
    assert single["status"] == "not_attempted" and single["content"] is None
    assert not ProductMemoryEntry.objects.exists()


@pytest.mark.django_db
def test_the_batch_task_returns_the_not_attempted_count(monkeypatch):
    monkeypatch.setattr("memory.services.generation.get_provider",
                        lambda: Provider(name="template", behave=raises_after(1)))
    summary = batch_generate_main_content_task.delay(products(4), batch_size=10).get()
    assert (summary["total"], summary["generated"], summary["failed"], summary["not_attempted"]) == (4, 1, 0, 3)
    assert [p["status"] for p in summary["products"]] == ["generated"] + ["not_attempted"] * 3


# --- generations in flight, continuously ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_one_slow_product_does_not_hold_back_the_others(settings):
    """With two in flight, the ten fast products all go through the other slot while the slow one
    runs: the slow one waits for them to end (a chunk barrier would never let them all start)."""
    settings.LLM_MAX_CONCURRENCY = 2
    fast_done = threading.Event()
    waited = []

    def behave(product, call):
        if product["sku"] == "SLOW":
            waited.append(fast_done.wait(10))
        time.sleep(0.02)

    provider = Provider(behave=behave)
    reported = []

    def on_outcome(outcome):
        reported.append(outcome.product_id)
        if sum(1 for p in reported if p.startswith("F")) == 10:
            fast_done.set()

    batch = [{"sku": "SLOW", "title": "Lento"}] + products(10, prefix="F")
    result = generate_batch(batch, batch_size=10, provider=provider, on_outcome=on_outcome)
    assert waited == [True]  # every fast product ended while the slow one was in flight
    assert provider.ended[-1] == "SLOW" and reported[-1] == "SLOW"
    assert [o.product_id for o in result.outcomes] == ["SLOW"] + [f"F{i}" for i in range(10)]  # input order
    assert [o.index for o in result.outcomes] == list(range(11))
    assert statuses(result) == ["generated"] * 11
    assert provider.most_running == 2  # never more than LLM_MAX_CONCURRENCY


@pytest.mark.django_db(transaction=True)
def test_batch_size_bounds_the_generations_in_flight_below_llm_max_concurrency(settings):
    settings.LLM_MAX_CONCURRENCY = 8
    three_at_once = threading.Event()
    provider = Provider()

    def behave(product, call):
        if provider.running >= 3:
            three_at_once.set()
        three_at_once.wait(5)

    provider.behave = behave
    result = generate_batch(products(9), batch_size=3, provider=provider)
    assert three_at_once.is_set() and provider.most_running == 3
    assert statuses(result) == ["generated"] * 9


def test_in_flight_is_the_smaller_of_batch_size_and_llm_max_concurrency_and_one_for_the_template(settings):
    settings.LLM_MAX_CONCURRENCY = 4
    assert [in_flight_limit(n, Provider()) for n in (1, 3, 4, 10)] == [1, 3, 4, 4]
    assert in_flight_limit(10, TemplateProvider()) == 1
