"""Hotness: the hits of an entry decayed by half every half-life, folded in by the counter flush
(never on the hit path), and the misses refresh-ahead avoided, counted by the flush."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from memory.engine import hotness
from memory.engine.counters import flush_counters
from memory.engine.memory import ProductMemory
from memory.models import DailyStats, ProductMemoryEntry

pytestmark = pytest.mark.django_db

CONTENT = {"title": "Mochila Escolar", "description": "d", "bullet_points": [], "seo_keywords": []}
DAY = 86400


@pytest.fixture
def entry(settings):
    settings.MEMORY_HOTNESS_HALF_LIFE_SECONDS = DAY
    ProductMemory().save_product_data({"sku": "MOCH-1"}, CONTENT, tokens_prompt=300, tokens_completion=200)
    flush_counters()


def row():
    return ProductMemoryEntry.objects.get(product_id="MOCH-1")


def hit(n=1):
    memory = ProductMemory()
    for _ in range(n):
        assert memory.get_product_data("MOCH-1") is not None


@pytest.mark.parametrize("hot, age_seconds, expected", [
    (8.0, 0, 8.0),
    (8.0, DAY, 4.0),
    (8.0, 3 * DAY, 1.0),
    (8.0, DAY / 2, 8.0 * 0.5 ** 0.5),
    (8.0, -DAY, 8.0),  # a hotness_at ahead of this clock (another process's) does not grow
    (0.0, DAY, 0.0),
    (5.0, 10_000 * DAY, 0.0),  # far below the smallest double: read as 0
])
def test_a_stored_hotness_halves_every_half_life(settings, hot, age_seconds, expected):
    settings.MEMORY_HOTNESS_HALF_LIFE_SECONDS = DAY
    now = timezone.now()
    assert hotness.at(hot, now - timedelta(seconds=age_seconds), now) == pytest.approx(expected, abs=1e-250)


def test_the_database_decays_hotness_as_python_does(entry):
    now = timezone.now()
    cases = {0: 8.0, DAY: 4.0, 2.5 * DAY: 8.0 * 0.5 ** 2.5, 10_000 * DAY: 0.0}
    for age, expected in cases.items():
        ProductMemoryEntry.objects.update(hotness=8.0, hotness_at=now - timedelta(seconds=age))
        read = ProductMemoryEntry.objects.annotate(heat=hotness.decayed(now)).values_list("heat", flat=True).get()
        assert read == pytest.approx(expected, rel=1e-9, abs=1e-250)
    ProductMemoryEntry.objects.update(hotness=0.0, hotness_at=None)
    assert ProductMemoryEntry.objects.annotate(heat=hotness.decayed(now)).values_list("heat", flat=True).get() == 0.0


def test_a_hit_writes_no_hotness_and_the_flush_folds_the_hits_in(entry, redis_client):
    hit()  # fills L1 from L2
    with CaptureQueriesContext(connection) as queries:
        hit(2)
    assert len(queries) == 0
    assert (row().hotness, row().hotness_at) == (0.0, None)

    before = timezone.now()
    assert flush_counters() == 3
    assert row().hotness == pytest.approx(3.0)
    assert before <= row().hotness_at <= timezone.now()


@pytest.mark.parametrize("fixture", ["redis_client", "no_redis"])
def test_the_flush_decays_the_stored_hotness_before_adding_the_new_hits(entry, request, fixture):
    request.getfixturevalue(fixture)
    ProductMemoryEntry.objects.update(hotness=6.0, hotness_at=timezone.now() - timedelta(days=2))
    hit(2)
    flush_counters()
    assert row().hotness == pytest.approx(6.0 / 4 + 2, rel=1e-4)  # two half-lives, then two hits
    flush_counters()  # nothing new: the row is left alone
    assert row().hotness == pytest.approx(3.5, rel=1e-4)


def test_a_hotness_many_half_lives_old_folds_without_an_error(entry):
    ProductMemoryEntry.objects.update(hotness=1e6, hotness_at=timezone.now() - timedelta(days=50_000))
    hit()
    flush_counters()
    assert row().hotness == pytest.approx(1.0)


# -- misses avoided -------------------------------------------------------------------------


def mark(due):
    ProductMemoryEntry.objects.update(refreshed_ahead_version=row().version, refreshed_ahead_due=due)


def misses_avoided():
    return sum(DailyStats.objects.values_list("misses_avoided", flat=True))


def test_a_hit_on_content_refreshed_ahead_after_the_old_one_would_have_gone_is_one_miss_avoided(entry):
    mark(timezone.now() - timedelta(seconds=1))
    hit(3)
    flush_counters()
    assert misses_avoided() == 1
    assert (row().refreshed_ahead_version, row().refreshed_ahead_due) == (None, None)
    assert DailyStats.objects.get(date=timezone.localdate()).misses_avoided == 1
    hit()
    flush_counters()
    assert misses_avoided() == 1  # once per refresh: later hits would have hit a lazy regeneration too


def test_a_hit_before_the_old_content_would_have_expired_avoids_nothing_yet(entry):
    due = timezone.now() + timedelta(hours=1)
    mark(due)
    hit()
    flush_counters()
    assert misses_avoided() == 0
    assert row().refreshed_ahead_due == due  # kept for a later hit
    ProductMemoryEntry.objects.update(refreshed_ahead_due=timezone.now() - timedelta(seconds=1))  # an hour on
    hit()
    flush_counters()
    assert misses_avoided() == 1


def test_content_replaced_before_such_a_hit_avoids_nothing_and_loses_its_mark(entry):
    mark(timezone.now() - timedelta(seconds=1))
    ProductMemory().save_product_data({"sku": "MOCH-1"}, {**CONTENT, "title": "Mochila Nova"})
    hit()
    flush_counters()
    assert misses_avoided() == 0
    assert (row().refreshed_ahead_version, row().refreshed_ahead_due) == (None, None)
