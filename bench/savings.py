"""The savings figure: tokens spent and saved, and the time of catalog runs, cold and warm.

Run by hand from the repository root::

    .venv/bin/python bench/savings.py                     # samples/catalog.csv, 300-800 ms per generation

It starts ``bench/fake_openai_server.py`` on a free loopback port, forgets the
sample catalog's products in the ``bench`` database and Redis db 8, and runs
``manage.py generate_content ... --json`` four times, exactly as a person
would, with ``LLM_PROVIDER=openai OPENAI_BASE_URL=http://127.0.0.1:PORT/v1``:

1. ``cold``: the catalog with an empty memory;
2. ``warm``: the same catalog again;
3. ``changed``: a second import where 90% of the products are unchanged and
   every tenth row has a new price (so its source data, and fingerprint,
   changed and its content is regenerated);
4. ``warm_again``: the changed catalog once more.

Tokens saved count both ways the memory avoids a call: a hit, and a variant derived from its
family's base content (``tokens_saved_by_family``: what generating it on its own would have cost).

For each run it records the wall time, the command's own summary (reused,
generated, regenerated, tokens spent and saved) and what the fake server
billed. Results go to ``var/bench/savings.json``.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (  # noqa: E402
    RESULTS_DIR, ROOT, fake_openai, forget_catalog, machine, run_catalog, save_results, setup_django,
)

CATALOG = ROOT / "samples" / "catalog.csv"


def changed_catalog(path: Path) -> tuple[Path, int]:
    """The catalog with a new price on every tenth row: 90% unchanged."""
    with CATALOG.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    changed = 0
    for number, row in enumerate(rows):
        if number % 10 == 9:
            row["price"] = f"{float(row['price']) * 0.9:.2f}"
            changed += 1
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path, changed


def main() -> None:
    setup_django()
    from django.db import connection

    from memory.io.catalog import read_catalog
    from memory.engine.identifiers import extract_product_identifier

    products = [r.product for r in read_catalog(CATALOG) if r.product]
    ids = sorted({extract_product_identifier(p) for p in products})
    forget_catalog(products)
    connection.close()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    changed_path, changed_rows = changed_catalog(RESULTS_DIR / "catalog_changed.csv")

    results: dict = {"machine": machine(), "catalog": str(CATALOG.relative_to(ROOT)), "distinct_products": len(ids),
                     "changed_rows": changed_rows, "llm_delay_s": [0.3, 0.8],
                     "llm_max_concurrency": int(os.environ.get("LLM_MAX_CONCURRENCY", 4)), "runs": {}}
    with fake_openai(max_seconds=900) as (port, env):
        for name, path in (("cold", CATALOG), ("warm", CATALOG), ("changed", changed_path),
                           ("warm_again", changed_path)):
            seconds, exit_code, summary, billed = run_catalog(path, port, env, timeout=600)
            run = {
                "seconds": round(seconds, 2),
                "exit_code": exit_code,
                **{k: summary[k] for k in ("products", "reused", "generated", "stale_regenerated", "failed",
                                           "tokens_spent", "tokens_saved", "tokens_saved_by_family",
                                           "estimated_cost_saved_usd")},
                **billed,
            }
            # Saved: by hits, and by variants derived from their family's base instead of generated.
            saved = run["tokens_saved"] + run["tokens_saved_by_family"]
            asked = run["tokens_spent"] + saved
            run["saving_rate"] = round(saved / asked, 3) if asked else 0.0
            served = run["reused"] + run["generated"] + run["stale_regenerated"]
            run["hit_rate"] = round(run["reused"] / served, 3) if served else 0.0
            results["runs"][name] = run
            print(name, run, file=sys.stderr)

    runs = results["runs"]
    two_imports = [runs["cold"], runs["changed"]]
    spent = sum(r["tokens_spent"] for r in two_imports)
    saved = sum(r["tokens_saved"] + r["tokens_saved_by_family"] for r in two_imports)
    results["first_import_then_90pct_unchanged"] = {
        "tokens_spent": spent, "tokens_saved": saved,
        "saving_rate": round(saved / (spent + saved), 3) if spent + saved else 0.0,
        "tokens_without_memory": spent + saved,
    }
    results["warm_speedup"] = round(runs["cold"]["seconds"] / runs["warm"]["seconds"], 1)
    path = save_results("savings", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2, ensure_ascii=False))
    print(f"resultados em {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
