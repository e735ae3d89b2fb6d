"""Reading import files and catalogs: JSON, JSONL, CSV and XLSX, plain or gzipped, one raw row at a time.

A :class:`Source` can be read more than once (the import validates a whole file before it
writes any row); :func:`read_rows` yields ``(number, raw row)`` pairs, numbers counting entries
from 1 (a CSV/XLSX header is not counted), in bounded memory (``ijson`` for JSON arrays) however
many rows the file holds. A row that cannot even be parsed comes as a :class:`RowError`, a file
that cannot be read raises :class:`ImportFileError`.

A hostile file is refused with one :class:`ImportFileError` line before it costs more than the
limits (settings, README): ``MEMORY_IMPORT_MAX_BYTES`` of content in all (counted as it is
decompressed), ``MEMORY_IMPORT_MAX_LINE_BYTES`` per line or record (counted before the line is
built), ``MEMORY_IMPORT_MAX_FIELD_BYTES`` per CSV field or XLSX cell. An XLSX is checked before
it is parsed: the uncompressed sizes its zip declares (which :mod:`zipfile` enforces), every XML
part scanned for a DOCTYPE or ENTITY (refused: no entity is ever expanded) and for text longer than
the field limit; then every row is read, whatever dimension the sheet declares.

CSV: the delimiter (``,`` ``;`` or tab) is sniffed from the header line; the text is UTF-8 (with or
without BOM), or else Windows-1252, what Excel saves (a byte it leaves undefined reads as Latin-1).
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import re
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator
from xml.etree.ElementTree import ParseError

import ijson
import orjson
from django.conf import settings

from memory.io.formats import from_spreadsheet_text
from memory.io.schema import ImportFileError, RowError, check_header


CHUNK = 1024 * 1024
# The parts of a workbook openpyxl parses whole into memory (shared strings, styles, the workbook,
# relationships…), as any XLSX reader does; only worksheets are streamed. 32 MiB of XML holds
# the shared strings of a ~15,000-row admin export and costs at most ~150 MB once parsed.
XLSX_MAX_WHOLE_PART_BYTES = 32 * 1024 * 1024
WHOLE_READ_LIMIT = 16 * 1024 * 1024
_WORKSHEET_PART = re.compile(r"^xl/worksheets/[^/]+\.xml$")


def _too_big() -> ImportFileError:
    limit = settings.MEMORY_IMPORT_MAX_BYTES
    return ImportFileError(f"arquivo grande demais: mais de {_mib(limit)} de conteúdo "
                           f"(descompactado; limite MEMORY_IMPORT_MAX_BYTES = {limit} bytes)")


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB".replace(".", ",")


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
            while chunk := source.read(CHUNK):
                if self._spooled.tell() > settings.MEMORY_IMPORT_MAX_BYTES:
                    raise _too_big()
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
                    yield _Bounded(unzipped, settings.MEMORY_IMPORT_MAX_BYTES)
            else:
                yield _Bounded(raw, settings.MEMORY_IMPORT_MAX_BYTES)


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


class _Bounded(io.RawIOBase):
    """The content of a file as it is read (decompressed), refused past ``limit`` bytes.

    What counts is the furthest position reached, so a reader that seeks (a zip) pays once for
    what it reads twice."""

    def __init__(self, stream: IO[bytes], limit: int):
        self._s = stream
        self._limit = limit
        self._pos = 0
        self._furthest = 0

    def readable(self):
        return True

    def seekable(self):
        return _seekable(self._s)

    def _advance(self, n: int) -> None:
        self._pos += n
        if self._pos > self._furthest:
            self._furthest = self._pos
            if self._furthest > self._limit:
                raise _too_big()

    def read(self, size=-1):
        if size is None or size < 0:
            # Only zipfile reads "the rest": a zip's last 64 KiB, where its directory is. On a
            # stream that never ends (/dev/zero) that read is refused instead of filling memory.
            parts, total = [], 0
            while chunk := self.read(CHUNK):
                parts.append(chunk)
                total += len(chunk)
                if total > WHOLE_READ_LIMIT:
                    raise ImportFileError(f"arquivo ilegível: fim não encontrado após {_mib(WHOLE_READ_LIMIT)}")
            return b"".join(parts)
        data = self._s.read(min(size, self._limit + 1))
        self._advance(len(data))
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset, whence=io.SEEK_SET):
        self._pos = self._s.seek(offset, whence)
        return self._pos

    def tell(self):
        return self._pos

    def close(self):
        pass  # the stream belongs to Source.open_binary


class _TooLong(Exception):
    """A line or record past ``MEMORY_IMPORT_MAX_LINE_BYTES``; the reader says which one."""


def _too_long(after: int) -> ImportFileError:
    limit = settings.MEMORY_IMPORT_MAX_LINE_BYTES
    return ImportFileError(f"registro {after + 1}: linha ou registro com mais de {_mib(limit)} "
                           f"(limite MEMORY_IMPORT_MAX_LINE_BYTES = {limit} bytes)")


class _RecordGuard:
    """Refuses to read on once one record of a JSON array passes the line limit.

    ijson builds a whole string (or a run of whitespace) before it yields anything, so the
    bytes read since the last item are counted here and the read stops at the limit."""

    def __init__(self, stream: IO[bytes], limit: int):
        self._s = stream
        self._limit = limit
        self._since = 0

    def item_done(self) -> None:
        self._since = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit + 1
        data = self._s.read(size)
        self._since += len(data)
        if self._since > self._limit:
            raise _TooLong()
        return data


_LINE_BREAKS = re.compile(rb"[\r\n]+")


def _lines(binary: IO[bytes], limit: int) -> Iterator[bytes]:
    """The lines of ``binary``, each with its end of line; raises :class:`_TooLong` as soon as
    one passes ``limit`` bytes, before building it. A run of empty lines comes as one item, so
    that a file of newlines costs one step per chunk, not per line."""
    parts: list[bytes] = []   # the start of a line longer than what was read so far
    pending = 0
    while chunk := binary.read(CHUNK):
        start = 0
        end = len(chunk)
        while start < end:
            if not parts:
                run = _LINE_BREAKS.match(chunk, start)
                if run:
                    empty_end = chunk.rfind(b"\n", start, run.end()) + 1
                    if empty_end > start:
                        yield chunk[start:empty_end]
                        start = empty_end
                        continue
            newline = chunk.find(b"\n", start)
            if newline == -1:
                pending += end - start
                if pending > limit:
                    raise _TooLong()
                parts.append(chunk[start:])
                break
            pending += newline + 1 - start
            if pending > limit:
                raise _TooLong()
            parts.append(chunk[start:newline + 1])
            yield b"".join(parts)
            parts, pending = [], 0
            start = newline + 1
    if parts:
        yield b"".join(parts)


def _windows_1252_or_latin_1(error: UnicodeDecodeError) -> tuple[str, int]:
    # The five bytes Windows-1252 leaves undefined read as Latin-1 (C1 controls), as browsers do.
    return error.object[error.start:error.end].decode("latin-1"), error.end


codecs.register_error("memory-cp1252-latin1", _windows_1252_or_latin_1)


class _Decoder:
    """Lines of bytes to text: UTF-8 (BOM dropped) until a line is not, then Windows-1252."""

    def __init__(self):
        self.encoding = "utf-8"
        self._seen_non_ascii = False

    def __call__(self, line: bytes) -> str:
        if self.encoding == "utf-8":
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                if self._seen_non_ascii:
                    raise ImportFileError("codificação mista: parte do arquivo é UTF-8 e parte não") from None
                self.encoding = "cp1252"
            else:
                self._seen_non_ascii = self._seen_non_ascii or not line.isascii()
                return text
        return line.decode("cp1252", errors="memory-cp1252-latin1")


Header = Callable[[list], list[str]]
"""Checks a CSV/XLSX header and returns the column names (or raises ImportFileError)."""
RawRows = Iterator[tuple[int, Any]]


def _read_jsonl(binary: IO[bytes], header: Header) -> RawRows:
    number = 0
    try:
        for line in _lines(binary, settings.MEMORY_IMPORT_MAX_LINE_BYTES):
            if number == 0 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]
            if not line.strip():
                continue
            number += 1
            try:
                yield number, _json_value(line)
            except json.JSONDecodeError as exc:
                yield number, RowError({None: f"JSON inválido ({exc.msg}, coluna {exc.colno})"})
            except RecursionError:
                yield number, RowError({None: "JSON inválido (aninhado demais)"})
    except _TooLong:
        raise _too_long(number) from None


def _json_value(line: bytes) -> Any:
    """A line's JSON value, read by orjson (1.7× json's speed on a 3 KB row), or by json where orjson
    refuses it: json reads NaN, integers past 64 bits and lone surrogates, which the row's checks then
    name, and words its errors as the reports always have."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line.decode("utf-8"))


