"""Health of what the memory depends on: PostgreSQL, Redis, the backup folder, the broker.

``status`` is ``ok`` when everything answers, ``degraded`` when only Redis, the
broker (unreachable, or no worker consuming its queue) or the backup folder fails
(the memory still works through PostgreSQL), and ``down`` when PostgreSQL fails,
lacks the database DATABASE_URL names, or lacks migrations.
"""
from __future__ import annotations

import os
import time

from django.conf import settings
from django.db import connection

from memory.infra import redis
from memory.infra.migration_state import (
    NO_DATABASE, NOT_MIGRATED, MissingDatabase, PendingMigrations, existing_database, require_migrated,
)

# How long the broker check waits for a worker's answer: a running worker answers within
# milliseconds, so this is what health costs when none runs.
WORKER_PING_TIMEOUT = 1.0


class NoWorker(Exception):
    """The broker answers but no Celery worker does: queued tasks wait and nothing runs them."""


# Failures worded for the reader here, shown without their class name.
_SELF_EXPLAINED = (PendingMigrations, MissingDatabase, NoWorker)


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
    except PendingMigrations as exc:
        result = {"ok": False, "error": str(exc)[:300], "pending_migrations": len(exc.names)}
    except MissingDatabase as exc:
        result = {"ok": False, "error": str(exc)[:300], "missing_database": exc.name}
    except _SELF_EXPLAINED as exc:
        result = {"ok": False, "error": str(exc)[:300]}
    except Exception as exc:  # a health check reports every failure, whatever its type
        result = {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"[:300]}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def check_database() -> dict:
    """PostgreSQL answers, has the database (else ``MissingDatabase``) and every migration applied
    (else ``PendingMigrations``)."""
    with existing_database(connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    require_migrated(connection.alias)
    return {"vendor": connection.vendor}


def check_redis() -> dict:
    if not redis.configured():
        return {"configured": False}
    # raises ConnectionError("Redis não responde (...)") naming the servers that do not, and tells
    # the breaker what it found
    found = redis.ping()
    return {"configured": True, "mode": redis.mode(), "nodes": [node["address"] for node in found if node["reached"]]}


def check_backup_dir() -> dict:
    path = settings.MEMORY_BACKUP_DIR
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"sem permissão de escrita em {path}")
    return {"path": str(path)}


def check_broker() -> dict:
    """The broker answers and at least one worker answers a ping through it (else ``NoWorker``)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or not settings.CELERY_BROKER_URL:
        return {"configured": False, "mode": "eager"}
    from beecatalog.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)
        # limit=1: the first pong ends the wait. A worker of the solo pool busy with a task
        # cannot answer; the prefork pool's (the default) main process always can.
        replies = app.control.ping(timeout=WORKER_PING_TIMEOUT, limit=1, connection=conn)
    if not replies:
        raise NoWorker(
            f"nenhum worker do Celery respondeu em {WORKER_PING_TIMEOUT:.0f} s: as tarefas ficam na fila "
            "sem ser executadas. Inicie um: celery -A beecatalog worker --loglevel INFO"
        )
    return {"configured": True, "worker": next(iter(replies[0]))}


def check_health() -> dict:
    """``{"status": "ok" | "degraded" | "down", "checks": {...}}``, and a ``detail`` line for
    anyone when the database does not exist (``NO_DATABASE``) or lacks migrations (``NOT_MIGRATED``)."""
    checks = {
        "database": _timed(check_database),
        "redis": _timed(check_redis),
        "backup_dir": _timed(check_backup_dir),
        "broker": _timed(check_broker),
    }
    if not checks["database"]["ok"]:
        status = "down"
    elif all(c["ok"] for c in checks.values()):
        status = "ok"
    else:
        status = "degraded"
    health = {"status": status, "checks": checks}
    if checks["database"].get("pending_migrations"):
        health["detail"] = NOT_MIGRATED
    elif checks["database"].get("missing_database"):
        health["detail"] = NO_DATABASE
    return health
