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

from tests.servers import GUNICORN, free_port

ROOT = Path(settings.BASE_DIR)
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
    done = run([*GUNICORN, "beecatalog.wsgi", "--bind", f"127.0.0.1:{free_port()}", "--workers", "2"],
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
    ("MEMORY_DEFAULT_TTL", "90d"),
    ("MEMORY_DEFAULT_TTL", "0"),
    ("MEMORY_L1_TTL", "-1"),
    ("MEMORY_L1_MAX_ENTRIES", "dez mil"),
    ("MEMORY_MAX_PAYLOAD_BYTES", "256k"),
    ("MEMORY_REDIS_TIMEOUT", "0"),
    ("MEMORY_REDIS_RETRY_AFTER", "5s"),
    ("MEMORY_HIT_BUFFER_SECONDS", "0"),
    ("MEMORY_STATS_CACHE_SECONDS", "-15"),
    ("MEMORY_LOCAL_COUNTER_FLUSH_INTERVAL", "meio minuto"),
    ("MEMORY_PURGE_INTERVAL", "1h"),
    ("MEMORY_PURGE_BATCH_SIZE", "0"),
    ("MEMORY_COUNTER_FLUSH_INTERVAL", "-60"),
    ("MEMORY_ROLLUP_INTERVAL", "600.5"),
    ("MEMORY_BACKUP_INTERVAL", "1d"),
    ("MEMORY_BACKUP_KEEP", "sete"),
    ("MEMORY_BATCH_INGEST_INTERVAL", "5m"),
    ("MEMORY_REFRESH_AHEAD_INTERVAL", "0"),
    ("MEMORY_REFRESH_AHEAD_SECONDS", "1d"),
    ("MEMORY_REFRESH_TOKEN_BUDGET", "-1"),
    ("MEMORY_REFRESH_TOKEN_BUDGET", "50k"),
    ("MEMORY_REFRESH_MIN_HOTNESS", "quente"),
    ("MEMORY_HOTNESS_HALF_LIFE_SECONDS", "0"),
    ("LLM_TIMEOUT", "0"),
    ("LLM_MAX_ATTEMPTS", "0"),
    ("LLM_CONNECT_TIMEOUT", "cinco"),
    ("LLM_MAX_ATTEMPTS", "três"),
    ("LLM_RESPONSE_FORMAT", "json"),
    ("LLM_MAX_ATTEMPTS", "21"),
    ("LLM_MAX_TOKENS", "0"),
    ("LLM_TEMPERATURE", "quente"),
    ("LLM_TEMPERATURE", "3"),
    ("LLM_PRICES", "gpt-4o-mini=0.15"),
    ("LLM_PRICES", '["gpt-4o-mini"]'),
    ("LLM_PRICES", '{"meu-modelo": [0.15, 0.60]}'),
    ("LLM_PRICES", '{"meu-modelo": [0.15, -1, 0.60]}'),
    ("LLM_BATCH_DISCOUNT", "50%"),
    ("LLM_BATCH_DISCOUNT", "1.5"),
    ("LLM_MAX_CONCURRENCY", "4.0"),
    ("LLM_RPM", "-1"),
    ("LLM_RPM", "500/min"),
    ("LLM_TPM", "1000"),  # less than one call of LLM_MAX_TOKENS (2048)
    ("LLM_RATE_MAX_WAIT", "2m"),
    ("LLM_BREAKER_FAILURES", "0"),
    ("LLM_BREAKER_COOLDOWN", "0"),
    ("MEMORY_GENERATION_LOCK_TIMEOUT", "3m"),
    ("DATA_UPLOAD_MAX_MEMORY_SIZE", "1MB"),
    ("MEMORY_API_MAX_JSON_DEPTH", "0"),
    ("API_TOKEN_CACHE_SECONDS", "-1"),
    ("DEBUG", "talvez"),
    ("CELERY_TASK_ALWAYS_EAGER", "sempre"),
    ("USE_X_FORWARDED_HOST", "x"),
    ("LLM_PROVIDER", "opena1"),
    ("MEMORY_LOG_LEVEL", "verbose"),
    ("MEMORY_LOG_FORMAT", "xml"),
    ("PROMETHEUS_MULTIPROC_DIR", "/nao/existe/prometheus"),
    ("METRICS_WORKER_PORT", "70000"),
    ("METRICS_WORKER_PORT", ":9540"),
    ("TIME_ZONE", "Brasil/Sao_Paulo"),
    ("CSRF_TRUSTED_ORIGINS", "memoria.example.com"),
    ("REDIS_URL", "127.0.0.1:6379"),
    ("CELERY_BROKER_URL", "redsi://127.0.0.1:6379/0"),
    ("CELERY_RESULT_BACKEND", "127.0.0.1:6379/0"),
    ("OPENAI_BASE_URL", "api.openai.com/v1"),
    ("DATABASE_URL", "postgress://postgres@127.0.0.1:5432/bc"),
    ("DATABASE_URL", "postgres://postgres@127.0.0.1:porta/bc"),
    ("DOTENV_PATH", "/nao/existe/.env"),
    ("DATABASE_REPLICA_URLS", "127.0.0.1:5433/bc"),
    ("DATABASE_REPLICA_URLS", "sqlite:///tmp/replica.sqlite3"),
    ("DATABASE_REPLICA_URLS", "postgres://postgres@127.0.0.1:5433/"),
    ("MEMORY_REPLICA_RETRY_SECONDS", "5s"),
    ("MEMORY_PARTITION_BY_EXPIRY", "weekly"),
    ("MEMORY_PARTITIONS_AHEAD", "0"),
])
def test_a_bad_value_stops_the_settings_with_one_line_naming_it(name, value):
    line = assert_refused_in_one_line(run([sys.executable, "-c", "import beecatalog.settings"],
                                          SECRET_KEY=KEY, **{name: value}), name)
    assert repr(value) in line