def _read_json(binary: IO[bytes], header: Header) -> RawRows:
    head = binary.read(4096)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head.lstrip().startswith(b"["):
        raise ImportFileError("arquivo JSON deve conter uma lista de objetos ([{...}, ...])")
    guard = _RecordGuard(_Prepended(head, binary), settings.MEMORY_IMPORT_MAX_LINE_BYTES)
    number = 0
    try:
        for number, item in enumerate(ijson.items(guard, "item", use_float=True), start=1):
            yield number, item
            guard.item_done()
    except _TooLong:
        raise _too_long(number) from None
    except ijson.JSONError as exc:
        raise ImportFileError(f"JSON inválido após o registro {number}: {exc}") from None
    except UnicodeDecodeError:
        raise ImportFileError("o arquivo não está em UTF-8") from None


def _sniff_delimiter(header_line: str) -> str:
    try:
        return csv.Sniffer().sniff(header_line, delimiters=",;\t").delimiter
    except csv.Error:  # one column: nothing to tell
        return ","


def _read_csv(binary: IO[bytes], header: Header) -> RawRows:
    field_limit = settings.MEMORY_IMPORT_MAX_FIELD_BYTES
    record_limit = settings.MEMORY_IMPORT_MAX_LINE_BYTES
    csv.field_size_limit(field_limit)
    decode = _Decoder()
    record_bytes = 0
    number = 0

    def text_lines() -> Iterator[str]:
        nonlocal record_bytes
        for line in _lines(binary, record_limit):
            record_bytes += len(line)
            if record_bytes > record_limit:  # one row over many lines (quoted line breaks)
                raise _TooLong()
            yield decode(line)

    lines = text_lines()
    reader = csv.reader(())
    try:
        first = next(lines, None)
        while first is not None and not first.strip():
            first = next(lines, None)
            record_bytes = 0
        if first is None:
            raise ImportFileError("arquivo CSV vazio")
        first = first.removeprefix("\ufeff")
        delimiter = _sniff_delimiter(first.strip("\r\n"))
        reader = csv.reader(_chain(first, lines), delimiter=delimiter)
        columns = header(next(reader))
        record_bytes = 0
        for cells in reader:
            record_bytes = 0
            if not any(c.strip() for c in cells):
                continue
            number += 1
            if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns):]):
                yield number, RowError({None: f"mais colunas ({len(cells)}) que o cabeçalho ({len(columns)})"})
                continue
            yield number, dict(zip(columns, cells))
    except _TooLong:
        raise _too_long(number) from None
    except csv.Error as exc:
        if "field limit" in str(exc):
            raise ImportFileError(f"registro {number + 1}: campo com mais de {field_limit} caracteres "
                                  f"(limite MEMORY_IMPORT_MAX_FIELD_BYTES)") from None
        raise ImportFileError(f"CSV inválido na linha {reader.line_num}: {exc}") from None


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _refuse_xlsx(reason: str) -> ImportFileError:
    return ImportFileError(f"planilha XLSX recusada: {reason}")


