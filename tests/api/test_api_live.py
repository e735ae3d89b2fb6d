"""The README's curl examples, run as written against gunicorn with two workers."""
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

from tests.helpers import seed, wait_for
from tests.servers import ApiServer

ROOT = Path(settings.BASE_DIR)
README = ROOT / "README.md"


def readme_curl_examples() -> list[str]:
    """The ```bash blocks of the README's "API" section that call curl."""
    text = README.read_text()
    section = text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    return [b for b in blocks if b.lstrip().startswith("curl ")]


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
    assert len(examples) == 8

    # Hits spread over both workers: /metrics must add them up.
    auth = {"Authorization": f"Token {key}"}
    for _ in range(10):
        response = httpx.post(f"{live_server_url}/api/memory/get/", json={"product_id": "XYZ789"}, headers=auth)
        assert response.status_code == 200
    # Stats count what the workers have sent to Redis, each within its hit buffer's period.
    assert wait_for(lambda: ProductMemory().stats()["hits"] == 10, timeout=10)

    outputs = {}
    for block in examples:
        endpoint = re.search(r"/api/memory/([\w-]+)/", block).group(1)
        outputs[endpoint] = run_example(block, live_server_url, key, tmp_path)

    stats = json.loads(outputs["stats"])
    assert stats["total_entries"] == 2 and stats["hits"] == 10
    listed = json.loads(outputs["list"])
    assert listed["count"] == 2 and {r["product_id"] for r in listed["results"]} == {"ABC123", "XYZ789"}
    got = json.loads(outputs["get"])
    assert got["found"] is True and got["product_id"] == "ABC123" and got["tier"] in {"l1", "l2", "l3"}
    queued = json.loads(outputs["force-regenerate"])
    assert queued["product_id"] == "ABC123" and queued["task_id"]
    exported = (tmp_path / "memory-export.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["product_id"] for line in exported) == ["ABC123", "XYZ789"]
    regenerated = [json.loads(line) for line in exported if '"ABC123"' in line][0]
    assert regenerated["payload"]["title"].startswith("Produto Teste")  # written by the eager regeneration
    assert json.loads(outputs["delete"]) == {"deleted": True, "product_id": "ABC123"}
    assert json.loads(outputs["clear"]) == {"cleared": 1}
    assert json.loads(outputs["health"])["status"] == "ok"
    assert not ProductMemoryEntry.objects.exists()

    text = httpx.get(f"{live_server_url}/metrics", headers=auth).text
    assert metric_sum(text, "beecatalog_memory_tier_hits") == 11  # ten gets by id, one by the README's get
    assert metric_sum(text, "beecatalog_memory_generations") == 1
    assert metric_sum(text, "beecatalog_memory_generation_seconds") == 1
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
