"""graphql-core's messages in pt-BR (a plain table of cases: no Django)."""
import pytest

from memory.api.graphql.messages import translate


@pytest.mark.parametrize("english, portuguese", [
    ("Syntax Error: Expected Name, found <EOF>.", "Erro de sintaxe na consulta: esperava nome, encontrou o fim da consulta."),
    ("Syntax Error: Unexpected '}'.", "Erro de sintaxe na consulta: '}' inesperado."),
    ("Syntax Error: Unterminated string.", "Erro de sintaxe na consulta: texto sem as aspas de fechamento."),
    ("Cannot query field 'titel' on type 'Entry'. Did you mean 'title'?",
     "O campo 'titel' não existe no tipo 'Entry'. Você quis dizer 'title'?"),
    ("Unknown argument 'frist' on field 'Query.entries'. Did you mean 'first' or 'last'?",
     "O campo 'Query.entries' não tem o argumento 'frist'. Você quis dizer 'first' ou 'last'?"),
    ("Field 'entry' argument 'productId' of type 'String!' is required, but it was not provided.",
     "O argumento 'productId' (tipo 'String!') do campo 'entry' é obrigatório e não foi informado."),
    ("Field 'stats' of type 'Stats!' must have a selection of subfields. Did you mean 'stats { ... }'?",
     "O campo 'stats' (tipo 'Stats!') exige uma seleção de subcampos: stats { ... }."),
    ("Variable '$id' of required type 'String!' was not provided.",
     "A variável '$id' (tipo obrigatório 'String!') não foi informada."),
    ("Int cannot represent non-integer value: 'x'", "Int não aceita o valor não inteiro 'x'."),
    ("Variable '$d' has invalid value: Value cannot represent a DateTime: \"2026-13-45\". month must be in 1..12",
     "A variável '$d' tem um valor inválido: DateTime inválido (\"2026-13-45\"): use ISO 8601, como 2026-12-01T12:00:00Z."),
    ("Expected value of type 'BigInt', but encountered error 'BigInt aceita um número inteiro, não 1.5'; found: 1.5.",
     "Esperava um valor do tipo 'BigInt', recebeu 1.5: BigInt aceita um número inteiro, não 1.5"),
    ("Invalid cursor", "Cursor inválido: use um startCursor ou endCursor devolvido por esta consulta."),
    ("Argument 'first' cannot be higher than 100.", "O argumento 'first' vai até 100."),
])
def test_known_messages_are_translated(english, portuguese):
    assert translate(english) == portuguese


def test_an_unknown_message_keeps_its_text_behind_a_pt_br_sentence():
    assert translate("Something new in graphql-core.") == "Consulta inválida: Something new in graphql-core."