def check_xlsx(binary: IO[bytes]) -> None:
    """Refuse (:class:`ImportFileError`) a workbook whose parsing would pass the limits or expand
    an entity, before openpyxl reads any of it; leaves ``binary`` at its start."""
    field_limit = settings.MEMORY_IMPORT_MAX_FIELD_BYTES
    try:
        with zipfile.ZipFile(binary) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if total > settings.MEMORY_IMPORT_MAX_BYTES:
                raise _refuse_xlsx(f"{_mib(total)} descompactados, mais que o limite MEMORY_IMPORT_MAX_BYTES "
                                   f"({settings.MEMORY_IMPORT_MAX_BYTES} bytes)")
            for member in members:
                if member.file_size > XLSX_MAX_WHOLE_PART_BYTES and not _WORKSHEET_PART.match(member.filename):
                    raise _refuse_xlsx(f"a parte {member.filename!r} tem {_mib(member.file_size)} descompactados, "
                                       f"mais que os {_mib(XLSX_MAX_WHOLE_PART_BYTES)} lidos de uma vez")
                with archive.open(member) as part:
                    _scan_xml_part(member.filename, part, field_limit)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
            ValueError) as exc:
        if isinstance(exc, ImportFileError):
            raise
        raise ImportFileError(f"não é uma planilha XLSX válida ({exc})") from None
    finally:
        binary.seek(0)


