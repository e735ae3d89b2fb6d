"""The memory at 1M or 10M entries in PostgreSQL: admin, batch checks, export, import, purge, stats, sizes.

Run by hand from the repository root, after ``bench/fill_entries.py --rows 1000000``::

    .venv/bin/python bench/at_scale.py                      # every step but the purge
    .venv/bin/python bench/at_scale.py --only purge         # needs expired rows (fill --expired)
    .venv/bin/python bench/at_scale.py --only sizes,admin   # some steps

At 10M (issue 19; ~45 GB with the versions)::

    .venv/bin/python bench/fill_entries.py --rows 10000000 --expired-fraction 0.5 --versions --rebuild-indexes
    .venv/bin/python bench/at_scale.py --only sizes,admin,batch,stats,export_stream,import,purge --drop-database

Steps (results in ``var/bench/at_scale-<steps>.json``):

``sizes``   table, TOAST and index sizes (``pg_*_size``), row estimate.
``admin``   the admin changelist (first page, a filter, sort by title) and its
            search (by product_id prefix, by a word of the title, a miss) through
            Django's test ``Client`` logged in as a superuser: server time, median
            of 5 after one warm-up, and the SQL statements each page ran.
``stats``   ``memory_stats()`` and ``GET /api/memory/stats/``: the first call
            (cold stats cache) and the median of the next 5.
``export``  ``GET /api/memory/export/?format=jsonl`` through gunicorn (1 sync
            worker, curl to /dev/null): time, bytes, rows/s, the worker's peak RSS
            (VmHWM); and ``manage.py manage_memory export --format jsonl``
            into a file: time, rows/s, peak RSS of the command.
``import``  ``manage_memory import`` of 100,000 exported rows as new products
            (``IMP-*``; deleted afterwards) and as updates of existing ones.
``batch``   the cold batch check of a generation run: ``ProductMemory.lookup_many`` of
            10,000 random products with L1 and Redis emptied first (three sets).
``export_stream``  the export's own stream (``iter_export("jsonl")``, a server-side
            cursor) over its first ``--export-rows`` rows: rows/s, MB/s, peak RSS. At 10M
            a whole export is ~35 GB: the API and command ``export`` step takes that long.
``purge``   ``memory.services.purge.purge_expired()`` over every expired row:
            total time, batches, the longest batch and the longest single SQL
            statement (a ``connection.execute_wrapper`` times each one).
``purge_keyset``  the same with ``bench.what_if.purge_expired_keyset`` (the
            proposal: each batch's SELECT starts at the last expires_at).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import RESULTS_DIR, ROOT, machine, save_results, setup_django  # noqa: E402

STEPS = ("sizes", "admin", "batch", "stats", "export", "export_stream", "import", "purge", "purge_keyset")
BATCH_CHECK = 10_000
IMPORT_ROWS = 100_000


def median_ms(func, repeats: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1), [round(t, 1) for t in times]


def exact_count(model) -> int:
    """The bench's own count of a table, past ``DB_STATEMENT_TIMEOUT`` (a full scan at 10M rows)."""
    from django.db import connection, transaction

    from memory.infra.postgresql import base as postgresql

    with transaction.atomic(), postgresql.unbounded(connection), connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(model._meta.db_table)}")
        return cursor.fetchone()[0]


