"""Content that is never lost: every change keeps a version, people's edits and approvals win
over generation, the history restores any version kept."""
import io
import json
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from memory.engine.memory import ProductMemory
from memory.engine.versions import ApprovedContent, EntryNotFound, VersionNotFound
from memory.io.export import iter_export
from memory.io.importer import import_entries
from memory.memory_utils import get_cached_content_or_generate, save_generated_content_to_memory
from memory.models import ContentVersion, ProductMemoryEntry
from memory.providers import TemplateProvider
from memory.services.backup import warm_redis
from memory.services.purge import purge_expired
from memory.services.entries import delete_entries
from memory.services.generation import generate_batch, generate_product
from memory.services.stats import memory_stats
from memory.services.versions import (
    approve_entries, edit_content, entry_history, restore_version, set_approval,
)

pytestmark = pytest.mark.django_db

PRODUCT = {"sku": "VER-1", "title": "Garrafa Térmica", "brand": "Stanley"}
EDITED = {"title": "Garrafa Térmica Stanley 1 L", "description": "Mantém o café quente por 24 horas.",
          "bullet_points": ["Aço inox", "1 litro"], "seo_keywords": ["garrafa térmica"]}


class CountingProvider(TemplateProvider):
    def __init__(self, model="template", during=None):
        self.calls = 0
        self.model = model
        self.during = during  # called while "the LLM is thinking"

    def generate(self, product_data):
        self.calls += 1
        if self.during:
            self.during()
        return super().generate(product_data)


def versions_of(product_id):
    return list(ContentVersion.objects.filter(entry__product_id=product_id).order_by("number")
                .values_list("number", "origin", "author"))


def entry(product_id="VER-1"):
    return ProductMemoryEntry.objects.get(product_id=product_id)


# -- versions ------------------------------------------------------------------------------

def test_each_kind_of_change_keeps_the_content_before_it_as_a_version(tmp_path):
    generated = generate_product(PRODUCT, provider=CountingProvider())
    edit_content("VER-1", EDITED, author="maria")
    imported = {**EDITED, "title": "Garrafa vinda de uma planilha"}
    row = {"product_id": "VER-1", "payload": imported, "source_data": PRODUCT}
    assert import_entries(io.StringIO(json.dumps([row])), "json").ok
    restore_version("VER-1", 2, author="joao")

    assert versions_of("VER-1") == [(1, "generated", ""), (2, "edited", "maria"), (3, "imported", ""),
                                    (4, "restored", "joao")]
    kept = {v.number: v for v in ContentVersion.objects.filter(entry__product_id="VER-1")}
    assert kept[1].payload == generated.content and kept[1].tokens == generated.tokens_spent > 0
    assert kept[2].payload == EDITED and kept[2].tokens == 0
    assert kept[3].payload["title"] == "Garrafa vinda de uma planilha"
    assert kept[4].payload == EDITED
    row = entry()
    assert (row.version, row.origin, row.author, row.payload) == (4, "restored", "joao", EDITED)


def test_the_newest_max_versions_are_kept_the_oldest_go_first(settings):
    settings.MEMORY_MAX_VERSIONS = 3
    memory = ProductMemory()
    for n in range(5):
        memory.save_product_data(PRODUCT, {**EDITED, "title": f"Título {n}"})
    assert [n for n, _, _ in versions_of("VER-1")] == [3, 4, 5]
    assert entry().version == 5
    edit_content("VER-1", EDITED, author="maria")
    assert [n for n, _, _ in versions_of("VER-1")] == [4, 5, 6]
    with pytest.raises(VersionNotFound, match="guardadas: 4 a 6"):
        restore_version("VER-1", 2, author="maria")


def test_deleting_purging_or_clearing_entries_removes_their_versions():
    memory = ProductMemory()
    for sku in ("DEL-1", "PUR-1", "ADM-1", "CLR-1"):
        memory.save_product_data({"sku": sku, "title": sku}, EDITED)
        memory.save_product_data({"sku": sku, "title": sku}, {**EDITED, "title": "outra"})
    assert ContentVersion.objects.count() == 8

    memory.delete_product("DEL-1")
    ProductMemoryEntry.objects.filter(product_id="PUR-1").update(expires_at=timezone.now() - timedelta(days=1))
    purge_expired()
    delete_entries(ProductMemoryEntry.objects.filter(product_id="ADM-1"))
    assert set(ContentVersion.objects.values_list("entry__product_id", flat=True)) == {"CLR-1"}
    memory.clear()
    assert ContentVersion.objects.count() == 0


