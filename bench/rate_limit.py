"""The deployment's rate limit under a cold catalog run: calls per minute achieved, and the most
that ever started in one 60-second window, as the provider saw them.

Run by hand from the repository root (it takes about ``products / rpm`` minutes)::

    .venv/bin/python bench/rate_limit.py                 # 2,000 products, LLM_RPM=600, 400 ms a call
    .venv/bin/python bench/rate_limit.py --processes 3   # the same products split over three processes

It starts ``bench/fake_openai_server.py`` on a free loopback port with a fixed delay, forgets
the products in the bench database and Redis, and runs ``generate_batch`` (the path of
``batch_generate_main_content_task`` and ``generate_content``) in ``--processes`` processes of
their own, with ``LLM_PROVIDER=openai``, ``LLM_RPM`` and ``LLM_MAX_CONCURRENCY`` set, and Redis
holding the one limit they share. From the arrival time of each request at the server it
computes the most requests in any window ``[t, t + 60 s)`` (which must not exceed ``LLM_RPM``),
the rate over the run (requests / (last arrival - first arrival) x 60 s, the first minute's
burst excluded: the limit paces evenly, so there is none) and the failures the runs reported.
Results go to ``var/bench/rate_limit.json``.

Stores as for every bench script (``bench/common.py``); ``BENCH_ALLOW_ANY_STORE=1`` with
``DATABASE_URL``/``REDIS_URL`` points it at others.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, machine, product, save_results, setup_django  # noqa: E402

WINDOW = 60.0


def most_in_any_window(times: list[float], window: float = WINDOW) -> int:
    """The most of ``times`` inside one half-open window ``[t, t + window)``."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def server_stats(port: int, arrivals: bool = False) -> dict:
    url = f"http://127.0.0.1:{port}/v1/stats" + ("?arrivals=1" if arrivals else "")
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def worker(first: int, count: int, batch_size: int) -> None:
    """One process's share: products ``first`` .. ``first + count - 1`` through ``generate_batch``."""
    setup_django()
    from memory.services.generation import generate_batch

    products = [product(n) for n in range(first, first + count)]
    started = time.time()
    summary = {"generated": 0, "reused": 0, "failed": 0, "errors": []}
    for start in range(0, len(products), 1000):  # generate_batch takes up to 1,000 products a call
        result = generate_batch(products[start:start + 1000], batch_size=batch_size).summary()
        summary["generated"] += result["generated"] + result["regenerated_stale"]
        summary["reused"] += result["reused"]
        summary["failed"] += result["failed"]
        summary["errors"] += [p["error"] for p in result["products"] if p.get("error")][:3]
    summary["seconds"] = round(time.time() - started, 1)
    print(json.dumps(summary), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--latency", type=float, default=0.4, help="seconds the fake LLM takes per call")
    parser.add_argument("--concurrency", type=int, default=16, help="LLM_MAX_CONCURRENCY of each process")
    parser.add_argument("--batch-size", type=int, default=1000, help="generate_batch's batch_size (its chunk)")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--name", default="rate_limit", help="results file: var/bench/NAME.json")
    parser.add_argument("--worker", nargs=2, type=int, metavar=("FIRST", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.batch_size)
        return

    setup_django()
    from django.db import connection

    from memory.engine.identifiers import extract_product_identifier
    from memory.engine.memory import ProductMemory
    from memory.infra import redis
    from memory.models import ProductMemoryEntry

    ids = [extract_product_identifier(product(n)) for n in range(args.products)]
    ProductMemoryEntry.objects.filter(product_id__in=ids).delete()
    memory = ProductMemory()
    memory.evict([(pid, memory.kind) for pid in ids])
    redis.run(lambda: redis.client().delete(*[redis.make_key(f"llm:{k}") for k in
                                                ("rate:next", "rate:tokens", "breaker:open", "breaker:failures")]))
    facts = machine()
    connection.close()

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_openai_server.py"), "--port", str(port),
         "--min-delay", str(args.latency), "--max-delay", str(args.latency), "--max-seconds", "3600"],
        cwd=ROOT, stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
           "OPENAI_API_KEY": "bench", "LLM_RPM": str(args.rpm), "LLM_TPM": "0",
           "LLM_MAX_CONCURRENCY": str(args.concurrency), "MEMORY_LOG_LEVEL": "WARNING"}
    try:
        for _ in range(100):
            try:
                server_stats(port)
                break
            except OSError:
                time.sleep(0.1)
        share = -(-args.products // args.processes)
        started = time.time()
        workers = [
            subprocess.Popen([sys.executable, __file__, "--worker", str(first), str(min(share, args.products - first)),
                              "--batch-size", str(args.batch_size)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for first in range(0, args.products, share)
        ]
        summaries = [json.loads(w.communicate()[0].splitlines()[-1]) for w in workers]
        wall = time.time() - started
        arrivals = sorted(server_stats(port, arrivals=True)["arrivals"])
    finally:
        server.terminate()
        server.wait(10)

    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    per_minute = (len(arrivals) - 1) / span * 60 if span else 0.0
    full_minutes = [sum(1 for a in arrivals if arrivals[0] + m * WINDOW <= a < arrivals[0] + (m + 1) * WINDOW)
                    for m in range(int(span // WINDOW))]
    results = {
        "machine": facts,
        "products": args.products, "processes": args.processes, "llm_rpm": args.rpm,
        "llm_latency_s": args.latency, "llm_max_concurrency": args.concurrency, "batch_size": args.batch_size,
        "requests": len(arrivals),
        "generated": sum(s["generated"] for s in summaries),
        "failed": sum(s["failed"] for s in summaries),
        "errors": [e for s in summaries for e in s["errors"]][:5],
        "wall_seconds": round(wall, 1),
        "arrival_span_seconds": round(span, 1),
        "calls_per_minute": round(per_minute, 1),
        "share_of_limit": round(per_minute / args.rpm, 4) if args.rpm else None,
        "most_in_any_60s_window": most_in_any_window(arrivals),
        "calls_in_each_full_minute": full_minutes,
    }
    path = save_results(args.name, results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2, ensure_ascii=False))
    print(f"-> {path.relative_to(ROOT)}", file=sys.stderr)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
