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

from memory.infra import metrics
from memory.engine.locks import exclusive_lock, product_lock
from memory.engine.memory import ProductMemory, ProductRef, resolve_product
from memory.models import DEFAULT_KIND, BatchRun, BatchRunItem, ProductMemoryEntry
from memory.providers import GenerationError, OpenAIProvider, ProviderRejected, get_provider
from memory.providers.openai_batch import MAX_FILE_BYTES, MAX_REQUESTS, BatchClient, BatchStatus, LineResult
from memory.providers.pricing import estimate_cost
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
    outcomes: dict[int, ProductOutcome] = field(default_factory=dict)  # reused, failed, duplicates
    items: dict[int, int] = field(default_factory=dict)  # index -> BatchRunItem pk, in any run
    runs: list[BatchRun] = field(default_factory=list)  # every run holding one of the products
    new_runs: list[BatchRun] = field(default_factory=list)  # the runs this submission made
    sent: int = 0  # products put in new runs by this submission
    resumed: int = 0  # products found pending in earlier runs, not sent again


def submit_catalog(products: Iterable[Any], *, provider: OpenAIProvider | None = None,
                   kind: str = DEFAULT_KIND) -> Submission:
    """Send the misses of ``products`` as Batch API batches (one per ``MAX_REQUESTS`` requests or
    ``MAX_FILE_BYTES`` of JSONL); returns at once, the batches under way.

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
    for chunk in _chunks(provider, [(index, refs[index]) for index in misses.values()]):
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


def _chunks(provider: OpenAIProvider, misses: list[tuple[int, ProductRef]]):
    """The misses in groups that fit one batch: at most ``MAX_REQUESTS`` lines and
    ``MAX_FILE_BYTES`` of JSONL."""
    client = BatchClient(provider)
    chunk: list[tuple[int, ProductRef]] = []
    size = 0
    for index, ref in misses:
        line = len(client.request_line("", ref.source_data)) + CUSTOM_ID_ROOM
        if chunk and (len(chunk) >= MAX_REQUESTS or size + line > MAX_FILE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((index, ref))
        size += line
    if chunk:
        yield chunk


def _reserve(provider: OpenAIProvider, kind: str, chunk: list[tuple[int, ProductRef]], submission: Submission,
             runs: dict[int, BatchRun]) -> BatchRun | None:
    """A new run holding the products of ``chunk`` as pending items, committed. A product another
    run reserved meanwhile (the unique index refuses it) joins that run instead."""
    with transaction.atomic():
        run = BatchRun.objects.create(kind=kind, model=provider.model, generator_version=provider.generator_version)
        BatchRunItem.objects.bulk_create(
            [BatchRunItem(run=run, product_id=ref.product_id, kind=kind, fingerprint=ref.fingerprint or "",
                          product=json.dumps(ref.source_data, ensure_ascii=False)) for _, ref in chunk],
            batch_size=1000, ignore_conflicts=True,
        )
        mine = dict(run.items.values_list("product_id", "pk"))
        run.requests = len(mine)
        run.save(update_fields=["requests"])
    lost = {}
    for index, ref in chunk:
        if ref.product_id in mine:
            submission.items[index] = mine[ref.product_id]
            submission.sent += 1
        else:
            lost[ref.product_id] = index
    if lost:
        _attach_pending(submission, lost, kind, runs)
        for product_id, index in lost.items():  # reserved and finished between the two queries: rare
            submission.outcomes[index] = ProductOutcome(product_id, FAILED, index=index,
                                                        error="reservado por outro lote ao mesmo tempo; rode de novo")
    if not mine:
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
            if not run.items.filter(state=BatchRunItem.PENDING).exists():
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
        for pk, product in self.run.items.filter(state=BatchRunItem.PENDING).order_by("pk").values_list(
                "pk", "product").iterator(chunk_size=1000):
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
    """Before a resumed run is sent: its products the memory got meanwhile are not sent."""
    memory = ProductMemory(run.kind, generator_version=run.generator_version)
    items = list(run.items.filter(state=BatchRunItem.PENDING).only("pk", "product_id", "fingerprint", "product"))
    for start in range(0, len(items), QUERY_CHUNK):
        chunk = items[start:start + QUERY_CHUNK]
        lookups = memory.lookup_many([_ref(item) for item in chunk], count_hits=False)
        fresh = [item.pk for item in chunk if lookups[item.product_id].hit]
        BatchRunItem.objects.filter(pk__in=fresh, state=BatchRunItem.PENDING).update(
            state=BatchRunItem.KEPT, error="já estava na memória quando o lote foi retomado; não enviado")


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
    """Save the results of a finished batch (see the module docstring); idempotent."""
    client = BatchClient(provider)
    memory = ProductMemory(run.kind, generator_version=run.generator_version)
    pending = {str(pk): pk for pk in run.items.filter(state=BatchRunItem.PENDING).values_list("pk", flat=True)}
    if not pending:
        return run if run.status == BatchRun.DONE else _finish(run)
    unknown = 0
    for file_id in (status.output_file_id, status.error_file_id):
        if not file_id:
            continue
        for line in client.lines(file_id):
            result = client.parse_line(line)
            pk = pending.pop(result.custom_id, None)
            if pk is None:
                unknown += 1  # ingested already, or not this run's
                continue
            _store(run, memory, pk, result)
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


def _store(run: BatchRun, memory: ProductMemory, pk: int, result: LineResult) -> None:
    """One result into the memory, or the item's failure; under the product's single-flight lock
    and in one transaction with the item leaving ``pending``."""
    item = BatchRunItem.objects.only("product_id", "kind").get(pk=pk)
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
            newer = ProductMemoryEntry.objects.filter(product_id=item.product_id, kind=item.kind,
                                                      updated_at__gte=run.created_at).exists()
            if lookup.hit or newer:
                item.state = BatchRunItem.KEPT
                item.tokens_wasted = result.tokens_billed
                item.error = "já estava na memória quando o resultado chegou; mantido, não sobrescrito"
            else:
                generated = result.generated
                try:
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
            logger.error("Falha ao gerar conteúdo do produto %s (lote %s): %s", item.product_id, run, error)
            transaction.on_commit(lambda: metrics.count_generation_failure(PROVIDER_ERROR))
        item.save()
        if item.tokens_wasted:
            wasted = item.tokens_wasted
            transaction.on_commit(lambda: memory.count_wasted_tokens(wasted))


def _finish(run: BatchRun) -> BatchRun:
    """The run's counts and cost from its items; ``done``."""
    counts = dict(run.items.values("state").annotate(n=Count("pk")).values_list("state", "n"))
    sums = run.items.aggregate(p=Sum("tokens_prompt"), c=Sum("tokens_completion"), k=Sum("tokens_cached"),
                               w=Sum("tokens_wasted"))
    run.generated = counts.get(BatchRunItem.GENERATED, 0)
    run.regenerated = counts.get(BatchRunItem.REGENERATED, 0)
    run.kept = counts.get(BatchRunItem.KEPT, 0)
    run.failed = counts.get(BatchRunItem.FAILED, 0)
    run.tokens_prompt, run.tokens_completion = sums["p"] or 0, sums["c"] or 0
    run.tokens_cached, run.tokens_wasted = sums["k"] or 0, sums["w"] or 0
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
    return run


