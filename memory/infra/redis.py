"""The one owner of Redis: the client, the key names, and the circuit breaker around every call.

No other module looks up the ``memory_l2`` cache or its client, and none decides by itself
whether Redis is worth trying: they hand an operation to :func:`run` (or decorate a function
with :func:`guarded`), which

- skips it while Redis is off (after a failure, for ``MEMORY_REDIS_RETRY_AFTER`` seconds),
- turns a Redis error into the caller's default, logging one warning per outage,
- marks Redis back on the first success after an outage, running the recovery callbacks
  (the L2 tier replays the deletes Redis missed).

Redis is not trusted: whoever can write to it could otherwise serve any content. The cache's
client (:class:`memory.infra.cache_backends.SigningClient`) signs every value it writes with
an HMAC under a key derived from ``SECRET_KEY`` and checks it on every read, before it
inflates at most :func:`memory.infra.compressors.max_value_bytes`. What a reader still finds
wrong in a value is a miss: :func:`discard` deletes it and logs it.

Redis is optional: without ``REDIS_URL`` there is no ``memory_l2`` cache, :func:`configured`
is False and every operation answers its default at once. The Sentinel and Cluster modes
plug in here, behind the same functions.

What it hands out: :func:`cache` (the django-redis cache), :func:`client` (redis-py, for what
the cache API lacks), :func:`make_key`/:func:`make_pattern` (key names), :func:`encode`/
:func:`decode` (values as stored: signed, with the serializer and compressor of ``OPTIONS``),
:func:`discard`/:func:`discard_fields` (what a reader found invalid: deleted, logged once),
:func:`channel` and :func:`pubsub` (the invalidation channel), :func:`lock` (a lock with a TTL) and
:func:`renew_lock` (its TTL set back to full while it is held),
:func:`claim` and :func:`set_where_claimed` (writes made only if no one changed a key meanwhile),
:func:`transaction` (reads, then writes made only if no one changed the keys read). What it runs:
:func:`run`/:func:`guarded` (an operation through the breaker), :func:`available` (would
:func:`run` try Redis now?), :func:`ping`/:func:`probe`/:func:`info` (the truth now, also told
to the breaker), and :data:`guard` with its recovery callbacks (``guard.on_recovery``).
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.dispatch import receiver
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import LockNotOwnedError, RedisError, WatchError

from memory.infra.cache_backends import SIGNATURE_BYTES, InvalidValue  # noqa: F401 (the owner hands them out)

logger = logging.getLogger("memory")

ALIAS = "memory_l2"

# What a Redis call may raise when Redis is away, slow or broken: never fatal to the memory.
REDIS_ERRORS: tuple[type[BaseException], ...] = (ConnectionInterrupted, RedisError, OSError)

T = TypeVar("T")


class RedisGuard:
    """Is Redis worth trying now? One per process, shared by every Redis call.

    On the first failure it logs one warning and keeps Redis off for ``retry_after``
    seconds; the first success after an outage logs the recovery and runs the
    registered recovery callbacks.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._in_outage = False
        self._recovery_callbacks: list[Callable[[], None]] = []

    @property
    def in_outage(self) -> bool:
        return self._in_outage

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the first success after each outage; a Redis error it raises
        starts a new outage (it is tried again on the next recovery)."""
        if callback not in self._recovery_callbacks:
            self._recovery_callbacks.append(callback)

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._down_until = time.monotonic() + settings.MEMORY_REDIS_RETRY_AFTER
            first = not self._in_outage
            self._in_outage = True
        if first:
            logger.warning(
                "Redis indisponível (%s); seguindo com L1 + PostgreSQL, nova tentativa em %.0f s",
                exc.__class__.__name__,
                settings.MEMORY_REDIS_RETRY_AFTER,
            )

    def succeeded(self) -> None:
        if not self._in_outage:
            return
        with self._lock:
            recovered = self._in_outage
            self._in_outage = False
        if recovered:
            logger.info("Redis disponível novamente")
            for callback in self._recovery_callbacks:
                try:
                    callback()
                except REDIS_ERRORS as exc:  # Redis went again during the recovery: a new outage
                    self.failed(exc)
                    return

    def reset(self) -> None:
        """Forget any outage: Redis is tried on the next call."""
        with self._lock:
            self._down_until = 0.0
            self._in_outage = False


guard = RedisGuard()

# What is derived from ``CACHES`` is kept until CACHES changes (tests override it):
# ``caches[alias]`` is a context-local lookup, and ``configured()`` is asked several times a read.
_derived: dict[str, Any] = {}


@receiver(setting_changed)
def _caches_changed(setting, **kwargs):
    if setting == "CACHES":
        _derived.clear()


def configured() -> bool:
    """Is there an L2 (``REDIS_URL`` set)?"""
    found = _derived.get("configured")
    if found is None:
        found = _derived["configured"] = ALIAS in settings.CACHES
    return found


def cache():
    """The django-redis cache of the memory (thread-safe: one connection pool for every thread)."""
    found = _derived.get("cache")
    if found is None:
        found = _derived["cache"] = caches[ALIAS]
    return found


def client():
    """The redis-py client, for the calls django-redis' cache API does not offer."""
    return cache().client.get_client(write=True)


