"""The admin of the memory: list, search, filters, read-only detail, actions, import and export.

Built for a million rows on PostgreSQL: the list never counts the whole table
(an exact count up to ``EXACT_COUNT_LIMIT`` rows, the planner's estimate beyond),
never loads the JSON columns, and searches with ``icontains``, which the
trigram indexes of migration 0002 serve. Deletes, expiry changes and imports
go through :mod:`memory.services.entries`, which keeps Redis and L1 in step.
"""
from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected as confirm_and_delete_selected
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import OperationalError, connection, connections, transaction
from django.db.models.functions import Left
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _, ngettext, ngettext_lazy
from import_export.admin import ExportActionMixin, ImportExportMixin
from import_export.formats.base_formats import JSON
from import_export.forms import ExportForm

from memory.admin import content
from memory.admin.filters import (
    ApprovalFilter, ExpiringSoonFilter, GeneratorVersionFilter, KindFilter, OriginFilter, StatusFilter,
)
from memory.admin.resources import BoundedImportForm, ProductMemoryEntryResource, SpreadsheetCSV, SpreadsheetXLSX
from memory.engine import freshness, partitions
from memory.engine.families import FAMILY_KIND
from memory.engine.freshness import EntryStatus
from memory.io.formats import IMPORT_FORMATS
from memory.io.schema import ImportFileError
from memory.models import TITLE_SORT_CHARS, ProductMemoryEntry
from memory.providers.prompts import current_generator_version
from memory.services.entries import delete_entries, enqueue_regeneration, extend_expiry
from memory.services.versions import approve_entries

EXACT_COUNT_LIMIT = 1000
COUNT_TIMEOUT_MS = 150
# A write action runs inside one request; past this many entries ``manage_memory`` is the tool.
MAX_ACTION_ENTRIES = 10_000
# Per message, the products whose regeneration failed that are named (with why).
ERRORS_SHOWN = 3
# django-import-export's classes for the formats of ``memory.io.formats`` it reads and writes:
# whatever the admin exports, ``manage_memory import`` reads back (CSV and XLSX escaped as
# ``manage_memory export`` escapes CSV, JSON as it is).
TABLIB_FORMATS = {"csv": SpreadsheetCSV, "json": JSON, "xlsx": SpreadsheetXLSX}


def _listed(errors, shown: int = ERRORS_SHOWN) -> str:
    """``product_id: why`` of the first ``shown`` errors, then "…" when there are more."""
    listed = "; ".join(f"{product_id}: {why}" for product_id, why in errors[:shown])
    return listed + ("; …" if len(errors) > shown else "")


def estimated_count(queryset, exact_limit: int = EXACT_COUNT_LIMIT) -> int:
    """The row count of ``queryset``: exact up to ``exact_limit``, estimated by PostgreSQL beyond.

    An exact COUNT(*) over a million rows costs a full scan on every page
    load. Here at most ``exact_limit + 1`` rows are counted, within
    ``COUNT_TIMEOUT_MS``; past that the admin shows the planner's estimate
    (``pg_class.reltuples`` for the whole table, the query plan's row
    estimate for a filtered list).
    """
    if connection.vendor != "postgresql":
        return queryset.count()
    queryset = queryset.order_by()
    capped = _bounded_count(queryset, exact_limit + 1)
    if capped is not None and capped <= exact_limit:
        return capped
    if queryset.query.has_filters():
        sql, params = queryset.values("pk").query.sql_with_params()
        with connections[queryset.db].cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        estimate = int(plan[0]["Plan"]["Plan Rows"])
    else:
        with connections[queryset.db].cursor() as cursor:
            estimate = partitions.estimated_rows(cursor, queryset.model._meta.db_table)
    return max(estimate, capped or 0)


