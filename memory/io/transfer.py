"""Export and import of memory entries: the one place that defines the file formats.

Every exporter (``manage_memory export``, ``GET /api/memory/export/``, the backups)
writes through :func:`iter_export`; every importer (``manage_memory import`` and
``restore``) reads through :func:`import_entries`. What one writes, the other reads.

Formats
-------
Each entry has the columns :data:`EXPORT_FIELDS` (``title`` is left out: the
database derives it from ``payload.title``). Datetimes are ISO 8601 with offset
(``2026-11-25T16:30:00.123456+00:00``).

- ``json``: one JSON array of objects.
- ``jsonl``: one JSON object per line.
- ``csv``: a header row, then one row per entry; ``payload`` and ``source_data``
  hold JSON text, an empty cell is "no value".
- ``xlsx`` (import only): what the Django admin (django-import-export) writes:
  the same column names, first sheet, header in the first row.

Importing
---------
- Columns other than :data:`EXPORT_FIELDS` (``id``, ``title``, ``status``…) are ignored.
- ``payload`` and ``source_data`` may be JSON objects or JSON text holding an object.
- Required: ``product_id`` and ``payload`` (an object within ``MEMORY_MAX_PAYLOAD_BYTES``).
  Empty optional cells get defaults: ``kind`` = ``main_content``; ``source_data`` = ``{}``;
  ``input_fingerprint`` = the fingerprint of ``source_data``; ``generator_version`` =
  the current generator; counters = 0; ``created_at``/``updated_at`` = now;
  ``last_hit_at`` = none; ``expires_at`` = now + ``MEMORY_DEFAULT_TTL``.
- Datetimes without an offset (the admin's CSV and XLSX write local time) are read in
  ``TIME_ZONE``.
- Row numbers count entries from 1 (a CSV/XLSX header is not counted).
- All or nothing: a first pass validates every row; if any is bad, nothing is
  written and each bad row is reported by number. A second pass upserts on
  ``(product_id, kind)`` in batches inside one transaction; when a key appears
  twice in a file, the later row wins. Cached copies (Redis, L1) of the imported
  keys are evicted so that no stale copy survives.
- Both passes stream (``ijson`` for JSON arrays), so memory stays bounded however
  many rows the file holds. A gzipped file (a backup) is recognised by its content.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone as dt_timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from memory.engine.identifiers import input_fingerprint
from memory.models import DEFAULT_KIND, ProductMemoryEntry
from memory.providers.prompts import current_generator_version

logger = logging.getLogger("memory")

EXPORT_FIELDS = [
    "product_id", "kind", "payload", "source_data", "input_fingerprint", "generator_version",
    "tokens_prompt", "tokens_completion", "hit_count", "tokens_saved",
    "created_at", "updated_at", "last_hit_at", "expires_at",
]
EXPORT_FORMATS = ("json", "jsonl", "csv")
IMPORT_FORMATS = ("json", "jsonl", "csv", "xlsx")

JSON_FIELDS = ("payload", "source_data")
DATETIME_FIELDS = ("created_at", "updated_at", "last_hit_at", "expires_at")
INT_LIMITS = {
    "tokens_prompt": 2_147_483_647,
    "tokens_completion": 2_147_483_647,
    "hit_count": 9_223_372_036_854_775_807,
    "tokens_saved": 9_223_372_036_854_775_807,
}

_CONTENT_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}
_EXTENSIONS = {"json": "json", "jsonl": "jsonl", "ndjson": "jsonl", "csv": "csv", "xlsx": "xlsx"}

EXPORT_CHUNK_ROWS = 500           # rows fetched per round trip to PostgreSQL
EXPORT_YIELD_BYTES = 256 * 1024   # text gathered before a chunk is yielded
IMPORT_BATCH_ROWS = 500           # rows per INSERT … ON CONFLICT
IMPORT_BATCH_BYTES = 8 * 1024 * 1024
MAX_REPORTED_ERRORS = 1000

Progress = Callable[[str, int, "int | None"], None]
"""``on_progress(stage, done, total)``; stages: ``export``, ``validate``, ``write``."""


# -- export -----------------------------------------------------------------------


def _check_format(fmt: Any, allowed: tuple[str, ...]) -> str:
    if fmt not in allowed:
        raise ValueError(f"format: deve ser um de {', '.join(allowed)}, recebido {fmt!r}")
    return fmt


def _check_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit: deve ser um inteiro positivo, recebido {limit!r}")
    return limit


def content_type(fmt: str) -> str:
    """The HTTP Content-Type of an export format."""
    return _CONTENT_TYPES[_check_format(fmt, EXPORT_FORMATS)]


def filename_extension(fmt: str) -> str:
    """The file name extension of a format, without the dot (``json``, ``jsonl``, ``csv``, ``xlsx``)."""
    return _EXTENSIONS[_check_format(fmt, IMPORT_FORMATS)]


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


def _export_queryset(limit: int | None, queryset: QuerySet | None) -> QuerySet:
    qs = queryset if queryset is not None else ProductMemoryEntry.objects.all()
    qs = qs.order_by("id").values_list(*EXPORT_FIELDS)
    return qs[:limit] if limit else qs


def export_count(*, limit: int | None = None, queryset: QuerySet | None = None) -> int:
    """How many entries an export with these arguments writes (for progress bars)."""
    limit = _check_limit(limit)
    qs = queryset if queryset is not None else ProductMemoryEntry.objects.all()
    total = qs.count()
    return min(total, limit) if limit else total


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _as_dict(row: tuple) -> dict:
    return {name: _plain(value) for name, value in zip(EXPORT_FIELDS, row)}


def _csv_cell(name: str, value: Any) -> Any:
    if value is None:
        return ""
    if name in JSON_FIELDS:
        return json.dumps(value, ensure_ascii=False)
    return _plain(value)


def iter_export_batches(fmt: str, *, limit: int | None = None,
                        queryset: QuerySet | None = None) -> Iterator[tuple[str, int]]:
    """Like :func:`iter_export`, yielding ``(text, entries_in_text)`` for progress reporting."""
    _check_format(fmt, EXPORT_FORMATS)
    limit = _check_limit(limit)
    rows = _export_queryset(limit, queryset).iterator(chunk_size=EXPORT_CHUNK_ROWS)

    parts: list[str] = []
    size = 0
    count = 0
    csv_buffer = io.StringIO()
    csv_writer = csv.writer(csv_buffer, lineterminator="\n")

    if fmt == "csv":
        csv_writer.writerow(EXPORT_FIELDS)
    elif fmt == "json":
        parts.append("[")

    first = True
    for row in rows:
        if fmt == "csv":
            csv_writer.writerow([_csv_cell(n, v) for n, v in zip(EXPORT_FIELDS, row)])
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
    _check_format(fmt, EXPORT_FORMATS)
    limit = _check_limit(limit)
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


# -- import: reading files ------------------------------------------------------------


class ImportFileError(ValueError):
    """The file as a whole cannot be read (unreadable, not the format it claims, no header…)."""


class _RowError(ValueError):
    pass


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


class _Source:
    """A file that can be opened more than once (one pass validates, the next one writes)."""

    def __init__(self, source: Any):
        self._spooled = None
        if isinstance(source, (str, os.PathLike)):
            self.path: Path | None = Path(source)
            self.name = str(source)
            self._stream = None
            try:
                with open(self.path, "rb"):
                    pass
            except OSError as exc:
                raise ImportFileError(f"input_file: não foi possível ler {self.name} ({exc.strerror or exc})") from None
            return
        self.path = None
        self.name = str(getattr(source, "name", "") or "")
        if isinstance(source, io.TextIOBase) or not _seekable(source):
            # A text stream, or one that cannot rewind (stdin, a socket): keep a copy.
            self._spooled = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
            while chunk := source.read(1024 * 1024):
                self._spooled.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            self._stream = self._spooled
            self._start = 0
        else:
            self._stream = source
            self._start = source.tell()

    def close(self) -> None:
        if self._spooled is not None:
            self._spooled.close()

    @contextmanager
    def open_raw(self) -> Iterator[IO[bytes]]:
        if self.path is not None:
            with open(self.path, "rb") as stream:
                yield stream
        else:
            self._stream.seek(self._start)
            yield _Unclosable(self._stream)

    @contextmanager
    def open_binary(self) -> Iterator[IO[bytes]]:
        """The content, gunzipped when it is gzip."""
        with self.open_raw() as raw:
            magic = raw.read(2)
            raw.seek(-len(magic), io.SEEK_CUR)
            if magic == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    yield unzipped
            else:
                yield raw


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False


class _Unclosable(io.BufferedIOBase):
    """Lets a reader wrap a caller's stream without closing it."""

    def __init__(self, stream):
        self._s = stream

    def readable(self):
        return True

    def seekable(self):
        return True

    def read(self, size=-1):
        return self._s.read(size)

    def read1(self, size=-1):
        return self._s.read(size)

    def readinto(self, buffer):
        data = self._s.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset, whence=io.SEEK_SET):
        return self._s.seek(offset, whence)

    def tell(self):
        return self._s.tell()

    def close(self):
        pass


