"""The /api/memory/ endpoints: what each returns, and what each refuses."""
import json
import re
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIClient

from memory.models import ProductMemoryEntry
from memory.providers import CircuitOpen, OpenAIProvider
from memory.engine.memory import ProductMemory, forget_cached_stats

from tests.helpers import CONTENT, PRODUCT, post_json, seed, token_client


def expire(product_id):
    ProductMemoryEntry.objects.filter(product_id=product_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    caches["memory_l1"].clear()
    ProductMemory().evict([(product_id, "main_content")])


# --- stats ----------------------------------------------------------------------------------

STATS_KEYS = {
    "total_entries", "active_entries", "expired_entries", "stale_entries", "hits", "misses", "hit_rate",
    "tokens_spent", "tokens_saved", "estimated_cost_saved", "redis", "database", "backup_dir",
}


@pytest.mark.django_db
def test_stats_has_every_figure_the_issue_lists(api):
    seed()
    seed({"sku": "OLD1", "title": "Velho"})
    expire("OLD1")
    post_json(api, "/api/memory/get/", {"product_id": "ABC123"})
    post_json(api, "/api/memory/get/", {"product_id": "NOPE"})

    response = api.get("/api/memory/stats/")

    assert response.status_code == 200
    data = response.json()
    assert STATS_KEYS <= set(data)
    assert (data["total_entries"], data["active_entries"], data["expired_entries"], data["stale_entries"]) == (2, 1, 1, 0)
    assert (data["hits"], data["misses"], data["hit_rate"]) == (1, 1, 0.5)
    assert data["tokens_spent"] == 3000 and data["tokens_saved"] == 1500
    assert data["estimated_cost_saved"] > 0
    assert set(data["redis"]) >= {"available", "used_memory_bytes", "keys"} and data["redis"]["available"] is True
    assert data["database"]["table_bytes"] > 0
    assert "bytes" in data["backup_dir"]


@pytest.mark.django_db
@pytest.mark.parametrize("fixture", ["redis_client", "no_redis"])
def test_stats_right_after_clear_or_delete_count_what_is_left(api, request, fixture):
    request.getfixturevalue(fixture)
    with override_settings(MEMORY_STATS_CACHE_SECONDS=60):
        forget_cached_stats()
        seed()
        seed({"sku": "XYZ789", "title": "Fone"})
        seed({"sku": "QWE456", "title": "Mouse"})
        assert api.get("/api/memory/stats/").json()["total_entries"] == 3
        post_json(api, "/api/memory/delete/", {"product_id": "QWE456"})
        assert api.get("/api/memory/stats/").json()["total_entries"] == 2
        api.post("/api/memory/clear/")
        assert api.get("/api/memory/stats/").json()["total_entries"] == 0


@pytest.mark.django_db
def test_stats_without_redis_says_so(api, dead_redis):
    response = api.get("/api/memory/stats/")
    assert response.status_code == 200
    assert response.json()["redis"] == {"available": False, "mode": "single", "used_memory_bytes": None, "keys": None,
                                        "nodes": [{"address": "127.0.0.1:1", "role": "master", "reached": False}]}


# --- list -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_pages_and_searches_by_id_or_title(api):
    for i in range(5):
        seed({"sku": f"SKU-{i}", "title": f"Caneca {i}"}, {**CONTENT, "title": f"Caneca azul {i}"})
    seed({"sku": "XYZ789", "title": "Fone"}, {**CONTENT, "title": "Fone Bluetooth"})
    expire("SKU-0")

    page = api.get("/api/memory/list/?limit=2&offset=1").json()
    assert page["count"] == 6 and len(page["results"]) == 2
    assert set(page["results"][0]) == {"product_id", "kind", "title", "hit_count", "tokens_saved", "expires_at", "status",
                                      "approved", "version", "origin"}
    assert [r["product_id"] for r in page["results"]] == ["SKU-4", "SKU-3"]  # newest first, after the first

    by_title = api.get("/api/memory/list/", {"search": "bluetooth"}).json()
    assert [r["product_id"] for r in by_title["results"]] == ["XYZ789"]
    by_id = api.get("/api/memory/list/", {"search": "sku-0"}).json()
    assert by_id["count"] == 1 and by_id["results"][0]["status"] == "expired"

    default = api.get("/api/memory/list/").json()
    assert len(default["results"]) == 6


@pytest.mark.django_db
@pytest.mark.parametrize("query, field", [
    ("limit=1001", "limit"),
    ("limit=0", "limit"),
    ("limit=-5", "limit"),
    ("limit=dez", "limit"),
    ("offset=-1", "offset"),
    ("offset=1.5", "offset"),
    ("offset=99999999999999999999", "offset"),
    ("search=" + "x" * 256, "search"),
    ("search=a%00b", "search"),
    ("kind=" + "k" * 65, "kind"),
])
def test_list_refuses_bad_parameters(api, query, field):
    response = api.get(f"/api/memory/list/?{query}")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.django_db
def test_list_accepts_the_cap(api):
    assert api.get("/api/memory/list/?limit=1000").status_code == 200


# --- get ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_get_by_product_data_says_which_tier_served(api, l1_trusted):
    seed()
    response = post_json(api, "/api/memory/get/", {"product_data": PRODUCT})
    assert response.status_code == 200
    data = response.json()
    assert data["found"] is True and data["product_id"] == "ABC123" and data["kind"] == "main_content"
    assert data["content"] == CONTENT
    assert data["tier"] == "l1"
    assert (data["tokens_prompt"], data["tokens_completion"], data["tokens_saved"]) == (1000, 500, 1500)
    entry = ProductMemoryEntry.objects.get(product_id="ABC123")
    assert data["expires_at"] and data["created_at"]
    from django.utils.dateparse import parse_datetime

    assert abs(parse_datetime(data["expires_at"]) - entry.expires_at) < timedelta(milliseconds=1)


@pytest.mark.django_db
def test_get_by_product_id_falls_through_to_postgresql(api, redis_client, l1_trusted):
    seed()
    caches["memory_l1"].clear()
    redis_client.flushdb()
    first = post_json(api, "/api/memory/get/", {"product_id": "ABC123"}).json()
    second = post_json(api, "/api/memory/get/", {"product_id": " ABC123 "}).json()
    assert (first["tier"], second["tier"]) == ("l3", "l1")


@pytest.mark.django_db
def test_get_unknown_is_404_with_found_false(api):
    response = post_json(api, "/api/memory/get/", {"product_data": {"sku": "NAO-EXISTE"}})
    assert response.status_code == 404
    assert response.json() == {"found": False, "product_id": "NAO-EXISTE", "status": "missing"}


@pytest.mark.django_db
def test_get_expired_or_changed_product_is_404_and_says_why(api):
    seed()
    changed = post_json(api, "/api/memory/get/", {"product_data": {**PRODUCT, "title": "Outro título"}})
    assert changed.status_code == 404 and changed.json()["status"] == "stale"
    expire("ABC123")
    expired = post_json(api, "/api/memory/get/", {"product_id": "ABC123"})
    assert expired.status_code == 404 and expired.json()["status"] == "expired"


@pytest.mark.django_db
@pytest.mark.parametrize("tiers", ["l1", "l3"])
def test_get_with_only_an_identifier_serves_content_made_from_fuller_data(api, redis_client, tiers):
    """The original design's ``{"sku": "ABC123"}``: a lookup by identity, nothing to be stale against."""
    seed({"sku": "ABC123", "gtin": "7891234567895", "title": "Fone Bluetooth", "brand": "JBL"})
    if tiers == "l3":
        caches["memory_l1"].clear()
        redis_client.flushdb()
    for product_data in ({"sku": "ABC123"}, {"sku": " ABC123 ", "title": ""}):
        response = post_json(api, "/api/memory/get/", {"product_data": product_data})
        assert response.status_code == 200, response.json()
        assert response.json()["content"] == CONTENT
    by_gtin = seed({"gtin": "4006381333931", "title": "Caneta"})
    found = post_json(api, "/api/memory/get/", {"product_data": {"ean": "4006381333931"}}).json()
    assert found["found"] is True and found["product_id"] == by_gtin.product_id
    # Data that describes the product is still compared with what the content was made from.
    described = post_json(api, "/api/memory/get/", {"product_data": {"sku": "ABC123", "brand": "Sony"}})
    assert described.status_code == 404 and described.json()["status"] == "stale"
    expire("ABC123")
    assert post_json(api, "/api/memory/get/", {"product_data": {"sku": "ABC123"}}).json()["status"] == "expired"


# --- delete and clear -----------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_removes_from_every_tier_then_404(api, redis_client):
    seed()
    response = post_json(api, "/api/memory/delete/", {"product_data": {"sku": "ABC123"}})
    assert response.status_code == 200
    assert response.json() == {"deleted": True, "product_id": "ABC123"}
    assert not ProductMemoryEntry.objects.exists()
    assert post_json(api, "/api/memory/get/", {"product_id": "ABC123"}).status_code == 404
    again = post_json(api, "/api/memory/delete/", {"product_id": "ABC123"})
    assert again.status_code == 404 and again.json() == {"deleted": False, "product_id": "ABC123"}


@pytest.mark.django_db
def test_clear_empties_the_memory_and_counts(api):
    seed()
    seed({"sku": "XYZ789", "title": "Fone"})
    response = api.post("/api/memory/clear/")
    assert response.status_code == 200 and response.json() == {"cleared": 2}
    assert not ProductMemoryEntry.objects.exists()
    assert post_json(api, "/api/memory/get/", {"product_id": "ABC123"}).status_code == 404
    assert api.post("/api/memory/clear/").json() == {"cleared": 0}


# --- force-regenerate -----------------------------------------------------------------------
#
# In eager mode (no broker: the tests' settings) the task runs in the request and the answer is
# its outcome; with a broker (published_tasks) the answer is 202 and a worker does the rest.

FORCE_REGENERATE = "/api/memory/force-regenerate/"
LONG_TITLE = "Fone " + "a" * 5995  # 6,000 characters: the template's description would pass 5,000


@pytest.mark.django_db
def test_force_regenerate_merges_stored_source_data_with_the_body(api, eager_tasks):
    seed({"sku": "ABC123", "title": "Fone Bluetooth", "brand": "JBL"}, {**CONTENT, "title": "antigo"})
    before = ProductMemoryEntry.objects.get(product_id="ABC123")

    response = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "ABC123", "color": "preto"}})

    assert response.status_code == 200
    data = response.json()
    assert data["product_id"] == "ABC123" and data["task_id"]
    entry = ProductMemoryEntry.objects.get(product_id="ABC123")
    assert entry.source_data == {"sku": "ABC123", "title": "Fone Bluetooth", "brand": "JBL", "color": "preto"}
    assert entry.payload["title"] != "antigo" and "Fone Bluetooth" in entry.payload["title"]
    assert entry.updated_at > before.updated_at
    assert data["content"] == entry.payload and data["tokens_spent"] == entry.tokens_prompt + entry.tokens_completion
    got = post_json(api, "/api/memory/get/", {"product_data": entry.source_data}).json()
    assert got["found"] is True and got["content"] == entry.payload


