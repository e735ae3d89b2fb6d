"""The eight ``/api/memory/`` endpoints of the original design, the content's history (edit,
approve, versions, restore), and ``/metrics``.

Each view validates its input with a serializer, calls one service function
and shapes the response; the memory itself lives in ``memory.engine.memory``.
"""
from __future__ import annotations

import functools

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from memory.api import serializers as s
from memory.api.permissions import (
    OVERRIDE_APPROVAL_REFUSED, CanApproveContent, CanChangeEntries, CanClearEntries, CanDeleteEntries,
    CanEditContent, MetricsAccess, may_override_approval, sees_health_checks,
)
from memory.engine.memory import ProductMemory
from memory.engine.versions import ApprovedContent, EntryNotFound, VersionNotFound
from memory.infra import metrics
from memory.infra.health import check_health
from memory.io.export import iter_export
from memory.io.formats import content_type, export_filename
from memory.services.entries import (
    CREATED, QUEUED, CannotRegenerate, GenerationFailed, QueueUnavailable, enqueue_product_regeneration,
)
from memory.services.stats import memory_stats
from memory.services.versions import edit_content, entry_history, restore_version, set_approval

TAG = ["memória"]
ERRORS = {
    401: OpenApiResponse(s.DetailSerializer, description="Sem credenciais válidas (token ou sessão de staff)."),
    403: OpenApiResponse(s.DetailSerializer, description="Sem a permissão exigida, ou CSRF ausente na sessão."),
}
BODY_ERRORS = {
    **ERRORS,
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Entrada inválida (JSON, tipos, identificador)."),
    413: OpenApiResponse(s.DetailSerializer, description="Corpo acima de DATA_UPLOAD_MAX_MEMORY_SIZE."),
    415: OpenApiResponse(s.DetailSerializer, description="Content-Type que não é application/json."),
}
QUERY_ERRORS = {**ERRORS, 400: OpenApiResponse(OpenApiTypes.OBJECT, description="Parâmetro inválido.")}
UNKNOWN_PRODUCT = {404: OpenApiResponse(s.ProductErrorSerializer, description="Produto sem entrada na memória.")}


@functools.cache
def _bound(serializer_class) -> serializers.Serializer:
    """One instance per serializer class, its fields bound once.

    A new DRF serializer deep-copies every declared field, a large share of a
    ``POST /api/memory/get/`` served from L1 (docs/benchmarks.md). Validation and
    representation read the bound fields without changing them, so one instance serves
    every request and thread.
    """
    serializer = serializer_class()
    serializer.fields  # noqa: B018 (binds them now)
    return serializer


def _validated(serializer_class, data) -> dict:
    """``is_valid(raise_exception=True)``: the same checks and the same 400 body."""
    return _bound(serializer_class).run_validation(data)


def _shaped(serializer_class, data) -> dict:
    """``serializer_class(data).data``."""
    return _bound(serializer_class).to_representation(data)


class StatsView(APIView):
    @extend_schema(tags=TAG, summary="Estatísticas da memória", responses={200: s.StatsSerializer, **ERRORS})
    def get(self, request):
        return Response(_shaped(s.StatsSerializer, memory_stats()))


class ListView(APIView):
    @extend_schema(
        tags=TAG, summary="Listar produtos na memória", parameters=[s.ListQuerySerializer],
        responses={200: s.EntryListSerializer, **QUERY_ERRORS},
    )
    def get(self, request):
        query = _validated(s.ListQuerySerializer, request.query_params)
        page = ProductMemory(query["kind"]).list_products(
            limit=query["limit"], offset=query["offset"], search=query.get("search") or None
        )
        return Response(_shaped(s.EntryListSerializer, page))


