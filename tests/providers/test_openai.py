"""The OpenAI provider on the official SDK, against a scripted OpenAI-compatible server on loopback."""
import email.utils
import time

import pytest
from django.test import override_settings

from memory.providers import (
    BadProviderOutput,
    GenerationError,
    OpenAIProvider,
    ProviderRejected,
    ProviderUnavailable,
    QuotaExhausted,
    TruncatedOutput,
    get_provider,
)
from memory.providers.content import content_json_schema
from memory.providers.openai import shared_client
from memory.providers.prompts import PROMPT_VERSION
from tests.providers.fake_openai import GOOD_CONTENT, Reply, completion, error

PRODUCT = {"sku": "ABC123", "title": "Tênis de Corrida Leve", "brand": "Olympikus"}
FAST = {"retry-after-ms": "5"}  # keeps the retry tests quick; the back-off itself is tested apart


def provider(server_url, **kwargs):
    options = {"timeout": 5.0, "connect_timeout": 2.0, "max_attempts": 3}
    options.update(kwargs)
    return OpenAIProvider(base_url=server_url, api_key=options.pop("api_key", "sk-test"), model="gpt-4o-mini",
                          **options)


def test_returns_content_and_reported_usage(fake_openai):
    result = provider(fake_openai.url).generate(PRODUCT)
    assert result.content == GOOD_CONTENT
    assert (result.tokens_prompt, result.tokens_completion) == (812, 455)
    assert result.generator_version == f"openai:gpt-4o-mini:{PROMPT_VERSION}"
    request = fake_openai.requests[0]
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "gpt-4o-mini"
    assert "Tênis de Corrida Leve" in request.body["messages"][1]["content"]


def test_strict_json_schema_is_asked_for_by_default(fake_openai):
    provider(fake_openai.url).generate(PRODUCT)
    response_format = fake_openai.requests[0].body["response_format"]
    assert response_format == {"type": "json_schema", "json_schema": content_json_schema()}
    assert response_format["json_schema"]["strict"] is True


def test_json_object_is_asked_for_when_chosen(fake_openai):
    provider(fake_openai.url, response_format="json_object").generate(PRODUCT)
    assert fake_openai.requests[0].body["response_format"] == {"type": "json_object"}


def test_temperature_is_sent_only_when_set(fake_openai):
    provider(fake_openai.url).generate(PRODUCT)
    provider(fake_openai.url, temperature=0.3).generate(PRODUCT)
    unset, chosen = (r.body for r in fake_openai.requests)
    assert "temperature" not in unset
    assert chosen["temperature"] == 0.3


def test_max_tokens_is_sent_as_max_completion_tokens(fake_openai):
    provider(fake_openai.url, max_tokens=700).generate(PRODUCT)
    assert fake_openai.requests[0].body["max_completion_tokens"] == 700


def test_no_api_key_sends_no_authorization_header(fake_openai):
    provider(fake_openai.url, api_key="").generate(PRODUCT)
    assert "authorization" not in fake_openai.requests[0].headers


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_status_is_retried(fake_openai, status):
    fake_openai.script(error(status, headers=FAST))
    assert provider(fake_openai.url).generate(PRODUCT).content == GOOD_CONTENT
    assert fake_openai.calls == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_fails_at_once(fake_openai, status):
    fake_openai.script(then=error(status, "chave inválida"))
    with pytest.raises(ProviderRejected, match=f"HTTP {status}"):
        provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 1


def test_repeated_5xx_gives_up_after_max_attempts_as_unavailable(fake_openai):
    fake_openai.script(then=error(503, headers=FAST))
    with pytest.raises(ProviderUnavailable, match="3 tentativas.*HTTP 503"):
        provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 3


def test_insufficient_quota_is_quota_exhausted(fake_openai):
    fake_openai.script(then=error(429, "You exceeded your current quota", code="insufficient_quota", headers=FAST))
    with pytest.raises(QuotaExhausted, match="cota"):
        provider(fake_openai.url, max_attempts=1).generate(PRODUCT)
    assert isinstance(QuotaExhausted("x"), ProviderUnavailable)


def test_insufficient_quota_fails_at_once_without_the_sdks_retries(fake_openai):
    fake_openai.script(then=error(429, "You exceeded your current quota", code="insufficient_quota", headers=FAST))
    with pytest.raises(QuotaExhausted, match="1 tentativa: cota do provedor esgotada"):
        provider(fake_openai.url, max_attempts=5).generate(PRODUCT)
    assert fake_openai.calls == 1  # waiting does not bring credit back


def test_repeated_rate_limit_gives_up_after_max_attempts_as_unavailable(fake_openai):
    fake_openai.script(then=error(429, "Rate limit reached", code="rate_limit_exceeded", headers=FAST))
    with pytest.raises(ProviderUnavailable, match="3 tentativas.*HTTP 429") as excinfo:
        provider(fake_openai.url).generate(PRODUCT)
    assert not isinstance(excinfo.value, QuotaExhausted)
    assert fake_openai.calls == 3


