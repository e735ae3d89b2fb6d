"""Who may use /api/graphql/: the REST API's token and staff-session authentication (CSRF on a
session's POST), anonymous refused, and GET for queries only."""
import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.api.graphql.conftest import URL, Answer, call
from tests.helpers import seed, token_client

pytestmark = pytest.mark.django_db

QUERY = "{ stats { totalEntries } }"


def test_anonymous_is_refused_with_a_graphql_error():
    answer = call(APIClient(), QUERY)
    assert answer.status == 401 and answer.data is None
    assert answer.codes == ["NOT_AUTHENTICATED"]
    assert answer.messages == ["As credenciais de autenticação não foram fornecidas."]
    assert answer.response["WWW-Authenticate"] == "Token"


def test_a_wrong_token_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    answer = call(client, QUERY)
    assert answer.status == 401 and answer.codes == ["AUTHENTICATION_FAILED"]


def test_a_token_of_any_active_user_reads(make_user):
    seed()
    answer = call(token_client(make_user("leitor")), QUERY)
    assert answer.ok() == {"stats": {"totalEntries": 1}}


def test_a_staff_session_needs_the_csrf_token_on_post(make_user):
    make_user("equipe", staff=True)
    client = Client(enforce_csrf_checks=True)
    client.login(username="equipe", password="senha-forte-123")
    refused = call(client, QUERY)
    assert refused.status == 403 and "CSRF" in refused.messages[0]
    page = client.get(URL, HTTP_ACCEPT="text/html")
    token = page.cookies["csrftoken"].value
    assert call(client, QUERY, HTTP_X_CSRFTOKEN=token).ok() == {"stats": {"totalEntries": 0}}


def test_a_session_that_is_not_staff_counts_as_anonymous(make_user):
    make_user("cliente")
    client = Client()
    client.login(username="cliente", password="senha-forte-123")
    assert call(client, QUERY).status == 401


def test_get_runs_queries(api):
    answer = Answer(api.get(URL, {"query": QUERY}))
    assert answer.ok() == {"stats": {"totalEntries": 0}}


def test_get_does_not_run_mutations(api):
    seed()
    answer = Answer(api.get(URL, {"query": 'mutation { deleteEntry(productId: "ABC123") { deleted } }'}))
    assert answer.status == 405 and answer.codes == ["METHOD_NOT_ALLOWED"]
    assert "POST" in answer.response["Allow"]
    assert call(api, "{ entry(productId: \"ABC123\") { productId } }").ok() == {"entry": {"productId": "ABC123"}}


def test_a_subscription_is_a_400(api):
    answer = call(api, "subscription { stats { hits } }")
    assert answer.status == 400 and answer.messages == [
        "Este esquema não tem assinaturas (subscription): use query ou mutation."]


@pytest.mark.parametrize("body, message", [
    ({}, "Informe query"),
    ({"query": "   "}, "Informe query"),
    ({"query": 12}, "Informe query"),
    ({"query": QUERY, "variables": [1]}, "variables: deve ser um objeto JSON"),
    ({"query": QUERY, "operationName": 3}, "operationName: deve ser texto"),
    ([QUERY], "O corpo deve ser um objeto JSON"),
])
def test_a_request_that_is_no_graphql_request_is_a_400(api, body, message):
    answer = Answer(api.post(URL, json.dumps(body), content_type="application/json"))
    assert answer.status == 400 and answer.codes == ["BAD_REQUEST"] and message in answer.messages[0]


def test_malformed_json_is_the_rest_api_400(api):
    answer = Answer(api.post(URL, '{"query": ', content_type="application/json"))
    assert answer.status == 400 and answer.messages[0].startswith("JSON malformado")


def test_an_unknown_operation_name_is_a_400(api):
    answer = Answer(api.post(URL, json.dumps({"query": "query A { stats { hits } }", "operationName": "B"}),
                             content_type="application/json"))
    assert answer.status == 400 and answer.messages == ["Não há operação chamada 'B' na consulta."]


def test_get_with_bad_variables_is_a_400(api):
    answer = Answer(api.get(URL, {"query": QUERY, "variables": "{nope"}))
    assert answer.status == 400 and answer.messages[0].startswith("variables: JSON inválido")


def test_a_syntax_error_is_a_pt_br_graphql_error(api):
    answer = call(api, "{ stats { hits }")
    assert answer.status == 200 and answer.codes == ["GRAPHQL_PARSE_FAILED"]
    assert answer.messages == ["Erro de sintaxe na consulta: esperava nome, encontrou o fim da consulta."]
