"""The content's endpoints: edit/, approve/, versions/, restore/, and force-regenerate/ on
approved content (409, override_approval and its permission)."""
import pytest

from memory.engine.memory import ProductMemory
from memory.models import ContentVersion, ProductMemoryEntry

from tests.helpers import CONTENT, PRODUCT, post_json, seed, token_client

pytestmark = pytest.mark.django_db

EDITED = {"title": "Produto Teste Revisado", "description": "Texto revisto por uma pessoa.",
          "bullet_points": ["Leve", "Resistente"], "seo_keywords": ["produto teste"]}


@pytest.fixture(autouse=True)
def seeded(db, eager_tasks):
    seed(PRODUCT, {**CONTENT, "bullet_points": ["a"]})


def entry():
    return ProductMemoryEntry.objects.get(product_id="ABC123")


def test_an_edit_is_saved_as_a_new_version_by_its_author_and_served(api):
    response = post_json(api, "/api/memory/edit/", {"product_id": "ABC123", "content": EDITED})
    assert response.status_code == 200
    assert response.json() == {"product_id": "ABC123", "kind": "main_content", "version": 2, "origin": "edited",
                               "author": "admin", "content": EDITED}
    served = post_json(api, "/api/memory/get/", {"product_data": PRODUCT}).json()
    assert served["content"] == EDITED and served["status"] == "active"


@pytest.mark.parametrize("content, field_message", [
    ({**EDITED, "title": "  "}, "title: obrigatório, texto não vazio"),
    ({**EDITED, "seo_keywords": "uma só"}, "seo_keywords: obrigatório, lista de 1 a 30 itens"),
    ({**EDITED, "bullet_points": ["ok", ""]}, "bullet_points: cada item deve ser texto não vazio de até 300 caracteres"),
])
def test_an_edit_breaking_the_content_schema_is_a_400_naming_the_field(api, content, field_message):
    response = post_json(api, "/api/memory/edit/", {"product_id": "ABC123", "content": content})
    assert response.status_code == 400
    assert response.json() == {"content": [field_message]}
    assert entry().version == 1


@pytest.mark.parametrize("body, field", [
    ({"product_id": "ABC123"}, "content"),
    ({"product_id": "ABC123", "content": ["não", "objeto"]}, "content"),
    ({"content": EDITED}, "non_field_errors"),
])
def test_an_edit_without_a_content_object_or_a_product_is_a_400(api, body, field):
    response = post_json(api, "/api/memory/edit/", body)
    assert response.status_code == 400 and field in response.json()


def test_an_edit_of_an_unknown_product_is_a_404(api):
    response = post_json(api, "/api/memory/edit/", {"product_id": "NADA", "content": EDITED})
    assert response.status_code == 404
    assert response.json() == {"detail": "Produto NADA não está na memória (tipo main_content).", "product_id": "NADA"}


def test_approve_and_withdraw_the_approval(api):
    approved = post_json(api, "/api/memory/approve/", {"product_id": "ABC123", "approved": True})
    assert approved.status_code == 200
    body = approved.json()
    assert (body["approved"], body["approved_by"], body["version"]) == (True, "admin", 1)
    assert body["approved_at"] is not None
    withdrawn = post_json(api, "/api/memory/approve/", {"product_id": "ABC123", "approved": False}).json()
    assert (withdrawn["approved"], withdrawn["approved_by"], withdrawn["approved_at"]) == (False, "", None)


@pytest.mark.parametrize("body, status", [
    ({"product_id": "ABC123", "approved": "true"}, 400),
    ({"product_id": "ABC123", "approved": 1}, 400),
    ({"product_id": "ABC123"}, 400),
    ({"product_id": "NADA", "approved": True}, 404),
])
def test_approve_takes_a_json_boolean_of_a_known_product(api, body, status):
    response = post_json(api, "/api/memory/approve/", body)
    assert response.status_code == status
    if status == 400:
        assert "approved" in response.json()
    assert not entry().approved


def test_approved_content_is_served_stale_and_the_api_says_so(api, monkeypatch):
    post_json(api, "/api/memory/approve/", {"product_id": "ABC123", "approved": True})
    monkeypatch.setattr("memory.providers.prompts.PROMPT_VERSION", "p-nova")
    served = post_json(api, "/api/memory/get/", {"product_data": {**PRODUCT, "color": "Azul"}})
    assert served.status_code == 200
    assert (served.json()["approved"], served.json()["status"]) == (True, "stale")
    listed = api.get("/api/memory/list/").json()["results"][0]
    assert (listed["status"], listed["approved"]) == ("stale", True)
    assert api.get("/api/memory/stats/").json()["approved_entries"] == 1


def test_force_regenerate_of_approved_content_is_a_409_and_changes_nothing(api, make_user):
    post_json(api, "/api/memory/approve/", {"product_id": "ABC123", "approved": True})
    refused = post_json(api, "/api/memory/force-regenerate/", {"product_id": "ABC123"})
    assert refused.status_code == 409
    assert refused.json()["product_id"] == "ABC123" and "aprovado" in refused.json()["detail"]
    assert entry().version == 1 and entry().approved


def test_override_approval_needs_its_own_permission(make_user):
    ProductMemory().set_approval("ABC123", True, by="ana")
    changer = token_client(make_user("changer", perms=["change_productmemoryentry"]))
    body = {"product_id": "ABC123", "override_approval": True}
    refused = post_json(changer, "/api/memory/force-regenerate/", body)
    assert refused.status_code == 403
    assert refused.json() == {"detail": "override_approval exige a permissão memory.override_approval_productmemoryentry."}
    assert entry().approved and entry().version == 1

    overrider = token_client(make_user("overrider", perms=["change_productmemoryentry",
                                                           "override_approval_productmemoryentry"]))
    done = post_json(overrider, "/api/memory/force-regenerate/", body)
    assert done.status_code == 200
    row = entry()
    assert (row.version, row.origin, row.approved) == (2, "generated", False)


