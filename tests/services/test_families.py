"""Variant families: one generation per family, not per SKU, everywhere the memory generates."""
import json
import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

from memory.engine.counters import flush_counters
from memory.engine.memory import ProductMemory
from memory.io.export import write_export
from memory.io.importer import import_entries
from memory.models import DailyStats, ProductMemoryEntry
from memory.providers import BadProviderOutput, OpenAIProvider, TemplateProvider
from memory.services.entries import enqueue_regeneration
from memory.services.generation import InvalidProductData, generate_batch, generate_product
from memory.services.stats import memory_stats
from memory.tasks import batch_generate_main_content_task, generate_main_content_task
from tests.helpers import generations_at_once
from tests.providers.fake_openai import Reply, completion

COLOURS = ("Azul", "Preta")
SIZES = ("P", "G")


def camiseta(colour, size, **changes):
    """A variant of the family CAM: its colour and size in its title and its own columns."""
    return {"sku": f"CAM-{colour[:2].upper()}-{size}", "parent_sku": "CAM", "title": f"Camiseta Básica {colour} {size}",
            "brand": "Hering", "material": "Algodão", "cor": colour, "tamanho": size, "price": "49.90", **changes}


def tenis(colour, size, **changes):
    return {"sku": f"TEN-{colour[:2].upper()}-{size}", "item_group_id": "TEN", "title": f"Tênis Leve {colour} {size}",
            "brand": "Olympikus", "color": colour, "size": size, **changes}


FAMILY = [camiseta(c, s) for c in COLOURS for s in SIZES]


class Provider(TemplateProvider):
    """The template writer counting base generations and variant calls; ``remote``: as a remote
    provider, whose generations a batch runs concurrently (in threads of their own, whose writes
    commit: such a test needs ``transaction=True``)."""

    def __init__(self, delay=0.0, fail=None, remote=False):
        self.name = "fake-llm" if remote else "template"
        self.model = "template"
        self.delay = delay
        self.fail = fail
        self.calls = 0
        self.variant_calls = 0
        self.asked: list[dict] = []
        self.lock = threading.Lock()

    def generate(self, product_data):
        with self.lock:
            self.calls += 1
            self.asked.append(product_data)
        time.sleep(self.delay)
        if self.fail:
            raise self.fail
        return super().generate(product_data)

    def generate_variant(self, base_content, attributes):
        with self.lock:
            self.variant_calls += 1
        return super().generate_variant(base_content, attributes)


def entry(product_id, kind="main_content"):
    return ProductMemoryEntry.objects.get(product_id=product_id, kind=kind)


# --- one call per family ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_family_is_generated_once_and_each_variant_gets_its_own_entry():
    provider = Provider()
    result = generate_batch(FAMILY, provider=provider)
    assert provider.calls == 1
    assert result.count("generated") == 4
    base = entry("CAM", "family")
    assert base.source_data == {"title": "Camiseta Básica", "brand": "Hering", "material": "Algodão", "price": "49.90"}
    assert provider.asked == [base.source_data]  # the provider saw the shared data only
    for product in FAMILY:
        variant = entry(product["sku"])
        assert variant.family_id == "CAM" and variant.source_data == product
    summary = result.summary()
    assert (summary["derived_variants"], summary["families"]) == (4, 1)
    # The first variant paid for the base; the three others reused it.
    assert summary["tokens_spent"] == base.tokens_spent > 0
    assert summary["tokens_saved_by_family"] == 3 * base.tokens_spent


@pytest.mark.django_db
def test_derived_titles_name_their_own_colour_and_size():
    generate_batch(FAMILY, provider=Provider())
    for colour in COLOURS:
        for size in SIZES:
            content = entry(f"CAM-{colour[:2].upper()}-{size}").payload
            assert content["title"] == f"Camiseta Básica Hering {colour} Tamanho {size}"
            assert content["bullet_points"][0] == f"Cor: {colour}; Tamanho: {size}"
            others = [c for c in COLOURS if c != colour]
            assert not any(other in content["title"] or other in content["bullet_points"][0] for other in others)


