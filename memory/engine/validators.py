"""The value checks every way in shares (API, commands, imports, the admin, services): whole
numbers within bounds, text, and JSON objects PostgreSQL can store.

Pure functions: no Django, no Redis. Each raises ``ValueError`` whose message starts with the
name of the value (``"limit: …"``), so that a caller can show it as it is.
"""
from __future__ import annotations

import json
import math
from typing import Any

import orjson

# PostgreSQL's integer and bigint: the model's PositiveIntegerField and PositiveBigIntegerField.
INT_MAX = 2_147_483_647
BIGINT_MAX = 9_223_372_036_854_775_807
# The latest instant (epoch seconds) ``datetime`` can show in any time zone: 9999-12-30.
EPOCH_MAX = 253_402_214_400


def instant(name: str, value: Any) -> float:
    """``value`` when it is a number of seconds since 1970 (not a bool, not NaN) up to :data:`EPOCH_MAX`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= EPOCH_MAX:
        raise ValueError(f"{name}: deve ser um instante (segundos desde 1970) até {EPOCH_MAX}, recebido {value!r}")
    return value


def whole_number(name: str, value: Any, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` when it is an ``int`` (not a bool) from ``minimum`` to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: deve ser um inteiro, recebido {value!r}")
    if value < minimum:
        if minimum == 0:
            raise ValueError(f"{name}: não pode ser negativo, recebido {value}")
        if minimum == 1:
            raise ValueError(f"{name}: deve ser positivo, recebido {value}")
        raise ValueError(f"{name}: deve ser pelo menos {minimum}, recebido {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: acima do máximo de {maximum}")
    return value


def non_negative_number(name: str, value: Any) -> float:
    """``value`` as a float when it is a finite number (an ``int`` or a ``float``, not a bool) from 0 up."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: deve ser um número, recebido {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: deve ser um número finito, recebido {value!r}")
    if value < 0:
        raise ValueError(f"{name}: não pode ser negativo, recebido {value!r}")
    return value


def text(name: str, value: str, *, max_length: int) -> str:
    """``value`` trimmed, when it fits ``max_length`` and holds no NUL (PostgreSQL refuses it)."""
    value = value.strip()
    if "\x00" in value:
        raise ValueError(f"{name}: contém o caractere nulo, que o PostgreSQL não aceita")
    if len(value) > max_length:
        raise ValueError(f"{name}: no máximo {max_length} caracteres")
    return value


class CheckedJSON(dict):
    """A JSON object with the text :func:`checked_json_object` encoded it as, so that a bulk write
    (``COPY``) sends that text instead of encoding the object again (:func:`json_text`). The object
    is not to be changed afterwards: the text would no longer be its own."""

    __slots__ = ("text",)


def json_text(value: Any) -> str:
    """``value`` as JSON text: the one it was checked as, when :func:`checked_json_object` made it."""
    if type(value) is CheckedJSON:
        return value.text
    return _fast_encoded(value) or json.dumps(value, ensure_ascii=False, separators=_COMPACT)


def json_object(name: str, value: Any, *, max_bytes: int | None = None) -> dict:
    """``value`` when it is a dict that PostgreSQL can store as ``jsonb``: JSON-serializable,
    without NaN or Infinity, without NUL characters, and at most ``max_bytes`` encoded."""
    _encoded(name, value, max_bytes)
    return value


def checked_json_object(name: str, value: Any, *, max_bytes: int | None = None) -> CheckedJSON:
    """:func:`json_object`, a copy of ``value`` holding the text it was checked as (an import's rows)."""
    checked = CheckedJSON(value if isinstance(value, dict) else ())
    checked.text = _encoded(name, value, max_bytes)
    return checked


def _encoded(name: str, value: Any, max_bytes: int | None) -> str:
    if not isinstance(value, dict):
        raise ValueError(f"{name}: deve ser um objeto JSON, recebido {type(value).__name__}")
    encoded = _fast_encoded(value)
    if encoded is None or "null" in encoded:
        # orjson writes NaN and Infinity as null: json tells them from a true null
        encoded = _strictly_encoded(name, value)
    if "\\u0000" in encoded and _holds_nul(value):
        raise ValueError(f"{name}: contém o caractere nulo (\\u0000), que o PostgreSQL não aceita")
    if max_bytes is not None and len(encoded) * 4 > max_bytes:  # within it whatever its characters
        size = len(encoded.encode())
        if size > max_bytes:
            raise ValueError(f"{name}: {size} bytes excede o limite de {max_bytes} bytes")
    return encoded


# JSON text is written compact, whichever encoder writes it: the size a limit measures is the same.
_COMPACT = (",", ":")
# What orjson would encode that json refuses (datetimes, dataclasses) is handed to json, which
# says why; keys that are not text become text, as json makes them.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _fast_encoded(value: Any) -> str | None:
    """``value`` as compact JSON text by orjson (3-4× json's speed on a 3 KB payload: see
    docs/benchmarks.md), or None when only json can encode it or say what is wrong with it (an
    integer past 64 bits, a text that is not valid Unicode, an object orjson does not know)."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return None


def _strictly_encoded(name: str, value: Any) -> str:
    """``value`` as json encodes it, refusing NaN and Infinity; the ``ValueError`` says why not."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=_COMPACT)
    except ValueError as exc:
        if str(exc).startswith("Out of range float"):
            raise ValueError(f"{name}: contém NaN ou Infinity, que o JSON não admite") from None
        raise ValueError(f"{name}: não é serializável em JSON ({exc})") from None
    except TypeError as exc:
        raise ValueError(f"{name}: não é serializável em JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{name}: JSON aninhado demais") from None


def _holds_nul(value: Any) -> bool:
    """A NUL in a key or a string (the encoded text's ``\\u0000`` may also be an escaped backslash)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any((isinstance(k, str) and "\x00" in k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_holds_nul(v) for v in value)
    return False


# The token counts of a generation, and the count each detail count is a part of.
TOKEN_COUNTS = ("tokens_prompt", "tokens_completion", "tokens_cached", "tokens_reasoning")
TOKEN_PARTS = {"tokens_cached": "tokens_prompt", "tokens_reasoning": "tokens_completion"}


def token_counts(counts: dict) -> dict:
    """``counts`` (the :data:`TOKEN_COUNTS` a generation reports) when each is a whole number
    within PostgreSQL's integer, and ``tokens_cached`` (prompt tokens the provider served from
    its cache) and ``tokens_reasoning`` (completion tokens the model spent reasoning) are no
    more than the counts they are part of. A count absent from ``counts`` is not checked."""
    for name in TOKEN_COUNTS:
        if name in counts:
            whole_number(name, counts[name], maximum=INT_MAX)
    for part, whole in TOKEN_PARTS.items():
        if part in counts and whole in counts and counts[part] > counts[whole]:
            raise ValueError(f"{part}: parte de {whole}, não pode passar de {counts[whole]}, recebido {counts[part]}")
    return counts
