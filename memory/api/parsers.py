"""The JSON parser of the API: bounded in size and depth, strict about what PostgreSQL can store."""
from __future__ import annotations

import json
import math
import sys

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


# DRF's settings import this module when rest_framework.views loads, so it imports nothing of
# memory.api (exceptions.py imports rest_framework.views).
class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "O corpo da requisição excede o limite."
    default_code = "request_too_large"


def body_too_large_message(limit: int) -> str:
    """What a client sending a body over ``limit`` bytes is told (by the parser and the chunked-body middleware)."""
    return f"O corpo da requisição excede o limite de {limit} bytes."


def body_too_large() -> RequestTooLarge:
    """The 413 of a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""
    return RequestTooLarge(body_too_large_message(settings.DATA_UPLOAD_MAX_MEMORY_SIZE))


def _reject_constant(name: str):
    raise ParseError(f"JSON inválido: {name} não é um valor JSON (use null ou um número).")


# What each of the json module's messages means, by its start; a message not listed (a newer
# Python's) falls back to the position alone, so no English text reaches the client.
JSON_ERROR_REASONS = (
    ("Expecting value", "esperava um valor (texto entre aspas, número, objeto, lista, true, false ou null)"),
    ("Expecting property name enclosed in double quotes", "esperava o nome de um campo entre aspas duplas"),
    ("Expecting ':' delimiter", "esperava ':' depois do nome do campo"),
    ("Expecting ',' delimiter", "esperava ',' entre dois itens"),
    ("Unterminated string", "texto sem as aspas de fechamento"),
    ("Invalid control character", "caractere de controle dentro de um texto (use \\n, \\t)"),
    ("Invalid \\uXXXX escape", "escape \\uXXXX incompleto"),
    ("Invalid \\escape", "barra invertida seguida de um escape inexistente"),
    ("Extra data", "há algo depois do fim do JSON"),
    ("Unexpected UTF-8 BOM", "o corpo começa com a marca BOM do UTF-8; envie sem ela"),
    ("Illegal trailing comma", "vírgula sobrando antes de fechar } ou ]"),
)


def json_error_message(exc: json.JSONDecodeError) -> str:
    """The decoder's error in pt-BR, with the line and column where it stopped."""
    reason = next((pt for en, pt in JSON_ERROR_REASONS if exc.msg.startswith(en)), None)
    where = f"linha {exc.lineno}, coluna {exc.colno}"
    return f"JSON malformado: {reason} ({where})." if reason else f"JSON malformado ({where})."


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
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > limit:
            raise body_too_large()  # refused before reading a byte of it
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise body_too_large()
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
        except json.JSONDecodeError as exc:
            raise ParseError(json_error_message(exc)) from None
        except ValueError:
            # The one other ValueError of json.loads: an integer longer than Python converts.
            raise ParseError(
                f"JSON inválido: número inteiro com mais de {sys.get_int_max_str_digits()} dígitos."
            ) from None
        check_json_value(data, settings.MEMORY_API_MAX_JSON_DEPTH)
        return data
