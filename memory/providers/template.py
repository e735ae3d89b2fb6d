"""An offline, deterministic writer of pt-BR product copy.

It exists so that the demo and the tests run with no network and no API key.
It is not an LLM: it fills fixed sentence patterns with the product's
attributes. Its token counts are estimates (about four characters a token) of
what the same prompt and answer would cost a real model.
"""
from __future__ import annotations

import hashlib
import json
import math

from memory.providers.content import (
    REQUIRED_LIST_FIELDS, REQUIRED_TEXT_FIELDS, GeneratedContent, validate_generated_content,
)
from memory.providers.prompts import (
    USER_PROMPT_TEMPLATE, VARIANT_SYSTEM_PROMPT, VARIANT_USER_PROMPT_TEMPLATE, system_prompt,
)
from memory.providers.base import ContentProvider
from memory.providers.variants import variant_bullet, variant_request, variant_title

FIELD_ALIASES = {
    "title": ("title", "name", "nome", "titulo"),
    "brand": ("brand", "marca"),
    "category": ("category", "categoria"),
    "color": ("color", "cor"),
    "material": ("material",),
    "size": ("size", "tamanho"),
    "price": ("price", "preco", "preço"),
    "description": ("description", "descricao", "descrição"),
}

DETAIL_PHRASES = (("material", "feito em {}", True), ("color", "na cor {}", True), ("size", "no tamanho {}", False))
BULLET_LABELS = (("brand", "Marca"), ("material", "Material"), ("color", "Cor"), ("size", "Tamanho"))

OPENINGS = (
    "Descubra {title}: qualidade para quem não abre mão do melhor.",
    "Conheça {title}: praticidade e bom gosto no seu dia a dia.",
    "{title}: a escolha certa para facilitar a sua rotina com estilo.",
    "Com {title}, você leva para casa desempenho e durabilidade.",
)


MAX_DESCRIPTION = REQUIRED_TEXT_FIELDS["description"]
MAX_BULLET = REQUIRED_LIST_FIELDS["bullet_points"][2]


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def clip(text: str, limit: int) -> str:
    """``text`` when it fits ``limit`` characters, else cut at the last space that fits, with "…"."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip() + "…"


def _pick(data: dict, field: str) -> str:
    for key in FIELD_ALIASES[field]:
        value = data.get(key)
        if value not in (None, ""):
            return str(value).strip()
    return ""


class TemplateProvider(ContentProvider):
    name = "template"
    model = "template"

    def generate(self, product_data: dict, fields: tuple[str, ...] | None = None) -> GeneratedContent:
        """The whole content, or (``fields``) those fields alone, costed as a model would be for them."""
        asked = fields
        fields = {f: _pick(product_data, f) for f in FIELD_ALIASES}
        title = fields["title"] or str(product_data.get("sku") or product_data.get("gtin") or "Produto")
        brand, category = fields["brand"], fields["category"]
        seed = int(hashlib.sha256(json.dumps(product_data, sort_keys=True, default=str).encode()).hexdigest(), 16)

        full_title = title if not brand or brand.lower() in title.lower() else f"{title} {brand}"
        paragraphs = [OPENINGS[seed % len(OPENINGS)].format(title=full_title)]
        details = [phrase.format(fields[f].lower() if lower else fields[f])
                   for f, phrase, lower in DETAIL_PHRASES if fields[f]]
        if details:
            paragraphs.append("Produto " + ", ".join(details) + ", com acabamento cuidadoso.")
        closing = []
        if category:
            closing.append(f"Uma escolha certeira na categoria {category.lower()}.")
        if brand:
            closing.append(f"Qualidade {brand} com a confiança de quem entende do assunto.")
        if fields["description"]:
            # The product's own description is what gives way when the whole would not fit the schema.
            room = MAX_DESCRIPTION - len("\n\n".join([*paragraphs, "", *closing]))
            paragraphs.append(clip(fields["description"], max(room, 1)))
        paragraphs.extend(closing)

        bullets = [f"{label}: {fields[f]}" for f, label in BULLET_LABELS if fields[f]]
        attributes = product_data.get("attributes")
        if isinstance(attributes, dict):
            bullets.extend(f"{str(key).capitalize()}: {value}" for key, value in attributes.items())
        bullets.append("Envio rápido para todo o Brasil")
        bullets = [clip(bullet, MAX_BULLET) for bullet in bullets[:6]]

        keywords = [title.lower()]
        for value in (category, brand, fields["material"], fields["color"]):
            if value:
                keywords.append(value.lower())
        if category and brand:
            keywords.append(f"{category} {brand}".lower())
        keywords.append(f"comprar {title}".lower())
        keywords = list(dict.fromkeys(k[:80] for k in keywords))[:10]

        content = validate_generated_content(
            {
                "title": full_title[:120],
                "description": clip("\n\n".join(paragraphs), MAX_DESCRIPTION),
                "bullet_points": bullets,
                "seo_keywords": keywords,
            }
        )
        if asked is not None:
            content = {name: content[name] for name in asked}
        prompt = system_prompt(asked) + USER_PROMPT_TEMPLATE.format(
            product_json=json.dumps(product_data, ensure_ascii=False, default=str)
        )
        return GeneratedContent(
            content=content,
            tokens_prompt=estimate_tokens(prompt),
            tokens_completion=estimate_tokens(json.dumps(content, ensure_ascii=False)),
            generator_version=self.generator_version,
        )

    def generate_variant(self, base_content: dict, attributes: list[tuple[str, str]]) -> GeneratedContent:
        """The variant's title and bullet point as the derivation writes them, with the token counts
        a short call would have cost."""
        answer = {"title": variant_title(base_content["title"], attributes), "bullet_point": variant_bullet(attributes)}
        prompt = VARIANT_SYSTEM_PROMPT + VARIANT_USER_PROMPT_TEMPLATE.format(
            variant_json=json.dumps(variant_request(base_content, attributes), ensure_ascii=False)
        )
        return GeneratedContent(
            content=answer,
            tokens_prompt=estimate_tokens(prompt),
            tokens_completion=estimate_tokens(json.dumps(answer, ensure_ascii=False)),
            generator_version=self.generator_version,
        )
