"""The generation lock: the process fallback (mutual exclusion, a table that does not grow), and the
Redis lock, renewed while it is held and freed by its TTL when its holder is gone."""
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.test import override_settings

from memory.engine import locks, runtime
from memory.engine.locks import ProcessLocks, process_locks, product_lock
from memory.infra import redis

from tests.helpers import l2_caches, stop_process, wait_for
from tests.servers import TcpProxy


def test_the_process_lock_table_stays_bounded_after_many_products():
    table = ProcessLocks()
    for i in range(5000):
        with table.hold(f"lock:generate:main_content:{i}", timeout=1) as acquired:
            assert acquired
            assert len(table) == 1
    assert len(table) == 0


def test_a_process_lock_excludes_a_second_holder_and_times_it_out():
    table = ProcessLocks()
    holding, release = threading.Event(), threading.Event()

    def holder():
        with table.hold("same", timeout=1):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    started = time.monotonic()
    with table.hold("same", timeout=0.2) as acquired:
        assert acquired is False
        assert time.monotonic() - started >= 0.2
    assert len(table) == 1  # the holder's entry stays while it holds it
    release.set()
    thread.join(10)
    assert len(table) == 0


def test_waiters_queued_on_one_product_get_it_in_turn_and_leave_no_entry():
    table = ProcessLocks()
    inside, overlaps, done = [0], [], []
    guard = threading.Lock()

    def generate(n):
        with table.hold("hot", timeout=10) as acquired:
            assert acquired
            with guard:
                inside[0] += 1
                overlaps.append(inside[0])
            time.sleep(0.005)
            with guard:
                inside[0] -= 1
        done.append(n)

    threads = [threading.Thread(target=generate, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(done) == list(range(20))
    assert max(overlaps) == 1
    assert len(table) == 0


def test_product_lock_without_redis_on_sqlite_uses_the_bounded_table(no_redis, monkeypatch):
    monkeypatch.setattr(locks, "connection", SimpleNamespace(vendor="sqlite"))
    for i in range(200):
        with product_lock(f"SKU-{i}", "main_content", timeout=1) as acquired:
            assert acquired
            assert len(process_locks) == 1
    assert len(process_locks) == 0


@pytest.mark.django_db
def test_product_lock_falls_back_when_redis_is_down_and_reports_one_outage(flaky_redis, caplog):
    flaky_redis.connected = False
    with caplog.at_level("WARNING", logger="memory"):
        for _ in range(3):
            with product_lock("SKU-DOWN", "main_content", timeout=1) as acquired:
                assert acquired  # an advisory lock in PostgreSQL
    assert sum("Redis indisponível" in r.getMessage() for r in caplog.records) == 1


# --- the Redis lock: renewed while held, freed by its TTL when its holder is gone -------------------

PEER = Path(__file__).resolve().parents[1] / "peers" / "generation_peer.py"


def lock_key(product_id: str) -> str:
    return redis.make_key(locks._lock_name(product_id, "main_content"))


def taken_elsewhere(product_id: str, wait: float) -> bool:
    """Could another thread not get the product's lock within ``wait`` seconds?"""
    got = []
    thread = threading.Thread(target=lambda: got.append(_try_lock(product_id, wait)))
    thread.start()
    thread.join(wait + 10)
    return got == [False]


def _try_lock(product_id: str, wait: float) -> bool:
    with product_lock(product_id, "main_content", timeout=5, wait=wait) as acquired:
        return acquired


def test_a_held_redis_lock_is_renewed_past_its_timeout_and_goes_at_release(redis_client):
    with product_lock("REN-1", "main_content", timeout=0.6) as acquired:
        assert acquired and len(locks.lock_renewer) == 1
        started = time.monotonic()
        while time.monotonic() - started < 2.0:  # over three TTLs
            assert redis_client.pttl(lock_key("REN-1")) > 0
            time.sleep(0.05)
        assert taken_elsewhere("REN-1", wait=0.3)
    assert not redis_client.exists(lock_key("REN-1"))
    assert len(locks.lock_renewer) == 0
    assert _try_lock("REN-1", wait=0)


def test_a_waiter_waits_for_the_holders_whole_generation_not_for_the_timeout(redis_client):
    holding, release = threading.Event(), threading.Event()

    def holder():
        with product_lock("REN-2", "main_content", timeout=0.5):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    waited = []

    def waiter():
        started = time.monotonic()
        with product_lock("REN-2", "main_content", timeout=0.5) as acquired:  # no wait bound: the default
            waited.append((acquired, time.monotonic() - started))

    second = threading.Thread(target=waiter)
    second.start()
    time.sleep(1.5)  # three of the holder's TTLs
    assert waited == []
    release.set()
    thread.join(10)
    second.join(10)
    assert waited and waited[0][0] is True and waited[0][1] >= 1.5


@pytest.fixture
def redis_through_proxy(redis_client):
    """The memory's Redis (the test's own database) behind a TCP proxy the test can cut."""
    kwargs = redis_client.connection_pool.connection_kwargs
    proxy = TcpProxy(kwargs.get("port", 6379), kwargs.get("host", "127.0.0.1")).start()
    with override_settings(CACHES=l2_caches({}, f"redis://127.0.0.1:{proxy.port}/{kwargs.get('db', 0)}"),
                           MEMORY_REDIS_RETRY_AFTER=0.0):
        runtime.reset_process_state()
        yield proxy
    runtime.reset_process_state()
    proxy.stop()


def test_a_renewal_redis_does_not_answer_is_logged_once_and_the_ttl_then_frees_the_product(
        redis_through_proxy, redis_client, caplog):
    def renewal_warnings():
        return sum("Não foi possível renovar a trava" in r.getMessage() for r in caplog.records)

    with caplog.at_level("WARNING", logger="memory"):
        with product_lock("REN-3", "main_content", timeout=0.6) as acquired:
            assert acquired
            redis_through_proxy.cut()
            assert wait_for(lambda: renewal_warnings() == 1, 5)
            assert wait_for(lambda: not redis_client.exists(lock_key("REN-3")), 5)  # the TTL ran out
            time.sleep(0.45)  # two more renewal turns, refused as well
            assert renewal_warnings() == 1
            redis_through_proxy.restore()
            assert _try_lock("REN-3", wait=2)  # the product is free again for another holder
    assert len(locks.lock_renewer) == 0


def test_a_lock_that_expired_under_its_holder_is_logged_and_no_longer_renewed(redis_client, caplog):
    with caplog.at_level("WARNING", logger="memory"):
        with product_lock("REN-4", "main_content", timeout=0.6):
            redis_client.set(lock_key("REN-4"), "someone-else", px=5000)  # as if it expired and was taken
            assert wait_for(lambda: len(locks.lock_renewer) == 0, 5)
            assert redis_client.get(lock_key("REN-4")) == b"someone-else"  # not renewed, not taken back
    assert sum("expirou durante a geração" in r.getMessage() for r in caplog.records) == 1
    assert redis_client.get(lock_key("REN-4")) == b"someone-else"  # the release left the other holder's key


def test_a_lock_taken_while_the_renewer_is_stopped_says_so_once(redis_client, caplog):
    runtime.stop_background_threads()
    with caplog.at_level("WARNING", logger="memory"):
        for i in range(3):
            with product_lock(f"REN-5-{i}", "main_content", timeout=5) as acquired:
                assert acquired
    assert sum("Renovação das travas de geração parada" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow
def test_a_crashed_holders_lock_is_freed_by_its_ttl_once_nothing_renews_it(redis_client, process_env):
    peer = subprocess.Popen([sys.executable, str(PEER), "hold", "REN-6", "1"], env=process_env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout.readline().strip() == "held"
        assert taken_elsewhere("REN-6", wait=2.5)  # the live holder renews its 1 s lock
        peer.kill()  # a crash: no release
        peer.wait(10)
        assert redis_client.exists(lock_key("REN-6"))
        started = time.monotonic()
        assert _try_lock("REN-6", wait=10)
        assert time.monotonic() - started < 1.5  # at most the TTL left
    finally:
        stop_process(peer)
