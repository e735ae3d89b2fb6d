"""One generation per product family: the family's base content, and each variant derived from it.

A variant (a product whose data names a family, :mod:`memory.engine.families`) that misses is
made from its family's *base*: an entry of kind ``family`` under the family id, generated from
the data the variants share and fingerprinted on it. The first variant that misses pays for the
base (one call, under the base's own single-flight lock, so variants asked at once in several
processes make one call); every other variant reuses it. The variant still gets its own entry,
of its own kind, holding the base content with its attributes written into the title and into
one bullet point: derived without a call (``MEMORY_FAMILY_MODE=derive``), or with a short call
for that title and bullet only (``ask``).

What changed decides what is paid again: a change in a shared field makes the base stale (its
fingerprint), so the variant that finds it so regenerates it, one call, and the family's other
stored variants are derived again from it at once (:func:`rederive_family`); a change in a
variant attribute only makes that variant's own entry stale, and it is derived again without a
call.

Accounting (docs/architecture.md, "Families"): the base's generation is counted once, when it is
stored; a derived variant that reused a base counts the base's tokens as
``tokens_saved_by_family``; a variant's entry holds what making it cost (the base's tokens for the
variant that paid for it, the ask call's, or nothing), which is what a later hit on it saves.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, TypeVar

from django.conf import settings

from memory.engine.families import FAMILY_KIND, Family, product_family
from memory.engine.locks import product_lock
from memory.engine.memory import ProductMemory, ProductRef
from memory.engine.tiers import Key, Snapshot
from memory.engine.versions import ApprovedContent
from memory.models import ProductMemoryEntry
from memory.providers import ContentProvider, GenerationError
from memory.providers.content import GeneratedContent
from memory.providers.variants import derive, with_variant

logger = logging.getLogger("memory")

ASK = "ask"
T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    """A variant's content made from its family's base, and what making it cost."""

    content: dict
    base: Snapshot
    base_generated: GeneratedContent | None  # the base's generation, when this variant paid for it
    asked: GeneratedContent | None  # the ask call (MEMORY_FAMILY_MODE=ask)
    generator_version: str

    def _sum(self, name: str) -> int:
        return sum(getattr(part, name) for part in (self.base_generated, self.asked) if part is not None)

    @property
    def tokens_prompt(self) -> int:
        return self._sum("tokens_prompt")

    @property
    def tokens_completion(self) -> int:
        return self._sum("tokens_completion")

    @property
    def tokens_cached(self) -> int:
        return self._sum("tokens_cached")

    @property
    def tokens_reasoning(self) -> int:
        return self._sum("tokens_reasoning")

    @property
    def tokens_spent(self) -> int:
        return self.tokens_prompt + self.tokens_completion

    @property
    def tokens_own(self) -> int:
        """What the variant's own call cost (``ask`` mode): lost if the variant cannot be stored."""
        return self.asked.tokens_spent if self.asked is not None else 0

    @property
    def tokens_wasted(self) -> int:
        return self._sum("tokens_wasted")

    @property
    def calls(self) -> int:
        return sum(1 for part in (self.base_generated, self.asked) if part is not None)

    @property
    def tokens_saved_by_family(self) -> int:
        """The base's generation, when this variant reused it instead of paying for it."""
        return 0 if self.base_generated is not None else self.base.tokens_spent

    def generated(self) -> GeneratedContent:
        """What a generation of this variant returns: its content and the tokens its calls cost."""
        return GeneratedContent(content=self.content, tokens_prompt=self.tokens_prompt,
                                tokens_completion=self.tokens_completion, generator_version=self.generator_version,
                                tokens_wasted=self.tokens_wasted, tokens_cached=self.tokens_cached,
                                tokens_reasoning=self.tokens_reasoning)


def base_memory(provider: ContentProvider) -> ProductMemory:
    """The memory of family bases, for this provider's generator."""
    return ProductMemory(FAMILY_KIND, generator_version=provider.generator_version)


def base_ref(family: Family) -> ProductRef:
    """The family's base as the memory knows it: the family id, fingerprinted on the shared data."""
    return ProductRef(family.id, family.fingerprint, family.shared)


