"""Fill the ``bench`` database with realistic memory entries, fast, with PostgreSQL COPY.

Run by hand from the repository root::

    .venv/bin/python bench/fill_entries.py --rows 1000000            # active rows, FILL-0000000...
    .venv/bin/python bench/fill_entries.py --rows 1000000 --expired  # rows that expired yesterday
    .venv/bin/python bench/fill_entries.py --delete                  # remove every FILL-* row
    .venv/bin/python bench/fill_entries.py --rows 10000000 --expired-fraction 0.5 --spread-days 150 \
        --versions --rebuild-indexes                                 # bench/at_scale.py at 10M

Each row looks like what the generation stores: a ~3 KB pt-BR payload (title,
description, bullet points, SEO keywords) built from the product's own
attributes, its source data, a real input fingerprint, token counts between
600 and 2,400, some hits, and dates spread over the last 90 days. The rows go
in through one ``COPY ... FROM STDIN`` stream (psycopg 3 ``copy.write_row``),
without touching Redis: they are what a long-running memory holds in L3.

``--expired-fraction F`` makes that share of the rows expired, their ``expires_at`` spread
over the last ``--spread-days`` (the others over the next ``--spread-days``): monthly
partitions then hold whole months of expired rows. ``--versions`` gives each row its content
as its one version (as a save leaves it), copied from the row by one ``INSERT … SELECT``.
``--rebuild-indexes`` drops the table's indexes and unique constraint before the COPY and
builds them again after it (a bulk load's usual order; the times of both are reported).
``--partitioned`` (with ``MEMORY_PARTITION_BY_EXPIRY=monthly``, set by it) converts the table first
(``manage_memory partition``'s ``partitions.convert``, instant on an empty table) and creates the
months of the whole spread, so that the rows go to their months, not to the DEFAULT partition;
with ``--rebuild-indexes`` the key table (``memory_entry_key``) is filled after the COPY by one
``INSERT … SELECT``, its trigger off meanwhile, as the indexes are built after it.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import content_for, peak_rss_mb, product, setup_django  # noqa: E402

PREFIX = "FILL-"
COLUMNS = (
    "product_id", "kind", "payload", "source_data", "input_fingerprint", "generator_version",
    "tokens_prompt", "tokens_completion", "hit_count", "tokens_saved", "created_at", "updated_at",
    "last_hit_at", "expires_at",
)
# Contents are built for this many distinct products and given each row's own title and SKU:
# building 1M contents one by one would make the generator, not COPY, the bottleneck.
TEMPLATES = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--start", type=int, default=0, help="first row number (to add to an earlier fill)")
    parser.add_argument("--expired", action="store_true", help="rows whose expires_at has passed")
    parser.add_argument("--delete", action="store_true", help="delete every FILL-* row and stop")
    parser.add_argument("--expired-fraction", type=float, default=None,
                        help="share of rows expired, spread over the last --spread-days")
    parser.add_argument("--spread-days", type=int, default=150)
    parser.add_argument("--versions", action="store_true", help="each row's content as its one version")
    parser.add_argument("--rebuild-indexes", action="store_true", help="drop indexes before the COPY, build after")
    parser.add_argument("--partitioned", action="store_true", help="partition the table by expiry first")
    args = parser.parse_args()
    if args.partitioned:
        import os

        os.environ["MEMORY_PARTITION_BY_EXPIRY"] = "monthly"

    setup_django()
    import psycopg
    from django.conf import settings
    from django.db import connection

    from memory.engine.identifiers import input_fingerprint
    from memory.models import ContentVersion, ProductMemoryEntry
    from memory.providers.prompts import current_generator_version

    table = ProductMemoryEntry._meta.db_table
    db = settings.DATABASES["default"]
    conn = psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"])
    if args.delete:
        started = time.perf_counter()
        deleted = conn.execute(f"DELETE FROM {table} WHERE product_id LIKE %s", [PREFIX + "%"]).rowcount
        conn.commit()
        print(f"{deleted} linhas FILL-* removidas em {time.perf_counter() - started:.1f} s")
        return

    generator = current_generator_version()
    now = datetime.now(timezone.utc)
    if args.partitioned:
        from memory.engine import partitions

        if not partitions.is_partitioned():
            print("partitioned:", partitions.convert().rows, "rows converted", file=sys.stderr)
        months = args.spread_days // 28 + 2
        created = partitions.create_ahead(now - timedelta(days=args.spread_days + 1), months=months * 2)
        print(f"partitioned: {len(created)} months created", file=sys.stderr)
    rng = random.Random(args.start)
    templates = [content_for(product(i)) for i in range(TEMPLATES)]
    first_id = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
    rebuilt = drop_indexes(conn, table) if args.rebuild_indexes else []
    keys_after = args.partitioned and args.rebuild_indexes
    if keys_after:  # like the indexes: the key table's rows in one statement after the COPY
        from memory.engine import partitions

        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {partitions.KEY_TRIGGER}")
        conn.commit()
    spread = args.spread_days * 86400
    started = time.perf_counter()
    with conn.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for n in range(args.start, args.start + args.rows):
                data = product(n)
                data["sku"] = f"{PREFIX}{n:07d}"
                content = dict(templates[n % TEMPLATES])
                content["title"] = f"{data['title']} {data['brand']}"
                created = now - timedelta(seconds=rng.randint(0, 90 * 86400))
                if args.expired_fraction is not None:
                    expired = rng.random() < args.expired_fraction
                    expires = now + timedelta(seconds=rng.randint(1, spread) * (-1 if expired else 1))
                elif args.expired:
                    expires = now - timedelta(days=1, seconds=rng.randint(0, 86400))
                else:
                    expires = created + timedelta(days=90)
                prompt, completion = rng.randint(400, 900), rng.randint(200, 1500)
                hits = rng.choice((0, 0, 0, 1, 2, 3, 5, 8, 13, 40))
                copy.write_row((
                    data["sku"], "main_content", json.dumps(content), json.dumps(data), input_fingerprint(data),
                    generator, prompt, completion, hits, hits * (prompt + completion), created, created,
                    created + timedelta(days=1) if hits else None, expires,
                ))
                if (n - args.start + 1) % 100_000 == 0:
                    elapsed = time.perf_counter() - started
                    print(f"  {n - args.start + 1:>9,} linhas em {elapsed:6.1f} s", file=sys.stderr)
    conn.commit()
    copied = time.perf_counter() - started
    result = {"rows": args.rows, "expired": args.expired, "expired_fraction": args.expired_fraction,
              "copy_seconds": round(copied, 1), "rows_per_second": round(args.rows / copied)}
    if args.versions:
        started = time.perf_counter()
        versions = ContentVersion._meta.db_table
        conn.execute(
            f"INSERT INTO {versions} (entry_id, number, payload, origin, generator_version, tokens, author, created_at)"
            f" SELECT id, version, payload, origin, generator_version, tokens_prompt + tokens_completion, author,"
            f" updated_at FROM {table} WHERE id > %s", [first_id])
        conn.commit()
        result["versions_seconds"] = round(time.perf_counter() - started, 1)
    if keys_after:
        started = time.perf_counter()
        conn.execute(f"INSERT INTO {partitions.KEYS} (product_id, kind, entry_id)"
                     f" SELECT product_id, kind, id FROM {table} WHERE id > %s", [first_id])
        conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {partitions.KEY_TRIGGER}")
        conn.commit()
        result["key_table_seconds"] = round(time.perf_counter() - started, 1)
    if rebuilt:
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        for statement in rebuilt:
            conn.execute(statement)
        conn.commit()
        result["index_build_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    conn.autocommit = True
    conn.execute(f"ANALYZE {table}")
    if args.versions:
        conn.execute(f"ANALYZE {ContentVersion._meta.db_table}")
    result["analyze_seconds"] = round(time.perf_counter() - started, 1)
    conn.close()
    connection.close()
    print(json.dumps({**result, "peak_rss_mb": round(peak_rss_mb(), 1)}))


def drop_indexes(conn, table: str) -> list[str]:
    """Drop the table's indexes and constraints but its primary key (a partitioned table's too);
    returns the statements that build them again."""
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass"
        " AND contype = 'u'", [table]).fetchall()
    indexes = conn.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass AND NOT x.indisprimary"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)", [table]).fetchall()
    rebuild = []
    for name, definition in constraints:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for name, definition in indexes:
        conn.execute(f'DROP INDEX "{name}"')
        rebuild.append(definition.replace(" ON ONLY ", " ON "))
    conn.commit()
    return rebuild


if __name__ == "__main__":
    main()
