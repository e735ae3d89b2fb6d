"""Variant families: what the sample catalog's cold run costs with its family column and without it.

Run by hand from the repository root::

    .venv/bin/python bench/families.py          # samples/catalog.csv, 300-800 ms per generation

It starts ``bench/fake_openai_server.py`` on a free loopback port and runs ``manage.py
generate_content ... --json`` as a person would (``LLM_PROVIDER=openai``), each time after
forgetting the catalog's products and their families' bases:

1. ``without_families``: the catalog without its ``parent_sku`` column (every SKU on its own);
2. ``with_families``: the catalog as it is (``MEMORY_FAMILY_MODE=derive``, the default);
3. ``with_families_ask``: the same, ``MEMORY_FAMILY_MODE=ask`` (a short call per variant);

and, on the memory the ``with_families`` run left (run again after it):

4. ``shared_change``: one family's brand renamed in all its rows;
5. ``variant_change``: one variant's colour changed.

For each run: wall time, the command's summary and what the fake server billed. The figure is
the tokens billed with families over without (target: at most 35%). Results go to
``var/bench/families.json``.
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
TARGET = 0.35


def read_rows() -> tuple[list[str], list[dict]]:
    with CATALOG.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def write_rows(path: Path, fields: list[str], rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def variants_of_the_largest_family(rows: list[dict]) -> str:
    sizes: dict[str, int] = {}
    for row in rows:
        if row["parent_sku"]:
            sizes[row["parent_sku"]] = sizes.get(row["parent_sku"], 0) + 1
    return max(sorted(sizes), key=sizes.get)


def catalogs() -> dict[str, tuple[Path, dict]]:
    """The catalog files of each run: (path, what changed)."""
    fields, rows = read_rows()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    without = write_rows(RESULTS_DIR / "catalog_without_families.csv", [f for f in fields if f != "parent_sku"],
                         [{k: v for k, v in r.items() if k != "parent_sku"} for r in rows])
    family = variants_of_the_largest_family(rows)
    renamed = [{**r, "brand": r["brand"] + " Pro"} if r["parent_sku"] == family else r for r in rows]
    shared = write_rows(RESULTS_DIR / "catalog_shared_change.csv", fields, renamed)
    first = next(i for i, r in enumerate(renamed) if r["parent_sku"] == family and r["color"])
    recoloured = list(renamed)
    old = recoloured[first]["color"]
    recoloured[first] = {**recoloured[first], "color": "Lilás", "title": recoloured[first]["title"].replace(old, "Lilás")}
    variant = write_rows(RESULTS_DIR / "catalog_variant_change.csv", fields, recoloured)
    return {
        "without_families": (without, {}),
        "with_families": (CATALOG, {}),
        "with_families_ask": (CATALOG, {"MEMORY_FAMILY_MODE": "ask"}),
        "shared_change": (shared, {"family": family, "rows_changed": sum(r["parent_sku"] == family for r in rows)}),
        "variant_change": (variant, {"family": family, "rows_changed": 1}),
    }


def main() -> None:
    setup_django()
    from django.db import connection

    from memory.io.catalog import read_catalog

    products = [r.product for r in read_catalog(CATALOG) if r.product]
    results: dict = {"machine": machine(), "catalog": str(CATALOG.relative_to(ROOT)), "llm_delay_s": [0.3, 0.8],
                     "llm_max_concurrency": int(os.environ.get("LLM_MAX_CONCURRENCY", 4)), "target": TARGET, "runs": {}}
    with fake_openai(max_seconds=1800) as (port, env):
        for name, (path, changed) in catalogs().items():
            if name in ("without_families", "with_families", "with_families_ask"):
                forget_catalog(products)  # a cold run
                connection.close()
            run_env = {**env, **{k: v for k, v in changed.items() if k.isupper()}}
            seconds, exit_code, summary, billed = run_catalog(path, port, run_env, timeout=900)
            run = {
                "seconds": round(seconds, 2), "exit_code": exit_code,
                **{k: v for k, v in changed.items() if not k.isupper()},
                **{k: summary[k] for k in ("products", "reused", "generated", "stale_regenerated", "failed",
                                           "tokens_spent", "tokens_saved", "derived_variants", "families",
                                           "tokens_saved_by_family")},
                **billed,
            }
            results["runs"][name] = run
            print(name, run, file=sys.stderr)

    runs = results["runs"]
    without = runs["without_families"]["llm_tokens_billed"]
    for name in ("with_families", "with_families_ask"):
        runs[name]["share_of_without"] = round(runs[name]["llm_tokens_billed"] / without, 3) if without else None
    results["met"] = runs["with_families"]["share_of_without"] <= TARGET
    path = save_results("families", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2, ensure_ascii=False))
    print(f"resultados em {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
