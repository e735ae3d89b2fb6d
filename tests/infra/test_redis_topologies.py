"""The memory on Redis Sentinel and on a Redis Cluster, real servers the tests start on loopback
ports: the ProductMemory contract, single flight, L1 coherence and hit counts across processes,
and a master killed during writes (every write reaches PostgreSQL, no call fails, Redis serves
again after the failover)."""
import json
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis as redislib
from django.conf import settings
from django.core import checks
from django.core.cache import caches
from django.test import override_settings

from beecatalog import redis_cache
from beecatalog.environment import redis_mode_conflict
from memory.engine import runtime
from memory.engine import coherence
from memory.engine.coherence import wait_until_subscribed
from memory.engine.counters import flush_counters, hit_counter
from memory.engine.memory import ProductMemory
from memory.engine.tiers import L1, L2, L3, cache_key
from memory.infra import health, redis
from memory.models import ProductMemoryEntry
from memory.providers import limits
from memory.services.stats import memory_stats

from tests.helpers import generations_at_once, step_until_exited, stop_process, wait_for
from tests.providers.fake_openai import Reply
from tests.servers import RedisCluster, RedisServer, SentinelGroup

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CONTENT = {"title": "Tênis Leve", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}
MODES = [redis_cache.SENTINEL, redis_cache.CLUSTER]


def l2_settings(mode: str, servers, timeout: float = 2.0) -> dict:
    if mode == redis_cache.SENTINEL:
        l2 = redis_cache.memory_l2(mode, timeout=timeout, master=servers.master_name,
                                   sentinels=[("127.0.0.1", s.port) for s in servers.sentinels],
                                   sentinel_password=servers.sentinel_password)
    else:
        l2 = redis_cache.memory_l2(mode, timeout=timeout, cluster_nodes=[("127.0.0.1", n.port) for n in servers.nodes])
    return {**settings.CACHES, "memory_l2": l2}


def mode_env(process_env: dict, mode: str, servers) -> dict:
    """A child process's environment on ``servers`` (tests.settings: TEST_REDIS_URL empty)."""
    env = {**process_env, "TEST_REDIS_URL": "", "REDIS_URL": ""}
    if mode == redis_cache.SENTINEL:
        env.update(REDIS_SENTINELS=",".join(servers.addresses), REDIS_SENTINEL_MASTER=servers.master_name,
                   REDIS_SENTINEL_PASSWORD=servers.sentinel_password)
    else:
        env["REDIS_CLUSTER_NODES"] = ",".join(servers.addresses)
    return env


class Topology:
    def __init__(self, mode, servers, env):
        self.mode, self.servers, self.env = mode, servers, env


@pytest.fixture(scope="module")
def sentinel_servers():
    servers = SentinelGroup(master_name=f"bc{uuid.uuid4().hex[:8]}").start()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def cluster_servers():
    servers = RedisCluster(masters=3).start()
    yield servers
    servers.stop()


@contextmanager
def _use(mode, servers, timeout=2.0, **overrides):
    """The process's memory on ``servers``, its background threads (the L1 listener subscribes
    on them) started anew, and stopped before going back to the suite's Redis."""
    runtime.stop_background_threads()
    try:
        with override_settings(CACHES=l2_settings(mode, servers, timeout), **overrides):
            runtime.reset_process_state()
            caches["memory_l1"].clear()
            runtime.start_background_threads()
            assert wait_until_subscribed(10), "the L1 invalidation listener could not subscribe"
            try:
                yield
            finally:
                runtime.stop_background_threads()
                runtime.reset_process_state()
    finally:
        runtime.reset_process_state()
        runtime.start_background_threads()


@pytest.fixture(params=MODES)
def topology(request, process_env):
    mode = request.param
    servers = request.getfixturevalue(f"{mode}_servers")
    with _use(mode, servers):
        redis.client().flushdb()  # every master of a cluster
        yield Topology(mode, servers, mode_env(process_env, mode, servers))


def save(product_id, memory=None, **kwargs):
    return (memory or ProductMemory()).save_product_data({"sku": product_id}, CONTENT, **kwargs)


# --- the ProductMemory contract ------------------------------------------------------------------


def test_the_mode_is_the_one_configured_and_health_and_stats_name_the_nodes_reached(topology):
    assert redis.mode() == topology.mode
    found = health.check_health()["checks"]["redis"]
    assert found["ok"] and found["mode"] == topology.mode
    if topology.mode == redis_cache.CLUSTER:
        assert sorted(found["nodes"]) == sorted(topology.servers.addresses)
    else:
        assert found["nodes"][0] == f"127.0.0.1:{topology.servers.master_port()}"
        assert sorted(found["nodes"][1:]) == sorted(topology.servers.addresses)
    stats = memory_stats()["redis"]
    assert stats["available"] and stats["mode"] == topology.mode
    assert all(node["reached"] for node in stats["nodes"])


