"""The test settings use only TEST_DATABASE_URL / TEST_REDIS_URL: an exported DATABASE_URL or
REDIS_URL (a developer's own data, which the tests would flush) is never touched; each
pytest-xdist worker flushes a Redis database of its own."""
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.settings import worker_redis_url

SHOW = (
    "import json, django; django.setup(); from django.conf import settings;"
    "print(json.dumps([settings.DATABASES['default']['NAME'], settings.CACHES['memory_l2']['LOCATION']]))"
)


def settings_seen_with(env: dict) -> list:
    # what this run is (its URLs, its xdist worker) stays out: the child is told all it knows
    child = {k: v for k, v in os.environ.items()
             if k not in ("TEST_DATABASE_URL", "TEST_REDIS_URL", "TEST_REDIS_WORKER") and not k.startswith("PYTEST_XDIST")}
    child.update({"DJANGO_SETTINGS_MODULE": "tests.settings", **env})
    out = subprocess.run([sys.executable, "-c", SHOW], env=child, cwd=settings.BASE_DIR,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_exported_redis_url_and_database_url_are_ignored_by_the_tests():
    name, redis_url = settings_seen_with({
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/my_own_data",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
    })
    assert name == "beecatalog" and redis_url == "redis://127.0.0.1:6379/15"


def test_test_urls_choose_the_test_servers():
    name, redis_url = settings_seen_with({
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "TEST_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/elsewhere",
        "TEST_REDIS_URL": "redis://127.0.0.1:6379/12",
    })
    assert name == "elsewhere" and redis_url == "redis://127.0.0.1:6379/12"


def test_each_xdist_worker_gets_the_redis_database_below_the_last_and_its_children_keep_it():
    xdist = {"PYTEST_XDIST_WORKER": "gw2", "PYTEST_XDIST_WORKER_COUNT": "4"}
    _, redis_url = settings_seen_with({**xdist, "TEST_REDIS_URL": "redis://127.0.0.1:6379/15"})
    assert redis_url == "redis://127.0.0.1:6379/13"
    # a child of that worker inherits the worker's URL, marked as already its own
    _, redis_url = settings_seen_with({**xdist, "TEST_REDIS_URL": redis_url, "TEST_REDIS_WORKER": "gw2"})
    assert redis_url == "redis://127.0.0.1:6379/13"


@pytest.mark.parametrize(("url", "worker", "expected"), [
    ("redis://127.0.0.1:6379/15", "gw0", "redis://127.0.0.1:6379/15"),
    ("redis://127.0.0.1:6379/15", "gw3", "redis://127.0.0.1:6379/12"),
    ("redis://:s3nha@127.0.0.1:6380/4", "gw1", "redis://:s3nha@127.0.0.1:6380/3"),
    ("redis://127.0.0.1:6379", "gw0", "redis://127.0.0.1:6379/0"),
    ("unix:///run/redis.sock?db=9", "gw2", "unix:///run/redis.sock?db=7"),
])
def test_a_workers_redis_database(url, worker, expected):
    assert worker_redis_url(url, worker, 4) == expected


def test_too_few_redis_databases_below_the_url_for_the_workers_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        worker_redis_url("redis://:s3nha@127.0.0.1:6379/2", "gw3", 4)
    assert capsys.readouterr().err == (
        "TEST_REDIS_URL: com 4 workers do pytest-xdist cada um usa um banco do Redis, do banco da URL para"
        " baixo; use um banco a partir de /3, como redis://127.0.0.1:6379/15, não 'redis://:***@127.0.0.1:6379/2'\n"
    )
