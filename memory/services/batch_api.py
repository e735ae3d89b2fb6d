"""Batch API runs: the misses of a catalog sent as OpenAI Batches, their results saved into the
memory when a batch is done, safe to resume from any process after a crash.

A run (``BatchRun``) goes ``preparing`` → ``submitted`` → ``done``:

1. :func:`submit_catalog` makes one batch check. The fresh products are reused; the misses are
   reserved as ``BatchRunItem`` rows in state ``pending`` and committed before anything is sent.
   A partial unique index keeps a product pending in one run at most, so no product is ever in two
   unfinished batches: a product already pending in an earlier run (a run that crashed, or still
   under way) is not sent again, that run is waited for instead.
2. :func:`submit`, under the run's exclusive lock (:func:`memory.engine.locks.exclusive_lock`,
   freed when its holder dies), uploads the pending items' JSONL (``/v1/files``) and creates the
   batch (``/v1/batches``) with the run's reference in its metadata. The attempt is committed
   before the creation, which is never retried blindly: a run resumed with an attempt but no
   batch id first looks for the batch holding its reference and adopts it.
3. :func:`refresh` polls the batch; once it is finished, :func:`ingest` reads its output and
   error files. Each line is read by the provider as a direct answer is, then saved, unless the
   memory holds the product fresh or an entry written since the run began: that result is kept
   out (``kept``; its tokens were paid for and are counted as wasted). Each item leaves
   ``pending`` in the same transaction as its save, under the product's single-flight lock, so
   ingesting twice, or from two processes at once, saves nothing twice.

Variant families (:mod:`memory.services.families`) go as one request per family: the misses that
are variants of one family are reserved as one item of kind ``family`` (the family id, its shared
data, fingerprinted as the direct path does: the one line sent) and one item per variant linked to
it (``BatchRunItem.base``, no line of its own). At ingest the base's result is stored as the
family's entry exactly as :func:`memory.services.families.family_base` stores it, then each
variant of the run is derived from it (:func:`_settle_variants`, no call), the first one stored
holding the base's cost and every other counting it as ``tokens_saved_by_family``; the family's
other stored variants are derived again, as when the direct path makes a base anew. A family whose
base is fresh in memory sends nothing: its variants are derived at once. ``MEMORY_FAMILY_MODE=ask``
is the direct path's: a Batch API run derives its variants (no call, documented in README).

Tokens are what the provider reports; the money of a run is priced at ``LLM_BATCH_DISCOUNT``
of the direct prices (``cost_usd``).
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from memory.engine.families import FAMILY_KIND, Family, product_family
from memory.engine.locks import exclusive_lock, product_lock
from memory.engine.memory import Lookup, ProductMemory, ProductRef, resolve_product
from memory.engine.tiers import Snapshot
from memory.engine.versions import ApprovedContent
from memory.infra import metrics
from memory.models import DEFAULT_KIND, BatchRun, BatchRunItem, ProductMemoryEntry
from memory.providers import GenerationError, OpenAIProvider, ProviderRejected, get_provider
from memory.providers.content import GeneratedContent
from memory.providers.openai_batch import MAX_FILE_BYTES, MAX_REQUESTS, BatchClient, BatchStatus, LineResult
from memory.providers.pricing import estimate_cost
from memory.services import families
from memory.services.generation import (
    FAILED, GENERATED, PROVIDER_ERROR, REGENERATED, REUSED, ProductOutcome, validate_product_data,
)

logger = logging.getLogger("memory")

# What became of a product of a batch run, besides generation's REUSED, GENERATED, REGENERATED
# and FAILED: its result arrived when the memory already had it (not overwritten), or it is still
# in a batch that has not finished.
KEPT = "kept"
PENDING = "pending"
DUPLICATE = "duplicate"  # a row repeating a product this submission already sends or waits for

_STATE_STATUS = {
    BatchRunItem.PENDING: PENDING,
    BatchRunItem.GENERATED: GENERATED,
    BatchRunItem.REGENERATED: REGENERATED,
    BatchRunItem.KEPT: KEPT,
    BatchRunItem.FAILED: FAILED,
}

# Rows per query when looking product ids up (PostgreSQL takes at most 65,535 parameters).
QUERY_CHUNK = 5000
# The JSONL is built on disk beyond this size.
SPOOL_BYTES = 8 * 1024 * 1024
# Room left in a line's size estimate for its custom_id (an item's primary key).
CUSTOM_ID_ROOM = 24


class BatchApiUnavailable(ValueError):
    """The provider the settings choose has no Batch API."""


def batch_provider(provider=None) -> OpenAIProvider:
    """The provider of Batch API runs: the ``openai`` one; ``BatchApiUnavailable`` naming
    ``LLM_PROVIDER`` for any other."""
    provider = provider or get_provider()
    if not isinstance(provider, OpenAIProvider):
        raise BatchApiUnavailable(
            f"a API de lotes (Batch API) é do provedor openai, e LLM_PROVIDER={settings.LLM_PROVIDER}"
            f" não a tem; defina LLM_PROVIDER=openai (com OPENAI_BASE_URL e OPENAI_API_KEY)"
        )
    return provider


# --- submission ------------------------------------------------------------------------------


@dataclass
class Submission:
    """What :func:`submit_catalog` did with each product (by its index in the list given)."""

    total: int = 0
    outcomes: dict[int, ProductOutcome] = field(default_factory=dict)  # reused, derived, failed, duplicates
    items: dict[int, int] = field(default_factory=dict)  # index -> BatchRunItem pk, in any run
    runs: list[BatchRun] = field(default_factory=list)  # every run holding one of the products
    new_runs: list[BatchRun] = field(default_factory=list)  # the runs this submission made
    sent: int = 0  # products put in new runs by this submission (a family's variants included)
    resumed: int = 0  # products found pending in earlier runs (or joining a family base there), not sent again


@dataclass
class _Unit:
    """One request of a batch and the products it serves: a product alone (``index``), or a
    family's base (``family``) and the variants derived from its result."""

    line: ProductRef  # the product, or the family's base (families.base_ref)
    index: int | None = None
    family: Family | None = None  # of the first variant: its id and shared data are the family's
    variants: list[tuple[int, ProductRef]] = field(default_factory=list)

    def products(self) -> list[tuple[int, ProductRef]]:
        return self.variants if self.family is not None else [(self.index, self.line)]