def save_base(memory: ProductMemory, ref: ProductRef, generated: GeneratedContent, generator_version: str
              ) -> Snapshot:
    """Store a family's base content (``ref``: :func:`base_ref`) made by ``generated``, counted as
    one generation; the caller holds the base's single-flight lock."""
    snapshot = memory.save_product_data(
        ref, generated.content, tokens_prompt=generated.tokens_prompt,
        tokens_completion=generated.tokens_completion, tokens_cached=generated.tokens_cached,
        tokens_reasoning=generated.tokens_reasoning, generator_version=generated.generator_version or generator_version,
        source_data=ref.source_data, family_id=ref.product_id,
    )
    logger.info("Família %s: conteúdo base gerado (%d tokens)", ref.product_id, snapshot.tokens_spent)
    return snapshot


def family_base(family: Family, provider: ContentProvider, *, regenerate: bool = False
                ) -> tuple[Snapshot, GeneratedContent | None]:
    """The family's fresh base and, when it had to be made here, its generation (one call, under
    the base's single-flight lock: whoever waited for it finds it saved). ``regenerate`` makes it
    anew even when fresh, unless a person approved it (an approved base is served as it is). A
    failed generation raises its ``GenerationError``, marked with ``family_base`` (the family id):
    nothing is saved."""
    memory = base_memory(provider)
    ref = base_ref(family)
    if regenerate and memory.is_approved(ref):
        regenerate = False
    if not regenerate:
        found = memory.lookup(ref, count_hit=False)  # reusing a base is counted as a family saving
        if found.hit:
            return found.hit.snapshot, None
    with product_lock(family.id, FAMILY_KIND):
        if not regenerate:
            found = memory.lookup(ref, count_hit=False)
            if found.hit:
                return found.hit.snapshot, None
        try:
            generated = GeneratedContent.coerce(provider.generate(family.shared))
        except GenerationError as exc:
            exc.family_base = family.id
            raise
        snapshot = save_base(memory, ref, generated, provider.generator_version)
    return snapshot, generated


def make_variant(family: Family, provider: ContentProvider, *, regenerate_base: bool = False) -> Variant:
    """The variant's content from its family's base (made first if need be): derived, or asked
    for its title and bullet point in ``ask`` mode. Raises the ``GenerationError`` of a call that
    failed; when the ask call fails after the base was made here, the base stays stored (the
    family's other variants are derived again from it) and the error carries what it cost
    (``family_base_spent``)."""
    base, generated = family_base(family, provider, regenerate=regenerate_base)
    asked = None
    if settings.MEMORY_FAMILY_MODE == ASK and family.attributes:
        try:
            asked = GeneratedContent.coerce(provider.generate_variant(base.payload, list(family.attributes)))
        except GenerationError as exc:
            if generated is not None:
                exc.family_base_spent = generated.tokens_spent
                rederive_family(family.id, base)
            raise
        content = with_variant(base.payload, asked.content["title"], asked.content["bullet_point"])
        return Variant(content, base, generated, asked, base.generator_version)
    return derived_variant(family, base, generated)


def derived_variant(family: Family, base: Snapshot, base_generated: GeneratedContent | None = None) -> Variant:
    """The variant's content derived from its family's ``base`` without a call; ``base_generated``:
    the base's generation, when this variant is the one that pays for it (its entry holds that
    cost, and it counts no family saving)."""
    return Variant(derive(base.payload, family.attributes), base, base_generated, None, base.generator_version)


def save_variant(memory: ProductMemory, ref: ProductRef, family: Family, variant: Variant, *,
                 override_approval: bool = False, rederive: bool = True) -> Snapshot:
    """Store the variant's entry (linked to its family) and count what it cost and saved; when its
    base was made anew, derive the family's other stored variants again from it. An approved
    variant is not replaced (``ApprovedContent``) unless ``override_approval``; the family's
    others are derived again all the same. ``rederive=False``: the caller derives the family's
    others itself (a Batch API ingest, which stores several variants of one base)."""
    try:
        snapshot = memory.save_product_data(
            ref, variant.content, tokens_prompt=variant.tokens_prompt, tokens_completion=variant.tokens_completion,
            tokens_cached=variant.tokens_cached, tokens_reasoning=variant.tokens_reasoning,
            generator_version=variant.generator_version, count_generation=False, family_id=family.id,
            override_approval=override_approval,
        )
    except ApprovedContent:
        if rederive and variant.base_generated is not None:
            rederive_family(family.id, variant.base)
        raise
    # The base's generation was counted when the base was stored; the ask call is this variant's own.
    if variant.asked is not None:
        memory.count_generation(variant.asked.tokens_spent, cached=variant.asked.tokens_cached,
                                reasoning=variant.asked.tokens_reasoning)
    if variant.tokens_saved_by_family:
        memory.count_family_saving(variant.tokens_saved_by_family)
        logger.info("Produto %s derivado da família %s - economia de %d tokens", ref.product_id, family.id,
                    variant.tokens_saved_by_family)
    if rederive and variant.base_generated is not None:
        rederive_family(family.id, variant.base, skip={snapshot.key})
    return snapshot


