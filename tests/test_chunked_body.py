"""``beecatalog.chunked``: a chunked request body reaches Django whole, bounded, or is refused in one line.

Through gunicorn: ``tests/api/test_api_live.py::test_a_chunked_body_is_read_through_gunicorn``.
"""
import io
import json

import pytest
from django.test import override_settings

from beecatalog.chunked import ChunkedBodyMiddleware


class Recorder:
    """A WSGI app that keeps the body Django would read: ``CONTENT_LENGTH`` bytes of ``wsgi.input``."""

    def __init__(self):
        self.body = None

    def __call__(self, environ, start_response):
        self.body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


class Trickle(io.RawIOBase):
    """A de-chunked body that hands out at most 7 bytes per read, as a server may."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def read(self, size=-1):
        return self._data.read(min(7, size if size >= 0 else 7))


def call(environ_extra: dict, body: bytes = b""):
    app = Recorder()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/memory/get/", "wsgi.input": Trickle(body), **environ_extra}
    answer = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = status, dict(headers)

    content = b"".join(ChunkedBodyMiddleware(app)(environ, start_response))
    return answer["status"], answer["headers"], content, app.body


CHUNKED = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True}


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
@pytest.mark.parametrize("size", [0, 1, 99, 100])
def test_a_chunked_body_up_to_the_limit_reaches_django_whole(size):
    body = b"x" * size
    status, _, _, seen = call(CHUNKED, body)
    assert status == "200 OK" and seen == body


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_a_chunked_body_over_the_limit_is_413_and_django_never_sees_it():
    status, headers, content, seen = call(CHUNKED, b"x" * 101)
    assert status.startswith("413") and seen is None
    assert headers["Content-Type"] == "application/json" and headers["Connection"] == "close"
    assert json.loads(content) == {"detail": "O corpo da requisição excede o limite de 100 bytes."}


def test_a_chunked_body_the_server_does_not_terminate_is_411():
    status, headers, content, seen = call({"HTTP_TRANSFER_ENCODING": "chunked"}, b'{"product_id": "A"}')
    assert status.startswith("411") and seen is None
    assert "Content-Length" in json.loads(content)["detail"]


@pytest.mark.parametrize("extra", [
    {"CONTENT_LENGTH": "5"},
    {"CONTENT_LENGTH": "5", **CHUNKED},  # a length was given: Django reads that
    {"HTTP_TRANSFER_ENCODING": "gzip", "CONTENT_LENGTH": "5"},
])
def test_a_body_with_a_length_is_left_as_it_is(extra):
    status, _, _, seen = call(extra, b"12345")
    assert status == "200 OK" and seen == b"12345"


def test_a_request_without_a_body_is_left_as_it_is():
    status, _, _, seen = call({}, b"")
    assert status == "200 OK" and seen == b""