def submit_catalog(products: Iterable[Any], *, provider: OpenAIProvider | None = None,
                   kind: str = DEFAULT_KIND) -> Submission:
    """Send the misses of ``products`` as Batch API batches (one per ``MAX_REQUESTS`` requests or
    ``MAX_FILE_BYTES`` of JSONL), one request per variant family; returns at once, the batches
    under way.

    A submission error (the provider down or refusing the upload) is raised once the runs are
    saved: a run refused outright frees its products; one that may be retried stays ``preparing``
    and is submitted by the next run of the command or the scheduled job.
    """
    provider = batch_provider(provider)
    memory = ProductMemory(kind, generator_version=provider.generator_version)
    products = list(products)
    submission = Submission(total=len(products))

    refs: dict[int, ProductRef] = {}
    for index, product in enumerate(products):
        try:
            if not isinstance(product, dict):
                raise ValueError(f"product_data: deve ser um objeto, recebido {type(product).__name__}")
            refs[index] = resolve_product(product)
        except ValueError as exc:
            submission.outcomes[index] = ProductOutcome(None, FAILED, error=str(exc), index=index)

    lookups = memory.lookup_many(list(refs.values()), count_hits=False) if refs else {}
    first_of: dict[str, int] = {}
    misses: dict[str, int] = {}  # product_id -> index
    counted = []  # every row served from memory is a hit; a miss counts once
    for index, ref in refs.items():
        lookup = lookups[ref.product_id]
        if lookup.hit:
            counted.append(lookup)
            submission.outcomes[index] = ProductOutcome(ref.product_id, REUSED, tokens_saved=lookup.hit.tokens_saved,
                                                        content=lookup.hit.content, index=index)
            continue
        if ref.product_id in first_of:
            submission.outcomes[index] = ProductOutcome(ref.product_id, DUPLICATE, index=index)
            continue
        first_of[ref.product_id] = index
        counted.append(lookup)
        try:
            validate_product_data(products[index])
        except ValueError as exc:
            submission.outcomes[index] = ProductOutcome(ref.product_id, FAILED, error=str(exc), index=index)
            continue
        misses[ref.product_id] = index
    memory.count_lookups(counted)

    runs: dict[int, BatchRun] = {}
    _attach_pending(submission, misses, kind, runs)
    units = _units(provider, products, [(index, refs[index]) for index in misses.values()])
    units = _from_fresh_bases(provider, memory, units, lookups, submission)
    units = _join_pending_bases(provider, memory, kind, units, lookups, submission, runs)
    for chunk in _chunks(provider, units):
        run = _reserve(provider, kind, chunk, submission, runs)
        if run is not None:
            submission.new_runs.append(run)
    submission.runs = list(runs.values())
    for run in submission.new_runs:
        submit(run, provider, recheck=False)
    for run in submission.runs:
        if run not in submission.new_runs and run.status == BatchRun.PREPARING:
            submit(run, provider)  # reserved by a run that crashed before sending it
    return submission


def _attach_pending(submission: Submission, misses: dict[str, int], kind: str, runs: dict[int, BatchRun]) -> None:
    """Products already pending in a run: attached to it, removed from ``misses``."""
    ids = list(misses)
    for start in range(0, len(ids), QUERY_CHUNK):
        pending = BatchRunItem.objects.filter(
            kind=kind, state=BatchRunItem.PENDING, product_id__in=ids[start:start + QUERY_CHUNK],
        ).select_related("run")
        for item in pending:
            index = misses.pop(item.product_id)
            submission.items[index] = item.pk
            submission.resumed += 1
            runs.setdefault(item.run_id, item.run)


def _units(provider: OpenAIProvider, products: list, misses: list[tuple[int, ProductRef]]) -> list[_Unit]:
    """The misses as requests: the variants of one family behind one base request (the family's
    shared data of its first variant listed), every other product alone. A variant whose shared
    data differs from its family's first goes alone (``families.by_family`` logs why)."""
    if not provider.serves_families:
        return [_Unit(ref, index) for index, ref in misses]
    units: list[_Unit] = []
    for group in families.by_family(misses, lambda miss: products[miss[0]]):
        family = product_family(products[group[0][0]])
        if family is None:
            units.extend(_Unit(ref, index) for index, ref in group)
            continue
        unit = _Unit(families.base_ref(family), family=family)
        units.append(unit)
        for index, ref in group:
            if product_family(products[index]).fingerprint == family.fingerprint:
                unit.variants.append((index, ref))
            else:
                units.append(_Unit(ref, index))
    if any(unit.family is not None for unit in units) and settings.MEMORY_FAMILY_MODE == families.ASK:
        logger.info("MEMORY_FAMILY_MODE=ask: na Batch API as variantes são derivadas do conteúdo base da família,"
                    " sem chamada por variante")
    return units


