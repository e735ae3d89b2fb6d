"""Errors of the API, all in DRF's usual shape (``{"detail": ...}`` or ``{"field": [...]}``): those of
its views (``exception_handler``) and Django's own error pages under ``/api/`` (``bad_request`` …
``server_error``, the URL conf's handlers)."""
from __future__ import annotations

import logging
import re

from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler

from memory.api.parsers import body_too_large

logger = logging.getLogger("memory")

_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_]{0,63}): (.+)$", re.DOTALL)


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Serviço temporariamente indisponível."
    default_code = "service_unavailable"


def validation_error_from(exc: ValueError, default_field: str = "non_field_errors") -> ValidationError:
    """The engine's ``ValueError("field: message")`` as DRF's ``{"field": ["message"]}``."""
    match = _FIELD_PREFIX.match(str(exc))
    if match:
        return ValidationError({match.group(1): [match.group(2)]})
    return ValidationError({default_field: [str(exc)]})


DATABASE_UNAVAILABLE = "Banco de dados (PostgreSQL) indisponível no momento; tente novamente em instantes."


def exception_handler(exc, context):
    """DRF's handler, plus a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` as a 413, the
    engine's ``ValueError`` (bad input that reached a service) as a 400, and PostgreSQL
    unreachable as a 503 (the transaction never committed, so nothing was written)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("PostgreSQL indisponível ao atender a API: %s", str(exc).strip()[:200])
        exc = ServiceUnavailable(DATABASE_UNAVAILABLE)
    elif isinstance(exc, RequestDataTooBig):
        exc = body_too_large()
    elif isinstance(exc, ValueError):
        exc = validation_error_from(exc)
    return drf_exception_handler(exc, context)


# --- Django's error pages: JSON under /api/, Django's HTML pages elsewhere ----------------------

API_PREFIX = "/api/"
BAD_REQUEST = "Requisição inválida."
DISALLOWED_HOST = "Requisição inválida: o cabeçalho Host não está em ALLOWED_HOSTS."
PERMISSION_DENIED = "Você não tem permissão para executar essa ação."
NOT_FOUND = "Endereço não encontrado na API; os endpoints estão em /api/memory/ (veja /api/docs/)."
SERVER_ERROR = "Erro interno do servidor; ele foi registrado no log. Tente novamente em instantes."


def _is_api(request) -> bool:
    return request.path_info.startswith(API_PREFIX)


def _json_error(detail: str, status_code: int) -> JsonResponse:
    """The body DRF would render for ``APIException(detail)``: UTF-8 text, not ``\\u`` escapes."""
    return JsonResponse({"detail": detail}, status=status_code, json_dumps_params={"ensure_ascii": False})


def bad_request(request, exception):
    """``handler400``: a request Django refused before any view (e.g. a Host not in ALLOWED_HOSTS)."""
    if _is_api(request):
        return _json_error(DISALLOWED_HOST if isinstance(exception, DisallowedHost) else BAD_REQUEST, 400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    """``handler403``: ``PermissionDenied`` raised outside a DRF view."""
    if _is_api(request):
        return _json_error(PERMISSION_DENIED, 403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    """``handler404``: a path no route matches. The body is the same for every caller, with or
    without credentials, and does not echo the path."""
    if _is_api(request):
        return _json_error(NOT_FOUND, 404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """``handler500`` (DEBUG off): an exception no handler turned into a response. Django has
    already logged it with its traceback (logger ``django.request``); the client gets no detail."""
    if _is_api(request):
        return _json_error(SERVER_ERROR, 500)
    return defaults.server_error(request)
