"""The settings read from the environment (beecatalog/settings.py): a wrong value stops every
entry point with one pt-BR line, and 500s are logged whatever DEBUG says."""
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.servers import free_port

ROOT = Path(settings.BASE_DIR)
GUNICORN = Path(sys.executable).parent / "gunicorn"
KEY = secrets.token_urlsafe(50)


def run(args: list, **values: str | None) -> subprocess.CompletedProcess:
    """``args`` on ``beecatalog.settings`` with this run's servers and the given variables (None: unset)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST") and k not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update({"DJANGO_SETTINGS_MODULE": "beecatalog.settings", "PYTHONPATH": str(ROOT), "MEMORY_LOG_LEVEL": "WARNING"})
    for name, value in values.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([str(a) for a in args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def assert_refused_in_one_line(done: subprocess.CompletedProcess, name: str) -> str:
    assert done.returncode == 4, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(name), done.stderr
    return lines[0]


# --- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("DB_CONNECT_TIMEOUT", "0"),
    ("DB_CONNECT_TIMEOUT", "2.5"),
    ("DB_CONNECT_TIMEOUT", "três"),
    ("DB_HEALTH_CHECK_TIMEOUT", "0"),
    ("DB_STATEMENT_TIMEOUT", "-1"),
    ("DB_STATEMENT_TIMEOUT", "30s"),
    ("DB_STATEMENT_TIMEOUT", "nan"),
    ("DB_CONN_MAX_AGE", "-1"),
    ("METRICS_ALLOW", "everyone"),
])
def test_a_bad_value_stops_the_settings_with_one_line_naming_it(name, value):
    line = assert_refused_in_one_line(run([sys.executable, "-c", "import beecatalog.settings"],
                                          SECRET_KEY=KEY, **{name: value}), name)
    assert repr(value) in line


def test_statement_timeout_and_the_other_libpq_options_of_database_url_are_kept():
    """DATABASE_URL's own libpq parameters win over the defaults; DB_STATEMENT_TIMEOUT comes first in
    ``options``, so an explicit ``-c`` of the URL still decides."""
    show = "import beecatalog.settings as s; o = s.DATABASES['default']['OPTIONS']; print(o['keepalives_idle'], '|', o['options'])"
    done = run([sys.executable, "-c", show], SECRET_KEY=KEY, DB_STATEMENT_TIMEOUT="1.5",
               DATABASE_URL="postgres://u@127.0.0.1:5432/d?keepalives_idle=30&options=-c%20search_path%3Dx")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("|") == ["30 ", " -c statement_timeout=1500 -c search_path=x\n"]


# --- logging ----------------------------------------------------------------------------------------

SERVE_A_FAILING_VIEW = """
import django
django.setup()
from django.test import Client
from django.test.utils import override_settings
with override_settings(ROOT_URLCONF="tests.config.raising_urls"):
    client = Client(raise_request_exception=False)
    print(client.get("/quebra/").status_code, client.get("/nada/").status_code)
"""


def test_a_500_is_logged_to_stderr_with_its_traceback_with_debug_off():
    done = run([sys.executable, "-c", SERVE_A_FAILING_VIEW], SECRET_KEY=KEY, DEBUG="false")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["500", "404"]
    assert "[ERROR] Internal Server Error: /quebra/" in done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "RuntimeError: falha proposital da view" in done.stderr
    assert "/nada/" not in done.stderr  # a 404 is the client's error, not logged as one of ours
