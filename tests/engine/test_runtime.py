"""Where the memory's background threads start and stop, and what a forked child inherits."""
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis as redis_py
from django.conf import settings

from beecatalog import celery as celery_config
from memory.engine import runtime
from memory.engine.coherence import l1_is_trustworthy, listener, wait_until_subscribed
from memory.engine.counters import Counts, flush_counters, hit_counter
from memory.engine.locks import lock_renewer, product_lock
from memory.engine.memory import ProductMemory
from memory.models import ProductMemoryEntry

from tests.servers import GUNICORN, RedisServer, free_port

ROOT = Path(settings.BASE_DIR)
LISTENER, PUSHER, RENEWER = "memory-l1-invalidation", "memory-hit-counts", "memory-lock-renewal"
CONTENT = {"title": "Produto", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}


def alive(name: str) -> bool:
    return any(t.name == name and t.is_alive() for t in threading.enumerate())


def test_threads_start_at_start_background_threads_and_end_at_stop(redis_client):
    runtime.stop_background_threads()
    assert not alive(LISTENER) and not alive(PUSHER) and not alive(RENEWER)
    assert not listener.subscribed and not l1_is_trustworthy()
    runtime.start_background_threads()
    runtime.start_background_threads()  # a second call starts nothing more
    assert [t.name for t in threading.enumerate()].count(LISTENER) == 1
    assert [t.name for t in threading.enumerate()].count(PUSHER) == 1
    assert [t.name for t in threading.enumerate()].count(RENEWER) == 1
    assert wait_until_subscribed(10) and l1_is_trustworthy()
    runtime.stop_background_threads()
    assert not alive(LISTENER) and not alive(PUSHER) and not alive(RENEWER)
    assert not l1_is_trustworthy()


def test_without_redis_no_thread_starts(no_redis):
    runtime.stop_background_threads()
    runtime.start_background_threads()
    assert not alive(LISTENER) and not alive(PUSHER) and not alive(RENEWER)
    assert l1_is_trustworthy()  # a single instance: L1 is used as is


@pytest.mark.django_db
def test_reads_and_hits_start_no_thread(redis_client):
    memory = ProductMemory()
    memory.save_product_data({"sku": "RT-1"}, CONTENT, tokens_prompt=5)
    runtime.stop_background_threads()
    assert not l1_is_trustworthy()  # asking does not start the listener
    assert memory.get_product_data("RT-1").tier == "l2"  # L1 is not read while nobody listens
    assert memory.get_product_data("RT-1").tier == "l2"
    assert not alive(LISTENER) and not alive(PUSHER)
    assert flush_counters() == 2  # the hits were counted all the same
    assert ProductMemoryEntry.objects.get(product_id="RT-1").hit_count == 2


@pytest.mark.django_db
def test_with_the_pusher_stopped_hits_go_to_postgres_from_the_process(redis_client, settings):
    settings.MEMORY_LOCAL_COUNTER_FLUSH_INTERVAL = 0
    memory = ProductMemory()
    memory.save_product_data({"sku": "RT-2"}, CONTENT)
    hit_counter.stop_pusher()
    memory.get_product_data("RT-2")
    assert hit_counter.local.is_empty()  # written at once, not left buffered for a pusher that is gone
    assert ProductMemoryEntry.objects.get(product_id="RT-2").hit_count == 1


