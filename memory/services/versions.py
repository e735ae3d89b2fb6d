"""A person's decisions on content: edits, approvals, the history and restores.

Each function takes a product (a product_id or product data) and writes through
:class:`~memory.engine.memory.ProductMemory`, so that what it writes is the entry's new version
(:mod:`memory.engine.versions`) and what every tier serves from then on: PostgreSQL first, then
Redis, and every other process's L1 drops its copy. Who may call them is the caller's check
(the API's and the admin's permissions); the terminal's operator may do everything.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from memory.engine.memory import ProductMemory, resolve_product
from memory.engine.tiers import DatabaseTier
from memory.engine.validators import whole_number
from memory.engine.versions import EDITED, RESTORED, EntryNotFound, diff, get_version, history
from memory.models import DEFAULT_KIND, ProductMemoryEntry
from memory.providers.content import validate_generated_content
from memory.services.entries import CHUNK, evict_on_commit

logger = logging.getLogger("memory")


def validate_edited_content(content: Any) -> dict:
    """The content a person wrote, as the content schema wants it (title, description,
    bullet_points, seo_keywords; other keys kept); ``ValueError`` naming ``content`` and the field
    (``content: title: obrigatório, texto não vazio``)."""
    try:
        return validate_generated_content(content)
    except ValueError as exc:
        message = str(exc).removeprefix("conteúdo: ")
        raise ValueError(f"content: {message}") from None


@dataclass(frozen=True)
class ContentWritten:
    """The entry's current version after an edit or a restore."""

    product_id: str
    kind: str
    version: int
    origin: str
    author: str
    content: dict
    restored_from: int | None = None

    def as_dict(self) -> dict:
        data = asdict(self)
        if self.restored_from is None:
            del data["restored_from"]
        return data


def _written(product_id: str, kind: str, restored_from: int | None = None) -> ContentWritten:
    entry = _entry(product_id, kind, "product_id", "kind", "version", "origin", "author", "payload")
    return ContentWritten(entry.product_id, entry.kind, entry.version, entry.origin, entry.author, entry.payload,
                          restored_from)


def _entry(product: Any, kind: str, *fields: str) -> ProductMemoryEntry:
    ref = resolve_product(product)
    entry = ProductMemoryEntry.objects.filter(product_id=ref.product_id, kind=kind).only(*fields).first()
    if entry is None:
        raise EntryNotFound(ref.product_id, kind)
    return entry


def edit_content(product: Any, content: Any, *, author: str, kind: str = DEFAULT_KIND) -> ContentWritten:
    """Save a person's content as the entry's new version (origin ``edited``, by ``author``).

    ``ValueError`` naming the field when the content breaks the schema; ``EntryNotFound`` when
    the product has no entry. The approval, expiry and freshness of the entry stay as they are.
    """
    cleaned = validate_edited_content(content)
    snapshot = ProductMemory(kind).replace_content(product, cleaned, origin=EDITED, author=author)
    return _written(snapshot.product_id, kind)


def restore_version(product: Any, number: Any, *, author: str, kind: str = DEFAULT_KIND) -> ContentWritten:
    """Make version ``number``'s content the entry's content again, as a new version (origin
    ``restored``, by ``author``).

    ``EntryNotFound``; ``VersionNotFound`` naming the versions kept; ``ValueError`` naming
    ``version`` when it is not a positive whole number or is the current version already.
    """
    number = whole_number("version", number, minimum=1)
    entry = _entry(product, kind, "id", "product_id", "version")
    if number == entry.version:
        raise ValueError(f"version: a versão {number} já é o conteúdo atual do produto {entry.product_id}")
    version = get_version(entry.pk, entry.product_id, number)
    ProductMemory(kind).replace_content(entry.product_id, version.payload, origin=RESTORED, author=author)
    written = _written(entry.product_id, kind, restored_from=number)
    logger.info("Produto %s: versão %d restaurada como versão %d", entry.product_id, number, written.version)
    return written


def set_approval(product: Any, approved: bool, *, by: str, kind: str = DEFAULT_KIND) -> ProductMemoryEntry:
    """Approve the entry's content (by ``by``, now) or withdraw its approval; the entry as it
    is afterwards. ``EntryNotFound`` when the product has no entry."""
    if not isinstance(approved, bool):
        raise ValueError(f"approved: deve ser true ou false, recebido {approved!r}")
    snapshot = ProductMemory(kind).set_approval(product, approved, by=by)
    return _entry(snapshot.product_id, kind, "product_id", "kind", "approved", "approved_by", "approved_at", "version")


def approve_entries(queryset: QuerySet, approved: bool, *, by: str) -> int:
    """Approve (by ``by``, now) or withdraw the approval of the selected entries, in every tier;
    returns how many changed (those already so are left as they are)."""
    rows = list(queryset.order_by().values_list("pk", "product_id", "kind"))
    l3 = DatabaseTier()
    changed = 0
    with transaction.atomic():
        for start in range(0, len(rows), CHUNK):
            changed += l3.set_approval_many([pk for pk, _, _ in rows[start:start + CHUNK]], approved, by=by)
        evict_on_commit((product_id, kind) for _, product_id, kind in rows)
    if approved:
        logger.info("%d entradas aprovadas por %s", changed, by or "—")
    else:
        logger.info("Aprovação retirada de %d entradas", changed)
    return changed


def entry_history(product: Any, kind: str = DEFAULT_KIND) -> dict:
    """The entry's versions, newest first, each with what it changed of the version before it
    (``changes``: None when that one is no longer kept); ``EntryNotFound`` when there is no entry."""
    entry = _entry(product, kind, "id", "product_id", "kind", "version", "origin", "author", "approved",
                   "approved_by", "approved_at")
    kept = history(entry.pk)
    rows = []
    for newer, older in zip(kept, [*kept[1:], None]):
        if older is not None and older.number == newer.number - 1:
            changes = diff(older.payload, newer.payload)
        elif older is None and newer.number == 1:
            changes = diff(None, newer.payload)
        else:
            changes = None
        rows.append({
            "number": newer.number,
            "origin": newer.origin,
            "author": newer.author,
            "generator_version": newer.generator_version,
            "tokens": newer.tokens,
            "created_at": newer.created_at,
            "current": newer.number == entry.version,
            "payload": newer.payload,
            "changes": changes,
        })
    return {
        "product_id": entry.product_id,
        "kind": entry.kind,
        "version": entry.version,
        "approved": entry.approved,
        "approved_by": entry.approved_by,
        "approved_at": entry.approved_at,
        "versions": rows,
    }
