"""What checking an L2 value costs a hit: the decode of one stored entry, with and without the checks.

Run by hand (never collected by pytest), from the repository root::

    .venv/bin/python bench/l2_decode.py

No network: it encodes ``--products`` entries of ~3 KB pt-BR payload as the memory stores them
and times, call by call and alternating, the decode a hit does now (HMAC check, capped
decompression, strict JSON, ``Snapshot.from_stored``) beside the decode of the release before
(django-redis' ``decode`` of the same value unsigned, then ``Snapshot(**data)``). The
difference is what the checks add to every L2 hit; an L2 hit takes ~100-150 µs on a quiet
machine (docs/benchmarks.md).

Results go to ``var/bench/l2_decode.json`` and to stdout.
"""
from __future__ import annotations

import argparse
import gc
import hmac
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import content_for, machine, product, save_results, setup_django, summary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    setup_django()

    from django.core.cache import caches
    from django_redis.client import DefaultClient

    from memory.engine.tiers import Snapshot
    from memory.infra import redis

    client = caches["memory_l2"].client
    checked = redis.decode
    unchecked = DefaultClient.decode.__get__(client)  # django-redis' own, no signature, no limit
    values = []
    for n in range(args.products):
        data = product(n)
        snapshot = Snapshot(product_id=data["sku"], kind="main_content", payload=content_for(data),
                            input_fingerprint="f" * 64, generator_version="template:v1", tokens_prompt=900,
                            tokens_completion=700, created_at=time.time(), expires_at=time.time() + 86400)
        signed = redis.encode(snapshot.to_dict())
        values.append((snapshot.key, signed, signed[redis.SIGNATURE_BYTES:]))

    now_samples, before_samples, hmac_samples = [], [], []
    gc.disable()
    for _ in range(args.rounds):
        for key, signed, unsigned in values:
            start = time.perf_counter()
            Snapshot.from_stored(checked(signed), key)
            middle = time.perf_counter()
            Snapshot(**unchecked(unsigned))
            end = time.perf_counter()
            now_samples.append(middle - start)
            before_samples.append(end - middle)
            start = time.perf_counter()
            hmac.digest(client._signing_key(), unsigned, "sha256")
            hmac_samples.append(time.perf_counter() - start)
    gc.enable()
    now, before = summary(now_samples), summary(before_samples)
    results = {
        "machine": machine(),
        "products": args.products,
        "stored_bytes_median": sorted(len(v[1]) for v in values)[len(values) // 2],
        "decode_checked": now,
        "decode_unchecked": before,
        "hmac_alone": summary(hmac_samples),
        "added_per_hit_us": round(now["median_us"] - before["median_us"], 1),
    }
    print(json.dumps(results, indent=2, ensure_ascii=False))
    save_results("l2_decode", results)


if __name__ == "__main__":
    main()
