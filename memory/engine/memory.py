"""``ProductMemory``: the three-tier store of generated product content.

Reads fall through L1 (process) -> L2 (Redis) -> L3 (PostgreSQL) and fill the
tiers above the one that answered. Writes go to L3 first, in a transaction,
then to L2 and L1. Expired and stale entries are never returned.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from memory.infra import metrics, redis
from memory.engine import freshness, versions
from memory.engine.counters import DAILY_COUNTS, hit_counter
from memory.engine.identifiers import extract_product_identifier, input_fingerprint, lookup_fingerprint
from memory.engine.coherence import (
    evict_l1, fill_l1, invalidation_message, l1_epoch, l1_is_trustworthy, publish_clear, publish_keys, write_l1,
)
from memory.engine.validators import BIGINT_MAX, INT_MAX, json_object, text, token_counts, whole_number
from memory.models import AUTHOR_MAX_LENGTH, DEFAULT_KIND, DailyStats, ProductMemoryEntry
from memory.providers.prompts import current_generator_version
from memory.engine.tiers import L1, L2, L3, DatabaseTier, Key, LocalTier, Snapshot, shared_redis_tier

logger = logging.getLogger("memory")

MAX_LIST_LIMIT = 1000


@dataclass(frozen=True)
class ProductRef:
    """A request for one product: its identifier and, when the data given describes the product,
    its fingerprint (None for a product_id or identifier-only data: a lookup by identity)."""

    product_id: str
    fingerprint: str | None
    source_data: dict | None


@dataclass(frozen=True)
class MemoryHit:
    """A fresh entry, and the tier that served it."""

    snapshot: Snapshot
    tier: str

    @property
    def product_id(self) -> str:
        return self.snapshot.product_id

    @property
    def kind(self) -> str:
        return self.snapshot.kind

    @property
    def content(self) -> dict:
        return self.snapshot.payload

    @property
    def tokens_saved(self) -> int:
        """What this hit saved: the tokens its generation cost."""
        return self.snapshot.tokens_spent

    @property
    def created_at(self) -> datetime:
        return self.snapshot.created_at_datetime()

    @property
    def expires_at(self) -> datetime:
        return self.snapshot.expires_at_datetime()

    @property
    def approved(self) -> bool:
        return self.snapshot.approved


@dataclass(frozen=True)
class Lookup:
    """The answer to one lookup: a hit, or why not (``missing``, ``expired``, ``stale``). An
    approved entry is a hit whatever its status (``stale`` included)."""

    product_id: str
    status: str
    hit: MemoryHit | None = None


def resolve_product(product: Any) -> ProductRef:
    """Accept product data (a dict), a product_id string, or an already resolved ``ProductRef``;
    ``ValueError`` otherwise."""
    if isinstance(product, ProductRef):
        return product
    if isinstance(product, str):
        product_id = text("product_id", product, max_length=255)
        if not product_id:
            raise ValueError("product_id: não pode ser vazio")
        return ProductRef(product_id, None, None)
    if isinstance(product, dict):
        return ProductRef(extract_product_identifier(product), lookup_fingerprint(product), product)
    raise ValueError(
        f"product_data: deve ser um objeto (dict) ou um product_id (texto), recebido {type(product).__name__}"
    )


def validate_content(content: Any) -> dict:
    """The content must be a JSON object PostgreSQL can store, within ``MEMORY_MAX_PAYLOAD_BYTES``."""
    return json_object("content", content, max_bytes=settings.MEMORY_MAX_PAYLOAD_BYTES)


def validate_ttl(ttl: Any) -> int:
    """Seconds to keep an entry: a positive whole number; None means ``MEMORY_DEFAULT_TTL``."""
    if ttl is None:
        return settings.MEMORY_DEFAULT_TTL
    return whole_number("ttl", ttl, minimum=1)


def search_q(search: str) -> Q:
    """The rows whose product id or title contains ``search``, in any case (a listing's search)."""
    return Q(product_id__icontains=search) | Q(title__icontains=search)


class ProductMemory:
    """The memory of one kind of content (``main_content`` by default)."""

    def __init__(self, kind: str = DEFAULT_KIND, *, generator_version: str | None = None):
        if not isinstance(kind, str) or not kind or len(kind) > 64:
            raise ValueError("kind: texto de 1 a 64 caracteres")
        self.kind = kind
        self._generator_version = generator_version
        self.l1 = LocalTier()
        self.l2 = shared_redis_tier()
        self.l3 = DatabaseTier()
        self.counter = hit_counter

    @property
    def generator_version(self) -> str:
        return self._generator_version or current_generator_version()

    @property
    def cache_tiers(self) -> list:
        """The tiers to read before PostgreSQL. L1 only while this process hears invalidations."""
        tiers = [self.l1] if l1_is_trustworthy() else []
        return tiers + ([self.l2] if self.l2 is not None else [])

    def _key(self, product_id: str) -> Key:
        return (product_id, self.kind)

    # -- reads ---------------------------------------------------------------

    def lookup_many(self, products: Iterable[Any], *, count_hits: bool = True) -> dict[str, Lookup]:
        """Look products up through the tiers in one pass: L1, one MGET, one SQL query."""
        refs: dict[str, ProductRef] = {}
        for product in products:
            ref = resolve_product(product)
            refs[ref.product_id] = ref
        return self._look_up(refs, self.cache_tiers, l1_epoch(), count_hits)

    def _look_up(self, refs: dict[str, ProductRef], cache_tiers: list, epoch: int, count_hits: bool):
        now = time.time()
        generator = self.generator_version
        results: dict[str, Lookup] = {}
        statuses: dict[str, str] = {}
        pending = [self._key(pid) for pid in refs]
        found_in: dict[str, list[Snapshot]] = {}
        claims: dict[Key, str] = {}
        for tier in [*cache_tiers, self.l3]:
            if not pending:
                break
            if tier is self.l3 and self.l2 is not None:
                claims = self.l2.claim_fills(pending)  # before the L3 read: a change after it cancels the fill
            started = time.perf_counter()
            found = tier.get_many(pending)
            elapsed = time.perf_counter() - started
            still = []
            for key in pending:
                snap = found.get(key)
                ref = refs[key[0]]
                status = snap.status(ref.fingerprint, generator, now) if snap else "missing"
                if status == freshness.ACTIVE or (snap is not None and snap.approved):
                    results[ref.product_id] = Lookup(ref.product_id, status, MemoryHit(snap, tier.name))
                    found_in.setdefault(tier.name, []).append(snap)
                else:
                    statuses[ref.product_id] = status  # L3, asked last, has the final word
                    still.append(key)
            metrics.observe_tier_lookup(tier.name, elapsed, hits=len(pending) - len(still), misses=len(still))
            pending = still
        for product_id, _ in pending:
            results[product_id] = Lookup(product_id, statuses[product_id])
        self._fill_upper_tiers(found_in, epoch, claims)
        if count_hits:
            self.count_lookups(results.values())
        return results

    def _fill_upper_tiers(self, found_in: dict[str, list[Snapshot]], epoch: int, claims: dict[Key, str]) -> None:
        """Copy what a lower tier served into the tiers above, unless it may be outdated already.

        Redis is filled only where the fill claimed before the L3 read still stands (no save or
        delete of the entry since, in any process) and Redis holds no copy. L1 is filled only if
        no eviction was heard or made since the read began.
        """
        from_l2 = found_in.get(L2, [])
        from_l3 = found_in.get(L3, [])
        if from_l3 and self.l2 is not None:
            self.l2.fill_many(from_l3, claims)
        if from_l2 or from_l3:
            fill_l1(self.l1, from_l2 + from_l3, epoch)

    def count_lookups(self, lookups: Iterable[Lookup]) -> None:
        """Record hits (with their tokens saved) and misses, and log each hit."""
        misses = 0
        for lookup in lookups:
            if lookup.hit:
                saved = lookup.hit.tokens_saved
                self.counter.record_hit(lookup.product_id, self.kind, saved)
                metrics.count_tokens_saved(saved)
                logger.info("Produto %s encontrado na memória - economia de %d tokens", lookup.product_id, saved,
                            extra={"product_id": lookup.product_id, "kind": self.kind, "tokens_saved": saved})
            else:
                misses += 1
        self.counter.record_misses(misses)

    def lookup(self, product: Any, *, count_hit: bool = True) -> Lookup:
        """One product. A fresh L1 copy is answered here, without the batch bookkeeping of
        ``lookup_many``: an L1 hit is the hot path of the API, and that bookkeeping is a
        sizeable share of it (docs/benchmarks.md)."""
        ref = resolve_product(product)  # once: fingerprinting hashes the whole product data
        epoch = l1_epoch()
        cache_tiers = self.cache_tiers
        if cache_tiers and cache_tiers[0] is self.l1:
            started = time.perf_counter()
            snap = self.l1.get(self._key(ref.product_id))
            status = snap.status(ref.fingerprint, self.generator_version) if snap is not None else None
            fresh = status == freshness.ACTIVE or (snap is not None and snap.approved)
            metrics.observe_tier_lookup(L1, time.perf_counter() - started, hits=int(fresh), misses=int(not fresh))
            if fresh:
                lookup = Lookup(ref.product_id, status, MemoryHit(snap, L1))
                if count_hit:
                    self.count_lookups([lookup])
                return lookup
            cache_tiers = cache_tiers[1:]
        return self._look_up({ref.product_id: ref}, cache_tiers, epoch, count_hit)[ref.product_id]

    def get_product_data(self, product: Any, *, count_hit: bool = True) -> MemoryHit | None:
        """The fresh content of a product and the tier that served it, or None."""
        return self.lookup(product, count_hit=count_hit).hit

    def exists(self, product: Any) -> bool:
        """True when a fresh entry exists; counts neither hit nor miss."""
        return self.lookup(product, count_hit=False).hit is not None

    def stored_content(self, product: Any) -> dict | None:
        """The content PostgreSQL holds for the product (fresh or not), or None: what a
        regeneration of some fields alone keeps of it."""
        key = self._key(resolve_product(product).product_id)
        found = self.l3.get_many([key]).get(key)
        return None if found is None else found.payload

    def is_approved(self, product: Any) -> bool:
        """Whether PostgreSQL holds the product's entry approved (read there: a generation about
        to be paid for asks, and the save refuses it anyway when the approval came meanwhile)."""
        ref = resolve_product(product)
        return ProductMemoryEntry.objects.filter(product_id=ref.product_id, kind=self.kind, approved=True).exists()

    def exists_many(self, products: Iterable[Any]) -> dict[str, bool]:
        return {pid: lk.hit is not None for pid, lk in self.lookup_many(products, count_hits=False).items()}

    # -- writes --------------------------------------------------------------

    def save_product_data(
        self,
        product: Any,
        content: Any,
        *,
        tokens_prompt: int = 0,
        tokens_completion: int = 0,
        tokens_cached: int = 0,
        tokens_reasoning: int = 0,
        ttl: int | None = None,
        generator_version: str | None = None,
        source_data: dict | None = None,
        count_generation: bool = True,
        override_approval: bool = False,
        family_id: str = "",
    ) -> Snapshot:
        """Store generated content as the entry's new version: PostgreSQL first, in a
        transaction, then Redis and L1. ``ApprovedContent`` (nothing stored) when the entry is
        approved, unless ``override_approval`` (which withdraws the approval). ``family_id``: the
        variant family the content was derived from (none: its own content).

        The token counts are what the generation cost: ``tokens_cached`` (prompt tokens the
        provider served from its cache) is part of ``tokens_prompt``, ``tokens_reasoning``
        (completion tokens spent reasoning) part of ``tokens_completion``."""
        ref = resolve_product(product)
        content = validate_content(content)
        ttl = validate_ttl(ttl)
        tokens = token_counts({"tokens_prompt": tokens_prompt, "tokens_completion": tokens_completion,
                               "tokens_cached": tokens_cached, "tokens_reasoning": tokens_reasoning})
        if source_data is None:
            source_data = ref.source_data or {}
        source_data = json_object("source_data", source_data)
        # The fingerprint of the product data given, identifier-only data included (a lookup
        # does not compare it, a later lookup with describing data does); of source_data
        # for a product_id.
        fingerprint = ref.fingerprint or input_fingerprint(
            ref.source_data if ref.source_data is not None else source_data
        )

        logger.info("Salvando produto %s na memória para reutilização futura", ref.product_id,
                    extra={"product_id": ref.product_id, "kind": self.kind})
        snapshot = self.l3.upsert(
            product_id=ref.product_id,
            kind=self.kind,
            payload=content,
            source_data=source_data,
            input_fingerprint=fingerprint,
            generator_version=generator_version or self.generator_version,
            **tokens,
            expires_at=timezone.now() + timedelta(seconds=ttl),
            override_approval=override_approval,
            family_id=text("family_id", family_id, max_length=255),
        )
        self.refresh_caches([snapshot])
        if count_generation:
            self.count_generation(snapshot.tokens_spent, cached=snapshot.tokens_cached,
                                  reasoning=snapshot.tokens_reasoning)
        return snapshot

    def replace_content(self, product: Any, content: Any, *, origin: str, author: str = "") -> Snapshot:
        """A person's content (an edit, a restore) as the entry's new version, served by every
        tier from now on; its freshness, expiry, approval and tokens stay. ``EntryNotFound``
        when there is no entry."""
        ref = resolve_product(product)
        content = validate_content(content)
        if origin not in versions.ORIGINS:
            raise ValueError(f"origin: use {', '.join(versions.ORIGINS)}")
        author = text("author", author, max_length=AUTHOR_MAX_LENGTH)
        snapshot = self.l3.write_content(self._key(ref.product_id), content, origin=origin, author=author)
        if snapshot is None:
            raise versions.EntryNotFound(ref.product_id, self.kind)
        logger.info("Produto %s: conteúdo %s por %s salvo na memória", ref.product_id, origin, author or "—")
        self.refresh_caches([snapshot])
        return snapshot

    def set_approval(self, product: Any, approved: bool, *, by: str = "") -> Snapshot:
        """Approve the entry (``by`` whom, now) or withdraw its approval, in every tier.
        ``EntryNotFound`` when there is no entry."""
        ref = resolve_product(product)
        by = text("approved_by", by, max_length=AUTHOR_MAX_LENGTH)
        snapshot = self.l3.set_approval(self._key(ref.product_id), bool(approved), by=by)
        if snapshot is None:
            raise versions.EntryNotFound(ref.product_id, self.kind)
        if approved:
            logger.info("Produto %s aprovado por %s", ref.product_id, by or "—")
        else:
            logger.info("Produto %s: aprovação retirada", ref.product_id)
        self.refresh_caches([snapshot])
        return snapshot

    def count_generation(self, tokens: int, *, cached: int = 0, reasoning: int = 0) -> None:
        """Count one generation stored, having cost ``tokens`` (of which ``cached`` prompt and
        ``reasoning`` completion tokens): what ``save_product_data`` counts."""
        self.counter.record_generation(tokens)
        metrics.count_generation_stored(tokens, cached=cached, reasoning=reasoning)

    def count_family_saving(self, tokens: int) -> None:
        """Count what a variant derived from its family's base saved: the base's generation,
        which it did not pay again (``tokens_saved_by_family``)."""
        tokens = whole_number("tokens_saved_by_family", tokens, maximum=INT_MAX)
        self.counter.record_family_saving(tokens)
        metrics.count_tokens_saved_by_family(tokens)

    def count_wasted_tokens(self, tokens: int) -> None:
        """Count tokens billed for generation attempts that stored nothing (``tokens_wasted``)."""
        tokens = whole_number("tokens_wasted", tokens, maximum=INT_MAX)
        self.counter.record_wasted(tokens)
        metrics.count_tokens_wasted(tokens)

    def refresh_caches(self, snapshots: list[Snapshot]) -> None:
        """Put fresh copies of rows just written to L3 into L2 and L1; other processes drop theirs.

        Outside a transaction the rows are committed already, so the invalidation (and the
        end of the stats figures kept so far) rides in the L2 pipeline; inside one it waits for
        the commit.
        """
        keys = [s.key for s in snapshots]
        published = False
        if self.l2 is not None:
            if connection.in_atomic_block:
                self.l2.set_many(snapshots)
            else:
                published = self.l2.set_many(
                    snapshots, publish=invalidation_message(keys), incr=STATS_GENERATION
                )
        write_l1(self.l1, snapshots)
        if not published:
            publish_keys(keys)
            forget_cached_stats()

    def evict(self, keys: list[Key]) -> None:
        """Drop cached copies (L2, L1) of rows that changed or went in L3, and the stats figures
        counted before the change."""
        if self.l2 is not None:
            self.l2.delete_many(keys)
        evict_l1(self.l1, keys)
        publish_keys(keys)
        forget_cached_stats()

    def delete_product(self, product: Any) -> bool:
        """Remove a product from every tier; True when PostgreSQL had it."""
        ref = resolve_product(product)
        key = self._key(ref.product_id)
        deleted = self.l3.delete_many([key])
        self.evict([key])
        if deleted:
            logger.info("Produto %s removido da memória", ref.product_id)
        return bool(deleted)

    def clear(self) -> int:
        """Remove every entry, of every kind, from every tier; returns the rows deleted."""
        count = self.l3.clear()
        if self.l2 is not None:
            self.l2.clear()
        evict_l1(self.l1, None)
        publish_clear()
        forget_cached_stats()
        logger.info("Memória limpa: %d entradas removidas", count)
        return count

    # -- listing and stats ------------------------------------------------------

    def list_products(self, limit: int = 50, offset: int = 0, search: str | None = None) -> dict:
        """One page of entries of this kind, newest first, optionally searched by product_id or title."""
        limit = whole_number("limit", limit, minimum=1, maximum=MAX_LIST_LIMIT)
        offset = whole_number("offset", offset)
        qs = ProductMemoryEntry.objects.filter(kind=self.kind)
        if search:
            qs = qs.filter(search_q(search))
        now = timezone.now()
        generator = self.generator_version
        rows = qs.order_by("-updated_at", "-id").only(
            "product_id", "kind", "title", "hit_count", "tokens_saved", "expires_at", "generator_version",
            "version", "origin", "approved",
        )[offset:offset + limit]
        return {
            "count": qs.count(),
            "results": [
                {
                    "product_id": e.product_id,
                    "kind": e.kind,
                    "title": e.title,
                    "hit_count": e.hit_count,
                    "tokens_saved": e.tokens_saved,
                    "expires_at": e.expires_at,
                    "status": freshness.row_status(e, generator, now),
                    "approved": e.approved,
                    "version": e.version,
                    "origin": e.origin,
                }
                for e in rows
            ],
        }

    def stats(self) -> dict:
        """The entry counts of this kind, with the hit and token figures (those are counted per
        day, for every kind), including counts not yet flushed to PostgreSQL."""
        return memory_figures(self.kind, self.generator_version, self.counter)


# What the entries' contents are: approved, and where the current content came from.
CONTENT_COUNTS = {"approved": Q(approved=True), **{origin: Q(origin=origin) for origin in versions.ORIGINS}}
ENTRY_COUNT_FIELDS = ("total", freshness.ACTIVE, freshness.EXPIRED, freshness.STALE, *CONTENT_COUNTS)


def memory_figures(kind: str | None, generator_version: str, counter=hit_counter) -> dict:
    """Entry counts (of ``kind``, or of every kind for None) by :mod:`freshness <memory.engine.freshness>`
    status, approved and by origin of their content (generated, edited, imported, restored), hits,
    misses, generations and tokens, including counts not yet flushed to PostgreSQL."""

    def count_entries():
        queryset = ProductMemoryEntry.objects.all() if kind is None else ProductMemoryEntry.objects.filter(kind=kind)
        return freshness.status_counts(queryset, generator_version, timezone.now(), **CONTENT_COUNTS)

    entries = cached_for_stats(f"entries:{kind or '*'}:{generator_version}", count_entries, ENTRY_COUNT_FIELDS)
    daily = DailyStats.objects.aggregate(
        hits=Sum("hits"), misses=Sum("misses"), generations=Sum("generations"),
        tokens_spent=Sum("tokens_spent"), tokens_saved=Sum("tokens_saved"), tokens_wasted=Sum("tokens_wasted"),
        tokens_saved_by_family=Sum("tokens_saved_by_family"),
        tokens_spent_ahead=Sum("tokens_spent_ahead"), misses_avoided=Sum("misses_avoided"),
    )
    pending: dict[str, int] = {}
    for (_, name), n in counter.pending((DAILY_COUNTS,)).daily.items():
        pending[name] = pending.get(name, 0) + n
    totals = {name: (daily[name] or 0) + pending.get(name, 0) for name in daily}
    lookups = totals["hits"] + totals["misses"]
    return {
        "total_entries": entries["total"],
        "active_entries": entries[freshness.ACTIVE],
        "expired_entries": entries[freshness.EXPIRED],
        "stale_entries": entries[freshness.STALE],
        "approved_entries": entries["approved"],
        **{f"{origin}_entries": entries[origin] for origin in versions.ORIGINS},
        "hits": totals["hits"],
        "misses": totals["misses"],
        "hit_rate": round(totals["hits"] / lookups, 4) if lookups else 0.0,
        "generations": totals["generations"],
        "tokens_spent": totals["tokens_spent"],
        "tokens_saved": totals["tokens_saved"],
        "tokens_wasted": totals["tokens_wasted"],
        "tokens_saved_by_family": totals["tokens_saved_by_family"],
        "tokens_spent_ahead": totals["tokens_spent_ahead"],
        "misses_avoided": totals["misses_avoided"],
        "generator_version": generator_version,
    }


# -- figures kept between stats calls ------------------------------------------------------
#
# Every write to L3 reaches ``refresh_caches``, ``evict`` or ``clear``, and they call
# ``forget_cached_stats``: it starts a new *generation*, and figures are kept under the
# generation they were counted in, so none counted before a write is served after it. With
# Redis the generation and the figures live there, shared by every process (a save's INCR rides
# in its pipeline). Without Redis there is one process (as for L1), which keeps both itself.
# While Redis is configured but away, nothing is kept: another process's write could not be
# heard.

STATS_GENERATION = "memory-stats:generation"
_local_stats_generation = 0


# The most a stats generation may reach: INCR fails past a 64-bit integer.
MAX_STATS_GENERATION = 2**62


def cached_for_stats(name: str, compute, fields: tuple[str, ...]):
    """``compute()``'s figures (they need a full scan of the table), kept up to
    ``MEMORY_STATS_CACHE_SECONDS`` unless a write to the memory changes them first: a scan
    grows with the table (docs/benchmarks.md), and stats are polled.

    The figures are a dict of ``fields``, each a count or None; kept figures read back from
    Redis are used only in that shape (anything else is counted again, and deleted)."""
    seconds = settings.MEMORY_STATS_CACHE_SECONDS
    if seconds <= 0:
        return compute()
    if not redis.configured():
        key = f"memory-stats:{name}:{_local_stats_generation}"
        value = caches["default"].get(key)
        if value is None:
            value = compute()
            caches["default"].set(key, value, timeout=seconds)
        return value

    generation_key, kept_key = redis.make_key(STATS_GENERATION), redis.make_key(f"memory-stats:{name}")
    found = redis.run(lambda: redis.mget([generation_key, kept_key]))
    if found is None:
        return compute()
    # Read before counting: figures counted while a write commits are kept under the old
    # generation, which the write's INCR has already (or will have) left behind.
    raw_generation, raw_kept = found
    invalid: dict[str, str] = {}
    generation = _stats_generation(raw_generation)
    if generation is None:
        # Kept figures can no longer be told apart by generation: none is used until a new one.
        invalid[generation_key] = f"geração das estatísticas não é um inteiro de 0 a {MAX_STATS_GENERATION}"
        kept = None
    else:
        kept = _kept_figures(raw_kept, name, generation, fields, kept_key, invalid)
    redis.discard(invalid)
    if kept is not None:
        return kept
    value = compute()
    if generation is not None:
        stored = redis.encode({"name": name, "generation": generation, "value": value})
        redis.run(lambda: redis.client().set(kept_key, stored, px=max(1, int(seconds * 1000))))
    return value


def _stats_generation(raw: bytes | None) -> int | None:
    """The stats generation Redis holds (0 before the first write); None if it is not one."""
    if raw is None:
        return 0
    try:
        generation = int(raw)
    except ValueError:
        return None
    return generation if 0 <= generation <= MAX_STATS_GENERATION else None


def _kept_figures(raw, name: str, generation: int, fields: tuple[str, ...], kept_key: str, invalid: dict):
    """The figures kept under ``name`` for ``generation``, or None (absent, older, or invalid:
    then noted in ``invalid``)."""
    if raw is None:
        return None
    try:
        kept = redis.decode(raw)
        if not isinstance(kept, dict) or kept.keys() != {"name", "generation", "value"} or kept["name"] != name:
            raise ValueError("não são estatísticas guardadas deste nome")
        value = kept["value"]
        if not isinstance(value, dict) or value.keys() != set(fields):
            raise ValueError(f"estatísticas sem os campos {', '.join(fields)}")
        for field in fields:
            if value[field] is not None:
                whole_number(field, value[field], maximum=BIGINT_MAX)
    except ValueError as exc:  # redis.InvalidValue included
        invalid[kept_key] = str(exc)
        return None
    return value if kept["generation"] == generation else None


def forget_cached_stats() -> None:
    """The next stats call, in any process, counts again. Inside a transaction, once more at
    the commit: a call in between may have counted the rows as they were."""
    _new_stats_generation()
    if connection.in_atomic_block:
        transaction.on_commit(_new_stats_generation)


def _new_stats_generation() -> None:
    global _local_stats_generation
    _local_stats_generation += 1
    if redis.configured():
        redis.run(_incr_stats_generation, on_failure=_new_stats_generation_on_recovery)


def _incr_stats_generation() -> None:
    redis.client().incr(redis.make_key(STATS_GENERATION))


def _new_stats_generation_on_recovery() -> None:
    """Redis missed an INCR: the figures it keeps may predate a write, so this process starts a
    new generation as soon as it finds Redis back."""
    redis.guard.on_recovery(_replay_stats_generation)


def _replay_stats_generation() -> None:
    redis.run(_incr_stats_generation)
