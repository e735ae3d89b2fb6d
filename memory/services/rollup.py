"""The daily roll-up: the per-day counts into ``DailyStats``, the table the dashboard draws.

Hits, misses, generations and tokens are counted per day in Redis (or in the
process) as they happen; the every-minute counter flush moves only the
per-entry counts into the rows, and this roll-up moves the per-day counts
into one ``DailyStats`` row per day, so the table is written a few times an
hour instead of on every lookup. ``ProductMemory.stats()`` adds what is still
pending, so live totals never lag.

The roll-up also gives every day since the first recorded one (within the
chart's window) a row, zeros for a day without traffic, so the dashboard
draws a quiet day as zero instead of skipping it.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

from django.db.models import Min
from django.utils import timezone

from memory.engine.counters import DAILY_FIELDS, flush_daily_counters
from memory.models import DailyStats

logger = logging.getLogger("memory")

CHART_DAYS = 30


@dataclass
class RollupResult:
    days: dict[str, dict[str, int]] = field(default_factory=dict)  # iso date -> amounts added
    empty_days_filled: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def roll_up_daily_stats(*, today: date | None = None) -> RollupResult:
    """Add the pending per-day counts to ``DailyStats`` and give each recent day a row."""
    today = today or timezone.localdate()
    counts = flush_daily_counters()
    result = RollupResult()
    for (day, name), amount in sorted(counts.daily.items()):
        if name in DAILY_FIELDS and amount:
            result.days.setdefault(day, {})[name] = amount
    result.empty_days_filled = fill_empty_days(today)
    if result.days:
        logger.info(
            "Estatísticas diárias consolidadas: %s",
            "; ".join(
                f"{day} " + ", ".join(f"{name}={n}" for name, n in amounts.items())
                for day, amounts in result.days.items()
            ),
        )
    return result


def fill_empty_days(today: date, window: int = CHART_DAYS) -> int:
    """Create zero rows for the days of the window without one, from the first recorded day on."""
    first = DailyStats.objects.aggregate(first=Min("date"))["first"]
    start = min(max(first, today - timedelta(days=window - 1)), today) if first else today
    existing = set(DailyStats.objects.filter(date__range=(start, today)).values_list("date", flat=True))
    missing = [
        DailyStats(date=start + timedelta(days=i))
        for i in range((today - start).days + 1)
        if start + timedelta(days=i) not in existing
    ]
    DailyStats.objects.bulk_create(missing, ignore_conflicts=True)
    return len(missing)
