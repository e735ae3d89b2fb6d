"""A real Celery worker prints each of the memory's log lines once, as text or as JSON."""
import json
import subprocess
import sys

import pytest
from celery import Celery
from django.conf import settings

from tests.helpers import stop_process, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASK_TIMEOUT_SECONDS = 60


def run_worker(process_env: dict, tmp_path, product: dict, **values: str) -> str:
    """A solo worker that generates ``product`` and then finds it; everything it printed."""
    broker = settings.CACHES["memory_l2"]["LOCATION"]
    env = worker_env(process_env, LLM_PROVIDER="template", MEMORY_LOG_LEVEL="INFO", **values)
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "beecatalog", "worker", "--pool=solo", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname=logging-test@%h"],
            env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
        )
        client = Celery(broker=broker, backend=broker)
        try:
            first = client.send_task("memory.generate_main_content_task", args=[product])
            first.get(timeout=TASK_TIMEOUT_SECONDS)
            second = client.send_task("memory.generate_main_content_task", args=[product])
            second.get(timeout=TASK_TIMEOUT_SECONDS)
        finally:
            stop_process(worker)
    return log_path.read_text()


def test_the_worker_prints_each_memory_line_once(redis_client, process_env, tmp_path):
    text = run_worker(process_env, tmp_path, {"sku": "LOG-1", "title": "Abajur"})
    lines = text.splitlines()
    saved = [line for line in lines if "Salvando produto LOG-1 na memória" in line]
    found = [line for line in lines if "Produto LOG-1 encontrado na memória" in line]
    assert (len(saved), len(found)) == (1, 1), text
    assert "[INFO] Salvando" not in text, text  # in the worker's own format, with time and process


def test_with_json_the_worker_prints_its_log_lines_and_the_memorys_as_json(redis_client, process_env, tmp_path):
    text = run_worker(process_env, tmp_path, {"sku": "LOG-2", "title": "Abajur"}, MEMORY_LOG_FORMAT="json")
    logged = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    saved = [e for e in logged if e["message"] == "Salvando produto LOG-2 na memória para reutilização futura"]
    found = [e for e in logged if e["message"].startswith("Produto LOG-2 encontrado na memória")]
    assert (len(saved), len(found)) == (1, 1), text
    assert saved[0]["product_id"] == "LOG-2" and saved[0]["logger"] == "memory"
    # Celery's own lines too (the task logger has a handler of its own)
    assert any(e["logger"].startswith("celery") and "succeeded" in e["message"] for e in logged), text
    assert not [line for line in text.splitlines() if "Salvando produto LOG-2" in line and not line.startswith("{")]
