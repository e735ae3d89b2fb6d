"""A hostile Redis: whoever can write to it gets no content served, no 500, no lasting harm.

Every poisoned value is written into a real Redis as an attacker would (unsigned), or signed
with the memory's own key (what only a holder of ``SECRET_KEY``, or a bug, could write), so
that the checks behind the signature are tested too. Each read answers as PostgreSQL does,
the bad value is deleted, and one pt-BR warning names it."""
import hmac
import json
import resource
import time

import pytest
from backports import zstd
from django.core.cache import caches
from django.test import override_settings

from memory.engine.counters import DAILY_COUNTS, ENTRY_COUNTS, SEP, hit_counter
from memory.engine.memory import STATS_GENERATION, ProductMemory
from memory.engine.tiers import cache_key, redis_tier
from memory.infra import redis
from memory.models import ProductMemoryEntry

CONTENT = {"title": "Garrafa Térmica Inox 1 L", "description": "Mantém a bebida quente por 12 horas. " * 20}
GET = "/api/memory/get/"
STATS = "/api/memory/stats/"
WARNING = "Redis: valor inválido em"

pytestmark = pytest.mark.django_db


def signed(body: bytes) -> bytes:
    """``body`` as the memory would store it: with the HMAC of its key."""
    return hmac.digest(caches["memory_l2"].client._signing_key(), body, "sha256") + body


def entry_key(product_id: str, kind: str = "main_content") -> str:
    return redis.make_key(cache_key((product_id, kind)))


def stored_snapshot(product_id: str) -> dict:
    """What Redis holds for a saved entry, decoded."""
    return redis.decode(redis.client().get(entry_key(product_id)))


@pytest.fixture
def saved(redis_client):
    ProductMemory().save_product_data({"sku": "HOST-1", "title": "Garrafa"}, CONTENT, tokens_prompt=900,
                                      tokens_completion=700)
    caches["memory_l1"].clear()
    return stored_snapshot("HOST-1")


def get(api, product_id: str):
    caches["memory_l1"].clear()  # the read reaches Redis
    return api.post(GET, {"product_id": product_id}, format="json")


def with_field(snapshot: dict, **changes) -> bytes:
    return json.dumps({**snapshot, **changes}).encode()


POISONED_SNAPSHOTS = {
    "expires_at as text": lambda snap: with_field(snap, expires_at="2030-01-01"),
    "tokens as text": lambda snap: with_field(snap, tokens_prompt="900"),
    "created_at = 1e20": lambda snap: with_field(snap, created_at=1e20),
    "expires_at = NaN": lambda snap: with_field(snap, expires_at=float("nan")),
    "negative tokens": lambda snap: with_field(snap, tokens_completion=-5),
    "tokens as bool": lambda snap: with_field(snap, tokens_prompt=True),
    "tokens past int": lambda snap: with_field(snap, tokens_prompt=2**40),
    "payload a list": lambda snap: with_field(snap, payload=["x"]),
    "payload with NaN": lambda snap: with_field(snap, payload={"title": float("nan")}),
    "a field missing": lambda snap: json.dumps({k: v for k, v in snap.items() if k != "kind"}).encode(),
    "one usage detail missing": lambda snap: json.dumps(
        {k: v for k, v in snap.items() if k != "tokens_reasoning"}).encode(),
    "cached tokens above the prompt's": lambda snap: with_field(snap, tokens_cached=901),
    "reasoning tokens as text": lambda snap: with_field(snap, tokens_reasoning="10"),
    "a field more": lambda snap: with_field(snap, extra=1),
    "another entry's snapshot": lambda snap: with_field(snap, product_id="OTHER-1"),
    "not an object": lambda snap: b"[1, 2, 3]",
    "junk bytes": lambda snap: b"\x04\x22\x4d\x18\xff\x00junk" * 3,
}


@pytest.mark.parametrize("poison", POISONED_SNAPSHOTS.values(), ids=POISONED_SNAPSHOTS.keys())
def test_a_signed_but_invalid_snapshot_is_a_miss_deleted_and_logged_once(api, saved, poison, caplog):
    redis.client().set(entry_key("HOST-1"), signed(poison(saved)))
    with caplog.at_level("WARNING", logger="memory"):
        response = get(api, "HOST-1")
    assert response.status_code == 200 and response.json()["content"] == CONTENT
    assert response.json()["tokens_saved"] == 1600
    assert caplog.text.count(WARNING) == 1 and entry_key("HOST-1") in caplog.text
    # the poisoned value is gone: the read filled L2 again with PostgreSQL's copy
    assert stored_snapshot("HOST-1") == saved


@pytest.mark.parametrize("poison", POISONED_SNAPSHOTS.values(), ids=POISONED_SNAPSHOTS.keys())
def test_an_unsigned_value_is_a_miss_whatever_it_holds(api, saved, poison, caplog):
    redis.client().set(entry_key("HOST-1"), poison(saved))
    with caplog.at_level("WARNING", logger="memory"):
        response = get(api, "HOST-1")
    assert response.status_code == 200 and response.json()["content"] == CONTENT
    assert WARNING in caplog.text
    assert stored_snapshot("HOST-1") == saved


