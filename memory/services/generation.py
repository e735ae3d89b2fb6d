"""Generation in front of the memory: reuse what is stored, generate only what is not.

``generate_product`` serves a fresh entry when there is one and otherwise
generates under the product's single-flight lock, so that when many callers
ask for the same uncached product at once, one generation runs and the others
reuse its result. ``generate_batch`` makes one batch check and generates only
the misses, keeping ``min(batch_size, LLM_MAX_CONCURRENCY)`` generations in flight
(one at a time with the offline template), and stops starting new ones once the
provider will take no more calls (its circuit breaker is open, its quota is spent):
the products left are ``not_attempted``, for a later run to finish.

A variant of a family is made from its family's base content (:mod:`memory.services.families`):
one call per family, and a batch takes a family's variants together wherever they are listed.
"""
from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from django.conf import settings
from django.db import connections

from memory.infra import metrics
from memory.models import DEFAULT_KIND, BatchRunItem
from memory.engine.families import product_family
from memory.engine.locks import product_lock
from memory.engine.memory import Lookup, ProductMemory, ProductRef, resolve_product
from memory.engine.versions import ApprovedContent
from memory.engine.validators import json_object, text, whole_number
from memory.providers import (
    CircuitOpen, ContentProvider, GenerationError, ProviderUnavailable, QuotaExhausted, get_provider,
)
from memory.providers.content import check_fields
from memory.providers.template import FIELD_ALIASES
from memory.services import families

logger = logging.getLogger("memory")

MAX_BATCH_SIZE = 1000

REUSED = "reused"
GENERATED = "generated"
REGENERATED = "regenerated"  # the stored entry was stale or expired
FORCED = "forced"
FAILED = "failed"
NOT_ATTEMPTED = "not_attempted"  # no call was made: the provider took no more calls (nothing paid)
# The statuses of a product that got no content, and of one whose content was made now.
UNFINISHED = (FAILED, NOT_ATTEMPTED)
PRODUCED = (GENERATED, REGENERATED, FORCED)
LOCKED = "locked"  # approved content, which no generation replaces without an override

# Why a generation failed (``ProductOutcome.failure``): the provider could not answer now (out of
# quota, rate limited, timed out, down), or it answered with nothing usable.
PROVIDER_UNAVAILABLE = "provider_unavailable"
PROVIDER_ERROR = "provider_error"

# The longest text a generation starts from, per field the writers read (under any of its names):
# a product's own description may be as long as the content's; every other field is a short name.
PRODUCT_TEXT_LIMITS = {"title": 500, "description": 5000}
DEFAULT_PRODUCT_TEXT_LIMIT = 200


class InvalidProductData(ValueError):
    """Product data no generation starts from; the message names ``product_data`` and the field."""


def validate_product_data(product_data: Any) -> dict:
    """The product data a generation may start from, unchanged; ``InvalidProductData`` otherwise.

    It must be a JSON object PostgreSQL can store (it is saved as the entry's source data), and
    each field the writers read must fit its limit: a 6,000-character title is refused here,
    before any provider is paid or any task queued, not by the content schema afterwards. A family
    field (``MEMORY_FAMILY_FIELDS``) must hold a usable family id.
    """
    try:
        json_object("product_data", product_data)
        for field, names in FIELD_ALIASES.items():
            limit = PRODUCT_TEXT_LIMITS.get(field, DEFAULT_PRODUCT_TEXT_LIMIT)
            for name in names:
                value = product_data.get(name)
                if value is not None:
                    text(f"product_data: {name}", value if isinstance(value, str) else str(value), max_length=limit)
        try:
            product_family(product_data)
        except ValueError as exc:
            raise ValueError(f"product_data: {exc}") from None
    except ValueError as exc:
        raise InvalidProductData(str(exc)) from None
    return product_data