def _bounded_count(queryset, limit: int) -> int | None:
    """``COUNT`` of at most ``limit`` rows, or None when that takes longer than ``COUNT_TIMEOUT_MS``."""
    db = connections[queryset.db]  # a replica's for the list (memory.infra.replicas)
    with transaction.atomic(using=db.alias):
        with db.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout')")
            previous = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(COUNT_TIMEOUT_MS)])
        try:
            with transaction.atomic(using=db.alias):
                return queryset.using(db.alias)[:limit].count()
        except OperationalError:  # canceled by the timeout: the rows are sparse, estimate instead
            return None
        finally:
            with db.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])


class EstimatedCountPaginator(Paginator):
    @cached_property
    def count(self):
        return estimated_count(self.object_list)


class EntryChangeList(ChangeList):
    """The list never reads the JSON columns: a page of 100 payloads would be megabytes."""

    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).defer("payload", "source_data")


@admin.register(ProductMemoryEntry)
class ProductMemoryEntryAdmin(ImportExportMixin, ExportActionMixin, admin.ModelAdmin):
    resource_classes = [ProductMemoryEntryResource]
    formats = [TABLIB_FORMATS[name] for name in sorted(IMPORT_FORMATS) if name in TABLIB_FORMATS]
    export_form_class = ExportForm  # every column, always: what is exported must read back
    import_form_class = BoundedImportForm
    import_export_change_list_template = "admin/memory/productmemoryentry/change_list.html"
    show_change_form_export = False  # the detail page is read-only: export from the list

    list_display = (
        "product_id", "title_column", "kind", "status_badge", "hit_count", "tokens_saved",
        "expires_column", "updated_column",
    )
    list_display_links = ("product_id",)
    search_fields = ("product_id", "title")
    search_help_text = _("Search by product id or title (contains, case-insensitive).")
    list_filter = (KindFilter, StatusFilter, ApprovalFilter, OriginFilter, GeneratorVersionFilter, ExpiringSoonFilter)
    ordering = ("-updated_at",)
    list_per_page = 50
    list_max_show_all = 500
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    actions = [
        "delete_selected", "regenerate_selected", "regenerate_fields_selected", "regenerate_approved_too_selected",
        "extend_expiry_selected",
        "approve_selected", "unapprove_selected",
    ]
    change_form_template = "admin/memory/productmemoryentry/change_form.html"

    fieldsets = (
        (None, {"fields": ("product_id", "kind", "family_link", "title", "status_badge", "generator_version",
                           "input_fingerprint")}),
        (_("Usage"), {"fields": ("tokens_prompt", "tokens_cached", "tokens_completion", "tokens_reasoning",
                                 "hit_count", "tokens_saved")}),
        (_("Dates"), {"fields": ("created_at", "updated_at", "last_hit_at", "expires_at")}),
        (_("Version and approval"), {"fields": ("version", "origin", "author", "approved", "approved_by", "approved_at")}),
        (_("Content"), {"fields": ("payload_pretty",)}),
        (_("Source data"), {"fields": ("source_data_pretty",)}),
    )
    readonly_fields = (
        "product_id", "kind", "family_link", "title", "status_badge", "generator_version", "input_fingerprint",
        "tokens_prompt", "tokens_cached", "tokens_completion", "tokens_reasoning", "hit_count", "tokens_saved",
        "created_at", "updated_at", "last_hit_at", "expires_at", "payload_pretty", "source_data_pretty",
        "version", "origin", "author", "approved", "approved_by", "approved_at",
    )

    # -- permissions ----------------------------------------------------------------

    def has_add_permission(self, request):
        return False  # entries come from generation or from an import

    def has_change_permission(self, request, obj=None):
        # The detail page is read-only; the list's actions still need the change permission.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    # The permissions of the content's own actions (admin.action(permissions=[...]) asks these).
    def has_edit_permission(self, request):
        return content.may_edit(request)

    def has_approve_permission(self, request):
        return content.may_approve(request)

    def has_override_approval_permission(self, request):
        return super().has_change_permission(request) and content.may_override_approval(request)

    def has_import_permission(self, request):
        opts = self.opts
        return request.user.has_perms([f"{opts.app_label}.add_{opts.model_name}",
                                       f"{opts.app_label}.change_{opts.model_name}"])

    def has_export_permission(self, request):
        return self.has_view_permission(request)

    def add_data_read_fail_error_to_form(self, form, e):
        """A file the readers refuse shows their one line; others, django-import-export's message."""
        if isinstance(e, ImportFileError):
            form.add_error("import_file", str(e))
        else:
            super().add_data_read_fail_error_to_form(form, e)

    # -- list -----------------------------------------------------------------------

    def get_changelist(self, request, **kwargs):
        return EntryChangeList

    def get_export_queryset(self, request):
        return super().get_export_queryset(request).defer(None).prefetch_related("versions")

    @admin.display(description=ProductMemoryEntry._meta.get_field("title").verbose_name,
                   ordering=Left("title", TITLE_SORT_CHARS))
    def title_column(self, obj):
        """The title, cut to two lines by admin.css with the whole of it as a tooltip; sorted by the
        expression its index holds (``memory_entry_title_sort_idx``)."""
        return format_html('<span class="memory-title" title="{}">{}</span>', obj.title, obj.title)

    # Short dates ("01/03/2027 09:36") leave the list's width to the title at 1400 px.
    @admin.display(description=ProductMemoryEntry._meta.get_field("expires_at").verbose_name, ordering="expires_at")
    def expires_column(self, obj):
        return _short_datetime(obj.expires_at)

    @admin.display(description=ProductMemoryEntry._meta.get_field("updated_at").verbose_name, ordering="updated_at")
    def updated_column(self, obj):
        return _short_datetime(obj.updated_at)

    @admin.display(description=_("status"))
    def status_badge(self, obj):
        """The freshness status, and "approved" beside it: approved content is served even stale."""
        status = EntryStatus(freshness.row_status(obj, current_generator_version(), timezone.now()))
        badge = format_html('<span class="memory-badge memory-badge--{}">{}</span>', status.value, status.label)
        if obj.approved:
            badge += format_html(' <span class="memory-badge memory-badge--approved">{}</span>', _("approved"))
        return badge

    def changelist_view(self, request, extra_context=None):
        # Linked only for those the dashboard lets in (it needs the view permission, not change).
        if request.user.has_perm("memory.view_productmemoryentry"):
            extra_context = {**(extra_context or {}), "dashboard_url": reverse("memory:dashboard")}
        return super().changelist_view(request, extra_context)

    # -- detail ---------------------------------------------------------------------

    def get_urls(self):
        def view(func):
            return self.admin_site.admin_view(lambda request, *args, **kwargs: func(self, request, *args, **kwargs))

        return [
            path("<path:object_id>/content/", view(content.edit_view), name="memory_productmemoryentry_edit_content"),
            path("<path:object_id>/versions/", view(content.versions_view), name="memory_productmemoryentry_versions"),
            path("<path:object_id>/versions/<int:number>/restore/", view(content.restore_view),
                 name="memory_productmemoryentry_restore_version"),
            path("<path:object_id>/approval/", view(content.approval_view), name="memory_productmemoryentry_approval"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The read-only detail, with links to edit the content and see its versions, and the
        approval button, each for those who may."""
        extra_context = {
            **(extra_context or {}),
            "memory_may_edit": content.may_edit(request),
            "memory_may_approve": content.may_approve(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=ProductMemoryEntry._meta.get_field("family_id").verbose_name)
    def family_link(self, obj):
        """A variant links to its family's base entry; a base, to the list of its variants."""
        if not obj.family_id:
            return None
        if obj.kind == FAMILY_KIND:
            count = ProductMemoryEntry.objects.filter(family_id=obj.family_id).exclude(kind=FAMILY_KIND).count()
            url = reverse("admin:memory_productmemoryentry_changelist") + "?" + urlencode({"family_id": obj.family_id})
            label = ngettext("%(count)d variant derived from this content", "%(count)d variants derived from this content",
                             count) % {"count": count}
            return format_html('<a href="{}">{}</a>', url, label)
        base = (ProductMemoryEntry.objects.filter(product_id=obj.family_id, kind=FAMILY_KIND)
                .values_list("pk", flat=True).first())
        if base is None:
            return format_html("{} ({})", obj.family_id, _("its base content is no longer in the memory"))
        return format_html('<a href="{}">{}</a>', reverse("admin:memory_productmemoryentry_change", args=[base]),
                           obj.family_id)

    @admin.display(description=_("content"))
    def payload_pretty(self, obj):
        return _pretty_json(obj.payload)

    @admin.display(description=_("source data"))
    def source_data_pretty(self, obj):
        return _pretty_json(obj.source_data)

    # -- deletion: every path reaches Redis and L1 too -----------------------------------

    def delete_model(self, request, obj):
        delete_entries(ProductMemoryEntry.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        delete_entries(queryset)

    @admin.action(permissions=["delete"], description=_("Delete selected entries from every tier (PostgreSQL, Redis, local)"))
    def delete_selected(self, request, queryset):
        """Django's confirmation page, whose confirmed POST calls :meth:`delete_queryset`."""
        if self._too_many(request, queryset):
            return None
        return confirm_and_delete_selected(self, request, queryset)

    def _too_many(self, request, queryset) -> bool:
        if queryset.order_by()[: MAX_ACTION_ENTRIES + 1].count() <= MAX_ACTION_ENTRIES:
            return False
        self.message_user(request, _(
            "More than %(max)d entries are selected: act on at most %(max)d at a time, "
            "or use manage_memory (delete, purge, clear) for larger sets."
        ) % {"max": MAX_ACTION_ENTRIES}, messages.ERROR)
        return True

    # -- other actions ----------------------------------------------------------------

    @admin.action(permissions=["change"], description=_("Regenerate selected entries (forced, in the background)"))
    def regenerate_selected(self, request, queryset):
        """Queued with a broker; without one (eager mode) run here, and the messages say what each
        did. Approved entries are left as they are, and counted."""
        self._regenerate(request, queryset, override_approval=False)

    @admin.action(permissions=["override_approval"],
                  description=_("Regenerate selected entries, approved ones too (withdraws their approval)"))
    def regenerate_approved_too_selected(self, request, queryset):
        self._regenerate(request, queryset, override_approval=True)

    @admin.action(permissions=["change"], description=_("Regenerate some fields of selected entries (forced)"))
    def regenerate_fields_selected(self, request, queryset):
        """A page to choose the content fields; once confirmed, only those are regenerated (the
        provider is asked for them alone) and the others are kept."""
        if self._too_many(request, queryset):
            return None
        form = content.FieldsForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            self._regenerate(request, queryset, override_approval=False, fields=form.cleaned_data["names"])
            return None
        return TemplateResponse(request, "admin/memory/productmemoryentry/regenerate_fields.html", {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Regenerate some fields"),
            "form": form,
            "entries": queryset.order_by("product_id").only("pk", "product_id", "kind")[:100],
            "count": queryset.count(),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        })

    def _regenerate(self, request, queryset, *, override_approval: bool, fields=None):
        if self._too_many(request, queryset):
            return
        result = enqueue_regeneration(queryset, override_approval=override_approval, fields=fields)
        notices = (
            (result.queued, messages.SUCCESS, ngettext_lazy(
                "%(count)d product queued for regeneration.",
                "%(count)d products queued for regeneration.", "count"), ()),
            (result.regenerated, messages.SUCCESS, ngettext_lazy(
                "%(count)d product regenerated.",
                "%(count)d products regenerated.", "count"), ()),
            (result.with_family, messages.SUCCESS, ngettext_lazy(
                "%(count)d variant is derived again from its family's regenerated content, without a call of its own.",
                "%(count)d variants are derived again from their family's regenerated content, without a call of their own.",
                "count"), ()),
            (result.lacking_data, messages.WARNING, ngettext_lazy(
                "%(count)d entry has no source data naming its product (an identifier and a title) to regenerate from.",
                "%(count)d entries have no source data naming their product (an identifier and a title) to regenerate from.",
                "count"), ()),
            (len(result.refused), messages.WARNING, ngettext_lazy(
                "%(count)d entry has source data the generation refuses and was not regenerated: %(errors)s",
                "%(count)d entries have source data the generation refuses and were not regenerated: %(errors)s",
                "count"), result.refused),
            (len(result.failed), messages.ERROR, ngettext_lazy(
                "%(count)d product was not regenerated, nothing was saved: %(errors)s",
                "%(count)d products were not regenerated, nothing was saved: %(errors)s", "count"), result.failed),
            (result.not_tried, messages.ERROR, ngettext_lazy(
                "The content provider is unavailable: %(count)d more product was not tried. Try again later.",
                "The content provider is unavailable: %(count)d more products were not tried. Try again later.",
                "count"), ()),
            (result.not_queued, messages.ERROR, ngettext_lazy(
                "The task queue is unreachable: %(count)d product was not queued. Try again later.",
                "The task queue is unreachable: %(count)d products were not queued. Try again later.", "count"), ()),
            (result.other_kind, messages.WARNING, ngettext_lazy(
                "%(count)d entry is not main content and cannot be regenerated here.",
                "%(count)d entries are not main content and cannot be regenerated here.", "count"), ()),
            (result.locked, messages.WARNING, ngettext_lazy(
                "%(count)d entry is approved and was not regenerated: approved content is served as it is. "
                "Withdraw its approval first, or use the action that regenerates approved entries too.",
                "%(count)d entries are approved and were not regenerated: approved content is served as it is. "
                "Withdraw their approval first, or use the action that regenerates approved entries too.",
                "count"), ()),
        )
        for count, level, message, errors in notices:
            if count:
                self.message_user(request, message % {"count": count, "errors": _listed(errors)}, level)

    @admin.action(permissions=["change"], description=_("Extend expiry of selected entries by the default TTL"))
    def extend_expiry_selected(self, request, queryset):
        if self._too_many(request, queryset):
            return
        changed = extend_expiry(queryset)
        self.message_user(request, ngettext(
            "Expiry extended for %(count)d entry.",
            "Expiry extended for %(count)d entries.",
            changed,
        ) % {"count": changed}, messages.SUCCESS)


    @admin.action(permissions=["approve"], description=_("Approve selected entries (served as they are)"))
    def approve_selected(self, request, queryset):
        if self._too_many(request, queryset):
            return
        changed = approve_entries(queryset, True, by=request.user.get_username())
        self.message_user(request, ngettext(
            "%(count)d entry approved.", "%(count)d entries approved.", changed) % {"count": changed},
            messages.SUCCESS)

    @admin.action(permissions=["approve"], description=_("Withdraw the approval of selected entries"))
    def unapprove_selected(self, request, queryset):
        if self._too_many(request, queryset):
            return
        changed = approve_entries(queryset, False, by=request.user.get_username())
        self.message_user(request, ngettext(
            "Approval withdrawn from %(count)d entry.", "Approval withdrawn from %(count)d entries.", changed)
            % {"count": changed}, messages.SUCCESS)


def _short_datetime(value) -> str | None:
    """``value`` in local time, in the active language's short date and time format."""
    return date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT") if value else None


def _pretty_json(value) -> str:
    """Indented JSON in a <pre>, escaped: a payload holding ``<script>`` shows as text."""
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
    return format_html('<pre class="memory-json">{}</pre>', text)
