"""The interface every content provider implements."""
from __future__ import annotations

from memory.providers.content import GeneratedContent
from memory.providers.prompts import PROMPT_VERSION


class GenerationError(Exception):
    """A generation that failed for good: nothing is saved, no savings are counted."""


class ContentProvider:
    """Writes product content from product data. ``name`` and ``model`` make the generator version."""

    name: str = ""
    model: str = ""

    @property
    def generator_version(self) -> str:
        """Provider + model + prompt version: what makes an entry stale when it changes."""
        return f"{self.name}:{self.model}:{PROMPT_VERSION}"

    def generate(self, product_data: dict) -> GeneratedContent:
        raise NotImplementedError
