"""Print the Markdown tables of docs/benchmarks.md from the results in ``var/bench/*.json``.

Run by hand after the other scripts::

    .venv/bin/python bench/report.py > var/bench/tables.md
    .venv/bin/python bench/report.py --write docs/benchmarks.md   # refresh the marked tables in place
"""
from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import RESULTS_DIR  # noqa: E402


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def side_by_side(d: dict) -> None:
    r = d["reads"]
    m = d["machine"]
    print(f"Run: {m['date_utc']}, load average at start {m['loadavg']}; {d['products']:,} products, "
          f"payload median {d['payload_bytes_median']:.0f} bytes.\n")
    print("| path | memory (median) | raw (median) | ratio | target | |")
    print("|---|---:|---:|---:|---|---|")
    rows = [
        ("`get_product_data` from L2 (counts the hit)", r["l2"]["engine"], r["l2"]["raw_get_json"], "≤ 1.3× GET + json.loads", 1.3),
        ("… from L2, `count_hit=False`", r["l2_no_hit_count"]["engine"], r["l2_no_hit_count"]["raw_get_json"], "(diagnostic)", None),
        ("… from L2, with product data (fingerprint)", r["l2_with_product_data"]["engine"], r["l2_with_product_data"]["raw_get_json"], "(diagnostic)", None),
        ("raw GET + decompress + json.loads of the memory's own key", r["raw_same_bytes_compressed"]["raw_get_decompress_json"], r["raw_same_bytes_compressed"]["raw_get_json"], "(what compression costs)", None),
        ("`get_product_data` from L3 (counts the hit)", r["l3"]["engine"], r["l3"]["raw_select"], "≤ 1.3× prepared SELECT", 1.3),
        ("… from L3, `count_hit=False`", r["l3_no_hit_count"]["engine"], r["l3_no_hit_count"]["raw_select"], "(diagnostic)", None),
        ("… from L3, beside a raw cache-aside read (GET nil, SELECT, SET NX)", r["l3_vs_raw_cache_aside"]["engine"], r["l3_vs_raw_cache_aside"]["raw_cache_aside"], "(diagnostic)", None),
        ("… from L3 with no Redis configured", r["l3_without_redis"]["engine"], r["l3_without_redis"]["raw_select"], "(diagnostic)", None),
        ("`get_product_data` from L1 (counts the hit)", r["l1"]["engine"], r["l1"]["raw_get_json"], "(see L1/L2 below)", None),
        ("… from L1, `count_hit=False`", r["l1_no_hit_count"]["engine"], r["l1_no_hit_count"]["raw_get_json"], "(see L1/L2 below)", None),
        ("`save_product_data`, insert", d["write_insert"]["engine"], d["write_insert"]["raw"], "≤ 1.5× upsert + SET", 1.5),
        ("`save_product_data`, update", d["write_update"]["engine"], d["write_update"]["raw"], "≤ 1.5× upsert + SET", 1.5),
    ]
    for label, engine, raw, target, limit in rows:
        ratio = engine["median_us"] / raw["median_us"]
        mark = verdict(ratio <= limit) if limit else ""
        print(f"| {label} | {engine['median_us']:.0f} µs | {raw['median_us']:.0f} µs | {ratio:.2f}× | {target} | {mark} |")
    print()
    print(f"L1 against L2: {r['l1_speedup_over_l2']}× faster counting the hit, "
          f"{r['l1_speedup_over_l2_no_hit_count']}× with `count_hit=False` (target ≥ 20×: "
          f"{verdict(r['l1_speedup_over_l2'] >= 20)}).\n")
    print("Tiers that served each timed phase (a call served by another tier is left out of that phase's median): "
          f"`{json.dumps(r['tiers_seen'])}`\n")
    if "whole_loops" in d:
        whole_loops(d["whole_loops"])
    b = d["batch_check"]
    print("| `batch_check_products_in_memory`, 10,000 products | median | ratio to raw | target |")
    print("|---|---:|---:|---|")
    print(f"| raw: one MGET + json.loads, one `= ANY(%s)` query | {b['raw']['median_ms']} ms | 1.00× | |")
    print(f"| raw, MGET of the memory's own (compressed) values | {b['raw_same_bytes']['median_ms']} ms | "
          f"{b['raw_same_bytes']['median_ms'] / b['raw']['median_ms']:.2f}× | |")
    for name, label in (("from_l2", "memory, L1 empty, all in L2"), ("from_l3", "memory, L1 and L2 empty (L3 + fills)"),
                        ("from_l1", "memory, all in L1")):
        print(f"| {label} | {b[name]['median_ms']} ms | {b[name]['ratio']:.2f}× | ≤ 1.5×: {verdict(b[name]['ratio'] <= 1.5)} |")
    print()


