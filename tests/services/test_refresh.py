"""Refresh-ahead: the hottest due entries regenerated first, within the token budget and while the
provider takes calls; approved, cold and far-from-expiry entries untouched; variants through their
family; what it spent and the misses it avoided in stats, the dashboard and /metrics."""
import dataclasses
import io
import json
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from memory.engine import tiers
from memory.engine.counters import flush_counters
from memory.engine.families import FAMILY_KIND
from memory.engine.memory import ProductMemory
from memory.models import DailyStats, ProductMemoryEntry
from memory.periodic_tasks import REFRESH_AHEAD_TASK, refresh_ahead_task
from memory.providers import CircuitOpen, OpenAIProvider, TemplateProvider
from memory.schedules import JOBS
from memory.services import refresh
from memory.services.backup import warm_redis
from memory.services.generation import generate_product
from memory.services.stats import memory_stats
from memory.services.versions import set_approval
from tests.providers.fake_openai import Reply, completion, error

pytestmark = pytest.mark.django_db

CONTENT = {"title": "Garrafa Térmica", "description": "d", "bullet_points": ["a"], "seo_keywords": ["g"]}
COST = 100  # tokens each generation of FixedCost costs
HOUR = 3600


class FixedCost(TemplateProvider):
    """The template writer at a fixed cost per generation, recording whom it wrote for; raises
    ``fail_with`` from the call numbered ``fail_from`` on."""

    def __init__(self, fail_from=None, fail_with=CircuitOpen("disjuntor do provedor aberto; nenhuma chamada feita")):
        self.calls = []
        self.fail_from = fail_from
        self.fail_with = fail_with
        self._lock = threading.Lock()

    def generate(self, product_data, fields=None):
        with self._lock:
            self.calls.append(product_data.get("sku") or product_data.get("title"))
            if self.fail_from is not None and len(self.calls) >= self.fail_from:
                raise self.fail_with
        generated = super().generate(product_data, fields)
        return dataclasses.replace(generated, tokens_prompt=COST * 6 // 10, tokens_completion=COST * 4 // 10)


@pytest.fixture(autouse=True)
def refresh_settings(settings):
    settings.MEMORY_REFRESH_AHEAD_SECONDS = 86400
    settings.MEMORY_REFRESH_MIN_HOTNESS = 1.0
    settings.MEMORY_HOTNESS_HALF_LIFE_SECONDS = 86400
    settings.MEMORY_REFRESH_TOKEN_BUDGET = 10_000
    return settings


def stored(sku, heat, *, expires_in=HOUR, generator=None, tokens=COST, **data):
    """An entry of ``sku`` as a generation leaves it, ``heat`` hot now, expiring in ``expires_in`` s."""
    product = {"sku": sku, "title": f"Produto {sku}", **data}
    ProductMemory().save_product_data(product, CONTENT, tokens_prompt=tokens // 2, tokens_completion=tokens - tokens // 2,
                                      generator_version=generator)
    now = timezone.now()
    ProductMemoryEntry.objects.filter(product_id=sku).update(
        hotness=heat, hotness_at=now, expires_at=now + timedelta(seconds=expires_in))
    return sku


def entry(sku):
    return ProductMemoryEntry.objects.get(product_id=sku, kind="main_content")


def refreshed_ahead(sku) -> bool:
    row = entry(sku)
    return row.version == 2 and row.expires_at > timezone.now() + timedelta(days=80)


def test_the_hottest_due_entries_are_refreshed_first_until_the_budget_is_reached():
    for sku, heat in [("WARM", 3.0), ("HOTTEST", 40.0), ("COOL", 1.5), ("HOT", 12.0)]:
        stored(sku, heat)
    provider = FixedCost()

    result = refresh.refresh_ahead(budget=250, provider=provider)

    assert provider.calls == ["HOTTEST", "HOT"]  # a third (estimated 100) would take it to 300
    assert (result.candidates, result.refreshed, result.tokens_spent, result.stopped) == (4, 2, 200, refresh.BUDGET)
    assert refreshed_ahead("HOTTEST") and refreshed_ahead("HOT")
    assert entry("WARM").version == entry("COOL").version == 1


def test_what_was_actually_billed_stops_the_run_when_the_estimates_were_low():
    for sku, heat in [("A", 9.0), ("B", 8.0), ("C", 7.0)]:
        stored(sku, heat, tokens=0)  # an imported entry: its generation's cost is not known
    provider = FixedCost()

    result = refresh.refresh_ahead(budget=150, provider=provider)

    assert provider.calls == ["A", "B"]  # 100 billed < 150, so B went; 200 billed stops the run
    assert (result.refreshed, result.tokens_spent, result.stopped) == (2, 200, refresh.BUDGET)


def test_approved_cold_and_far_from_expiry_entries_are_left_alone():
    stored("DUE", 2.0)
    stored("APPROVED", 50.0)
    set_approval("APPROVED", True, by="ana")
    stored("FAR", 50.0, expires_in=30 * 86400)
    stored("COLD", 0.4)
    stored("NEVER-HIT", 0.0)
    before = {sku: (entry(sku).version, entry(sku).payload, entry(sku).expires_at)
              for sku in ("APPROVED", "FAR", "COLD", "NEVER-HIT")}
    provider = FixedCost()

    result = refresh.refresh_ahead(provider=provider)

    assert provider.calls == ["DUE"]
    assert (result.candidates, result.refreshed, result.stopped) == (1, 1, None)
    assert {sku: (entry(sku).version, entry(sku).payload, entry(sku).expires_at) for sku in before} == before
    assert entry("APPROVED").approved


def test_a_stale_or_expired_hot_entry_is_refreshed_however_far_its_expiry():
    stored("STALE", 5.0, expires_in=60 * 86400, generator="openai:gpt-3:p0")
    stored("EXPIRED", 4.0, expires_in=-HOUR)
    provider = FixedCost()

    result = refresh.refresh_ahead(provider=provider)

    assert provider.calls == ["STALE", "EXPIRED"]
    assert result.refreshed == 2
    assert entry("STALE").generator_version == provider.generator_version


def test_an_entry_approved_after_the_run_chose_it_is_skipped_not_regenerated(monkeypatch):
    stored("FIRST", 9.0)
    stored("SECOND", 8.0)
    provider = FixedCost()
    real_generate = refresh.generate_product

    def approve_second_first(data, **kwargs):
        if data["sku"] == "FIRST":
            set_approval("SECOND", True, by="ana")
        return real_generate(data, **kwargs)

    monkeypatch.setattr(refresh, "generate_product", approve_second_first)
    result = refresh.refresh_ahead(provider=provider)
    assert provider.calls == ["FIRST"]
    assert (result.refreshed, result.skipped, result.locked) == (1, 1, 0)  # no longer due: never asked
    assert entry("SECOND").version == 1


def test_an_open_circuit_stops_the_run_cleanly():
    for sku, heat in [("A", 9.0), ("B", 8.0), ("C", 7.0)]:
        stored(sku, heat)
    provider = FixedCost(fail_from=2)

    result = refresh.refresh_ahead(provider=provider)

    assert provider.calls == ["A", "B"]  # C never asked
    assert result.refreshed == 1 and result.failed == 0
    assert "disjuntor" in result.stopped
    assert entry("B").version == entry("C").version == 1


def test_a_quota_spent_at_the_provider_stops_the_run_and_its_breaker_stops_the_next(fake_openai, redis_client):
    provider = OpenAIProvider(base_url=fake_openai.url, api_key="sk-test", model="gpt-4o-mini", timeout=5.0,
                              connect_timeout=2.0, max_attempts=1)
    for sku, heat in [("A", 9.0), ("B", 8.0), ("C", 7.0)]:
        stored(sku, heat, generator=provider.generator_version)
    fake_openai.script(Reply(body=completion(prompt_tokens=30, completion_tokens=20)),
                       then=error(429, "You exceeded your current quota", code="insufficient_quota",
                                  headers={"retry-after-ms": "5"}))

    first = refresh.refresh_ahead(provider=provider)
    assert (first.refreshed, first.failed, first.tokens_spent) == (1, 1, 50)
    assert "cota" in first.stopped
    assert fake_openai.calls == 2  # C never sent

    second = refresh.refresh_ahead(provider=provider)
    assert second.refreshed == 0 and second.stopped
    assert fake_openai.calls == 2  # the breaker the quota opened made no call


def test_a_variant_is_refreshed_through_its_family_reusing_a_fresh_base(settings):
    provider = FixedCost()
    for color in ("Azul", "Preta"):
        generate_product({"sku": f"CAM-{color}", "title": f"Camiseta Básica {color}", "parent_sku": "CAM",
                          "cor": color}, provider=provider)
    assert provider.calls == ["Camiseta Básica"]  # one base call for the family
    now = timezone.now()
    ProductMemoryEntry.objects.filter(product_id__in=["CAM-Azul", "CAM-Preta"]).update(
        hotness=5.0, hotness_at=now, expires_at=now + timedelta(hours=1))

    result = refresh.refresh_ahead(provider=provider)

    assert provider.calls == ["Camiseta Básica"]  # the base was fresh: both derived again without a call
    assert (result.refreshed, result.tokens_spent) == (2, 0)
    for sku in ("CAM-Azul", "CAM-Preta"):
        assert entry(sku).family_id == "CAM" and entry(sku).version == 2
        assert "Camiseta Básica" in entry(sku).payload["title"]


def test_a_variant_whose_base_went_stale_makes_one_base_call_for_its_whole_family():
    provider = FixedCost()
    for color in ("Azul", "Preta"):
        generate_product({"sku": f"CAM-{color}", "title": f"Camiseta Básica {color}", "parent_sku": "CAM",
                          "cor": color}, provider=provider)
    now = timezone.now()
    ProductMemoryEntry.objects.filter(product_id="CAM", kind=FAMILY_KIND).update(expires_at=now - timedelta(seconds=1))
    ProductMemory(FAMILY_KIND).evict([("CAM", FAMILY_KIND)])  # the copies Redis and L1 hold expire with it
    ProductMemoryEntry.objects.filter(product_id="CAM-Azul").update(hotness=9.0, hotness_at=now,
                                                                    expires_at=now + timedelta(hours=1))
    ProductMemoryEntry.objects.filter(product_id="CAM-Preta").update(hotness=5.0, hotness_at=now,
                                                                     expires_at=now + timedelta(hours=1))
    assert [c.estimate for c in refresh.hottest_due(now, provider.generator_version)] == [COST, COST]

    result = refresh.refresh_ahead(provider=provider)

    assert provider.calls == ["Camiseta Básica", "Camiseta Básica"]  # the first generation, and one refresh
    # The base made anew derived Preta again: no longer due when its turn came.
    assert (result.refreshed, result.skipped, result.tokens_spent) == (1, 1, COST)
    assert entry("CAM-Preta").expires_at > now + timedelta(days=80)


def test_a_zero_budget_refreshes_nothing():
    stored("A", 9.0)
    provider = FixedCost()
    assert refresh.refresh_ahead(budget=0, provider=provider).refreshed == 0
    assert provider.calls == []


def test_a_bad_budget_is_refused_naming_it():
    with pytest.raises(ValueError, match="budget"):
        refresh.refresh_ahead(budget=-1)


def test_the_scheduled_job_is_registered_and_runs_the_use_case(settings):
    job = next(job for job in JOBS if job.task == REFRESH_AHEAD_TASK == "memory.refresh_ahead")
    assert job.interval_setting == "MEMORY_REFRESH_AHEAD_INTERVAL"
    stored("A", 9.0, generator=TemplateProvider().generator_version)
    summary = refresh_ahead_task()
    assert summary["refreshed"] == 1 and summary["budget"] == settings.MEMORY_REFRESH_TOKEN_BUDGET
    assert summary["tokens_spent"] > 0


def metric(client, name):
    """A sample of web's /metrics, as a scrape reads it."""
    text = client.get("/metrics").content.decode()
    return next((sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                 if sample.name == name), None)


def test_stats_the_dashboard_and_metrics_show_the_tokens_spent_ahead_and_the_misses_avoided(
        admin_client, redis_client, django_capture_on_commit_callbacks):
    stored("EXPIRED", 9.0, expires_in=-HOUR)  # its next lookup would miss
    stored("SOON", 8.0, expires_in=HOUR)  # its lookups hit the old content for another hour
    spent_before = metric(admin_client, "beecatalog_memory_tokens_spent_ahead_total")
    avoided_before = metric(admin_client, "beecatalog_memory_misses_avoided_total")

    result = refresh.refresh_ahead(provider=FixedCost())
    assert result.refreshed == 2
    memory = ProductMemory()
    for _ in range(3):
        assert memory.get_product_data("EXPIRED") is not None
        assert memory.get_product_data("SOON") is not None
    with django_capture_on_commit_callbacks(execute=True):
        flush_counters()

    stats = memory_stats()
    # One miss avoided: the expired entry's first lookup; SOON's old content would still have served.
    assert (stats["tokens_spent_ahead"], stats["misses_avoided"]) == (2 * COST, 1)
    assert stats["tokens_spent"] >= 2 * COST
    today = DailyStats.objects.get(date=timezone.localdate())
    assert (today.tokens_spent_ahead, today.misses_avoided) == (2 * COST, 1)
    # /metrics reads them from the daily statistics, whichever process ran the job and the flush.
    assert metric(admin_client, "beecatalog_memory_tokens_spent_ahead_total") - spent_before == 2 * COST
    assert metric(admin_client, "beecatalog_memory_misses_avoided_total") - avoided_before == 1

    api = admin_client.get("/api/memory/stats/").json()
    assert (api["tokens_spent_ahead"], api["misses_avoided"]) == (2 * COST, 1)
    html = admin_client.get(reverse("memory:dashboard")).content.decode()
    card = html.split('data-card="refresh_ahead"')[1].split("</div>\n    </div>")[0]
    assert "Faltas evitadas" in card and ">1<" in card and "200 tokens gastos antecipadamente" in card


def test_the_redis_warm_up_loads_the_hottest_entries_first(redis_client, monkeypatch):
    now = timezone.now()
    # (sku, stored hotness, its age): OLD-BIG was hotter once, but 3 half-lives ago (16 / 8 = 2).
    for sku, heat, age_days in [("MID", 5.0, 0), ("OLD-BIG", 16.0, 3), ("TOP", 30.0, 0), ("NONE", 0.0, 0),
                                ("LOW", 3.0, 0)]:
        stored(sku, 0.0, expires_in=60 * 86400, generator=TemplateProvider().generator_version)
        ProductMemoryEntry.objects.filter(product_id=sku).update(
            hotness=heat, hotness_at=now - timedelta(days=age_days) if heat else None)
    redis_client.flushdb()
    batches = []
    real_claim = tiers.RedisTier.claim_fills

    def recording(self, keys):
        batches.append([product_id for product_id, _ in keys])
        return real_claim(self, keys)

    monkeypatch.setattr(tiers.RedisTier, "claim_fills", recording)
    result = warm_redis(batch_size=2)
    assert result.entries == 5
    assert batches == [["TOP", "MID"], ["LOW", "OLD-BIG"], ["NONE"]]


def command(*args):
    out = io.StringIO()
    call_command("manage_memory", "refresh-ahead", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_command_lists_the_queue_in_a_dry_run_and_refreshes_within_its_budget(settings):
    generator = TemplateProvider().generator_version
    stored("HOT", 12.5, generator=generator)
    stored("WARM", 3.0, generator=generator)

    dry = command("--dry-run")
    assert dry.index("HOT") < dry.index("WARM") and "popularidade 12,5" in dry and "~100 tokens" in dry
    assert entry("HOT").version == 1  # a dry run generates nothing
    listed = json.loads(command("--dry-run", "--json", "--limit", "1"))
    assert listed == [{"product_id": "HOT", "hotness": 12.5, "estimated_tokens": 100}]

    summary = json.loads(command("--budget", "1", "--json"))  # below the first estimate: nothing
    assert (summary["refreshed"], summary["stopped"]) == (0, "budget")
    text = command()
    assert "Renovação antecipada: 2 de 2 entradas renovadas" in text
    assert entry("HOT").version == entry("WARM").version == 2


@pytest.mark.parametrize("args, field", [(("--budget", "-5"), "budget"), (("--dry-run", "--limit", "0"), "limit")])
def test_the_command_refuses_a_bad_option_naming_it(args, field):
    with pytest.raises(CommandError, match=field) as info:
        command(*args)
    assert info.value.returncode == 1 and "\n" not in str(info.value)