def test_a_forged_snapshot_for_an_id_absent_from_postgres_is_not_served(api, saved, caplog):
    forged = {**saved, "product_id": "FORGED-1", "payload": {"title": "Compre em golpe.example"}}
    client = caches["memory_l2"].client

    def unsigned(value):  # the format of the last release: compressed JSON
        return client._compressor.compress(client._serializer.dumps(value))

    redis.client().set(entry_key("FORGED-1"), unsigned(forged))
    redis.client().set(entry_key("FORGED-2"), hmac.digest(b"guessed", b"x", "sha256") + unsigned(
        {**forged, "product_id": "FORGED-2"}))
    with caplog.at_level("WARNING", logger="memory"):
        for product_id in ("FORGED-1", "FORGED-2"):
            response = get(api, product_id)
            assert response.status_code == 404 and response.json()["found"] is False
            assert redis.client().exists(entry_key(product_id)) == 0
    assert not ProductMemoryEntry.objects.filter(product_id__startswith="FORGED").exists()
    assert "assinatura inválida" in caplog.text


def test_the_same_poisoned_key_is_logged_once(api, saved, caplog):
    with caplog.at_level("WARNING", logger="memory"):
        for _ in range(3):
            redis.client().set(entry_key("HOST-1"), b"\x00" * 40)
            assert get(api, "HOST-1").status_code == 200
    assert caplog.text.count(WARNING) == 1


def test_a_flood_of_poisoned_keys_logs_a_bounded_number_of_lines(saved, caplog):
    keys = [(f"FLOOD-{i}", "main_content") for i in range(100)]
    redis.client().mset({entry_key(pid): b"\x00" * 40 for pid, _ in keys})
    with caplog.at_level("WARNING", logger="memory"):
        assert redis_tier.get_many(keys) == {}
    assert caplog.text.count(WARNING) == redis.invalid_values.per_minute
    assert redis.client().exists(*[entry_key(pid) for pid, _ in keys]) == 0


# --- decompression bombs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def zstd_bomb() -> bytes:
    """1 GiB of zeros as one zstd frame, compressed a MiB at a time (never held inflated)."""
    compressor, chunk = zstd.ZstdCompressor(), bytes(1 << 20)
    return b"".join([compressor.compress(chunk) for _ in range(1024)] + [compressor.flush()])


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("sign", [True, False], ids=["signed", "unsigned"])
def test_a_zstd_bomb_is_a_miss_and_the_worker_stays_small(api, saved, zstd_bomb, sign, caplog):
    assert len(zstd_bomb) < 64 * 1024
    redis.client().set(entry_key("HOST-1"), signed(zstd_bomb) if sign else zstd_bomb)
    before = max_rss_mb()
    with caplog.at_level("WARNING", logger="memory"):
        response = get(api, "HOST-1")
    assert max_rss_mb() - before < 50  # inflated, it would take 1024 MB
    assert response.status_code == 200 and response.json()["content"] == CONTENT
    assert ("acima de" if sign else "assinatura inválida") in caplog.text
    assert stored_snapshot("HOST-1") == saved


