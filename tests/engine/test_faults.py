"""Faults against real servers that the tests start on free ports and stop themselves."""
import threading
import time

import pytest
from django.core.cache import caches
from django.db import OperationalError, connection, connections
from django.test import override_settings

from memory.engine import runtime
from memory.services.generation import generate_product
from memory.engine.coherence import wait_until_subscribed
from memory.engine.locks import product_lock
from memory.models import ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.providers import OpenAIProvider
from memory.engine.tiers import cache_key
from memory.infra.health import check_health
from memory.infra.redis import guard as redis_guard

from tests.helpers import l2_caches, wait_for
from tests.servers import RedisServer, TcpProxy

CONTENT = {"title": "Produto", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}


@pytest.fixture
def own_redis():
    """The memory on a redis-server of its own, which the test may kill and start again."""
    server = RedisServer().start()
    with override_settings(CACHES=l2_caches({}, server.url), MEMORY_REDIS_RETRY_AFTER=0.2):
        runtime.stop_background_threads()  # the listener resubscribes, to this server
        runtime.reset_process_state()
        runtime.start_background_threads()
        assert wait_until_subscribed(10)
        yield server
        runtime.stop_background_threads()  # the next test's clean_memory starts them on the suite's Redis
        runtime.reset_process_state()
    server.kill()
    runtime.reset_process_state()


# What the process logs once when it finds Redis gone (memory.infra.redis.RedisGuard).
OUTAGE_WARNING = "Redis indisponível"
WRITES_PER_PHASE = 20  # at least, before the kill, during the outage and after the recovery


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_redis_killed_during_reads_and_writes_fails_nothing_and_loses_nothing(own_redis, caplog):
    errors, written = [], []
    writes = []  # (sku, started at, saved at) of every save, in time.monotonic()
    stop = threading.Event()

    def worker(n):
        memory = ProductMemory()
        i = 0
        try:
            while not stop.is_set():
                product = {"sku": f"W{n}-{i}", "title": f"Produto {n}-{i}"}
                started = time.monotonic()
                memory.save_product_data(product, CONTENT)
                writes.append((product["sku"], started, time.monotonic()))
                written.append(product["sku"])
                assert memory.get_product_data(product) is not None
                i += 1
        except Exception as exc:  # any failure is the test's failure
            errors.append(repr(exc))
        finally:
            connections.close_all()

    def started_after(moment: float) -> list[str]:
        return [sku for sku, started, _ in writes if started > moment]

    def outage_warnings(records) -> int:
        return sum(OUTAGE_WARNING in r.getMessage() for r in records)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    with caplog.at_level("WARNING", logger="memory"):
        for t in threads:
            t.start()
        try:
            assert wait_for(lambda: len(written) >= WRITES_PER_PHASE, timeout=30)
            assert outage_warnings(caplog.records) == 0  # Redis has not failed yet
            records_at_kill = len(caplog.records)
            own_redis.kill()
            killed_at = time.monotonic()
            # The writes go on without Redis, and the process knows Redis is gone.
            assert wait_for(lambda: len(started_after(killed_at)) >= WRITES_PER_PHASE, timeout=30)
            assert wait_for(lambda: outage_warnings(caplog.records[records_at_kill:]) >= 1, timeout=10)
            health = check_health()
            assert health["status"] == "degraded" and health["checks"]["redis"]["ok"] is False
            outage_records = caplog.records[records_at_kill:]
            restarted_at = time.monotonic()
            own_redis.start()
            # Redis comes back under the writes: the next try after the retry delay finds it.
            assert wait_for(lambda: not redis_guard.in_outage, timeout=10)
            recovered_at = time.monotonic()
            assert wait_for(lambda: len(started_after(recovered_at)) >= WRITES_PER_PHASE, timeout=30)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

    assert errors == []
    assert len(written) > 0
    # The outage happened during the writes: some were saved before the kill, and others
    # began after it and were saved before the restart ...
    during_outage = [sku for sku, started, saved in writes if started > killed_at and saved < restarted_at]
    assert any(saved < killed_at for _, _, saved in writes)
    assert len(during_outage) >= WRITES_PER_PHASE
    # ... and the process warned of it once, however many writes met it.
    assert outage_warnings(outage_records) == 1
    assert set(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == set(written)
    # Redis is back: L2 fills again and the invalidation channel is heard again.
    assert wait_until_subscribed(10)
    memory = ProductMemory()
    caches["memory_l1"].clear()
    memory.get_product_data(written[0])
    assert caches["memory_l2"].get(cache_key((written[0], "main_content"))) is not None
    assert memory.get_product_data(written[0]).tier in ("l1", "l2")


@pytest.fixture
def unreachable_postgres(transactional_db):
    """Point Django at the test database through a proxy the test can cut."""
    settings_dict = connection.settings_dict
    proxy = TcpProxy(int(settings_dict["PORT"] or 5432), settings_dict["HOST"] or "127.0.0.1").start()
    original = dict(settings_dict)
    connection.close()
    settings_dict.update({"HOST": "127.0.0.1", "PORT": str(proxy.port)})
    yield proxy
    proxy.stop()
    connection.close()
    settings_dict.clear()
    settings_dict.update(original)


@pytest.mark.slow
def test_postgres_unreachable_fails_fast_writes_nothing_half_and_recovers(unreachable_postgres, no_redis):
    memory = ProductMemory()
    memory.save_product_data({"sku": "PG-1"}, CONTENT)
    unreachable_postgres.cut()
    caches["memory_l1"].clear()
    started = time.monotonic()
    with pytest.raises(OperationalError):
        memory.save_product_data({"sku": "PG-2"}, CONTENT)
    with pytest.raises(OperationalError):
        memory.get_product_data("PG-1")
    assert time.monotonic() - started < 10  # connect_timeout bounds it; no hang
    unreachable_postgres.restore()
    # no restart needed: the next call reconnects
    assert memory.get_product_data("PG-1") is not None
    assert not ProductMemoryEntry.objects.filter(product_id="PG-2").exists()
    assert caches["memory_l1"].get(cache_key(("PG-2", "main_content"))) is None


@pytest.mark.slow
@pytest.mark.django_db
def test_hanging_provider_times_out_releases_the_lock_and_saves_nothing(redis_client):
    import socket

    hang = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = hang.getsockname()[1]
    try:
        provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="", model="m",
                                  timeout=0.3, max_attempts=2)
        outcome = generate_product({"sku": "HANG-1", "title": "Travado"}, provider=provider)
    finally:
        hang.close()
    assert outcome.status == "failed" and "tempo esgotado" in outcome.error
    assert not ProductMemoryEntry.objects.exists()
    with product_lock("HANG-1", "main_content", timeout=0.2, wait=1) as acquired:
        assert acquired  # the failed generation let go of the product
