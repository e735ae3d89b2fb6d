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
  token counts, ``bigint`` for the hit counts); ``tokens_cached`` is at most ``tokens_prompt``
  and ``tokens_reasoning`` at most ``tokens_completion`` (they are parts of them). A file
  written before these two columns existed has none: they are 0.
- ``hotness`` (:mod:`memory.engine.hotness`: the entry's decayed hits, as of ``hotness_at``) is a
  finite number from 0 up (``12.5``; ``12,5`` as a pt-BR spreadsheet writes it); an export writes
  both, so that a restore keeps the hot entries hot for refresh-ahead and the Redis warm-up. A file
  without them (written before they existed) gives 0 and none, as for the hit counts; a hotness
  without ``hotness_at`` is as of now.
- Datetimes are ISO 8601, a spreadsheet date or datetime; without an offset (the admin's CSV and
  XLSX write local time) they are read in ``TIME_ZONE``.
- Empty optional cells get defaults: ``kind`` = ``main_content``; ``source_data`` = ``{}``;
  ``input_fingerprint`` = the fingerprint of ``source_data``; ``generator_version`` = the current
  generator; ``family_id`` = the product id for a family's base (kind ``family``), else none (content
  of its own, not derived from a family); counters and ``hotness`` = 0; ``created_at``/``updated_at`` = now; ``last_hit_at`` and ``hotness_at`` = none;
  ``expires_at`` = now + ``MEMORY_DEFAULT_TTL``; ``author`` = ``""``; ``approved`` = false
  (``approved_by``/``approved_at`` go with it; approved without ``approved_at``: now);
  ``versions`` = none (the imported content becomes the entry's first version).
- ``approved`` is ``true``/``false`` (also ``1``/``0``, any case); ``origin`` one of
  ``generated``, ``edited``, ``imported``, ``restored``: the current content's, which the import
  takes from ``versions`` (or records as ``imported``: see ``DatabaseTier.upsert_rows``).
- ``versions``: the entry's history as an export writes it, a list (JSON text in CSV and XLSX)
  of objects ``{number, payload, origin, generator_version, tokens, author, created_at}``
  (:data:`VERSION_FIELDS`), numbers unique; only the newest ``MEMORY_MAX_VERSIONS`` are kept.
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
from memory.engine.versions import IMPORTED, ORIGINS
from memory.models import AUTHOR_MAX_LENGTH, DEFAULT_KIND
from memory.providers.prompts import current_generator_version

# The entry's own columns, then its history.
ENTRY_FIELDS = [
    "product_id", "kind", "payload", "source_data", "input_fingerprint", "generator_version",
    "tokens_prompt", "tokens_completion", "tokens_cached", "tokens_reasoning", "hit_count", "tokens_saved",
    "created_at", "updated_at", "last_hit_at", "hotness", "hotness_at", "expires_at", "family_id",
    "origin", "author", "approved", "approved_by", "approved_at",
]
EXPORT_FIELDS = [*ENTRY_FIELDS, "versions"]
VERSION_FIELDS = ("number", "payload", "origin", "generator_version", "tokens", "author", "created_at")
REQUIRED_COLUMNS = ("product_id", "payload")
JSON_FIELDS = ("payload", "source_data", "versions")
DATETIME_FIELDS = ("created_at", "updated_at", "last_hit_at", "hotness_at", "expires_at", "approved_at")
INT_LIMITS = {
    "tokens_prompt": validators.INT_MAX,
    "tokens_completion": validators.INT_MAX,
    "tokens_cached": validators.INT_MAX,
    "tokens_reasoning": validators.INT_MAX,
    "hit_count": validators.BIGINT_MAX,
    "tokens_saved": validators.BIGINT_MAX,
}
TEXT_LIMITS = {"product_id": 255, "kind": 64, "input_fingerprint": 64, "generator_version": 200,
               "family_id": 255, "author": AUTHOR_MAX_LENGTH, "approved_by": AUTHOR_MAX_LENGTH}
TRUE_TEXTS = ("true", "1")
FALSE_TEXTS = ("false", "0")


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


def _parsed_json(name: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: JSON inválido ({exc.msg})") from None
        except RecursionError:
            raise ValueError(f"{name}: JSON aninhado demais") from None
    return value


def _json_object(name: str, value: Any) -> dict:
    # with its text: the import's COPY sends it as checked (validators.json_text)
    return validators.checked_json_object(name, _parsed_json(name, value), max_bytes=settings.MEMORY_MAX_PAYLOAD_BYTES)


def _boolean(name: str, value: Any) -> bool:
    if blank(value):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)  # a spreadsheet's 1 / 0 (or 1.0)
    if isinstance(value, str) and value.strip().lower() in TRUE_TEXTS + FALSE_TEXTS:
        return value.strip().lower() in TRUE_TEXTS
    raise ValueError(f"{name}: use true ou false, recebido {str(value)[:40]!r}")


def _origin(name: str, value: Any) -> str:
    if value not in ORIGINS:
        raise ValueError(f"{name}: use {', '.join(ORIGINS)}, recebido {str(value)[:40]!r}")
    return value


def _versions(name: str, value: Any) -> list[dict]:
    """An exported history: a list of version objects, each field checked (named with its number)."""
    value = _parsed_json(name, value)
    if not isinstance(value, list):
        raise ValueError(f"{name}: deve ser uma lista de versões, recebido {type(value).__name__}")
    cleaned: list[dict] = []
    numbers: set[int] = set()
    for position, item in enumerate(value, start=1):
        where = f"{name}: item {position}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: deve ser um objeto, recebido {type(item).__name__}")
        missing = [field for field in ("number", "payload", "origin", "created_at") if blank(item.get(field))]
        if missing:
            raise ValueError(f"{where}: sem {', '.join(missing)}")
        try:
            version = {
                "number": validators.whole_number("number", _whole(item["number"]), minimum=1,
                                                  maximum=validators.INT_MAX),
                "payload": _json_object("payload", item["payload"]),
                "origin": _origin("origin", item["origin"]),
                "generator_version": validators.text("generator_version", _text_of(item.get("generator_version")),
                                                     max_length=TEXT_LIMITS["generator_version"]),
                "tokens": validators.whole_number("tokens", _whole(item.get("tokens") or 0),
                                                  maximum=validators.BIGINT_MAX),
                "author": validators.text("author", _text_of(item.get("author")), max_length=AUTHOR_MAX_LENGTH),
                "created_at": _datetime("created_at", item["created_at"]),
            }
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if version["number"] in numbers:
            raise ValueError(f"{where}: número {version['number']} repetido")
        numbers.add(version["number"])
        cleaned.append(version)
    return cleaned


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"deve ser texto, recebido {type(value).__name__}")
    return value


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


