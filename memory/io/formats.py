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
"""
from __future__ import annotations

import os
from datetime import datetime, timezone as dt_timezone
from pathlib import Path
from typing import Any, Callable

from django.utils import timezone

EXPORT_FORMATS = ("json", "jsonl", "csv")
IMPORT_FORMATS = ("json", "jsonl", "csv", "xlsx")
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
