"""Hostile input against every way in (API, admin, dashboard, ``manage_memory``): each attempt gets
a clear 4xx (DRF's shape), a CommandError or an admin error, and PostgreSQL and Redis stay as they were.
Markup and SQL metacharacters are data: stored and returned as sent, searched literally, shown escaped."""
import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from memory.models import DailyStats, ProductMemoryEntry
from memory.engine.counters import hit_counter
from memory.engine.memory import ProductMemory

from tests.helpers import token_client

CONTENT = {"title": "Produto", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}
SQL = "'; DROP TABLE memory_productmemoryentry; --"
SCRIPT = "<script>alert('xss')</script>"
HOSTILE = [SQL, SCRIPT, "100%", "a_b", "c\\d", '"); DELETE FROM memory_dailystats; --']
TABLE = ProductMemoryEntry._meta.db_table


@pytest.fixture
def state(db, redis_client):
    """Seeds two entries and returns a function giving everything the memory holds, to compare."""
    for sku in ("SAFE-1", "SAFE-2"):
        ProductMemory().save_product_data({"sku": sku, "title": f"Produto {sku}"}, CONTENT, tokens_prompt=10)
    hit_counter.push()  # the seeding's counts, which the background pusher would otherwise move mid-test

    def snapshot():
        rows = sorted(ProductMemoryEntry.objects.values_list(
            "product_id", "kind", "payload", "source_data", "hit_count", "tokens_saved", "updated_at", "expires_at",
        ))
        daily = sorted(DailyStats.objects.values_list("date", "hits", "misses", "generations", "tokens_saved"))
        keys = {key: redis_client.dump(key) for key in redis_client.scan_iter()}
        return rows, daily, keys

    return snapshot


def tables_exist() -> bool:
    return {TABLE, DailyStats._meta.db_table} <= set(connection.introspection.table_names())


def post_json(client, url, body: bytes | None, **extra):
    return client.post(url, body, content_type="application/json", **extra)


def assert_drf_error(response, status, field=None):
    assert response.status_code == status, response.content[:500]
    data = response.json()
    assert isinstance(data, dict) and data
    if field is not None:
        assert field in data, data
        message = data[field] if isinstance(data[field], str) else data[field][0]
        assert isinstance(message, str) and message


# --- anonymous and without permission -------------------------------------------------------------

API = [
    ("get", "/api/memory/stats/"), ("get", "/api/memory/list/"), ("post", "/api/memory/get/"),
    ("post", "/api/memory/delete/"), ("post", "/api/memory/clear/"), ("get", "/api/memory/export/"),
    ("post", "/api/memory/force-regenerate/"), ("get", "/api/schema/"), ("get", "/api/docs/"), ("get", "/metrics"),
]
BODY = json.dumps({"product_id": "SAFE-1"}).encode()


