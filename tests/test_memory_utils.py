"""The original design's functions, and bad input that must change nothing."""
import math

import pytest
from django.core.cache import caches
from django.test import override_settings

from memory.providers import CircuitOpen
from memory.providers.content import GeneratedContent
from memory.memory_utils import (
    batch_check_products_in_memory,
    check_product_in_memory,
    extract_product_identifier,
    get_cached_content_or_generate,
    save_generated_content_to_memory,
)
from memory.models import ProductMemoryEntry
from memory.engine.identifiers import input_fingerprint
from memory.engine.memory import ProductMemory

pytestmark = pytest.mark.django_db

PRODUCT = {"sku": "XYZ789", "title": "Fone Bluetooth", "brand": "JBL"}
CONTENT = {"title": "Fone Bluetooth JBL", "description": "d", "bullet_points": ["a"], "seo_keywords": ["fone"]}


def test_public_names_import_from_the_documented_paths():
    from memory.models import ProductMemoryEntry as Model  # noqa: F401
    from memory.engine.memory import ProductMemory as PM  # noqa: F401

    assert extract_product_identifier({"sku": "ABC123"}) == "ABC123"


def test_saved_content_is_found_by_check_and_batch_check():
    assert check_product_in_memory(PRODUCT) is False
    save_generated_content_to_memory(PRODUCT, CONTENT, tokens_prompt=900, tokens_completion=600)
    assert check_product_in_memory(PRODUCT) is True
    assert batch_check_products_in_memory([PRODUCT, {"sku": "OTHER"}]) == {"XYZ789": True, "OTHER": False}


def test_identifier_only_data_finds_content_made_from_fuller_data():
    save_generated_content_to_memory(PRODUCT, CONTENT)
    by_sku = {"sku": "XYZ789"}
    assert check_product_in_memory(by_sku) is True
    assert batch_check_products_in_memory([by_sku, {"sku": "OTHER"}]) == {"XYZ789": True, "OTHER": False}
    assert ProductMemory().get_product_data(by_sku).content == CONTENT
    assert ProductMemory().lookup(by_sku).status == "active"
    assert get_cached_content_or_generate(by_sku, lambda p: pytest.fail("served from memory")) == (CONTENT, True)
    # Describing data is compared with what the content was made from.
    assert check_product_in_memory({"sku": "XYZ789", "title": "Fone com fio"}) is False
    assert ProductMemory().lookup({"sku": "XYZ789", "brand": "Sony"}).status == "stale"


def test_saving_identifier_only_data_keeps_its_fingerprint():
    save_generated_content_to_memory({"sku": "ONLY-SKU"}, CONTENT)
    entry = ProductMemoryEntry.objects.get(product_id="ONLY-SKU")
    assert entry.source_data == {"sku": "ONLY-SKU"}
    assert entry.input_fingerprint == input_fingerprint({"sku": "ONLY-SKU"})
    assert check_product_in_memory({"sku": "ONLY-SKU"}) is True
    assert check_product_in_memory({"sku": "ONLY-SKU", "title": "Caneca"}) is False


def test_get_cached_content_or_generate_generates_once():
    calls = []

    def generate(product):
        calls.append(product)
        return GeneratedContent(CONTENT, tokens_prompt=900, tokens_completion=600)

    assert get_cached_content_or_generate(PRODUCT, generate) == (CONTENT, False)
    assert get_cached_content_or_generate(PRODUCT, generate) == (CONTENT, True)
    assert len(calls) == 1
    assert ProductMemoryEntry.objects.get().tokens_spent == 1500


def test_force_regenerate_ignores_the_cache():
    save_generated_content_to_memory(PRODUCT, CONTENT)
    fresh = {**CONTENT, "title": "Novo"}
    content, from_cache = get_cached_content_or_generate(PRODUCT, lambda p: fresh, force_regenerate=True)
    assert (content, from_cache) == (fresh, False)
    assert ProductMemory().get_product_data(PRODUCT).content == fresh


def test_failed_generation_saves_nothing():
    def generate(product):
        raise TimeoutError("provider timed out")

    with pytest.raises(TimeoutError):
        get_cached_content_or_generate(PRODUCT, generate)
    assert not ProductMemoryEntry.objects.exists()


def test_a_generation_the_open_circuit_did_not_attempt_raises_its_error_to_the_caller():
    def generate(product):
        raise CircuitOpen("Circuito do provedor aberto")

    with pytest.raises(CircuitOpen, match="Circuito do provedor aberto"):
        get_cached_content_or_generate(PRODUCT, generate)
    assert not ProductMemoryEntry.objects.exists()


def _nothing_written(redis_client):
    assert not ProductMemoryEntry.objects.exists()
    assert not [k for k in redis_client.keys("*") if b"entry:" in k]
    assert caches["memory_l1"].get("entry:main_content:{XYZ789}") is None


@pytest.mark.parametrize(
    "product, content, kwargs, field",
    [
        (["XYZ789"], CONTENT, {}, "product_data"),
        (42, CONTENT, {}, "product_data"),
        ({"description": "no id"}, CONTENT, {}, "product_data"),
        (PRODUCT, "just text", {}, "content"),
        (PRODUCT, {"title": object()}, {}, "content"),
        (PRODUCT, {"title": "x", "score": math.nan}, {}, "content"),
        (PRODUCT, {"title": "x" * 300_000}, {}, "content"),
        (PRODUCT, CONTENT, {"ttl": -5}, "ttl"),
        (PRODUCT, CONTENT, {"ttl": 0}, "ttl"),
        (PRODUCT, CONTENT, {"ttl": "90d"}, "ttl"),
        (PRODUCT, CONTENT, {"tokens_prompt": -1}, "tokens_prompt"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(product, content, kwargs, field, redis_client):
    with pytest.raises(ValueError) as excinfo:
        ProductMemory().save_product_data(product, content, **kwargs)
    assert str(excinfo.value).startswith(field)
    _nothing_written(redis_client)


@override_settings(MEMORY_MAX_PAYLOAD_BYTES=100)
def test_payload_limit_comes_from_settings(redis_client):
    with pytest.raises(ValueError, match="excede o limite de 100 bytes"):
        save_generated_content_to_memory(PRODUCT, {"title": "x" * 200})
    _nothing_written(redis_client)


@pytest.mark.parametrize("product", [None, 3.14, ["a"], ""])
def test_reads_refuse_what_is_not_a_product(product):
    with pytest.raises(ValueError):
        ProductMemory().get_product_data(product)
