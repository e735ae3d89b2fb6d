"""The interface every content provider implements."""
from __future__ import annotations

from memory.providers.content import GeneratedContent
from memory.providers.prompts import generator_version


class GenerationError(Exception):
    """A generation that failed for good: nothing is saved, no savings are counted.

    Raised as itself when the provider answered with nothing usable (malformed output, a refused
    request); :class:`ProviderUnavailable` when it could not answer now.
    """


class ProviderUnavailable(GenerationError):
    """The provider could not write now: out of quota, rate limited, timed out, unreachable or
    failing (5xx). Trying again later may work."""


class ContentProvider:
    """Writes product content from product data. ``name`` and ``model`` make the generator version."""

    name: str = ""
    model: str = ""

    @property
    def generator_version(self) -> str:
        """Provider + model + prompt version: what makes an entry stale when it changes."""
        return generator_version(self.name, self.model)

    def generate(self, product_data: dict) -> GeneratedContent:
        raise NotImplementedError
