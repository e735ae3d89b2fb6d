"""How hot an entry is (its hits, decayed), and the misses refresh-ahead avoided.

An entry's hotness at a time ``t`` is the sum over its hits of ``2 ** -((t - hit) / H)``, ``H``
being ``MEMORY_HOTNESS_HALF_LIFE_SECONDS``: a hit counts 1 when it happens, a half one half-life
later. The row keeps the value as of ``hotness_at`` (``hotness``, ``hotness_at``); read at any
other time it is ``hotness * 2 ** -((t - hotness_at) / H)`` (:func:`decayed`, the order of
refresh-ahead and of the Redis warm-up). The counter flush folds the hits it writes in
(:func:`fold`, in the same ``UPDATE`` as ``hit_count``): the stored value decayed to the flush's
time, plus the hits. The hits are added at the flush's time, not each at its own: they are at
most one flush interval old, a small fraction of a half-life.

A **miss avoided** is a lookup that hit content refresh-ahead wrote (``memory.services.refresh``)
at or after the moment the content it replaced would have stopped being served: its
``expires_at`` for content about to expire, the refresh itself for content stale or expired.
Without the refresh, the first such lookup would have missed and generated the entry, and the
ones after it would have hit that generation: so one refresh avoids at most one miss. The flush
counts it (:func:`count_misses_avoided`) for the day of the hit and clears the mark; a mark whose
content was replaced before such a hit (a new generation, an edit) is cleared uncounted.
"""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.db.models import F, FloatField, Func
from django.utils import timezone

from memory.models import ProductMemoryEntry

# Past this many half-lives a hotness reads 0 (2 ** -1000 is near the smallest double, and
# PostgreSQL refuses a POWER that underflows).
MAX_HALF_LIVES = 1000.0
CHUNK = 5000


def half_life() -> float:
    return float(settings.MEMORY_HOTNESS_HALF_LIFE_SECONDS)


def at(hotness: float, since: datetime | None, now: datetime) -> float:
    """A stored hotness (as of ``since``) read at ``now``."""
    if since is None or not hotness:
        return 0.0
    half_lives = min(max((now - since).total_seconds(), 0.0) / half_life(), MAX_HALF_LIVES)
    return hotness * 0.5 ** half_lives


class Decayed(Func):
    """``hotness`` decayed from ``hotness_at`` to ``now``, plus ``hits``, in one SQL expression
    (0 + ``hits`` for a row never hit). One node, not a tree of functions: the counter flush
    compiles it once per row it updates. A ``hotness_at`` ahead of ``now`` (another process's
    clock) reads as ``now``; past ``MAX_HALF_LIVES`` half-lives the hotness reads 0."""

    output_field = FloatField()

    def __init__(self, now: datetime, hits: float = 0.0):
        super().__init__(F("hotness"), F("hotness_at"))
        self.now, self.hits = now, float(hits)

    def as_sql(self, compiler, connection, **extra):
        hot, hot_params = compiler.compile(self.source_expressions[0])
        since, since_params = compiler.compile(self.source_expressions[1])
        if connection.vendor == "postgresql":
            seconds = f"GREATEST(EXTRACT(EPOCH FROM (%s - {since}))::double precision, 0.0)"
        else:
            seconds = f"MAX((julianday(%s) - julianday({since})) * 86400.0, 0.0)"
        now = connection.ops.adapt_datetimefield_value(self.now)
        sql = f"(COALESCE({hot} * POWER(0.5, {_least(connection)}({seconds} / %s, %s)), 0.0) + %s)"
        return sql, (*hot_params, now, *since_params, half_life(), MAX_HALF_LIVES, self.hits)


def _least(connection) -> str:
    return "LEAST" if connection.vendor == "postgresql" else "MIN"


def decayed(now: datetime) -> Decayed:
    """The hotness of each row at ``now``, as an expression (0 for a row never hit)."""
    return Decayed(now)


def fold(hits: int, now: datetime) -> dict:
    """The field updates that add ``hits`` hits at ``now`` to a row's hotness."""
    return {"hotness": Decayed(now, hits), "hotness_at": now}


def count_misses_avoided(last_hits: dict[tuple[str, str], float]) -> dict[str, int]:
    """Inside the flush's transaction, after its updates: the misses avoided among the entries
    hit (``(product_id, kind)`` -> the epoch second of the last hit), by the ISO date of the hit
    (``TIME_ZONE``); the marks they used, and the marks of replaced content, are cleared."""
    avoided: dict[str, int] = {}
    keys = set(last_hits)
    product_ids = sorted({product_id for product_id, _ in keys})
    done: list[int] = []
    for start in range(0, len(product_ids), CHUNK):
        marked = (
            ProductMemoryEntry.objects.filter(refreshed_ahead_due__isnull=False,
                                              product_id__in=product_ids[start:start + CHUNK])
            .values_list("pk", "product_id", "kind", "version", "refreshed_ahead_version", "refreshed_ahead_due")
        )
        for pk, product_id, kind, version, ahead_version, due in marked:
            if (product_id, kind) not in keys:
                continue
            if version != ahead_version:
                done.append(pk)  # replaced before a hit made use of it
                continue
            hit = datetime.fromtimestamp(last_hits[(product_id, kind)], tz=dt_timezone.utc)
            if hit >= due:
                day = timezone.localdate(hit).isoformat()
                avoided[day] = avoided.get(day, 0) + 1
                done.append(pk)
    for start in range(0, len(done), CHUNK):
        ProductMemoryEntry.objects.filter(pk__in=done[start:start + CHUNK]).update(
            refreshed_ahead_version=None, refreshed_ahead_due=None)
    return avoided
