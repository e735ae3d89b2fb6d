"""Importing entries: ``manage_memory import`` and ``restore`` (and so the backups) read
through :func:`import_entries`.

- Rows are read by :mod:`memory.io.readers` and cleaned by :func:`memory.io.schema.clean_row`,
  the one row schema the admin's import uses too.
- All or nothing: a first pass validates every row; if any is bad, nothing is written and each
  bad row is reported by number. A second pass upserts on ``(product_id, kind)`` in batches
  inside one transaction (on PostgreSQL each batch by ``COPY`` into a temporary table and one
  ``INSERT … ON CONFLICT``, :meth:`DatabaseTier.upsert_rows`); when a key appears twice in a file, the later row wins. Cached copies
  (Redis, L1) of the imported keys are evicted so that no stale copy survives.
- Each row brings its approval and its history (``DatabaseTier.upsert_rows``): an entry new
  here takes the file's versions; one already here keeps its own, and a content it did not
  hold becomes its newest version, of origin ``imported``.
- Both passes stream, so memory stays bounded however many rows the file holds: the first
  keeps the rows it cleaned in a temporary file, which the second reads instead of the source.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator

from django.db import connection, transaction
from django.utils import timezone

from memory.engine.memory import ProductMemory
from memory.engine.tiers import DatabaseTier
from memory.io.formats import IMPORT_FORMATS, Progress, check_format, format_from_filename
from memory.io.readers import Source, read_rows
from memory.io.schema import RowError, clean_row

logger = logging.getLogger("memory")

IMPORT_BATCH_ROWS = 500           # rows per INSERT … ON CONFLICT (the ORM's, off PostgreSQL)
COPY_BATCH_ROWS = 5000            # rows per COPY + INSERT … ON CONFLICT (PostgreSQL)
IMPORT_BATCH_BYTES = 8 * 1024 * 1024
MAX_REPORTED_ERRORS = 1000


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    format: str
    dry_run: bool = False
    rows: int = 0
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    error_count: int = 0

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def as_dict(self) -> dict:
        return {
            "format": self.format, "dry_run": self.dry_run, "rows": self.rows,
            "created": self.created, "updated": self.updated, "ok": self.ok,
            "error_count": self.error_count,
            "errors": [{"row": n, "message": m} for n, m in self.errors],
        }


def _row_bytes(row: dict) -> int:
    # A cheap upper-bound guess, good enough to keep a batch's size bounded.
    versions = row.get("versions") or []
    return 512 + len(json.dumps(row["payload"], ensure_ascii=False)) + len(
        json.dumps(row["source_data"], ensure_ascii=False)) + sum(
        256 + len(json.dumps(v["payload"], ensure_ascii=False)) for v in versions)


def _batches(rows: Iterable[dict], max_rows: int = IMPORT_BATCH_ROWS) -> Iterator[list[dict]]:
    return _sized_batches(((row, _row_bytes(row)) for row in rows), max_rows)


def _sized_batches(rows: Iterable[tuple[dict, int]], max_rows: int) -> Iterator[list[dict]]:
    """Batches of at most ``max_rows`` rows and about ``IMPORT_BATCH_BYTES``, each row given with its size."""
    batch: list[dict] = []
    size = 0
    for row, row_bytes in rows:
        batch.append(row)
        size += row_bytes
        if len(batch) >= max_rows or size >= IMPORT_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _dedupe(batch: list[dict]) -> list[dict]:
    """The later row wins when a key appears twice (one upsert cannot touch a row twice)."""
    by_key = {(r["product_id"], r["kind"]): r for r in batch}
    return list(by_key.values())


def upsert_rows(rows: list[dict]) -> int:
    """Write rows :func:`~memory.io.schema.clean_row` cleaned, with their history, as the
    import does (the admin's import writes its rows here too); returns how many existed."""
    return DatabaseTier().upsert_rows(_dedupe(rows))


def import_entries(source: str | os.PathLike | IO, fmt: str | None = None, *, dry_run: bool = False,
                   on_progress: Progress | None = None) -> ImportReport:
    """Validate a whole file, then (unless ``dry_run`` or a row is bad) upsert every row.

    ``source`` is a path or a file object (binary or text); ``fmt`` one of
    :data:`~memory.io.formats.IMPORT_FORMATS`, or None to take it from the file name. Raises
    :class:`~memory.io.schema.ImportFileError` (a ``ValueError``) when the file as a whole
    cannot be read; bad rows are reported in the returned :class:`ImportReport`, and then
    nothing is written.
    """
    src = Source(source)
    stack = ExitStack()
    try:
        if fmt is None:
            fmt = format_from_filename(src.name) if src.name else None
            if fmt is None:
                raise ValueError(f"format: não foi possível deduzir do nome do arquivo; use um de {', '.join(IMPORT_FORMATS)}")
        check_format(fmt, IMPORT_FORMATS)
        report = ImportReport(format=fmt, dry_run=dry_run)
        now = timezone.now()
        l3 = DatabaseTier()

        def valid_rows() -> Iterator[dict]:
            """Every row cleaned; bad ones recorded in the report (and skipped)."""
            for number, raw in read_rows(src, fmt):
                report.rows += 1
                try:
                    if isinstance(raw, RowError):
                        raise raw
                    yield clean_row(raw, now=now)
                except RowError as exc:
                    report.error_count += 1
                    if len(report.errors) < MAX_REPORTED_ERRORS:
                        report.errors.append((number, str(exc)))
                if on_progress and report.rows % IMPORT_BATCH_ROWS == 0:
                    on_progress("validate", report.rows, None)

        if dry_run:
            for batch in _batches(valid_rows()):
                if not report.error_count:
                    batch = _dedupe(batch)
                    existing = l3.count_existing((r["product_id"], r["kind"]) for r in batch)
                    report.updated += existing
                    report.created += len(batch) - existing
        else:
            # The rows as cleaned, kept on disk for the write pass (bounded memory; the write
            # neither parses nor cleans them again). Spilled until the first bad row.
            spill = stack.enter_context(tempfile.TemporaryFile())
            for row in valid_rows():
                if not report.error_count:
                    pickle.dump(row, spill, protocol=pickle.HIGHEST_PROTOCOL)
        if on_progress:
            on_progress("validate", report.rows, report.rows)
        if report.error_count:
            report.created = report.updated = 0
            # The caller's bad file, reported to it: no operational warning.
            logger.info("Importação recusada: %d registros inválidos em %s; nada foi gravado",
                        report.error_count, src.name or "arquivo")
            return report
        if dry_run or not report.rows:  # a file of no entries (blank lines only) is not read again
            return report

        spill.seek(0)
        _write(_spilled(spill), report, on_progress)
        logger.info("Importação gravada no PostgreSQL: %d entradas criadas, %d atualizadas (%s)",
                    report.created, report.updated, src.name or "arquivo")
        return report
    finally:
        stack.close()
        src.close()


def _spilled(spill: IO[bytes]) -> Iterator[tuple[dict, int]]:
    """The rows the validation pass wrote to ``spill`` (this process's own temporary file), each with
    the bytes it took there: the size the batches are bounded by."""
    while True:
        start = spill.tell()
        try:
            row = pickle.load(spill)
        except EOFError:
            return
        yield row, spill.tell() - start


def _write(rows: Iterator[tuple[dict, int]], report: ImportReport, on_progress: Progress | None) -> None:
    memory = ProductMemory()
    total = report.rows
    done = 0

    # The keys written are spilled to a temporary file, to evict them again
    # after the commit without holding a million keys in memory.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as written:
        # PostgreSQL takes a batch by COPY (DatabaseTier.upsert_rows): bigger batches, as bounded in bytes
        max_rows = COPY_BATCH_ROWS if connection.vendor == "postgresql" else IMPORT_BATCH_ROWS
        with transaction.atomic():
            for batch in _sized_batches(rows, max_rows):
                done += len(batch)
                batch = _dedupe(batch)
                existing = memory.l3.upsert_rows(batch)
                report.updated += existing
                report.created += len(batch) - existing
                batch_keys = [(r["product_id"], r["kind"]) for r in batch]
                # Dropped from this process's tiers now, and evicted everywhere after
                # the commit (until then a reader may refill a cache from the old row).
                # Not memory.evict() here: it queues a broadcast per call until commit.
                if memory.l2 is not None:
                    memory.l2.delete_many(batch_keys)
                memory.l1.delete_many(batch_keys)
                written.writelines(json.dumps(key) + "\n" for key in batch_keys)
                if on_progress:
                    on_progress("write", done, total)
        written.seek(0)
        keys: list[tuple[str, str]] = []
        for line in written:
            keys.append(tuple(json.loads(line)))
            if len(keys) >= IMPORT_BATCH_ROWS:
                memory.evict(keys)
                keys = []
        if keys:
            memory.evict(keys)