class _Prepended:
    """A stream whose first bytes were already read (to look at them) and are given back."""

    def __init__(self, head: bytes, rest: IO[bytes]):
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)


RawRows = Iterator[tuple[int, Any]]


def _read_jsonl(binary: IO[bytes]) -> RawRows:
    text = io.TextIOWrapper(binary, encoding="utf-8-sig")
    number = 0
    for line in text:
        if not line.strip():
            continue
        number += 1
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _RowError(f"JSON inválido ({exc.msg}, coluna {exc.colno})")
        except RecursionError:
            yield number, _RowError("JSON inválido (aninhado demais)")


def _read_json(binary: IO[bytes]) -> RawRows:
    import ijson

    head = binary.read(4096)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head.lstrip().startswith(b"["):
        raise ImportFileError("arquivo JSON deve conter uma lista de objetos ([{...}, ...])")
    number = 0
    try:
        for number, item in enumerate(ijson.items(_Prepended(head, binary), "item", use_float=True), start=1):
            yield number, item
    except ijson.JSONError as exc:
        raise ImportFileError(f"JSON inválido após o registro {number}: {exc}") from None
    except UnicodeDecodeError:
        raise ImportFileError("o arquivo não está em UTF-8") from None


def _check_header(header: list[str]) -> list[str]:
    header = [str(h).strip() if h is not None else "" for h in header]
    missing = [name for name in ("product_id", "payload") if name not in header]
    if missing:
        raise ImportFileError(f"cabeçalho sem a(s) coluna(s) obrigatória(s): {', '.join(missing)}")
    return header


