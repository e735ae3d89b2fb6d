"""Hit, miss and token counters kept outside PostgreSQL, and their flush into the rows.

A cache hit must not cost a synchronous PostgreSQL write, so each hit adds to a
buffer in the process, which is moved into Redis hashes every
``MEMORY_HIT_BUFFER_SECONDS`` (into PostgreSQL when Redis is off).
:func:`flush_counters` moves everything counted into ``ProductMemoryEntry`` and
``DailyStats``.

Redis keeps two hashes, flushed by two scheduled jobs: the per-entry counts
(hits, tokens saved, last hit) that :func:`flush_entry_counters` writes into
the rows every minute, and the per-day counts (hits, misses, generations,
tokens spent and saved) that :func:`flush_daily_counters` writes into
``DailyStats`` when the daily roll-up runs (``memory.services.rollup``). The two jobs
never wait on each other.

A flush never loses or doubles an increment: it first RENAMEs the live hash
to a private one (RENAME is atomic), so hits that land during the
flush go to a fresh live hash, and it deletes the private hash only after the
PostgreSQL transaction committed. A flush that failed half-way leaves the
private hash behind, and the next flush applies it.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time as dt_time, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from redis.exceptions import ResponseError

from memory.engine import hotness
from memory.engine.validators import instant, whole_number
from memory.models import DailyStats, ProductMemoryEntry
from memory.infra import redis

logger = logging.getLogger("memory")

# One hash tag for every counter key: a flush's RENAME and its transaction take two of them,
# which a Redis Cluster runs only within one slot.
LIVE_KEY = "{counters}:live"
FLUSHING_PREFIX = "{counters}:flushing:"
FLUSH_LOCK_KEY = "{counters}:flush-lock"
SEP = "\x1f"
DAILY_FIELDS = ("hits", "misses", "generations", "tokens_spent", "tokens_saved", "tokens_wasted",
                "tokens_saved_by_family")

# The tag of an entry-hash field that holds one push's entry counts: their fields as a JSON
# object (see ``RedisCounterStore.add``).
PUSHED = "p"


@dataclass(frozen=True)
class CounterHash:
    """One Redis hash of counts, with the names its flush uses."""

    live: str
    flushing_prefix: str
    lock: str
    flushing_set: str  # the names of the hashes being flushed: found without a SCAN of every key


ENTRY_COUNTS = CounterHash(LIVE_KEY, FLUSHING_PREFIX, FLUSH_LOCK_KEY, "{counters}:flushing-set")
DAILY_COUNTS = CounterHash(
    "{counters}:daily-live", "{counters}:daily-flushing:", "{counters}:daily-flush-lock", "{counters}:daily-flushing-set"
)


@dataclass
class Counts:
    """Increments not yet in PostgreSQL: per entry, and per day."""

    hits: Counter = field(default_factory=Counter)  # (product_id, kind) -> hits
    saved: Counter = field(default_factory=Counter)  # (product_id, kind) -> tokens saved
    last_hit: dict = field(default_factory=dict)  # (product_id, kind) -> epoch seconds
    daily: Counter = field(default_factory=Counter)  # (iso date, field) -> amount

    def merge(self, other: "Counts") -> None:
        self.hits.update(other.hits)
        self.saved.update(other.saved)
        for key, ts in other.last_hit.items():
            self.last_hit[key] = max(ts, self.last_hit.get(key, 0))
        self.daily.update(other.daily)

    def is_empty(self) -> bool:
        return not (self.hits or self.saved or self.daily)

    def to_fields(self) -> dict[str, float]:
        fields: dict[str, float] = {}
        for (pid, kind), n in self.hits.items():
            fields[f"h{SEP}{kind}{SEP}{pid}"] = n
        for (pid, kind), n in self.saved.items():
            fields[f"s{SEP}{kind}{SEP}{pid}"] = n
        for (pid, kind), ts in self.last_hit.items():
            fields[f"t{SEP}{kind}{SEP}{pid}"] = ts
        for (day, name), n in self.daily.items():
            fields[f"d{SEP}{day}{SEP}{name}"] = n
        return fields

    @classmethod
    def from_fields(cls, raw: dict, invalid: dict | None = None) -> "Counts":
        """The counts of a counter hash read whole. A field the memory does not write (its name,
        or its value: a count must be a whole number from 0 to :data:`COUNT_MAX`) is left out
        whole, and noted in ``invalid`` (field name -> why): Redis is not trusted."""
        counts = cls()
        for raw_key, raw_value in raw.items():
            try:
                parsed = _parse_field(raw_key, raw_value)
            except (ValueError, TypeError, RecursionError) as exc:
                if invalid is not None:
                    invalid[raw_key] = str(exc)[:200]
                continue
            for tag, first, second, value in parsed:
                if tag == "h":
                    counts.hits[(second, first)] += value
                elif tag == "s":
                    counts.saved[(second, first)] += value
                elif tag == "t":
                    counts.last_hit[(second, first)] = max(value, counts.last_hit.get((second, first), 0))
                else:
                    counts.daily[(first, second)] += value
        return counts


# The most one counter field may hold: far above a day of tokens saved, a thousandth of what
# PostgreSQL's bigint sums overflow at, and exact as a float.
COUNT_MAX = 2**53


def _parse_field(raw_key, raw_value, pushed: bool = False) -> list[tuple[str, str, str, int | float]]:
    """``(tag, first, second, value)`` of one counter field (several for a pushed one); ValueError
    unless it is one :meth:`Counts.to_fields` or :meth:`RedisCounterStore.add` writes."""
    key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
    if not isinstance(key, str):
        raise ValueError("campo: o nome deve ser um texto")
    if not pushed and key.startswith(PUSHED + SEP):
        inner = json.loads(raw_value)
        if not isinstance(inner, dict):
            raise ValueError("campo: deve ser um objeto JSON de contagens")
        return [item for name, value in inner.items() for item in _parse_field(name, value, pushed=True)]
    parts = key.split(SEP, 2)
    if len(parts) != 3 or parts[0] not in ("d", "h", "s", "t") or (pushed and parts[0] == "d"):
        raise ValueError("campo: nome que a memória não escreve")
    tag, first, second = parts
    if isinstance(raw_value, (bytes, str)):
        try:
            value = int(raw_value)  # HINCRBY writes whole numbers as text
        except ValueError:
            value = float(raw_value)
    elif isinstance(raw_value, (int, float)) and not isinstance(raw_value, bool):
        value = raw_value
    else:
        raise ValueError(f"{key}: deve ser um número")
    if tag == "t":
        return [(tag, first, second, instant(key, value))]
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{key}: deve ser um inteiro, recebido {value!r}")
        value = int(value)
    whole_number(key, value, maximum=COUNT_MAX)
    if tag == "d":
        date.fromisoformat(first)
        if second not in DAILY_FIELDS:
            raise ValueError(f"{key}: contagem diária desconhecida")
    return [(tag, first, second, value)]


_day_cache: tuple = (None, 0.0, 0.0, "")


def _today() -> str:
    """The date in ``TIME_ZONE``, recomputed only when the clock leaves the day it was computed
    for: ``timezone.localdate`` on every hit would be a large share of counting it
    (docs/benchmarks.md)."""
    global _day_cache
    now = time.time()
    tz = timezone.get_default_timezone()
    cached_tz, start, end, day = _day_cache
    if cached_tz is not tz or not start <= now < end:
        today = timezone.localdate(timezone=tz)
        start = datetime.combine(today, dt_time.min, tzinfo=tz).timestamp()
        end = datetime.combine(today + timedelta(days=1), dt_time.min, tzinfo=tz).timestamp()
        day = today.isoformat()
        _day_cache = (tz, start, end, day)
    return day


class LocalCounterStore:
    """Counts kept in this process: used when there is no Redis, or while it is down."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = Counts()
        self._since = time.monotonic()

    def add(self, counts: Counts) -> None:
        with self._lock:
            self._counts.merge(counts)

    def add_hit(self, key: tuple[str, str], tokens_saved: int, at: float, day: str) -> None:
        with self._lock:
            counts = self._counts
            counts.hits[key] += 1
            counts.saved[key] += tokens_saved
            if at > counts.last_hit.get(key, 0):
                counts.last_hit[key] = at
            counts.daily[(day, "hits")] += 1
            counts.daily[(day, "tokens_saved")] += tokens_saved

    def counts(self) -> Counts:
        """A copy of what is counted so far."""
        copy = Counts()
        with self._lock:
            copy.merge(self._counts)
        return copy

    def drain(self) -> Counts:
        with self._lock:
            counts, self._counts = self._counts, Counts()
            self._since = time.monotonic()
        return counts

    def age(self) -> float:
        return time.monotonic() - self._since

    def is_empty(self) -> bool:
        return self._counts.is_empty()


