"""The token cache: a token's user is not read from PostgreSQL on every request, yet a revoked
token, a deactivated user or a changed permission counts from the very next request."""
import json

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import caches
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from memory.api.authentication import token_users
from memory.engine.coherence import _channel, listener

from tests.helpers import PRODUCT, seed, token_client, wait_for

GET = "/api/memory/get/"


def get(client, product_id="ABC123"):
    return client.post(GET, json.dumps({"product_id": product_id}), content_type="application/json")


@pytest.fixture(autouse=True)
def seeded(db, monkeypatch):
    monkeypatch.setattr("memory.api.authentication.l1_is_trustworthy", lambda: True)
    token_users.clear()
    seed()
    yield
    token_users.clear()


def test_a_known_token_costs_no_query(make_user):
    client = token_client(make_user("reader"))
    assert get(client).status_code == 200
    assert get(client).status_code == 200  # now the product is in L1 and the token cached
    with CaptureQueriesContext(connection) as queries:
        response = get(client)
    assert response.status_code == 200 and response.json()["found"] is True
    assert [q["sql"] for q in queries.captured_queries] == []


def test_a_cached_request_carries_the_token_as_drf_does(make_user):
    from rest_framework.test import APIRequestFactory

    from memory.api.authentication import CachedTokenAuthentication

    user = make_user("reader")
    token = Token.objects.create(user=user)
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {token.key}")
    first = CachedTokenAuthentication().authenticate(request)
    again = CachedTokenAuthentication().authenticate(request)
    assert first == (user, token) and again == (user, token)
    assert again[0] is not first[0]  # each request gets its own copy of the user


def test_a_revoked_token_is_refused_on_the_next_request(make_user):
    client = token_client(make_user("reader"))
    assert get(client).status_code == 200
    Token.objects.filter(user__username="reader").get().delete()
    response = get(client)
    assert response.status_code == 401
    assert response.json()["detail"]


def test_a_deactivated_user_is_refused_on_the_next_request(make_user):
    user = make_user("reader")
    client = token_client(user)
    assert get(client).status_code == 200
    user.is_active = False
    user.save()
    assert get(client).status_code == 401


def test_a_permission_granted_after_a_cached_request_counts_at_once(make_user):
    user = make_user("reader")
    client = token_client(user)
    delete = {"product_id": PRODUCT["sku"]}
    assert client.post("/api/memory/delete/", delete, format="json").status_code == 403
    user.user_permissions.add(Permission.objects.get(content_type__app_label="memory", codename="delete_productmemoryentry"))
    assert client.post("/api/memory/delete/", delete, format="json").status_code == 200


def test_a_revocation_in_another_process_empties_this_processs_cache(make_user):
    """Another process publishes on the invalidation channel; this one drops every cached token."""
    client = token_client(make_user("reader"))
    assert get(client).status_code == 200
    assert token_users._users
    if not listener.subscribed:
        pytest.skip("needs Redis and the invalidation listener")
    redis = caches["memory_l2"].client.get_client(write=True)
    redis.publish(_channel(), json.dumps({"origin": "another-process", "auth": True}))
    assert wait_for(lambda: not token_users._users, timeout=5)


def test_not_used_while_this_process_cannot_hear_revocations(make_user, monkeypatch):
    client = token_client(make_user("reader"))
    assert get(client).status_code == 200
    monkeypatch.setattr("memory.api.authentication.l1_is_trustworthy", lambda: False)
    Token.objects.filter(user__username="reader").update(key="0" * 40)  # a change no signal sees
    assert get(client).status_code == 401


def test_cached_token_serves_cached_entries_while_postgres_is_down(make_user, monkeypatch):
    client = token_client(make_user("reader"))
    assert get(client).status_code == 200
    assert get(client).status_code == 200

    def down(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(connection, "cursor", down)
        response = get(client)
        unknown = get(client, "NOT-CACHED")  # only PostgreSQL can answer this one
    assert response.status_code == 200 and response.json()["found"] is True
    assert unknown.status_code == 503
    assert "PostgreSQL" in unknown.json()["detail"]