def rederive_family(family_id: str, base: Snapshot, *, skip: Collection[Key] = ()) -> int:
    """Derive every stored variant of the family again from ``base``, without a call (but those
    of ``skip``); returns how many. A variant whose stored data names another family (or none) now is left alone: its next
    generation unlinks it. An approved variant (:mod:`memory.services.versions`) is never derived
    again: a person's word on its content stands. In ``ask`` mode each keeps the title and bullet
    point it was asked for."""
    rows = (
        ProductMemoryEntry.objects.filter(family_id=family_id, approved=False).exclude(kind=FAMILY_KIND)
        .order_by("pk").values_list("product_id", "kind", "source_data", "input_fingerprint", "payload")
    )
    derived = 0
    for product_id, kind, source_data, fingerprint, payload in rows.iterator(chunk_size=500):
        if (product_id, kind) in skip:
            continue
        try:
            family = product_family(source_data)
            if family is None or family.id != family_id:
                continue
            content = _rederived(base.payload, family, payload)
            ProductMemory(kind, generator_version=base.generator_version).save_product_data(
                ProductRef(product_id, fingerprint, source_data), content, source_data=source_data,
                generator_version=base.generator_version, count_generation=False, family_id=family_id,
            )
        except ApprovedContent:  # approved since the rows were read
            logger.info("Família %s: variante %s aprovada, não derivada de novo", family_id, product_id)
            continue
        except ValueError as exc:
            logger.warning("Família %s: variante %s não derivada de novo: %s", family_id, product_id, exc)
            continue
        derived += 1
    if derived:
        logger.info("Família %s: %d variante(s) derivada(s) de novo do conteúdo base, sem chamada", family_id, derived)
    return derived


def _rederived(base_content: dict, family: Family, stored: dict) -> dict:
    if settings.MEMORY_FAMILY_MODE == ASK and family.attributes and isinstance(stored, dict):
        bullets = stored.get("bullet_points") or [None]
        if isinstance(stored.get("title"), str) and isinstance(bullets[0], str):
            return with_variant(base_content, stored["title"], bullets[0])
    return derive(base_content, family.attributes)


def by_family(items: Iterable[T], product_of: Callable[[T], dict]) -> list[list[T]]:
    """``items`` in units of work: the items of one family together (in their order, at the place of
    the first), every other item alone; so that a batch makes one base call per family however its
    variants are spread. Logs a warning for a family whose variants disagree on a shared field:
    each disagreement would make the base stale for the others."""
    units: list[list[T]] = []
    where: dict[str, int] = {}
    shared: dict[str, dict[str, dict]] = {}
    for item in items:
        family = product_family(product_of(item))
        if family is None:
            units.append([item])
            continue
        if family.id in where:
            units[where[family.id]].append(item)
        else:
            where[family.id] = len(units)
            units.append([item])
        shared.setdefault(family.id, {}).setdefault(family.fingerprint, family.shared)
    for family_id, versions in shared.items():
        if len(versions) > 1:
            datas = list(versions.values())
            fields = sorted({key for data in datas for key in data if any(d.get(key) != data.get(key) for d in datas)})
            logger.warning(
                "Família %s: variantes com dados compartilhados diferentes (%s); cada diferença regenera o "
                "conteúdo base: informe esses campos em MEMORY_VARIANT_ATTRIBUTES se variam por variante",
                family_id, ", ".join(fields))
    return units
