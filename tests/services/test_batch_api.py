"""Batch API runs against a fake OpenAI-compatible server on loopback: the misses go as one batch,
the results land in the memory priced at the batch discount, and no crash makes a product go twice."""
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from memory.models import BatchRun, BatchRunItem, ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.periodic_tasks import ingest_batch_runs
from memory.providers import ProviderRejected, ProviderUnavailable, get_provider
from memory.providers.pricing import estimate_cost
from memory.services import batch_api
from memory.services.generation import generate_product
from memory.services.stats import memory_stats
from tests.helpers import at_once
from tests.providers.fake_openai import GOOD_CONTENT, Reply, completion, error

pytestmark = pytest.mark.django_db

OTHER_CONTENT = {"title": "Outro", "description": "Escrito antes.", "bullet_points": ["a"], "seo_keywords": ["b"]}


def catalog(n=3, prefix="S"):
    return [{"sku": f"{prefix}{i}", "title": f"Produto {prefix}{i}", "brand": "Marca"} for i in range(n)]


@pytest.fixture
def fake(openai_on_fake):
    """The fake OpenAI server, the provider pointed at it (conftest.py's ``openai_on_fake``)."""
    return openai_on_fake


def run_to_the_end(submission, **kwargs):
    return batch_api.wait(submission.runs, poll_interval=0.01, **kwargs)


def stored(product_id):
    return ProductMemoryEntry.objects.get(product_id=product_id)


def test_the_misses_go_as_one_batch_and_land_in_the_memory(fake, django_capture_on_commit_callbacks):
    products = catalog(3)
    ProductMemory().save_product_data(products[0], OTHER_CONTENT, tokens_prompt=10, tokens_completion=5)
    with django_capture_on_commit_callbacks(execute=True):
        submission = batch_api.submit_catalog(products)
        (run,) = run_to_the_end(submission)
    # one upload, one batch, of the two misses; each line the request a direct call sends
    assert fake.batch.count("POST", r"/v1/files") == fake.batch.count("POST", r"/v1/batches") == 1
    assert fake.batch.products_sent() == ["S1", "S2"]
    line = fake.batch.input_lines(run.batch_id)[0]
    assert line["url"] == "/v1/chat/completions"
    assert line["body"] == get_provider().request_options(products[1])
    assert fake.calls == 0  # no chat completion was asked for directly

    outcomes = batch_api.outcomes(submission)
    assert [o.status for o in outcomes] == ["reused", "generated", "generated"]
    assert outcomes[0].tokens_saved == 15
    assert stored("S1").payload == GOOD_CONTENT and stored("S0").payload == OTHER_CONTENT
    assert (stored("S1").tokens_prompt, stored("S1").tokens_completion) == (812, 455)
    assert stored("S1").generator_version == get_provider().generator_version

    run.refresh_from_db()
    assert (run.status, run.provider_status, run.requests, run.generated) == ("done", "completed", 2, 2)
    # tokens are tokens; money is at the batch discount (0.5 by default)
    assert (run.tokens_prompt, run.tokens_completion) == (2 * 812, 2 * 455)
    full = estimate_cost(2 * 812, 2 * 455, "gpt-4o-mini", {"gpt-4o-mini": (0.15, 0.075, 0.60)})
    assert run.discount == Decimal("0.5") and run.cost_usd == (full / 2).quantize(Decimal("0.0001"))
    stats = memory_stats()
    assert stats["tokens_spent"] == 15 + 2 * 1267 and stats["tokens_wasted"] == 0


def test_the_discount_is_a_setting(fake, settings):
    settings.LLM_BATCH_DISCOUNT = 0.25
    (run,) = run_to_the_end(batch_api.submit_catalog(catalog(1)))
    run.refresh_from_db()
    assert run.discount == Decimal("0.25")
    assert run.cost_usd == estimate_cost(812, 455, "gpt-4o-mini", settings.LLM_PRICES, factor=0.25)