def _from_fresh_bases(provider: OpenAIProvider, memory: ProductMemory, units: list[_Unit],
                      lookups: dict[str, Lookup], submission: Submission) -> list[_Unit]:
    """The variants of a family whose base the memory holds fresh, derived at once (nothing sent);
    returns the other units."""
    bases = [unit for unit in units if unit.family is not None]
    if not bases:
        return units
    found = families.base_memory(provider).lookup_many([unit.line for unit in bases], count_hits=False)
    rest = []
    for unit in units:
        hit = found[unit.line.product_id].hit if unit.family is not None else None
        if hit is None:
            rest.append(unit)
            continue
        for index, ref in unit.variants:
            submission.outcomes[index] = _derive_now(memory, ref, hit.snapshot, lookups[ref.product_id], index)
    return rest


def _derive_now(memory: ProductMemory, ref: ProductRef, base: Snapshot, lookup: Lookup, index: int) -> ProductOutcome:
    """A variant derived from its family's fresh base and stored, under its single-flight lock
    (whoever held it may have just stored it: then it is served)."""
    family = product_family(ref.source_data)  # its own attributes; the family's shared data is the base's
    with product_lock(ref.product_id, memory.kind):
        again = memory.lookup(ref, count_hit=False)
        if again.hit:
            return ProductOutcome(ref.product_id, REUSED, tokens_saved=again.hit.tokens_saved,
                                  content=again.hit.content, index=index)
        variant = families.derived_variant(family, base)
        try:
            families.save_variant(memory, ref, family, variant)
        except ApprovedContent as exc:  # approved since the lookup: a person's content stands
            return ProductOutcome(ref.product_id, KEPT, error=str(exc), index=index)
        except ValueError as exc:
            logger.error("Falha ao derivar o produto %s da família %s: %s", ref.product_id, family.id, exc)
            return ProductOutcome(ref.product_id, FAILED, error=str(exc), index=index, family=family.id)
    return ProductOutcome(ref.product_id, REGENERATED if lookup.status in ("stale", "expired") else GENERATED,
                          content=variant.content, index=index, family=family.id,
                          tokens_saved_by_family=variant.tokens_saved_by_family)


def _join_pending_bases(provider: OpenAIProvider, memory: ProductMemory, kind: str, units: list[_Unit],
                        lookups: dict[str, Lookup], submission: Submission, runs: dict[int, BatchRun]) -> list[_Unit]:
    """Variants of a family whose base is pending in an earlier run, with the same shared data:
    they join that run (derived when it is ingested), nothing sent. With other shared data they go
    alone (one base per family is pending at a time). Returns the units left to send."""
    bases = [unit for unit in units if unit.family is not None]
    if not bases:
        return units
    pending: dict[str, BatchRunItem] = {}
    ids = [unit.line.product_id for unit in bases]
    for start in range(0, len(ids), QUERY_CHUNK):
        for item in BatchRunItem.objects.filter(kind=FAMILY_KIND, state=BatchRunItem.PENDING,
                                                product_id__in=ids[start:start + QUERY_CHUNK]).only(
                "pk", "product_id", "fingerprint", "run_id"):
            pending[item.product_id] = item
    rest = []
    for unit in units:
        base = pending.get(unit.line.product_id) if unit.family is not None else None
        if base is None:
            rest.append(unit)
        elif base.fingerprint != unit.line.fingerprint:
            logger.info("Família %s: conteúdo base em outro lote com outros dados compartilhados; suas variantes"
                        " deste catálogo vão cada uma como requisição própria", unit.family.id)
            rest.extend(_Unit(ref, index) for index, ref in unit.variants)
        elif not _join(base.pk, kind, unit, submission, runs):
            # ingested meanwhile: derived at once from it if it is fresh, else sent anew
            rest.extend(_from_fresh_bases(provider, memory, [unit], lookups, submission))
    return rest


def _join(base_pk: int, kind: str, unit: _Unit, submission: Submission, runs: dict[int, BatchRun]) -> bool:
    """The unit's variants added to the pending base item ``base_pk`` (in its run); False when the
    base is no longer pending. The base row is locked meanwhile, so the run's ingest, which takes
    it first, sees them."""
    with transaction.atomic():
        base = BatchRunItem.objects.select_for_update().filter(pk=base_pk, state=BatchRunItem.PENDING).first()
        if base is None:
            return False
        BatchRunItem.objects.bulk_create([_item(base.run_id, ref, kind, base=base.pk) for _, ref in unit.variants],
                                         ignore_conflicts=True)
        mine = dict(base.variants.filter(state=BatchRunItem.PENDING).values_list("product_id", "pk"))
    run = BatchRun.objects.get(pk=base.run_id)
    runs.setdefault(run.pk, run)
    lost = {}
    for index, ref in unit.variants:
        if ref.product_id in mine:
            submission.items[index] = mine[ref.product_id]
            submission.resumed += 1
        else:
            lost[ref.product_id] = index
    _lost(submission, lost, kind, runs)
    return True


