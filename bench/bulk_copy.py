"""Import at COPY speed: the same rows through ``manage_memory import``'s path with the ORM's
``bulk_create`` (before issue 19) and with ``COPY`` + one ``INSERT … ON CONFLICT`` (after), and a
raw ``psql \\copy`` of the same rows into a bare table, in one run; then the export of what was
imported (``write_export``, a server-side cursor).

Run by hand from the repository root (it empties the entries of the bench database)::

    .venv/bin/python bench/bulk_copy.py --rows 200000

The file is a JSONL export of ``--rows`` entries (payload ~3 KB, as the generation stores them,
no history). Each import starts from an empty table and goes through ``import_entries`` (one
pass: rows cleaned in its reader thread while the previous batch is written, in one transaction); the raw ``\\copy`` loads the same file's
columns as CSV into a table with no index. ``--partitioned`` imports the file once more into the
table partitioned by expiry (``manage_memory partition`` of the empty table, undone after). The
result is printed and saved to var/bench/.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import content_for, cpu_seconds, machine, peak_rss_mb, product, save_results, setup_django  # noqa: E402

BARE_TABLE = "bench_bulk_copy_bare"
BEFORE_ROWS_PER_S = 1300  # the figure for today's import


def write_files(rows: int, folder: Path) -> tuple[Path, Path]:
    jsonl, bare = folder / "entries.jsonl", folder / "entries.csv"
    with jsonl.open("w", encoding="utf-8") as out, bare.open("w", encoding="utf-8", newline="") as flat:
        writer = csv.writer(flat)
        for n in range(rows):
            data = product(n)
            payload = json.dumps(content_for(data), ensure_ascii=False)
            source = json.dumps(data, ensure_ascii=False)
            out.write(f'{{"product_id": "{data["sku"]}", "kind": "main", "payload": {payload}, "source_data": {source}}}\n')
            writer.writerow([data["sku"], "main", payload, source])
    return jsonl, bare


def empty_tables() -> None:
    """Entries and versions emptied by TRUNCATE: deleting the rows of each run would leave the next
    one a table (and TOAST) full of dead tuples, slower to write into."""
    from django.db import connection

    from memory.models import ContentVersion, ProductMemoryEntry

    from memory.engine import partitions

    tables = [ProductMemoryEntry._meta.db_table, ContentVersion._meta.db_table]
    with connection.cursor() as cursor:
        if partitions.has_key_table(cursor):
            tables.append(partitions.KEYS)
        cursor.execute(f"TRUNCATE {', '.join(tables)}")


def timed_import(path: Path, copy: bool) -> dict:
    from memory.engine.tiers import DatabaseTier
    from memory.io.importer import import_entries
    from memory.models import ProductMemoryEntry

    empty_tables()
    DatabaseTier.BULK_COPY = copy
    try:
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        report = import_entries(path, "jsonl")
        took = time.perf_counter() - started
        cpu = {side: round(used - cpu_before[side], 1) for side, used in cpu_seconds().items()}
    finally:
        DatabaseTier.BULK_COPY = True
    assert report.ok and report.created == ProductMemoryEntry.objects.count(), report.as_dict()
    return {"seconds": round(took, 3), "rows_per_s": round(report.created / took), "cpu_seconds": cpu}


def timed_export(path: Path, rows: int) -> dict:
    """``manage_memory export``'s path (a server-side cursor, EXPORT_CHUNK_ROWS at a time) of what
    the COPY import left."""
    from memory.io.export import write_export

    started = time.perf_counter()
    write_export("jsonl", path)
    took = time.perf_counter() - started
    return {"seconds": round(took, 3), "rows_per_s": round(rows / took), "mb": round(path.stat().st_size / 2**20, 1)}


def timed_raw_copy(path: Path, rows: int) -> dict:
    from django.db import connection

    params = connection.get_connection_params()
    env = {**os.environ, "PGHOST": str(params.get("host") or "127.0.0.1"), "PGPORT": str(params.get("port") or 5432),
           "PGUSER": str(params.get("user") or "postgres"), "PGDATABASE": params["dbname"]}
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    psql = ["psql", "-v", "ON_ERROR_STOP=1", "-q", "-X"]
    subprocess.run([*psql, "-c", f"DROP TABLE IF EXISTS {BARE_TABLE}; CREATE TABLE {BARE_TABLE}"
                    " (product_id text, kind text, payload jsonb, source_data jsonb)"], env=env, check=True)
    try:
        started = time.perf_counter()
        subprocess.run([*psql, "-c", f"\\copy {BARE_TABLE} FROM '{path}' CSV"], env=env, check=True)
        took = time.perf_counter() - started
    finally:
        subprocess.run([*psql, "-c", f"DROP TABLE IF EXISTS {BARE_TABLE}"], env=env, check=True)
    return {"seconds": round(took, 3), "rows_per_s": round(rows / took)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--skip-before", action="store_true", help="no bulk_create run (the slow one)")
    parser.add_argument("--partitioned", action="store_true",
                        help="also import into the table partitioned by expiry (converted empty, undone after)")
    args = parser.parse_args()
    if args.rows < 1:
        sys.exit("bulk_copy: --rows deve ser um número inteiro de 1 para cima")
    if args.partitioned:
        os.environ["MEMORY_PARTITION_BY_EXPIRY"] = "monthly"
    setup_django()
    from memory.models import ProductMemoryEntry

    with tempfile.TemporaryDirectory(prefix="bulk-copy-") as folder:
        jsonl, bare = write_files(args.rows, Path(folder))
        os.chmod(folder, 0o755)  # psql's \copy reads it as this user; nothing else needs to
        results = {"rows": args.rows, "file_mb": round(jsonl.stat().st_size / 2**20, 1), "machine": machine(),
                   "load_before": os.getloadavg()}
        if not args.skip_before:
            results["import_bulk_create"] = timed_import(jsonl, copy=False)
        results["import_copy"] = timed_import(jsonl, copy=True)
        results["export_jsonl"] = timed_export(Path(folder) / "export.jsonl", args.rows)
        if args.partitioned:
            from memory.engine import partitions

            empty_tables()
            partitions.convert()
            try:
                results["import_copy_partitioned"] = timed_import(jsonl, copy=True)
            finally:
                empty_tables()
                partitions.undo()
        results["raw_psql_copy"] = timed_raw_copy(bare, args.rows)
    empty_tables()
    results["load_after"] = os.getloadavg()
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)
    after = results["import_copy"]
    results["copy_vs_issue_baseline"] = round(after["rows_per_s"] / BEFORE_ROWS_PER_S, 1)
    if "import_bulk_create" in results:
        results["copy_vs_bulk_create"] = round(after["rows_per_s"] / results["import_bulk_create"]["rows_per_s"], 1)
    results["copy_time_vs_raw_copy"] = round(after["seconds"] / results["raw_psql_copy"]["seconds"], 1)
    if "import_copy_partitioned" in results:
        results["partitioned_time_vs_raw_copy"] = round(
            results["import_copy_partitioned"]["seconds"] / results["raw_psql_copy"]["seconds"], 1)
    print(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    print(f"resultados em {save_results('bulk_copy', results)}", file=sys.stderr)


if __name__ == "__main__":
    main()