def make_key(name: str) -> str:
    """A memory key as stored in Redis (with ``KEY_PREFIX`` and version)."""
    return cache().client.make_key(name)


def make_pattern(pattern: str) -> str:
    return cache().client.make_pattern(pattern)


def encode(value: Any) -> bytes:
    """A value as stored: signed, through the serializer and the compressor of ``OPTIONS``
    (:class:`memory.infra.cache_backends.SigningClient`)."""
    return cache().client.encode(value, allow_int=False)


def decode(raw: Any) -> Any:
    """A value :func:`encode` wrote (or a whole number INCR left), back; :class:`InvalidValue`
    for anything else: unsigned or forged, larger than any entry, a decompression bomb, unreadable."""
    return cache().client.decode(raw)


class _InvalidValueLog:
    """The warnings about what Redis held that the memory did not write: one per place (a key
    is deleted, so it comes back only if rewritten), and at most ``per_minute`` lines a minute;
    past that, one line counts the rest."""

    def __init__(self, per_minute: int = 20, remembered: int = 10_000):
        self.per_minute = per_minute
        self.remembered = remembered
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._window_start = 0.0
        self._lines = 0
        self._silenced = 0

    def report(self, where: str, line: str) -> None:
        """Log ``line`` unless a line about ``where`` was logged already."""
        now = time.monotonic()
        with self._lock:
            if where in self._seen:
                self._seen.move_to_end(where)
                return
            self._seen[where] = None
            if len(self._seen) > self.remembered:
                self._seen.popitem(last=False)
            if now - self._window_start >= 60:
                silenced, self._silenced = self._silenced, 0
                self._window_start, self._lines = now, 0
                if silenced:
                    logger.warning("Redis: mais %d valor(es) inválido(s) descartado(s) sem registro no último minuto",
                                   silenced)
            if self._lines >= self.per_minute:
                self._silenced += 1
                return
            self._lines += 1
        logger.warning("%s", line)

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
            self._window_start, self._lines, self._silenced = 0.0, 0, 0


invalid_values = _InvalidValueLog()


def _shown(name) -> str:
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def discard(found: dict) -> None:
    """Delete the keys whose values a reader found invalid (``{redis key: why}``), logging each
    once. (A copy a save wrote since the read goes too: the next read fills it again from L3.)"""
    if not found:
        return
    for key, reason in found.items():
        invalid_values.report(_shown(key), f"Redis: valor inválido em {_shown(key)} descartado ({reason}); "
                                           "a memória segue pelo PostgreSQL")
    run(lambda: client().unlink(*found))


def discard_fields(key, fields: dict) -> None:
    """Delete the fields of the hash ``key`` a reader found invalid (``{field: why}``), logging each once."""
    if not fields:
        return
    for field, reason in fields.items():
        where = f"{_shown(key)} (campo {_shown(field)!r})"
        invalid_values.report(where, f"Redis: contador inválido em {where} descartado ({reason})")
    run(lambda: client().hdel(key, *fields))


def channel(name: str) -> str:
    """A pub/sub channel of this memory. Pub/sub ignores Redis database numbers, so the channel
    names the database itself: memories sharing a Redis server on other databases never hear
    each other."""
    db = client().connection_pool.connection_kwargs.get("db", 0)
    return make_key(f"{name}:{db}")


def pubsub():
    """A pub/sub connection that skips the subscribe confirmations. Not run through the breaker:
    its one user, the L1 invalidation listener, reconnects on its own schedule."""
    return client().pubsub(ignore_subscribe_messages=True)


def lock(name: str, *, timeout: float, sleep: float = 0.1, blocking_timeout: float | None = None):
    """A redis-py lock on the memory key ``name``; its TTL of ``timeout`` seconds frees it when
    the holder dies. Acquire it through :func:`run` (it talks to Redis).

    Its token is not kept per thread, so that another thread may :func:`renew_lock` it: a lock
    object belongs to one holder (make one per acquisition)."""
    return client().lock(make_key(name), timeout=timeout, sleep=sleep, blocking_timeout=blocking_timeout,
                         thread_local=False)


def renew_lock(held) -> bool:
    """Set a held :func:`lock`'s TTL back to its full ``timeout``; False when it is no longer
    held (it expired, or another holder has it now: nothing is changed then). A Redis error is
    raised, not reported to the breaker: like a release, a renewal is not the caller's request."""
    try:
        held.reacquire()
    except LockNotOwnedError:
        return False
    return True