@dataclass
class ProductOutcome:
    """What happened to one product; ``summary()`` is JSON-serializable."""

    product_id: str | None
    status: str
    tokens_spent: int = 0
    tokens_saved: int = 0
    tokens_wasted: int = 0  # billed for attempts whose answer was not stored
    error: str | None = None
    failure: str | None = None  # PROVIDER_UNAVAILABLE or PROVIDER_ERROR when the provider failed
    content: dict | None = None
    index: int | None = None
    # The provider takes no more calls for now (breaker open, quota spent): a batch starts no
    # new generation after this outcome. Not part of the summary.
    halts_batch: bool = False
    # A variant (memory.services.families): its family, and the base generation it reused.
    family: str | None = None
    tokens_saved_by_family: int = 0
    # The family's base generation failed: the batch asks for it no more (not part of the summary).
    family_base_failed: bool = False

    @property
    def from_cache(self) -> bool:
        return self.status == REUSED

    def summary(self, with_content: bool = False) -> dict:
        data = {
            "product_id": self.product_id,
            "from_cache": self.from_cache,
            "status": self.status,
            "tokens_spent": self.tokens_spent,
            "tokens_saved": self.tokens_saved,
            "tokens_wasted": self.tokens_wasted,
        }
        if self.error:
            data["error"] = self.error
        if self.failure:
            data["failure"] = self.failure
        if self.family is not None:
            data["family"] = self.family
            data["tokens_saved_by_family"] = self.tokens_saved_by_family
        if self.index is not None:
            data["index"] = self.index
        if with_content:
            data["content"] = self.content
        return data


@dataclass
class BatchResult:
    """The outcomes in the order of the products; ``halted``: why the batch stopped starting
    generations (the message of the outcome that stopped it), None when it did not."""

    outcomes: list[ProductOutcome] = field(default_factory=list)
    halted: str | None = None

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def tokens_spent(self) -> int:
        return sum(o.tokens_spent for o in self.outcomes)

    @property
    def tokens_saved(self) -> int:
        return sum(o.tokens_saved for o in self.outcomes)

    @property
    def tokens_wasted(self) -> int:
        return sum(o.tokens_wasted for o in self.outcomes)

    @property
    def tokens_saved_by_family(self) -> int:
        return sum(o.tokens_saved_by_family for o in self.outcomes)

    def derived(self) -> tuple[int, int]:
        """How many variants got content made from their family's base, and from how many families."""
        made = [o.family for o in self.outcomes if o.family is not None and o.status in PRODUCED]
        return len(made), len(set(made))

    def summary(self) -> dict:
        derived, from_families = self.derived()
        return {
            "total": len(self.outcomes),
            "reused": self.count(REUSED),
            "generated": self.count(GENERATED) + self.count(FORCED),
            "regenerated_stale": self.count(REGENERATED),
            "failed": self.count(FAILED),
            "not_attempted": self.count(NOT_ATTEMPTED),
            "locked": self.count(LOCKED),
            "tokens_spent": self.tokens_spent,
            "tokens_saved": self.tokens_saved,
            "tokens_wasted": self.tokens_wasted,
            "derived_variants": derived,
            "families": from_families,
            "tokens_saved_by_family": self.tokens_saved_by_family,
            "products": [o.summary() for o in self.outcomes],
        }


def _reused(lookup: Lookup) -> ProductOutcome:
    return ProductOutcome(lookup.product_id, REUSED, tokens_saved=lookup.hit.tokens_saved, content=lookup.hit.content)


def _locked(refusal: ApprovedContent, tokens_wasted: int = 0) -> ProductOutcome:
    logger.info("%s", refusal)
    return ProductOutcome(refusal.product_id, LOCKED, error=str(refusal), tokens_wasted=tokens_wasted)


def pending_batch_run(ref: ProductRef, kind: str) -> int | None:
    """The Batch API run that holds ``ref`` pending for this same data (its id), if any: its
    result is already paid for and on its way, so generating it now would pay twice."""
    pending = BatchRunItem.objects.filter(product_id=ref.product_id, kind=kind, state=BatchRunItem.PENDING)
    if ref.fingerprint:
        pending = pending.filter(fingerprint=ref.fingerprint)
    return pending.values_list("run_id", flat=True).first()