@pytest.mark.django_db
def test_force_regenerate_by_product_id_uses_the_stored_data(api, eager_tasks):
    seed({"sku": "ABC123", "title": "Caneca"}, {**CONTENT, "title": "antigo"})
    response = post_json(api, FORCE_REGENERATE, {"product_id": "ABC123"})
    assert response.status_code == 200
    assert "Caneca" in ProductMemoryEntry.objects.get(product_id="ABC123").payload["title"]


@pytest.mark.django_db
def test_force_regenerate_with_only_a_sku_regenerates_from_the_stored_data(api, eager_tasks):
    """The original design's example: the SKU names a known product, its stored data is what to write about."""
    stored = {"sku": "ABC123", "title": "Garrafa Térmica", "brand": "Stanley"}
    seed(stored, {**CONTENT, "title": "antigo"})

    response = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "ABC123"}})

    assert response.status_code == 200, response.json()
    entry = ProductMemoryEntry.objects.get(product_id="ABC123")
    assert entry.source_data == stored and "Garrafa Térmica" in entry.payload["title"]
    for product_data in ({"sku": "ABC123"}, stored):
        got = post_json(api, "/api/memory/get/", {"product_data": product_data}).json()
        assert got["found"] is True and got["content"] == entry.payload


@pytest.mark.django_db
def test_force_regenerate_unknown_product_with_only_a_sku_is_404(api, eager_tasks):
    response = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "ABC123"}})
    assert response.status_code == 404
    assert response.json()["product_id"] == "ABC123" and "title" in response.json()["detail"]
    assert not ProductMemoryEntry.objects.exists()
    assert post_json(api, FORCE_REGENERATE, {"product_id": "ABC123"}).status_code == 404


