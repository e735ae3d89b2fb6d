"""What the test modules share that is not a fixture: the one bounded poll, sample data, factories
of rows and clients. Fixtures live in the ``conftest.py`` beside the tests that use them; no test
module imports from another test module."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path
from typing import Callable

import pytest
import redis
from django.conf import settings
from django.db import connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from memory.engine.memory import ProductMemory
from memory.io.schema import ENTRY_FIELDS, VERSION_FIELDS
from memory.models import ContentVersion, ProductMemoryEntry


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Ask ``predicate()`` every ``interval`` seconds until it is true or ``timeout`` seconds have
    passed; True as soon as it is, False if it never was (asked one last time at the deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def step_until_exited(workers: list[subprocess.Popen], step: Callable[[], object], timeout: float = 120.0,
                      interval: float = 0.05) -> None:
    """Call ``step()`` every ``interval`` seconds while the child ``workers`` run (at most ``timeout``
    seconds), then reap them: each must have exited 0 (its stderr is the failure's message); one still
    running at the deadline is killed, and fails the test."""
    def stepped_and_all_exited() -> bool:
        step()
        return all(w.poll() is not None for w in workers)

    try:
        exited = wait_for(stepped_and_all_exited, timeout, interval=interval)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
            _, err = w.communicate()
            assert w.returncode == 0, err
    assert exited


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """End a child process the test started: SIGTERM, then SIGKILL if it outlives ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def queued_tasks(redis_url: str, queue: str = "celery") -> list[tuple[str, str]]:
    """``(task name, task id)`` of each message waiting in a Redis broker's queue, oldest first."""
    client = redis.Redis.from_url(redis_url)
    try:
        messages = [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]
    finally:
        client.close()
    return [(m["headers"]["task"], m["headers"]["id"]) for m in messages]

# --- the API tests' product ------------------------------------------------------------------

PRODUCT = {"sku": "ABC123", "title": "Produto Teste"}
CONTENT = {"title": "Produto Teste", "description": "Uma descrição.", "bullet_points": ["a"], "seo_keywords": ["b"]}


def seed(product=PRODUCT, content=CONTENT, **kwargs):
    """Save ``product`` with ``content`` (1,000 prompt and 500 completion tokens unless told)."""
    kwargs.setdefault("tokens_prompt", 1000)
    kwargs.setdefault("tokens_completion", 500)
    return ProductMemory().save_product_data(product, content, **kwargs)


def token_client(user) -> APIClient:
    """A DRF test client that sends ``user``'s token."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def post_json(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


# --- rows for export, import and backup --------------------------------------------------------

T0 = datetime(2026, 11, 20, 12, 30, 15, 123456, tzinfo=dt_timezone.utc)


def make_entries(n=3, *, prefix="SKU", kind="main_content", **overrides):
    """``n`` entries with every exported field set (non-ASCII, markup, nulls), written in one insert,
    each with its content as its one version (as a save leaves it)."""
    rows = []
    for i in range(n):
        fields = {
            "product_id": f"{prefix}{i:05d}",
            "kind": kind,
            "payload": {"title": f"Produto {i} “ação”", "description": "<b>d</b>\nlinha 2, com vírgula",
                        "bullet_points": ["a", "b"], "price": 10.5, "n": i},
            "source_data": {"sku": f"{prefix}{i:05d}", "title": f"Produto {i}", "tags": [1, 2]},
            "input_fingerprint": f"{i:064x}",
            "generator_version": "template:template:p1",
            "tokens_prompt": 100 + i,
            "tokens_completion": 200 + i,
            "tokens_cached": 40 + i,
            "tokens_reasoning": 20 + i,
            "hit_count": i * 3,
            "tokens_saved": i * 900,
            "created_at": T0 + timedelta(seconds=i),
            "updated_at": T0 + timedelta(hours=1, seconds=i),
            "last_hit_at": (T0 + timedelta(days=1)) if i % 2 else None,
            # a fraction, and an entry never hit (Excel keeps 15 significant digits: not 1/3)
            "hotness": (i * 1.5 + 0.25) if i % 2 else 0.0,
            "hotness_at": (T0 + timedelta(days=1, microseconds=i)) if i % 2 else None,
            "expires_at": T0 + timedelta(days=90, microseconds=i),
        }
        fields.update(overrides)
        rows.append(ProductMemoryEntry(**fields))
    ProductMemoryEntry.objects.bulk_create(rows)
    ContentVersion.objects.bulk_create([
        ContentVersion(entry_id=e.pk, number=e.version, payload=e.payload, origin=e.origin,
                       generator_version=e.generator_version, tokens=e.tokens_spent, author=e.author,
                       created_at=e.updated_at)
        for e in ProductMemoryEntry.objects.filter(pk__in=[r.pk for r in rows])
    ])
    return rows


def snapshot_table():
    """Every entry's exported fields (and title) and its history, by (product_id, kind): compare
    before and after."""
    table = {}
    for e in ProductMemoryEntry.objects.values("id", *ENTRY_FIELDS, "title"):
        history = ContentVersion.objects.filter(entry_id=e.pop("id")).order_by("number").values(*VERSION_FIELDS)
        table[(e["product_id"], e["kind"])] = {**e, "versions": list(history)}
    return table


# --- Redis settings ----------------------------------------------------------------------------


def l2_caches(options: dict, location: str) -> dict:
    """``CACHES`` with the memory's L2 at ``location`` (short socket timeouts, extra ``options``)."""
    l2 = dict(settings.CACHES.get("memory_l2") or {
        "BACKEND": "django_redis.cache.RedisCache",
        "KEY_PREFIX": "bcm",
        "TIMEOUT": None,
    })
    l2["LOCATION"] = location
    l2["OPTIONS"] = {
        "CLIENT_CLASS": "memory.infra.cache_backends.SigningClient",
        "SERIALIZER": "memory.infra.serializers.StrictJSONSerializer",
        "COMPRESSOR": "memory.infra.compressors.Lz4ReadingZstdCompressor",
        "SOCKET_CONNECT_TIMEOUT": 0.2,
        "SOCKET_TIMEOUT": 0.2,
        **options,
    }
    return {**settings.CACHES, "memory_l2": l2}


# --- texts a spreadsheet would run as formulas (CSV injection) -------------------------------

SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""OWASP's list: a cell starting with one of these is read as a formula by spreadsheets."""
FORMULA_TEXTS = ('=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx")
QUOTED_TEXTS = ("'=HYPERLINK(\"http://x\",\"y\")", "''-2+3", "'\tx", "'plain", "'")
"""Texts that already start with the quote an export puts before a formula."""
ROUND_TRIP_TEXTS = tuple(t for t in FORMULA_TEXTS if not t[0].isspace()) + QUOTED_TEXTS
"""The texts a round trip gives back exactly (the row schema trims the text columns in every
format, so ``"\\tx"`` comes back as ``"x"`` from JSON as from CSV)."""


def make_formula_entries(texts=FORMULA_TEXTS):
    """One entry per text, holding it as its product_id, fingerprint and generator version, and
    nested in its payload (title, bullet points) and source data."""
    return [
        make_entries(
            1, product_id=text, input_fingerprint=text, generator_version=text,
            payload={"title": text, "bullet_points": [text, "ok"], "specs": {"cell": text}},
            source_data={"sku": text, "title": text},
        )[0]
        for text in texts
    ]


def worker_env(process_env: dict, **overrides: str) -> dict:
    """The environment of a real Celery worker or beat process on the test's own Redis: the
    project's settings (tests.settings runs every task eagerly), broker and results on the L2
    Redis, tasks queued."""
    broker = settings.CACHES["memory_l2"]["LOCATION"]
    return {
        **process_env,
        "DJANGO_SETTINGS_MODULE": "beecatalog.settings",
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        **overrides,
    }


GENERATION_PEER = Path(__file__).resolve().parent / "peers" / "generation_peer.py"


def generations_at_once(products: list[dict], env: dict) -> list[dict]:
    """``generate_product`` of each product in a process of its own (``tests/peers/generation_peer.py``
    on ``env``), all released together once every one is ready: their outcomes, in order."""
    peers = [subprocess.Popen([sys.executable, str(GENERATION_PEER), "generate", json.dumps(product)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for product in products]
    try:
        assert [peer.stdout.readline().strip() for peer in peers] == ["ready"] * len(peers)
        for peer in peers:
            peer.stdin.write("go\n")
            peer.stdin.flush()
        return [json.loads(peer.stdout.readline()) for peer in peers]
    finally:
        for peer in peers:
            stop_process(peer)


def at_once(work, copies=2):
    """``work()`` in ``copies`` threads released together, each with its own database connection."""
    barrier = threading.Barrier(copies)
    errors = []

    def one():
        try:
            barrier.wait()
            work()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


# -- the headless browser (tests marked e2e; the ``browser`` fixture of conftest.py) ----------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # screenshots
BROWSER_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1900", "--lang=pt-BR",
)
# A test module that drives the browser: ``pytestmark = NEEDS_BROWSER``.
NEEDS_BROWSER = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="needs /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)",
    ),
]
