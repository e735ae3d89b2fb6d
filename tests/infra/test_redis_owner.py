"""memory.infra.redis is the one owner of Redis: the only module that looks up the Redis cache and
the only one that tells the circuit breaker what happened."""
import re
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.cache import CacheHandler

from memory.engine import runtime
from memory.engine.coherence import listener, wait_until_subscribed
from memory.engine.counters import flush_counters, hit_counter
from memory.engine.locks import product_lock
from memory.engine.memory import ProductMemory
from memory.engine.tiers import cache_key
from memory.infra import redis as owner
from memory.infra.health import check_health
from memory.infra.redis import RedisGuard
from memory.services.backup import warm_redis
from memory.services.stats import memory_stats

OWNER = Path(owner.__file__).resolve()
PACKAGE = OWNER.parents[1]
CONTENT = {"title": "Produto", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}


def caller_file(depth: int = 2) -> Path:
    return Path(sys._getframe(depth).f_code.co_filename).resolve()


def the_engines_redis_users() -> None:
    """Touch Redis the way the engine does: reads, writes, deletes, publishes, counts, flushes,
    locks, and the health probe."""
    memory = ProductMemory()
    memory.save_product_data({"sku": "OWN-1"}, CONTENT, tokens_prompt=3)
    caches["memory_l1"].clear()
    assert memory.get_product_data("OWN-1").tier == "l2"
    memory.delete_product("OWN-1")
    memory.save_product_data({"sku": "OWN-2"}, CONTENT)
    memory.get_product_data("OWN-2")
    hit_counter.push()
    hit_counter.pending()
    flush_counters()
    with product_lock("OWN-2", "main_content", timeout=1) as acquired:
        assert acquired
    assert check_health()["checks"]["redis"]["ok"]
    memory.clear()


def every_redis_user() -> None:
    """The engine's Redis users, and stats, the warm-up and the listener's subscription."""
    the_engines_redis_users()
    assert memory_stats()["redis"]["available"]
    warm_redis()
    listener.stop()
    runtime.start_background_threads()
    assert wait_until_subscribed(10)


@pytest.mark.django_db(transaction=True)
def test_only_the_owner_looks_up_the_redis_cache(redis_client, monkeypatch):
    lookups = []
    real_getitem = CacheHandler.__getitem__

    def recording_getitem(self, alias):
        if alias == owner.ALIAS:
            lookups.append(caller_file())
        return real_getitem(self, alias)

    monkeypatch.setattr(CacheHandler, "__getitem__", recording_getitem)
    monkeypatch.setattr(owner, "_derived", {})  # the owner looks its cache up again, once
    every_redis_user()
    assert lookups and set(lookups) == {OWNER}


@pytest.mark.django_db(transaction=True)
def test_only_the_owner_reports_to_the_breaker_through_an_outage(flaky_redis, monkeypatch):
    reporters = []
    for name in ("failed", "succeeded"):
        real = getattr(RedisGuard, name)

        def recording(self, *args, _real=real):
            reporters.append(caller_file())
            return _real(self, *args)

        monkeypatch.setattr(RedisGuard, name, recording)
    memory = ProductMemory()
    memory.save_product_data({"sku": "OWN-3"}, CONTENT)
    flaky_redis.connected = False
    memory.save_product_data({"sku": "OWN-4"}, CONTENT)  # a write Redis misses, replayed as a delete
    memory.get_product_data("OWN-3")
    hit_counter.push()
    hit_counter.pending()
    with product_lock("OWN-3", "main_content", timeout=1):
        pass
    assert not check_health()["checks"]["redis"]["ok"]
    flaky_redis.connected = True
    owner.probe()
    the_engines_redis_users()  # and once more with Redis back (the fake Redis has no INFO, no Lua)
    assert set(reporters) == {OWNER}


