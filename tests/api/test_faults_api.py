"""Faults seen through the REST API: gunicorn (two workers) on a free port, with a Redis and a
route to PostgreSQL (or a whole PostgreSQL) of the test's own, which the tests kill, cut or
freeze and bring back."""
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.authtoken.models import Token

from memory.models import DailyStats, ProductMemoryEntry
from memory.engine.memory import ProductMemory

from tests.helpers import wait_for
from tests.servers import ApiServer, PostgresServer, RedisServer, TcpProxy

ROOT = Path(settings.BASE_DIR)
CONTENT = {"title": "Produto", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}


def server_env(process_env: dict, *, redis_url: str, database_url: str | None = None, **extra) -> dict:
    env = {k: v for k, v in process_env.items() if not k.startswith("PYTEST")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "beecatalog.settings",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": "",  # no worker: force-regenerate runs the task in the request
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "SECRET_KEY": "fault-test-secret",
        "MEMORY_REDIS_RETRY_AFTER": "0.2",
        "MEMORY_STATS_CACHE_SECONDS": "0",
        **extra,
    })
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def api_token() -> dict:
    user = User.objects.create_superuser("falhas", password="senha-forte-123")
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def start_api(transactional_db, process_env, tmp_path):
    """Starts gunicorn with the given environment; stops every server it started."""
    servers = []

    def start(**kwargs) -> ApiServer:
        server = ApiServer(server_env(process_env, **kwargs), tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


# --- PostgreSQL unreachable ------------------------------------------------------------------


@pytest.fixture
def pg_proxy():
    db = connection.settings_dict
    proxy = TcpProxy(int(db["PORT"] or 5432), db["HOST"] or "127.0.0.1").start()
    try:
        yield proxy
    finally:
        proxy.stop()


def database_url_through(proxy: TcpProxy) -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@127.0.0.1:{proxy.port}/{db['NAME']}"


def table_state():
    return sorted(ProductMemoryEntry.objects.values_list("product_id", "payload", "updated_at"))


@pytest.mark.django_db
@pytest.mark.parametrize("error", ["OperationalError", "InterfaceError"])
def test_a_database_error_inside_a_view_is_a_503_in_drf_shape(monkeypatch, error):
    import django.db
    from rest_framework.test import APIClient

    def fail(*args, **kwargs):
        raise getattr(django.db, error)("connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr("memory.api.views.ProductMemory.lookup", fail)
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("db", password="senha-forte-123"))
    response = client.post("/api/memory/get/", {"product_id": "ABC123"}, format="json")
    assert response.status_code == 503
    assert response.json() == {"detail": "Banco de dados (PostgreSQL) indisponível no momento; tente novamente em instantes."}


@pytest.mark.slow
def test_postgres_unreachable_api_answers_503_fast_changes_nothing_and_recovers(
    start_api, own_redis, pg_proxy
):
    auth = api_token()
    ProductMemory().save_product_data({"sku": "PG-1", "title": "Produto"}, CONTENT)
    # Without the token cache every request needs PostgreSQL; with it, a worker that already
    # knows the token serves cached entries (test_cached_token_serves_cached_entries_while_postgres_is_down).
    api = start_api(redis_url=own_redis.url, database_url=database_url_through(pg_proxy), API_TOKEN_CACHE_SECONDS="0")
    with httpx.Client(base_url=api.url, headers=auth, timeout=30) as client:
        assert client.post("/api/memory/get/", json={"product_id": "PG-1"}).status_code == 200
        before = table_state()

        pg_proxy.cut()
        requests = [
            ("post", "/api/memory/get/", {"product_id": "PG-1"}),
            ("post", "/api/memory/get/", {"product_id": "PG-UNKNOWN"}),
            ("post", "/api/memory/force-regenerate/", {"product_data": {"sku": "PG-2", "title": "Novo"}}),
            ("post", "/api/memory/delete/", {"product_id": "PG-1"}),
            ("post", "/api/memory/clear/", None),
            ("get", "/api/memory/list/", None),
            ("get", "/api/memory/stats/", None),
        ]
        for method, url, body in requests * 2:  # both workers, whichever answers
            started = time.monotonic()
            response = client.request(method, url, json=body)
            took = time.monotonic() - started
            assert response.status_code == 503, (url, response.status_code, response.text[:500], api.log())
            assert response.headers["content-type"] == "application/json"
            detail = response.json()["detail"]
            assert "PostgreSQL" in detail and "indisponível" in detail
            assert "Traceback" not in response.text
            assert took < 10, (url, took)  # DB_CONNECT_TIMEOUT bounds it; nothing hangs
            print(f"{method.upper()} {url}: 503 in {took * 1000:.0f} ms")

        health = client.get("/api/memory/health/")
        assert health.status_code == 503
        # The token cannot be checked without PostgreSQL: the caller gets what anyone gets.
        assert health.json() == {"status": "down"}

        pg_proxy.restore()
        # no restart: the next requests reconnect
        assert client.get("/api/memory/health/").json()["status"] == "ok"
        for _ in range(4):
            response = client.post("/api/memory/get/", json={"product_id": "PG-1"})
            assert response.status_code == 200 and response.json()["content"] == CONTENT
        assert table_state() == before  # nothing half-written while PostgreSQL was away
        assert not ProductMemoryEntry.objects.filter(product_id="PG-2").exists()
        created = client.post("/api/memory/force-regenerate/", json={"product_data": {"sku": "PG-2", "title": "Novo"}})
        assert created.status_code == 201  # no broker: generated and saved in the request
        assert ProductMemoryEntry.objects.filter(product_id="PG-2").exists()
    assert "Traceback" not in api.log()


# --- PostgreSQL hung ---------------------------------------------------------------------------

HUNG_SETUP = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
user = User.objects.create_superuser("congelado", password="senha-forte-123")
print(Token.objects.create(user=user).key)
"""

ENTRIES = "SELECT product_id, kind, payload::text, updated_at FROM memory_productmemoryentry ORDER BY 1, 2"


@pytest.fixture
def own_postgres(process_env):
    """A migrated PostgreSQL cluster of the test's own, with one superuser; yields (server, token)."""
    server = PostgresServer().start()
    try:
        env = server_env(process_env, redis_url="", database_url=server.url)
        for command in (["migrate", "--verbosity", "0"], ["shell", "-c", HUNG_SETUP]):
            done = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
        yield server, done.stdout.split()[-1]  # the shell may print a banner first
    finally:
        server.stop()


def app_connections(server: PostgresServer) -> int:
    """Sessions other than our own, i.e. the gunicorn workers' persistent connections."""
    with server.connect(autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()[0]


@pytest.mark.slow
def test_hung_postgres_every_request_answers_within_3_s_cache_serves_and_all_recovers(
    own_postgres, own_redis, process_env, tmp_path
):
    """PostgreSQL hangs (SIGSTOP on every one of its processes) with both gunicorn workers holding
    a warm connection: no request waits for it. Health says down, cached entries are served,
    the rest is a 503; all recovers once PostgreSQL resumes, without a restart."""
    server, token = own_postgres
    api = ApiServer(server_env(process_env, redis_url=own_redis.url, database_url=server.url,
                               API_TOKEN_CACHE_SECONDS="600"), tmp_path / "gunicorn.log")
    timings: dict[str, list[float]] = {}
    try:
        api.wait_ready()
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Token {token}"}, timeout=20) as client:
            for sku in ("HUNG-1", "HUNG-2"):
                saved = client.post("/api/memory/force-regenerate/", json={"product_data": {"sku": sku, "title": "Produto"}})
                assert saved.status_code == 201, saved.text
            # Every worker serves authenticated gets (its token cache, L1 and a persistent connection warm)
            def warm() -> bool:
                assert client.post("/api/memory/get/", json={"product_id": "HUNG-1"}).status_code == 200
                return app_connections(server) >= 2

            assert wait_for(warm, timeout=30, interval=0), "both workers should hold a connection"
            for _ in range(6):
                assert client.post("/api/memory/get/", json={"product_id": "HUNG-1"}).status_code == 200
            with server.connect() as conn:
                before = conn.execute(ENTRIES).fetchall()

            requests = [
                ("health", "get", "/api/memory/health/", None, 503),
                ("get cached", "post", "/api/memory/get/", {"product_id": "HUNG-1"}, 200),
                ("get uncached", "post", "/api/memory/get/", {"product_id": "HUNG-NOVO"}, 503),
                ("delete", "post", "/api/memory/delete/", {"product_id": "HUNG-2"}, 503),
                ("regenerate", "post", "/api/memory/force-regenerate/",
                 {"product_data": {"sku": "HUNG-3", "title": "Novo"}}, 503),
            ]
            server.freeze()
            try:
                for _ in range(3):  # both workers, whichever answers
                    for name, method, url, body, expected in requests:
                        started = time.monotonic()
                        try:
                            response = client.request(method, url, json=body)
                        except httpx.TimeoutException:
                            pytest.fail(f"{name}: no answer in 20 s while PostgreSQL hangs")
                        took = time.monotonic() - started
                        timings.setdefault(name, []).append(took)
                        assert response.status_code == expected, (name, response.status_code, response.text[:300])
                        assert response.headers["content-type"] == "application/json"
                        if name == "health":
                            assert response.json()["status"] == "down"
                            assert response.json()["checks"]["redis"]["ok"] is True
                        elif expected == 503:
                            assert response.json() == {
                                "detail": "Banco de dados (PostgreSQL) indisponível no momento; tente novamente em instantes."
                            }
                        else:
                            assert response.json()["tier"] in ("l1", "l2")
                        assert took < 4.0, (name, took)
            finally:
                server.thaw()
                thawed = time.monotonic()

            # no restart: the next requests reconnect
            assert wait_for(lambda: client.get("/api/memory/health/").json()["status"] == "ok", timeout=10, interval=0.05)
            recovered = time.monotonic() - thawed
            with server.connect() as conn:
                assert conn.execute(ENTRIES).fetchall() == before  # nothing written while it hung
            for _ in range(4):
                assert client.post("/api/memory/get/", json={"product_id": "HUNG-NOVO"}).status_code == 404
                assert client.post("/api/memory/get/", json={"product_id": "HUNG-2"}).status_code == 200
            assert client.post("/api/memory/delete/", json={"product_id": "HUNG-2"}).status_code == 200
            assert client.post("/api/memory/force-regenerate/",
                               json={"product_data": {"sku": "HUNG-3", "title": "Novo"}}).status_code == 201
    finally:
        log = api.log()
        api.stop()
    for name, took in timings.items():
        print(f"{name}: {' '.join(f'{t * 1000:.0f}' for t in took)} ms")
    print(f"health ok {recovered * 1000:.0f} ms after PostgreSQL resumed")
    assert "Traceback" not in log


# --- Redis killed under load -------------------------------------------------------------------


def invalidation_subscribers(client: redis.Redis) -> int:
    channels = client.pubsub_channels("*invalidate*")
    return sum(n for _, n in client.pubsub_numsub(*channels)) if channels else 0


# What each worker logs once when it finds Redis gone (memory.infra.redis.RedisGuard).
OUTAGE_WARNING = "Redis indisponível"
WRITES_DURING_OUTAGE = 20  # at least, each sent after the kill and acknowledged before the restart


@pytest.mark.slow
def test_redis_killed_under_api_reads_and_writes_fails_no_request_and_loses_no_write(start_api, own_redis):
    auth = api_token()
    api = start_api(redis_url=own_redis.url)
    direct = redis.Redis(host="127.0.0.1", port=own_redis.port, socket_timeout=2)
    statuses, acknowledged, failures = [], [], []
    writes = []  # (sku, sent at, answered at) of every acknowledged write, in time.monotonic()
    stop = threading.Event()

    def client_loop(n: int) -> None:
        with httpx.Client(base_url=api.url, headers=auth, timeout=30) as client:
            for i in range(300):  # bounded; stopped earlier by the test
                if stop.is_set():
                    return
                product = {"sku": f"RK{n}-{i}", "title": f"Produto {n}-{i}"}
                try:
                    sent = time.monotonic()
                    written = client.post("/api/memory/force-regenerate/", json={"product_data": product})
                    answered = time.monotonic()
                    read = client.post("/api/memory/get/", json={"product_id": product["sku"]})
                    listed = client.get("/api/memory/list/", params={"search": f"RK{n}-", "limit": 5})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    return
                statuses.extend((written.status_code, read.status_code, listed.status_code))
                if written.status_code == 201:
                    acknowledged.append(product["sku"])
                    writes.append((product["sku"], sent, answered))
                    if read.status_code != 200:
                        failures.append(f"{product['sku']}: escrita confirmada, leitura {read.status_code}")

    def sent_after(moment: float) -> list[str]:
        return [sku for sku, sent, _ in writes if sent > moment]

    def outage_warnings_since(offset: int) -> int:
        return api.output()[offset:].count(OUTAGE_WARNING)

    with httpx.Client(base_url=api.url, headers=auth, timeout=30) as client:
        # every worker that served a request listens to the invalidation channel
        for _ in range(6):
            client.post("/api/memory/get/", json={"product_id": "AQUECIMENTO"})
        assert wait_for(lambda: invalidation_subscribers(direct) >= 1)
        listeners_before = invalidation_subscribers(direct)

        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            assert wait_for(lambda: len(acknowledged) >= 10, timeout=30)
            before_kill = api.output()
            assert OUTAGE_WARNING not in before_kill  # no worker has seen an outage yet
            own_redis.kill()
            killed_at = time.monotonic()
            log_at_kill = len(before_kill)
            written_before_kill = list(acknowledged)
            during = len(statuses)
            # Requests go on without Redis: writes sent after the kill are acknowledged ...
            assert wait_for(lambda: len(statuses) >= during + 60, timeout=60)
            assert wait_for(lambda: len(sent_after(killed_at)) >= WRITES_DURING_OUTAGE, timeout=60)
            # ... every worker has noticed that Redis is gone ...
            assert wait_for(lambda: outage_warnings_since(log_at_kill) >= api.workers, timeout=30), api.log()
            # ... and health says so.
            degraded = client.get("/api/memory/health/")
            assert degraded.status_code == 200 and degraded.json()["status"] == "degraded"
            assert degraded.json()["checks"]["redis"]["ok"] is False
            outage_log = api.output()[log_at_kill:]
            restarted_at = time.monotonic()
            own_redis.start()
            after = len(statuses)
            assert wait_for(lambda: len(statuses) >= after + 30, timeout=30)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)

        during_outage = [sku for sku, sent, answered in writes if sent > killed_at and answered < restarted_at]
        print(f"{len(statuses)} requests, {len(acknowledged)} acknowledged writes "
              f"({len(during_outage)} while Redis was down), statuses {sorted(set(statuses))}")
        assert failures == []
        assert set(statuses) <= {200, 201}  # no 5xx, nothing refused
        # The outage happened during the writes: Redis died after some, and others were
        # sent after the kill and acknowledged before the restart ...
        assert written_before_kill and len(during_outage) >= WRITES_DURING_OUTAGE
        # ... and each worker warned of it once, however many requests it served meanwhile.
        assert outage_log.count(OUTAGE_WARNING) == api.workers, outage_log
        stored = set(ProductMemoryEntry.objects.filter(product_id__startswith="RK").values_list("product_id", flat=True))
        assert stored == set(acknowledged)  # every acknowledged write is in PostgreSQL, nothing else

        # Redis is back: health says so, pub/sub listeners resubscribe, L2 fills again on reads.
        assert wait_for(lambda: client.get("/api/memory/health/").json()["checks"]["redis"]["ok"] is True)
        assert wait_for(lambda: invalidation_subscribers(direct) >= listeners_before)
        direct.flushdb()
        # Entries written before the kill are in no worker's L1 (each emptied it on resubscribing).
        # A worker's first command may meet a pooled connection to the dead server and skip the
        # fill for MEMORY_REDIS_RETRY_AFTER (0.2 s): read up to ten, spaced past that.
        candidates, filled = written_before_kill[:10], []

        def a_read_fills_redis() -> bool:
            if not candidates:
                return False
            candidate = candidates.pop(0)
            assert client.post("/api/memory/get/", json={"product_id": candidate}).status_code == 200
            if any(candidate.encode() in key for key in direct.scan_iter("*entry*")):
                filled.append(candidate)
            return bool(filled)

        assert wait_for(a_read_fills_redis, timeout=10, interval=0.3), "no read filled Redis again"
        sku = filled[0]

        # ... and a delete on one worker evicts the copy the other worker holds in its L1
        for _ in range(8):
            assert client.post("/api/memory/get/", json={"product_id": sku}).status_code == 200
        assert client.post("/api/memory/delete/", json={"product_id": sku}).status_code == 200
        assert wait_for(lambda: all(
            client.post("/api/memory/get/", json={"product_id": sku}).status_code == 404 for _ in range(8)
        ), timeout=5)
    direct.close()
    assert "Traceback" not in api.output()


# --- hit counters under 8 processes ------------------------------------------------------------

HITTER = """
import sys
import django
django.setup()
from memory.engine.memory import ProductMemory
memory = ProductMemory()
rounds = int(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for i in range(rounds):
    for sku in ("CNT-A", "CNT-B", "CNT-C"):
        assert memory.get_product_data(sku) is not None
    assert memory.get_product_data("CNT-MISSING") is None
"""

TOKENS = {"CNT-A": (70, 30), "CNT-B": (200, 100), "CNT-C": (1, 0)}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_hit_counters_of_8_processes_add_up_exactly_after_flushes_during_the_hits(redis_client, process_env):
    from memory.engine.counters import flush_counters

    processes, rounds = 8, 50
    for sku, (prompt, completion) in TOKENS.items():
        ProductMemory().save_product_data({"sku": sku}, CONTENT, tokens_prompt=prompt, tokens_completion=completion)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", HITTER, str(rounds)], env=process_env, cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(processes)
    ]
    moved = []
    try:
        for w in workers:
            assert w.stdout.readline().strip() == "ready", w.stderr.read()
        started = time.monotonic()
        for w in workers:  # all start hitting together
            w.stdin.write("go\n")
            w.stdin.flush()

        def flushed_and_all_done() -> bool:
            moved.append(flush_counters())
            return all(w.poll() is not None for w in workers)

        # Flush while they hit, pausing between flushes to leave the CPU to the hitters.
        wait_for(flushed_and_all_done, timeout=120, interval=0.02)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
            _, err = w.communicate(timeout=30)
            assert w.returncode == 0, err
    hitting = time.monotonic() - started
    moved.append(flush_counters())

    hits_each = processes * rounds
    rows = {r.product_id: r for r in ProductMemoryEntry.objects.all()}
    for sku, (prompt, completion) in TOKENS.items():
        assert (rows[sku].hit_count, rows[sku].tokens_saved) == (hits_each, hits_each * (prompt + completion))
        assert rows[sku].last_hit_at is not None
    assert sum(moved) == 3 * hits_each
    today = DailyStats.objects.get()
    assert today.hits == 3 * hits_each
    assert today.misses == hits_each
    assert today.tokens_saved == hits_each * sum(p + c for p, c in TOKENS.values())
    print(f"{processes} processes, {3 * hits_each} hits, {len(moved)} flushes in {hitting:.1f} s: {[n for n in moved if n]}")