@pytest.mark.django_db(transaction=True)
@override_settings(LLM_MAX_CONCURRENCY=4)
def test_a_batch_makes_one_call_per_family_even_with_its_variants_interleaved():
    provider = Provider(delay=0.05, remote=True)
    singles = [{"sku": f"S{i}", "title": f"Caneca {i}"} for i in range(3)]
    shoes = [tenis(c, s) for c in ("Preto", "Branco") for s in ("40", "41")]
    batch = [FAMILY[0], singles[0], shoes[0], FAMILY[1], singles[1], shoes[1], FAMILY[2], shoes[2], singles[2],
             FAMILY[3], shoes[3]]
    summary = batch_generate_main_content_task(batch, batch_size=4)
    assert provider.calls == 0  # the task uses the configured provider: count with our own below
    assert summary["generated"] == 11 and summary["families"] == 2 and summary["derived_variants"] == 8
    ProductMemory().clear()

    result = generate_batch(batch, batch_size=4, provider=provider)
    assert provider.calls == 2 + 3  # two families, three products of their own
    assert [o.product_id for o in result.outcomes] == [p["sku"] for p in batch]  # the order of the list
    assert all(o.status == "generated" for o in result.outcomes)


@pytest.mark.django_db(transaction=True)  # its generations run in threads of their own
def test_the_catalog_run_makes_one_call_per_family_and_says_how_many_variants_it_derived(tmp_path, fake_openai):
    catalog = tmp_path / "catalogo.jsonl"
    rows = FAMILY + [tenis(c, "40") for c in ("Preto", "Branco", "Cinza")] + [{"sku": "X1", "title": "Caneca"}]
    catalog.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    with override_settings(LLM_PROVIDER="openai", OPENAI_BASE_URL=fake_openai.url, OPENAI_API_KEY="sk-test",
                           LLM_MODEL="gpt-4o-mini", LLM_MAX_ATTEMPTS=1):
        out = StringIO()
        call_command("generate_content", str(catalog), "--json", stdout=out, stderr=StringIO())
        summary = json.loads(out.getvalue())
        assert fake_openai.calls == 3  # two families and one product of its own
        assert (summary["generated"], summary["derived_variants"], summary["families"]) == (8, 7, 2)
        assert summary["tokens_spent"] == 3 * (812 + 455)  # what the fake server billed
        assert summary["tokens_saved_by_family"] == 5 * (812 + 455)

        human = StringIO()
        call_command("generate_content", str(catalog), stdout=human, stderr=StringIO())
    assert fake_openai.calls == 3  # the second run: all from memory
    assert "Variantes derivadas de famílias" in human.getvalue()


@pytest.mark.django_db
def test_an_xlsx_catalog_with_numeric_family_ids_makes_one_base_per_family(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["sku", "parent_sku", "title", "brand", "cor", "tamanho"])
    for colour in COLOURS:
        for size in SIZES:
            sheet.append([f"CX-{colour}-{size}", 1001, f"Camiseta Básica {colour} {size}", "Hering", colour, size])
    sheet.append(["CX-SOLO", None, "Caneca", "Tramontina", None, None])
    path = tmp_path / "catalogo.xlsx"
    book.save(path)
    out = StringIO()
    call_command("generate_content", str(path), "--json", stdout=out, stderr=StringIO())
    summary = json.loads(out.getvalue())
    assert (summary["generated"], summary["derived_variants"], summary["families"]) == (5, 4, 1)
    assert list(ProductMemoryEntry.objects.filter(kind="family").values_list("product_id", flat=True)) == ["1001"]
    assert entry("CX-Preta-G").payload["title"] == "Camiseta Básica Hering Preta Tamanho G"


