"""Summarize a py-spy ``--format raw`` profile (collapsed stacks): where the samples went.

Run by hand::

    .venv/bin/py-spy record -r 1000 -f raw -o var/bench/l2.txt -- \\
        .venv/bin/python bench/profile_paths.py l2 --calls 20000 --no-cprofile
    .venv/bin/python bench/pyspy_top.py var/bench/l2.txt --under get_product_data

Prints, for the samples whose stack passes through ``--under``, the share of
each function in them (inclusive: the function or anything it called), the
widest first.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--under", default="get_product_data")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    inclusive: Counter = Counter()
    total = 0
    for line in open(args.profile, encoding="utf-8"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = stack.split(";")
        names = []
        for frame in frames:
            match = FRAME.match(frame.strip())
            if match:
                short = match["file"].split("site-packages/")[-1].split("/work/main/")[-1]
                names.append(f"{match['func']} ({short})")
            else:
                names.append(frame.strip())
        if not any(args.under in n for n in names):
            continue
        start = next(i for i, n in enumerate(names) if args.under in n)
        total += int(count)
        for name in set(names[start:]):
            inclusive[name] += int(count)
    print(f"{total} amostras sob {args.under}")
    for name, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