_MARKUP_DECLARATIONS = (b"<!DOCTYPE", b"<!ENTITY")


def _scan_xml_part(name: str, part: IO[bytes], field_limit: int) -> None:
    """No DTD (entities are how XXE and the billion laughs work: refused, never expanded), no text
    or tag longer than ``field_limit`` (the parser would build it whole), in one streamed pass."""
    head = part.read(4)
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or b"\x00" in head:
        raise _refuse_xlsx(f"a parte {name!r} não está em UTF-8")
    tail = b""
    since_markup = 0  # bytes since the last "<": the length of the text or tag being read
    data = head
    while data:
        window = tail + data
        if any(marker in window for marker in _MARKUP_DECLARATIONS):
            raise _refuse_xlsx(f"a parte {name!r} declara um DOCTYPE ou ENTITY (entidades XML não são aceitas)")
        tail = window[-16:]
        first = data.find(b"<")
        if first == -1:
            since_markup += len(data)
        else:
            if since_markup + first > field_limit:
                break
            since_markup = len(data) - data.rfind(b"<") - 1
        if since_markup > field_limit:
            break
        # Chunks no longer than the limit: a run inside one is then never longer than the limit.
        data = part.read(min(CHUNK, field_limit))
    else:
        return
    raise _refuse_xlsx(f"a parte {name!r} tem uma célula ou texto com mais de {field_limit} bytes "
                       f"(limite MEMORY_IMPORT_MAX_FIELD_BYTES)")


def xlsx_rows(binary: IO[bytes]) -> Iterator[tuple]:
    """Every row of the first sheet as a tuple of values, the header first, after
    :func:`check_xlsx`; every row is read, whatever dimension the sheet declares."""
    # Imported here, not at the top: openpyxl is slow to import (docs/benchmarks.md), and every
    # process that imports or restores a backup would pay it for a format only the admin writes.
    from openpyxl import load_workbook

    check_xlsx(binary)
    try:
        workbook = load_workbook(binary, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, ParseError) as exc:
        raise ImportFileError(f"não é uma planilha XLSX válida ({_one_line(exc)})") from None
    try:
        sheet = workbook.worksheets[0]
        sheet.reset_dimensions()  # the declared dimension is often wrong (or a lie): read to the end
        yield from sheet.iter_rows(values_only=True)
    except ParseError as exc:
        raise ImportFileError(f"planilha XLSX inválida: XML malformado ({_one_line(exc)})") from None
    finally:
        workbook.close()


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _read_xlsx(binary: IO[bytes], header: Header) -> RawRows:
    rows = xlsx_rows(binary)
    first = next(rows, None)
    if first is None:
        raise ImportFileError("planilha vazia")
    columns = header(list(first))
    number = 0
    for cells in rows:
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            continue
        number += 1
        yield number, dict(zip(columns, cells))


def _unescaped(read):
    """A spreadsheet reader whose text cells come back as they were before
    :func:`~memory.io.formats.spreadsheet_text` escaped them."""
    def read_unescaped(binary: IO[bytes], header: Header) -> RawRows:
        for number, row in read(binary, header):
            if isinstance(row, dict):
                row = {name: from_spreadsheet_text(value) for name, value in row.items()}
            yield number, row

    return read_unescaped


_READERS = {"json": _read_json, "jsonl": _read_jsonl,
            "csv": _unescaped(_read_csv), "xlsx": _unescaped(_read_xlsx)}


def read_rows(source: Source, fmt: str, *, header: Header = check_header) -> RawRows:
    """``(number, raw row)`` for every entry of ``source`` read as ``fmt`` (one of ``IMPORT_FORMATS``);
    ``header`` checks the columns of a CSV or XLSX (default: the import's required ones)."""
    with source.open_binary() as binary:
        try:
            yield from _READERS[fmt](binary, header)
        except UnicodeDecodeError:
            raise ImportFileError("o arquivo não está em UTF-8") from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ImportFileError(f"arquivo gzip corrompido ou incompleto ({exc})") from None
        except OSError as exc:
            raise ImportFileError(f"erro ao ler o arquivo ({exc})") from None