@pytest.mark.django_db
def test_the_single_task_derives_a_variant_and_says_from_which_family():
    first = generate_main_content_task(FAMILY[0])
    second = generate_main_content_task(FAMILY[1])
    assert (first["family"], second["family"]) == ("CAM", "CAM")
    assert first["tokens_spent"] > 0 and second["tokens_spent"] == 0
    assert second["tokens_saved_by_family"] == first["tokens_spent"]
    assert second["content"]["title"] == "Camiseta Básica Hering Azul Tamanho G"


@pytest.mark.django_db
def test_a_callers_own_generate_function_still_gets_each_variants_own_data():
    from memory.memory_utils import get_cached_content_or_generate

    seen = []

    def generate(data):
        seen.append(data)
        return {"title": data["title"]}

    content, from_cache = get_cached_content_or_generate(FAMILY[0], generate)
    assert (content, from_cache, seen) == ({"title": FAMILY[0]["title"]}, False, [FAMILY[0]])
    assert entry(FAMILY[0]["sku"]).family_id == ""  # its own content: no family re-derives it
    assert not ProductMemoryEntry.objects.filter(kind="family").exists()


# --- staleness by what changed ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_shared_change_makes_one_call_and_the_variants_are_derived_again():
    provider = Provider()
    generate_batch(FAMILY, provider=provider)
    renamed = [{**p, "brand": "Malwee"} for p in FAMILY]
    result = generate_batch(renamed, provider=provider)
    assert provider.calls == 2  # one for the new base
    assert [o.status for o in result.outcomes] == ["regenerated"] * 4
    assert all("Malwee" in entry(p["sku"]).payload["title"] for p in FAMILY)
    assert entry("CAM", "family").source_data["brand"] == "Malwee"


@pytest.mark.django_db
def test_a_variant_attribute_change_rederives_that_variant_only_without_a_call():
    provider = Provider()
    generate_batch(FAMILY, provider=provider)
    before = {p["sku"]: entry(p["sku"]).updated_at for p in FAMILY}
    green = camiseta("Verde", "P", sku=FAMILY[0]["sku"])
    result = generate_batch([green, *FAMILY[1:]], provider=provider)
    assert provider.calls == 1  # none for the new colour
    assert [o.status for o in result.outcomes] == ["regenerated", "reused", "reused", "reused"]
    assert result.outcomes[0].tokens_spent == 0 and result.outcomes[0].tokens_saved_by_family > 0
    assert entry(green["sku"]).payload["title"] == "Camiseta Básica Hering Verde Tamanho P"
    assert all(entry(p["sku"]).updated_at == before[p["sku"]] for p in FAMILY[1:])


@pytest.mark.django_db
def test_variants_disagreeing_on_a_shared_field_are_warned_about(caplog):
    provider = Provider()
    generate_batch([FAMILY[0], {**FAMILY[1], "price": "59.90"}], provider=provider)
    assert provider.calls == 2  # each disagreement makes the base stale for the other
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "Família CAM: variantes com dados compartilhados diferentes (price)" in warning
    assert "MEMORY_VARIANT_ATTRIBUTES" in warning


@pytest.mark.django_db
def test_a_new_base_derives_the_stored_variants_again_at_once():
    provider = Provider()
    generate_batch(FAMILY, provider=provider)
    generate_product({**FAMILY[0], "brand": "Malwee"}, provider=provider)  # one variant brings the change
    assert provider.calls == 2
    # The others, asked by their SKU alone, already show the family's new content.
    for product in FAMILY[1:]:
        hit = ProductMemory().get_product_data(product["sku"])
        assert hit.content["title"] == f"Camiseta Básica Malwee {product['cor']} Tamanho {product['tamanho']}"


@pytest.mark.django_db
def test_a_variant_asked_by_its_sku_alone_is_served_its_own_content():
    generate_batch(FAMILY, provider=Provider())
    hit = ProductMemory().get_product_data({"sku": "CAM-PR-G"})
    assert hit.content["title"] == "Camiseta Básica Hering Preta Tamanho G"
    assert ProductMemory().get_product_data("CAM-AZ-P").content["title"].endswith("Azul Tamanho P")


