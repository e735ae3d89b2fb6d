"""A memory process for the delete-vs-fill chaos test: one writer, or a reader.

``writer ROUNDS``: for each round ``i`` announces ``i`` (``ROUND_KEY``), saves ``RES-i`` and
deletes it; prints ``done``. ``reader``: until ``STOP_KEY`` is set, looks up the products of the
announced round and the next, through every tier; then waits (up to 3 s, for invalidations still
on their way) until its L1 holds none of the ``RES-*`` products, and prints how many it still
holds. Both print ``ready`` once they hear invalidations.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.cache import caches  # noqa: E402

from memory.engine.coherence import wait_until_subscribed  # noqa: E402
from memory.engine.memory import ProductMemory  # noqa: E402
from memory.engine.tiers import cache_key  # noqa: E402
from tests.helpers import wait_for  # noqa: E402

ROUND_KEY = "test:resurrection:round"
STOP_KEY = "test:resurrection:stop"
CONTENT = {"title": "Versão 1", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}


def product_id(round_number: int) -> str:
    return f"RES-{round_number}"


def writer(control: redis.Redis, rounds: int) -> None:
    memory = ProductMemory()
    for i in range(rounds):
        control.set(ROUND_KEY, i)
        memory.save_product_data(product_id(i), CONTENT, count_generation=False)
        memory.delete_product(product_id(i))
    print("done", flush=True)


def reader(control: redis.Redis) -> None:
    memory = ProductMemory()
    seen: set[int] = set()
    while not control.exists(STOP_KEY):
        current = int(control.get(ROUND_KEY) or 0)
        seen.update((current, current + 1))
        memory.lookup_many([product_id(current), product_id(current + 1)], count_hits=False)
    l1 = caches["memory_l1"]

    def held() -> int:
        return sum(l1.get(cache_key((product_id(i), memory.kind))) is not None for i in seen)

    wait_for(lambda: held() == 0, timeout=3.0)
    print(f"l1-held {held()}", flush=True)


def main(role: str, *args: str) -> None:
    control = redis.Redis.from_url(settings.CACHES["memory_l2"]["LOCATION"])
    if not wait_until_subscribed(10):
        print("not-subscribed", flush=True)
        return
    print("ready", flush=True)
    if role == "writer":
        writer(control, int(args[0]))
    else:
        reader(control)


if __name__ == "__main__":
    main(*sys.argv[1:])
