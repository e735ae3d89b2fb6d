"""A tiny OpenAI-compatible chat-completions server on loopback, with a realistic delay.

Run by hand (``bench/savings.py`` starts and stops it itself)::

    .venv/bin/python bench/fake_openai_server.py --port 8765 --min-delay 0.3 --max-delay 0.8

then ``LLM_PROVIDER=openai OPENAI_BASE_URL=http://127.0.0.1:8765/v1 manage.py generate_content ...``.

``POST /v1/chat/completions`` sleeps 300-800 ms (uniform; seeded), then answers
a chat completion whose message content is a JSON object of the content
schema (title, description, bullet_points, seo_keywords) written from the
product JSON found in the user message, ~3 KB of pt-BR text (for a variant's
call, ``MEMORY_FAMILY_MODE=ask``, its title and one bullet point), and a ``usage``
block that estimates tokens at 4 characters each (prompt: system + user
messages; completion: the content). ``GET /stats`` tells how many completions
it served and the tokens it billed (``GET /stats?arrivals=1`` adds the
``time.time()`` at which each request arrived, for ``bench/rate_limit.py``).
It serves one request per thread and stops by itself after ``--max-seconds``.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import content_for  # noqa: E402


def tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class State:
    def __init__(self, min_delay: float, max_delay: float, seed: int):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.min_delay, self.max_delay = min_delay, max_delay
        self.completions = 0
        self.arrivals: list[float] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def delay(self) -> float:
        with self.lock:
            return self.rng.uniform(self.min_delay, self.max_delay)


def product_from(messages: list) -> dict:
    user = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
    start, end = user.find("{"), user.rfind("}")
    try:
        data = json.loads(user[start:end + 1])
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def variant_answer(data: dict) -> dict:
    """The answer to a variant call: the family's title with the variant's values, and one bullet."""
    family = data.get("familia") if isinstance(data.get("familia"), dict) else {}
    values = {str(k): str(v) for k, v in data["variante"].items()}
    title = " ".join([str(family.get("title") or "Produto"), *values.values()])[:200]
    bullet = "Esta variante: " + ", ".join(f"{k.lower()} {v}" for k, v in values.items())
    return {"title": title, "bullet_point": bullet[:300]}


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: the bench reads /stats
            pass

        def _send(self, status: int, body: dict) -> None:
            raw = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path.rstrip("/").endswith("/stats"):
                with state.lock:
                    stats = {"completions": state.completions, "prompt_tokens": state.prompt_tokens,
                             "completion_tokens": state.completion_tokens}
                    if "arrivals=1" in query:
                        stats["arrivals"] = list(state.arrivals)
                    self._send(200, stats)
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self):
            arrived = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "invalid JSON"}})
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": "not found"}})
                return
            with state.lock:
                state.arrivals.append(arrived)
            messages = request.get("messages") or []
            data = product_from(messages)
            if isinstance(data.get("variante"), dict):  # a variant's title and bullet (MEMORY_FAMILY_MODE=ask)
                content = variant_answer(data)
            else:
                title = str(data.get("title") or data.get("sku") or "Produto")
                source = {"sku": str(data.get("sku") or title), "title": title, "brand": str(data.get("brand") or ""),
                          "material": str(data.get("material") or "material resistente"),
                          "color": str(data.get("color") or "várias cores"), "category": str(data.get("category") or "")}
                content = content_for(source)
                content["seo_keywords"] = [k for k in content["seo_keywords"] if k.strip()][:10] or ["produto"]
            text = json.dumps(content, ensure_ascii=False)
            prompt = sum(tokens(str(m.get("content", ""))) for m in messages)
            completion = tokens(text)
            time.sleep(state.delay())
            with state.lock:
                state.completions += 1
                state.prompt_tokens += prompt
                state.completion_tokens += completion
            self._send(200, {
                "id": f"chatcmpl-bench-{state.completions}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "bench"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion},
            })

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--min-delay", type=float, default=0.3)
    parser.add_argument("--max-delay", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop by itself after this long")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State(args.min_delay, args.max_delay, args.seed)))
    server.daemon_threads = True
    threading.Timer(args.max_seconds, server.shutdown).start()
    print(f"fake OpenAI em http://127.0.0.1:{args.port}/v1", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
