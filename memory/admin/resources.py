"""The import/export shape of ``ProductMemoryEntry`` for the admin (django-import-export).

The columns are ``memory.io.transfer.EXPORT_FIELDS``, the same ones ``manage_memory
export`` writes, so that a file from either side reads back on the other:
``payload`` and ``source_data`` are JSON text (a JSON object is accepted too),
dates are ISO 8601 with their offset, counters are plain integers. A row is
identified by ``product_id`` + ``kind``. Every value is checked before the
preview shows the row, and the copies of imported rows in Redis and L1 are
dropped once the import commits.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from import_export import fields, resources, widgets
from import_export.results import Error

from memory.services.entries import evict_on_commit
from memory.engine.identifiers import input_fingerprint
from memory.models import DEFAULT_KIND, ProductMemoryEntry
from memory.engine.memory import validate_content
from memory.providers.prompts import current_generator_version
from memory.io.transfer import EXPORT_FIELDS, ImportFileError, _check_header


class JSONObjectWidget(widgets.Widget):
    """A JSON object, written as compact JSON text; read from JSON text or an object already parsed."""

    def __init__(self, *, required: bool, check_content: bool = False):
        super().__init__(coerce_to_string=True)
        self.required = required
        self.check_content = check_content

    def clean(self, value, row=None, **kwargs):
        if isinstance(value, str):
            value = value.strip()
            if value:
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ValueError(_("not valid JSON (%(error)s)") % {"error": exc.msg}) from None
                except RecursionError:
                    raise ValueError(_("not valid JSON (%(error)s)") % {"error": "nesting too deep"}) from None
        if value in (None, ""):
            if self.required:
                raise ValueError(_("required: a JSON object"))
            return {}
        if not isinstance(value, dict):
            raise ValueError(_("must be a JSON object, got %(type)s") % {"type": type(value).__name__})
        if self.check_content:
            validate_content(value)
        return value

    def render(self, value, obj=None, **kwargs):
        return json.dumps(value if value is not None else {}, ensure_ascii=False)


class IsoDateTimeWidget(widgets.Widget):
    """ISO 8601 in UTC on export; ISO 8601 text or a spreadsheet date on import (naive means local time).
    An empty cell is ``None``: the field's default, or the model's check, decides what that means."""

    def __init__(self):
        super().__init__(coerce_to_string=True)

    def clean(self, value, row=None, **kwargs):
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            try:
                parsed = parse_datetime(value)
            except ValueError:
                parsed = None
            if parsed is None:
                raise ValueError(
                    _("not a date and time: %(value)r (use ISO 8601, e.g. 2026-01-31T12:00:00+00:00)")
                    % {"value": value[:40]}
                )
            value = parsed
        if value is None:
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        if not isinstance(value, datetime):
            raise ValueError(_("not a date and time: %(value)r") % {"value": value})
        if timezone.is_naive(value):
            value = timezone.make_aware(value)
        return value

    def render(self, value, obj=None, **kwargs):
        if value is None:
            return ""
        return value.astimezone(dt_timezone.utc).isoformat()


class CounterWidget(widgets.Widget):
    """A non-negative integer; empty means 0. Exported as a number, not locale-formatted text."""

    def __init__(self):
        super().__init__(coerce_to_string=False)

    def clean(self, value, row=None, **kwargs):
        if value is None or (isinstance(value, str) and not value.strip()):
            return 0
        if isinstance(value, bool):
            raise ValueError(_("must be a whole number, got %(value)r") % {"value": value})
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # spreadsheets hand back numbers as floats
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError(_("must be a whole number, got %(value)r") % {"value": value[:40]}) from None
        if not isinstance(value, int):
            raise ValueError(_("must be a whole number, got %(value)r") % {"value": value})
        if value < 0:
            raise ValueError(_("must not be negative, got %(value)d") % {"value": value})
        return value

    def render(self, value, obj=None, **kwargs):
        return 0 if value is None else int(value)


class TextWidget(widgets.CharWidget):
    """Trimmed text; an empty value becomes ``default`` (``None`` lets the model say it is required)."""

    def __init__(self, default: str | None = None):
        super().__init__(coerce_to_string=True, allow_blank=False)
        self.default = default

    def clean(self, value, row=None, **kwargs):
        if value is None:
            value = ""
        elif isinstance(value, float) and value.is_integer():
            value = str(int(value))  # a numeric SKU typed into a spreadsheet comes back as 123.0
        return str(value).strip() or self.default


def _text(name, default=None):
    return fields.Field(attribute=name, column_name=name, widget=TextWidget(default))


def _counter(name):
    return fields.Field(attribute=name, column_name=name, widget=CounterWidget())


def _datetime(name, *, default=None):
    field = fields.Field(attribute=name, column_name=name, widget=IsoDateTimeWidget())
    if default is not None:
        field.default = default
    return field


class FileError(Error):
    """A whole-file error: the admin shows its message; a traceback would say nothing more."""

    @property
    def traceback(self):
        return "" if isinstance(self.error, ImportFileError) else super().traceback


class ProductMemoryEntryResource(resources.ModelResource):
    product_id = _text("product_id")
    kind = _text("kind", DEFAULT_KIND)
    payload = fields.Field(
        attribute="payload", column_name="payload", widget=JSONObjectWidget(required=True, check_content=True)
    )
    source_data = fields.Field(
        attribute="source_data", column_name="source_data", widget=JSONObjectWidget(required=False)
    )
    input_fingerprint = _text("input_fingerprint")
    generator_version = _text("generator_version")
    tokens_prompt = _counter("tokens_prompt")
    tokens_completion = _counter("tokens_completion")
    hit_count = _counter("hit_count")
    tokens_saved = _counter("tokens_saved")
    created_at = _datetime("created_at", default=timezone.now)
    updated_at = _datetime("updated_at", default=timezone.now)
    last_hit_at = _datetime("last_hit_at")
    expires_at = _datetime("expires_at")

    class Meta:
        model = ProductMemoryEntry
        fields = EXPORT_FIELDS
        export_order = EXPORT_FIELDS
        import_id_fields = ("product_id", "kind")
        clean_model_instances = True
        skip_unchanged = True
        report_skipped = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._written_keys: list[tuple[str, str]] = []

    def get_error_result_class(self):
        return FileError

    def before_import(self, dataset, **kwargs):
        """The header rule of ``manage_memory import``: ``product_id`` and ``payload`` are
        required (``ImportFileError`` naming them), a missing ``kind`` column means the default kind."""
        super().before_import(dataset, **kwargs)
        _check_header(list(dataset.headers or []))
        if "kind" not in dataset.headers:
            dataset.append_col([DEFAULT_KIND] * dataset.height, header="kind")

    def import_instance(self, instance, row, **kwargs):
        """Set the row's values, then the defaults ``manage_memory import`` gives empty cells."""
        errors = None
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc
        if not instance.input_fingerprint:
            instance.input_fingerprint = input_fingerprint(instance.source_data or {})
        if not instance.generator_version:
            instance.generator_version = current_generator_version()
        if instance.expires_at is None:
            instance.expires_at = timezone.now() + timedelta(seconds=settings.MEMORY_DEFAULT_TTL)
        if errors is not None:
            raise errors

    def after_save_instance(self, instance, row, **kwargs):
        if not kwargs.get("dry_run"):
            self._written_keys.append((instance.product_id, instance.kind))

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        if not kwargs.get("dry_run") and self._written_keys:
            evict_on_commit(self._written_keys)
        self._written_keys = []
