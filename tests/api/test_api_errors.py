"""Under /api/ every answer is JSON: unknown paths, server errors, Django's refusals; every endpoint
is served with or without its trailing slash. Elsewhere Django's own HTML pages stay."""
import logging
import sys

import pytest
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

from memory.api import exceptions
from memory.engine.memory import ProductMemory
from memory.models import ProductMemoryEntry

from tests.helpers import seed

# --- unknown paths ---------------------------------------------------------------------------

UNKNOWN = [
    ("get", "/api/"),
    ("get", "/api/nada"),
    ("get", "/api/memory/"),
    ("get", "/api/memory/nada/"),
    ("post", "/api/memory/nada"),
    ("post", "/api/memory/get/extra/"),
    ("delete", "/api/memory/stats/1/"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("method, url", UNKNOWN)
@pytest.mark.parametrize("who", ["anonymous", "token"])
def test_unknown_api_path_is_the_same_json_404_for_everyone(request, method, url, who):
    client = request.getfixturevalue("api") if who == "token" else APIClient()

    if method == "get":
        response = client.get(url)
    else:
        response = getattr(client, method)(url, b"{}", content_type="application/json")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": exceptions.NOT_FOUND}
    assert "nada" not in response.content.decode()  # the path is not echoed


@pytest.mark.django_db
def test_unknown_path_elsewhere_is_django_html_404(admin_client):
    for url in ("/nada/", "/memory/nada/", "/admin/nada/"):
        response = admin_client.get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"].startswith("text/html"), url


# --- server errors ---------------------------------------------------------------------------


def _boom(*args, **kwargs):
    raise RuntimeError("segredo interno: senha=hunter2")


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body, target", [
    ("get", "/api/memory/list/", None, "list_products"),
    ("post", "/api/memory/get/", b'{"product_id": "ABC123"}', "lookup"),
])
def test_server_error_is_json_500_in_pt_br_without_traceback_and_logged(
    api, monkeypatch, caplog, method, url, body, target
):
    monkeypatch.setattr(ProductMemory, target, _boom)
    api.raise_request_exception = False

    with caplog.at_level(logging.ERROR, logger="django.request"):
        if body is None:
            response = api.get(url)
        else:
            response = api.post(url, body, content_type="application/json")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": exceptions.SERVER_ERROR}
    text = response.content.decode()
    assert "Traceback" not in text and "RuntimeError" not in text and "hunter2" not in text
    logged = [r for r in caplog.records if r.name == "django.request" and r.levelno == logging.ERROR]
    assert len(logged) == 1 and logged[0].exc_info[0] is RuntimeError


def _stream_handlers_that_print(record):
    """The plain stream handlers (stderr) an ERROR record of ``record.name`` reaches."""
    reached, logger = [], logging.getLogger(record.name)
    while logger is not None:
        reached += [h for h in logger.handlers
                    if type(h) is logging.StreamHandler and record.levelno >= h.level and h.filter(record)]
        logger = logger.parent if logger.propagate else None
    return reached


@pytest.mark.parametrize("debug", [False, True])
def test_server_error_traceback_reaches_stderr_exactly_once(debug):
    try:
        _boom()
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error: %s",
                               ("/api/memory/get/",), exc_info)

    with override_settings(DEBUG=debug):
        handlers = _stream_handlers_that_print(record)

    assert len(handlers) == 1
    printed = handlers[0].format(record)
    assert "Internal Server Error: /api/memory/get/" in printed and "RuntimeError" in printed


def test_server_error_elsewhere_is_django_html_500():
    response = exceptions.server_error(RequestFactory().get("/memory/dashboard/"))
    assert response.status_code == 500 and response["Content-Type"].startswith("text/html")


# --- Django's other refusals -----------------------------------------------------------------


@pytest.mark.django_db
def test_host_not_allowed_is_json_400_under_the_api():
    response = APIClient().get("/api/memory/health/", HTTP_HOST="intruso.example")
    assert response.status_code == 400
    assert response.json() == {"detail": exceptions.DISALLOWED_HOST}


@pytest.mark.django_db
def test_host_not_allowed_elsewhere_is_django_html_400():
    response = APIClient().get("/admin/", HTTP_HOST="intruso.example")
    assert response.status_code == 400 and response["Content-Type"].startswith("text/html")


def test_permission_denied_outside_drf_is_json_403_under_the_api_only():
    api = exceptions.permission_denied(RequestFactory().get("/api/memory/stats/"), PermissionDenied())
    assert api.status_code == 403 and api["Content-Type"] == "application/json"
    assert api.content.decode() == f'{{"detail": "{exceptions.PERMISSION_DENIED}"}}'  # UTF-8, not \\u escapes
    admin = exceptions.permission_denied(RequestFactory().get("/admin/"), PermissionDenied())
    assert admin.status_code == 403 and admin["Content-Type"].startswith("text/html")


# --- trailing slash --------------------------------------------------------------------------

EVERY_ENDPOINT = [
    ("get", "stats", None, 200),
    ("get", "list", None, 200),
    ("post", "get", b'{"product_id": "ABC123"}', 200),
    ("get", "export", None, 200),
    ("get", "health", None, 200),
    ("post", "force-regenerate", b'{"product_id": "ABC123"}', 200),  # eager: regenerated in the request
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
