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

Redis is optional: without ``REDIS_URL`` (or a Sentinel, or a Cluster) there is no ``memory_l2``
cache, :func:`configured` is False and every operation answers its default at once.

Three modes (:func:`mode`), behind the same functions: one server (``REDIS_URL``), Redis
Sentinel (``REDIS_SENTINELS`` + ``REDIS_SENTINEL_MASTER``: django-redis' Sentinel connection
factory, whose pool asks the sentinels for the master on each new connection, so a promoted
master is followed without a restart) and Redis Cluster (``REDIS_CLUSTER_NODES``: redis-py's
``RedisCluster``). What a cluster cannot run as one server does is rewritten here, and only
here: batch reads across slots (:func:`mget`: ``mget_nonatomic``, one pipeline per node),
pipelines (:func:`pipeline`: a multi-key ``DELETE`` as one per key, ``PUBLISH`` as the sharded
``SPUBLISH``), the invalidation channel (:func:`subscribe`: ``SSUBSCRIBE`` on the master that owns
its slot), the claimed fills (:func:`set_where_claimed`: one script per entry, its copy and its
claim in one slot) and the read-then-write steps (:func:`transaction`: ``WATCH``/``MULTI`` on
the master of the keys' one slot, and its clock). Keys that one operation takes together carry
a hash tag (``{…}``) so that they share a slot: an entry's copy and fill claim
(``entry:kind:{product_id}``), the counter hashes (``{counters}:…``), the provider limit's keys
(``{llm:rate}:…``, ``{llm:breaker}:…``).

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
from django.core import checks
from django.core.cache import caches
from django.core.signals import setting_changed
from django.dispatch import receiver
from django_redis.exceptions import ConnectionInterrupted
from redis.cluster import RedisCluster
from redis.exceptions import LockNotOwnedError, RedisClusterException, RedisError, WatchError

from beecatalog.environment import redis_mode_conflict
from beecatalog.redis_cache import CLUSTER, SENTINEL, SINGLE
from memory.infra.cache_backends import (  # noqa: F401 (the owner hands them out)
    SIGNATURE_BYTES, InvalidValue, SigningClusterClient, SigningSentinelClient,
)

logger = logging.getLogger("memory")

ALIAS = "memory_l2"

# What a Redis call may raise when Redis is away, slow or broken: never fatal to the memory.
# (A cluster's own errors, such as a slot no master serves during a failover, included.)
REDIS_ERRORS: tuple[type[BaseException], ...] = (ConnectionInterrupted, RedisError, RedisClusterException, OSError)

T = TypeVar("T")


class RedisGuard:
    """Is Redis worth trying now? One per process, shared by every Redis call.

    On the first failure it logs one warning and keeps Redis off for ``retry_after``
    seconds; the first success after an outage logs the recovery and runs the
    registered recovery callbacks. A call says when it began (:attr:`failures`): one that began
    before the latest failure (its reply was on its way when Redis went) ends no outage.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._in_outage = False
        self._failures = 0
        self._recovery_callbacks: list[Callable[[], None]] = []

    @property
    def failures(self) -> int:
        """How many failures this process has seen: take it before a call, hand it to :meth:`succeeded`."""
        return self._failures

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
            self._failures += 1
        if first:
            logger.warning(
                "Redis indisponível (%s); seguindo com L1 + PostgreSQL, nova tentativa em %.0f s",
                exc.__class__.__name__,
                settings.MEMORY_REDIS_RETRY_AFTER,
            )

    def succeeded(self, since: int) -> None:
        """A call that began when :attr:`failures` was ``since`` answered."""
        if not self._in_outage:
            return
        with self._lock:
            recovered = self._in_outage and since == self._failures
            if recovered:
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
    """The redis-py client, for the calls django-redis' cache API does not offer (a
    ``RedisCluster`` in cluster mode: whoever pipelines or publishes goes through :func:`pipeline`
    and :func:`publish`)."""
    return cache().client.get_client(write=True)


def mode() -> str | None:
    """``"single"``, ``"sentinel"`` or ``"cluster"``; None without Redis."""
    if not configured():
        return None
    found = _derived.get("mode")
    if found is None:
        backend = cache().client
        found = _derived["mode"] = (CLUSTER if isinstance(backend, SigningClusterClient)
                                    else SENTINEL if isinstance(backend, SigningSentinelClient) else SINGLE)
    return found


def is_cluster() -> bool:
    return mode() == CLUSTER


def check_mode(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: one Redis mode at a time (the settings refuse it too, for gunicorn and celery)."""
    conflict = redis_mode_conflict(getattr(settings, "REDIS_URL", ""), getattr(settings, "REDIS_SENTINELS", []),
                                   getattr(settings, "REDIS_SENTINEL_MASTER", ""),
                                   getattr(settings, "REDIS_CLUSTER_NODES", []))
    return [checks.Error(conflict, id="memory.E020")] if conflict else []