class RedisCounterStore:
    """Counts in two Redis hashes (per entry, per day), added in one pipelined round trip.

    Its methods talk to Redis: callers run them through :func:`memory.infra.redis.run`.
    """

    @staticmethod
    def _key(name: str) -> str:
        return redis.make_key(name)

    @staticmethod
    def _client():
        return redis.client()

    def add(self, counts: Counts) -> None:
        """Add ``counts`` to the live hashes, in one round trip.

        The entry counts (three fields for every product hit) go as one new field of the entry
        hash, named for this push and holding their fields as JSON: the client packs and parses
        every command in Python, and a command per field cost more than the hits it counted
        (docs/benchmarks.md). The flush reads the hash whole, so it adds them up like any
        field. The daily counts, a few fields a day read by every stats call, are incremented
        in place.
        """
        entry_fields: dict[str, float] = {}
        daily_live = self._key(DAILY_COUNTS.live)
        pipe = redis.pipeline()
        for name, value in counts.to_fields().items():
            if name.startswith("d"):
                pipe.hincrby(daily_live, name, int(value))
            else:
                entry_fields[name] = value
        if entry_fields:
            pipe.hset(self._key(ENTRY_COUNTS.live), f"{PUSHED}{SEP}{uuid.uuid4().hex}",
                      json.dumps(entry_fields, ensure_ascii=False))
        pipe.execute()

    def _read_hash(self, key) -> Counts:
        """The counts of the hash ``key``; what it holds that the memory does not write is left
        out and deleted (a key that is not a hash at all, a field that is not a count)."""
        raw = _of_its_type(lambda: self._client().hgetall(key), key, "não é um hash de contadores")
        if raw is None:
            return Counts()
        invalid: dict = {}
        counts = Counts.from_fields(raw, invalid)
        redis.discard_fields(key, invalid)
        return counts

    def _flushing(self, part: CounterHash) -> list:
        """The hashes listed as being flushed; a name that is not one (Redis is not trusted) is
        unlisted, never read: the flush deletes what it reads."""
        flushing_set = self._key(part.flushing_set)
        members = _of_its_type(lambda: self._client().smembers(flushing_set), flushing_set,
                               "não é um conjunto de contadores")
        if members is None:
            return []
        prefix = self._key(part.flushing_prefix)
        foreign = [name for name in members if not _text(name).startswith(prefix)]
        if foreign:
            for name in foreign:
                where = f"{flushing_set} (membro {_text(name)!r})"
                redis.invalid_values.report(where, f"Redis: {where} não é um hash de contadores; retirado do conjunto")
            self._client().srem(flushing_set, *foreign)
        return [name for name in members if name not in foreign]

    def snapshot(self, parts: tuple[CounterHash, ...] = (ENTRY_COUNTS, DAILY_COUNTS)) -> Counts:
        """What is counted and not yet flushed, without moving it (for live stats)."""
        counts = Counts()
        for part in parts:
            counts.merge(self._read_hash(self._key(part.live)))
            for key in self._flushing(part):
                counts.merge(self._read_hash(key))
        return counts

    def flush(self, apply, part: CounterHash = ENTRY_COUNTS) -> Counts:
        """Move one hash's live counts aside, ``apply`` them, then drop them; returns what was applied."""
        client = self._client()
        applied = Counts()
        lock = redis.lock(part.lock, timeout=300, blocking_timeout=10)
        if not lock.acquire():
            logger.info("Outro processo está descarregando os contadores; ignorando")
            return applied
        try:
            private = self._key(part.flushing_prefix + uuid.uuid4().hex)
            flushing_set = self._key(part.flushing_set)
            # Listed before it exists: a crash between the two leaves a name without a hash
            # (read as empty), never a hash that no flush would find.
            client.sadd(flushing_set, private)
            try:
                client.rename(self._key(part.live), private)  # atomic: later hits start a new hash
            except ResponseError:
                client.srem(flushing_set, private)  # no live hash: nothing counted since the last flush
            # A hash that an earlier flush failed to apply is still listed: it is applied now.
            for key in self._flushing(part):
                counts = self._read_hash(key)
                apply(counts)
                done = client.pipeline(transaction=True)  # (a cluster's pipeline does not chain)
                done.delete(key)
                done.srem(flushing_set, key)
                done.execute()
                applied.merge(counts)
            return applied
        finally:
            try:
                lock.release()
            except redis.REDIS_ERRORS:
                pass