def generate_product(
    product_data: Any,
    force_regenerate: bool = False,
    *,
    provider: ContentProvider | None = None,
    known_status: str | None = None,
    kind: str = DEFAULT_KIND,
    override_approval: bool = False,
    fields: Iterable[str] | None = None,
    regenerate_family: bool | None = None,
) -> ProductOutcome:
    """Serve the product from memory, or generate it once (single flight) and store it.

    ``known_status`` is the answer of a batch check already made, which spares the first
    lookup. Data to generate from that :func:`validate_product_data` refuses raises its
    ``ValueError``: nothing is generated. A failed generation saves nothing and counts no
    savings; its outcome says why (``failure``). When the provider's circuit breaker is open
    (``CircuitOpen``: no call made) the outcome is ``NOT_ATTEMPTED``. Approved content is
    served as it is; forced, it is ``LOCKED`` (nothing generated) unless ``override_approval``.

    A variant of a family (:mod:`memory.services.families`) is made from its family's base
    content; ``regenerate_family`` (default: ``force_regenerate``) makes that base anew too.

    ``fields`` (with ``force_regenerate``): regenerate those content fields alone; the provider
    is asked for them alone, the stored content's other fields are kept, and the tokens counted
    are that call's. ``ValueError`` naming an unknown field, or when the product has no entry.
    A variant's fields are asked of its own data, not derived: its entry leaves its family
    (nothing re-derives it over those fields) until its next whole generation.
    """
    fields = check_fields(fields)
    if fields is not None and not force_regenerate:
        raise ValueError("fields: regenerar só alguns campos exige force_regenerate=True")
    provider = provider or get_provider()
    memory = ProductMemory(kind, generator_version=provider.generator_version)
    ref = resolve_product(product_data)
    if not isinstance(product_data, dict):
        raise ValueError("product_data: para gerar conteúdo é preciso um objeto com os dados do produto")

    status = known_status
    if not force_regenerate and status is None:
        lookup = memory.lookup(ref, count_hit=False)
        if lookup.hit:
            memory.count_lookups([lookup])
            return _reused(lookup)
        status = lookup.status

    if force_regenerate and not override_approval and memory.is_approved(ref):
        return _locked(ApprovedContent(ref.product_id, memory.kind))
    validate_product_data(product_data)  # what is served needs no check; what is generated does
    family = product_family(product_data) if provider.serves_families and fields is None else None
    variant = None
    with product_lock(ref.product_id, memory.kind):  # waits for as long as another holder generates
        if not force_regenerate:
            # Whoever held the lock may have just generated it.
            lookup = memory.lookup(ref, count_hit=False)
            memory.count_lookups([lookup])
            if lookup.hit:
                return _reused(lookup)
            status = lookup.status
            run = pending_batch_run(ref, memory.kind)
            if run is not None:
                logger.info("Produto %s não gerado: aguarda o lote %s da Batch API", ref.product_id, run)
                return ProductOutcome(ref.product_id, NOT_ATTEMPTED,
                                      error=f"não tentado: aguarda o lote {run} da Batch API, já enviado (o resultado "
                                            "chega com ele; force_regenerate gera agora e paga de novo)")
        kept = None
        if fields is not None:
            kept = memory.stored_content(ref)
            if kept is None:
                raise ValueError(f"fields: o produto {ref.product_id} não está na memória; gere o conteúdo inteiro "
                                 "antes de regenerar campos")
        started = time.perf_counter()
        try:
            if fields is not None:
                generated = provider.generate(product_data, fields)
            elif family is None:
                generated = provider.generate(product_data)
            else:
                variant = families.make_variant(family, provider, regenerate_base=(
                    force_regenerate if regenerate_family is None else regenerate_family))
                generated = variant.generated()
        except CircuitOpen as exc:
            logger.warning("Produto %s não tentado: %s", ref.product_id, exc)
            metrics.count_generation_failure(NOT_ATTEMPTED)
            return ProductOutcome(ref.product_id, NOT_ATTEMPTED, error=str(exc), failure=PROVIDER_UNAVAILABLE,
                                  halts_batch=True, family=family and family.id,
                                  tokens_spent=getattr(exc, "family_base_spent", 0))
        except (GenerationError, ValueError) as exc:
            wasted = getattr(exc, "tokens_wasted", 0)
            failure = PROVIDER_UNAVAILABLE if isinstance(exc, ProviderUnavailable) else PROVIDER_ERROR
            logger.error("Falha ao gerar conteúdo do produto %s: %s", ref.product_id, exc,
                         extra={"product_id": ref.product_id, "kind": memory.kind, "failure": failure})
            memory.count_wasted_tokens(wasted)
            metrics.count_generation_failure(failure)
            return ProductOutcome(ref.product_id, FAILED, error=str(exc), tokens_wasted=wasted, failure=failure,
                                  halts_batch=isinstance(exc, QuotaExhausted), family=family and family.id,
                                  family_base_failed=getattr(exc, "family_base", None) is not None,
                                  # a family's base stored before this variant's own call failed
                                  tokens_spent=getattr(exc, "family_base_spent", 0))
        elapsed = time.perf_counter() - started
        content = generated.content if kept is None else {**kept, **generated.content}
        try:
            if variant is None:
                memory.save_product_data(
                    ref,
                    content,
                    tokens_prompt=generated.tokens_prompt,
                    tokens_completion=generated.tokens_completion,
                    tokens_cached=generated.tokens_cached,
                    tokens_reasoning=generated.tokens_reasoning,
                    generator_version=generated.generator_version or provider.generator_version,
                    override_approval=override_approval,
                )
            else:
                families.save_variant(memory, ref, family, variant, override_approval=override_approval)
        except ApprovedContent as exc:  # approved while it was being generated: its cost is wasted
            # A family's base stays stored (its generation counted): only the variant's own call is lost.
            wasted = generated.tokens_wasted + (generated.tokens_spent if variant is None else variant.tokens_own)
            memory.count_wasted_tokens(wasted)
            return _locked(exc, tokens_wasted=wasted)
        memory.count_wasted_tokens(generated.tokens_wasted)
    if variant is None or variant.calls:
        metrics.observe_generation(elapsed)
    if force_regenerate:
        outcome_status = FORCED
    elif status in ("stale", "expired"):
        outcome_status = REGENERATED
    else:
        outcome_status = GENERATED
    return ProductOutcome(ref.product_id, outcome_status, tokens_spent=generated.tokens_spent,
                          tokens_wasted=generated.tokens_wasted, content=content,
                          family=family and family.id,
                          tokens_saved_by_family=variant.tokens_saved_by_family if variant else 0)