def step_sizes() -> dict:
    from django.db import connection

    from memory.models import ContentVersion, ProductMemoryEntry

    mb = lambda b: round(b / 1024 / 1024, 1)  # noqa: E731
    results = {}
    for model in (ProductMemoryEntry, ContentVersion):
        name = model._meta.db_table
        with connection.cursor() as cursor:
            # a partitioned table's sizes are its partitions' (pg_partition_tree; a plain table is its own tree)
            tree = ("(SELECT relid, isleaf FROM pg_partition_tree(%s::regclass) UNION ALL SELECT %s::regclass, true"
                    " WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree(%s::regclass)))")
            cursor.execute(
                "SELECT sum(pg_table_size(t.relid))::bigint, sum(pg_indexes_size(t.relid))::bigint,"
                " sum(pg_total_relation_size(t.relid))::bigint,"
                " sum(coalesce(pg_total_relation_size(c.reltoastrelid), 0))::bigint, sum(greatest(c.reltuples, 0))::bigint,"
                f" count(*) FILTER (WHERE t.isleaf) FROM {tree} t JOIN pg_class c ON c.oid = t.relid", [name] * 3)
            table, indexes, total, toast, estimate, leaves = cursor.fetchone()
            cursor.execute(
                f"SELECT i.relname, sum(pg_relation_size(x.indexrelid))::bigint FROM {tree} t"
                " JOIN pg_index x ON x.indrelid = t.relid"
                " JOIN pg_class i ON i.oid = coalesce((SELECT a.inhparent FROM pg_inherits a"
                "  WHERE a.inhrelid = x.indexrelid AND a.inhparent IN (SELECT indexrelid FROM pg_index"
                "  WHERE indrelid = %s::regclass)), x.indexrelid)"
                " GROUP BY i.relname ORDER BY 2 DESC", [name] * 4)
            per_index = {index: size for index, size in cursor.fetchall()}
        rows = exact_count(model)
        results[name] = {
            "rows": rows, "reltuples_estimate": estimate, "partitions": leaves if leaves > 1 else 0,
            "table_mb_with_toast": mb(table), "toast_mb": mb(toast), "indexes_mb": mb(indexes),
            "total_mb": mb(total), "per_index_mb": {k: mb(v) for k, v in per_index.items()},
            "bytes_per_row_total": round(total / rows) if rows else None,
        }
    return results


def step_admin() -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    base = "/admin/memory/productmemoryentry/"
    pages = {
        "changelist": base,
        "changelist_page_100": base + "?p=100",
        "filter_status_active": base + "?status=active",
        "sort_by_title": base + "?o=2",
        "search_product_id": base + "?q=FILL-0500",
        "search_title_word": base + "?q=Garrafa",
        "search_no_match": base + "?q=inexistente-xyz",
    }
    results = {}
    for name, url in pages.items():
        def get():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
        ms, times = median_ms(get)
        with CaptureQueriesContext(connection) as queries:
            get()
        slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
        results[name] = {"url": url, "median_ms": ms, "times_ms": times, "queries": len(queries),
                         "slowest_query_ms": round(float(slowest["time"]) * 1000, 1),
                         "slowest_query": slowest["sql"][:300]}
        print(name, ms, "ms", file=sys.stderr)
    return results


