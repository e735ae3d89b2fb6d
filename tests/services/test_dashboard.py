"""The stats dashboard: its selectors, its chart geometry, and the page for staff who may view entries."""
import re
from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from memory.engine.counters import flush_counters
from memory.services.dashboard import bar_chart, daily_series, expiring_soon, nice_ceiling, top_products
from memory.models import DailyStats, ProductMemoryEntry
from memory.engine.memory import ProductMemory

DASHBOARD = "memory:dashboard"


def content(title):
    return {"title": title, "description": "d", "bullet_points": ["b"], "seo_keywords": ["k"]}


def save(sku, title, *, ttl=None, tokens=(600, 400)):
    ProductMemory().save_product_data(
        {"sku": sku, "title": title}, content(title), tokens_prompt=tokens[0], tokens_completion=tokens[1], ttl=ttl,
    )


# -- chart geometry (pure) ------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (21, 25), (26, 50), (1234, 2000), (99_999, 100_000),
])
def test_nice_ceiling_rounds_up_to_1_2_2_5_or_5_times_a_power_of_ten(value, expected):
    assert nice_ceiling(value) == expected


def test_bar_chart_scales_bars_to_the_largest_value():
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(4)]
    chart = bar_chart("hits", list(zip(days, [0, 5, 10, 20])), width=400, height=200)
    assert [b.value for b in chart.bars] == [0, 5, 10, 20]
    assert chart.bars[0].height == 0
    tallest = chart.bars[3]
    assert tallest.y + tallest.height == chart.plot_bottom
    assert chart.bars[2].height == pytest.approx(tallest.height / 2)
    assert [t.value for t in chart.ticks] == [0, 5, 10, 15, 20]
    assert chart.total == 35
    assert all(b.x + b.width <= 400 for b in chart.bars)
    assert [label for _, label in chart.x_labels][0] == "01/11"


def test_bar_chart_of_an_empty_month_has_flat_bars_and_a_unit_axis():
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(30)]
    chart = bar_chart("misses", [(d, 0) for d in days])
    assert len(chart.bars) == 30
    assert {b.height for b in chart.bars} == {0}
    assert [t.value for t in chart.ticks] == [0, 1]


# -- selectors -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_daily_series_fills_missing_days_and_adds_unflushed_counts():
    today = timezone.localdate()
    DailyStats.objects.create(date=today - timedelta(days=2), hits=7, misses=3, generations=2, tokens_saved=700)
    DailyStats.objects.create(date=today - timedelta(days=40), hits=99)  # outside the window
    save("SKU-1", "Produto")            # one generation, counted in Redis, not flushed
    ProductMemory().get_product_data("SKU-1")   # one hit
    series = daily_series(30)
    assert len(series) == 30
    assert series[0]["date"] == today - timedelta(days=29)
    assert series[-1]["date"] == today
    assert series[-3]["hits"] == 7 and series[-3]["tokens_saved"] == 700
    assert series[-1]["hits"] == 1 and series[-1]["generations"] == 1 and series[-1]["tokens_saved"] == 1000
    assert sum(day["hits"] for day in series) == 8
    flush_counters()
    assert daily_series(30)[-1]["hits"] == 1  # counted once, before and after the flush


@pytest.mark.django_db
def test_top_products_are_ordered_by_hits():
    for sku in ("A", "B", "C"):
        save(sku, f"Produto {sku}")
    memory = ProductMemory()
    for sku, hits in (("A", 1), ("B", 3)):
        for _ in range(hits):
            memory.get_product_data(sku)
    flush_counters()
    assert [(e.product_id, e.hit_count) for e in top_products()] == [("B", 3), ("A", 1)]


@pytest.mark.django_db
def test_expiring_soon_lists_the_next_seven_days_soonest_first():
    save("LATER", "Depois", ttl=6 * 86400)
    save("SOON", "Logo", ttl=3600)
    save("FAR", "Longe", ttl=30 * 86400)
    save("GONE", "Expirado")
    ProductMemoryEntry.objects.filter(product_id="GONE").update(expires_at=timezone.now() - timedelta(hours=1))
    result = expiring_soon()
    assert [e.product_id for e in result["entries"]] == ["SOON", "LATER"]
    assert result["count"] == 2 and not result["count_capped"]


# -- the page -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dashboard_needs_staff(client, django_user_model):
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    django_user_model.objects.create_user("cliente", password="x")
    client.login(username="cliente", password="x")
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_dashboard_needs_the_view_permission_on_entries(client, make_user):
    client.force_login(make_user("equipe", staff=True))
    assert client.get(reverse(DASHBOARD)).status_code == 403
    assert f'href="{reverse(DASHBOARD)}"' not in client.get(reverse("admin:index")).content.decode()
    client.force_login(make_user("leitor", staff=True, perms=["view_productmemoryentry"]))
    assert client.get(reverse(DASHBOARD)).status_code == 200
    assert f'href="{reverse(DASHBOARD)}"' in client.get(reverse("admin:index")).content.decode()
    client.force_login(make_user("root", superuser=True))
    assert client.get(reverse(DASHBOARD)).status_code == 200