def mget(names: list[str]) -> list:
    """The values of ``names`` (made keys), None where absent: one MGET, or on a cluster one
    MGET per slot, pipelined per node (one round trip to each master holding some). One key is
    one GET: its reply is the value, MGET's an array of one, and a cluster's per-slot pipeline
    would be a third of an L2 hit (docs/benchmarks.md)."""
    if len(names) == 1:
        return [client().get(names[0])]
    if is_cluster():
        return client().mget_nonatomic(names)
    return client().mget(names)


class _ClusterPipeline:
    """A cluster pipeline taking what the memory queues on one server's: a DELETE of several
    keys goes as one DELETE per key (a cluster pipeline sends each command to its key's master),
    PUBLISH as SPUBLISH (:func:`publish`)."""

    def __init__(self, pipe):
        self._pipe = pipe

    def delete(self, *names):
        for name in names:
            self._pipe.delete(name)
        return self

    def publish(self, channel, message):
        self._pipe.spublish(channel, message)
        return self

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._pipe.reset()


def pipeline():
    """A pipeline without a transaction: one round trip (one per master on a cluster)."""
    if is_cluster():
        return _ClusterPipeline(client().pipeline(transaction=False))
    return client().pipeline(transaction=False)


def publish(channel_name: str, message: str) -> int:
    """Publish on a channel of :func:`channel` (sharded pub/sub on a cluster: ``SPUBLISH`` reaches
    the master owning the channel's slot, where every :func:`subscribe` listens); how many
    subscribers heard it."""
    if is_cluster():
        return int(client().spublish(channel_name, message))
    return int(client().publish(channel_name, message))


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
    db = 0 if is_cluster() else client().connection_pool.connection_kwargs.get("db", 0)
    return make_key(f"{name}:{db}")


def pubsub():
    """A pub/sub connection that skips the subscribe confirmations. Not run through the breaker:
    its one user, the L1 invalidation listener, reconnects on its own schedule."""
    return client().pubsub(ignore_subscribe_messages=True)


class Subscription:
    """A pub/sub connection subscribed to one channel that never reconnects behind its user's back.

    redis-py's ``PubSub`` reconnects by itself when its connection breaks (to the same server,
    or through Sentinel to the promoted master) and tries to subscribe again: messages sent
    meanwhile are lost, and after a failover it may come back subscribed to nothing. Here any
    reconnection makes the next call raise ``ConnectionError``, so that the user knows it may
    have missed messages and subscribes anew."""

    def __init__(self, pubsub):
        self._pubsub = pubsub
        self._lost = False
        pubsub.connection.register_connect_callback(self._reconnected)  # kept as a weak reference

    def _reconnected(self, connection) -> None:
        self._lost = True

    def _check(self) -> None:
        if self._lost:
            raise ConnectionError("assinatura do pub/sub reconectada: mensagens podem ter se perdido")

    def get_message(self, timeout: float):
        self._check()
        message = self._pubsub.get_message(timeout=timeout)
        self._check()
        return message

    def ping(self) -> None:
        self._check()
        self._pubsub.ping()
        self._check()

    def close(self) -> None:
        self._pubsub.close()