def _item(run_id: int, ref: ProductRef, kind: str, base: int | None = None) -> BatchRunItem:
    return BatchRunItem(run_id=run_id, product_id=ref.product_id, kind=kind, fingerprint=ref.fingerprint or "",
                        product=json.dumps(ref.source_data, ensure_ascii=False), base_id=base)


def _lost(submission: Submission, lost: dict[str, int], kind: str, runs: dict[int, BatchRun]) -> None:
    """Products another run reserved meanwhile (the unique index refused them here): attached to it."""
    if not lost:
        return
    _attach_pending(submission, lost, kind, runs)
    for product_id, index in lost.items():  # reserved and finished between the two queries: rare
        submission.outcomes[index] = ProductOutcome(product_id, FAILED, index=index,
                                                    error="reservado por outro lote ao mesmo tempo; rode de novo")


def _chunks(provider: OpenAIProvider, units: list[_Unit]):
    """The units in groups that fit one batch: at most ``MAX_REQUESTS`` lines and
    ``MAX_FILE_BYTES`` of JSONL (a family's variants are no lines)."""
    client = BatchClient(provider)
    chunk: list[_Unit] = []
    size = 0
    for unit in units:
        line = len(client.request_line("", unit.line.source_data)) + CUSTOM_ID_ROOM
        if chunk and (len(chunk) >= MAX_REQUESTS or size + line > MAX_FILE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(unit)
        size += line
    if chunk:
        yield chunk


def _reserve(provider: OpenAIProvider, kind: str, chunk: list[_Unit], submission: Submission,
             runs: dict[int, BatchRun]) -> BatchRun | None:
    """A new run holding the requests of ``chunk`` and their products as pending items, committed.
    A product (or a family base) another run reserved meanwhile (the unique index refuses it)
    joins that run instead."""
    with transaction.atomic():
        run = BatchRun.objects.create(kind=kind, model=provider.model, generator_version=provider.generator_version)
        BatchRunItem.objects.bulk_create(
            [_item(run.pk, unit.line, FAMILY_KIND if unit.family is not None else kind) for unit in chunk],
            batch_size=1000, ignore_conflicts=True,
        )
        lines = {(product_id, item_kind): pk for product_id, item_kind, pk in
                 run.items.values_list("product_id", "kind", "pk")}
        variants = [_item(run.pk, ref, kind, base=lines[(unit.line.product_id, FAMILY_KIND)])
                    for unit in chunk if (unit.line.product_id, FAMILY_KIND) in lines and unit.family is not None
                    for _, ref in unit.variants]
        BatchRunItem.objects.bulk_create(variants, batch_size=1000, ignore_conflicts=True)
        mine = dict(run.items.filter(kind=kind).values_list("product_id", "pk"))
        run.requests = len(lines)
        run.save(update_fields=["requests"])
    lost = {}
    for unit in chunk:
        for index, ref in unit.products():
            if ref.product_id in mine:
                submission.items[index] = mine[ref.product_id]
                submission.sent += 1
            else:
                lost[ref.product_id] = index
    _lost(submission, lost, kind, runs)
    if not lines:
        run.delete()
        return None
    runs[run.pk] = run
    return run


def submit(run: BatchRun, provider: OpenAIProvider | None = None, *, recheck: bool = True) -> BatchRun:
    """Upload the run's pending items and create its batch, once, whatever crashed before.

    Under the run's exclusive lock (another process holding it is submitting it: nothing is done
    here). ``recheck``: a run resumed later first drops the products the memory got meanwhile.
    """
    provider = batch_provider(provider)
    client = BatchClient(provider)
    with exclusive_lock(f"batch-run:{run.reference}") as mine:
        run.refresh_from_db()
        if not mine or run.status != BatchRun.PREPARING:
            return run
        if run.submit_attempts:
            # A creation was tried and its answer lost: the provider may hold the batch.
            found = client.find(str(run.reference), run.created_at)
            if found is not None:
                logger.warning("Lote %s já criado no provedor por uma tentativa anterior: retomado", found.batch_id)
                return _submitted(run, found)
        if not run.input_file_id:
            if recheck:
                _keep_fresh(run)
            if not run.items.filter(state=BatchRunItem.PENDING, base__isnull=True).exists():
                return _finish(run)
            try:
                with _JsonlFile(client, run) as jsonl:
                    run.input_file_id = client.upload(jsonl, f"beecatalog-{run.reference}.jsonl")
            except ProviderRejected as exc:
                _abandon(run, exc)
                raise
            except GenerationError as exc:
                _note(run, exc)
                raise
            run.save(update_fields=["input_file_id"])
        run.submit_attempts += 1
        run.save(update_fields=["submit_attempts"])  # committed before the creation
        try:
            created = client.create(run.input_file_id, str(run.reference))
        except ProviderRejected as exc:  # refused: no batch was made
            _abandon(run, exc)
            raise
        except GenerationError as exc:  # may or may not have been made: the next attempt looks first
            _note(run, exc)
            raise
        logger.info("Lote %s criado com %d produtos", created.batch_id, run.requests)
        return _submitted(run, created)


class _JsonlFile:
    """The run's JSONL in a spooled temporary file (on disk beyond ``SPOOL_BYTES``)."""

    def __init__(self, client: BatchClient, run: BatchRun):
        self.client, self.run = client, run

    def __enter__(self):
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        count = 0
        # One line per request: a product alone, or a family's base (its variants send none).
        for pk, product in self.run.items.filter(state=BatchRunItem.PENDING, base__isnull=True).order_by(
                "pk").values_list("pk", "product").iterator(chunk_size=1000):
            self.file.write(self.client.request_line(str(pk), json.loads(product)))
            count += 1
        self.file.seek(0)
        if count != self.run.requests:
            self.run.requests = count
            self.run.save(update_fields=["requests"])
        return self.file

    def __exit__(self, *exc):
        self.file.close()


def _keep_fresh(run: BatchRun) -> None:
    """Before a resumed run is sent: its products (and family bases) the memory got meanwhile are
    not sent; the variants of a base kept so are derived from it when the run is settled."""
    memories = _memories(run)
    items = list(run.items.filter(state=BatchRunItem.PENDING).only("pk", "product_id", "kind", "fingerprint",
                                                                     "product"))
    for kind, memory in memories.items():
        of_kind = [item for item in items if item.kind == kind]
        for start in range(0, len(of_kind), QUERY_CHUNK):
            chunk = of_kind[start:start + QUERY_CHUNK]
            lookups = memory.lookup_many([_ref(item) for item in chunk], count_hits=False)
            fresh = [item.pk for item in chunk if lookups[item.product_id].hit]
            BatchRunItem.objects.filter(pk__in=fresh, state=BatchRunItem.PENDING).update(
                state=BatchRunItem.KEPT, error="já estava na memória quando o lote foi retomado; não enviado")


def _memories(run: BatchRun) -> dict[str, ProductMemory]:
    """The memory of the run's products and that of its family bases, for the run's generator."""
    return {kind: ProductMemory(kind, generator_version=run.generator_version) for kind in (run.kind, FAMILY_KIND)}


def _ref(item: BatchRunItem) -> ProductRef:
    return ProductRef(item.product_id, item.fingerprint or None, item.product_data)


def _submitted(run: BatchRun, status: BatchStatus) -> BatchRun:
    run.batch_id = status.batch_id
    run.input_file_id = status.input_file_id or run.input_file_id
    run.status = BatchRun.SUBMITTED
    run.submitted_at = timezone.now()
    run.error = ""
    _record(run, status)
    run.save()
    return run


def _record(run: BatchRun, status: BatchStatus) -> None:
    run.provider_status = status.status[:32]
    run.completed_requests = status.completed
    run.failed_requests = status.failed
    run.output_file_id = status.output_file_id or run.output_file_id
    run.error_file_id = status.error_file_id or run.error_file_id
    if status.errors:
        run.error = status.errors


def _note(run: BatchRun, exc: Exception) -> None:
    run.error = str(exc)[:2000]
    run.save(update_fields=["error"])


def _abandon(run: BatchRun, exc: Exception) -> None:
    """The provider refused the run before making a batch: nothing was sent, its products are free."""
    message = f"não enviado: {exc}"[:2000]
    run.items.filter(state=BatchRunItem.PENDING).update(state=BatchRunItem.FAILED, error=message)
    run.error = message
    _finish(run)


# --- waiting and ingesting -------------------------------------------------------------------


def refresh(run: BatchRun, provider: OpenAIProvider | None = None) -> BatchRun:
    """One step of the run: submit it if it is still preparing, else ask the provider how the
    batch goes and ingest it once it is finished."""
    provider = batch_provider(provider)
    run.refresh_from_db()
    if run.status == BatchRun.PREPARING:
        submit(run, provider)
        if run.status != BatchRun.SUBMITTED:
            return run
    if run.status == BatchRun.DONE:
        return run
    status = BatchClient(provider).retrieve(run.batch_id)
    _record(run, status)
    run.save(update_fields=["provider_status", "completed_requests", "failed_requests", "output_file_id",
                            "error_file_id", "error"])
    if status.finished:
        ingest(run, provider, status)
    return run


def wait(runs: list[BatchRun], provider: OpenAIProvider | None = None, *, poll_interval: float = 30.0,
         on_progress: Callable[[list[BatchRun]], None] | None = None, sleep: Callable[[float], None] = time.sleep,
         ) -> list[BatchRun]:
    """Refresh the runs every ``poll_interval`` seconds until each is done. The provider failing
    to answer a poll is logged and asked again at the next; a refusal is raised."""
    provider = batch_provider(provider)
    while True:
        for run in runs:
            if run.status == BatchRun.DONE:
                continue
            try:
                refresh(run, provider)
            except ProviderRejected:
                raise
            except GenerationError as exc:
                if run.status == BatchRun.PREPARING:
                    raise
                logger.warning("Lote %s: consulta falhou (%s); nova tentativa em %g s", run, exc, poll_interval)
        if on_progress:
            on_progress(runs)
        if all(run.status == BatchRun.DONE for run in runs):
            return runs
        sleep(poll_interval)


def ingest(run: BatchRun, provider: OpenAIProvider, status: BatchStatus) -> BatchRun:
    """Save the results of a finished batch (see the module docstring), then derive its families'
    variants; idempotent."""
    client = BatchClient(provider)
    memories = _memories(run)
    pending = {str(pk): pk for pk in run.items.filter(state=BatchRunItem.PENDING, base__isnull=True).values_list(
        "pk", flat=True)}
    if not pending and run.status == BatchRun.DONE:
        return run
    unknown = 0
    for file_id in (status.output_file_id, status.error_file_id) if pending else ():
        if not file_id:
            continue
        for line in client.lines(file_id):
            result = client.parse_line(line)
            pk = pending.pop(result.custom_id, None)
            if pk is None:
                unknown += 1  # ingested already, or not this run's
                continue
            _store(run, memories, pk, result)
    if unknown:
        logger.info("Lote %s: %d linha(s) de resultado já importadas ou desconhecidas, ignoradas", run, unknown)
    if pending:
        why = {"completed": "o lote terminou sem resultado para este produto",
               "expired": "o lote expirou (24 h) antes de gerar este produto",
               "cancelled": "o lote foi cancelado antes de gerar este produto",
               }.get(status.status, f"o lote falhou: {status.errors or status.status}")
        BatchRunItem.objects.filter(pk__in=list(pending.values()), state=BatchRunItem.PENDING).update(
            state=BatchRunItem.FAILED, error=why[:2000])
    return _finish(run)


def _store(run: BatchRun, memories: dict[str, ProductMemory], pk: int, result: LineResult) -> None:
    """One result into the memory (a product's content, or a family's base), or the item's
    failure; under the product's (or the base's) single-flight lock and in one transaction with
    the item leaving ``pending``."""
    item = BatchRunItem.objects.only("product_id", "kind").get(pk=pk)
    memory = memories[item.kind]
    with product_lock(item.product_id, item.kind), transaction.atomic():
        item = BatchRunItem.objects.select_for_update().filter(pk=pk, state=BatchRunItem.PENDING).first()
        if item is None:
            return  # another process ingested it
        item.tokens_prompt = result.tokens_prompt
        item.tokens_completion = result.tokens_completion
        item.tokens_cached = result.tokens_cached
        error = result.error
        if error is None:
            ref = _ref(item)
            lookup = memory.lookup(ref, count_hit=False)
            if lookup.hit or _newer(run, item):
                item.state = BatchRunItem.KEPT
                item.tokens_wasted = result.tokens_billed
                item.error = KEPT_WHY
            else:
                generated = result.generated
                try:
                    if item.kind == FAMILY_KIND:  # stored as the direct path stores a base
                        families.save_base(memory, ref, generated, run.generator_version)
                    else:
                        memory.save_product_data(
                            ref, generated.content,
                            tokens_prompt=generated.tokens_prompt,
                            tokens_completion=generated.tokens_completion,
                            tokens_cached=generated.tokens_cached,
                            tokens_reasoning=generated.tokens_reasoning,
                            generator_version=generated.generator_version or run.generator_version,
                        )
                except ValueError as exc:
                    error = exc
                else:
                    item.state = BatchRunItem.REGENERATED if lookup.status in ("stale", "expired") else BatchRunItem.GENERATED
        if error is not None:
            item.state = BatchRunItem.FAILED
            item.tokens_wasted = result.tokens_billed
            item.error = str(error)[:2000]
            what = "do conteúdo base da família" if item.kind == FAMILY_KIND else "do produto"
            logger.error("Falha ao gerar conteúdo %s %s (lote %s): %s", what, item.product_id, run, error)
            transaction.on_commit(lambda: metrics.count_generation_failure(PROVIDER_ERROR))
        item.save()
        if item.tokens_wasted:
            wasted = item.tokens_wasted
            transaction.on_commit(lambda: memory.count_wasted_tokens(wasted))


KEPT_WHY = "já estava na memória quando o resultado chegou; mantido, não sobrescrito"


def _newer(run: BatchRun, item: BatchRunItem) -> bool:
    """Whether the item's entry was written since the run began (from any data): ingest keeps it."""
    return ProductMemoryEntry.objects.filter(product_id=item.product_id, kind=item.kind,
                                             updated_at__gte=run.created_at).exists()


def _settle_variants(run: BatchRun) -> int:
    """Every variant of the run still pending whose family base is settled: derived from the base
    the memory holds, or failed with its base; returns how many were settled."""
    memories = _memories(run)
    bases = (BatchRunItem.objects.filter(run=run, kind=FAMILY_KIND).exclude(state=BatchRunItem.PENDING)
             .filter(variants__state=BatchRunItem.PENDING).distinct().order_by("pk"))
    return sum(_settle_family(run, memories, base) for base in bases)


def _settle_family(run: BatchRun, memories: dict[str, ProductMemory], base_item: BatchRunItem) -> int:
    """The pending variants of one settled base: derived from the base the memory holds when it
    still matches the run's shared data (fingerprint), failed with the base's reason otherwise."""
    family_id = base_item.product_id
    pending = list(base_item.variants.filter(state=BatchRunItem.PENDING).order_by("pk").values_list("pk", flat=True))
    reason = None
    found = None
    if base_item.state == BatchRunItem.FAILED:
        reason = f"o conteúdo base da família {family_id} falhou neste lote: {base_item.error}"
    else:
        found = memories[FAMILY_KIND].lookup(_ref(base_item), count_hit=False).hit
        if found is None:
            reason = (f"o conteúdo base da família {family_id} na memória já não corresponde a este lote (mudou ou"
                      f" expirou enquanto o lote rodava); rode de novo")
    if reason is not None:
        return BatchRunItem.objects.filter(pk__in=pending, state=BatchRunItem.PENDING).update(
            state=BatchRunItem.FAILED, error=reason[:2000])
    base = found.snapshot
    made_here = base_item.state in _STORED
    if made_here and not base_item.variants.filter(state__in=_STORED).exists():
        # The base was made anew by this run: the family's other stored variants are derived again
        # from it, as on the direct path (this run's are derived below).
        families.rederive_family(family_id, base, skip=set(base_item.variants.values_list("product_id", "kind")))
    cost = GeneratedContent(content=base.payload, tokens_prompt=base.tokens_prompt,
                            tokens_completion=base.tokens_completion, tokens_cached=base.tokens_cached,
                            tokens_reasoning=base.tokens_reasoning, generator_version=base.generator_version)
    return sum(1 for pk in pending
               if _derive_item(run, memories[run.kind], pk, base_item, base, cost if made_here else None) is not None)


_STORED = (BatchRunItem.GENERATED, BatchRunItem.REGENERATED)


def _derive_item(run: BatchRun, memory: ProductMemory, pk: int, base_item: BatchRunItem, base: Snapshot,
                 base_cost: GeneratedContent | None) -> str | None:
    """One variant of the run derived from its family's ``base`` and stored, unless the memory got
    it meanwhile (kept, as a result would be) or a person approved it; under its single-flight
    lock, in one transaction with the item leaving ``pending``. Returns its state (None: another
    process settled it).

    ``base_cost``: the base's generation when this run made it. The first variant stored from it
    pays for it (its entry holds that cost, as the variant that makes a base on the direct path);
    the base's row is locked meanwhile, so processes ingesting at once agree on which one."""
    item = BatchRunItem.objects.only("product_id", "kind").get(pk=pk)
    with product_lock(item.product_id, item.kind), transaction.atomic():
        BatchRunItem.objects.select_for_update().filter(pk=base_item.pk).values_list("pk", flat=True).get()
        item = BatchRunItem.objects.select_for_update().filter(pk=pk, state=BatchRunItem.PENDING).first()
        if item is None:
            return None
        if base_cost is not None and BatchRunItem.objects.filter(base_id=base_item.pk, state__in=_STORED).exists():
            base_cost = None  # paid for by a variant stored before this one
        ref = _ref(item)
        try:
            family = product_family(item.product_data)
        except ValueError:
            family = None
        lookup = memory.lookup(ref, count_hit=False)
        if family is None or (family.id, family.fingerprint) != (base_item.product_id, base_item.fingerprint):
            item.state = BatchRunItem.FAILED
            item.error = ("a família do produto mudou desde o envio do lote (MEMORY_FAMILY_FIELDS ou"
                          " MEMORY_VARIANT_ATTRIBUTES); rode de novo")
        elif lookup.hit or _newer(run, item):
            item.state = BatchRunItem.KEPT
            item.error = KEPT_WHY
        else:
            variant = families.derived_variant(family, base, base_cost)
            try:
                families.save_variant(memory, ref, family, variant, rederive=False)
            except ApprovedContent as exc:  # approved since the lookup: never derived again
                item.state, item.error = BatchRunItem.KEPT, str(exc)[:2000]
            except ValueError as exc:
                item.state, item.error = BatchRunItem.FAILED, str(exc)[:2000]
            else:
                item.state = BatchRunItem.REGENERATED if lookup.status in ("stale", "expired") else BatchRunItem.GENERATED
                item.tokens_prompt, item.tokens_completion = variant.tokens_prompt, variant.tokens_completion
                item.tokens_cached = variant.tokens_cached
                item.tokens_saved_by_family = variant.tokens_saved_by_family
        if item.state == BatchRunItem.FAILED:
            logger.error("Falha ao derivar o produto %s da família %s (lote %s): %s", item.product_id,
                         base_item.product_id, run, item.error)
        item.save()
        return item.state


def _finish(run: BatchRun) -> BatchRun:
    """The run's variants settled (:func:`_settle_variants`), its counts and cost from its items;
    ``done``. The counts are of products (a family's base is a request, not a product); the tokens
    and the cost of the requests."""
    _settle_variants(run)
    products = run.items.exclude(kind=FAMILY_KIND)
    counts = dict(products.values("state").annotate(n=Count("pk")).values_list("state", "n"))
    sums = run.items.filter(base__isnull=True).aggregate(
        p=Sum("tokens_prompt"), c=Sum("tokens_completion"), k=Sum("tokens_cached"), w=Sum("tokens_wasted"))
    derived = products.filter(base__isnull=False, state__in=(BatchRunItem.GENERATED, BatchRunItem.REGENERATED))
    family_sums = derived.aggregate(n=Count("pk"), f=Count("base", distinct=True), s=Sum("tokens_saved_by_family"))
    run.generated = counts.get(BatchRunItem.GENERATED, 0)
    run.regenerated = counts.get(BatchRunItem.REGENERATED, 0)
    run.kept = counts.get(BatchRunItem.KEPT, 0)
    run.failed = counts.get(BatchRunItem.FAILED, 0)
    run.tokens_prompt, run.tokens_completion = sums["p"] or 0, sums["c"] or 0
    run.tokens_cached, run.tokens_wasted = sums["k"] or 0, sums["w"] or 0
    run.derived_variants, run.families = family_sums["n"], family_sums["f"]
    run.tokens_saved_by_family = family_sums["s"] or 0
    run.discount = Decimal(str(settings.LLM_BATCH_DISCOUNT))
    run.cost_usd = estimate_cost(run.tokens_prompt, run.tokens_completion, run.model, settings.LLM_PRICES,
                                 tokens_cached=run.tokens_cached, factor=run.discount)
    if run.cost_usd is None:
        logger.warning("Modelo %s sem preço em LLM_PRICES: custo estimado do lote desconhecido", run.model)
    run.status = BatchRun.DONE
    run.finished_at = timezone.now()
    run.save()
    logger.info("Lote %s concluído: %d gerados, %d regenerados, %d mantidos da memória, %d falhas",
                run, run.generated, run.regenerated, run.kept, run.failed)
    if run.derived_variants:
        logger.info("Lote %s: %d variante(s) derivada(s) de %d família(s) - economia de %d tokens", run,
                    run.derived_variants, run.families, run.tokens_saved_by_family)
    return run


# --- reports ---------------------------------------------------------------------------------


def outcomes(submission: Submission) -> list[ProductOutcome]:
    """Each product of a submission, in order, as it stands now."""
    items: dict[int, BatchRunItem] = {}
    pks = list(submission.items.values())
    for start in range(0, len(pks), QUERY_CHUNK):
        for item in BatchRunItem.objects.filter(pk__in=pks[start:start + QUERY_CHUNK]).select_related(
                "base").defer("product", "base__product"):
            items[item.pk] = item
    result = []
    for index in range(submission.total):
        if index in submission.outcomes:
            result.append(submission.outcomes[index])
        else:
            result.append(item_outcome(items[submission.items[index]], index))
    return result


def item_outcome(item: BatchRunItem, index: int | None = None) -> ProductOutcome:
    """A product's item as the outcome of a generation: a variant names its family, and what it
    cost (the base's tokens for the one that paid for it) or saved by reusing the base."""
    status = _STATE_STATUS[item.state]
    stored = status in (GENERATED, REGENERATED)
    return ProductOutcome(
        item.product_id, status, index=index,
        tokens_spent=item.tokens_prompt + item.tokens_completion if stored else 0,
        tokens_wasted=item.tokens_wasted,
        error=item.error or None if status == FAILED else None,
        family=item.base.product_id if item.base_id is not None else None,
        tokens_saved_by_family=item.tokens_saved_by_family,
    )


def family_lines(run: BatchRun) -> tuple[int, int]:
    """``(family bases, variants)`` of a run: requests made for families, and the products each
    serves without a request of its own."""
    return (run.items.filter(kind=FAMILY_KIND, base__isnull=True).count(),
            run.items.filter(base__isnull=False).count())


def run_summary(run: BatchRun) -> dict:
    """The run as the command and the scheduled job report it."""
    return {
        "batch_id": run.batch_id or None,
        "reference": str(run.reference),
        "status": run.status,
        "provider_status": run.provider_status or None,
        "model": run.model,
        "requests": run.requests,
        "completed_requests": run.completed_requests,
        "failed_requests": run.failed_requests,
        "generated": run.generated,
        "regenerated": run.regenerated,
        "kept": run.kept,
        "failed": run.failed,
        "tokens_prompt": run.tokens_prompt,
        "tokens_completion": run.tokens_completion,
        "tokens_cached": run.tokens_cached,
        "tokens_wasted": run.tokens_wasted,
        "derived_variants": run.derived_variants,
        "families": run.families,
        "tokens_saved_by_family": run.tokens_saved_by_family,
        "batch_discount": None if run.discount is None else float(run.discount),
        "estimated_cost_usd": None if run.cost_usd is None else float(run.cost_usd),
        "error": run.error or None,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def failed_items(run: BatchRun) -> list[tuple[str, str]]:
    """``(product_id, error)`` of each product of the run that failed (a failed family base fails
    its variants, each saying why)."""
    return list(run.items.filter(state=BatchRunItem.FAILED).exclude(kind=FAMILY_KIND).order_by("pk").values_list(
        "product_id", "error"))


def find_run(batch_id: str) -> BatchRun:
    """The run of a provider batch id; ``ValueError`` naming it when there is none."""
    run = BatchRun.objects.filter(batch_id=batch_id).first() if batch_id else None
    if run is None:
        raise ValueError(f"lote desconhecido: nenhum lote {batch_id!r} nesta memória")
    return run


# --- the scheduled job -----------------------------------------------------------------------


def advance_open_runs(provider: OpenAIProvider | None = None) -> dict:
    """Every unfinished run one step further (the scheduled job): submitted if a crash left it
    preparing, polled, ingested once finished. A run whose provider fails is logged and tried
    again at the next job."""
    open_runs = list(BatchRun.objects.exclude(status=BatchRun.DONE).order_by("pk"))
    summary = {"open": len(open_runs), "ingested": 0, "waiting": 0, "errors": 0}
    if not open_runs:
        return summary
    try:
        provider = batch_provider(provider)
    except BatchApiUnavailable as exc:
        logger.warning("%d lote(s) em aberto não verificados: %s", len(open_runs), exc)
        summary["errors"] = len(open_runs)
        return summary
    for run in open_runs:
        try:
            refresh(run, provider)
        except GenerationError as exc:
            logger.error("Lote %s: %s", run, exc)
            summary["errors"] += 1
            continue
        summary["ingested" if run.status == BatchRun.DONE else "waiting"] += 1
    return summary
