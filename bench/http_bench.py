"""``POST /api/memory/get/`` hits through gunicorn beside a bare Django view returning the same JSON.

Run by hand from the repository root (needs ``wrk``: ``apt-get install -y wrk``)::

    .venv/bin/python bench/http_bench.py                       # 2 workers, 3 rounds of 15 s per side
    .venv/bin/python bench/http_bench.py --seconds 5 --rounds 1   # a quicker trial

It stores 1,000 products (``BENCH-0000000``...) if they are missing, makes a
user with a DRF token, saves the API's answer for one product so that the
bare view (``bench/urls.py``) answers the same bytes, starts gunicorn with 2
sync workers on 127.0.0.1 (``DJANGO_SETTINGS_MODULE=bench.settings``: the
project's settings and URLs plus ``/bench/bare/``), warms both workers' L1,
then alternates wrk runs (``bench/post.lua``: POST ``{"product_id": ...}``
cycling through the 1,000 products, with the token header) against the API
and the bare view. Load stays on loopback and is bounded by ``--seconds``.
Results go to ``var/bench/http.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import RESULTS_DIR, ROOT, content_for, machine, product, save_results, setup_django  # noqa: E402

PRODUCTS = 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn não respondeu na porta {port}")


def run_wrk(url: str, seconds: int, connections: int, threads: int, env: dict) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
         "-s", str(ROOT / "bench" / "post.lua"), url],
        capture_output=True, text=True, env=env, timeout=seconds + 30,
    ).stdout
    fields = dict(re.findall(r"(\w+)=(\d+)", out.split("BENCH_RESULT", 1)[1]))
    result = {k: int(v) for k, v in fields.items()}
    result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    setup_django()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from memory.engine.memory import ProductMemory

    memory = ProductMemory()
    ids = [product(i)["sku"] for i in range(PRODUCTS)]
    missing = [i for i, found in enumerate(memory.exists_many(ids).values()) if not found]
    for i in missing:
        data = product(i)
        memory.save_product_data(data, content_for(data), tokens_prompt=900, tokens_completion=700)
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post("/api/memory/get/", {"product_id": ids[1]}, format="json")
    assert response.status_code == 200, response.content
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "get_response.json").write_bytes(response.content)
    connection.close()

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "BENCH_TOKEN": token.key,
           "BENCH_PRODUCTS": str(PRODUCTS)}
    results: dict = {"machine": machine(), "workers": args.workers, "connections": args.connections,
                     "seconds": args.seconds, "products": PRODUCTS, "response_bytes": len(response.content)}
    variants = [("project", {})]
    for variant, extra in variants:
        port = free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "beecatalog.wsgi:application", "-w", str(args.workers),
             "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
            cwd=ROOT, env={**env, **extra}, stdout=subprocess.DEVNULL,
            stderr=open(RESULTS_DIR / f"gunicorn-{variant}.log", "w"),
        )
        try:
            wait_for(port)
            api = f"http://127.0.0.1:{port}/api/memory/get/"
            bare = f"http://127.0.0.1:{port}/bench/bare/"
            # Warm-up: every product through both workers (L1 fills, connections open).
            run_wrk(api, 5, args.connections, 1, env)
            run_wrk(bare, 2, args.connections, 1, env)
            rounds = {"api": [], "bare": []}
            for _ in range(args.rounds):
                for name, url in (("api", api), ("bare", bare)):
                    rounds[name].append(run_wrk(url, args.seconds, args.connections, 1, env))
                    print(variant, name, rounds[name][-1], file=sys.stderr)
        finally:
            server.terminate()
            server.wait(timeout=20)
        row = {"rounds": rounds}
        for name in rounds:
            row[f"{name}_rps_median"] = statistics.median(r["rps"] for r in rounds[name])
            row[f"{name}_p50_ms_median"] = statistics.median(r["p50_us"] for r in rounds[name]) / 1000
        row["ratio"] = round(row["api_rps_median"] / row["bare_rps_median"], 2)
        row["errors"] = sum(r["errors_status"] + r["errors_other"] for rs in rounds.values() for r in rs)
        results[variant] = row
    path = save_results("http", results)
    print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "rounds"} if isinstance(v, dict) else v)
                      for k, v in results.items() if k != "machine"}, indent=2))
    print(f"resultados em {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
