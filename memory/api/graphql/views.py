"""``/api/graphql/``: GraphQL over HTTP as a DRF view, so a request is authenticated, parsed and
bounded exactly as the REST API's are (token or staff session with CSRF, the size-bounded JSON
parser, the same 401/403/413), and GraphiQL for a person who opens it in a browser.

POST ``{"query", "variables", "operationName"}`` runs queries and mutations; GET ``?query=``
runs queries only. A request the server cannot take (no query, bad JSON, no credentials) is a
4xx whose body is ``{"errors": [...]}``; a GraphQL result is a 200 with ``data`` and, when
something failed, ``errors``, each message in pt-BR with a ``code`` in its ``extensions``.
"""
from __future__ import annotations

import functools
import json
import logging
import re

from csp.constants import SELF
from django.conf import settings
from csp.decorators import csp_update
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from graphql import GraphQLError, GraphQLSyntaxError, introspection_from_schema
from rest_framework import status
from rest_framework.exceptions import APIException, AuthenticationFailed, NotAuthenticated, ParseError
from rest_framework.response import Response
from rest_framework.views import APIView
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from memory.api.exceptions import DATABASE_UNAVAILABLE, SERVER_ERROR
from memory.api.graphql.messages import translate
from memory.api.graphql.schema import DATABASE_ERRORS, schema
from memory.api.graphql.types import Context
from memory.api.parsers import check_json_value
from memory.api.views import FirstRenderer

logger = logging.getLogger("memory")

_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_]{0,63}): (.+)$", re.DOTALL)
NO_QUERY = "Informe query: o texto da consulta GraphQL (POST com JSON {\"query\": ...} ou GET ?query=...)."
ONLY_POST_MUTATIONS = "Mutações só por POST (GET executa apenas consultas)."
NO_SUBSCRIPTIONS = "Este esquema não tem assinaturas (subscription): use query ou mutation."


def camel(name: str) -> str:
    """``min_hits`` as the schema names it, ``minHits``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class RequestRefused(APIException):
    """A request that is no GraphQL request: answered before anything runs."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "BAD_REQUEST"