def test_a_batch_line_and_a_direct_call_store_the_same_content_and_tokens(fake):
    fenced = "```json\n" + __import__("json").dumps(GOOD_CONTENT, ensure_ascii=False) + "\n```"
    answer = completion(fenced, prompt_tokens=640, completion_tokens=333)
    fake.script(then=Reply(body=answer))
    fake.batch.reply = lambda product: Reply(body=answer)
    direct, batched = {"sku": "D1", "title": "Caneca"}, {"sku": "B1", "title": "Caneca"}
    generate_product(direct)
    run_to_the_end(batch_api.submit_catalog([batched]))
    fields = ("payload", "tokens_prompt", "tokens_completion", "generator_version", "source_data")
    one, other = (ProductMemoryEntry.objects.values(*fields).get(product_id=p) for p in ("D1", "B1"))
    assert one.pop("source_data") == direct and other.pop("source_data") == batched
    assert one == other


def test_failed_and_invalid_lines_save_nothing_and_count_their_usage_as_wasted(
        fake, django_capture_on_commit_callbacks):
    answers = {
        "S0": Reply(body=completion("não é JSON", prompt_tokens=100, completion_tokens=20)),
        "S1": Reply(body=completion(GOOD_CONTENT, prompt_tokens=200, completion_tokens=2048, finish_reason="length")),
        "S2": error(400, "max_completion_tokens inválido"),
        "S3": Reply(),
    }
    fake.batch.reply = lambda product: answers[product["sku"]]
    failures = REGISTRY.get_sample_value("beecatalog_memory_generation_failures_total", {"reason": "provider_error"})
    with django_capture_on_commit_callbacks(execute=True):
        submission = batch_api.submit_catalog(catalog(4))
        (run,) = run_to_the_end(submission)
    outcomes = batch_api.outcomes(submission)
    assert [o.status for o in outcomes] == ["failed", "failed", "failed", "generated"]
    assert REGISTRY.get_sample_value(
        "beecatalog_memory_generation_failures_total", {"reason": "provider_error"}) - failures == 3
    assert "não é JSON" in outcomes[0].error and "LLM_MAX_TOKENS" in outcomes[1].error
    assert "HTTP 400 max_completion_tokens inválido" in outcomes[2].error
    assert [o.tokens_wasted for o in outcomes] == [120, 2248, 0, 0]
    assert list(ProductMemoryEntry.objects.values_list("product_id", flat=True)) == ["S3"]
    run.refresh_from_db()
    assert (run.generated, run.failed, run.tokens_wasted, run.failed_requests) == (1, 3, 2368, 1)
    # every billed token is in the run's cost, the wasted ones too
    assert (run.tokens_prompt, run.tokens_completion) == (100 + 200 + 812, 20 + 2048 + 455)
    assert memory_stats()["tokens_wasted"] == 2368
    # a failed product is free again: the next run sends it (and only it)
    fake.batch.reply = lambda product: Reply()
    again = batch_api.submit_catalog(catalog(4))
    assert again.sent == 3 and fake.batch.products_sent()[-3:] == ["S0", "S1", "S2"]


def test_progress_is_reported_while_the_batch_runs(fake):
    fake.batch.step = 2
    seen = []

    def on_progress(runs):
        (run,) = runs
        seen.append((run.provider_status, run.completed_requests, run.status))

    run_to_the_end(batch_api.submit_catalog(catalog(5)), on_progress=on_progress)
    assert seen == [("in_progress", 2, "submitted"), ("in_progress", 4, "submitted"), ("completed", 5, "done")]


def test_a_product_already_in_memory_when_the_results_arrive_is_not_overwritten(
        fake, django_capture_on_commit_callbacks):
    fake.batch.hold = True
    products = catalog(2)
    submission = batch_api.submit_catalog(products)
    (run,) = submission.runs
    batch_api.refresh(run)
    assert run.status == "submitted"
    # meanwhile, someone generates S0 (here: saves it), from the same data
    ProductMemory().save_product_data(products[0], OTHER_CONTENT, tokens_prompt=1, tokens_completion=1)
    fake.batch.hold = False
    with django_capture_on_commit_callbacks(execute=True):
        run_to_the_end(submission)
    outcomes = batch_api.outcomes(submission)
    assert [o.status for o in outcomes] == ["kept", "generated"]
    assert stored("S0").payload == OTHER_CONTENT and stored("S1").payload == GOOD_CONTENT
    assert outcomes[0].tokens_wasted == 812 + 455  # paid for, not stored
    run.refresh_from_db()
    assert (run.kept, run.generated) == (1, 1)


