"""Django's PostgreSQL backend, with connections that give up on a server that stops answering.

libpq has no read timeout: on a hung server (stopped, stuck on its disk, its host frozen while
the kernel still acknowledges), a query waits for its answer forever, and so does every request
that uses the connection, the per-request check of a persistent connection included. TCP
keepalives and ``tcp_user_timeout`` catch a peer that stops acknowledging, PostgreSQL's
``statement_timeout`` a statement that runs too long on a server that still works; neither
catches a server that is there for the kernel and does nothing. Here the client bounds every
wait for the server: past the bound the connection is closed and the call raises
``OperationalError``, which the API answers with a 503.
"""
from __future__ import annotations

from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base
from django.db.backends.postgresql.psycopg_any import IsolationLevel
from django.utils.asyncio import async_unsafe

from memory.infra import replicas

# How long the client still waits after the server's own statement_timeout, for the server to
# report the cancellation, before it takes the server for hung.
CANCEL_GRACE_SECONDS = 2.0

# What psycopg's Connection.wait raises when its timeout expires (an OperationalError psycopg
# keeps private): named here so that a psycopg without it fails on import, not mid-outage.
_WAIT_TIMEOUT = psycopg.errors._WaitTimeout


class Connection(psycopg.Connection):
    """A psycopg connection that closes itself when one wait for the server outlasts ``response_timeout``."""

    response_timeout: float | None = None  # seconds; None waits as long as it takes

    def wait(self, gen, interval=0.1, timeout=None):  # 0.1: psycopg's own wake-up interval
        if timeout is not None or self.response_timeout is None:
            return super().wait(gen, interval, timeout)  # psycopg's own bounded waits
        limit = self.response_timeout
        try:
            return super().wait(gen, interval, limit)
        except _WAIT_TIMEOUT:
            # The exchange was cut midway: nothing more can be sent or read on this connection.
            self.close()
            raise psycopg.OperationalError(
                f"PostgreSQL não respondeu em {limit:g} s; conexão encerrada"
            ) from None


def response_timeout() -> float | None:
    """The bound of an ordinary wait: PostgreSQL's statement_timeout and the grace, or none without one."""
    if not settings.DB_STATEMENT_TIMEOUT:
        return None
    return settings.DB_STATEMENT_TIMEOUT + CANCEL_GRACE_SECONDS


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.alias == replicas.PRIMARY and replicas.configured():
            # read-your-writes: a statement that may write sends the scope's next reads here
            self.execute_wrappers.append(replicas.note_statement)

    @async_unsafe
    def get_new_connection(self, conn_params):
        """Django's, connecting with ``Connection`` (Django's own pool, when configured, uses psycopg's)."""
        if self.pool:
            return super().get_new_connection(conn_params)
        options = self.settings_dict["OPTIONS"]
        try:
            self.isolation_level = IsolationLevel(options.get("isolation_level", IsolationLevel.READ_COMMITTED))
        except ValueError:
            raise ImproperlyConfigured(
                f"Invalid transaction isolation level {options['isolation_level']} specified. "
                f"Use one of the psycopg.IsolationLevel values."
            ) from None
        connection = Connection.connect(**conn_params)
        connection.response_timeout = response_timeout()
        if "isolation_level" in options:
            connection.isolation_level = self.isolation_level
        return connection

    def is_usable(self):
        """Django's check of a reused connection (``CONN_HEALTH_CHECKS``, and after an error): a
        ``SELECT 1`` that must answer within ``DB_HEALTH_CHECK_TIMEOUT``, or the connection is closed
        and a new one made. On a server that works it answers in a millisecond; waiting longer
        for it only delays the request that follows."""
        connection = self.connection
        if not isinstance(connection, Connection):
            return super().is_usable()
        connection.response_timeout = settings.DB_HEALTH_CHECK_TIMEOUT
        try:
            return super().is_usable()
        finally:
            connection.response_timeout = response_timeout()


@contextmanager
def unbounded(db):
    """Inside: the statements of ``db``'s current transaction may run as long as they take, on the
    server (``statement_timeout``, for the transaction only) and here (no response bound). For a
    maintenance step an operator runs knowingly (``manage_memory partition``), never a request."""
    db.ensure_connection()
    raw = db.connection
    previous = getattr(raw, "response_timeout", None)
    with db.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")
    if isinstance(raw, Connection):
        raw.response_timeout = None
    try:
        yield
    finally:
        if isinstance(raw, Connection):
            raw.response_timeout = previous
