"""Single flight: one generation of a product at a time, across threads, processes and hosts.

The lock lives in Redis when Redis answers (a key with a TTL, so a crashed
holder frees the product after ``timeout`` seconds), in a PostgreSQL advisory
lock when Redis is down (freed when the holder's connection ends), and in the
process on SQLite without Redis (the single-process demo).
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from django.conf import settings
from django.db import connection

from memory.infra import redis

logger = logging.getLogger("memory")

POLL_SECONDS = 0.05

_local_locks: dict[str, threading.Lock] = {}
_local_locks_guard = threading.Lock()


def _lock_name(product_id: str, kind: str) -> str:
    return f"lock:generate:{kind}:" + hashlib.sha256(product_id.encode()).hexdigest()[:32]


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class _RedisLock:
    def __init__(self, name: str, timeout: float):
        from django.core.cache import caches

        cache = caches["memory_l2"]
        self.name = name
        self.lock = cache.client.get_client(write=True).lock(
            cache.client.make_key(name), timeout=timeout, sleep=POLL_SECONDS, blocking_timeout=timeout
        )

    def acquire(self) -> bool:
        acquired = bool(self.lock.acquire())
        redis.guard.succeeded()
        return acquired

    def release(self) -> None:
        try:
            self.lock.release()
        except redis.REDIS_ERRORS as exc:  # expired (holder too slow) or Redis gone: the TTL frees it
            logger.warning("Não foi possível liberar a trava %s: %s", self.name, exc.__class__.__name__)


@contextmanager
def _advisory_lock(name: str, timeout: float) -> Iterator[bool]:
    key = _advisory_key(name)
    deadline = time.monotonic() + timeout
    acquired = False
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            acquired = bool(cursor.fetchone()[0])
            if acquired or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


@contextmanager
def _process_lock(name: str, timeout: float) -> Iterator[bool]:
    with _local_locks_guard:
        lock = _local_locks.setdefault(name, threading.Lock())
    acquired = lock.acquire(timeout=timeout)
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()


@contextmanager
def product_lock(product_id: str, kind: str, timeout: float | None = None) -> Iterator[bool]:
    """Hold the product's generation lock; yields False when waiting for it timed out."""
    timeout = settings.MEMORY_GENERATION_LOCK_TIMEOUT if timeout is None else timeout
    name = _lock_name(product_id, kind)
    redis_lock = None
    if redis.configured() and redis.guard.available():
        try:
            redis_lock = _RedisLock(name, timeout)
            acquired = redis_lock.acquire()
        except redis.REDIS_ERRORS as exc:
            redis.guard.failed(exc)
            redis_lock = None
    if redis_lock is not None:
        try:
            yield acquired
        finally:
            if acquired:
                redis_lock.release()
        return
    fallback = _advisory_lock if connection.vendor == "postgresql" else _process_lock
    with fallback(name, timeout) as acquired:
        yield acquired