@pytest.mark.django_db
def test_force_regenerate_in_eager_mode_is_201_when_it_creates_and_200_when_it_replaces(api, eager_tasks):
    created = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "NEW1", "title": "Mochila"}})
    assert created.status_code == 201, created.json()
    entry = ProductMemoryEntry.objects.get(product_id="NEW1")
    assert entry.payload["title"].startswith("Mochila")
    assert created.json() == {"task_id": created.json()["task_id"], "product_id": "NEW1",
                              "tokens_spent": entry.tokens_prompt + entry.tokens_completion, "content": entry.payload}

    replaced = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "NEW1", "title": "Mochila", "cor": "azul"}})
    assert replaced.status_code == 200, replaced.json()
    assert ProductMemoryEntry.objects.get(product_id="NEW1").source_data["cor"] == "azul"
    assert replaced.json()["task_id"] != created.json()["task_id"]


@pytest.mark.django_db
def test_force_regenerate_in_eager_mode_refuses_a_title_no_generation_accepts_with_400(api, eager_tasks):
    seed({"sku": "ABC123", "title": "Fone"})
    before = ProductMemoryEntry.objects.get(product_id="ABC123")
    for body in ({"product_data": {"sku": "NEW1", "title": LONG_TITLE}},
                 {"product_data": {"sku": "ABC123", "title": LONG_TITLE}}):
        response = post_json(api, FORCE_REGENERATE, body)
        assert response.status_code == 400, response.json()
        assert response.json() == {"product_data": ["title: no máximo 500 caracteres"]}
    assert list(ProductMemoryEntry.objects.values_list("product_id", "payload", "updated_at")) == [
        ("ABC123", before.payload, before.updated_at)
    ]