@pytest.mark.django_db(transaction=True)
def test_one_warning_per_outage_whichever_module_meets_it_and_the_missed_delete_is_replayed(flaky_redis, caplog):
    memory = ProductMemory()
    memory.save_product_data({"sku": "OWN-5"}, CONTENT)
    with caplog.at_level("INFO", logger="memory"):
        flaky_redis.connected = False
        memory.delete_product("OWN-5")  # L2, then the publish
        memory.save_product_data({"sku": "OWN-6"}, CONTENT)
        hit_counter.record_hit("OWN-6", "main_content", 1)
        hit_counter.push()
        hit_counter.pending()
        with product_lock("OWN-6", "main_content", timeout=1):
            pass
        check_health()
        flaky_redis.connected = True
        # Nothing touches Redis from here on: the hit pusher's probe finds it back.
        deadline = time.monotonic() + 5
        while caches["memory_l2"].get(cache_key(("OWN-5", "main_content"))) is not None:
            assert time.monotonic() < deadline, "the delete Redis missed was not replayed"
            time.sleep(0.02)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis indisponível" in m for m in messages) == 1
    assert sum("Redis disponível novamente" in m for m in messages) == 1


def test_a_recovery_callback_that_meets_redis_down_again_starts_a_new_outage(settings, caplog):
    settings.MEMORY_REDIS_RETRY_AFTER = 30
    guard = RedisGuard()
    calls = []

    def replay():
        calls.append("replay")
        if len(calls) == 1:
            raise ConnectionError("gone again")

    guard.on_recovery(replay)
    guard.on_recovery(lambda: calls.append("second"))
    with caplog.at_level("INFO", logger="memory"):
        guard.failed(ConnectionError("down"))
        guard.succeeded(guard.failures)
        assert guard.in_outage and not guard.available()
        assert calls == ["replay"]  # the rest waits for the next recovery
        guard.succeeded(guard.failures)
    assert calls == ["replay", "replay", "second"] and not guard.in_outage
    assert sum("Redis indisponível" in r.getMessage() for r in caplog.records) == 2


def test_a_reply_from_a_call_begun_before_the_failure_ends_no_outage(settings, caplog):
    """Redis dies while a call's reply is on its way: that late success says nothing about now,
    so the outage goes on, with one warning; a call begun after the failure ends it."""
    settings.MEMORY_REDIS_RETRY_AFTER = 0
    guard = RedisGuard()
    with caplog.at_level("INFO", logger="memory"):
        in_flight = guard.failures  # a call begins
        guard.failed(ConnectionError("down"))  # another call meets Redis gone
        guard.succeeded(in_flight)  # the first one's reply arrives
        assert guard.in_outage
        guard.failed(ConnectionError("still down"))
        guard.succeeded(guard.failures)  # a call begun after the failures answers
        assert not guard.in_outage
    assert sum("Redis indisponível" in r.getMessage() for r in caplog.records) == 1
    assert sum("Redis disponível novamente" in r.getMessage() for r in caplog.records) == 1


def test_no_module_but_the_owner_names_the_redis_cache_its_client_or_the_breakers_reports():
    """A complement to the tests above, for code paths they do not reach. (The cluster's cache
    client, memory/infra/cache_backends.py, defines and calls its own ``get_client``.)"""
    pattern = re.compile(r"memory_l2|\.failed\(|\.succeeded\(|(?<!def )(?<!self\.)get_client\(|\bcaches\[\s*['\"]memory_l2")
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{n}"
        for path in PACKAGE.rglob("*.py") if path.resolve() != OWNER
        for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)
    ]
    assert offenders == []


@pytest.mark.parametrize("server", ["redis", "fakeredis"])
def test_a_transaction_reads_again_when_another_client_wrote_between_its_reads_and_writes(server, request):
    request.getfixturevalue("redis_client" if server == "redis" else "flaky_redis")
    key = owner.make_key("transaction-test")
    owner.client().set(key, "1")
    reads = []

    def step(pipe):
        value = int(pipe.get(key))
        reads.append(value)
        if len(reads) == 1:
            owner.client().set(key, "10")  # another connection writes before this one's MULTI
        return value, lambda pipe: pipe.set(key, str(value + 1))

    assert owner.transaction([key], step) == 10
    assert reads == [1, 10]
    assert owner.client().get(key) == b"11"  # 1 + 1 was never written over the other client's 10
