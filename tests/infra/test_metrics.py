"""Prometheus metrics: what the engine records, and what GET /metrics shows."""
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from memory.infra import metrics
from memory.services.generation import generate_product
from memory.engine.memory import ProductMemory
from memory.models import DailyStats, ProductMemoryEntry
from memory.providers import BadProviderOutput, CircuitOpen, ProviderUnavailable, TemplateProvider
from memory.services.purge import purge_backlog, purge_expired

from tests.helpers import seed, token_client
from tests.servers import free_port


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def tier_figures():
    return {
        tier: (value("beecatalog_memory_tier_hits_total", tier=tier),
               value("beecatalog_memory_tier_misses_total", tier=tier),
               value("beecatalog_memory_lookup_seconds_count", tier=tier))
        for tier in metrics.TIERS
    }


def delta(before, after):
    return {tier: tuple(a - b for a, b in zip(after[tier], before[tier])) for tier in before}


@pytest.mark.django_db
def test_hits_misses_and_latency_are_counted_per_tier(redis_client, l1_trusted):
    # L1 is read only while this process hears invalidations; that is not what this test is about.
    seed()
    memory = ProductMemory()

    before = tier_figures()
    memory.get_product_data("ABC123")  # in L1 since the save
    assert delta(before, tier_figures()) == {"l1": (1, 0, 1), "l2": (0, 0, 0), "l3": (0, 0, 0)}

    caches["memory_l1"].clear()
    before = tier_figures()
    memory.get_product_data("ABC123")  # L1 misses, Redis has it
    assert delta(before, tier_figures()) == {"l1": (0, 1, 1), "l2": (1, 0, 1), "l3": (0, 0, 0)}

    caches["memory_l1"].clear()
    memory.l2.delete_many([("ABC123", "main_content")])
    before = tier_figures()
    memory.get_product_data("ABC123")  # only PostgreSQL has it
    memory.get_product_data("NOPE")  # nobody has it
    assert delta(before, tier_figures()) == {"l1": (0, 2, 2), "l2": (0, 2, 2), "l3": (1, 1, 2)}


@pytest.mark.django_db
def test_tokens_saved_on_hits_and_spent_on_stored_generations():
    spent, saved, generations = (value("beecatalog_memory_tokens_spent_total"),
                                 value("beecatalog_memory_tokens_saved_total"),
                                 value("beecatalog_memory_generations_total"))
    seed(tokens_prompt=1000, tokens_completion=500)
    ProductMemory().get_product_data("ABC123")
    ProductMemory().get_product_data("ABC123")
    ProductMemory().exists("ABC123")  # a check, not a use: saves nothing
    assert value("beecatalog_memory_tokens_spent_total") - spent == 1500
    assert value("beecatalog_memory_generations_total") - generations == 1
    assert value("beecatalog_memory_tokens_saved_total") - saved == 3000


@pytest.mark.django_db
def test_a_real_generation_records_its_latency_and_tokens():
    count = value("beecatalog_memory_generation_seconds_count")
    spent = value("beecatalog_memory_tokens_spent_total")
    outcome = generate_product({"sku": "NEW1", "title": "Mochila"}, provider=TemplateProvider())
    assert outcome.tokens_spent > 0
    assert value("beecatalog_memory_generation_seconds_count") - count == 1
    assert value("beecatalog_memory_tokens_spent_total") - spent == outcome.tokens_spent
    generate_product({"sku": "NEW1", "title": "Mochila"}, provider=TemplateProvider())  # reused: no generation
    assert value("beecatalog_memory_generation_seconds_count") - count == 1


def test_observe_generation_fills_the_histogram():
    before = value("beecatalog_memory_generation_seconds_bucket", le="2.5")
    total = value("beecatalog_memory_generation_seconds_sum")
    metrics.observe_generation(1.2)
    assert value("beecatalog_memory_generation_seconds_bucket", le="2.5") - before == 1
    assert value("beecatalog_memory_generation_seconds_sum") - total == pytest.approx(1.2)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


