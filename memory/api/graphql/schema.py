"""The GraphQL schema of ``/api/graphql/``: each resolver checks its arguments, calls one selector or
service (the ones REST and the admin call) and shapes the answer.

Who may do what is the REST API's rule, through its own DRF permission classes: reads need an
authenticated user (the view refuses anyone else), and each mutation the model permission its
REST endpoint needs.
"""
from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from dataclasses import fields as dataclass_fields
from typing import Annotated

import strawberry
import strawberry_django
from django.db import InterfaceError, OperationalError
from graphql import GraphQLError
from strawberry.permission import BasePermission
from strawberry.printer import print_schema
from strawberry.schema.config import StrawberryConfig
from strawberry_django.optimizer import DjangoOptimizerExtension, optimize

from memory.api.graphql.limits import QueryLimits
from memory.api.graphql.types import (
    BIG_INT, BackupDirStats, BigInt, ClearedMemory, DatabaseStats, DayStats, DeletedEntry, EntryConnection,
    EntryOrdering, EntryStatus, EntryType, Regeneration, RegenerationOutcome, RedisStats, Stats,
)
from memory.api.permissions import (
    OVERRIDE_APPROVAL_REFUSED, CanChangeEntries, CanClearEntries, CanDeleteEntries, may_override_approval,
)
from memory.engine.memory import ProductMemory, resolve_product
from memory.engine.validators import text, whole_number
from memory.engine.versions import ApprovedContent
from memory.models import DEFAULT_KIND, ProductMemoryEntry
from memory.services.dashboard import daily_series
from memory.services.entries import (
    CannotRegenerate, GenerationFailed, QueueUnavailable, enqueue_product_regeneration,
)
from memory.services.selectors import DEFAULT_ORDERING, select_entries
from memory.services.stats import memory_stats

logger = logging.getLogger("memory")

MAX_PAGE = 100  # entries per page: first/last above it are refused
MAX_DAYS = 366
KIND_MAX_LENGTH = ProductMemoryEntry._meta.get_field("kind").max_length


class Refusal(GraphQLError):
    """An answer a client acts on: pt-BR ``message`` and a ``code`` (and ``productId``) in its extensions."""

    def __init__(self, message: str, code: str, **extensions):
        super().__init__(message, extensions={"code": code, **extensions})


def drf_permission(permission_class) -> type[BasePermission]:
    """A strawberry permission asking the REST API's DRF permission class, with its pt-BR message."""

    class Allowed(BasePermission):
        message = permission_class.message
        error_extensions = {"code": "FORBIDDEN"}

        def has_permission(self, source, info: strawberry.Info, **kwargs) -> bool:
            return permission_class().has_permission(info.context.request, info.context.view)

    Allowed.__name__ = Allowed.__qualname__ = f"GraphQL{permission_class.__name__}"
    return Allowed


def _kind(kind: str) -> str:
    kind = text("kind", kind, max_length=KIND_MAX_LENGTH)
    if not kind:
        raise ValueError("kind: não pode ser vazio")
    return kind


def _shaped(cls, data: dict):
    """A strawberry type from the service's dict: the type's fields, taken by name."""
    return cls(**{f.name: data[f.name] for f in dataclass_fields(cls) if f.name in data})


