"""What one GraphQL document may ask: too deep (introspection's ofType chains included), too many
fields or aliases, too long or too nested is a GraphQL error, never a 500, and is refused before
graphql-core's own validation runs."""
import json

import pytest
from graphql import get_introspection_query

from memory.api.graphql.limits import Limits, check_document, figures_of
from tests.api.graphql.conftest import URL, Answer

pytestmark = pytest.mark.django_db


def nested(field: str, levels: int, leaf: str = "name") -> str:
    """``field { field { … leaf } }`` with ``levels`` levels of fields in all."""
    return f"{field} {{ " * (levels - 1) + leaf + " }" * (levels - 1)


def deep_type_query(levels: int) -> str:
    """``__type(name: "Entry") { ofType { ofType … } }``: ``levels`` levels of fields."""
    return '{ __type(name: "Entry") { ' + nested("ofType", levels - 1) + " } }"


def test_a_15_level_introspection_query_is_refused(gql):
    answer = gql(deep_type_query(15))
    assert answer.status == 200 and answer.data is None
    assert answer.codes == ["QUERY_TOO_DEEP"]
    assert answer.messages == ["Consulta aninhada demais: o limite é 10 níveis de campos."]


def test_introspection_within_the_depth_limit_is_answered(gql):
    assert figures_of(deep_type_query(10), LIMITS).depth == 10
    assert gql(deep_type_query(10)).ok() == {"__type": {"ofType": None}}


def test_depth_hidden_in_fragments_is_counted(gql):
    fragments = "".join(
        f"fragment F{i} on __Type {{ ofType {{ ...F{i + 1} }} }}\n" for i in range(14)
    ) + "fragment F14 on __Type { name }\n"
    answer = gql('{ __type(name: "Entry") { ...F0 } }\n' + fragments)
    assert answer.codes == ["QUERY_TOO_DEEP"]


def test_the_standard_introspection_query_is_over_the_limit_and_refused_cleanly(gql):
    # 15 levels deep (TypeRef's nine ofType): GraphiQL gets the schema with its page instead.
    assert figures_of(get_introspection_query(), LIMITS).depth == 15
    assert gql(get_introspection_query()).codes == ["QUERY_TOO_DEEP"]


@pytest.fixture
def long_texts(settings):
    """Text limits out of the way, so that the document's own limits are what refuses."""
    settings.MEMORY_GRAPHQL_MAX_QUERY_LENGTH = 10**6
    settings.MEMORY_GRAPHQL_MAX_TOKENS = 10**6


def aliases(n: int, selection: str = "stats { hits }") -> str:
    return "{ " + " ".join(f"a{i}: {selection}" for i in range(n)) + " }"


def test_a_1000_alias_query_is_refused_by_the_text_limits_first(gql):
    answer = gql(aliases(1000))
    assert answer.status == 200 and answer.data is None and answer.codes == ["QUERY_TOO_LARGE"]


@pytest.mark.parametrize("selection", ["stats { hits }", "__typename", '__type(name: "Entry") { name }'])
def test_a_1000_alias_query_within_the_text_limits_is_refused_by_the_alias_limit(gql, long_texts, selection):
    answer = gql(aliases(1000, selection))
    assert answer.status == 200 and answer.codes == ["QUERY_TOO_COMPLEX"]
    assert answer.messages == ["Consulta com apelidos (aliases) demais: o limite é 30."]


def test_aliases_within_the_limit_are_answered(gql):
    assert gql(aliases(30)).ok() == {f"a{i}": {"hits": 0} for i in range(30)}


def test_too_many_fields_without_aliases_are_refused(gql, settings):
    settings.MEMORY_GRAPHQL_MAX_FIELDS = 20
    fields = "totalEntries activeEntries expiredEntries staleEntries approvedEntries hits misses hitRate"
    answer = gql("{ stats { " + fields + " } s: stats { " + fields + " } t: stats { " + fields + " } }")
    assert answer.codes == ["QUERY_TOO_COMPLEX"]
    assert answer.messages[0].startswith("Consulta complexa demais: o limite é 20 campos")


