"""Variant families: which family a product belongs to, what its variants tell apart, and what
they share. Pure functions of the product data and two lists of field names (the settings
``MEMORY_FAMILY_FIELDS`` and ``MEMORY_VARIANT_ATTRIBUTES``, read by :func:`product_family`).

A product is a variant when one of the family fields holds a value, the first present in the
list's order: ``{"sku": "CAM-AZ-P", "parent_sku": "CAM", "cor": "Azul", "tamanho": "P"}`` is a
variant of the family ``CAM``. Its variant attributes are the fields the attribute list names
(any case); everything else, but its own identifiers (``sku``, ``gtin``, ``ean``) and the family
field, is shared by the family. A title counts as shared once the variant's own values are taken
out of it: "Camiseta Básica Azul P" and "Camiseta Básica Preta G" share "Camiseta Básica".

The shared data is what the family's base content is generated from, and its fingerprint is the
base's: a change in a shared field makes the base stale, a change in a variant attribute does not.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from django.conf import settings

from memory.engine.identifiers import IDENTIFIER_FIELDS, input_fingerprint
from memory.providers.template import FIELD_ALIASES
from memory.providers.variants import LABELS, labelled

# The kind of a family's base entry; its product_id is the family id.
FAMILY_KIND = "family"
MAX_FAMILY_ID_LENGTH = 255
TITLE_FIELDS = FIELD_ALIASES["title"]

# Words that may stand before a variant value in a title ("Tamanho P", "Cor: Azul", "Tam. G"):
# taken out with it.
_LABEL_WORDS = sorted({*LABELS, *(label.casefold() for label in LABELS.values()), "tam", "tam."}, key=len, reverse=True)
_LABEL = r"(?:(?:" + "|".join(re.escape(w) for w in _LABEL_WORDS) + r")\s*:?\s*)?"
# What a title is left with around a value taken out: separators with nothing on one side.
_SEPARATOR = re.compile(r"^[-–—/|,;:+·•]+$")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")


@dataclass(frozen=True)
class Family:
    """A variant's family: its id, the data every variant shares (with the family title) and its
    fingerprint, and this variant's own attributes as ``(label, value)`` pairs."""

    id: str
    field: str  # the family field that named it
    shared: dict
    fingerprint: str
    attributes: tuple[tuple[str, str], ...]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _family_id(field: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{field}: deve ser texto ou número, recebido {type(value).__name__}")
    family_id = str(value).strip()
    if len(family_id) > MAX_FAMILY_ID_LENGTH:
        raise ValueError(f"{field}: no máximo {MAX_FAMILY_ID_LENGTH} caracteres")
    if any(unicodedata.category(c)[0] == "C" for c in family_id):
        raise ValueError(f"{field}: contém caracteres de controle")
    return family_id


def _fold(name: Any) -> str:
    return str(name).strip().casefold()


def variant_values(product_data: dict, attribute_fields: Sequence[str]) -> list[tuple[str, str]]:
    """``(field, value)`` of the variant attributes the product holds, in the order of
    ``attribute_fields`` (blank values left out)."""
    by_name = {_fold(key): key for key in product_data}
    found = []
    for name in attribute_fields:
        key = by_name.get(_fold(name))
        if key is not None and _present(product_data[key]) and not isinstance(product_data[key], (dict, list)):
            found.append((key, str(product_data[key]).strip()))
    return found


def _take_out(title: str, value: str) -> str:
    """``title`` without the last whole-word occurrence of ``value`` (and a label word before it)."""
    pattern = re.compile(r"(?<![\w-])" + _LABEL + re.escape(value) + r"(?![\w-])", re.IGNORECASE)
    matches = list(pattern.finditer(title))
    if not matches:
        return title
    last = matches[-1]
    return f"{title[:last.start()]} {title[last.end():]}"


def _tidy(title: str) -> str:
    """White space collapsed, empty brackets and separators left with nothing on one side dropped."""
    words = _EMPTY_BRACKETS.sub(" ", title).split()
    kept: list[str] = []
    for word in words:
        if _SEPARATOR.match(word) and (not kept or _SEPARATOR.match(kept[-1])):
            continue
        kept.append(word)
    while kept and _SEPARATOR.match(kept[-1]):
        kept.pop()
    text = " ".join(kept)
    return text.rstrip(",;:-–—/|").strip()


def family_title(title: str, values: Iterable[str]) -> str:
    """The title the variants share: ``title`` without the variant's own values
    ("Camiseta Básica Azul P", values Azul and P: "Camiseta Básica"); the title as it is when
    nothing would be left."""
    text = title
    for value in values:
        text = _take_out(text, value)
    return _tidy(text) or title.strip()


def family_of(product_data: Any, family_fields: Sequence[str], attribute_fields: Sequence[str]) -> Family | None:
    """The product's family, or None when no family field holds a value; ``ValueError`` naming
    the field when the family id is not usable (not text or a number, too long)."""
    if not isinstance(product_data, dict):
        return None
    by_name = {_fold(key): key for key in product_data}
    family_keys = {_fold(name) for name in family_fields}
    field = family_id = None
    for name in family_fields:
        key = by_name.get(_fold(name))
        if key is not None and _present(product_data[key]):
            field, family_id = key, _family_id(key, product_data[key])
            break
    if field is None:
        return None
    values = variant_values(product_data, attribute_fields)
    skipped = family_keys | {_fold(name) for name in attribute_fields} | IDENTIFIER_FIELDS
    shared = {key: value for key, value in product_data.items() if _fold(key) not in skipped}
    for key in shared:
        if _fold(key) in TITLE_FIELDS and isinstance(shared[key], str):
            shared[key] = family_title(shared[key], [value for _, value in values])
    return Family(id=family_id, field=field, shared=shared, fingerprint=input_fingerprint(shared),
                  attributes=tuple(labelled(values)))


def product_family(product_data: Any) -> Family | None:
    """:func:`family_of` with the fields the settings name (``MEMORY_FAMILY_FIELDS``,
    ``MEMORY_VARIANT_ATTRIBUTES``); None for every product when the family fields are empty."""
    if not settings.MEMORY_FAMILY_FIELDS:
        return None
    return family_of(product_data, settings.MEMORY_FAMILY_FIELDS, settings.MEMORY_VARIANT_ATTRIBUTES)
