"""The Batch API side of the OpenAI provider: a batch line is the request a direct call sends, and
its result is read exactly as a direct answer is (same content, same tokens, same errors)."""
import io
import json

import pytest

from memory.providers import BadProviderOutput, ProviderRejected, ProviderUnavailable, TruncatedOutput
from memory.providers.openai_batch import BatchClient
from tests.providers.fake_openai import GOOD_CONTENT, Reply, completion, error
from tests.providers.test_openai import PRODUCT, provider

FENCED = "Aqui está:\n```json\n" + json.dumps(GOOD_CONTENT, ensure_ascii=False) + "\n```"
USAGE = {"prompt_tokens_details": {"cached_tokens": 300}, "completion_tokens_details": {"reasoning_tokens": 40}}


def result_line(body, status=200, custom_id="7"):
    return {"id": "batch_req_1", "custom_id": custom_id, "error": None,
            "response": {"status_code": status, "request_id": "req_1", "body": body}}


@pytest.mark.parametrize("options", [{}, {"response_format": "json_object", "temperature": 0.2, "max_tokens": 900}])
def test_a_batch_line_is_the_request_a_direct_call_sends(fake_openai, options):
    chosen = provider(fake_openai.url, **options)
    chosen.generate(PRODUCT)
    line = json.loads(BatchClient(chosen).request_line("7", PRODUCT))
    assert line == {"custom_id": "7", "method": "POST", "url": "/v1/chat/completions",
                    "body": fake_openai.requests[0].body}


def test_a_result_line_reads_as_the_direct_answer_does(fake_openai):
    body = completion(FENCED, prompt_tokens=900, completion_tokens=410, usage_extra=USAGE)
    fake_openai.script(Reply(body=body))
    chosen = provider(fake_openai.url)
    direct = chosen.generate(PRODUCT)
    line = BatchClient(chosen).parse_line(result_line(body))
    assert line.error is None and line.custom_id == "7"
    assert line.generated == direct  # content, prompt/completion/cached/reasoning tokens, generator version
    assert direct.content == GOOD_CONTENT and (direct.tokens_cached, direct.tokens_reasoning) == (300, 40)
    assert (line.tokens_prompt, line.tokens_completion, line.tokens_cached) == (900, 410, 300)


@pytest.mark.parametrize(
    "body, status, error_type, message",
    [
        (completion("isto não é JSON", prompt_tokens=100, completion_tokens=20), 200, BadProviderOutput, "não é JSON"),
        (completion({"title": "só o título"}, prompt_tokens=100, completion_tokens=20), 200, BadProviderOutput,
         "description"),
        (completion(FENCED, prompt_tokens=100, completion_tokens=20, finish_reason="length"), 200, TruncatedOutput,
         "LLM_MAX_TOKENS"),
        (error(400, "modelo desconhecido").body, 400, ProviderRejected, "HTTP 400 modelo desconhecido"),
        (error(500, "falha interna").body, 500, ProviderUnavailable, "HTTP 500"),
    ],
)
def test_a_failed_line_is_a_typed_error_carrying_what_it_cost(fake_openai, body, status, error_type, message):
    line = BatchClient(provider(fake_openai.url)).parse_line(result_line(body, status))
    assert line.generated is None
    assert type(line.error) is error_type and message in str(line.error)
    billed = (body.get("usage") or {})
    assert line.error.tokens_wasted == line.tokens_billed == billed.get("total_tokens", 0)


def test_a_line_the_batch_never_ran_is_unavailable_not_refused(fake_openai):
    line = BatchClient(provider(fake_openai.url)).parse_line(
        {"custom_id": "3", "response": None, "error": {"code": "batch_expired", "message": "janela de 24 h esgotada"}})
    assert isinstance(line.error, ProviderUnavailable) and "janela de 24 h" in str(line.error)
    assert line.tokens_billed == 0


def test_the_batch_calls_go_through_the_provider_client(fake_openai):
    client = BatchClient(provider(fake_openai.url))
    file_id = client.upload(io.BytesIO(client.request_line("1", PRODUCT)), "lote.jsonl")
    created = client.create(file_id, "ref-1")
    assert (created.status, created.total, created.input_file_id) == ("validating", 1, file_id)
    assert client.find("ref-1", since=_now()) == created
    assert client.find("outra", since=_now()) is None
    done = client.retrieve(created.batch_id)
    assert done.finished and (done.completed, done.failed) == (1, 0)
    (line,) = list(client.lines(done.output_file_id))
    assert client.parse_line(line).generated.content == GOOD_CONTENT
    assert fake_openai.batch.files[file_id]["purpose"] == "batch"


def test_a_creation_is_never_retried(fake_openai):
    """A creation whose answer was lost may have made the batch: asking again could make two."""
    fake_openai.batch.create_error = error(503, "sobrecarregado", headers={"retry-after-ms": "5"})
    client = BatchClient(provider(fake_openai.url, max_attempts=3))
    file_id = client.upload(io.BytesIO(client.request_line("1", PRODUCT)), "lote.jsonl")
    with pytest.raises(ProviderUnavailable, match="criação do lote"):
        client.create(file_id, "ref-1")
    assert fake_openai.batch.count("POST", r"/v1/batches") == 1


def _now():
    from django.utils import timezone

    return timezone.now()
