"""Who may call what: tokens, staff sessions, model permissions, CSRF, health's checks, and /metrics."""
import json

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from memory.models import ProductMemoryEntry

from tests.helpers import seed, token_client

# (method, url, body): every endpoint but health, with a body that works for an allowed user.
READS = [
    ("get", "/api/memory/stats/", None),
    ("get", "/api/memory/list/?limit=50", None),
    ("post", "/api/memory/get/", {"product_id": "ABC123"}),
    ("get", "/api/memory/export/?format=jsonl", None),
    ("get", "/api/memory/versions/?product_id=ABC123", None),
]
DELETES = [
    ("post", "/api/memory/delete/", {"product_id": "ABC123"}),
    ("post", "/api/memory/clear/", None),
]
CHANGES = [
    ("post", "/api/memory/force-regenerate/", {"product_data": {"sku": "ABC123"}}),
]
CONTENT = [
    ("post", "/api/memory/edit/", {"product_id": "ABC123", "content": {
        "title": "Editado", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}}),
    ("post", "/api/memory/approve/", {"product_id": "ABC123", "approved": True}),
]
ALL = READS + DELETES + CHANGES + CONTENT
OK = {200, 202}


def call(client, method, url, body, **extra):
    if method == "get":
        return client.get(url, **extra)
    return client.post(url, json.dumps(body) if body is not None else None, content_type="application/json", **extra)


def ids(cases):
    return [url.split("/")[3] for _, url, _ in cases]


@pytest.fixture(autouse=True)
def seeded(db, eager_tasks):
    seed()


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body", ALL, ids=ids(ALL))
def test_anonymous_gets_401_everywhere_but_health(method, url, body):
    response = call(APIClient(), method, url, body)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert ProductMemoryEntry.objects.count() == 1


@pytest.mark.django_db
def test_anonymous_may_read_health_but_only_its_status():
    response = APIClient().get("/api/memory/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "backup" not in response.content.decode()  # no folder path, no internals


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body", ALL, ids=ids(ALL))
def test_wrong_or_inactive_token_is_401(make_user, method, url, body):
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "f" * 40)
    assert call(bad, method, url, body).status_code == 401
    inactive = token_client(make_user("gone", superuser=True, active=False))
    assert call(inactive, method, url, body).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body", READS, ids=ids(READS))
def test_any_token_user_may_read(make_user, method, url, body):
    assert call(token_client(make_user("reader")), method, url, body).status_code in OK


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body", DELETES + CHANGES + CONTENT, ids=ids(DELETES + CHANGES + CONTENT))
def test_token_user_without_permission_gets_403_and_nothing_changes(make_user, method, url, body):
    before = list(ProductMemoryEntry.objects.values_list("product_id", "payload", "updated_at", "approved", "version"))
    response = call(token_client(make_user("reader")), method, url, body)
    assert response.status_code == 403
    assert "memory." in response.json()["detail"]
    assert list(ProductMemoryEntry.objects.values_list(
        "product_id", "payload", "updated_at", "approved", "version")) == before


