"""Content providers, chosen by ``LLM_PROVIDER``: ``template`` (offline, default) or ``openai``."""
from __future__ import annotations

from django.conf import settings

from memory.providers.base import (
    BadProviderOutput,
    CircuitOpen,
    ContentProvider,
    GenerationError,
    ProviderRejected,
    ProviderUnavailable,
    QuotaExhausted,
    TruncatedOutput,
)
from memory.providers.openai import OpenAIProvider
from memory.providers.template import TemplateProvider

__all__ = [
    "BadProviderOutput", "CircuitOpen", "ContentProvider", "GenerationError", "OpenAIProvider", "ProviderRejected",
    "ProviderUnavailable", "QuotaExhausted", "TemplateProvider", "TruncatedOutput", "get_provider",
]


def get_provider() -> ContentProvider:
    """The provider the settings choose (one of ``LLM_PROVIDERS``, which the settings refuse
    anything else from the environment); ``ImproperlyConfigured`` for an unknown one."""
    from django.core.exceptions import ImproperlyConfigured

    name = settings.LLM_PROVIDER
    if name == "template":
        return TemplateProvider()
    if name == "openai":
        return OpenAIProvider(
            base_url=settings.OPENAI_BASE_URL,
            api_key=settings.OPENAI_API_KEY,
            model=settings.LLM_MODEL,
            timeout=settings.LLM_TIMEOUT,
            connect_timeout=settings.LLM_CONNECT_TIMEOUT,
            max_attempts=settings.LLM_MAX_ATTEMPTS,
            response_format=settings.LLM_RESPONSE_FORMAT,
            max_tokens=settings.LLM_MAX_TOKENS,
            temperature=settings.LLM_TEMPERATURE,
        )
    raise ImproperlyConfigured(f"LLM_PROVIDER desconhecido: {name!r} (use um de {', '.join(settings.LLM_PROVIDERS)})")