@pytest.mark.django_db
def test_force_regenerate_with_a_broker_refuses_the_same_data_with_400_and_queues_nothing(api, published_tasks):
    seed({"sku": "ABC123", "title": "Fone"})
    response = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "ABC123", "title": LONG_TITLE}})
    assert response.status_code == 400
    assert response.json() == {"product_data": ["title: no máximo 500 caracteres"]}
    brand = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "ABC123", "marca": "x" * 201}})
    assert brand.status_code == 400 and brand.json() == {"product_data": ["marca: no máximo 200 caracteres"]}
    assert published_tasks == []


@pytest.mark.django_db
def test_force_regenerate_only_queues_the_task(api, monkeypatch):
    """With a broker the request queues the task with force_regenerate=True; nothing is generated in it."""
    from celery.result import AsyncResult

    from memory.tasks import generate_main_content_task

    calls = []

    def queue(*args, **kwargs):
        calls.append((args, kwargs))
        return AsyncResult("7d1c3f4e-queued")

    monkeypatch.setattr(generate_main_content_task, "apply_async", queue)
    seed({"sku": "ABC123", "title": "Fone", "brand": "JBL"})

    response = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "ABC123", "brand": "Sony"}})

    assert response.status_code == 202
    assert response.json() == {"task_id": "7d1c3f4e-queued", "product_id": "ABC123"}
    data = {"sku": "ABC123", "title": "Fone", "brand": "Sony"}
    assert calls == [(((data,), {"force_regenerate": True}), {"retry": False})]  # published once, or not at all
    assert ProductMemoryEntry.objects.get(product_id="ABC123").payload == CONTENT


def quota_spent(server) -> None:
    """What OpenAI answers an account whose credit is spent."""
    server.expect_request("/v1/chat/completions").respond_with_json({"error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota", "code": "insufficient_quota",
    }}, status=429)


@pytest.mark.django_db
def test_force_regenerate_in_eager_mode_with_the_provider_out_of_quota_is_503_and_saves_nothing(
    api, eager_tasks, openai_provider, settings
):
    settings.LLM_MAX_ATTEMPTS = 3  # retries allowed: the spent quota still takes one request
    quota_spent(openai_provider)
    seed({"sku": "ABC123", "title": "Fone"})
    before = ProductMemoryEntry.objects.get(product_id="ABC123")

    response = post_json(api, FORCE_REGENERATE, {"product_id": "ABC123"})

    assert response.status_code == 503, response.json()
    assert response.json() == {
        "detail": "Produto ABC123 não foi regenerado: o provedor de conteúdo está indisponível (Geração falhou após"
                  " 1 tentativa: cota do provedor esgotada (HTTP 429): You exceeded your current quota, please check"
                  " your plan and billing details.). Nada foi salvo; tente novamente mais tarde.",
        "product_id": "ABC123",
    }
    assert len(openai_provider.log) == 1  # no retry: a spent quota does not come back by waiting
    after = ProductMemoryEntry.objects.get(product_id="ABC123")
    assert (after.payload, after.updated_at) == (before.payload, before.updated_at)