def _of_its_type(read, key, why: str):
    """``read()`` of ``key``, or None when Redis holds a key of another type there (Redis is not
    trusted): that key is deleted and logged as ``why``."""
    try:
        return read()
    except ResponseError as exc:
        if not str(exc).startswith("WRONGTYPE"):
            raise
        redis.discard({key: why})
        return None


def _text(name) -> str:
    """A Redis key or field name as text (redis-py hands them out as bytes)."""
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def apply_counts(counts: Counts) -> None:
    """Add counts to the rows and the daily table, in one transaction: the hits folded into each
    row's hotness, and the misses refresh-ahead avoided counted (:mod:`memory.engine.hotness`)."""
    if counts.is_empty():
        return
    now = timezone.now()
    with transaction.atomic():
        # Rows in one order in every process: concurrent flushes then wait for each other
        # instead of deadlocking (a deadlocked flush at process exit would lose its counts).
        for key in sorted(set(counts.hits) | set(counts.saved)):
            product_id, kind = key
            updates = {
                "hit_count": F("hit_count") + counts.hits.get(key, 0),
                "tokens_saved": F("tokens_saved") + counts.saved.get(key, 0),
            }
            if counts.hits.get(key):
                updates.update(hotness.fold(counts.hits[key], now))
            if key in counts.last_hit:
                last = datetime.fromtimestamp(counts.last_hit[key], tz=dt_timezone.utc)
                updates["last_hit_at"] = Greatest(F("last_hit_at"), last) if _has_greatest_null_safe() else last
            ProductMemoryEntry.objects.filter(product_id=product_id, kind=kind).update(**updates)
        by_day: dict[str, dict[str, int]] = {}
        for (day, name), n in counts.daily.items():
            if name in DAILY_FIELDS and n:
                by_day.setdefault(day, {})[name] = n
        avoided = hotness.count_misses_avoided({k: t for k, t in counts.last_hit.items() if counts.hits.get(k)})
        for day, n in avoided.items():
            by_day.setdefault(day, {})["misses_avoided"] = n
        for day, amounts in by_day.items():
            stats, _ = DailyStats.objects.select_for_update().get_or_create(date=date.fromisoformat(day))
            DailyStats.objects.filter(pk=stats.pk).update(**{k: F(k) + v for k, v in amounts.items()})


