"""The generation lock's process fallback: mutual exclusion, and a table that does not grow."""
import threading
import time
from types import SimpleNamespace

import pytest

from memory.engine import locks
from memory.engine.locks import ProcessLocks, process_locks, product_lock


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