@pytest.mark.django_db
@pytest.mark.parametrize("answer, reason", [
    ({"response_data": "boom", "status": 503}, "HTTP 503"),
    ({"response_data": "overloaded", "status": 500}, "HTTP 500"),
])
def test_force_regenerate_in_eager_mode_with_the_provider_down_is_503(api, eager_tasks, openai_provider, answer, reason):
    openai_provider.expect_request("/v1/chat/completions").respond_with_data(**answer)
    response = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "NEW1", "title": "Mochila"}})
    assert response.status_code == 503
    assert reason in response.json()["detail"] and response.json()["product_id"] == "NEW1"
    assert not ProductMemoryEntry.objects.exists()


@pytest.mark.django_db
def test_force_regenerate_in_eager_mode_with_the_provider_circuit_open_is_503_and_calls_nothing(
    api, eager_tasks, openai_provider, monkeypatch
):
    class OpenCircuit(OpenAIProvider):
        def generate(self, product_data):  # what the breaker does before any request
            raise CircuitOpen("circuito do provedor aberto após 5 falhas seguidas; nova tentativa em 30 s")

    monkeypatch.setattr("memory.services.generation.get_provider", lambda: OpenCircuit(
        base_url=openai_provider.url_for("/v1"), api_key="sk-test", model="gpt-4o-mini", timeout=2.0))
    response = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "NEW2", "title": "Mochila"}})
    assert response.status_code == 503, response.json()
    assert response.json() == {
        "detail": "Produto NEW2 não foi regenerado: o provedor de conteúdo está indisponível (circuito do provedor"
                  " aberto após 5 falhas seguidas; nova tentativa em 30 s). Nada foi salvo; tente novamente mais tarde.",
        "product_id": "NEW2",
    }
    assert len(openai_provider.log) == 0
    assert not ProductMemoryEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body, code, reason", [
    ({"choices": [{"message": {"content": "{não é json"}}]}, 200, "o conteúdo não é JSON"),
    ({"error": {"message": "Incorrect API key"}}, 401, "HTTP 401"),
])
def test_force_regenerate_in_eager_mode_with_a_bad_provider_answer_is_502(
    api, eager_tasks, openai_provider, body, code, reason
):
    openai_provider.expect_request("/v1/chat/completions").respond_with_json(body, status=code)
    response = post_json(api, FORCE_REGENERATE, {"product_data": {"sku": "NEW1", "title": "Mochila"}})
    assert response.status_code == 502, response.json()
    detail = response.json()["detail"]
    assert detail.startswith("Produto NEW1 não foi regenerado: o provedor de conteúdo falhou (") and reason in detail
    assert detail.endswith("Nada foi salvo.")
    assert not ProductMemoryEntry.objects.exists()


def result_store_gave_up() -> RuntimeError:
    """What Celery's Redis result store raises once it stops reconnecting."""
    error = RuntimeError("Retry limit exceeded while trying to reconnect to the Celery result store")
    error.__cause__ = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    return error


QUEUE_OUTAGES = {
    "broker": OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    "redis": RedisConnectionError("Connection closed by server."),
    "result-store": result_store_gave_up(),
}


@pytest.mark.django_db
@pytest.mark.parametrize("outage", QUEUE_OUTAGES)
def test_force_regenerate_with_the_queue_unreachable_is_503(api, monkeypatch, outage):
    from memory.tasks import generate_main_content_task

    def unreachable(*args, **kwargs):
        raise QUEUE_OUTAGES[outage]

    monkeypatch.setattr(generate_main_content_task, "apply_async", unreachable)
    seed()
    response = post_json(api, "/api/memory/force-regenerate/", {"product_id": "ABC123"})
    assert response.status_code == 503
    assert response.json()["detail"].startswith("A fila de tarefas não respondeu: ")
    assert "Celery" not in response.json()["detail"]


