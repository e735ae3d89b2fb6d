"""Instructions a hit costs, counted by callgrind: a figure the machine's load does not move.

Run by hand from the repository root (needs ``valgrind``: ``apt-get install -y valgrind``)::

    .venv/bin/python bench/instructions.py                  # 1,000 products, ~3 min
    .venv/bin/python bench/instructions.py --products 500

It stores ``--products`` products in the ``bench`` stores (and, beside each, a raw ``raw:…`` key
holding the content's JSON), then runs itself under ``valgrind --tool=callgrind`` and reads the
instructions of each phase from the dumps it asks for at the phase's end (``callgrind_control
-d``): a loop of raw ``GET`` + ``json.loads``, then loops of ``get_product_data`` served by L2
(L1 emptied before) and by L1, each uncounted and counted (a counted loop ends with the push of
its counts). Callgrind counts every thread of the process, so the hit pusher's and the
listener's work during a phase is part of it, as in the whole loops of ``bench/side_by_side.py``.
What a phase costs to end (the dump request itself) is measured by an empty phase and taken
off. The client's instructions only: Redis' own work and the wait for it are not counted, which
is why these ratios are above the wall-clock ones.

Results go to ``var/bench/instructions.json`` and to stdout.
"""
from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import content_for, machine, product, save_results, setup_django  # noqa: E402

PHASES = ["empty", "raw_get_json", "l2_no_hit_count", "l2", "l1_fill", "l1_no_hit_count", "l1"]


def measure(n: int) -> None:
    """The phases, under callgrind (``--measure``)."""
    import redis as redislib
    from django.conf import settings

    from memory.engine.counters import hit_counter
    from memory.product_memory import ProductMemory

    memory = ProductMemory()
    ids = [product(i)["sku"] for i in range(n)]
    raw = redislib.Redis.from_url(settings.REDIS_URL)
    pid = str(os.getpid())

    def end(phase: str) -> None:
        gc.collect()
        subprocess.run(["callgrind_control", "-d", phase, pid], check=True, capture_output=True)

    def raw_loop() -> None:
        for i in range(n):
            json.loads(raw.get("raw:" + ids[i]))

    def memory_loop(tier: str, count: bool) -> None:
        if tier == "l2":
            memory.l1.clear()
        for i in range(n):
            hit = memory.get_product_data(ids[i], count_hit=count)
            if hit is None or hit.tier != tier:
                sys.exit(f"{ids[i]}: esperado em {tier}, veio {hit and hit.tier}")
        if count:
            hit_counter.push()

    raw_loop()  # warm: connections, first imports
    memory_loop("l2", False)
    memory_loop("l2", True)
    end("start")
    end("empty")
    raw_loop()
    end("raw_get_json")
    memory_loop("l2", False)
    end("l2_no_hit_count")
    memory_loop("l2", True)
    end("l2")
    memory.l1.clear()
    for i in range(n):
        memory.get_product_data(ids[i], count_hit=False)
    end("l1_fill")
    memory_loop("l1", False)
    end("l1_no_hit_count")
    memory_loop("l1", True)
    end("l1")


def seed(n: int) -> None:
    import redis as redislib
    from django.conf import settings

    from memory.engine.counters import hit_counter
    from memory.product_memory import ProductMemory

    memory = ProductMemory()
    raw = redislib.Redis.from_url(settings.REDIS_URL)
    raw.flushdb()  # the bench's Redis database
    memory.l1.clear()
    for i in range(n):
        data = product(i)
        content = content_for(data)
        memory.save_product_data(data, content, tokens_prompt=900, tokens_completion=700)
        raw.set("raw:" + data["sku"], json.dumps(content, ensure_ascii=False))
    hit_counter.push()


def phase_instructions(out_dir: str) -> dict[str, int]:
    """Each dump's phase name and the instructions it holds (``summary:``)."""
    found = {}
    for path in glob.glob(os.path.join(out_dir, "callgrind.out.*")):
        text = Path(path).read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: dump (\S+)", text, re.M)
        summary = re.search(r"^summary: (\d+)", text, re.M)
        if trigger and summary:
            found[trigger.group(1)] = int(summary.group(1))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the run under callgrind
    args = parser.parse_args()
    # The same key for the seeding run and the measured one: the values are signed with it.
    os.environ.setdefault("SECRET_KEY", "bench-instructions-" + "k" * 50)
    setup_django()
    if args.measure:
        measure(args.products)
        return
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} não encontrado (apt-get install -y valgrind)")
    seed(args.products)
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as out_dir:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.out.%p",
                   sys.executable, __file__, "--measure", "--products", str(args.products)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"bench: a execução sob o callgrind falhou:\n{run.stderr[-2000:]}")
        found = phase_instructions(out_dir)
    missing = [phase for phase in PHASES if phase not in found]
    if missing:
        sys.exit(f"bench: fases sem contagem: {', '.join(missing)}")
    overhead = found["empty"]
    per_hit = {phase: (found[phase] - overhead) / args.products for phase in PHASES if phase != "empty"}
    raw = per_hit["raw_get_json"]
    results = {
        "machine": machine(),
        "products": args.products,
        "phase_end_instructions": overhead,
        "per_hit_instructions": {phase: round(count) for phase, count in per_hit.items()},
        "ratio_to_raw": {phase: round(count / raw, 2) for phase, count in per_hit.items()},
    }
    print(json.dumps(results, indent=2))
    save_results("instructions", results)


if __name__ == "__main__":
    main()