@pytest.mark.django_db
def test_the_entries_list_links_the_dashboard_only_for_who_may_open_it(client, make_user):
    changelist = reverse("admin:memory_productmemoryentry_changelist")
    client.force_login(make_user("editor", staff=True, perms=["change_productmemoryentry"]))
    page = client.get(changelist)
    assert page.status_code == 200 and f'href="{reverse(DASHBOARD)}"' not in page.content.decode()
    client.force_login(make_user("leitor", staff=True, perms=["view_productmemoryentry"]))
    assert f'href="{reverse(DASHBOARD)}"' in client.get(changelist).content.decode()


@pytest.fixture
def activity(db):
    save("TOP-1", "Tênis <b>Top</b>")
    save("SOON-2", "Boné", ttl=2 * 86400)
    memory = ProductMemory()
    for _ in range(4):
        memory.get_product_data("TOP-1")
    memory.get_product_data("MISSING")
    flush_counters()
    DailyStats.objects.create(date=timezone.localdate() - timedelta(days=5), hits=11, misses=4, generations=1,
                              tokens_spent=900, tokens_saved=4000)


def test_dashboard_shows_cards_charts_and_tables(admin_client, activity):
    response = admin_client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    html = response.content.decode()
    for card in ("hit_rate", "tokens_spent", "tokens_saved", "cost_saved", "entries", "redis", "table", "backups"):
        assert f'data-card="{card}"' in html
    assert "Taxa de acerto" in html and "Painel da memória" in html
    assert "75,0%" in html  # 15 hits of 20 lookups, in Brazilian notation
    for name in ("hits", "misses", "generations", "tokens_saved"):
        svg = re.search(rf'<svg class="memory-chart memory-chart--{name}".*?</svg>', html, re.S).group(0)
        assert svg.count('<rect class="bar"') == 30
        assert re.search(r'height="[1-9]', svg), f"{name}: no visible bar"
    assert "Tênis &lt;b&gt;Top&lt;/b&gt;" in html  # titles are escaped
    top = html.split('id="top-products"')[1].split("</table>")[0]
    assert "TOP-1" in top and ">4<" in top
    soon = html.split('id="expiring-soon"')[1].split("</table>")[0]
    assert "SOON-2" in soon and "TOP-1" not in soon


def test_dashboard_speaks_english_to_an_english_browser(admin_client, activity):
    html = admin_client.get(reverse(DASHBOARD), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Memory dashboard" in html and "Hit rate" in html and "75.0%" in html


def test_dashboard_without_redis_still_renders_and_says_so(admin_client, activity, no_redis):
    response = admin_client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    assert "Redis não configurado ou inacessível" in response.content.decode()


def test_dashboard_with_redis_down_still_renders_and_says_so(admin_client, activity, dead_redis):
    response = admin_client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    assert "Redis não configurado ou inacessível" in response.content.decode()


def test_admin_index_links_to_the_dashboard(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse(DASHBOARD)}"' in html
    changelist = admin_client.get(reverse("admin:memory_productmemoryentry_changelist")).content.decode()
    assert f'href="{reverse(DASHBOARD)}"' in changelist


def test_language_menu_switches_the_admin_to_english_and_back(admin_client):
    html = admin_client.get(reverse(DASHBOARD)).content.decode()
    assert 'name="language"' in html and "Painel da memória" in html
    admin_client.post(reverse("set_language"), {"language": "en", "next": reverse(DASHBOARD)})
    assert "Memory dashboard" in admin_client.get(reverse(DASHBOARD)).content.decode()
    admin_client.post(reverse("set_language"), {"language": "pt-br", "next": reverse(DASHBOARD)})
    assert "Painel da memória" in admin_client.get(reverse(DASHBOARD)).content.decode()


def card(html: str, name: str) -> str:
    block = html.split(f'data-card="{name}"')[1].split('<div class="memory-card"')[0]
    return re.search(r'memory-card-value">(.*?)</div>', block, re.S).group(1).strip()


def test_dashboard_numbers_follow_the_commands_formats(admin_client, activity):
    html = admin_client.get(reverse(DASHBOARD)).content.decode()
    assert re.fullmatch(r"US\$ 0,\d{4}", card(html, "cost_saved"))  # as `manage_memory stats` writes it
    assert card(html, "tokens_saved") == "8.000"
    assert re.fullmatch(r"\d{1,3} B|\d{1,3},\d (KB|MB|GB)", card(html, "table"))
    english = admin_client.get(reverse(DASHBOARD), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert card(english, "tokens_saved") == "8,000"


def test_dashboard_counts_generated_edited_and_approved_entries(admin_client, activity):
    memory = ProductMemory()
    memory.replace_content("TOP-1", {"title": "Tênis", "description": "d", "bullet_points": ["a"],
                                     "seo_keywords": ["b"]}, origin="edited", author="maria")
    memory.set_approval("TOP-1", True, by="ana")
    html = admin_client.get(reverse(DASHBOARD)).content.decode()
    assert card(html, "content") == "1"
    note = html.split('data-card="content"')[1].split("</div>\n    </div>")[0]
    assert "aprovadas; 1 geradas, 1 editadas, 0 importadas, 0 restauradas" in " ".join(note.split())
