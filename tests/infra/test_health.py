"""Health's broker check against the real Redis broker: a broker that answers while no worker
consumes its queue is "degraded" (tasks would wait forever), and ok once a worker runs."""
import json
import subprocess
import sys
import time

import pytest
from django.conf import settings

from memory.infra.health import WORKER_PING_TIMEOUT

from tests.helpers import stop_process, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker_env(process_env, redis_client, tmp_path):
    """The project's own settings with the test Redis as broker, as a deployment runs them."""
    broker = settings.CACHES["memory_l2"]["LOCATION"]
    return {
        **process_env,
        "DJANGO_SETTINGS_MODULE": "beecatalog.settings",  # tests.settings runs every task eagerly
        "DOTENV_PATH": "",
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "MEMORY_BACKUP_DIR": str(tmp_path / "backups"),
    }


def health(env) -> tuple[dict, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "manage.py", "manage_memory", "health", "--json"], cwd=settings.BASE_DIR,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # degraded still exits 0 (no --strict)
    return json.loads(done.stdout), time.monotonic() - started


def test_no_worker_is_degraded_and_a_running_worker_is_ok(broker_env, tmp_path):
    report, _ = health(broker_env)
    broker = report["checks"]["broker"]
    assert report["status"] == "degraded" and broker["ok"] is False, report
    assert broker["error"].startswith("nenhum worker do Celery respondeu"), broker
    assert "celery -A beecatalog worker" in broker["error"]
    assert broker["latency_ms"] < (WORKER_PING_TIMEOUT + 1.5) * 1000  # bounded: health stays quick

    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "beecatalog", "worker", "--pool=solo", "--loglevel=INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname=health-test@%h"],
        cwd=settings.BASE_DIR, env=broker_env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        # each health check is a process of its own: ask once the worker says it consumes the queue
        assert wait_for(lambda: " ready." in (tmp_path / "worker.log").read_text(), 90, interval=0.1), (
            (tmp_path / "worker.log").read_text())
        seen = []
        assert wait_for(lambda: seen.append(health(broker_env)[0]) or seen[-1]["status"] == "ok", 90, interval=0.5), (
            seen[-1], (tmp_path / "worker.log").read_text())
    finally:
        stop_process(worker)
        log.close()
    broker = seen[-1]["checks"]["broker"]
    assert broker["ok"] is True and broker["worker"].startswith("health-test@"), broker
    assert broker["latency_ms"] < WORKER_PING_TIMEOUT * 1000  # a worker's pong ends the wait
