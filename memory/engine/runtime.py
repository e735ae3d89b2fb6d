"""The memory's per-process state: its singletons and its three background threads.

Singletons (one per process, each defined beside its class):

- ``memory.infra.redis.guard``: is Redis worth trying now (the circuit breaker);
- ``memory.engine.tiers.redis_tier``: the L2, with the deletes Redis missed;
- ``memory.engine.coherence.listener``: the L1 invalidation listener (thread ``memory-l1-invalidation``),
  and the auth caches registered with it (the API's token users);
- ``memory.engine.counters.hit_counter``: the buffered counts, and the hit pusher (thread ``memory-hit-counts``);
- ``memory.engine.locks.process_locks``: the generation locks of the process fallback;
- ``memory.engine.locks.lock_renewer``: the Redis generation locks this process holds, and their
  renewer (thread ``memory-lock-renewal``), which keeps each from expiring while it is held.
- ``memory.providers.limits``: the provider's gate (rate limit and circuit breaker), with this
  process's copy of their state (``limits.reset()``).

The threads start at one point, :func:`start_background_threads`, called by

- ``MemoryConfig.ready()``, for every process that loads Django (runserver, gunicorn workers,
  ``manage.py`` commands, Celery);
- gunicorn's ``post_fork`` (``gunicorn.conf.py``) and Celery's ``worker_process_init``
  (``beecatalog/celery.py``), for children forked from a process that had loaded Django:
  threads do not survive a fork.

They stop in :func:`stop_background_threads`, called by gunicorn's ``pre_fork`` and Celery's
``worker_init`` (prefork pool) in the parent, so that no child inherits a lock one of them held.
Nothing else starts them: not a read, not a hit.
"""
from __future__ import annotations

import logging
import os

from memory.engine.coherence import clear_auth_caches, listener
from memory.engine.counters import hit_counter
from memory.engine.locks import lock_renewer, process_locks
from memory.engine.tiers import redis_tier
from memory.infra import redis
from memory.providers import limits

logger = logging.getLogger("memory")


def start_background_threads() -> None:
    """Start this process's invalidation listener, hit pusher and lock renewer, unless they run already.

    Without Redis there is nothing to hear, to push to or to renew, and nothing starts.
    """
    if not redis.configured():
        return
    listener.start()
    hit_counter.start_pusher()
    lock_renewer.start()


def stop_background_threads() -> None:
    """Stop the threads and wait for them; the pusher's last counts go to Redis first.

    Until they start again this process does not read its L1, counts hits in PostgreSQL, and
    does not renew the generation locks it holds (their TTL still frees them).
    """
    listener.stop()
    hit_counter.stop_pusher()
    lock_renewer.stop()


def save_counts_at_exit() -> None:
    """Counts still buffered in this process (the last second of hits, or all of them
    without Redis) must not leave with it: registered with ``atexit`` by ``MemoryConfig.ready()``."""
    if hit_counter.local.is_empty():
        return
    try:
        hit_counter.push()  # to Redis when it answers, where the scheduled flush takes them
        if not hit_counter.local.is_empty():
            hit_counter.flush_local()
    except Exception:  # at exit nothing can be done but say so
        logger.exception("Falha ao gravar contadores ao encerrar o processo")


def reset_process_state() -> None:
    """Forget what this process learnt: no outage, no deletes owed to Redis, no buffered counts,
    no cached token users, no invalid Redis values already reported, nothing of the provider's
    rate limit and circuit breaker. The threads are left as they are. (Tests call it between cases.)"""
    redis.guard.reset()
    limits.reset()
    redis.invalid_values.reset()
    redis_tier.forget_pending()
    hit_counter.local.drain()
    clear_auth_caches()


def _after_fork_in_child() -> None:
    listener.after_fork_in_child()
    hit_counter.after_fork_in_child()
    process_locks.after_fork_in_child()
    lock_renewer.after_fork_in_child()


# Whoever forks (gunicorn, Celery, multiprocessing), the child must not believe it hears
# invalidations or owns its parent's counts; it starts its threads at the points listed above.
os.register_at_fork(after_in_child=_after_fork_in_child)
