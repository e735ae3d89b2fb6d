"""Variant families in Batch API runs: one request per family base, every variant of it derived at
ingest (by whichever process ingests), against the fake OpenAI server on loopback."""
import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from memory.engine.families import product_family
from memory.engine.memory import ProductMemory
from memory.models import BatchRun, BatchRunItem, ProductMemoryEntry
from memory.periodic_tasks import ingest_batch_runs
from memory.providers import get_provider
from memory.services import batch_api
from memory.services.generation import generate_product
from memory.services.stats import memory_stats
from memory.services.versions import set_approval
from tests.helpers import at_once, stop_process
from tests.providers.fake_openai import Reply, completion, error, product_of

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
BILLED = 812 + 455  # what the fake server bills a line by default


def camiseta(colour, size, **changes):
    return {"sku": f"CAM-{colour[:2].upper()}-{size}", "parent_sku": "CAM", "title": f"Camiseta Básica {colour} {size}",
            "brand": "Hering", "material": "Algodão", "cor": colour, "tamanho": size, **changes}


def tenis(colour, size, **changes):
    return {"sku": f"TEN-{colour[:2].upper()}-{size}", "item_group_id": "TEN", "title": f"Tênis Leve {colour} {size}",
            "brand": "Olympikus", "color": colour, "size": size, **changes}


CAMISETAS = [camiseta("Azul", "P"), camiseta("Preta", "M"), camiseta("Branca", "G")]
TENIS = [tenis("Preto", "40"), tenis("Branco", "41"), tenis("Cinza", "42")]
CANECA = {"sku": "CAN-1", "title": "Caneca de Porcelana", "brand": "Tramontina"}
# The variants interleaved with each other and with a product of its own, as a catalog lists them.
CATALOG = [CAMISETAS[0], TENIS[0], CANECA, CAMISETAS[1], TENIS[1], CAMISETAS[2], TENIS[2]]
VARIANTS = CAMISETAS + TENIS


def written_for(product):
    """The content the fake server writes for a request: the title it was given, with its brand."""
    return {"title": f"{product.get('title')} {product.get('brand')}", "description": "Conforto para o dia a dia.",
            "bullet_points": ["Tecido macio", "Costura reforçada"], "seo_keywords": [str(product.get("title"))]}


@pytest.fixture
def fake(openai_on_fake):
    openai_on_fake.batch.reply = lambda product: Reply(body=completion(written_for(product)))
    return openai_on_fake


def direct(products):
    """The direct path, in this thread and this test's transaction (``generate_batch`` runs a remote
    provider's generations in threads with connections of their own)."""
    return [generate_product(product) for product in products]


def run_to_the_end(submission):
    return batch_api.wait(submission.runs, poll_interval=0.01)


def entry(product_id, kind="main_content"):
    return ProductMemoryEntry.objects.get(product_id=product_id, kind=kind)


def sent_titles(fake):
    return sorted(str(product_of(line["body"]).get("title")) for b in fake.batch.batches for line in
                  fake.batch.input_lines(b))


def assert_variant_names_itself(product):
    content = entry(product["sku"]).payload
    colour = product.get("cor") or product.get("color")
    size = product.get("tamanho") or product.get("size")
    assert content["title"].endswith(f"{colour} Tamanho {size}"), content["title"]
    assert content["bullet_points"][0] == f"Cor: {colour}; Tamanho: {size}"
    others = [p.get("cor") or p.get("color") for p in VARIANTS if p is not product]
    assert not any(other in content["title"] for other in others)


