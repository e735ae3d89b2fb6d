"""The OpenAPI schema: valid, complete, and true to what the API answers (schemathesis)."""
import pytest
import schemathesis
import yaml
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import seed, token_client

ENDPOINTS = {
    ("get", "/api/memory/stats/"), ("get", "/api/memory/list/"), ("post", "/api/memory/get/"),
    ("post", "/api/memory/delete/"), ("post", "/api/memory/clear/"), ("get", "/api/memory/export/"),
    ("post", "/api/memory/force-regenerate/"), ("get", "/api/memory/health/"),
    ("post", "/api/memory/edit/"), ("post", "/api/memory/approve/"), ("get", "/api/memory/versions/"),
    ("post", "/api/memory/restore/"),
}


def test_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    operations = {(method, path) for path, ops in schema["paths"].items() for method in ops}
    assert operations == ENDPOINTS
    assert {"tokenAuth", "staffSessionAuth"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.django_db
def test_docs_ui_is_served_from_local_assets(make_user):
    html = token_client(make_user("reader")).get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    from django.contrib.staticfiles import finders

    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert asset in html
        assert finders.find(f"drf_spectacular_sidecar/swagger-ui-dist/{asset}"), asset


@pytest.fixture
def token_headers(db, make_user):
    from rest_framework.authtoken.models import Token

    user = make_user("schemathesis", superuser=True)
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


@pytest.fixture
def wsgi_app(db):
    """The real WSGI application, kept on the test's database connection (as Django's test client does)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app, token_headers):
    seed()
    seed({"sku": "XYZ789", "title": "Fone Bluetooth"}, {"title": "Fone Bluetooth JBL"})
    return schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app, headers=token_headers)


EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_answers_as_its_schema_says(api_schema, token_headers, mode):
    """Bounded: 25 generated requests per operation and mode, the same ones on every run."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == len(ENDPOINTS)
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and not (operation.query or operation.body):
            continue  # nothing to send wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_documented(case):
            case.call_and_validate(headers=token_headers, checks=CHECKS)

        answers_as_documented()