def test_a_hit_reads_no_version(no_redis):
    memory = ProductMemory()
    memory.save_product_data(PRODUCT, EDITED)
    edit_content("VER-1", {**EDITED, "title": "Editado"}, author="maria")
    caches["memory_l1"].clear()
    with CaptureQueriesContext(connection) as queries:
        assert memory.get_product_data("VER-1").content["title"] == "Editado"  # from PostgreSQL
        assert memory.get_product_data("VER-1").tier == "l1"
    assert len(queries) == 1 and "memory_contentversion" not in queries[0]["sql"]


# -- human edits -----------------------------------------------------------------------------

def test_an_edit_is_what_every_tier_serves_afterwards(redis_client):
    memory = ProductMemory()
    memory.save_product_data(PRODUCT, EDITED)
    assert memory.get_product_data("VER-1").content == EDITED  # L1 and L2 hold the old copy now
    edit_content("VER-1", {**EDITED, "title": "Editado à mão"}, author="maria")

    assert memory.l1.get(("VER-1", "main_content")).payload["title"] == "Editado à mão"
    assert memory.l2.get_many([("VER-1", "main_content")])[("VER-1", "main_content")].payload["title"] == "Editado à mão"
    caches["memory_l1"].clear()
    hit = memory.get_product_data(PRODUCT)
    assert (hit.tier, hit.content["title"]) == ("l2", "Editado à mão")


def test_an_edit_keeps_the_entry_fresh_and_its_expiry_and_tokens():
    memory = ProductMemory()
    memory.save_product_data(PRODUCT, EDITED, tokens_prompt=100, tokens_completion=50)
    before = entry()
    edit_content({"sku": "VER-1"}, {**EDITED, "title": "Editado"}, author="maria")
    after = entry()
    assert (after.expires_at, after.generator_version, after.input_fingerprint) == (
        before.expires_at, before.generator_version, before.input_fingerprint)
    assert (after.tokens_prompt, after.tokens_completion) == (100, 50)  # what a hit on it saves
    assert generate_product(PRODUCT, provider=CountingProvider()).status == "reused"


@pytest.mark.parametrize("content, message", [
    ({**EDITED, "title": ""}, "content: title: obrigatório, texto não vazio"),
    ({**EDITED, "bullet_points": []}, "content: bullet_points: obrigatório, lista de 1 a 12 itens"),
    ({**EDITED, "description": "x" * 5001}, "content: description: no máximo 5000 caracteres"),
    ({k: v for k, v in EDITED.items() if k != "seo_keywords"}, "content: seo_keywords: obrigatório"),
    ("não é objeto", "content: deve ser um objeto JSON"),
])
def test_an_edit_breaking_the_content_schema_is_refused_naming_the_field(content, message):
    ProductMemory().save_product_data(PRODUCT, EDITED)
    with pytest.raises(ValueError) as refused:
        edit_content("VER-1", content, author="maria")
    assert str(refused.value).startswith(message)
    assert entry().payload == EDITED and entry().version == 1


def test_an_edit_of_an_unknown_product_writes_nothing():
    with pytest.raises(EntryNotFound, match="NADA não está na memória"):
        edit_content("NADA", EDITED, author="maria")
    assert not ProductMemoryEntry.objects.exists() and not ContentVersion.objects.exists()


# -- approval ------------------------------------------------------------------------------------

def approved_entry():
    generate_product(PRODUCT, provider=CountingProvider())
    edit_content("VER-1", EDITED, author="maria")
    set_approval("VER-1", True, by="ana")
    return entry()


def test_approval_records_who_and_when_and_is_withdrawn():
    row = approved_entry()
    assert row.approved and row.approved_by == "ana"
    assert abs(row.approved_at - timezone.now()) < timedelta(minutes=1)
    withdrawn = set_approval("VER-1", False, by="ana")
    assert (withdrawn.approved, withdrawn.approved_by, withdrawn.approved_at) == (False, "", None)
    assert versions_of("VER-1") == [(1, "generated", ""), (2, "edited", "maria")]  # no content changed


