"""The GraphQL types: an entry with its content and versions, the stats, a day's figures, and what
the mutations answer. Entries and versions are strawberry-django types of the models, so the
optimizer loads what a query selects, and the versions of a page of entries in one query."""
from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import NewType

import strawberry
import strawberry_django
from strawberry import relay
from strawberry.scalars import JSON
from strawberry_django.relay import DjangoCursorConnection, DjangoCursorEdge

from memory.engine import freshness
from memory.models import ContentOrigin, ContentVersion, ProductMemoryEntry
from memory.providers.prompts import current_generator_version
from memory.services.selectors import ENTRY_ORDERINGS, STATUSES

BigInt = NewType("BigInt", int)


def _big_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"BigInt aceita um número inteiro, não {value!r}")
    return value


BIG_INT = strawberry.scalar(
    name="BigInt",
    description="Inteiro de até 64 bits (contagens de tokens e acertos passam do Int de 32 bits do GraphQL).",
    serialize=int, parse_value=_big_int,
)


@dataclass
class Context:
    """What every resolver of one request shares: the DRF request (its user), and one instant
    and one generator version, so that every entry of a page is judged by the same ones."""

    request: object
    view: object
    now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    generator_version: str = field(default_factory=current_generator_version)


EntryStatus = strawberry.enum(
    Enum("EntryStatus", {s.upper(): s for s in STATUSES}),
    description="A regra de frescor: active (servida), expired (validade vencida), stale (de outro gerador).",
)
EntryOrdering = strawberry.enum(
    Enum("EntryOrdering", {name.upper(): name for name in ENTRY_ORDERINGS}),
    description="A ordem das entradas; a chave primária desempata, e o cursor segue a ordem pedida.",
)
Origin = strawberry.enum(
    Enum("ContentOrigin", {origin.upper(): origin for origin in ContentOrigin.values}),
    description="De onde veio um conteúdo: gerado, editado, importado ou restaurado.",
)


@strawberry_django.type(ContentVersion, name="ContentVersion",
                        description="Um conteúdo que a entrada teve; a mais nova é o conteúdo atual.")
class ContentVersionType:
    number: int
    author: str = strawberry_django.field(description="Quem escreveu (vazio numa geração).")
    generator_version: str
    tokens: BigInt = strawberry_django.field(description="O que escrever este conteúdo custou (tokens).")
    created_at: datetime.datetime
    content: JSON = strawberry_django.field(field_name="payload")

    @strawberry_django.field(only=["origin"])
    def origin(self) -> Origin:
        return Origin(self.origin)


@strawberry_django.type(ProductMemoryEntry, name="Entry", description="Uma entrada da memória (um produto, um tipo).")
class EntryType(relay.Node):
    product_id: str
    kind: str
    title: str | None
    content: JSON = strawberry_django.field(field_name="payload", description="O conteúdo atual.")
    hit_count: BigInt
    tokens_saved: BigInt
    tokens_prompt: int
    tokens_completion: int
    tokens_cached: int
    generator_version: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    last_hit_at: datetime.datetime | None
    expires_at: datetime.datetime
    family_id: str = strawberry_django.field(description="A família de variantes (vazio: conteúdo próprio).")
    version: int = strawberry_django.field(description="O número da versão do conteúdo atual.")
    author: str
    approved: bool = strawberry_django.field(description="Aprovado: servido como está, mesmo desatualizado.")
    approved_by: str
    approved_at: datetime.datetime | None
    versions: list[ContentVersionType] = strawberry_django.field(
        description="As versões guardadas (MEMORY_MAX_VERSIONS), a mais nova primeiro.")

    @strawberry_django.field(only=["expires_at", "generator_version", "approved"],
                             description="active, expired ou stale, pela regra de frescor (a linha por si só).")
    def status(self, info: strawberry.Info) -> EntryStatus:
        context: Context = info.context
        return EntryStatus(freshness.row_status(self, context.generator_version, context.now))

    @strawberry_django.field(only=["origin"])
    def origin(self) -> Origin:
        return Origin(self.origin)

    @strawberry_django.field(only=["tokens_prompt", "tokens_completion"],
                             description="Tokens que a geração custou (o que cada acerto economiza).")
    def tokens_spent(self) -> BigInt:
        return self.tokens_spent