def whole_loops(w: dict) -> None:
    print(f"Whole loops: {w['products']:,} different products read in a row, the loop timed as a whole "
          f"(wall clock, the hit pusher's thread included; a counted loop ends with the push of what is "
          f"still buffered), {w['repeats']} rounds, each memory loop right after a raw loop; medians per hit, "
          f"and the median of the pairs' ratios:\n")
    print("| loop | per hit (median) | p10-p90 | ratio to raw GET + json.loads | target | |")
    print("|---|---:|---:|---:|---|---|")
    rows = [
        ("raw GET + json.loads", "raw_get_json", "", None),
        ("raw GET + decompress + json.loads of the memory's own key", "raw_get_decompress_json", "(what compression costs)", None),
        ("`get_product_data` from L2 (counts the hit)", "l2", "≤ 1.3× GET + json.loads", 1.3),
        ("… from L2, `count_hit=False`", "l2_no_hit_count", "(diagnostic)", None),
        ("`get_product_data` from L1 (counts the hit)", "l1", "(see L1/L2 below)", None),
        ("… from L1, `count_hit=False`", "l1_no_hit_count", "(see L1/L2 below)", None),
    ]
    for label, name, target, limit in rows:
        row = w[name]
        mark = verdict(row["ratio"] <= limit) if limit else ""
        print(f"| {label} | {row['per_hit_us']:.1f} µs | {row['p10_us']:.0f}-{row['p90_us']:.0f} µs | "
              f"{row['ratio']:.2f}× | {target} | {mark} |")
    print()
    print(f"L1 against L2 in whole loops: {w['l1_speedup_over_l2']}× faster counting the hit, "
          f"{w['l1_speedup_over_l2_no_hit_count']}× with `count_hit=False` (target ≥ 20×: "
          f"{verdict(w['l1_speedup_over_l2'] >= 20)}). Tiers that served the loops: `{json.dumps(w['tiers_seen'])}`\n")


def http(d: dict) -> None:
    m = d["machine"]
    print(f"Run: {m['date_utc']}, load average at start {m['loadavg']}; gunicorn {d['workers']} sync workers, "
          f"wrk 1 thread {d['connections']} connections, {d['seconds']} s per run, 1,000 products, "
          f"response {d['response_bytes']} bytes.\n")
    print("| server | API req/s (median) | bare view req/s (median) | ratio | API p50 | errors | target ≥ 0.6× |")
    print("|---|---:|---:|---:|---:|---:|---|")
    v = d["project"]
    print(f"| project | {v['api_rps_median']:.0f} | {v['bare_rps_median']:.0f} | {v['ratio']:.2f}× | "
          f"{v['api_p50_ms_median']:.1f} ms | {v['errors']} | {verdict(v['ratio'] >= 0.6)} |")
    print()


