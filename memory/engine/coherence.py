"""L1 coherence across processes: Redis pub/sub invalidation.

Every web or worker process keeps its own L1. When one process saves, deletes,
clears or regenerates, it publishes the keys on a Redis channel; a daemon
thread in every other process listens and drops those keys from its L1.

A process that is not subscribed (Redis down, connection lost, listener not
started yet) may miss messages, so it does not read its L1 at all until it is
subscribed again, and it empties its L1 on every (re)subscription. Without
Redis there is a single instance to think of, and L1 is used as is.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid

from django.conf import settings
from django.core.cache import caches
from django.db import transaction

from memory.engine.tiers import Key, LocalTier, cache_key
from memory.infra import redis

logger = logging.getLogger("memory")

CHANNEL = "invalidate"


def _channel() -> str:
    """Pub/sub ignores Redis database numbers: the channel names the database itself, so that
    memories sharing a Redis server on other databases never invalidate each other."""
    cache = caches["memory_l2"]
    db = cache.client.get_client(write=True).connection_pool.connection_kwargs.get("db", 0)
    return cache.client.make_key(f"{CHANNEL}:{db}")


class InvalidationListener:
    """The per-process subscriber; restarted after a fork (gunicorn, Celery prefork)."""

    def __init__(self):
        self.origin = uuid.uuid4().hex
        self._pid = None
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Bumped whenever L1 may have lost an entry (an eviction heard, a (re)subscription):
        # a read that began before the bump must not fill L1 with what it read.
        self.epoch = 0

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def ensure_started(self) -> None:
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self.origin = uuid.uuid4().hex  # a forked child is another process
            self._subscribed.clear()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="memory-l1-invalidation", daemon=True)
            self._thread.start()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._thread = None
        self._subscribed.clear()

    def _run(self) -> None:
        l1 = LocalTier()
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = None
            try:
                client = caches["memory_l2"].client.get_client(write=True)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(_channel())
                # Messages sent while we were away are lost: start from an empty L1.
                l1.clear()
                _clear_token_cache()
                self.epoch += 1
                self._subscribed.set()
                backoff = 0.1
                last_ping = time.monotonic()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None and message.get("type") == "message":  # not the pings' pongs
                        self._apply(l1, message.get("data"))
                    elif time.monotonic() - last_ping >= 1.0:
                        pubsub.ping()  # finds a connection that died without closing
                        last_ping = time.monotonic()
            except redis.REDIS_ERRORS:
                pass
            except Exception:  # the listener must outlive any bad message or bug: log and resubscribe
                logger.exception("Falha no ouvinte de invalidação do L1")
            finally:
                self._subscribed.clear()
                self.epoch += 1
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except redis.REDIS_ERRORS:
                        pass
            self._stop.wait(backoff)
            backoff = min(backoff * 2, settings.MEMORY_REDIS_RETRY_AFTER or 1.0)

    def _apply(self, l1: LocalTier, data) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):  # UnicodeDecodeError included
            logger.warning("Mensagem de invalidação ilegível ignorada: %r", repr(data)[:100])
            return
        if not isinstance(message, dict):
            return
        if message.get("origin") == self.origin:
            return
        if message.get("auth"):
            _clear_token_cache()
            return
        self.epoch += 1
        if message.get("clear"):
            l1.clear()
        else:
            l1.cache.delete_many([cache_key((pid, kind)) for pid, kind in message.get("keys", [])])


listener = InvalidationListener()


def l1_epoch() -> int:
    """Compare before and after a read: unchanged means no eviction was heard meanwhile."""
    return listener.epoch if redis.configured() else 0


def l1_is_trustworthy() -> bool:
    """May this process read its L1? Always without Redis; with Redis, only while subscribed."""
    if not redis.configured():
        return True
    listener.ensure_started()
    return listener.subscribed


def invalidation_message(keys: list[Key]) -> tuple[str, str]:
    """The channel and the message that make the other processes drop ``keys`` from their L1."""
    return _channel(), json.dumps({"origin": listener.origin, "keys": [list(k) for k in keys]})


def _publish(message: dict) -> None:

    if not redis.guard.available():
        return
    try:
        caches["memory_l2"].client.get_client(write=True).publish(
            _channel(), json.dumps({"origin": listener.origin, **message})
        )
    except redis.REDIS_ERRORS as exc:
        # Nobody can hear us; listeners that lost Redis too will empty their L1 on return.
        redis.guard.failed(exc)


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
    _clear_token_cache()
    if redis.configured():
        transaction.on_commit(lambda: _publish({"auth": True}))
    transaction.on_commit(_clear_token_cache)  # a request between the change and the commit cached the old row


def _clear_token_cache() -> None:
    from memory.api.authentication import token_users

    token_users.clear()


def wait_until_subscribed(timeout: float = 5.0) -> bool:
    """For processes that must not start serving before they can hear invalidations."""
    if not redis.configured():
        return True
    listener.ensure_started()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listener.wait_subscribed(0.05):
            return True
    return False
