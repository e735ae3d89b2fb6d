"""L3, the source of truth: one row per product's content, every content it held (its versions),
the daily counters, and the Batch API runs."""
import json
import uuid

from django.db import connections, models
from django.db.models.fields.json import KT
from django.db.models.functions import Left
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

DEFAULT_KIND = "main_content"
# Who may do what to an entry's content besides Django's add/change/delete/view (Meta.permissions).
EDIT_PERMISSION = "memory.edit_productmemoryentry"
APPROVE_PERMISSION = "memory.approve_productmemoryentry"
OVERRIDE_APPROVAL_PERMISSION = "memory.override_approval_productmemoryentry"
AUTHOR_MAX_LENGTH = 150  # a Django username
# Titles sort by their first characters: see the index in ProductMemoryEntry.Meta.
TITLE_SORT_CHARS = 100
KEY_CONSTRAINT = "memory_entry_product_kind_uniq"  # one row per (product_id, kind)


class ContentOrigin(models.TextChoices):
    """Where a content came from: a version's origin, and the entry's (its current version's)."""

    GENERATED = "generated", _("gerado")
    EDITED = "edited", _("editado")
    IMPORTED = "imported", _("importado")
    RESTORED = "restored", _("restaurado")


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
    # The variant family the content was derived from (its base is the entry of kind "family" with
    # this product_id; a base carries its own id); empty for content generated on its own.
    family_id = models.CharField(_("família"), max_length=255, blank=True, default="", db_default="")
    # Columns added after the first release keep a database default (db_default), so a row
    # written by SQL that does not name them (an older writer, a script) is still valid.
    # The current content is version ``version`` of the entry's history (``ContentVersion``),
    # written by ``origin`` (and ``author``, a username; empty for a generation).
    version = models.PositiveIntegerField(_("versão"), default=1, db_default=1)
    origin = models.CharField(_("origem"), max_length=16, choices=ContentOrigin.choices,
                              default=ContentOrigin.GENERATED, db_default=ContentOrigin.GENERATED)
    author = models.CharField(_("autor"), max_length=AUTHOR_MAX_LENGTH, blank=True, default="", db_default="")
    # A person's word that the content is right: served as it is (never stale, never expired)
    # and never overwritten by a generation, unless one overrides the approval.
    approved = models.BooleanField(_("aprovado"), default=False, db_default=False)
    approved_by = models.CharField(_("aprovado por"), max_length=AUTHOR_MAX_LENGTH, blank=True, default="",
                                   db_default="")
    approved_at = models.DateTimeField(_("aprovado em"), null=True, blank=True)
    # How hot the entry is (memory.engine.hotness): its hits, each halved every
    # MEMORY_HOTNESS_HALF_LIFE_SECONDS, as of hotness_at; folded in by the counter flush.
    hotness = models.FloatField(_("popularidade"), default=0.0, db_default=0.0)
    hotness_at = models.DateTimeField(_("popularidade em"), null=True, blank=True)
    # Set by refresh-ahead (memory.services.refresh) on the content it wrote: the version it wrote
    # and when the content it replaced would have stopped being served. A hit on that version
    # from then on is a miss avoided (counted once, then both are cleared by the counter flush).
    refreshed_ahead_version = models.PositiveIntegerField(_("versão renovada antecipadamente"), null=True,
                                                          blank=True)
    refreshed_ahead_due = models.DateTimeField(_("falta evitada a partir de"), null=True, blank=True)

    class Meta:
        verbose_name = _("entrada da memória")
        verbose_name_plural = _("entradas da memória")
        # Emptying the whole memory is not "delete" many times over: it has its own permission;
        # so have editing the content, approving it and regenerating approved content.
        permissions = [
            ("clear_productmemoryentry", "Pode limpar toda a memória"),
            ("edit_productmemoryentry", "Pode editar o conteúdo"),
            ("approve_productmemoryentry", "Pode aprovar o conteúdo"),
            ("override_approval_productmemoryentry", "Pode regenerar conteúdo aprovado"),
        ]
        constraints = [
            # On a table partitioned by expiry a trigger keeps it instead (memory.engine.partitions).
            models.UniqueConstraint(fields=["product_id", "kind"], name=KEY_CONSTRAINT),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="memory_entry_expires_idx"),
            # Every column the stats' status and content counts read (freshness.status_counts): the
            # one scan they need reads this index, not the table (at 10M rows 0.6 GB, not 15 GB).
            models.Index(fields=["kind", "generator_version", "expires_at", "approved", "origin"],
                         name="memory_entry_stats_idx"),
            models.Index(fields=["-updated_at"], name="memory_entry_updated_idx"),
            models.Index(fields=["-hit_count"], name="memory_entry_hits_idx"),
            # Sorting by title (the admin column). On its first characters only: a btree
            # entry has a size limit (~2.7 KB) and an imported title has none.
            models.Index(Left("title", TITLE_SORT_CHARS), name="memory_entry_title_sort_idx"),
            # The entries of a family (re-derived when its base changes): only rows in one are indexed.
            models.Index(fields=["family_id"], condition=~models.Q(family_id=""), name="memory_entry_family_idx"),
            # The admin's approval and origin filters: the few approved, edited, imported or
            # restored entries among many generated ones.
            models.Index(fields=["approved"], condition=models.Q(approved=True), name="memory_entry_approved_idx"),
            models.Index(fields=["origin"], condition=~models.Q(origin="generated"), name="memory_entry_origin_idx"),
            # The counter flush looks for the few entries refresh-ahead marked among those hit.
            models.Index(fields=["refreshed_ahead_due"], condition=models.Q(refreshed_ahead_due__isnull=False),
                         name="memory_entry_ahead_idx"),
        ]
        # The trigram index on title is PostgreSQL-only: see migration 0002.

    def __str__(self):
        return f"{self.product_id} ({self.kind})"

    @property
    def tokens_spent(self) -> int:
        return self.tokens_prompt + self.tokens_completion