def at_scale(d: dict) -> None:
    m = d["machine"]
    print(f"Run: {m['date_utc']}, load average at start {m['loadavg']}; {d['rows_at_start']:,} rows at start.\n")
    if "sizes" in d:
        s = d["sizes"]
        print(f"Sizes: table (heap + TOAST) {s['table_mb_with_toast']} MB, indexes {s['indexes_mb']} MB, "
              f"total {s['total_mb']} MB, {s['bytes_per_row_total']} bytes a row.\n")
        print("| index | MB |\n|---|---:|")
        for name, mb in s["per_index_mb"].items():
            print(f"| `{name}` | {mb} |")
        print()
    if "admin" in d:
        print("| admin page | median server time | SQL statements | slowest statement | < 500 ms |")
        print("|---|---:|---:|---:|---|")
        for name, a in d["admin"].items():
            print(f"| {name} `{a['url'].split('/productmemoryentry/')[1] or '/'}` | {a['median_ms']} ms | "
                  f"{a['queries']} | {a['slowest_query_ms']} ms | {verdict(a['median_ms'] < 500)} |")
        print()
    if "stats" in d:
        print("| stats | first call (cold cache) | next calls (median) | cache off (median) |")
        print("|---|---:|---:|---:|")
        for name, s in d["stats"].items():
            print(f"| {name} | {s['first_call_ms']} ms | {s['next_calls_median_ms']} ms | {s['without_cache_median_ms']} ms |")
        print()
    if "export" in d:
        e = d["export"]
        a, c = e["api_jsonl"], e["command_jsonl"]
        print("| export (jsonl) | time | rows/s | MB | peak RSS | < 150 MB |")
        print("|---|---:|---:|---:|---:|---|")
        print(f"| API through gunicorn (worker) | {a['seconds']} s | {a['rows_per_second']:,} | {a['mb']} | "
              f"{a['worker_peak_rss_mb']} MB (idle {a['worker_rss_before_mb']} MB) | {verdict(a['worker_peak_rss_mb'] < 150)} |")
        print(f"| `manage_memory export` | {c['seconds']} s | {c['rows_per_second']:,} | {c['mb']} | "
              f"{c['peak_rss_mb']} MB | {verdict(c['peak_rss_mb'] < 150)} |")
        print()
    if "import" in d:
        print("| `manage_memory import`, 100,000 rows | time | rows/s | peak RSS |")
        print("|---|---:|---:|---:|")
        for name in ("new_rows", "existing_rows"):
            i = d["import"][name]
            print(f"| {name} | {i['seconds']} s | {i['rows_per_second']:,} | {i['peak_rss_mb']} MB |")
        print()
    for key in ("purge", "purge_keyset"):
        if key not in d:
            continue
        p = d[key]
        label = "Purge (proposal: keyset batches, `bench/what_if.py`)" if key == "purge_keyset" else "Purge"
        print(f"{label}, batch_size={p.get('batch_size', 5000)}: {p['deleted']:,} of {p['expired_before']:,} expired rows deleted in {p['seconds']} s, "
              f"{p['batches']} batches, longest batch {p['longest_batch_ms']} ms, {p['statements']} SQL statements, "
              f"longest statement {p['longest_statement_ms']} ms (`{p['longest_statement'][:60]}…`; target < 1 s: "
              f"{verdict(p['longest_statement_ms'] < 1000)}); medians by statement {p['median_ms_by_statement']}, "
              f"maxima {p['max_ms_by_statement']}"
              + (f"; statements over 1 s: {p['statements_over_1s']}, the slowest at positions "
                 f"{[x['position'] for x in p['slowest_statements']]} of {p['statements']}" if "slowest_statements" in p else "")
              + ".\n")