def test_an_entry_written_after_the_batch_began_is_kept_even_from_other_data(fake):
    fake.batch.hold = True
    products = catalog(1)
    submission = batch_api.submit_catalog(products)
    # the catalog changed and the new data was generated directly before the results came back
    ProductMemory().save_product_data({**products[0], "title": "Título novo"}, OTHER_CONTENT)
    fake.batch.hold = False
    run_to_the_end(submission)
    assert batch_api.outcomes(submission)[0].status == "kept"
    assert stored("S0").payload == OTHER_CONTENT


def test_a_stale_entry_is_regenerated_by_the_batch(fake):
    products = catalog(1)
    ProductMemory().save_product_data({**products[0], "title": "Antigo"}, OTHER_CONTENT)
    ProductMemoryEntry.objects.update(updated_at="2020-01-01T00:00:00Z")
    submission = batch_api.submit_catalog(products)
    run_to_the_end(submission)
    assert batch_api.outcomes(submission)[0].status == "regenerated"
    assert stored("S0").payload == GOOD_CONTENT


def test_a_rerun_after_a_crash_before_ingest_sends_nothing_again(fake):
    fake.batch.hold = True
    first = batch_api.submit_catalog(catalog(3))  # the process then dies: nothing waited for
    # the same catalog, plus one product, run again
    fake.batch.hold = False
    again = batch_api.submit_catalog(catalog(4))
    assert (again.resumed, again.sent) == (3, 1)
    assert {run.pk for run in again.runs} == {first.runs[0].pk, again.new_runs[0].pk}
    run_to_the_end(again)
    assert sorted(fake.batch.products_sent()) == ["S0", "S1", "S2", "S3"]  # each once
    assert [o.status for o in batch_api.outcomes(again)] == ["generated"] * 4
    assert ProductMemoryEntry.objects.count() == 4


def test_ingesting_twice_saves_nothing_twice(fake, monkeypatch, caplog, django_capture_on_commit_callbacks):
    submission = batch_api.submit_catalog(catalog(3))
    (run,) = submission.runs
    real_store = batch_api._store
    stored_so_far = []

    def crash_after_one(*args):
        if stored_so_far:
            raise SystemExit("morto no meio da importação")
        real_store(*args)
        stored_so_far.append(1)

    monkeypatch.setattr(batch_api, "_store", crash_after_one)
    with pytest.raises(SystemExit):
        batch_api.refresh(run)
    assert ProductMemoryEntry.objects.count() == 1 and run.status == "submitted"
    first_saved = ProductMemoryEntry.objects.get()
    monkeypatch.setattr(batch_api, "_store", real_store)
    caplog.set_level("INFO", "memory")
    caplog.clear()
    with django_capture_on_commit_callbacks(execute=True):
        batch_api.refresh(run)  # the scheduled job, or --batch-status, after the crash
        batch_api.ingest(run, get_provider(), batch_api.BatchClient(get_provider()).retrieve(run.batch_id))
    saves = [r for r in caplog.records if r.getMessage().startswith("Salvando produto")]
    assert len(saves) == 2  # the two left, once each
    assert ProductMemoryEntry.objects.get(product_id=first_saved.product_id).updated_at == first_saved.updated_at
    run.refresh_from_db()
    assert (run.status, run.generated, run.kept) == ("done", 3, 0)


