"""Writing exports: every exporter (``manage_memory export``, ``GET /api/memory/export/``, the
backups) writes through :func:`iter_export_batches`, in the formats of :mod:`memory.io.formats`
and the columns of :mod:`memory.io.schema`, so that what one writes the importer reads back:
each entry with its approval and its history (``versions``).

Entries go out ordered by id, in bounded memory whatever the row count; datetimes are ISO 8601
with offset (``2026-11-25T16:30:00.123456+00:00``). CSV text cells are escaped by
:func:`~memory.io.formats.spreadsheet_text` (no formula runs when a spreadsheet opens the file);
JSON and JSONL hold every value as it is.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from django.db.models import QuerySet

from memory.engine.validators import whole_number
from memory.io.formats import EXPORT_FORMATS, Progress, check_format, spreadsheet_text
from memory.io.schema import ENTRY_FIELDS, EXPORT_FIELDS, VERSION_FIELDS, exported_versions, plain, text_cell
from memory.models import ContentVersion, ProductMemoryEntry

EXPORT_CHUNK_ROWS = 500           # rows fetched per round trip to PostgreSQL
EXPORT_YIELD_BYTES = 256 * 1024   # text gathered before a chunk is yielded


def check_limit(limit: Any) -> int | None:
    """At most this many entries: a positive whole number, or None for all of them."""
    return None if limit is None else whole_number("limit", limit, minimum=1)


def _export_queryset(limit: int | None, queryset: QuerySet | None) -> QuerySet:
    qs = queryset if queryset is not None else ProductMemoryEntry.objects.all()
    qs = qs.order_by("id").values_list("id", *ENTRY_FIELDS)
    return qs[:limit] if limit else qs


def _with_versions(rows: Iterator[tuple]) -> Iterator[tuple]:
    """Each row of :data:`EXPORT_FIELDS`: the entry's columns and its history, read for
    ``EXPORT_CHUNK_ROWS`` entries at a time (one query per chunk)."""
    chunk: list[tuple] = []

    def drain():
        histories: dict[int, list[dict]] = {}
        for version in (ContentVersion.objects.filter(entry_id__in=[row[0] for row in chunk])
                        .order_by("entry_id", "number").values("entry_id", *VERSION_FIELDS)):
            histories.setdefault(version["entry_id"], []).append(version)
        for entry_id, *columns in chunk:
            yield (*columns, exported_versions(histories.get(entry_id, [])))
        chunk.clear()

    for row in rows:
        chunk.append(row)
        if len(chunk) >= EXPORT_CHUNK_ROWS:
            yield from drain()
    if chunk:
        yield from drain()


def export_count(*, limit: int | None = None, queryset: QuerySet | None = None) -> int:
    """How many entries an export with these arguments writes (for progress bars)."""
    limit = check_limit(limit)
    qs = queryset if queryset is not None else ProductMemoryEntry.objects.all()
    total = qs.count()
    return min(total, limit) if limit else total


def _as_dict(row: tuple) -> dict:
    return {name: plain(value) for name, value in zip(EXPORT_FIELDS, row)}


def iter_export_batches(fmt: str, *, limit: int | None = None,
                        queryset: QuerySet | None = None) -> Iterator[tuple[str, int]]:
    """Like :func:`iter_export`, yielding ``(text, entries_in_text)`` for progress reporting."""
    check_format(fmt, EXPORT_FORMATS)
    limit = check_limit(limit)
    rows = _with_versions(_export_queryset(limit, queryset).iterator(chunk_size=EXPORT_CHUNK_ROWS))

    parts: list[str] = []
    size = 0
    count = 0
    csv_buffer = io.StringIO()
    # RFC 4180 line ends: the writer quotes every text holding one of their characters, so a
    # carriage return inside a text cannot end its row.
    csv_writer = csv.writer(csv_buffer, lineterminator="\r\n")

    if fmt == "csv":
        csv_writer.writerow(EXPORT_FIELDS)
    elif fmt == "json":
        parts.append("[")

    first = True
    for row in rows:
        if fmt == "csv":
            csv_writer.writerow([spreadsheet_text(text_cell(n, v)) for n, v in zip(EXPORT_FIELDS, row)])
            size = csv_buffer.tell()
        else:
            text = json.dumps(_as_dict(row), ensure_ascii=False)
            if fmt == "json":
                text = ("\n" if first else ",\n") + text
            else:
                text += "\n"
            parts.append(text)
            size += len(text)
        first = False
        count += 1
        if size >= EXPORT_YIELD_BYTES:
            yield _drain(fmt, parts, csv_buffer), count
            size = count = 0

    if fmt == "json":
        parts.append("\n]\n" if not first else "]\n")
    text = _drain(fmt, parts, csv_buffer)
    if text:
        yield text, count


def _drain(fmt: str, parts: list[str], csv_buffer: io.StringIO) -> str:
    if fmt == "csv":
        text = csv_buffer.getvalue()
        csv_buffer.seek(0)
        csv_buffer.truncate()
        return text
    text = "".join(parts)
    parts.clear()
    return text


def iter_export(fmt: str, *, limit: int | None = None, queryset: QuerySet | None = None) -> Iterator[str]:
    """The export as text chunks, ordered by id, in bounded memory whatever the row count.

    ``queryset`` narrows the entries (default: all of them); ``ValueError`` names
    ``format`` or ``limit`` when they are wrong.
    """
    for text, _ in iter_export_batches(fmt, limit=limit, queryset=queryset):
        yield text


def write_export(fmt: str, output: str | os.PathLike | IO[str], *, limit: int | None = None,
                 queryset: QuerySet | None = None, on_progress: Progress | None = None) -> int:
    """Write an export to a path (atomically: a temporary file renamed at the end) or a text stream.

    Returns the number of entries written.
    """
    check_format(fmt, EXPORT_FORMATS)
    limit = check_limit(limit)
    total = export_count(limit=limit, queryset=queryset) if on_progress else None
    written = 0

    def pump(stream: IO[str]) -> None:
        nonlocal written
        for text, n in iter_export_batches(fmt, limit=limit, queryset=queryset):
            stream.write(text)
            written += n
            if on_progress:
                on_progress("export", written, total)

    if isinstance(output, (str, os.PathLike)):
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
                pump(stream)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        pump(output)
    return written