# --- approval (content versions) ------------------------------------------------------------------


@pytest.mark.django_db
def test_an_approved_variant_is_never_derived_again():
    provider = Provider()
    generate_batch(FAMILY, provider=provider)
    approved = FAMILY[1]["sku"]
    ProductMemory().set_approval(approved, True, by="ana")
    approved_title = entry(approved).payload["title"]
    # A shared change: the new base derives the family's other variants again, not the approved one.
    generate_product({**FAMILY[0], "brand": "Malwee"}, provider=provider)
    assert provider.calls == 2
    assert entry(approved).payload["title"] == approved_title == "Camiseta Básica Hering Azul Tamanho G"
    assert all("Malwee" in entry(p["sku"]).payload["title"] for p in FAMILY if p["sku"] != approved)
    # The lazy path: the approved variant asked with the family's new data is served as it is.
    renamed = [{**p, "brand": "Malwee"} for p in FAMILY]
    result = generate_batch(renamed, provider=provider)
    assert provider.calls == 2
    by_id = {o.product_id: o for o in result.outcomes}
    assert by_id[approved].status == "reused"
    assert entry(approved).payload["title"] == approved_title and entry(approved).approved
    assert entry(approved).version == 1


@pytest.mark.django_db
def test_forcing_an_approved_variant_is_locked_unless_overridden_and_a_batch_passes_the_override():
    provider = Provider()
    generate_batch(FAMILY, provider=provider)
    approved = FAMILY[0]["sku"]  # the family's first: the next one makes the forced base
    ProductMemory().set_approval(approved, True, by="ana")
    outcome = generate_product(FAMILY[0], force_regenerate=True, provider=provider)
    assert outcome.status == "locked" and provider.calls == 1  # no call, the base untouched
    result = generate_batch(FAMILY, force_regenerate=True, provider=provider)
    assert provider.calls == 2  # one base for the family, the approved variant left alone
    assert {o.product_id: o.status for o in result.outcomes}[approved] == "locked"
    assert entry(approved).approved and entry(approved).version == 1
    result = generate_batch(FAMILY, force_regenerate=True, provider=provider, override_approval=True)
    assert provider.calls == 3
    assert [o.status for o in result.outcomes] == ["forced"] * 4
    assert not entry(approved).approved and entry(approved).family_id == "CAM"


# --- forced regeneration ------------------------------------------------------------------------


@pytest.mark.django_db
def test_forcing_a_variant_regenerates_its_base_once():
    provider = Provider()
    generate_batch(FAMILY, provider=provider)
    outcome = generate_product(FAMILY[2], force_regenerate=True, provider=provider)
    assert provider.calls == 2 and outcome.status == "forced"
    result = generate_batch(FAMILY, force_regenerate=True, provider=provider)
    assert provider.calls == 3  # one base for the four forced variants
    assert [o.status for o in result.outcomes] == ["forced"] * 4


@pytest.mark.django_db
def test_regenerating_several_variants_of_a_family_in_the_admin_regenerates_it_once(eager_tasks, settings):
    generate_batch(FAMILY)  # the configured (template) provider
    generations = memory_stats()["generations"]
    result = enqueue_regeneration(ProductMemoryEntry.objects.filter(kind="main_content"))
    assert (result.regenerated, result.with_family) == (1, 3)
    assert memory_stats()["generations"] == generations + 1  # one new base, the variants derived from it


# --- failures -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_base_is_asked_for_once_per_batch_and_saves_nothing():
    provider = Provider(fail=BadProviderOutput("resposta inválida"))
    result = generate_batch(FAMILY, provider=provider)
    assert provider.calls == 1
    assert [o.status for o in result.outcomes] == ["failed"] * 4
    assert "conteúdo base da família CAM falhou" in result.outcomes[1].error
    assert ProductMemoryEntry.objects.count() == 0


