"""A scripted OpenAI-compatible server on loopback for the provider tests.

``POST /v1/chat/completions`` answers the next scripted ``Reply`` (status,
headers, body, delay), then the default one once the script is spent. It keeps
HTTP/1.1 connections alive, so that ``connections`` (TCP connections accepted)
shows whether a client reuses them; ``requests`` holds every request's path,
headers and JSON body.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD_CONTENT = {
    "title": "Tênis de Corrida Leve Olympikus",
    "description": "Leveza e amortecimento.",
    "bullet_points": ["Leve", "Amortecido", "Respirável"],
    "seo_keywords": ["tênis de corrida", "olympikus"],
}


def completion(content=GOOD_CONTENT, *, prompt_tokens=812, completion_tokens=455, finish_reason="stop",
               usage_extra: dict | None = None) -> dict:
    """A chat.completion body whose message is ``content`` (a dict is sent as its JSON text)."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens, **(usage_extra or {})}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": finish_reason,
                     "message": {"role": "assistant", "content": text}}],
        "usage": usage,
    }


@dataclass
class Reply:
    """One scripted answer: ``body`` a dict (sent as JSON) or a str, after ``delay`` seconds."""

    status: int = 200
    body: dict | str = field(default_factory=completion)
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


def error(status: int, message: str = "erro", code: str | None = None, headers: dict | None = None) -> Reply:
    """An OpenAI-style error answer."""
    return Reply(status, {"error": {"message": message, "type": "error", "code": code}}, headers or {})


@dataclass
class Request:
    path: str
    headers: dict  # names in lower case
    body: dict
    at: float  # time.monotonic() when it arrived


class FakeOpenAI:
    """``start()`` on a free loopback port, ``script(...)`` the answers, ``stop()``."""

    def __init__(self):
        self.lock = threading.Lock()
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[Request] = []
        self.connections = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, *replies: Reply, then: Reply | None = None) -> None:
        """Answer ``replies`` in order, then ``then`` (by default a good completion) for ever."""
        with self.lock:
            self.replies = deque(replies)
            self.default = then or Reply()

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.requests)

    def gaps(self) -> list[float]:
        """Seconds between one request's arrival and the next's."""
        with self.lock:
            times = [r.at for r in self.requests]
        return [b - a for a, b in zip(times, times[1:])]

    def _next(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
            return self.replies.popleft() if self.replies else self.default

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with fake.lock:
                    fake.connections += 1

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(Reply(404, {"error": {"message": "not found"}}))
                    return
                reply = fake._next(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
                if reply.delay:
                    time.sleep(reply.delay)
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                if isinstance(reply.body, str):
                    raw, content_type = reply.body.encode(), "text/plain; charset=utf-8"
                else:
                    raw, content_type = json.dumps(reply.body, ensure_ascii=False).encode(), "application/json"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(raw)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a read timeout): nothing to answer

        return Handler


class FullBacklog:
    """A listening port whose accept queue is full: a new connection's SYN goes unanswered, so
    connecting hangs until the client's connect timeout (Linux drops SYNs to a full queue)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.listener.close()
