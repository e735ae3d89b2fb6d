"""The import/export shape of ``ProductMemoryEntry`` for the admin (django-import-export).

The columns are :data:`memory.io.schema.EXPORT_FIELDS`, the same ones ``manage_memory export``
writes, so that a file from either side reads back on the other: ``payload`` and
``source_data`` are JSON text, dates are ISO 8601 in UTC, counters are plain integers. A row is
identified by ``product_id`` + ``kind``. Every row is cleaned by
:func:`memory.io.schema.clean_row`, the row schema of ``manage_memory import``, before the
preview shows it: the admin refuses what the command refuses, with the same words. The copies of
imported rows in Redis and L1 are dropped once the import commits.

The CSV and XLSX formats (:class:`SpreadsheetCSV`, :class:`SpreadsheetXLSX`) escape text cells
with :func:`memory.io.formats.spreadsheet_text` on export and undo it on import, as
``manage_memory`` does: no formula runs when a spreadsheet opens an export, and an XLSX cell
holds text, never a formula. The JSON format holds every value as it is.

The admin reads an upload whole and previews every row in one request, so an upload past
``MEMORY_IMPORT_ADMIN_MAX_BYTES`` is refused before it is read, and an XLSX is read by
:func:`memory.io.readers.xlsx_rows` (checked before it is parsed, every row read) as
``manage_memory import`` reads it.
"""
from __future__ import annotations

import io

import tablib
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from import_export import fields, resources, widgets
from import_export.formats.base_formats import CSV, XLSX
from import_export.forms import ImportForm
from import_export.results import Error

from memory.io.formats import from_spreadsheet_text, spreadsheet_text
from memory.io.importer import upsert_rows
from memory.io.readers import xlsx_rows
from memory.io.schema import (
    ENTRY_FIELDS, EXPORT_FIELDS, ImportFileError, RowError, blank, check_header, clean_row, exported_versions,
    text_cell,
)
from memory.models import ProductMemoryEntry
from memory.services.entries import evict_on_commit


class CleanedWidget(widgets.Widget):
    """A column whose values :func:`~memory.io.schema.clean_row` has already cleaned (in
    ``before_import_row``); exported as :func:`~memory.io.schema.text_cell` writes it."""

    def __init__(self, name: str):
        super().__init__(coerce_to_string=False)
        self.name = name

    def clean(self, value, row=None, **kwargs):
        return value

    def render(self, value, obj=None, **kwargs):
        return text_cell(self.name, value)


def _map_cells(dataset: tablib.Dataset, convert) -> tablib.Dataset:
    """``dataset`` with ``convert`` applied to every cell, in place (an export can be large)."""
    for index, row in enumerate(dataset):
        dataset[index] = [convert(value) for value in row]
    return dataset


class SpreadsheetFormat:
    """A django-import-export format whose text cells are escaped as
    :func:`~memory.io.formats.spreadsheet_text` writes them, and read back unescaped."""

    def export_data(self, dataset, **kwargs):
        return super().export_data(_map_cells(dataset, spreadsheet_text), **kwargs)

    def create_dataset(self, in_stream, **kwargs):
        return _map_cells(super().create_dataset(in_stream, **kwargs), from_spreadsheet_text)


class SpreadsheetCSV(SpreadsheetFormat, CSV):
    pass


class MemoryXLSX(XLSX):
    """XLSX read as ``manage_memory import`` reads it (:func:`~memory.io.readers.xlsx_rows`)."""

    def create_dataset(self, in_stream, **kwargs):
        rows = xlsx_rows(io.BytesIO(in_stream))
        dataset = tablib.Dataset()
        header = next(rows, None)
        if header is None:
            return dataset
        width = len(header)
        dataset.headers = list(header)
        for cells in rows:
            if all(blank(c) for c in cells):
                continue
            # A row may hold fewer cells than the header (or stray ones beyond it).
            dataset.append((list(cells) + [None] * width)[:width])
        return dataset


class SpreadsheetXLSX(SpreadsheetFormat, MemoryXLSX):
    pass


class FileError(Error):
    """A whole-file error: the admin shows its message; a traceback would say nothing more."""

    @property
    def traceback(self):
        return "" if isinstance(self.error, ImportFileError) else super().traceback


class ProductMemoryEntryResource(resources.ModelResource):
    # The history: not a column of the entry, exported from its versions and written with the
    # row by the import's own upsert (save_instance).
    versions = fields.Field(column_name="versions", widget=CleanedWidget("versions"))

    class Meta:
        model = ProductMemoryEntry
        fields = EXPORT_FIELDS
        export_order = EXPORT_FIELDS
        import_id_fields = ("product_id", "kind")
        # The row schema is the one validation: the model's own checks would be a second rule.
        clean_model_instances = False
        skip_unchanged = True
        report_skipped = True

    @classmethod
    def field_from_django_field(cls, field_name, django_field, readonly):
        return fields.Field(attribute=field_name, column_name=field_name, widget=CleanedWidget(field_name))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._written_keys: list[tuple[str, str]] = []
        self._now = timezone.now()

    def get_error_result_class(self):
        return FileError

    def dehydrate_versions(self, entry):
        return text_cell("versions", exported_versions(entry.versions.all()))

    def save_instance(self, instance, is_create, row, **kwargs):
        """Write the cleaned row as ``manage_memory import`` does (its history included), not
        ``instance.save()``: every content written becomes a version."""
        self.before_save_instance(instance, row, **kwargs)
        if self._is_using_transactions(kwargs) or not self._is_dry_run(kwargs):
            upsert_rows([{name: row[name] for name in [*ENTRY_FIELDS, "versions"]}])
        self.after_save_instance(instance, row, **kwargs)

    def before_import(self, dataset, **kwargs):
        """The header rule of ``manage_memory import``: ``product_id`` and ``payload`` are
        required (``ImportFileError`` naming them), the other columns may be left out."""
        super().before_import(dataset, **kwargs)
        check_header(list(dataset.headers or []))
        if "kind" not in dataset.headers:  # django-import-export wants every import_id_fields column
            dataset.append_col([""] * dataset.height, header="kind")
        self._now = timezone.now()

    def before_import_row(self, row, **kwargs):
        """The row as :func:`~memory.io.schema.clean_row` cleans it (defaults included), or a
        ``ValidationError`` naming each bad column."""
        super().before_import_row(row, **kwargs)
        try:
            cleaned = clean_row(dict(row), now=self._now)
        except RowError as exc:
            raise ValidationError({name or "__all__": [message] for name, message in exc.problems.items()}) from None
        row.update(cleaned)

    def after_save_instance(self, instance, row, **kwargs):
        if not kwargs.get("dry_run"):
            self._written_keys.append((instance.product_id, instance.kind))

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        if not kwargs.get("dry_run") and self._written_keys:
            evict_on_commit(self._written_keys)
        self._written_keys = []


class BoundedImportForm(ImportForm):
    """The import form, refusing a file larger than ``MEMORY_IMPORT_ADMIN_MAX_BYTES`` before it is read."""

    def clean_import_file(self):
        upload = self.cleaned_data["import_file"]
        limit = settings.MEMORY_IMPORT_ADMIN_MAX_BYTES
        if upload.size > limit:
            raise ValidationError(
                f"Arquivo grande demais para o admin: {upload.size} bytes (limite MEMORY_IMPORT_ADMIN_MAX_BYTES = "
                f"{limit} bytes). Use: python manage.py manage_memory import --input-file ARQUIVO"
            )
        return upload