@pytest.mark.django_db
def test_an_unusable_family_id_is_refused_before_any_call():
    provider = Provider()
    with pytest.raises(InvalidProductData, match="product_data: parent_sku: deve ser texto ou número"):
        generate_product({**FAMILY[0], "parent_sku": {"id": 1}}, provider=provider)
    result = generate_batch([{**FAMILY[0], "parent_sku": ["x"]}, FAMILY[1]], provider=provider)
    assert [o.status for o in result.outcomes] == ["failed", "generated"]
    assert provider.calls == 1


# --- ask mode ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # a remote provider: the batch's generations run in threads
@override_settings(MEMORY_FAMILY_MODE="ask")
def test_ask_mode_makes_one_short_call_per_variant_for_its_title_and_bullet(fake_openai):
    base = {"title": "Camiseta Básica Hering", "description": "Conforto o dia todo.",
            "bullet_points": ["Algodão", "Marca: Hering"], "seo_keywords": ["camiseta básica"]}
    answers = [Reply(body=completion({"title": f"Camiseta Básica Hering {p['cor']} {p['tamanho']}",
                                      "bullet_point": f"Na cor {p['cor'].lower()}, tamanho {p['tamanho']}"},
                                     prompt_tokens=90, completion_tokens=30)) for p in FAMILY]
    fake_openai.script(Reply(body=completion(base, prompt_tokens=800, completion_tokens=400)), *answers)
    provider = OpenAIProvider(base_url=fake_openai.url, api_key="sk-test", model="gpt-4o-mini", timeout=5.0)
    result = generate_batch(FAMILY, provider=provider)
    assert fake_openai.calls == 5  # the base, then one short call per variant
    schemas = [r.body["response_format"]["json_schema"]["name"] for r in fake_openai.requests]
    assert schemas == ["product_content"] + ["variant_content"] * 4
    asked = json.loads(fake_openai.requests[1].body["messages"][1]["content"].split("\n", 1)[1].rsplit("\n\n", 1)[0])
    assert asked == {"familia": {"title": base["title"], "bullet_points": base["bullet_points"]},
                     "variante": {"Cor": "Azul", "Tamanho": "P"}}
    content = entry("CAM-AZ-P").payload
    assert content["title"] == "Camiseta Básica Hering Azul P"
    assert content["bullet_points"] == ["Na cor azul, tamanho P", "Algodão", "Marca: Hering"]
    assert content["description"] == base["description"]
    # The short calls are paid for and counted: spent, and a generation each.
    assert result.tokens_spent == 1200 + 4 * 120
    assert result.tokens_saved_by_family == 3 * 1200
    stats = memory_stats()
    assert (stats["tokens_spent"], stats["generations"]) == (1200 + 4 * 120, 5)


@pytest.mark.django_db
@override_settings(MEMORY_FAMILY_MODE="ask")
def test_ask_mode_keeps_a_base_whose_variant_call_failed_and_counts_what_it_cost():
    class Refusing(Provider):
        def generate_variant(self, base_content, attributes):
            if not self.variant_calls:
                self.variant_calls += 1
                raise BadProviderOutput("resposta inválida", tokens_wasted=7)
            return super().generate_variant(base_content, attributes)

    provider = Refusing()
    failed = generate_product(FAMILY[0], provider=provider)
    base = entry("CAM", "family")
    assert failed.status == "failed" and not failed.family_base_failed
    assert (failed.tokens_spent, failed.tokens_wasted) == (base.tokens_spent, 7)  # the base was paid for and kept
    assert not ProductMemoryEntry.objects.filter(product_id=FAMILY[0]["sku"]).exists()
    again = generate_product(FAMILY[0], provider=provider)
    assert again.status == "generated" and provider.calls == 1 and provider.variant_calls == 2


# --- savings, everywhere they are shown -----------------------------------------------------------


