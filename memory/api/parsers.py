"""The JSON parser of the API: bounded in size and depth, strict about what PostgreSQL can store."""
from __future__ import annotations

import json
import math

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from memory.api.exceptions import RequestTooLarge


def _reject_constant(name: str):
    raise ValueError(f"{name} não é um valor JSON válido")


def check_json_value(data, max_depth: int) -> None:
    """Walk a parsed body without recursion; ``ParseError`` when too deep or holding what PostgreSQL refuses."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                raise ParseError(f"JSON aninhado demais: o limite é {max_depth} níveis.")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ParseError("JSON inválido: número fora do intervalo de um double (ex.: 1e400).")


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise ParseError("JSON inválido: texto com o caractere nulo (\\u0000) não é aceito.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError("JSON inválido: texto com surrogate Unicode isolado não é aceito.") from None


class SafeJSONParser(JSONParser):
    """``application/json`` in UTF-8, at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes and
    ``MEMORY_API_MAX_JSON_DEPTH`` levels; anything else is a 400 (413 when too large), never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        too_large = RequestTooLarge(f"O corpo da requisição excede o limite de {limit} bytes.")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > limit:
            raise too_large  # refused before reading a byte of it
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise too_large
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"O corpo da requisição não é UTF-8 válido (byte {exc.start}).") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise ParseError(
                f"JSON aninhado demais: o limite é {settings.MEMORY_API_MAX_JSON_DEPTH} níveis."
            ) from None
        except ValueError as exc:
            raise ParseError(f"JSON malformado: {exc}") from None
        check_json_value(data, settings.MEMORY_API_MAX_JSON_DEPTH)
        return data
