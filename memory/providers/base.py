"""The interface every content provider implements, and the errors a generation ends with.

The error classes say what the caller can do: ``ProviderUnavailable`` (try later:
the API answers 503), ``BadProviderOutput`` (the provider answered, but not
usable content: 502), ``ProviderRejected`` (the request or the credentials are
wrong: retrying cannot help). All are ``GenerationError``.
"""
from __future__ import annotations

from memory.providers.content import GeneratedContent
from memory.providers.prompts import generator_version


class GenerationError(Exception):
    """A generation that failed for good: nothing is saved, no savings are counted.

    ``tokens_wasted``: what the provider billed for the attempts that failed.
    """

    def __init__(self, message: str, *, tokens_wasted: int = 0):
        super().__init__(message)
        self.tokens_wasted = tokens_wasted


class ProviderUnavailable(GenerationError):
    """The provider could not be reached or would not serve now (timeouts, connection errors,
    408, 409, 429, 5xx once the retries are spent): the same request may work later."""


class QuotaExhausted(ProviderUnavailable):
    """The account's quota is spent (429 ``insufficient_quota``): no call works until it is topped up."""


class CircuitOpen(ProviderUnavailable):
    """The provider's circuit breaker is open (quota spent, or too many 429/5xx in a row): no call
    was made, so nothing was paid. The product was not attempted; a later run finishes it."""


class ProviderRejected(GenerationError):
    """The provider refused the request (400, 401, 403, 404, 422...): a setting to fix, not to retry."""


class BadProviderOutput(GenerationError):
    """The provider answered, but not content the schema accepts (not JSON, missing fields, refused)."""


class TruncatedOutput(BadProviderOutput):
    """The answer was cut at the token limit (``finish_reason: "length"``): asking again pays again."""


class ContentProvider:
    """Writes product content from product data. ``name`` and ``model`` make the generator version."""

    name: str = ""
    model: str = ""
    # Its content, written from a family's shared data, can serve every variant of the family
    # (memory.services.families): content of the schema, for any product data.
    serves_families: bool = True

    @property
    def generator_version(self) -> str:
        """Provider + model + prompt version: what makes an entry stale when it changes."""
        return generator_version(self.name, self.model)

    def generate(self, product_data: dict, fields: tuple[str, ...] | None = None) -> GeneratedContent:
        """The content of a product; with ``fields`` (names of the content schema), those fields
        alone, asked of the provider alone (``GeneratedContent.content`` holds only them).
        Called with ``fields`` only for a field-level regeneration."""
        raise NotImplementedError

    def generate_variant(self, base_content: dict, attributes: list[tuple[str, str]]) -> GeneratedContent:
        """A variant's title and bullet point (``{"title", "bullet_point"}``) from its family's base
        content and its ``(label, value)`` attributes (``MEMORY_FAMILY_MODE=ask``)."""
        raise ProviderRejected(f"O provedor {self.name or type(self).__name__} não escreve variantes;"
                               f" use MEMORY_FAMILY_MODE=derive")