@pytest.mark.django_db
def test_tokens_saved_by_family_reach_the_stats_the_endpoint_the_dashboard_and_metrics(api, admin_client):
    result = generate_batch(FAMILY, provider=Provider())
    saved = result.tokens_saved_by_family
    assert saved > 0 and memory_stats()["tokens_saved_by_family"] == saved
    assert memory_stats()["tokens_saved"] == 0  # a family saving is not a hit
    flush_counters()
    assert DailyStats.objects.get().tokens_saved_by_family == saved
    assert api.get("/api/memory/stats/").json()["tokens_saved_by_family"] == saved
    page = admin_client.get("/memory/dashboard/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert 'data-card="tokens_saved_by_family"' in page and "Tokens economizados por famílias" in page
    with override_settings(METRICS_ALLOW="anonymous"):
        metrics = admin_client.get("/metrics").content.decode()
    assert "beecatalog_memory_tokens_saved_by_family_total" in metrics


@pytest.mark.django_db
def test_a_later_run_saves_what_the_family_cost_when_it_was_made():
    first = generate_batch(FAMILY, provider=Provider())
    second = generate_batch(FAMILY, provider=Provider())
    assert second.count("reused") == 4
    assert second.tokens_saved == first.tokens_spent  # without the memory the family would cost that again


# --- export and import, the admin -----------------------------------------------------------------


@pytest.mark.django_db
def test_export_and_import_carry_the_family_bases(tmp_path):
    provider = Provider()
    generate_batch(FAMILY[:3], provider=provider)
    path = tmp_path / "memoria.jsonl"
    assert write_export("jsonl", path) == 4
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {(r["product_id"], r["kind"], r["family_id"]) for r in lines} >= {("CAM", "family", "CAM"),
                                                                            ("CAM-AZ-P", "main_content", "CAM")}
    ProductMemory().clear()
    assert import_entries(path).created == 4
    assert entry("CAM-AZ-G").family_id == "CAM"
    outcome = generate_product(FAMILY[3], provider=provider)  # the imported base serves a new variant
    assert provider.calls == 1 and outcome.tokens_saved_by_family > 0


@pytest.mark.django_db
def test_the_admin_links_a_variant_to_its_family_and_the_family_to_its_variants(admin_client):
    generate_batch(FAMILY, provider=Provider())
    base, variant = entry("CAM", "family"), entry("CAM-PR-G")
    page = admin_client.get(f"/admin/memory/productmemoryentry/{variant.pk}/change/",
                            HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert f'href="/admin/memory/productmemoryentry/{base.pk}/change/">CAM</a>' in page
    page = admin_client.get(f"/admin/memory/productmemoryentry/{base.pk}/change/",
                            HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert 'href="/admin/memory/productmemoryentry/?family_id=CAM">4 variantes derivadas deste conteúdo</a>' in page
    listed = admin_client.get("/admin/memory/productmemoryentry/?family_id=CAM").content.decode()
    assert listed.count('class="field-product_id"') == 5  # the base and its four variants


# --- single flight on a family's base, across processes ---------------------------------------------



@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_variants_of_one_family_asked_at_once_in_two_processes_make_one_call(
    fake_openai, process_env, redis_client
):
    fake_openai.script(then=Reply(delay=1.5))
    env = {**process_env, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake_openai.url, "OPENAI_API_KEY": "sk-test",
           "LLM_MODEL": "gpt-4o-mini", "LLM_MAX_ATTEMPTS": "1", "LLM_TIMEOUT": "20"}
    outcomes = generations_at_once([FAMILY[0], FAMILY[3]], env)  # both miss their entry and the base at once
    assert fake_openai.calls == 1
    assert [o["status"] for o in outcomes] == ["generated", "generated"]
    assert sorted(o["tokens_saved_by_family"] > 0 for o in outcomes) == [False, True]  # one paid, one reused
    assert ProductMemoryEntry.objects.filter(kind="family").count() == 1
    assert ProductMemoryEntry.objects.filter(kind="main_content", family_id="CAM").count() == 2
