"""Providers: the offline template writer, and the OpenAI-compatible client against a real local HTTP server."""
import json
import time

import pytest
from werkzeug import Response

from memory.providers.content import validate_generated_content
from memory.providers.prompts import PROMPT_VERSION
from memory.providers import GenerationError, OpenAIProvider, ProviderUnavailable, TemplateProvider
from memory.providers.template import clip

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


def test_openai_provider_gives_up_after_repeated_5xx_as_unavailable(httpserver):
    httpserver.expect_request("/v1/chat/completions").respond_with_data("boom", status=503)
    with pytest.raises(ProviderUnavailable, match="3 tentativas.*HTTP 503"):
        provider(httpserver).generate(PRODUCT)
    assert len(httpserver.log) == 3


def test_openai_provider_gives_up_after_repeated_429_as_unavailable(httpserver):
    httpserver.expect_request("/v1/chat/completions").respond_with_json({"error": {"code": "rate_limit_exceeded"}},
                                                                        status=429)
    with pytest.raises(ProviderUnavailable, match="3 tentativas.*HTTP 429"):
        provider(httpserver).generate(PRODUCT)
    assert len(httpserver.log) == 3


def test_openai_provider_out_of_quota_is_unavailable_at_once(httpserver):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                   "code": "insufficient_quota"}}, status=429)
    with pytest.raises(ProviderUnavailable, match=r"^Provedor sem cota \(HTTP 429 insufficient_quota\)$"):
        provider(httpserver).generate(PRODUCT)
    assert len(httpserver.log) == 1  # waiting does not bring credit back


def test_openai_provider_does_not_retry_other_4xx(httpserver):
    httpserver.expect_request("/v1/chat/completions").respond_with_json({"error": "bad key"}, status=401)
    with pytest.raises(GenerationError, match="HTTP 401") as excinfo:
        provider(httpserver).generate(PRODUCT)
    assert not isinstance(excinfo.value, ProviderUnavailable)
    assert len(httpserver.log) == 1


def test_openai_provider_retries_malformed_json_then_fails(httpserver):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(completion("{not json"))
    with pytest.raises(GenerationError, match="não é JSON") as excinfo:
        provider(httpserver).generate(PRODUCT)
    assert not isinstance(excinfo.value, ProviderUnavailable)  # it answered: a bad answer, not an outage
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
    with pytest.raises(ProviderUnavailable, match="tempo esgotado"):
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


def test_openai_provider_unreachable_is_unavailable():
    with pytest.raises(ProviderUnavailable, match="falha de conexão"):
        OpenAIProvider(base_url="http://127.0.0.1:1/v1", api_key="", model="m", timeout=1.0,
                       max_attempts=1).generate(PRODUCT)


def test_template_provider_fits_the_schema_with_the_longest_fields_generation_accepts():
    """Every field at its limit (services.generation.validate_product_data): the product's own
    description gives way, the closing sentences stay, and the content is valid."""
    product = {"sku": "L1", "title": "T" * 500, "brand": "Marca " * 33, "category": "c" * 200, "color": "a" * 200,
               "material": "m" * 200, "size": "s" * 200, "description": "palavra " * 625,
               "attributes": {"voltagem": "v" * 400}}
    content = TemplateProvider().generate(product).content
    validate_generated_content(content)
    assert len(content["description"]) <= 5000
    assert "palavra" in content["description"] and content["description"].endswith("do assunto.")
    assert all(len(bullet) <= 300 for bullet in content["bullet_points"])


def test_template_provider_leaves_content_that_fits_as_it_was():
    product = {**PRODUCT, "description": "Leve e respirável."}
    content = TemplateProvider().generate(product).content
    assert "Leve e respirável." in content["description"].split("\n\n")


@pytest.mark.parametrize("text, limit, clipped", [
    ("curto", 10, "curto"),
    ("uma frase longa demais", 12, "uma frase…"),
    ("semespacos", 5, "seme…"),
])
def test_clip_cuts_at_a_space_and_marks_the_cut(text, limit, clipped):
    assert clip(text, limit) == clipped
    assert len(clip(text, limit)) <= limit
