"""The OpenAI Batch API for the ``openai`` provider: the JSONL a batch is made of, its upload
(``/v1/files``), its creation (``/v1/batches``), its status, and its result lines read into the
same ``GeneratedContent`` (or typed error) a direct call gives.

Every line's request is the provider's own (:meth:`OpenAIProvider.request_options`: the same
messages, response format, ``max_completion_tokens`` and temperature rule), and every result is
read by the provider's own :meth:`OpenAIProvider.parse` (fenced JSON, the content schema,
``finish_reason: "length"`` as ``TruncatedOutput``): a batch line and a direct call store the same
content and count the same tokens. The client is the provider's, one per process.

What a batch costs is not decided here: the tokens are the provider's report; the money is
``pricing.estimate_cost(..., factor=LLM_BATCH_DISCOUNT)``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Iterator

import openai
from openai.types.chat import ChatCompletion

from memory.providers.base import (
    BadProviderOutput,
    GenerationError,
    ProviderRejected,
    ProviderUnavailable,
)
from memory.providers.content import GeneratedContent
from memory.providers.openai import (
    NO_AUTHORIZATION, OpenAIProvider, _count, _failed_after, _requests_made, _typed_error,
)

logger = logging.getLogger("memory")

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
# The batch's metadata key holding the run's reference: how a resumed run finds its batch.
REFERENCE_KEY = "beecatalog_run"
# OpenAI's limits for one batch: 50,000 requests, an input file of 200 MB.
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024

# The provider's statuses after which a batch changes no more.
FINISHED = ("completed", "failed", "expired", "cancelled")
# Looking for a batch a crashed run created: batches listed newest first, down to this long
# before the run began (clocks differ).
FIND_MARGIN_SECONDS = 3600
# How :meth:`BatchClient.lines` gives a line that is not a JSON object.
INVALID = "__invalid_line__"


@dataclass(frozen=True)
class BatchStatus:
    """What the provider says of one batch."""

    batch_id: str
    status: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_file_id: str = ""
    output_file_id: str = ""
    error_file_id: str = ""
    errors: str = ""  # why a batch failed as a whole (its input file refused), for people

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def of(cls, batch) -> "BatchStatus":
        counts = getattr(batch, "request_counts", None)
        errors = getattr(getattr(batch, "errors", None), "data", None) or []
        return cls(
            batch_id=str(batch.id),
            status=str(batch.status),
            total=int(getattr(counts, "total", 0) or 0),
            completed=int(getattr(counts, "completed", 0) or 0),
            failed=int(getattr(counts, "failed", 0) or 0),
            input_file_id=str(getattr(batch, "input_file_id", "") or ""),
            output_file_id=str(getattr(batch, "output_file_id", "") or ""),
            error_file_id=str(getattr(batch, "error_file_id", "") or ""),
            errors="; ".join(str(getattr(e, "message", "") or getattr(e, "code", "") or e) for e in errors)[:500],
        )


@dataclass(frozen=True)
class LineResult:
    """One result line: the content, or the error it ends with; and the usage billed for it
    either way (a line that holds no valid content was paid for all the same)."""

    custom_id: str
    generated: GeneratedContent | None = None
    error: GenerationError | None = None
    tokens_prompt: int = 0
    tokens_completion: int = 0
    tokens_cached: int = 0

    @property
    def tokens_billed(self) -> int:
        return self.tokens_prompt + self.tokens_completion


def _operation_error(what: str, exc: openai.OpenAIError, attempts: int, provider: OpenAIProvider) -> GenerationError:
    """The typed error of a failed Batch API call, its message naming the call (``what``)."""
    error = _typed_error(exc, attempts, (provider.connect_timeout, provider.timeout))
    detail = str(error).removeprefix(_failed_after(attempts) + ": ")
    tries = f" após {attempts} tentativa{'s' if attempts != 1 else ''}" if attempts > 1 else ""
    return type(error)(f"API de lotes: {what} falhou{tries}: {detail}")


class BatchClient:
    """The Batch API calls of one provider (its client, its key, its timeouts)."""

    def __init__(self, provider: OpenAIProvider):
        self.provider = provider

    def _client(self, retries: int) -> openai.OpenAI:
        return self.provider.client.with_options(max_retries=retries)

    def _options(self) -> dict:
        return {} if self.provider.api_key else {"extra_headers": NO_AUTHORIZATION}

    def _call(self, what: str, retries: int, call):
        try:
            return call(self._client(retries))
        except openai.OpenAIError as exc:
            raise _operation_error(what, exc, _requests_made(exc), self.provider) from None

    # -- the input ---------------------------------------------------------------------------

    def request_line(self, custom_id: str, product_data: dict) -> bytes:
        """One line of the batch's JSONL: the chat-completions request a direct call would send."""
        line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT,
                "body": self.provider.request_options(product_data)}
        return (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode()

    def upload(self, jsonl: IO[bytes], filename: str) -> str:
        """Upload the JSONL (purpose ``batch``); the file's id. Retried like a generation: a
        second upload only leaves an unused file."""
        created = self._call(
            "envio do arquivo do lote (/v1/files)", self.provider.max_attempts - 1,
            lambda c: c.files.create(file=(filename, jsonl, "application/jsonl"), purpose="batch", **self._options()),
        )
        return str(created.id)

    def create(self, input_file_id: str, reference: str) -> BatchStatus:
        """Create the batch, never retried: a creation whose answer was lost may have made one,
        and a second would send every product again. Its metadata carries ``reference``."""
        batch = self._call(
            "criação do lote (/v1/batches)", 0,
            lambda c: c.batches.create(input_file_id=input_file_id, endpoint=ENDPOINT,
                                       completion_window=COMPLETION_WINDOW,
                                       metadata={REFERENCE_KEY: reference}, **self._options()),
        )
        return BatchStatus.of(batch)

    def find(self, reference: str, since: datetime) -> BatchStatus | None:
        """The batch whose metadata holds ``reference``, created after ``since`` (less a margin),
        or None when the provider has none."""
        oldest = since.timestamp() - FIND_MARGIN_SECONDS

        def look(client):
            for batch in client.batches.list(limit=100, **self._options()):
                if (getattr(batch, "metadata", None) or {}).get(REFERENCE_KEY) == reference:
                    return BatchStatus.of(batch)
                if (getattr(batch, "created_at", 0) or 0) < oldest:
                    return None
            return None

        return self._call("consulta dos lotes (/v1/batches)", self.provider.max_attempts - 1, look)

    def retrieve(self, batch_id: str) -> BatchStatus:
        return BatchStatus.of(self._call(
            f"consulta do lote {batch_id}", self.provider.max_attempts - 1,
            lambda c: c.batches.retrieve(batch_id, **self._options()),
        ))

    # -- the results -------------------------------------------------------------------------

    def lines(self, file_id: str) -> Iterator[dict]:
        """The JSON lines of a result file, streamed; a line that is not a JSON object is given as
        ``{INVALID: <its start>}``."""
        what = f"leitura do arquivo {file_id}"
        try:
            with self._client(self.provider.max_attempts - 1).files.with_streaming_response.content(
                    file_id, **self._options()) as response:
                for raw in response.iter_lines():
                    if not raw.strip():
                        continue
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        line = None
                    yield line if isinstance(line, dict) else {INVALID: raw[:200]}
        except openai.OpenAIError as exc:
            raise _operation_error(what, exc, _requests_made(exc), self.provider) from None

    def parse_line(self, line: dict) -> LineResult:
        """A result line (of the output or the error file) as the provider reads a direct answer."""
        custom_id = str(line.get("custom_id") or "")
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        body = response.get("body")
        usage = body.get("usage") if isinstance(body, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        billed = {
            "tokens_prompt": _count(usage.get("prompt_tokens")),
            "tokens_completion": _count(usage.get("completion_tokens")),
            "tokens_cached": _count((usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                                    if isinstance(usage.get("prompt_tokens_details"), dict) else 0),
        }
        wasted = billed["tokens_prompt"] + billed["tokens_completion"]
        if INVALID in line:
            return LineResult(custom_id, error=BadProviderOutput(
                f"linha de resultado do lote que não é JSON: {str(line[INVALID])[:80]!r}"))
        status = response.get("status_code")
        if line.get("error") or status != 200:
            return LineResult(custom_id, error=_line_error(line.get("error"), status, body, wasted), **billed)
        completion = ChatCompletion.construct(**body) if isinstance(body, dict) else body
        try:
            generated = self.provider.parse(completion)
        except BadProviderOutput as exc:
            return LineResult(custom_id, error=exc, **billed)
        return LineResult(custom_id, generated=generated, tokens_prompt=generated.tokens_prompt,
                          tokens_completion=generated.tokens_completion, tokens_cached=generated.tokens_cached)


def _line_error(error, status, body, wasted: int) -> GenerationError:
    """The typed error of a result line that holds no answer: a line-level error (the batch
    expired or was cancelled before the request ran), or the request's own HTTP error."""
    if error:
        detail = error if isinstance(error, dict) else {"message": str(error)}
        code = str(detail.get("code") or "")
        message = str(detail.get("message") or code or "erro")[:200]
        # Not run (expired, cancelled): a later batch may do it; anything else the provider refused.
        kind = ProviderUnavailable if code in ("batch_expired", "batch_cancelled") else ProviderRejected
        return kind(f"o lote não gerou este produto: {message}", tokens_wasted=wasted)
    body_error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
    message = str(body_error.get("message") or "")[:200]
    try:
        code = int(status)
    except (TypeError, ValueError):
        return BadProviderOutput(f"linha de resultado do lote sem status HTTP ({status!r})", tokens_wasted=wasted)
    if code in (408, 409, 429) or code >= 500:
        return ProviderUnavailable(f"HTTP {code} {message}".rstrip(), tokens_wasted=wasted)
    return ProviderRejected(f"Provedor recusou a requisição: HTTP {code} {message}".rstrip(), tokens_wasted=wasted)
