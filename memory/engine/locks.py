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


def _lock_name(product_id: str, kind: str) -> str:
    return f"lock:generate:{kind}:" + hashlib.sha256(product_id.encode()).hexdigest()[:32]


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class _RedisLock:
    def __init__(self, name: str, timeout: float):
        self.name = name
        self.timeout = timeout
        self.lock = None

    def acquire(self) -> bool:
        """Wait up to ``timeout`` for the lock; talks to Redis, so run it through :func:`redis.run`."""
        self.lock = redis.lock(self.name, timeout=self.timeout, sleep=POLL_SECONDS, blocking_timeout=self.timeout)
        return bool(self.lock.acquire())

    def release(self) -> None:
        """Not through the breaker: a lock that expired while held is no outage."""
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


class ProcessLocks:
    """Locks by name within this process (SQLite without Redis: the single-process demo).

    A name has an entry only while someone holds or waits for its lock, so the table is as
    large as the generations under way, not as the products ever generated.
    """

    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # name -> [lock, holders and waiters]

    def __len__(self) -> int:
        return len(self._locks)

    def after_fork_in_child(self) -> None:
        """A forked child holds none of its parent's locks (the threads holding them stayed behind)."""
        self._guard = threading.Lock()
        self._locks = {}

    @contextmanager
    def hold(self, name: str, timeout: float) -> Iterator[bool]:
        """Hold the lock ``name``; yields False when waiting for it timed out."""
        with self._guard:
            entry = self._locks.get(name)
            if entry is None:
                entry = self._locks[name] = [threading.Lock(), 0]
            entry[1] += 1
        acquired = False
        try:
            acquired = entry[0].acquire(timeout=timeout)
            yield acquired
        finally:
            if acquired:
                entry[0].release()
            with self._guard:
                entry[1] -= 1
                if not entry[1]:
                    del self._locks[name]


process_locks = ProcessLocks()


@contextmanager
def product_lock(product_id: str, kind: str, timeout: float | None = None) -> Iterator[bool]:
    """Hold the product's generation lock; yields False when waiting for it timed out."""
    timeout = settings.MEMORY_GENERATION_LOCK_TIMEOUT if timeout is None else timeout
    name = _lock_name(product_id, kind)
    redis_lock = _RedisLock(name, timeout)
    acquired = redis.run(redis_lock.acquire)  # None: no Redis, or it could not answer
    if acquired is not None:
        try:
            yield acquired
        finally:
            if acquired:
                redis_lock.release()
        return
    fallback = _advisory_lock if connection.vendor == "postgresql" else process_locks.hold
    with fallback(name, timeout) as acquired:
        yield acquired


@contextmanager
def exclusive_lock(name: str) -> Iterator[bool]:
    """A lock that lives as long as its holder and no longer, whatever the work takes: a
    PostgreSQL advisory lock (freed when the holder's connection ends, a crash included), a
    process lock on SQLite. Never waits: yields False when another holds it. For work that must
    not run twice at once and may take minutes (a Batch API run's upload and creation)."""
    fallback = _advisory_lock if connection.vendor == "postgresql" else process_locks.hold
    with fallback(f"lock:exclusive:{name}", 0) as acquired:
        yield acquired
