"""batch_check_products_in_memory: a constant number of round trips, whatever the size."""
import threading

import pytest
import redis
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from memory.memory_utils import batch_check_products_in_memory
from memory.engine.memory import ProductMemory

pytestmark = pytest.mark.django_db

CONTENT = {"title": "Produto", "description": "d", "bullet_points": [], "seo_keywords": []}


@pytest.fixture
def redis_round_trips(monkeypatch):
    """Redis round trips of this thread (the hit-count pusher's pipelines run in another)."""
    calls = []
    test_thread = threading.get_ident()
    original_command = redis.Redis.execute_command
    original_pipeline = redis.client.Pipeline.execute

    def command(self, *args, **kwargs):
        if not isinstance(self, redis.client.Pipeline) and threading.get_ident() == test_thread:
            calls.append(args[0])
        return original_command(self, *args, **kwargs)

    def pipeline(self, *args, **kwargs):
        if threading.get_ident() == test_thread:
            calls.append("PIPELINE")
        return original_pipeline(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", pipeline)
    return calls


@pytest.mark.parametrize("size", [10, 600])
def test_batch_check_is_one_mget_and_one_query(size, redis_client, redis_round_trips):
    memory = ProductMemory()
    products = [{"sku": f"P{i}", "title": f"Produto {i}"} for i in range(size)]
    for product in products[: size // 2]:
        memory.save_product_data(product, CONTENT)
    caches["memory_l1"].clear()
    redis_client.delete(*[k for k in redis_client.keys("*entry:*")][: size // 4])
    redis_round_trips.clear()
    with CaptureQueriesContext(connection) as queries:
        result = batch_check_products_in_memory(products)
    assert result == {f"P{i}": i < size // 2 for i in range(size)}
    assert len(queries) == 1
    # one MGET; one pipeline claiming the fills of the misses before the query; one transaction
    # (WATCH, the claims read back, MULTI/EXEC) refilling Redis with what only PostgreSQL had
    assert redis_round_trips == ["MGET", "PIPELINE", "PIPELINE"]


def test_batch_check_counts_no_hits(redis_client):
    ProductMemory().save_product_data({"sku": "A"}, CONTENT)
    batch_check_products_in_memory([{"sku": "A"}, {"sku": "B"}])
    stats = ProductMemory().stats()
    assert (stats["hits"], stats["misses"]) == (0, 0)


def test_batch_check_reports_stale_products_as_missing():
    ProductMemory().save_product_data({"sku": "A", "price": 10}, CONTENT)
    assert batch_check_products_in_memory([{"sku": "A", "price": 12}]) == {"A": False}
