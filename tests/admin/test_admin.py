"""The entries admin through Django's test client: list, search, filters, detail, actions, import/export."""
import csv
import io
import json
import re
import time
from datetime import timedelta, timezone as dt_timezone

import openpyxl
import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from memory.admin.entries import estimated_count
from memory.models import ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.providers.prompts import current_generator_version
from memory.io.schema import ENTRY_FIELDS, EXPORT_FIELDS
from memory.engine.tiers import cache_key
from memory.io.export import write_export
from memory.io.importer import import_entries
from memory.services.entries import GENERATE_TASK

from tests.helpers import (
    FORMULA_TEXTS, ROUND_TRIP_TEXTS, SPREADSHEET_TRIGGERS, make_formula_entries, queued_tasks, snapshot_table,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:memory_productmemoryentry_changelist"


def content(title, **extra):
    return {
        "title": title,
        "description": f"Descrição de {title}.",
        "bullet_points": ["Qualidade"],
        "seo_keywords": [title.lower()],
        **extra,
    }


def save(sku, title, *, ttl=None, generator_version=None, kind="main_content", tokens=(100, 50), details=(0, 0),
         **extra):
    """``tokens`` are the prompt and completion tokens, ``details`` the cached and reasoning ones."""
    product = {"sku": sku, "title": title}
    ProductMemory(kind).save_product_data(
        product, content(title, **extra), tokens_prompt=tokens[0], tokens_completion=tokens[1],
        tokens_cached=details[0], tokens_reasoning=details[1], ttl=ttl, generator_version=generator_version,
    )
    return ProductMemoryEntry.objects.get(product_id=sku, kind=kind)


def expire(entry):
    ProductMemoryEntry.objects.filter(pk=entry.pk).update(expires_at=timezone.now() - timedelta(days=1))


def redis_key(sku, kind="main_content"):
    return caches["memory_l2"].client.make_key(cache_key((sku, kind)))


def l1_has(sku, kind="main_content"):
    return caches["memory_l1"].get(cache_key((sku, kind))) is not None


@pytest.fixture(autouse=True)
def fresh_filter_choices():
    caches["default"].clear()  # the kind / generator filters cache their choices
    yield
    caches["default"].clear()


@pytest.fixture
def staff(admin_client):
    return admin_client


@pytest.fixture
def entries():
    return {
        "active": save("ABC-1", "Tênis de Corrida Leve", details=(64, 16)),
        "other": save("XYZ-2", "Caneca Térmica Inox"),
        "stale": save("OLD-3", "Mochila Escolar", generator_version="template:template:p0"),
        "expired": save("EXP-4", "Garrafa Antiga"),
        "soon": save("SOON-5", "Boné Aba Curva", ttl=3 * 86400),
        "faq": save("ABC-1", "Perguntas frequentes", kind="faq"),
    }


@pytest.fixture
def expired_entries(entries):
    expire(entries["expired"])
    return entries


def listed(response):
    return {row.product_id for row in response.context["cl"].result_list}


# -- list ---------------------------------------------------------------------------------


def test_list_shows_columns_and_status_badges(staff, expired_entries):
    response = staff.get(reverse(CHANGELIST))
    assert response.status_code == 200
    html = response.content.decode()
    for text in ("ABC-1", "Tênis de Corrida Leve", "Caneca Térmica Inox", "OLD-3"):
        assert text in html
    assert 'memory-badge--active">ativo<' in html
    assert 'memory-badge--expired">expirado<' in html
    assert 'memory-badge--stale">desatualizado<' in html
    assert "Caneca Térmica Inox" in html and "Descrição de" not in html  # the payload is not shown


@pytest.mark.parametrize("order, expected", [("2", ["Boné Aba Curva", "Caneca Térmica Inox", "Garrafa Antiga",
                                                        "Mochila Escolar", "Perguntas frequentes", "Tênis de Corrida Leve"]),
                                              ("-2", None)])
def test_list_sorts_by_title_on_the_indexed_expression(staff, entries, order, expected):
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(reverse(CHANGELIST), {"o": order})
    titles = [row.title for row in response.context["cl"].result_list]
    assert titles == (expected or sorted(titles, reverse=True))
    if not expected:
        assert titles[0] == "Tênis de Corrida Leve"
    orderings = [q["sql"].rsplit("ORDER BY", 1)[1] for q in queries.captured_queries
                 if "ORDER BY" in q["sql"] and "DISTINCT" not in q["sql"]]
    # the expression of memory_entry_title_sort_idx, so that PostgreSQL reads the index instead of sorting
    assert [o for o in orderings if 'LEFT("memory_productmemoryentry"."title", 100)' in o
            or 'SUBSTR("memory_productmemoryentry"."title", 1, 100)' in o], orderings


def test_list_does_not_load_json_columns(staff, entries):
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(reverse(CHANGELIST))
    assert response.status_code == 200
    selects = [q["sql"] for q in queries.captured_queries if "memory_productmemoryentry" in q["sql"]]
    assert selects
    assert not [sql for sql in selects if '"payload"' in sql.split("FROM")[0] or '"source_data"' in sql.split("FROM")[0]]


def test_list_never_counts_the_whole_table(staff, entries):
    with CaptureQueriesContext(connection) as queries:
        staff.get(reverse(CHANGELIST))
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts, "the page shows a count"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_estimated_count_is_exact_below_the_limit_and_an_estimate_above():
    for i in range(6):
        save(f"CNT-{i}", f"Produto {i}")
    queryset = ProductMemoryEntry.objects.all()
    assert estimated_count(queryset, exact_limit=10) == 6
    assert estimated_count(queryset.filter(product_id__in=["CNT-1", "CNT-2"]), exact_limit=10) == 2
    assert estimated_count(queryset, exact_limit=3) >= 4
    assert estimated_count(queryset.filter(product_id__startswith="CNT"), exact_limit=3) >= 4


def test_a_slow_count_gives_way_to_the_estimate_and_restores_the_timeout():
    save("SLOW-1", "Produto lento")
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        before = cursor.fetchone()[0]
    slow = ProductMemoryEntry.objects.extra(where=["pg_sleep(5) IS NOT NULL"])
    assert estimated_count(slow) >= 0  # canceled after COUNT_TIMEOUT_MS, then estimated by the planner
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == before
    assert ProductMemoryEntry.objects.filter(product_id="SLOW-1").exists()  # the connection is usable


def test_filter_choices_of_a_large_table_come_from_planner_statistics(entries):
    from memory.admin.filters import column_values

    save("XYZ-2", "Perguntas", kind="faq")
    save("OLD-9", "Antigo", generator_version="template:template:p0")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE memory_productmemoryentry")
    with CaptureQueriesContext(connection) as queries:
        assert column_values("kind", exact_below=0) == ["faq", "main_content"]
        assert column_values("generator_version", exact_below=0) == sorted(
            {current_generator_version(), "template:template:p0"})
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"]]


@pytest.mark.parametrize("term, expected", [
    ("abc-1", {"ABC-1"}),          # product_id, any case
    ("caneca", {"XYZ-2"}),         # title, part of a word
    ("TÉRMICA", {"XYZ-2"}),
    ("inexistente", set()),
])
def test_search_finds_entries_by_product_id_or_title(staff, entries, term, expected):
    response = staff.get(reverse(CHANGELIST), {"q": term})
    assert response.status_code == 200
    assert listed(response) == expected


@pytest.mark.parametrize("params, expected", [
    ({"kind": "faq"}, {"ABC-1"}),
    ({"status": "active"}, {"ABC-1", "XYZ-2", "SOON-5"}),
    ({"status": "expired"}, {"EXP-4"}),
    ({"status": "stale"}, {"OLD-3"}),
    ({"generator_version": "template:template:p0"}, {"OLD-3"}),
    ({"expiring": "7d"}, {"SOON-5"}),
    ({"kind": "main_content", "status": "active", "q": "abc"}, {"ABC-1"}),
])
def test_each_filter_lists_exactly_the_matching_entries(staff, expired_entries, params, expected):
    response = staff.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    assert listed(response) == expected


def test_filter_choices_list_kinds_and_versions(staff, entries):
    html = staff.get(reverse(CHANGELIST)).content.decode()
    assert "?kind=faq" in html
    assert "?generator_version=template%3Atemplate%3Ap0" in html
    assert f"{current_generator_version()} (atual)" in html


def test_list_needs_staff(client, entries, django_user_model):
    django_user_model.objects.create_user("cliente", password="x")
    client.login(username="cliente", password="x")
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_list_speaks_english_to_an_english_browser(staff, entries):
    response = staff.get(reverse(CHANGELIST), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'memory-badge--active">active<' in html
    assert "Search by product id or title" in html


# -- detail -------------------------------------------------------------------------------


def test_detail_shows_payload_pretty_printed_and_escaped(staff):
    entry = save("XSS-1", "<script>alert('x')</script>", note="<img src=x onerror=alert(1)>")
    response = staff.get(reverse("admin:memory_productmemoryentry_change", args=[entry.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert(" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert '<pre class="memory-json">{\n  &quot;bullet_points&quot;: [' in html
    assert "&quot;sku&quot;: &quot;XSS-1&quot;" in html  # source data


def test_detail_shows_the_cached_and_reasoning_tokens_read_only(staff):
    entry = save("USG-1", "Garrafa Térmica", tokens=(1200, 700), details=(1024, 384))
    response = staff.get(reverse("admin:memory_productmemoryentry_change", args=[entry.pk]),
                         HTTP_ACCEPT_LANGUAGE="pt-br")
    html = response.content.decode()
    fields = {name: " ".join(re.sub(r"<[^>]+>", " ", block).split())
              for name, block in re.findall(r'<div class="form-row field-(\w+)">(.*?)</div>\s*</div>', html, re.S)}
    assert fields["tokens_prompt"].endswith("1200") and fields["tokens_completion"].endswith("700")
    assert fields["tokens_cached"] == "Tokens do prompt em cache: 1024"
    assert fields["tokens_reasoning"] == "Tokens de raciocínio: 384"
    assert 'name="tokens_cached"' not in html  # shown, not editable


def test_xss_in_title_is_escaped_in_the_list(staff):
    save("XSS-2", "<script>alert(2)</script>")
    html = staff.get(reverse(CHANGELIST)).content.decode()
    assert "<script>alert(2)</script>" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_detail_is_read_only(staff, entries):
    url = reverse("admin:memory_productmemoryentry_change", args=[entries["active"].pk])
    html = staff.get(url).content.decode()
    assert 'name="_save"' not in html
    response = staff.post(url, {"product_id": "HACKED"})
    assert response.status_code == 403
    assert ProductMemoryEntry.objects.filter(product_id="ABC-1", kind="main_content").exists()


def test_entries_cannot_be_added_by_hand(staff):
    assert staff.get(reverse("admin:memory_productmemoryentry_add")).status_code == 403


# -- actions ----------------------------------------------------------------------------------


def post_action(client, action, entries, follow=False, **extra):
    return client.post(reverse(CHANGELIST), {
        "action": action, "_selected_action": [e.pk for e in entries], **extra,
    }, follow=follow)


def test_delete_action_asks_for_confirmation_first(staff, entries, redis_client):
    response = post_action(staff, "delete_selected", [entries["active"]])
    assert response.status_code == 200
    assert "ABC-1" in response.content.decode()
    assert ProductMemoryEntry.objects.filter(pk=entries["active"].pk).exists()
    assert redis_client.exists(redis_key("ABC-1"))


def test_delete_action_removes_entries_from_every_tier(
    staff, entries, redis_client, django_capture_on_commit_callbacks
):
    assert redis_client.exists(redis_key("ABC-1")) and redis_client.exists(redis_key("XYZ-2"))
    assert l1_has("ABC-1")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_action(staff, "delete_selected", [entries["active"], entries["other"]], post="yes")
    assert response.status_code == 302
    assert not ProductMemoryEntry.objects.filter(product_id__in=["ABC-1", "XYZ-2"], kind="main_content").exists()
    assert not redis_client.exists(redis_key("ABC-1"))
    assert not redis_client.exists(redis_key("XYZ-2"))
    assert not l1_has("ABC-1")
    assert ProductMemory().get_product_data("ABC-1") is None
    # the faq entry of the same product and the unselected entries stay
    assert redis_client.exists(redis_key("ABC-1", "faq"))
    assert ProductMemoryEntry.objects.filter(product_id="OLD-3").exists()


def test_delete_from_the_detail_page_removes_every_tier(
    staff, entries, redis_client, django_capture_on_commit_callbacks
):
    url = reverse("admin:memory_productmemoryentry_delete", args=[entries["other"].pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not ProductMemoryEntry.objects.filter(pk=entries["other"].pk).exists()
    assert not redis_client.exists(redis_key("XYZ-2"))
    assert not l1_has("XYZ-2")


def test_delete_waits_for_the_commit_before_evicting(staff, entries, redis_client, django_capture_on_commit_callbacks):
    """Evicting before the commit would let a concurrent reader copy the old row back into Redis."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        post_action(staff, "delete_selected", [entries["active"]], post="yes")
        assert redis_client.exists(redis_key("ABC-1"))
    assert callbacks
    for callback in callbacks:
        callback()
    assert not redis_client.exists(redis_key("ABC-1"))


def test_regenerate_action_regenerates_with_the_current_generator(staff, entries, eager_tasks):
    stale = entries["stale"]
    response = post_action(staff, "regenerate_selected", [stale], follow=True)
    assert response.status_code == 200
    stale.refresh_from_db()
    assert stale.generator_version == current_generator_version()
    assert stale.payload["title"] != "Mochila Escolar" or stale.payload["description"] != "Descrição de Mochila Escolar."
    assert ProductMemory().lookup("OLD-3").status == "active"
    assert "1 produto regenerado." in response.content.decode()  # eager mode: it ran in the request


def test_regenerate_action_with_a_broker_says_the_products_were_queued(staff, entries, published_tasks):
    response = post_action(staff, "regenerate_selected", [entries["stale"], entries["other"]], follow=True)
    assert "2 produtos enviados para regeneração." in response.content.decode()
    assert sorted(data["sku"] for data, _ in published_tasks) == ["OLD-3", "XYZ-2"]


LONG_TITLE = "Mochila " + "a" * 5992  # 6,000 characters


@pytest.mark.parametrize("mode", ["eager_tasks", "published_tasks"])
def test_regenerate_action_refuses_source_data_no_generation_accepts_in_both_modes(staff, entries, mode, request):
    request.getfixturevalue(mode)
    ProductMemoryEntry.objects.filter(pk=entries["stale"].pk).update(source_data={"sku": "OLD-3", "title": LONG_TITLE})
    before = ProductMemoryEntry.objects.get(pk=entries["stale"].pk).updated_at
    response = post_action(staff, "regenerate_selected", [entries["stale"]], follow=True)
    assert ("1 entrada tem dados de origem que a geração recusa e não foi regenerada: "
            "OLD-3: title: no máximo 500 caracteres") in response.content.decode()
    assert ProductMemoryEntry.objects.get(pk=entries["stale"].pk).updated_at == before
    if mode == "published_tasks":
        assert request.getfixturevalue("published_tasks") == []


def test_regenerate_action_in_eager_mode_with_the_provider_out_of_quota_says_so_and_stops(
    staff, entries, eager_tasks, openai_provider
):
    openai_provider.expect_request("/v1/chat/completions").respond_with_json({"error": {
        "message": "You exceeded your current quota.", "type": "insufficient_quota", "code": "insufficient_quota",
    }}, status=429)
    selected = [entries["stale"], entries["other"], entries["active"]]
    before = {e.pk: e.updated_at for e in ProductMemoryEntry.objects.all()}
    html = post_action(staff, "regenerate_selected", selected, follow=True).content.decode()
    assert "1 produto não foi regenerado, nada foi salvo: " in html
    assert ": Geração falhou após 1 tentativa: cota do provedor esgotada (HTTP 429)" in html
    assert ("O provedor de conteúdo está indisponível: mais 2 produtos não foram tentados. "
            "Tente novamente mais tarde.") in html
    assert len(openai_provider.log) == 1  # the others were not tried
    assert {e.pk: e.updated_at for e in ProductMemoryEntry.objects.all()} == before


def test_regenerate_action_in_eager_mode_names_each_product_the_provider_failed(
    staff, entries, eager_tasks, openai_provider
):
    openai_provider.expect_request("/v1/chat/completions").respond_with_json(
        {"choices": [{"message": {"content": "{não é json"}}]})
    before = {e.pk: e.updated_at for e in ProductMemoryEntry.objects.all()}
    html = post_action(staff, "regenerate_selected", [entries["stale"], entries["other"]], follow=True).content.decode()
    assert "2 produtos não foram regenerados, nada foi salvo: " in html
    for sku in ("OLD-3", "XYZ-2"):
        assert f"{sku}: Geração falhou após 1 tentativa: resposta inválida (o conteúdo não é JSON)" in html
    assert "não foram tentados" not in html  # a bad answer is the product's, not the provider's state
    assert {e.pk: e.updated_at for e in ProductMemoryEntry.objects.all()} == before


def test_regenerate_action_skips_entries_it_cannot_regenerate(staff, entries, eager_tasks):
    ProductMemoryEntry.objects.filter(pk=entries["other"].pk).update(source_data={})
    ProductMemoryEntry.objects.filter(pk=entries["active"].pk).update(source_data={"cor": "azul"})  # no identifier
    before = ProductMemoryEntry.objects.get(pk=entries["faq"].pk).updated_at
    response = staff.post(reverse(CHANGELIST), {
        "action": "regenerate_selected",
        "_selected_action": [entries["other"].pk, entries["active"].pk, entries["faq"].pk],
    }, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "2 entradas não têm dados de origem que nomeiem o seu produto (identificador e título) para regenerar." in html
    assert "1 entrada não é conteúdo principal" in html
    assert ProductMemoryEntry.objects.get(pk=entries["faq"].pk).updated_at == before


def test_regenerate_action_with_the_broker_down_says_so_and_changes_nothing(staff, entries, monkeypatch):
    from kombu.exceptions import OperationalError

    from memory.tasks import generate_main_content_task

    def unreachable(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(generate_main_content_task, "apply_async", unreachable)
    before = {e.pk: e.updated_at for e in ProductMemoryEntry.objects.all()}
    response = post_action(staff, "regenerate_selected", [entries["stale"], entries["other"]], follow=True)
    assert response.status_code == 200
    assert "A fila de tarefas está inacessível: 2 produtos não foram enviados." in response.content.decode()
    assert {e.pk: e.updated_at for e in ProductMemoryEntry.objects.all()} == before


def test_regenerate_action_with_redis_down_says_so_at_once_and_queues_once_it_is_back(
    staff, entries, celery_on_own_redis
):
    server = celery_on_own_redis
    selected = [entries["stale"], entries["other"]]
    assert "2 produtos enviados para regeneração." in post_action(
        staff, "regenerate_selected", selected, follow=True).content.decode()
    assert len(queued_tasks(server.url)) == 2

    server.kill()
    # The first call finds the pooled broker connection dead, the next ones the result store's.
    for attempt in range(3):
        started = time.monotonic()
        response = post_action(staff, "regenerate_selected", selected, follow=True)
        took = time.monotonic() - started
        assert response.status_code == 200
        assert "A fila de tarefas está inacessível: 2 produtos não foram enviados." in response.content.decode()
        assert took < 1.5, f"call {attempt + 1} took {took:.1f} s"

    server.start()  # an empty Redis: it kept nothing from before
    assert "2 produtos enviados para regeneração." in post_action(
        staff, "regenerate_selected", selected, follow=True).content.decode()
    assert [name for name, _ in queued_tasks(server.url)] == [GENERATE_TASK, GENERATE_TASK]


def test_extend_expiry_action_adds_one_ttl_and_drops_the_cached_copies(
    staff, expired_entries, redis_client, django_capture_on_commit_callbacks
):
    active, expired = expired_entries["active"], expired_entries["expired"]
    started = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        response = post_action(staff, "extend_expiry_selected", [active, expired], follow=True)
    assert "Validade estendida para 2 entradas." in response.content.decode()
    ttl = timedelta(seconds=settings.MEMORY_DEFAULT_TTL)
    old_active_expiry = active.expires_at
    active.refresh_from_db()
    expired.refresh_from_db()
    assert active.expires_at == old_active_expiry + ttl
    assert started + ttl <= expired.expires_at <= timezone.now() + ttl
    assert not redis_client.exists(redis_key("ABC-1"))  # the old copy carried the old expiry
    hit = ProductMemory().get_product_data("EXP-4")
    assert hit is not None and hit.tier == "l3"


@pytest.mark.parametrize("action", ["delete_selected", "regenerate_selected", "extend_expiry_selected"])
def test_actions_refuse_selections_too_large_for_one_request(staff, entries, action, monkeypatch, eager_tasks):
    import memory.admin.entries

    monkeypatch.setattr(memory.admin.entries, "MAX_ACTION_ENTRIES", 2)
    before = {e.pk: (e.expires_at, e.updated_at) for e in ProductMemoryEntry.objects.all()}
    response = post_action(staff, action, [entries["active"], entries["other"], entries["stale"]],
                           follow=True, post="yes")
    assert response.status_code == 200
    assert "Mais de 2 entradas selecionadas" in response.content.decode()
    assert {e.pk: (e.expires_at, e.updated_at) for e in ProductMemoryEntry.objects.all()} == before


def test_actions_need_change_permission(client, entries, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("leitor", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_productmemoryentry"))
    client.login(username="leitor", password="x")
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    actions = dict(response.context["action_form"].fields["action"].choices)
    assert "extend_expiry_selected" not in actions
    assert "regenerate_selected" not in actions
    assert "delete_selected" not in actions
    assert "export_admin_action" in actions
    assert client.get(reverse("admin:memory_productmemoryentry_import")).status_code == 403


# -- export and import --------------------------------------------------------------------------

FORMATS = {"csv": "0", "json": "1", "xlsx": "2"}


def export(client, fmt, entries):
    response = client.post(reverse("admin:memory_productmemoryentry_export"), {
        "format": FORMATS[fmt], "resource": "0", "export_items": [e.pk for e in entries],
    })
    assert response.status_code == 200, response.content[:500]
    assert "attachment" in response["Content-Disposition"]
    return response.content


def rows_of(fmt, data):
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    if fmt == "json":
        return json.loads(data)
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    values = list(sheet.values)
    return [dict(zip(values[0], row)) for row in values[1:]]


def test_export_action_offers_the_export_form(staff, entries):
    response = post_action(staff, "export_admin_action", [entries["active"]])
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="export_items"' in html and str(entries["active"].pk) in html


@pytest.mark.parametrize("fmt", ["csv", "json", "xlsx"])
def test_export_has_exactly_the_transfer_columns(staff, entries, fmt):
    rows = rows_of(fmt, export(staff, fmt, [entries["active"], entries["stale"]]))
    assert [list(row) for row in rows] == [list(EXPORT_FIELDS)] * 2
    by_id = {row["product_id"]: row for row in rows}
    active = by_id["ABC-1"]
    assert json.loads(active["payload"])["title"] == "Tênis de Corrida Leve"
    assert json.loads(active["source_data"]) == {"sku": "ABC-1", "title": "Tênis de Corrida Leve"}
    assert int(active["tokens_prompt"]) == 100
    assert active["expires_at"] == entries["active"].expires_at.astimezone(dt_timezone.utc).isoformat()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_spreadsheet_exports_quote_every_cell_a_spreadsheet_would_run_as_a_formula(staff, fmt):
    data = export(staff, fmt, make_formula_entries())
    rows = rows_of(fmt, data)
    # XLSX is XML, which reads a carriage return back as a line feed.
    expected = sorted("'" + (text.replace("\r", "\n") if fmt == "xlsx" else text) for text in FORMULA_TEXTS)
    assert sorted(row["product_id"] for row in rows) == expected
    assert sorted(row["generator_version"] for row in rows) == expected
    assert [cell for row in rows for cell in row.values()
            if isinstance(cell, str) and cell.startswith(SPREADSHEET_TRIGGERS)] == []
    assert {json.loads(row["payload"])["bullet_points"][0] for row in rows} == set(FORMULA_TEXTS)


def test_xlsx_export_holds_formula_texts_as_text_cells_never_formulas(staff):
    sheet = openpyxl.load_workbook(io.BytesIO(export(staff, "xlsx", make_formula_entries()))).active
    cells = [cell for row in sheet.iter_rows(min_row=2) for cell in row]
    assert [cell.coordinate for cell in cells if cell.data_type == "f"] == []
    product_ids = [row[EXPORT_FIELDS.index("product_id")] for row in sheet.iter_rows(min_row=2)]
    assert {cell.data_type for cell in product_ids} == {"s"}


def test_json_export_holds_formula_texts_as_they_are(staff):
    rows = rows_of("json", export(staff, "json", make_formula_entries()))
    assert sorted(row["product_id"] for row in rows) == sorted(FORMULA_TEXTS)


def import_file(client, fmt, data, name=None):
    upload = SimpleUploadedFile(name or f"entries.{fmt}", data if isinstance(data, bytes) else data.encode())
    return client.post(reverse("admin:memory_productmemoryentry_import"), {
        "format": FORMATS[fmt], "resource": "0", "import_file": upload,
    })


def confirm(client, preview):
    form = preview.context["confirm_form"]
    assert form is not None
    return client.post(reverse("admin:memory_productmemoryentry_process_import"), {
        name: form.initial[name] for name in ("import_file_name", "original_file_name", "format", "resource")
        if form.initial.get(name) is not None
    })


@pytest.mark.parametrize("fmt", ["csv", "json", "xlsx"])
def test_exported_file_imports_back(staff, entries, fmt, redis_client, django_capture_on_commit_callbacks):
    # hot: the admin's files carry the hotness too (refresh-ahead and the warm-up read it)
    ProductMemoryEntry.objects.filter(pk=entries["active"].pk).update(
        hotness=2.75, hotness_at=timezone.now().replace(microsecond=0) - timedelta(hours=2))
    entries["active"].refresh_from_db()
    data = export(staff, fmt, [entries["active"], entries["stale"]])
    ProductMemoryEntry.objects.filter(product_id__in=["ABC-1", "OLD-3"], kind="main_content").delete()
    preview = import_file(staff, fmt, data)
    assert preview.status_code == 200
    assert not preview.context["result"].has_validation_errors()
    assert not preview.context["result"].has_errors()
    assert not ProductMemoryEntry.objects.filter(product_id="ABC-1", kind="main_content").exists()  # preview only
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm(staff, preview)
    assert response.status_code == 302
    restored = ProductMemoryEntry.objects.get(product_id="ABC-1", kind="main_content")
    original = entries["active"]
    for name in [*ENTRY_FIELDS, "version"]:  # the history comes back too: the same version, same origin
        assert getattr(restored, name) == getattr(original, name), name
    assert restored.title == "Tênis de Corrida Leve"
    assert restored.hotness == 2.75 and restored.hotness_at == original.hotness_at
    assert ProductMemoryEntry.objects.get(product_id="OLD-3").generator_version == "template:template:p0"


def test_confirmed_import_evicts_cached_copies(staff, entries, redis_client, django_capture_on_commit_callbacks):
    data = export(staff, "csv", [entries["active"]]).decode("utf-8-sig")
    data = data.replace("Tênis de Corrida Leve", "Tênis Novo", 1)  # the payload title
    assert redis_client.exists(redis_key("ABC-1"))
    preview = import_file(staff, "csv", data)
    assert redis_client.exists(redis_key("ABC-1"))  # the preview changes nothing
    with django_capture_on_commit_callbacks(execute=True):
        confirm(staff, preview)
    assert not redis_client.exists(redis_key("ABC-1"))
    assert not l1_has("ABC-1")
    assert ProductMemory().get_product_data("ABC-1").content["title"] == "Tênis Novo"


def bad_rows_csv():
    good = {
        "product_id": "NEW-1", "kind": "main_content", "payload": json.dumps(content("Novo")),
        "source_data": "{}", "input_fingerprint": "f" * 64, "generator_version": current_generator_version(),
        "tokens_prompt": "10", "tokens_completion": "5", "hit_count": "0", "tokens_saved": "0",
        "created_at": "2026-01-01T10:00:00+00:00", "updated_at": "2026-01-01T10:00:00+00:00",
        "last_hit_at": "", "expires_at": "2030-01-01T00:00:00+00:00",
    }
    rows = [
        good,
        {**good, "product_id": "BAD-JSON", "payload": "{not json"},
        {**good, "product_id": "BAD-TOKENS", "tokens_prompt": "-5"},
        {**good, "product_id": "BAD-DATE", "expires_at": "amanhã"},
        {**good, "product_id": "BAD-LIST", "payload": "[1, 2]"},
        {**good, "product_id": ""},
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(good))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_import_preview_shows_each_bad_row_and_writes_nothing(staff):
    before = ProductMemoryEntry.objects.count()
    response = import_file(staff, "csv", bad_rows_csv())
    assert response.status_code == 200
    result = response.context["result"]
    invalid = {row.number: row.error for row in result.invalid_rows}
    assert sorted(invalid) == [2, 3, 4, 5, 6]
    assert "payload" in invalid[2].message_dict and "JSON" in invalid[2].message_dict["payload"][0]
    assert "tokens_prompt" in invalid[3].message_dict
    assert "expires_at" in invalid[4].message_dict
    assert "payload" in invalid[5].message_dict
    assert "product_id" in invalid[6].message_dict
    assert response.context.get("confirm_form") is None  # nothing can be confirmed
    html = response.content.decode()
    assert "JSON inválido" in html
    assert "não pode ser negativo" in html
    assert ProductMemoryEntry.objects.count() == before
    assert not ProductMemoryEntry.objects.filter(product_id="NEW-1").exists()


def test_import_rejects_an_unreadable_file_with_a_message(staff):
    response = import_file(staff, "xlsx", b"this is not a spreadsheet")
    assert response.status_code == 200
    assert response.context["form"].errors


@pytest.mark.parametrize("fmt", ["csv", "json", "xlsx"])
def test_manage_memory_import_reads_what_the_admin_exports(staff, entries, fmt):
    data = export(staff, fmt, [entries["active"], entries["stale"]])
    ProductMemoryEntry.objects.filter(product_id__in=["ABC-1", "OLD-3"], kind="main_content").delete()
    report = import_entries(io.BytesIO(data), fmt)
    assert report.errors == [] and report.created == 2
    restored = ProductMemoryEntry.objects.get(product_id="ABC-1", kind="main_content")
    for name in [*ENTRY_FIELDS, "version"]:  # the history comes back too: the same version, same origin
        assert getattr(restored, name) == getattr(entries["active"], name), name


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_admin_imports_what_manage_memory_exports(staff, entries, fmt, django_capture_on_commit_callbacks):
    out = io.StringIO()
    write_export(fmt, out)
    ProductMemoryEntry.objects.filter(product_id="XYZ-2", kind="main_content").delete()
    preview = import_file(staff, fmt, out.getvalue())
    result = preview.context["result"]
    assert not result.has_validation_errors() and not result.has_errors()
    with django_capture_on_commit_callbacks(execute=True):
        confirm(staff, preview)
    restored = ProductMemoryEntry.objects.get(product_id="XYZ-2", kind="main_content")
    for name in [*ENTRY_FIELDS, "version"]:  # the history comes back too: the same version, same origin
        assert getattr(restored, name) == getattr(entries["other"], name), name


@pytest.mark.parametrize("fmt", ["csv", "json", "xlsx"])
def test_formula_and_quoted_texts_come_back_exactly_through_the_admin_and_the_command(
        staff, fmt, django_capture_on_commit_callbacks):
    exported = make_formula_entries(ROUND_TRIP_TEXTS)
    before = snapshot_table()
    data = export(staff, fmt, exported)

    ProductMemoryEntry.objects.all().delete()
    preview = import_file(staff, fmt, data)
    assert not preview.context["result"].has_validation_errors() and not preview.context["result"].has_errors()
    with django_capture_on_commit_callbacks(execute=True):
        confirm(staff, preview)
    assert snapshot_table() == before  # admin export, admin import

    ProductMemoryEntry.objects.all().delete()
    assert import_entries(io.BytesIO(data), fmt).ok
    assert snapshot_table() == before  # admin export, manage_memory import

    if fmt != "xlsx":  # manage_memory exports json, jsonl and csv
        out = io.StringIO()
        write_export(fmt, out)
        ProductMemoryEntry.objects.all().delete()
        preview = import_file(staff, fmt, out.getvalue())
        with django_capture_on_commit_callbacks(execute=True):
            confirm(staff, preview)
        assert snapshot_table() == before  # manage_memory export, admin import


def test_import_fills_empty_cells_as_manage_memory_import_does(staff, django_capture_on_commit_callbacks):
    data = "product_id,kind,payload\nMIN-1,," + '"' + json.dumps(content("Mínimo")).replace('"', '""') + '"\n'
    preview = import_file(staff, "csv", data)
    assert not preview.context["result"].has_validation_errors()
    with django_capture_on_commit_callbacks(execute=True):
        confirm(staff, preview)
    entry = ProductMemoryEntry.objects.get(product_id="MIN-1")
    assert entry.kind == "main_content"
    assert entry.generator_version == current_generator_version()
    assert len(entry.input_fingerprint) == 64
    assert entry.expires_at > timezone.now() + timedelta(days=89)
    assert entry.title == "Mínimo"
    assert ProductMemory().get_product_data("MIN-1").content["title"] == "Mínimo"
