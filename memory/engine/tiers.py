"""The three tiers, each a small class behind one interface.

Every tier answers ``get_many``, ``delete_many`` and ``clear`` on :class:`Snapshot`
objects keyed by ``(product_id, kind)``; ``ProductMemory`` writes the fall-through
once, over a list of tiers. The two cache tiers (:class:`CacheTier`: L1, L2) are
also written with ``set_many``; L3 only through ``DatabaseTier.upsert``, which
takes the source data a snapshot does not carry.

L1 and L2 only ever hold copies of L3 rows. A copy read from L3 reaches L2 only through a
*fill claim* (:meth:`RedisTier.claim_fills` before the L3 read, :meth:`RedisTier.fill_many`
after it), which every save and delete of the entry cancels: a read that overlapped a change
never leaves the copy it read in Redis. A Redis error is never fatal: the
Redis owner (:mod:`memory.infra.redis`) turns it into a miss (or a skipped write), logs one warning
per outage, and waits ``MEMORY_REDIS_RETRY_AFTER`` seconds before trying again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from datetime import datetime, timezone as dt_timezone
from typing import Any, Callable, Iterable

import orjson
import psycopg
from django.conf import settings
from django.core.cache import caches
from django.db import DatabaseError, IntegrityError, OperationalError, connection, connections, transaction
from django.db.models import JSONField
from django.utils import timezone

from memory.engine import freshness, partitions, versions
from memory.engine.validators import instant, json_text, token_counts
from memory.infra import redis, replicas
from memory.models import ContentVersion, ProductMemoryEntry

logger = logging.getLogger("memory")

Key = tuple[str, str]  # (product_id, kind)
KEY_FIELDS = ("product_id", "kind")  # the unique key of a row, the conflict target of every upsert

L1 = "l1"
L2 = "l2"
L3 = "l3"

# The lengths of the model's columns.
MAX_LENGTHS = {"product_id": 255, "kind": 64, "input_fingerprint": 64, "generator_version": 200}


@dataclass(frozen=True)
class Snapshot:
    """What every tier holds of an entry: the content, what decides its freshness, and what its
    generation cost (``tokens_cached`` and ``tokens_reasoning`` are parts of ``tokens_prompt`` and
    ``tokens_completion``; they come last, with defaults, as they came later)."""

    product_id: str
    kind: str
    payload: dict
    input_fingerprint: str
    generator_version: str
    tokens_prompt: int
    tokens_completion: int
    created_at: float  # epoch seconds
    expires_at: float  # epoch seconds
    tokens_cached: int = 0
    tokens_reasoning: int = 0
    approved: bool = False  # served as it is, whatever its status (memory.engine.freshness)

    @property
    def key(self) -> Key:
        return (self.product_id, self.kind)

    @property
    def tokens_spent(self) -> int:
        return self.tokens_prompt + self.tokens_completion

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    def cache_seconds(self, now: float | None = None) -> float:
        """How long a cache tier may keep this copy: until it expires; an approved entry never
        expires, so ``MEMORY_DEFAULT_TTL`` (any bound holds: every change rewrites or drops the copies)."""
        left = self.seconds_left(now)
        return max(left, settings.MEMORY_DEFAULT_TTL) if self.approved else left

    def status(self, fingerprint: str | None, generator_version: str | None, now: float | None = None) -> str:
        """``active``, ``expired`` or ``stale`` (:mod:`memory.engine.freshness`) for a request with
        this fingerprint and generator."""
        return freshness.status(self.expires_at, time.time() if now is None else now, self.generator_version,
                                generator_version, self.input_fingerprint, fingerprint, self.approved)

    def serves(self, fingerprint: str | None, generator_version: str | None, now: float | None = None) -> bool:
        """Whether a lookup with this fingerprint and generator serves the snapshot (:func:`freshness.served`)."""
        return self.approved or self.status(fingerprint, generator_version, now) == freshness.ACTIVE

    def to_dict(self) -> dict:
        """The fields as a dict, sharing the payload: whoever asks serializes it at once."""
        return dict(self.__dict__)

    @classmethod
    def from_stored(cls, data: Any, key: Key) -> "Snapshot":
        """The snapshot of ``key`` that a cache tier stored as :meth:`to_dict`; ``ValueError``
        naming the field unless every field has its type and bounds (Redis is not trusted).

        The payload's size is bounded before it is read (:func:`memory.infra.redis.decode`),
        and NaN/Infinity never decode: here it only has to be a JSON object. A value stored before
        ``tokens_cached`` and ``tokens_reasoning`` existed (without both) reads with 0 for them."""
        if not isinstance(data, dict):
            raise ValueError(f"snapshot: deve ser um objeto, recebido {type(data).__name__}")
        if frozenset(data) not in _STORED_FIELD_SETS:
            raise ValueError(f"snapshot: os campos devem ser exatamente {', '.join(sorted(_SNAPSHOT_FIELD_SET))}")
        if not isinstance(data.get("approved", False), bool):
            raise ValueError("approved: deve ser booleano")
        for name, max_length in MAX_LENGTHS.items():
            value = data[name]
            if not isinstance(value, str) or len(value) > max_length:
                raise ValueError(f"{name}: deve ser um texto de até {max_length} caracteres")
        if (data["product_id"], data["kind"]) != key:
            raise ValueError("product_id: o valor é de outra entrada")
        if not isinstance(data["payload"], dict):
            raise ValueError(f"payload: deve ser um objeto JSON, recebido {type(data['payload']).__name__}")
        token_counts(data)
        instant("created_at", data["created_at"])
        instant("expires_at", data["expires_at"])
        return cls(**data)

    @classmethod
    def from_entry(cls, entry: ProductMemoryEntry) -> "Snapshot":
        return cls(
            product_id=entry.product_id,
            kind=entry.kind,
            payload=entry.payload,
            input_fingerprint=entry.input_fingerprint,
            generator_version=entry.generator_version,
            tokens_prompt=entry.tokens_prompt,
            tokens_completion=entry.tokens_completion,
            created_at=entry.created_at.timestamp(),
            expires_at=entry.expires_at.timestamp(),
            tokens_cached=entry.tokens_cached,
            tokens_reasoning=entry.tokens_reasoning,
            approved=entry.approved,
        )

    def created_at_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, tz=dt_timezone.utc)

    def expires_at_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, tz=dt_timezone.utc)


_SNAPSHOT_FIELD_SET = frozenset(field.name for field in fields(Snapshot))
# The fields a copy Redis took under an earlier release may lack, each group all or none: the
# cached and reasoning token counts (read as 0), the approval (read as not approved: approving an
# entry rewrites its copies).
_LATER_FIELD_GROUPS = (frozenset({"tokens_cached", "tokens_reasoning"}), frozenset({"approved"}))
_STORED_FIELD_SETS = frozenset(
    _SNAPSHOT_FIELD_SET - missing
    for missing in (frozenset(), *_LATER_FIELD_GROUPS, frozenset().union(*_LATER_FIELD_GROUPS))
)


def cache_key(key: Key) -> str:
    """The key of an entry in L1 and L2: readable when safe, hashed otherwise. The product part
    is a hash tag (``{…}``): on a Redis Cluster every key of a product (its copies, their fill
    claims) lies in one slot, so one script or transaction can take them together."""
    product_id, kind = key
    if (len(product_id) <= 180 and product_id.isprintable() and " " not in product_id
            and "{" not in product_id and "}" not in product_id):
        return f"entry:{kind}:{{{product_id}}}"
    return f"entry:{kind}:{{#" + hashlib.sha256(product_id.encode()).hexdigest() + "}"


# A fill claim's key is its entry's key and this suffix: ``entry:*`` still covers both (``clear``),
# and no entry key ends so (a readable product_id holds no space, a hashed one is hex).
FILL_CLAIM_SUFFIX = " fill"


def fill_claim_key(key: Key) -> str:
    """The key of the L2 fill claim of an entry (:meth:`RedisTier.claim_fills`)."""
    return cache_key(key) + FILL_CLAIM_SUFFIX


def _with_fill_claims(cache_keys: list[str]) -> list[str]:
    return cache_keys + [ck + FILL_CLAIM_SUFFIX for ck in cache_keys]


class Tier(ABC):
    """What every tier answers."""

    name: str

    @abstractmethod
    def get_many(self, keys: list[Key]) -> dict[Key, Snapshot]:
        """The snapshots the tier holds among ``keys`` (fresh or not: the caller decides)."""

    @abstractmethod
    def delete_many(self, keys: Iterable[Key]) -> None:
        """Drop ``keys`` from the tier."""

    @abstractmethod
    def clear(self) -> None:
        """Drop every entry of the tier."""


class CacheTier(Tier):
    """A tier holding copies of L3 rows, written with the snapshots themselves."""

    @abstractmethod
    def set_many(self, snapshots: Iterable[Snapshot]) -> None:
        """Store copies of ``snapshots`` until their ``expires_at`` at the latest."""


class LocalTier(CacheTier):
    """L1: a per-process Django cache (LocMem), holding copies for ``MEMORY_L1_TTL`` seconds."""

    name = L1

    def __init__(self, alias: str = "memory_l1"):
        self.cache = caches[alias]

    def get(self, key: Key) -> Snapshot | None:
        return self.cache.get(cache_key(key))

    def get_many(self, keys):
        by_cache_key = {cache_key(k): k for k in keys}
        found = self.cache.get_many(list(by_cache_key))
        return {by_cache_key[ck]: snap for ck, snap in found.items()}

    def set_many(self, snapshots):
        """Store the snapshots themselves: LocMem pickles them, so every read gets its own copy
        of the payload, which the caller may change freely."""
        now = time.time()
        for snap in snapshots:
            ttl = min(settings.MEMORY_L1_TTL, snap.cache_seconds(now))
            if ttl > 0:
                self.cache.set(cache_key(snap.key), snap, timeout=ttl)

    def delete_many(self, keys):
        self.cache.delete_many([cache_key(k) for k in keys])

    def clear(self):
        self.cache.clear()


class RedisTier(CacheTier):
    """L2: Redis through django-redis (JSON serializer, LZ4 compressor from settings).

    Entries carry a Redis TTL equal to the time left to ``expires_at``. Writes
    and deletes that fail during an outage are remembered and replayed as
    deletes when Redis answers again, so that Redis never serves a copy that
    PostgreSQL has since replaced or removed.

    A copy read from L3 is written only if no save or delete of its entry came between the
    read and the write: the reader claims the fill before reading L3 (:meth:`claim_fills`), every
    write and delete here drops the entry's claim, and :meth:`fill_many` writes only where its
    claim still stands, atomically, and only where Redis holds no copy (a newer one).
    """

    # How long a claim waits for its fill: longer than any L3 read (a statement is bounded at
    # 32 s). A fill that comes later finds no claim and writes nothing, which is only a miss.
    FILL_CLAIM_TTL = 60.0

    name = L2

    def __init__(self):
        self._pending_lock = threading.Lock()
        self._pending_deletes: set[str] = set()
        self._pending_clear = False
        redis.guard.on_recovery(self._apply_pending)  # another Redis user may find Redis back first

    @property
    def cache(self):
        return redis.cache()

    def run_guarded(self, operation: Callable, default=None, on_failure: Callable[[], None] | None = None):
        """``operation()`` through the Redis owner, after the deletes Redis missed (or a read
        right after an outage could serve a removed copy)."""

        def after_pending():
            self._apply_pending()
            return operation()

        return redis.run(after_pending, default, on_failure)

    def _remember_deletes(self, cache_keys: list[str]) -> None:
        with self._pending_lock:
            self._pending_deletes.update(cache_keys)

    def _remember_clear(self) -> None:
        with self._pending_lock:
            self._pending_clear = True
            self._pending_deletes.clear()

    def _apply_pending(self) -> None:
        """Delete what Redis missed during an outage; on failure keep it for the next call."""
        if not (self._pending_deletes or self._pending_clear):
            return
        with self._pending_lock:
            deletes, self._pending_deletes = self._pending_deletes, set()
            clear, self._pending_clear = self._pending_clear, False
        try:
            if clear:
                self._delete_all_entries()
            if deletes:
                self.cache.delete_many(list(deletes))
        except redis.REDIS_ERRORS:
            with self._pending_lock:
                self._pending_deletes |= deletes
                self._pending_clear = self._pending_clear or clear
            raise

    def forget_pending(self) -> None:
        """Drop the deletes remembered for Redis (tests switch Redis servers between cases)."""
        with self._pending_lock:
            self._pending_deletes.clear()
            self._pending_clear = False

    def get_many(self, keys):
        """One MGET; a value this memory did not write, or that is not a valid snapshot of its
        key, is a miss, deleted and logged (:func:`memory.infra.redis.discard`)."""
        by_redis_key = {redis.make_key(cache_key(k)): k for k in keys}
        if not by_redis_key:
            return {}

        def read():
            return list(zip(by_redis_key, redis.mget(list(by_redis_key))))

        found, invalid = {}, {}
        for redis_key, value in self.run_guarded(read, default=[]):
            if value is None:
                continue
            key = by_redis_key[redis_key]
            try:
                found[key] = Snapshot.from_stored(redis.decode(value), key)
            except ValueError as exc:  # redis.InvalidValue included
                invalid[redis_key] = str(exc)
        if invalid:
            redis.discard(invalid)
        return found

    def set_many(self, snapshots, publish: tuple[str, str] | None = None, incr: str | None = None) -> bool:
        """Write copies of rows just written to L3, with a TTL equal to their time left, and
        cancel the fills of older copies under way (their claims go).

        ``publish`` (channel, message) and ``incr`` (a counter's key name) go out in the same
        pipeline, after the writes: a save costs one Redis round trip instead of three. True
        when Redis took it all.
        """
        now = time.time()
        items = [(cache_key(s.key), s, s.cache_seconds(now)) for s in snapshots]
        claims = [redis.make_key(ck + FILL_CLAIM_SUFFIX) for ck, _, _ in items]
        items = [(ck, s, ttl) for ck, s, ttl in items if ttl > 0]
        if not items and not claims and publish is None and incr is None:
            return True

        def write():
            pipe = redis.pipeline()
            for ck, snap, ttl in items:
                pipe.set(redis.make_key(ck), redis.encode(snap.to_dict()), px=max(1, int(ttl * 1000)))
            if claims:
                pipe.delete(*claims)
            if publish is not None:
                pipe.publish(*publish)
            if incr is not None:
                pipe.incr(redis.make_key(incr))
            pipe.execute()
            return True

        return self.run_guarded(
            write, default=False,
            on_failure=lambda: self._remember_deletes(_with_fill_claims([cache_key(s.key) for s in snapshots])),
        )

    def claim_fills(self, keys: list[Key]) -> dict[Key, str]:
        """Before reading ``keys`` from L3: the claims to hand to :meth:`fill_many` (one round
        trip; none while Redis is away). A key already claimed by a read under way shares its
        claim: whichever fills first, the copy is the same row."""
        if not keys:
            return {}
        names = [redis.make_key(fill_claim_key(k)) for k in keys]
        token = uuid.uuid4().hex
        held = self.run_guarded(lambda: redis.claim(names, token, self.FILL_CLAIM_TTL), default=None)
        return {k: t for k, t in zip(keys, held or []) if t is not None}

    def fill_many(self, snapshots: Iterable[Snapshot], claims: dict[Key, str]) -> int:
        """Copy what was read from L3 after :meth:`claim_fills` into Redis where the claim still
        stands (no save or delete since) and Redis holds no copy; returns how many were written."""
        now = time.time()
        writes = []
        for snap in snapshots:
            ttl, token = snap.cache_seconds(now), claims.get(snap.key)
            if ttl > 0 and token is not None:
                ck = cache_key(snap.key)
                writes.append((redis.make_key(ck), redis.encode(snap.to_dict()), int(ttl * 1000),
                               redis.make_key(ck + FILL_CLAIM_SUFFIX), token))
        if not writes:
            return 0
        return self.run_guarded(lambda: redis.set_where_claimed(writes), default=0)

    def delete_many(self, keys):
        """Drop the copies and cancel the fills under way (their claims go with them)."""
        names = _with_fill_claims([cache_key(k) for k in keys])
        if names:
            self.run_guarded(
                lambda: self.cache.delete_many(names),
                on_failure=lambda: self._remember_deletes(names),
            )

    def clear(self):
        """Drop every copy and every fill claim (both are ``entry:*`` keys)."""
        self.run_guarded(self._delete_all_entries, on_failure=self._remember_clear)

    DELETE_BATCH = 1000

    def _delete_all_entries(self) -> None:
        """SCAN and UNLINK entry keys a batch at a time: django-redis' ``delete_pattern``
        queues every key in one pipeline, hundreds of MB at a million keys. (On a cluster the
        SCAN walks every master, and an UNLINK of a batch is one per slot, pipelined per node.)"""
        client = redis.client()
        batch = []
        for key in client.scan_iter(match=redis.make_pattern("entry:*"), count=self.DELETE_BATCH):
            batch.append(key)
            if len(batch) >= self.DELETE_BATCH:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)


def _approval(approved: bool, by: str) -> dict:
    """The columns of an approval (who, now) or of its withdrawal (nobody, never)."""
    return {"approved": approved, "approved_by": by if approved else "",
            "approved_at": timezone.now() if approved else None}


def _imported_version(row: dict, number: int) -> dict:
    """The content of an imported row as version ``number`` of its entry (and the row's own)."""
    row.update(version=number, origin=versions.IMPORTED)
    return {
        "number": number, "payload": row["payload"], "origin": versions.IMPORTED,
        "generator_version": row["generator_version"], "author": row["author"],
        "tokens": row["tokens_prompt"] + row["tokens_completion"], "created_at": row["updated_at"],
    }


# One L2 per process, so that its outage state and the deletes Redis missed are shared by every
# ``ProductMemory``; its Redis is looked up on each call, so it follows ``CACHES``.
redis_tier = RedisTier()


def shared_redis_tier() -> RedisTier | None:
    """This process's L2, or None without Redis."""
    return redis_tier if redis.configured() else None


@contextmanager
def _dropping_broken_connection(db=connection):
    """A statement sent outside ``transaction.atomic`` that fails with a dead connection drops
    it, so the next call reconnects (atomic's rollback does this for statements inside it)."""
    try:
        yield
    except DatabaseError:
        if db.connection is not None and not db.in_atomic_block and not db.is_usable():
            db.close()
        raise


def json_array(values: list) -> str:
    """``values`` (product ids, or rows of plain values) as one JSON text, for a statement to read with
    ``jsonb_array_elements_text`` or ``jsonb_to_recordset``: thousands of them travel as one text that
    orjson encodes in C, where psycopg dumps a list element by element in Python (~11 µs a row of an
    import: docs/benchmarks.md)."""
    return orjson.dumps(values).decode()


def keys_of_kind_sql(columns: str, table: str, *, lock: str = "") -> str:
    """``SELECT columns`` of the rows of one kind whose product ids a JSON array holds (parameters: the
    array's text, then the kind), by the unique index ``(product_id, kind)`` one id at a time; ``lock``
    (``" FOR UPDATE"``) locks them.

    Not ``kind = %s AND product_id = ANY(%s)``, nor a plain join: on a table without statistics yet (a
    restore into a new database; the one transaction of an import) the planner took for either the
    stats index, whose first column is the kind, and read every row of the kind for each batch (an
    import of 1M rows: 355 s, PostgreSQL's CPU 293 s, docs/benchmarks.md). A lookup per id, which
    ``LIMIT 1`` keeps from being flattened into a join, matches both columns of the unique index."""
    return (f"SELECT found.* FROM jsonb_array_elements_text(%s::jsonb) AS wanted(product)"
            f" CROSS JOIN LATERAL (SELECT {columns} FROM {table}"
            f" WHERE product_id = wanted.product AND kind = %s LIMIT 1{lock}) AS found")


class DatabaseTier(Tier):
    """L3: the ``ProductMemoryEntry`` table, the source of truth."""

    name = L3

    # SQLite caps the number of bound variables: the ORM read goes in chunks there.
    SQLITE_CHUNK = 900

    SNAPSHOT_FIELDS = tuple(field.name for field in fields(Snapshot))
    # On PostgreSQL the hot paths skip the ORM, whose query building costs more than the
    # round trip (docs/benchmarks.md).
    SNAPSHOT_COLUMNS = ", ".join(SNAPSHOT_FIELDS)

    def get_many(self, keys):
        by_kind: dict[str, list[str]] = {}
        for product_id, kind in keys:
            by_kind.setdefault(kind, []).append(product_id)
        if connection.vendor != "postgresql":
            return {snap.key: snap for kind, product_ids in by_kind.items()
                    for snap in self._select_entries(kind, product_ids)}
        # a replica's, unless this scope wrote (memory.infra.replicas); the primary's if it fails
        return replicas.reading(lambda alias: {
            snap.key: snap for kind, product_ids in by_kind.items()
            for snap in self._select_snapshots(kind, product_ids, alias)
        })

    def _select_snapshots(self, kind: str, product_ids: list[str], using: str = replicas.PRIMARY) -> list[Snapshot]:
        """One SQL statement whatever the number of products (their ids sent as one JSON text: :func:`keys_of_kind_sql`)."""
        db = connections[using]
        table = db.ops.quote_name(ProductMemoryEntry._meta.db_table)
        with _dropping_broken_connection(db), db.cursor() as cursor:
            cursor.execute(keys_of_kind_sql(self.SNAPSHOT_COLUMNS, table), [json_array(product_ids), kind])
            rows = cursor.fetchall()
        return [
            Snapshot(
                product_id=product_id, kind=row_kind,
                payload=json.loads(payload) if isinstance(payload, (str, bytes)) else payload,
                input_fingerprint=fingerprint, generator_version=generator,
                tokens_prompt=prompt, tokens_completion=completion,
                created_at=created.timestamp(), expires_at=expires.timestamp(),
                tokens_cached=cached, tokens_reasoning=reasoning, approved=approved,
            )
            for (product_id, row_kind, payload, fingerprint, generator, prompt, completion, created, expires,
                 cached, reasoning, approved) in rows
        ]

    def _select_entries(self, kind: str, product_ids: list[str]) -> list[Snapshot]:
        """The ORM read, for the databases other than PostgreSQL."""
        base = ProductMemoryEntry.objects.filter(kind=kind).only(*self.SNAPSHOT_FIELDS)
        return [
            Snapshot.from_entry(entry)
            for start in range(0, len(product_ids), self.SQLITE_CHUNK)
            for entry in base.filter(product_id__in=product_ids[start:start + self.SQLITE_CHUNK])
        ]

    # One statement, atomic by itself and one round trip: the row (inserted, or replaced where
    # no approval forbids it), the content as the row's new version (its number counted on the
    # locked row, so concurrent saves never share one), and the versions past the retention.
    UPSERT_SQL = (
        "WITH saved AS ("
        " INSERT INTO {table} (product_id, kind, payload, source_data, input_fingerprint, generator_version,"
        " tokens_prompt, tokens_completion, tokens_cached, tokens_reasoning, hit_count, tokens_saved,"
        " created_at, updated_at, expires_at, family_id,"
        " version, origin, author, approved, approved_by, approved_at)"
        " VALUES (%s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s, 0, 0, %s, %s, %s, %s, 1, %s, %s, FALSE, '', NULL)"
        " ON CONFLICT (product_id, kind) DO UPDATE SET payload = EXCLUDED.payload,"
        " source_data = EXCLUDED.source_data, input_fingerprint = EXCLUDED.input_fingerprint,"
        " generator_version = EXCLUDED.generator_version, tokens_prompt = EXCLUDED.tokens_prompt,"
        " tokens_completion = EXCLUDED.tokens_completion, tokens_cached = EXCLUDED.tokens_cached,"
        " tokens_reasoning = EXCLUDED.tokens_reasoning, updated_at = EXCLUDED.updated_at,"
        " expires_at = EXCLUDED.expires_at, family_id = EXCLUDED.family_id, version = {table}.version + 1,"
        " origin = EXCLUDED.origin, author = EXCLUDED.author, approved = FALSE, approved_by = '', approved_at = NULL"
        " WHERE NOT {table}.approved OR %s"
        " RETURNING id, version, created_at, payload, origin, generator_version, author, updated_at"
        "), kept AS ("
        " INSERT INTO {versions} (entry_id, number, payload, origin, generator_version, tokens, author, created_at)"
        " SELECT id, version, payload, origin, generator_version, %s, author, updated_at FROM saved"
        "), dropped AS ("
        " DELETE FROM {versions} AS old USING saved"
        " WHERE old.entry_id = saved.id AND old.number <= saved.version - %s"
        ")"
        " SELECT created_at FROM saved"
    )

    # UPSERT_SQL for MEMORY_PARTITION_BY_EXPIRY=monthly (memory.engine.partitions): no unique index
    # on (product_id, kind) there, so no ON CONFLICT. The row is updated where it exists (and not
    # approved, unless overridden), inserted where it does not; the same version rows and RETURNING
    # as UPSERT_SQL. Two saves inserting one new key: the key's trigger refuses the second, which
    # is sent again and then finds the row.
    PARTITIONED_UPSERT_SQL = (
        "WITH saved AS ("
        " UPDATE {table} SET payload = %(payload)s::jsonb, source_data = %(source_data)s::jsonb,"
        " input_fingerprint = %(input_fingerprint)s, generator_version = %(generator_version)s,"
        " tokens_prompt = %(tokens_prompt)s, tokens_completion = %(tokens_completion)s,"
        " tokens_cached = %(tokens_cached)s, tokens_reasoning = %(tokens_reasoning)s, updated_at = %(now)s,"
        " expires_at = %(expires_at)s, family_id = %(family_id)s, version = version + 1, origin = %(origin)s,"
        " author = %(author)s, approved = FALSE, approved_by = '', approved_at = NULL"
        " WHERE product_id = %(product_id)s AND kind = %(kind)s AND (NOT approved OR %(override)s)"
        " RETURNING id, version, created_at, payload, origin, generator_version, author, updated_at"
        "), added AS ("
        " INSERT INTO {table} (product_id, kind, payload, source_data, input_fingerprint, generator_version,"
        " tokens_prompt, tokens_completion, tokens_cached, tokens_reasoning, hit_count, tokens_saved,"
        " created_at, updated_at, expires_at, family_id,"
        " version, origin, author, approved, approved_by, approved_at)"
        " SELECT %(product_id)s, %(kind)s, %(payload)s::jsonb, %(source_data)s::jsonb, %(input_fingerprint)s,"
        " %(generator_version)s, %(tokens_prompt)s, %(tokens_completion)s, %(tokens_cached)s, %(tokens_reasoning)s,"
        " 0, 0, %(now)s, %(now)s, %(expires_at)s, %(family_id)s, 1, %(origin)s, %(author)s, FALSE, '', NULL"
        " WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE product_id = %(product_id)s AND kind = %(kind)s)"
        " RETURNING id, version, created_at, payload, origin, generator_version, author, updated_at"
        "), written AS (SELECT * FROM saved UNION ALL SELECT * FROM added"
        "), kept AS ("
        " INSERT INTO {versions} (entry_id, number, payload, origin, generator_version, tokens, author, created_at)"
        " SELECT id, version, payload, origin, generator_version, %(tokens)s, author, updated_at FROM written"
        "), dropped AS ("
        " DELETE FROM {versions} AS old USING written"
        " WHERE old.entry_id = written.id AND old.number <= written.version - %(keep)s"
        ")"
        " SELECT created_at FROM written"
    )
    # Attempts of a partitioned upsert: a lost race to insert the key (unique_violation), or a
    # concurrent save that moved the row to another partition (PostgreSQL then refuses the update
    # with a serialization failure, even under READ COMMITTED).
    PARTITIONED_ATTEMPTS = 3
    PARTITIONED_RETRIED = (psycopg.errors.UniqueViolation, psycopg.errors.SerializationFailure)

    def upsert(self, *, product_id, kind, payload, source_data, input_fingerprint, generator_version,
               tokens_prompt, tokens_completion, expires_at, tokens_cached=0, tokens_reasoning=0,
               origin: str = versions.GENERATED, author: str = "", override_approval: bool = False,
               family_id: str = "") -> Snapshot:
        """Insert or replace the row of ``(product_id, kind)``, keeping its created_at and hit counts,
        and keep the content as the entry's new version (:mod:`memory.engine.versions`); ``family_id``:
        the family its content was derived from, empty for content of its own.

        ``ApprovedContent`` (nothing written) when the entry is approved, unless
        ``override_approval``: then the approval goes, as what replaced the content was approved
        by no one. On PostgreSQL one statement (``UPSERT_SQL``): one round trip, where
        ``update_or_create`` and the version need six.
        """
        now = timezone.now()
        tokens = versions.tokens_of(origin, tokens_prompt + tokens_completion)
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(ProductMemoryEntry._meta.db_table)
            versions_table = connection.ops.quote_name(ContentVersion._meta.db_table)
            if partitions.enabled():
                row = self._upsert_partitioned(table, versions_table, {
                    "product_id": product_id, "kind": kind, "payload": json.dumps(payload),
                    "source_data": json.dumps(source_data), "input_fingerprint": input_fingerprint,
                    "generator_version": generator_version, "tokens_prompt": tokens_prompt,
                    "tokens_completion": tokens_completion, "tokens_cached": tokens_cached,
                    "tokens_reasoning": tokens_reasoning, "now": now, "expires_at": expires_at,
                    "family_id": family_id, "origin": origin, "author": author,
                    "override": bool(override_approval), "tokens": tokens, "keep": versions.max_versions(),
                })
            else:
                with _dropping_broken_connection(), connection.cursor() as cursor:
                    cursor.execute(self.UPSERT_SQL.format(table=table, versions=versions_table), [
                        product_id, kind, json.dumps(payload), json.dumps(source_data), input_fingerprint,
                        generator_version, tokens_prompt, tokens_completion, tokens_cached, tokens_reasoning,
                        now, now, expires_at, family_id, origin, author, bool(override_approval), tokens,
                        versions.max_versions(),
                    ])
                    row = cursor.fetchone()
            if row is None:
                raise versions.ApprovedContent(product_id, kind)
            (created_at,) = row
            return Snapshot(
                product_id=product_id, kind=kind, payload=payload, input_fingerprint=input_fingerprint,
                generator_version=generator_version, tokens_prompt=tokens_prompt,
                tokens_completion=tokens_completion, created_at=created_at.timestamp(),
                expires_at=expires_at.timestamp(), tokens_cached=tokens_cached, tokens_reasoning=tokens_reasoning,
            )
        written = {
            "payload": payload,
            "source_data": source_data,
            "input_fingerprint": input_fingerprint,
            "generator_version": generator_version,
            "tokens_prompt": tokens_prompt,
            "tokens_completion": tokens_completion,
            "tokens_cached": tokens_cached,
            "tokens_reasoning": tokens_reasoning,
            "updated_at": now,
            "expires_at": expires_at,
            "family_id": family_id,
            "origin": origin,
            "author": author,
            "approved": False,
            "approved_by": "",
            "approved_at": None,
        }
        with transaction.atomic():
            entry = ProductMemoryEntry.objects.select_for_update().filter(product_id=product_id, kind=kind).first()
            if entry is None:
                entry = ProductMemoryEntry.objects.create(product_id=product_id, kind=kind, created_at=now,
                                                          version=1, **written)
            else:
                if entry.approved and not override_approval:
                    raise versions.ApprovedContent(product_id, kind)
                for name, value in written.items():
                    setattr(entry, name, value)
                entry.version += 1
                entry.save(update_fields=[*written, "version"])
            versions.record(entry.pk, entry.version, payload, origin=origin, generator_version=generator_version,
                            tokens=tokens, author=author, created_at=now)
        return Snapshot.from_entry(entry)

    def _upsert_partitioned(self, table: str, versions_table: str, params: dict):
        """``PARTITIONED_UPSERT_SQL``, tried again when it lost a race (each attempt a savepoint
        inside the caller's transaction); the row it returns, None when an approval kept the content."""
        statement = self.PARTITIONED_UPSERT_SQL.format(table=table, versions=versions_table)
        for attempt in range(1, self.PARTITIONED_ATTEMPTS + 1):
            try:
                with _dropping_broken_connection(), \
                        (transaction.atomic() if connection.in_atomic_block else nullcontext()), \
                        connection.cursor() as cursor:
                    cursor.execute(statement, params)
                    return cursor.fetchone()
            except (IntegrityError, OperationalError) as exc:
                if not isinstance(exc.__cause__, self.PARTITIONED_RETRIED) or attempt == self.PARTITIONED_ATTEMPTS:
                    raise

    def write_content(self, key: Key, payload: dict, *, origin: str, author: str) -> Snapshot | None:
        """Replace the content of an entry (an edit, a restore) as its new version; everything
        else stays (its freshness, its expiry, its approval, its tokens: what a hit saves).
        None when there is no such entry."""
        product_id, kind = key
        now = timezone.now()
        with transaction.atomic():
            entry = ProductMemoryEntry.objects.select_for_update().filter(product_id=product_id, kind=kind).first()
            if entry is None:
                return None
            entry.payload = payload
            entry.updated_at = now
            entry.version += 1
            entry.origin = origin
            entry.author = author
            entry.save(update_fields=["payload", "updated_at", "version", "origin", "author"])
            versions.record(entry.pk, entry.version, payload, origin=origin,
                            generator_version=entry.generator_version,
                            tokens=versions.tokens_of(origin, entry.tokens_spent), author=author, created_at=now)
        return Snapshot.from_entry(entry)

    def set_approval(self, key: Key, approved: bool, *, by: str) -> Snapshot | None:
        """Approve an entry (who and now) or withdraw its approval; its content does not change
        (no version). None when there is no such entry."""
        product_id, kind = key
        with transaction.atomic():
            if not ProductMemoryEntry.objects.filter(product_id=product_id, kind=kind).update(
                    **_approval(approved, by)):
                return None
            entry = ProductMemoryEntry.objects.only(*self.SNAPSHOT_FIELDS).get(product_id=product_id, kind=kind)
        return Snapshot.from_entry(entry)

    def delete_many(self, keys) -> int:
        deleted = 0
        for product_id, kind in keys:
            count, _ = ProductMemoryEntry.objects.filter(product_id=product_id, kind=kind).delete()
            deleted += count
        return deleted

    def clear(self) -> int:
        count, _ = ProductMemoryEntry.objects.all().delete()
        return count

    def count_existing(self, keys: Iterable[Key]) -> int:
        """How many of these (product_id, kind) keys have a row."""
        by_kind: dict[str, list[str]] = {}
        for product_id, kind in keys:
            by_kind.setdefault(kind, []).append(product_id)
        return sum(
            ProductMemoryEntry.objects.filter(kind=kind, product_id__in=ids).count()
            for kind, ids in by_kind.items()
        )

    def set_approval_many(self, pks: list[int], approved: bool, *, by: str) -> int:
        """:meth:`set_approval` for the rows of these primary keys; returns how many changed.
        The caller drops their cached copies once its transaction commits."""
        return ProductMemoryEntry.objects.filter(pk__in=pks).exclude(approved=approved).update(
            **_approval(approved, by))

    def upsert_rows(self, rows: list[dict]) -> int:
        """Insert or replace whole rows on ``(product_id, kind)`` as an import or a restore gives
        them, every column as given (a save, :meth:`upsert`, keeps created_at and the hit counts),
        with their history; returns how many already existed. Each key appears once in ``rows``,
        which are left as given.

        A row's ``versions`` (a list, oldest first, or None) are the history its file carries:
        an entry new here takes them as they are (the newest ``MEMORY_MAX_VERSIONS``). An entry
        already here keeps its own history. Either way a content that is not the newest version
        already becomes a new version of origin ``imported``; the row's ``version``, ``origin``
        and ``author`` are those of its newest version.
        """
        if not rows:
            return 0
        if connection.vendor == "postgresql" and self.BULK_COPY:
            for attempt in (1, 2):
                try:
                    with transaction.atomic():
                        return self._copy_rows(rows)
                except psycopg.errors.UniqueViolation:
                    # A key another writer inserted after this batch looked it up: rolled back to
                    # the savepoint, the batch looks once more (that row is committed now, so it
                    # is found).
                    if attempt == 2:
                        raise
        planned, existing = self._planned(rows)
        entries = [ProductMemoryEntry(**row) for row, _ in planned]
        ProductMemoryEntry.objects.bulk_create(
            entries,
            update_conflicts=True,
            unique_fields=list(KEY_FIELDS),
            update_fields=[name for name in planned[0][0] if name not in KEY_FIELDS],
        )
        ids = self._ids(entries)
        written = [
            ContentVersion(entry_id=ids[(entry.product_id, entry.kind)], **version)
            for entry, (_, history) in zip(entries, planned) for version in history
        ]
        versions.record_many(written, {ids[(e.product_id, e.kind)]: e.version for e in entries})
        return len(existing)

    def _planned(self, rows: list[dict]) -> tuple[list[tuple[dict, list[dict]]], dict]:
        """Each row as it is written (``versions`` out; ``version``, ``origin``, ``author`` those of
        its newest version) with the versions it adds, and the current versions of the keys that
        exist (locked inside a transaction). A new entry's history is cut to the retention here."""
        existing = self._current_versions((row["product_id"], row["kind"]) for row in rows)
        keep = versions.max_versions()
        planned = []
        for given in rows:
            row = dict(given)
            carried = sorted(row.pop("versions", None) or [], key=lambda v: v["number"])
            found = existing.get((row["product_id"], row["kind"]))
            if found is not None:
                number, payload, origin, author = found
                if payload == row["payload"]:
                    row.update(version=number, origin=origin, author=author)
                    planned.append((row, []))
                else:
                    planned.append((row, [_imported_version(row, number + 1)]))
            else:
                kept = carried[-keep:]
                if kept and kept[-1]["payload"] == row["payload"]:
                    newest = kept[-1]
                    row.update(version=newest["number"], origin=newest["origin"], author=newest["author"])
                else:
                    kept = [*kept, _imported_version(row, kept[-1]["number"] + 1 if kept else 1)][-keep:]
                planned.append((row, kept))
        return planned, existing

    # --- PostgreSQL's bulk path: COPY, straight into the table for new keys ----------------------

    COPY_TABLE = "memory_import_rows"
    # False: the ORM's bulk_create instead (bench/bulk_copy.py measures both in one run)
    BULK_COPY = True

    def _copy_rows(self, rows: list[dict]) -> int:
        """:meth:`upsert_rows` by ``COPY``: rows of keys not held yet straight into the table (their
        ids drawn from its sequence first), the others into a temporary table and one ``INSERT …
        ON CONFLICT``; then the versions: the current one of each entry from its row, older ones by ``COPY``. Inside
        the caller's savepoint."""
        planned, existing = self._planned(rows)
        texts: dict[int, tuple[Any, str]] = {}
        fresh = [(row, history) for row, history in planned if (row["product_id"], row["kind"]) not in existing]
        held = [(row, history) for row, history in planned if (row["product_id"], row["kind"]) in existing]
        ids = self._copy_new_entries([row for row, _ in fresh], texts)
        if held:
            update = [name for name in held[0][0] if name not in KEY_FIELDS]
            ids.update(self._copy_entries([row for row, _ in held], update, texts))
        older, current = [], []
        for row, history in planned:
            entry_id = ids[(row["product_id"], row["kind"])]
            for version in history:
                # the entry's current content: copied from the row just written (its payload is not
                # sent nor parsed twice), the others as the file holds them
                is_current = version["number"] == row["version"] and version["payload"] is row["payload"]
                (current if is_current else older).append({**version, "entry_id": entry_id})
        self._copy_versions(older, texts)
        self._insert_current_versions(current)
        # a new entry's history was cut to the retention already; one already held may pass it
        versions.trim_entries([ids[(row["product_id"], row["kind"])] for row, history in held if history])
        return len(existing)

    @staticmethod
    def _raw_cursor() -> psycopg.Cursor:
        """A psycopg cursor binding its parameters on the server (Django's binds them in Python,
        which for arrays of thousands of keys costs more than the statement) on the primary's
        connection, inside its transaction. Outside Django's wrappers: the write is noted here."""
        connection.ensure_connection()
        replicas.note_write()
        return psycopg.Cursor(connection.connection)

    @staticmethod
    def _copy_types(fields) -> list[str]:
        """The type of each field's column as ``Copy.set_types`` takes it, JSON as text (``COPY``
        parses the text it is sent into ``jsonb``): psycopg then formats each value by its column
        instead of finding a dumper for each value's type (a 3 KB entry's row: 24 → 14 µs of CPU,
        docs/benchmarks.md)."""
        db = connections[replicas.PRIMARY]
        return ["text" if isinstance(f, JSONField) else f.db_type(db).partition("(")[0] for f in fields]

    @staticmethod
    def _copy_layout(model, texts: dict[int, tuple[Any, str]]) -> tuple[list, Callable[[dict], list]]:
        """The columns ``COPY`` writes of ``model`` (its generated and primary key ones aside), and
        the function turning a row (values by field name, as ``clean_row`` gives them) into their
        values: JSON as text, a missing value as the field's default (computed once per call).
        ``texts`` holds the JSON text of each value already written in this batch, by identity (a
        version's payload is most often its entry's own object), with the value kept alive."""
        columns = [f for f in model._meta.concrete_fields if not f.primary_key and not f.generated]
        db = connections[replicas.PRIMARY]

        def default(field):
            value = field.get_default()
            if isinstance(field, JSONField):
                return None if value is None else json_text(value)
            return field.get_db_prep_save(value, db)

        layout = [(f.attname, isinstance(f, JSONField), default(f)) for f in columns]

        def as_json(value) -> str:
            found = texts.get(id(value))
            if found is None:
                found = texts[id(value)] = (value, json_text(value))
            return found[1]

        def values(row: dict) -> list:
            out = []
            for name, is_json, default in layout:
                if name in row:
                    value = row[name]
                    out.append(as_json(value) if is_json and value is not None else value)
                else:
                    out.append(default)
            return out

        return columns, values

    def _copy_new_entries(self, rows: list[dict], texts: dict) -> dict[Key, int]:
        """``rows`` of keys the table does not hold, by one ``COPY`` into it with ids drawn from its
        sequence; returns each key's id. A key inserted meanwhile by another writer fails the
        ``COPY`` with a unique violation (the caller looks again)."""
        if not rows:
            return {}
        meta = ProductMemoryEntry._meta
        quote = connection.ops.quote_name
        columns, values = self._copy_layout(ProductMemoryEntry, texts)
        names = ", ".join(quote(f.column) for f in [meta.pk, *columns])
        with self._raw_cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                           [meta.db_table, meta.pk.column, len(rows)])
            ids = [pk for (pk,) in cursor.fetchall()]
            with cursor.copy(f"COPY {quote(meta.db_table)} ({names}) FROM STDIN") as copy:
                copy.set_types(self._copy_types([meta.pk, *columns]))
                for pk, row in zip(ids, rows):
                    copy.write_row([pk, *values(row)])
        return {(row["product_id"], row["kind"]): pk for pk, row in zip(ids, rows)}

    def _copy_entries(self, rows: list[dict], update: list[str], texts: dict) -> dict[Key, int]:
        """``rows`` upserted on ``(product_id, kind)`` (every other column as the model's default):
        ``COPY`` into a temporary table, then one ``INSERT … SELECT … ON CONFLICT DO UPDATE`` of the
        ``update`` columns; returns each key's id."""
        meta = ProductMemoryEntry._meta
        quote = connection.ops.quote_name
        table = quote(meta.db_table)
        columns, values = self._copy_layout(ProductMemoryEntry, texts)
        names = ", ".join(quote(f.column) for f in columns)
        by_name = {f.name: f.column for f in columns}
        updates = ", ".join(f"{quote(by_name[n])} = EXCLUDED.{quote(by_name[n])}" for n in update)
        staging = quote(self.COPY_TABLE)
        with self._raw_cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {staging}")
            cursor.execute(f"CREATE TEMPORARY TABLE {staging} ON COMMIT DROP AS"
                           f" SELECT {names}, 0::integer AS import_order FROM {table} WITH NO DATA")
            with cursor.copy(f"COPY {staging} ({names}, import_order) FROM STDIN") as copy:
                copy.set_types([*self._copy_types(columns), "integer"])
                for order, row in enumerate(rows):
                    copy.write_row([*values(row), order])
            if partitions.enabled() and partitions.has_key_table(cursor):
                return self._merge_staged(cursor, table, staging, names, [quote(by_name[n]) for n in update])
            # a no-op update when there is nothing else: RETURNING then names the existing rows too
            conflict = f"DO UPDATE SET {updates or 'kind = EXCLUDED.kind'}"
            cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} ORDER BY import_order"
                f" ON CONFLICT (product_id, kind) {conflict} RETURNING id, product_id, kind"
            )
            ids = {(product_id, kind): pk for pk, product_id, kind in cursor.fetchall()}
            cursor.execute(f"DROP TABLE {staging}")
        return ids

    @staticmethod
    def _merge_staged(cursor, table: str, staging: str, names: str, update: list[str]) -> dict[Key, int]:
        """The ``INSERT … ON CONFLICT`` of :meth:`_copy_entries` on a table partitioned by expiry
        (no unique index to conflict on, :mod:`memory.engine.partitions`): the keys claimed and
        locked, in one order, then an UPDATE of the rows that exist and an INSERT of the others;
        each key's id."""
        for statement in partitions.claim_staged_keys_sql(staging):
            cursor.execute(statement)
        match = f"t.product_id = s.product_id AND t.kind = s.kind"
        if update:
            sets = ", ".join(f"{column} = s.{column}" for column in update)
            cursor.execute(f"UPDATE {table} AS t SET {sets} FROM {staging} AS s WHERE {match}"
                           f" RETURNING t.id, t.product_id, t.kind")
        else:
            cursor.execute(f"SELECT t.id, t.product_id, t.kind FROM {table} AS t JOIN {staging} AS s ON {match}")
        ids = {(product_id, kind): pk for pk, product_id, kind in cursor.fetchall()}
        cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} AS s"
                       f" WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {match}) ORDER BY import_order"
                       f" RETURNING id, product_id, kind")
        ids.update({(product_id, kind): pk for pk, product_id, kind in cursor.fetchall()})
        cursor.execute(f"DROP TABLE {staging}")
        return ids

    def _copy_versions(self, written: list[dict], texts: dict) -> None:
        """Versions (values by field name, ``entry_id`` included) into their table by one ``COPY``."""
        if not written:
            return
        columns, values = self._copy_layout(ContentVersion, texts)
        names = ", ".join(connection.ops.quote_name(f.column) for f in columns)
        with self._raw_cursor() as cursor:
            table = connection.ops.quote_name(ContentVersion._meta.db_table)
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                copy.set_types(self._copy_types(columns))
                for version in written:
                    copy.write_row(values(version))

    CURRENT_VERSION_FIELDS = ("origin", "generator_version", "tokens", "author", "created_at")

    def _insert_current_versions(self, written: list[dict]) -> None:
        """Versions that are their entry's current content (values by field name, ``entry_id``
        included), by one ``INSERT … SELECT`` taking number and payload from the entry's row:
        PostgreSQL copies the stored payload instead of parsing it again (docs/benchmarks.md)."""
        if not written:
            return
        quote = connection.ops.quote_name
        fields = ["entry_id", *self.CURRENT_VERSION_FIELDS]
        types = {"entry_id": "bigint", "tokens": "bigint", "created_at": "timestamptz"}
        record = ", ".join(f"{quote(name)} {types.get(name, 'text')}" for name in fields)
        given = ", ".join(f"given.{quote(name)}" for name in self.CURRENT_VERSION_FIELDS)
        with self._raw_cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {quote(ContentVersion._meta.db_table)}"
                f" (entry_id, number, payload, {', '.join(quote(n) for n in self.CURRENT_VERSION_FIELDS)})"
                f" SELECT entry.id, entry.version, entry.payload, {given}"
                f" FROM jsonb_to_recordset(%s::jsonb) AS given({record})"
                f" JOIN {quote(ProductMemoryEntry._meta.db_table)} AS entry ON entry.id = given.entry_id",
                [json_array([{name: version[name] for name in fields} for version in written])],
            )

    def _current_versions(self, keys: Iterable[Key]) -> dict[Key, tuple[int, dict, str, str]]:
        """``(version, payload, origin, author)`` of the entries among ``keys`` that have a row."""
        by_kind: dict[str, list[str]] = {}
        for product_id, kind in keys:
            by_kind.setdefault(kind, []).append(product_id)
        found = {}
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(ProductMemoryEntry._meta.db_table)
            # locked inside a transaction: a save meanwhile would take the same version number
            lock = " FOR UPDATE" if connection.in_atomic_block else ""
            columns = "product_id, version, payload::text, origin, author"
            with self._raw_cursor() as cursor:
                for kind, ids in by_kind.items():
                    cursor.execute(keys_of_kind_sql(columns, table, lock=lock), [json_array(ids), kind])
                    for product_id, version, payload, origin, author in cursor.fetchall():
                        found[(product_id, kind)] = (version, json.loads(payload), origin, author)
            return found
        for kind, ids in by_kind.items():
            for start in range(0, len(ids), self.SQLITE_CHUNK):
                rows = ProductMemoryEntry.objects.filter(kind=kind, product_id__in=ids[start:start + self.SQLITE_CHUNK])
                if connection.in_atomic_block:
                    rows = rows.select_for_update()  # a save meanwhile would take the same version number
                for product_id, version, payload, origin, author in rows.values_list(
                        "product_id", "version", "payload", "origin", "author"):
                    found[(product_id, kind)] = (version, payload, origin, author)
        return found

    def _ids(self, entries: list[ProductMemoryEntry]) -> dict[Key, int]:
        """The primary keys of rows just bulk-written (set by the database where it returns them)."""
        ids = {(e.product_id, e.kind): e.pk for e in entries if e.pk is not None}
        missing = [(e.product_id, e.kind) for e in entries if e.pk is None]
        if missing:
            by_kind: dict[str, list[str]] = {}
            for product_id, kind in missing:
                by_kind.setdefault(kind, []).append(product_id)
            for kind, product_ids in by_kind.items():
                for start in range(0, len(product_ids), self.SQLITE_CHUNK):
                    chunk = product_ids[start:start + self.SQLITE_CHUNK]
                    for pk, product_id in ProductMemoryEntry.objects.filter(
                            kind=kind, product_id__in=chunk).values_list("pk", "product_id"):
                        ids[(product_id, kind)] = pk
        return ids
