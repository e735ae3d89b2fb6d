"""L3, the source of truth: one row per generated content, and the daily counters."""
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
    hit_count = models.PositiveBigIntegerField(_("acertos"), default=0)
    tokens_saved = models.PositiveBigIntegerField(_("tokens economizados"), default=0)
    created_at = models.DateTimeField(_("criado em"), default=timezone.now)
    updated_at = models.DateTimeField(_("atualizado em"), default=timezone.now)
    last_hit_at = models.DateTimeField(_("último acerto"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expira em"))
    # The variant family the content was derived from (its base is the entry of kind "family" with
    # this product_id; a base carries its own id); empty for content generated on its own.
    family_id = models.CharField(_("família"), max_length=255, blank=True, default="", db_default="")

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
            # The entries of a family (re-derived when its base changes): only rows in one are indexed.
            models.Index(fields=["family_id"], condition=~models.Q(family_id=""), name="memory_entry_family_idx"),
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
    # What the variants derived from a family's base content would have cost generated one by one.
    tokens_saved_by_family = models.PositiveBigIntegerField(_("tokens economizados por famílias"), default=0)

    class Meta:
        verbose_name = _("estatística diária")
        verbose_name_plural = _("estatísticas diárias")
        ordering = ["-date"]

    def __str__(self):
        return str(self.date)
