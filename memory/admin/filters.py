"""The list filters of the entries admin, each answerable from an index at a million rows."""
from __future__ import annotations

from django.contrib import admin
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _, ngettext_lazy

from memory.engine import freshness, partitions
from memory.engine.freshness import EXPIRING_SOON_DAYS, EntryStatus
from memory.models import DEFAULT_KIND, ContentOrigin, ProductMemoryEntry
from memory.providers.prompts import current_generator_version

# The kind and generator-version choices are kept in the default cache for a few minutes.
CHOICES_CACHE_SECONDS = 300
EXACT_CHOICES_MAX_ROWS = 100_000


class StatusFilter(admin.SimpleListFilter):
    """The rows whose status, as the list badge shows it, is the chosen one."""

    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return EntryStatus.choices

    def queryset(self, request, queryset):
        if self.value() in EntryStatus.values:
            return queryset.filter(freshness.status_q(self.value(), current_generator_version(), timezone.now()))
        return queryset


class ApprovalFilter(admin.SimpleListFilter):
    title = _("approval")
    parameter_name = "approved"

    def lookups(self, request, model_admin):
        return [("1", _("approved")), ("0", _("not approved"))]

    def queryset(self, request, queryset):
        if self.value() in ("0", "1"):
            return queryset.filter(approved=self.value() == "1")
        return queryset


class OriginFilter(admin.SimpleListFilter):
    """Where the current content came from: generated, edited by a person, imported, restored."""

    title = _("origin")
    parameter_name = "origin"

    def lookups(self, request, model_admin):
        return ContentOrigin.choices

    def queryset(self, request, queryset):
        if self.value() in ContentOrigin.values:
            return queryset.filter(origin=self.value())
        return queryset


class ExpiringSoonFilter(admin.SimpleListFilter):
    """The entries the dashboard lists as expiring soon (``?expiring=7d``)."""

    title = _("expiry")
    parameter_name = "expiring"
    VALUE = f"{EXPIRING_SOON_DAYS}d"

    def lookups(self, request, model_admin):
        return [(self.VALUE, ngettext_lazy("expires within %(days)d day", "expires within %(days)d days", "days")
                 % {"days": EXPIRING_SOON_DAYS})]

    def queryset(self, request, queryset):
        if self.value() == self.VALUE:
            return queryset.filter(freshness.expiring_soon_q(timezone.now()))
        return queryset


def column_values(field_name: str, exact_below: int = EXACT_CHOICES_MAX_ROWS) -> list[str]:
    """The values a low-cardinality column holds.

    ``SELECT DISTINCT`` reads the whole table, so past ``exact_below`` rows
    (by the planner's estimate) PostgreSQL's own statistics answer instead:
    the most common values and histogram bounds ANALYZE keeps, which for a
    column of a handful of values lists them all, though a value held by a
    very few rows can be missed (filtering by it through the URL still works).
    """
    if connection.vendor == "postgresql":
        table = ProductMemoryEntry._meta.db_table
        with connection.cursor() as cursor:
            rows = partitions.estimated_rows(cursor, table)
            cursor.execute(
                "SELECT most_common_vals::text::text[], histogram_bounds::text::text[] FROM pg_stats "
                "WHERE schemaname = current_schema() AND tablename = %s AND attname = %s",
                [table, field_name],
            )
            stats = cursor.fetchone()
        if rows >= exact_below and stats is not None:
            return sorted({value for values in stats if values for value in values})
    return list(
        ProductMemoryEntry.objects.order_by(field_name).values_list(field_name, flat=True).distinct()
    )


class CachedDistinctFilter(admin.SimpleListFilter):
    """A filter on one column whose choices are its values, cached for a few minutes."""

    field_name: str

    def distinct_values(self) -> list[str]:
        values = cache.get_or_set(
            f"memory:admin:values:{self.field_name}", lambda: column_values(self.field_name), CHOICES_CACHE_SECONDS
        )
        return sorted(set(values) | set(self.always_listed()))

    def always_listed(self) -> tuple:
        return ()

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

    def always_listed(self):
        return (DEFAULT_KIND,)


class GeneratorVersionFilter(CachedDistinctFilter):
    title = _("generator version")
    parameter_name = "generator_version"
    field_name = "generator_version"

    def always_listed(self):
        return (current_generator_version(),)

    def lookups(self, request, model_admin):
        current = current_generator_version()
        return [
            (value, _("%(version)s (current)") % {"version": value} if value == current else value)
            for value in self.distinct_values()
        ]
