"""Reading product catalogs for the catalog run, row by row, through the import's readers.

A catalog is read as an import file is (:mod:`memory.io.readers`): the same formats (CSV, JSON,
JSONL, XLSX, gzipped or not), the same limits on hostile files, the same CSV rules (delimiter
``,`` ``;`` or tab sniffed from the header; UTF-8, else Windows-1252). Only the columns differ:
a CSV or XLSX catalog needs a column that identifies a product (``sku``, ``gtin``, ``ean`` or
``title``), and when it has none the error names the columns it has.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Iterator

from memory.engine.identifiers import GTIN_KEYS
from memory.io.formats import IMPORT_FORMATS, format_from_filename
from memory.io.readers import Source, read_rows
from memory.io.schema import ImportFileError, RowError

CATALOG_FORMATS = IMPORT_FORMATS
IDENTIFIER_COLUMNS = ("sku", *GTIN_KEYS, "title")
_TABLES = ("csv", "xlsx")  # formats with a header row


@dataclass(frozen=True)
class CatalogRow:
    """One row: its product data, or why it could not be read. ``number`` is what a person sees:
    in CSV and XLSX the row counting the header (blank rows are skipped and not counted), in
    JSONL and a JSON array the entry."""

    number: int
    product: dict | None = None
    error: str | None = None


def detect_format(path: Path, fmt: str | None = None) -> str:
    """``fmt``, or the format the file name says (``.gz`` looked through); ``ValueError`` otherwise."""
    fmt = (fmt or format_from_filename(path) or "").lower()
    if fmt not in CATALOG_FORMATS:
        raise ValueError(f"format: use um de {', '.join(CATALOG_FORMATS)} (recebido {fmt or 'nenhum'!r})")
    return fmt


def identifier_header(header: list) -> list[str]:
    """The column names, trimmed; ``ImportFileError`` naming the columns found when none identifies a product."""
    columns = [str(h).strip() if h is not None else "" for h in header]
    if not any(name in IDENTIFIER_COLUMNS for name in columns):
        found = ", ".join(repr(name) for name in columns if name) or "nenhuma"
        raise ImportFileError(
            f"nenhuma coluna que identifique o produto ({', '.join(IDENTIFIER_COLUMNS)}); "
            f"colunas encontradas: {found}"
        )
    return columns


def _cell(value):
    """A spreadsheet cell as JSON holds it: a whole-number float as an integer (a GTIN typed into
    Excel comes back as 7891234567895.0), a date or time as ISO 8601."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return value


def _clean(record: dict, spreadsheet: bool) -> dict:
    if spreadsheet:
        record = {k: _cell(v) for k, v in record.items()}
    return {k.strip(): v.strip() if isinstance(v, str) else v
            for k, v in record.items() if k and v not in (None, "")}


def read_catalog(path: Path, fmt: str | None = None) -> Iterator[CatalogRow]:
    """Yield the catalog's rows; unreadable ones carry an error instead of product data.
    ``ImportFileError`` (a ``ValueError``) when the file as a whole cannot be read."""
    fmt = detect_format(path, fmt)
    source = Source(path)
    try:
        for number, raw in read_rows(source, fmt, header=identifier_header):
            shown = number + 1 if fmt in _TABLES else number
            if isinstance(raw, RowError):
                yield CatalogRow(shown, error=str(raw))
            elif not isinstance(raw, dict):
                yield CatalogRow(shown, error=f"deve ser um objeto, recebido {type(raw).__name__}")
            else:
                yield CatalogRow(shown, product=_clean(raw, spreadsheet=fmt == "xlsx"))
    finally:
        source.close()
