"""Profile one hot path of the memory: what a call served from L1, L2 or L3, or a save, spends its time on.

Run by hand, after ``bench/side_by_side.py`` has filled the ``bench`` stores::

    .venv/bin/python bench/profile_paths.py l2 --calls 5000            # cProfile, top functions
    .venv/bin/py-spy record -r 500 -f speedscope -o var/bench/l2.speedscope \\
        -- .venv/bin/python bench/profile_paths.py l2 --calls 20000 --no-cprofile

Paths: ``l1``, ``l2``, ``l3`` (``get_product_data`` by product_id, counting
the hit unless ``--no-count``) and ``write`` (``save_product_data``).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import content_for, product, setup_django  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", choices=["l1", "l2", "l3", "write"])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--products", type=int, default=1000, help="products cycled through (already stored)")
    parser.add_argument("--no-count", action="store_true", help="count_hit=False")
    parser.add_argument("--no-cprofile", action="store_true", help="just run (for py-spy)")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    setup_django()
    from memory.engine.memory import ProductMemory

    memory = ProductMemory()
    ids = [product(i)["sku"] for i in range(args.products)]
    data = [product(i) for i in range(args.products)]
    contents = [content_for(d) for d in data]
    count = not args.no_count
    keys = [(pid, memory.kind) for pid in ids]

    def run() -> None:
        for call in range(args.calls):
            i = call % args.products
            if args.path == "write":
                memory.save_product_data(data[i], contents[i], tokens_prompt=900, tokens_completion=700)
                continue
            if args.path in ("l2", "l3"):
                memory.l1.delete_many([keys[i]])
            if args.path == "l3":
                memory.l2.delete_many([keys[i]])
            hit = memory.get_product_data(ids[i], count_hit=count)
            if hit is None or (args.path != "l1" and hit.tier != args.path):
                sys.exit(f"{ids[i]}: esperado em {args.path}, veio {hit and hit.tier}")

    if args.no_cprofile:
        run()
        return
    profiler = cProfile.Profile()
    profiler.runcall(run)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
