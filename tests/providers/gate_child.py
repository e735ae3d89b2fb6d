"""A process of its own that generates against a fake OpenAI server, for the tests of the limits
every process shares (``tests/providers/test_limits.py``). Not a test module.

    python -m tests.providers.gate_child SERVER_URL WORKDIR GATE_JSON CALLS THREADS

Loads the test settings (the test's Redis database through ``TEST_REDIS_URL``), installs the
gate ``GATE_JSON`` describes (:func:`make_gate`), writes ``WORKDIR/ready-PID``, waits for
``WORKDIR/go``, makes ``CALLS`` generations over ``THREADS`` threads, and prints a JSON object
counting the outcomes by error class (``"ok"`` for a success) and the first message of each.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PRODUCT = {"sku": "GATE-1", "title": "Tênis de Corrida Leve", "brand": "Olympikus"}


def make_gate(*, rpm: int = 0, tpm: int = 0, window: float = 2.0, slack: float = 0.2, max_wait: float = 60.0,
              failures: int = 5, cooldown: float = 60.0, probe_timeout: float = 5.0):
    """A gate with a short window (the tests' minute)."""
    from memory.providers import limits

    return limits.Gate(
        limits.RateLimiter(rpm=rpm, tpm=tpm, window=window, slack=slack, max_wait=max_wait),
        limits.CircuitBreaker(failures=failures, cooldown=cooldown, probe_timeout=probe_timeout),
    )


def main() -> None:
    url, workdir, gate_json, calls, threads = sys.argv[1:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from memory.providers import OpenAIProvider, limits

    limits.install(make_gate(**json.loads(gate_json)))
    provider = OpenAIProvider(base_url=url, api_key="sk-test", model="gpt-4o-mini", timeout=10.0,
                              connect_timeout=2.0, max_attempts=1)
    work = Path(workdir)
    (work / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not (work / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("gate_child: no go in 60 s")
        time.sleep(0.02)

    outcomes: dict[str, int] = {}
    messages: dict[str, str] = {}
    lock = threading.Lock()

    def one(_):
        try:
            provider.generate(PRODUCT)
            name, message = "ok", ""
        except Exception as exc:  # the test reads every outcome, whatever it is
            name, message = exc.__class__.__name__, str(exc)
        with lock:
            outcomes[name] = outcomes.get(name, 0) + 1
            messages.setdefault(name, message)

    with ThreadPoolExecutor(max_workers=int(threads)) as pool:
        list(pool.map(one, range(int(calls))))
    print(json.dumps({"outcomes": outcomes, "messages": messages}))


if __name__ == "__main__":
    main()
