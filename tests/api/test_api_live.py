"""The README's curl examples, run as written against gunicorn with two workers, and the README's
path from an empty database to the API with a Celery worker."""
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from memory.engine.memory import ProductMemory
from memory.models import ProductMemoryEntry

from tests.helpers import seed, stop_process, wait_for
from tests.servers import ApiServer

ROOT = Path(settings.BASE_DIR)
README = ROOT / "README.md"


def readme_section(title: str) -> str:
    return README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def readme_curl_examples() -> list[str]:
    """The ```bash blocks of the README's "API" section that call curl, in the README's order."""
    blocks = re.findall(r"```bash\n(.*?)```", readme_section("API"), re.DOTALL)
    return [b for b in blocks if b.lstrip().startswith("curl ")]


def endpoint_of(block: str) -> str:
    return re.search(r"/api/memory/([\w-]+)/", block).group(1)


README_ORDER = ["health", "force-regenerate", "get", "force-regenerate", "stats", "list", "export",
                "edit", "versions", "approve", "restore", "delete", "clear"]


def child_env(**extra) -> dict:
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="") + (":" + quote(db["PASSWORD"], safe="") if db["PASSWORD"] else "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "beecatalog.settings",
        "DATABASE_URL": f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.CACHES["memory_l2"]["LOCATION"] if "memory_l2" in settings.CACHES else "",
        "CELERY_BROKER_URL": "",  # no worker here: tasks run in the request, as in the embedded default
        "SECRET_KEY": "live-test-secret",
        "MEMORY_LOG_LEVEL": "WARNING",
        "MEMORY_HIT_BUFFER_SECONDS": "0.1",  # each worker sends its buffered hits to Redis this often
        **extra,
    })
    return env


@contextmanager
def gunicorn(env: dict, tmp_path: Path, workers: int = 2):
    """gunicorn on a free port; yields its URL once it answers HTTP at all."""
    server = ApiServer(env, tmp_path / "gunicorn.log", workers=workers)
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def live_server_url(transactional_db, tmp_path):
    """gunicorn, two workers sharing their metrics through PROMETHEUS_MULTIPROC_DIR."""
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to run the README's examples")
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    with gunicorn(child_env(PROMETHEUS_MULTIPROC_DIR=str(multiproc)), tmp_path) as url:
        yield url


