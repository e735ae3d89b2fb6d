"""The one row schema of an import: which columns a file has, and what a valid row is.

``manage_memory import``, ``restore`` (:mod:`memory.io.importer`) and the admin's import
(:mod:`memory.admin.resources`) all clean a row through :func:`clean_row`, so a row one of
them refuses, the others refuse with the same words.

- Columns: :data:`EXPORT_FIELDS` (``title`` is left out: the database derives it from
  ``payload.title``); others (``id``, ``title``, ``status``…) are ignored.
- Required: ``product_id`` (text, at most 255 characters) and ``payload`` (a JSON object, or
  JSON text holding one, within ``MEMORY_MAX_PAYLOAD_BYTES``).
- Text holds no NUL character and JSON no ``\\u0000``, NaN or Infinity (PostgreSQL refuses
  them); a whole-number float from a spreadsheet (``123.0``) is read as ``123``.
- Counters are whole numbers from 0 to the column's maximum (PostgreSQL ``integer`` for the
  token counts, ``bigint`` for the hit counts).
- Datetimes are ISO 8601, a spreadsheet date or datetime; without an offset (the admin's CSV and
  XLSX write local time) they are read in ``TIME_ZONE``.
- Empty optional cells get defaults: ``kind`` = ``main_content``; ``source_data`` = ``{}``;
  ``input_fingerprint`` = the fingerprint of ``source_data``; ``generator_version`` = the current
  generator; ``family_id`` = the product id for a family's base (kind ``family``), else none (content
  of its own, not derived from a family); counters = 0; ``created_at``/``updated_at`` = now; ``last_hit_at`` = none;
  ``expires_at`` = now + ``MEMORY_DEFAULT_TTL``.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone as dt_timezone
from typing import Any, Callable

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from memory.engine import validators
from memory.engine.families import FAMILY_KIND
from memory.engine.identifiers import input_fingerprint
from memory.models import DEFAULT_KIND
from memory.providers.prompts import current_generator_version

EXPORT_FIELDS = [
    "product_id", "kind", "payload", "source_data", "input_fingerprint", "generator_version",
    "tokens_prompt", "tokens_completion", "hit_count", "tokens_saved",
    "created_at", "updated_at", "last_hit_at", "expires_at", "family_id",
]
REQUIRED_COLUMNS = ("product_id", "payload")
JSON_FIELDS = ("payload", "source_data")
DATETIME_FIELDS = ("created_at", "updated_at", "last_hit_at", "expires_at")
INT_LIMITS = {
    "tokens_prompt": validators.INT_MAX,
    "tokens_completion": validators.INT_MAX,
    "hit_count": validators.BIGINT_MAX,
    "tokens_saved": validators.BIGINT_MAX,
}
TEXT_LIMITS = {"product_id": 255, "kind": 64, "input_fingerprint": 64, "generator_version": 200, "family_id": 255}


class ImportFileError(ValueError):
    """The file as a whole cannot be read (unreadable, not the format it claims, no header…)."""


class RowError(ValueError):
    """A row that cannot be imported. ``problems`` maps each bad column to what is wrong with
    it (``None`` for the row as a whole); the message names them all."""

    def __init__(self, problems: dict[str | None, str]):
        self.problems = problems
        super().__init__("; ".join(message if name is None else f"{name}: {message}"
                                   for name, message in problems.items()))


def check_header(header: list) -> list[str]:
    """The column names, trimmed; ``ImportFileError`` when a required one is missing."""
    header = [str(h).strip() if h is not None else "" for h in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ImportFileError(f"cabeçalho sem a(s) coluna(s) obrigatória(s): {', '.join(missing)}")
    return header


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{name}: deve ser texto")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{name}: deve ser texto, recebido o número {value!r}")
        value = int(value)  # a numeric SKU typed into a spreadsheet comes back as 123.0
    return validators.text(name, str(value), max_length=TEXT_LIMITS[name])


def _json_object(name: str, value: Any) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: JSON inválido ({exc.msg})") from None
        except RecursionError:
            raise ValueError(f"{name}: JSON aninhado demais") from None
    return validators.json_object(name, value, max_bytes=settings.MEMORY_MAX_PAYLOAD_BYTES)


def _int(name: str, value: Any) -> int:
    if blank(value):
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # spreadsheets hand back numbers as floats
    elif isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{name}: deve ser um inteiro, recebido {value[:40]!r}") from None
    return validators.whole_number(name, value, maximum=INT_LIMITS[name])


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
            raise ValueError(
                f"{name}: data/hora inválida {value[:40]!r} (use ISO 8601, ex. 2026-11-25T16:30:00+00:00)"
            )
    else:
        raise ValueError(f"{name}: data/hora inválida {value!r}")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


def _required(clean: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def required(name: str, value: Any):
        if blank(value):
            raise ValueError(f"{name}: obrigatório")
        return clean(name, value)

    return required


def _optional(clean: Callable[[str, Any], Any], default=None) -> Callable[[str, Any], Any]:
    def optional(name: str, value: Any):
        return default if blank(value) else clean(name, value)

    return optional


CLEANERS: dict[str, Callable[[str, Any], Any]] = {
    "product_id": _required(_text),
    "kind": _optional(_text, DEFAULT_KIND),
    "payload": _required(_json_object),
    "source_data": _optional(_json_object),
    "input_fingerprint": _optional(_text),
    "generator_version": _optional(_text),
    "family_id": _optional(_text),
    **{name: _int for name in INT_LIMITS},
    **{name: _optional(_datetime) for name in DATETIME_FIELDS},
}


def clean_row(raw: Any, *, now: datetime | None = None) -> dict:
    """One imported row as model field values (every column of :data:`EXPORT_FIELDS`, empty
    cells given their defaults); :class:`RowError` naming every bad column."""
    if not isinstance(raw, dict):
        raise RowError({None: f"deve ser um objeto, recebido {type(raw).__name__}"})
    row: dict[str, Any] = {}
    problems: dict[str | None, str] = {}
    for name in EXPORT_FIELDS:
        try:
            row[name] = CLEANERS[name](name, raw.get(name))
        except ValueError as exc:
            problems[name] = str(exc).removeprefix(f"{name}: ")
    if problems:
        raise RowError(problems)

    now = now or timezone.now()
    if row["source_data"] is None:
        row["source_data"] = {}
    if row["input_fingerprint"] is None:
        row["input_fingerprint"] = input_fingerprint(row["source_data"])
    if row["generator_version"] is None:
        row["generator_version"] = current_generator_version()
    if row["family_id"] is None:  # a family's base carries its own id; other content is its own
        row["family_id"] = row["product_id"] if row["kind"] == FAMILY_KIND else ""
    row["created_at"] = row["created_at"] or now
    row["updated_at"] = row["updated_at"] or now
    row["expires_at"] = row["expires_at"] or now + timedelta(seconds=settings.MEMORY_DEFAULT_TTL)
    return row


# -- the cells of an export ---------------------------------------------------------------


def plain(value: Any) -> Any:
    """A value as JSON holds it: datetimes as ISO 8601 with their offset."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def text_cell(name: str, value: Any) -> Any:
    """A value in a spreadsheet-like cell (CSV, the admin's files): JSON objects as JSON text,
    datetimes as ISO 8601 in UTC, no value as an empty cell; numbers stay numbers."""
    if value is None:
        return ""
    if name in JSON_FIELDS:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime):
        return value.astimezone(dt_timezone.utc).isoformat()
    return value