def test_a_creation_whose_answer_was_lost_is_found_not_made_again(fake):
    fake.batch.create_error = error(502, "gateway caiu")
    fake.batch.create_error_after_making = True
    with pytest.raises(ProviderUnavailable, match="criação do lote"):
        batch_api.submit_catalog(catalog(2))
    run = BatchRun.objects.get()
    assert (run.status, run.submit_attempts, run.batch_id) == ("preparing", 1, "")
    fake.batch.create_error = None
    assert ingest_batch_runs() == {"open": 1, "ingested": 1, "waiting": 0, "errors": 0}
    run.refresh_from_db()
    assert run.batch_id == "batch_2" and run.generated == 2
    assert fake.batch.count("POST", r"/v1/batches") == 1  # found by its reference, never created again
    assert fake.batch.products_sent() == ["S0", "S1"]


def test_a_resumed_run_without_a_batch_list_is_not_sent_blindly(fake):
    fake.batch.create_error = error(504, "tempo esgotado no gateway")
    fake.batch.create_error_after_making = True
    with pytest.raises(ProviderUnavailable):
        batch_api.submit_catalog(catalog(1))
    fake.batch.create_error = None
    fake.batch.list_supported = False
    run = BatchRun.objects.get()
    with pytest.raises(ProviderRejected, match="consulta dos lotes"):
        batch_api.refresh(run)
    assert fake.batch.count("POST", r"/v1/batches") == 1
    run.refresh_from_db()
    assert run.status == "preparing" and run.items.get().state == "pending"


def test_a_refused_upload_sends_nothing_and_frees_the_products(fake):
    fake.batch.upload_error = error(404, "rota /v1/files inexistente")
    with pytest.raises(ProviderRejected, match="envio do arquivo do lote"):
        batch_api.submit_catalog(catalog(2))
    run = BatchRun.objects.get()
    assert run.status == "done" and run.failed == 2 and "rota /v1/files" in run.error
    assert fake.batch.count("POST", r"/v1/batches") == 0
    fake.batch.upload_error = None
    again = batch_api.submit_catalog(catalog(2))
    assert again.sent == 2 and again.resumed == 0


def test_a_run_a_crash_left_unsent_is_sent_by_the_scheduled_job_without_what_memory_got(fake, monkeypatch):
    monkeypatch.setattr(batch_api, "submit", lambda run, provider=None, recheck=True: run)  # dies before sending
    products = catalog(3)
    batch_api.submit_catalog(products)
    monkeypatch.undo()
    assert BatchRun.objects.get().status == "preparing" and fake.batch.count("POST", r"/v1/files") == 0
    ProductMemory().save_product_data(products[1], OTHER_CONTENT)  # generated directly meanwhile
    assert ingest_batch_runs()["ingested"] == 1
    assert fake.batch.products_sent() == ["S0", "S2"]
    assert stored("S1").payload == OTHER_CONTENT
    assert BatchRunItem.objects.get(product_id="S1").state == "kept"


def test_an_expired_batch_keeps_what_it_made_and_frees_the_rest(fake):
    fake.batch.final_status = "expired"
    fake.batch.expire_after = 1
    submission = batch_api.submit_catalog(catalog(3))
    run_to_the_end(submission)
    outcomes = batch_api.outcomes(submission)
    assert [o.status for o in outcomes] == ["generated", "failed", "failed"]
    assert "janela" in outcomes[1].error or "completion window" in outcomes[1].error
    fake.batch.final_status, fake.batch.expire_after = "completed", None
    again = batch_api.submit_catalog(catalog(3))
    assert [o.status for o in batch_api.outcomes(again)[:1]] == ["reused"]
    assert again.sent == 2


def test_a_failed_batch_fails_its_products_and_says_why(fake):
    fake.batch.final_status = "failed"
    submission = batch_api.submit_catalog(catalog(2))
    (run,) = run_to_the_end(submission)
    assert run.failed == 2 and "arquivo inválido" in run.error
    assert all("arquivo inválido" in o.error for o in batch_api.outcomes(submission))


def test_more_requests_than_a_batch_takes_go_as_several(fake, monkeypatch):
    monkeypatch.setattr(batch_api, "MAX_REQUESTS", 2)
    submission = batch_api.submit_catalog(catalog(5))
    assert [run.requests for run in submission.runs] == [2, 2, 1]
    run_to_the_end(submission)
    assert ProductMemoryEntry.objects.count() == 5 and sorted(fake.batch.products_sent()) == [f"S{i}" for i in range(5)]