def subscribe(channel_name: str) -> Subscription:
    """A :class:`Subscription` to ``channel_name``, skipping the confirmations; read it with
    ``get_message`` (a message's type is ``message``, or ``smessage`` on a cluster), ``ping``
    it, ``close`` it. Not run through the breaker: its user reconnects on its own schedule.

    On a cluster it is an ``SSUBSCRIBE`` on the master owning the channel's slot, asked anew of
    the cluster each time (after a failover, the promoted master)."""
    if not is_cluster():
        connection = pubsub()
        connection.subscribe(channel_name)
        return Subscription(connection)
    cluster = client()
    cluster.nodes_manager.initialize(disconnect_startup_nodes_pools=False)  # the slot map now, not before a failover
    node = cluster.get_node_from_key(channel_name)
    connection = cluster.get_redis_connection(node).pubsub(ignore_subscribe_messages=True)
    connection.ssubscribe(channel_name)
    return Subscription(connection)


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
    if is_cluster():
        return _set_where_claimed_on_cluster(writes)
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


# On a cluster the claims of a batch lie in many slots, which no WATCH spans: each write checks
# its own claim, in its own slot (hash tags keep an entry's copy and claim together), as one
# script, the scripts pipelined per master.
_SET_WHERE_CLAIMED = """
if redis.call('GET', KEYS[2]) == ARGV[3] then
    local written = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
    redis.call('DEL', KEYS[2])
    if written then return 1 end
end
return 0
"""


def _set_where_claimed_on_cluster(writes) -> int:
    pipe = client().pipeline(transaction=False)
    for name, value, px, claim_name, token in writes:
        pipe.execute_command("EVAL", _SET_WHERE_CLAIMED, 2, name, claim_name, value, max(1, px), token)
    return sum(int(reply) for reply in pipe.execute())


class _ClusterTransaction:
    """A cluster transaction as :func:`transaction`'s ``step`` reads it: ``time()`` is the clock of
    the master holding the keys (a cluster pipeline refuses TIME, which names no key)."""

    def __init__(self, pipe, node):
        self._pipe, self._node = pipe, node

    def time(self):
        return self._node.time()

    def __getattr__(self, name):
        return getattr(self._pipe, name)


def transaction(keys: list[str], step: Callable[[Any], tuple[T, Callable[[Any], None] | None]]) -> T:
    """``step`` run atomically over ``keys`` (made keys), again until no other client changed
    them meanwhile; its result. ``step(pipe)`` reads through ``pipe`` (each call answers at once,
    ``pipe.time()`` included) and returns ``(result, write)``: ``write(pipe)`` queues the writes,
    executed only if no key of ``keys`` changed since the reads (``None``: nothing to write).

    WATCH/MULTI rather than a Lua script, so that it also runs on servers without scripting
    (fakeredis without lupa). On a cluster ``keys`` share one slot (a hash tag). Run it
    through :func:`run`."""
    redis = client()
    node = redis.get_redis_connection(redis.get_node_from_key(keys[0])) if is_cluster() else None
    with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(*keys)
                result, write = step(pipe if node is None else _ClusterTransaction(pipe, node))
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
    since = guard.failures
    try:
        result = operation()
    except REDIS_ERRORS as exc:
        guard.failed(exc)
        if on_failure:
            on_failure()
        return default
    guard.succeeded(since)
    return result