def test_approved_content_survives_staleness_force_and_batch_regeneration(monkeypatch):
    approved_entry()
    other_generator = CountingProvider(model="modelo-novo")
    changed = {**PRODUCT, "color": "Verde"}

    staleness = generate_product(changed, provider=other_generator)  # other data, other generator
    forced = generate_product(PRODUCT, force_regenerate=True, provider=other_generator)
    batch = generate_batch([PRODUCT, changed], provider=other_generator)
    forced_batch = generate_batch([PRODUCT], force_regenerate=True, provider=other_generator)

    assert staleness.status == "reused" and staleness.content == EDITED
    assert forced.status == "locked" and "aprovado" in forced.error and forced.tokens_spent == 0
    assert batch.summary()["reused"] == 2
    assert forced_batch.summary()["locked"] == 1 and forced_batch.summary()["products"][0]["status"] == "locked"
    assert other_generator.calls == 0
    assert entry().payload == EDITED and entry().version == 2


def test_approved_content_is_served_stale_and_never_expires(monkeypatch):
    approved_entry()
    ProductMemoryEntry.objects.filter(product_id="VER-1").update(expires_at=timezone.now() - timedelta(days=1))
    monkeypatch.setattr("memory.providers.prompts.PROMPT_VERSION", "p-outra")
    caches["memory_l1"].clear()
    memory = ProductMemory()
    memory.l3.get_many([("VER-1", "main_content")])
    lookup = memory.lookup({**PRODUCT, "color": "Verde"})
    assert lookup.hit is not None and lookup.hit.approved and lookup.status == "stale"
    assert lookup.hit.content == EDITED
    assert purge_expired().deleted == 0 and entry().approved
    listed = memory.list_products()["results"][0]
    assert (listed["status"], listed["approved"]) == ("stale", True)
    assert memory_stats()["approved_entries"] == 1


def test_the_python_api_refuses_to_force_approved_content_and_takes_an_override():
    approved_entry()
    with pytest.raises(ApprovedContent, match="VER-1 tem conteúdo aprovado"):
        get_cached_content_or_generate(PRODUCT, lambda data: EDITED, force_regenerate=True)
    with pytest.raises(ApprovedContent):
        save_generated_content_to_memory(PRODUCT, {**EDITED, "title": "máquina"})
    assert get_cached_content_or_generate(PRODUCT, lambda data: EDITED) == (EDITED, True)

    content, from_cache = get_cached_content_or_generate(
        PRODUCT, lambda data: {**EDITED, "title": "Regenerado"}, force_regenerate=True, override_approval=True)
    row = entry()
    assert (content["title"], from_cache, row.approved, row.approved_by, row.origin) == (
        "Regenerado", False, False, "", "generated")  # what replaced it was approved by no one
    assert versions_of("VER-1")[-1] == (3, "generated", "")


def test_an_approval_that_lands_during_a_generation_refuses_its_save():
    generate_product(PRODUCT, provider=CountingProvider())
    before = entry().payload
    provider = CountingProvider(during=lambda: set_approval("VER-1", True, by="ana"))
    outcome = generate_product(PRODUCT, force_regenerate=True, provider=provider)
    assert provider.calls == 1
    assert outcome.status == "locked" and outcome.tokens_wasted > 0  # paid for, not stored
    assert entry().payload == before and entry().version == 1


def test_the_admin_approves_a_selection_and_withdraws_it(redis_client, django_capture_on_commit_callbacks):
    memory = ProductMemory()
    for sku in ("A-1", "A-2"):
        memory.save_product_data({"sku": sku, "title": sku}, EDITED)
        memory.get_product_data(sku)
    with django_capture_on_commit_callbacks(execute=True):
        assert approve_entries(ProductMemoryEntry.objects.all(), True, by="ana") == 2
        assert approve_entries(ProductMemoryEntry.objects.all(), True, by="ana") == 0  # already so
    assert memory.get_product_data("A-1").approved  # the cached copies went with the change
    with django_capture_on_commit_callbacks(execute=True):
        assert approve_entries(ProductMemoryEntry.objects.filter(product_id="A-1"), False, by="ana") == 1
    assert not memory.get_product_data("A-1").approved


