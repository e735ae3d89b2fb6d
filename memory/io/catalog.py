"""Reading product catalogs (CSV, JSON, JSONL) for the catalog run, row by row."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CATALOG_FORMATS = ("csv", "json", "jsonl")


@dataclass(frozen=True)
class CatalogRow:
    """One row: its product data, or why it could not be read. ``number`` is what a person sees
    (the line in CSV and JSONL, counting the header; the position in a JSON array)."""

    number: int
    product: dict | None = None
    error: str | None = None


def detect_format(path: Path, fmt: str | None = None) -> str:
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in CATALOG_FORMATS:
        raise ValueError(f"format: use um de {', '.join(CATALOG_FORMATS)} (recebido {fmt or 'nenhum'!r})")
    return fmt


def _clean(record: dict) -> dict:
    return {k.strip(): v.strip() if isinstance(v, str) else v
            for k, v in record.items() if k and v not in (None, "")}


def read_catalog(path: Path, fmt: str | None = None) -> Iterator[CatalogRow]:
    """Yield the catalog's rows; unreadable ones carry an error instead of product data."""
    fmt = detect_format(path, fmt)
    with path.open(encoding="utf-8-sig", newline="") as f:
        if fmt == "csv":
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                return
            for record in reader:
                if None in record:
                    yield CatalogRow(reader.line_num, error="mais colunas que o cabeçalho")
                    continue
                yield CatalogRow(reader.line_num, product=_clean(record))
        elif fmt == "jsonl":
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    yield CatalogRow(number, error=f"JSON inválido ({exc.msg})")
                    continue
                yield _object_row(number, record)
        else:
            try:
                records = json.load(f)
            except ValueError as exc:
                raise ValueError(f"arquivo: JSON inválido na linha {exc.lineno}: {exc.msg}") from None
            if not isinstance(records, list):
                raise ValueError("arquivo: um catálogo JSON deve ser uma lista de produtos")
            for number, record in enumerate(records, start=1):
                yield _object_row(number, record)


def _object_row(number: int, record) -> CatalogRow:
    if not isinstance(record, dict):
        return CatalogRow(number, error=f"deve ser um objeto, recebido {type(record).__name__}")
    return CatalogRow(number, product=_clean(record))
