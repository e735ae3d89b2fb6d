"""The memory beside the raw stores: one run, the same data, medians and ratios.

Run by hand (never collected by pytest), from the repository root::

    .venv/bin/python bench/side_by_side.py            # 10,000 products, ~3 KB pt-BR payload
    .venv/bin/python bench/side_by_side.py --products 2000   # a quicker trial

It deletes its own rows (``BENCH-*``, ``RAW-*``) from the ``bench`` database and empties
Redis db 8, then:

1. writes: ``save_product_data`` of each product beside a raw psycopg
   ``INSERT ... ON CONFLICT DO UPDATE`` (prepared, autocommit) plus a raw
   redis-py ``SET ... PX`` of the same JSON, alternating call by call; first
   as inserts, then as updates;
2. reads, each engine call timed alone and alternated with its raw twin:
   served from L2 (the key is dropped from L1 before the call) beside a raw
   ``GET`` + ``json.loads`` of the same JSON; served from L3 (dropped from L1
   and L2) beside a raw prepared ``SELECT`` on the ``(product_id, kind)`` key;
   served from L1 beside the L2 figure;
3. whole loops: ``--loop`` (2,000) different products read one after the other,
   the loop timed as a whole (wall clock, so it includes what the hit pusher's
   background thread does meanwhile, and, for the counted loops, the final push
   of the counts still buffered at the end of the loop): L2 hits counted and
   uncounted beside a loop of raw ``GET`` + ``json.loads`` (and of raw ``GET``
   + decompress + ``json.loads`` of the memory's own keys), and L1 hits counted
   and uncounted; ``--loop-repeats`` rounds, each memory loop right after a
   raw loop, the ratio taken pair by pair (its median reported) and the medians
   per hit. A per-call timing leaves out the work a call hands to another
   thread; a loop does not;
4. ``batch_check_products_in_memory`` of every product beside one raw
   ``MGET`` of every key plus one raw ``= ANY(%s)`` query.

Diagnostic rows (``count_hit=False``, no Redis configured, the compressed
raw value, a raw cache-aside read beside the L3 read) explain where the time
goes; only the rows named by the targets decide them.

Results go to ``var/bench/side_by_side.json`` and to stdout.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import content_for, machine, product, save_results, setup_django, summary  # noqa: E402

RAW_PREFIX = "RAW-"


def ratio(engine: dict, raw: dict) -> float:
    return round(engine["median_us"] / raw["median_us"], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--batch-repeats", type=int, default=7)
    parser.add_argument("--loop", type=int, default=2000, help="products in each whole loop")
    parser.add_argument("--loop-repeats", type=int, default=7)
    args = parser.parse_args()

    setup_django()
    import psycopg
    import redis
    from django.conf import settings
    from django.core.cache import caches
    from psycopg.types.json import Jsonb

    from memory.memory_utils import batch_check_products_in_memory
    from memory.models import DailyStats, ProductMemoryEntry
    from memory.engine.counters import hit_counter
    from memory.engine.memory import ProductMemory
    from memory.engine.tiers import cache_key
    from memory.infra.redis import SIGNATURE_BYTES

    n = args.products
    db = settings.DATABASES["default"]
    raw_db = psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"], autocommit=True
    )
    raw_redis = redis.Redis.from_url(settings.REDIS_URL)
    l2_cache = caches["memory_l2"]
    compressor = l2_cache.client._compressor  # the configured compressor, as the memory reads

    def decompress(stored: bytes) -> bytes:
        return compressor.decompress(stored[SIGNATURE_BYTES:])  # the raw twin skips the HMAC check

    # Only this script's rows: the 1M rows of bench/fill_entries.py may share the table.
    ProductMemoryEntry.objects.filter(product_id__startswith="BENCH-").delete()
    ProductMemoryEntry.objects.filter(product_id__startswith=RAW_PREFIX).delete()
    DailyStats.objects.all().delete()
    raw_redis.flushdb()  # Redis db 8 belongs to the bench
    memory = ProductMemory()
    memory.l1.clear()
    generator = memory.generator_version

    products = [product(i) for i in range(n)]
    contents = [content_for(p) for p in products]
    ids = [p["sku"] for p in products]
    raw_ids = [RAW_PREFIX + pid for pid in ids]
    payload_bytes = statistics.median(len(json.dumps(c, ensure_ascii=False).encode()) for c in contents)
    ttl = settings.MEMORY_DEFAULT_TTL
    results: dict = {"machine": machine(), "products": n, "payload_bytes_median": payload_bytes}
    print(json.dumps(results["machine"], indent=2), file=sys.stderr)

    upsert_sql = (
        "INSERT INTO memory_productmemoryentry (product_id, kind, payload, source_data, input_fingerprint,"
        " generator_version, tokens_prompt, tokens_completion, hit_count, tokens_saved, created_at, updated_at,"
        " expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, 0, now(), now(), %s)"
        " ON CONFLICT (product_id, kind) DO UPDATE SET payload = EXCLUDED.payload,"
        " source_data = EXCLUDED.source_data, input_fingerprint = EXCLUDED.input_fingerprint,"
        " generator_version = EXCLUDED.generator_version, tokens_prompt = EXCLUDED.tokens_prompt,"
        " tokens_completion = EXCLUDED.tokens_completion, updated_at = now(), expires_at = EXCLUDED.expires_at"
    )

    def raw_write(i: int, content: dict) -> None:
        expires = datetime.now(timezone.utc) + timedelta(seconds=ttl)
        raw_db.execute(
            upsert_sql,
            (raw_ids[i], "main_content", Jsonb(content), Jsonb(products[i]), "0" * 64, generator, 900, 700, expires),
            prepare=True,
        )
        raw_redis.set("raw:" + raw_ids[i], json.dumps(content, ensure_ascii=False), px=ttl * 1000)

    def engine_write(i: int, content: dict) -> None:
        memory.save_product_data(products[i], content, tokens_prompt=900, tokens_completion=700)

    def alternate(engine_call, raw_call, indexes) -> tuple[list[float], list[float]]:
        engine_times, raw_times = [], []
        for i in indexes:
            started = time.perf_counter()
            raw_call(i)
            raw_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            engine_call(i)
            engine_times.append(time.perf_counter() - started)
        return engine_times, raw_times

    # -- writes -----------------------------------------------------------------
    everything = range(n)
    e, r = alternate(lambda i: engine_write(i, contents[i]), lambda i: raw_write(i, contents[i]), everything)
    results["write_insert"] = {"engine": summary(e), "raw": summary(r)}
    changed = [dict(c, description=c["description"] + " Nova versão.") for c in contents]
    e, r = alternate(lambda i: engine_write(i, changed[i]), lambda i: raw_write(i, changed[i]), everything)
    results["write_update"] = {"engine": summary(e), "raw": summary(r)}
    for name in ("write_insert", "write_update"):
        results[name]["ratio"] = ratio(results[name]["engine"], results[name]["raw"])
    # The raw keys of the reads hold exactly what the engine's keys hold, as plain JSON.
    for snap in memory.l3.get_many([(pid, memory.kind) for pid in ids]).values():
        raw_redis.set("raw:" + snap.product_id, json.dumps(snap.to_dict(), ensure_ascii=False))

    # -- single reads ---------------------------------------------------------
    select_sql = (
        "SELECT product_id, kind, payload, input_fingerprint, generator_version, tokens_prompt,"
        " tokens_completion, created_at, expires_at FROM memory_productmemoryentry"
        " WHERE product_id = %s AND kind = %s"
    )
    tiers_seen: dict[str, dict[str, int]] = {}

    def engine_read(path: str, count_hit: bool = True, data=None):
        def call(i: int) -> str:
            hit = memory.get_product_data(data[i] if data else ids[i], count_hit=count_hit)
            seen = tiers_seen.setdefault(path, {})
            tier = hit.tier if hit else "miss"
            seen[tier] = seen.get(tier, 0) + 1
            return tier
        return call

    def raw_get(i: int) -> None:
        json.loads(raw_redis.get("raw:" + ids[i]))

    def raw_get_same_bytes(i: int) -> None:
        json.loads(decompress(raw_redis.get(l2_cache.client.make_key(cache_key((ids[i], memory.kind))))))

    def raw_select(i: int) -> None:
        raw_db.execute(select_sql, (ids[i], "main_content"), prepare=True).fetchone()

    def raw_cache_aside(i: int) -> None:
        """What any cache in front of PostgreSQL does on a miss: GET (nil), SELECT, SET NX."""
        raw_redis.get("raw-miss:" + ids[i])
        row = raw_db.execute(select_sql, (ids[i], "main_content"), prepare=True).fetchone()
        raw_redis.set("raw-fill:" + ids[i], json.dumps(row[2], ensure_ascii=False), nx=True, px=60_000)

    def drop(levels):
        def before(i: int) -> None:
            key = (ids[i], memory.kind)
            for tier in levels:
                tier.delete_many([key])
        return before

    def alternate_with(prepare, engine_call, raw_call, indexes, tier: str | None = None):
        """Time engine and raw calls in turn; with ``tier``, keep only the engine calls that tier served
        (a call the L1 could not serve, because the process was resubscribing to invalidations, is
        counted in ``tiers_seen`` but is not an L1 time)."""
        engine_times, raw_times = [], []
        for i in indexes:
            started = time.perf_counter()
            raw_call(i)
            raw_times.append(time.perf_counter() - started)
            prepare(i)
            started = time.perf_counter()
            served = engine_call(i)
            elapsed = time.perf_counter() - started
            if tier is None or served == tier:
                engine_times.append(elapsed)
        return engine_times, raw_times

    reads = {}
    l2_drop = drop([memory.l1])
    l3_drop = drop([memory.l1, memory.l2])
    e, r = alternate_with(l2_drop, engine_read("l2"), raw_get, everything, "l2")
    reads["l2"] = {"engine": summary(e), "raw_get_json": summary(r)}
    e, r = alternate_with(l2_drop, engine_read("l2_nocount", count_hit=False), raw_get, everything, "l2")
    reads["l2_no_hit_count"] = {"engine": summary(e), "raw_get_json": summary(r)}
    e, r = alternate_with(l2_drop, engine_read("l2_product_data", data=products), raw_get, everything, "l2")
    reads["l2_with_product_data"] = {"engine": summary(e), "raw_get_json": summary(r)}
    e, r = alternate_with(lambda i: None, raw_get_same_bytes, raw_get, everything)
    reads["raw_same_bytes_compressed"] = {"raw_get_decompress_json": summary(e), "raw_get_json": summary(r)}
    e, r = alternate_with(l3_drop, engine_read("l3"), raw_select, everything, "l3")
    reads["l3"] = {"engine": summary(e), "raw_select": summary(r)}
    e, r = alternate_with(l3_drop, engine_read("l3_nocount", count_hit=False), raw_select, everything, "l3")
    reads["l3_no_hit_count"] = {"engine": summary(e), "raw_select": summary(r)}
    e, r = alternate_with(l3_drop, engine_read("l3_vs_cache_aside"), raw_cache_aside, everything, "l3")
    reads["l3_vs_raw_cache_aside"] = {"engine": summary(e), "raw_cache_aside": summary(r)}
    l2, memory.l2 = memory.l2, None  # L3 alone: no Redis miss before, no Redis fill after
    e, r = alternate_with(drop([memory.l1]), engine_read("l3_only"), raw_select, everything, "l3")
    reads["l3_without_redis"] = {"engine": summary(e), "raw_select": summary(r)}
    memory.l2 = l2
    warm = engine_read("warm")
    e, r = alternate_with(warm, engine_read("l1"), raw_get, everything, "l1")  # the first call fills L1
    reads["l1"] = {"engine": summary(e), "raw_get_json": summary(r)}
    e, r = alternate_with(warm, engine_read("l1_nocount", count_hit=False), raw_get, everything, "l1")
    reads["l1_no_hit_count"] = {"engine": summary(e), "raw_get_json": summary(r)}
    for name, row in reads.items():
        measured = row.get("engine") or row["raw_get_decompress_json"]
        row["ratio"] = ratio(measured, row.get("raw_select") or row.get("raw_cache_aside") or row["raw_get_json"])
    reads["l1_speedup_over_l2"] = round(reads["l2"]["engine"]["median_us"] / reads["l1"]["engine"]["median_us"], 1)
    reads["l1_speedup_over_l2_no_hit_count"] = round(
        reads["l2_no_hit_count"]["engine"]["median_us"] / reads["l1_no_hit_count"]["engine"]["median_us"], 1
    )
    reads["tiers_seen"] = dict(tiers_seen)
    results["reads"] = reads

    # -- whole loops ----------------------------------------------------------
    loop_indexes = range(min(args.loop, n))

    def raw_loop(raw_call):
        def run() -> float:
            gc.collect()
            started = time.perf_counter()
            for i in loop_indexes:
                raw_call(i)
            return time.perf_counter() - started
        return run

    def engine_loop(path: str, tier: str, count_hit: bool):
        """Every product of the loop once, served by ``tier``: L1 emptied (for L2) or filled (for L1)
        before the clock starts. A counted loop ends with the push of what is still buffered, so
        that each loop pays for all of its hits' counting, whenever the pusher's tick falls."""
        call = engine_read(path, count_hit=count_hit)

        def run() -> float:
            memory.l1.clear()
            if tier == "l1":
                for i in loop_indexes:
                    memory.get_product_data(ids[i], count_hit=False)
            hit_counter.push()
            gc.collect()
            started = time.perf_counter()
            for i in loop_indexes:
                call(i)
            if count_hit:
                hit_counter.push()
            return time.perf_counter() - started
        return run

    # Each memory loop is paired with a raw loop run right before it, as the calls above are:
    # the load of a shared machine moves within seconds, and both loops of a pair see the same.
    raw_get_loop = raw_loop(raw_get)
    loops = {
        "raw_get_decompress_json": raw_loop(raw_get_same_bytes),
        "l2_no_hit_count": engine_loop("loop_l2_nocount", "l2", False),
        "l2": engine_loop("loop_l2", "l2", True),
        "l1_no_hit_count": engine_loop("loop_l1_nocount", "l1", False),
        "l1": engine_loop("loop_l1", "l1", True),
    }
    per_hit: dict[str, list[float]] = {name: [] for name in ["raw_get_json", *loops]}
    ratios: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.loop_repeats):
        for name, run in loops.items():
            raw_seconds = raw_get_loop()
            seconds = run()
            per_hit["raw_get_json"].append(raw_seconds / len(loop_indexes))
            per_hit[name].append(seconds / len(loop_indexes))
            ratios[name].append(seconds / raw_seconds)
    whole: dict = {"products": len(loop_indexes), "repeats": args.loop_repeats}
    for name, values in per_hit.items():
        whole[name] = {"per_hit_us": round(statistics.median(values) * 1e6, 1),
                       "p10_us": round(sorted(values)[len(values) // 10] * 1e6, 1),
                       "p90_us": round(sorted(values)[len(values) * 9 // 10] * 1e6, 1)}
        whole[name]["ratio"] = round(statistics.median(ratios[name]), 2) if name in ratios else 1.0
    # L1 against L2: the ratio of their ratios, each against the raw loop of its own pair.
    for suffix in ("", "_no_hit_count"):
        whole["l1_speedup_over_l2" + suffix] = round(
            statistics.median(ratios["l2" + suffix]) / statistics.median(ratios["l1" + suffix]), 1
        )
    whole["tiers_seen"] = {k: v for k, v in tiers_seen.items() if k.startswith("loop_")}
    results["whole_loops"] = whole

    # -- batch check ------------------------------------------------------------
    any_sql = (
        "SELECT product_id, kind, payload, input_fingerprint, generator_version, tokens_prompt,"
        " tokens_completion, created_at, expires_at FROM memory_productmemoryentry"
        " WHERE kind = %s AND product_id = ANY(%s)"
    )
    engine_keys = [l2_cache.client.make_key(cache_key((pid, memory.kind))) for pid in ids]
    raw_keys = ["raw:" + pid for pid in ids]
    all_keys = [(pid, memory.kind) for pid in ids]

    def raw_batch() -> None:
        values = raw_redis.mget(raw_keys)
        [json.loads(v) for v in values if v is not None]
        raw_db.execute(any_sql, ("main_content", ids), prepare=True).fetchall()

    def raw_batch_same_bytes() -> None:
        values = raw_redis.mget(engine_keys)
        [json.loads(decompress(v)) for v in values if v is not None]
        raw_db.execute(any_sql, ("main_content", ids), prepare=True).fetchall()

    def engine_batch() -> None:
        answer = batch_check_products_in_memory(ids)
        assert sum(answer.values()) == n, "every product must be found"

    batch: dict = {}
    states = {
        "from_l2": lambda: memory.l1.clear(),
        "from_l3": lambda: (memory.l1.clear(), memory.l2.delete_many(all_keys)),
        "from_l1": lambda: None,  # what the previous state's fill left in L1
    }
    samples: dict[str, list[float]] = {name: [] for name in [*states, "raw", "raw_same_bytes"]}
    for _ in range(args.batch_repeats):
        for name, prepare in states.items():
            prepare()
            gc.collect()
            started = time.perf_counter()
            engine_batch()
            samples[name].append(time.perf_counter() - started)
        for name, call in (("raw", raw_batch), ("raw_same_bytes", raw_batch_same_bytes)):
            gc.collect()
            started = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - started)
    for name, values in samples.items():
        batch[name] = {"median_ms": round(statistics.median(values) * 1000, 1), "n": len(values)}
    for name in states:
        batch[name]["ratio"] = round(batch[name]["median_ms"] / batch["raw"]["median_ms"], 2)
    results["batch_check"] = batch

    path = save_results("side_by_side", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(f"resultados em {path}", file=sys.stderr)
    raw_db.close()


if __name__ == "__main__":
    main()