class ContentVersion(models.Model):
    """One content an entry held: every content written (generated, edited, imported, restored)
    is a version, the newest being the entry's current content. The newest
    ``MEMORY_MAX_VERSIONS`` are kept. Read by the history only, never by a lookup.

    Deleting an entry deletes its versions in the database itself (migration 0008: ``ON DELETE
    CASCADE`` on PostgreSQL, a trigger on SQLite), whatever deletes it (a purge, a clear, the
    admin, raw SQL), and Django's delete stays one statement (``DO_NOTHING``: no collector).
    """

    # No index of its own: the unique (entry, number) constraint's index leads with entry_id.
    entry = models.ForeignKey(ProductMemoryEntry, on_delete=models.DO_NOTHING, db_constraint=False,
                              db_index=False, related_name="versions", verbose_name=_("entrada"))
    number = models.PositiveIntegerField(_("número"))
    payload = models.JSONField(_("conteúdo"))
    origin = models.CharField(_("origem"), max_length=16, choices=ContentOrigin.choices)
    generator_version = models.CharField(_("versão do gerador"), max_length=200)
    # What writing this content cost: a generation's tokens; nothing for an edit or a restore.
    tokens = models.PositiveBigIntegerField(_("tokens"), default=0)
    author = models.CharField(_("autor"), max_length=AUTHOR_MAX_LENGTH, blank=True, default="")
    created_at = models.DateTimeField(_("criado em"), default=timezone.now)

    class Meta:
        verbose_name = _("versão do conteúdo")
        verbose_name_plural = _("versões do conteúdo")
        ordering = ["entry", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["entry", "number"], name="memory_version_entry_number_uniq"),
        ]

    def __str__(self):
        return f"{self.entry_id} v{self.number}"


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
    # What the variants derived from a family's base content would have cost generated one by one.
    tokens_saved_by_family = models.PositiveBigIntegerField(_("tokens economizados por famílias"), default=0)
    # Refresh-ahead (memory.services.refresh): tokens its regenerations cost (a part of tokens_spent),
    # and the lookups that hit content it refreshed where the content it replaced would have missed.
    tokens_spent_ahead = models.PositiveBigIntegerField(_("tokens gastos antecipadamente"), default=0, db_default=0)
    misses_avoided = models.PositiveBigIntegerField(_("faltas evitadas"), default=0, db_default=0)

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
    # Variants derived from the family bases of the run (one request per family), from how many
    # families, and the base generations they reused instead of paying for.
    derived_variants = models.PositiveIntegerField(_("variantes derivadas"), default=0, db_default=0)
    families = models.PositiveIntegerField(_("famílias"), default=0, db_default=0)
    tokens_saved_by_family = models.PositiveBigIntegerField(_("tokens economizados por famílias"), default=0,
                                                            db_default=0)
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
    """One request of a batch run, or one product it serves: the data sent, and what became of it.

    A product alone is one item and one request. A family (``memory.services.families``) is one
    item of kind ``family`` (the family id, its shared data: the one request) and one item per
    variant, each linked to it by ``base`` and sent as no request: once the base's result is in
    the memory, each variant is derived from it, by whichever process ingests the run."""

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
    # A variant: the item of its family's base, whose result it is derived from (no request of its
    # own); its tokens are what its entry holds (the base's, for the variant that paid for it).
    base = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="variants",
                             verbose_name=_("conteúdo base da família"))
    tokens_saved_by_family = models.PositiveIntegerField(_("tokens economizados por famílias"), default=0,
                                                         db_default=0)

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


# Deleting an entry deletes its versions, in the database (see ContentVersion).
VERSION_CASCADE_CONSTRAINT = "memory_version_entry_fk"
VERSION_CASCADE_TRIGGER = "memory_version_entry_cascade"


def install_version_cascade(connection) -> None:
    """Make the database delete an entry's versions with the entry: a foreign key ``ON DELETE
    CASCADE`` on PostgreSQL; on SQLite a trigger, created again after every ``migrate``
    (``MemoryConfig.ready``) because SQLite drops a table's triggers when Django rebuilds it.
    A table partitioned by expiry has its own trigger (no foreign key can point at it): left as it is."""
    entries = connection.ops.quote_name(ProductMemoryEntry._meta.db_table)
    versions = connection.ops.quote_name(ContentVersion._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
                           [ProductMemoryEntry._meta.db_table])
            if cursor.fetchone() == ("p",):
                return
            cursor.execute(
                "SELECT 1 FROM pg_constraint WHERE conname = %s AND conrelid = %s::regclass",
                [VERSION_CASCADE_CONSTRAINT, ContentVersion._meta.db_table],
            )
            if cursor.fetchone() is None:
                cursor.execute(
                    f"ALTER TABLE {versions} ADD CONSTRAINT {VERSION_CASCADE_CONSTRAINT} FOREIGN KEY (entry_id) "
                    f"REFERENCES {entries} (id) ON DELETE CASCADE"
                )
        elif connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER IF NOT EXISTS {VERSION_CASCADE_TRIGGER} AFTER DELETE ON {entries} "
                f"FOR EACH ROW BEGIN DELETE FROM {versions} WHERE entry_id = OLD.id; END"
            )


def version_cascade_after_migrate(sender, using, **kwargs) -> None:
    """``post_migrate``: the cascade again (a rebuilt SQLite table has lost its trigger), once
    the versions table exists."""
    connection = connections[using]
    if ContentVersion._meta.db_table in connection.introspection.table_names():
        install_version_cascade(connection)