def test_override_approval_must_be_a_json_boolean(api):
    response = post_json(api, "/api/memory/force-regenerate/", {"product_id": "ABC123", "override_approval": "sim"})
    assert response.status_code == 400 and "override_approval" in response.json()


def test_versions_lists_the_history_newest_first_with_its_changes(api):
    post_json(api, "/api/memory/edit/", {"product_id": "ABC123", "content": EDITED})
    response = api.get("/api/memory/versions/?product_id=ABC123")
    assert response.status_code == 200
    body = response.json()
    assert (body["product_id"], body["version"], body["approved"]) == ("ABC123", 2, False)
    newest, first = body["versions"]
    assert (newest["number"], newest["origin"], newest["author"], newest["current"]) == (2, "edited", "admin", True)
    assert (first["number"], first["origin"], first["tokens"], first["current"]) == (1, "generated", 1500, False)
    assert newest["payload"] == EDITED
    assert {c["field"] for c in newest["changes"]} == {"title", "description", "bullet_points", "seo_keywords"}


@pytest.mark.parametrize("query, status", [("", 400), ("?product_id=", 400), ("?product_id=NADA", 404)])
def test_versions_needs_a_known_product(api, query, status):
    assert api.get(f"/api/memory/versions/{query}").status_code == status


def test_restore_brings_a_version_back_as_a_new_one(api):
    post_json(api, "/api/memory/edit/", {"product_id": "ABC123", "content": EDITED})
    response = post_json(api, "/api/memory/restore/", {"product_id": "ABC123", "version": 1})
    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["origin"], body["restored_from"], body["author"]) == (3, "restored", 1, "admin")
    assert post_json(api, "/api/memory/get/", {"product_id": "ABC123"}).json()["content"] == body["content"]
    assert ContentVersion.objects.filter(entry__product_id="ABC123").count() == 3


@pytest.mark.parametrize("body, status, field", [
    ({"product_id": "ABC123", "version": 7}, 404, "detail"),
    ({"product_id": "NADA", "version": 1}, 404, "detail"),
    ({"product_id": "ABC123", "version": 1}, 400, "version"),  # the current content already
    ({"product_id": "ABC123", "version": "1"}, 400, "version"),
    ({"product_id": "ABC123", "version": 0}, 400, "version"),
    ({"product_id": "ABC123"}, 400, "version"),
])
def test_restore_refuses_what_it_cannot_restore(api, body, status, field):
    response = post_json(api, "/api/memory/restore/", body)
    assert response.status_code == status and field in response.json()
    assert entry().version == 1


def test_restore_needs_the_edit_permission(make_user):
    ProductMemory().replace_content("ABC123", EDITED, origin="edited", author="maria")
    approver = token_client(make_user("approver", perms=["approve_productmemoryentry"]))
    refused = post_json(approver, "/api/memory/restore/", {"product_id": "ABC123", "version": 1})
    assert refused.status_code == 403
    assert refused.json() == {"detail": "É preciso a permissão memory.edit_productmemoryentry."}
    assert entry().version == 2
    editor = token_client(make_user("editor", perms=["edit_productmemoryentry"]))
    assert post_json(editor, "/api/memory/restore/", {"product_id": "ABC123", "version": 1}).status_code == 200


# -- field-level regeneration -------------------------------------------------------------------------


def test_force_regenerate_of_some_fields_keeps_the_others(api):
    post_json(api, "/api/memory/edit/", {"product_id": "ABC123", "content": EDITED})
    response = post_json(api, "/api/memory/force-regenerate/", {"product_id": "ABC123", "fields": ["seo_keywords"]})
    assert response.status_code == 200
    content = response.json()["content"]
    assert {k: content[k] for k in ("title", "description", "bullet_points")} == {
        k: EDITED[k] for k in ("title", "description", "bullet_points")}
    assert content["seo_keywords"] != EDITED["seo_keywords"]
    assert entry().payload == content and entry().version == 3


@pytest.mark.parametrize("fields, message", [
    (["seo_keyword"], "campo desconhecido 'seo_keyword'; use title, description, bullet_points, seo_keywords"),
    ([], "informe ao menos um campo (title, description, bullet_points, seo_keywords)"),
    ("title", "deve ser uma lista de campos do conteúdo (title, description, bullet_points, seo_keywords)"),
    ([1], "campo desconhecido '1'; use title, description, bullet_points, seo_keywords"),
])
def test_force_regenerate_with_an_unknown_field_is_a_400_naming_it(api, fields, message):
    response = api.post("/api/memory/force-regenerate/", {"product_id": "ABC123", "fields": fields}, format="json",
                        HTTP_ACCEPT_LANGUAGE="pt-br")
    assert response.status_code == 400
    assert response.json() == {"fields": [message]}
    assert entry().version == 1


def test_force_regenerate_of_fields_of_an_unknown_product_is_a_404(api):
    response = post_json(api, "/api/memory/force-regenerate/",
                         {"product_data": {"sku": "NOVO", "title": "Novo"}, "fields": ["title"]})
    assert response.status_code == 404 and "gere o conteúdo inteiro" in response.json()["detail"]
    assert not ProductMemoryEntry.objects.filter(product_id="NOVO").exists()