def _read_csv(binary: IO[bytes]) -> RawRows:
    # A payload may be up to MEMORY_MAX_PAYLOAD_BYTES of JSON text in one cell.
    csv.field_size_limit(max(csv.field_size_limit(), settings.MEMORY_MAX_PAYLOAD_BYTES * 8))
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None:
            raise ImportFileError("arquivo CSV vazio")
        header = _check_header(header)
        for number, cells in enumerate(reader, start=1):
            if not any(c.strip() for c in cells):
                continue
            yield number, dict(zip(header, cells))
    except csv.Error as exc:
        raise ImportFileError(f"CSV inválido na linha {reader.line_num}: {exc}") from None


def _read_xlsx(binary: IO[bytes]) -> RawRows:
    import zipfile

    from openpyxl import load_workbook

    try:
        workbook = load_workbook(binary, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ImportFileError(f"não é uma planilha XLSX válida ({exc})") from None
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise ImportFileError("planilha vazia")
        header = _check_header(list(header))
        for number, cells in enumerate(rows, start=1):
            if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                continue
            yield number, dict(zip(header, cells))
    finally:
        workbook.close()


_READERS = {"json": _read_json, "jsonl": _read_jsonl, "csv": _read_csv, "xlsx": _read_xlsx}


def _read_rows(source: _Source, fmt: str) -> RawRows:
    with source.open_binary() as binary:
        try:
            yield from _READERS[fmt](binary)
        except UnicodeDecodeError:
            raise ImportFileError("o arquivo não está em UTF-8") from None
        except (EOFError, gzip.BadGzipFile) as exc:
            raise ImportFileError(f"arquivo gzip corrompido ou incompleto ({exc})") from None
        except OSError as exc:
            raise ImportFileError(f"erro ao ler o arquivo ({exc})") from None


# -- import: validating rows -----------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(name: str, value: Any, max_length: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _RowError(f"{name}: deve ser texto")
    if isinstance(value, float):
        if not value.is_integer():
            raise _RowError(f"{name}: deve ser texto, recebido o número {value!r}")
        value = int(value)
    value = str(value).strip()
    if "\x00" in value:
        raise _RowError(f"{name}: contém o caractere nulo")
    if len(value) > max_length:
        raise _RowError(f"{name}: no máximo {max_length} caracteres")
    return value


def _json_object(name: str, value: Any, max_bytes: int) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _RowError(f"{name}: JSON inválido ({exc.msg})") from None
        except RecursionError:
            raise _RowError(f"{name}: JSON aninhado demais") from None
    if not isinstance(value, dict):
        raise _RowError(f"{name}: deve ser um objeto JSON, recebido {type(value).__name__}")
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise _RowError(f"{name}: contém NaN ou Infinity, que o JSON não admite") from None
    except RecursionError:
        raise _RowError(f"{name}: JSON aninhado demais") from None
    if "\\u0000" in encoded:
        raise _RowError(f"{name}: contém o caractere nulo (\\u0000), que o PostgreSQL não aceita")
    size = len(encoded.encode())
    if size > max_bytes:
        raise _RowError(f"{name}: {size} bytes excede o limite de {max_bytes} bytes")
    return value


def _int(name: str, value: Any) -> int:
    if _blank(value):
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _RowError(f"{name}: deve ser um inteiro, recebido {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _RowError(f"{name}: deve ser um inteiro, recebido {value!r}")
    if value < 0:
        raise _RowError(f"{name}: não pode ser negativo, recebido {value}")
    if value > INT_LIMITS[name]:
        raise _RowError(f"{name}: acima do máximo de {INT_LIMITS[name]}")
    return value


def _datetime(name: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise _RowError(f"{name}: data/hora inválida {value!r} (use ISO 8601, ex. 2026-11-25T16:30:00+00:00)")
    else:
        raise _RowError(f"{name}: data/hora inválida {value!r}")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


def clean_row(raw: Any, *, now: datetime | None = None) -> dict:
    """One imported row as model field values; ``ValueError`` naming every bad field."""
    if not isinstance(raw, dict):
        raise _RowError(f"deve ser um objeto, recebido {type(raw).__name__}")
    now = now or timezone.now()
    problems: list[str] = []
    row: dict[str, Any] = {}

    def take(name: str, convert: Callable[[], Any]) -> None:
        try:
            row[name] = convert()
        except _RowError as exc:
            problems.append(str(exc))

    max_bytes = settings.MEMORY_MAX_PAYLOAD_BYTES

    def product_id():
        if _blank(raw.get("product_id")):
            raise _RowError("product_id: obrigatório")
        return _text("product_id", raw["product_id"], 255)

    def payload():
        if _blank(raw.get("payload")):
            raise _RowError("payload: obrigatório")
        return _json_object("payload", raw["payload"], max_bytes)

    take("product_id", product_id)
    take("kind", lambda: DEFAULT_KIND if _blank(raw.get("kind")) else _text("kind", raw["kind"], 64))
    take("payload", payload)
    take("source_data", lambda: {} if _blank(raw.get("source_data"))
         else _json_object("source_data", raw["source_data"], max_bytes))
    for name in INT_LIMITS:
        take(name, lambda name=name: _int(name, raw.get(name)))
    for name in DATETIME_FIELDS:
        take(name, lambda name=name: None if _blank(raw.get(name)) else _datetime(name, raw[name]))
    take("input_fingerprint", lambda: None if _blank(raw.get("input_fingerprint"))
         else _text("input_fingerprint", raw["input_fingerprint"], 64))
    take("generator_version", lambda: None if _blank(raw.get("generator_version"))
         else _text("generator_version", raw["generator_version"], 200))
    if problems:
        raise _RowError("; ".join(problems))

    if row["input_fingerprint"] is None:
        row["input_fingerprint"] = input_fingerprint(row["source_data"])
    if row["generator_version"] is None:
        row["generator_version"] = current_generator_version()
    row["created_at"] = row["created_at"] or now
    row["updated_at"] = row["updated_at"] or now
    row["expires_at"] = row["expires_at"] or now + timedelta(seconds=settings.MEMORY_DEFAULT_TTL)
    return row


def _row_bytes(row: dict) -> int:
    # A cheap upper-bound guess, good enough to keep a batch's size bounded.
    return 512 + len(json.dumps(row["payload"], ensure_ascii=False)) + len(
        json.dumps(row["source_data"], ensure_ascii=False))


def _batches(rows: Iterable[dict]) -> Iterator[list[dict]]:
    batch: list[dict] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += _row_bytes(row)
        if len(batch) >= IMPORT_BATCH_ROWS or size >= IMPORT_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _dedupe(batch: list[dict]) -> list[dict]:
    """The later row wins when a key appears twice (one upsert cannot touch a row twice)."""
    by_key = {(r["product_id"], r["kind"]): r for r in batch}
    return list(by_key.values())


def _existing(batch: list[dict]) -> int:
    by_kind: dict[str, list[str]] = {}
    for row in batch:
        by_kind.setdefault(row["kind"], []).append(row["product_id"])
    return sum(
        ProductMemoryEntry.objects.filter(kind=kind, product_id__in=ids).count()
        for kind, ids in by_kind.items()
    )


UPDATE_FIELDS = [f for f in EXPORT_FIELDS if f not in ("product_id", "kind")]


def _upsert(batch: list[dict]) -> int:
    """Insert or update a batch on (product_id, kind); returns how many already existed."""
    existing = _existing(batch)
    ProductMemoryEntry.objects.bulk_create(
        [ProductMemoryEntry(**row) for row in batch],
        update_conflicts=True,
        unique_fields=["product_id", "kind"],
        update_fields=UPDATE_FIELDS,
    )
    return existing


# -- import: the service -----------------------------------------------------------------


def import_entries(source: str | os.PathLike | IO, fmt: str | None = None, *, dry_run: bool = False,
                   on_progress: Progress | None = None) -> ImportReport:
    """Validate a whole file, then (unless ``dry_run`` or a row is bad) upsert every row.

    ``source`` is a path or a file object (binary or text); ``fmt`` one of
    :data:`IMPORT_FORMATS`, or None to take it from the file name. Raises
    :class:`ImportFileError` (a ``ValueError``) when the file as a whole cannot be
    read; bad rows are reported in the returned :class:`ImportReport`, and then
    nothing is written.
    """
    src = _Source(source)
    try:
        if fmt is None:
            fmt = format_from_filename(src.name) if src.name else None
            if fmt is None:
                raise ValueError(f"format: não foi possível deduzir do nome do arquivo; use um de {', '.join(IMPORT_FORMATS)}")
        _check_format(fmt, IMPORT_FORMATS)
        report = ImportReport(format=fmt, dry_run=dry_run)
        now = timezone.now()

        def valid_rows() -> Iterator[dict]:
            """Every row cleaned; bad ones recorded in the report (and skipped)."""
            for number, raw in _read_rows(src, fmt):
                report.rows += 1
                try:
                    if isinstance(raw, _RowError):
                        raise raw
                    yield clean_row(raw, now=now)
                except _RowError as exc:
                    report.error_count += 1
                    if len(report.errors) < MAX_REPORTED_ERRORS:
                        report.errors.append((number, str(exc)))
                if on_progress and report.rows % IMPORT_BATCH_ROWS == 0:
                    on_progress("validate", report.rows, None)

        for batch in _batches(valid_rows()):
            if dry_run and not report.error_count:
                batch = _dedupe(batch)
                existing = _existing(batch)
                report.updated += existing
                report.created += len(batch) - existing
        if on_progress:
            on_progress("validate", report.rows, report.rows)
        if report.error_count:
            report.created = report.updated = 0
            logger.warning("Importação recusada: %d registros inválidos em %s; nada foi gravado",
                           report.error_count, src.name or "arquivo")
            return report
        if dry_run:
            return report

        _write(src, fmt, report, now, on_progress)
        logger.info("Importação concluída: %d entradas criadas, %d atualizadas", report.created, report.updated)
        return report
    finally:
        src.close()


def _write(src: _Source, fmt: str, report: ImportReport, now: datetime, on_progress: Progress | None) -> None:
    from memory.engine.memory import ProductMemory

    memory = ProductMemory()
    total = report.rows
    done = 0

    def rows() -> Iterator[dict]:
        for _, raw in _read_rows(src, fmt):
            yield clean_row(raw, now=now)

    # The keys written are spilled to a temporary file, to evict them again
    # after the commit without holding a million keys in memory.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as written:
        with transaction.atomic():
            for batch in _batches(rows()):
                done += len(batch)
                batch = _dedupe(batch)
                existing = _upsert(batch)
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
