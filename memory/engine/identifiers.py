"""Product identifiers and fingerprints: pure functions, no I/O.

Precedence of ``extract_product_identifier`` (documented in the README):

1. ``sku``: trimmed, otherwise kept as is (``{"sku": "ABC123"}`` -> ``"ABC123"``).
2. ``gtin`` or ``ean``: digits only, check digit validated, padded to GTIN-14
   (``"gtin:07891234567895"``).
3. ``title`` (plus ``brand`` when present): a hash of both, normalized so that
   case, accents and white space do not change it (``"title:<hex>"``).

Product data that holds nothing but identifier fields (``sku``, ``gtin``, ``ean``) names a
product without describing it: it has no fingerprint to compare (:func:`lookup_fingerprint`).
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

MAX_IDENTIFIER_LENGTH = 255
GTIN_LENGTHS = (8, 12, 13, 14)
GTIN_KEYS = ("gtin", "ean")
# The fields that name a product without describing it; a title (and its brand) describes it.
IDENTIFIER_FIELDS = frozenset({"sku", *GTIN_KEYS})
_SEPARATORS = re.compile(r"[\s\-.]")
_WHITESPACE = re.compile(r"\s+")


def gtin_check_digit_is_valid(digits: str) -> bool:
    """True when the last digit is the GS1 check digit of the ones before it."""
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def normalize_gtin(value: Any, field: str = "gtin") -> str:
    """Return the GTIN-14 form of a GTIN-8/12/13/14, or raise ``ValueError`` naming the field."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{field}: deve ser texto ou número, recebido {type(value).__name__}")
    digits = _SEPARATORS.sub("", str(value))
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"{field}: deve conter apenas dígitos, recebido {str(value)[:40]!r}")
    if len(digits) not in GTIN_LENGTHS:
        raise ValueError(f"{field}: deve ter 8, 12, 13 ou 14 dígitos, recebido {len(digits)}")
    if not gtin_check_digit_is_valid(digits):
        raise ValueError(f"{field}: dígito verificador inválido em {digits}")
    return digits.zfill(14)


def normalize_text(value: str) -> str:
    """Lower case, no accents, single spaces: what a person would call the same text."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _WHITESPACE.sub(" ", stripped).strip().casefold()


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def extract_product_identifier(product_data: Any) -> str:
    """Return the product's normalized identifier; ``ValueError`` when nothing usable is there."""
    if not isinstance(product_data, dict):
        raise ValueError(
            f"product_data: deve ser um objeto (dict), recebido {type(product_data).__name__}"
        )

    sku = product_data.get("sku")
    if _present(sku):
        if isinstance(sku, bool) or not isinstance(sku, (str, int)):
            raise ValueError(f"sku: deve ser texto ou número, recebido {type(sku).__name__}")
        sku = str(sku).strip()
        if len(sku) > MAX_IDENTIFIER_LENGTH:
            raise ValueError(f"sku: no máximo {MAX_IDENTIFIER_LENGTH} caracteres")
        if any(unicodedata.category(c)[0] == "C" for c in sku):
            raise ValueError("sku: contém caracteres de controle")
        return sku

    for key in GTIN_KEYS:
        if _present(product_data.get(key)):
            return "gtin:" + normalize_gtin(product_data[key], field=key)

    title = product_data.get("title")
    if _present(title):
        if not isinstance(title, str):
            raise ValueError(f"title: deve ser texto, recebido {type(title).__name__}")
        brand = product_data.get("brand") or ""
        if not isinstance(brand, str):
            raise ValueError(f"brand: deve ser texto, recebido {type(brand).__name__}")
        basis = normalize_text(title) + "\x1f" + normalize_text(brand)
        return "title:" + hashlib.sha256(basis.encode()).hexdigest()[:32]

    raise ValueError(
        "product_data: nenhum identificador utilizável (informe sku, gtin/ean ou title)"
    )


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no spaces, so equal data always gives equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _strip_strings(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {str(k): _strip_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strip_strings(v) for v in value]
    return value


def input_fingerprint(product_data: dict) -> str:
    """Hash of the canonical source data: key order and surrounding spaces do not count,
    any changed attribute does."""
    return hashlib.sha256(canonical_json(_strip_strings(product_data)).encode()).hexdigest()


def identifies_only(product_data: dict) -> bool:
    """True when every field given (not None, not blank) is an identifier field: the data asks
    for a product by identity and says nothing about what it is."""
    return all(key in IDENTIFIER_FIELDS or not _present(value) for key, value in product_data.items())


def lookup_fingerprint(product_data: dict) -> str | None:
    """The fingerprint a lookup compares with the stored entry's: None for identifier-only data
    (the stored content is served whatever it was made from), else :func:`input_fingerprint`."""
    return None if identifies_only(product_data) else input_fingerprint(product_data)
