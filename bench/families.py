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
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import RESULTS_DIR, ROOT, forget_catalog, machine, save_results, setup_django  # noqa: E402
from bench.savings import free_port, server_stats  # noqa: E402

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
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_openai_server.py"), "--port", str(port), "--max-seconds", "1800"],
        cwd=ROOT, stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
           "OPENAI_API_KEY": "bench", "MEMORY_LOG_LEVEL": "WARNING"}
    results: dict = {"machine": machine(), "catalog": str(CATALOG.relative_to(ROOT)), "llm_delay_s": [0.3, 0.8],
                     "llm_max_concurrency": int(os.environ.get("LLM_MAX_CONCURRENCY", 4)), "target": TARGET, "runs": {}}
    try:
        for _ in range(50):
            try:
                server_stats(port)
                break
            except OSError:
                time.sleep(0.1)
        for name, (path, changed) in catalogs().items():
            if name in ("without_families", "with_families", "with_families_ask"):
                forget_catalog(products)  # a cold run
                connection.close()
            run_env = {**env, **{k: v for k, v in changed.items() if k.isupper()}}
            before = server_stats(port)
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "manage.py", "generate_content", str(path), "--json"],
                cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=900,
            )
            seconds = time.perf_counter() - started
            after = server_stats(port)
            summary = json.loads(done.stdout[done.stdout.index("{"):])
            run = {
                "seconds": round(seconds, 2), "exit_code": done.returncode,
                **{k: v for k, v in changed.items() if not k.isupper()},
                **{k: summary[k] for k in ("products", "reused", "generated", "stale_regenerated", "failed",
                                           "tokens_spent", "tokens_saved", "derived_variants", "families",
                                           "tokens_saved_by_family")},
                "llm_calls": after["completions"] - before["completions"],
                "llm_tokens_billed": (after["prompt_tokens"] + after["completion_tokens"])
                - (before["prompt_tokens"] + before["completion_tokens"]),
            }
            results["runs"][name] = run
            print(name, run, file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=10)

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