@pytest.mark.django_db
def test_force_regenerate_does_not_call_any_runtime_error_a_queue_outage(api, monkeypatch):
    from memory.tasks import generate_main_content_task

    def bug(*args, **kwargs):
        raise RuntimeError("um erro de programação")

    monkeypatch.setattr(generate_main_content_task, "apply_async", bug)
    seed()
    api.raise_request_exception = False
    response = post_json(api, "/api/memory/force-regenerate/", {"product_id": "ABC123"})
    assert response.status_code == 500


# --- health -----------------------------------------------------------------------------------


@pytest.fixture
def viewer(make_user):
    """A token client whose user may view entries, and so health's checks."""
    return token_client(make_user("viewer", perms=["view_productmemoryentry"]))


@pytest.mark.django_db
def test_health_without_credentials_is_the_status_only():
    response = APIClient().get("/api/memory/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_health_shows_the_checks_to_a_user_who_may_view_entries(viewer):
    response = viewer.get("/api/memory/health/")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok"
    assert set(data["checks"]) == {"database", "redis", "backup_dir", "broker"}


@pytest.mark.django_db
def test_health_is_degraded_when_redis_is_down(dead_redis, viewer):
    assert APIClient().get("/api/memory/health/").json() == {"status": "degraded"}
    response = viewer.get("/api/memory/health/")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded" and response.json()["checks"]["redis"]["ok"] is False


@pytest.mark.django_db
def test_health_is_503_when_postgresql_is_down(monkeypatch, make_user):
    from django.db import OperationalError

    def refuse(*args, **kwargs):
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    client = APIClient()
    client.force_authenticate(make_user("root", superuser=True))  # its rights need no query
    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/api/memory/health/")
    assert response.status_code == 503
    assert response.json()["status"] == "down" and response.json()["checks"]["database"]["ok"] is False
    anonymous = APIClient().get("/api/memory/health/")
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "down"}


@pytest.mark.django_db
def test_health_ignores_a_stale_token():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")
    response = client.get("/api/memory/health/")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


# --- bad input ---------------------------------------------------------------------------------

BODY_ENDPOINTS = ["/api/memory/get/", "/api/memory/delete/", "/api/memory/force-regenerate/"]
# Words of the English messages of Python's json module and of DRF (its parser and fields).
ENGLISH = re.compile(r"\b(Expecting|Expected|Invalid|Unterminated|Extra data|Unexpected|parse error|line \d|column|"
                     r"char|Not a valid|got|Exceeds|digits)\b")

