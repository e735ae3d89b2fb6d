"""What a variant's content says of the variant: its attributes written into the title and into one
bullet point, in pt-BR. Pure; used to derive a variant from its family's base content without a
call (``MEMORY_FAMILY_MODE=derive``), by the offline writer when it is asked for a variant, and to
check what a provider answers when it is (``ask``).

``attributes`` are ``(label, value)`` pairs in the order the settings list them, e.g.
``[("Cor", "Azul-Marinho"), ("Tamanho", "G")]``: the title becomes
``"Camiseta Básica Hering Azul-Marinho Tamanho G"`` and the bullet ``"Cor: Azul-Marinho; Tamanho: G"``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from memory.providers.content import REQUIRED_LIST_FIELDS, REQUIRED_TEXT_FIELDS, validate_generated_content

# The pt-BR label of each variant attribute of the default list (``MEMORY_VARIANT_ATTRIBUTES``),
# under either of its names; another field is labelled by its own name.
LABELS = {
    "color": "Cor", "cor": "Cor",
    "size": "Tamanho", "tamanho": "Tamanho",
    "voltage": "Voltagem", "voltagem": "Voltagem",
    "flavor": "Sabor", "sabor": "Sabor",
    "capacity": "Capacidade", "capacidade": "Capacidade",
}
# A colour, a voltage or a capacity reads well alone in a title ("Azul", "220V", "500 ml"); a size
# or a flavour needs its name ("Tamanho G", "Sabor Morango").
BARE_IN_TITLE = frozenset({"Cor", "Voltagem", "Capacidade"})

MAX_TITLE = REQUIRED_TEXT_FIELDS["title"]
MAX_BULLETS = REQUIRED_LIST_FIELDS["bullet_points"][1]
MAX_BULLET = REQUIRED_LIST_FIELDS["bullet_points"][2]

Attributes = Sequence[tuple[str, str]]


def label_of(field: str) -> str:
    """The pt-BR label of a variant attribute field (``cor`` -> ``Cor``; ``modelo_x`` -> ``Modelo x``)."""
    name = field.strip()
    return LABELS.get(name.casefold()) or name.replace("_", " ").capitalize()


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip() + "…"


def title_phrase(attributes: Attributes) -> str:
    """``"Azul-Marinho Tamanho G"``: the attributes as a title ends with them."""
    return " ".join(value if label in BARE_IN_TITLE else f"{label} {value}" for label, value in attributes)


def variant_title(family_title: str, attributes: Attributes) -> str:
    """The family's title with the variant's attributes after it, within the schema's title limit
    (the family's part gives way)."""
    phrase = title_phrase(attributes)
    if not phrase:
        return family_title
    room = MAX_TITLE - len(phrase) - 1
    return f"{_clip(family_title.strip(), max(room, 1))} {phrase}"[:MAX_TITLE]


def variant_bullet(attributes: Attributes) -> str:
    """``"Cor: Azul-Marinho; Tamanho: G"``: the one bullet point that says which variant this is."""
    return _clip("; ".join(f"{label}: {value}" for label, value in attributes), MAX_BULLET)


def with_variant(base_content: dict, title: str, bullet: str | None) -> dict:
    """The base content with the variant's title and its bullet point first (the base's bullets
    after it, within the schema's count); checked against the content schema."""
    content = dict(base_content)
    content["title"] = title
    if bullet:
        rest = [b for b in base_content.get("bullet_points") or [] if b != bullet]
        content["bullet_points"] = [bullet, *rest][:MAX_BULLETS]
    return validate_generated_content(content)


def derive(base_content: dict, attributes: Attributes) -> dict:
    """A variant's content from its family's base content, without a call."""
    if not attributes:
        return validate_generated_content(dict(base_content))
    return with_variant(base_content, variant_title(base_content["title"], attributes), variant_bullet(attributes))


# -- asking a provider for a variant (MEMORY_FAMILY_MODE=ask) ----------------------------------

VARIANT_SCHEMA_NAME = "variant_content"
VARIANT_FIELDS = {"title": MAX_TITLE, "bullet_point": MAX_BULLET}


def variant_json_schema() -> dict:
    """The answer of a variant call as a strict JSON schema: its title and its one bullet point."""
    properties = {name: {"type": "string"} for name in VARIANT_FIELDS}
    return {
        "name": VARIANT_SCHEMA_NAME,
        "strict": True,
        "schema": {"type": "object", "properties": properties, "required": list(properties),
                   "additionalProperties": False},
    }


def validate_variant_answer(data) -> dict:
    """``{"title", "bullet_point"}`` of a variant call, stripped; ``ValueError`` naming the first bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"variante: deve ser um objeto JSON, recebido {type(data).__name__}")
    cleaned = {}
    for name, limit in VARIANT_FIELDS.items():
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}: obrigatório, texto não vazio")
        if len(value.strip()) > limit:
            raise ValueError(f"{name}: no máximo {limit} caracteres, recebido {len(value.strip())}")
        cleaned[name] = value.strip()
    return cleaned


def variant_request(base_content: dict, attributes: Attributes) -> dict:
    """What a variant call tells the provider: the family's title and bullets, the variant's attributes."""
    return {
        "familia": {"title": base_content.get("title", ""), "bullet_points": list(base_content.get("bullet_points") or [])},
        "variante": {label: value for label, value in attributes},
    }


def labelled(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(field, value)`` pairs as ``(label, value)``, one per label (the first value wins)."""
    seen: dict[str, str] = {}
    for field, value in pairs:
        seen.setdefault(label_of(field), value)
    return list(seen.items())
