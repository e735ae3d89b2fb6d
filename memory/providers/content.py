"""What a generation returns: the content and the tokens it cost."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GeneratedContent:
    content: dict
    tokens_prompt: int = 0
    tokens_completion: int = 0
    generator_version: str | None = None

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


def validate_generated_content(data) -> dict:
    """Check generated content against the schema; ``ValueError`` naming the first bad field.

    Required: ``title`` and ``description`` (non-empty text), ``bullet_points``
    and ``seo_keywords`` (non-empty lists of non-empty text). Other keys are kept.
    """
    if not isinstance(data, dict):
        raise ValueError(f"conteúdo: deve ser um objeto JSON, recebido {type(data).__name__}")
    cleaned = dict(data)
    for name, max_length in REQUIRED_TEXT_FIELDS.items():
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}: obrigatório, texto não vazio")
        if len(value) > max_length:
            raise ValueError(f"{name}: no máximo {max_length} caracteres, recebido {len(value)}")
        cleaned[name] = value.strip()
    for name, (min_items, max_items, max_length) in REQUIRED_LIST_FIELDS.items():
        value = data.get(name)
        if not isinstance(value, list) or not min_items <= len(value) <= max_items:
            raise ValueError(f"{name}: obrigatório, lista de {min_items} a {max_items} itens")
        if not all(isinstance(item, str) and item.strip() and len(item) <= max_length for item in value):
            raise ValueError(f"{name}: cada item deve ser texto não vazio de até {max_length} caracteres")
        cleaned[name] = [item.strip() for item in value]
    return cleaned
