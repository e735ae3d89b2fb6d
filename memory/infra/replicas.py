"""Read replicas (``DATABASE_REPLICA_URLS``): where a read of the memory goes, read-your-writes,
and replicas that stop answering.

Each replica is a ``DATABASES`` alias (``replica_1``, ...; ``settings.DATABASE_REPLICAS``) on the
same bounded backend as the primary (``memory/infra/postgresql``). ``ReplicaRouter`` sends the reads
of the memory's own tables (``ROUTED``: the entries, their versions, the daily stats) to a replica
and every write to the primary; everything else (users, tokens, sessions, Batch API runs, the
scheduled jobs) stays on the primary. Raw SQL reads ask :func:`read_alias`, or :func:`reading`,
which also falls back to the primary when the replica fails midway.

Read-your-writes: a *scope* is one request (``memory.middleware.ReadYourWrites``), one Celery task
(``beecatalog/celery.py``) or, in a command, the whole process (its main thread, entered by
``MemoryConfig.ready()``); the generation pool's threads run in a copy of their caller's context,
hence in its scope. Every statement the primary runs that is not a plain read
(:func:`note_statement`, installed on the primary's connections by the backend) marks the scope,
and from then on its reads go to the primary too: replica lag never shows it content older than
what it wrote. A thread outside any scope (the background threads) reads the primary.
Reads inside a transaction of the primary (``select_for_update`` included) stay on it.

A replica that cannot be reached is skipped: one warning per outage, its reads served by the
primary (or another replica), and it is tried again ``MEMORY_REPLICA_RETRY_SECONDS`` later.
"""
from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger("memory")

PRIMARY = DEFAULT_DB_ALIAS

# The models whose reads may be served by a replica: the memory's reads (lookups, batch checks,
# lists, export, stats, the admin's list and the dashboard). Labels, not classes: infra sits below
# the models.
ROUTED = frozenset({"memory.ProductMemoryEntry", "memory.ContentVersion", "memory.DailyStats"})

T = TypeVar("T")


class Scope:
    """What one request, task or command did: ``wrote`` once the primary ran a write for it;
    ``replica``, the replica its reads went to (kept while it answers, so that a request's reads
    see one replica's state, e.g. an export's entries and their versions)."""

    __slots__ = ("wrote", "replica")

    def __init__(self):
        self.wrote = False
        self.replica: str | None = None


_scope: ContextVar[Scope | None] = ContextVar("memory_replica_scope", default=None)


def configured() -> bool:
    return bool(getattr(settings, "DATABASE_REPLICAS", ()))


def current() -> Scope | None:
    return _scope.get()


def enter() -> Token:
    """Start a new scope in this context (a request, a task); :func:`leave` with the token ends it."""
    return _scope.set(Scope())


def leave(token: Token) -> None:
    _scope.reset(token)


@contextmanager
def scope():
    token = enter()
    try:
        yield
    finally:
        leave(token)


def enter_process_scope() -> None:
    """The calling thread's context is one scope until the process ends: a command's main thread."""
    if _scope.get() is None:
        _scope.set(Scope())


def note_write() -> None:
    """The current scope wrote to the primary: its reads go there from now on."""
    found = _scope.get()
    if found is not None:
        found.wrote = True


def wrote() -> bool:
    found = _scope.get()
    return found is not None and found.wrote


# A statement that only reads: SELECT (not FOR UPDATE/SHARE), SHOW, EXPLAIN without ANALYZE.
_READ = re.compile(r"\s*(?:SELECT|SHOW|EXPLAIN(?!\s*\(?\s*ANALY[SZ]E))\b", re.IGNORECASE)
_LOCKING = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE|KEY\s+SHARE)\b", re.IGNORECASE)


def reads_only(sql: str) -> bool:
    return bool(_READ.match(sql)) and not _LOCKING.search(sql)