def test_a_catalog_with_families_sends_one_line_per_family_and_derives_every_variant_at_ingest(
        fake, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        submission = batch_api.submit_catalog(CATALOG)
        (run,) = run_to_the_end(submission)

    # two family bases and the lone product: three lines, each the request a direct call makes
    (lines,) = [fake.batch.input_lines(b) for b in fake.batch.batches]
    assert len(lines) == 3
    assert sent_titles(fake) == ["Camiseta Básica", "Caneca de Porcelana", "Tênis Leve"]
    shared = product_family(CAMISETAS[0]).shared
    assert shared == {"title": "Camiseta Básica", "brand": "Hering", "material": "Algodão"}
    assert any(line["body"] == get_provider().request_options(shared) for line in lines)
    assert fake.calls == 0  # no direct call, not even for a variant

    # each family's base is its entry of kind "family"; each variant has its own entry
    base = entry("CAM", "family")
    assert (base.source_data, base.family_id) == (shared, "CAM")
    assert base.payload == written_for(shared)
    assert entry("TEN", "family").payload["title"] == "Tênis Leve Olympikus"
    for product in VARIANTS:
        variant = entry(product["sku"])
        assert (variant.family_id, variant.source_data) == (product["parent_sku" if "parent_sku" in product
                                                                    else "item_group_id"], product)
        assert_variant_names_itself(product)
    assert entry("CAN-1").payload == written_for(CANECA) and entry("CAN-1").family_id == ""

    outcomes = batch_api.outcomes(submission)
    assert [o.status for o in outcomes] == ["generated"] * 7
    assert [o.family for o in outcomes] == ["CAM", "TEN", None, "CAM", "TEN", "CAM", "TEN"]
    # the first variant of each family holds the base's cost; the two others reused it
    assert [o.tokens_spent for o in outcomes] == [BILLED, BILLED, BILLED, 0, 0, 0, 0]
    assert [o.tokens_saved_by_family for o in outcomes] == [0, 0, 0, BILLED, BILLED, BILLED, BILLED]
    stats = memory_stats()
    assert stats["tokens_saved_by_family"] == 4 * BILLED
    assert (stats["generations"], stats["tokens_spent"]) == (3, 3 * BILLED)

    run.refresh_from_db()
    assert (run.requests, run.generated, run.failed) == (3, 7, 0)
    assert (run.derived_variants, run.families, run.tokens_saved_by_family) == (6, 2, 4 * BILLED)
    assert (run.tokens_prompt, run.tokens_completion) == (3 * 812, 3 * 455)  # the three lines, once each


def test_a_family_from_the_batch_is_stored_as_the_direct_path_stores_it(fake):
    fake.batch.reply = lambda product: Reply()  # the same answer for every request, batched or direct
    run_to_the_end(batch_api.submit_catalog(CAMISETAS))
    fields = ("product_id", "kind", "payload", "source_data", "input_fingerprint", "family_id", "tokens_prompt",
              "tokens_completion", "generator_version")
    batched = list(ProductMemoryEntry.objects.order_by("kind", "product_id").values(*fields))
    ProductMemory().clear()
    direct(CAMISETAS)
    made_directly = list(ProductMemoryEntry.objects.order_by("kind", "product_id").values(*fields))
    assert fake.calls == 1 and len(made_directly) == 4
    assert batched == made_directly


def test_a_family_already_in_memory_sends_no_line_and_its_variants_are_derived_at_once(fake):
    generate_product(CAMISETAS[0])  # a direct call: the family's base is in memory
    assert fake.calls == 1
    base = entry("CAM", "family")
    submission = batch_api.submit_catalog(CATALOG)
    # before any batch is done, the camisetas already have their content
    outcomes = batch_api.outcomes(submission)
    assert [o.status for o in outcomes] == ["reused", "pending", "pending", "generated", "pending", "generated",
                                            "pending"]
    assert [outcomes[i].tokens_saved_by_family for i in (3, 5)] == [base.tokens_spent] * 2
    assert_variant_names_itself(CAMISETAS[1])
    run_to_the_end(submission)
    assert sent_titles(fake) == ["Caneca de Porcelana", "Tênis Leve"]
    assert entry("CAM", "family").updated_at == base.updated_at
    for product in VARIANTS:
        assert_variant_names_itself(product)

    # a catalog of the family alone: nothing to send at all
    for product in CAMISETAS[1:]:
        ProductMemory().delete_product(product["sku"])
    again = batch_api.submit_catalog(CAMISETAS)
    assert again.runs == [] and fake.batch.count("POST", r"/v1/batches") == 1
    assert [o.status for o in batch_api.outcomes(again)] == ["reused", "generated", "generated"]


def test_the_scheduled_job_ingests_what_a_submission_left_and_derives_the_variants(fake):
    fake.batch.hold = True
    submission = batch_api.submit_catalog(CATALOG)  # the command then exits (--no-wait) or dies
    assert set(BatchRunItem.objects.filter(base__isnull=False).values_list("product_id", flat=True)) == {
        p["sku"] for p in VARIANTS}
    assert ingest_batch_runs() == {"open": 1, "ingested": 0, "waiting": 1, "errors": 0}
    assert not ProductMemoryEntry.objects.exists()
    fake.batch.hold = False
    assert ingest_batch_runs() == {"open": 1, "ingested": 1, "waiting": 0, "errors": 0}
    for product in VARIANTS:
        assert_variant_names_itself(product)
    assert [o.status for o in batch_api.outcomes(submission)] == ["generated"] * 7
    assert memory_stats()["tokens_saved_by_family"] == 4 * BILLED


def test_a_crash_while_deriving_the_variants_is_finished_by_the_next_ingest(fake, monkeypatch):
    submission = batch_api.submit_catalog(CAMISETAS)
    (run,) = submission.runs
    real = batch_api._derive_item
    derived = []

    def crash_after_one(*args):
        if derived:
            raise SystemExit("morto no meio das variantes")
        derived.append(real(*args))

    monkeypatch.setattr(batch_api, "_derive_item", crash_after_one)
    with pytest.raises(SystemExit):
        batch_api.refresh(run)
    first = entry(CAMISETAS[0]["sku"])
    assert BatchRunItem.objects.get(product_id="CAM").state == "generated"
    assert BatchRunItem.objects.filter(state="pending").count() == 2
    monkeypatch.undo()
    batch_api.refresh(run)  # another process: the run is submitted, its base line already ingested
    run.refresh_from_db()
    assert (run.status, run.generated, run.derived_variants, run.families) == ("done", 3, 3, 1)
    assert entry(CAMISETAS[0]["sku"]).updated_at == first.updated_at  # not derived twice
    # one variant holds the base's cost, the others saved it: as if nothing had crashed
    assert run.tokens_saved_by_family == 2 * BILLED
    assert [o.tokens_spent for o in batch_api.outcomes(submission)] == [BILLED, 0, 0]
    for product in CAMISETAS:
        assert_variant_names_itself(product)


@pytest.mark.django_db(transaction=True)
def test_three_processes_ingesting_one_run_derive_each_variant_once(fake, monkeypatch, caplog):
    monkeypatch.setattr(batch_api, "submit", lambda run, provider=None, recheck=True: run)
    batch_api.submit_catalog(CATALOG)  # reserved, not sent
    monkeypatch.undo()
    run_id = BatchRun.objects.get().pk
    batch_api.submit(BatchRun.objects.get(pk=run_id))
    caplog.set_level("INFO", "memory")
    caplog.clear()
    at_once(lambda: batch_api.refresh(BatchRun.objects.get(pk=run_id)), copies=3)
    saves = sorted(r.args[0] for r in caplog.records if r.getMessage().startswith("Salvando produto"))
    assert saves == sorted(["CAM", "TEN", "CAN-1", *(p["sku"] for p in VARIANTS)])  # each once
    run = BatchRun.objects.get(pk=run_id)
    assert (run.status, run.generated, run.derived_variants, run.tokens_saved_by_family) == ("done", 7, 6, 4 * BILLED)
    assert memory_stats()["tokens_saved_by_family"] == 4 * BILLED
    for product in VARIANTS:
        assert_variant_names_itself(product)


def test_variants_of_a_family_pending_in_an_earlier_run_join_it_and_send_nothing(fake):
    fake.batch.hold = True
    first = batch_api.submit_catalog(CAMISETAS[:2])
    later = batch_api.submit_catalog(CAMISETAS[1:])  # one variant already pending, one new
    assert later.new_runs == [] and later.resumed == 2
    assert [run.pk for run in later.runs] == [first.runs[0].pk]
    fake.batch.hold = False
    run_to_the_end(later)
    assert sent_titles(fake) == ["Camiseta Básica"]
    for product in CAMISETAS:
        assert_variant_names_itself(product)
    assert [o.status for o in batch_api.outcomes(later)] == ["generated", "generated"]
    run = BatchRun.objects.get()
    assert (run.requests, run.derived_variants, run.tokens_saved_by_family) == (1, 3, 2 * BILLED)


def test_a_failed_base_fails_its_variants_and_the_next_run_sends_it_again(fake):
    fake.batch.reply = lambda product: (error(400, "conteúdo recusado") if product.get("title") == "Camiseta Básica"
                                        else Reply(body=completion(written_for(product))))
    submission = batch_api.submit_catalog(CATALOG)
    (run,) = run_to_the_end(submission)
    outcomes = {o.product_id: o for o in batch_api.outcomes(submission)}
    for product in CAMISETAS:
        assert outcomes[product["sku"]].status == "failed"
        assert "o conteúdo base da família CAM falhou neste lote" in outcomes[product["sku"]].error
        assert "conteúdo recusado" in outcomes[product["sku"]].error
    assert all(outcomes[p["sku"]].status == "generated" for p in TENIS)
    run.refresh_from_db()
    assert (run.generated, run.failed, run.derived_variants) == (4, 3, 3)
    assert [p for p, _ in batch_api.failed_items(run)] == [p["sku"] for p in CAMISETAS]
    assert not ProductMemoryEntry.objects.filter(product_id__startswith="CAM").exists()

    fake.batch.reply = lambda product: Reply(body=completion(written_for(product)))
    again = batch_api.submit_catalog(CATALOG)
    run_to_the_end(again)
    assert [run.requests for run in again.new_runs] == [1]
    for product in CAMISETAS:
        assert_variant_names_itself(product)


def test_an_approved_variant_is_never_derived_again(fake, django_capture_on_commit_callbacks):
    outside = camiseta("Verde", "GG")  # a variant of the family this catalog does not list
    stale = camiseta("Azul", "P")
    # earlier content for two variants; the family's shared data changed since (a new material)
    direct([outside, stale])
    set_approval(outside["sku"], True, by="ana")
    fake.batch.hold = True
    catalog = [camiseta(c, s, material="Linho") for c, s in (("Azul", "P"), ("Preta", "M"))]
    submission = batch_api.submit_catalog(catalog)
    set_approval(stale["sku"], True, by="ana")  # approved while the batch runs
    approved = {sku: entry(sku).payload for sku in (outside["sku"], stale["sku"])}
    fake.batch.hold = False
    with django_capture_on_commit_callbacks(execute=True):
        run_to_the_end(submission)
    assert [o.status for o in batch_api.outcomes(submission)] == ["kept", "generated"]
    for sku, payload in approved.items():
        assert entry(sku).payload == payload and entry(sku).approved
    assert sent_titles(fake) == ["Camiseta Básica"]  # the family's one line
    assert entry("CAM", "family").source_data["material"] == "Linho"
    assert entry("CAM-PR-M").payload["title"] == "Camiseta Básica Hering Preta Tamanho M"


def test_a_stored_variant_outside_the_run_is_derived_again_from_the_new_base(fake):
    outside = camiseta("Verde", "GG")
    direct([outside])  # the family's base of its old shared data, and this variant from it
    old = entry(outside["sku"]).payload
    catalog = [camiseta("Azul", "P", brand="Hering Premium")]
    run_to_the_end(batch_api.submit_catalog(catalog))
    assert entry("CAM", "family").payload["title"] == "Camiseta Básica Hering Premium"
    assert entry(outside["sku"]).payload != old
    assert entry(outside["sku"]).payload["title"].startswith("Camiseta Básica Hering Premium")


def test_ask_mode_derives_in_batch_mode_and_says_so(fake, settings, caplog):
    settings.MEMORY_FAMILY_MODE = "ask"
    caplog.set_level("INFO", "memory")
    run_to_the_end(batch_api.submit_catalog(CAMISETAS))
    assert fake.calls == 0  # no variant call
    assert any("MEMORY_FAMILY_MODE=ask: na Batch API as variantes são derivadas" in r.getMessage()
               for r in caplog.records)
    for product in CAMISETAS:
        assert_variant_names_itself(product)


# --- the command --------------------------------------------------------------------------------


def write_catalog(tmp_path, rows):
    path = tmp_path / "catalogo.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def test_the_batch_summary_says_how_many_variants_were_derived_from_how_many_families(tmp_path, fake):
    catalog = write_catalog(tmp_path, CATALOG)
    out, err = StringIO(), StringIO()
    call_command("generate_content", str(catalog), "--batch-api", "--json", "--poll-interval", "0.01",
                 stdout=out, stderr=err)
    summary = json.loads(out.getvalue())
    assert (summary["products"], summary["generated"], summary["failed"]) == (7, 7, 0)
    assert (summary["derived_variants"], summary["families"]) == (6, 2)
    assert summary["tokens_saved_by_family"] == 4 * BILLED and summary["tokens_spent"] == 3 * BILLED
    (batch,) = summary["batches"]
    assert (batch["requests"], batch["derived_variants"], batch["families"]) == (3, 6, 2)
    assert ("enviado: 3 requisição(ões) para 7 produto(s); 6 variante(s) de 2 família(s), uma requisição por"
            " família") in err.getvalue()

    for product in CATALOG:  # the products forgotten, the family bases kept
        ProductMemory().delete_product(product["sku"])
    human = StringIO()
    call_command("generate_content", str(catalog), "--batch-api", "--poll-interval", "0.01", stdout=human,
                 stderr=StringIO())
    text = human.getvalue()
    assert "Variantes derivadas de famílias" in text and "Famílias dessas variantes" in text
    assert fake.batch.count("POST", r"/v1/batches") == 2  # the bases were fresh: only the lone product went


@pytest.fixture
def child_env(process_env, fake_openai):
    return {**process_env, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake_openai.url, "OPENAI_API_KEY": "sk-test",
            "LLM_MODEL": "gpt-4o-mini", "LLM_MAX_ATTEMPTS": "2"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_batch_status_in_another_process_ingests_the_families(tmp_path, fake, child_env):
    fake.batch.hold = True
    out = StringIO()
    call_command("generate_content", str(write_catalog(tmp_path, CATALOG)), "--batch-api", "--no-wait",
                 stdout=out, stderr=StringIO())
    (run,) = BatchRun.objects.all()
    assert run.requests == 3 and not ProductMemoryEntry.objects.exists()
    fake.batch.hold = False
    process = subprocess.Popen([sys.executable, "manage.py", "generate_content", "--batch-status", run.batch_id,
                                "--json"], cwd=ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        stop_process(process)
    assert process.returncode == 0, stderr
    status = json.loads(stdout)
    assert (status["status"], status["generated"], status["derived_variants"], status["families"]) == (
        "done", 7, 6, 2)
    assert status["tokens_saved_by_family"] == 4 * BILLED
    for product in VARIANTS:
        assert_variant_names_itself(product)
    assert ProductMemoryEntry.objects.filter(kind="family").count() == 2