def create_token(username: str) -> str:
    """What the README says to run: ``python manage.py drf_create_token USERNAME``."""
    out = subprocess.run(
        [sys.executable, "manage.py", "drf_create_token", username],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return re.search(r"Generated token (\w+) for user " + re.escape(username), out).group(1)


def run_example(block: str, url: str, key: str, cwd: Path) -> str:
    command = block.replace("http://localhost:8000", url).replace("Token KEY", f"Token {key}")
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{block}\n{done.stderr}"
    return done.stdout


def metric_sum(text: str, family: str) -> float:
    return sum(
        s.value for f in text_string_to_metric_families(text) if f.name == family for s in f.samples
        if s.name == family + "_total" or (family.endswith("_seconds") and s.name == family + "_count")
    )


@pytest.mark.slow
def test_readme_curl_examples_work_against_gunicorn(make_user, live_server_url, tmp_path):
    make_user("admin", superuser=True)
    key = create_token("admin")
    seed({"sku": "ABC123", "title": "Produto Teste"})
    seed({"sku": "XYZ789", "title": "Fone Bluetooth"})
    examples = readme_curl_examples()
    assert [endpoint_of(b) for b in examples] == README_ORDER

    # Hits spread over both workers: /metrics must add them up.
    auth = {"Authorization": f"Token {key}"}
    for _ in range(10):
        response = httpx.post(f"{live_server_url}/api/memory/get/", json={"product_id": "XYZ789"}, headers=auth)
        assert response.status_code == 200
    # Stats count what the workers have sent to Redis, each within its hit buffer's period.
    assert wait_for(lambda: ProductMemory().stats()["hits"] == 10, timeout=10)

    outputs = []
    for block in examples:
        if endpoint_of(block) == "stats":  # the README's get/ is a hit too, sent within its buffer's period
            assert wait_for(lambda: ProductMemory().stats()["hits"] == 11, timeout=10)
        outputs.append(run_example(block, live_server_url, key, tmp_path))
    (health, queued, got, queued_again, stats, listed, _, edited, history, approved, restored, deleted,
     cleared) = map(lambda out: json.loads(out) if out.strip() else None, outputs)

    assert health["status"] == "ok"
    assert queued["product_id"] == queued_again["product_id"] == "ABC123" and queued["task_id"]
    assert got["found"] is True and got["product_id"] == "ABC123" and got["tier"] in {"l1", "l2", "l3"}
    assert stats["total_entries"] == 2 and stats["hits"] == 11
    assert listed["count"] == 2 and {r["product_id"] for r in listed["results"]} == {"ABC123", "XYZ789"}
    exported = (tmp_path / "memory-export.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["product_id"] for line in exported) == ["ABC123", "XYZ789"]
    regenerated = [json.loads(line) for line in exported if '"ABC123"' in line][0]
    assert regenerated["payload"]["title"].startswith("Produto Teste")  # written by the eager regeneration
    assert (edited["origin"], edited["content"]["description"]) == ("edited", "Revisado à mão.")
    assert [v["number"] for v in history["versions"]][:1] == [edited["version"]]
    assert approved["approved"] is True
    assert (restored["origin"], restored["restored_from"], restored["version"]) == ("restored", 1, edited["version"] + 1)
    assert deleted == {"deleted": True, "product_id": "ABC123"}
    assert cleared == {"cleared": 1}
    assert not ProductMemoryEntry.objects.exists()

    text = httpx.get(f"{live_server_url}/metrics", headers=auth).text
    assert metric_sum(text, "beecatalog_memory_tier_hits") == 11  # ten gets by id, one by the README's get
    assert metric_sum(text, "beecatalog_memory_generations") == 2  # the README's two regenerations
    assert metric_sum(text, "beecatalog_memory_generation_seconds") == 2
    assert httpx.get(f"{live_server_url}/metrics").status_code == 401


@pytest.mark.slow
def test_health_is_503_and_reads_fail_cleanly_with_postgresql_unreachable(db, tmp_path):
    """A server whose PostgreSQL does not answer (nothing listens on its port) says so, and stays up."""
    env = child_env(DATABASE_URL="postgres://postgres@127.0.0.1:1/beecatalog_gone", DB_CONNECT_TIMEOUT="1")
    with gunicorn(env, tmp_path, workers=1) as url:
        health = httpx.get(f"{url}/api/memory/health/", timeout=10)
        assert health.status_code == 503
        assert health.json() == {"status": "down"}
        assert httpx.get(f"{url}/api/memory/health/", timeout=10).status_code == 503  # the worker is still there


def in_chunks(data: bytes, size: int = 10):
    """A body httpx sends with ``Transfer-Encoding: chunked`` and no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.slow
def test_a_chunked_body_is_read_through_gunicorn(transactional_db, make_user, tmp_path):
    """Read whole up to DATA_UPLOAD_MAX_MEMORY_SIZE (beecatalog/chunked.py), 413 beyond it."""
    from rest_framework.authtoken.models import Token

    seed({"sku": "ABC123", "title": "Produto Teste"})
    key = Token.objects.create(user=make_user("admin", superuser=True)).key
    headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
    with gunicorn(child_env(DATA_UPLOAD_MAX_MEMORY_SIZE="4096"), tmp_path, workers=1) as url:
        got = httpx.post(f"{url}/api/memory/get/", content=in_chunks(b'{"product_id": "ABC123"}'), headers=headers)
        assert got.request.headers["transfer-encoding"] == "chunked" and "content-length" not in got.request.headers
        assert got.status_code == 200, got.text
        assert got.json()["found"] is True and got.json()["product_id"] == "ABC123"

        big = json.dumps({"product_id": "ABC123", "pad": "x" * 5000}).encode()
        refused = httpx.post(f"{url}/api/memory/get/", content=in_chunks(big, 1000), headers=headers)
        assert refused.status_code == 413
        assert refused.json() == {"detail": "O corpo da requisição excede o limite de 4096 bytes."}

        deleted = httpx.post(f"{url}/api/memory/delete/", content=in_chunks(b'{"product_id": "ABC123"}'), headers=headers)
        assert deleted.status_code == 200 and deleted.json() == {"deleted": True, "product_id": "ABC123"}
    assert not ProductMemoryEntry.objects.exists()

def start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    """What ``make worker`` runs (one pool process, named, so that the test knows it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "beecatalog", "worker", "--loglevel", "INFO",
         "--concurrency", "1", "--hostname", "readme@%h"],
        cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
    )


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.mark.slow
def test_the_readme_path_from_an_empty_database_to_the_api_with_a_worker(empty_database, redis_client, tmp_path):
    """"Running it" on a database nothing has touched, then every curl example in the README's order,
    the regenerations run by a real worker through the Redis broker."""
    steps = re.search(r"```bash\n(.*?)```", readme_section("Running it"), re.DOTALL).group(1)
    for step in ("createdb", "make migrate", "manage.py createsuperuser", "manage.py drf_create_token USERNAME",
                 "make run", "make worker"):
        assert step in steps, f"the README's path lacks {step!r}"
    broker = settings.CACHES["memory_l2"]["LOCATION"]
    env = child_env(DATABASE_URL=empty_database, CELERY_BROKER_URL=broker, CELERY_RESULT_BACKEND=broker,
                    DOTENV_PATH="", MEMORY_BACKUP_DIR=str(tmp_path / "backups"),
                    DJANGO_SUPERUSER_PASSWORD="senha-forte-123")

    manage(env, "migrate")  # make migrate
    manage(env, "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    key = re.search(r"Generated token (\w+) for user admin", manage(env, "drf_create_token", "admin")).group(1)
    worker_log = tmp_path / "worker.log"
    worker = start_worker(env, worker_log)
    server = ApiServer(env, tmp_path / "gunicorn.log", workers=2)

    def regenerations_done(count):
        return worker_log.read_text().count("Task memory.generate_main_content_task[") >= 2 * count  # received + succeeded

    try:
        server.wait_ready()
        health = lambda: httpx.get(f"{server.url}/api/memory/health/", timeout=10).json()  # noqa: E731
        assert wait_for(lambda: health()["status"] == "ok", timeout=90, interval=0.5), (health(), worker_log.read_text())
        broker = httpx.get(f"{server.url}/api/memory/health/", headers={"Authorization": f"Token {key}"},
                           timeout=10).json()["checks"]["broker"]  # a superuser sees the checks
        outputs, regenerations = [], 0
        for block in readme_curl_examples():
            outputs.append(json.loads(run_example(block, server.url, key, tmp_path) or "null"))
            if endpoint_of(block) == "force-regenerate":  # a person sees the worker's log say it
                regenerations += 1
                assert wait_for(lambda: regenerations_done(regenerations), timeout=60, interval=0.2), worker_log.read_text()
    finally:
        server.stop()
        stop_process(worker, timeout=20)
    health, queued, got, queued_again, stats, listed, _, edited, history, approved, restored, deleted, cleared = outputs
    assert health == {"status": "ok"}
    assert broker["ok"] is True and broker["worker"].startswith("readme@"), broker
    assert queued["product_id"] == queued_again["product_id"] == "ABC123" and queued["task_id"] != queued_again["task_id"]
    assert worker_log.read_text().count("succeeded") >= 2
    assert got["found"] is True and got["content"]["title"].startswith("Produto Teste"), got
    assert stats["total_entries"] == 1 and listed["count"] == 1
    exported = (tmp_path / "memory-export.jsonl").read_text().splitlines()
    assert [json.loads(line)["product_id"] for line in exported] == ["ABC123"]
    assert (edited["origin"], edited["content"]["description"]) == ("edited", "Revisado à mão.")
    assert history["versions"][0]["number"] == edited["version"] and history["versions"][0]["current"]
    assert approved["approved"] is True and approved["approved_by"] == "admin"
    assert (restored["origin"], restored["restored_from"], restored["version"]) == ("restored", 1, edited["version"] + 1)
    assert deleted == {"deleted": True, "product_id": "ABC123"} and cleared == {"cleared": 0}
