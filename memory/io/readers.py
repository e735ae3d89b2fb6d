"""Reading import files: JSON, JSONL, CSV and XLSX, plain or gzipped, one raw row at a time.

A :class:`Source` can be read more than once (the import validates a whole file before it
writes any row); :func:`read_rows` yields ``(number, raw row)`` pairs, numbers counting entries
from 1 (a CSV/XLSX header is not counted), in bounded memory (``ijson`` for JSON arrays) however
many rows the file holds. A row that cannot even be parsed comes as a :class:`RowError`, a file
that cannot be read raises :class:`ImportFileError`.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import ijson
from django.conf import settings

from memory.io.formats import from_spreadsheet_text
from memory.io.schema import ImportFileError, RowError, check_header


class Source:
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
            yield number, RowError({None: f"JSON inválido ({exc.msg}, coluna {exc.colno})"})
        except RecursionError:
            yield number, RowError({None: "JSON inválido (aninhado demais)"})


def _read_json(binary: IO[bytes]) -> RawRows:
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


def _read_csv(binary: IO[bytes]) -> RawRows:
    # A payload may be up to MEMORY_MAX_PAYLOAD_BYTES of JSON text in one cell.
    csv.field_size_limit(max(csv.field_size_limit(), settings.MEMORY_MAX_PAYLOAD_BYTES * 8))
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None:
            raise ImportFileError("arquivo CSV vazio")
        header = check_header(header)
        for number, cells in enumerate(reader, start=1):
            if not any(c.strip() for c in cells):
                continue
            yield number, dict(zip(header, cells))
    except csv.Error as exc:
        raise ImportFileError(f"CSV inválido na linha {reader.line_num}: {exc}") from None


def _read_xlsx(binary: IO[bytes]) -> RawRows:
    # Imported here, not at the top: openpyxl is slow to import (docs/benchmarks.md), and every
    # process that imports or restores a backup would pay it for a format only the admin writes.
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
        header = check_header(list(header))
        for number, cells in enumerate(rows, start=1):
            if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                continue
            yield number, dict(zip(header, cells))
    finally:
        workbook.close()


def _unescaped(read):
    """A spreadsheet reader whose text cells come back as they were before
    :func:`~memory.io.formats.spreadsheet_text` escaped them."""
    def read_unescaped(binary: IO[bytes]) -> RawRows:
        for number, row in read(binary):
            if isinstance(row, dict):
                row = {name: from_spreadsheet_text(value) for name, value in row.items()}
            yield number, row

    return read_unescaped


_READERS = {"json": _read_json, "jsonl": _read_jsonl,
            "csv": _unescaped(_read_csv), "xlsx": _unescaped(_read_xlsx)}


def read_rows(source: Source, fmt: str) -> RawRows:
    """``(number, raw row)`` for every entry of ``source`` read as ``fmt`` (one of ``IMPORT_FORMATS``)."""
    with source.open_binary() as binary:
        try:
            yield from _READERS[fmt](binary)
        except UnicodeDecodeError:
            raise ImportFileError("o arquivo não está em UTF-8") from None
        except (EOFError, gzip.BadGzipFile) as exc:
            raise ImportFileError(f"arquivo gzip corrompido ou incompleto ({exc})") from None
        except OSError as exc:
            raise ImportFileError(f"erro ao ler o arquivo ({exc})") from None