def claim(names: list[str], token: str, ttl: float) -> list[str | None]:
    """What each key of ``names`` (made keys) holds now, after setting it to ``token`` for ``ttl``
    seconds where it held nothing; None where it went meanwhile. One round trip; run it
    through :func:`run`."""
    pipe = client().pipeline(transaction=False)
    for name in names:
        pipe.set(name, token, nx=True, px=max(1, int(ttl * 1000)))
        pipe.get(name)
    held = pipe.execute()[1::2]
    return [value.decode() if value is not None else None for value in held]


def set_where_claimed(writes: list[tuple[str, bytes, int, str, str]]) -> int:
    """Each ``(name, value, px, claim_name, token)``: ``SET name value NX PX px`` where
    ``claim_name`` still holds the ``token`` a :func:`claim` gave, then drop those claims; all
    of it atomically (WATCH/MULTI: nothing is written if a claim changes before the write).
    Returns how many were written; run it through :func:`run`.

    Whoever replaces or removes what ``name`` copies deletes ``claim_name`` with it, so a write
    prepared before that change is refused: WATCH rather than a Lua script, so that it also runs
    on servers without scripting (fakeredis without lupa)."""
    if not writes:
        return 0
    claim_names = list(dict.fromkeys(write[3] for write in writes))
    with client().pipeline(transaction=True) as pipe:
        pipe.watch(*claim_names)
        held = dict(zip(claim_names, pipe.mget(claim_names)))
        chosen = [w for w in writes if held[w[3]] is not None and held[w[3]].decode() == w[4]]
        if not chosen:
            return 0
        pipe.multi()
        for name, value, px, _, _ in chosen:
            pipe.set(name, value, nx=True, px=max(1, px))
        pipe.delete(*dict.fromkeys(w[3] for w in chosen))
        try:
            replies = pipe.execute()
        except WatchError:  # a claim changed between the check and the write: nothing written
            return 0
    return sum(bool(reply) for reply in replies[:len(chosen)])


def transaction(keys: list[str], step: Callable[[Any], tuple[T, Callable[[Any], None] | None]]) -> T:
    """``step`` run atomically over ``keys`` (made keys), again until no other client changed
    them meanwhile; its result. ``step(pipe)`` reads through ``pipe`` (each call answers at once,
    ``pipe.time()`` included) and returns ``(result, write)``: ``write(pipe)`` queues the writes,
    executed only if no key of ``keys`` changed since the reads (``None``: nothing to write).

    WATCH/MULTI rather than a Lua script, so that it also runs on servers without scripting
    (fakeredis without lupa). Run it through :func:`run`."""
    with client().pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(*keys)
                result, write = step(pipe)
                if write is None:
                    pipe.unwatch()
                    return result
                pipe.multi()
                write(pipe)
                pipe.execute()
                return result
            except WatchError:  # another client wrote one of the keys between the reads and the writes
                pipe.reset()


def available() -> bool:
    """Would :func:`run` try Redis now (configured, and not waiting out an outage)?"""
    return configured() and guard.available()


def run(operation: Callable[[], T], default: T = None, on_failure: Callable[[], None] | None = None) -> T:
    """``operation()`` against Redis, or ``default`` (after ``on_failure``) when Redis is
    not configured, is off, or fails."""
    if not configured() or not guard.available():
        if on_failure:
            on_failure()
        return default
    try:
        result = operation()
    except REDIS_ERRORS as exc:
        guard.failed(exc)
        if on_failure:
            on_failure()
        return default
    guard.succeeded()
    return result


def guarded(default: Any = None):
    """Decorator: the function talks to Redis; it answers ``default`` when Redis cannot."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return run(lambda: function(*args, **kwargs), default)

        return wrapper

    return decorate


def ping() -> None:
    """Ask Redis whether it answers; raises ``ConnectionError`` with a pt-BR message if not.

    Unlike :func:`run` it ignores the retry delay (health checks and warm-ups want the truth
    now) but it still tells the guard what it found.
    """
    try:
        client().ping()
    except REDIS_ERRORS as exc:
        guard.failed(exc)
        raise ConnectionError(f"Redis não responde ({exc.__class__.__name__}: {exc})") from None
    guard.succeeded()


def probe() -> bool:
    """During an outage, once the retry delay is over: is Redis back? (Run off-request, so that
    the deletes Redis missed are replayed within a tick even if no request touches Redis.)"""
    if not configured() or not guard.in_outage or not guard.available():
        return False
    try:
        ping()
    except ConnectionError:
        return False
    return True


def info() -> dict:
    """``{"available", "used_memory_bytes", "keys"}``; ``available`` is False without Redis.

    Asked even during the retry delay, like :func:`ping`: stats and ``/metrics`` report what
    Redis answers now."""
    found = {"available": False, "used_memory_bytes": None, "keys": None}
    if not configured():
        return found
    try:
        redis = client()
        found["used_memory_bytes"] = int(redis.info("memory")["used_memory"])
        found["keys"] = int(redis.dbsize())
    except REDIS_ERRORS as exc:
        guard.failed(exc)
        return {"available": False, "used_memory_bytes": None, "keys": None}
    guard.succeeded()
    found["available"] = True
    return found