@strawberry.type
class Query:
    @strawberry_django.connection(
        EntryConnection, max_results=MAX_PAGE,
        description=f"As entradas, filtradas e ordenadas, em páginas de até {MAX_PAGE} (first/after, last/before).",
    )
    def entries(
        self,
        kind: str | None = None,
        status: EntryStatus | None = None,
        search: Annotated[str | None, strawberry.argument(description="Contido no productId ou no título.")] = None,
        expiring_before: Annotated[datetime.datetime | None, strawberry.argument(
            description="Expirando antes deste instante (aprovadas nunca expiram).")] = None,
        min_hits: Annotated[BigInt | None, strawberry.argument(description="Pelo menos tantos acertos.")] = None,
        ordering: EntryOrdering = EntryOrdering(DEFAULT_ORDERING),
    ) -> Iterable[ProductMemoryEntry]:
        return select_entries(
            kind=None if kind is None else _kind(kind),
            status=None if status is None else status.value,
            search=search, expiring_before=expiring_before, min_hits=min_hits, ordering=ordering.value,
        )

    @strawberry.field(description="A entrada de um produto, com seu conteúdo e suas versões; nula se não há.")
    def entry(self, info: strawberry.Info, product_id: str, kind: str = DEFAULT_KIND) -> EntryType | None:
        ref = resolve_product(product_id)
        queryset = ProductMemoryEntry.objects.filter(product_id=ref.product_id, kind=_kind(kind))
        return optimize(queryset, info).first()

    @strawberry.field(description="Estatísticas da memória (de todos os tipos, ou de kind).")
    def stats(self, kind: str | None = None) -> Stats:
        data = memory_stats(None if kind is None else _kind(kind))
        return _shaped(Stats, {
            **data,
            "redis": _shaped(RedisStats, data["redis"]),
            "database": _shaped(DatabaseStats, data["database"]),
            "backup_dir": _shaped(BackupDirStats, data["backup_dir"]),
        })

    @strawberry.field(description=f"Um item por dia dos últimos days dias (1 a {MAX_DAYS}), o mais antigo primeiro.")
    def daily_stats(self, days: int = 30) -> list[DayStats]:
        days = whole_number("days", days, minimum=1, maximum=MAX_DAYS)
        return [_shaped(DayStats, day) for day in daily_series(days)]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        permission_classes=[drf_permission(CanDeleteEntries)],
        description="Remove a entrada de todas as camadas. Exige memory.delete_productmemoryentry.",
    )
    def delete_entry(self, product_id: str, kind: str = DEFAULT_KIND) -> DeletedEntry:
        ref = resolve_product(product_id)
        kind = _kind(kind)
        deleted = ProductMemory(kind).delete_product(ref.product_id)
        return DeletedEntry(deleted=deleted, product_id=ref.product_id, kind=kind)

    @strawberry.mutation(
        permission_classes=[drf_permission(CanChangeEntries)],
        description=(
            "Força a regeneração do conteúdo principal de um produto (a regra de POST /api/memory/force-regenerate/). "
            "Exige memory.change_productmemoryentry; overrideApproval, memory.override_approval_productmemoryentry."
        ),
    )
    def regenerate_entry(
        self, info: strawberry.Info, product_id: str, override_approval: bool = False,
        fields: Annotated[list[str] | None, strawberry.argument(
            description="Só estes campos do conteúdo (os outros ficam como estão).")] = None,
    ) -> Regeneration:
        if override_approval and not may_override_approval(info.context.request):
            raise Refusal(OVERRIDE_APPROVAL_REFUSED, "FORBIDDEN")
        ref = resolve_product(product_id)
        try:
            done = enqueue_product_regeneration(ref.product_id, override_approval=override_approval, fields=fields)
        except CannotRegenerate as exc:
            raise Refusal(str(exc), "NOT_FOUND", productId=exc.product_id) from None
        except ApprovedContent as exc:
            raise Refusal(str(exc), "APPROVED_CONTENT", productId=exc.product_id) from None
        except QueueUnavailable as exc:
            raise Refusal(str(exc), "SERVICE_UNAVAILABLE") from None
        except GenerationFailed as exc:
            code = "PROVIDER_UNAVAILABLE" if exc.unavailable else "PROVIDER_FAILED"
            raise Refusal(str(exc), code, productId=exc.product_id) from None
        return Regeneration(task_id=done.task_id, product_id=done.product_id, outcome=RegenerationOutcome(done.outcome),
                            tokens_spent=done.tokens_spent, content=done.content)

    @strawberry.mutation(
        permission_classes=[drf_permission(CanClearEntries)],
        description="Limpa toda a memória. Exige memory.clear_productmemoryentry.",
    )
    def clear_memory(self) -> ClearedMemory:
        return ClearedMemory(cleared=ProductMemory().clear())


DATABASE_ERRORS = (OperationalError, InterfaceError)


class MemorySchema(strawberry.Schema):
    """Logs what no resolver meant to raise (a client's mistakes are its answer, not a log line)."""

    def process_errors(self, errors, execution_context=None) -> None:
        for error in errors:
            original = error.original_error
            if original is None or isinstance(original, (GraphQLError, ValueError)):
                continue
            if isinstance(original, DATABASE_ERRORS):
                logger.warning("PostgreSQL indisponível ao atender o GraphQL: %s", str(original).strip()[:200])
            else:
                logger.error("Erro inesperado no GraphQL (%s)", ".".join(map(str, error.path or ())),
                             exc_info=original)


schema = MemorySchema(
    query=Query,
    mutation=Mutation,
    config=StrawberryConfig(scalar_map={BigInt: BIG_INT}),
    extensions=[QueryLimits, DjangoOptimizerExtension],
)

SCHEMA_FILE = "docs/schema.graphql"  # relative to the project's root (settings.BASE_DIR)


def printed_schema() -> str:
    """The schema in SDL, as ``docs/schema.graphql`` holds it (``manage.py graphql_schema`` writes it)."""
    return print_schema(schema) + "\n"