def validate_batch_size(batch_size: Any, name: str = "batch_size") -> int:
    """Generations a batch may keep in flight: 1 to ``MAX_BATCH_SIZE``."""
    return whole_number(name, batch_size, minimum=1, maximum=MAX_BATCH_SIZE)


def in_flight_limit(batch_size: int, provider: ContentProvider) -> int:
    """How many generations a batch keeps running at once: ``batch_size``, never more than
    ``LLM_MAX_CONCURRENCY``; one with the offline template (it is CPU work, done in the caller's thread)."""
    if provider.name == "template":
        return 1
    return max(1, min(batch_size, settings.LLM_MAX_CONCURRENCY))


def _in_own_thread(func: Callable, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    finally:
        connections.close_all()  # this thread's connections only


def _not_attempted(product_id: str, why: str) -> ProductOutcome:
    return ProductOutcome(product_id, NOT_ATTEMPTED, error=f"não tentado: {why}", failure=PROVIDER_UNAVAILABLE)


def generate_batch(
    products_list: Iterable[Any],
    batch_size: int = 10,
    force_regenerate: bool = False,
    *,
    provider: ContentProvider | None = None,
    on_outcome: Callable[[ProductOutcome], None] | None = None,
    halted: str | None = None,
    override_approval: bool = False,
) -> BatchResult:
    """One batch check for every product, then generation of the misses only, up to
    :func:`in_flight_limit` at once, until the provider takes no more calls; forced, approved
    entries are ``LOCKED`` unless ``override_approval``.

    A new generation starts as soon as one ends (no chunk waits for its slowest product). Once
    an outcome halts the batch (``CircuitOpen``: not attempted; ``QuotaExhausted``: failed),
    the generations in flight end as they do, and every miss not started yet is
    ``NOT_ATTEMPTED`` at once, without a call. ``halted`` (an earlier batch's
    ``BatchResult.halted``, when a run goes through several) starts the batch that way: what
    is in memory is served, nothing is generated.

    ``on_outcome`` is called in the calling thread once per product, as soon as its outcome is
    known (reuses and refusals first, then generations in the order they end; ``outcome.index``
    is the product's position); the result lists the outcomes in the order of the products.
    """
    batch_size = validate_batch_size(batch_size)
    products = list(products_list)
    provider = provider or get_provider()
    memory = ProductMemory(generator_version=provider.generator_version)
    outcomes: list[ProductOutcome | None] = [None] * len(products)

    def done(index: int, outcome: ProductOutcome) -> None:
        outcome.index = index
        outcomes[index] = outcome
        if on_outcome:
            on_outcome(outcome)

    valid: list[tuple[int, dict, ProductRef]] = []
    for index, product in enumerate(products):
        try:
            if not isinstance(product, dict):
                raise ValueError(f"product_data: deve ser um objeto, recebido {type(product).__name__}")
            valid.append((index, product, resolve_product(product)))
        except ValueError as exc:
            done(index, ProductOutcome(None, FAILED, error=str(exc)))

    lookups: dict[str, Lookup] = {}
    if not force_regenerate and valid:
        lookups = memory.lookup_many([ref for _, _, ref in valid], count_hits=False)
    misses: list[tuple[int, dict, str, str | None]] = []
    seen: set[str] = set()
    for index, product, ref in valid:
        product_id = ref.product_id
        lookup = lookups.get(product_id)
        # A product listed twice goes through generation again, where it finds the first copy.
        if lookup and lookup.hit and product_id not in seen and lookup.hit.snapshot.serves(
            ref.fingerprint, provider.generator_version
        ):
            memory.count_lookups([lookup])
            done(index, _reused(lookup))
        else:
            try:
                validate_product_data(product)
            except ValueError as exc:
                done(index, ProductOutcome(product_id, FAILED, error=str(exc)))
            else:
                misses.append((index, product, product_id,
                               lookup.status if lookup and product_id not in seen else None))
        seen.add(product_id)

    # A family's variants together, in one unit: one base call.
    units = families.by_family(misses, lambda item: item[1]) if provider.serves_families else [[m] for m in misses]
    halted = _generate_misses(units, force_regenerate, provider, in_flight_limit(batch_size, provider),
                              done, halted, override_approval)
    result = BatchResult([o for o in outcomes if o is not None], halted=halted)
    logger.info(
        "Processamento em lote: %d/%d produtos reutilizados da memória", result.count(REUSED), len(products)
    )
    if halted:
        logger.warning("Lote interrompido: %s; %d produtos não tentados", halted, result.count(NOT_ATTEMPTED))
    return result


def _generate_unit(unit, force_regenerate: bool, provider: ContentProvider,
                   override_approval: bool = False) -> list[tuple[int, ProductOutcome]]:
    """Generate the misses of one unit (one product, or the variants of one family) in order.

    A forced family has its base made anew once, by its first variant not locked by an approval;
    once a variant's base generation fails, the others are not asked for it again (they fail with
    its reason), and once an outcome halts the batch the rest of the unit is not attempted."""
    results: list[tuple[int, ProductOutcome]] = []
    halted: str | None = None
    base_failed: ProductOutcome | None = None
    base_made = False
    for index, product, product_id, status in unit:
        if halted is not None:
            outcome = _not_attempted(product_id, halted)
        elif base_failed is not None:
            outcome = ProductOutcome(
                product_id, FAILED, failure=base_failed.failure, family=base_failed.family,
                error=f"o conteúdo base da família {base_failed.family} falhou neste lote: {base_failed.error}")
        else:
            outcome = generate_product(product, force_regenerate, provider=provider, known_status=status,
                                       override_approval=override_approval,
                                       regenerate_family=force_regenerate and not base_made)
            base_made = base_made or outcome.status in PRODUCED
            if outcome.halts_batch:
                halted = outcome.error or outcome.status
            elif outcome.family_base_failed:
                base_failed = outcome
        results.append((index, outcome))
    return results


def _generate_misses(units, force_regenerate: bool, provider: ContentProvider, in_flight: int,
                     done: Callable[[int, ProductOutcome], None], halted: str | None,
                     override_approval: bool = False) -> str | None:
    """Generate the units of misses (:func:`memory.services.families.by_family`) with ``in_flight``
    at a time (in this thread when 1), each outcome to ``done`` as its unit ends; the rest not
    attempted once one halts the batch. Returns why it halted."""
    pending = iter(units)

    def ended(results: list[tuple[int, ProductOutcome]]) -> None:
        nonlocal halted
        for index, outcome in results:
            done(index, outcome)
            if outcome.halts_batch and halted is None:
                halted = outcome.error or outcome.status

    if in_flight == 1:
        while halted is None and (unit := next(pending, None)) is not None:
            ended(_generate_unit(unit, force_regenerate, provider, override_approval))
    else:
        running: dict[Future, None] = {}
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="memory-generation") as pool:
            while True:
                while halted is None and len(running) < in_flight:
                    unit = next(pending, None)
                    if unit is None:
                        break
                    # in a copy of this context: the unit's writes mark the caller's read-your-writes scope
                    running[pool.submit(contextvars.copy_context().run, _in_own_thread, _generate_unit, unit, force_regenerate, provider,
                                        override_approval)] = None
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future)
                    ended(future.result())
    for unit in pending:  # what was never started: the batch halted
        for index, _, product_id, _ in unit:
            done(index, _not_attempted(product_id, halted))
    return halted
