"""Providers: the offline template writer, and the OpenAI-compatible client against a real local HTTP server."""
import json
import time

import pytest
from werkzeug import Response

from memory.providers.content import validate_generated_content
from memory.providers.prompts import PROMPT_VERSION
from memory.providers import GenerationError, OpenAIProvider, TemplateProvider

PRODUCT = {"sku": "ABC123", "title": "Tênis de Corrida Leve", "brand": "Olympikus", "color": "Azul", "category": "Esporte"}
GOOD = {
    "title": "Tênis de Corrida Leve Olympikus",
    "description": "Leveza e amortecimento.",
    "bullet_points": ["Leve", "Amortecido", "Respirável"],
    "seo_keywords": ["tênis de corrida", "olympikus"],
}


def completion(content, prompt_tokens=812, completion_tokens=455):
    body = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": body}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def provider(httpserver, **kwargs):
    options = {"timeout": 2.0, "max_attempts": 3, "backoff": 0.01}
    options.update(kwargs)
    return OpenAIProvider(base_url=httpserver.url_for("/v1"), api_key="sk-test", model="gpt-4o-mini", **options)


def test_template_provider_is_deterministic_pt_br_and_valid():
    first = TemplateProvider().generate(PRODUCT)
    assert first == TemplateProvider().generate(dict(PRODUCT))
    validate_generated_content(first.content)
    assert "Olympikus" in first.content["title"]
    assert "Marca: Olympikus" in first.content["bullet_points"]
    assert first.tokens_prompt > 0 and first.tokens_completion > 0
    assert first.generator_version == f"template:template:{PROMPT_VERSION}"


def test_openai_provider_returns_content_and_reported_usage(httpserver):
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_json(completion(GOOD))
    result = provider(httpserver).generate(PRODUCT)
    assert result.content == GOOD
    assert (result.tokens_prompt, result.tokens_completion) == (812, 455)
    assert result.generator_version == f"openai:gpt-4o-mini:{PROMPT_VERSION}"
    request, _ = httpserver.log[0]
    body = request.get_json()
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "gpt-4o-mini"
    assert body["response_format"] == {"type": "json_object"}
    assert "Tênis de Corrida Leve" in body["messages"][1]["content"]


def test_openai_provider_retries_429_then_succeeds(httpserver):
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": "rate limited"}}, status=429
    )
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_json(completion(GOOD))
    assert provider(httpserver).generate(PRODUCT).content == GOOD
    assert len(httpserver.log) == 2


def test_openai_provider_gives_up_after_repeated_5xx(httpserver):
    httpserver.expect_request("/v1/chat/completions").respond_with_data("boom", status=503)
    with pytest.raises(GenerationError, match="3 tentativas.*HTTP 503"):
        provider(httpserver).generate(PRODUCT)
    assert len(httpserver.log) == 3


def test_openai_provider_does_not_retry_other_4xx(httpserver):
    httpserver.expect_request("/v1/chat/completions").respond_with_json({"error": "bad key"}, status=401)
    with pytest.raises(GenerationError, match="HTTP 401"):
        provider(httpserver).generate(PRODUCT)
    assert len(httpserver.log) == 1


def test_openai_provider_retries_malformed_json_then_fails(httpserver):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(completion("{not json"))
    with pytest.raises(GenerationError, match="não é JSON"):
        provider(httpserver).generate(PRODUCT)
    assert len(httpserver.log) == 3


def test_openai_provider_rejects_content_missing_schema_fields(httpserver):
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_json(completion({"title": "só título"}))
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_json(completion(GOOD))
    assert provider(httpserver).generate(PRODUCT).content == GOOD


def test_openai_provider_times_out(httpserver):
    def slow(request):
        time.sleep(1.0)
        return Response(json.dumps(completion(GOOD)), content_type="application/json")

    httpserver.expect_request("/v1/chat/completions").respond_with_handler(slow)
    started = time.monotonic()
    with pytest.raises(GenerationError, match="tempo esgotado"):
        provider(httpserver, timeout=0.2, max_attempts=2).generate(PRODUCT)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "content, field",
    [
        ({**GOOD, "title": ""}, "title"),
        ({**GOOD, "description": 5}, "description"),
        ({**GOOD, "bullet_points": []}, "bullet_points"),
        ({**GOOD, "seo_keywords": ["ok", ""]}, "seo_keywords"),
        ("texto", "conteúdo"),
    ],
)
def test_content_schema_names_the_bad_field(content, field):
    with pytest.raises(ValueError) as excinfo:
        validate_generated_content(content)
    assert str(excinfo.value).startswith(field)


def test_every_provider_the_settings_allow_is_built_and_no_other():
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from memory.providers import get_provider

    built = {}
    for name in settings.LLM_PROVIDERS:
        with override_settings(LLM_PROVIDER=name, OPENAI_API_KEY="sk-test"):
            built[name] = type(get_provider())
    assert built == {"template": TemplateProvider, "openai": OpenAIProvider}
    with override_settings(LLM_PROVIDER="opena1"), pytest.raises(ImproperlyConfigured, match="use um de template, openai"):
        get_provider()
