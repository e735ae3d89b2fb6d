"""L3, the source of truth: one row per generated content, the daily counters, and the Batch API runs."""
import json
import uuid

from django.db import models
from django.db.models.fields.json import KT
from django.db.models.functions import Left
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

DEFAULT_KIND = "main_content"
# Titles sort by their first characters: see the index in ProductMemoryEntry.Meta.
TITLE_SORT_CHARS = 100


class ProductMemoryEntry(models.Model):
    product_id = models.CharField(_("produto"), max_length=255)
    kind = models.CharField(_("tipo"), max_length=64, default=DEFAULT_KIND)
    payload = models.JSONField(_("conteúdo"))
    source_data = models.JSONField(_("dados de origem"), default=dict, blank=True)
    # Kept by the database from the payload, so that search and ordering by
    # title use a plain indexed column and can never drift from the payload.
    title = models.GeneratedField(
        expression=KT("payload__title"),
        output_field=models.TextField(null=True),
        db_persist=True,
        verbose_name=_("título"),
    )
    input_fingerprint = models.CharField(_("impressão digital da entrada"), max_length=64)
    generator_version = models.CharField(_("versão do gerador"), max_length=200)
    tokens_prompt = models.PositiveIntegerField(_("tokens do prompt"), default=0)
    tokens_completion = models.PositiveIntegerField(_("tokens da resposta"), default=0)
    # Parts of the two counts above, as the provider reports them: prompt tokens served from its
    # cache (billed at the cached-prompt price) and completion tokens spent reasoning (billed as
    # completion tokens, already in tokens_completion). db_default: rows written by raw SQL that
    # predates them (bench/) still insert.
    tokens_cached = models.PositiveIntegerField(_("tokens do prompt em cache"), default=0, db_default=0)
    tokens_reasoning = models.PositiveIntegerField(_("tokens de raciocínio"), default=0, db_default=0)
    hit_count = models.PositiveBigIntegerField(_("acertos"), default=0)
    tokens_saved = models.PositiveBigIntegerField(_("tokens economizados"), default=0)
    created_at = models.DateTimeField(_("criado em"), default=timezone.now)
    updated_at = models.DateTimeField(_("atualizado em"), default=timezone.now)
    last_hit_at = models.DateTimeField(_("último acerto"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expira em"))

    class Meta:
        verbose_name = _("entrada da memória")
        verbose_name_plural = _("entradas da memória")
        # Emptying the whole memory is not "delete" many times over: it has its own permission.
        permissions = [("clear_productmemoryentry", "Pode limpar toda a memória")]
        constraints = [
            models.UniqueConstraint(fields=["product_id", "kind"], name="memory_entry_product_kind_uniq"),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="memory_entry_expires_idx"),
            models.Index(fields=["-updated_at"], name="memory_entry_updated_idx"),
            models.Index(fields=["-hit_count"], name="memory_entry_hits_idx"),
            # Sorting by title (the admin column). On its first characters only: a btree
            # entry has a size limit (~2.7 KB) and an imported title has none.
            models.Index(Left("title", TITLE_SORT_CHARS), name="memory_entry_title_sort_idx"),
        ]
        # The trigram index on title is PostgreSQL-only: see migration 0002.

    def __str__(self):
        return f"{self.product_id} ({self.kind})"

    @property
    def tokens_spent(self) -> int:
        return self.tokens_prompt + self.tokens_completion


class DailyStats(models.Model):
    """What the memory did on one day; filled by the counter flush, drawn by the dashboard."""

    date = models.DateField(_("data"), unique=True)
    hits = models.PositiveBigIntegerField(_("acertos"), default=0)
    misses = models.PositiveBigIntegerField(_("faltas"), default=0)
    generations = models.PositiveBigIntegerField(_("gerações"), default=0)
    tokens_spent = models.PositiveBigIntegerField(_("tokens gastos"), default=0)
    tokens_saved = models.PositiveBigIntegerField(_("tokens economizados"), default=0)
    # Billed for failed or discarded attempts (errors, malformed or truncated answers).
    tokens_wasted = models.PositiveBigIntegerField(_("tokens desperdiçados"), default=0)

    class Meta:
        verbose_name = _("estatística diária")
        verbose_name_plural = _("estatísticas diárias")
        ordering = ["-date"]

    def __str__(self):
        return str(self.date)


class BatchRun(models.Model):
    """One OpenAI Batch API batch of generations (``generate_content --batch-api``), from the moment
    its products are reserved until its results are in the memory: what makes a run resumable by
    any process after a crash (``memory.services.batch_api``)."""

    PREPARING = "preparing"  # products reserved; the batch may not exist at the provider yet
    SUBMITTED = "submitted"  # the provider has the batch (batch_id); results not ingested yet
    DONE = "done"  # every product has its final state
    STATUSES = [(PREPARING, _("preparando")), (SUBMITTED, _("enviado")), (DONE, _("concluído"))]

    # Sent as the batch's metadata: how a resumed run finds the batch a crashed process created.
    reference = models.UUIDField(_("referência"), default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(_("tipo"), max_length=64, default=DEFAULT_KIND)
    model = models.CharField(_("modelo"), max_length=200)
    generator_version = models.CharField(_("versão do gerador"), max_length=200)
    status = models.CharField(_("situação"), max_length=16, choices=STATUSES, default=PREPARING)
    provider_status = models.CharField(_("situação no provedor"), max_length=32, blank=True, default="")
    batch_id = models.CharField(_("lote no provedor"), max_length=255, blank=True, default="")
    input_file_id = models.CharField(_("arquivo de entrada"), max_length=255, blank=True, default="")
    output_file_id = models.CharField(_("arquivo de resultados"), max_length=255, blank=True, default="")
    error_file_id = models.CharField(_("arquivo de erros"), max_length=255, blank=True, default="")
    # Batch creations tried: above 0 without a batch_id, the provider may hold one (a lost answer).
    submit_attempts = models.PositiveIntegerField(_("tentativas de envio"), default=0)
    error = models.TextField(_("erro"), blank=True, default="")
    requests = models.PositiveIntegerField(_("requisições"), default=0)
    completed_requests = models.PositiveIntegerField(_("requisições concluídas"), default=0)
    failed_requests = models.PositiveIntegerField(_("requisições com falha"), default=0)
    generated = models.PositiveIntegerField(_("gerados"), default=0)
    regenerated = models.PositiveIntegerField(_("regenerados"), default=0)
    kept = models.PositiveIntegerField(_("mantidos da memória"), default=0)
    failed = models.PositiveIntegerField(_("falhas"), default=0)
    tokens_prompt = models.PositiveBigIntegerField(_("tokens do prompt"), default=0)
    tokens_completion = models.PositiveBigIntegerField(_("tokens da resposta"), default=0)
    tokens_cached = models.PositiveBigIntegerField(_("tokens do prompt em cache"), default=0)
    tokens_wasted = models.PositiveBigIntegerField(_("tokens desperdiçados"), default=0)
    # The price factor of the batch (LLM_BATCH_DISCOUNT when it was ingested) and the cost at it.
    discount = models.DecimalField(_("fator de preço do lote"), max_digits=5, decimal_places=4, null=True, blank=True)
    cost_usd = models.DecimalField(_("custo estimado (US$)"), max_digits=14, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(_("criado em"), default=timezone.now)
    submitted_at = models.DateTimeField(_("enviado em"), null=True, blank=True)
    finished_at = models.DateTimeField(_("concluído em"), null=True, blank=True)

    class Meta:
        verbose_name = _("lote da API de lotes")
        verbose_name_plural = _("lotes da API de lotes")
        constraints = [
            models.UniqueConstraint(fields=["batch_id"], condition=~models.Q(batch_id=""),
                                    name="memory_batchrun_batch_id_uniq"),
        ]
        indexes = [models.Index(fields=["status"], name="memory_batchrun_status_idx")]

    def __str__(self):
        return self.batch_id or str(self.reference)

    @property
    def tokens_spent(self) -> int:
        return self.tokens_prompt + self.tokens_completion


class BatchRunItem(models.Model):
    """One product of a batch run: the data sent, and what became of its result."""

    PENDING = "pending"  # sent (or about to be): no other batch may send it
    GENERATED = "generated"
    REGENERATED = "regenerated"  # the stored entry was stale or expired
    KEPT = "kept"  # the memory had it when the result arrived: not overwritten
    FAILED = "failed"
    STATES = [(PENDING, _("pendente")), (GENERATED, _("gerado")), (REGENERATED, _("regenerado")),
              (KEPT, _("mantido da memória")), (FAILED, _("falha"))]

    run = models.ForeignKey(BatchRun, on_delete=models.CASCADE, related_name="items", verbose_name=_("lote"))
    product_id = models.CharField(_("produto"), max_length=255)
    kind = models.CharField(_("tipo"), max_length=64, default=DEFAULT_KIND)
    fingerprint = models.CharField(_("impressão digital da entrada"), max_length=64, blank=True, default="")
    # JSON text, not jsonb: jsonb reorders the keys, and the prompt is built from this text, so a
    # line resumed or rebuilt by any process asks exactly what a direct call would.
    product = models.TextField(_("dados do produto (JSON)"))
    state = models.CharField(_("situação"), max_length=16, choices=STATES, default=PENDING)
    error = models.TextField(_("erro"), blank=True, default="")
    tokens_prompt = models.PositiveIntegerField(_("tokens do prompt"), default=0)
    tokens_completion = models.PositiveIntegerField(_("tokens da resposta"), default=0)
    tokens_cached = models.PositiveIntegerField(_("tokens do prompt em cache"), default=0)
    tokens_wasted = models.PositiveIntegerField(_("tokens desperdiçados"), default=0)

    class Meta:
        verbose_name = _("produto de lote")
        verbose_name_plural = _("produtos de lote")
        constraints = [
            # No product is in two unfinished batches: the database refuses the second.
            models.UniqueConstraint(fields=["product_id", "kind"], condition=models.Q(state="pending"),
                                    name="memory_batchitem_pending_uniq"),
        ]
        indexes = [models.Index(fields=["run", "state"], name="memory_batchitem_run_state_idx")]

    def __str__(self):
        return f"{self.product_id} ({self.state})"

    @property
    def product_data(self) -> dict:
        return json.loads(self.product)
