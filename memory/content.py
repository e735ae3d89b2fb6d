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