@pytest.mark.django_db
def test_metrics_endpoint_exposes_every_family(make_user):
    families = scrape(token_client(make_user("staff", staff=True)))
    for name in ("beecatalog_memory_tier_hits", "beecatalog_memory_tier_misses", "beecatalog_memory_lookup_seconds",
                 "beecatalog_memory_generations", "beecatalog_memory_generation_seconds",
                 "beecatalog_memory_tokens_spent", "beecatalog_memory_tokens_saved", "beecatalog_memory_tokens_wasted",
                 "beecatalog_memory_tokens_cached", "beecatalog_memory_tokens_reasoning", "beecatalog_memory_redis_up"):
        assert name in families
    tiers = {s.labels["tier"] for s in families["beecatalog_memory_tier_hits"].samples}
    assert tiers == {"l1", "l2", "l3"}


@pytest.mark.django_db
def test_redis_availability_is_measured_at_scrape_time(make_user, dead_redis):
    client = token_client(make_user("staff", staff=True))
    [sample] = scrape(client)["beecatalog_memory_redis_up"].samples
    assert sample.value == 0


@pytest.mark.django_db
def test_redis_up_is_1_when_redis_answers(make_user, redis_client):
    [sample] = scrape(token_client(make_user("staff", staff=True)))["beecatalog_memory_redis_up"].samples
    assert sample.value == 1


