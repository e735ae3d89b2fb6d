"""Importing entries: ``manage_memory import`` and ``restore`` (and so the backups) read
through :func:`import_entries`.

- Rows are read by :mod:`memory.io.readers` and cleaned by :func:`memory.io.schema.clean_row`,
  the one row schema the admin's import uses too.
- All or nothing, in one pass: rows are upserted on ``(product_id, kind)`` in batches, as they
  are read and cleaned, inside one transaction (on PostgreSQL each batch by ``COPY``,
  :meth:`DatabaseTier.upsert_rows`); if any row is bad, the rest of the file is still read to
  report each bad row by number, and the transaction is rolled back: nothing is written. When a
  key appears twice in a file, the later row wins. Cached copies (Redis, L1) of the imported
  keys are evicted after the commit so that no stale copy survives.
- Each row brings its approval and its history (``DatabaseTier.upsert_rows``): an entry new
  here takes the file's versions; one already here keeps its own, and a content it did not
  hold becomes its newest version, of origin ``imported``.
- It streams, so memory stays bounded however many rows the file holds: a batch at a time, and
  the keys written in a temporary file until their eviction.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
from contextlib import contextmanager
from queue import Full, Queue
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator

import orjson
from django.db import connection, transaction
from django.utils import timezone

from memory.engine.memory import ProductMemory
from memory.engine.tiers import DatabaseTier
from memory.engine.validators import json_text
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
    return 512 + len(json_text(row["payload"])) + len(json_text(row["source_data"])) + sum(
        256 + len(json_text(v["payload"])) for v in versions)


def _batches(rows: Iterable[dict], max_rows: int = IMPORT_BATCH_ROWS) -> Iterator[list[dict]]:
    """Batches of at most ``max_rows`` rows and about ``IMPORT_BATCH_BYTES``."""
    batch: list[dict] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += _row_bytes(row)
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
    """Validate every row of a file and (unless ``dry_run``) upsert them, all or nothing.

    ``source`` is a path or a file object (binary or text); ``fmt`` one of
    :data:`~memory.io.formats.IMPORT_FORMATS`, or None to take it from the file name. Raises
    :class:`~memory.io.schema.ImportFileError` (a ``ValueError``) when the file as a whole
    cannot be read; bad rows are reported in the returned :class:`ImportReport`, and then
    nothing is written.
    """
    src = Source(source)
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
            try:
                _write(valid_rows(), report, on_progress)
            except _Refused:
                pass  # rolled back: nothing of the file was kept
        if on_progress:
            on_progress("validate", report.rows, report.rows)
        if report.error_count:
            report.created = report.updated = 0
            # The caller's bad file, reported to it: no operational warning.
            logger.info("Importação recusada: %d registros inválidos em %s; nada foi gravado",
                        report.error_count, src.name or "arquivo")
            return report
        if not dry_run and report.rows:
            logger.info("Importação gravada no PostgreSQL: %d entradas criadas, %d atualizadas (%s)",
                        report.created, report.updated, src.name or "arquivo")
        return report
    finally:
        src.close()


READ_AHEAD_BATCHES = 1


@contextmanager
def _read_ahead(batches: Iterator[list[dict]], depth: int = READ_AHEAD_BATCHES) -> Iterator[Iterator[list[dict]]]:
    """``batches`` read and cleaned in a thread of their own (``memory-import-reader``), at most
    ``depth`` ahead of the writer: the next batch is parsed while the database takes the last
    one (the write waits on PostgreSQL for about as long as the rows take to read; see
    docs/benchmarks.md). What the reading raises is raised to the writer; a writer that stops
    early stops the thread. The reader touches no database connection."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as exc:  # handed to the writer, which raises it
            offer(exc)

    def received() -> Iterator[list[dict]]:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item

    reader = threading.Thread(target=read, name="memory-import-reader", daemon=True)
    reader.start()
    try:
        yield received()
    finally:
        stop.set()
        reader.join()


class _Refused(Exception):
    """A bad row was read: what the import wrote is rolled back."""


def _write(rows: Iterator[dict], report: ImportReport, on_progress: Progress | None) -> None:
    """Upsert ``rows`` (valid ones, as the reader cleans them) in batches inside one transaction,
    while no bad row was read; after one, the rest of the file is still read, to report every bad
    row, and :class:`_Refused` rolls the transaction back. Cached copies of the keys written are
    evicted after the commit."""
    memory = ProductMemory()
    done = 0

    # The keys written are spilled to a temporary file, to evict them again
    # after the commit without holding a million keys in memory.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as written:
        # PostgreSQL takes a batch by COPY (DatabaseTier.upsert_rows): bigger batches, as bounded in bytes
        max_rows = COPY_BATCH_ROWS if connection.vendor == "postgresql" else IMPORT_BATCH_ROWS
        with transaction.atomic(), _read_ahead(_batches(rows, max_rows)) as batches:
            for batch in batches:
                if report.error_count:
                    continue  # nothing more is written; the rows are still read for their errors
                done += len(batch)
                batch = _dedupe(batch)
                existing = memory.l3.upsert_rows(batch)
                report.updated += existing
                report.created += len(batch) - existing
                # Evicted from every tier once committed: until then the old row is the one
                # readers get, and may cache (not memory.evict() here: it would queue a
                # broadcast per batch until the commit).
                written.writelines(orjson.dumps([r["product_id"], r["kind"]]).decode() + "\n" for r in batch)
                if on_progress:
                    on_progress("write", done, None)
            if report.error_count:
                raise _Refused
        written.seek(0)
        keys: list[tuple[str, str]] = []
        for line in written:
            keys.append(tuple(orjson.loads(line)))
            if len(keys) >= IMPORT_BATCH_ROWS:
                memory.evict(keys)
                keys = []
        if keys:
            memory.evict(keys)
