"""Providers: the offline template writer and the content schema (pure functions, tables of cases)."""
import pytest

from memory.providers.content import (
    REQUIRED_LIST_FIELDS,
    REQUIRED_TEXT_FIELDS,
    content_json_schema,
    parse_content_json,
    validate_generated_content,
)
from memory.providers.prompts import PROMPT_VERSION
from memory.providers import OpenAIProvider, TemplateProvider
from memory.providers.template import clip

PRODUCT = {"sku": "ABC123", "title": "Tênis de Corrida Leve", "brand": "Olympikus", "color": "Azul", "category": "Esporte"}
GOOD = {
    "title": "Tênis de Corrida Leve Olympikus",
    "description": "Leveza e amortecimento.",
    "bullet_points": ["Leve", "Amortecido", "Respirável"],
    "seo_keywords": ["tênis de corrida", "olympikus"],
}


def test_template_provider_is_deterministic_pt_br_and_valid():
    first = TemplateProvider().generate(PRODUCT)
    assert first == TemplateProvider().generate(dict(PRODUCT))
    validate_generated_content(first.content)
    assert "Olympikus" in first.content["title"]
    assert "Marca: Olympikus" in first.content["bullet_points"]
    assert first.tokens_prompt > 0 and first.tokens_completion > 0
    assert first.generator_version == f"template:template:{PROMPT_VERSION}"


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


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '  {"a": 1}\n',
        '```json\n{"a": 1}\n```',
        '```JSON {"a": 1}```',
        '```\n{"a": 1}\n```',
        'Aqui está o conteúdo:\n```json\n{"a": 1}\n```\nBom proveito.',
    ],
)
def test_content_json_is_read_bare_or_inside_a_markdown_fence(text):
    assert parse_content_json(text) == {"a": 1}


@pytest.mark.parametrize("text", ["", "   ", None, "{not json", "```json\n{not json\n```", "texto sem json"])
def test_content_without_json_is_refused(text):
    with pytest.raises(ValueError, match="não é JSON"):
        parse_content_json(text)


def test_strict_json_schema_requires_exactly_the_content_schema_fields():
    spec = content_json_schema()
    schema = spec["schema"]
    fields = [*REQUIRED_TEXT_FIELDS, *REQUIRED_LIST_FIELDS]
    assert spec["strict"] is True and spec["name"]
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(schema["properties"]) == sorted(fields)
    for name, (min_items, max_items, _) in REQUIRED_LIST_FIELDS.items():
        assert schema["properties"][name] == {
            "type": "array", "items": {"type": "string"}, "minItems": min_items, "maxItems": max_items}
    for name in REQUIRED_TEXT_FIELDS:
        assert schema["properties"][name] == {"type": "string"}


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
