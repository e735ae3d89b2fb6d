"""Fill the ``bench`` database with realistic memory entries, fast, with PostgreSQL COPY.

Run by hand from the repository root::

    .venv/bin/python bench/fill_entries.py --rows 1000000            # active rows, FILL-0000000...
    .venv/bin/python bench/fill_entries.py --rows 1000000 --expired  # rows that expired yesterday
    .venv/bin/python bench/fill_entries.py --delete                  # remove every FILL-* row

Each row looks like what the generation stores: a ~3 KB pt-BR payload (title,
description, bullet points, SEO keywords) built from the product's own
attributes, its source data, a real input fingerprint, token counts between
600 and 2,400, some hits, and dates spread over the last 90 days. The rows go
in through one ``COPY ... FROM STDIN`` stream (psycopg 3 ``copy.write_row``),
without touching Redis: they are what a long-running memory holds in L3.
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
    args = parser.parse_args()

    setup_django()
    import psycopg
    from django.conf import settings
    from django.db import connection

    from memory.engine.identifiers import input_fingerprint
    from memory.models import ProductMemoryEntry
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
    rng = random.Random(args.start)
    templates = [content_for(product(i)) for i in range(TEMPLATES)]
    started = time.perf_counter()
    with conn.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for n in range(args.start, args.start + args.rows):
                data = product(n)
                data["sku"] = f"{PREFIX}{n:07d}"
                content = dict(templates[n % TEMPLATES])
                content["title"] = f"{data['title']} {data['brand']}"
                created = now - timedelta(seconds=rng.randint(0, 90 * 86400))
                if args.expired:
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
    started = time.perf_counter()
    conn.autocommit = True
    conn.execute(f"ANALYZE {table}")
    analyzed = time.perf_counter() - started
    conn.close()
    connection.close()
    print(json.dumps({
        "rows": args.rows, "expired": args.expired, "copy_seconds": round(copied, 1),
        "rows_per_second": round(args.rows / copied), "analyze_seconds": round(analyzed, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }))


if __name__ == "__main__":
    main()
