"""Under /api/ every answer is JSON: unknown paths, server errors, Django's refusals; every endpoint
is served with or without its trailing slash. Elsewhere Django's own HTML pages stay."""
import pytest

from memory.models import ProductMemoryEntry

from tests.helpers import seed

# --- trailing slash --------------------------------------------------------------------------

EVERY_ENDPOINT = [
    ("get", "stats", None, 200),
    ("get", "list", None, 200),
    ("post", "get", b'{"product_id": "ABC123"}', 200),
    ("get", "export", None, 200),
    ("get", "health", None, 200),
    ("post", "force-regenerate", b'{"product_id": "ABC123"}', 202),
    ("post", "delete", b'{"product_id": "ABC123"}', 200),
    ("post", "clear", None, 200),
]


@pytest.mark.django_db
@pytest.mark.parametrize("method, name, body, code", EVERY_ENDPOINT)
def test_every_endpoint_is_served_without_its_trailing_slash(api, eager_tasks, method, name, body, code):
    seed()
    url = f"/api/memory/{name}"
    if body is None:
        response = getattr(api, method)(url)
    else:
        response = getattr(api, method)(url, body, content_type="application/json")
    assert response.status_code == code, response.content


@pytest.mark.django_db
def test_get_without_the_slash_answers_what_it_answers_with_it(api):
    seed()
    body = b'{"product_id": "ABC123"}'
    with_slash = api.post("/api/memory/get/", body, content_type="application/json").json()
    without = api.post("/api/memory/get", body, content_type="application/json").json()
    assert without["found"] is True
    assert {k: v for k, v in without.items() if k != "tier"} == {k: v for k, v in with_slash.items() if k != "tier"}


@pytest.mark.django_db
def test_delete_without_the_slash_deletes(api):
    seed()
    response = api.post("/api/memory/delete", b'{"product_id": "ABC123"}', content_type="application/json")
    assert response.json() == {"deleted": True, "product_id": "ABC123"}
    assert not ProductMemoryEntry.objects.exists()
