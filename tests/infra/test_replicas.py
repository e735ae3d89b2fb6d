"""Read replicas on real servers the tests start (tests/servers.py): a primary and a streaming
replica (``pg_basebackup -R``), its replay paused or delayed (``recovery_min_apply_delay``) to
stand for lag. Each scenario runs in a child process on ``beecatalog.settings`` with
``DATABASE_REPLICA_URLS`` set, no Redis and no L1 (every read is an L3 read), or in gunicorn.

Which server answered a read is told by data, not by our own bookkeeping: with the replica's
replay paused, a row written to the primary exists there alone, so a read that finds it went to
the primary and a read that misses it went to the replica."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from memory.engine.locks import exclusive_lock, product_lock
from memory.infra import replicas
from tests.helpers import wait_for
from tests.servers import ApiServer, PostgresServer, TcpProxy

ROOT = Path(settings.BASE_DIR)
CONTENT = {"title": "Produto", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}
NEWER = {"title": "Produto novo", "description": "d2", "bullet_points": ["a"], "seo_keywords": ["b"]}
ENTRIES = "SELECT product_id, kind, payload::text, version FROM memory_productmemoryentry ORDER BY 1, 2"
WARNING = "Réplica de leitura replica_1 indisponível"
DB_DOWN = "Banco de dados (PostgreSQL) indisponível no momento; tente novamente em instantes."



def child_env(primary_url: str, replica_urls: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "TEST_")) and k not in ("DJANGO_SETTINGS_MODULE",)}
    env.update({
        "DJANGO_SETTINGS_MODULE": "beecatalog.settings",
        "PYTHONPATH": str(ROOT),
        "DOTENV_PATH": "",
        "SECRET_KEY": "replica-test-secret",
        "DATABASE_URL": primary_url,
        "DATABASE_REPLICA_URLS": replica_urls,
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "LLM_PROVIDER": "template",
        "MEMORY_STATS_CACHE_SECONDS": "0",
        "MEMORY_LOG_LEVEL": "INFO",
        "MEMORY_REPLICA_RETRY_SECONDS": "0.3",
        "MEMORY_L1_TTL": "0",  # no L1 copies: every read below is an L3 read
        **extra,
    })
    return env


def run_script(code: str, env: dict, before_setup: str = "") -> tuple[dict, str]:
    """``code`` in a child process after ``before_setup`` and ``django.setup()``; it prints one JSON
    object last."""
    prelude = f"import json, os, sys, time\n{before_setup}\nimport django\ndjango.setup()\n"
    done = subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def cluster():
    """A migrated primary and its streaming replica, caught up; stopped whatever happens."""
    primary = PostgresServer()
    replica = PostgresServer()
    try:
        primary.start()
        migrated = subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                                  env=child_env(primary.url, ""), capture_output=True, text=True, timeout=300)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        replica.start(replica_of=primary)
        replica.wait_caught_up()
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture
def clean(cluster):
    """Both servers empty of entries and replaying at once, before and after the test."""
    primary, replica = cluster

    def empty():
        replica.set_apply_delay("0")
        if replica._replay_state() != "not paused":
            replica.resume_replay()
        with primary.connect(autocommit=True) as conn:
            conn.execute("DELETE FROM memory_productmemoryentry")
        replica.wait_caught_up()

    empty()
    yield primary, replica
    empty()


def primary_rows(primary: PostgresServer) -> list[tuple]:
    with primary.connect(autocommit=True) as conn:
        return conn.execute(ENTRIES).fetchall()


SAVE_THEN_GET = """
from memory.infra import replicas
from memory.product_memory import ProductMemory
memory = ProductMemory()
before = memory.get_product_data({product!r})
saved_at = time.monotonic()
memory.save_product_data({{"sku": {product!r}, "title": "Produto"}}, {content!r})
after = memory.get_product_data({product!r})
elapsed = time.monotonic() - saved_at
from django.db import connections
on_replica = connections["replica_1"].cursor()
on_replica.execute("SELECT payload::text FROM memory_productmemoryentry WHERE product_id = %s", [{product!r}])
replica_row = on_replica.fetchone()
print(json.dumps({{"before": before and before.content, "after": after and after.content, "tier": after and after.tier,
                  "elapsed": elapsed, "replica_has_it": replica_row is not None and json.loads(replica_row[0])}}))
