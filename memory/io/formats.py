"""The file formats of the memory: the one list every exporter and importer reads.

``manage_memory export``, ``GET /api/memory/export/`` and the backups write the
:data:`EXPORT_FORMATS`; ``manage_memory import`` and ``restore`` read the :data:`IMPORT_FORMATS`
(also ``xlsx``, what the admin writes). The admin offers the ones of these that
django-import-export handles, the API and the command take their choices from here.

- ``json``: one JSON array of objects.
- ``jsonl``: one JSON object per line.
- ``csv``: a header row, then one row per entry; ``payload`` and ``source_data`` hold JSON
  text, an empty cell is "no value".
- ``xlsx`` (import only): the same column names, first sheet, header in the first row.

A gzipped file (a backup) is recognised by its content.

The :data:`SPREADSHEET_FORMATS` (``csv``, ``xlsx``) hold their text cells as
:func:`spreadsheet_text` writes them and their readers give them back through
:func:`from_spreadsheet_text`: a spreadsheet opening an export evaluates no formula, and an
export imports back exactly as it was. JSON and JSONL are not opened as spreadsheets and hold
every value as it is.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone as dt_timezone
from pathlib import Path
from typing import Any, Callable

from django.utils import timezone

EXPORT_FORMATS = ("json", "jsonl", "csv")
IMPORT_FORMATS = ("json", "jsonl", "csv", "xlsx")
SPREADSHEET_FORMATS = ("csv", "xlsx")
DEFAULT_EXPORT_FORMAT = "json"

_CONTENT_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}
_EXTENSIONS = {"json": "json", "jsonl": "jsonl", "ndjson": "jsonl", "csv": "csv", "xlsx": "xlsx"}

Progress = Callable[[str, int, "int | None"], None]
"""``on_progress(stage, done, total)`` of an export or import; stages: ``export``, ``validate``, ``write``."""


def check_format(fmt: Any, allowed: tuple[str, ...]) -> str:
    """``fmt`` when it is one of ``allowed``; ``ValueError`` naming ``format`` otherwise."""
    if fmt not in allowed:
        raise ValueError(f"format: deve ser um de {', '.join(allowed)}, recebido {fmt!r}")
    return fmt


def content_type(fmt: str) -> str:
    """The HTTP Content-Type of an export format."""
    return _CONTENT_TYPES[check_format(fmt, EXPORT_FORMATS)]


def filename_extension(fmt: str) -> str:
    """The file name extension of a format, without the dot (``json``, ``jsonl``, ``csv``, ``xlsx``)."""
    return _EXTENSIONS[check_format(fmt, IMPORT_FORMATS)]


def export_filename(fmt: str, when: datetime | None = None) -> str:
    """A download name such as ``memory-export-20261125T163000Z.jsonl``."""
    when = (when or timezone.now()).astimezone(dt_timezone.utc)
    return f"memory-export-{when:%Y%m%dT%H%M%SZ}.{filename_extension(fmt)}"


def format_from_filename(name: str | os.PathLike) -> str | None:
    """``json``, ``jsonl``, ``csv`` or ``xlsx`` from a file name (``.gz`` is looked through), else None."""
    suffixes = [s.lower().lstrip(".") for s in Path(name).suffixes]
    if suffixes and suffixes[-1] == "gz":
        suffixes.pop()
    return _EXTENSIONS.get(suffixes[-1]) if suffixes else None


# -- text in spreadsheet cells --------------------------------------------------------------
#
# A spreadsheet reads a cell that starts with "=", "+", "-" or "@" as a formula (OWASP's CSV
# injection; tab and carriage return are in its list too). Such a text gets a single quote in
# front, which the spreadsheet shows as text. For the escape to be undone without guessing, a
# text that already starts with quotes followed by one of those characters gets one more quote:
# the quote is removed again exactly when quotes and then a trigger open the cell. A line feed
# counts as a trigger too: XLSX (XML) reads a carriage return back as a line feed, and the quote
# before it must still be recognised.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
_QUOTE = "'"


def _quoted_trigger(text: str) -> bool:
    return text.lstrip(_QUOTE).startswith(FORMULA_TRIGGERS)


def spreadsheet_text(value: Any) -> Any:
    """``value`` as a CSV or XLSX cell holds it: a text a spreadsheet would read as a formula
    gets a leading ``'``; other values are unchanged. :func:`from_spreadsheet_text` undoes it."""
    if isinstance(value, str) and value.startswith((_QUOTE, *FORMULA_TRIGGERS)) and _quoted_trigger(value):
        return _QUOTE + value
    return value


def from_spreadsheet_text(value: Any) -> Any:
    """The value :func:`spreadsheet_text` was given, from the cell it wrote."""
    if isinstance(value, str) and value.startswith(_QUOTE) and _quoted_trigger(value):
        return value[1:]
    return value