def test_save_and_each_tier_serves_it(topology):
    save("T-1")
    memory = ProductMemory()
    assert memory.get_product_data("T-1").tier == L1
    caches["memory_l1"].clear()
    assert memory.get_product_data("T-1").tier == L2
    redis.client().delete(redis.make_key(cache_key(("T-1", "main_content"))))
    caches["memory_l1"].clear()
    assert memory.get_product_data("T-1").tier == L3
    caches["memory_l1"].clear()
    assert memory.get_product_data("T-1").tier == L2  # the L3 read filled L2 through its claim
    assert memory.get_product_data("T-1").tier == L1


def test_a_batch_check_of_a_thousand_reads_them_from_redis_across_every_slot(topology):
    memory = ProductMemory()
    ids = [f"B-{i}" for i in range(1000)]
    for pid in ids[:600]:
        save(pid, memory)
    caches["memory_l1"].clear()
    for pid in ids[:300]:  # a third of the copies gone from Redis: filled from L3
        redis.client().delete(redis.make_key(cache_key((pid, "main_content"))))
    found = memory.lookup_many(ids, count_hits=False)
    tiers = [found[pid].hit.tier if found[pid].hit else None for pid in ids]
    assert tiers[:300] == [L3] * 300 and tiers[300:600] == [L2] * 300 and tiers[600:] == [None] * 400
    caches["memory_l1"].clear()
    again = memory.lookup_many(ids[:600], count_hits=False)
    assert {again[pid].hit.tier for pid in ids[:600]} == {L2}
    if topology.mode == redis_cache.CLUSTER:  # the copies are spread over every master
        owners = {redis.client().get_node_from_key(redis.make_key(cache_key((pid, "main_content")))).name
                  for pid in ids[:600]}
        assert len(owners) == 3


def test_delete_clear_and_expiry(topology):
    memory = ProductMemory()
    ids = [f"D-{i}" for i in range(30)]
    for pid in ids:
        save(pid, memory)
    foreign = [f"someone-elses-key-{i}" for i in range(10)]
    for name in foreign:
        redis.client().set(name, "kept")
    if topology.mode == redis_cache.CLUSTER:  # the entries and the other keys lie on every master
        for names in ([redis.make_key(cache_key((pid, "main_content"))) for pid in ids], foreign):
            assert len({redis.client().get_node_from_key(name).name for name in names}) == 3
    assert memory.delete_product("D-0")
    caches["memory_l1"].clear()
    assert memory.get_product_data("D-0") is None
    assert memory.clear() == 29
    assert not [k for k in redis.client().scan_iter(match=redis.make_pattern("entry:*"))]
    assert [redis.client().get(name) for name in foreign] == [b"kept"] * 10  # only the memory's keys go
    assert memory.get_product_data("D-1") is None
    save("E-1", memory, ttl=1)
    key = redis.make_key(cache_key(("E-1", "main_content")))
    assert 0 < redis.client().pttl(key) <= 1000
    assert wait_for(lambda: memory.get_product_data("E-1") is None, 5)
    assert redis.client().get(key) is None


def test_the_provider_rate_limit_and_breaker_share_their_keys_slot(topology):
    gate = limits.RateLimiter(rpm=600, tpm=100_000, max_wait=5, name=f"llm:rate:{uuid.uuid4().hex[:6]}")
    slots = [gate.reserve(100) for _ in range(5)]
    assert [slot.bucket is not None for slot in slots] == [True] * 5  # reserved in Redis, not in the process
    assert redis.client().get(gate._key("next")) is not None
    breaker = limits.CircuitBreaker(failures=2, cooldown=60, probe_timeout=5, name=f"llm:breaker:{uuid.uuid4().hex[:6]}")
    assert breaker._open(time.time() + 60, "teste", replace=False)
    assert breaker._opened()[1] == "teste"


# --- across processes ----------------------------------------------------------------------------


class L1Peer:
    def __init__(self, product_id, env):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "peers" / "l1_peer.py"), product_id],
                                     cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "tests.settings"},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self):
        stop_process(self.proc)


def test_a_save_evicts_another_processs_l1_copy_within_a_second(topology):
    save("COH-1")
    peer = L1Peer("COH-1", topology.env)
    try:
        assert wait_for(lambda: peer.ask("get").startswith("l1"), 10, interval=0)
        save("COH-1", ProductMemory())
        assert peer.ask("wait-evicted 1") == "evicted"
    finally:
        peer.close()


