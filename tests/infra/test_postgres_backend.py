"""The PostgreSQL backend (memory/infra/postgresql): every wait for the server is bounded, so a
hung server costs a bounded wait and a closed connection, never a blocked process."""
import time

import psycopg
import pytest
from django.db import connection, connections
from django.test import override_settings

from memory.infra.postgresql.base import CANCEL_GRACE_SECONDS, Connection, DatabaseWrapper
from tests.servers import PostgresServer


@pytest.fixture(scope="module")
def server():
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def frozen(server):
    """Freezes the server for the test (after the test's connections are made) and always thaws it."""
    yield server.freeze
    server.thaw()


def connect(server: PostgresServer, response_timeout: float | None, **params) -> Connection:
    conn = Connection.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres",
                              connect_timeout=2, autocommit=True, **params)
    conn.response_timeout = response_timeout
    return conn


@pytest.fixture
def django_connection(server, django_db_blocker):
    """A Django connection to the throwaway server, configured as the project's settings configure one."""
    connections.settings["hung"] = {
        **connection.settings_dict, "NAME": "postgres", "USER": "postgres", "PASSWORD": "",
        "HOST": "127.0.0.1", "PORT": str(server.port),
    }
    db = connections["hung"]
    assert isinstance(db, DatabaseWrapper)
    with django_db_blocker.unblock():  # not the test database: pytest-django's guard does not apply
        try:
            yield db
        finally:
            db.close()
            del connections["hung"]
            del connections.settings["hung"]


@pytest.mark.slow
def test_a_query_to_a_hung_server_fails_at_the_bound_and_closes_the_connection(server, frozen):
    conn = connect(server, response_timeout=0.5)
    assert conn.execute("SELECT 1").fetchone() == (1,)
    frozen()
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="PostgreSQL não respondeu em 0.5 s"):
        conn.execute("SELECT 1")
    assert 0.5 <= time.monotonic() - started < 1.5
    assert conn.closed


@pytest.mark.slow
def test_a_slow_statement_on_a_working_server_is_cancelled_by_the_server_and_the_connection_stays(server):
    """statement_timeout fires first (the client's bound is that plus a grace): the server says
    so, and the connection is as good as before."""
    conn = connect(server, response_timeout=0.3 + CANCEL_GRACE_SECONDS, options="-c statement_timeout=300")
    started = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 0.3 + CANCEL_GRACE_SECONDS
    assert not conn.closed and conn.execute("SELECT 2").fetchone() == (2,)
    conn.close()


@pytest.mark.slow
def test_without_a_bound_a_query_waits_for_the_server_as_long_as_it_takes(server):
    conn = connect(server, response_timeout=None)
    started = time.monotonic()
    assert conn.execute("SELECT 3 FROM pg_sleep(1.2)").fetchone() == (3,)
    assert time.monotonic() - started >= 1.2
    conn.close()


@pytest.mark.slow
@override_settings(DB_HEALTH_CHECK_TIMEOUT=0.5, DB_STATEMENT_TIMEOUT=30)
def test_the_check_of_a_reused_connection_gives_up_on_a_hung_server_after_db_health_check_timeout(
    django_connection, frozen
):
    db = django_connection
    db.ensure_connection()
    assert db.is_usable()
    assert db.connection.response_timeout == 30 + CANCEL_GRACE_SECONDS  # restored after the check
    frozen()
    started = time.monotonic()
    assert db.is_usable() is False
    assert 0.5 <= time.monotonic() - started < 1.5
    assert db.connection.closed


@pytest.mark.slow
def test_a_django_connection_reconnects_once_the_server_resumes(server, django_connection, frozen):
    db = django_connection
    db.ensure_connection()
    frozen()
    assert db.is_usable() is False
    db.close()
    server.thaw()
    with db.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db
def test_the_project_connection_carries_every_timeout():
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("30s",)
    conn = connection.connection
    assert isinstance(conn, Connection)
    assert conn.response_timeout == 30 + CANCEL_GRACE_SECONDS
    params = conn.info.get_parameters()
    assert {k: params[k] for k in ("connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                                    "keepalives_count", "tcp_user_timeout")} == {
        "connect_timeout": "2", "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
        "keepalives_count": "3", "tcp_user_timeout": "10000",
    }