@pytest.mark.django_db
@override_settings(METRICS_ALLOW="anonymous")
def test_scrapers_asking_for_openmetrics_still_get_the_text_format():
    response = APIClient().get(
        "/metrics", HTTP_ACCEPT="application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    )
    assert response.status_code == 200 and b"beecatalog_memory_tier_hits_total" in response.content


def test_unknown_metrics_allow_value_stops_the_settings(monkeypatch, capsys):
    import importlib

    import beecatalog.settings as project_settings

    monkeypatch.setenv("METRICS_ALLOW", "everyone")
    with pytest.raises(SystemExit):
        importlib.reload(project_settings)
    assert capsys.readouterr().err.startswith("METRICS_ALLOW: use staff, token ou anonymous, não 'everyone'")
    monkeypatch.delenv("METRICS_ALLOW")
    importlib.reload(project_settings)


# --- generation failures ----------------------------------------------------------------------------


def failures():
    return {reason: value("beecatalog_memory_generation_failures_total", reason=reason)
            for reason in metrics.GENERATION_FAILURE_REASONS}


class Failing(TemplateProvider):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def generate(self, product_data, fields=None):
        raise self.error


@pytest.mark.django_db
@pytest.mark.parametrize("error, reason", [
    (BadProviderOutput("resposta sem JSON"), "provider_error"),
    (ProviderUnavailable("tempo esgotado"), "provider_unavailable"),
    (CircuitOpen("disjuntor aberto"), "not_attempted"),
])
def test_a_failed_generation_is_counted_by_its_reason(error, reason):
    before = failures()
    generations = value("beecatalog_memory_generations_total")
    outcome = generate_product({"sku": "FAIL1", "title": "Mochila"}, provider=Failing(error))
    assert outcome.status in ("failed", "not_attempted")
    after = failures()
    assert {r: after[r] - before[r] for r in after} == {r: int(r == reason) for r in after}
    assert value("beecatalog_memory_generations_total") == generations


@pytest.mark.django_db
def test_a_stored_generation_counts_no_failure():
    before = failures()
    generate_product({"sku": "OK1", "title": "Mochila"}, provider=TemplateProvider())
    assert failures() == before


# --- the purge's backlog, read at each scrape ----------------------------------------------------------


def scraped_value(client, name) -> float:
    [sample] = scrape(client)[name].samples
    return sample.value


@pytest.mark.django_db
def test_the_purge_backlog_and_lag_are_read_from_postgresql_at_each_scrape(make_user):
    client = token_client(make_user("staff", staff=True))
    assert scraped_value(client, "beecatalog_memory_purge_backlog_entries") == 0
    assert scraped_value(client, "beecatalog_memory_purge_lag_seconds") == 0
    assert scraped_value(client, "beecatalog_memory_purge_interval_seconds") == settings.MEMORY_PURGE_INTERVAL

    for sku in ("OLD1", "OLD2", "OLD3", "FRESH"):
        seed({"sku": sku, "title": sku})
    now = timezone.now()
    ProductMemoryEntry.objects.filter(product_id="OLD1").update(expires_at=now - timedelta(hours=3))
    ProductMemoryEntry.objects.filter(product_id="OLD2").update(expires_at=now - timedelta(hours=1))
    ProductMemoryEntry.objects.filter(product_id="OLD3").update(expires_at=now - timedelta(days=2), approved=True)
    assert scraped_value(client, "beecatalog_memory_purge_backlog_entries") == 2  # an approved entry never expires
    lag = scraped_value(client, "beecatalog_memory_purge_lag_seconds")
    assert 3 * 3600 <= lag < 3 * 3600 + 60

    purge_expired()
    assert scraped_value(client, "beecatalog_memory_purge_backlog_entries") == 0
    assert scraped_value(client, "beecatalog_memory_purge_lag_seconds") == 0


@pytest.mark.django_db
def test_the_purge_backlog_is_counted_up_to_its_limit(monkeypatch):
    monkeypatch.setattr(metrics, "PURGE_BACKLOG_LIMIT", 2)
    for sku in ("OLD1", "OLD2", "OLD3"):
        seed({"sku": sku, "title": sku})
    ProductMemoryEntry.objects.update(expires_at=timezone.now() - timedelta(minutes=5))
    backlog, lag = purge_backlog()
    assert backlog == 2 and lag >= 300


@pytest.mark.django_db
def test_metrics_still_render_when_postgresql_fails_the_backlog_read(monkeypatch):
    def broken(now=None):
        raise OperationalError("o servidor não responde")

    monkeypatch.setattr("memory.services.purge.purge_backlog", broken)
    text = metrics.render_latest()[0].decode()
    assert "beecatalog_memory_purge_backlog_entries NaN" in text
    assert "beecatalog_memory_tier_hits_total" in text


@pytest.mark.django_db
def test_the_recorded_totals_are_the_daily_statistics_summed_over_every_day(make_user):
    client = token_client(make_user("staff", staff=True))
    DailyStats.objects.create(date=timezone.localdate() - timedelta(days=3), generations=4, tokens_spent=900,
                              tokens_wasted=30, tokens_spent_ahead=200, misses_avoided=2)
    DailyStats.objects.create(date=timezone.localdate(), generations=1, tokens_spent=100, tokens_spent_ahead=50,
                              misses_avoided=1)
    expected = {"beecatalog_memory_recorded_generations": 5, "beecatalog_memory_recorded_tokens_spent": 1000,
                "beecatalog_memory_recorded_tokens_wasted": 30,
                "beecatalog_memory_tokens_spent_ahead": 250, "beecatalog_memory_misses_avoided": 3}
    for name, value in expected.items():
        assert scraped_value(client, name) == value, name
    DailyStats.objects.filter(date=timezone.localdate()).update(misses_avoided=4)  # read again at the next scrape
    assert scraped_value(client, "beecatalog_memory_misses_avoided") == 6


@pytest.mark.django_db
def test_the_recorded_totals_are_left_out_while_postgresql_fails_their_read(monkeypatch):
    def broken():
        raise OperationalError("o servidor não responde")

    monkeypatch.setattr("memory.services.stats.recorded_totals", broken)
    text = metrics.render_latest()[0].decode()
    assert "beecatalog_memory_misses_avoided_total" not in text
    assert "beecatalog_memory_tier_hits_total" in text
    monkeypatch.undo()
    assert "beecatalog_memory_misses_avoided_total 0.0" in metrics.render_latest()[0].decode()


@pytest.mark.django_db
def test_a_process_endpoint_serves_its_own_series_but_not_webs(redis_client):
    """What the Celery worker's METRICS_WORKER_PORT serves (one process here: no folder)."""
    metrics.render_latest()  # web's scrape: the series read from PostgreSQL have values in this process
    server = metrics.serve_process_metrics(free_port())
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            names = {family.name for family in text_string_to_metric_families(response.read().decode())}
        assert {"beecatalog_memory_generations", "beecatalog_memory_generation_failures",
                "beecatalog_memory_redis_up", "beecatalog_memory_llm_breaker_open"} <= names
        assert not names & {"beecatalog_memory_misses_avoided", "beecatalog_memory_recorded_tokens_spent",
                            "beecatalog_memory_purge_lag_seconds", "beecatalog_memory_refresh_token_budget"}
        with pytest.raises(urllib.error.HTTPError) as elsewhere:
            urllib.request.urlopen(f"{url}/admin/", timeout=5)
        assert elsewhere.value.code == 404 and "/metrics" in elsewhere.value.read().decode()
    finally:
        server.shutdown()
        server.server_close()
