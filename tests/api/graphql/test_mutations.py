"""The mutations: deleteEntry, regenerateEntry and clearMemory, each behind the REST endpoint's
model permission and each calling the service REST calls."""
import pytest

from memory.engine.memory import ProductMemory
from memory.models import ProductMemoryEntry
from memory.services.versions import set_approval
from tests.api.graphql.conftest import call
from tests.helpers import make_entries, seed, token_client

pytestmark = pytest.mark.django_db

DELETE = 'mutation { deleteEntry(productId: "ABC123") { deleted productId kind } }'
CLEAR = "mutation { clearMemory { cleared } }"
REGENERATE = """mutation R($id: String!, $override: Boolean! = false, $fields: [String!]) {
  regenerateEntry(productId: $id, overrideApproval: $override, fields: $fields) {
    taskId productId outcome tokensSpent content
  }
}"""


@pytest.fixture
def client_with(make_user):
    return lambda *perms: token_client(make_user("u-" + "-".join(perms) if perms else "u", perms=perms))


def test_delete_needs_the_delete_permission(client_with):
    seed()
    refused = call(client_with("change_productmemoryentry"), DELETE)
    assert refused.status == 200 and refused.codes == ["FORBIDDEN"] and refused.data is None
    assert refused.messages == ["É preciso a permissão memory.delete_productmemoryentry."]
    assert ProductMemoryEntry.objects.count() == 1
    answer = call(client_with("delete_productmemoryentry"), DELETE).ok()
    assert answer == {"deleteEntry": {"deleted": True, "productId": "ABC123", "kind": "main_content"}}
    assert not ProductMemory().exists("ABC123")  # every tier


def test_delete_of_an_unknown_product_says_so(client_with):
    answer = call(client_with("delete_productmemoryentry"), DELETE).ok()
    assert answer["deleteEntry"]["deleted"] is False


def test_clear_needs_the_clear_permission_not_delete(client_with):
    make_entries(3)
    refused = call(client_with("delete_productmemoryentry"), CLEAR)
    assert refused.messages == ["É preciso a permissão memory.clear_productmemoryentry."]
    assert ProductMemoryEntry.objects.count() == 3
    assert call(client_with("clear_productmemoryentry"), CLEAR).ok() == {"clearMemory": {"cleared": 3}}
    assert ProductMemoryEntry.objects.count() == 0


def test_regenerate_queues_the_task_and_answers_its_id(client_with, published_tasks):
    seed()
    answer = call(client_with("change_productmemoryentry"), REGENERATE, {"id": "ABC123"}).ok()["regenerateEntry"]
    assert answer == {"taskId": "task-1", "productId": "ABC123", "outcome": "QUEUED", "tokensSpent": 0,
                      "content": None}
    (data, forced), = published_tasks
    assert forced is True and data["sku"] == "ABC123"  # the stored source data, as REST sends it


def test_regenerate_needs_the_change_permission(client_with, published_tasks):
    seed()
    refused = call(client_with("delete_productmemoryentry"), REGENERATE, {"id": "ABC123"})
    assert refused.codes == ["FORBIDDEN"]
    assert refused.messages == ["É preciso a permissão memory.change_productmemoryentry."]
    assert published_tasks == []


def test_regenerate_in_eager_mode_answers_the_content(api, eager_tasks):
    seed()
    answer = call(api, REGENERATE, {"id": "ABC123"}).ok()["regenerateEntry"]
    assert answer["outcome"] == "REPLACED" and answer["content"]["title"] and answer["taskId"]


def test_regenerate_of_an_unknown_product_is_not_found(api, published_tasks):
    answer = call(api, REGENERATE, {"id": "NOPE"})
    assert answer.codes == ["NOT_FOUND"] and answer.errors[0]["extensions"]["productId"] == "NOPE"
    assert "não está na memória" in answer.messages[0]
    assert published_tasks == []


def test_regenerate_of_approved_content_needs_the_override(client_with, published_tasks):
    seed()
    set_approval("ABC123", True, by="maria")
    change = client_with("change_productmemoryentry")
    locked = call(change, REGENERATE, {"id": "ABC123"})
    assert locked.codes == ["APPROVED_CONTENT"]
    refused = call(change, REGENERATE, {"id": "ABC123", "override": True})
    assert refused.codes == ["FORBIDDEN"] and "override_approval" in refused.messages[0]
    assert published_tasks == []
    allowed = client_with("change_productmemoryentry", "override_approval_productmemoryentry")
    assert call(allowed, REGENERATE, {"id": "ABC123", "override": True}).ok()["regenerateEntry"]["outcome"] == "QUEUED"


def test_regenerate_an_unknown_field_names_it(api, published_tasks):
    seed()
    answer = call(api, REGENERATE, {"id": "ABC123", "fields": ["title", "nope"]})
    assert answer.codes == ["BAD_USER_INPUT"] and "nope" in answer.messages[0]
    assert published_tasks == []


def test_regenerate_when_the_queue_is_down_is_an_error_not_a_500(api, monkeypatch):
    from memory.services import entries

    seed()

    def down(*args, **kwargs):
        raise entries.QueueUnavailable("A fila de tarefas não respondeu: recusada")

    monkeypatch.setattr(entries, "_queue_generation", down)
    answer = call(api, REGENERATE, {"id": "ABC123"})
    assert answer.status == 200 and answer.codes == ["SERVICE_UNAVAILABLE"]