"""

READ_ONLY = """
from memory.product_memory import ProductMemory
memory = ProductMemory()
hit = memory.get_product_data({product!r})
listed = memory.list_products(search={product!r})
stats = memory.stats()
from memory.io.export import iter_export
exported = [json.loads(line)["product_id"] for line in "".join(iter_export("jsonl")).splitlines() if line.strip()]
print(json.dumps({{"content": hit and hit.content, "listed": [row["product_id"] for row in listed["results"]],
                  "entries": stats["total_entries"], "exported": exported}}))
"""


@pytest.mark.slow
def test_reads_go_to_the_replica_and_a_read_after_a_write_to_the_primary(clean):
    """Replay paused: what the primary holds alone is seen by the process that wrote it (read-your-
    writes), missed by a process that only reads (its reads are the replica's), and seen by every
    process once the replica has replayed it."""
    primary, replica = clean
    env = child_env(primary.url, replica.url)
    replica.pause_replay()
    wrote, _ = run_script(SAVE_THEN_GET.format(product="RYW-1", content=CONTENT), env)
    assert wrote["before"] is None
    assert wrote["after"] == CONTENT and wrote["tier"] == "l3"
    assert wrote["replica_has_it"] is False  # replay paused: the primary answered the get
    assert [row[0] for row in primary_rows(primary)] == ["RYW-1"]

    reader, _ = run_script(READ_ONLY.format(product="RYW-1"), env)
    # the replica's view: nothing yet (the export through its server-side cursor on the replica too)
    assert reader == {"content": None, "listed": [], "entries": 0, "exported": []}

    replica.resume_replay()
    replica.wait_caught_up()
    reader, _ = run_script(READ_ONLY.format(product="RYW-1"), env)
    assert reader == {"content": CONTENT, "listed": ["RYW-1"], "entries": 1, "exported": ["RYW-1"]}


@pytest.mark.slow
def test_read_your_writes_despite_a_two_second_apply_delay(clean):
    """The replica applies each commit 2 s after it: a get right after a save still returns the new
    content, overwriting an older one the replica holds."""
    primary, replica = clean
    env = child_env(primary.url, replica.url)
    run_script(SAVE_THEN_GET.format(product="LAG-1", content=CONTENT), env)
    replica.wait_caught_up()
    replica.set_apply_delay("2s")
    wrote, _ = run_script(SAVE_THEN_GET.format(product="LAG-1", content=NEWER), env)
    assert wrote["before"] == CONTENT  # read from the replica before the write
    assert wrote["after"] == NEWER
    if wrote["elapsed"] < 1.5:  # the replica still held the old content when the get ran
        assert wrote["replica_has_it"] == CONTENT
    replica.wait_caught_up(timeout=30)
    reader, _ = run_script(READ_ONLY.format(product="LAG-1"), env)
    assert reader["content"] == NEWER


# The replica behind a proxy of the child's own, which it cuts and restores.
BEHIND_A_PROXY = """
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    proxy_port = s.getsockname()[1]
os.environ["DATABASE_REPLICA_URLS"] = f"postgres://postgres@127.0.0.1:{proxy_port}/postgres"
"""

REPLICA_OUTAGE = """
from tests.servers import TcpProxy
proxy = TcpProxy(int(os.environ["REPLICA_PORT"]))
proxy.port = proxy_port
proxy.start()
from memory.infra import replicas
from memory.product_memory import ProductMemory
memory = ProductMemory()
served, listed = [], []
def read():
    hit = memory.get_product_data("DOWN-1")
    served.append(hit and hit.content)
    listed.append(memory.list_products(search="DOWN-")["count"])
read()
first = replicas.read_alias()
proxy.cut()
for _ in range(5):
    read()
during = replicas.read_alias()
proxy.restore()
deadline = time.monotonic() + 10
while replicas.read_alias() != "replica_1" and time.monotonic() < deadline:
    time.sleep(0.05)
read()
back = replicas.read_alias()
proxy.stop()
print(json.dumps({"served": served, "listed": listed, "first": first, "during": during, "back": back}))
"""


@pytest.mark.slow
def test_an_unreachable_replica_is_skipped_with_one_warning_and_used_again_when_it_answers(clean):
    primary, replica = clean
    run_script(SAVE_THEN_GET.format(product="DOWN-1", content=CONTENT), child_env(primary.url, replica.url))
    replica.wait_caught_up()
    out, log = run_script(REPLICA_OUTAGE, child_env(primary.url, "", REPLICA_PORT=str(replica.port)),
                          before_setup=BEHIND_A_PROXY)
    assert out["served"] == [CONTENT] * 7 and out["listed"] == [1] * 7
    assert (out["first"], out["during"], out["back"]) == ("replica_1", "default", "replica_1")
    assert log.count(WARNING) == 1, log[-3000:]
    assert "Réplica de leitura replica_1 respondendo de novo" in log
    assert "Traceback" not in log


# --- the primary down, the replica up: the API ----------------------------------------------------

SETUP_USER = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
user = User.objects.create_superuser("replicas", password="senha-forte-123")
print(json.dumps(Token.objects.create(user=user).key))
"""


@pytest.mark.slow
def test_primary_down_reads_served_by_the_replica_writes_503_and_recovery_without_restart(clean, tmp_path):
    """The primary unreachable (a proxy cut in front of it), the replica up: an existing entry is still
    served (from the replica: no Redis, no L1), a write answers a JSON 503 fast and writes nothing;
    once the primary answers again the same workers write, and read their write back."""
    primary, replica = clean
    with primary.connect(autocommit=True) as conn:
        conn.execute("DELETE FROM authtoken_token")
        conn.execute("DELETE FROM auth_user")
    proxy = TcpProxy(primary.port).start()
    primary_url = f"postgres://postgres@127.0.0.1:{proxy.port}/postgres"
    token, _ = run_script(SETUP_USER, child_env(primary_url, replica.url))
    env = child_env(primary_url, replica.url, API_TOKEN_CACHE_SECONDS="600")
    api = ApiServer(env, tmp_path / "gunicorn.log", workers=1)
    try:
        api.wait_ready()
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Token {token}"}, timeout=20) as client:
            saved = client.post("/api/memory/force-regenerate/", json={"product_data": {"sku": "PD-1", "title": "Produto"}})
            assert saved.status_code == 201, saved.text
            replica.wait_caught_up()
            first = client.post("/api/memory/get/", json={"product_id": "PD-1"})
            assert first.status_code == 200, first.text
            before = primary_rows(primary)

            proxy.cut()
            for _ in range(3):
                got = client.post("/api/memory/get/", json={"product_id": "PD-1"})
                assert got.status_code == 200, got.text
                assert got.json()["tier"] == "l3" and got.json()["content"] == first.json()["content"]
                assert client.post("/api/memory/get/", json={"product_id": "PD-NONE"}).status_code == 404
                listed = client.get("/api/memory/list/", params={"search": "PD-"})
                assert listed.status_code == 200 and listed.json()["count"] == 1
                for url, body in (("/api/memory/force-regenerate/", {"product_data": {"sku": "PD-2", "title": "Novo"}}),
                                  ("/api/memory/delete/", {"product_id": "PD-1"})):
                    started = time.monotonic()
                    write = client.post(url, json=body)
                    assert write.status_code == 503, (url, write.status_code, write.text[:300])
                    assert write.headers["content-type"] == "application/json"
                    assert write.json() == {"detail": DB_DOWN}
                    assert time.monotonic() - started < 4.0
            proxy.restore()
            assert primary_rows(primary) == before  # nothing half-written

            def writes_again() -> bool:
                return client.post("/api/memory/force-regenerate/",
                                   json={"product_data": {"sku": "PD-2", "title": "Novo"}}).status_code == 201

            assert wait_for(writes_again, timeout=15, interval=0.2)
            # the next request is a scope of its own: it reads the replica once that replayed the write
            replica.wait_caught_up()
            assert client.post("/api/memory/get/", json={"product_id": "PD-2"}).status_code == 200
        assert [row[0] for row in primary_rows(primary)] == ["PD-1", "PD-2"]
    finally:
        log = api.output()
        api.stop()
        proxy.stop()
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_primary_down_a_command_that_writes_fails_with_one_line_and_writes_nothing(clean):
    primary, replica = clean
    run_script(SAVE_THEN_GET.format(product="CMD-1", content=CONTENT), child_env(primary.url, replica.url))
    replica.wait_caught_up()
    before = primary_rows(primary)
    proxy = TcpProxy(primary.port).start()
    try:
        proxy.cut()
        env = child_env(f"postgres://postgres@127.0.0.1:{proxy.port}/postgres", replica.url)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "manage.py", "manage_memory", "delete", "--product-id", "CMD-1",
                               "--confirm"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
    finally:
        proxy.stop()
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Banco de dados indisponível" in done.stderr
    assert took < 30
    assert primary_rows(primary) == before


# --- in process: what counts as a write ----------------------------------------------------------

@pytest.mark.parametrize("sql, reads", [
    ("SELECT 1", True),
    ("  select * from t", True),
    ("SELECT * FROM t FOR UPDATE", False),
    ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", False),
    ("EXPLAIN (FORMAT JSON) SELECT 1", True),
    ("EXPLAIN ANALYZE DELETE FROM t", False),
    ("WITH saved AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM saved", False),
    ("INSERT INTO t VALUES (1)", False),
    ("UPDATE t SET x = 1", False),
    ("SAVEPOINT s1", False),
    ("COPY t FROM STDIN", False),
])
def test_which_statements_mark_the_scope(sql, reads):
    assert replicas.reads_only(sql) is reads


def test_a_scope_marked_by_a_write_is_forgotten_when_it_ends():
    with replicas.scope():
        assert not replicas.wrote()
        replicas.note_write()
        assert replicas.wrote()
        with replicas.scope():  # a nested scope (a task run by a worker) starts clean
            assert not replicas.wrote()
        assert replicas.wrote()
    with replicas.scope():
        assert not replicas.wrote()


@pytest.mark.django_db
@pytest.mark.parametrize("lock", ["product", "exclusive"])
def test_past_a_single_flight_lock_the_scope_reads_the_primary(lock):
    """Whoever held the lock may have just saved the entry the caller looks up again under it."""

    held = product_lock("LOCK-1", "main_content", wait=5) if lock == "product" else exclusive_lock("replicas-test")
    with replicas.scope():
        with held as acquired:
            assert acquired and replicas.wrote()
    with replicas.scope():
        assert not replicas.wrote()


def test_each_task_a_worker_runs_is_a_scope_of_its_own_and_an_eager_one_stays_in_its_callers():
    """A worker's task that wrote reads the primary until it ends; the next task starts clean. An
    eager task (run inside a request or a command) shares its caller's scope."""
    from celery import signals

    from memory.tasks import generate_main_content_task as task

    seen = []
    with replicas.scope():
        for task_id, eager in (("worker-1", False), ("worker-2", False), ("eager-1", True)):
            task.push_request(id=task_id, is_eager=eager)
            try:
                signals.task_prerun.send(sender=task, task_id=task_id, task=task)
                seen.append(replicas.wrote())
                replicas.note_write()
                signals.task_postrun.send(sender=task, task_id=task_id, task=task)
            finally:
                task.pop_request()
            seen.append(replicas.wrote())
    # each worker task starts clean and leaves its caller's scope clean; the eager one marks it
    assert seen == [False, False, False, False, False, True]


TWO_REPLICAS = """
from memory.infra import replicas
from memory.product_memory import ProductMemory
memory = ProductMemory()
served = []
for _ in range(6):
    with replicas.scope():
        hit = memory.get_product_data("ONLY-ON-A", count_hit=False)
        served.append(replicas.read_alias() + ":" + ("found" if hit else "missing"))
print(json.dumps(served))
"""


@pytest.mark.slow
def test_two_replicas_take_turns_by_scope_and_one_down_leaves_the_other(cluster):
    """``DATABASE_REPLICA_URLS=a,b``: each scope reads one replica, scopes take turns; with ``b``
    stopped every read goes to ``a``, with one warning, none to the primary. Which replica answered
    is told by a row only ``a`` has (``b``'s replay paused before it was written)."""
    primary, replica_a = cluster
    replica_b = PostgresServer()
    try:
        replica_b.start(replica_of=primary)
        replica_b.wait_caught_up()
        replica_b.pause_replay()
        run_script(SAVE_THEN_GET.format(product="ONLY-ON-A", content=CONTENT), child_env(primary.url, replica_a.url))
        replica_a.wait_caught_up()
        urls = f"{replica_a.url},{replica_b.url}"
        served, _ = run_script(TWO_REPLICAS, child_env(primary.url, urls))
        assert served.count("replica_1:found") == served.count("replica_2:missing") == 3, served
        replica_b.stop()
        served, log = run_script(TWO_REPLICAS, child_env(primary.url, urls))
        assert served == ["replica_1:found"] * 6
        assert log.count("Réplica de leitura replica_2 indisponível") == 1, log[-3000:]
        assert "Traceback" not in log
    finally:
        replica_b.stop()
        with primary.connect(autocommit=True) as conn:
            conn.execute("DELETE FROM memory_productmemoryentry")
        replica_a.wait_caught_up()
