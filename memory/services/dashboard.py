"""What the stats dashboard shows: daily series, top products, entries expiring soon, and the
geometry of its bar charts (drawn as SVG by the template, no JavaScript)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

from django.utils import timezone

from memory.engine import freshness
from memory.engine.counters import DAILY_COUNTS, DAILY_FIELDS, hit_counter
from memory.models import DailyStats, ProductMemoryEntry
from memory.services.stats import memory_stats

SERIES = ("hits", "misses", "generations", "tokens_saved")
COUNT_CAP = 10_000


def daily_series(days: int = 30, today: date | None = None) -> list[dict]:
    """One dict per day of the last ``days`` days, oldest first, zeros where nothing happened.

    Counts not yet flushed from Redis into ``DailyStats`` are added, so that
    today's bars agree with the cards.
    """
    today = today or timezone.localdate()
    first = today - timedelta(days=days - 1)
    rows = {
        row["date"]: row
        for row in DailyStats.objects.filter(date__gte=first, date__lte=today).values("date", *DAILY_FIELDS)
    }
    pending = hit_counter.pending((DAILY_COUNTS,)).daily
    series = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = rows.get(day, {})
        series.append({
            "date": day,
            **{name: (row.get(name) or 0) + pending.get((day.isoformat(), name), 0) for name in DAILY_FIELDS},
        })
    return series


def top_products(limit: int = 10) -> list[ProductMemoryEntry]:
    """The entries with the most hits (the hit_count index answers it)."""
    return list(
        ProductMemoryEntry.objects.filter(hit_count__gt=0)
        .order_by("-hit_count", "pk")
        .only("product_id", "kind", "title", "hit_count", "tokens_saved", "last_hit_at")[:limit]
    )


def expiring_soon(days: int = freshness.EXPIRING_SOON_DAYS, limit: int = 20) -> dict:
    """The entries expiring in the next ``days`` days, soonest first, and how many there are
    (counted up to ``COUNT_CAP``; ``count_capped`` says the real number is larger)."""
    queryset = ProductMemoryEntry.objects.filter(freshness.expiring_soon_q(timezone.now(), days))
    count = queryset.order_by()[: COUNT_CAP + 1].count()
    return {
        "entries": list(
            queryset.order_by("expires_at", "pk").only("product_id", "kind", "title", "hit_count", "expires_at")[:limit]
        ),
        "count": min(count, COUNT_CAP),
        "count_capped": count > COUNT_CAP,
        "days": days,
    }


# -- charts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str


@dataclass(frozen=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True)
class BarChart:
    name: str
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    bars: list[Bar]
    ticks: list[Tick]
    x_labels: list[tuple[float, str]]
    total: int


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (1 for 0)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return int(math.ceil(step * magnitude))
    return 10 * magnitude


def bar_chart(name: str, points: list[tuple[date, int]], *, width: int = 560, height: int = 200) -> BarChart:
    """Bars for one value per day, on a y axis from 0 to a round maximum with whole-number ticks."""
    left, right, top, bottom = 56, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = nice_ceiling(max((v for _, v in points), default=0))
    slot = plot_w / max(len(points), 1)
    bar_w = max(slot * 0.7, 1.0)
    bars = []
    for i, (day, value) in enumerate(points):
        h = plot_h * value / top_value
        bars.append(Bar(
            x=round(left + i * slot + (slot - bar_w) / 2, 2),
            y=round(top + plot_h - h, 2),
            width=round(bar_w, 2),
            height=round(h, 2),
            value=value,
            label=day.isoformat(),
        ))
    intervals = next(n for n in (4, 5, 2, 1) if top_value % n == 0)
    ticks = [
        Tick(y=round(top + plot_h - plot_h * k / intervals, 2), value=top_value * k // intervals)
        for k in range(intervals + 1)
    ]
    every = max(1, math.ceil(len(points) / 6))
    x_labels = [
        (round(left + i * slot + slot / 2, 2), day.strftime("%d/%m"))
        for i, (day, _) in enumerate(points) if i % every == 0
    ]
    return BarChart(
        name=name, width=width, height=height, plot_left=left, plot_bottom=top + plot_h,
        bars=bars, ticks=ticks, x_labels=x_labels, total=sum(v for _, v in points),
    )


def dashboard_data(days: int = 30) -> dict:
    """Everything the dashboard page shows, in one call."""
    series = daily_series(days)
    stats = memory_stats()
    return {
        "stats": stats,
        "charts": {name: bar_chart(name, [(row["date"], row[name]) for row in series]) for name in SERIES},
        "days": days,
        "top_products": top_products(),
        "expiring": expiring_soon(),
    }
