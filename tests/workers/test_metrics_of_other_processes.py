"""What a process other than web's did (the Celery worker's refresh-ahead run and generations, a
command's) shows on web's /metrics, for the series read from PostgreSQL at each scrape; and every
process series of the worker shows on the worker's own endpoint (METRICS_WORKER_PORT)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from memory.engine.counters import flush_counters
from memory.engine.memory import ProductMemory
from memory.models import DailyStats, ProductMemoryEntry
from memory.providers import TemplateProvider
from tests.helpers import stop_process, token_client
from tests.servers import RedisServer, free_port, wait_for_port

CONTENT = {"title": "Produto", "description": "Descrição", "bullet_points": ["a"], "seo_keywords": ["b"]}

# Run in another process, as the worker would: the scheduled job, then lookups of the refreshed
# entry and the every-minute flush (which counts the miss avoided), then the daily roll-up.
SCRIPT = """
import json
from memory.engine.counters import flush_counters
from memory.engine.memory import ProductMemory
from memory.infra import metrics
from memory.periodic_tasks import refresh_ahead_task
summary = refresh_ahead_task()
for _ in range(3):
    assert ProductMemory().get_product_data({"sku": "HOT-1"}) is not None
flush_counters()
print(json.dumps({"summary": summary, "own_generations": metrics.GENERATIONS._value.get()}))
"""


def samples(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {sample.name: sample.value for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples if not sample.labels}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_refresh_ahead_run_in_another_process_shows_on_webs_metrics(process_env, make_user):
    ProductMemory().save_product_data({"sku": "HOT-1", "title": "Luminária"}, CONTENT, tokens_prompt=60,
                                      tokens_completion=40, generator_version=TemplateProvider().generator_version)
    now = timezone.now()
    ProductMemoryEntry.objects.filter(product_id="HOT-1").update(  # hot, and expired: its next lookup would miss
        hotness=9.0, hotness_at=now, expires_at=now - timedelta(hours=1))
    flush_counters()  # the setup's own generation is in the daily statistics before the "before"
    client = token_client(make_user("staff", staff=True))
    before = samples(client)
    generations_here = before["beecatalog_memory_generations_total"]

    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", SCRIPT], cwd=settings.BASE_DIR,
                          env={**process_env, "LLM_PROVIDER": "template"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = json.loads(done.stdout.strip().splitlines()[-1])
    assert ran["summary"]["refreshed"] == 1 and ran["own_generations"] == 1  # counted there, in its process
    spent = ran["summary"]["tokens_spent"]
    assert spent > 0

    after = samples(client)
    today = DailyStats.objects.get(date=timezone.localdate())
    assert (today.tokens_spent_ahead, today.misses_avoided) == (spent, 1)
    assert after["beecatalog_memory_tokens_spent_ahead_total"] - before["beecatalog_memory_tokens_spent_ahead_total"] == spent
    assert after["beecatalog_memory_misses_avoided_total"] - before["beecatalog_memory_misses_avoided_total"] == 1
    assert after["beecatalog_memory_recorded_generations_total"] - before["beecatalog_memory_recorded_generations_total"] == 1
    assert (after["beecatalog_memory_recorded_tokens_spent_total"]
            - before["beecatalog_memory_recorded_tokens_spent_total"]) == spent
    # This process's own counter never saw that generation: why those series come from PostgreSQL.
    assert after["beecatalog_memory_generations_total"] == generations_here


# --- the Celery worker's own /metrics ---------------------------------------------------------


def worker_command(*pool: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "beecatalog", "worker", *pool, "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


@pytest.fixture
def worker_env(process_env, tmp_path):
    """A worker of its own Redis (broker, results, L2), serving its metrics on a free port, its
    prefork children counting in a folder of its own (holding a stale file of a previous run)."""
    server = RedisServer().start()
    folder = tmp_path / "worker-metrics"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"\0" * 8)  # a previous run's: not this run's counts
    env = {**process_env, "DJANGO_SETTINGS_MODULE": "beecatalog.settings", "REDIS_URL": server.url,
           "CELERY_BROKER_URL": server.url, "CELERY_RESULT_BACKEND": server.url,
           "CELERY_TASK_ALWAYS_EAGER": "false", "LLM_PROVIDER": "template",
           "PROMETHEUS_MULTIPROC_DIR": str(folder), "METRICS_WORKER_PORT": str(free_port()),
           "METRICS_WORKER_ADDR": "127.0.0.1", "MEMORY_LOG_LEVEL": "INFO"}
    yield env
    server.kill()


def worker_samples(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_workers_generations_show_on_its_own_metrics_endpoint(worker_env):
    port = int(worker_env["METRICS_WORKER_PORT"])
    proc = subprocess.Popen(worker_command("--pool", "prefork", "--concurrency", "1"), cwd=settings.BASE_DIR,
                            env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, timeout=60)
        before = worker_samples(port)
        assert before["beecatalog_memory_generations_total"] == 0  # the stale file was not added in
        assert not Path(worker_env["PROMETHEUS_MULTIPROC_DIR"], "counter_999999.db").exists()
        client = Celery(broker=worker_env["CELERY_BROKER_URL"], backend=worker_env["CELERY_RESULT_BACKEND"])
        product = {"sku": "WORKER-M1", "title": "Luminária de Mesa"}
        done = client.send_task("memory.generate_main_content_task", args=[product]).get(timeout=60)
        assert done["from_cache"] is False

        # counted in the pool's child process, served by the worker's main process
        deadline = time.monotonic() + 30
        while (after := worker_samples(port))["beecatalog_memory_generations_total"] < 1:
            assert time.monotonic() < deadline, after
            time.sleep(0.1)
        assert after["beecatalog_memory_generations_total"] == 1
        assert after["beecatalog_memory_tokens_spent_total"] > 0
        assert after["beecatalog_memory_redis_up"] == 1
        # the series read from PostgreSQL are web's to show: a second target would double them
        assert "beecatalog_memory_recorded_generations_total" not in after
        assert "beecatalog_memory_misses_avoided_total" not in after
        assert "beecatalog_memory_purge_interval_seconds" not in after  # web's, set at its scrapes
        with pytest.raises(urllib.error.HTTPError) as elsewhere:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert elsewhere.value.code == 404
    finally:
        stop_process(proc, timeout=15)
    assert "Métricas do worker em http://127.0.0.1:" in proc.stdout.read()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_prefork_worker_serving_metrics_without_a_folder_is_refused_in_one_line(worker_env):
    env = {**worker_env, "PROMETHEUS_MULTIPROC_DIR": ""}
    done = subprocess.run(worker_command("--pool", "prefork", "--concurrency", "1"), cwd=settings.BASE_DIR,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 4
    assert "METRICS_WORKER_PORT: com o pool prefork" in done.stderr and "PROMETHEUS_MULTIPROC_DIR" in done.stderr
    assert "Traceback" not in done.stderr
