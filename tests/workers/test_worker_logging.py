"""A real Celery worker prints each of the memory's log lines once."""
import subprocess
import sys

import pytest
from celery import Celery
from django.conf import settings

from tests.helpers import stop_process, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASK_TIMEOUT_SECONDS = 60


def test_the_worker_prints_each_memory_line_once(redis_client, process_env, tmp_path):
    broker = settings.CACHES["memory_l2"]["LOCATION"]
    env = worker_env(process_env, LLM_PROVIDER="template", MEMORY_LOG_LEVEL="INFO")
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "beecatalog", "worker", "--pool=solo", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname=logging-test@%h"],
            env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
        )
        client = Celery(broker=broker, backend=broker)
        product = {"sku": "LOG-1", "title": "Abajur"}
        try:
            first = client.send_task("memory.generate_main_content_task", args=[product])
            first.get(timeout=TASK_TIMEOUT_SECONDS)
            second = client.send_task("memory.generate_main_content_task", args=[product])
            second.get(timeout=TASK_TIMEOUT_SECONDS)
        finally:
            stop_process(worker)
    text = log_path.read_text()
    lines = text.splitlines()
    saved = [line for line in lines if "Salvando produto LOG-1 na memória" in line]
    found = [line for line in lines if "Produto LOG-1 encontrado na memória" in line]
    assert (len(saved), len(found)) == (1, 1), text
    assert "[INFO] Salvando" not in text, text  # in the worker's own format, with time and process