def _has_greatest_null_safe() -> bool:
    # GREATEST ignores NULL on PostgreSQL but returns NULL on SQLite, where the
    # newest hit simply wins.
    return connection.vendor == "postgresql"


class HitCounter:
    """Where ``ProductMemory`` records what happened; flushed by :func:`flush_counters`.

    A hit only adds to a buffer in the process: a Redis round trip per hit would
    cost more than the L1 read it counts. The hit pusher, a daemon thread started
    by :mod:`memory.engine.runtime`, moves the buffered counts to Redis every
    ``MEMORY_HIT_BUFFER_SECONDS``, where the flush of any process finds them;
    without Redis, while it is down, or while the pusher is not running, they go
    to PostgreSQL from the process itself. A process killed with SIGKILL loses at
    most that last second of counts, never content.
    """

    def __init__(self):
        self.local = LocalCounterStore()
        self._redis = RedisCounterStore()
        self._push_lock = threading.RLock()
        self._lifecycle_lock = threading.Lock()
        self._pusher: threading.Thread | None = None
        self._pusher_stop = threading.Event()
        self._pushing = False  # read on every hit: a plain attribute, not the thread's state

    def redis_store(self) -> RedisCounterStore | None:
        return self._redis if redis.configured() else None

    @property
    def pusher_running(self) -> bool:
        thread = self._pusher
        return thread is not None and thread.is_alive()

    def start_pusher(self) -> None:
        """Start the hit pusher unless it runs already."""
        with self._lifecycle_lock:
            if self.pusher_running:
                return
            self._pusher_stop = threading.Event()
            self._pusher = threading.Thread(
                target=self._push_forever, args=(self._pusher_stop,), name="memory-hit-counts", daemon=True
            )
            self._pusher.start()
            self._pushing = True

    def stop_pusher(self) -> None:
        """Stop the hit pusher, wait for it (up to 3 s), and push what it left buffered."""
        with self._lifecycle_lock:
            thread, self._pusher = self._pusher, None
            self._pushing = False
            self._pusher_stop.set()
        if thread is not None:
            thread.join(timeout=3)
        self.push()

    def after_fork_in_child(self) -> None:
        """In a forked child: no pusher came along, and the counts buffered belong to the parent,
        which still sends them (kept here too, they would be counted twice)."""
        self.local = LocalCounterStore()
        self._push_lock = threading.RLock()
        self._lifecycle_lock = threading.Lock()
        self._pusher = None
        self._pusher_stop = threading.Event()
        self._pushing = False

    def _push_forever(self, stop: threading.Event) -> None:
        while not stop.wait(settings.MEMORY_HIT_BUFFER_SECONDS):
            try:
                # After an outage, find Redis back within a tick even if no request touches it,
                # so that the deletions it missed are replayed (the guard's recovery callbacks).
                redis.probe()
                self.push()
            except Exception:  # the pusher must outlive a bad moment: the counts stay buffered
                logger.exception("Falha ao enviar contadores ao Redis")

    def _add(self, counts: Counts) -> None:
        self.local.add(counts)
        self._after_add()

    def _after_add(self) -> None:
        if self._pushing and redis.available():
            return
        self._maybe_flush_local()

    def push(self) -> None:
        """Move this process's buffered counts to Redis (Redis only: this runs off-request)."""
        store = self.redis_store()
        if store is None or self.local.is_empty() or not redis.available():
            return
        with self._push_lock:
            counts = self.local.drain()
            redis.run(lambda: store.add(counts), on_failure=lambda: self.local.add(counts))

    def _maybe_flush_local(self) -> None:
        if self.local.age() >= settings.MEMORY_LOCAL_COUNTER_FLUSH_INTERVAL and not self.local.is_empty():
            self.flush_local()

    def record_hit(self, product_id: str, kind: str, tokens_saved: int) -> None:
        self.local.add_hit((product_id, kind), tokens_saved, time.time(), _today())
        self._after_add()

    def record_misses(self, n: int = 1) -> None:
        if n:
            counts = Counts()
            counts.daily[(_today(), "misses")] = n
            self._add(counts)

    def record_generation(self, tokens_spent: int) -> None:
        counts = Counts()
        day = _today()
        counts.daily[(day, "generations")] = 1
        counts.daily[(day, "tokens_spent")] = tokens_spent
        self._add(counts)

    def record_wasted(self, tokens: int) -> None:
        """Tokens the provider billed for attempts whose answer was not stored."""
        if tokens > 0:
            counts = Counts()
            counts.daily[(_today(), "tokens_wasted")] = tokens
            self._add(counts)

    def record_family_saving(self, tokens: int) -> None:
        """Tokens a variant derived from its family's base did not cost (``tokens_saved_by_family``)."""
        if tokens > 0:
            counts = Counts()
            counts.daily[(_today(), "tokens_saved_by_family")] = tokens
            self._add(counts)

    def flush_local(self) -> int:
        return sum(self._flush_local().hits.values())

    def _flush_local(self) -> Counts:
        counts = self.local.drain()
        try:
            apply_counts(counts)
        except Exception:
            self.local.add(counts)
            raise
        return counts

    def pending(self, parts: tuple[CounterHash, ...] = (ENTRY_COUNTS, DAILY_COUNTS)) -> Counts:
        """Counted but not yet in PostgreSQL, from this process and from Redis.

        Stats need only ``parts=(DAILY_COUNTS,)``: a few fields a day, where the entry hash
        holds three fields for every product hit since the last flush.
        """
        counts = Counts()
        with self._push_lock:  # counts on their way to Redis are seen once, not twice or never
            counts.merge(self.local.counts())
            store = self.redis_store()
            if store is not None:
                counts.merge(redis.run(lambda: store.snapshot(parts), default=Counts()))
        return counts

    def flush_part(self, part: CounterHash) -> Counts:
        """Write this process's counts and one Redis hash to PostgreSQL; returns what was written."""
        store = self.redis_store()
        self.push()  # with Redis up, this process's counts join the hashes and flush with their part
        applied = self._flush_local()
        if store is not None:
            applied.merge(redis.run(lambda: store.flush(apply_counts, part), default=Counts()))
        return applied


hit_counter = HitCounter()


def flush_counters() -> int:
    """Move every count kept outside PostgreSQL into the rows and the daily table."""
    moved = flush_entry_counters()
    flush_daily_counters()
    return moved


def flush_entry_counters() -> int:
    """Move the per-entry hit and tokens-saved counts into the rows (the every-minute job)."""
    moved = sum(hit_counter.flush_part(ENTRY_COUNTS).hits.values())
    if moved:
        logger.info("Contadores descarregados: %d acertos gravados no PostgreSQL", moved)
    return moved


def flush_daily_counters() -> Counts:
    """Move the per-day counts into ``DailyStats``; returns the counts written (see ``memory.services.rollup``)."""
    return hit_counter.flush_part(DAILY_COUNTS)
