"""The list filters of the entries admin, each answerable from an index at a million rows."""
from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import EntryStatus, ProductMemoryEntry
from .prompts import current_generator_version

# Distinct kinds and generator versions need a scan of the whole table, so the
# filter choices are kept in the default cache for a few minutes.
CHOICES_CACHE_SECONDS = 300


def status_q(status: str, generator_version: str | None = None, now=None) -> Q:
    """The rows whose status (as the list badge shows it) is ``status``."""
    now = now or timezone.now()
    generator_version = generator_version or current_generator_version()
    if status == EntryStatus.EXPIRED:
        return Q(expires_at__lte=now)
    if status == EntryStatus.STALE:
        return Q(expires_at__gt=now) & ~Q(generator_version=generator_version)
    if status == EntryStatus.ACTIVE:
        return Q(expires_at__gt=now, generator_version=generator_version)
    raise ValueError(f"status: {status!r} desconhecido")


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return EntryStatus.choices

    def queryset(self, request, queryset):
        if self.value() in EntryStatus.values:
            return queryset.filter(status_q(self.value()))
        return queryset


class ExpiringSoonFilter(admin.SimpleListFilter):
    title = _("expiry")
    parameter_name = "expiring"
    DAYS = 7

    def lookups(self, request, model_admin):
        return [("7d", _("expires within 7 days"))]

    def queryset(self, request, queryset):
        if self.value() == "7d":
            now = timezone.now()
            return queryset.filter(expires_at__gt=now, expires_at__lte=now + timedelta(days=self.DAYS))
        return queryset


class CachedDistinctFilter(admin.SimpleListFilter):
    """A filter on one column whose choices are its distinct values, cached for a few minutes."""

    field_name: str

    def distinct_values(self) -> list[str]:
        def compute():
            return list(
                ProductMemoryEntry.objects.order_by(self.field_name)
                .values_list(self.field_name, flat=True)
                .distinct()
            )

        return cache.get_or_set(f"memory:admin:distinct:{self.field_name}", compute, CHOICES_CACHE_SECONDS)

    def lookups(self, request, model_admin):
        return [(value, value) for value in self.distinct_values()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.field_name: self.value()})
        return queryset


class KindFilter(CachedDistinctFilter):
    title = _("kind")
    parameter_name = "kind"
    field_name = "kind"


class GeneratorVersionFilter(CachedDistinctFilter):
    title = _("generator version")
    parameter_name = "generator_version"
    field_name = "generator_version"

    def lookups(self, request, model_admin):
        current = current_generator_version()
        return [
            (value, _("%(version)s (current)") % {"version": value} if value == current else value)
            for value in self.distinct_values()
        ]
