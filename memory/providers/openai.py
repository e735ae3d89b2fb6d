"""An OpenAI-compatible chat-completions client (OpenAI, Ollama, vLLM, LM Studio).

It asks for a JSON object, checks it against the content schema, and records
the token usage the server reports. 429, 5xx, timeouts and connection errors
are retried with exponential back-off (honouring a short ``Retry-After``), then
fail as ``ProviderUnavailable``; so does an account out of quota, at once (a
429 whose error code is ``insufficient_quota`` does not pass with time). Other
4xx fail at once, and malformed output is asked for again, then fails: both as
``GenerationError``.
"""
from __future__ import annotations

import json
import logging
import time

import httpx

from memory.providers.content import GeneratedContent, validate_generated_content
from memory.providers.prompts import SYSTEM_PROMPT, USER_PROMPT_TEMPLATE
from memory.providers.base import ContentProvider, GenerationError, ProviderUnavailable

logger = logging.getLogger("memory")

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# OpenAI's error code for an account whose credit is spent: no retry helps until someone pays.
OUT_OF_QUOTA = "insufficient_quota"


def _error_code(response: httpx.Response) -> str:
    """The ``error.code`` (else ``error.type``) of an OpenAI-style error body, or ``""``."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    return str(error.get("code") or error.get("type") or "")


class OpenAIProvider(ContentProvider):
    name = "openai"

    def __init__(self, *, base_url: str, api_key: str, model: str, timeout: float,
                 max_attempts: int = 3, backoff: float = 1.0, max_backoff: float = 20.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff

    def _request_body(self, product_data: dict) -> dict:
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": USER_PROMPT_TEMPLATE.format(
                    product_json=json.dumps(product_data, ensure_ascii=False, default=str))},
            ],
            "response_format": {"type": "json_object"},
            "temperature": 0.4,
        }

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _wait(self, attempt: int, retry_after: str | None = None) -> None:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        if retry_after:
            try:
                delay = min(self.max_backoff, max(delay, float(retry_after)))
            except ValueError:
                pass
        time.sleep(delay)

    def generate(self, product_data: dict) -> GeneratedContent:
        body = self._request_body(product_data)
        url = f"{self.base_url}/chat/completions"
        last_problem = ""
        unavailable = True  # what the last attempt met: the provider not answering, or a bad answer
        with httpx.Client(timeout=self.timeout) as client:
            for attempt in range(1, self.max_attempts + 1):
                unavailable = True
                try:
                    response = client.post(url, json=body, headers=self._headers())
                except httpx.TimeoutException:
                    last_problem = f"tempo esgotado após {self.timeout:g} s"
                except httpx.TransportError as exc:
                    last_problem = f"falha de conexão ({exc.__class__.__name__})"
                else:
                    if response.status_code == 429 and _error_code(response) == OUT_OF_QUOTA:
                        raise ProviderUnavailable(f"Provedor sem cota (HTTP 429 {OUT_OF_QUOTA})")
                    if response.status_code in RETRYABLE_STATUS:
                        last_problem = f"HTTP {response.status_code}"
                        if attempt < self.max_attempts:
                            logger.warning("Provedor respondeu %s; nova tentativa %d/%d",
                                           last_problem, attempt + 1, self.max_attempts)
                            self._wait(attempt, response.headers.get("Retry-After"))
                        continue
                    if response.status_code >= 400:
                        raise GenerationError(
                            f"Provedor recusou a requisição: HTTP {response.status_code} {response.text[:200]}"
                        )
                    try:
                        return self._parse(response)
                    except ValueError as exc:
                        last_problem = f"resposta inválida ({exc})"
                        unavailable = False
                if attempt < self.max_attempts:
                    logger.warning("Geração falhou: %s; nova tentativa %d/%d",
                                   last_problem, attempt + 1, self.max_attempts)
                    self._wait(attempt)
        error = ProviderUnavailable if unavailable else GenerationError
        raise error(f"Geração falhou após {self.max_attempts} tentativas: {last_problem}")

    def _parse(self, response: httpx.Response) -> GeneratedContent:
        try:
            data = response.json()
            message = data["choices"][0]["message"]["content"]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise ValueError("corpo fora do formato chat-completions") from None
        try:
            content = json.loads(message)
        except (TypeError, ValueError):
            raise ValueError("o conteúdo não é JSON") from None
        content = validate_generated_content(content)
        return GeneratedContent(
            content=content,
            tokens_prompt=int(usage.get("prompt_tokens") or 0),
            tokens_completion=int(usage.get("completion_tokens") or 0),
            generator_version=self.generator_version,
        )