def savings(d: dict) -> None:
    m = d["machine"]
    print(f"Run: {m['date_utc']}, load average at start {m['loadavg']}; `{d['catalog']}`, {d['distinct_products']} "
          f"distinct products; fake LLM delay {d['llm_delay_s'][0]}-{d['llm_delay_s'][1]} s, "
          f"LLM_MAX_CONCURRENCY={d['llm_max_concurrency']}.\n")
    print("| run | wall time | reused | generated | regenerated (changed) | LLM calls | tokens spent | tokens saved "
          "(hits) | tokens saved (families) | saving | hit rate |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in d["runs"].items():
        print(f"| {name} | {r['seconds']} s | {r['reused']} | {r['generated']} | {r['stale_regenerated']} | "
              f"{r['llm_calls']} | {r['tokens_spent']:,} | {r['tokens_saved']:,} | "
              f"{r.get('tokens_saved_by_family', 0):,} | {r['saving_rate']:.0%} | {r['hit_rate']:.0%} |")
    t = d["first_import_then_90pct_unchanged"]
    print(f"\nFirst import, then a second import with 90% unchanged: {t['tokens_spent']:,} tokens spent, "
          f"{t['tokens_saved']:,} saved of {t['tokens_without_memory']:,} that two imports cost without the memory: "
          f"{t['saving_rate']:.0%}. Warm run {d['warm_speedup']}× faster than cold.\n")


def families(d: dict) -> None:
    m = d["machine"]
    runs = d["runs"]
    print(f"Run: {m['date_utc']}, load average at start {m['loadavg']}; `{d['catalog']}`; fake LLM delay "
          f"{d['llm_delay_s'][0]}-{d['llm_delay_s'][1]} s, LLM_MAX_CONCURRENCY={d['llm_max_concurrency']}.\n")
    print("| run | wall time | generated | reused | variants derived (families) | LLM calls | tokens billed "
          "| of the run without families | tokens saved by families |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in runs.items():
        share = f"{r['share_of_without']:.1%}" if "share_of_without" in r else ""
        print(f"| {name} | {r['seconds']} s | {r['generated'] + r['stale_regenerated']} | {r['reused']} | "
              f"{r['derived_variants']} ({r['families']}) | {r['llm_calls']} | {r['llm_tokens_billed']:,} | {share} | "
              f"{r['tokens_saved_by_family']:,} |")
    with_families = runs["with_families"]
    print(f"\nThe cold run with the family column billed {with_families['share_of_without']:.1%} of the tokens of "
          f"the same catalog without it (target ≤ {d['target']:.0%}: {verdict(d['met'])}). "
          f"`shared_change` renames the brand of the {runs['shared_change']['rows_changed']} rows of family "
          f"`{runs['shared_change']['family']}`; `variant_change` then recolours one of its variants.\n")


def machine_table(m: dict) -> None:
    print("| | |\n|---|---|")
    print(f"| CPU | {m['nproc']} × {m['cpu']} |")
    print(f"| RAM | {m['ram_gb']} GB |")
    print(f"| kernel | Linux {m['kernel']} |")
    print(f"| Python | {m['python']} |")
    print(f"| Django | {m['django']} |")
    print(f"| PostgreSQL | {m.get('postgresql', '?')} (default settings: shared_buffers 128 MB) |")
    print(f"| Redis | {m.get('redis_server', '?')} |")
    print(f"| psycopg | {m['psycopg']} |")
    print(f"| redis-py | {m['redis_py']} |")
    print()


def sections() -> dict[str, Callable[[], None]]:
    """Each section of docs/benchmarks.md that the results fill, by marker name."""
    found: dict[str, Callable[[], None]] = {}
    for name, render in (("side_by_side", side_by_side), ("http", http), ("savings", savings), ("families", families)):
        data = load(name)
        if data:
            found[name] = lambda render=render, data=data: render(data)
    if load("side_by_side"):
        found["machine"] = lambda: machine_table(load("side_by_side")["machine"])
    for path in sorted(RESULTS_DIR.glob("at_scale-*.json")):
        found[path.stem] = lambda path=path: at_scale(json.loads(path.read_text()))
    return found


def main() -> None:
    """Print every table; with ``--write FILE``, replace each ``<!-- bench:NAME -->`` ...
    ``<!-- /bench:NAME -->`` block of FILE with the table of NAME."""
    found = sections()
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        path = Path(sys.argv[2])
        text = path.read_text(encoding="utf-8")
        for name, render in found.items():
            start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
            if start in text and end in text:
                buffer = io.StringIO()
                with redirect_stdout(buffer):
                    render()
                before, rest = text.split(start, 1)
                _, after = rest.split(end, 1)
                text = f"{before}{start}\n{buffer.getvalue().strip()}\n{end}{after}"
        path.write_text(text, encoding="utf-8")
        return
    for name, render in found.items():
        print(f"<!-- {name} -->")
        render()


if __name__ == "__main__":
    main()