def admin_urls() -> list[tuple[str, str, dict]]:
    entry = ProductMemoryEntry.objects.get(product_id="SAFE-1")
    name = "admin:memory_productmemoryentry_"
    return [
        ("get", reverse(name + "changelist"), {}),
        ("post", reverse(name + "changelist"), {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"}),
        ("get", reverse(name + "change", args=[entry.pk]), {}),
        ("post", reverse(name + "delete", args=[entry.pk]), {"post": "yes"}),
        ("get", reverse(name + "history", args=[entry.pk]), {}),
        ("post", reverse(name + "import"), {"format": "1", "resource": "0",
                                             "import_file": SimpleUploadedFile("e.json", b"[]")}),
        ("post", reverse(name + "process_import"), {"import_file_name": "x", "format": "1", "resource": "0"}),
        ("post", reverse(name + "export"), {"format": "0", "resource": "0"}),
        ("get", reverse("memory:dashboard"), {}),
    ]


@pytest.mark.parametrize("method, url", API, ids=[u for _, u in API])
def test_anonymous_api_calls_are_401_and_change_nothing(state, method, url):
    before = state()
    response = getattr(APIClient(), method)(url, BODY if method == "post" else None, content_type="application/json")
    if url.startswith("/api/memory/"):
        assert_drf_error(response, 401, "detail")
    else:  # the schema, its docs and /metrics answer in their own formats
        assert response.status_code == 401
    assert state() == before


def test_anonymous_and_non_staff_users_are_sent_to_the_admin_login_and_change_nothing(state):
    before = state()
    user = User.objects.create_user("cliente", password="senha-forte-123")
    logged_in = Client()
    logged_in.force_login(user)
    for client in (Client(), logged_in):
        for method, url, data in admin_urls():
            response = getattr(client, method)(url, data)
            assert response.status_code == 302, (url, response.status_code)
            assert "/login/" in response["Location"]
    assert state() == before


def test_staff_without_memory_permissions_gets_403_on_every_admin_page_and_changes_nothing(state):
    before = state()
    client = Client()
    client.force_login(User.objects.create_user("equipe", password="senha-forte-123", is_staff=True))
    for method, url, data in admin_urls():
        if "dashboard" in url:
            continue  # the dashboard is for any staff member; it only reads
        response = getattr(client, method)(url, data)
        assert response.status_code == 403, (url, response.status_code)
    assert state() == before


@pytest.mark.parametrize("url", ["/api/memory/delete/", "/api/memory/clear/", "/api/memory/force-regenerate/"])
def test_token_without_permission_cannot_write_and_changes_nothing(state, make_user, eager_tasks, url):
    before = state()
    response = post_json(token_client(make_user("leitor")), url, BODY)
    assert_drf_error(response, 403, "detail")
    assert state() == before


# --- CSRF on session POSTs ------------------------------------------------------------------------


def test_session_posts_without_csrf_token_are_refused_and_change_nothing(state, eager_tasks):
    before = state()
    superuser = User.objects.create_superuser("raiz", password="senha-forte-123")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(superuser)
    for method, url, data in admin_urls():
        if method == "post":
            assert getattr(browser, method)(url, data).status_code == 403, url
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(superuser)
    for url in ("/api/memory/delete/", "/api/memory/clear/", "/api/memory/force-regenerate/"):
        response = post_json(api, url, BODY)
        assert_drf_error(response, 403, "detail")
        assert "CSRF" in response.json()["detail"]
    assert state() == before


# --- markup and SQL metacharacters are data -------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_metacharacters_in_product_data_are_stored_and_returned_as_sent(state, api, eager_tasks, text):
    product = {"sku": text, "title": f"Produto {text}", "descricao": text}
    created = post_json(api, "/api/memory/force-regenerate/", json.dumps({"product_data": product}).encode())
    assert created.status_code == 201, created.content
    assert created.json()["product_id"] == text

    got = post_json(api, "/api/memory/get/", json.dumps({"product_id": text}).encode())
    assert got.status_code == 200
    assert got.json()["product_id"] == text
    assert text in got.json()["content"]["title"]
    row = ProductMemoryEntry.objects.get(product_id=text)
    assert row.source_data["descricao"] == text
    assert tables_exist() and ProductMemoryEntry.objects.count() == 3


def test_search_treats_metacharacters_literally(state, api):
    for sku in ["P-100%", "P-1000", "A_B", "AXB", "C\\D", "CXD", SQL, SCRIPT]:
        ProductMemory().save_product_data({"sku": sku}, {**CONTENT, "title": f"Título {sku}"})
    cases = {
        "%": ["P-100%"], "_": ["A_B", SQL], "\\": ["C\\D"], "100%": ["P-100%"], "A_B": ["A_B"],
        "'": [SQL, SCRIPT], "DROP TABLE": [SQL], "<script>": [SCRIPT], "%%": [], "' OR '1'='1": [],
    }
    for term, expected in cases.items():
        response = api.get("/api/memory/list/", {"search": term})
        assert response.status_code == 200, term
        assert sorted(r["product_id"] for r in response.json()["results"]) == sorted(expected), term
    assert tables_exist() and ProductMemoryEntry.objects.count() == 10


def test_admin_search_and_pages_show_metacharacters_escaped(state, admin_client):
    ProductMemory().save_product_data({"sku": SQL}, {**CONTENT, "title": SCRIPT})
    entry = ProductMemoryEntry.objects.get(product_id=SQL)
    changelist = reverse("admin:memory_productmemoryentry_changelist")
    for term, expected in ((SQL, 1), ("%", 0), ("_", 1), ("\\", 0), (SCRIPT, 1), ("memory_product%", 0)):
        response = admin_client.get(changelist, {"q": term})
        assert response.status_code == 200
        assert response.context["cl"].result_count == expected, term
    for url in (changelist, reverse("admin:memory_productmemoryentry_change", args=[entry.pk])):
        html = admin_client.get(url).content.decode()
        assert "&lt;script&gt;alert(" in html
        assert SCRIPT not in html
    assert tables_exist() and ProductMemoryEntry.objects.count() == 3


def test_metacharacters_in_an_import_file_are_stored_as_data(state, tmp_path):
    rows = [{"product_id": text, "kind": "main_content", "payload": {**CONTENT, "title": text}} for text in HOSTILE]
    path = tmp_path / "hostil.json"
    path.write_text(json.dumps(rows))
    call_command("manage_memory", "import", "--input-file", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert tables_exist()
    for text in HOSTILE:
        assert ProductMemory().get_product_data(text).content["title"] == text
    assert ProductMemoryEntry.objects.count() == 2 + len(HOSTILE)


# --- oversized, deep, badly encoded bodies ---------------------------------------------------------

BODY_URLS = ["/api/memory/get/", "/api/memory/delete/", "/api/memory/force-regenerate/"]
TEN_MB = json.dumps({"product_data": {"sku": "SAFE-1", "title": "x" * (10 * 1024 * 1024)}}).encode()
DEEP = b'{"product_data": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_000 + b"}"
BAD_BODIES = [
    pytest.param(TEN_MB, 413, "detail", id="10MB"),
    pytest.param(DEEP, 400, "detail", id="object-nested-10000"),
    pytest.param(b"[" * 10_000 + b"]" * 10_000, 400, "detail", id="array-nested-10000"),
    pytest.param(b'{"product_id": "SAFE-1\xff\xfe"}', 400, "detail", id="invalid-utf8"),
    pytest.param(b"\xc3\x28\xa0\xa1", 400, "detail", id="invalid-utf8-only"),
    pytest.param(b'{"product_id": "SAFE-1", "product_id": ' + b"9" * 5000 + b"}", 400, "detail", id="huge-integer"),
]


@pytest.mark.parametrize("url", BODY_URLS)
@pytest.mark.parametrize("body, status, field", BAD_BODIES)
def test_hostile_bodies_get_a_clear_4xx_and_change_nothing(state, api, eager_tasks, url, body, status, field):
    before = state()
    response = post_json(api, url, body)
    assert_drf_error(response, status, field)
    assert "Traceback" not in response.content.decode()
    assert state() == before


def test_invalid_utf8_in_a_query_string_is_searched_as_text(state, api):
    before = state()
    response = api.get("/api/memory/list/?search=%FF%FE%C3%28")
    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert state() == before


# --- paging and export parameters -----------------------------------------------------------------

BAD_QUERIES = [
    ("/api/memory/list/", "limit=" + "9" * 40, "limit"),
    ("/api/memory/list/", "limit=1e999", "limit"),
    ("/api/memory/list/", "limit=NaN", "limit"),
    ("/api/memory/list/", "limit=0x10", "limit"),
    ("/api/memory/list/", "offset=-1", "offset"),
    ("/api/memory/list/", "offset=-" + "9" * 40, "offset"),
    ("/api/memory/list/", "offset=um", "offset"),
    ("/api/memory/list/", "offset=" + "9" * 40, "offset"),
    ("/api/memory/export/", "limit=" + "9" * 40, "limit"),
    ("/api/memory/export/", "limit=-1", "limit"),
    ("/api/memory/export/", "limit=dez", "limit"),
    ("/api/memory/export/", "format=xml", "format"),
    ("/api/memory/export/", "format=" + SQL, "format"),
]


@pytest.mark.parametrize("url, query, field", BAD_QUERIES, ids=[f"{u.split('/')[3]}-{q[:20]}" for u, q, _ in BAD_QUERIES])
def test_bad_paging_and_export_parameters_are_400_naming_the_field(state, api, url, query, field):
    before = state()
    assert_drf_error(api.get(f"{url}?{query}"), 400, field)
    assert state() == before


# --- import files with wrong columns or encodings -------------------------------------------------

WRONG_FILES = [
    pytest.param("dados.csv", b"sku,nome,conteudo\nX-1,Produto,{}\n", "product_id", id="csv-wrong-columns"),
    pytest.param("dados.csv", b"product_id\nX-1\n", "payload", id="csv-no-payload-column"),
    pytest.param("dados.json", json.dumps([{"sku": "X-1", "conteudo": CONTENT}]).encode(), "product_id",
                 id="json-wrong-keys"),
    pytest.param("dados.json", json.dumps([{"product_id": "X-1", "payload": "texto"}]).encode(), "payload",
                 id="json-payload-not-object"),
    # UTF-8 first, then a byte that is not (a file that is all Windows-1252 is read as such).
    pytest.param("dados.csv", b"product_id,payload\nX-\xc3\xa9,{}\nX-\xff,{}\n", "UTF-8", id="csv-invalid-utf8"),
    pytest.param("dados.csv", b'product_id,payload\nX-1,"' + b'{""a"": ' * 10_000 + b"1" + b"}" * 10_000 + b'"\n',
                 "payload", id="csv-payload-nested-10000"),
    pytest.param("dados.json", b'[{"product_id": "X-1", "payload": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_000 + b"}]",
                 "payload", id="json-payload-nested-10000"),
    pytest.param("dados.jsonl", b'{"product_id": "X-1", "payload": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n",
                 "JSON", id="jsonl-nested-10000"),
]


@pytest.mark.parametrize("name, content, names", WRONG_FILES)
def test_manage_memory_import_of_a_wrong_file_is_a_command_error_and_changes_nothing(
    state, tmp_path, name, content, names
):
    before = state()
    path = tmp_path / name
    path.write_bytes(content)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("manage_memory", "import", "--input-file", str(path), stdout=out, stderr=err)
    said = f"{info.value}\n{out.getvalue()}\n{err.getvalue()}"  # bad rows are listed before the refusal
    assert names in said, said
    assert "\n" not in str(info.value)  # one line, as every refusal of the command
    assert "Traceback" not in said
    assert state() == before


ADMIN_FORMATS = {"csv": "0", "json": "1"}
# What the admin page says; django-import-export names a file it cannot decode by the exception.
ADMIN_SAYS = {"csv-invalid-utf8": "UnicodeDecodeError", "json-payload-nested-10000": "RecursionError"}


@pytest.mark.parametrize("name, content, names", [p for p in WRONG_FILES if not p.id.startswith("jsonl")])
def test_admin_import_of_a_wrong_file_shows_an_error_and_changes_nothing(
    state, admin_client, request, name, content, names
):
    before = state()
    fmt = name.rsplit(".", 1)[1]
    response = admin_client.post(reverse("admin:memory_productmemoryentry_import"), {
        "format": ADMIN_FORMATS[fmt], "resource": "0", "import_file": SimpleUploadedFile(name, content),
    })
    assert response.status_code == 200
    html = response.content.decode()
    expected = ADMIN_SAYS.get(request.node.callspec.id, names)
    assert expected in html
    assert "Traceback" not in html
    result, form = response.context.get("result"), response.context.get("form")
    assert (form is not None and form.errors) or (result is not None and (
        result.has_errors() or result.has_validation_errors()))
    assert response.context.get("confirm_form") is None  # nothing can be confirmed
    assert state() == before


def test_admin_import_without_a_kind_column_uses_the_default_kind_as_manage_memory_does(state, admin_client):
    content = json.dumps([{"product_id": "SEM-KIND", "payload": {**CONTENT, "title": SCRIPT}}]).encode()
    response = admin_client.post(reverse("admin:memory_productmemoryentry_import"), {
        "format": "1", "resource": "0", "import_file": SimpleUploadedFile("e.json", content),
    })
    assert response.status_code == 200 and response.context.get("confirm_form") is not None
    assert not ProductMemoryEntry.objects.filter(product_id="SEM-KIND").exists()  # a preview writes nothing
    html = response.content.decode()
    assert "&lt;script&gt;" in html and SCRIPT not in html
    form = response.context["confirm_form"]
    admin_client.post(reverse("admin:memory_productmemoryentry_process_import"), {
        name: form.initial[name] for name in ("import_file_name", "original_file_name", "format", "resource")
        if form.initial.get(name) is not None
    })
    assert ProductMemoryEntry.objects.get(product_id="SEM-KIND").kind == "main_content"
