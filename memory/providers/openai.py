"""Generation through any OpenAI-compatible chat-completions server (OpenAI, a LiteLLM proxy,
vLLM, Ollama), on the official ``openai`` SDK.

One SDK client per process and configuration (``shared_client``) keeps the
connections alive between products. The SDK does the retries: 408, 409, 429,
5xx, timeouts and connection errors, with exponential back-off and jitter,
honouring ``Retry-After`` (seconds, ``retry-after-ms``, an HTTP date) and not
retrying when it asks for more than the SDK's cap (2 minutes); other 4xx fail at
once, and so does a 429 whose error code is ``insufficient_quota`` (an account
out of credit: waiting does not help, ``QuotaExhausted``). An answer that is not
valid content is asked for again within the same budget of ``max_attempts``
requests; an answer cut at the token limit fails at once. Every failure is one
of the typed errors of ``providers.base``.

Every request, the SDK's retries included, passes the deployment's rate limit
and circuit breaker first (``limits.py``, through ``_Client._send_request``): it
waits for its place under ``LLM_RPM``/``LLM_TPM``, and while the breaker is open
a generation raises ``CircuitOpen`` before anything is sent.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading

import httpx2
import openai
from django.conf import settings

from memory.providers import limits
from memory.providers.base import (
    BadProviderOutput,
    ContentProvider,
    GenerationError,
    ProviderRejected,
    ProviderUnavailable,
    QuotaExhausted,
    TruncatedOutput,
)
from memory.providers.content import (
    GeneratedContent,
    content_json_schema,
    parse_content_json,
    validate_generated_content,
)
from memory.providers.prompts import (
    USER_PROMPT_TEMPLATE, VARIANT_SYSTEM_PROMPT, VARIANT_USER_PROMPT_TEMPLATE, system_prompt,
)
from memory.providers.variants import validate_variant_answer, variant_json_schema, variant_request

logger = logging.getLogger("memory")

# The SDK wants a key; servers without one (Ollama, vLLM without --api-key) get this placeholder
# and no Authorization header (NO_AUTHORIZATION omits it from each request).
_NO_KEY = "sem-chave"
NO_AUTHORIZATION = {"Authorization": openai.Omit()}

# OpenAI's error code for an account whose credit is spent: no retry helps until someone pays.
OUT_OF_QUOTA = "insufficient_quota"


class _Client(openai.OpenAI):
    """The SDK client, with every chat-completions request (retries included) through the
    deployment's gate (``limits.gate()``: rate limit and circuit breaker), and no retry of a 429
    saying the quota is spent, nor once the breaker stops requests."""

    def _should_retry(self, response) -> bool:
        if response.status_code == 429 and _body_error_code(response) == OUT_OF_QUOTA:
            return False
        if _gated(response.request) and limits.gate().stopped():
            return False
        return super()._should_retry(response)

    def _send_request(self, request, *, stream: bool, **kwargs):
        # The SDK calls this once per HTTP attempt, its retries included: the one place that sees
        # each request before it is sent and what came back (an answer, or an exception).
        if not _gated(request):
            return super()._send_request(request, stream=stream, **kwargs)
        gate = limits.gate()
        try:
            passed = gate.enter(_estimated_tokens(request))
        except GenerationError as exc:  # not sent: not an SDK error, so the SDK does not retry it
            exc.requests_before = _retries_taken(request)
            raise
        try:
            response = super()._send_request(request, stream=stream, **kwargs)
        except BaseException:
            gate.leave(passed, status=None)
            raise
        status = response.status_code
        read = not stream  # a streamed body is not read yet
        gate.leave(passed, status=status,
                   out_of_quota=read and status == 429 and _body_error_code(response) == OUT_OF_QUOTA,
                   used_tokens=_reported_tokens(response) if read and response.is_success else None)
        return response


def _gated(request) -> bool:
    """Chat completions go through the gate (the Batch API's uploads and polls do not)."""
    return request.url.path.rstrip("/").endswith("/chat/completions")


def _retries_taken(request) -> int:
    try:
        return int(request.headers.get("x-stainless-retry-count", 0))
    except (TypeError, ValueError):
        return 0


def _estimated_tokens(request) -> int:
    """What a request may cost before it is answered, as providers reckon their token limits: its
    body at 4 bytes a token, plus the most its answer may use."""
    try:
        body = bytes(request.content)
        data = json.loads(body)
        most = int(data.get("max_completion_tokens") or data.get("max_tokens") or settings.LLM_MAX_TOKENS)
    except (ValueError, TypeError, AttributeError, httpx2.RequestNotRead):
        return settings.LLM_MAX_TOKENS
    return math.ceil(len(body) / 4) + max(0, most)


def _reported_tokens(response) -> int | None:
    """``usage.total_tokens`` (else prompt + completion) of an answer; None when it reports none."""
    try:
        usage = response.json().get("usage")
        total = usage.get("total_tokens")
        if total is None:
            total = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
        return max(0, int(total))
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return None


def _body_error_code(response) -> str:
    """The ``error.code`` (else ``error.type``) of an OpenAI-style error body, or ``""``."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    if not isinstance(error, dict):
        return ""
    return str(error.get("code") or error.get("type") or "")


_clients: dict[tuple, openai.OpenAI] = {}
_clients_lock = threading.Lock()


def shared_client(*, base_url: str, api_key: str, connect_timeout: float, read_timeout: float) -> openai.OpenAI:
    """The process's one SDK client for this server and these timeouts.

    Keyed by process id too: a forked worker (gunicorn, Celery prefork) builds its
    own instead of sharing its parent's sockets.
    """
    key = (os.getpid(), base_url, api_key, connect_timeout, read_timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            for stale in [k for k in _clients if k[0] != key[0]]:
                del _clients[stale]  # the parent's: not closed here, its sockets are the parent's
            client = _Client(
                base_url=base_url,
                api_key=api_key or _NO_KEY,
                timeout=openai.Timeout(read_timeout, connect=connect_timeout),
                max_retries=0,  # each call says how many retries its budget leaves
            )
            _clients[key] = client
    return client


def reset_clients() -> None:
    """Close and forget every client of this process (tests, and settings changed at run time)."""
    with _clients_lock:
        clients = [c for k, c in _clients.items() if k[0] == os.getpid()]
        _clients.clear()
    for client in clients:
        client.close()


def _requests_made(exc: openai.APIError) -> int:
    """Requests the SDK sent for the call that ended in ``exc`` (it numbers its retries in a header)."""
    request = getattr(exc, "request", None)
    try:
        return int(request.headers.get("x-stainless-retry-count", 0)) + 1
    except (AttributeError, TypeError, ValueError):
        return 1


# The most a token count may be: the entry's columns are PostgreSQL integers.
_MAX_COUNT = 2**31 - 1


def _count(value) -> int:
    """A token count the server reported (the SDK does not check the types of a response), within
    the columns' bounds; 0 for none, or for what is not a count: a paid answer is never lost over
    its usage."""
    try:
        return min(max(0, int(value or 0)), _MAX_COUNT)
    except (TypeError, ValueError, OverflowError):
        return 0


def _detail(usage, part: str, name: str, whole: int) -> int:
    """``usage.<part>.<name>`` as a count, at most ``whole`` (the count it is a part of); 0 when
    the server does not report it."""
    return min(_count(getattr(getattr(usage, part, None), name, 0)), whole)


def _error_body(exc: openai.APIStatusError) -> dict:
    body = exc.body if isinstance(exc.body, dict) else {}
    return body.get("error", body) if isinstance(body.get("error", body), dict) else {}


def _error_code(exc: openai.APIStatusError) -> str:
    error = _error_body(exc)
    return str(getattr(exc, "code", None) or error.get("code") or error.get("type") or "")


def _error_message(exc: openai.APIStatusError) -> str:
    """The server's own ``error.message``, else the SDK's (``Error code: 429 - ...``); 200 characters at most."""
    return str(_error_body(exc).get("message") or exc.message or "")[:200]


def _content_validator(fields: tuple[str, ...] | None):
    """The check of a content answer (of ``fields`` alone when given: the other keys are dropped)."""
    def validate(data):
        content = validate_generated_content(data, fields)
        return content if fields is None else {name: content[name] for name in fields}
    return validate


def _failed_after(attempts: int) -> str:
    """How every failed generation's message starts."""
    return f"Geração falhou após {attempts} tentativa{'s' if attempts != 1 else ''}"


def _typed_error(exc: openai.OpenAIError, attempts: int, timeouts: tuple[float, float]) -> GenerationError:
    """The ``providers.base`` error for an SDK error, after ``attempts`` requests in all."""
    after = _failed_after(attempts)
    if isinstance(exc, openai.APITimeoutError):
        if isinstance(exc.__cause__, httpx2.ConnectTimeout):
            problem = f"tempo esgotado ao conectar ao provedor (LLM_CONNECT_TIMEOUT = {timeouts[0]:g} s)"
        else:
            problem = f"tempo esgotado aguardando a resposta do provedor (LLM_TIMEOUT = {timeouts[1]:g} s)"
        return ProviderUnavailable(f"{after}: {problem}")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__.__class__.__name__ if exc.__cause__ else exc.__class__.__name__
        return ProviderUnavailable(f"{after}: falha de conexão com o provedor ({cause})")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = f"HTTP {status}"
        retry_after = exc.response.headers.get("retry-after-ms") or exc.response.headers.get("retry-after")
        if retry_after:
            detail += f" (Retry-After {retry_after}{' ms' if exc.response.headers.get('retry-after-ms') else ''})"
        message = _error_message(exc)
        if status == 429 and _error_code(exc) == OUT_OF_QUOTA:
            return QuotaExhausted(f"{after}: cota do provedor esgotada ({detail}): {message}")
        if status in (408, 409, 429) or status >= 500:
            return ProviderUnavailable(f"{after}: {detail} {message}".rstrip())
        return ProviderRejected(f"Provedor recusou a requisição: {detail} {message}".rstrip())
    return BadProviderOutput(f"{after}: resposta fora do formato chat-completions ({exc.__class__.__name__})")


class OpenAIProvider(ContentProvider):
    name = "openai"

    def __init__(self, *, base_url: str, api_key: str, model: str, timeout: float, connect_timeout: float = 5.0,
                 max_attempts: int = 3, response_format: str = "json_schema", max_tokens: int = 2048,
                 temperature: float | None = None):
        if response_format not in settings.LLM_RESPONSE_FORMATS:
            raise ValueError(
                f"response_format: use {' ou '.join(settings.LLM_RESPONSE_FORMATS)}, não {response_format!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_attempts = max(1, max_attempts)
        self.response_format = response_format
        self.max_tokens = max_tokens
        self.temperature = temperature

    @property
    def client(self) -> openai.OpenAI:
        return shared_client(base_url=self.base_url, api_key=self.api_key,
                             connect_timeout=self.connect_timeout, read_timeout=self.timeout)

    def request_options(self, product_data: dict, fields: tuple[str, ...] | None = None) -> dict:
        """The chat-completions request for one product (also the body of a Batch API line); with
        ``fields``, for those content fields alone."""
        return self._options(system_prompt(fields), USER_PROMPT_TEMPLATE.format(
            product_json=json.dumps(product_data, ensure_ascii=False, default=str)), content_json_schema(fields))

    def variant_request_options(self, base_content: dict, attributes: list[tuple[str, str]]) -> dict:
        """The chat-completions request for one variant's title and bullet point."""
        return self._options(VARIANT_SYSTEM_PROMPT, VARIANT_USER_PROMPT_TEMPLATE.format(
            variant_json=json.dumps(variant_request(base_content, attributes), ensure_ascii=False)),
            variant_json_schema())

    def _options(self, system: str, user: str, json_schema: dict) -> dict:
        if self.response_format == "json_schema":
            response_format = {"type": "json_schema", "json_schema": json_schema}
        else:
            response_format = {"type": "json_object"}
        options = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "response_format": response_format,
            "max_completion_tokens": self.max_tokens,
        }
        if self.temperature is not None:
            options["temperature"] = self.temperature
        return options

    def generate(self, product_data: dict, fields: tuple[str, ...] | None = None) -> GeneratedContent:
        return self._complete(self.request_options(product_data, fields), _content_validator(fields))

    def generate_variant(self, base_content: dict, attributes: list[tuple[str, str]]) -> GeneratedContent:
        """A short call: the variant's title and bullet point (``{"title", "bullet_point"}``)."""
        return self._complete(self.variant_request_options(base_content, attributes), validate_variant_answer)

    def _complete(self, options: dict, validate) -> GeneratedContent:
        """One generation: the request (through the deployment's gate, as every chat completion
        of :class:`_Client`), retried and re-asked within ``max_attempts``; ``validate`` checks
        the answer's JSON (``ValueError`` when it is not content of its schema)."""
        if not self.api_key:
            options["extra_headers"] = NO_AUTHORIZATION
        used = 0
        wasted = 0
        problem: BadProviderOutput | None = None
        while used < self.max_attempts:
            client = self.client.with_options(max_retries=self.max_attempts - used - 1)
            try:
                raw = client.chat.completions.with_raw_response.create(**options)
            except openai.OpenAIError as exc:
                error = _typed_error(exc, used + _requests_made(exc), (self.connect_timeout, self.timeout))
                error.tokens_wasted = wasted
                raise error from None
            except GenerationError as exc:  # the gate stopped a request before it was sent
                made = used + getattr(exc, "requests_before", 0)
                # CircuitOpen only when nothing was sent for this product: then it was not attempted.
                error = ProviderUnavailable(f"{_failed_after(made)}: {exc}") if made else exc
                error.tokens_wasted = wasted
                raise error from None
            used += raw.retries_taken + 1
            try:
                return dataclasses.replace(self.parse(raw.parse(), validate=validate), tokens_wasted=wasted)
            except TruncatedOutput as exc:
                exc.tokens_wasted += wasted
                raise
            except BadProviderOutput as exc:
                wasted += exc.tokens_wasted
                problem = exc
                if used < self.max_attempts:
                    logger.warning("Resposta do provedor descartada: %s; nova tentativa %d/%d",
                                   exc, used + 1, self.max_attempts)
        raise BadProviderOutput(f"{_failed_after(used)}: {problem}", tokens_wasted=wasted)

    def parse(self, completion, fields: tuple[str, ...] | None = None, *, validate=None) -> GeneratedContent:
        """Content and usage of one chat completion (of ``fields`` alone when given: other keys of
        the answer are dropped; ``validate``: another schema's check, a variant's); ``BadProviderOutput``
        (carrying the tokens it cost) when it holds no valid content."""
        validate = validate or _content_validator(fields)
        usage = getattr(completion, "usage", None)
        prompt = _count(getattr(usage, "prompt_tokens", 0))
        answer = _count(getattr(usage, "completion_tokens", 0))
        try:
            choice = completion.choices[0]
            message = choice.message
        except (AttributeError, IndexError, TypeError):
            raise BadProviderOutput("resposta inválida (corpo fora do formato chat-completions)",
                                    tokens_wasted=prompt + answer) from None
        if choice.finish_reason == "length":
            raise TruncatedOutput(
                f"Resposta cortada no limite de {self.max_tokens} tokens (finish_reason: length);"
                f" aumente LLM_MAX_TOKENS", tokens_wasted=prompt + answer)
        if getattr(message, "refusal", None):
            raise BadProviderOutput(f"resposta inválida (o modelo recusou: {str(message.refusal)[:200]})",
                                    tokens_wasted=prompt + answer)
        try:
            content = validate(parse_content_json(message.content))
        except ValueError as exc:
            raise BadProviderOutput(f"resposta inválida ({exc})", tokens_wasted=prompt + answer) from None
        return GeneratedContent(
            content=content,
            tokens_prompt=prompt,
            tokens_completion=answer,
            generator_version=self.generator_version,
            # OpenAI's usage counts both inside the totals above: cached tokens are prompt tokens
            # billed at the cached price, reasoning tokens are completion tokens.
            tokens_cached=_detail(usage, "prompt_tokens_details", "cached_tokens", prompt),
            tokens_reasoning=_detail(usage, "completion_tokens_details", "reasoning_tokens", answer),
        )
