"""A scripted OpenAI-compatible server on loopback for the provider tests.

``POST /v1/chat/completions`` answers the next scripted ``Reply`` (status,
headers, body, delay), then the default one once the script is spent. It keeps
HTTP/1.1 connections alive, so that ``connections`` (TCP connections accepted)
shows whether a client reuses them; ``requests`` holds every request's path,
headers and JSON body.

The Batch API (``/v1/files``, ``/v1/batches``, ``/v1/batches/{id}``,
``/v1/files/{id}/content``) is ``FakeOpenAI.batch``, a :class:`FakeBatchAPI`:
batches progress as they are polled, at the pace and with the per-line answers
a test sets.
"""
from __future__ import annotations

import email.parser
import json
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

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
    """One scripted answer: ``body`` a dict (sent as JSON), a str or bytes (a file), after ``delay`` seconds."""

    status: int = 200
    body: dict | str | bytes = field(default_factory=completion)
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
        self.batch = FakeBatchAPI()
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

            def do_GET(self):
                self._send(fake.batch.handle("GET", self.path, self.headers, b"")
                           or Reply(404, {"error": {"message": "not found"}}))

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                batch_reply = fake.batch.handle("POST", self.path, self.headers, raw)
                if batch_reply is not None:
                    self._send(batch_reply)
                    return
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
                if isinstance(reply.body, bytes):
                    raw, content_type = reply.body, "application/octet-stream"
                elif isinstance(reply.body, str):
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