def test_stopping_the_pusher_hands_its_buffered_counts_to_redis(redis_client):
    hit_counter.record_hit("RT-3", "main_content", 4)
    hit_counter.stop_pusher()
    assert hit_counter.local.is_empty()
    assert hit_counter.redis_store().snapshot().hits[("RT-3", "main_content")] == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_has_no_threads_until_it_starts_its_own(redis_client):
    assert wait_until_subscribed(10)
    parent_origin = listener.origin
    hit_counter.stop_pusher()  # so that the counts below are still buffered at the fork
    misses = Counts()
    misses.daily[("2026-01-01", "misses")] = 3
    hit_counter.local.add(misses)
    read_end, write_end = os.pipe()
    held = product_lock("RT-FORK", "main_content", timeout=5)
    held.__enter__()  # a generation lock this process holds (and renews) across the fork
    assert len(lock_renewer) == 1
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's exit handlers
        try:
            os.close(read_end)
            report = {
                "subscribed": listener.subscribed,
                "trusts_l1": l1_is_trustworthy(),
                "threads": sorted(t.name for t in threading.enumerate() if t.name in (LISTENER, PUSHER, RENEWER)),
                "same_origin": listener.origin == parent_origin,
                "inherited_counts": not hit_counter.local.is_empty(),
                "inherited_locks": len(lock_renewer),
            }
            runtime.start_background_threads()
            report["subscribed_after_start"] = wait_until_subscribed(10)
            report["threads_after_start"] = sorted(
                t.name for t in threading.enumerate() if t.name in (LISTENER, PUSHER, RENEWER) and t.is_alive()
            )
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 30)
        assert ready, "the forked child did not report"
        report = json.loads(os.read(read_end, 65536))
    finally:
        os.close(read_end)
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        held.__exit__(None, None, None)
    assert report == {
        "subscribed": False,
        "trusts_l1": False,
        "threads": [],
        "same_origin": False,
        "inherited_counts": False,
        "inherited_locks": 0,
        "subscribed_after_start": True,
        "threads_after_start": [PUSHER, LISTENER, RENEWER],
    }
    assert listener.subscribed  # the parent kept its listener, and its counts
    assert hit_counter.pending().daily[("2026-01-01", "misses")] == 3


def test_celery_hooks_stop_the_prefork_parents_threads_and_start_the_childrens(redis_client):
    celery_config._stop_memory_threads_before_the_pool_forks(sender=SimpleNamespace(pool_cls="solo"))
    assert alive(LISTENER) and alive(PUSHER)  # the solo pool runs tasks in this very process
    celery_config._stop_memory_threads_before_the_pool_forks(sender=SimpleNamespace(pool_cls="prefork"))
    assert not alive(LISTENER) and not alive(PUSHER)
    celery_config._start_memory_threads_in_the_pool_process()
    assert alive(LISTENER) and alive(PUSHER)


# --- real servers: each worker process hears invalidations, the process that forks them does not ---


def invalidation_subscribers(client: redis_py.Redis) -> int:
    channels = client.pubsub_channels("*invalidate*")
    return sum(n for _, n in client.pubsub_numsub(*channels)) if channels else 0


def settles_at(client: redis_py.Redis, expected: int, timeout: float = 60) -> bool:
    """The subscriber count reaches ``expected`` and is still there a second later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if invalidation_subscribers(client) == expected:
            time.sleep(1.0)
            if invalidation_subscribers(client) == expected:
                return True
        time.sleep(0.1)
    return False


@pytest.fixture
def child_env(process_env):
    server = RedisServer().start()
    env = {k: v for k, v in process_env.items() if not k.startswith("PYTEST")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "beecatalog.settings",
        "REDIS_URL": server.url,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{server.port}/1",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{server.port}/1",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "SECRET_KEY": "runtime-test-secret",
    })
    try:
        yield env, redis_py.Redis.from_url(server.url)
    finally:
        server.kill()


def run_until_settled(command: list[str], env: dict, client: redis_py.Redis, expected: int, log: Path) -> None:
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            settled = settles_at(client, expected)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    assert settled, f"{invalidation_subscribers(client)} subscribers, not {expected}:\n" + log.read_text()[-3000:]


@pytest.mark.slow
def test_gunicorn_preload_each_worker_subscribes_and_the_master_does_not(child_env, tmp_path):
    env, client = child_env
    run_until_settled(
        [*GUNICORN, "beecatalog.wsgi", "--preload", "--workers", "2", "--bind", f"127.0.0.1:{free_port()}"],
        env, client, 2, tmp_path / "gunicorn.log",
    )


@pytest.mark.slow
def test_celery_prefork_each_pool_process_subscribes_and_the_parent_does_not(child_env, tmp_path):
    env, client = child_env
    run_until_settled(
        [sys.executable, "-m", "celery", "-A", "beecatalog", "worker", "--pool", "prefork", "--concurrency", "2",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env, client, 2, tmp_path / "celery.log",
    )
