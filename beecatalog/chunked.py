"""Request bodies sent with ``Transfer-Encoding: chunked``: read whole, or refused in one line.

Django reads ``CONTENT_LENGTH`` bytes of a body; a chunked body has no length, so Django alone
would read it as empty (and the API would answer a misleading 400). The WSGI server de-chunks
the body; when it also promises that ``wsgi.input`` ends where the body ends
(``wsgi.input_terminated``: gunicorn does), the body is read here, up to the same limit as
the JSON parser (``DATA_UPLOAD_MAX_MEMORY_SIZE``), and handed on with its length, as if the
client had sent one. A longer body is a 413; a server that does not mark the end
(``runserver``) cannot tell where the body stops, so the request is a 411.
"""
from __future__ import annotations

import io
import json

from django.conf import settings

from memory.api.parsers import body_too_large_message

READ_SIZE = 64 * 1024


def _refusal(start_response, status: str, detail: str):
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    start_response(status, [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),  # the rest of the body is never read
    ])
    return [body]


def _read_at_most(stream, limit: int | None) -> bytes:
    """The body, or its first ``limit + 1`` bytes when it is longer (all of it when ``limit`` is None)."""
    buffer = io.BytesIO()
    while limit is None or buffer.tell() <= limit:
        size = READ_SIZE if limit is None else min(READ_SIZE, limit + 1 - buffer.tell())
        chunk = stream.read(size)
        if not chunk:
            break
        buffer.write(chunk)
    return buffer.getvalue()


class ChunkedBodyMiddleware:
    """WSGI middleware: gives a chunked request body its ``CONTENT_LENGTH``, or answers 411 / 413."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self.app(environ, start_response)
        if not environ.get("wsgi.input_terminated"):
            return _refusal(
                start_response, "411 Length Required",
                "Este servidor não lê corpo com Transfer-Encoding: chunked; envie o cabeçalho Content-Length.",
            )
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = _read_at_most(environ["wsgi.input"], limit)
        if limit is not None and len(body) > limit:
            return _refusal(
                start_response, "413 Request Entity Too Large", body_too_large_message(limit),
            )
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)
