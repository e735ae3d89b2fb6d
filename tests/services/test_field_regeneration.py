"""Field-level regeneration: the provider is asked for the named fields alone, the others are
kept, the tokens counted are that call's, and an unknown field is refused by name."""
import pytest

from memory.engine.memory import ProductMemory
from memory.models import ContentVersion, ProductMemoryEntry
from memory.providers import TemplateProvider
from memory.providers.content import content_json_schema
from memory.providers.openai import OpenAIProvider
from memory.providers.prompts import system_prompt
from memory.services.generation import generate_product
from memory.services.stats import memory_stats
from memory.tasks import generate_main_content_task

from tests.providers.fake_openai import GOOD_CONTENT

pytestmark = pytest.mark.django_db

PRODUCT = {"sku": "FLD-1", "title": "Mochila Escolar", "brand": "Dermiwil", "color": "Azul"}
EDITED = {"title": "Mochila Escolar Dermiwil Azul", "description": "Revisada à mão.", "bullet_points": ["Leve"],
          "seo_keywords": ["mochila"], "extra": "mantido"}


class RecordingProvider(TemplateProvider):
    def __init__(self):
        self.asked = []

    def generate(self, product_data, fields=None):
        self.asked.append(fields)
        return super().generate(product_data, fields)


@pytest.fixture
def stored():
    memory = ProductMemory()
    memory.save_product_data(PRODUCT, EDITED, tokens_prompt=900, tokens_completion=600)
    return memory


def test_only_the_named_fields_are_regenerated_and_the_others_kept(stored):
    provider = RecordingProvider()
    before = memory_stats()["tokens_spent"]
    outcome = generate_product(PRODUCT, force_regenerate=True, fields=["seo_keywords"], provider=provider)

    assert provider.asked == [("seo_keywords",)]
    assert outcome.status == "forced"
    row = ProductMemoryEntry.objects.get()
    assert {k: v for k, v in row.payload.items() if k != "seo_keywords"} == {
        k: v for k, v in EDITED.items() if k != "seo_keywords"}
    assert row.payload["seo_keywords"] != EDITED["seo_keywords"] and "mochila escolar" in row.payload["seo_keywords"]
    assert outcome.content == row.payload
    # The tokens counted are those of the call for that field alone, far below a whole generation.
    whole = TemplateProvider().generate(PRODUCT)
    assert 0 < outcome.tokens_spent == row.tokens_prompt + row.tokens_completion < whole.tokens_spent
    assert memory_stats()["tokens_spent"] - before == outcome.tokens_spent
    newest = ContentVersion.objects.filter(entry=row).order_by("-number").first()
    assert (newest.number, newest.origin, newest.payload, newest.tokens) == (2, "generated", row.payload,
                                                                             outcome.tokens_spent)


@pytest.mark.parametrize("fields, message", [
    (["seo_keyword"], "fields: campo desconhecido 'seo_keyword'; use title, description, bullet_points, seo_keywords"),
    ([], "fields: informe ao menos um campo"),
    ("title", "fields: deve ser uma lista de campos do conteúdo"),
])
def test_an_unknown_field_is_a_value_error_naming_it_and_nothing_is_asked(stored, fields, message):
    provider = RecordingProvider()
    with pytest.raises(ValueError) as refused:
        generate_product(PRODUCT, force_regenerate=True, fields=fields, provider=provider)
    assert str(refused.value).startswith(message)
    assert provider.asked == [] and ProductMemoryEntry.objects.get().payload == EDITED


def test_fields_need_force_and_a_stored_entry():
    with pytest.raises(ValueError, match="fields: regenerar só alguns campos exige force_regenerate=True"):
        generate_product(PRODUCT, fields=["title"], provider=RecordingProvider())
    with pytest.raises(ValueError, match="fields: o produto FLD-1 não está na memória"):
        generate_product(PRODUCT, force_regenerate=True, fields=["title"], provider=RecordingProvider())
    assert not ProductMemoryEntry.objects.exists()


def test_the_task_regenerates_fields_and_refuses_an_unknown_one(stored):
    summary = generate_main_content_task(PRODUCT, force_regenerate=True, fields=["title", "bullet_points"])
    assert summary["status"] == "forced"
    assert summary["content"]["description"] == EDITED["description"] and summary["content"]["extra"] == "mantido"
    with pytest.raises(ValueError, match="campo desconhecido 'preco'"):
        generate_main_content_task(PRODUCT, force_regenerate=True, fields=["preco"])


def test_approved_content_is_locked_for_fields_too(stored):
    stored.set_approval("FLD-1", True, by="ana")
    provider = RecordingProvider()
    outcome = generate_product(PRODUCT, force_regenerate=True, fields=["title"], provider=provider)
    assert outcome.status == "locked" and provider.asked == []


def test_the_openai_provider_asks_for_the_fields_alone_and_keeps_only_them(fake_openai):
    provider = OpenAIProvider(base_url=fake_openai.url, api_key="sk-test", model="gpt-4o-mini", timeout=5.0)
    result = provider.generate(PRODUCT, ("seo_keywords",))
    assert result.content == {"seo_keywords": GOOD_CONTENT["seo_keywords"]}  # the rest of the answer is dropped
    body = fake_openai.requests[0].body
    assert body["messages"][0]["content"] == system_prompt(("seo_keywords",))
    assert '"title"' not in body["messages"][0]["content"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema == content_json_schema(("seo_keywords",))["schema"]
    assert list(schema["properties"]) == schema["required"] == ["seo_keywords"]
    provider.generate(PRODUCT)
    assert fake_openai.requests[1].body["messages"][0]["content"] == system_prompt()