def test_warm_copies_approved_entries_whatever_their_generator(redis_client, monkeypatch):
    approved_entry()
    monkeypatch.setattr("memory.providers.prompts.PROMPT_VERSION", "p-outra")
    redis_client.flushdb()
    assert warm_redis().entries == 1


# -- history ------------------------------------------------------------------------------------------

def test_the_history_says_what_each_version_changed_field_by_field():
    generate_product(PRODUCT, provider=CountingProvider())
    generated = entry().payload
    edit_content("VER-1", {**generated, "title": "Novo título", "seo_keywords": ["garrafa"], "extra": 1},
                 author="maria")
    found = entry_history(PRODUCT)
    newest, oldest = found["versions"]
    assert (found["version"], newest["number"], newest["current"], oldest["current"]) == (2, 2, True, False)
    assert [(c["field"], c["change"]) for c in newest["changes"]] == [
        ("title", "changed"), ("seo_keywords", "changed"), ("extra", "added")]
    assert newest["changes"][0]["before"] == generated["title"] and newest["changes"][0]["after"] == "Novo título"
    assert {c["change"] for c in oldest["changes"]} == {"added"}  # the first version adds every field


def test_a_restore_is_a_new_version_served_at_once(redis_client):
    memory = ProductMemory()
    memory.save_product_data(PRODUCT, EDITED)
    edit_content("VER-1", {**EDITED, "title": "Errado"}, author="maria")
    assert memory.get_product_data("VER-1").content["title"] == "Errado"
    written = restore_version("VER-1", 1, author="joao")
    assert (written.version, written.origin, written.restored_from, written.content) == (3, "restored", 1, EDITED)
    assert memory.get_product_data("VER-1").content == EDITED


def test_a_restore_of_the_current_or_a_missing_version_is_refused():
    ProductMemory().save_product_data(PRODUCT, EDITED)
    with pytest.raises(ValueError, match="version: a versão 1 já é o conteúdo atual"):
        restore_version("VER-1", 1, author="joao")
    with pytest.raises(VersionNotFound, match="não tem a versão 9"):
        restore_version("VER-1", 9, author="joao")
    with pytest.raises(ValueError, match="version: deve ser positivo"):
        restore_version("VER-1", 0, author="joao")
    with pytest.raises(EntryNotFound):
        restore_version("NADA", 1, author="joao")
    assert entry().version == 1


# -- round trips ------------------------------------------------------------------------------------

def test_export_and_import_into_an_empty_memory_carry_the_history_and_the_approval():
    approved_entry()
    before = entry_history("VER-1")
    text = "".join(iter_export("jsonl"))
    ProductMemory().clear()
    report = import_entries(io.StringIO(text), "jsonl")
    assert report.ok and report.created == 1
    assert entry_history("VER-1") == before
    row = entry()
    assert (row.approved, row.approved_by, row.origin, row.author, row.version) == (True, "ana", "edited", "maria", 2)


def test_an_import_into_an_existing_entry_keeps_its_history_and_adds_what_is_new():
    approved_entry()
    text = "".join(iter_export("json"))
    assert import_entries(io.StringIO(text), "json").ok  # the same content: no new version
    assert versions_of("VER-1") == [(1, "generated", ""), (2, "edited", "maria")]
    rows = json.loads(text)
    rows[0]["payload"] = {**EDITED, "title": "De outro sistema"}
    assert import_entries(io.StringIO(json.dumps(rows)), "json").ok
    assert versions_of("VER-1")[-1] == (3, "imported", "maria")
    assert entry().payload["title"] == "De outro sistema"


def test_a_history_that_breaks_the_row_schema_is_refused_by_number():
    row = {"product_id": "X", "payload": EDITED, "versions": [
        {"number": 1, "payload": EDITED, "origin": "generated", "created_at": "2026-01-01T00:00:00+00:00"},
        {"number": 1, "payload": EDITED, "origin": "feito à mão", "created_at": "2026-01-02T00:00:00+00:00"},
    ]}
    report = import_entries(io.StringIO(json.dumps([row])), "json")
    assert not report.ok
    assert report.errors == [(1, "versions: item 2: origin: use generated, edited, imported, restored, "
                                 "recebido 'feito à mão'")]
    assert not ProductMemoryEntry.objects.exists()
