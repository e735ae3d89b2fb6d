"""The one freshness rule: when an entry is active, expired or stale.

- **expired**: its ``expires_at`` has passed (``expires_at <= now``), whatever else holds;
- **stale**: not expired, but made by another generator than the current one, or (for a
  request whose product data describes the product, not only identifies it) from other
  product data than the request's fingerprint;
- **active**: neither.

An **approved** entry (a person's word that its content is right) never expires and is served
whatever its status: stale when made by another generator or from other data, but served as
it is (:func:`served`), never regenerated unless an override says so.

A row judged on its own (the admin's badge and status filter, ``list_products``, the entry
counts of stats) has no request, so only the generator can make it stale; a lookup also
compares the input fingerprint. Both are this one rule: :func:`status` for one value,
:func:`status_q` and :func:`status_counts` for a queryset, and :func:`expiring_soon_q` for the
entries about to expire.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet, TextChoices
from django.utils.translation import gettext_lazy as _

# The admin's "expiring soon" filter and the dashboard's list look this far ahead.
EXPIRING_SOON_DAYS = 7


class EntryStatus(TextChoices):
    ACTIVE = "active", _("ativo")
    EXPIRED = "expired", _("expirado")
    STALE = "stale", _("desatualizado")


# Plain strings: a status is compared, serialized and used as a key on the read path.
ACTIVE: str = EntryStatus.ACTIVE.value
EXPIRED: str = EntryStatus.EXPIRED.value
STALE: str = EntryStatus.STALE.value


def status(expires_at, now, generator_version: str, current_generator: str | None,
           input_fingerprint: str | None = None, wanted_fingerprint: str | None = None,
           approved: bool = False) -> str:
    """The status of one entry. ``expires_at`` and ``now`` are both datetimes or both epoch
    seconds; ``wanted_fingerprint`` is the request's (None: the row on its own). Without a
    ``current_generator`` the generator is not compared. An approved entry never expires."""
    if expires_at <= now and not approved:
        return EXPIRED
    if current_generator and generator_version != current_generator:
        return STALE
    if wanted_fingerprint and input_fingerprint != wanted_fingerprint:
        return STALE
    return ACTIVE


def served(status_: str, approved: bool) -> bool:
    """Whether a lookup serves an entry of this status: when active, or whatever it is when approved."""
    return approved or status_ == ACTIVE


def expired_q(now: datetime) -> Q:
    """The expired rows (an approved one never is): those a purge deletes."""
    return Q(expires_at__lte=now, approved=False)


def _unexpired_q(now: datetime) -> Q:
    return Q(expires_at__gt=now) | Q(approved=True)


def status_q(wanted: str, current_generator: str, now: datetime) -> Q:
    """The rows whose :func:`status` (on their own, without a request) is ``wanted``."""
    if wanted == EXPIRED:
        return expired_q(now)
    if wanted == STALE:
        return _unexpired_q(now) & ~Q(generator_version=current_generator)
    if wanted == ACTIVE:
        return _unexpired_q(now) & Q(generator_version=current_generator)
    raise ValueError(f"status: {wanted!r} desconhecido")


def served_q(current_generator: str, now: datetime) -> Q:
    """The rows a lookup by identity serves: active ones, and every approved one."""
    return status_q(ACTIVE, current_generator, now) | Q(approved=True)


def status_counts(queryset: QuerySet, current_generator: str, now: datetime, **more: Q) -> dict[str, int]:
    """``{"total", "active", "expired", "stale"}`` of the queryset's rows, and a count of the rows
    each of ``more`` filters, in one scan. The rows are counted by ``kind`` (never null), not by
    id: every column the counts read is then in ``memory_entry_stats_idx``, which PostgreSQL reads
    instead of the table when ``more`` filters on those columns too."""
    return queryset.aggregate(
        total=Count("kind"),
        **{name: Count("kind", filter=status_q(name, current_generator, now)) for name in (ACTIVE, EXPIRED, STALE)},
        **{name: Count("kind", filter=q) for name, q in more.items()},
    )


def expiring_soon_q(now: datetime, days: int = EXPIRING_SOON_DAYS) -> Q:
    """Not expired yet, but expiring within ``days`` days (an approved entry never expires)."""
    return Q(expires_at__gt=now, expires_at__lte=now + timedelta(days=days), approved=False)


def row_status(entry, current_generator: str | None, now: datetime) -> str:
    """:func:`status` of a ``ProductMemoryEntry`` row on its own (no request fingerprint)."""
    return status(entry.expires_at, now, entry.generator_version, current_generator, approved=entry.approved)