def test_an_entry_of_the_largest_payload_in_accented_text_is_still_read_from_redis(redis_client, settings):
    settings.MEMORY_MAX_PAYLOAD_BYTES = 64 * 1024
    # "ã" takes 2 bytes in the payload's measure and 6 once stored, escaped: the value's limit allows it
    content = {"description": "ã" * (settings.MEMORY_MAX_PAYLOAD_BYTES // 2 - 20)}
    memory = ProductMemory()
    memory.save_product_data({"sku": "BIG-1"}, content)
    memory.l1.clear()
    hit = memory.get_product_data("BIG-1", count_hit=False)
    assert hit.tier == "l2" and hit.content == content


# --- stats ---------------------------------------------------------------------------------


def stats_key(name: str) -> str:
    return redis.make_key(f"memory-stats:{name}")


@pytest.fixture
def stats_cached(settings, saved, api):
    settings.MEMORY_STATS_CACHE_SECONDS = 60
    first = api.get(STATS).json()
    assert redis.client().exists(stats_key("token-parts")) == 1
    return first


@pytest.mark.parametrize("name, value", [
    ("generation", b"not a number"),
    ("generation", str(2**63).encode()),
    ("generation", b"-3"),
    ("token-parts", b"{\"name\": \"token-parts\", \"generation\": 0, \"value\": \"x\"}"),  # unsigned
    ("token-parts", signed(b"{\"name\": \"token-parts\", \"generation\": 0, \"value\": \"x\"}")),
    ("token-parts", signed(b"{\"name\": \"token-parts\", \"generation\": 0, \"value\": {\"p\": \"1\", \"k\": 0, \"c\": 2}}")),
    ("token-parts", signed(b"{\"name\": \"token-parts\", \"generation\": 0, \"value\": {\"p\": -1, \"k\": 0, \"c\": 2}}")),
    ("token-parts", signed(b"{\"name\": \"entries:*\", \"generation\": 0, \"value\": {\"p\": 1, \"k\": 0, \"c\": 2}}")),
    ("token-parts", b"\x28\xb5\x2f\xfdjunk"),
])
def test_poisoned_stats_keys_are_counted_again_deleted_and_logged(api, stats_cached, name, value, caplog):
    redis.client().set(stats_key(name), value)
    with caplog.at_level("WARNING", logger="memory"):
        response = api.get(STATS)
    assert response.status_code == 200
    assert response.json()["total_entries"] == 1 and response.json()["tokens_spent"] == stats_cached["tokens_spent"]
    assert WARNING in caplog.text and stats_key(name) in caplog.text
    stored = redis.client().get(stats_key(name))
    assert stored != value  # deleted (and, for the figures, kept again as counted)
    if name == "generation":
        # a save's INCR works again
        ProductMemory().save_product_data({"sku": "HOST-2"}, CONTENT)
        assert int(redis.client().get(redis.make_key(STATS_GENERATION))) >= 1


def daily_live() -> str:
    return redis.make_key(DAILY_COUNTS.live)


TODAY = time.strftime("%Y-%m-%d")


@pytest.mark.parametrize("key, field, value", [
    (DAILY_COUNTS.live, f"d{SEP}{TODAY}{SEP}hits", b"lots"),
    (DAILY_COUNTS.live, f"d{SEP}{TODAY}{SEP}hits", b"1e300"),
    (DAILY_COUNTS.live, f"d{SEP}{TODAY}{SEP}hits", str(2**62).encode()),
    (DAILY_COUNTS.live, f"d{SEP}{TODAY}{SEP}misses", b"-4"),
    (DAILY_COUNTS.live, f"d{SEP}yesterday{SEP}hits", b"1"),
    (DAILY_COUNTS.live, f"d{SEP}{TODAY}", b"1"),
    (ENTRY_COUNTS.live, f"p{SEP}abc", b"{not json"),
    (ENTRY_COUNTS.live, f"p{SEP}abc", json.dumps({f"h{SEP}main_content{SEP}HOST-1": "many"}).encode()),
    (ENTRY_COUNTS.live, f"p{SEP}abc", json.dumps({f"t{SEP}main_content{SEP}HOST-1": 1e20}).encode()),
    (ENTRY_COUNTS.live, f"h{SEP}main_content{SEP}HOST-1", b"nan"),
])
def test_poisoned_counter_fields_are_ignored_deleted_and_logged(api, saved, key, field, value, caplog):
    hit_counter.push()
    redis.client().hset(redis.make_key(key), field, value)
    with caplog.at_level("WARNING", logger="memory"):
        response = api.get(STATS)
        assert response.status_code == 200 and response.json()["misses"] == 0
        if key == ENTRY_COUNTS.live:  # the stats read only the daily hash: the flush reads this one
            hit_counter.flush_part(ENTRY_COUNTS)
    assert "Redis: contador inválido em" in caplog.text
    assert not redis.client().hexists(redis.make_key(key), field)
    # the flush still works, and a later push adds to the day again
    hit_counter.flush_part(DAILY_COUNTS)
    hit_counter.record_misses(2)
    hit_counter.push()
    assert api.get(STATS).json()["misses"] == 2


def test_a_counter_key_of_another_type_is_deleted_and_counting_goes_on(api, saved, caplog):
    hit_counter.push()
    redis.client().set(daily_live(), b"not a hash")
    with caplog.at_level("WARNING", logger="memory"):
        assert api.get(STATS).status_code == 200
    assert daily_live() in caplog.text and redis.client().exists(daily_live()) == 0
    hit_counter.record_misses(3)
    hit_counter.push()
    assert api.get(STATS).json()["misses"] == 3


def test_a_foreign_name_in_the_flushing_set_is_never_read_nor_deleted(saved, caplog):
    victim = redis.make_key("entry:main_content:{HOST-1}")
    redis.client().sadd(redis.make_key(DAILY_COUNTS.flushing_set), victim)
    with caplog.at_level("WARNING", logger="memory"):
        hit_counter.flush_part(DAILY_COUNTS)
    assert redis.client().exists(victim) == 1
    assert not redis.client().sismember(redis.make_key(DAILY_COUNTS.flushing_set), victim)
    assert "não é um hash de contadores" in caplog.text


def test_signing_follows_secret_key(saved):
    raw = redis.client().get(entry_key("HOST-1"))
    with override_settings(SECRET_KEY="another-secret-key"):
        with pytest.raises(redis.InvalidValue, match="assinatura"):
            redis.decode(raw)
    assert redis.decode(raw) == saved