class GetView(APIView):
    @extend_schema(
        tags=TAG, summary="Obter o conteúdo de um produto", request=s.KindProductRequestSerializer,
        responses={200: s.FoundSerializer, 404: s.NotFoundSerializer, **BODY_ERRORS},
    )
    def post(self, request):
        body = _validated(s.KindProductRequestSerializer, request.data)
        lookup = ProductMemory(body["kind"]).lookup(body["product"])
        if lookup.hit is None:
            data = {"found": False, "product_id": lookup.product_id, "status": lookup.status}
            return Response(_shaped(s.NotFoundSerializer, data), status=status.HTTP_404_NOT_FOUND)
        return Response(s.FoundSerializer.represent_hit(lookup.hit, lookup.status))


class DeleteView(APIView):
    permission_classes = [CanDeleteEntries]

    @extend_schema(
        tags=TAG, summary="Remover um produto", request=s.KindProductRequestSerializer,
        responses={200: s.DeletedSerializer, 404: s.DeletedSerializer, **BODY_ERRORS},
    )
    def post(self, request):
        body = _validated(s.KindProductRequestSerializer, request.data)
        deleted = ProductMemory(body["kind"]).delete_product(body["product"])
        data = {"deleted": deleted, "product_id": body["ref"].product_id}
        return Response(_shaped(s.DeletedSerializer, data), status=status.HTTP_200_OK if deleted else status.HTTP_404_NOT_FOUND)


class ClearView(APIView):
    permission_classes = [CanClearEntries]

    @extend_schema(
        tags=TAG, summary="Limpar toda a memória", description="Exige a permissão memory.clear_productmemoryentry.",
        request=None, responses={200: s.ClearedSerializer, **ERRORS},
    )
    def post(self, request):
        return Response(_shaped(s.ClearedSerializer, {"cleared": ProductMemory().clear()}))


class ExportView(APIView):
    @extend_schema(
        tags=TAG, summary="Exportar as entradas (download em streaming)", parameters=[s.ExportQuerySerializer],
        responses={
            (200, "application/json"): OpenApiResponse(
                {"type": "array", "items": {"type": "object"}}, description="Um array JSON de entradas."
            ),
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
            **QUERY_ERRORS,
        },
    )
    def get(self, request):
        query = _validated(s.ExportQuerySerializer, request.query_params)
        fmt = query["format"]
        response = StreamingHttpResponse(iter_export(fmt, limit=query.get("limit")), content_type=content_type(fmt))
        response["Content-Disposition"] = f'attachment; filename="{export_filename(fmt)}"'
        response["Cache-Control"] = "no-store"
        return response