@pytest.mark.django_db
def test_delete_permission_allows_delete_but_not_clear(make_user):
    client = token_client(make_user("deleter", perms=["delete_productmemoryentry"]))
    seed({"sku": "XYZ789", "title": "Outro"})
    refused = call(client, *DELETES[1])
    assert refused.status_code == 403
    assert refused.json()["detail"] == "É preciso a permissão memory.clear_productmemoryentry."
    assert ProductMemoryEntry.objects.count() == 2
    assert call(client, *DELETES[0]).status_code == 200
    assert list(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == ["XYZ789"]


@pytest.mark.django_db
def test_clear_permission_allows_clear_only(make_user):
    client = token_client(make_user("clearer", perms=["clear_productmemoryentry"]))
    assert call(client, *DELETES[0]).status_code == 403
    assert call(client, *CHANGES[0]).status_code == 403
    assert ProductMemoryEntry.objects.count() == 1
    response = call(client, *DELETES[1])
    assert response.status_code == 200 and response.json() == {"cleared": 1}
    assert not ProductMemoryEntry.objects.exists()


@pytest.mark.django_db
def test_the_clear_permission_is_made_by_the_migrations():
    from django.contrib.auth.models import Permission

    permission = Permission.objects.get(content_type__app_label="memory", codename="clear_productmemoryentry")
    assert permission.name == "Pode limpar toda a memória"


@pytest.mark.django_db
def test_editing_approving_and_overriding_an_approval_are_three_permissions_of_their_own():
    from django.contrib.auth.models import Permission

    names = dict(Permission.objects.filter(content_type__app_label="memory").values_list("codename", "name"))
    assert names["edit_productmemoryentry"] == "Pode editar o conteúdo"
    assert names["approve_productmemoryentry"] == "Pode aprovar o conteúdo"
    assert names["override_approval_productmemoryentry"] == "Pode regenerar conteúdo aprovado"


@pytest.mark.django_db
@pytest.mark.parametrize("perm, allowed", [
    ("edit_productmemoryentry", "edit"), ("approve_productmemoryentry", "approve"),
])
def test_each_content_permission_allows_its_own_write_only(make_user, perm, allowed):
    client = token_client(make_user("pessoa", perms=[perm]))
    for method, url, body in CONTENT + CHANGES + DELETES:
        expected = 200 if url.split("/")[3] == allowed else 403
        assert call(client, method, url, body).status_code == expected, url


@pytest.mark.django_db
def test_delete_permission_does_not_allow_force_regenerate(make_user):
    client = token_client(make_user("deleter", perms=["delete_productmemoryentry"]))
    assert call(client, *CHANGES[0]).status_code == 403


@pytest.mark.django_db
def test_change_permission_allows_force_regenerate_only(make_user):
    client = token_client(make_user("changer", perms=["change_productmemoryentry"]))
    assert call(client, *CHANGES[0]).status_code == 200  # eager: regenerated in the request
    for case in DELETES + CONTENT:
        assert call(client, *case).status_code == 403
    assert ProductMemoryEntry.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body", ALL, ids=ids(ALL))
def test_superuser_token_may_do_everything(make_user, method, url, body):
    assert call(token_client(make_user("root", superuser=True)), method, url, body).status_code in OK


# --- sessions ----------------------------------------------------------------------------------


def session_client(user, *, csrf=True) -> APIClient:
    client = APIClient(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def csrf_token(client) -> str:
    """What a browser page of the site has: the CSRF cookie, whose value it sends back in X-CSRFToken."""
    from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
    from django.utils.crypto import get_random_string

    token = get_random_string(CSRF_SECRET_LENGTH, CSRF_ALLOWED_CHARS)
    client.cookies["csrftoken"] = token
    return token


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body", READS, ids=ids(READS))
def test_session_of_a_non_staff_user_does_not_open_the_api(make_user, method, url, body):
    assert call(session_client(make_user("cliente")), method, url, body).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body", READS, ids=ids(READS))
def test_staff_session_may_read(make_user, method, url, body):
    client = session_client(make_user("equipe", staff=True))
    extra = {"HTTP_X_CSRFTOKEN": csrf_token(client)} if method == "post" else {}
    assert call(client, method, url, body, **extra).status_code in OK


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body", DELETES + CHANGES, ids=ids(DELETES + CHANGES))
def test_staff_session_without_permission_gets_403(make_user, method, url, body):
    client = session_client(make_user("equipe", staff=True))
    response = call(client, method, url, body, HTTP_X_CSRFTOKEN=csrf_token(client))
    assert response.status_code == 403 and "memory." in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body", [READS[2], *DELETES, *CHANGES], ids=ids([READS[2], *DELETES, *CHANGES]))
def test_session_posts_need_the_csrf_token(make_user, method, url, body):
    client = session_client(make_user("root", superuser=True))
    refused = call(client, method, url, body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert ProductMemoryEntry.objects.count() == 1
    allowed = call(client, method, url, body, HTTP_X_CSRFTOKEN=csrf_token(client))
    assert allowed.status_code in OK


@pytest.mark.django_db
def test_token_posts_need_no_csrf_token(make_user):
    client = token_client(make_user("root", superuser=True))
    client.handler.enforce_csrf_checks = True
    assert call(client, *DELETES[0]).status_code == 200


# --- health's checks ----------------------------------------------------------------------------

CHECKS = {"database", "redis", "backup_dir", "broker"}


def health_of(client) -> dict:
    response = client.get("/api/memory/health/")
    assert response.status_code == 200
    return response.json()


@pytest.mark.django_db
@pytest.mark.parametrize("who, sees_checks", [
    ("token without permissions", False),
    ("token with the view permission", True),
    ("token of a superuser", True),
    ("staff session without permissions", False),
    ("staff session with the view permission", True),
    ("session of a non-staff user with the view permission", False),
])
def test_health_shows_its_checks_only_to_users_who_may_view_entries(make_user, who, sees_checks):
    perms = ["view_productmemoryentry"] if "view permission" in who else []
    user = make_user("u", perms=perms, staff="staff session" in who, superuser="superuser" in who)
    client = session_client(user) if "session" in who else token_client(user)
    health = health_of(client)
    assert health["status"] == "ok"
    if sees_checks:
        assert set(health["checks"]) == CHECKS
    else:
        assert health == {"status": "ok"}


@pytest.mark.django_db
def test_health_with_rights_that_postgresql_cannot_check_is_the_status_only(make_user, monkeypatch):
    from django.db import OperationalError, connection

    client = token_client(make_user("viewer", perms=["view_productmemoryentry"]))

    def refuse(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/api/memory/health/")
    assert response.status_code == 503 and response.json() == {"status": "down"}


# --- /metrics, schema and docs ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("allow, anonymous, user, staff", [
    ("staff", 401, 403, 200),
    ("token", 401, 200, 200),
    ("anonymous", 200, 200, 200),
])
def test_metrics_follow_the_metrics_allow_setting(make_user, allow, anonymous, user, staff):
    with override_settings(METRICS_ALLOW=allow):
        assert APIClient().get("/metrics").status_code == anonymous
        assert token_client(make_user("user")).get("/metrics").status_code == user
        assert token_client(make_user("staff", staff=True)).get("/metrics").status_code == staff
        assert session_client(make_user("equipe", staff=True)).get("/metrics").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_need_authentication(make_user, url):
    assert APIClient().get(url).status_code == 401
    assert token_client(make_user("reader")).get(url).status_code == 200
    assert session_client(make_user("equipe", staff=True)).get(url).status_code == 200