def product_of(request_body: dict) -> dict:
    """The product JSON of a chat-completions request (in its user message), or ``{}``."""
    user = next((m.get("content", "") for m in request_body.get("messages", []) if m.get("role") == "user"), "")
    start, end = user.find("{"), user.rfind("}")
    try:
        data = json.loads(user[start:end + 1])
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class FakeBatchAPI:
    """The Batch API of :class:`FakeOpenAI`.

    A batch is made ``validating``; each ``GET /v1/batches/{id}`` moves it on by ``step`` requests
    (all of them when None) unless ``hold`` is set, and when every request is done it ends as
    ``final_status`` with its output and error files. Each line is answered by ``reply(product)``
    (the product JSON of the line's request; a good completion by default): a 200 goes to the
    output file, any other status to the error file. ``expire_after`` (with ``final_status =
    "expired"``) answers only that many lines and marks the others ``batch_expired``.
    ``create_delay`` holds the answer to the creation (the batch already made) that long;
    ``create_error`` answers the creation with that error, after making the batch when
    ``create_error_after_making`` is set: a lost answer.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []  # (method, path) of every Batch API request
        self.step: int | None = None
        self.hold = False
        self.final_status = "completed"
        self.expire_after: int | None = None
        self.reply = lambda product: Reply()
        self.extra_output: list[str] = []  # raw lines appended to every output file
        self.create_delay = 0.0
        self.create_error: Reply | None = None
        self.create_error_after_making = False
        self.upload_error: Reply | None = None
        self.list_supported = True
        self._ids = 0

    # -- what a test reads --------------------------------------------------------------------

    def input_lines(self, batch_id: str) -> list[dict]:
        with self.lock:
            return self._input(self.batches[batch_id])

    def products_sent(self) -> list[str]:
        """The sku of every line of every batch created, in order: a product sent twice shows twice."""
        with self.lock:
            return [str(product_of(line["body"]).get("sku")) for b in self.batches.values() for line in self._input(b)]

    def count(self, method: str, pattern: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.calls if m == method and re.fullmatch(pattern, p))

    # -- the endpoints ------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers, raw: bytes) -> Reply | None:
        parts = urlsplit(path)
        route = parts.path.rstrip("/")
        if not re.search(r"/(files|batches)(/|$)", route):
            return None
        with self.lock:
            self.calls.append((method, route))
        if method == "POST" and route.endswith("/files"):
            return self._upload(headers, raw)
        if method == "POST" and route.endswith("/batches"):
            return self._create(json.loads(raw or b"{}"))
        if method == "GET" and route.endswith("/batches"):
            return self._list(parse_qs(parts.query))
        match = re.search(r"/batches/([^/]+)$", route)
        if method == "GET" and match:
            return self._retrieve(match.group(1))
        match = re.search(r"/files/([^/]+)/content$", route)
        if method == "GET" and match:
            with self.lock:
                found = self.files.get(match.group(1))
            if found is None:
                return Reply(404, {"error": {"message": "no such file", "code": "not_found"}})
            return Reply(200, found["bytes"])
        return Reply(404, {"error": {"message": "not found"}})

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    def _upload(self, headers, raw: bytes) -> Reply:
        if self.upload_error is not None:
            return self.upload_error
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {headers.get('Content-Type')}\r\n\r\n".encode() + raw)
        fields = {}
        for part in message.get_payload():
            fields[part.get_param("name", header="content-disposition")] = (
                part.get_filename(), part.get_payload(decode=True))
        filename, content = fields["file"]
        with self.lock:
            file_id = self._new_id("file-")
            self.files[file_id] = {"bytes": content, "filename": filename, "purpose": fields["purpose"][1].decode()}
        return Reply(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                           "filename": filename, "purpose": "batch", "status": "processed"})

    def _create(self, body: dict) -> Reply:
        if self.create_error is not None and not self.create_error_after_making:
            return self.create_error
        with self.lock:
            if body.get("input_file_id") not in self.files:
                return Reply(400, {"error": {"message": "input_file_id desconhecido", "code": "invalid_request"}})
            batch_id = self._new_id("batch_")
            batch = {
                "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"),
                "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window"),
                "status": "validating", "created_at": int(time.time()), "metadata": body.get("metadata"),
                "output_file_id": None, "error_file_id": None, "errors": None,
                "_done": 0, "_total": len(self._input({"input_file_id": body["input_file_id"]})),
            }
            batch["request_counts"] = {"total": batch["_total"], "completed": 0, "failed": 0}
            self.batches[batch_id] = batch
            public = self._public(batch)
        if self.create_error is not None:
            return self.create_error
        if self.create_delay:
            time.sleep(self.create_delay)
        return Reply(200, public)

    def _list(self, query: dict) -> Reply:
        if not self.list_supported:
            return Reply(404, {"error": {"message": "not found"}})
        limit = int(query.get("limit", ["20"])[0])
        after = query.get("after", [None])[0]
        with self.lock:
            newest_first = [self._public(b) for b in reversed(list(self.batches.values()))]
        if after:
            ids = [b["id"] for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1:] if after in ids else []
        page = newest_first[:limit]
        return Reply(200, {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                           "last_id": page[-1]["id"] if page else None, "has_more": len(newest_first) > limit})

    def _retrieve(self, batch_id: str) -> Reply:
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return Reply(404, {"error": {"message": "no such batch", "code": "not_found"}})
            if batch["status"] not in ("completed", "failed", "expired", "cancelled") and not self.hold:
                total = batch["_total"]
                batch["_done"] = min(total, batch["_done"] + (self.step or total))
                batch["status"] = "in_progress"
                if batch["_done"] >= total:
                    self._finish(batch)
            elif self.hold and batch["status"] == "validating":
                batch["status"] = "in_progress"
            self._count(batch)
            return Reply(200, self._public(batch))

    # -- inside (under self.lock) -------------------------------------------------------------

    def _input(self, batch: dict) -> list[dict]:
        content = self.files[batch["input_file_id"]]["bytes"]
        return [json.loads(line) for line in content.splitlines() if line.strip()]

    def _count(self, batch: dict) -> None:
        if batch["status"] in ("completed", "expired", "cancelled") or batch.get("_lines"):
            lines = batch.get("_lines", [])
            ok = sum(1 for where, _ in lines if where == "output")
            batch["request_counts"] = {"total": batch["_total"], "completed": ok, "failed": len(lines) - ok}
        elif batch["status"] == "in_progress":
            batch["request_counts"] = {"total": batch["_total"], "completed": batch["_done"], "failed": 0}

    def _finish(self, batch: dict) -> None:
        if self.final_status == "failed":
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "arquivo inválido"}]}
            return
        lines = []
        for number, line in enumerate(self._input(batch)):
            if self.expire_after is not None and number >= self.expire_after:
                lines.append(("error", {"id": f"batch_req_{number}", "custom_id": line["custom_id"], "response": None,
                                        "error": {"code": "batch_expired", "message": "This request could not be"
                                                  " executed before the completion window expired."}}))
                continue
            reply = self.reply(product_of(line["body"]))
            where = "output" if reply.status == 200 else "error"
            lines.append((where, {"id": f"batch_req_{number}", "custom_id": line["custom_id"],
                                  "response": {"status_code": reply.status, "request_id": f"req_{number}",
                                               "body": reply.body}, "error": None}))
        batch["_lines"] = lines
        for where in ("output", "error"):
            chosen = [json.dumps(body, ensure_ascii=False) for w, body in lines if w == where]
            if where == "output":
                chosen += self.extra_output
            if chosen:
                file_id = self._new_id("file-")
                self.files[file_id] = {"bytes": ("\n".join(chosen) + "\n").encode(), "filename": f"{where}.jsonl",
                                       "purpose": "batch_output"}
                batch[f"{where}_file_id"] = file_id
        batch["status"] = self.final_status

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}
