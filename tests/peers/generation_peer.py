"""Another memory process for the single-flight tests, driven on stdin.

``generation_peer.py generate PRODUCT_JSON``: prints ``ready``, waits for a line (``go``), asks
the memory for the product (``generate_product``, the provider the settings choose) and prints
the outcome's summary as JSON.

``generation_peer.py hold PRODUCT_ID TIMEOUT``: takes the product's generation lock with that
TTL, prints ``held`` and keeps it (renewed) until it is killed, as a holder that then crashes.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from memory.engine.locks import product_lock  # noqa: E402
from memory.services.generation import generate_product  # noqa: E402


def generate(product_json: str) -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(generate_product(json.loads(product_json)).summary()), flush=True)


def hold(product_id: str, timeout: str) -> None:
    with product_lock(product_id, "main_content", timeout=float(timeout)) as acquired:
        print("held" if acquired else "not-held", flush=True)
        sys.stdin.readline()  # until killed (or told to let go)


if __name__ == "__main__":
    {"generate": generate, "hold": hold}[sys.argv[1]](*sys.argv[2:])
