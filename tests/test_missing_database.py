"""A DATABASE_URL naming a database the server does not have: every command (Django's own too),
health and every page say so in one pt-BR line with the ``createdb`` that makes it, never an
OperationalError traceback."""
import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError

from memory.infra.migration_state import NO_DATABASE, MissingDatabase, missing_database

from tests.servers import ApiServer

ROOT = settings.BASE_DIR


@pytest.fixture
def missing_env(tmp_path):
    """A child's environment on beecatalog.settings whose DATABASE_URL names a database that does not exist."""
    server = urlsplit(os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/beecatalog"))
    name = f"{server.path.strip('/')}_nao_existe"[:63]
    with psycopg.connect(server._replace(path="/postgres").geturl(), autocommit=True) as admin:
        assert admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name]).fetchone() == (0,)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "beecatalog.settings", "DOTENV_PATH": "", "PYTHONPATH": str(ROOT),
        "DATABASE_URL": server._replace(path=f"/{name}").geturl(), "REDIS_URL": "", "CELERY_BROKER_URL": "",
        "SECRET_KEY": "missing-database-test", "MEMORY_BACKUP_DIR": str(tmp_path / "backups"),
        "MEMORY_LOG_LEVEL": "WARNING",
    })
    env["MISSING_NAME"] = name
    return env


def manage(env, *args):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_saying_createdb(done, name):
    assert done.returncode == 1, (done.args, done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"CommandError: DATABASE_URL: o banco de dados {name!r} não existe no servidor ")
    assert f"crie-o com: createdb -h " in lines[0] and lines[0].endswith(f" {name} e rode: python manage.py migrate")


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["migrate"], ["createsuperuser", "--noinput", "--username", "admin", "--email", "a@example.com"],
    ["showmigrations"], ["manage_memory", "stats"], ["manage_memory", "purge"],
    ["generate_content", str(ROOT / "samples" / "catalog.csv")],
], ids=lambda args: " ".join(args[:2]))
def test_every_command_says_to_create_the_database_in_one_line(missing_env, args):
    assert_one_line_saying_createdb(manage(missing_env, *args), missing_env["MISSING_NAME"])


@pytest.mark.slow
def test_health_is_down_and_says_to_create_the_database(missing_env):
    name = missing_env["MISSING_NAME"]
    done = manage(missing_env, "manage_memory", "health")
    assert_one_line_saying_createdb(done, name)
    assert "Saúde da memória" in done.stdout  # the table comes first

    health = json.loads(manage(missing_env, "manage_memory", "health", "--json").stdout)
    assert health["status"] == "down" and health["detail"] == NO_DATABASE
    database = health["checks"]["database"]
    assert database["ok"] is False and database["missing_database"] == name
    assert database["error"].startswith(f"DATABASE_URL: o banco de dados {name!r} não existe")


@pytest.mark.slow
def test_every_page_says_the_database_does_not_exist(missing_env, tmp_path):
    server = ApiServer(missing_env, tmp_path / "gunicorn.log", workers=1)
    try:
        server.wait_ready()
        health = httpx.get(server.url + "/api/memory/health/", timeout=10)
        assert health.status_code == 503 and health.json() == {"status": "down", "detail": NO_DATABASE}
        for path in ("/api/memory/stats/", "/api/memory/list/"):
            response = httpx.get(server.url + path, timeout=10)
            assert response.status_code == 503 and response.json() == {"detail": NO_DATABASE}, response.text
        for path in ("/admin/login/", "/memory/dashboard/"):
            response = httpx.get(server.url + path, timeout=10)
            assert response.status_code == 503 and response.text == f"{NO_DATABASE}\n", (path, response.text)
    finally:
        server.stop()
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log, log
    assert log.count(f"[WARNING] DATABASE_URL: o banco de dados {missing_env['MISSING_NAME']!r} não existe") == 1, log


@pytest.mark.parametrize("message", [
    'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "bc" does not exist',
    'connection failed: conexão com servidor em "127.0.0.1", porta 5432 falhou: FATAL:  banco de dados "bc" não existe',
])
def test_the_servers_no_such_database_in_english_or_portuguese_is_recognized(message):
    missing = missing_database(OperationalError(message))
    assert isinstance(missing, MissingDatabase)
    assert str(missing).startswith(f"DATABASE_URL: o banco de dados {settings.DATABASES['default']['NAME']!r} não existe")


@pytest.mark.parametrize("error", [
    OperationalError('connection failed: connection to server at "127.0.0.1", port 5433 failed: Connection refused'),
    OperationalError('FATAL:  password authentication failed for user "postgres"'),
    ValueError('database "bc" does not exist'),
])
def test_other_errors_are_left_as_they_are(error):
    assert missing_database(error) is None