BAD_BODIES = [
    pytest.param(b'{"product_id": "ABC123"', "detail", id="malformed-json"),
    pytest.param(b"", "non_field_errors", id="empty-body"),
    pytest.param(b"[]", "non_field_errors", id="array-body"),
    pytest.param(b'"ABC123"', "non_field_errors", id="string-body"),
    pytest.param(b"{}", "non_field_errors", id="no-identifier-at-all"),
    pytest.param(b'{"product_data": {}, "product_id": "ABC123"}', "non_field_errors", id="both"),
    pytest.param(b'{"product_data": ["ABC123"]}', "product_data", id="product-data-list"),
    pytest.param(b'{"product_data": "ABC123"}', "product_data", id="product-data-string"),
    pytest.param(b'{"product_data": {}}', "product_data", id="product-data-empty"),
    pytest.param(b'{"product_data": {"color": "azul"}}', "product_data", id="no-usable-identifier"),
    pytest.param(b'{"product_data": {"sku": true}}', "product_data", id="sku-bool"),
    pytest.param(b'{"product_data": {"sku": {"a": 1}}}', "product_data", id="sku-object"),
    pytest.param(b'{"product_data": {"gtin": "7891234567890"}}', "product_data", id="gtin-check-digit"),
    pytest.param(b'{"product_data": {"sku": "A\\u0001B"}}', "product_data", id="sku-control-char"),
    pytest.param(b'{"product_id": ["ABC123"]}', "product_id", id="product-id-list"),
    pytest.param(b'{"product_id": {"sku": "ABC123"}}', "product_id", id="product-id-object"),
    pytest.param(b'{"product_id": "   "}', "product_id", id="product-id-blank"),
    pytest.param(b'{"product_id": null}', "product_id", id="product-id-null"),
    pytest.param(b'{"product_id": 123}', "product_id", id="product-id-number"),
    pytest.param(b'{"product_id": 1.5}', "product_id", id="product-id-float"),
    pytest.param(b'{"product_id": true}', "product_id", id="product-id-bool"),
    pytest.param(b'{"product_id": ' + b"1" * 5000 + b"}", "detail", id="integer-too-long"),
    pytest.param(b"   ", "detail", id="blank-body"),
    pytest.param(b'{"product_id": "ABC123"} x', "detail", id="trailing-data"),
    pytest.param(('{"product_id": "' + "A" * 256 + '"}').encode(), "product_id", id="product-id-too-long"),
    pytest.param(b'{"product_id": "A\\u0000B"}', "detail", id="nul-character"),
    pytest.param(b'{"product_data": {"sku": "A", "title": "\\ud800"}}', "detail", id="lone-surrogate"),
    pytest.param(b'{"product_id": NaN}', "detail", id="nan"),
    pytest.param(b'{"product_data": {"sku": "ABC123", "title": "T", "weight": 1e400}}', "detail", id="overflowing-number"),
    pytest.param(b'{"product_id": "ABC\xff123"}', "detail", id="invalid-utf8"),
    pytest.param(b"\xef\xbb\xbf{}", "detail", id="utf8-bom"),
    pytest.param(b"[" * 10_000 + b"]" * 10_000, "detail", id="nesting-10000"),
    pytest.param(b'{"product_data": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", "detail", id="nesting-41"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("url", BODY_ENDPOINTS)
@pytest.mark.parametrize("body, field", BAD_BODIES)
def test_bad_bodies_are_400_in_drf_shape_and_change_nothing(api, eager_tasks, url, body, field):
    seed()
    before = list(ProductMemoryEntry.objects.values_list("product_id", "payload", "updated_at"))

    response = api.post(url, body, content_type="application/json")

    assert response.status_code == 400, response.content
    data = response.json()
    assert field in data
    message = data[field] if isinstance(data[field], str) else data[field][0]
    assert isinstance(message, str) and message
    assert not ENGLISH.search(message), message
    assert list(ProductMemoryEntry.objects.values_list("product_id", "payload", "updated_at")) == before


@pytest.mark.django_db
def test_error_messages_name_the_problem(api):
    def error(body):
        return api.post("/api/memory/get/", body, content_type="application/json").json()

    assert "JSON malformado" in error(b"{")["detail"]
    assert "32 níveis" in error(b"[" * 10_000 + b"]" * 10_000)["detail"]
    assert "UTF-8" in error(b'{"product_id": "\xc3\x28"}')["detail"]
    assert error(b"[]") == {"non_field_errors": ["O corpo deve ser um objeto JSON, recebido lista."]}
    assert error(b'"ABC123"') == {"non_field_errors": ["O corpo deve ser um objeto JSON, recebido texto."]}
    assert error(b"") == {"non_field_errors": ["Informe product_data (objeto) ou product_id (texto), um dos dois."]}
    assert error(b'{"product_data": ["ABC123"]}') == {
        "product_data": ["product_data deve ser um objeto JSON ({...}), recebido lista."]
    }
    assert error(b"1" * 5000) == {"detail": "JSON inválido: número inteiro com mais de 4300 dígitos."}
    assert error(b'{"product_id": NaN}') == {"detail": "JSON inválido: NaN não é um valor JSON (use null ou um número)."}
    assert error(b'{"product_data": {"sku": true}}') == {"product_data": ["sku: deve ser texto ou número, recebido bool"]}
    assert "nenhum identificador" in error(b'{"product_data": {"color": "azul"}}')["product_data"][0]


# Python's json module's errors, each with its pt-BR message (the position is the decoder's).
MALFORMED = [
    (b"{", "esperava o nome de um campo entre aspas duplas (linha 1, coluna 2)"),
    (b'{"product_id": }', "esperava um valor (texto entre aspas, número, objeto, lista, true, false ou null) (linha 1, coluna 16)"),
    (b'{"product_id" "A"}', "esperava ':' depois do nome do campo (linha 1, coluna 15)"),
    (b'{"product_id": "A" "kind": "x"}', "esperava ',' entre dois itens (linha 1, coluna 20)"),
    (b'{"product_id": "ABC', "texto sem as aspas de fechamento (linha 1, coluna 16)"),
    (b'{"product_id": "A\tB"}', "caractere de controle dentro de um texto (use \\n, \\t) (linha 1, coluna 18)"),
    (b'{"product_id": "A\\qB"}', "barra invertida seguida de um escape inexistente (linha 1, coluna 18)"),
    (b'{"product_id": "A\\u12"}', "escape \\uXXXX incompleto (linha 1, coluna 19)"),
    (b'{"product_id": "A"}\n{}', "há algo depois do fim do JSON (linha 2, coluna 1)"),
    (b"\xef\xbb\xbf{}", "o corpo começa com a marca BOM do UTF-8; envie sem ela (linha 1, coluna 1)"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("body, reason", MALFORMED)
def test_malformed_json_is_explained_in_portuguese_with_its_position(api, body, reason):
    response = api.post("/api/memory/get/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": f"JSON malformado: {reason}."}


def test_every_endpoint_parses_with_the_safe_parser_only():
    """DRF's own JSONParser would answer "JSON parse error - ..." in English."""
    from memory.api.parsers import SafeJSONParser
    from memory.api.urls import urlpatterns

    for pattern in urlpatterns:
        parsers = pattern.callback.cls.parser_classes
        assert parsers and all(issubclass(p, SafeJSONParser) for p in parsers), pattern


def test_a_decoder_message_not_translated_still_gives_no_english():
    from memory.api.parsers import json_error_message

    message = json_error_message(json.JSONDecodeError("Some future complaint", '{"a":\n 1}', 7))
    assert message == "JSON malformado (linha 2, coluna 2)."


@pytest.mark.django_db
@pytest.mark.parametrize("url", BODY_ENDPOINTS)
@pytest.mark.parametrize("value, sent", [
    ("123", "número"), ("1.5", "número"), ("true", "booleano"), ("false", "booleano"),
    ('["ABC123"]', "lista"), ('{"sku": "ABC123"}', "objeto"), ("null", "null"),
])
def test_product_id_that_is_not_text_is_400_naming_product_id(api, eager_tasks, url, value, sent):
    seed({"sku": "123", "title": "Produto 123"})  # a number is not taken for the product "123"

    response = api.post(url, f'{{"product_id": {value}}}', content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"product_id": [f"product_id deve ser texto entre aspas, recebido {sent}."]}
    assert ProductMemoryEntry.objects.filter(product_id="123").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/memory/get/", "/api/memory/delete/"])
def test_kind_that_is_not_text_is_400_naming_kind(api, url):
    seed()
    response = api.post(url, '{"product_id": "ABC123", "kind": 1}', content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"kind": ["kind deve ser texto entre aspas, recebido número."]}
    assert ProductMemoryEntry.objects.filter(product_id="ABC123").exists()


@pytest.mark.django_db
def test_nesting_within_the_limit_is_accepted(api):
    nested = {"sku": "DEEP1"}
    for _ in range(30):
        nested = {"sku": "DEEP1", "attributes": nested}
    response = post_json(api, "/api/memory/get/", {"product_data": nested})
    assert response.status_code == 404 and response.json()["product_id"] == "DEEP1"


@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
@pytest.mark.parametrize("url", BODY_ENDPOINTS)
def test_body_over_the_size_limit_is_413(api, url):
    seed()
    body = json.dumps({"product_data": {**PRODUCT, "description": "x" * 4096}})
    response = api.post(url, body, content_type="application/json")
    assert response.status_code == 413
    assert "2048 bytes" in response.json()["detail"]
    assert ProductMemoryEntry.objects.count() == 1


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
def test_parser_reads_no_more_than_the_limit_whatever_the_headers_say():
    import io

    from memory.api.parsers import RequestTooLarge, SafeJSONParser

    with pytest.raises(RequestTooLarge):
        SafeJSONParser().parse(io.BytesIO(b'{"a": "' + b"x" * 5000 + b'"}'), "application/json", {})


@pytest.mark.django_db
def test_form_encoded_body_is_415(api):
    response = api.post("/api/memory/get/", {"product_id": "ABC123"})  # multipart, as a browser form
    assert response.status_code == 415
    assert "detail" in response.json()


@pytest.mark.django_db
def test_wrong_method_is_405(api):
    assert api.get("/api/memory/get/").status_code == 405
    assert api.post("/api/memory/stats/").status_code == 405