def test_fragments_spread_twice_over_are_counted_where_used_and_checked_quickly(gql):
    # 2**40 fields once expanded: counted per fragment, refused without expanding it.
    chain = "".join(f"fragment F{i} on Stats {{ ...F{i + 1} ...F{i + 1} }}\n" for i in range(40))
    answer = gql("{ stats { ...F0 } }\n" + chain + "fragment F40 on Stats { hits }\n")
    assert answer.codes == ["QUERY_TOO_COMPLEX"]


def test_a_fragment_cycle_is_graphql_s_own_error(gql):
    answer = gql("{ stats { ...A } } fragment A on Stats { hits ...B } fragment B on Stats { ...A }")
    assert answer.status == 200 and answer.codes and answer.codes[0] == "GRAPHQL_VALIDATION_FAILED"
    assert "se inclui a si mesmo" in answer.messages[0]


@pytest.mark.parametrize("opening, closing", [("{ a ", "}"), ("[", "]"), ("(", ")")])
def test_brackets_nested_thousands_deep_are_refused_before_parsing(gql, long_texts, opening, closing):
    answer = gql("{ stats " + opening * 5000 + closing * 5000 + " }")
    assert answer.status == 200 and answer.codes == ["QUERY_TOO_DEEP"]


def test_a_query_over_the_length_limit_is_refused(gql, settings):
    settings.MEMORY_GRAPHQL_MAX_QUERY_LENGTH = 100
    answer = gql("{ stats { hits } }" + " " * 100)
    assert answer.codes == ["QUERY_TOO_LARGE"]
    assert answer.messages == ["Consulta grande demais: o limite é 100 caracteres (recebidos 118)."]


def test_a_query_over_the_token_limit_is_refused(gql):
    answer = gql("{ stats { " + "hits " * 2500 + "} }")
    assert answer.codes == ["QUERY_TOO_LARGE"]


def test_a_body_over_the_upload_limit_is_the_rest_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"query": "{ stats { hits } }", "variables": {"x": "a" * 2000}})
    answer = Answer(api.post(URL, body, content_type="application/json"))
    assert answer.status == 413 and answer.codes == ["REQUEST_TOO_LARGE"]
    assert answer.messages == ["O corpo da requisição excede o limite de 1000 bytes."]


def test_the_deepest_real_query_is_within_the_limits(gql):
    query = "{ entries(first: 100) { edges { node { versions { content } } } } }"
    assert figures_of(query, LIMITS).depth == 5
    assert gql(query).ok() == {"entries": {"edges": []}}


LIMITS = Limits(max_length=10**6, max_tokens=10**6, max_depth=10**3, max_fields=10**6, max_aliases=10**6)


@pytest.mark.parametrize("query, depth, fields, aliases", [
    ("{ a }", 1, 1, 0),
    ("{ a { b c } d }", 2, 4, 0),
    ("{ x: a { b } y: a { b } }", 2, 4, 2),
    ("{ a { ...F } } fragment F on T { b { c } }", 3, 3, 0),
    ("{ a { ... on T { b } } }", 2, 2, 0),
    ("{ a { ...F ...F } } fragment F on T { x: b }", 2, 3, 2),
])
def test_figures(query, depth, fields, aliases):
    found = figures_of(query, LIMITS)
    assert (found.depth, found.fields, found.aliases) == (depth, fields, aliases)


def test_check_document_names_the_limit():
    from graphql import parse

    from memory.api.graphql.limits import QueryRefused

    small = Limits(max_length=1000, max_tokens=1000, max_depth=2, max_fields=3, max_aliases=1)
    with pytest.raises(QueryRefused) as refused:
        check_document(parse("{ a { b { c } } }"), small)
    assert refused.value.extensions == {"code": "QUERY_TOO_DEEP"}
    with pytest.raises(QueryRefused):
        check_document(parse("{ a b c d }"), small)
    check_document(parse("{ a { b } x: c }"), small)