def guarded(default: Any = None):
    """Decorator: the function talks to Redis; it answers ``default`` when Redis cannot."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return run(lambda: function(*args, **kwargs), default)

        return wrapper

    return decorate


def nodes() -> list[dict]:
    """Each server of the mode, asked now: ``{"address": "host:port", "role", "reached"}`` with
    ``role`` ``master`` (every master of a cluster), ``sentinel``. Raises a Redis error only when
    the mode's servers cannot even be listed (no sentinel answers, no cluster node does)."""
    redis = client()
    found = []
    if mode() == CLUSTER:
        found = _cluster_masters(redis)
        if not all(node["reached"] for node in found):
            # The slot map may predate a failover: ask the cluster for its masters now.
            redis.nodes_manager.initialize(disconnect_startup_nodes_pools=False)
            found = _cluster_masters(redis)
        return found
    if mode() == SENTINEL:
        pool = redis.connection_pool
        for sentinel in pool.sentinel_manager.sentinels:
            kwargs = sentinel.connection_pool.connection_kwargs
            found.append({"address": f"{kwargs.get('host')}:{kwargs.get('port')}", "role": "sentinel",
                          "reached": _answers(sentinel.ping)})
        host, port = pool.get_master_address()
        found.insert(0, {"address": f"{host}:{port}", "role": "master", "reached": _answers(redis.ping)})
        return found
    kwargs = redis.connection_pool.connection_kwargs
    address = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
    return [{"address": address, "role": "master", "reached": _answers(redis.ping)}]


def _cluster_masters(redis) -> list[dict]:
    return [{"address": node.name, "role": "master",
             "reached": _answers(lambda node=node: redis.get_redis_connection(node).ping())}
            for node in redis.get_primaries()]


def _answers(ping: Callable[[], Any]) -> bool:
    try:
        ping()
    except REDIS_ERRORS:
        return False
    return True


def ping() -> list[dict]:
    """Ask Redis whether it answers (every master of a cluster): :func:`nodes`, or
    ``ConnectionError`` with a pt-BR message naming the servers that do not answer.

    Unlike :func:`run` it ignores the retry delay (health checks and warm-ups want the truth
    now) but it still tells the guard what it found: a failure when no master answers (a cluster
    with some masters still answering serves their slots; the calls to the others fail on their own).
    """
    since = guard.failures
    try:
        found = nodes()
    except REDIS_ERRORS as exc:
        guard.failed(exc)
        raise ConnectionError(f"Redis não responde ({exc.__class__.__name__}: {exc})") from None
    masters = [node for node in found if node["role"] == "master"]
    unreached = [node["address"] for node in masters if not node["reached"]]
    if len(unreached) == len(masters):
        guard.failed(ConnectionError("nenhum master responde"))
        raise ConnectionError(f"Redis não responde ({mode()}: {', '.join(unreached)})")
    if unreached:
        raise ConnectionError(f"Redis não responde em {', '.join(unreached)} ({mode()}: os demais masters respondem)")
    guard.succeeded(since)
    return found


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
    """``{"available", "mode", "nodes", "used_memory_bytes", "keys"}``; ``available`` is False
    without Redis, ``nodes`` what :func:`nodes` found (None when it could not ask). On a cluster
    the memory and the keys are the sums over the masters that answer.

    Asked even during the retry delay, like :func:`ping`: stats and ``/metrics`` report what
    Redis answers now."""
    found = {"available": False, "mode": mode(), "nodes": None, "used_memory_bytes": None, "keys": None}
    if not configured():
        return found
    since = guard.failures
    try:
        found["nodes"] = nodes()  # each server with whether it answered, even when none does
        redis = client()
        if is_cluster():
            reached = [redis.get_node(node_name=n["address"]) for n in found["nodes"] if n["reached"]]
            if not reached:
                raise ConnectionError("nenhum master do cluster responde")
            memory = redis.info("memory", target_nodes=reached)
            found["used_memory_bytes"] = sum(int(part["used_memory"]) for part in memory.values())
            found["keys"] = sum(int(redis.get_redis_connection(node).dbsize()) for node in reached)
        else:
            found["used_memory_bytes"] = int(redis.info("memory")["used_memory"])
            found["keys"] = int(redis.dbsize())
    except REDIS_ERRORS as exc:
        guard.failed(exc)
        return {**found, "available": False, "used_memory_bytes": None, "keys": None}
    guard.succeeded(since)
    found["available"] = True
    return found
