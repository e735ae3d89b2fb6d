"""What Redis holds for an entry: signed LZ4-compressed JSON, zstd frames still read, bad ones dropped."""
import hmac
import json

import pytest
from backports import zstd
from django.core.cache import caches

from memory.engine.memory import ProductMemory
from memory.engine.tiers import cache_key
from memory.infra import redis as redis_owner

PRODUCT = {"sku": "L2-VAL-1", "title": "Garrafa Térmica 1 L"}
CONTENT = {"title": "Garrafa Térmica Inox 1 L", "description": "Mantém a bebida quente por 12 horas. " * 40}

pytestmark = pytest.mark.django_db


@pytest.fixture
def memory(redis_client):
    memory = ProductMemory()
    memory.save_product_data(PRODUCT, CONTENT, tokens_prompt=900, tokens_completion=700)
    return memory


def redis_key(memory):
    cache = caches["memory_l2"]
    return cache.client.make_key(cache_key(("L2-VAL-1", memory.kind)))


def read_from_l2(memory):
    memory.l1.clear()
    return memory.get_product_data("L2-VAL-1", count_hit=False)


def signed(body: bytes) -> bytes:
    return hmac.digest(caches["memory_l2"].client._signing_key(), body, "sha256") + body


def test_values_are_signed_compressed_lz4_frames(memory):
    raw = caches["memory_l2"].client.get_client().get(redis_key(memory))
    signature, body = raw[:redis_owner.SIGNATURE_BYTES], raw[redis_owner.SIGNATURE_BYTES:]
    assert signature == hmac.digest(caches["memory_l2"].client._signing_key(), body, "sha256")
    assert body[:4] == b"\x04\x22\x4d\x18"  # the LZ4 frame magic number
    assert len(raw) < len(json.dumps(CONTENT).encode()) / 2


def test_a_signed_zstd_value_is_still_served(memory):
    redis = caches["memory_l2"].client.get_client()
    plain = caches["memory_l2"].client._serializer.dumps(memory.l2.get_many([("L2-VAL-1", memory.kind)])[
        ("L2-VAL-1", memory.kind)].to_dict())
    redis.set(redis_key(memory), signed(zstd.compress(plain)))
    hit = read_from_l2(memory)
    assert hit.tier == "l2" and hit.content == CONTENT


@pytest.mark.parametrize("garbage", [b"\x04\x22\x4d\x18broken", b"\x28\xb5\x2f\xfdbroken", b"{not json", b"[1, 2]"])
def test_an_undecodable_value_is_a_miss_served_from_postgres_and_deleted(memory, garbage, caplog):
    redis = caches["memory_l2"].client.get_client()
    redis.set(redis_key(memory), signed(garbage))
    hit = read_from_l2(memory)
    assert hit.tier == "l3" and hit.content == CONTENT
    assert "Redis: valor inválido em" in caplog.text and redis_key(memory) in caplog.text
    # the bad value is gone, and the read filled Redis again with a good one
    assert read_from_l2(memory).tier == "l2"


def test_a_value_stored_before_the_usage_details_existed_is_served_with_zero_for_them(memory):
    redis = caches["memory_l2"].client.get_client()
    stored = memory.l2.get_many([("L2-VAL-1", memory.kind)])[("L2-VAL-1", memory.kind)].to_dict()
    older = {k: v for k, v in stored.items() if k not in ("tokens_cached", "tokens_reasoning")}
    redis.set(redis_key(memory), redis_owner.encode(older))
    hit = read_from_l2(memory)
    assert hit.tier == "l2" and hit.content == CONTENT
    assert (hit.snapshot.tokens_prompt, hit.snapshot.tokens_cached, hit.snapshot.tokens_reasoning) == (900, 0, 0)


def test_the_usage_details_are_stored_in_l2(redis_client):
    memory = ProductMemory()
    memory.save_product_data(PRODUCT, CONTENT, tokens_prompt=900, tokens_completion=700, tokens_cached=640,
                             tokens_reasoning=128)
    stored = redis_owner.decode(caches["memory_l2"].client.get_client().get(redis_key(memory)))
    assert (stored["tokens_cached"], stored["tokens_reasoning"]) == (640, 128)
    assert read_from_l2(memory).snapshot.tokens_cached == 640