def test_back_off_without_retry_after_grows_with_jitter(fake_openai):
    fake_openai.script(error(503), error(503))
    provider(fake_openai.url).generate(PRODUCT)
    first, second = fake_openai.gaps()
    # The SDK waits 0.5 s then 1 s, each less up to 25% (jitter): never in lockstep, never none.
    assert first >= 0.5 * 0.75 and second >= 1.0 * 0.75


@pytest.mark.parametrize(
    "headers, at_least",
    [
        ({"Retry-After": "1"}, 1.0),
        ({"retry-after-ms": "900"}, 0.9),
        ("http-date", 1.0),
    ],
    ids=["seconds", "retry-after-ms", "http-date"],
)
def test_retry_after_is_honoured(fake_openai, headers, at_least):
    if headers == "http-date":
        # 2.5 s ahead, cut to a whole second (1.5 to 2.5 s ahead): still a second away when the
        # SDK reads it, even half a second later on a loaded machine.
        headers = {"Retry-After": email.utils.formatdate(time.time() + 2.5, usegmt=True)}
    fake_openai.script(error(429, headers=headers))
    provider(fake_openai.url).generate(PRODUCT)
    # The SDK's own first back-off is at most 0.5 s: a longer gap is the server's.
    assert fake_openai.calls == 2 and fake_openai.gaps()[0] >= at_least - 0.02


def test_retry_after_longer_than_the_cap_is_not_retried(fake_openai):
    fake_openai.script(then=error(429, "slow down", headers={"Retry-After": "3600"}))
    with pytest.raises(ProviderUnavailable, match="Retry-After 3600"):
        provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 1


def test_read_timeout_is_retried_then_fails_naming_llm_timeout(fake_openai):
    fake_openai.script(then=Reply(delay=1.0))
    with pytest.raises(ProviderUnavailable, match="2 tentativas.*LLM_TIMEOUT = 0.2 s"):
        provider(fake_openai.url, timeout=0.2, max_attempts=2).generate(PRODUCT)
    assert fake_openai.calls == 2


def test_connect_timeout_fails_naming_llm_connect_timeout(full_backlog):
    with pytest.raises(ProviderUnavailable, match="LLM_CONNECT_TIMEOUT = 0.2 s"):
        provider(full_backlog.url, connect_timeout=0.2, timeout=30.0, max_attempts=1).generate(PRODUCT)


def test_connect_timeout_does_not_bound_a_slow_answer(fake_openai):
    fake_openai.script(Reply(delay=0.5))
    result = provider(fake_openai.url, connect_timeout=0.1, timeout=5.0, max_attempts=1).generate(PRODUCT)
    assert result.content == GOOD_CONTENT


def test_connection_refused_is_unavailable(fake_openai):
    url = fake_openai.url
    fake_openai.stop()
    with pytest.raises(ProviderUnavailable, match="falha de conexão"):
        provider(url, max_attempts=1).generate(PRODUCT)


def test_fenced_json_is_accepted(fake_openai):
    fake_openai.script(Reply(body=completion('```json\n{"title": "T", "description": "D",'
                                             ' "bullet_points": ["b"], "seo_keywords": ["k"]}\n```')))
    result = provider(fake_openai.url).generate(PRODUCT)
    assert result.content == {"title": "T", "description": "D", "bullet_points": ["b"], "seo_keywords": ["k"]}
    assert fake_openai.calls == 1


def test_truncated_answer_fails_at_once_naming_llm_max_tokens(fake_openai):
    fake_openai.script(then=Reply(body=completion('{"title": "Tênis', finish_reason="length")))
    with pytest.raises(TruncatedOutput, match="LLM_MAX_TOKENS") as excinfo:
        provider(fake_openai.url, max_tokens=64).generate(PRODUCT)
    assert fake_openai.calls == 1
    assert isinstance(excinfo.value, BadProviderOutput)


def test_malformed_json_is_asked_again_then_fails_as_bad_output(fake_openai):
    fake_openai.script(then=Reply(body=completion("{not json")))
    with pytest.raises(BadProviderOutput, match="3 tentativas.*não é JSON"):
        provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 3


def test_content_missing_schema_fields_is_asked_again(fake_openai):
    fake_openai.script(Reply(body=completion({"title": "só título"})))
    assert provider(fake_openai.url).generate(PRODUCT).content == GOOD_CONTENT
    assert fake_openai.calls == 2


def test_body_outside_chat_completions_is_bad_output(fake_openai):
    fake_openai.script(then=Reply(body={"unexpected": True}))
    with pytest.raises(BadProviderOutput, match="chat-completions"):
        provider(fake_openai.url, max_attempts=1).generate(PRODUCT)


def test_retries_and_asking_again_share_one_budget_of_attempts(fake_openai):
    fake_openai.script(error(503, headers=FAST), Reply(body=completion("{not json")), then=error(503, headers=FAST))
    with pytest.raises(GenerationError, match="3 tentativas"):
        provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 3


