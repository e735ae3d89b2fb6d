"""Variant families on their own (pure): which family a product is in, what its variants share,
and the title they share once each variant's own values are taken out."""
import pytest

from memory.engine.families import family_of, family_title
from memory.engine.identifiers import input_fingerprint
from memory.providers.variants import derive, label_of, variant_bullet, variant_title

FIELDS = ["parent_sku", "item_group_id", "grupo"]
ATTRIBUTES = ["color", "cor", "size", "tamanho", "voltage", "voltagem", "flavor", "sabor", "capacity", "capacidade"]


def family(data):
    return family_of(data, FIELDS, ATTRIBUTES)


@pytest.mark.parametrize("title, values, shared", [
    ("Camiseta Básica Azul P", ["Azul", "P"], "Camiseta Básica"),
    ("Camiseta Básica Preta G", ["Preta", "G"], "Camiseta Básica"),
    ("Camiseta Básica Azul-Marinho GG", ["Azul-Marinho", "GG"], "Camiseta Básica"),
    ("Camiseta Azul-Marinho", ["Azul"], "Camiseta Azul-Marinho"),  # a colour inside another is not it
    ("Camiseta Básica - Azul / P", ["Azul", "P"], "Camiseta Básica"),
    ("Camiseta Básica (Azul) Tamanho P", ["Azul", "P"], "Camiseta Básica"),
    ("Air Fryer 4 L Preto 220V", ["Preto", "220V"], "Air Fryer 4 L"),
    ("Garrafa Térmica 500 ml Preto", ["500 ml", "Preto"], "Garrafa Térmica"),
    ("Tênis de Corrida Leve Cinza 40", ["Cinza", "40"], "Tênis de Corrida Leve"),
    ("camiseta básica AZUL p", ["Azul", "P"], "camiseta básica"),  # any case
    ("Azul", ["Azul"], "Azul"),  # nothing would be left: the title as it is
])
def test_the_family_title_is_the_title_without_the_variants_own_values(title, values, shared):
    assert family_title(title, values) == shared


def test_two_variants_of_a_family_share_everything_but_their_attributes_and_identifiers():
    blue = family({"sku": "CAM-AZ-P", "gtin": "7891234567895", "parent_sku": "CAM", "title": "Camiseta Básica Azul P",
                   "brand": "Hering", "cor": "Azul", "tamanho": "P", "price": "49.90"})
    black = family({"sku": "CAM-PR-G", "parent_sku": "CAM", "title": "Camiseta Básica Preta G", "brand": "Hering",
                    "cor": "Preta", "tamanho": "G", "price": "49.90"})
    assert blue.id == black.id == "CAM"
    assert blue.shared == black.shared == {"title": "Camiseta Básica", "brand": "Hering", "price": "49.90"}
    assert blue.fingerprint == black.fingerprint == input_fingerprint(blue.shared)
    assert blue.attributes == (("Cor", "Azul"), ("Tamanho", "P"))
    assert black.attributes == (("Cor", "Preta"), ("Tamanho", "G"))


def test_a_shared_change_changes_the_family_fingerprint_a_variant_change_does_not():
    base = {"sku": "A1", "parent_sku": "F", "title": "Tênis Azul 40", "brand": "Nike", "color": "Azul", "size": "40"}
    other_colour = {**base, "title": "Tênis Preto 40", "color": "Preto"}
    other_brand = {**base, "brand": "Adidas"}
    assert family(other_colour).fingerprint == family(base).fingerprint
    assert family(other_brand).fingerprint != family(base).fingerprint


@pytest.mark.parametrize("data, expected", [
    ({"sku": "A", "title": "Caneca"}, None),  # no family field
    ({"sku": "A", "parent_sku": "  ", "title": "Caneca"}, None),  # blank: no family
    ({"sku": "A", "item_group_id": "G-1", "title": "Caneca"}, "G-1"),  # Google Merchant's name
    ({"sku": "A", "grupo": 123, "title": "Caneca"}, "123"),
    ({"sku": "A", "Parent_SKU": " P-1 ", "grupo": "X", "title": "Caneca"}, "P-1"),  # any case; the first field wins
])
def test_the_family_comes_from_the_first_family_field_present(data, expected):
    found = family(data)
    assert (found.id if found else None) == expected


@pytest.mark.parametrize("value, message", [
    ({"id": 1}, "parent_sku: deve ser texto ou número"),
    (True, "parent_sku: deve ser texto ou número"),
    ("x" * 256, "parent_sku: no máximo 255 caracteres"),
    ("A\x07B", "parent_sku: contém caracteres de controle"),
])
def test_an_unusable_family_id_is_refused_naming_the_field(value, message):
    with pytest.raises(ValueError, match=message):
        family({"sku": "A", "parent_sku": value})


def test_without_family_fields_there_are_no_families():
    assert family_of({"sku": "A", "parent_sku": "F"}, [], ATTRIBUTES) is None


def test_a_derived_variant_names_its_own_attributes_in_the_title_and_one_bullet_in_portuguese():
    base = {"title": "Camiseta Básica Hering", "description": "Conforto.", "bullet_points": ["Marca: Hering", "Algodão"],
            "seo_keywords": ["camiseta"]}
    content = derive(base, [("Cor", "Azul-Marinho"), ("Tamanho", "G")])
    assert content["title"] == "Camiseta Básica Hering Azul-Marinho Tamanho G"
    assert content["bullet_points"] == ["Cor: Azul-Marinho; Tamanho: G", "Marca: Hering", "Algodão"]
    assert content["description"] == "Conforto." and content["seo_keywords"] == ["camiseta"]
    assert derive(base, []) == base


def test_a_long_family_title_gives_way_to_the_variants_attributes():
    title = variant_title("Jogo " * 60, [("Voltagem", "220V"), ("Sabor", "Morango")])
    assert len(title) <= 200 and title.endswith("… 220V Sabor Morango")


@pytest.mark.parametrize("field, label", [("cor", "Cor"), ("COLOR", "Cor"), ("tamanho", "Tamanho"),
                                          ("voltage", "Voltagem"), ("sabor", "Sabor"), ("capacidade", "Capacidade"),
                                          ("modelo_do_plugue", "Modelo do plugue")])
def test_each_variant_attribute_has_a_portuguese_label(field, label):
    assert label_of(field) == label
    assert variant_bullet([(label_of(field), "X")]) == f"{label}: X"