# The issue's own examples, through the commands a person runs first.
ISSUE_VALUES = [
    ("DATABASE_URL", "postgress://postgres:segredo@127.0.0.1:5432/bc"),
    ("MEMORY_DEFAULT_TTL", "90d"),
    ("LLM_PROVIDER", "opena1"),
    ("REDIS_URL", "127.0.0.1:6379"),
    ("CELERY_BROKER_URL", "127.0.0.1:6379/0"),
    ("DEBUG", "talvez"),
]
COMMANDS = [["check"], ["migrate", "--verbosity", "0"], ["manage_memory", "health"]]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("name, value", ISSUE_VALUES)
def test_each_command_refuses_a_bad_setting_in_one_line_before_touching_anything(name, value, command):
    line = assert_refused_in_one_line(run([sys.executable, "manage.py", *command], SECRET_KEY=KEY, **{name: value}),
                                      name)
    assert " não " in line and "segredo" not in line


@pytest.mark.slow
@pytest.mark.parametrize("name, value", ISSUE_VALUES)
def test_celery_refuses_a_bad_setting_in_one_line(name, value):
    done = run([Path(sys.executable).parent / "celery", "-A", "beecatalog", "inspect", "ping", "--timeout", "1"],
               SECRET_KEY=KEY, **{name: value})
    assert_refused_in_one_line(done, name)


