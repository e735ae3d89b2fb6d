"""An entry's history: every content it held is a :class:`~memory.models.ContentVersion`.

The rules, in one place:

- every write of an entry's content (a generation's save, an edit, an import, a restore) makes
  the content written the entry's newest version, number ``entry.version``, in the same
  transaction as the entry's row (:class:`~memory.engine.tiers.DatabaseTier` is L3's only
  writer, and calls :func:`record` or writes the version in the same SQL statement);
- the newest ``MEMORY_MAX_VERSIONS`` versions are kept, the current one always among them;
- an approved entry is never overwritten by a generation (:class:`ApprovedContent`) unless the
  caller overrides the approval, which the generation then withdraws: what it wrote was
  approved by no one. An edit or a restore is a person's own decision and keeps the approval;
- a lookup never reads versions: the history is for people (the admin, the API, the commands).

Deleting an entry deletes its versions in the database itself (``ContentVersion``'s docstring).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from django.conf import settings
from django.db import connection
from django.db.models import Q

from memory.models import ContentOrigin, ContentVersion, ProductMemoryEntry
from memory.providers.content import REQUIRED_LIST_FIELDS, REQUIRED_TEXT_FIELDS

GENERATED: str = ContentOrigin.GENERATED.value
EDITED: str = ContentOrigin.EDITED.value
IMPORTED: str = ContentOrigin.IMPORTED.value
RESTORED: str = ContentOrigin.RESTORED.value
ORIGINS: tuple[str, ...] = tuple(ContentOrigin.values)


class ApprovedContent(Exception):
    """A generation was refused: the entry is approved, and no override came with it."""

    def __init__(self, product_id: str, kind: str):
        super().__init__(
            f"Produto {product_id} tem conteúdo aprovado: nenhuma regeneração o substitui. "
            "Para regenerar mesmo assim, envie override_approval=True (exige a permissão "
            "memory.override_approval_productmemoryentry), ou retire a aprovação."
        )
        self.product_id = product_id
        self.kind = kind


class EntryNotFound(LookupError):
    """No entry of this product (and kind) in PostgreSQL."""

    def __init__(self, product_id: str, kind: str):
        super().__init__(f"Produto {product_id} não está na memória (tipo {kind}).")
        self.product_id = product_id
        self.kind = kind


class VersionNotFound(LookupError):
    """The entry has no version of this number (never written, or dropped by the retention)."""

    def __init__(self, product_id: str, number: int, kept: list[int]):
        where = f"guardadas: {min(kept)} a {max(kept)}" if kept else "nenhuma guardada"
        super().__init__(f"Produto {product_id} não tem a versão {number} ({where}).")
        self.product_id = product_id
        self.number = number


def max_versions() -> int:
    """How many versions an entry keeps (``MEMORY_MAX_VERSIONS``), the current one included."""
    return settings.MEMORY_MAX_VERSIONS


def tokens_of(origin: str, tokens_spent: int) -> int:
    """What writing a content cost: a generation's (or an imported generation's) tokens; an edit
    or a restore costs none, though the entry keeps its generation's tokens (what a hit saves)."""
    return tokens_spent if origin in (GENERATED, IMPORTED) else 0


def record(entry_id: int, number: int, payload: dict, *, origin: str, generator_version: str, tokens: int,
           author: str, created_at: datetime) -> None:
    """Write version ``number`` of an entry, then drop what the retention no longer keeps.
    The caller holds the transaction that wrote the entry's row."""
    ContentVersion.objects.create(
        entry_id=entry_id, number=number, payload=payload, origin=origin, generator_version=generator_version,
        tokens=tokens, author=author, created_at=created_at,
    )
    trim({entry_id: number})


def record_many(versions: list[ContentVersion], newest: dict[int, int]) -> None:
    """Write many versions at once (an import), then trim each entry to the retention;
    ``newest`` maps each entry id to its current version number."""
    if versions:
        ContentVersion.objects.bulk_create(versions)
    trim(newest)


def trim(newest: dict[int, int]) -> int:
    """Drop the versions older than the newest ``MEMORY_MAX_VERSIONS`` of each entry
    (``newest``: entry id -> current number); returns how many went."""
    keep = max_versions()
    over = Q()
    for entry_id, number in newest.items():
        if number > keep:
            over |= Q(entry_id=entry_id, number__lte=number - keep)
    if not over:
        return 0
    deleted, _ = ContentVersion.objects.filter(over).delete()
    return deleted


def trim_entries(entry_ids: list[int]) -> int:
    """:func:`trim` of these entries in one statement (PostgreSQL), each against its own current
    version; returns how many went."""
    if not entry_ids:
        return 0
    versions_table = connection.ops.quote_name(ContentVersion._meta.db_table)
    entries_table = connection.ops.quote_name(ProductMemoryEntry._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {versions_table} AS old USING {entries_table} AS entry"
            f" WHERE entry.id = ANY(%s::bigint[]) AND entry.version > %s"
            f" AND old.entry_id = entry.id AND old.number <= entry.version - %s",
            ["{" + ",".join(str(int(pk)) for pk in entry_ids) + "}", max_versions(), max_versions()],
        )
        return cursor.rowcount


def history(entry_id: int) -> list[ContentVersion]:
    """The versions an entry keeps, newest first."""
    return list(ContentVersion.objects.filter(entry_id=entry_id).order_by("-number"))


def get_version(entry_id: int, product_id: str, number: int) -> ContentVersion:
    """Version ``number`` of an entry; :class:`VersionNotFound` naming the numbers kept."""
    found = ContentVersion.objects.filter(entry_id=entry_id, number=number).first()
    if found is None:
        kept = list(ContentVersion.objects.filter(entry_id=entry_id).values_list("number", flat=True))
        raise VersionNotFound(product_id, number, kept)
    return found


# -- what changed between two contents (pure) ---------------------------------------------

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"


def diff(before: dict | None, after: dict) -> list[dict[str, Any]]:
    """Field by field, what ``after`` changed of ``before`` (None: the first version, every field
    added): ``[{"field", "change": added|removed|changed, "before", "after"}]``, in the order
    of the content schema's fields first, then the other keys sorted."""
    before = before or {}
    changes = []
    for name in _field_order(before.keys() | after.keys()):
        if name not in before:
            changes.append({"field": name, "change": ADDED, "before": None, "after": after[name]})
        elif name not in after:
            changes.append({"field": name, "change": REMOVED, "before": before[name], "after": None})
        elif before[name] != after[name]:
            changes.append({"field": name, "change": CHANGED, "before": before[name], "after": after[name]})
    return changes


SCHEMA_ORDER = (*REQUIRED_TEXT_FIELDS, *REQUIRED_LIST_FIELDS)


def _field_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [n for n in SCHEMA_ORDER if n in names] + sorted(n for n in names if n not in SCHEMA_ORDER)
