"""The test settings use only TEST_DATABASE_URL / TEST_REDIS_URL: an exported DATABASE_URL or
REDIS_URL (a developer's own data, which the tests would flush) is never touched."""
import json
import os
import subprocess
import sys

from django.conf import settings

SHOW = (
    "import json, django; django.setup(); from django.conf import settings;"
    "print(json.dumps([settings.DATABASES['default']['NAME'], settings.CACHES['memory_l2']['LOCATION']]))"
)


def settings_seen_with(env: dict) -> list:
    child = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_URL", "TEST_REDIS_URL")}
    child.update({"DJANGO_SETTINGS_MODULE": "tests.settings", **env})
    out = subprocess.run([sys.executable, "-c", SHOW], env=child, cwd=settings.BASE_DIR,
                         capture_output=True, text=True, timeout=60, check=True)
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