def format_error(error: GraphQLError) -> dict:
    """One error as the client reads it: a pt-BR message, where it happened, and a ``code``."""
    original = error.original_error
    extensions = dict(error.extensions or {})
    if isinstance(original, DATABASE_ERRORS):
        message, extensions["code"] = DATABASE_UNAVAILABLE, "SERVICE_UNAVAILABLE"
    elif isinstance(original, ValueError) and not isinstance(original, GraphQLError):
        found = _FIELD_PREFIX.match(str(original))
        if found:  # the services' "field: message"
            message = f"{camel(found[1])}: {found[2]}"
            extensions.update(code="BAD_USER_INPUT", field=camel(found[1]))
        else:
            message = translate(str(original))
            extensions["code"] = "BAD_USER_INPUT"
    elif original is not None and not isinstance(original, GraphQLError):
        message, extensions["code"] = SERVER_ERROR, "INTERNAL_SERVER_ERROR"  # logged by the schema
    elif extensions.get("code"):
        message = error.message  # ours, pt-BR already
    else:
        message = translate(error.message)
        extensions["code"] = "GRAPHQL_PARSE_FAILED" if isinstance(error, GraphQLSyntaxError) else "GRAPHQL_VALIDATION_FAILED"
    formatted = {"message": message}
    if error.locations:
        formatted["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        formatted["path"] = list(error.path)
    formatted["extensions"] = extensions
    return formatted


def _errors(message: str, code: str) -> dict:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


@functools.cache
def introspection() -> dict:
    """The schema's introspection, computed here once: GraphiQL gets it with the page, so it never
    sends the introspection query (15 levels deep, over the depth limit)."""
    return introspection_from_schema(schema._schema)


@csp_update({"font-src": [SELF, "data:"]})  # GraphiQL's stylesheet carries its fonts as data: URLs
def graphiql_page(request):
    """GraphiQL, from this app's static files (memory/static/memory/graphiql/)."""
    return render(request, "memory/graphiql.html", {"endpoint": request.path, "introspection": introspection()})


@extend_schema(exclude=True)  # described by docs/schema.graphql, not by the OpenAPI schema
class GraphQLView(APIView):
    """GraphQL: the DRF default authentication (token, staff session) and ``IsAuthenticated``."""

    content_negotiation_class = FirstRenderer

    def get(self, request):
        params = request.query_params
        if "query" not in params and _wants_html(request):
            return graphiql_page(request._request)
        variables = params.get("variables")
        if variables:
            try:
                variables = json.loads(variables)
            except (ValueError, RecursionError):
                raise RequestRefused("variables: JSON inválido no parâmetro da URL.") from None
        return self.execute(request, params.get("query"), variables, params.get("operationName"),
                            allowed=(OperationType.QUERY,))

    def post(self, request):
        body = request.data
        if not isinstance(body, dict):
            raise RequestRefused("O corpo deve ser um objeto JSON com query, variables e operationName.")
        return self.execute(request, body.get("query"), body.get("variables"), body.get("operationName"),
                            allowed=(OperationType.QUERY, OperationType.MUTATION))

    def execute(self, request, query, variables, operation_name, *, allowed) -> Response:
        if not isinstance(query, str) or not query.strip():
            raise RequestRefused(NO_QUERY)
        if variables is not None and not isinstance(variables, dict):
            raise RequestRefused("variables: deve ser um objeto JSON (nome da variável: valor).")
        if variables and request.method == "GET":  # a POST body went through the API's JSON parser
            try:
                check_json_value(variables, settings.MEMORY_API_MAX_JSON_DEPTH)
            except ParseError as exc:
                raise RequestRefused(f"variables: {exc.detail}") from None
        if operation_name is not None and not isinstance(operation_name, str):
            raise RequestRefused("operationName: deve ser texto.")
        try:
            result = schema.execute_sync(query, variable_values=variables, operation_name=operation_name,
                                         context_value=Context(request=request, view=self),
                                         allowed_operation_types=allowed)
        except InvalidOperationTypeError as exc:
            if exc.operation_type == OperationType.MUTATION:  # over GET
                return Response(_errors(ONLY_POST_MUTATIONS, "METHOD_NOT_ALLOWED"),
                                status=status.HTTP_405_METHOD_NOT_ALLOWED)
            return Response(_errors(NO_SUBSCRIPTIONS, "BAD_REQUEST"), status=status.HTTP_400_BAD_REQUEST)
        except CannotGetOperationTypeError as exc:
            name = f" chamada {exc.operation_name!r}" if exc.operation_name else ""
            message = (f"Não há operação{name} na consulta." if name
                       else "A consulta tem várias operações (ou nenhuma): informe operationName.")
            return Response(_errors(message, "BAD_REQUEST"), status=status.HTTP_400_BAD_REQUEST)
        except MissingQueryError:
            raise RequestRefused(NO_QUERY) from None
        body = {"data": result.data}
        if result.errors:
            body["errors"] = [format_error(error) for error in result.errors]
        return Response(body)

    def handle_exception(self, exc):
        """DRF's answer (status, headers), its ``detail`` as a GraphQL error; a browser without
        credentials asking for GraphiQL goes to the admin's login."""
        request = self.request
        if (isinstance(exc, (NotAuthenticated, AuthenticationFailed)) and request.method == "GET"
                and "query" not in request.query_params and _wants_html(request)):
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        response = super().handle_exception(exc)
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        if detail is None:
            detail = " ".join(str(v) for v in (response.data.values() if isinstance(response.data, dict) else [response.data]))
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = _errors(str(detail), str(code).upper())
        return response


def _wants_html(request) -> bool:
    return "text/html" in request.META.get("HTTP_ACCEPT", "")
