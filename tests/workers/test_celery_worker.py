"""Both tasks through a real Celery worker process and the Redis broker."""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection

from memory.models import ProductMemoryEntry
from tests.helpers import stop_process
from tests.servers import RedisCluster, RedisServer, SentinelGroup, listens

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


def _worker_in_mode(env_mode: dict, broker: str, backend: str, transport_options: dict):
    """A worker of the mode's settings (its broker chosen by them) on a queue of its own, and a
    client sending to it through the same broker."""
    settings = connection.settings_dict
    database_url = (
        f"postgres://{settings['USER']}:{settings['PASSWORD'] or ''}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    )
    queue = f"bc-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "beecatalog.settings", "DATABASE_URL": database_url,
           "REDIS_URL": "", "CELERY_TASK_ALWAYS_EAGER": "false", "LLM_PROVIDER": "template", **env_mode}
    if "CELERY_BROKER_URL" not in env_mode:
        env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_RESULT_BACKEND", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "beecatalog", "worker", "--pool", "solo", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", queue],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    client = Celery(broker=broker, backend=backend)
    client.conf.broker_transport_options = transport_options
    client.conf.result_backend_transport_options = transport_options
    return proc, client, queue


def _generated_by(worker, product: dict) -> dict:
    """``generate_main_content_task(product)`` run by ``worker`` (what ``_worker_in_mode`` started),
    its result; the worker is stopped afterwards."""
    proc, client, queue = worker
    try:
        return client.send_task("memory.generate_main_content_task", args=[product], queue=queue).get(timeout=60)
    finally:
        stop_process(proc, timeout=10)


@pytest.mark.slow
def test_in_sentinel_mode_the_broker_is_the_sentinels_master(transactional_db):
    group = SentinelGroup(master_name=f"bc{uuid.uuid4().hex[:8]}").start()
    try:
        broker = ";".join(f"sentinel://{address}/0" for address in group.addresses)
        worker = _worker_in_mode(
            {"REDIS_SENTINELS": ",".join(group.addresses), "REDIS_SENTINEL_MASTER": group.master_name},
            broker, broker, {"master_name": group.master_name})
        assert _generated_by(worker, {"sku": "SENT-1", "title": "Luminária"})["product_id"] == "SENT-1"
    finally:
        group.stop()
    assert ProductMemoryEntry.objects.filter(product_id="SENT-1").exists()


@pytest.mark.slow
def test_in_cluster_mode_the_broker_is_rabbitmq_and_the_results_come_back_over_amqp(transactional_db):
    if not listens(5672):
        pytest.skip("RabbitMQ does not listen on 127.0.0.1:5672")
    cluster = RedisCluster(masters=3).start()
    try:
        broker = "amqp://guest:guest@127.0.0.1:5672//"
        worker = _worker_in_mode(
            {"REDIS_CLUSTER_NODES": ",".join(cluster.addresses), "CELERY_BROKER_URL": broker}, broker, "rpc://", {})
        assert _generated_by(worker, {"sku": "CLUS-1", "title": "Abajur"})["product_id"] == "CLUS-1"
    finally:
        cluster.stop()
    assert ProductMemoryEntry.objects.filter(product_id="CLUS-1").exists()
