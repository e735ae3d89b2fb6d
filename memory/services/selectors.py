"""Selectors: which entries a listing selects and in what order (GraphQL's ``entries``).

The status filter is the one freshness rule (:func:`memory.engine.freshness.status_q`, a row on
its own); the search is the one of ``list_products`` (product id or title, contains, any case).
Each function checks its input and raises ``ValueError`` naming the argument (``status: …``).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from memory.engine import freshness
from memory.engine.memory import search_q
from memory.engine.validators import BIGINT_MAX, text, whole_number
from memory.models import ProductMemoryEntry
from memory.providers.prompts import current_generator_version

# Each ordering ends in the primary key, so that every row has one place in it (a cursor over
# it is exact); each leads with an indexed column.
ENTRY_ORDERINGS: dict[str, tuple[str, ...]] = {
    "updated_desc": ("-updated_at", "-id"),
    "created_desc": ("-created_at", "-id"),
    "hits_desc": ("-hit_count", "-id"),
    "expires_asc": ("expires_at", "id"),
    "product_id_asc": ("product_id", "id"),
}
DEFAULT_ORDERING = "updated_desc"
STATUSES = (freshness.ACTIVE, freshness.EXPIRED, freshness.STALE)
MAX_SEARCH_LENGTH = 255  # a product id's length: a longer text matches no product id


def select_entries(*, kind: str | None = None, status: str | None = None, search: str | None = None,
                   expiring_before: datetime | None = None, min_hits: Any = None,
                   ordering: str = DEFAULT_ORDERING) -> QuerySet:
    """The entries matching every filter given, in ``ordering`` (one of :data:`ENTRY_ORDERINGS`).

    ``status``: active, expired or stale as :mod:`freshness <memory.engine.freshness>` judges a
    row on its own; ``search``: contained in the product id or the title; ``expiring_before``:
    expiring before that instant (an approved entry never expires, so none is selected);
    ``min_hits``: at least that many hits.
    """
    if ordering not in ENTRY_ORDERINGS:
        raise ValueError(f"ordering: {ordering!r} desconhecida; use uma de {', '.join(ENTRY_ORDERINGS)}")
    queryset = ProductMemoryEntry.objects.all()
    if kind is not None:
        kind = text("kind", kind, max_length=ProductMemoryEntry._meta.get_field("kind").max_length)
        queryset = queryset.filter(kind=kind)
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"status: {status!r} desconhecido; use active, expired ou stale")
        queryset = queryset.filter(freshness.status_q(status, current_generator_version(), timezone.now()))
    if search is not None:
        search = text("search", search, max_length=MAX_SEARCH_LENGTH)
        if search:
            queryset = queryset.filter(search_q(search))
    if expiring_before is not None:
        if timezone.is_naive(expiring_before):
            raise ValueError("expiring_before: informe o fuso horário (ex.: 2026-12-01T12:00:00Z)")
        queryset = queryset.filter(Q(expires_at__lt=expiring_before, approved=False))
    if min_hits is not None:
        min_hits = whole_number("min_hits", min_hits, maximum=BIGINT_MAX)
        if min_hits:
            queryset = queryset.filter(hit_count__gte=min_hits)
    return queryset.order_by(*ENTRY_ORDERINGS[ordering])
