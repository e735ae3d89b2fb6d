import pytest

from memory.engine.identifiers import (
    extract_product_identifier, identifies_only, input_fingerprint, lookup_fingerprint,
)

TITLE_ID = extract_product_identifier({"title": "Camiseta Básica Algodão", "brand": "Hering"})


@pytest.mark.parametrize(
    "product, expected",
    [
        ({"sku": "ABC123"}, "ABC123"),
        ({"sku": "  ABC123 \n"}, "ABC123"),
        ({"sku": "abc-123/X"}, "abc-123/X"),  # kept as is, case included
        ({"sku": 98765}, "98765"),
        ({"sku": "ABC123", "gtin": "4006381333931", "title": "x"}, "ABC123"),  # SKU first
        ({"gtin": "4006381333931"}, "gtin:04006381333931"),  # EAN-13
        ({"ean": "4006381333931"}, "gtin:04006381333931"),
        ({"gtin": 4006381333931}, "gtin:04006381333931"),
        ({"gtin": "400-638 133.3931"}, "gtin:04006381333931"),
        ({"gtin": "036000291452"}, "gtin:00036000291452"),  # UPC-A
        ({"gtin": "96385074"}, "gtin:00000096385074"),  # GTIN-8
        ({"gtin": "10614141000415"}, "gtin:10614141000415"),  # GTIN-14
        ({"sku": "", "gtin": "7891234567895"}, "gtin:07891234567895"),  # empty SKU is no SKU
        ({"sku": None, "ean": "7891234567895", "title": "x"}, "gtin:07891234567895"),
    ],
)
def test_identifier_follows_the_precedence_and_is_normalized(product, expected):
    assert extract_product_identifier(product) == expected


@pytest.mark.parametrize(
    "product",
    [
        {"title": "Camiseta Básica Algodão", "brand": "Hering"},
        {"title": "camiseta basica algodao", "brand": "HERING"},
        {"title": "  CAMISETA   BÁSICA\talgodão ", "brand": " hering"},
        {"title": "Camiseta Ba\u0301sica Algoda\u0303o", "brand": "Hering"},  # decomposed accents
    ],
)
def test_title_identifier_ignores_case_accents_and_spaces(product):
    assert extract_product_identifier(product) == TITLE_ID
    assert TITLE_ID.startswith("title:")


def test_title_identifier_depends_on_brand_and_words():
    assert extract_product_identifier({"title": "Camiseta Básica Algodão", "brand": "Malwee"}) != TITLE_ID
    assert extract_product_identifier({"title": "Camiseta Básica Linho", "brand": "Hering"}) != TITLE_ID


@pytest.mark.parametrize(
    "product, field",
    [
        ({"gtin": "4006381333932"}, "gtin"),  # bad check digit
        ({"ean": "7891234567890"}, "ean"),  # bad check digit
        ({"gtin": "12345"}, "gtin"),  # wrong length
        ({"gtin": "40063813339AB"}, "gtin"),
        ({"gtin": "٤٠٠٦٣٨١٣٣٣٩٣١"}, "gtin"),  # non-ASCII digits
        ({"gtin": 4.5}, "gtin"),
        ({"sku": ["A"]}, "sku"),
        ({"sku": True}, "sku"),
        ({"sku": "A" * 256}, "sku"),
        ({"sku": "AB\x00C"}, "sku"),
        ({"title": 123}, "title"),
        ({"title": "ok", "brand": 5}, "brand"),
        ({}, "product_data"),
        ({"description": "sem identificador"}, "product_data"),
        ({"sku": "   ", "title": ""}, "product_data"),
    ],
)
def test_bad_identifiers_raise_value_error_naming_the_field(product, field):
    with pytest.raises(ValueError) as excinfo:
        extract_product_identifier(product)
    assert str(excinfo.value).startswith(field)


@pytest.mark.parametrize("product", ["ABC123", ["sku"], None, 42])
def test_non_dict_product_data_is_rejected(product):
    with pytest.raises(ValueError, match="product_data"):
        extract_product_identifier(product)


def test_fingerprint_ignores_key_order_but_not_values():
    a = {"sku": "A", "title": "Tênis", "attrs": {"cor": "azul", "tam": 42}}
    b = {"attrs": {"tam": 42, "cor": "azul"}, "title": "Tênis", "sku": "A"}
    assert input_fingerprint(a) == input_fingerprint(b)
    assert input_fingerprint(a) != input_fingerprint({**a, "title": "Tênis Pro"})


@pytest.mark.parametrize("product, only_identifies", [
    ({"sku": "ABC123"}, True),
    ({"ean": "7891234567895"}, True),
    ({"gtin": "7891234567895", "sku": "ABC123"}, True),
    ({"sku": "ABC123", "title": "", "brand": None}, True),  # blank fields say nothing
    ({"sku": "ABC123", "title": "Produto Teste"}, False),
    ({"sku": "ABC123", "brand": "JBL"}, False),
    ({"title": "Produto Teste"}, False),  # a title describes the product as it names it
    ({"sku": "ABC123", "id": 7}, False),  # only the fields the identifier is read from
])
def test_identifier_only_data_has_no_lookup_fingerprint(product, only_identifies):
    assert identifies_only(product) is only_identifies
    expected = None if only_identifies else input_fingerprint(product)
    assert lookup_fingerprint(product) == expected