@pytest.mark.parametrize("values", [
    {"LLM_PROVIDER": "openai", "OPENAI_API_KEY": ""},
    {"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "  ", "OPENAI_BASE_URL": "https://api.openai.com/v1/"},
])
def test_openai_without_a_key_is_refused(values):
    line = assert_refused_in_one_line(run([sys.executable, "manage.py", "check"], SECRET_KEY=KEY, **values),
                                      "OPENAI_API_KEY")
    assert "LLM_PROVIDER=openai" in line


def test_openai_compatible_servers_of_ones_own_may_go_without_a_key():
    show = "import beecatalog.settings as s; print(s.LLM_PROVIDER, repr(s.OPENAI_API_KEY))"
    done = run([sys.executable, "-c", show], SECRET_KEY=KEY, LLM_PROVIDER="openai", OPENAI_API_KEY="",
               OPENAI_BASE_URL="http://127.0.0.1:11434/v1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["openai", "''"]


def test_statement_timeout_and_the_other_libpq_options_of_database_url_are_kept():
    """DATABASE_URL's own libpq parameters win over the defaults; DB_STATEMENT_TIMEOUT comes first in
    ``options``, so an explicit ``-c`` of the URL still decides."""
    show = "import beecatalog.settings as s; o = s.DATABASES['default']['OPTIONS']; print(o['keepalives_idle'], '|', o['options'])"
    done = run([sys.executable, "-c", show], SECRET_KEY=KEY, DB_STATEMENT_TIMEOUT="1.5",
               DATABASE_URL="postgres://u@127.0.0.1:5432/d?keepalives_idle=30&options=-c%20search_path%3Dx")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("|") == ["30 ", " -c statement_timeout=1500 -c search_path=x\n"]


def test_each_replica_is_an_alias_on_the_bounded_backend_and_the_router_is_set():
    show = ("import beecatalog.settings as s; r = s.DATABASES['replica_2']; "
            "print(s.DATABASE_REPLICAS, r['ENGINE'], r['PORT'], r['OPTIONS']['options'], r['TEST'], s.DATABASE_ROUTERS)")
    done = run([sys.executable, "-c", show], SECRET_KEY=KEY, DB_STATEMENT_TIMEOUT="2",
               DATABASE_URL="postgres://u@127.0.0.1:5432/d",
               DATABASE_REPLICA_URLS=" postgres://u@10.0.0.2:5433/d , postgresql://u:segredo@10.0.0.3:5434/d ,")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("['replica_1', 'replica_2'] memory.infra.postgresql 5434 -c statement_timeout=2000"
                                   " {'MIRROR': 'default'} ['memory.infra.replicas.ReplicaRouter']")
    unset = run([sys.executable, "-c", "import beecatalog.settings as s; print(s.DATABASE_REPLICAS, s.DATABASE_ROUTERS)"],
                SECRET_KEY=KEY, DATABASE_REPLICA_URLS="")
    assert unset.stdout.split() == ["[]", "[]"]


@pytest.mark.parametrize("value, quoted", [
    ("postgres://u@127.0.0.1:5433/bc,postgres://u:segredo@127.0.0.1:porta/bc", "'postgres://u:***@127.0.0.1:porta/bc'"),
    ("postgres://u@127.0.0.1:5433/bc,postgres://u@127.0.0.1:5433/bc", "duas vezes ('postgres://u@127.0.0.1:5433/bc')"),
])
def test_a_bad_replica_among_several_is_named_alone(value, quoted):
    line = assert_refused_in_one_line(run([sys.executable, "-c", "import beecatalog.settings"], SECRET_KEY=KEY,
                                          DATABASE_REPLICA_URLS=value), "DATABASE_REPLICA_URLS")
    assert quoted in line and "segredo" not in line


def test_replicas_of_a_sqlite_database_are_refused():
    line = assert_refused_in_one_line(
        run([sys.executable, "-c", "import beecatalog.settings"], SECRET_KEY=KEY,
            DATABASE_URL="sqlite:////tmp/bc.sqlite3", DATABASE_REPLICA_URLS="postgres://u:segredo@127.0.0.1:5433/d"),
        "DATABASE_REPLICA_URLS")
    assert "SQLite" in line and "segredo" not in line


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


# --- documentation ------------------------------------------------------------------------------------


def test_every_variable_the_settings_read_is_in_the_readmes_table():
    source = (ROOT / "beecatalog" / "settings.py").read_text()
    names = set(re.findall(r'\bread\.\w+\("([A-Z][A-Z0-9_]+)"', source))
    assert {"DATABASE_URL", "MEMORY_DEFAULT_TTL", "LLM_PROVIDER", "DEBUG"} <= names
    table = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)`(?: / `([A-Z0-9_]+)`)?", table, re.M))
    documented = {name for pair in documented for name in pair if name}
    assert names - documented == set()


def test_an_empty_prometheus_multiproc_dir_means_one_process_and_writes_no_files(tmp_path):
    """compose's beat and the worker's healthcheck set it to "": prometheus_client alone would
    take that for the current folder and leave its series files there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k not in ("DJANGO_SETTINGS_MODULE",)}
    env.update({"PROMETHEUS_MULTIPROC_DIR": "", "SECRET_KEY": KEY, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
                "REDIS_URL": "", "MEMORY_LOG_LEVEL": "WARNING"})
    code = ("import django, os; django.setup(); from memory.infra import metrics; "
            "print('multiproc' if 'PROMETHEUS_MULTIPROC_DIR' in os.environ else 'one process')")
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                           f"os = __import__('os'); os.environ['DJANGO_SETTINGS_MODULE'] = 'beecatalog.settings'; {code}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "one process"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db" and p.name != "x.db") == []