APPLIER = """
import sys
import django
django.setup()
from memory.engine.counters import Counts, apply_counts
counts = Counts()
for n in range(100):
    counts.hits[(f"ORD-{n}", "main_content")] = 1
    counts.saved[(f"ORD-{n}", "main_content")] = 10
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    apply_counts(counts)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_flushes_of_the_same_rows_never_deadlock(process_env):
    """Each process iterates its counts in another hash order (PYTHONHASHSEED): the rows must
    still be updated in one order, or PostgreSQL aborts one flush and its counts are lost."""
    processes, rounds = 6, 5
    ProductMemoryEntry.objects.bulk_create([
        ProductMemoryEntry(product_id=f"ORD-{n}", kind="main_content", payload=CONTENT, expires_at="2100-01-01T00:00Z")
        for n in range(100)
    ])
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", APPLIER, str(rounds)], env={**process_env, "PYTHONHASHSEED": str(seed)},
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for seed in range(1, processes + 1)
    ]
    try:
        for w in workers:
            assert w.stdout.readline().strip() == "ready", w.stderr.read()
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
    finally:
        errors = []
        for w in workers:
            try:
                _, err = w.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                w.kill()
                _, err = w.communicate()
            if w.returncode != 0:
                errors.append(err.strip().splitlines()[-1] if err.strip() else f"exit {w.returncode}")
    assert errors == []
    assert set(ProductMemoryEntry.objects.values_list("hit_count", "tokens_saved")) == {
        (processes * rounds, processes * rounds * 10)
    }