class ForceRegenerateView(APIView):
    permission_classes = [CanChangeEntries]

    @extend_schema(
        tags=TAG, summary="Forçar a regeneração de um produto", request=s.ForceRegenerateRequestSerializer,
        description=(
            "Com um broker, a tarefa vai para a fila (202). Sem broker (modo eager), ela roda na "
            "requisição e a resposta traz o resultado: 201 ou 200 quando salvo, 502 ou 503 quando o "
            "provedor falhou (nada salvo). Dados que a geração recusa são 400 nos dois modos, sem nada na fila. "
            "Conteúdo aprovado é 409 (nada na fila), a menos que override_approval venha de quem tem "
            "memory.override_approval_productmemoryentry. Com fields, só esses campos são regenerados "
            "(o provedor é chamado só para eles) e os outros ficam como estão."
        ),
        responses={
            202: OpenApiResponse(s.RegenerationSerializer, description="Tarefa na fila (há um broker)."),
            201: OpenApiResponse(s.RegeneratedSerializer, description="Modo eager: gerado e salvo; não havia entrada."),
            200: OpenApiResponse(s.RegeneratedSerializer, description="Modo eager: gerado e salvo sobre a entrada que havia."),
            404: OpenApiResponse(s.ProductErrorSerializer, description="Produto desconhecido e dados insuficientes."),
            409: OpenApiResponse(s.ProductErrorSerializer, description="Conteúdo aprovado e sem override_approval."),
            502: OpenApiResponse(s.ProductErrorSerializer, description="Modo eager: o provedor respondeu sem conteúdo utilizável; nada salvo."),
            503: OpenApiResponse(
                s.UnavailableSerializer,
                description="A fila de tarefas não respondeu (nada na fila), ou, no modo eager, o provedor está "
                            "indisponível: sem cota, tempo esgotado, fora do ar (nada salvo).",
            ),
            **BODY_ERRORS,
        },
    )
    def post(self, request):
        body = _validated(s.ForceRegenerateRequestSerializer, request.data)
        override = body["override_approval"]
        if override and not may_override_approval(request):
            raise PermissionDenied(OVERRIDE_APPROVAL_REFUSED)
        try:
            done = enqueue_product_regeneration(body["product"], override_approval=override,
                                                fields=body.get("fields"))
        except CannotRegenerate as exc:
            data = {"detail": str(exc), "product_id": exc.product_id}
            return Response(_shaped(s.ProductErrorSerializer, data), status=status.HTTP_404_NOT_FOUND)
        except ApprovedContent as exc:
            return _product_error(exc, status.HTTP_409_CONFLICT)
        except QueueUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        except GenerationFailed as exc:
            data = {"detail": str(exc), "product_id": exc.product_id}
            code = status.HTTP_503_SERVICE_UNAVAILABLE if exc.unavailable else status.HTTP_502_BAD_GATEWAY
            return Response(_shaped(s.ProductErrorSerializer, data), status=code)
        if done.outcome == QUEUED:
            data = {"task_id": done.task_id, "product_id": done.product_id}
            return Response(_shaped(s.RegenerationSerializer, data), status=status.HTTP_202_ACCEPTED)
        data = {"task_id": done.task_id, "product_id": done.product_id,
                "tokens_spent": done.tokens_spent, "content": done.content}
        code = status.HTTP_201_CREATED if done.outcome == CREATED else status.HTTP_200_OK
        return Response(_shaped(s.RegeneratedSerializer, data), status=code)


def _product_error(exc, code: int) -> Response:
    """``{"detail", "product_id"}`` with ``code``: an unknown product (404), approved content (409)."""
    return Response(_shaped(s.ProductErrorSerializer, {"detail": str(exc), "product_id": exc.product_id}),
                    status=code)


def _author(request) -> str:
    return request.user.get_username()


class EditView(APIView):
    permission_classes = [CanEditContent]

    @extend_schema(
        tags=TAG, summary="Editar o conteúdo de um produto", request=s.EditRequestSerializer,
        description=(
            "Salva o conteúdo como nova versão (origem edited, autor: o usuário), validado pelo esquema do "
            "conteúdo; todas as camadas passam a servi-lo. A aprovação, a validade e o frescor da entrada "
            "ficam como estão. Exige memory.edit_productmemoryentry."
        ),
        responses={200: s.ContentWrittenSerializer, **UNKNOWN_PRODUCT, **BODY_ERRORS},
    )
    def post(self, request):
        body = _validated(s.EditRequestSerializer, request.data)
        try:
            written = edit_content(body["product"], body["content"], author=_author(request), kind=body["kind"])
        except EntryNotFound as exc:
            return _product_error(exc, status.HTTP_404_NOT_FOUND)
        return Response(_shaped(s.ContentWrittenSerializer, written.as_dict()))


class ApproveView(APIView):
    permission_classes = [CanApproveContent]

    @extend_schema(
        tags=TAG, summary="Aprovar (ou desaprovar) o conteúdo de um produto", request=s.ApproveRequestSerializer,
        description=(
            "Conteúdo aprovado é servido como está, mesmo desatualizado, não expira, e nenhuma regeneração o "
            "substitui sem override_approval. Exige memory.approve_productmemoryentry."
        ),
        responses={200: s.ApprovalSerializer, **UNKNOWN_PRODUCT, **BODY_ERRORS},
    )
    def post(self, request):
        body = _validated(s.ApproveRequestSerializer, request.data)
        try:
            entry = set_approval(body["product"], body["approved"], by=_author(request), kind=body["kind"])
        except EntryNotFound as exc:
            return _product_error(exc, status.HTTP_404_NOT_FOUND)
        data = {name: getattr(entry, name) for name in
                ("product_id", "kind", "approved", "approved_by", "approved_at", "version")}
        return Response(_shaped(s.ApprovalSerializer, data))