def _number(name: str, value: Any) -> float:
    if blank(value):
        return 0.0
    if isinstance(value, str):
        typed = value.strip()
        try:
            # a spreadsheet in pt-BR writes 12,5
            value = float(typed.replace(",", ".") if "." not in typed else typed)
        except ValueError:
            raise ValueError(f"{name}: deve ser um número, recebido {typed[:40]!r}") from None
    return validators.non_negative_number(name, value)


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
    "hotness": _number,
    **{name: _optional(_datetime) for name in DATETIME_FIELDS},
    "origin": _optional(_origin, IMPORTED),  # what the import records, unless the history says otherwise
    "author": _optional(_text, ""),
    "approved": _boolean,
    "approved_by": _optional(_text, ""),
    "versions": _optional(_versions),
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
    if not problems.keys() & set(validators.TOKEN_COUNTS):
        try:
            validators.token_counts({name: row[name] for name in validators.TOKEN_COUNTS})
        except ValueError as exc:
            name = str(exc).partition(":")[0]
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
    if row["hotness"] and row["hotness_at"] is None:
        row["hotness_at"] = now  # a hotness is as of an instant: without one it would read 0
    if row["approved"]:
        row["approved_at"] = row["approved_at"] or now
    else:
        row["approved_by"], row["approved_at"] = "", None
    return row


# -- the cells of an export ---------------------------------------------------------------


def plain(value: Any) -> Any:
    """A value as JSON holds it: datetimes as ISO 8601 with their offset."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def exported_versions(versions) -> list[dict]:
    """An entry's history as an export writes it (oldest first), from ``ContentVersion`` rows
    or their ``values()``: the :data:`VERSION_FIELDS`, datetimes as ISO 8601."""
    rows = [v if isinstance(v, dict) else {name: getattr(v, name) for name in VERSION_FIELDS} for v in versions]
    return [{name: plain(row[name]) for name in VERSION_FIELDS} for row in sorted(rows, key=lambda r: r["number"])]


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