# --- reports ---------------------------------------------------------------------------------


def outcomes(submission: Submission) -> list[ProductOutcome]:
    """Each product of a submission, in order, as it stands now."""
    items: dict[int, BatchRunItem] = {}
    pks = list(submission.items.values())
    for start in range(0, len(pks), QUERY_CHUNK):
        for item in BatchRunItem.objects.filter(pk__in=pks[start:start + QUERY_CHUNK]).defer("product"):
            items[item.pk] = item
    result = []
    for index in range(submission.total):
        if index in submission.outcomes:
            result.append(submission.outcomes[index])
        else:
            result.append(item_outcome(items[submission.items[index]], index))
    return result


def item_outcome(item: BatchRunItem, index: int | None = None) -> ProductOutcome:
    status = _STATE_STATUS[item.state]
    stored = status in (GENERATED, REGENERATED)
    return ProductOutcome(
        item.product_id, status, index=index,
        tokens_spent=item.tokens_prompt + item.tokens_completion if stored else 0,
        tokens_wasted=item.tokens_wasted,
        error=item.error or None if status == FAILED else None,
    )


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
        "batch_discount": None if run.discount is None else float(run.discount),
        "estimated_cost_usd": None if run.cost_usd is None else float(run.cost_usd),
        "error": run.error or None,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def failed_items(run: BatchRun) -> list[tuple[str, str]]:
    """``(product_id, error)`` of each product of the run that failed."""
    return list(run.items.filter(state=BatchRunItem.FAILED).order_by("pk").values_list("product_id", "error"))


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