def test_duplicates_and_bad_products_are_not_sent(fake):
    products = [{"sku": "A", "title": "Um"}, {"sku": "A", "title": "Um"}, "texto", {"sku": "B", "title": "x" * 600}]
    submission = batch_api.submit_catalog(products)
    outcomes = batch_api.outcomes(submission)
    assert [o.status for o in outcomes] == ["pending", "duplicate", "failed", "failed"]
    assert "title" in outcomes[3].error
    assert fake.batch.products_sent() == ["A"]
    run_to_the_end(submission)
    again = batch_api.submit_catalog(products[:2])  # once in memory, every row of it is a hit
    assert [o.status for o in batch_api.outcomes(again)] == ["reused", "reused"]


def test_the_scheduled_job_polls_and_ingests(fake):
    assert ingest_batch_runs() == {"open": 0, "ingested": 0, "waiting": 0, "errors": 0}
    fake.batch.step = 2
    batch_api.submit_catalog(catalog(3))
    assert ingest_batch_runs() == {"open": 1, "ingested": 0, "waiting": 1, "errors": 0}
    assert ingest_batch_runs() == {"open": 1, "ingested": 1, "waiting": 0, "errors": 0}
    assert ProductMemoryEntry.objects.count() == 3
    assert ingest_batch_runs()["open"] == 0


def test_the_template_provider_has_no_batch_api(settings):
    settings.LLM_PROVIDER = "template"
    with pytest.raises(batch_api.BatchApiUnavailable, match="LLM_PROVIDER=template"):
        batch_api.submit_catalog(catalog(1))
    assert not BatchRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_processes_submitting_and_ingesting_the_same_run_send_once_and_save_once(fake, monkeypatch, caplog):
    monkeypatch.setattr(batch_api, "submit", lambda run, provider=None, recheck=True: run)
    batch_api.submit_catalog(catalog(6))  # reserved, not sent
    monkeypatch.undo()
    run_id = BatchRun.objects.get().pk
    fake.batch.create_delay = 0.3  # both are inside the submission at once
    at_once(lambda: batch_api.submit(BatchRun.objects.get(pk=run_id)))
    assert fake.batch.count("POST", r"/v1/batches") == 1 and fake.batch.count("POST", r"/v1/files") == 1
    caplog.set_level("INFO", "memory")
    caplog.clear()
    at_once(lambda: batch_api.refresh(BatchRun.objects.get(pk=run_id)), copies=3)
    saves = [r for r in caplog.records if r.getMessage().startswith("Salvando produto")]
    assert sorted(r.args[0] for r in saves) == [f"S{i}" for i in range(6)]  # each once
    run = BatchRun.objects.get(pk=run_id)
    assert (run.status, run.generated) == ("done", 6)
    assert memory_stats()["tokens_spent"] == 6 * 1267


def test_a_product_pending_in_a_batch_is_not_paid_for_again_by_a_direct_generation(fake):
    """Its result is already paid for and on its way: a direct generation of the same data makes
    no call (not attempted, naming the run); forced, it is generated now; other data is generated."""
    fake.batch.hold = True
    products = catalog(2)
    submission = batch_api.submit_catalog(products)
    (run,) = submission.runs
    calls = fake.calls
    outcome = generate_product(products[0])
    assert outcome.status == "not_attempted" and f"lote {run.pk}" in outcome.error
    assert fake.calls == calls and not ProductMemoryEntry.objects.filter(product_id="S0").exists()
    assert generate_product({**products[1], "title": "Outro título"}).status == "generated"
    assert generate_product(products[0], force_regenerate=True).status == "forced"
    assert fake.calls == calls + 2
    fake.batch.hold = False
    run_to_the_end(submission)  # what came meanwhile is kept
    assert [o.status for o in batch_api.outcomes(submission)] == ["kept", "kept"]
