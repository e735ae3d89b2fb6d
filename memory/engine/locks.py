"""Single flight: one generation of a product at a time, across threads, processes and hosts.

The lock lives in Redis when Redis answers: a key with a TTL of ``timeout``
(``MEMORY_GENERATION_LOCK_TIMEOUT``) that the process's renewer
(:data:`lock_renewer`, thread ``memory-lock-renewal``) sets back to full every
``timeout / 3`` while the holder generates, so it never expires under a live
generation, however long the provider takes, and frees the product at most
``timeout`` seconds after its holder died. When Redis is down it is a PostgreSQL
advisory lock (held by the holder's session: it ends with the holder's connection,
never expires), and on SQLite without Redis a lock of the process (the
single-process demo; it ends with the holder's ``with`` block).

A waiter waits for as long as the holder holds the lock, that is, for the
holder's generation, which the provider's own timeouts bound (``LLM_TIMEOUT``,
``LLM_CONNECT_TIMEOUT``, ``LLM_MAX_ATTEMPTS``); then it finds the product saved.
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

from memory.infra import redis, replicas

logger = logging.getLogger("memory")

POLL_SECONDS = 0.05


def _lock_name(product_id: str, kind: str) -> str:
    return f"lock:generate:{kind}:" + hashlib.sha256(product_id.encode()).hexdigest()[:32]


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class _RedisLock:
    def __init__(self, name: str, timeout: float, wait: float | None):
        self.name = name
        self.timeout = timeout
        self.wait = wait
        self.lock = None

    def acquire(self) -> bool:
        """Wait for the lock (up to ``wait`` seconds, if given); talks to Redis, so run it through
        :func:`redis.run`."""
        self.lock = redis.lock(self.name, timeout=self.timeout, sleep=POLL_SECONDS, blocking_timeout=self.wait)
        return bool(self.lock.acquire())

    def release(self) -> None:
        """Not through the breaker: a lock that expired while held is no outage."""
        try:
            self.lock.release()
        except redis.REDIS_ERRORS as exc:  # expired (holder too slow) or Redis gone: the TTL frees it
            logger.warning("Não foi possível liberar a trava %s: %s", self.name, exc.__class__.__name__)


@contextmanager
def _advisory_lock(name: str, wait: float | None) -> Iterator[bool]:
    key = _advisory_key(name)
    deadline = None if wait is None else time.monotonic() + wait
    acquired = False
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            acquired = bool(cursor.fetchone()[0])
            if acquired or (deadline is not None and time.monotonic() >= deadline):
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
    def hold(self, name: str, timeout: float | None) -> Iterator[bool]:
        """Hold the lock ``name``; yields False when waiting ``timeout`` seconds (None: for as
        long as it is held) did not get it."""
        with self._guard:
            entry = self._locks.get(name)
            if entry is None:
                entry = self._locks[name] = [threading.Lock(), 0]
            entry[1] += 1
        acquired = False
        try:
            acquired = entry[0].acquire(timeout=-1 if timeout is None else timeout)
            yield acquired
        finally:
            if acquired:
                entry[0].release()
            with self._guard:
                entry[1] -= 1
                if not entry[1]:
                    del self._locks[name]


process_locks = ProcessLocks()


class _Renewal:
    """One held Redis lock, and when its TTL is set back to full next."""

    __slots__ = ("lock", "every", "due", "failed")

    def __init__(self, lock, timeout: float):
        self.lock = lock
        self.every = timeout / 3
        self.due = time.monotonic() + self.every
        self.failed = False  # a renewal failed (Redis did not answer): said once


class LockRenewer:
    """Keeps the Redis generation locks this process holds from expiring (thread ``memory-lock-renewal``).

    A held lock's TTL is set back to its full ``timeout`` every ``timeout / 3``, until its
    holder releases it. A renewal Redis does not answer is logged once per lock and tried
    again at the next turn (the TTL left may outlast the outage); a lock found expired (a
    holder stalled longer than its TTL) is logged and no longer renewed. Started and stopped
    in ``memory.engine.runtime``; a lock taken while it is stopped is not renewed (logged once).
    """

    def __init__(self):
        self._init()

    def _init(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[int, _Renewal] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._said_stopped = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._held)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopping

    def start(self) -> None:
        """Start the thread, unless it runs already."""
        with self._cond:
            if self.running:
                return
            self._stopping = False
            self._said_stopped = False
            self._thread = threading.Thread(target=self._run, name="memory-lock-renewal", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; the locks still held stay listed for a later start."""
        with self._cond:
            thread, self._stopping = self._thread, True
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        with self._cond:
            if self._thread is thread:
                self._thread = None

    def after_fork_in_child(self) -> None:
        """A forked child holds none of its parent's locks, and runs no thread until it starts one."""
        self._init()

    def add(self, lock, timeout: float) -> _Renewal:
        """Renew ``lock`` (a held :func:`redis.lock` of ``timeout`` seconds) until :meth:`discard`."""
        renewal = _Renewal(lock, timeout)
        with self._cond:
            self._held[id(renewal)] = renewal
            if not self.running and not self._said_stopped:
                self._said_stopped = True
                logger.warning(
                    "Renovação das travas de geração parada neste processo: uma geração mais longa que "
                    "%g s pode ser repetida por outro processo", timeout)
            self._cond.notify_all()
        return renewal

    def discard(self, renewal: _Renewal) -> None:
        with self._cond:
            self._held.pop(id(renewal), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    due = [r for r in self._held.values() if r.due <= now]
                    if due:
                        break
                    soonest = min((r.due for r in self._held.values()), default=None)
                    self._cond.wait(None if soonest is None else soonest - now)
                for renewal in due:
                    renewal.due = now + renewal.every
            for renewal in due:  # Redis is asked outside the guard: add() and discard() never wait for it
                self._renew(renewal)

    def _renew(self, renewal: _Renewal) -> None:
        try:
            held = redis.renew_lock(renewal.lock)
        except redis.REDIS_ERRORS as exc:
            with self._cond:
                if id(renewal) not in self._held:
                    return  # released meanwhile: there was nothing left to renew
                said, renewal.failed = renewal.failed, True
            if not said:
                logger.warning("Não foi possível renovar a trava %s: %s; ela expira em até %g s se o Redis "
                               "não voltar", renewal.lock.name, exc.__class__.__name__, renewal.every * 3)
            return
        with self._cond:
            if held or id(renewal) not in self._held:
                return
            del self._held[id(renewal)]
        logger.warning("A trava %s expirou durante a geração (o processo ficou parado mais que o TTL de %g s): "
                       "outro processo pode gerar o mesmo produto", renewal.lock.name, renewal.every * 3)


lock_renewer = LockRenewer()


@contextmanager
def product_lock(product_id: str, kind: str, timeout: float | None = None, wait: float | None = None) -> Iterator[bool]:
    """Hold the product's generation lock for as long as the ``with`` block runs.

    ``timeout`` (default ``MEMORY_GENERATION_LOCK_TIMEOUT``) is the Redis lock's TTL, renewed
    while it is held: how long a dead holder keeps the product. A waiter waits for as long
    as the lock is held, or at most ``wait`` seconds when given; yields False when that
    wait passed without the lock.
    """
    timeout = settings.MEMORY_GENERATION_LOCK_TIMEOUT if timeout is None else timeout
    name = _lock_name(product_id, kind)
    redis_lock = _RedisLock(name, timeout, wait)
    acquired = redis.run(redis_lock.acquire)  # None: no Redis, or it could not answer
    if acquired is not None:
        _after_the_wait()
        renewal = lock_renewer.add(redis_lock.lock, timeout) if acquired else None
        try:
            yield acquired
        finally:
            if renewal is not None:
                lock_renewer.discard(renewal)
                redis_lock.release()
        return
    fallback = _advisory_lock if connection.vendor == "postgresql" else process_locks.hold
    with fallback(name, wait) as acquired:
        _after_the_wait()
        yield acquired


def _after_the_wait() -> None:
    """Past a single-flight lock, whoever held it may have just written what the caller is about to
    look up again: the caller's reads go to the primary from now on, not to a replica that may lag
    (memory.infra.replicas)."""
    replicas.note_write()


@contextmanager
def exclusive_lock(name: str) -> Iterator[bool]:
    """A lock that lives as long as its holder and no longer, whatever the work takes: a
    PostgreSQL advisory lock (freed when the holder's connection ends, a crash included), a
    process lock on SQLite. Never waits: yields False when another holds it. For work that must
    not run twice at once and may take minutes (a Batch API run's upload and creation)."""
    fallback = _advisory_lock if connection.vendor == "postgresql" else process_locks.hold
    with fallback(f"lock:exclusive:{name}", 0) as acquired:
        _after_the_wait()
        yield acquired
