"""The one regeneration rule: the admin's action and the API's force-regenerate agree on every entry."""
import pytest

from memory.engine.identifiers import extract_product_identifier
from memory.engine.memory import ProductMemory
from memory.models import ProductMemoryEntry
from memory.services.entries import (
    CannotRegenerate, enqueue_product_regeneration, enqueue_regeneration, regeneration_data,
)

pytestmark = pytest.mark.django_db

CONTENT = {"title": "Antigo", "description": "d"}

# product_id -> the source data stored with its main-content entry
ENTRIES = {
    "WITH-TITLE": {"sku": "WITH-TITLE", "title": "Caneca Térmica"},
    "WITH-NOME": {"gtin": "7891234567895", "nome": "Garrafa"},
    "ONLY-SKU": {"sku": "ONLY-SKU", "brand": "Tramontina"},
    "NO-DATA": {},
    "OTHER-PRODUCT": {"sku": "SOMEONE-ELSE", "title": "Outro"},
}


@pytest.fixture
def queued(published_tasks):
    return published_tasks


@pytest.fixture
def entries():
    memory = ProductMemory()
    for product_id, source_data in ENTRIES.items():
        memory.save_product_data(product_id, CONTENT, source_data=source_data)
    ProductMemoryEntry.objects.filter(product_id="WITH-NOME").update(product_id="gtin:07891234567895")
    return ProductMemoryEntry.objects.all()


def api_accepts(product_id) -> bool:
    try:
        enqueue_product_regeneration(product_id)
    except (CannotRegenerate, ValueError):
        return False
    return True


def test_the_admin_and_the_api_regenerate_the_same_entries(entries, queued):
    result = enqueue_regeneration(entries)
    by_admin = sorted(extract_product_identifier(data) for data, _ in queued)
    queued.clear()

    by_api = sorted(pid for pid in entries.values_list("product_id", flat=True) if api_accepts(pid))

    assert by_admin == by_api == ["WITH-TITLE", "gtin:07891234567895"]
    assert (result.queued, result.lacking_data, result.other_kind) == (2, 3, 0)
    assert all(force for _, force in queued)


def test_the_task_gets_the_stored_data_with_the_request_laid_over_it(entries, queued):
    enqueue_product_regeneration({"sku": "ONLY-SKU", "title": "Panela"})
    enqueue_regeneration(entries.filter(product_id="WITH-TITLE"))
    assert queued == [
        ({"sku": "ONLY-SKU", "brand": "Tramontina", "title": "Panela"}, True),
        ({"sku": "WITH-TITLE", "title": "Caneca Térmica"}, True),
    ]


def test_other_kinds_have_no_generation_task(queued):
    ProductMemory("faq").save_product_data("FAQ-1", CONTENT, source_data={"sku": "FAQ-1", "title": "Pergunta"})
    result = enqueue_regeneration(ProductMemoryEntry.objects.all())
    assert (result.queued, result.other_kind) == (0, 1) and queued == []


@pytest.mark.parametrize("stored, sent, refusal", [
    (None, {"sku": "A"}, "não está na memória"),
    ({"sku": "A"}, None, "falta title"),
    ({}, None, "falta title"),
    ({"sku": "B", "title": "x"}, None, "identificam o produto B"),
])
def test_regeneration_data_refuses_what_would_not_make_this_products_content(stored, sent, refusal):
    with pytest.raises((CannotRegenerate, ValueError), match=refusal):
        regeneration_data("A", stored, sent)


def test_regeneration_data_is_the_stored_data_under_the_sent_data():
    assert regeneration_data("A", {"sku": "A", "title": "Velho", "cor": "azul"}, {"sku": "A", "title": "Novo"}) == {
        "sku": "A", "title": "Novo", "cor": "azul",
    }
