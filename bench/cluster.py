"""The memory's L2 read and batch check on a Redis Cluster, beside raw ``RedisCluster`` calls of the same keys.

Run by hand (never collected by pytest), from the repository root::

    BENCH_ALLOW_ANY_STORE=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/bc_redisha REDIS_URL= \\
        .venv/bin/python bench/cluster.py

It starts its own servers on free loopback ports (a 3-master Redis Cluster, and one redis-server
for the same rows in single mode), saves ``--products`` entries of ~3 KB pt-BR payload, then in
one run, alternating call by call:

- ``get_product_data(..., count_hit=False)`` served by L2 (L1 emptied before each call), beside a
  raw ``GET`` of the memory's own key, and that GET + the memory's decode (signature, inflation, JSON);
- ``batch_check_products_in_memory`` of ``--batch`` products, all in L2 (L1 empty), beside a raw
  ``mget_nonatomic`` (cluster) or ``MGET`` (one server) of the same keys, and that + decode.

Results go to ``var/bench/cluster.json`` and to stdout.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import content_for, machine, product, save_results, setup_django, summary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batch-repeats", type=int, default=15)
    args = parser.parse_args()
    setup_django()

    from django.conf import settings
    from django.core.cache import caches
    from django.test import override_settings

    from beecatalog import redis_cache
    from memory.engine import runtime
    from memory.engine.coherence import wait_until_subscribed
    from memory.engine.memory import ProductMemory
    from memory.engine.tiers import L2, cache_key
    from memory.infra import redis
    from memory.memory_utils import batch_check_products_in_memory
    from memory.models import ProductMemoryEntry
    from tests.servers import RedisCluster, RedisServer

    data = [product(n) for n in range(args.products)]
    ids = [d["sku"] for d in data]
    results = {"products": args.products, "batch": args.batch, "modes": {}}
    servers = {"cluster": RedisCluster(masters=3).start(), "single": RedisServer().start()}
    try:
        for mode, server in servers.items():
            if mode == "cluster":
                l2 = redis_cache.memory_l2(redis_cache.CLUSTER, timeout=2.0,
                                           cluster_nodes=[("127.0.0.1", n.port) for n in server.nodes])
            else:
                l2 = redis_cache.memory_l2(redis_cache.SINGLE, timeout=2.0, url=server.url)
            runtime.stop_background_threads()  # the L1 listener subscribes on this mode's servers
            with override_settings(CACHES={**settings.CACHES, "memory_l2": l2}):
                runtime.reset_process_state()
                runtime.start_background_threads()
                assert wait_until_subscribed(10)
                results.setdefault("machine", machine())
                ProductMemoryEntry.objects.filter(product_id__startswith="BENCH-").delete()
                memory = ProductMemory()
                for d in data:
                    memory.save_product_data(d, content_for(d), tokens_prompt=900, tokens_completion=400)
                client = redis.client()
                keys = [redis.make_key(cache_key((pid, memory.kind))) for pid in ids]
                l1 = caches["memory_l1"]
                raw_mget = client.mget_nonatomic if mode == "cluster" else client.mget

                reads = {"memory": [], "raw_get": [], "raw_get_decode": []}
                tiers = set()
                gc.disable()
                for i in range(args.reads):
                    pid, key = ids[i % len(ids)], keys[i % len(ids)]
                    l1.clear()
                    started = time.perf_counter()
                    hit = memory.get_product_data(pid, count_hit=False)
                    reads["memory"].append(time.perf_counter() - started)
                    tiers.add(hit.tier)
                    started = time.perf_counter()
                    client.get(key)
                    reads["raw_get"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    redis.decode(client.get(key))
                    reads["raw_get_decode"].append(time.perf_counter() - started)
                gc.enable()
                assert tiers == {L2}, tiers

                batch_ids, batch_keys = ids[:args.batch], keys[:args.batch]
                batches = {"memory": [], "raw_mget": [], "raw_mget_decode": []}
                for _ in range(args.batch_repeats):
                    l1.clear()
                    started = time.perf_counter()
                    found = batch_check_products_in_memory(batch_ids)
                    batches["memory"].append(time.perf_counter() - started)
                    assert all(found.values())
                    started = time.perf_counter()
                    raw_mget(batch_keys)
                    batches["raw_mget"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    [redis.decode(v) for v in raw_mget(batch_keys)]
                    batches["raw_mget_decode"].append(time.perf_counter() - started)
                results["modes"][mode] = {
                    "reads": {name: summary(samples) for name, samples in reads.items()},
                    "batch_ms": {name: round(statistics.median(samples) * 1000, 2) for name, samples in batches.items()},
                }
                ProductMemoryEntry.objects.filter(product_id__startswith="BENCH-").delete()
                runtime.stop_background_threads()
                runtime.reset_process_state()
    finally:
        for server in servers.values():
            server.stop()
    runtime.reset_process_state()
    save_results("cluster", results)
    for mode, found in results["modes"].items():
        print(mode)
        for name, row in found["reads"].items():
            print(f"  read {name:16} median {row['median_us']:8.1f} µs  p90 {row['p90_us']:8.1f} µs")
        for name, ms in found["batch_ms"].items():
            print(f"  batch {args.batch} {name:16} median {ms:8.2f} ms")


if __name__ == "__main__":
    main()
