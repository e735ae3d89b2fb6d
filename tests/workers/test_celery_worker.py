"""Both tasks through a real Celery worker process and the Redis broker."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection

from memory.models import ProductMemoryEntry
from tests.helpers import stop_process
from tests.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(transactional_db):
    """A worker on a redis-server of the test's own (broker, results and L2): no Redis database
    that another run, or another pytest-xdist worker, uses."""
    settings = connection.settings_dict
    database_url = (
        f"postgres://{settings['USER']}:{settings['PASSWORD'] or ''}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    )
    server = RedisServer().start()
    broker = server.url
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "beecatalog.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": broker,
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LLM_PROVIDER": "template",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "beecatalog", "worker", "--pool", "solo", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    client = Celery(broker=broker, backend=broker)
    try:
        yield client
    finally:
        stop_process(proc, timeout=10)
        server.kill()


@pytest.mark.slow
def test_real_worker_runs_both_tasks(worker):
    product = {"sku": "WORKER-1", "title": "Luminária de Mesa", "brand": "Tok&Stok"}
    single = worker.send_task("memory.generate_main_content_task", args=[product]).get(timeout=60)
    assert single["product_id"] == "WORKER-1" and single["from_cache"] is False
    batch = worker.send_task(
        "memory.batch_generate_main_content_task",
        args=[[product, {"sku": "WORKER-2", "title": "Abajur"}]],
        kwargs={"batch_size": 1},
    ).get(timeout=60)
    assert [p["from_cache"] for p in batch["products"]] == [True, False]
    assert set(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == {"WORKER-1", "WORKER-2"}
