"""A second memory process for the L1 coherence tests, driven line by line on stdin.

Commands: ``get`` (prints the tier that served the product, and its title),
``wait-evicted SECONDS`` (prints ``evicted`` once the product left this
process's L1, or ``still-cached``), ``quit``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beecatalog.settings")

import django  # noqa: E402

django.setup()

from django.core.cache import caches  # noqa: E402

from memory.engine.coherence import wait_until_subscribed  # noqa: E402
from memory.engine.memory import ProductMemory  # noqa: E402
from memory.engine.tiers import cache_key  # noqa: E402
from tests.helpers import wait_for  # noqa: E402


def main(product_id: str) -> None:
    memory = ProductMemory()
    key = cache_key((product_id, memory.kind))
    if not wait_until_subscribed(10):
        print("not-subscribed", flush=True)
        return
    print("ready", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "get":
            hit = memory.get_product_data(product_id, count_hit=False)
            print(f"{hit.tier} {hit.content['title']}" if hit else "miss", flush=True)
        elif command == "wait-evicted":
            evicted = wait_for(lambda: caches["memory_l1"].get(key) is None, float(args[0]), interval=0.005)
            print("evicted" if evicted else "still-cached", flush=True)
        elif command == "quit":
            return


if __name__ == "__main__":
    main(sys.argv[1])
