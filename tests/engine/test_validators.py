"""The value checks every way in shares: plain tables of cases."""
import pytest

from memory.engine.validators import BIGINT_MAX, INT_MAX, json_object, text, whole_number


@pytest.mark.parametrize("value, kwargs, expected", [
    (0, {}, 0),
    (5, {"minimum": 1, "maximum": 5}, 5),
    (INT_MAX, {"maximum": INT_MAX}, INT_MAX),
    (BIGINT_MAX, {"maximum": BIGINT_MAX}, BIGINT_MAX),
])
def test_whole_numbers_within_bounds_pass(value, kwargs, expected):
    assert whole_number("n", value, **kwargs) == expected


@pytest.mark.parametrize("value, kwargs, message", [
    (True, {}, "n: deve ser um inteiro, recebido True"),
    ("3", {}, "n: deve ser um inteiro, recebido '3'"),
    (1.0, {}, "n: deve ser um inteiro, recebido 1.0"),
    (None, {}, "n: deve ser um inteiro, recebido None"),
    (-1, {}, "n: não pode ser negativo, recebido -1"),
    (0, {"minimum": 1}, "n: deve ser positivo, recebido 0"),
    (1, {"minimum": 2}, "n: deve ser pelo menos 2, recebido 1"),
    (INT_MAX + 1, {"maximum": INT_MAX}, f"n: acima do máximo de {INT_MAX}"),
])
def test_whole_numbers_out_of_bounds_are_named(value, kwargs, message):
    with pytest.raises(ValueError) as refused:
        whole_number("n", value, **kwargs)
    assert str(refused.value) == message


def test_text_is_trimmed_and_refuses_nul_and_excess():
    assert text("t", "  abc ", max_length=3) == "abc"
    with pytest.raises(ValueError, match="t: contém o caractere nulo"):
        text("t", "a\x00", max_length=3)
    with pytest.raises(ValueError, match="t: no máximo 3 caracteres"):
        text("t", "abcd", max_length=3)


@pytest.mark.parametrize("value", [{}, {"a": [1, {"b": None}]}, {"path": "C:\\u0000"}, {1: "int key"}])
def test_json_objects_postgresql_stores_pass(value):
    assert json_object("j", value, max_bytes=100) is value


@pytest.mark.parametrize("value, message", [
    ([1], "j: deve ser um objeto JSON, recebido list"),
    ("{}", "j: deve ser um objeto JSON, recebido str"),
    ({"x": float("nan")}, "j: contém NaN ou Infinity"),
    ({"x": float("inf")}, "j: contém NaN ou Infinity"),
    ({"x": object()}, "j: não é serializável em JSON"),
    ({"x": "a\x00"}, "j: contém o caractere nulo"),
    ({"a\x00": 1}, "j: contém o caractere nulo"),
    ({"x": ["ok", ("deep", "\x00")]}, "j: contém o caractere nulo"),
    ({"x": "y" * 200}, "j: 208 bytes excede o limite de 100 bytes"),
])
def test_json_objects_postgresql_refuses_are_named(value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        json_object("j", value, max_bytes=100)
