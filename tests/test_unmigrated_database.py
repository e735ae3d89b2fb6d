"""A database where ``migrate`` has not run: health is "down", and every command and endpoint
says so in one pt-BR line ending in "Rode: python manage.py migrate"; the commands that manage
migrations keep working, and once ``migrate`` has run a server already started serves."""
import json
import subprocess
import sys

import httpx
import pytest
from django.conf import settings

from memory.infra import migration_state
from memory.infra.migration_state import MIGRATE_HINT, NOT_MIGRATED

from tests.servers import ApiServer

pytestmark = pytest.mark.slow

ROOT = settings.BASE_DIR


@pytest.fixture
def unmigrated_env(process_env, empty_database, tmp_path):
    """A child's environment on the empty database (tests.settings reads TEST_DATABASE_URL)."""
    return {**process_env, "TEST_DATABASE_URL": empty_database, "DATABASE_URL": empty_database,
            "MEMORY_BACKUP_DIR": str(tmp_path / "backups")}


def manage(env, *args, timeout=120):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_saying_migrate(done):
    assert done.returncode == 1, (done.args, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("CommandError: O banco de dados não está migrado (")
    assert lines[0].endswith(MIGRATE_HINT)
    assert "Traceback" not in done.stdout and "SELECT" not in done.stdout + done.stderr


SUBCOMMANDS = [
    ["stats"], ["list"], ["export", "--output-file", "out.json"], ["import", "--input-file", "in.json"],
    ["clear", "--confirm"], ["delete", "--product-id", "ABC123", "--confirm"], ["backup"], ["restore"],
    ["warm"], ["purge"],
]


def test_every_command_says_to_migrate_in_one_line(unmigrated_env, tmp_path):
    env = {**unmigrated_env}
    for args in SUBCOMMANDS:
        assert_one_line_saying_migrate(manage(env, "manage_memory", *args))
    assert_one_line_saying_migrate(manage(env, "generate_content", str(ROOT / "samples" / "catalog.csv")))


def test_health_is_down_naming_the_pending_migrations(unmigrated_env):
    done = manage(unmigrated_env, "manage_memory", "health")
    assert_one_line_saying_migrate(done)
    assert "Saúde da memória" in done.stdout  # the table comes first

    done = manage(unmigrated_env, "manage_memory", "health", "--json")
    health = json.loads(done.stdout)
    assert health["status"] == "down"
    database = health["checks"]["database"]
    assert database["ok"] is False and database["error"].endswith(MIGRATE_HINT)
    assert f"{database['pending_migrations']} migrações pendentes" in database["error"]
    assert health["detail"] == NOT_MIGRATED


def test_the_migration_commands_work_on_the_unmigrated_database(unmigrated_env):
    for args in (["check"], ["showmigrations", "memory"], ["makemigrations", "--check", "--dry-run"]):
        done = manage(unmigrated_env, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "[ ] 0001_initial" in manage(unmigrated_env, "showmigrations", "memory").stdout


ENDPOINTS = [
    ("get", "/api/memory/stats/"), ("get", "/api/memory/list/"), ("get", "/api/memory/export/"),
    ("post", "/api/memory/get/"), ("post", "/api/memory/delete/"), ("post", "/api/memory/clear/"),
    ("post", "/api/memory/force-regenerate/"), ("get", "/api/schema/"), ("get", "/api/docs/"),
]
PAGES = ["/admin/", "/admin/login/", "/memory/dashboard/", "/metrics"]


def test_every_endpoint_says_to_migrate_until_migrate_has_run(unmigrated_env, tmp_path):
    env = {**unmigrated_env, "DJANGO_SETTINGS_MODULE": "beecatalog.settings", "DOTENV_PATH": "",
           "CELERY_BROKER_URL": "", "SECRET_KEY": "unmigrated-test"}
    server = ApiServer(env, tmp_path / "gunicorn.log", workers=1)
    try:
        server.wait_ready()
        for method, path in ENDPOINTS:
            response = httpx.request(method, server.url + path, json={"product_id": "ABC123"}, timeout=10)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["detail"].endswith(MIGRATE_HINT), path
        for path in PAGES:
            response = httpx.get(server.url + path, timeout=10)
            assert response.status_code == 503, (path, response.text)
            assert response.text.strip().endswith(MIGRATE_HINT) and len(response.text.strip().splitlines()) == 1
        health = httpx.get(server.url + "/api/memory/health/", timeout=10)  # no user can log in yet
        assert health.status_code == 503 and health.json() == {"status": "down", "detail": NOT_MIGRATED}

        done = manage(env, "migrate", "--verbosity", "0", timeout=300)
        assert done.returncode == 0, done.stderr

        # The same server, not restarted: it asks again while migrations are pending.
        health = httpx.get(server.url + "/api/memory/health/", timeout=10)
        assert health.status_code == 200 and health.json() == {"status": "ok"}, health.text
        assert httpx.get(server.url + "/api/memory/stats/", timeout=10).status_code == 401  # credentials, now
        assert httpx.get(server.url + "/admin/login/", timeout=10).status_code == 200
    finally:
        server.stop()
    log = (tmp_path / "gunicorn.log").read_text()
    assert log.count("[WARNING] O banco de dados não está migrado") == 1, log  # the server's log says it once


def test_a_migrated_database_is_asked_once_per_process(db, monkeypatch):
    migration_state.pending_migrations()  # the test database is migrated
    monkeypatch.setattr(migration_state, "MigrationExecutor", lambda *a: pytest.fail("asked the database again"))
    assert migration_state.pending_migrations() == []
    migration_state.require_migrated()
