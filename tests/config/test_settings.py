"""The settings read from the environment (beecatalog/settings.py): a wrong or unsafe value stops
every entry point with one pt-BR line, the README's production settings pass ``check --deploy``,
500s are logged whatever DEBUG says, and every page carries the Content-Security-Policy."""
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


# --- SECRET_KEY ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "  ", "dev-insecure-change-me", "change-me", "change-me-to-a-long-random-string"])
def test_debug_off_without_a_key_or_with_a_public_one_refuses_to_start_in_one_line(key):
    if key is None and (ROOT / ".env").exists():
        pytest.skip("a .env file may set SECRET_KEY")
    line = assert_refused_in_one_line(run([sys.executable, "manage.py", "check"], SECRET_KEY=key, DEBUG="false"),
                                      "SECRET_KEY")
    assert "DEBUG=true" in line


@pytest.mark.slow
def test_gunicorn_refuses_the_public_key_in_one_line_before_starting_a_worker():
    """gunicorn.conf.py loads the settings in the master: no worker starts, nothing is listening."""
    done = run([GUNICORN, "beecatalog.wsgi", "--bind", f"127.0.0.1:{free_port()}", "--workers", "2"],
               SECRET_KEY="dev-insecure-change-me", DEBUG="false")
    assert done.returncode == 4, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Booting worker" not in done.stderr
    ours = [line for line in done.stderr.splitlines() if not line.startswith("[")]  # gunicorn's start with a date
    assert len(ours) == 1 and ours[0].startswith("SECRET_KEY"), done.stderr


def test_debug_on_runs_with_the_default_key():
    done = run([sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"],
               SECRET_KEY=None, DEBUG="true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


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
    ("SECURE_HSTS_SECONDS", "1 ano"),
    ("SECURE_SSL_REDIRECT", "sim"),
    ("SESSION_COOKIE_SECURE", "2"),
    ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto"),
    ("SECURE_PROXY_SSL_HEADER", "HTTP_X_FORWARDED_PROTO"),
    ("METRICS_ALLOW", "everyone"),
    ("LLM_TIMEOUT", "0"),
    ("LLM_CONNECT_TIMEOUT", "cinco"),
    ("LLM_MAX_ATTEMPTS", "0"),
    ("LLM_MAX_ATTEMPTS", "três"),
    ("LLM_RESPONSE_FORMAT", "json"),
    ("LLM_MAX_TOKENS", "0"),
    ("LLM_TEMPERATURE", "quente"),
    ("LLM_TEMPERATURE", "3"),
    ("LLM_PRICES", "gpt-4o-mini=0.15"),
    ("LLM_PRICES", '["gpt-4o-mini"]'),
    ("LLM_PRICES", '{"meu-modelo": [0.15, 0.60]}'),
    ("LLM_PRICES", '{"meu-modelo": [0.15, -1, 0.60]}'),
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


# --- production -------------------------------------------------------------------------------------


def readme_production_settings() -> dict[str, str]:
    """The variables of the README's "In production" block."""
    block = (ROOT / "README.md").read_text().split("## In production", 1)[1].split("```", 2)[1]
    values = {}
    for line in block.splitlines()[1:]:  # the first is the fence's info string
        line = line.split(" #", 1)[0].strip()
        if line:
            name, _, value = line.partition("=")
            values[name] = value
    return values


@pytest.mark.slow
def test_check_deploy_is_clean_with_the_production_settings_of_the_readme():
    values = readme_production_settings()
    assert values["DEBUG"] == "false" and int(values["SECURE_HSTS_SECONDS"]) > 0
    values["SECRET_KEY"] = KEY  # the README says how to make one
    done = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], **values)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.django_db
def test_with_the_ssl_redirect_on_plain_http_is_redirected_but_the_health_probe():
    from django.test import Client, override_settings

    with override_settings(SECURE_SSL_REDIRECT=True):
        client = Client()  # its middleware reads the settings when it first serves
        assert client.get("/admin/login/").status_code == 301
        assert client.get("/api/memory/health/").status_code == 200


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


@pytest.mark.django_db
def test_a_500_is_logged_to_stderr_with_its_traceback_with_debug_off(process_env):
    # the test database: a database without migrations would answer 503 before the view runs
    done = run([sys.executable, "-c", SERVE_A_FAILING_VIEW], SECRET_KEY=KEY, DEBUG="false",
               DATABASE_URL=process_env["DATABASE_URL"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["500", "404"]
    assert "[ERROR] Internal Server Error: /quebra/" in done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "RuntimeError: falha proposital da view" in done.stderr
    assert "/nada/" not in done.stderr  # a 404 is the client's error, not logged as one of ours


# --- Content-Security-Policy ------------------------------------------------------------------------

PAGES = ["/admin/login/", "/admin/", "/admin/memory/productmemoryentry/", "/memory/dashboard/", "/api/docs/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_policy_and_has_no_inline_script(client, admin_user, path):
    if path != "/admin/login/":
        client.force_login(admin_user)
    response = client.get(path)
    assert response.status_code == 200
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    html = response.content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # every script is a file
    assert re.findall(r"\son[a-z]+=", html) == []  # and no element has an inline handler


@pytest.mark.django_db
def test_the_api_docs_start_up_script_is_served_as_a_file(client, admin_user):
    client.force_login(admin_user)
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()