def step_stats() -> dict:
    from django.contrib.auth import get_user_model
    from django.test import override_settings
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from memory.engine.memory import forget_cached_stats
    from memory.services.stats import memory_stats

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    def api():
        assert client.get("/api/memory/stats/").status_code == 200

    results = {}
    for label, func in (("memory_stats", memory_stats), ("api_stats", api)):
        forget_cached_stats()  # the first call counts (a write through the memory would do the same)
        started = time.perf_counter()
        func()
        first = round((time.perf_counter() - started) * 1000, 1)
        ms, times = median_ms(func, warmup=0)
        results[label] = {"first_call_ms": first, "next_calls_median_ms": ms, "times_ms": times}
        with override_settings(MEMORY_STATS_CACHE_SECONDS=0):
            ms, times = median_ms(func, repeats=3, warmup=0)
        results[label]["without_cache_median_ms"] = ms
        print(label, results[label], file=sys.stderr)
    return results


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_measured(args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command; return it, its wall time and its own peak RSS in MB.

    A fresh Python parent whose only child is the command reports the
    command's ``ru_maxrss``, not that of anything else this script started.
    """
    probe = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(done.returncode)"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.perf_counter() - started
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return done, seconds, round(peak_kb / 1024, 1)


def step_export(rows: int) -> dict:
    from rest_framework.authtoken.models import Token
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    token, _ = Token.objects.get_or_create(user=user)
    results = {}

    # -- by API, through gunicorn -------------------------------------------------
    port = free_port()
    log = open(RESULTS_DIR / "gunicorn-export.log", "w")
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "beecatalog.wsgi:application", "-w", "1",
         "-b", f"127.0.0.1:{port}", "--timeout", "900", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "beecatalog.settings"},
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(1.0)
        worker = int(subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()[0])
        before = vm_hwm_mb(worker)
        started = time.perf_counter()
        curl = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--max-time", "900",
             "-H", f"Authorization: Token {token.key}", f"http://127.0.0.1:{port}/api/memory/export/?format=jsonl"],
            capture_output=True, text=True, timeout=960,
        )
        seconds = time.perf_counter() - started
        status, size = curl.stdout.split()
        results["api_jsonl"] = {
            "http_status": int(status), "seconds": round(seconds, 1), "mb": round(int(size) / 1024 / 1024, 1),
            "rows_per_second": round(rows / seconds), "worker_rss_before_mb": before,
            "worker_peak_rss_mb": vm_hwm_mb(worker),
        }
        print("api export", results["api_jsonl"], file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)

    # -- by command -------------------------------------------------------------------
    out = RESULTS_DIR / "export.jsonl"
    done, seconds, peak = run_measured(
        [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "manage_memory", "export", "--format", "jsonl",
         "--output-file", str(out)], timeout=960,
    )
    lines = sum(1 for _ in out.open("rb"))
    results["command_jsonl"] = {
        "exit_code": done.returncode, "seconds": round(seconds, 1), "rows_written": lines,
        "mb": round(out.stat().st_size / 1024 / 1024, 1), "rows_per_second": round(lines / seconds),
        "peak_rss_mb": peak, "stderr_tail": done.stderr[-300:],
    }
    print("command export", results["command_jsonl"], file=sys.stderr)
    return results


def step_batch(rows: int) -> dict:
    import random
    from collections import Counter

    from django.core.cache import caches

    from bench.fill_entries import PREFIX
    from memory.engine.memory import ProductMemory
    from memory.infra import redis

    results = []
    for seed in range(3):
        products = [f"{PREFIX}{n:07d}" for n in random.Random(seed).sample(range(rows), BATCH_CHECK)]
        caches["memory_l1"].clear()
        if redis.configured():
            caches["default"].clear()
        started = time.perf_counter()
        found = ProductMemory().lookup_many(products, count_hits=False)
        seconds = time.perf_counter() - started
        statuses = Counter(lookup.status for lookup in found.values())
        results.append({"seconds": round(seconds, 3), "statuses": dict(statuses),
                        "us_per_product": round(seconds / BATCH_CHECK * 1e6, 1)})
        print("batch", results[-1], file=sys.stderr)
    return {"products": BATCH_CHECK, "runs": results, "median_seconds": statistics.median(r["seconds"] for r in results)}


def step_export_stream(limit: int) -> dict:
    import resource

    from memory.io.export import iter_export

    size = rows = 0
    started = time.perf_counter()
    stream = iter_export("jsonl")
    for chunk in stream:
        size += len(chunk.encode() if isinstance(chunk, str) else chunk)
        rows += chunk.count("\n") if isinstance(chunk, str) else chunk.count(b"\n")
        if rows >= limit:
            break
    stream.close()
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 1), "rows_per_second": round(rows / seconds),
            "mb_per_second": round(size / seconds / 2**20, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def write_import_files() -> tuple[Path, Path, int]:
    """IMPORT_ROWS rows of the export (updates) and the same as new products (``IMP-*``)."""
    from memory.io.export import iter_export

    updates = RESULTS_DIR / "import-updates.jsonl"
    inserts = RESULTS_DIR / "import-inserts.jsonl"
    written = 0
    with updates.open("w", encoding="utf-8") as upd, inserts.open("w", encoding="utf-8") as ins:
        stream = iter_export("jsonl")
        for chunk in stream:
            for line in chunk.splitlines():
                if written >= IMPORT_ROWS:
                    break
                upd.write(line + "\n")
                row = json.loads(line)
                row["product_id"] = "IMP-" + row["product_id"]
                ins.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
            if written >= IMPORT_ROWS:
                break
        stream.close()
    return updates, inserts, written


def step_import() -> dict:
    from memory.models import ProductMemoryEntry

    updates, inserts, rows = write_import_files()
    ProductMemoryEntry.objects.filter(product_id__startswith="IMP-").delete()
    results = {}
    for name, path in (("new_rows", inserts), ("existing_rows", updates)):
        done, seconds, peak = run_measured(
            [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "manage_memory", "import", "--input-file",
             str(path), "--json"], timeout=1200,
        )
        results[name] = {
            "exit_code": done.returncode, "rows": rows, "seconds": round(seconds, 1),
            "rows_per_second": round(rows / seconds), "peak_rss_mb": peak,
            "output_tail": (done.stdout + done.stderr)[-400:],
        }
        print("import", name, results[name], file=sys.stderr)
    started = time.perf_counter()
    deleted, _ = ProductMemoryEntry.objects.filter(product_id__startswith="IMP-").delete()
    results["cleanup_deleted"] = deleted
    results["cleanup_seconds"] = round(time.perf_counter() - started, 1)
    return results


def step_purge(batch_size: int, keyset: bool = False) -> dict:
    from django.db import connection
    from django.utils import timezone

    from memory.services.purge import purge_expired
    from memory.models import ProductMemoryEntry

    expired = ProductMemoryEntry.objects.filter(expires_at__lte=timezone.now()).count()
    statements: list[tuple[float, str]] = []

    def timer(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append(((time.perf_counter() - started) * 1000, sql))

    if keyset:
        from bench.what_if import purge_expired_keyset as purge_expired
    with connection.execute_wrapper(timer):
        result = purge_expired(batch_size=batch_size)
    longest = max(statements)
    slowest = sorted(range(len(statements)), key=lambda i: statements[i][0], reverse=True)[:5]
    by_kind: dict[str, list[float]] = {}
    for ms, sql in statements:
        by_kind.setdefault(sql.split()[0].upper(), []).append(ms)
    return {
        "expired_before": expired, **result.as_dict(),
        "statements": len(statements),
        "batch_size": batch_size,
        "longest_statement_ms": round(longest[0], 1), "longest_statement": longest[1][:200],
        "slowest_statements": [
            {"position": i, "ms": round(statements[i][0], 1), "sql": statements[i][1][:40]} for i in slowest
        ],
        "statements_over_1s": sum(1 for ms, _ in statements if ms >= 1000),
        "median_ms_by_statement": {k: round(statistics.median(v), 1) for k, v in by_kind.items()},
        "max_ms_by_statement": {k: round(max(v), 1) for k, v in by_kind.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated steps among {', '.join(STEPS)}")
    parser.add_argument("--purge-batch-size", type=int, default=5000, help="batch_size of purge_expired")
    parser.add_argument("--export-rows", type=int, default=1_000_000, help="rows the export_stream step reads")
    parser.add_argument("--drop-database", action="store_true", help="drop the bench database at the end")
    args = parser.parse_args()
    steps = args.only.split(",") if args.only else [s for s in STEPS if s != "purge"]
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise SystemExit(f"--only: passos desconhecidos {sorted(unknown)}; use {', '.join(STEPS)}")
    setup_django()
    from memory.models import ProductMemoryEntry

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    rows = exact_count(ProductMemoryEntry)
    results: dict = {"machine": machine(), "rows_at_start": rows}
    for step in steps:
        started = time.perf_counter()
        if step == "export":
            results[step] = step_export(rows)
        elif step == "batch":
            results[step] = step_batch(rows)
        elif step == "export_stream":
            results[step] = step_export_stream(args.export_rows)
        elif step in ("purge", "purge_keyset"):
            results[step] = step_purge(args.purge_batch_size, keyset=step == "purge_keyset")
        else:
            results[step] = globals()[f"step_{step}"]()
        results[step + "_step_seconds"] = round(time.perf_counter() - started, 1)
        save_results("at_scale-" + "-".join(steps), results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2, ensure_ascii=False))
    if args.drop_database:
        drop_bench_database()


def drop_bench_database() -> None:
    """The bench database goes (10M rows are ~45 GB), from the server's ``postgres`` database."""
    import psycopg
    from django.db import connection, connections

    params = connection.get_connection_params()
    name = params["dbname"]
    connections.close_all()
    admin = {key: value for key, value in params.items() if key in {"host", "port", "user", "password"}}
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as server:
        server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    print(f"bench: dropped the database {name!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
