"""L1 coherence across processes: Redis pub/sub invalidation.

Every web or worker process keeps its own L1. When one process saves, deletes,
clears or regenerates, it publishes the keys on a Redis channel; a daemon
thread in every other process listens and drops those keys from its L1.

A process that is not subscribed (Redis down, connection lost, listener not
started yet) may miss messages, so it does not read its L1 at all until it is
subscribed again, and it empties its L1 on every (re)subscription. Without
Redis there is a single instance to think of, and L1 is used as is.

The same channel carries auth changes: the caches of token users that other
layers keep (the API's) register here with :func:`register_auth_cache` and are
emptied on every auth message and every (re)subscription.

The listener thread is started and stopped by :mod:`memory.engine.runtime`, never from here.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Callable

from django.conf import settings
from django.db import transaction

from memory.engine.tiers import Key, LocalTier, Snapshot, cache_key
from memory.infra import redis

logger = logging.getLogger("memory")

CHANNEL = "invalidate"


def _channel() -> str:
    return redis.channel(CHANNEL)


class InvalidationListener:
    """The per-process subscriber: a daemon thread that drops from L1 what other processes changed.

    Started by :func:`memory.engine.runtime.start_background_threads`; a forked child has no
    thread (threads do not survive fork) and starts its own.
    """

    def __init__(self):
        self.origin = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # One pair per thread: a thread that outlived ``stop()``'s join cannot touch its successor's.
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        # Bumped whenever L1 may have lost an entry (an eviction heard or made here, a
        # (re)subscription): a read that began before the bump must not fill L1 with what it
        # read. ``l1_lock`` makes each bump and its eviction one step, and each fill's check
        # and write another, so no fill lands between an eviction and its bump.
        self.l1_lock = threading.Lock()
        self.epoch = 0

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread unless it runs already (it then subscribes, and resubscribes after a loss)."""
        with self._lock:
            if self.running:
                return
            self._stop, self._subscribed = threading.Event(), threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop, self._subscribed), name="memory-l1-invalidation", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (up to 3 s); L1 is not read until it starts again."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._subscribed.clear()
        if thread is not None:
            thread.join(timeout=3)

    def after_fork_in_child(self) -> None:
        """In a forked child: the parent's thread did not come along, and the child is another
        process (another origin, so that it hears the parent's messages)."""
        self.origin = uuid.uuid4().hex
        self._lock = threading.Lock()
        self.l1_lock = threading.Lock()
        self._thread = None
        self._stop, self._subscribed = threading.Event(), threading.Event()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def _run(self, stop: threading.Event, subscribed: threading.Event) -> None:
        l1 = LocalTier()
        backoff = 0.1
        while not stop.is_set():
            if not redis.configured():  # Redis left ``CACHES`` while the thread ran (tests do this)
                stop.wait(0.5)
                continue
            pubsub = None
            try:
                pubsub = redis.subscribe(_channel())
                # Messages sent while we were away are lost: start from an empty L1.
                self.evicted(l1.clear)
                clear_auth_caches()
                subscribed.set()
                backoff = 0.1
                last_ping = time.monotonic()
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None and message.get("type") in ("message", "smessage"):  # not the pongs
                        self._apply(l1, message.get("data"))
                    elif time.monotonic() - last_ping >= 1.0:
                        pubsub.ping()  # finds a connection that died without closing
                        last_ping = time.monotonic()
            except redis.REDIS_ERRORS:
                pass
            except Exception:  # the listener must outlive any bad message or bug: log and resubscribe
                logger.exception("Falha no ouvinte de invalidação do L1")
            finally:
                subscribed.clear()
                self.evicted()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except redis.REDIS_ERRORS:
                        pass
            stop.wait(backoff)
            backoff = min(backoff * 2, settings.MEMORY_REDIS_RETRY_AFTER or 1.0)

    def _apply(self, l1: LocalTier, data) -> None:
        try:
            message = _read_message(data)
        except ValueError as exc:  # a message no memory process sends: ignored, logged once
            shown = repr(data)[:100]
            redis.invalid_values.report(f"invalidação {shown}", f"Mensagem de invalidação ignorada ({exc}): {shown}")
            return
        if message.get("origin") == self.origin:
            return
        if message.get("auth"):
            clear_auth_caches()
            return
        if message.get("clear"):
            self.evicted(l1.clear)
        else:
            keys = [cache_key(key) for key in message["keys"]]
            self.evicted(lambda: l1.cache.delete_many(keys))

    def evicted(self, evict: Callable[[], None] | None = None) -> None:
        """L1 may lose entries: ``evict()`` them and bump the epoch, as one step for the fills."""
        with self.l1_lock:
            self.epoch += 1
            if evict is not None:
                evict()


