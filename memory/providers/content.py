"""What a generation returns: the content and the tokens it cost."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GeneratedContent:
    """``tokens_cached`` (prompt tokens served from the provider's cache) and ``tokens_reasoning``
    (completion tokens the model spent thinking) are parts of the prompt and completion counts;
    ``tokens_wasted`` is what earlier, discarded attempts of the same generation cost."""

    content: dict
    tokens_prompt: int = 0
    tokens_completion: int = 0
    generator_version: str | None = None
    tokens_cached: int = 0
    tokens_reasoning: int = 0
    tokens_wasted: int = 0

    @property
    def tokens_spent(self) -> int:
        return self.tokens_prompt + self.tokens_completion

    @classmethod
    def coerce(cls, value) -> "GeneratedContent":
        """Accept a ``GeneratedContent`` or a bare content dict (whose cost is unknown: 0)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(content=value)
        raise ValueError(
            f"generate: deve devolver um dict ou GeneratedContent, devolveu {type(value).__name__}"
        )


REQUIRED_TEXT_FIELDS = {"title": 200, "description": 5000}
REQUIRED_LIST_FIELDS = {"bullet_points": (1, 12, 300), "seo_keywords": (1, 30, 80)}
CONTENT_FIELDS = (*REQUIRED_TEXT_FIELDS, *REQUIRED_LIST_FIELDS)


def check_fields(fields) -> tuple[str, ...] | None:
    """The content fields a generation is asked for: None (all of them), or the named ones in the
    schema's order; ``ValueError`` naming ``fields`` and an unknown name."""
    if fields is None:
        return None
    if isinstance(fields, (str, bytes)) or not isinstance(fields, (list, tuple)):
        raise ValueError(f"fields: deve ser uma lista de campos do conteúdo ({', '.join(CONTENT_FIELDS)})")
    if not fields:
        raise ValueError(f"fields: informe ao menos um campo ({', '.join(CONTENT_FIELDS)})")
    for name in fields:
        if name not in CONTENT_FIELDS:
            raise ValueError(f"fields: campo desconhecido {str(name)[:80]!r}; use {', '.join(CONTENT_FIELDS)}")
    return tuple(name for name in CONTENT_FIELDS if name in fields)


def validate_generated_content(data, fields: tuple[str, ...] | None = None) -> dict:
    """Check generated content against the schema; ``ValueError`` naming the first bad field.

    Required: ``title`` and ``description`` (non-empty text), ``bullet_points``
    and ``seo_keywords`` (non-empty lists of non-empty text); with ``fields``, only those
    (an answer for some fields alone). Other keys are kept.
    """
    if not isinstance(data, dict):
        raise ValueError(f"conteúdo: deve ser um objeto JSON, recebido {type(data).__name__}")
    cleaned = dict(data)
    for name, max_length in REQUIRED_TEXT_FIELDS.items():
        if fields is not None and name not in fields:
            continue
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}: obrigatório, texto não vazio")
        if len(value) > max_length:
            raise ValueError(f"{name}: no máximo {max_length} caracteres, recebido {len(value)}")
        cleaned[name] = value.strip()
    for name, (min_items, max_items, max_length) in REQUIRED_LIST_FIELDS.items():
        if fields is not None and name not in fields:
            continue
        value = data.get(name)
        if not isinstance(value, list) or not min_items <= len(value) <= max_items:
            raise ValueError(f"{name}: obrigatório, lista de {min_items} a {max_items} itens")
        if not all(isinstance(item, str) and item.strip() and len(item) <= max_length for item in value):
            raise ValueError(f"{name}: cada item deve ser texto não vazio de até {max_length} caracteres")
        cleaned[name] = [item.strip() for item in value]
    return cleaned


CONTENT_SCHEMA_NAME = "product_content"


def content_json_schema(fields: tuple[str, ...] | None = None) -> dict:
    """The content schema as a strict JSON schema (OpenAI structured outputs), of ``fields`` alone
    when given.

    Strict mode wants every property required and no others; it does not take
    string lengths, which ``validate_generated_content`` still checks.
    """
    properties: dict = {name: {"type": "string"} for name in REQUIRED_TEXT_FIELDS}
    for name, (min_items, max_items, _) in REQUIRED_LIST_FIELDS.items():
        properties[name] = {"type": "array", "items": {"type": "string"}, "minItems": min_items, "maxItems": max_items}
    if fields is not None:
        properties = {name: spec for name, spec in properties.items() if name in fields}
    return {
        "name": CONTENT_SCHEMA_NAME,
        "strict": True,
        "schema": {"type": "object", "properties": properties, "required": list(properties),
                   "additionalProperties": False},
    }


_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)


def parse_content_json(text) -> object:
    """The JSON value of a model's answer: bare, or inside a markdown fence (```json ... ```).

    ``ValueError`` when there is none.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("o conteúdo não é JSON (resposta vazia)")
    candidates = [text.strip()] + [match.strip() for match in _FENCE.findall(text)]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError("o conteúdo não é JSON")
