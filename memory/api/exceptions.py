"""Errors of the API, all in DRF's usual shape (``{"detail": ...}`` or ``{"field": [...]}``)."""
from __future__ import annotations

import logging
import re

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
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