def note_statement(execute, sql, params, many, context):
    """Django's ``execute_wrapper`` of the primary's connections: a statement that may write
    marks the scope (before it runs: a write that fails midway may still have been seen)."""
    if not reads_only(sql if isinstance(sql, str) else str(sql)):
        note_write()
    return execute(sql, params, many, context)


# --- replicas' health -------------------------------------------------------------------------

_lock = threading.Lock()
_down_until: dict[str, float] = {}  # alias -> time.monotonic() of its next try
_turn = itertools.count()


def _retry_seconds() -> float:
    return float(getattr(settings, "MEMORY_REPLICA_RETRY_SECONDS", 5.0))


def mark_down(alias: str, error: BaseException) -> None:
    """``alias`` failed: skipped until its next try; the first failure of an outage is logged."""
    with _lock:
        first = alias not in _down_until
        _down_until[alias] = time.monotonic() + _retry_seconds()
    try:
        connections[alias].close()
    except DatabaseError:
        pass
    if first:
        logger.warning(
            "Réplica de leitura %s indisponível (%s); as leituras vão ao primário, nova tentativa a cada %g s",
            alias, " ".join(str(error).split())[:200] or type(error).__name__, _retry_seconds(),
        )


def _mark_up(alias: str) -> None:
    with _lock:
        was_down = _down_until.pop(alias, None) is not None
    if was_down:
        logger.info("Réplica de leitura %s respondendo de novo; leituras voltam a ela", alias)


def _skipped(alias: str) -> bool:
    with _lock:
        until = _down_until.get(alias)
    return until is not None and time.monotonic() < until


def _reachable(alias: str) -> bool:
    """Connect (or check the connection this request has not used yet); a failure marks it down."""
    connection = connections[alias]
    try:
        connection.close_if_health_check_failed()
        connection.ensure_connection()
    except DatabaseError as exc:
        mark_down(alias, exc)
        return False
    _mark_up(alias)
    return True


def reset() -> None:
    """Forget every outage (tests)."""
    with _lock:
        _down_until.clear()


def read_alias() -> str:
    """The alias a read of the memory goes to now: a replica that answers, unless this scope wrote,
    a transaction of the primary is open, no scope is known, or no replica answers."""
    aliases = getattr(settings, "DATABASE_REPLICAS", ())
    if not aliases:
        return PRIMARY
    found = _scope.get()
    if found is None or found.wrote or connections[PRIMARY].in_atomic_block:
        return PRIMARY
    if found.replica is not None and not _skipped(found.replica) and _reachable(found.replica):
        return found.replica
    start = next(_turn)
    for offset in range(len(aliases)):
        alias = aliases[(start + offset) % len(aliases)]
        if alias != found.replica and not _skipped(alias) and _reachable(alias):
            found.replica = alias
            return alias
    found.replica = None
    return PRIMARY


def _connection_lost(alias: str, error: BaseException) -> bool:
    if isinstance(error, InterfaceError):
        return True
    connection = connections[alias]
    return connection.connection is None or not connection.is_usable()


def reading(read: Callable[[str], T]) -> T:
    """``read(alias)`` on :func:`read_alias`; a replica that fails midway (its connection lost, or a
    query canceled by recovery) is dropped for this read, and marked down if unreachable, and the
    read runs again on the primary."""
    alias = read_alias()
    if alias == PRIMARY:
        return read(alias)
    try:
        return read(alias)
    except (OperationalError, InterfaceError) as exc:
        if _connection_lost(alias, exc):
            mark_down(alias, exc)
        return read(PRIMARY)


class ReplicaRouter:
    """``DATABASE_ROUTERS``: the memory's reads to :func:`read_alias`, every write to the primary."""

    def db_for_read(self, model, **hints):
        if model._meta.label in ROUTED:
            return read_alias()
        return PRIMARY

    def db_for_write(self, model, **hints):
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints):
        return True  # every alias holds the same data

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == PRIMARY  # replicas receive the primary's schema by replication