@override_settings(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_ATTEMPTS=1)
def test_one_client_per_process_reuses_its_connection(fake_openai, settings):
    settings.OPENAI_BASE_URL = fake_openai.url
    for _ in range(5):
        get_provider().generate(PRODUCT)  # a new provider each time, as generate_product makes
    assert fake_openai.calls == 5
    assert fake_openai.connections == 1
    body = fake_openai.requests[0].body  # the defaults of the settings
    assert body["response_format"]["type"] == "json_schema" and "temperature" not in body
    first, second = get_provider(), get_provider()
    assert first.client is second.client


def test_client_is_shared_per_server_and_timeouts(fake_openai):
    same = dict(base_url=fake_openai.url, api_key="k", connect_timeout=1.0, read_timeout=2.0)
    assert shared_client(**same) is shared_client(**same)
    assert shared_client(**{**same, "read_timeout": 3.0}) is not shared_client(**same)


# -- usage: what each attempt cost ----------------------------------------------------------


def test_cached_and_reasoning_tokens_are_parts_of_the_prompt_and_completion_counts(fake_openai):
    fake_openai.script(Reply(body=completion(prompt_tokens=2000, completion_tokens=600, usage_extra={
        "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 448, "accepted_prediction_tokens": 0},
    })))
    result = provider(fake_openai.url).generate(PRODUCT)
    assert (result.tokens_prompt, result.tokens_completion) == (2000, 600)
    assert (result.tokens_cached, result.tokens_reasoning) == (1536, 448)
    assert result.tokens_spent == 2600  # reasoning is not added again


@pytest.mark.parametrize("usage, expected", [
    ({"prompt_tokens_details": None, "completion_tokens_details": None}, (812, 455, 0, 0)),
    ({"prompt_tokens_details": {"cached_tokens": 5000}, "completion_tokens_details": {"reasoning_tokens": 900}},
     (812, 455, 812, 455)),  # a detail is never more than the count it is part of
    ({"prompt_tokens_details": {"cached_tokens": "muitos"}, "completion_tokens_details": {"reasoning_tokens": -3}},
     (812, 455, 0, 0)),
    ({"prompt_tokens": None, "completion_tokens": "x"}, (0, 0, 0, 0)),
    ({"prompt_tokens": 2**40}, (2**31 - 1, 455, 0, 0)),
])
def test_odd_usage_from_a_gateway_never_loses_the_paid_answer(fake_openai, usage, expected):
    body = completion()
    body["usage"].update(usage)
    fake_openai.script(Reply(body=body))
    result = provider(fake_openai.url).generate(PRODUCT)
    assert result.content == GOOD_CONTENT
    assert (result.tokens_prompt, result.tokens_completion, result.tokens_cached, result.tokens_reasoning) == expected


def test_every_malformed_answer_is_paid_for_in_tokens_wasted(fake_openai):
    fake_openai.script(then=Reply(body=completion("{not json", prompt_tokens=300, completion_tokens=20)))
    with pytest.raises(BadProviderOutput) as excinfo:
        provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 3 and excinfo.value.tokens_wasted == 3 * 320


def test_a_discarded_answer_before_a_good_one_is_wasted_and_the_good_one_spent(fake_openai):
    fake_openai.script(Reply(body=completion({"title": "só título"}, prompt_tokens=300, completion_tokens=20)))
    result = provider(fake_openai.url).generate(PRODUCT)
    assert result.content == GOOD_CONTENT
    assert (result.tokens_spent, result.tokens_wasted) == (812 + 455, 320)


def test_a_truncated_answer_is_wasted_with_the_attempts_before_it(fake_openai):
    fake_openai.script(Reply(body=completion("{not json", prompt_tokens=300, completion_tokens=20)),
                       Reply(body=completion('{"title": "Tê', finish_reason="length", prompt_tokens=700,
                                             completion_tokens=64)))
    with pytest.raises(TruncatedOutput) as excinfo:
        provider(fake_openai.url, max_tokens=64).generate(PRODUCT)
    assert fake_openai.calls == 2 and excinfo.value.tokens_wasted == 320 + 764


def test_a_refusal_is_paid_for(fake_openai):
    body = completion(prompt_tokens=300, completion_tokens=12)
    body["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "Não posso ajudar."}
    fake_openai.script(then=Reply(body=body))
    with pytest.raises(BadProviderOutput, match="recusou") as excinfo:
        provider(fake_openai.url, max_attempts=1).generate(PRODUCT)
    assert excinfo.value.tokens_wasted == 312


def test_errors_carry_the_usage_of_the_answers_before_them_and_none_of_their_own(fake_openai):
    fake_openai.script(error(503, headers=FAST), Reply(body=completion("{not json", prompt_tokens=300,
                                                                       completion_tokens=20)),
                       then=error(503, headers=FAST))
    with pytest.raises(ProviderUnavailable) as excinfo:
        provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 3 and excinfo.value.tokens_wasted == 320


def test_a_200_whose_body_is_not_json_wastes_nothing_it_can_know(fake_openai):
    fake_openai.script(then=Reply(body="<html>proxy error</html>"))
    with pytest.raises(GenerationError) as excinfo:
        provider(fake_openai.url, max_attempts=1).generate(PRODUCT)
    assert excinfo.value.tokens_wasted == 0