class VersionsView(APIView):
    @extend_schema(
        tags=TAG, summary="Versões do conteúdo de um produto", parameters=[s.VersionsQuerySerializer],
        description="As versões guardadas (MEMORY_MAX_VERSIONS), a mais nova primeiro, com o que cada uma mudou.",
        responses={200: s.VersionsSerializer, **UNKNOWN_PRODUCT, **QUERY_ERRORS},
    )
    def get(self, request):
        query = _validated(s.VersionsQuerySerializer, request.query_params)
        try:
            found = entry_history(query["product_id"], kind=query["kind"])
        except EntryNotFound as exc:
            return _product_error(exc, status.HTTP_404_NOT_FOUND)
        return Response(_shaped(s.VersionsSerializer, found))


class RestoreView(APIView):
    permission_classes = [CanEditContent]

    @extend_schema(
        tags=TAG, summary="Restaurar uma versão do conteúdo", request=s.RestoreRequestSerializer,
        description=(
            "O conteúdo da versão pedida volta a ser o atual, como nova versão (origem restored). "
            "Exige memory.edit_productmemoryentry."
        ),
        responses={
            200: s.ContentWrittenSerializer,
            404: OpenApiResponse(s.ProductErrorSerializer, description="Produto ou versão desconhecidos."),
            **BODY_ERRORS,
        },
    )
    def post(self, request):
        body = _validated(s.RestoreRequestSerializer, request.data)
        try:
            written = restore_version(body["product"], body["version"], author=_author(request), kind=body["kind"])
        except (EntryNotFound, VersionNotFound) as exc:
            return _product_error(exc, status.HTTP_404_NOT_FOUND)
        return Response(_shaped(s.ContentWrittenSerializer, written.as_dict()))


class HealthView(APIView):
    """Anyone gets the status; the checks (a folder path, error messages) only a user who may view entries."""

    permission_classes = [AllowAny]
    # Pending migrations are part of its answer ("down"), not a reason to refuse it.
    answers_unmigrated = True

    def perform_authentication(self, request):
        """Deferred: the answer never depends on the credentials being good (``sees_health_checks``)."""

    @extend_schema(
        tags=TAG, summary="Health check",
        description="Sem credenciais, só `status`; `checks` também para quem tem memory.view_productmemoryentry.",
        responses={200: s.HealthSerializer, 503: OpenApiResponse(s.HealthSerializer, description="PostgreSQL fora do ar.")},
    )
    def get(self, request):
        health = check_health()
        code = status.HTTP_503_SERVICE_UNAVAILABLE if health["status"] == "down" else status.HTTP_200_OK
        if not sees_health_checks(request):
            health = {key: health[key] for key in ("status", "detail") if key in health}
        return Response(_shaped(s.HealthSerializer, health), status=code)


class PrometheusRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        if isinstance(data, dict) and "detail" in data:
            return f"{data['detail']}\n".encode()
        return str(data).encode()


class FirstRenderer(BaseContentNegotiation):
    """Scrapers ask for several exposition formats; /metrics always answers the text format."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@extend_schema(exclude=True)
class MetricsView(APIView):
    """Prometheus exposition; who may read it is ``METRICS_ALLOW``."""

    permission_classes = [MetricsAccess]
    renderer_classes = [PrometheusRenderer]
    content_negotiation_class = FirstRenderer

    def get(self, request):
        body, content_type = metrics.render_latest()
        return HttpResponse(body, content_type=content_type)