CURSOR_PREFIX = DjangoCursorEdge.CURSOR_PREFIX + ":"


def check_cursor(name: str, cursor: str) -> None:
    """``ValueError`` naming ``name`` unless ``cursor`` reads as one this connection hands out
    (base64 of ``orderedcursor:`` and a JSON list); strawberry-django checks the values."""
    try:
        decoded = base64.b64decode(cursor.encode(), validate=True).decode()
        valid = decoded.startswith(CURSOR_PREFIX) and isinstance(json.loads(decoded[len(CURSOR_PREFIX):]), list)
    except (ValueError, UnicodeError, RecursionError):
        valid = False
    if not valid:
        raise ValueError(f"{name}: cursor inválido; use um startCursor ou endCursor devolvido por esta consulta")


@strawberry.type(name="EntryConnection", description="Uma página de entradas, com cursores que seguem a ordem pedida.")
class EntryConnection(DjangoCursorConnection[EntryType]):
    @classmethod
    def resolve_connection(cls, nodes, *, info, before=None, after=None, first=None, last=None, **kwargs):
        for name, cursor in (("after", after), ("before", before)):
            if cursor is not None:
                check_cursor(name, cursor)
        return super().resolve_connection(nodes, info=info, before=before, after=after, first=first, last=last,
                                          **kwargs)


@strawberry.type(description="Redis (L2) como as estatísticas o veem.")
class RedisStats:
    available: bool
    used_memory_bytes: BigInt | None
    keys: BigInt | None


@strawberry.type
class DatabaseStats:
    vendor: str
    table_bytes: BigInt


@strawberry.type
class BackupDirStats:
    path: str
    bytes: BigInt


@strawberry.type(description="O mesmo que GET /api/memory/stats/ (memory.services.stats.memory_stats).")
class Stats:
    total_entries: BigInt
    active_entries: BigInt
    expired_entries: BigInt
    stale_entries: BigInt
    approved_entries: BigInt
    generated_entries: BigInt
    edited_entries: BigInt
    imported_entries: BigInt
    restored_entries: BigInt
    hits: BigInt
    misses: BigInt
    hit_rate: float
    generations: BigInt
    tokens_spent: BigInt
    tokens_saved: BigInt
    tokens_wasted: BigInt
    tokens_saved_by_family: BigInt
    estimated_cost_saved: float | None = strawberry.field(
        description="USD; nulo quando LLM_PRICES não tem preço para o modelo atual.")
    currency: str
    generator_version: str
    redis: RedisStats
    database: DatabaseStats
    backup_dir: BackupDirStats


@strawberry.type(description="O que a memória fez num dia (DailyStats, mais o que ainda não foi gravado).")
class DayStats:
    date: datetime.date
    hits: BigInt
    misses: BigInt
    generations: BigInt
    tokens_spent: BigInt
    tokens_saved: BigInt
    tokens_wasted: BigInt
    tokens_saved_by_family: BigInt


@strawberry.type
class DeletedEntry:
    deleted: bool = strawberry.field(description="false: não havia entrada.")
    product_id: str
    kind: str


@strawberry.type
class ClearedMemory:
    cleared: BigInt = strawberry.field(description="Quantas entradas foram removidas.")


@strawberry.enum(description="queued: na fila (há um broker); created/replaced: modo eager, já gerado e salvo.")
class RegenerationOutcome(Enum):
    QUEUED = "queued"
    CREATED = "created"
    REPLACED = "replaced"


@strawberry.type
class Regeneration:
    task_id: str = strawberry.field(description="O id da tarefa do Celery.")
    product_id: str
    outcome: RegenerationOutcome
    tokens_spent: BigInt = strawberry.field(description="Modo eager: o que a geração custou; 0 na fila.")
    content: JSON | None = strawberry.field(description="Modo eager: o conteúdo salvo; nulo na fila.")