HITTER = """
import sys
import django
django.setup()
from memory.engine.memory import ProductMemory
memory = ProductMemory()
for _ in range(int(sys.argv[1])):
    assert memory.get_product_data("HIT-1") is not None
"""


def test_hits_from_four_processes_add_up_exactly(topology):
    save("HIT-1", tokens_prompt=70, tokens_completion=30)
    hits_each = 150
    workers = [subprocess.Popen([sys.executable, "-c", HITTER, str(hits_each)], env=topology.env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    moved = []
    step_until_exited(workers, lambda: moved.append(flush_counters()))
    moved.append(flush_counters())
    hit_counter.push()
    moved.append(flush_counters())
    row = ProductMemoryEntry.objects.get(product_id="HIT-1")
    assert (row.hit_count, row.tokens_saved) == (4 * hits_each, 4 * hits_each * 100)
    assert sum(moved) == 4 * hits_each




def test_two_processes_asking_at_once_make_one_call(topology, fake_openai):
    fake_openai.script(then=Reply(delay=1.0))
    env = {**topology.env, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake_openai.url, "OPENAI_API_KEY": "sk-test",
           "LLM_MODEL": "gpt-4o-mini", "LLM_MAX_ATTEMPTS": "1", "LLM_TIMEOUT": "20"}
    product = {"sku": f"SF-{topology.mode}", "title": "Tênis", "brand": "Marca"}
    outcomes = generations_at_once([product, product], env)
    assert fake_openai.calls == 1
    assert sorted(o["status"] for o in outcomes) == ["generated", "reused"]


# --- a master killed during writes ---------------------------------------------------------------


@pytest.fixture(params=MODES)
def failing_topology(request):
    """Servers of their own (the test kills a master): a Sentinel group, or 3 masters with a replica each."""
    mode = request.param
    servers = SentinelGroup(master_name=f"bc{uuid.uuid4().hex[:8]}") if mode == redis_cache.SENTINEL \
        else RedisCluster(masters=3, replicas=1)
    servers.start()
    try:
        with _use(mode, servers, timeout=0.3, MEMORY_REDIS_RETRY_AFTER=0.2, MEMORY_HIT_BUFFER_SECONDS=0.05):
            yield Topology(mode, servers, {})
    finally:
        servers.stop()


def _kill_a_master(topology) -> str:
    """Kill the Sentinel master, or the cluster master that owns the invalidation channel's slot
    (the L1 listener must follow it too); returns a saved product whose copy lay on it."""
    if topology.mode == redis_cache.SENTINEL:
        topology.servers.kill_master()
        return "W-0"
    cluster = redis.client()
    owner = cluster.get_node_from_key(coherence._channel())
    victim = next(f"W-{i}" for i in range(50)
                  if cluster.get_node_from_key(redis.make_key(cache_key((f"W-{i}", "main_content")))).name == owner.name)
    topology.servers.kill(owner.port)
    return victim


def test_a_master_killed_during_300_writes_loses_none_and_redis_serves_again_after_the_failover(failing_topology):
    memory = ProductMemory()
    errors = []
    for i in range(300):
        if i == 50:
            victim = _kill_a_master(failing_topology)
        try:
            save(f"W-{i}", memory)
            assert memory.get_product_data(f"W-{i}") is not None
        except Exception as exc:  # noqa: BLE001 (what the test counts: no call may fail)
            errors.append(f"W-{i}: {exc!r}")
    assert errors == []
    assert ProductMemoryEntry.objects.filter(product_id__startswith="W-").count() == 300

    def serves_again():
        caches["memory_l1"].clear()
        try:
            redis.ping()
        except ConnectionError:
            return False
        save(victim, memory)  # its copy lies on the promoted master
        caches["memory_l1"].clear()
        hit = memory.get_product_data(victim)
        return hit is not None and hit.tier == L2

    assert wait_for(serves_again, 60, interval=0.2), "Redis did not serve again after the failover"
    # L1 coherence resumed on the promoted master: what another process publishes there evicts here.
    assert wait_until_subscribed(10), "the L1 listener did not subscribe on the promoted master"
    save("W-5", memory)
    assert memory.get_product_data("W-5").tier == L1
    message = json.dumps({"origin": "another-process", "keys": [["W-5", "main_content"]]})
    assert wait_for(lambda: (redis.run(lambda: redis.publish(coherence._channel(), message)) or 0) >= 1
                    and caches["memory_l1"].get(cache_key(("W-5", "main_content"))) is None, 10, interval=0.1)
    # Hits are counted there again.
    before = ProductMemoryEntry.objects.get(product_id="W-1").hit_count
    flush_counters()
    memory.get_product_data("W-1")
    hit_counter.push()
    flush_counters()
    assert ProductMemoryEntry.objects.get(product_id="W-1").hit_count > before


# --- one mode at a time --------------------------------------------------------------------------


@pytest.mark.parametrize("url, sentinels, master, nodes, named", [
    ("", [("a", 1)], "m", [("b", 2)], "REDIS_SENTINELS e REDIS_CLUSTER_NODES"),
    ("redis://h:6379/0", [], "", [("b", 2)], "REDIS_CLUSTER_NODES e REDIS_URL"),
    ("", [("a", 1)], "", [], "REDIS_SENTINELS sem REDIS_SENTINEL_MASTER"),
    ("", [], "m", [], "REDIS_SENTINEL_MASTER sem REDIS_SENTINELS"),
])
def test_a_mix_of_modes_is_refused_with_one_line(settings, url, sentinels, master, nodes, named):
    settings.REDIS_URL, settings.REDIS_SENTINELS, settings.REDIS_SENTINEL_MASTER = url, sentinels, master
    settings.REDIS_CLUSTER_NODES = nodes
    found = [m for m in checks.run_checks(tags=[checks.Tags.caches]) if m.id == "memory.E020"]
    assert len(found) == 1 and named in found[0].msg and "\n" not in found[0].msg
    assert found[0].msg == redis_mode_conflict(url, sentinels, master, nodes)


@pytest.mark.parametrize("variables, named", [
    ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_CLUSTER_NODES": "127.0.0.1:7000"}, "REDIS_CLUSTER_NODES"),
    ({"REDIS_SENTINELS": "127.0.0.1"}, "host:porta"),
])
def test_the_settings_refuse_a_mix_or_a_bad_node_before_anything_runs(process_env, variables, named):
    env = {**process_env, "TEST_REDIS_URL": "", "REDIS_URL": "", "DJANGO_SETTINGS_MODULE": "beecatalog.settings",
           **variables}
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 4
    assert named in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_sentinels_that_ask_for_a_password_serve_the_memory_and_the_broker_with_it(process_env):
    servers = SentinelGroup(master_name=f"bc{uuid.uuid4().hex[:8]}", sentinel_password="senha-dos-sentinels").start()
    try:
        with _use(redis_cache.SENTINEL, servers):
            save("SP-1")
            caches["memory_l1"].clear()
            assert ProductMemory().get_product_data("SP-1").tier == L2
            found = memory_stats()["redis"]
            assert found["available"] and all(node["reached"] for node in found["nodes"])
        env = {**mode_env(process_env, redis_cache.SENTINEL, servers), "DJANGO_SETTINGS_MODULE": "beecatalog.settings"}
        code = ("import django, json; django.setup(); from django.conf import settings as s; "
                "print(json.dumps([s.CACHES['memory_l2']['OPTIONS']['SENTINEL_KWARGS'].get('password'), "
                "s.CELERY_BROKER_TRANSPORT_OPTIONS.get('sentinel_kwargs')]))")
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout) == ["senha-dos-sentinels", {"password": "senha-dos-sentinels"}]
        # The password is asked for: without it a sentinel answers nothing but NOAUTH.
        for sentinel in servers.sentinels:
            with pytest.raises(redislib.exceptions.AuthenticationError):
                redislib.Redis(host="127.0.0.1", port=sentinel.port, socket_timeout=2).ping()
    finally:
        servers.stop()


def test_a_subscription_whose_connection_came_back_never_resumes_silently():
    """redis-py's PubSub reconnects and resubscribes by itself on the next call; what was
    published meanwhile is lost, so the listener must hear of it (and empty its L1, subscribing
    anew) rather than carry on as if nothing was missed."""
    server = RedisServer().start()
    try:
        with override_settings(CACHES={**settings.CACHES, "memory_l2": redis_cache.memory_l2(
                redis_cache.SINGLE, timeout=0.5, url=server.url)}):
            subscription = redis.subscribe(redis.channel("probe"))
            assert subscription.get_message(timeout=0.1) is None
            server.kill()
            server.start()  # the same port: a reconnection succeeds
            failures = 0
            for _ in range(10):  # a caller that shrugs errors off, as PubSub's own retries do
                try:
                    subscription.get_message(timeout=0.05)
                except redis.REDIS_ERRORS:
                    failures += 1
            assert failures == 10
            subscription.close()
    finally:
        server.kill()