def _read_message(data) -> dict:
    """An invalidation message as :func:`_publish` sends it: ``origin`` and one of ``auth``,
    ``clear`` or ``keys`` (pairs of texts); ValueError otherwise (Redis is not trusted)."""
    try:
        message = json.loads(data)
    except (TypeError, ValueError, RecursionError):  # UnicodeDecodeError included
        raise ValueError("ilegível") from None
    if not isinstance(message, dict) or not isinstance(message.get("origin"), str):
        raise ValueError("não é um objeto com origin")
    if message.get("auth") is True or message.get("clear") is True:
        return message
    keys = message.get("keys")
    if not isinstance(keys, list) or not all(
        isinstance(key, list) and len(key) == 2 and isinstance(key[0], str) and isinstance(key[1], str) for key in keys
    ):
        raise ValueError("keys: deve ser uma lista de pares [product_id, kind]")
    message["keys"] = [tuple(key) for key in keys]
    return message


listener = InvalidationListener()


def l1_epoch() -> int:
    """Take it before a read and hand it to :func:`fill_l1`."""
    return listener.epoch


def fill_l1(l1: LocalTier, snapshots: list[Snapshot], epoch: int) -> None:
    """Copy into L1 what a read that began at ``epoch`` found, unless an eviction was heard or
    made since (the copies may be outdated) or this process cannot hear evictions now."""
    with listener.l1_lock:
        if listener.epoch == epoch and l1_is_trustworthy():
            l1.set_many(snapshots)


def write_l1(l1: LocalTier, snapshots: list[Snapshot]) -> None:
    """Put copies of rows just written to L3 into L1; a read of this process under way that
    read the older rows does not fill L1 after them."""
    listener.evicted(lambda: l1.set_many(snapshots))


def evict_l1(l1: LocalTier, keys: list[Key] | None) -> None:
    """Drop ``keys`` (None: every entry) from L1; a read of this process under way that read
    them before does not put them back."""
    listener.evicted(l1.clear if keys is None else lambda: l1.delete_many(keys))


def l1_is_trustworthy() -> bool:
    """May this process read its L1? Always without Redis; with Redis, only while subscribed."""
    return not redis.configured() or listener.subscribed


def invalidation_message(keys: list[Key]) -> tuple[str, str]:
    """The channel and the message that make the other processes drop ``keys`` from their L1."""
    return _channel(), json.dumps({"origin": listener.origin, "keys": [list(k) for k in keys]})


def _publish(message: dict) -> None:
    # When this fails nobody can hear us; listeners that lost Redis too empty their L1 on return.
    redis.run(lambda: redis.publish(_channel(), json.dumps({"origin": listener.origin, **message})))


def publish_keys(keys: list[Key]) -> None:
    """Tell the other processes to drop these keys from their L1 (after the commit)."""
    if redis.configured() and keys:
        payload = {"keys": [list(k) for k in keys]}
        transaction.on_commit(lambda: _publish(payload))


def publish_clear() -> None:
    if redis.configured():
        transaction.on_commit(lambda: _publish({"clear": True}))


def publish_auth_change() -> None:
    """A token or a user changed: every process drops the token users it cached (after the commit)."""
    clear_auth_caches()
    if redis.configured():
        transaction.on_commit(lambda: _publish({"auth": True}))
    transaction.on_commit(clear_auth_caches)  # a request between the change and the commit cached the old row


_auth_caches: list[Callable[[], None]] = []


def register_auth_cache(clear: Callable[[], None]) -> None:
    """``clear`` empties a per-process cache of auth data (token users): it is called on every
    auth change heard, and whenever this process may have missed one (each (re)subscription)."""
    if clear not in _auth_caches:
        _auth_caches.append(clear)


def clear_auth_caches() -> None:
    for clear in _auth_caches:
        clear()


def wait_until_subscribed(timeout: float = 5.0) -> bool:
    """For processes that must not start serving before they can hear invalidations.

    False at once when the listener is not started (see :mod:`memory.engine.runtime`).
    """
    if not redis.configured():
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listener.wait_subscribed(0.05):
            return True
        if not listener.running:
            return False
    return False
